//! Reading and verifying a manifest before anything is written, then streaming its entries.
//!
//! A manifest can hold millions of entries (about 200 bytes each), so it is never held in
//! memory. [`open`] makes a verifying pass over the file: schema id, checksum, rank order, and
//! the per-category totals the report needs; a bad manifest is refused before any store is
//! touched. [`ManifestFile::stream`] then reads the entries again, in rank order, in batches.
//! Both passes read the same open file (a nightly job replacing the manifest under the same
//! name in between changes nothing), decompressing a `.zst` manifest as a stream each time.
//!
//! The checksum is sha256 of the entries as one compact JSON array. `analyzer rank` writes
//! exactly that text, one entry per line (see `write_manifest`), so the fast path hashes each
//! entry line as it is (`[` + lines joined by `,` + `]`) and parses only the fields a run uses.
//! A manifest laid out otherwise (one line, pretty-printed, or with entries whose text is not
//! serde's compact form) is parsed in full and its entries re-serialized for the checksum, as
//! the checksum's definition says: slower, but it accepts every manifest the format allows.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use schemas::{MANIFEST_SCHEMA_ID, ManifestEntry, ManifestHeader};
use serde::Deserialize;
use serde::de::{DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

/// Why a manifest was refused. Each names the file.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("failed to read manifest `{path}`")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("manifest `{path}` is not a valid manifest: {message}")]
    Parse { path: PathBuf, message: String },
    #[error(
        "manifest `{path}`: field `header.schema` is `{found}`, expected `{MANIFEST_SCHEMA_ID}`\n\
         hint: this warmer reads manifest v1; regenerate it with a matching analyzer"
    )]
    UnknownSchema { path: PathBuf, found: String },
    #[error(
        "manifest `{path}`: field `header.entries_sha256` is {expected} but the entries hash to \
         {actual}: the file was changed or truncated after it was written"
    )]
    Checksum {
        path: PathBuf,
        expected: String,
        actual: String,
    },
    #[error("manifest `{path}`: field `entries[{index}].rank` is {found}, expected {expected}")]
    Rank {
        path: PathBuf,
        index: usize,
        found: u64,
        expected: u64,
    },
}

/// What a run needs of one manifest entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub key: String,
    /// Index into [`ManifestFile::categories`].
    pub category: u32,
    pub requests: u64,
    pub ttl_s: Option<u32>,
}

/// A category's share of the manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CategoryTotal {
    pub name: String,
    pub keys: u64,
    pub requests: u64,
}

