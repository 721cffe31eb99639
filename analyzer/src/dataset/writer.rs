//! Writing events into the partitioned dataset with arrow-rs, in bounded memory.

use std::collections::BTreeMap;
use std::collections::btree_map::Entry;
use std::fs::File;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender};
use std::thread::JoinHandle;

use arrow_array::builder::{
    BooleanBuilder, StringBuilder, TimestampMicrosecondBuilder, UInt32Builder,
};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::SchemaRef;
use chrono::DateTime;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, Encoding, ZstdLevel};
use parquet::file::properties::WriterProperties;
use parquet::schema::types::ColumnPath;

use super::{AccessEvent, EventRef};

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
    #[error("the dataset writer stopped after an earlier error")]
    Stopped,
    #[error("failed to move `{from}` into place as `{to}`")]
    Rename {
        from: PathBuf,
        to: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Writes events into `date=` partitions, one Parquet file per partition per writer.
///
/// The caller's thread fills the column builders; Parquet encoding and compression (about
/// half of an ingest's time) run on a writer thread fed whole record batches through a channel
/// of `QUEUED_BATCHES`, so parsing and writing overlap on two cores while memory stays
/// bounded: one batch being built per open partition, the queued ones, and the row group each
/// open file holds.
#[derive(Debug)]
pub struct DatasetWriter {
    schema: SchemaRef,
    rows: BTreeMap<i64, Rows>,
    /// `None` once the writer thread has stopped (after an error, or on finish).
    sender: Option<SyncSender<Message>>,
    thread: Option<JoinHandle<Result<Vec<Closed>, DatasetError>>>,
}

/// Record batches waiting for the writer thread: one keeps it busy while the next is built.
const QUEUED_BATCHES: usize = 1;

/// What the writer thread is told.
enum Message {
    /// Rows of the UTC day `day`, in input order.
    Batch { day: i64, batch: RecordBatch },
    /// Close every file: the input has been read to the end.
    Finish,
}

/// A complete file under its temporary name, and the name it is moved to.
type Closed = (PathBuf, PathBuf);

impl DatasetWriter {
    /// A writer into the dataset at `root`; `file_stem` names this writer's files
    /// (`part-{file_stem}.parquet`) and must be unique among writers.
    pub fn new(root: &Path, file_stem: &str) -> DatasetWriter {
        let schema = schemas::access_event_schema();
        let (sender, receiver) = std::sync::mpsc::sync_channel(QUEUED_BATCHES);
        let files = Files {
            root: root.to_path_buf(),
            file_stem: file_stem.to_owned(),
            schema: schema.clone(),
            properties: writer_properties(),
            open: BTreeMap::new(),
            closed: Vec::new(),
        };
        let thread = std::thread::Builder::new()
            .name("dataset-writer".into())
            .spawn(move || files.run(receiver))
            .expect("the system can start a thread");
        DatasetWriter {
            schema,
            rows: BTreeMap::new(),
            sender: Some(sender),
            thread: Some(thread),
        }
    }

    /// Adds one event to its day's partition.
    pub fn push(&mut self, event: &AccessEvent) -> Result<(), DatasetError> {
        self.push_ref(event.view())
    }

    /// Adds one event, given by reference, to its day's partition: readers that parse into
    /// borrowed fields hand them on without building owned strings.
    pub fn push_ref(&mut self, event: EventRef<'_>) -> Result<(), DatasetError> {
        let day = event.ts_us.div_euclid(MICROS_PER_DAY);
        let rows = self.rows.entry(day).or_default();
        rows.push(&event);
        if rows.len >= BATCH_ROWS {
            let batch = rows.finish(&self.schema);
            self.send(Message::Batch { day, batch })?;
        }
        Ok(())
    }

    /// Hands a message to the writer thread; if it has stopped, returns the error it stopped on.
    fn send(&mut self, message: Message) -> Result<(), DatasetError> {
        let sender = self.sender.as_ref().ok_or(DatasetError::Stopped)?;
        if sender.send(message).is_ok() {
            return Ok(());
        }
        // The thread only hangs up after an error.
        self.sender = None;
        match self.join() {
            Err(error) => Err(error),
            Ok(_) => Err(DatasetError::Stopped),
        }
    }

    fn join(&mut self) -> Result<Vec<Closed>, DatasetError> {
        let thread = self.thread.take().ok_or(DatasetError::Stopped)?;
        thread
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    }

    /// Flushes and closes every file, then moves them all into place; returns their paths.
    ///
    /// Every file is complete before the first one is renamed, so a failure leaves the dataset
    /// as it was (the temporary files are removed).
    pub fn finish(mut self) -> Result<Vec<PathBuf>, DatasetError> {
        while let Some((day, mut rows)) = self.rows.pop_first() {
            if rows.len > 0 {
                let batch = rows.finish(&self.schema);
                self.send(Message::Batch { day, batch })?;
            }
        }
        self.send(Message::Finish)?;
        self.sender = None;
        let closed = self.join()?;
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
    /// An ingest that stops on an error leaves no temporary files behind: hanging up without
    /// `Finish` makes the writer thread remove its files.
    fn drop(&mut self) {
        self.sender = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// How the dataset's Parquet files are encoded. zstd level 1 rather than 3: it halves the
/// compression time for files ~3% larger. `ts` rises within a file, so its deltas are small:
/// delta-binary-packed without a dictionary, which `ts` always outgrew (a million distinct
/// microseconds) and fell back from after paying for it.
fn writer_properties() -> WriterProperties {
    let ts = ColumnPath::from(schemas::event::columns::TS);
    WriterProperties::builder()
        .set_compression(Compression::ZSTD(
            ZstdLevel::try_new(1).expect("valid level"),
        ))
        .set_column_dictionary_enabled(ts.clone(), false)
        .set_column_encoding(ts, Encoding::DELTA_BINARY_PACKED)
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
        .set_created_by(format!("cachewarm analyzer {}", env!("CARGO_PKG_VERSION")))
        .build()
}

/// The writer thread's side: the open files, one per partition.
struct Files {
    root: PathBuf,
    file_stem: String,
    schema: SchemaRef,
    properties: WriterProperties,
    open: BTreeMap<i64, Partition>,
    closed: Vec<Closed>,
}

impl Files {
    /// Writes batches until told to finish; on an error, or when the sender hangs up without
    /// `Finish` (the ingest stopped), removes every file it wrote.
    fn run(mut self, receiver: Receiver<Message>) -> Result<Vec<Closed>, DatasetError> {
        let outcome = self.write_all(receiver);
        if !matches!(outcome, Ok(true)) {
            for partition in self.open.values() {
                let _ = std::fs::remove_file(&partition.temp_path);
            }
            for (temp_path, _) in &self.closed {
                let _ = std::fs::remove_file(temp_path);
            }
            return outcome.and(Ok(Vec::new()));
        }
        Ok(std::mem::take(&mut self.closed))
    }

    /// Whether the input was finished (`false`: the sender hung up).
    fn write_all(&mut self, receiver: Receiver<Message>) -> Result<bool, DatasetError> {
        for message in receiver {
            match message {
                Message::Batch { day, batch } => {
                    let partition = match self.open.entry(day) {
                        Entry::Occupied(entry) => entry.into_mut(),
                        Entry::Vacant(entry) => entry.insert(Partition::create(
                            &self.root,
                            day,
                            &self.file_stem,
                            &self.schema,
                            &self.properties,
                        )?),
                    };
                    partition.write(&batch)?;
                }
                Message::Finish => {
                    while let Some((_, partition)) = self.open.pop_first() {
                        let temp_path = partition.temp_path.clone();
                        let final_path = partition.final_path.clone();
                        if let Err(error) = partition.close() {
                            let _ = std::fs::remove_file(&temp_path);
                            return Err(error);
                        }
                        self.closed.push((temp_path, final_path));
                    }
                    return Ok(true);
                }
            }
        }
        Ok(false)
    }
}

#[derive(Debug)]
struct Partition {
    writer: ArrowWriter<File>,
    temp_path: PathBuf,
    final_path: PathBuf,
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
            writer,
            temp_path,
            final_path,
        })
    }

    fn write(&mut self, batch: &RecordBatch) -> Result<(), DatasetError> {
        self.writer
            .write(batch)
            .map_err(|source| DatasetError::Parquet {
                path: self.temp_path.clone(),
                source,
            })
    }

    /// Writes what the writer buffers and the file footer.
    fn close(self) -> Result<(), DatasetError> {
        self.writer
            .close()
            .map(drop)
            .map_err(|source| DatasetError::Parquet {
                path: self.temp_path,
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
    fn push(&mut self, event: &EventRef<'_>) {
        self.len += 1;
        self.ts.append_value(event.ts_us);
        self.key.append_value(event.key);
        self.op.append_value(event.op.as_str());
        self.hit.append_option(event.hit);
        self.count.append_value(event.count);
        self.value_size.append_option(event.value_size);
        self.ttl_s.append_option(event.ttl_s);
        self.latency_us.append_option(event.latency_us);
        self.client.append_option(event.client);
        self.namespace.append_option(event.namespace);
    }

    /// Builders for the next batch, each buffer allocated once at about the size this batch
    /// needed. Buffers grown by doubling, batch after batch, and freed on the writer thread
    /// left the allocator's heap more fragmented the longer the input: peak memory grew with
    /// the input (67 MB at 5 M CSV lines, 77 MB at 10 M).
    fn sized_like(&self) -> Rows {
        let text = |builder: &StringBuilder| {
            let bytes = builder.values_slice().len();
            StringBuilder::with_capacity(BATCH_ROWS, bytes + bytes / 8)
        };
        Rows {
            len: 0,
            ts: TimestampMicrosecondBuilder::with_capacity(BATCH_ROWS),
            key: text(&self.key),
            op: text(&self.op),
            hit: BooleanBuilder::with_capacity(BATCH_ROWS),
            count: UInt32Builder::with_capacity(BATCH_ROWS),
            value_size: UInt32Builder::with_capacity(BATCH_ROWS),
            ttl_s: UInt32Builder::with_capacity(BATCH_ROWS),
            latency_us: UInt32Builder::with_capacity(BATCH_ROWS),
            client: text(&self.client),
            namespace: text(&self.namespace),
        }
    }

    fn finish(&mut self, schema: &SchemaRef) -> RecordBatch {
        let next = self.sized_like();
        let mut rows = std::mem::replace(self, next);
        let columns: Vec<ArrayRef> = vec![
            Arc::new(rows.ts.finish().with_timezone("UTC")),
            Arc::new(rows.key.finish()),
            Arc::new(rows.op.finish()),
            Arc::new(rows.hit.finish()),
            Arc::new(rows.count.finish()),
            Arc::new(rows.value_size.finish()),
            Arc::new(rows.ttl_s.finish()),
            Arc::new(rows.latency_us.finish()),
            Arc::new(rows.client.finish()),
            Arc::new(rows.namespace.finish()),
        ];
        RecordBatch::try_new(schema.clone(), columns)
            .expect("the builders follow the AccessEvent schema")
    }
}
