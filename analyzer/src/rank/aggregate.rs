//! The per-key aggregation of the dataset with polars: the key-stats table of one machine.
//!
//! The same aggregation, as SQL for engines that scale out, is `super::sql`; both give the
//! table of `schemas::key_stats`, which `super::key_stats` turns into ranking input.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use polars::prelude::*;
use schemas::event::columns;
use schemas::key_stats::{WEIGHT_SCALE, columns as out};

use super::RankError;
use super::key_stats::{DatasetStats, from_frame};

/// [`HalfLife::EighthOfSpan`] is the window's span divided by this: 3 hours for a day of logs.
/// A longer one averages more reads (less noise when popularity is stable), a shorter one
/// follows changes sooner; on the generated workloads of `tests/tests/rank_quality.rs` an
/// eighth kept at least 90% of the oracle's gain when popularity is stable and 80% when it
/// drifts, where a quarter fell to 77% under drift. It is the SQL aggregation's default and
/// one of the candidates [`HalfLife::Auto`] backtests.
pub const AUTO_HALF_LIFE_DIVISOR: u64 = 8;

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
    /// Chosen by a backtest of candidates on the dataset itself (`super::auto`), when ranking
    /// events; [`HalfLife::EighthOfSpan`] where there is nothing to backtest on (one SQL
    /// query, or [`aggregate`] alone).
    #[default]
    Auto,
    /// An eighth of the window's span (see [`AUTO_HALF_LIFE_DIVISOR`]).
    EighthOfSpan,
    /// Every read weighs 1.
    Off,
    Fixed(std::time::Duration),
}

/// Aggregates every Parquet file of the dataset at `dataset` per key; the weights are relative
/// to the last event (the end of the window). [`HalfLife::Auto`] is taken as
/// [`HalfLife::EighthOfSpan`] here: the backtest needs the ranking's options (`super::rank`).
pub fn aggregate(dataset: &Path, options: &AggregateOptions) -> Result<DatasetStats, RankError> {
    let (files, start, end) = files_and_span(dataset, options.until)?;
    let polars_error = |source| RankError::Polars {
        path: dataset.to_path_buf(),
        source,
    };
    let half_life = match options.half_life {
        HalfLife::Off => None,
        HalfLife::Fixed(span) => Some(span),
        HalfLife::Auto | HalfLife::EighthOfSpan => {
            Some(eighth_of_span(start, end)).filter(|span| !span.is_zero())
        }
    };
    let frame = scan(&files, options.until)
        .and_then(|events| per_key(events, end, half_life, Vec::new()).collect())
        .map_err(polars_error)?;
    stats_of_frame(&frame, dataset)
}

/// The key stats of an aggregated frame (extra columns ignored), in the frame's row order.
pub(super) fn stats_of_frame(frame: &DataFrame, dataset: &Path) -> Result<DatasetStats, RankError> {
    let keys = from_frame(frame).map_err(|source| RankError::KeyStats {
        path: dataset.to_path_buf(),
        source,
    })?;
    DatasetStats::from_keys(keys, dataset)
}

/// [`HalfLife::EighthOfSpan`] of a window from `start` to `end` (µs), as the SQL computes it
/// too: whole µs, rounded down.
pub(super) fn eighth_of_span(start: i64, end: i64) -> std::time::Duration {
    std::time::Duration::from_micros(
        u64::try_from(end - start).unwrap_or(0) / AUTO_HALF_LIFE_DIVISOR,
    )
}

