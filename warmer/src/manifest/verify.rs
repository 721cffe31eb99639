//! The verifying pass: a manifest is refused (schema id, checksum, rank order) before any
//! store is touched, and what the report needs of every entry is counted on the way: the
//! per-category totals and the rank curve.
//!
//! The pass is on a deploy's critical path, so the checksum is computed on a thread of its
//! own ([`Hashing`]) while the entries are parsed: SHA-256 of a 200 MB manifest is about as
//! long as parsing it.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fs::File;
use std::path::Path;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;

use schemas::ManifestEntry;
use schemas::report::RankPoint;
use sha2::{Digest, Sha256};

use super::any::minified;
use super::{Bytes, CategoryTotal, EntryFields, Layout, ManifestError, ManifestFile, Scan};

/// Opens and verifies the manifest at `path` (plain or zstd JSON): schema id, checksum and rank
/// order. Nothing of the entries is kept but counts and the rank curve.
pub fn open(path: &Path) -> Result<ManifestFile, ManifestError> {
    verified(path, None).map(|(manifest, _)| manifest)
}

/// [`open`], also giving `key_hash` of every entry's key in the manifest's order: what a
/// snapshot source finds its rows by, taken on the verifying pass instead of a pass of its own
/// (that pass was 0.23 s of the 0.56 s before a 1 M-entry run's first write).
pub fn open_hashing_keys(
    path: &Path,
    key_hash: fn(&str) -> u64,
) -> Result<(ManifestFile, Vec<u64>), ManifestError> {
    verified(path, Some(key_hash))
}

