//! The per-key aggregation of a local run: the dataset's events read with arrow-rs' Parquet
//! reader and folded by hand into one row of the key-stats table per key.
//!
//! Why by hand rather than a polars query: polars held every event of the window in memory
//! (3.1 GB for 20 M events) and grouped on the key strings, and with per-key medians the query
//! cannot run in its streaming engine. Here the row groups are decoded on every core, where each
//! event's key is also hashed to 64 bits and its read weights computed; one thread folds the
//! events into fixed-size per-key state, looked up by that hash (the key's text compared, so two
//! keys sharing a hash stay apart). Memory is the keys' state plus 8 bytes per logged value size
//! or TTL for the medians, whatever the number of events; and every candidate half-life of the
//! backtest (`super::auto`) is summed in the same pass.
//!
//! Each figure is defined as `super::sql` defines it, and as the polars query did before it:
//! reads are `op = 'get'` (hits `hit = true`, misses `hit = false`, an unknown outcome
//! neither), writes `set`/`add`/`replace`/`cas`; counts are summed, a null count as 0; a read's
//! weight is `count × 0.5^((end − ts) / half-life)` in fixed point (`WEIGHT_SCALE`), rounded to
//! the nearest unit per event, so every sum is an integer whatever the order events arrive in;
//! the value size is the median over every event that logged one and the TTL the median over
//! writes, both rounded half away from zero.

use std::fs::File;
use std::hash::BuildHasher;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use arrow_array::cast::AsArray;
use arrow_array::types::{
    Int8Type, Int16Type, Int32Type, Int64Type, TimestampMicrosecondType, TimestampMillisecondType,
    TimestampNanosecondType, TimestampSecondType, UInt8Type, UInt16Type, UInt32Type, UInt64Type,
};
use arrow_array::{Array, ArrayRef, BooleanArray, RecordBatch};
use arrow_schema::{DataType, TimeUnit};
use chrono::{DateTime, Utc};
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::{
    ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReaderBuilder,
};
use parquet::file::statistics::Statistics;
use schemas::KeyStats;
use schemas::event::columns;
use schemas::key_stats::WEIGHT_SCALE;

use super::RankError;

/// Rows per decoded batch: large enough that the per-batch overhead vanishes, small enough that
/// the batches in flight between the decoding threads and the folding one stay a few MB.
const BATCH_ROWS: usize = 64 * 1024;

/// The columns the aggregation reads.
const COLUMNS: [&str; 8] = [
    columns::TS,
    columns::KEY,
    columns::OP,
    columns::HIT,
    columns::COUNT,
    columns::VALUE_SIZE,
    columns::TTL_S,
    columns::LATENCY_US,
];

/// What to sum beside the key-stats columns.
#[derive(Debug, Clone, Default)]
pub(crate) struct Plan {
    /// Only events before this instant (µs).
    pub until: Option<i64>,
    /// The reference time the weights' ages are counted back from (µs): the window's end.
    pub end: i64,
    /// The half-lives whose weighted reads are summed per key, over the whole window and
    /// before each fold's split.
    pub half_lives: Vec<Duration>,
    /// The backtest's judged windows, `[split, until)` in µs, the oldest first; the last one
    /// takes in every later event too.
    pub folds: Vec<(i64, i64)>,
}

impl Plan {
    /// The per-key sums: per half-life its whole window and each fold's train part, then each
    /// fold's judged reads.
    fn stride(&self) -> usize {
        self.half_lives.len() * (1 + self.folds.len()) + self.folds.len()
    }
}

/// The aggregated keys and the plan's sums for each of them.
pub(crate) struct Tally {
    /// The key-stats rows, with every read weighing 1 (`weighted_requests` is the reads in
    /// fixed point, `half_life_us` null), relative to the plan's end.
    pub keys: Vec<KeyStats>,
    plan: Plan,
    sums: Vec<u64>,
}

impl Tally {
    fn column(&self, offset: usize) -> Vec<u64> {
        let stride = self.plan.stride();
        self.sums
            .iter()
            .skip(offset)
            .step_by(stride)
            .copied()
            .collect()
    }

    /// Each key's reads weighted with the plan's `half_life`th half-life, over the window.
    pub fn weighted(&self, half_life: usize) -> Vec<u64> {
        self.column(half_life * (1 + self.plan.folds.len()))
    }

    /// Each key's reads weighted with the `half_life`th half-life, before fold `fold`'s split.
    pub fn trained(&self, half_life: usize, fold: usize) -> Vec<u64> {
        self.column(half_life * (1 + self.plan.folds.len()) + 1 + fold)
    }

