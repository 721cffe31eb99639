//! Per-key aggregation of the dataset with polars.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use polars::prelude::*;
use schemas::event::columns;

use super::RankError;

/// The fixed-point scale of recency-weighted reads: weights are summed as integers so the sum
/// does not depend on the order polars' threads add them in, and the same dataset always gives
/// the same manifest, byte for byte. 2^20 keeps six significant digits of a read that is 20
/// half-lives old.
pub const WEIGHT_SCALE: f64 = (1u64 << 20) as f64;

/// The default half-life is the window's span divided by this: 3 hours for a day of logs. A
/// longer one averages more reads (less noise when popularity is stable), a shorter one
/// follows changes sooner; on the generated workloads of `tests/tests/rank_quality.rs` an
/// eighth keeps at least 90% of the oracle's gain when popularity is stable and 80% when it
/// drifts, where a quarter fell to 77% under drift. `analyzer simulate` compares half-lives
/// on a real dataset.
pub const AUTO_HALF_LIFE_DIVISOR: u64 = 8;

/// What the dataset says about one key.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyStats {
    pub key: String,
    /// Read requests: the sum of `count` over reads.
    pub requests: u64,
    pub hits: u64,
    pub misses: u64,
    /// Read requests, each weighted by `0.5^(age / half-life)` where age is the time from the
    /// read to the window's end; in units of 1 / [`WEIGHT_SCALE`].
    pub weighted_requests: u64,
    /// Writes (set, add, replace, cas), by `count`.
    pub writes: u64,
    /// The last read, if any.
    pub last_read: Option<DateTime<Utc>>,
    /// The last access of any kind.
    pub last_seen: DateTime<Utc>,
    /// Whether the last access was a delete (a delete at the same instant as the last access
    /// counts as last).
    pub deleted_last: bool,
    /// The median logged value size, when any was logged.
    pub value_size: Option<u64>,
    /// The median TTL given on writes, when any was logged.
    pub ttl_s: Option<u32>,
    /// The sum and number of logged latencies of missed reads, in µs.
    pub miss_latency_us: u64,
    pub miss_latencies: u64,
}

/// The keys seen (in no particular order), and dataset-wide figures.
#[derive(Debug, Clone)]
pub struct DatasetStats {
    pub keys: Vec<KeyStats>,
    pub window_start: DateTime<Utc>,
    pub window_end: DateTime<Utc>,
    /// The median of the keys' value sizes: the size assumed for keys with none logged.
    pub typical_value_size: u64,
    /// The half-life the weights were computed with; `None` when every read weighs 1.
    pub half_life: Option<std::time::Duration>,
}

/// Which events to aggregate, and how to weigh reads.
#[derive(Debug, Clone, Default)]
pub struct AggregateOptions {
    /// Only events before this instant (the train window of a backtest).
    pub until: Option<DateTime<Utc>>,
    /// The half-life of a read's weight.
    pub half_life: HalfLife,
}

/// How reads are weighted by age.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub enum HalfLife {
    /// An eighth of the window's span (see [`AUTO_HALF_LIFE_DIVISOR`]).
    #[default]
    Auto,
    /// Every read weighs 1.
    Off,
    Fixed(std::time::Duration),
}

/// Aggregates every Parquet file of the dataset at `dataset` per key.
pub fn aggregate(dataset: &Path, options: &AggregateOptions) -> Result<DatasetStats, RankError> {
    let files = dataset_files(dataset)?;
    let polars_error = |source| RankError::Polars {
        path: dataset.to_path_buf(),
        source,
    };
    let events = || scan(&files, options.until);
    let Some((start, end)) = time_span(&files, options.until).map_err(polars_error)? else {
        return Err(RankError::NoEvents(dataset.to_path_buf()));
    };
    let half_life = match options.half_life {
        HalfLife::Off => None,
        HalfLife::Fixed(span) => Some(span),
        HalfLife::Auto => Some(std::time::Duration::from_micros(
            u64::try_from(end - start).unwrap_or(0) / AUTO_HALF_LIFE_DIVISOR,
        ))
        .filter(|span| !span.is_zero()),
    };
    let frame = events()
        .and_then(|events| per_key(events, end, half_life).collect())
        .map_err(polars_error)?;
    let keys = to_key_stats(&frame).map_err(polars_error)?;
    let mut sizes: Vec<u64> = keys.iter().filter_map(|k| k.value_size).collect();
    sizes.sort_unstable();
    let instant = |micros| DateTime::from_timestamp_micros(micros).unwrap_or_default();
    Ok(DatasetStats {
        window_start: instant(start),
        window_end: instant(end),
        typical_value_size: sizes.get(sizes.len() / 2).copied().unwrap_or(0),
        half_life,
        keys,
    })
}