fn verified(
    path: &Path,
    key_hash: Option<fn(&str) -> u64>,
) -> Result<(ManifestFile, Vec<u64>), ManifestError> {
    let read_error = |source| ManifestError::Read {
        path: path.to_path_buf(),
        source,
    };
    let bytes = Bytes {
        path: path.to_path_buf(),
        file: File::open(path).map_err(read_error)?,
    };
    let mut layout = Layout::Lines;
    let mut verify = Verify::new(key_hash);
    // Filled in by the header, added to by every entry.
    let curve = RefCell::new(None);
    let mut header = match bytes.scan(
        &mut |header| *curve.borrow_mut() = Some(Curve::new(header.totals.keys_selected)),
        &mut |raw, fields| {
            if let Some(curve) = curve.borrow_mut().as_mut() {
                curve.entry(fields.requests);
            }
            verify.entry(raw, fields)
        },
    ) {
        Ok(header) => Some(header),
        Err(Scan::NotLines) => None,
        Err(Scan::Error(error)) => return Err(error),
    };
    let mut actual = verify.finish_hash();
    if header.as_ref().is_none_or(|h| actual != h.entries_sha256) {
        // Another layout, or entry text other than serde's compact form: each entry's text
        // with the whitespace between tokens taken out (a pretty-printed manifest).
        layout = Layout::Any;
        curve.take();
        verify = Verify::new(key_hash);
        header = Some(bytes.scan_any(&mut |raw, entry| {
            let text = minified(raw);
            verify.entry_text(&text, &entry)
        })?);
        actual = verify.finish_hash();
    }
    let header = header.expect("one of the passes read the header");
    if actual != header.entries_sha256 {
        // Last, what the entries serialize to, as the checksum is defined (exact where the
        // text holds floats the way serde writes them; serde_json's default float parser may
        // be one ulp off otherwise).
        verify = Verify::new(key_hash);
        bytes.scan_any(&mut |_, entry| {
            let text = serde_json::to_vec(&entry).map_err(|e| e.to_string())?;
            verify.entry_text(&text, &entry)
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
    let manifest = ManifestFile {
        bytes,
        layout,
        header,
        entries: verify.count,
        categories,
        shard: None,
        whole_entries: verify.count,
        rank_curve: curve.into_inner().and_then(Curve::finish),
    };
    Ok((manifest, verify.keys))
}

/// The rank curve's points: every rank up to 100, then every `step`th, and the last. The
/// step is a 400th of the entries; the header's count of selected keys gives it before the
/// entries come, and when the entries counted are not that many the curve is left to a pass
/// of its own (`report::rank_curve`), which computes the same points.
struct Curve {
    expected: u64,
    step: u64,
    rank: u64,
    requests: u64,
    points: Vec<RankPoint>,
}

impl Curve {
    fn new(expected: u64) -> Curve {
        Curve {
            expected,
            step: (expected.max(1) / 400).max(1),
            rank: 0,
            requests: 0,
            points: Vec::new(),
        }
    }

    fn entry(&mut self, requests: u64) {
        self.rank += 1;
        self.requests = self.requests.saturating_add(requests);
        let rank = self.rank;
        if rank <= 100 || rank.is_multiple_of(self.step) || rank == self.expected {
            self.points.push(RankPoint {
                rank,
                requests: self.requests,
            });
        }
    }

    /// The points, when the entries were as many as the header said.
    fn finish(self) -> Option<Vec<RankPoint>> {
        (self.rank == self.expected).then_some(self.points)
    }
}

/// State of the verifying pass.
struct Verify {
    hash: Hashing,
    count: u64,
    bad_rank: Option<(usize, u64)>,
    categories: BTreeMap<String, (u64, u64)>,
    /// Each entry's key hashed, when asked for.
    key_hash: Option<fn(&str) -> u64>,
    keys: Vec<u64>,
}

impl Verify {
    fn new(key_hash: Option<fn(&str) -> u64>) -> Verify {
        let mut hash = Hashing::new();
        hash.update(b"[");
        Verify {
            hash,
            count: 0,
            bad_rank: None,
            categories: BTreeMap::new(),
            key_hash,
            keys: Vec::new(),
        }
    }

    fn entry(&mut self, raw: &[u8], fields: EntryFields<'_>) -> Result<(), String> {
        self.counted(
            raw,
            &fields.key,
            &fields.category,
            fields.rank,
            fields.requests,
        )
    }

    /// Hashes one entry's `text` (its compact JSON, in another layout) and counts it.
    fn entry_text(&mut self, text: &[u8], entry: &ManifestEntry) -> Result<(), String> {
        self.counted(
            text,
            &entry.key,
            &entry.category,
            entry.rank,
            entry.requests,
        )
    }

    /// Hashes one entry's `text` and counts it.
    fn counted(
        &mut self,
        text: &[u8],
        key: &str,
        category: &str,
        rank: u64,
        requests: u64,
    ) -> Result<(), String> {
        if let Some(key_hash) = self.key_hash {
            self.keys.push(key_hash(key));
        }
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

    /// The checksum of the entries hashed; once per pass.
    fn finish_hash(&mut self) -> String {
        self.hash.update(b"]");
        self.hash
            .finish()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

/// SHA-256 on a thread of its own: the text is gathered into 1 MiB buffers, handed over a
/// bounded channel and recycled, so memory stays a few buffers whatever the manifest's size.
struct Hashing {
    buffer: Vec<u8>,
    full: Option<SyncSender<Vec<u8>>>,
    empty: Receiver<Vec<u8>>,
    thread: Option<JoinHandle<Sha256>>,
}

const HASH_BUFFER: usize = 1 << 20;

impl Hashing {
    fn new() -> Hashing {
        let (full, to_hash) = sync_channel::<Vec<u8>>(2);
        let (give_back, empty) = sync_channel::<Vec<u8>>(4);
        let thread = std::thread::spawn(move || {
            let mut hash = Sha256::new();
            for mut buffer in to_hash {
                hash.update(&buffer);
                buffer.clear();
                // The pass may be over and gone; the buffer is then dropped here.
                let _ = give_back.try_send(buffer);
            }
            hash
        });
        Hashing {
            buffer: Vec::with_capacity(HASH_BUFFER),
            full: Some(full),
            empty,
            thread: Some(thread),
        }
    }

    fn update(&mut self, bytes: &[u8]) {
        self.buffer.extend_from_slice(bytes);
        if self.buffer.len() >= HASH_BUFFER {
            self.hand_over();
        }
    }

    fn hand_over(&mut self) {
        let next = self
            .empty
            .try_recv()
            .unwrap_or_else(|_| Vec::with_capacity(HASH_BUFFER));
        let buffer = std::mem::replace(&mut self.buffer, next);
        if let Some(full) = &self.full {
            full.send(buffer)
                .expect("the hashing thread runs until its channel closes");
        }
    }

    /// The digest of everything updated.
    fn finish(&mut self) -> sha2::digest::Output<Sha256> {
        self.hand_over();
        self.full = None;
        self.thread
            .take()
            .expect("finished once")
            .join()
            .expect("hashing does not panic")
            .finalize()
    }
}

/// A pass refused mid-way still waits for its thread, so no thread outlives its manifest's
/// verification.
impl Drop for Hashing {
    fn drop(&mut self) {
        self.full = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
