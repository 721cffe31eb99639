//! Snapshots: a Parquet file of `key` (utf8), `value` (binary) and `expires_at` (timestamp µs
//! UTC, null when the entry does not expire), written from a warm store by `warmer snapshot`
//! and kept between deploys.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arrow_array::builder::{BinaryBuilder, StringBuilder, TimestampMicrosecondBuilder};
use arrow_array::{Array, BinaryArray, RecordBatch, StringArray, TimestampMicrosecondArray};
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use chrono::{DateTime, Utc};
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;

use crate::store::Fetched;

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
    ]))
}

/// A snapshot loaded in memory.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// key → (value, expires_at in µs since the epoch).
    entries: HashMap<String, (Vec<u8>, Option<i64>)>,
}

impl Snapshot {
    /// Loads the snapshot at `path`, keeping only `wanted` keys when given.
    pub fn load(path: &Path, wanted: Option<&HashSet<String>>) -> Result<Snapshot, SnapshotError> {
        let parquet_error = |source| SnapshotError::Parquet {
            path: path.to_path_buf(),
            source,
        };
        let column_error = |column: &'static str, problem: &str| SnapshotError::Column {
            path: path.to_path_buf(),
            column,
            problem: problem.to_owned(),
        };
        let file = File::open(path).map_err(|source| SnapshotError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let reader = ParquetRecordBatchReaderBuilder::try_new(file)
            .map_err(parquet_error)?
            .build()
            .map_err(parquet_error)?;
        let mut entries = HashMap::new();
        for batch in reader {
            let batch = batch.map_err(|e| parquet_error(e.into()))?;
            let keys = batch
                .column_by_name("key")
                .and_then(|c| c.as_any().downcast_ref::<StringArray>())
                .ok_or_else(|| column_error("key", "is missing or not utf8"))?;
            let values = batch
                .column_by_name("value")
                .and_then(|c| c.as_any().downcast_ref::<BinaryArray>())
                .ok_or_else(|| column_error("value", "is missing or not binary"))?;
            let expires = batch
                .column_by_name("expires_at")
                .and_then(|c| c.as_any().downcast_ref::<TimestampMicrosecondArray>())
                .ok_or_else(|| column_error("expires_at", "is missing or not timestamp[us]"))?;
            for row in 0..batch.num_rows() {
                if keys.is_null(row) || values.is_null(row) {
                    continue;
                }
                let key = keys.value(row);
                if wanted.is_some_and(|wanted| !wanted.contains(key)) {
                    continue;
                }
                let expires_at = (!expires.is_null(row)).then(|| expires.value(row));
                entries.insert(key.to_owned(), (values.value(row).to_vec(), expires_at));
            }
        }
        Ok(Snapshot { entries })
    }

    /// The entries of `keys` that are still live at `now`.
    pub fn fetch(&self, keys: &[&str], now: DateTime<Utc>) -> Vec<Option<Fetched>> {
        let now_us = now.timestamp_micros();
        keys.iter()
            .map(|key| {
                let (value, expires_at) = self.entries.get(*key)?;
                let ttl = match expires_at {
                    None => None,
                    Some(at) if *at <= now_us => return None,
                    Some(at) => Some(Duration::from_micros((at - now_us) as u64)),
                };
                Some(Fetched {
                    value: value.clone(),
                    ttl,
                })
            })
            .collect()
    }

    /// How many entries were loaded.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// Writes `(key, fetched)` pairs as a snapshot at `path`, taken at `now`.
pub fn write_snapshot<'a>(
    path: &Path,
    rows: impl IntoIterator<Item = (&'a str, &'a Fetched)>,
    now: DateTime<Utc>,
) -> Result<u64, SnapshotError> {
    let parquet_error = |source| SnapshotError::Parquet {
        path: path.to_path_buf(),
        source,
    };
    let mut keys = StringBuilder::new();
    let mut values = BinaryBuilder::new();
    let mut expires = TimestampMicrosecondBuilder::new();
    let mut count = 0;
    for (key, fetched) in rows {
        keys.append_value(key);
        values.append_value(&fetched.value);
        expires.append_option(fetched.ttl.map(|ttl| {
            now.timestamp_micros()
                .saturating_add(i64::try_from(ttl.as_micros()).unwrap_or(i64::MAX))
        }));
        count += 1;
    }
    let schema = snapshot_schema();
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(keys.finish()),
            Arc::new(values.finish()),
            Arc::new(expires.finish().with_timezone("UTC")),
        ],
    )
    .map_err(|e| parquet_error(e.into()))?;
    let temp = path.with_extension("parquet.tmp");
    let file = File::create(&temp).map_err(|source| SnapshotError::Io {
        path: temp.clone(),
        source,
    })?;
    let properties = WriterProperties::builder()
        .set_compression(Compression::ZSTD(
            ZstdLevel::try_new(3).expect("valid level"),
        ))
        .build();
    let mut writer = ArrowWriter::try_new(file, schema, Some(properties)).map_err(parquet_error)?;
    writer.write(&batch).map_err(parquet_error)?;
    writer.close().map_err(parquet_error)?;
    std::fs::rename(&temp, path).map_err(|source| SnapshotError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(count)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Write → read keeps values byte for byte and turns expiry times back into remaining TTLs.
    #[test]
    fn round_trip_keeps_values_and_expiry() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("snap.parquet");
        let now = Utc::now();
        let expiring = Fetched {
            value: vec![0, 159, 146, 150],
            ttl: Some(Duration::from_secs(300)),
        };
        let forever = Fetched {
            value: b"plain".to_vec(),
            ttl: None,
        };
        let written = write_snapshot(&path, [("a", &expiring), ("b", &forever)], now).unwrap();
        assert_eq!(written, 2);

        let snapshot = Snapshot::load(&path, None).unwrap();
        let fetched = snapshot.fetch(&["a", "b", "c"], now);
        assert_eq!(fetched[0].as_ref().unwrap().value, expiring.value);
        assert_eq!(fetched[0].as_ref().unwrap().ttl, expiring.ttl);
        assert_eq!(fetched[1].as_ref(), Some(&forever));
        assert_eq!(fetched[2], None);

        // After expiry the entry is gone.
        let later = now + chrono::Duration::seconds(301);
        assert_eq!(snapshot.fetch(&["a"], later), [None]);

        let only_b: HashSet<String> = ["b".to_owned()].into();
        assert_eq!(Snapshot::load(&path, Some(&only_b)).unwrap().len(), 1);
    }
}