    /// Each key's reads in fold `fold`'s judged window.
    pub fn judged(&self, fold: usize) -> Vec<u64> {
        self.column(self.plan.half_lives.len() * (1 + self.plan.folds.len()) + fold)
    }
}

/// One Parquet file of the dataset, opened: remote ones are fetched into a temporary file
/// first, so that every file is read alike and memory holds no whole file.
struct Source {
    path: PathBuf,
    /// A remote file's local copy, removed on drop.
    fetched: Option<tempfile::TempPath>,
    metadata: ArrowReaderMetadata,
}

impl Source {
    fn open(path: &Path) -> Result<Source, RankError> {
        let fetched = if crate::dataset::remote::is_remote(path) {
            Some(fetch(path)?)
        } else {
            None
        };
        let file = open_file(path, fetched.as_deref())?;
        let metadata = ArrowReaderMetadata::load(&file, ArrowReaderOptions::new())
            .map_err(|error| parquet_error(path, error))?;
        Ok(Source {
            path: path.to_path_buf(),
            fetched,
            metadata,
        })
    }

    /// The file, opened anew: each reader needs its own offset (a cloned handle shares it).
    fn file(&self) -> Result<File, RankError> {
        open_file(&self.path, self.fetched.as_deref())
    }

    /// The batches of row group `row_group`, of the columns `names` only.
    fn read(
        &self,
        row_group: usize,
        names: &[&str],
    ) -> Result<impl Iterator<Item = Result<RecordBatch, RankError>>, RankError> {
        let error = |source| parquet_error(&self.path, source);
        let file = self.file()?;
        let schema = self.metadata.parquet_schema();
        for name in names {
            if !schema.columns().iter().any(|c| c.name() == *name) {
                return Err(RankError::MissingColumn {
                    path: self.path.clone(),
                    column: name.to_string(),
                });
            }
        }
        let mask = ProjectionMask::columns(schema, names.iter().copied());
        let reader =
            ParquetRecordBatchReaderBuilder::new_with_metadata(file, self.metadata.clone())
                .with_projection(mask)
                .with_row_groups(vec![row_group])
                .with_batch_size(BATCH_ROWS)
                .build()
                .map_err(error)?;
        let path = self.path.clone();
        Ok(reader.map(move |batch| batch.map_err(|source| parquet_error(&path, source.into()))))
    }

    fn row_groups(&self) -> usize {
        self.metadata.metadata().num_row_groups()
    }
}

/// The file at `path`, or its local copy `fetched`.
fn open_file(path: &Path, fetched: Option<&Path>) -> Result<File, RankError> {
    File::open(fetched.unwrap_or(path)).map_err(|source| RankError::Read {
        path: path.to_path_buf(),
        source: source.into(),
    })
}

fn parquet_error(path: &Path, source: parquet::errors::ParquetError) -> RankError {
    RankError::Read {
        path: path.to_path_buf(),
        source: source.into(),
    }
}

/// The object at `location` (`s3://…`) in a temporary file.
fn fetch(location: &Path) -> Result<tempfile::TempPath, RankError> {
    use std::io::Write;
    let error = |source: Box<dyn std::error::Error + Send + Sync>| RankError::Read {
        path: location.to_path_buf(),
        source,
    };
    let remote = crate::dataset::remote::Remote::open(location).map_err(|e| error(e.into()))?;
    let bytes = remote.get("").map_err(|e| error(e.into()))?;
    let mut file = tempfile::NamedTempFile::new().map_err(|e| error(e.into()))?;
    file.write_all(&bytes).map_err(|e| error(e.into()))?;
    Ok(file.into_temp_path())
}

fn open_all(files: &[PathBuf]) -> Result<Vec<Source>, RankError> {
    files.iter().map(|path| Source::open(path)).collect()
}

