//! Per-key aggregation of the dataset with polars.

use std::path::Path;

use chrono::{DateTime, Utc};
use polars::prelude::*;
use schemas::event::columns;

use super::RankError;

/// What the dataset says about one key that was read.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyStats {
    pub key: String,
    /// Read requests: the sum of `count` over reads.
    pub requests: u64,
    pub hits: u64,
    pub misses: u64,
    pub last_seen: DateTime<Utc>,
    /// The median logged value size, when any was logged.
    pub value_size: Option<u64>,
    /// The median TTL given on writes, when any was logged.
    pub ttl_s: Option<u32>,
}

/// The keys that were read, most requested first (ties by key), and dataset-wide figures.
#[derive(Debug, Clone)]
pub struct DatasetStats {
    pub keys: Vec<KeyStats>,
    pub window_start: DateTime<Utc>,
    pub window_end: DateTime<Utc>,
    /// The median of the keys' value sizes: the size assumed for keys with none logged.
    pub typical_value_size: u64,
}

/// Aggregates every Parquet file of the dataset at `dataset` per key.
pub fn aggregate(dataset: &Path) -> Result<DatasetStats, RankError> {
    let files = crate::dataset::data_files(dataset).map_err(|source| RankError::List {
        path: dataset.to_path_buf(),
        source,
    })?;
    if files.is_empty() {
        return Err(RankError::EmptyDataset(dataset.to_path_buf()));
    }
    let polars_error = |source| RankError::Polars {
        path: dataset.to_path_buf(),
        source,
    };
    let frame = scan(&files)
        .and_then(|events| per_key(events).collect())
        .map_err(polars_error)?;
    let window = scan(&files)
        .and_then(|events| {
            events
                .select([
                    col(columns::TS).min().cast(DataType::Int64).alias("start"),
                    col(columns::TS).max().cast(DataType::Int64).alias("end"),
                ])
                .collect()
        })
        .map_err(polars_error)?;
    let keys = to_key_stats(&frame).map_err(polars_error)?;
    let instant = |name: &str| -> PolarsResult<DateTime<Utc>> {
        let micros = window.column(name)?.i64()?.get(0).unwrap_or(0);
        Ok(DateTime::from_timestamp_micros(micros).unwrap_or_default())
    };
    let mut sizes: Vec<u64> = keys.iter().filter_map(|k| k.value_size).collect();
    sizes.sort_unstable();
    Ok(DatasetStats {
        window_start: instant("start").map_err(polars_error)?,
        window_end: instant("end").map_err(polars_error)?,
        typical_value_size: sizes.get(sizes.len() / 2).copied().unwrap_or(0),
        keys,
    })
}

fn scan(files: &[std::path::PathBuf]) -> PolarsResult<LazyFrame> {
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
    concat(frames, UnionArgs::default())
}

/// The per-key aggregation, ranked.
fn per_key(events: LazyFrame) -> LazyFrame {
    let is_read = || col(columns::OP).eq(lit("get"));
    let is_write = col(columns::OP)
        .eq(lit("set"))
        .or(col(columns::OP).eq(lit("add")))
        .or(col(columns::OP).eq(lit("replace")))
        .or(col(columns::OP).eq(lit("cas")));
    let read_count = |condition: Expr| {
        when(condition)
            .then(col(columns::COUNT).cast(DataType::UInt64))
            .otherwise(lit(0u64))
            .sum()
    };
    events
        .group_by([col(columns::KEY)])
        .agg([
            read_count(is_read()).alias("requests"),
            read_count(is_read().and(col(columns::HIT).eq(lit(true)))).alias("hits"),
            read_count(is_read().and(col(columns::HIT).eq(lit(false)))).alias("misses"),
            col(columns::TS)
                .max()
                .cast(DataType::Int64)
                .alias("last_seen"),
            col(columns::VALUE_SIZE)
                .cast(DataType::Float64)
                .median()
                .alias("value_size"),
            when(is_write)
                .then(col(columns::TTL_S).cast(DataType::Float64))
                .otherwise(lit(NULL).cast(DataType::Float64))
                .median()
                .alias("ttl_s"),
        ])
        .filter(col("requests").gt(lit(0u64)))
        .sort_by_exprs(
            [col("requests"), col(columns::KEY)],
            SortMultipleOptions::default().with_order_descending_multi([true, false]),
        )
}

fn to_key_stats(frame: &DataFrame) -> PolarsResult<Vec<KeyStats>> {
    let key = frame.column(columns::KEY)?.str()?;
    let requests = frame.column("requests")?.u64()?;
    let hits = frame.column("hits")?.u64()?;
    let misses = frame.column("misses")?.u64()?;
    let last_seen = frame.column("last_seen")?.i64()?;
    let value_size = frame.column("value_size")?.f64()?;
    let ttl_s = frame.column("ttl_s")?.f64()?;
    let mut keys = Vec::with_capacity(frame.height());
    for i in 0..frame.height() {
        keys.push(KeyStats {
            key: key.get(i).unwrap_or_default().to_owned(),
            requests: requests.get(i).unwrap_or(0),
            hits: hits.get(i).unwrap_or(0),
            misses: misses.get(i).unwrap_or(0),
            last_seen: DateTime::from_timestamp_micros(last_seen.get(i).unwrap_or(0))
                .unwrap_or_default(),
            value_size: value_size.get(i).map(|v| v.round() as u64),
            ttl_s: ttl_s.get(i).map(|v| v.round() as u32),
        });
    }
    Ok(keys)
}
