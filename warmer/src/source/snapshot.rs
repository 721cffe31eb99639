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

use std::collections::HashMap;
use std::fs::File;
use std::hash::Hasher;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arrow_array::builder::{
    BinaryBuilder, StringBuilder, TimestampMicrosecondBuilder, UInt32Builder,
};
use arrow_array::cast::AsArray;
use arrow_array::types::{
    Int32Type, Int64Type, TimestampMicrosecondType, TimestampMillisecondType,
    TimestampNanosecondType, TimestampSecondType, UInt32Type, UInt64Type,
};
use arrow_array::{Array, ArrayRef, BinaryArray, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use chrono::{DateTime, Utc};
use parquet::arrow::arrow_reader::{
    ArrowReaderOptions, ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder,
};
use parquet::arrow::{ArrowWriter, ProjectionMask};
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;

use crate::store::{Fetched, StoreKind, ValueEncoding};

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
    /// The kind of store the values came from, where the file says.
    source_kind: Option<StoreKind>,
}

struct Cursor {
    path: PathBuf,
    rows: ParquetRecordBatchReader,
    /// The batch being read and the next row in it.
    batch: Option<(Columns, usize)>,
    /// Hashes of the manifest keys the snapshot holds, sorted.
    wanted: Vec<u64>,
    /// Rows read before their key was asked for.
    early: HashMap<String, Row>,
}

/// One row's value and what goes with it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Row {
    value: Vec<u8>,
    /// µs since the epoch; `None`: no expiry.
    expires_at: Option<i64>,
    flags: u32,
    encoding: ValueEncoding,
}

/// A batch of rows, its columns read into the types the snapshot's rows need.
struct Columns {
    keys: StringArray,
    values: BinaryArray,
    expires_at: Option<ArrayRef>,
    flags: Option<Vec<u32>>,
    encodings: Option<Vec<ValueEncoding>>,
}

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
        let (keys_reader, source_kind) = reader(path, keys_only)?;
        for batch in keys_reader {
            let batch = batch.map_err(|e| parquet_error(path, e.into()))?;
            let keys = key_column(path, &batch)?;
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
                rows: reader(path, |builder| builder)?.0,
                batch: None,
                wanted: manifest_keys,
                early: HashMap::new(),
            }),
            source_kind,
        })
    }

    /// The kind of store the snapshot's values came from, where the file says (snapshots
    /// from other tools, and from before the warmer recorded it, do not).
    pub fn source_kind(&self) -> Option<StoreKind> {
        self.source_kind
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
                let Some(row) = cursor.find(key)? else {
                    return Ok(None);
                };
                let ttl = match row.expires_at {
                    None => None,
                    Some(at) if at <= now_us => return Ok(None),
                    Some(at) => Some(Duration::from_micros((at - now_us) as u64)),
                };
                Ok(Some(Fetched {
                    value: row.value,
                    ttl,
                    flags: row.flags,
                    encoding: row.encoding,
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
                Some((batch, row)) if *row < batch.keys.len() => (batch, row),
                _ => match self.rows.next() {
                    Some(batch) => {
                        let batch = batch.map_err(|e| parquet_error(&self.path, e.into()))?;
                        self.batch = Some((Columns::read(&self.path, &batch)?, 0));
                        continue;
                    }
                    None => return Ok(None),
                },
            };
            let index = *row;
            *row += 1;
            if batch.keys.is_null(index) || batch.values.is_null(index) {
                continue;
            }
            let found = batch.keys.value(index);
            if self.wanted.binary_search(&key_hash(found)).is_err() {
                continue;
            }
            let row = batch.row(index);
            if found == key {
                return Ok(Some(row));
            }
            self.early.insert(found.to_owned(), row);
        }
    }
}

/// The kind of store the snapshot at `path` says its values came from (read from the file's
/// footer only); `None` when it does not say or cannot be read.
pub fn snapshot_kind(path: &Path) -> Option<StoreKind> {
    reader(path, |builder| builder).ok()?.1
}

fn parquet_error(path: &Path, source: parquet::errors::ParquetError) -> SnapshotError {
    SnapshotError::Parquet {
        path: path.to_path_buf(),
        source,
    }
}