/// The first and last event's timestamps in µs (those before `until` only, when given);
/// `None` when there are none. Row groups whose statistics give the span are not decoded.
pub(crate) fn span(files: &[PathBuf], until: Option<i64>) -> Result<Option<(i64, i64)>, RankError> {
    let sources = open_all(files)?;
    let mut span: Option<(i64, i64)> = None;
    let mut widen = |min: i64, max: i64| {
        span = Some(span.map_or((min, max), |(a, b)| (a.min(min), b.max(max))));
    };
    for source in &sources {
        let ts_column = source
            .metadata
            .parquet_schema()
            .columns()
            .iter()
            .position(|c| c.name() == columns::TS);
        for row_group in 0..source.row_groups() {
            let meta = source.metadata.metadata().row_group(row_group);
            if meta.num_rows() == 0 {
                continue;
            }
            let stats = ts_column.and_then(|i| meta.column(i).statistics());
            let from_stats = match stats {
                Some(Statistics::Int64(s)) if s.null_count_opt() == Some(0) => {
                    s.min_opt().copied().zip(s.max_opt().copied())
                }
                _ => None,
            };
            match from_stats {
                Some((min, max)) if until.is_none_or(|until| max < until) => widen(min, max),
                _ => {
                    for batch in source.read(row_group, &[columns::TS])? {
                        let batch = batch?;
                        let ts = times(&source.path, batch.column(0))?;
                        let mut kept = ts.iter().filter(|&&t| until.is_none_or(|until| t < until));
                        if let Some(&first) = kept.next() {
                            let (min, max) =
                                kept.fold((first, first), |(a, b), &t| (a.min(t), b.max(t)));
                            widen(min, max);
                        }
                    }
                }
            }
        }
    }
    Ok(span)
}

/// The `ts` column as µs since the epoch; an error on a null.
fn times(path: &Path, array: &ArrayRef) -> Result<Vec<i64>, RankError> {
    let wrong = || RankError::ColumnType {
        path: path.to_path_buf(),
        column: columns::TS,
        found: array.data_type().to_string(),
        expected: "a timestamp",
    };
    if array.null_count() > 0 {
        return Err(RankError::NullTime(path.to_path_buf()));
    }
    let values: Vec<i64> = match array.data_type() {
        DataType::Timestamp(TimeUnit::Microsecond, _) => array
            .as_primitive::<TimestampMicrosecondType>()
            .values()
            .to_vec(),
        DataType::Int64 => array.as_primitive::<Int64Type>().values().to_vec(),
        DataType::Timestamp(TimeUnit::Nanosecond, _) => array
            .as_primitive::<TimestampNanosecondType>()
            .values()
            .iter()
            .map(|v| v.div_euclid(1000))
            .collect(),
        DataType::Timestamp(TimeUnit::Millisecond, _) => array
            .as_primitive::<TimestampMillisecondType>()
            .values()
            .iter()
            .map(|v| v * 1000)
            .collect(),
        DataType::Timestamp(TimeUnit::Second, _) => array
            .as_primitive::<TimestampSecondType>()
            .values()
            .iter()
            .map(|v| v * 1_000_000)
            .collect(),
        _ => return Err(wrong()),
    };
    Ok(values)
}