/// A verified manifest, kept open for streaming its entries.
#[derive(Debug)]
pub struct ManifestFile {
    bytes: Bytes,
    /// Whether the entry lines are the checksummed text itself (see the module docs).
    layout: Layout,
    pub header: ManifestHeader,
    /// How many entries the manifest holds.
    pub entries: u64,
    /// Every category of the entries, sorted by name.
    pub categories: Vec<CategoryTotal>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Layout {
    /// `analyzer rank`'s layout: header line, `"entries":[` line, one compact entry per line.
    Lines,
    /// Anything else JSON allows.
    Any,
}

/// The fields of an entry a run uses, borrowed from the line where possible; the other fields
/// are skipped without being decoded.
#[derive(Deserialize)]
struct EntryFields<'a> {
    rank: u64,
    #[serde(borrow)]
    key: Cow<'a, str>,
    #[serde(borrow)]
    category: Cow<'a, str>,
    requests: u64,
    ttl_s: Option<u32>,
}

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
    Ok(ManifestFile {
        bytes,
        layout,
        header,
        entries: verify.count,
        categories: verify
            .categories
            .into_iter()
            .map(|(name, (keys, requests))| CategoryTotal {
                name,
                keys,
                requests,
            })
            .collect(),
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
        total.1 += requests;
        Ok(())
    }

    fn finish_hash(&self) -> String {
        let mut hash = self.hash.clone();
        hash.update(b"]");
        hash.finalize().iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// What a pass in the line layout does with each entry: its text and the fields a run uses.
type OnFields<'a> = dyn FnMut(&[u8], EntryFields<'_>) -> Result<(), String> + 'a;
/// What a pass in any layout does with each entry: its text as found, and the entry.
type OnEntry<'a> = dyn FnMut(&[u8], ManifestEntry) -> Result<(), String> + 'a;

/// Why a scan stopped.
enum Scan {
    /// The file is not in the line layout; nothing was handed out.
    NotLines,
    Error(ManifestError),
}

impl From<ManifestError> for Scan {
    fn from(error: ManifestError) -> Scan {
        Scan::Error(error)
    }
}

impl ManifestFile {
    /// The manifest's path, as given.
    pub fn path(&self) -> &Path {
        &self.bytes.path
    }

    /// Reads the entries in rank order from the start, in batches of `batch_size`, and hands
    /// each batch to `sink`; stops early when `sink` returns false. Blocking: run it on a
    /// thread of its own.
    pub fn stream(
        &self,
        batch_size: usize,
        mut sink: impl FnMut(Vec<Entry>) -> bool,
    ) -> Result<(), ManifestError> {
        let index: BTreeMap<&str, u32> = self
            .categories
            .iter()
            .enumerate()
            .map(|(i, c)| (c.name.as_str(), i as u32))
            .collect();
        let category_of = |name: &str| index.get(name).copied().unwrap_or(0);
        let batch_size = batch_size.max(1);
        let mut batch = Vec::with_capacity(batch_size);
        let mut open = true;
        let mut push = |entry: Entry| -> Result<(), String> {
            if !open {
                return Err(STOPPED.to_owned());
            }
            batch.push(entry);
            if batch.len() == batch_size {
                open = sink(std::mem::replace(
                    &mut batch,
                    Vec::with_capacity(batch_size),
                ));
            }
            Ok(())
        };
        let result = match self.layout {
            Layout::Lines => self
                .bytes
                .scan(&mut |_, fields| {
                    push(Entry {
                        category: category_of(&fields.category),
                        key: fields.key.into_owned(),
                        requests: fields.requests,
                        ttl_s: fields.ttl_s,
                    })
                })
                .map(drop)
                .map_err(|scan| match scan {
                    Scan::Error(error) => error,
                    Scan::NotLines => self.bytes.parse_error("the layout changed between passes"),
                }),
            Layout::Any => self
                .bytes
                .scan_any(&mut |_, entry| {
                    push(Entry {
                        category: category_of(&entry.category),
                        key: entry.key,
                        requests: entry.requests,
                        ttl_s: entry.ttl_s,
                    })
                })
                .map(drop),
        };
        match result {
            Err(ManifestError::Parse { message, .. }) if message.contains(STOPPED) => Ok(()),
            Err(error) => Err(error),
            Ok(()) => {
                if open && !batch.is_empty() {
                    sink(batch);
                }
                Ok(())
            }
        }
    }
}

/// Streams the entries of `manifest` in rank order, in batches of `batch_size`, from a thread
/// of its own, `ahead` batches at most ahead of the receiver: parsing overlaps the stores'
/// work. The receiver ends early with the error when the file cannot be read (which the
/// verifying pass makes unlikely); dropping it stops the thread.
pub fn batches(
    manifest: &Arc<ManifestFile>,
    batch_size: usize,
    ahead: usize,
) -> mpsc::Receiver<Result<Vec<Entry>, ManifestError>> {
    let (sender, receiver) = mpsc::channel(ahead.max(1));
    let manifest = Arc::clone(manifest);
    std::thread::spawn(move || {
        let result = manifest.stream(batch_size, |batch| sender.blocking_send(Ok(batch)).is_ok());
        if let Err(error) = result {
            let _ = sender.blocking_send(Err(error));
        }
    });
    receiver
}

/// The manifest file, open; every pass reads it from the start.
#[derive(Debug)]
struct Bytes {
    path: PathBuf,
    file: File,
}

impl Bytes {
    fn parse_error(&self, message: impl std::fmt::Display) -> ManifestError {
        ManifestError::Parse {
            path: self.path.clone(),
            message: message.to_string(),
        }
    }

    /// The file's bytes from the start, decompressed when it is zstd.
    fn reader(&self) -> Result<Box<dyn BufRead + '_>, ManifestError> {
        let read_error = |source| ManifestError::Read {
            path: self.path.clone(),
            source,
        };
        let mut file = &self.file;
        file.seek(SeekFrom::Start(0)).map_err(read_error)?;
        let mut magic = [0u8; 4];
        let mut filled = 0;
        while filled < 4 {
            match file.read(&mut magic[filled..]).map_err(read_error)? {
                0 => break,
                n => filled += n,
            }
        }
        file.seek(SeekFrom::Start(0)).map_err(read_error)?;
        let buffered = BufReader::with_capacity(1 << 20, file);
        if filled == 4 && magic == [0x28, 0xb5, 0x2f, 0xfd] {
            let decoder = zstd::Decoder::with_buffer(buffered).map_err(read_error)?;
            Ok(Box::new(BufReader::with_capacity(1 << 20, decoder)))
        } else {
            Ok(Box::new(buffered))
        }
    }

    /// A pass over a manifest in the line layout: `on_entry` gets each entry's text and its
    /// fields. `Err(Scan::NotLines)` when the first line shows another layout.
    fn scan(&self, on_entry: &mut OnFields<'_>) -> Result<ManifestHeader, Scan> {
        let mut reader = self.reader()?;
        let mut line = Vec::with_capacity(4096);
        let mut next_line = |line: &mut Vec<u8>| -> Result<bool, ManifestError> {
            line.clear();
            let n = reader
                .read_until(b'\n', line)
                .map_err(|source| ManifestError::Read {
                    path: self.path.clone(),
                    source,
                })?;
            while line.last().is_some_and(|b| b.is_ascii_whitespace()) {
                line.pop();
            }
            Ok(n > 0)
        };
        next_line(&mut line)?;
        let Some(header_text) = line
            .strip_prefix(b"{\"header\":")
            .and_then(|rest| rest.strip_suffix(b","))
        else {
            return Err(Scan::NotLines);
        };
        let header =
            self.header_from(serde_json::from_slice(header_text).map_err(|_| Scan::NotLines)?)?;
        next_line(&mut line)?;
        if line != b"\"entries\":[" {
            return Err(Scan::NotLines);
        }
        let mut index = 0usize;
        loop {
            if !next_line(&mut line)? {
                return Err(self.parse_error("the file ends inside `entries`").into());
            }
            if line == b"]}" {
                break;
            }
            let raw = line.strip_suffix(b",").unwrap_or(&line);
            let fields = match positional_fields(raw) {
                Some(fields) => Ok(fields),
                None => serde_json::from_slice::<EntryFields<'_>>(raw),
            };
            let fields = fields.map_err(|e| {
                if index == 0 {
                    // Not one entry per line after all (an empty `entries`, say): the general
                    // reader decides.
                    Scan::NotLines
                } else {
                    self.parse_error(format!("entries[{index}]: {e}")).into()
                }
            })?;
            on_entry(raw, fields).map_err(|message| self.parse_error(message))?;
            index += 1;
        }
        while next_line(&mut line)? {
            if !line.is_empty() {
                return Err(self
                    .parse_error("text after the end of the manifest")
                    .into());
            }
        }
        Ok(header)
    }

    /// A pass over a manifest in any JSON layout, entries parsed in full.
    fn scan_any(&self, on_entry: &mut OnEntry<'_>) -> Result<ManifestHeader, ManifestError> {
        let reader = self.reader()?;
        let mut deserializer = serde_json::Deserializer::from_reader(reader);
        let header = ManifestSeed { on_entry }
            .deserialize(&mut deserializer)
            .and_then(|header| deserializer.end().map(|()| header))
            .map_err(|e| self.parse_error(e))?;
        let header = header.ok_or_else(|| self.parse_error("missing field `header`"))?;
        self.header_from(header)
    }

    /// Checks the header's schema id before its fields, so another version of the format says
    /// so rather than failing on a field.
    fn header_from(&self, value: serde_json::Value) -> Result<ManifestHeader, ManifestError> {
        let schema = value.get("schema").and_then(|s| s.as_str()).unwrap_or("");
        if schema != MANIFEST_SCHEMA_ID {
            return Err(ManifestError::UnknownSchema {
                path: self.path.clone(),
                found: schema.to_owned(),
            });
        }
        serde_json::from_value(value).map_err(|e| self.parse_error(format!("header: {e}")))
    }
}