/// The Parquet files of the dataset; an error when there are none.
pub fn dataset_files(dataset: &Path) -> Result<Vec<PathBuf>, RankError> {
    let files = crate::dataset::data_files(dataset).map_err(|source| RankError::List {
        path: dataset.to_path_buf(),
        source,
    })?;
    if files.is_empty() {
        return Err(RankError::EmptyDataset(dataset.to_path_buf()));
    }
    Ok(files)
}

/// The events of `files` as one lazy frame, those before `until` only when it is given.
pub fn scan(files: &[PathBuf], until: Option<DateTime<Utc>>) -> PolarsResult<LazyFrame> {
    let args = ScanArgsParquet {
        hive_options: HiveOptions {
            enabled: Some(false),
            ..Default::default()
        },
        ..Default::default()
    };
    let frames = files
        .iter()
        .map(|path| LazyFrame::scan_parquet(PlRefPath::new(path.to_string_lossy()), args.clone()))
        .collect::<PolarsResult<Vec<_>>>()?;
    let events = concat(frames, UnionArgs::default())?;
    Ok(match until {
        Some(until) => events.filter(
            col(columns::TS)
                .cast(DataType::Int64)
                .lt(lit(until.timestamp_micros())),
        ),
        None => events,
    })
}

/// The first and last event's timestamps in µs (those before `until` only, when given);
/// `None` when there are no events.
pub fn time_span(
    files: &[PathBuf],
    until: Option<DateTime<Utc>>,
) -> PolarsResult<Option<(i64, i64)>> {
    let window = scan(files, until)?
        .select([
            col(columns::TS).min().cast(DataType::Int64).alias("start"),
            col(columns::TS).max().cast(DataType::Int64).alias("end"),
        ])
        .collect()?;
    let micros =
        |name: &str| -> PolarsResult<Option<i64>> { Ok(window.column(name)?.i64()?.get(0)) };
    Ok(micros("start")?.zip(micros("end")?))
}

/// Whether an event is a read.
pub fn is_read() -> Expr {
    col(columns::OP).eq(lit("get"))
}

/// Whether an event is a write that stores a value.
pub fn is_write() -> Expr {
    col(columns::OP)
        .eq(lit("set"))
        .or(col(columns::OP).eq(lit("add")))
        .or(col(columns::OP).eq(lit("replace")))
        .or(col(columns::OP).eq(lit("cas")))
}