/// A string column of any of arrow's layouts.
enum Strings<'a> {
    Small(&'a arrow_array::StringArray),
    Large(&'a arrow_array::LargeStringArray),
    View(&'a arrow_array::StringViewArray),
}

impl<'a> Strings<'a> {
    fn of(path: &Path, column: &'static str, array: &'a ArrayRef) -> Result<Self, RankError> {
        match array.data_type() {
            DataType::Utf8 => Ok(Strings::Small(array.as_string::<i32>())),
            DataType::LargeUtf8 => Ok(Strings::Large(array.as_string::<i64>())),
            DataType::Utf8View => Ok(Strings::View(array.as_string_view())),
            other => Err(RankError::ColumnType {
                path: path.to_path_buf(),
                column,
                found: other.to_string(),
                expected: "a string",
            }),
        }
    }

    fn get(&self, row: usize) -> Option<&'a str> {
        match self {
            Strings::Small(a) => a.is_valid(row).then(|| a.value(row)),
            Strings::Large(a) => a.is_valid(row).then(|| a.value(row)),
            Strings::View(a) => a.is_valid(row).then(|| a.value(row)),
        }
    }
}

/// An integer column of any width as u64s, negatives and nulls as `None` (as polars' cast to
/// UInt64 made them).
fn integers(
    path: &Path,
    column: &'static str,
    array: &ArrayRef,
) -> Result<Vec<Option<u64>>, RankError> {
    macro_rules! convert {
        ($type:ty) => {
            array
                .as_primitive::<$type>()
                .iter()
                .map(|v| v.and_then(|v| u64::try_from(v).ok()))
                .collect()
        };
    }
    Ok(match array.data_type() {
        DataType::UInt32 => convert!(UInt32Type),
        DataType::UInt8 => convert!(UInt8Type),
        DataType::UInt16 => convert!(UInt16Type),
        DataType::UInt64 => convert!(UInt64Type),
        DataType::Int8 => convert!(Int8Type),
        DataType::Int16 => convert!(Int16Type),
        DataType::Int32 => convert!(Int32Type),
        DataType::Int64 => convert!(Int64Type),
        other => {
            return Err(RankError::ColumnType {
                path: path.to_path_buf(),
                column,
                found: other.to_string(),
                expected: "an integer",
            });
        }
    })
}

const READ: u8 = 1;
const WRITE: u8 = 2;
const DELETE: u8 = 4;
const HIT: u8 = 8;
const MISS: u8 = 16;

/// One event, digested by a decoding thread.
struct Event {
    hash: u64,
    ts: i64,
    count: u64,
    /// Its row in the batch's key column.
    row: u32,
    flags: u8,
    value_size: Option<u32>,
    ttl_s: Option<u32>,
    latency_us: Option<u64>,
}

/// A decoded batch's events of one partition of the keys (those before the plan's `until`),
/// the batch's key column they point into, and each read's weight under each of the plan's
/// half-lives (`half_lives.len()` per event, 0 for the others).
struct Decoded {
    keys: ArrayRef,
    events: Vec<Event>,
    weights: Vec<u64>,
}

/// A fixed seed: the hashes only place keys in the tables, and never reach the output.
fn hasher() -> foldhash::fast::FixedState {
    foldhash::fast::FixedState::with_seed(0x6361_6368_6577_726d)
}

/// The partition of `parts` that a key of hash `hash` is folded in.
fn partition(hash: u64, parts: usize) -> usize {
    ((u128::from(hash) * parts as u128) >> 64) as usize
}

/// The events of `batch`, digested and split into `parts` partitions by key hash.
fn digest(
    path: &Path,
    batch: &RecordBatch,
    plan: &Plan,
    half_lives_us: &[f64],
    parts: usize,
) -> Result<Vec<Decoded>, RankError> {
    let column = |name: &'static str| -> Result<&ArrayRef, RankError> {
        batch
            .column_by_name(name)
            .ok_or_else(|| RankError::MissingColumn {
                path: path.to_path_buf(),
                column: name.to_owned(),
            })
    };
    let ts = times(path, column(columns::TS)?)?;
    let keys = column(columns::KEY)?.clone();
    let key_strings = Strings::of(path, columns::KEY, &keys)?;
    let ops = column(columns::OP)?;
    let ops = Strings::of(path, columns::OP, ops)?;
    let hit_array = column(columns::HIT)?;
    let hits: &BooleanArray = hit_array
        .as_boolean_opt()
        .ok_or_else(|| RankError::ColumnType {
            path: path.to_path_buf(),
            column: columns::HIT,
            found: hit_array.data_type().to_string(),
            expected: "a boolean",
        })?;
    let counts = integers(path, columns::COUNT, column(columns::COUNT)?)?;
    let sizes = integers(path, columns::VALUE_SIZE, column(columns::VALUE_SIZE)?)?;
    let ttls = integers(path, columns::TTL_S, column(columns::TTL_S)?)?;
    let latencies = integers(path, columns::LATENCY_US, column(columns::LATENCY_US)?)?;
    let build = hasher();

    let mut out: Vec<Decoded> = (0..parts)
        .map(|_| Decoded {
            keys: keys.clone(),
            events: Vec::with_capacity(batch.num_rows() / parts + 1),
            weights: Vec::with_capacity((batch.num_rows() / parts + 1) * half_lives_us.len()),
        })
        .collect();
    for (row, &ts) in ts.iter().enumerate() {
        if plan.until.is_some_and(|until| ts >= until) {
            continue;
        }
        let Some(key) = key_strings.get(row) else {
            return Err(RankError::NullKey(path.to_path_buf()));
        };
        let mut flags = match ops.get(row) {
            Some("get") => READ,
            Some("set" | "add" | "replace" | "cas") => WRITE,
            Some("delete") => DELETE,
            _ => 0,
        };
        if flags == READ {
            match hits.is_valid(row).then(|| hits.value(row)) {
                Some(true) => flags |= HIT,
                Some(false) => flags |= MISS,
                None => {}
            }
        }
        let hash = build.hash_one(key);
        let part = &mut out[partition(hash, parts)];
        let count = counts[row].unwrap_or(0);
        if flags & READ != 0 {
            let age = (plan.end - ts) as f64;
            // Past this many half-lives the weight rounds to 0: `count < 2^bits`, so
            // `count × 0.5^halvings × WEIGHT_SCALE < 1/4` and adding 1/2 stays below 1. The
            // power, the costliest step of the fold, is skipped there (most reads, for the
            // backtest's shortest candidates).
            let negligible = WEIGHT_SCALE.log2() + 2.0 + f64::from(64 - count.leading_zeros());
            for &half_life in half_lives_us {
                let halvings = age / half_life;
                if halvings > negligible {
                    part.weights.push(0);
                    continue;
                }
                // The same operations in the same order as the SQL and the earlier polars
                // query, so that each rounded weight is the same integer.
                let weight = 0.5f64.powf(halvings);
                part.weights
                    .push((count as f64 * weight * WEIGHT_SCALE + 0.5) as u64);
            }
        } else {
            part.weights
                .extend(std::iter::repeat_n(0, half_lives_us.len()));
        }
        part.events.push(Event {
            hash,
            ts,
            count,
            row: row as u32,
            flags,
            value_size: sizes[row].map(|v| u32::try_from(v).unwrap_or(u32::MAX)),
            ttl_s: ttls[row].map(|v| u32::try_from(v).unwrap_or(u32::MAX)),
            latency_us: latencies[row],
        });
    }
    Ok(out)
}