/// The fields a run uses of an entry line in the analyzer's exact layout: serde's compact
/// text, fields in `ManifestEntry`'s order, a key without escapes. `None` for anything else,
/// which serde_json then reads.
///
/// Every pass of a run reads every entry line, and serde_json, which matches field names and
/// scans the fields a run does not use (`score`, `last_seen`, …) token by token, was a quarter
/// of the warmer's time (docs/benchmarks.md); this reader steps from one known field name to
/// the next. It checks only what it takes: the line's text is what the checksum covers, so a
/// line that is not serde's output does not get past the verifying pass either way.
fn positional_fields(line: &[u8]) -> Option<EntryFields<'_>> {
    let mut rest = line.strip_prefix(b"{\"rank\":")?;
    let rank = take_number(&mut rest)?;
    rest = rest.strip_prefix(b",\"key\":\"")?;
    let key = take_plain_string(&mut rest)?;
    rest = rest.strip_prefix(b",\"category\":\"")?;
    let category = take_plain_string(&mut rest)?;
    rest = rest.strip_prefix(b",\"score\":")?;
    let comma = rest.iter().position(|&b| b == b',')?;
    rest = rest[comma..].strip_prefix(b",\"requests\":")?;
    let requests = take_number(&mut rest)?;
    for name in [&b",\"hits\":"[..], b",\"misses\":", b",\"size_bytes\":"] {
        rest = rest.strip_prefix(name)?;
        take_number(&mut rest)?;
    }
    rest = rest.strip_prefix(b",\"ttl_s\":")?;
    let ttl_s = match rest.strip_prefix(b"null") {
        Some(after) => {
            rest = after;
            None
        }
        None => Some(u32::try_from(take_number(&mut rest)?).ok()?),
    };
    rest = rest.strip_prefix(b",\"last_seen\":\"")?;
    take_plain_string(&mut rest)?;
    if rest != b"}" {
        return None;
    }
    Some(EntryFields {
        rank,
        key: Cow::Borrowed(key),
        category: Cow::Borrowed(category),
        requests,
        ttl_s,
    })
}

