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

//! # Layout
//!
//! - this file: the types ([`ManifestFile`], [`Entry`], [`ManifestError`]) and the open file.
//! - `verify`: [`open`], the verifying pass (checksum, ranks, category totals).
//! - `lines`: the fast parser of the analyzer's one-entry-per-line layout.
//! - `any`: the general parser of any JSON layout, entries parsed in full.
//! - `stream`: reading the entries again in batches ([`ManifestFile::stream`], [`batches`]).

mod any;
mod lines;
mod stream;
mod verify;

use std::borrow::Cow;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use schemas::{MANIFEST_SCHEMA_ID, ManifestEntry, ManifestHeader};
use serde::Deserialize;

pub use stream::{batches, whole_batches};
pub use verify::{open, open_hashing_keys};

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
    /// The entry's rank in the whole manifest, from 1 (a shard's entries keep theirs).
    pub rank: u64,
    pub key: String,
    /// Index into [`ManifestFile::categories`].
    pub category: u32,
    pub requests: u64,
    pub ttl_s: Option<u32>,
}

#[cfg(test)]
impl Entry {
    /// An entry of rank 0 and no TTL, for unit tests.
    pub(crate) fn of(key: &str, category: u32, requests: u64) -> Entry {
        Entry {
            rank: 0,
            key: key.to_owned(),
            category,
            requests,
            ttl_s: None,
        }
    }
}

/// A category's share of the manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CategoryTotal {
    pub name: String,
    pub keys: u64,
    pub requests: u64,
    /// Whether its keys are shown hashed (the header's `sensitive`; see
    /// [`crate::rundir::mask`]).
    pub sensitive: bool,
}

/// A verified manifest, kept open for streaming its entries.
#[derive(Debug)]
pub struct ManifestFile {
    bytes: Bytes,
    /// Whether the entry lines are the checksummed text itself (see the module docs).
    layout: Layout,
    pub header: ManifestHeader,
    /// How many entries the run's view holds: the whole manifest's, or its shard's.
    pub entries: u64,
    /// Every category of the manifest, sorted by name, with the view's keys and requests in it.
    pub categories: Vec<CategoryTotal>,
    /// The shard the view is restricted to ([`ManifestFile::restrict`]): streaming then hands
    /// out only its entries, and entry indexes count those.
    pub shard: Option<schemas::Shard>,
    /// How many entries the whole manifest holds, whatever the view.
    pub whole_entries: u64,
    /// The report's rank curve of the whole manifest, from the verifying pass; `None` when
    /// that pass could not tell it (see `verify::Curve`).
    pub rank_curve: Option<Vec<schemas::report::RankPoint>>,
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

#[cfg(test)]
pub(crate) mod tests {
    use super::lines::positional_fields;
    use super::*;
    use chrono::Utc;
    use schemas::Manifest;
    use schemas::manifest::{Budget, ObservationWindow, Totals, entries_sha256};

    pub(crate) fn manifest(n: u64) -> Manifest {
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
    pub(crate) fn lines(manifest: &Manifest) -> Vec<u8> {
        let mut text = Vec::new();
        schemas::manifest::lines::write(manifest, &mut text).unwrap();
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
                rank: e.rank,
                key: e.key.clone(),
                category: u32::from(e.category == "pages"),
                requests: e.requests,
                ttl_s: e.ttl_s,
            })
            .collect()
    }