/// A key's figures while its events are folded in, and where its text is.
///
/// Laid out (`repr(C)`) with the fields a lookup compares first, and aligned to a cache line:
/// a key's state is then exactly two lines, both of which [`Fold::warm`] loads (unaligned, it
/// spanned three, one of them not loaded ahead).
#[derive(Clone)]
#[repr(C, align(64))]
struct State {
    key_start: usize,
    key_len: u32,
    /// The key's first bytes: most keys compare here, without a look at the arena.
    key_prefix: [u8; PREFIX],
    /// The key's hash, to place it again when the table grows.
    hash: u64,
    requests: u64,
    hits: u64,
    misses: u64,
    writes: u64,
    miss_latency_us: u64,
    miss_latencies: u64,
    first_seen: i64,
    last_seen: i64,
    last_read: i64,
    last_delete: i64,
}

const NONE: i64 = i64::MIN;

/// Bytes of a key kept beside its figures.
const PREFIX: usize = 16;

/// Events whose memory is loaded together before they are folded ([`Fold::warm`]): enough
/// misses in flight to cover the latency, few enough that the group's lines stay in cache.
const GROUP: usize = 32;

fn prefix(key: &str) -> [u8; PREFIX] {
    let mut prefix = [0; PREFIX];
    let n = key.len().min(PREFIX);
    prefix[..n].copy_from_slice(&key.as_bytes()[..n]);
    prefix
}

/// The keys of one partition, numbered in order of appearance, and their figures so far.
///
/// Keys are found through an open-addressing table of one word per slot (the hash's high half
/// and the key's number), by hand: a lookup is then one cache miss for the slot, where std's
/// table takes two (control bytes, then entries), and another for the figures, which keep the
/// key's first bytes; the arena holding the rest of its text is only read for longer keys.
/// On equal hashes the probe goes on, so keys sharing a hash stay apart.
struct Fold<'a> {
    plan: &'a Plan,
    stride: usize,
    /// `hash >> 32 << 32 | (number + 1)` per taken slot, 0 when free; never over half full.
    slots: Vec<u64>,
    text: String,
    states: Vec<State>,
    sums: Vec<u64>,
    /// (key, value) of every logged value size, and of every write's TTL: the medians'.
    sizes: Vec<(u32, u32)>,
    ttls: Vec<(u32, u32)>,
}