/// The per-key aggregation, in no particular order: ranking sorts by score, and sorting 2
/// million keys here (by requests, ties by key) took a fifth of the whole query in string
/// comparisons.
fn per_key(
    events: LazyFrame,
    end_micros: i64,
    half_life: Option<std::time::Duration>,
) -> LazyFrame {
    let sum_count_if = |condition: Expr| {
        when(condition)
            .then(col(columns::COUNT).cast(DataType::UInt64))
            .otherwise(lit(0u64))
            .sum()
    };
    // count × 0.5^(age / half-life), in fixed point (see WEIGHT_SCALE).
    let weight = match half_life {
        Some(span) => lit(0.5f64).pow(
            (lit(end_micros) - col(columns::TS).cast(DataType::Int64)).cast(DataType::Float64)
                / lit(span.as_micros() as f64),
        ),
        None => lit(1.0f64),
    };
    // + 0.5 then truncation: rounding to the nearest unit.
    let weighted = (col(columns::COUNT).cast(DataType::Float64) * weight * lit(WEIGHT_SCALE)
        + lit(0.5f64))
    .cast(DataType::UInt64);
    // The operation tests are computed once per event as columns, not once per aggregate.
    let is_read = || col("_read");
    let is_write = || col("_write");
    let is_miss = || col("_miss");
    events
        .with_columns([
            self::is_read().alias("_read"),
            self::is_write().alias("_write"),
            self::is_read()
                .and(col(columns::HIT).eq(lit(false)))
                .alias("_miss"),
        ])
        .group_by([col(columns::KEY)])
        .agg([
            sum_count_if(is_read()).alias("requests"),
            sum_count_if(is_read().and(col(columns::HIT).eq(lit(true)))).alias("hits"),
            sum_count_if(is_miss()).alias("misses"),
            when(is_read())
                .then(weighted)
                .otherwise(lit(0u64))
                .sum()
                .alias("weighted"),
            sum_count_if(is_write()).alias("writes"),
            when(is_read())
                .then(col(columns::TS).cast(DataType::Int64))
                .otherwise(lit(NULL).cast(DataType::Int64))
                .max()
                .alias("last_read"),
            col(columns::TS)
                .max()
                .cast(DataType::Int64)
                .alias("last_seen"),
            // The last delete rather than the last operation: a conditional max is a single
            // pass, where sorting every key's operations by time took most of the query.
            when(col(columns::OP).eq(lit("delete")))
                .then(col(columns::TS).cast(DataType::Int64))
                .otherwise(lit(NULL).cast(DataType::Int64))
                .max()
                .alias("last_delete"),
            col(columns::VALUE_SIZE)
                .cast(DataType::Float64)
                .median()
                .alias("value_size"),
            when(is_write())
                .then(col(columns::TTL_S).cast(DataType::Float64))
                .otherwise(lit(NULL).cast(DataType::Float64))
                .median()
                .alias("ttl_s"),
            when(is_miss().and(col(columns::LATENCY_US).is_not_null()))
                .then(col(columns::LATENCY_US).cast(DataType::UInt64))
                .otherwise(lit(0u64))
                .sum()
                .alias("miss_latency_us"),
            when(is_miss().and(col(columns::LATENCY_US).is_not_null()))
                .then(lit(1u64))
                .otherwise(lit(0u64))
                .cast(DataType::UInt64)
                .sum()
                .alias("miss_latencies"),
        ])
}

fn to_key_stats(frame: &DataFrame) -> PolarsResult<Vec<KeyStats>> {
    let key = frame.column(columns::KEY)?.str()?;
    let requests = frame.column("requests")?.u64()?;
    let hits = frame.column("hits")?.u64()?;
    let misses = frame.column("misses")?.u64()?;
    let weighted = frame.column("weighted")?.u64()?;
    let writes = frame.column("writes")?.u64()?;
    let last_read = frame.column("last_read")?.i64()?;
    let last_seen = frame.column("last_seen")?.i64()?;
    let last_delete = frame.column("last_delete")?.i64()?;
    let value_size = frame.column("value_size")?.f64()?;
    let ttl_s = frame.column("ttl_s")?.f64()?;
    let miss_latency_us = frame.column("miss_latency_us")?.u64()?;
    let miss_latencies = frame.column("miss_latencies")?.u64()?;
    let instant = |micros: i64| DateTime::from_timestamp_micros(micros).unwrap_or_default();
    let mut keys = Vec::with_capacity(frame.height());
    for i in 0..frame.height() {
        keys.push(KeyStats {
            key: key.get(i).unwrap_or_default().to_owned(),
            requests: requests.get(i).unwrap_or(0),
            hits: hits.get(i).unwrap_or(0),
            misses: misses.get(i).unwrap_or(0),
            weighted_requests: weighted.get(i).unwrap_or(0),
            writes: writes.get(i).unwrap_or(0),
            last_read: last_read.get(i).map(instant),
            last_seen: instant(last_seen.get(i).unwrap_or(0)),
            deleted_last: last_delete.get(i).is_some() && last_delete.get(i) == last_seen.get(i),
            value_size: value_size.get(i).map(|v| v.round() as u64),
            ttl_s: ttl_s.get(i).map(|v| v.round() as u32),
            miss_latency_us: miss_latency_us.get(i).unwrap_or(0),
            miss_latencies: miss_latencies.get(i).unwrap_or(0),
        });
    }
    Ok(keys)
}
