//! Reading a snapshot in step with the manifest: one pass over the file, rows used as they
//! come, the few that come early kept aside.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, Utc};
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::{
    ArrowReaderOptions, ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder,
};
use parquet::errors::ParquetError;
use parquet::file::metadata::ParquetMetaData;

use crate::store::{Fetched, StoreKind};

use super::columns::{Columns, Row, key_column};
use super::{SOURCE_KIND_KEY, SnapshotError, key_hash, parquet_error};

/// Rows decoded per read of the snapshot.
const ROWS_PER_READ: usize = 4096;

/// A snapshot read as a stream, in step with the manifest.
///
/// `warmer snapshot` writes the rows in the manifest's rank order, and a run asks for keys in
/// rank order, so the file is read once from start to end and each row is used as it comes:
/// memory stays flat whatever the size of the file. A row that comes before its key is asked
/// for (the snapshot was taken from an older manifest) is kept aside until then; rows whose key
/// is not in the manifest are skipped, and a key that is not in the snapshot is a miss at once,
/// without reading ahead. Both need to know which manifest keys the snapshot holds: at open,
/// one pass over the snapshot's `key` column leaves a sorted list of the 64-bit hashes of those
/// keys (8 bytes per manifest entry; the only state that grows with the manifest, besides the
/// snapshot's own hashes, 8 bytes a row, held while it opens).
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
    /// Why the parquet reader panicked, once it has: it is not used again.
    broken: Option<String>,
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

impl Snapshot {
    /// Opens the snapshot at `path` for the manifest keys whose [`key_hash`]es are
    /// `manifest_keys` (sorted, deduplicated).
    pub fn open(path: &Path, manifest_keys: Vec<u64>) -> Result<Snapshot, SnapshotError> {
        unpanicked(|| Snapshot::open_file(path, manifest_keys))
            .unwrap_or_else(|message| Err(broken(path, &message)))
    }

    fn open_file(path: &Path, mut manifest_keys: Vec<u64>) -> Result<Snapshot, SnapshotError> {
        // Which manifest keys the snapshot holds: one pass over the key column only. Both
        // sides' hashes sorted, then one merge: a binary search per row was 40% of a 1 M-row
        // open (a cache miss per step).
        let keys_only = |builder: ParquetRecordBatchReaderBuilder<File>| {
            let mask = ProjectionMask::columns(builder.parquet_schema(), ["key"]);
            builder.with_projection(mask)
        };
        let (keys_reader, source_kind) = reader(path, keys_only)?;
        let mut snapshot_keys = Vec::new();
        for batch in keys_reader {
            let batch = batch.map_err(|e| parquet_error(path, e.into()))?;
            let keys = key_column(path, &batch)?;
            snapshot_keys.extend(keys.iter().flatten().map(key_hash));
        }
        snapshot_keys.sort_unstable();
        let mut snapshot_keys = snapshot_keys.into_iter().peekable();
        manifest_keys.retain(|key| {
            while snapshot_keys.next_if(|held| held < key).is_some() {}
            snapshot_keys.peek() == Some(key)
        });
        manifest_keys.shrink_to_fit();
        Ok(Snapshot {
            cursor: Mutex::new(Cursor {
                path: path.to_path_buf(),
                rows: reader(path, |builder| builder)?.0,
                batch: None,
                wanted: manifest_keys,
                early: HashMap::new(),
                broken: None,
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
        if let Some(message) = &cursor.broken {
            return Err(broken(&cursor.path, message));
        }
        let fetched = unpanicked(|| cursor.fetch(keys, now_us));
        fetched.unwrap_or_else(|message| {
            let error = broken(&cursor.path, &message);
            cursor.broken = Some(message);
            Err(error)
        })
    }

    /// How many manifest keys the snapshot holds.
    pub fn len(&self) -> usize {
        self.cursor.lock().map_or(0, |cursor| cursor.wanted.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Rows read before their key was asked for and not asked for yet.
    #[cfg(test)]
    pub(super) fn kept_aside(&self) -> usize {
        self.cursor.lock().map_or(0, |cursor| cursor.early.len())
    }
}

impl Cursor {
    /// [`Snapshot::fetch`], `now` in µs since the epoch.
    fn fetch(&mut self, keys: &[&str], now_us: i64) -> Result<Vec<Option<Fetched>>, SnapshotError> {
        keys.iter()
            .map(|key| {
                let Some(row) = self.find(key)? else {
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

    /// The row of `key`: kept aside earlier, or read on to (rows of other manifest keys kept
    /// aside on the way).
    fn find(&mut self, key: &str) -> Result<Option<Row>, SnapshotError> {
        // A snapshot of this manifest has its rows in the order they are asked for: the next
        // row is the key's, and no lookup is needed.
        if self.early.is_empty()
            && let Some((batch, row)) = &mut self.batch
            && *row < batch.len()
            && batch.key(*row) == Some(key)
        {
            let index = *row;
            *row += 1;
            return Ok(Some(batch.row(index)));
        }
        if self.wanted.binary_search(&key_hash(key)).is_err() {
            return Ok(None);
        }
        if let Some(row) = self.early.remove(key) {
            return Ok(Some(row));
        }
        loop {
            let (batch, row) = match &mut self.batch {
                Some((batch, row)) if *row < batch.len() => (batch, row),
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
            let Some(found) = batch.key(index) else {
                continue;
            };
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
    unpanicked(|| reader(path, |builder| builder)).ok()?.ok()?.1
}

/// Runs `read`, a call into the parquet crate; `Err` with the panic's message when it panics.
///
/// The parquet crate panics on some corrupt files instead of returning an error (a data page
/// encoded with a dictionary its column chunk does not have: "Decoder for dict should have been
/// set", found by the `snapshot` fuzz target; its page headers are not something to check ahead
/// of the crate). A snapshot comes from outside: a corrupt one must be refused naming the file,
/// not end the run. The panic is still printed to stderr by the process's panic hook.
fn unpanicked<T>(read: impl FnOnce() -> T) -> Result<T, String> {
    // The state `read` leaves behind after a panic is not used again: `open` drops its reader,
    // and a cursor whose read panicked is marked broken.
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(read)).map_err(|panic| {
        panic
            .downcast_ref::<&str>()
            .map(|text| (*text).to_owned())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic without a message".to_owned())
    })
}

/// The error for the snapshot at `path` whose reading panicked with `message`.
fn broken(path: &Path, message: &str) -> SnapshotError {
    parquet_error(
        path,
        ParquetError::General(format!(
            "the Parquet reader failed on this file (a corrupt file?): {message}"
        )),
    )
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
    check_chunks(builder.metadata()).map_err(|e| parquet_error(path, e))?;
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

/// Refuses a footer that places a column chunk at a negative offset or gives it a negative
/// size: the parquet crate asserts on those when it reads the chunk
/// (`ColumnChunkMetaData::byte_range`) rather than returning an error, and a corrupt snapshot
/// must be refused naming the file, not end the run.
fn check_chunks(metadata: &ParquetMetaData) -> Result<(), ParquetError> {
    for (group, row_group) in metadata.row_groups().iter().enumerate() {
        for chunk in row_group.columns() {
            let start = chunk
                .dictionary_page_offset()
                .unwrap_or_else(|| chunk.data_page_offset());
            if start < 0 || chunk.compressed_size() < 0 {
                return Err(ParquetError::General(format!(
                    "row group {group}, column {}: the footer gives the column chunk a \
                     negative offset or size (a corrupt file)",
                    chunk.column_path()
                )));
            }
        }
    }
    Ok(())
}