impl<'a> Fold<'a> {
    fn new(plan: &'a Plan) -> Fold<'a> {
        Fold {
            plan,
            stride: plan.stride(),
            slots: vec![0; 1 << 16],
            text: String::new(),
            states: Vec::new(),
            sums: Vec::new(),
            sizes: Vec::new(),
            ttls: Vec::new(),
        }
    }

    fn key(&self, id: usize) -> &str {
        let state = &self.states[id];
        &self.text[state.key_start..state.key_start + state.key_len as usize]
    }

    fn is_key(&self, id: usize, key: &str) -> bool {
        let state = &self.states[id];
        state.key_len as usize == key.len()
            && state.key_prefix == prefix(key)
            && (key.len() <= PREFIX
                || self.text[state.key_start + PREFIX..state.key_start + key.len()]
                    == key[PREFIX..])
    }

    /// The key's number, a new one when it is new.
    fn id(&mut self, hash: u64, key: &str) -> usize {
        let mask = self.slots.len() - 1;
        let tag = hash & !0xffff_ffff;
        let mut slot = (hash as usize) & mask;
        loop {
            let taken = self.slots[slot];
            if taken == 0 {
                break;
            }
            if taken & !0xffff_ffff == tag {
                let id = (taken & 0xffff_ffff) as usize - 1;
                if self.is_key(id, key) {
                    return id;
                }
            }
            slot = (slot + 1) & mask;
        }
        let id = self.states.len();
        self.slots[slot] = tag | (id as u64 + 1);
        self.states.push(State {
            key_start: self.text.len(),
            key_len: key.len() as u32,
            key_prefix: prefix(key),
            hash,
            requests: 0,
            hits: 0,
            misses: 0,
            writes: 0,
            miss_latency_us: 0,
            miss_latencies: 0,
            first_seen: i64::MAX,
            last_seen: NONE,
            last_read: NONE,
            last_delete: NONE,
        });
        self.text.push_str(key);
        self.sums.extend(std::iter::repeat_n(0, self.stride));
        if 2 * self.states.len() > self.slots.len() {
            self.grow();
        }
        id
    }

    /// Doubles the table, every key placed again by its hash.
    fn grow(&mut self) {
        let mut slots = vec![0u64; 2 * self.slots.len()];
        let mask = slots.len() - 1;
        for (id, state) in self.states.iter().enumerate() {
            let mut slot = (state.hash as usize) & mask;
            while slots[slot] != 0 {
                slot = (slot + 1) & mask;
            }
            slots[slot] = (state.hash & !0xffff_ffff) | (id as u64 + 1);
        }
        self.slots = slots;
    }

    fn add(&mut self, decoded: &Decoded) {
        let keys = match Strings::of(Path::new(""), columns::KEY, &decoded.keys) {
            Ok(keys) => keys,
            // `digest` checked the column's type.
            Err(_) => return,
        };
        for (start, group) in (0..).step_by(GROUP).zip(decoded.events.chunks(GROUP)) {
            self.warm(group, &keys);
            for (i, event) in (start..).zip(group) {
                self.fold_event(decoded, i, event, &keys);
            }
        }
    }

    /// Loads what the lookups of `group`'s events will read: the slots, then the state, sums
    /// and key text of the keys the slots name (first probe only), each step for the whole
    /// group at once.
    ///
    /// Why: folding is bound by memory latency, three misses in a row per event (slot, then
    /// state, then the key's text to compare), and one event's work is too long for the CPU
    /// to run ahead into the next events' misses by itself. These loads do not depend on each
    /// other, so a group's misses are in flight together; the fold then finds them in cache.
    /// (Loads, not prefetch instructions: those are `unsafe` intrinsics, which the workspace
    /// forbids.) Nothing is decided here: a missed guess only costs its load.
    fn warm(&self, group: &[Event], keys: &Strings) {
        let mask = self.slots.len() - 1;
        let mut loaded = 0u64;
        for event in group {
            loaded ^= self.slots[(event.hash as usize) & mask];
        }
        let mut ids = [usize::MAX; GROUP];
        for (id, event) in ids.iter_mut().zip(group) {
            let taken = self.slots[(event.hash as usize) & mask];
            if taken != 0 && taken & !0xffff_ffff == event.hash & !0xffff_ffff {
                *id = (taken & 0xffff_ffff) as usize - 1;
                let state = &self.states[*id];
                loaded ^= state.key_start as u64 ^ state.last_delete as u64;
                if let Some(sums) = self.sums.get(*id * self.stride..(*id + 1) * self.stride)
                    && let (Some(first), Some(last)) = (sums.first(), sums.last())
                {
                    loaded ^= first ^ last;
                }
            }
        }
        let text = self.text.as_bytes();
        for (&id, event) in ids.iter().zip(group) {
            let Some(state) = self.states.get(id) else {
                continue;
            };
            let len = state.key_len as usize;
            if len > PREFIX {
                loaded ^=
                    u64::from(text[state.key_start + PREFIX] ^ text[state.key_start + len - 1]);
            }
            // The batch's key text, read next to compare.
            loaded ^= keys
                .get(event.row as usize)
                .map_or(0, |key| key.len() as u64);
        }
        std::hint::black_box(loaded);
    }

    /// Folds one event (the `i`th of `decoded`) into its key's figures.
    #[inline(always)]
    fn fold_event(&mut self, decoded: &Decoded, i: usize, event: &Event, keys: &Strings) {
        let (plan, stride) = (self.plan, self.stride);
        let folds = plan.folds.len();
        let candidates = plan.half_lives.len();
        let key = keys.get(event.row as usize).unwrap_or_default();
        let id = self.id(event.hash, key);
        let state = &mut self.states[id];
        let ts = event.ts;
        state.first_seen = state.first_seen.min(ts);
        state.last_seen = state.last_seen.max(ts);
        if let Some(size) = event.value_size {
            self.sizes.push((id as u32, size));
        }
        if event.flags & WRITE != 0 {
            state.writes = state.writes.wrapping_add(event.count);
            if let Some(ttl) = event.ttl_s {
                self.ttls.push((id as u32, ttl));
            }
        } else if event.flags & DELETE != 0 {
            state.last_delete = state.last_delete.max(ts);
        } else if event.flags & READ != 0 {
            state.requests = state.requests.wrapping_add(event.count);
            state.last_read = state.last_read.max(ts);
            if event.flags & HIT != 0 {
                state.hits = state.hits.wrapping_add(event.count);
            } else if event.flags & MISS != 0 {
                state.misses = state.misses.wrapping_add(event.count);
                if let Some(latency) = event.latency_us {
                    state.miss_latency_us = state.miss_latency_us.wrapping_add(latency);
                    state.miss_latencies += 1;
                }
            }
            let key_sums = &mut self.sums[id * stride..(id + 1) * stride];
            let weights = &decoded.weights[i * candidates..(i + 1) * candidates];
            for (c, &weight) in weights.iter().enumerate() {
                let base = c * (1 + folds);
                key_sums[base] = key_sums[base].wrapping_add(weight);
                for (f, &(split, _)) in plan.folds.iter().enumerate() {
                    if ts < split {
                        key_sums[base + 1 + f] = key_sums[base + 1 + f].wrapping_add(weight);
                    }
                }
            }
            for (f, &(split, until)) in plan.folds.iter().enumerate() {
                if ts >= split && (f + 1 == folds || ts < until) {
                    let at = candidates * (1 + folds) + f;
                    key_sums[at] = key_sums[at].wrapping_add(event.count);
                }
            }
        }
    }

    /// The partition's key-stats rows and sums, in key order of appearance.
    fn finish(mut self, dataset: &Path) -> Result<Part, RankError> {
        let keys = self.states.len();
        let value_sizes = medians(keys, std::mem::take(&mut self.sizes));
        let ttl_medians = medians(keys, std::mem::take(&mut self.ttls));
        let instant = |micros: i64| {
            DateTime::<Utc>::from_timestamp_micros(micros).ok_or_else(|| {
                RankError::TimeOutOfRange {
                    path: dataset.to_path_buf(),
                    micros,
                }
            })
        };
        let reference_time = instant(self.plan.end)?;
        let mut rows = Vec::with_capacity(keys);
        for (id, state) in self.states.iter().enumerate() {
            rows.push(KeyStats {
                key: self.key(id).to_owned(),
                requests: state.requests,
                hits: state.hits,
                misses: state.misses,
                // Every read weighing 1: `count × WEIGHT_SCALE` per read, summed.
                weighted_requests: state.requests.wrapping_mul(WEIGHT_SCALE as u64),
                writes: state.writes,
                first_seen: instant(state.first_seen)?,
                last_read: (state.last_read != NONE)
                    .then(|| instant(state.last_read))
                    .transpose()?,
                last_seen: instant(state.last_seen)?,
                deleted_last: state.last_delete == state.last_seen,
                value_size: value_sizes[id],
                ttl_s: ttl_medians[id].map(|ttl| u32::try_from(ttl).unwrap_or(u32::MAX)),
                miss_latency_us: state.miss_latency_us,
                miss_latencies: state.miss_latencies,
                reference_time,
                half_life_us: None,
            });
        }
        Ok((rows, self.sums))
    }
}

/// A partition's key-stats rows and their sums.
type Part = (Vec<KeyStats>, Vec<u64>);

/// Aggregates the events of `files` per key, with the sums `plan` asks for.
///
/// As many threads decode row groups as there are cores, and as many fold: each folding
/// thread owns the keys of one range of hashes (a key's events all go to one), so no state
/// is shared and the memory-bound lookups run on every core.
pub(crate) fn tally(files: &[PathBuf], plan: Plan) -> Result<Tally, RankError> {
    let sources = open_all(files)?;
    let dataset = files.first().cloned().unwrap_or_default();
    let jobs: Vec<(usize, usize)> = sources
        .iter()
        .enumerate()
        .flat_map(|(file, source)| (0..source.row_groups()).map(move |rg| (file, rg)))
        .collect();
    let half_lives_us: Vec<f64> = plan
        .half_lives
        .iter()
        .map(|h| h.as_micros() as f64)
        .collect();
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    let next_job = AtomicUsize::new(0);

    let parts = std::thread::scope(|scope| -> Result<Vec<Part>, RankError> {
        let mut senders = Vec::with_capacity(workers);
        let mut folders = Vec::with_capacity(workers);
        for _ in 0..workers {
            let (sender, receiver) = mpsc::sync_channel::<Result<Decoded, RankError>>(2 * workers);
            senders.push(sender);
            let (plan, dataset) = (&plan, &dataset);
            folders.push(scope.spawn(move || {
                let mut fold = Fold::new(plan);
                for decoded in receiver {
                    fold.add(&decoded?);
                }
                fold.finish(dataset)
            }));
        }
        for _ in 0..workers {
            let senders = senders.clone();
            let (sources, jobs, next_job, plan, half_lives_us) =
                (&sources, &jobs, &next_job, &plan, &half_lives_us);
            scope.spawn(move || {
                while let Some(&(file, row_group)) =
                    jobs.get(next_job.fetch_add(1, Ordering::Relaxed))
                {
                    let source = &sources[file];
                    let batches = match source.read(row_group, &COLUMNS) {
                        Ok(batches) => batches,
                        Err(error) => {
                            let _ = senders[0].send(Err(error));
                            return;
                        }
                    };
                    for batch in batches {
                        let digested = batch.and_then(|batch| {
                            digest(&source.path, &batch, plan, half_lives_us, workers)
                        });
                        match digested {
                            Ok(parts) => {
                                for (sender, part) in senders.iter().zip(parts) {
                                    // A folding thread hung up: it met an error.
                                    if sender.send(Ok(part)).is_err() {
                                        return;
                                    }
                                }
                            }
                            Err(error) => {
                                let _ = senders[0].send(Err(error));
                                return;
                            }
                        }
                    }
                }
            });
        }
        drop(senders);
        folders
            .into_iter()
            .map(|folder| folder.join().expect("a folding thread panicked"))
            .collect()
    })?;

    let mut keys = Vec::with_capacity(parts.iter().map(|(k, _)| k.len()).sum());
    let mut sums = Vec::with_capacity(parts.iter().map(|(_, s)| s.len()).sum());
    for (part_keys, part_sums) in parts {
        keys.extend(part_keys);
        sums.extend(part_sums);
    }
    Ok(Tally { keys, plan, sums })
}

/// Each of `keys` keys' median of its `values` (key, value) pairs, rounded half away from
/// zero; `None` for a key without values.
fn medians(keys: usize, values: Vec<(u32, u32)>) -> Vec<Option<u64>> {
    // A counting sort by key, then a selection per key: linear, where sorting the pairs
    // was not.
    let mut starts = vec![0usize; keys + 1];
    for &(key, _) in &values {
        starts[key as usize + 1] += 1;
    }
    for i in 0..keys {
        starts[i + 1] += starts[i];
    }
    let mut next = starts.clone();
    let mut grouped = vec![0u32; values.len()];
    for (key, value) in values {
        grouped[next[key as usize]] = value;
        next[key as usize] += 1;
    }
    drop(next);
    (0..keys)
        .map(|key| {
            let group = &mut grouped[starts[key]..starts[key + 1]];
            let n = group.len();
            if n == 0 {
                return None;
            }
            let (below, &mut upper, _) = group.select_nth_unstable(n / 2);
            let upper = u64::from(upper);
            if n % 2 == 1 {
                return Some(upper);
            }
            let lower = u64::from(below.iter().copied().max().unwrap_or_default());
            // The mean of the middle two, its half rounded up.
            Some((lower + upper).div_ceil(2))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The medians are those of SQL and polars: the middle value, or the mean of the middle two
    /// rounded half away from zero; keys without values have none.
    #[test]
    fn medians_of_odd_and_even_groups() {
        let pairs = vec![(0, 5), (1, 4), (0, 1), (1, 7), (0, 9), (3, 10), (3, 10)];
        assert_eq!(medians(4, pairs), vec![Some(5), Some(6), None, Some(10)]);
    }

    /// Two keys sharing a hash are kept apart, and each is found again.
    #[test]
    fn colliding_hashes_stay_apart() {
        let plan = Plan::default();
        let mut fold = Fold::new(&plan);
        assert_eq!(fold.id(7, "a"), 0);
        assert_eq!(fold.id(7, "b"), 1);
        assert_eq!(fold.id(7, "a"), 0);
        assert_eq!(fold.id(7, "b"), 1);
        assert_eq!(fold.id(8, "c"), 2);
        assert_eq!((fold.key(0), fold.key(1), fold.key(2)), ("a", "b", "c"));
    }
}
