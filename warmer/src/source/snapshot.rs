//! Snapshots: a Parquet file of `key` (utf8), `value` (binary) and `expires_at` (timestamp µs
//! UTC, null when the entry does not expire), written from a warm store by `warmer snapshot`
//! and kept between deploys.

use std::collections::HashMap;
use std::fs::File;
use std::hash::Hasher;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arrow_array::builder::{BinaryBuilder, StringBuilder, TimestampMicrosecondBuilder};
use arrow_array::{Array, BinaryArray, RecordBatch, StringArray, TimestampMicrosecondArray};
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use chrono::{DateTime, Utc};
use parquet::arrow::arrow_reader::{ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder};
use parquet::arrow::{ArrowWriter, ProjectionMask};
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;

use crate::store::{Fetched, ValueEncoding};

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

/// Rows decoded per read of the snapshot.
const ROWS_PER_READ: usize = 4096;
/// Rows per row group when writing: a writer holds one row group in memory.
const ROWS_PER_GROUP: usize = 16 * 1024;

/// A snapshot read as a stream, in step with the manifest.
///
/// `warmer snapshot` writes the rows in the manifest's rank order, and a run asks for keys in
/// rank order, so the file is read once from start to end and each row is used as it comes:
/// memory stays flat whatever the size of the file. A row that comes before its key is asked
/// for (the snapshot was taken from an older manifest) is kept aside until then; rows whose key
/// is not in the manifest are skipped, and a key that is not in the snapshot is a miss at once,
/// without reading ahead. Both need to know which manifest keys the snapshot holds: at open,
/// one pass over the snapshot's `key` column leaves a sorted list of the 64-bit hashes of those
/// keys (8 bytes per manifest entry; the only state that grows with the manifest).
#[derive(Debug)]
pub struct Snapshot {
    cursor: Mutex<Cursor>,
}

struct Cursor {
    path: PathBuf,
    rows: ParquetRecordBatchReader,
    /// The batch being read and the next row in it.
    batch: Option<(RecordBatch, usize)>,
    /// Hashes of the manifest keys the snapshot holds, sorted.
    wanted: Vec<u64>,
    /// Rows read before their key was asked for: key → (value, expires_at µs).
    early: HashMap<String, Row>,
}

/// A row's value and expiry (µs since the epoch; `None`: no expiry).
type Row = (Vec<u8>, Option<i64>);

impl std::fmt::Debug for Cursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cursor")
            .field("path", &self.path)
            .field("wanted", &self.wanted.len())
            .field("early", &self.early.len())
            .finish()
    }
}

/// The hash that stands for a key in the snapshot's lists (fixed keys: the same in every
/// pass).
pub fn key_hash(key: &str) -> u64 {
    let mut hasher = std::hash::DefaultHasher::new();
    hasher.write(key.as_bytes());
    hasher.finish()
}

impl Snapshot {
    /// Opens the snapshot at `path` for the manifest keys whose [`key_hash`]es are
    /// `manifest_keys` (sorted, deduplicated).
    pub fn open(path: &Path, mut manifest_keys: Vec<u64>) -> Result<Snapshot, SnapshotError> {
        // Which manifest keys the snapshot holds: one pass over the key column only.
        let mut held = vec![false; manifest_keys.len()];
        let keys_only = |builder: ParquetRecordBatchReaderBuilder<File>| {
            let mask = ProjectionMask::columns(builder.parquet_schema(), ["key"]);
            builder.with_projection(mask)
        };
        for batch in reader(path, keys_only)? {
            let batch = batch.map_err(|e| parquet_error(path, e.into()))?;
            let keys = column::<StringArray>(path, &batch, "key", "utf8")?;
            for key in keys.iter().flatten() {
                if let Ok(i) = manifest_keys.binary_search(&key_hash(key)) {
                    held[i] = true;
                }
            }
        }
        let mut held = held.into_iter();
        manifest_keys.retain(|_| held.next().unwrap_or(false));
        manifest_keys.shrink_to_fit();
        Ok(Snapshot {
            cursor: Mutex::new(Cursor {
                path: path.to_path_buf(),
                rows: reader(path, |builder| builder)?,
                batch: None,
                wanted: manifest_keys,
                early: HashMap::new(),
            }),
        })
    }

