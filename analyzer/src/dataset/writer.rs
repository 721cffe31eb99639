//! Writing events into the partitioned dataset with arrow-rs, in bounded memory.

use std::collections::BTreeMap;
use std::fs::File;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::builder::{
    BooleanBuilder, StringBuilder, TimestampMicrosecondBuilder, UInt32Builder,
};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::SchemaRef;
use chrono::DateTime;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;

use super::AccessEvent;

/// Rows buffered per partition before they are handed to the Parquet writer.
const BATCH_ROWS: usize = 64 * 1024;
/// Rows per Parquet row group: the writer holds one row group in memory per open partition.
const ROW_GROUP_ROWS: usize = 256 * 1024;
const MICROS_PER_DAY: i64 = 86_400_000_000;

/// Errors while writing the dataset.
#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    #[error("failed to create `{path}`")]
    Create {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to write Parquet file `{path}`")]
    Parquet {
        path: PathBuf,
        #[source]
        source: parquet::errors::ParquetError,
    },
    #[error("failed to move `{from}` into place as `{to}`")]
    Rename {
        from: PathBuf,
        to: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Writes events into `date=` partitions, one Parquet file per partition per writer.
#[derive(Debug)]
pub struct DatasetWriter {
    root: PathBuf,
    file_stem: String,
    schema: SchemaRef,
    properties: WriterProperties,
    partitions: BTreeMap<i64, Partition>,
}

#[derive(Debug)]
struct Partition {
    rows: Rows,
    writer: ArrowWriter<File>,
    temp_path: PathBuf,
    final_path: PathBuf,
}

impl DatasetWriter {
    /// A writer into the dataset at `root`; `file_stem` names this writer's files
    /// (`part-{file_stem}.parquet`) and must be unique among writers.
    pub fn new(root: &Path, file_stem: &str) -> DatasetWriter {
        let properties = WriterProperties::builder()
            .set_compression(Compression::ZSTD(
                ZstdLevel::try_new(3).expect("valid level"),
            ))
            .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
            .set_created_by(format!("cachewarm analyzer {}", env!("CARGO_PKG_VERSION")))
            .build();
        DatasetWriter {
            root: root.to_path_buf(),
            file_stem: file_stem.to_owned(),
            schema: schemas::access_event_schema(),
            properties,
            partitions: BTreeMap::new(),
        }
    }

    /// Adds one event to its day's partition.
    pub fn push(&mut self, event: &AccessEvent) -> Result<(), DatasetError> {
        let day = event.ts_us.div_euclid(MICROS_PER_DAY);
        let partition = match self.partitions.entry(day) {
            std::collections::btree_map::Entry::Occupied(entry) => entry.into_mut(),
            std::collections::btree_map::Entry::Vacant(entry) => entry.insert(Partition::create(
                &self.root,
                day,
                &self.file_stem,
                &self.schema,
                &self.properties,
            )?),
        };
        partition.rows.push(event);
        if partition.rows.len >= BATCH_ROWS {
            partition.flush(&self.schema)?;
        }
        Ok(())
    }

    /// Flushes and closes every file, then moves them all into place; returns their paths.
    ///
    /// Every file is complete before the first one is renamed, so a failure leaves the dataset
    /// as it was (the temporary files are removed).
    pub fn finish(mut self) -> Result<Vec<PathBuf>, DatasetError> {
        let mut closed = Vec::with_capacity(self.partitions.len());
        while let Some((_, partition)) = self.partitions.pop_first() {
            let temp_path = partition.temp_path.clone();
            match partition.close(&self.schema) {
                Ok(paths) => closed.push(paths),
                Err(error) => {
                    let _ = std::fs::remove_file(&temp_path);
                    for (temp_path, _) in &closed {
                        let _ = std::fs::remove_file(temp_path);
                    }
                    return Err(error);
                }
            }
        }
        let mut written = Vec::with_capacity(closed.len());
        for (temp_path, final_path) in closed {
            std::fs::rename(&temp_path, &final_path).map_err(|source| DatasetError::Rename {
                from: temp_path,
                to: final_path.clone(),
                source,
            })?;
            written.push(final_path);
        }
        Ok(written)
    }
}

impl Drop for DatasetWriter {
    /// An ingest that stops on an error leaves no temporary files behind.
    fn drop(&mut self) {
        for partition in self.partitions.values() {
            let _ = std::fs::remove_file(&partition.temp_path);
        }
    }
}

impl Partition {
    fn create(
        root: &Path,
        day: i64,
        file_stem: &str,
        schema: &SchemaRef,
        properties: &WriterProperties,
    ) -> Result<Partition, DatasetError> {
        let date = DateTime::from_timestamp_micros(day * MICROS_PER_DAY)
            .expect("readers keep timestamps within 1970..=9999 (ingest::ts_from_parts)")
            .format("%Y-%m-%d")
            .to_string();
        let dir = super::partition_dir(root, &date);
        std::fs::create_dir_all(&dir).map_err(|source| DatasetError::Create {
            path: dir.clone(),
            source,
        })?;
        let final_path = dir.join(format!("part-{file_stem}.parquet"));
        let temp_path = dir.join(format!(".part-{file_stem}.parquet.tmp"));
        // Owner-only, as every file cachewarm writes: the rows hold the keys, sessions' too.
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(cachewarm_fs::OWNER_ONLY)
            .open(&temp_path)
            .map_err(|source| DatasetError::Create {
                path: temp_path.clone(),
                source,
            })?;
        let writer = ArrowWriter::try_new(file, schema.clone(), Some(properties.clone())).map_err(
            |source| DatasetError::Parquet {
                path: temp_path.clone(),
                source,
            },
        )?;
        Ok(Partition {
            rows: Rows::default(),
            writer,
            temp_path,
            final_path,
        })
    }

    /// Writes what is buffered and the file footer; returns (temporary path, final path).
    fn close(mut self, schema: &SchemaRef) -> Result<(PathBuf, PathBuf), DatasetError> {
        self.flush(schema)?;
        self.writer
            .close()
            .map_err(|source| DatasetError::Parquet {
                path: self.temp_path.clone(),
                source,
            })?;
        Ok((self.temp_path, self.final_path))
    }

    fn flush(&mut self, schema: &SchemaRef) -> Result<(), DatasetError> {
        if self.rows.len == 0 {
            return Ok(());
        }
        let batch = self.rows.finish(schema);
        self.writer
            .write(&batch)
            .map_err(|source| DatasetError::Parquet {
                path: self.temp_path.clone(),
                source,
            })
    }
}

/// Column builders for one batch of rows, in schema order.
#[derive(Debug, Default)]
struct Rows {
    len: usize,
    ts: TimestampMicrosecondBuilder,
    key: StringBuilder,
    op: StringBuilder,
    hit: BooleanBuilder,
    count: UInt32Builder,
    value_size: UInt32Builder,
    ttl_s: UInt32Builder,
    latency_us: UInt32Builder,
    client: StringBuilder,
    namespace: StringBuilder,
}

impl Rows {
    fn push(&mut self, event: &AccessEvent) {
        self.len += 1;
        self.ts.append_value(event.ts_us);
        self.key.append_value(&event.key);
        self.op.append_value(event.op.as_str());
        self.hit.append_option(event.hit);
        self.count.append_value(event.count);
        self.value_size.append_option(event.value_size);
        self.ttl_s.append_option(event.ttl_s);
        self.latency_us.append_option(event.latency_us);
        self.client.append_option(event.client.as_deref());
        self.namespace.append_option(event.namespace.as_deref());
    }

    fn finish(&mut self, schema: &SchemaRef) -> RecordBatch {
        self.len = 0;
        let columns: Vec<ArrayRef> = vec![
            Arc::new(self.ts.finish().with_timezone("UTC")),
            Arc::new(self.key.finish()),
            Arc::new(self.op.finish()),
            Arc::new(self.hit.finish()),
            Arc::new(self.count.finish()),
            Arc::new(self.value_size.finish()),
            Arc::new(self.ttl_s.finish()),
            Arc::new(self.latency_us.finish()),
            Arc::new(self.client.finish()),
            Arc::new(self.namespace.finish()),
        ];
        RecordBatch::try_new(schema.clone(), columns)
            .expect("the builders follow the AccessEvent schema")
    }
}