/// A JSON unsigned integer at the start of `rest`, consumed.
fn take_number(rest: &mut &[u8]) -> Option<u64> {
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 || digits > 19 || (digits > 1 && rest[0] == b'0') {
        return None;
    }
    let mut n = 0u64;
    for &b in &rest[..digits] {
        n = n * 10 + u64::from(b - b'0');
    }
    *rest = &rest[digits..];
    Some(n)
}

/// The text of a JSON string without escapes or control characters up to its closing quote,
/// consumed with the quote; `None` when it has any (serde_json decodes those).
fn take_plain_string<'a>(rest: &mut &'a [u8]) -> Option<&'a str> {
    let end = rest
        .iter()
        .position(|&b| b == b'"' || b == b'\\' || b < 0x20)?;
    if rest[end] != b'"' {
        return None;
    }
    let text = std::str::from_utf8(&rest[..end]).ok()?;
    *rest = &rest[end + 1..];
    Some(text)
}

/// JSON `text` without the whitespace between tokens (strings kept as they are).
fn minified(text: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    let mut in_string = false;
    let mut escaped = false;
    for &b in text {
        if in_string {
            out.push(b);
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
        } else if !b.is_ascii_whitespace() {
            in_string = b == b'"';
            out.push(b);
        }
    }
    out
}

/// The message that unwinds a scan stopped by its consumer.
const STOPPED: &str = "the reader of the entries stopped";

/// The top-level object of a manifest in any layout; entries go to `on_entry` one by one.
struct ManifestSeed<'f> {
    on_entry: &'f mut OnEntry<'f>,
}

impl<'de> DeserializeSeed<'de> for ManifestSeed<'_> {
    type Value = Option<serde_json::Value>;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for ManifestSeed<'_> {
    type Value = Option<serde_json::Value>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a manifest object with `header` and `entries`")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        use serde::de::Error;
        let mut header = None;
        let mut entries = false;
        while let Some(name) = map.next_key::<Cow<'de, str>>()? {
            match name.as_ref() {
                "header" => header = Some(map.next_value::<serde_json::Value>()?),
                "entries" => {
                    if let Some(schema) = header.as_ref().and_then(|h| h.get("schema"))
                        && schema.as_str() != Some(MANIFEST_SCHEMA_ID)
                    {
                        // Another version: stop here, the header says what is wrong.
                        map.next_value::<IgnoredAny>()?;
                        entries = true;
                        continue;
                    }
                    map.next_value_seed(EntriesSeed {
                        on_entry: &mut *self.on_entry,
                    })?;
                    entries = true;
                }
                other => return Err(A::Error::unknown_field(other, &["header", "entries"])),
            }
        }
        if !entries {
            return Err(A::Error::missing_field("entries"));
        }
        Ok(header)
    }
}

struct EntriesSeed<'f> {
    on_entry: &'f mut OnEntry<'f>,
}