    /// The entries of `keys` that are still live at `now`. Blocking (it decodes the file).
    pub fn fetch(
        &self,
        keys: &[&str],
        now: DateTime<Utc>,
    ) -> Result<Vec<Option<Fetched>>, SnapshotError> {
        let now_us = now.timestamp_micros();
        let mut cursor = self
            .cursor
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        keys.iter()
            .map(|key| {
                let Some((value, expires_at)) = cursor.find(key)? else {
                    return Ok(None);
                };
                let ttl = match expires_at {
                    None => None,
                    Some(at) if at <= now_us => return Ok(None),
                    Some(at) => Some(Duration::from_micros((at - now_us) as u64)),
                };
                Ok(Some(Fetched {
                    value,
                    ttl,
                    flags: 0,
                    encoding: ValueEncoding::Raw,
                }))
            })
            .collect()
    }

    /// How many manifest keys the snapshot holds.
    pub fn len(&self) -> usize {
        self.cursor.lock().map_or(0, |cursor| cursor.wanted.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Cursor {
    /// The row of `key`: kept aside earlier, or read on to (rows of other manifest keys kept
    /// aside on the way).
    fn find(&mut self, key: &str) -> Result<Option<Row>, SnapshotError> {
        if self.wanted.binary_search(&key_hash(key)).is_err() {
            return Ok(None);
        }
        if let Some(row) = self.early.remove(key) {
            return Ok(Some(row));
        }
        loop {
            let (batch, row) = match &mut self.batch {
                Some((batch, row)) if *row < batch.num_rows() => (batch, row),
                _ => match self.rows.next() {
                    Some(batch) => {
                        let batch = batch.map_err(|e| parquet_error(&self.path, e.into()))?;
                        self.batch = Some((batch, 0));
                        continue;
                    }
                    None => return Ok(None),
                },
            };
            let index = *row;
            *row += 1;
            let keys = column::<StringArray>(&self.path, batch, "key", "utf8")?;
            let values = column::<BinaryArray>(&self.path, batch, "value", "binary")?;
            let expires = column::<TimestampMicrosecondArray>(
                &self.path,
                batch,
                "expires_at",
                "timestamp[us]",
            )?;
            if keys.is_null(index) || values.is_null(index) {
                continue;
            }
            let found = keys.value(index);
            if self.wanted.binary_search(&key_hash(found)).is_err() {
                continue;
            }
            let row = (
                values.value(index).to_vec(),
                (!expires.is_null(index)).then(|| expires.value(index)),
            );
            if found == key {
                return Ok(Some(row));
            }
            self.early.insert(found.to_owned(), row);
        }
    }
}

fn parquet_error(path: &Path, source: parquet::errors::ParquetError) -> SnapshotError {
    SnapshotError::Parquet {
        path: path.to_path_buf(),
        source,
    }
}

/// A reader of the snapshot at `path`, `configure`d (a projection, say).
fn reader(
    path: &Path,
    configure: impl FnOnce(
        ParquetRecordBatchReaderBuilder<File>,
    ) -> ParquetRecordBatchReaderBuilder<File>,
) -> Result<ParquetRecordBatchReader, SnapshotError> {
    let file = File::open(path).map_err(|source| SnapshotError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file)
        .map_err(|e| parquet_error(path, e))?
        .with_batch_size(ROWS_PER_READ);
    configure(builder)
        .build()
        .map_err(|e| parquet_error(path, e))
}

/// The column `name` of `batch` as an `A`.
fn column<'b, A: Array + 'static>(
    path: &Path,
    batch: &'b RecordBatch,
    name: &'static str,
    kind: &str,
) -> Result<&'b A, SnapshotError> {
    batch
        .column_by_name(name)
        .and_then(|c| c.as_any().downcast_ref::<A>())
        .ok_or_else(|| SnapshotError::Column {
            path: path.to_path_buf(),
            column: name,
            problem: format!("is missing or not {kind}"),
        })
}

/// Writes a snapshot row group by row group: memory holds one row group, whatever the number
/// of rows. The file appears under its name only when [`SnapshotWriter::finish`] succeeds.
pub struct SnapshotWriter {
    path: PathBuf,
    temp: PathBuf,
    writer: ArrowWriter<File>,
    now: DateTime<Utc>,
    keys: StringBuilder,
    values: BinaryBuilder,
    expires: TimestampMicrosecondBuilder,
    buffered: usize,
    rows: u64,
}

impl std::fmt::Debug for SnapshotWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SnapshotWriter")
            .field("path", &self.path)
            .field("rows", &self.rows)
            .finish()
    }
}

