//! Writing a snapshot: row group by row group, under a temporary name until it is complete.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_array::builder::{
    BinaryBuilder, StringBuilder, TimestampMicrosecondBuilder, UInt32Builder,
};
use chrono::{DateTime, Utc};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;

use crate::store::{Fetched, StoreKind};

use super::{SOURCE_KIND_KEY, SnapshotError, parquet_error, snapshot_schema};

/// Rows per row group when writing: a writer holds one row group in memory.
const ROWS_PER_GROUP: usize = 16 * 1024;

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