/// The dataset's files and the span of their events (until `until`), in µs; an error when
/// there are none.
pub fn files_and_span(
    dataset: &Path,
    until: Option<DateTime<Utc>>,
) -> Result<(Vec<PathBuf>, i64, i64), RankError> {
    let files = dataset_files(dataset)?;
    let span = time_span(&files, until).map_err(|source| RankError::Polars {
        path: dataset.to_path_buf(),
        source,
    })?;
    let Some((start, end)) = span else {
        return Err(RankError::NoEvents(dataset.to_path_buf()));
    };
    Ok((files, start, end))
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

/// A read's weight, `count × 0.5^(age / half-life)` with the age back from `end_micros`, in
/// fixed point (see WEIGHT_SCALE): every half-life's weights are summed alike, so a backtest
/// candidate's sum is the sum `--half-life` of the same span gives.
pub(super) fn weighted(end_micros: i64, half_life: Option<std::time::Duration>) -> Expr {
    let weight = match half_life {
        Some(span) => lit(0.5f64).pow(
            (lit(end_micros) - col(columns::TS).cast(DataType::Int64)).cast(DataType::Float64)
                / lit(span.as_micros() as f64),
        ),
        None => lit(1.0f64),
    };
    // + 0.5 then truncation: rounding to the nearest unit.
    (col(columns::COUNT).cast(DataType::Float64) * weight * lit(WEIGHT_SCALE) + lit(0.5f64))
        .cast(DataType::UInt64)
}

/// `count` summed over the events where `condition` holds.
pub(super) fn sum_count_if(condition: Expr) -> Expr {
    when(condition)
        .then(col(columns::COUNT).cast(DataType::UInt64))
        .otherwise(lit(0u64))
        .sum()
}

/// The per-event column that says whether an event is a read, for `extra` aggregations.
pub(super) const READ_COLUMN: &str = "_read";

/// The per-key aggregation, in no particular order (ranking sorts by score, and sorting 2
/// million keys here, by requests, ties by key, took a fifth of the whole query in string
/// comparisons), as the key-stats table; `extra` aggregations (named, as the backtest's are)
/// are kept as further columns.
pub(super) fn per_key(
    events: LazyFrame,
    end_micros: i64,
    half_life: Option<std::time::Duration>,
    extra: Vec<(String, Expr)>,
) -> LazyFrame {
    let weighted = weighted(end_micros, half_life);
    // The operation tests are computed once per event as columns, not once per aggregate.
    let is_read = || col(READ_COLUMN);
    let is_write = || col("_write");
    let is_miss = || col("_miss");
    let micros = || col(columns::TS).cast(DataType::Int64);
    let instant = |expr: Expr| {
        expr.cast(DataType::Datetime(
            TimeUnit::Microseconds,
            Some(TimeZone::UTC),
        ))
    };
    let half_life_us = match half_life {
        Some(span) => lit(u64::try_from(span.as_micros()).unwrap_or(u64::MAX)),
        None => lit(NULL).cast(DataType::UInt64),
    };
    let mut aggregations = vec![
        sum_count_if(is_read()).alias(out::REQUESTS),
        sum_count_if(is_read().and(col(columns::HIT).eq(lit(true)))).alias(out::HITS),
        sum_count_if(is_miss()).alias(out::MISSES),
        when(is_read())
            .then(weighted)
            .otherwise(lit(0u64))
            .sum()
            .alias(out::WEIGHTED_REQUESTS),
        sum_count_if(is_write()).alias(out::WRITES),
        micros().min().alias(out::FIRST_SEEN),
        when(is_read())
            .then(micros())
            .otherwise(lit(NULL).cast(DataType::Int64))
            .max()
            .alias(out::LAST_READ),
        micros().max().alias(out::LAST_SEEN),
        // The last delete rather than the last operation: a conditional max is a single
        // pass, where sorting every key's operations by time took most of the query.
        when(col(columns::OP).eq(lit("delete")))
            .then(micros())
            .otherwise(lit(NULL).cast(DataType::Int64))
            .max()
            .alias("_last_delete"),
        col(columns::VALUE_SIZE)
            .cast(DataType::Float64)
            .median()
            .alias(out::VALUE_SIZE),
        when(is_write())
            .then(col(columns::TTL_S).cast(DataType::Float64))
            .otherwise(lit(NULL).cast(DataType::Float64))
            .median()
            .alias(out::TTL_S),
        when(is_miss().and(col(columns::LATENCY_US).is_not_null()))
            .then(col(columns::LATENCY_US).cast(DataType::UInt64))
            .otherwise(lit(0u64))
            .sum()
            .alias(out::MISS_LATENCY_US),
        when(is_miss().and(col(columns::LATENCY_US).is_not_null()))
            .then(lit(1u64))
            .otherwise(lit(0u64))
            .cast(DataType::UInt64)
            .sum()
            .alias(out::MISS_LATENCIES),
    ];
    let mut selected = vec![
        col(out::KEY),
        col(out::REQUESTS),
        col(out::HITS),
        col(out::MISSES),
        col(out::WEIGHTED_REQUESTS),
        col(out::WRITES),
        instant(col(out::FIRST_SEEN)),
        instant(col(out::LAST_READ)),
        instant(col(out::LAST_SEEN)),
        col("_last_delete")
            .eq(col(out::LAST_SEEN))
            .fill_null(lit(false))
            .alias(out::DELETED_LAST),
        col(out::VALUE_SIZE),
        col(out::TTL_S),
        col(out::MISS_LATENCY_US),
        col(out::MISS_LATENCIES),
        instant(lit(end_micros)).alias(out::REFERENCE_TIME),
        half_life_us.alias(out::HALF_LIFE_US),
    ];
    for (name, aggregation) in extra {
        aggregations.push(aggregation.alias(name.as_str()));
        selected.push(col(name.as_str()));
    }
    events
        .with_columns([
            self::is_read().alias(READ_COLUMN),
            self::is_write().alias("_write"),
            self::is_read()
                .and(col(columns::HIT).eq(lit(false)))
                .alias("_miss"),
        ])
        .group_by([col(columns::KEY)])
        .agg(aggregations)
        .select(selected)
}
