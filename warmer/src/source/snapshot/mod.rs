//! Snapshots: a Parquet file of `key` (utf8), `value` (binary), `expires_at` (timestamp µs
//! UTC, null when the entry does not expire), `flags` (uint32: memcached's client flags) and
//! `encoding` (utf8: `raw`, or `redis-dump` for a Redis value of another type than a string,
//! see [`ValueEncoding`]), written from a warm store by `warmer snapshot` and kept between
//! deploys. The file's key-value metadata says which kind of store the values came from
//! ([`SOURCE_KIND_KEY`]), for the run's cross-kind check.
//!
//! Snapshots written by other tools read too: only `key` and `value` are required (a snapshot
//! without `flags` or `encoding`, as written before they existed, has flags 0 and raw values;
//! one without `expires_at` never expires); `key` and `value` may be strings or binary of any
//! offset size, `expires_at` a timestamp of any unit (one without a time zone is taken as UTC),
//! `flags` any integer type; rows in any order and row groups of any size; and every codec
//! Parquet writers use by default (snappy, gzip, lz4, zstd). The Arrow schema a writer embeds
//! is not used (see [`reader`]): the Parquet types are.
//!
//! `read.rs` reads a snapshot in step with the manifest, `columns.rs` takes its columns in
//! whatever layout and types the writer used, and `write.rs` writes one.

mod columns;
mod read;
mod write;

use std::hash::Hasher;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};

pub use read::{Snapshot, snapshot_kind};
pub use write::{SnapshotWriter, write_snapshot};

/// The key in a snapshot file's key-value metadata that names the kind of store its values
/// came from (`redis`, `memcached`, `sql`).
pub const SOURCE_KIND_KEY: &str = "cachewarm.source_kind";

/// Errors reading or writing a snapshot; they name the file.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("failed to open snapshot `{path}`")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to read snapshot `{path}`")]
    Parquet {
        path: PathBuf,
        #[source]
        source: parquet::errors::ParquetError,
    },
    #[error("snapshot `{path}`: column `{column}` {problem}")]
    Column {
        path: PathBuf,
        column: &'static str,
        problem: String,
    },
    #[error("snapshot `{path}`: metadata `{SOURCE_KIND_KEY}` is `{value}`, not a store kind")]
    SourceKind { path: PathBuf, value: String },
}

/// The snapshot's Arrow schema.
pub fn snapshot_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("key", DataType::Utf8, false),
        Field::new("value", DataType::Binary, false),
        Field::new(
            "expires_at",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            true,
        ),
        Field::new("flags", DataType::UInt32, false),
        Field::new("encoding", DataType::Utf8, false),
    ]))
}

/// The hash that stands for a key in the snapshot's lists (fixed keys: the same in every
/// pass).
pub fn key_hash(key: &str) -> u64 {
    let mut hasher = std::hash::DefaultHasher::new();
    hasher.write(key.as_bytes());
    hasher.finish()
}

