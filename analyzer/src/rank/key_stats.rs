//! The key-stats table (`schemas::key_stats`) as ranking input: from the local aggregation's
//! frame or from a Parquet dataset another engine wrote (`rank --key-stats`), through the same
//! conversion, into the one [`DatasetStats`] that scoring and packing read.

use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};
use polars::prelude::*;
use schemas::KeyStats;
use schemas::key_stats::columns;

use super::RankError;

/// The keys of the table (in no particular order), and figures over the whole table.
#[derive(Debug, Clone)]
pub struct DatasetStats {
    pub keys: Vec<KeyStats>,
    /// The first and last access of any key.
    pub window_start: DateTime<Utc>,
    pub window_end: DateTime<Utc>,
    /// The median of the keys' value sizes: the size assumed for keys with none logged.
    pub typical_value_size: u64,
    /// The half-life the weights were computed with; `None` when every read weighs 1.
    pub half_life: Option<Duration>,
    /// What a weight relative to the table's reference time is multiplied by to be relative
    /// to the window's end, as the local ranker's are: `0.5^((end − reference) / half-life)`,
    /// exactly 1 when the reference is the end.
    pub recency_factor: f64,
}

/// A key-stats table that cannot be used, and where in it.
#[derive(Debug, thiserror::Error)]
pub enum KeyStatsError {
    #[error("failed to read the table")]
    Polars(#[from] PolarsError),
    #[error("column `{0}` is missing")]
    MissingColumn(&'static str),
    #[error("column `{column}` is {dtype}, expected {expected}")]
    WrongType {
        column: &'static str,
        dtype: DataType,
        expected: &'static str,
    },
    #[error("column `{column}` is null for key `{key}`")]
    Null { column: &'static str, key: String },
    #[error("column `{column}` is {value} for key `{key}`, out of range")]
    OutOfRange {
        column: &'static str,
        key: String,
        value: i64,
    },
}

impl DatasetStats {
    /// The figures of the table `keys`, read from `path`; an error when its rows disagree on
    /// the reference time or the half-life, or it is empty.
    pub fn from_keys(keys: Vec<KeyStats>, path: &Path) -> Result<DatasetStats, RankError> {
        let Some(first) = keys.first() else {
            return Err(RankError::NoKeys(path.to_path_buf()));
        };
        let (reference, half_life_us) = (first.reference_time, first.half_life_us);
        let mixed = |column: &'static str, first: String, other: String| RankError::MixedKeyStats {
            path: path.to_path_buf(),
            column,
            first,
            other,
        };
        let mut window_start = first.first_seen;
        let mut window_end = first.last_seen;
        let mut sizes = Vec::with_capacity(keys.len());
        for key in &keys {
            if key.reference_time != reference {
                return Err(mixed(
                    columns::REFERENCE_TIME,
                    reference.to_rfc3339(),
                    key.reference_time.to_rfc3339(),
                ));
            }
            if key.half_life_us != half_life_us {
                return Err(mixed(
                    columns::HALF_LIFE_US,
                    format!("{half_life_us:?}"),
                    format!("{:?}", key.half_life_us),
                ));
            }
            window_start = window_start.min(key.first_seen);
            window_end = window_end.max(key.last_seen);
            sizes.extend(key.value_size);
        }
        // The middle element, selected: sorting every size took longer than the ranking's
        // own packing.
        let middle = sizes.len() / 2;
        if middle < sizes.len() {
            sizes.select_nth_unstable(middle);
        }
        let half_life = half_life_us.map(Duration::from_micros);
        let recency_factor = match half_life {
            Some(span) if window_end != reference => {
                let age_us = (window_end - reference)
                    .num_microseconds()
                    .unwrap_or(i64::MAX);
                0.5f64.powf(age_us as f64 / span.as_micros() as f64)
            }
            _ => 1.0,
        };
        Ok(DatasetStats {
            window_start,
            window_end,
            typical_value_size: sizes.get(middle).copied().unwrap_or(0),
            half_life,
            recency_factor,
            keys,
        })
    }
}

/// Reads the key-stats Parquet dataset at `path`: one file, or a directory whose `.parquet`
/// files (at any depth; names starting with `_` or `.`, such as Spark's `_SUCCESS` and
/// checksums, are skipped) hold one row per key between them.
pub fn read_key_stats(path: &Path) -> Result<DatasetStats, RankError> {
    let files = key_stats_files(path).map_err(|source| RankError::List {
        path: path.to_path_buf(),
        source,
    })?;
    if files.is_empty() {
        return Err(RankError::EmptyDataset(path.to_path_buf()));
    }
    let mut keys = Vec::new();
    for file in &files {
        let error = |source| RankError::KeyStats {
            path: file.clone(),
            source,
        };
        let args = ScanArgsParquet {
            hive_options: HiveOptions {
                enabled: Some(false),
                ..Default::default()
            },
            ..Default::default()
        };
        let frame = LazyFrame::scan_parquet(PlRefPath::new(file.to_string_lossy()), args)
            .and_then(LazyFrame::collect)
            .map_err(|e| error(e.into()))?;
        keys.extend(from_frame(&frame).map_err(error)?);
    }
    let mut names: Vec<&str> = keys.iter().map(|k| k.key.as_str()).collect();
    names.sort_unstable();
    if let Some(pair) = names.windows(2).find(|pair| pair[0] == pair[1]) {
        return Err(RankError::DuplicateKey {
            path: path.to_path_buf(),
            key: pair[0].to_owned(),
        });
    }
    DatasetStats::from_keys(keys, path)
}

fn key_stats_files(path: &Path) -> std::io::Result<Vec<PathBuf>> {
    if crate::dataset::remote::is_remote(path) {
        return remote_key_stats_files(path);
    }
    if !std::fs::metadata(path)?.is_dir() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut files = Vec::new();
    let mut dirs = vec![path.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if crate::dataset::is_skipped(&name) {
                continue;
            }
            if entry.file_type()?.is_dir() {
                dirs.push(entry.path());
            } else if name.ends_with(".parquet") {
                files.push(entry.path());
            }
        }
    }
    files.sort();
    Ok(files)
}

/// The key-stats files under an `s3://` prefix, by the same rules as a local directory; a
/// location ending in `.parquet` is one file.
fn remote_key_stats_files(path: &Path) -> std::io::Result<Vec<PathBuf>> {
    use crate::dataset::remote::Remote;
    if path.to_string_lossy().ends_with(".parquet") {
        return Ok(vec![path.to_path_buf()]);
    }
    let remote = Remote::open(path).map_err(std::io::Error::other)?;
    let objects = remote.list("").map_err(std::io::Error::other)?;
    Ok(objects
        .iter()
        .filter(|relative| {
            !relative.split('/').any(crate::dataset::is_skipped) && relative.ends_with(".parquet")
        })
        .map(|relative| remote.location(relative))
        .collect())
}

/// The rows of a key-stats frame: columns by name (others ignored), integers of any width,
/// medians also as floats (rounded half away from zero), instants of any unit.
pub fn from_frame(frame: &DataFrame) -> Result<Vec<KeyStats>, KeyStatsError> {
    let column = |name: &'static str| {
        frame
            .column(name)
            .map_err(|_| KeyStatsError::MissingColumn(name))
    };
    let wrong =
        |name: &'static str, dtype: &DataType, expected: &'static str| KeyStatsError::WrongType {
            column: name,
            dtype: dtype.clone(),
            expected,
        };
    let integers = |name: &'static str| -> Result<Int64Chunked, KeyStatsError> {
        let values = column(name)?;
        if !values.dtype().is_integer() {
            return Err(wrong(name, values.dtype(), "an integer"));
        }
        Ok(values.strict_cast(&DataType::Int64)?.i64()?.clone())
    };
    let medians = |name: &'static str| -> Result<Int64Chunked, KeyStatsError> {
        let values = column(name)?;
        if values.dtype().is_float() {
            let floats = values.strict_cast(&DataType::Float64)?;
            // Rust's round is half away from zero, as SQL's ROUND and the local ranker.
            return Ok(floats
                .f64()?
                .iter()
                .map(|v| v.map(|v| v.round() as i64))
                .collect());
        }
        integers(name)
    };
    let instants = |name: &'static str| -> Result<Int64Chunked, KeyStatsError> {
        let values = column(name)?;
        let DataType::Datetime(unit, _) = values.dtype() else {
            return Err(wrong(name, values.dtype(), "a timestamp"));
        };
        let raw = values.datetime()?.physical();
        Ok(match unit {
            TimeUnit::Nanoseconds => raw.apply_values(|v| v.div_euclid(1000)),
            TimeUnit::Microseconds => raw.clone(),
            TimeUnit::Milliseconds => raw.apply_values(|v| v * 1000),
        })
    };
    let keys = column(columns::KEY)?;
    let keys = keys
        .str()
        .map_err(|_| wrong(columns::KEY, keys.dtype(), "a string"))?;
    let deleted_last = column(columns::DELETED_LAST)?;
    let deleted_last = deleted_last
        .bool()
        .map_err(|_| wrong(columns::DELETED_LAST, deleted_last.dtype(), "a boolean"))?;
    let requests = integers(columns::REQUESTS)?;
    let hits = integers(columns::HITS)?;
    let misses = integers(columns::MISSES)?;
    let weighted = integers(columns::WEIGHTED_REQUESTS)?;
    let writes = integers(columns::WRITES)?;
    let first_seen = instants(columns::FIRST_SEEN)?;
    let last_read = instants(columns::LAST_READ)?;
    let last_seen = instants(columns::LAST_SEEN)?;
    let value_size = medians(columns::VALUE_SIZE)?;
    let ttl_s = medians(columns::TTL_S)?;
    let miss_latency_us = integers(columns::MISS_LATENCY_US)?;
    let miss_latencies = integers(columns::MISS_LATENCIES)?;
    let reference_time = instants(columns::REFERENCE_TIME)?;
    let half_life_us = integers(columns::HALF_LIFE_US)?;

    let mut rows = Vec::with_capacity(frame.height());
    for i in 0..frame.height() {
        let Some(key) = keys.get(i) else {
            return Err(KeyStatsError::Null {
                column: columns::KEY,
                key: format!("(row {i})"),
            });
        };
        let null = |column: &'static str| KeyStatsError::Null {
            column,
            key: key.to_owned(),
        };
        let range = |column: &'static str, value: i64| KeyStatsError::OutOfRange {
            column,
            key: key.to_owned(),
            value,
        };
        // A count: present and not negative.
        let count = |column: &'static str, values: &Int64Chunked| -> Result<u64, KeyStatsError> {
            let value = values.get(i).ok_or_else(|| null(column))?;
            u64::try_from(value).map_err(|_| range(column, value))
        };
        let optional = |column: &'static str, values: &Int64Chunked| {
            values
                .get(i)
                .map(|value| u64::try_from(value).map_err(|_| range(column, value)))
                .transpose()
        };
        let instant = |column: &'static str, micros: i64| {
            DateTime::from_timestamp_micros(micros).ok_or_else(|| range(column, micros))
        };
        let required_instant = |column: &'static str, values: &Int64Chunked| {
            instant(column, values.get(i).ok_or_else(|| null(column))?)
        };
        let ttl_s = optional(columns::TTL_S, &ttl_s)?
            .map(|ttl| u32::try_from(ttl).map_err(|_| range(columns::TTL_S, ttl as i64)))
            .transpose()?;
        rows.push(KeyStats {
            key: key.to_owned(),
            requests: count(columns::REQUESTS, &requests)?,
            hits: count(columns::HITS, &hits)?,
            misses: count(columns::MISSES, &misses)?,
            weighted_requests: count(columns::WEIGHTED_REQUESTS, &weighted)?,
            writes: count(columns::WRITES, &writes)?,
            first_seen: required_instant(columns::FIRST_SEEN, &first_seen)?,
            last_read: last_read
                .get(i)
                .map(|micros| instant(columns::LAST_READ, micros))
                .transpose()?,
            last_seen: required_instant(columns::LAST_SEEN, &last_seen)?,
            deleted_last: deleted_last
                .get(i)
                .ok_or_else(|| null(columns::DELETED_LAST))?,
            value_size: optional(columns::VALUE_SIZE, &value_size)?,
            ttl_s,
            miss_latency_us: count(columns::MISS_LATENCY_US, &miss_latency_us)?,
            miss_latencies: count(columns::MISS_LATENCIES, &miss_latencies)?,
            reference_time: required_instant(columns::REFERENCE_TIME, &reference_time)?,
            half_life_us: optional(columns::HALF_LIFE_US, &half_life_us)?,
        });
    }
    Ok(rows)
}