/// A reader of the snapshot at `path`, `configure`d (a projection, say), and the kind of
/// store the file says its values came from.
///
/// The Arrow schema a writer embeds is skipped: columns come in the types the Parquet schema
/// gives (strings as `Utf8`, whatever offset size or dictionary pyarrow or polars wrote them
/// with), so one set of types is read whoever wrote the file.
fn reader(
    path: &Path,
    configure: impl FnOnce(
        ParquetRecordBatchReaderBuilder<File>,
    ) -> ParquetRecordBatchReaderBuilder<File>,
) -> Result<(ParquetRecordBatchReader, Option<StoreKind>), SnapshotError> {
    let file = File::open(path).map_err(|source| SnapshotError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let options = ArrowReaderOptions::new().with_skip_arrow_metadata(true);
    let builder = ParquetRecordBatchReaderBuilder::try_new_with_options(file, options)
        .map_err(|e| parquet_error(path, e))?
        .with_batch_size(ROWS_PER_READ);
    let kind = builder
        .metadata()
        .file_metadata()
        .key_value_metadata()
        .and_then(|pairs| pairs.iter().find(|pair| pair.key == SOURCE_KIND_KEY))
        .and_then(|pair| pair.value.clone());
    let kind = match kind {
        None => None,
        Some(text) => Some(
            text.parse::<StoreKind>()
                .map_err(|_| SnapshotError::SourceKind {
                    path: path.to_path_buf(),
                    value: text,
                })?,
        ),
    };
    let reader = configure(builder)
        .build()
        .map_err(|e| parquet_error(path, e))?;
    Ok((reader, kind))
}

/// A column problem in the snapshot at `path`.
fn column_error(path: &Path, column: &'static str, problem: impl Into<String>) -> SnapshotError {
    SnapshotError::Column {
        path: path.to_path_buf(),
        column,
        problem: problem.into(),
    }
}

/// The `key` column of `batch`.
fn key_column(path: &Path, batch: &RecordBatch) -> Result<StringArray, SnapshotError> {
    let column = batch
        .column_by_name("key")
        .ok_or_else(|| column_error(path, "key", "is missing"))?;
    match column.data_type() {
        DataType::Utf8 => Ok(column.as_string::<i32>().clone()),
        DataType::Binary => StringArray::try_from_binary(column.as_binary::<i32>().clone())
            .map_err(|e| column_error(path, "key", format!("is not UTF-8: {e}"))),
        other => Err(column_error(
            path,
            "key",
            format!("is {other}, not a string"),
        )),
    }
}

impl Columns {
    /// The columns of `batch`, checked: `key` and `value` are required, the others optional.
    fn read(path: &Path, batch: &RecordBatch) -> Result<Columns, SnapshotError> {
        let keys = key_column(path, batch)?;
        let value = batch
            .column_by_name("value")
            .ok_or_else(|| column_error(path, "value", "is missing"))?;
        let values = match value.data_type() {
            DataType::Binary => value.as_binary::<i32>().clone(),
            DataType::Utf8 => BinaryArray::from(value.as_string::<i32>().clone()),
            other => {
                return Err(column_error(
                    path,
                    "value",
                    format!("is {other}, not binary or a string"),
                ));
            }
        };
        let expires_at = match batch.column_by_name("expires_at") {
            None => None,
            Some(column) => match column.data_type() {
                DataType::Timestamp(..) | DataType::Null => Some(Arc::clone(column)),
                other => {
                    return Err(column_error(
                        path,
                        "expires_at",
                        format!("is {other}, not a timestamp"),
                    ));
                }
            },
        };
        let flags = match batch.column_by_name("flags") {
            None => None,
            Some(column) => Some(flags_column(path, column)?),
        };
        let encodings = match batch.column_by_name("encoding") {
            None => None,
            Some(column) if column.data_type() == &DataType::Utf8 => Some(
                column
                    .as_string::<i32>()
                    .iter()
                    .map(|name| match name {
                        None => Ok(ValueEncoding::Raw),
                        Some(name) => ValueEncoding::from_name(name).ok_or_else(|| {
                            column_error(
                                path,
                                "encoding",
                                format!("holds `{name}`; known encodings: raw, redis-dump"),
                            )
                        }),
                    })
                    .collect::<Result<_, _>>()?,
            ),
            Some(column) => {
                return Err(column_error(
                    path,
                    "encoding",
                    format!("is {}, not a string", column.data_type()),
                ));
            }
        };
        Ok(Columns {
            keys,
            values,
            expires_at,
            flags,
            encodings,
        })
    }

    /// Row `index` (its key and value are not null).
    fn row(&self, index: usize) -> Row {
        Row {
            value: self.values.value(index).to_vec(),
            expires_at: self
                .expires_at
                .as_ref()
                .and_then(|column| expiry_micros(column, index)),
            flags: self.flags.as_ref().map_or(0, |flags| flags[index]),
            encoding: self
                .encodings
                .as_ref()
                .map_or(ValueEncoding::Raw, |encodings| encodings[index]),
        }
    }
}

/// The `flags` column as u32 (null: 0), from any integer type whose values fit.
fn flags_column(path: &Path, column: &ArrayRef) -> Result<Vec<u32>, SnapshotError> {
    fn fit<T: TryInto<u32> + Copy + std::fmt::Display>(
        path: &Path,
        values: impl Iterator<Item = Option<T>>,
    ) -> Result<Vec<u32>, SnapshotError> {
        values
            .map(|value| match value {
                None => Ok(0),
                Some(v) => v.try_into().map_err(|_| {
                    column_error(
                        path,
                        "flags",
                        format!("holds {v}, not a 32-bit unsigned value"),
                    )
                }),
            })
            .collect()
    }
    match column.data_type() {
        DataType::UInt32 => Ok(column
            .as_primitive::<UInt32Type>()
            .iter()
            .map(Option::unwrap_or_default)
            .collect()),
        DataType::UInt64 => fit(path, column.as_primitive::<UInt64Type>().iter()),
        DataType::Int64 => fit(path, column.as_primitive::<Int64Type>().iter()),
        DataType::Int32 => fit(path, column.as_primitive::<Int32Type>().iter()),
        other => Err(column_error(
            path,
            "flags",
            format!("is {other}, not an integer"),
        )),
    }
}

/// Row `index` of an `expires_at` column in µs since the epoch, whatever its unit.
fn expiry_micros(column: &ArrayRef, index: usize) -> Option<i64> {
    if column.is_null(index) {
        return None;
    }
    Some(match column.data_type() {
        DataType::Timestamp(TimeUnit::Second, _) => column
            .as_primitive::<TimestampSecondType>()
            .value(index)
            .saturating_mul(1_000_000),
        DataType::Timestamp(TimeUnit::Millisecond, _) => column
            .as_primitive::<TimestampMillisecondType>()
            .value(index)
            .saturating_mul(1_000),
        DataType::Timestamp(TimeUnit::Microsecond, _) => column
            .as_primitive::<TimestampMicrosecondType>()
            .value(index),
        DataType::Timestamp(TimeUnit::Nanosecond, _) => {
            column
                .as_primitive::<TimestampNanosecondType>()
                .value(index)
                / 1_000
        }
        _ => return None,
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
    flags: UInt32Builder,
    encodings: StringBuilder,
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
    /// Starts a snapshot at `path` of values from a store of `kind` (when known), taken at
    /// `now` (remaining TTLs become expiry times).
    pub fn create(
        path: &Path,
        kind: Option<StoreKind>,
        now: DateTime<Utc>,
    ) -> Result<SnapshotWriter, SnapshotError> {
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
            .set_key_value_metadata(kind.map(|kind| {
                vec![KeyValue::new(
                    SOURCE_KIND_KEY.to_owned(),
                    kind.as_str().to_owned(),
                )]
            }))
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
            flags: UInt32Builder::new(),
            encodings: StringBuilder::new(),
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
        self.flags.append_value(fetched.flags);
        self.encodings.append_value(fetched.encoding.name());
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
                Arc::new(self.flags.finish()),
                Arc::new(self.encodings.finish()),
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

/// Writes `(key, fetched)` pairs from a store of `kind` as a snapshot at `path`, taken at
/// `now`.
pub fn write_snapshot<'a>(
    path: &Path,
    kind: Option<StoreKind>,
    rows: impl IntoIterator<Item = (&'a str, &'a Fetched)>,
    now: DateTime<Utc>,
) -> Result<u64, SnapshotError> {
    let mut writer = SnapshotWriter::create(path, kind, now)?;
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
        assert!(snapshot.cursor.lock().unwrap().early.is_empty());
    }
}
