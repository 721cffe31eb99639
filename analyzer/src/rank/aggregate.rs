//! The per-key aggregation of the dataset: the key-stats table of one machine (folded by
//! `super::tally`), and the polars scan of the dataset that `stats` and `simulate` query.
//!
//! The same aggregation, as SQL for engines that scale out, is `super::sql`; both give the
//! table of `schemas::key_stats`, which `super::key_stats` turns into ranking input.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use polars::prelude::*;
use schemas::event::columns;

use super::RankError;
use super::key_stats::DatasetStats;
use super::tally::{Plan, tally};

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
    /// An eighth of the window's span (see `AUTO_HALF_LIFE_DIVISOR`).
    EighthOfSpan,
    /// Every read weighs 1.
    Off,
    Fixed(std::time::Duration),
}

/// Aggregates every Parquet file of the dataset at `dataset` per key (`super::tally`); the
/// weights are relative to the last event (the end of the window). [`HalfLife::Auto`] is taken
/// as [`HalfLife::EighthOfSpan`] here: the backtest needs the ranking's options (`super::rank`).
pub fn aggregate(dataset: &Path, options: &AggregateOptions) -> Result<DatasetStats, RankError> {
    let (files, start, end) = files_and_span(dataset, options.until)?;
    let half_life = match options.half_life {
        HalfLife::Off => None,
        HalfLife::Fixed(span) => Some(span),
        HalfLife::Auto | HalfLife::EighthOfSpan => {
            Some(eighth_of_span(start, end)).filter(|span| !span.is_zero())
        }
    };
    let plan = Plan {
        until: options.until.map(|until| until.timestamp_micros()),
        end,
        half_lives: half_life.into_iter().collect(),
        folds: Vec::new(),
    };
    let tally = tally(&files, plan)?;
    let weighted = half_life.map(|_| tally.weighted(0));
    let mut keys = tally.keys;
    if let (Some(half_life), Some(weighted)) = (half_life, weighted) {
        let half_life_us = u64::try_from(half_life.as_micros()).unwrap_or(u64::MAX);
        for (key, weighted) in keys.iter_mut().zip(weighted) {
            key.weighted_requests = weighted;
            key.half_life_us = Some(half_life_us);
        }
    }
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
    let span = super::tally::span(&files, until.map(|until| until.timestamp_micros()))?;
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