impl<'de> DeserializeSeed<'de> for EntriesSeed<'_> {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for EntriesSeed<'_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("an array of entries")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        use serde::de::Error;
        let mut index = 0usize;
        while let Some(raw) = seq.next_element::<Box<RawValue>>()? {
            let entry: ManifestEntry = serde_json::from_str(raw.get())
                .map_err(|e| A::Error::custom(format!("entries[{index}]: {e}")))?;
            (self.on_entry)(raw.get().as_bytes(), entry).map_err(A::Error::custom)?;
            index += 1;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;
    use schemas::Manifest;
    use schemas::manifest::{Budget, ObservationWindow, Totals, entries_sha256};

    fn manifest(n: u64) -> Manifest {
        let entries: Vec<ManifestEntry> = (1..=n)
            .map(|rank| ManifestEntry {
                rank,
                key: format!("key:{rank}"),
                category: if rank % 3 == 0 { "pages" } else { "default" }.into(),
                score: 10.0 / rank as f64,
                requests: 1000 / rank,
                hits: 0,
                misses: 0,
                size_bytes: 100,
                ttl_s: (rank % 2 == 0).then_some(60),
                last_seen: Utc::now(),
            })
            .collect();
        Manifest {
            header: ManifestHeader {
                schema: MANIFEST_SCHEMA_ID.into(),
                generator: "test".into(),
                generated_at: Utc::now(),
                window: ObservationWindow {
                    start: Utc::now(),
                    end: Utc::now(),
                },
                budget: Budget {
                    bytes: 300,
                    source: "test".into(),
                    capacity_bytes: None,
                },
                totals: Totals {
                    keys_seen: n,
                    requests_seen: 18,
                    keys_selected: n,
                    requests_selected: 18,
                    bytes_selected: 300,
                    keys_over_budget: 0,
                },
                categories: Default::default(),
                scoring: None,
                exclusions: Default::default(),
                prediction: None,
                entries_sha256: entries_sha256(&entries),
            },
            entries,
        }
    }

    /// The layout `analyzer rank` writes: header line, then one entry per line.
    fn lines(manifest: &Manifest) -> Vec<u8> {
        let mut text = b"{\"header\":".to_vec();
        serde_json::to_writer(&mut text, &manifest.header).unwrap();
        text.extend_from_slice(b",\n\"entries\":[");
        for (i, entry) in manifest.entries.iter().enumerate() {
            text.extend_from_slice(if i == 0 { b"\n" } else { b",\n" });
            serde_json::to_writer(&mut text, entry).unwrap();
        }
        text.extend_from_slice(b"\n]}\n");
        text
    }

    fn write(dir: &Path, name: &str, text: &[u8]) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    fn streamed(file: &ManifestFile, batch_size: usize) -> Vec<Entry> {
        let mut entries = Vec::new();
        file.stream(batch_size, |batch| {
            assert!(batch.len() <= batch_size);
            entries.extend(batch);
            true
        })
        .unwrap();
        entries
    }

    fn expected(manifest: &Manifest) -> Vec<Entry> {
        manifest
            .entries
            .iter()
            .map(|e| Entry {
                key: e.key.clone(),
                category: u32::from(e.category == "pages"),
                requests: e.requests,
                ttl_s: e.ttl_s,
            })
            .collect()
    }

    /// A good manifest verifies and streams back every entry in rank order, whatever its
    /// layout (the analyzer's lines, one compact line, pretty-printed), plain or zstd.
    #[test]
    fn verifies_and_streams_every_layout() {
        let dir = tempfile::tempdir().unwrap();
        let original = manifest(1234);
        let layouts = [
            ("lines.json", lines(&original)),
            ("compact.json", serde_json::to_vec(&original).unwrap()),
            ("pretty.json", serde_json::to_vec_pretty(&original).unwrap()),
        ];
        for (name, text) in layouts {
            let packed = zstd::encode_all(text.as_slice(), 3).unwrap();
            for path in [
                write(dir.path(), name, &text),
                write(dir.path(), &format!("{name}.zst"), &packed),
            ] {
                let file = open(&path).unwrap();
                assert_eq!(file.header, original.header, "{name}");
                assert_eq!(file.entries, 1234);
                let names: Vec<&str> = file.categories.iter().map(|c| c.name.as_str()).collect();
                assert_eq!(names, ["default", "pages"]);
                assert_eq!(
                    file.categories.iter().map(|c| c.keys).sum::<u64>(),
                    file.entries
                );
                assert_eq!(streamed(&file, 100), expected(&original), "{name}");
            }
        }
    }

    /// The positional reader takes exactly what serde_json takes from the analyzer's lines,
    /// and leaves every other spelling to it.
    #[test]
    fn positional_reader_agrees_with_serde() {
        let mut entries = manifest(4).entries;
        entries[1].key = "with \"quotes\" and é".into();
        entries[2].ttl_s = Some(u32::MAX);
        entries[3].score = 1.5e-7;
        for entry in &entries {
            let line = serde_json::to_vec(entry).unwrap();
            let serde: EntryFields<'_> = serde_json::from_slice(&line).unwrap();
            match positional_fields(&line) {
                Some(fields) => {
                    assert_eq!(
                        (fields.rank, &*fields.key, &*fields.category),
                        (serde.rank, &*serde.key, &*serde.category)
                    );
                    assert_eq!(
                        (fields.requests, fields.ttl_s),
                        (serde.requests, serde.ttl_s)
                    );
                }
                None => assert!(entry.key.contains('"'), "{entry:?}"),
            }
        }
        for other in [
            &b"{\"rank\" : 1}"[..],
            b"{\"rank\":01,\"key\":\"k\"}",
            b"{\"rank\":1,\"key\":\"k\",\"category\":\"c\",\"score\":1.0,\"requests\":2,\"hits\":0,\"misses\":0,\"size_bytes\":1,\"ttl_s\":4294967296,\"last_seen\":\"t\"}",
        ] {
            assert!(positional_fields(other).is_none());
        }
    }

    /// Entry lines that are valid JSON but not serde's compact text still verify: the
    /// checksum is over what the entries serialize to.
    #[test]
    fn lines_in_another_spelling_verify_by_their_values() {
        let dir = tempfile::tempdir().unwrap();
        let original = manifest(5);
        let text = String::from_utf8(lines(&original)).unwrap();
        let respelled = text.replace("\"rank\":", "\"rank\" : ");
        let path = write(dir.path(), "m.json", respelled.as_bytes());
        let file = open(&path).unwrap();
        assert_eq!(streamed(&file, 2), expected(&original));
    }

    /// Each refusal names the file and the field at fault, in every layout.
    #[test]
    fn refuses_bad_manifests_naming_file_and_field() {
        let dir = tempfile::tempdir().unwrap();
        type Render = fn(&Manifest) -> Vec<u8>;
        let layouts: [(&str, Render); 2] = [
            ("lines", lines),
            ("compact", |m| serde_json::to_vec(m).unwrap()),
        ];
        for (layout, render) in layouts {
            let mut other_version = manifest(3);
            other_version.header.schema = "cachewarm.manifest/v9".into();
            let path = write(
                dir.path(),
                &format!("v9-{layout}.json"),
                &render(&other_version),
            );
            let message = open(&path).unwrap_err().to_string();
            assert!(
                message.contains("v9-") && message.contains("header.schema"),
                "{message}"
            );

            let mut tampered = manifest(3);
            tampered.entries[0].key = "other".into();
            let path = write(
                dir.path(),
                &format!("tampered-{layout}.json"),
                &render(&tampered),
            );
            let message = open(&path).unwrap_err().to_string();
            assert!(
                message.contains("tampered-") && message.contains("entries_sha256"),
                "{message}"
            );

            let mut reordered = manifest(3);
            reordered.entries.swap(0, 1);
            reordered.header.entries_sha256 = entries_sha256(&reordered.entries);
            let path = write(
                dir.path(),
                &format!("order-{layout}.json"),
                &render(&reordered),
            );
            let message = open(&path).unwrap_err().to_string();
            assert!(message.contains("entries[0].rank"), "{message}");
        }

        // Cut short: the lines end inside `entries`.
        let text = lines(&manifest(10));
        let path = write(dir.path(), "short.json", &text[..text.len() - 200]);
        let message = open(&path).unwrap_err().to_string();
        assert!(message.contains("short.json"), "{message}");

        let path = write(dir.path(), "junk.json", b"{\"header\": 1}");
        let message = open(&path).unwrap_err().to_string();
        assert!(message.contains("junk.json"), "{message}");
    }

    /// A consumer that stops early stops the pass, in both readers.
    #[test]
    fn stream_stops_when_the_consumer_does() {
        let dir = tempfile::tempdir().unwrap();
        let original = manifest(1000);
        for (name, text) in [
            ("lines.json", lines(&original)),
            ("compact.json", serde_json::to_vec(&original).unwrap()),
        ] {
            let file = open(&write(dir.path(), name, &text)).unwrap();
            let mut batches = 0;
            file.stream(10, |_| {
                batches += 1;
                batches < 3
            })
            .unwrap();
            assert_eq!(batches, 3, "{name}");
        }
    }
}