    /// The verifying pass hands the report its rank curve (every rank to 100, every 400th
    /// part of the manifest, the last), so the report needs no pass of its own; where it
    /// cannot tell the curve (another layout, a header that miscounts its entries) it says so
    /// and the report's own pass computes it.
    #[test]
    fn the_verifying_pass_counts_the_rank_curve() {
        let dir = tempfile::tempdir().unwrap();
        for n in [7u64, 1000, 2345] {
            let original = manifest(n);
            let step = (n / 400).max(1);
            let mut sum = 0;
            let mut expected = Vec::new();
            for entry in &original.entries {
                sum += entry.requests;
                if entry.rank <= 100 || entry.rank % step == 0 || entry.rank == n {
                    expected.push(schemas::report::RankPoint {
                        rank: entry.rank,
                        requests: sum,
                    });
                }
            }
            let path = write(dir.path(), &format!("lines-{n}.json"), &lines(&original));
            assert_eq!(
                open(&path).unwrap().rank_curve,
                Some(expected),
                "{n} entries"
            );

            let pretty = serde_json::to_vec_pretty(&original).unwrap();
            let path = write(dir.path(), &format!("pretty-{n}.json"), &pretty);
            assert_eq!(open(&path).unwrap().rank_curve, None);

            let mut miscounted = original.clone();
            miscounted.header.totals.keys_selected = n + 1;
            let path = write(
                dir.path(),
                &format!("miscounted-{n}.json"),
                &lines(&miscounted),
            );
            assert_eq!(open(&path).unwrap().rank_curve, None);
        }
    }

    /// The verifying pass can hash every entry's key on the way (what a snapshot source finds
    /// its rows by): one hash per entry, in rank order, whatever the layout, and the keys with
    /// escapes in their text hashed as the keys they spell.
    #[test]
    fn the_verifying_pass_hashes_the_keys_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let mut original = manifest(300);
        original.entries[7].key = "quoted \"key\" with a \\ and é".to_owned();
        original.header.entries_sha256 = entries_sha256(&original.entries);
        let hash =
            |key: &str| key.len() as u64 * 1_000_003 + key.bytes().map(u64::from).sum::<u64>();
        let expected: Vec<u64> = original.entries.iter().map(|e| hash(&e.key)).collect();
        // Entry lines with spaces in them: the line pass reads them all, its checksum does
        // not match, and the pass over any layout hashes the keys again.
        let spaced = String::from_utf8(lines(&original))
            .unwrap()
            .replace("{\"rank\":", "{\"rank\": ");
        for (name, text) in [
            ("lines.json", lines(&original)),
            ("spaced.json", spaced.into_bytes()),
            ("pretty.json", serde_json::to_vec_pretty(&original).unwrap()),
        ] {
            let path = write(dir.path(), name, &text);
            let (manifest, hashes) = open_hashing_keys(&path, hash).unwrap();
            assert_eq!(manifest.entries, 300, "{name}");
            assert_eq!(hashes, expected, "{name}");
        }
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

    proptest::proptest! {
        /// For any key, category, rank, request count and TTL, the positional reader takes
        /// what serde_json takes from the line `analyzer rank` writes, or leaves the line to
        /// serde_json when a string needs escapes.
        #[test]
        fn positional_reader_agrees_with_serde_on_any_entry(
            key in proptest::prelude::any::<String>(),
            category in "[a-z]{1,8}|\\PC{0,8}",
            rank in proptest::prelude::any::<u64>(),
            requests in proptest::prelude::any::<u64>(),
            ttl_s in proptest::option::of(proptest::prelude::any::<u32>()),
        ) {
            let mut entry = manifest(1).entries.remove(0);
            (entry.key, entry.category, entry.rank, entry.requests, entry.ttl_s) =
                (key, category, rank, requests, ttl_s);
            let line = serde_json::to_vec(&entry).unwrap();
            let serde: EntryFields<'_> = serde_json::from_slice(&line).unwrap();
            match positional_fields(&line) {
                Some(fields) => proptest::prop_assert_eq!(
                    (fields.rank, &*fields.key, &*fields.category, fields.requests, fields.ttl_s),
                    (serde.rank, &*serde.key, &*serde.category, serde.requests, serde.ttl_s)
                ),
                None => {
                    let escaped = |text: &str| serde_json::to_string(text).unwrap().len() != text.len() + 2;
                    proptest::prop_assert!(escaped(&entry.key) || escaped(&entry.category), "{entry:?}");
                }
            }
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