fn parquet_error(path: &Path, source: parquet::errors::ParquetError) -> SnapshotError {
    SnapshotError::Parquet {
        path: path.to_path_buf(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use std::fs::File;
    use std::time::Duration;

    use arrow_array::{RecordBatch, StringArray};
    use chrono::Utc;
    use parquet::arrow::ArrowWriter;
    use parquet::basic::Compression;
    use parquet::file::properties::WriterProperties;

    use super::*;
    use crate::store::{Fetched, StoreKind, ValueEncoding};

    /// Write → read keeps values byte for byte and turns expiry times back into remaining TTLs.
    #[test]
    fn round_trip_keeps_values_and_expiry() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("snap.parquet");
        let now = Utc::now();
        let expiring = Fetched {
            value: vec![0, 159, 146, 150],
            ttl: Some(Duration::from_secs(300)),
            flags: 1,
            encoding: ValueEncoding::Raw,
        };
        let forever = Fetched {
            value: b"plain".to_vec(),
            ttl: None,
            flags: 0,
            encoding: ValueEncoding::RedisDump,
        };
        let written = write_snapshot(
            &path,
            Some(StoreKind::Redis),
            [("a", &expiring), ("b", &forever)],
            now,
        )
        .unwrap();
        assert_eq!(written, 2);

        let snapshot = Snapshot::open(&path, hashes(&["a", "b", "c"])).unwrap();
        assert_eq!(snapshot.len(), 2);
        assert_eq!(snapshot.source_kind(), Some(StoreKind::Redis));
        let fetched = snapshot.fetch(&["a", "b", "c"], now).unwrap();
        assert_eq!(fetched[0].as_ref().unwrap().value, expiring.value);
        assert_eq!(fetched[0].as_ref().unwrap().ttl, expiring.ttl);
        assert_eq!(fetched[0].as_ref().unwrap().flags, 1);
        assert_eq!(fetched[1].as_ref(), Some(&forever));
        assert_eq!(fetched[2], None);

        // After expiry the entry is gone.
        let snapshot = Snapshot::open(&path, hashes(&["a"])).unwrap();
        let later = now + chrono::Duration::seconds(301);
        assert_eq!(snapshot.fetch(&["a"], later).unwrap(), [None]);
    }

    /// A snapshot in the three-column layout of before flags and encodings, as another tool
    /// writes it: large strings for keys, strings for values, millisecond expiry times, gzip.
    /// It reads with flags 0 and raw values, and no source kind.
    #[test]
    fn reads_older_and_foreign_layouts() {
        use arrow_array::{LargeStringArray, TimestampMillisecondArray};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.parquet");
        let now = Utc::now();
        let later = now.timestamp_millis() + 600_000;
        let schema = Arc::new(Schema::new(vec![
            Field::new("key", DataType::LargeUtf8, false),
            Field::new("value", DataType::Utf8, false),
            Field::new(
                "expires_at",
                DataType::Timestamp(TimeUnit::Millisecond, None),
                true,
            ),
        ]));
        let batch = RecordBatch::try_new(
            Arc::clone(&schema),
            vec![
                Arc::new(LargeStringArray::from(vec!["b", "a"])),
                Arc::new(StringArray::from(vec!["vb", "va"])),
                Arc::new(TimestampMillisecondArray::from(vec![Some(later), None])),
            ],
        )
        .unwrap();
        let properties = WriterProperties::builder()
            .set_compression(Compression::GZIP(Default::default()))
            .build();
        let mut writer =
            ArrowWriter::try_new(File::create(&path).unwrap(), schema, Some(properties)).unwrap();
        writer.write(&batch).unwrap();
        writer.close().unwrap();

        let snapshot = Snapshot::open(&path, hashes(&["a", "b"])).unwrap();
        assert_eq!(snapshot.source_kind(), None);
        let fetched = snapshot.fetch(&["a", "b"], now).unwrap();
        let a = fetched[0].as_ref().unwrap();
        assert_eq!((a.value.as_slice(), a.ttl, a.flags), (&b"va"[..], None, 0));
        assert_eq!(a.encoding, ValueEncoding::Raw);
        let b = fetched[1].as_ref().unwrap();
        let ttl = b.ttl.unwrap().as_secs();
        assert!((598..=600).contains(&ttl), "{ttl}");
    }

    fn hashes(keys: &[&str]) -> Vec<u64> {
        let mut hashes: Vec<u64> = keys.iter().map(|k| key_hash(k)).collect();
        hashes.sort_unstable();
        hashes
    }

    /// A snapshot taken from another manifest: rows in another order, rows of keys the
    /// manifest does not have, keys it does not hold. Every key still gets its own value, and
    /// no row is kept aside once its key has been asked for.
    #[test]
    fn reads_in_step_with_a_manifest_of_another_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("snap.parquet");
        let now = Utc::now();
        let value = |v: &str| Fetched {
            value: v.as_bytes().to_vec(),
            ttl: None,
            flags: 0,
            encoding: ValueEncoding::Raw,
        };
        let rows: Vec<(String, Fetched)> = (0..40_000)
            .map(|i| (format!("k{i}"), value(&format!("v{i}"))))
            .collect();
        write_snapshot(
            &path,
            Some(StoreKind::Memcached),
            rows.iter().map(|(k, f)| (k.as_str(), f)),
            now,
        )
        .unwrap();
        // The manifest: odd keys from the end, one key the snapshot lacks, even keys in order.
        let mut manifest: Vec<String> = (0..40_000)
            .rev()
            .filter(|i| i % 2 == 1)
            .map(|i| format!("k{i}"))
            .collect();
        manifest.push("absent".into());
        manifest.extend((0..40_000).filter(|i| i % 4 == 0).map(|i| format!("k{i}")));
        let keys: Vec<&str> = manifest.iter().map(String::as_str).collect();
        let snapshot = Snapshot::open(&path, hashes(&keys)).unwrap();
        for chunk in keys.chunks(500) {
            let fetched = snapshot.fetch(chunk, now).unwrap();
            for (key, fetched) in chunk.iter().zip(fetched) {
                let expected = key.strip_prefix('k').map(|n| format!("v{n}"));
                assert_eq!(
                    fetched.map(|f| String::from_utf8(f.value).unwrap()),
                    expected
                );
            }
        }
        assert_eq!(snapshot.kept_aside(), 0);
    }
}
