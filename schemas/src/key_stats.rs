//! Key stats v1: what the dataset says about each key, one row per key.
//!
//! The per-key aggregation is the heavy half of ranking; scoring, exclusions, categories and
//! packing only read this table. `analyzer rank` builds it in memory with polars; on a fleet it
//! is computed by the SQL of `analyzer aggregate-sql` on Spark, DuckDB or Trino and written as
//! a Parquet dataset, which `analyzer rank --key-stats` packs into a manifest. The Parquet
//! columns are named as the fields below ([`columns`]): integers are INT64 (any integer width
//! is read), instants are TIMESTAMP (any unit; UTC, or without a zone and taken as UTC). The
//! JSON Schema (`key-stats.v1.schema.json`) describes one row as JSON.
//!
//! Recency-weighted reads are relative to `reference_time`: each read weighs
//! `count × 0.5^((reference_time − ts) / half_life)`, summed in fixed point (units of
//! 1 / [`WEIGHT_SCALE`]). Two tables aggregated with the same reference time and half-life
//! add up key by key; one of another reference time `r` is brought to reference `R` by
//! multiplying its weights by `0.5^((R − r) / half_life)` (see docs/DESIGN-NOTES.md).

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The fixed-point scale of recency-weighted reads: weights are rounded to integers per event
/// and summed as integers, so the sum does not depend on the order an engine's threads add
/// them in, and the same dataset gives the same manifest, byte for byte, on any engine. 2^20
/// keeps six significant digits of a read that is 20 half-lives old.
pub const WEIGHT_SCALE: f64 = (1u64 << 20) as f64;

/// Column names of the key-stats table, in table order.
pub mod columns {
    pub const KEY: &str = "key";
    pub const REQUESTS: &str = "requests";
    pub const HITS: &str = "hits";
    pub const MISSES: &str = "misses";
    pub const WEIGHTED_REQUESTS: &str = "weighted_requests";
    pub const WRITES: &str = "writes";
    pub const FIRST_SEEN: &str = "first_seen";
    pub const LAST_READ: &str = "last_read";
    pub const LAST_SEEN: &str = "last_seen";
    pub const DELETED_LAST: &str = "deleted_last";
    pub const VALUE_SIZE: &str = "value_size";
    pub const TTL_S: &str = "ttl_s";
    pub const MISS_LATENCY_US: &str = "miss_latency_us";
    pub const MISS_LATENCIES: &str = "miss_latencies";
    pub const REFERENCE_TIME: &str = "reference_time";
    pub const HALF_LIFE_US: &str = "half_life_us";

    /// Every column, in table order.
    pub const ALL: [&str; 16] = [
        KEY,
        REQUESTS,
        HITS,
        MISSES,
        WEIGHTED_REQUESTS,
        WRITES,
        FIRST_SEEN,
        LAST_READ,
        LAST_SEEN,
        DELETED_LAST,
        VALUE_SIZE,
        TTL_S,
        MISS_LATENCY_US,
        MISS_LATENCIES,
        REFERENCE_TIME,
        HALF_LIFE_US,
    ];
}

/// What the dataset says about one key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct KeyStats {
    /// The cache key, as in the dataset.
    pub key: String,
    /// Read requests: the sum of `count` over reads (`op = get`).
    pub requests: u64,
    /// Reads that hit (`hit = true`), by `count`.
    pub hits: u64,
    /// Reads that missed (`hit = false`), by `count`; reads of unknown outcome are neither.
    pub misses: u64,
    /// Reads, each weighing `count × 0.5^((reference_time − ts) / half_life)` rounded to units
    /// of 1 / [`WEIGHT_SCALE`], summed.
    pub weighted_requests: u64,
    /// Writes (set, add, replace, cas), by `count`.
    pub writes: u64,
    /// The first access of any kind.
    pub first_seen: DateTime<Utc>,
    /// The last read, if any.
    pub last_read: Option<DateTime<Utc>>,
    /// The last access of any kind.
    pub last_seen: DateTime<Utc>,
    /// Whether the last access was a delete (a delete at the same instant as the last access
    /// counts as last).
    pub deleted_last: bool,
    /// The median logged value size over all operations (the mean of the two middle values
    /// for an even number), rounded half away from zero; absent when none was logged.
    pub value_size: Option<u64>,
    /// The median TTL given on writes, rounded as `value_size`; absent when none was logged.
    pub ttl_s: Option<u32>,
    /// The sum of logged latencies of missed reads, in µs.
    pub miss_latency_us: u64,
    /// How many missed reads had a logged latency.
    pub miss_latencies: u64,
    /// The instant read weights are relative to; the same in every row of a table.
    pub reference_time: DateTime<Utc>,
    /// The half-life of a read's weight in µs, the same in every row of a table; absent when
    /// every read weighs its `count`.
    pub half_life_us: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The column list and the row type are two spellings of the same contract.
    #[test]
    fn column_list_matches_the_row_type() {
        let schema = schemars::schema_for!(KeyStats);
        let properties = schema
            .get("properties")
            .and_then(|p| p.as_object())
            .expect("an object schema");
        let mut names: Vec<&str> = properties.keys().map(String::as_str).collect();
        let mut expected = columns::ALL.to_vec();
        names.sort_unstable();
        expected.sort_unstable();
        assert_eq!(names, expected);
    }
}
