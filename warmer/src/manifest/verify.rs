//! The verifying pass: a manifest is refused (schema id, checksum, rank order) before any
//! store is touched, and the per-category totals the report needs are counted on the way.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::Path;

use sha2::{Digest, Sha256};

use super::any::minified;
use super::{Bytes, CategoryTotal, EntryFields, Layout, ManifestError, ManifestFile, Scan};

/// Opens and verifies the manifest at `path` (plain or zstd JSON): schema id, checksum and rank
/// order. Nothing of the entries is kept but counts.
pub fn open(path: &Path) -> Result<ManifestFile, ManifestError> {
    let read_error = |source| ManifestError::Read {
        path: path.to_path_buf(),
        source,
    };
    let bytes = Bytes {
        path: path.to_path_buf(),
        file: File::open(path).map_err(read_error)?,
    };
    let mut layout = Layout::Lines;
    let mut verify = Verify::new();
    let mut header = match bytes.scan(&mut |raw, fields| verify.entry(raw, fields)) {
        Ok(header) => Some(header),
        Err(Scan::NotLines) => None,
        Err(Scan::Error(error)) => return Err(error),
    };
    if header
        .as_ref()
        .is_none_or(|h| verify.finish_hash() != h.entries_sha256)
    {
        // Another layout, or entry text other than serde's compact form: each entry's text
        // with the whitespace between tokens taken out (a pretty-printed manifest).
        layout = Layout::Any;
        verify = Verify::new();
        header = Some(bytes.scan_any(&mut |raw, entry| {
            let text = minified(raw);
            verify.entry_text(&text, &entry.category, entry.rank, entry.requests)
        })?);
    }
    let header = header.expect("one of the passes read the header");
    let mut actual = verify.finish_hash();
    if actual != header.entries_sha256 {
        // Last, what the entries serialize to, as the checksum is defined (exact where the
        // text holds floats the way serde writes them; serde_json's default float parser may
        // be one ulp off otherwise).
        verify = Verify::new();
        bytes.scan_any(&mut |_, entry| {
            let text = serde_json::to_vec(&entry).map_err(|e| e.to_string())?;
            verify.entry_text(&text, &entry.category, entry.rank, entry.requests)
        })?;
        actual = verify.finish_hash();
    }
    if actual != header.entries_sha256 {
        return Err(ManifestError::Checksum {
            path: path.to_path_buf(),
            expected: header.entries_sha256,
            actual,
        });
    }
    if let Some((index, found)) = verify.bad_rank {
        return Err(ManifestError::Rank {
            path: path.to_path_buf(),
            index,
            found,
            expected: index as u64 + 1,
        });
    }
    let categories = verify
        .categories
        .into_iter()
        .map(|(name, (keys, requests))| CategoryTotal {
            sensitive: header.categories.get(&name).is_some_and(|c| c.sensitive),
            name,
            keys,
            requests,
        })
        .collect();
    Ok(ManifestFile {
        bytes,
        layout,
        header,
        entries: verify.count,
        categories,
        shard: None,
        whole_entries: verify.count,
    })
}

/// State of the verifying pass.
struct Verify {
    hash: Sha256,
    count: u64,
    bad_rank: Option<(usize, u64)>,
    categories: BTreeMap<String, (u64, u64)>,
}

impl Verify {
    fn new() -> Verify {
        let mut hash = Sha256::new();
        hash.update(b"[");
        Verify {
            hash,
            count: 0,
            bad_rank: None,
            categories: BTreeMap::new(),
        }
    }

    fn entry(&mut self, raw: &[u8], fields: EntryFields<'_>) -> Result<(), String> {
        self.entry_text(raw, &fields.category, fields.rank, fields.requests)
    }

    /// Hashes one entry's `text` (its compact JSON) and counts it.
    fn entry_text(
        &mut self,
        text: &[u8],
        category: &str,
        rank: u64,
        requests: u64,
    ) -> Result<(), String> {
        if self.count > 0 {
            self.hash.update(b",");
        }
        self.hash.update(text);
        if rank != self.count + 1 && self.bad_rank.is_none() {
            self.bad_rank = Some((self.count as usize, rank));
        }
        self.count += 1;
        let total = match self.categories.get_mut(category) {
            Some(total) => total,
            None => self.categories.entry(category.to_owned()).or_default(),
        };
        total.0 += 1;
        // Each entry's count is any u64 the format allows; a category's sum stops at the
        // largest rather than wrap (or panic) on a manifest that claims more.
        total.1 = total.1.saturating_add(requests);
        Ok(())
    }

    fn finish_hash(&self) -> String {
        let mut hash = self.hash.clone();
        hash.update(b"]");
        hash.finalize().iter().map(|b| format!("{b:02x}")).collect()
    }
}