impl SnapshotWriter {
    /// Starts a snapshot at `path`, taken at `now` (remaining TTLs become expiry times).
    pub fn create(path: &Path, now: DateTime<Utc>) -> Result<SnapshotWriter, SnapshotError> {
        let temp = path.with_extension("parquet.tmp");
        let file = File::create(&temp).map_err(|source| SnapshotError::Io {
            path: temp.clone(),
            source,
        })?;
        let properties = WriterProperties::builder()
            .set_compression(Compression::ZSTD(
                ZstdLevel::try_new(3).expect("valid level"),
            ))
            .set_max_row_group_row_count(Some(ROWS_PER_GROUP))
            .build();
        let writer = ArrowWriter::try_new(file, snapshot_schema(), Some(properties))
            .map_err(|e| parquet_error(path, e))?;
        Ok(SnapshotWriter {
            path: path.to_path_buf(),
            temp,
            writer,
            now,
            keys: StringBuilder::new(),
            values: BinaryBuilder::new(),
            expires: TimestampMicrosecondBuilder::new(),
            buffered: 0,
            rows: 0,
        })
    }

    /// Adds one row.
    pub fn push(&mut self, key: &str, fetched: &Fetched) -> Result<(), SnapshotError> {
        self.keys.append_value(key);
        self.values.append_value(&fetched.value);
        self.expires.append_option(fetched.ttl.map(|ttl| {
            self.now
                .timestamp_micros()
                .saturating_add(i64::try_from(ttl.as_micros()).unwrap_or(i64::MAX))
        }));
        self.buffered += 1;
        self.rows += 1;
        if self.buffered == ROWS_PER_GROUP {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), SnapshotError> {
        if self.buffered == 0 {
            return Ok(());
        }
        self.buffered = 0;
        let batch = RecordBatch::try_new(
            snapshot_schema(),
            vec![
                Arc::new(self.keys.finish()),
                Arc::new(self.values.finish()),
                Arc::new(self.expires.finish().with_timezone("UTC")),
            ],
        )
        .map_err(|e| parquet_error(&self.path, e.into()))?;
        self.writer
            .write(&batch)
            .map_err(|e| parquet_error(&self.path, e))
    }

    /// Finishes the file and gives it its name; returns the number of rows.
    pub fn finish(mut self) -> Result<u64, SnapshotError> {
        self.flush()?;
        self.writer
            .close()
            .map_err(|e| parquet_error(&self.path, e))?;
        std::fs::rename(&self.temp, &self.path).map_err(|source| SnapshotError::Io {
            path: self.path.clone(),
            source,
        })?;
        Ok(self.rows)
    }
}

/// Writes `(key, fetched)` pairs as a snapshot at `path`, taken at `now`.
pub fn write_snapshot<'a>(
    path: &Path,
    rows: impl IntoIterator<Item = (&'a str, &'a Fetched)>,
    now: DateTime<Utc>,
) -> Result<u64, SnapshotError> {
    let mut writer = SnapshotWriter::create(path, now)?;
    for (key, fetched) in rows {
        writer.push(key, fetched)?;
    }
    writer.finish()
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
            flags: 0,
            encoding: ValueEncoding::Raw,
        };
        let forever = Fetched {
            value: b"plain".to_vec(),
            ttl: None,
            flags: 0,
            encoding: ValueEncoding::Raw,
        };
        let written = write_snapshot(&path, [("a", &expiring), ("b", &forever)], now).unwrap();
        assert_eq!(written, 2);

        let snapshot = Snapshot::open(&path, hashes(&["a", "b", "c"])).unwrap();
        assert_eq!(snapshot.len(), 2);
        let fetched = snapshot.fetch(&["a", "b", "c"], now).unwrap();
        assert_eq!(fetched[0].as_ref().unwrap().value, expiring.value);
        assert_eq!(fetched[0].as_ref().unwrap().ttl, expiring.ttl);
        assert_eq!(fetched[1].as_ref(), Some(&forever));
        assert_eq!(fetched[2], None);

        // After expiry the entry is gone.
        let snapshot = Snapshot::open(&path, hashes(&["a"])).unwrap();
        let later = now + chrono::Duration::seconds(301);
        assert_eq!(snapshot.fetch(&["a"], later).unwrap(), [None]);
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
        write_snapshot(&path, rows.iter().map(|(k, f)| (k.as_str(), f)), now).unwrap();
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
        assert!(snapshot.cursor.lock().unwrap().early.is_empty());
    }
}
