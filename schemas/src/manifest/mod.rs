//! Manifest v1: the ranked hot keys the analyzer chose under a capacity budget.
//!
//! Written by `analyzer rank` as JSON (optionally zstd-compressed, `.json.zst`), read by the
//! warmer. The warmer refuses a manifest whose `header.schema` it does not know or whose
//! `header.entries_sha256` does not match [`entries_sha256`] of its entries.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub mod lines;

/// The schema id of manifest v1, stored in `header.schema`.
pub const MANIFEST_SCHEMA_ID: &str = "cachewarm.manifest/v1";

/// A hot-key manifest: a header, then the entries in rank order (most valuable first).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub header: ManifestHeader,
    pub entries: Vec<ManifestEntry>,
}

/// What the manifest is, where it came from, and what it holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ManifestHeader {
    /// Always [`MANIFEST_SCHEMA_ID`] for this version.
    pub schema: String,
    /// The program and version that wrote the manifest, e.g. `analyzer 0.1.0`.
    pub generator: String,
    /// When the manifest was written.
    pub generated_at: DateTime<Utc>,
    /// The span of the access events the ranking looked at.
    pub window: ObservationWindow,
    /// The capacity budget the entries were packed into.
    pub budget: Budget,
    /// Totals over the whole dataset and over the selected entries.
    pub totals: Totals,
    /// Totals of the selected entries per category.
    pub categories: BTreeMap<String, CategoryTotals>,
    /// How keys were scored; absent in manifests ranked by request count alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scoring: Option<Scoring>,
    /// Keys seen in the window but left out before packing, per reason: `invalid_key`,
    /// `deleted` (the last operation was a delete), `write_only`, `not_read_in_window`,
    /// `one_hit_wonder`, `category_disabled`, `not_selected` (by `--category` or `--key`),
    /// `below_category_min_requests`.
    #[serde(default)]
    pub exclusions: BTreeMap<String, u64>,
    /// What a backtest of this ranking predicts warming will achieve (`analyzer rank
    /// --simulate`, see `analyzer simulate`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prediction: Option<Prediction>,
    /// Lowercase hex sha256 of the entries; see [`entries_sha256`].
    pub entries_sha256: String,
}

/// The time span of the events behind a manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ObservationWindow {
    /// The first event's timestamp.
    pub start: DateTime<Utc>,
    /// The last event's timestamp.
    pub end: DateTime<Utc>,
}

/// The byte budget of a manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Budget {
    /// Bytes of key + value the entries may take in all.
    pub bytes: u64,
    /// Where the figure came from, e.g. `--budget 64MiB`.
    pub source: String,
    /// The capacity of the store the budget is a share of, when it was known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capacity_bytes: Option<u64>,
}

/// How `analyzer rank` scored keys: score = recency-weighted reads × miss cost / bytes, where
/// bytes = key + value + `item_overhead`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Scoring {
    /// The half-life of a read's weight, in seconds; absent when every read weighs the same.
    pub half_life_s: Option<f64>,
    /// Whether the miss cost came from logged miss latencies (`miss_latency`) or was 1 for
    /// every key (`uniform`).
    pub miss_cost: String,
    /// The store kind the keys were checked for (`redis`, `memcached`, `sql`), if any.
    pub store: Option<String>,
    /// Bytes counted per item beyond key and value, in the score and against the budget.
    pub item_overhead: u64,
    /// How `--half-life auto` chose `half_life_s`; absent when the half-life was given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub half_life_backtest: Option<HalfLifeBacktest>,
}

/// `--half-life auto`'s backtest: each candidate half-life ranked the window's older part
/// under the same budget and rules, and was judged by the reads right after it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HalfLifeBacktest {
    /// The folds, oldest first: each trained every candidate and judged it.
    pub folds: Vec<BacktestFold>,
    /// Keys read in each fold's judged window that a choice knowing them would hold under the
    /// budget, summed over the folds: the most `hits` any candidate could have.
    pub oracle_hits: u64,
    /// The candidates, shortest half-life first and `off` last; the chosen one has the most
    /// `hits` (ties: the longest half-life) and is `half_life_s` above.
    pub candidates: Vec<HalfLifeCandidate>,
}

/// One fold of a half-life backtest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BacktestFold {
    /// Events before this instant trained each candidate.
    pub split_at: DateTime<Utc>,
    /// Reads from `split_at` until this instant judged them.
    pub judged_until: DateTime<Utc>,
}

/// One candidate of a half-life backtest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HalfLifeCandidate {
    /// The half-life in seconds; absent for `off` (every read weighs the same).
    pub half_life_s: Option<f64>,
    /// Keys of the manifest it ranked from a fold's train part that were read in the fold's
    /// judged window, summed over the folds: early reads that a cache warmed with it hits
    /// instead of missing.
    pub hits: u64,
    /// `hits` as a share of `oracle_hits`; absent when that is 0.
    pub share: Option<f64>,
}

/// A backtest: the dataset split in time, the test window replayed through an LRU cache of the
/// target's capacity, cold and pre-loaded with a manifest ranked from the train window only.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Prediction {
    /// Events before this instant trained the ranking; those from it on were replayed.
    pub split_at: DateTime<Utc>,
    /// The simulated cache's capacity in bytes.
    pub capacity_bytes: u64,
    /// The budget the manifest and the oracle were packed into.
    pub budget_bytes: u64,
    /// Read requests in the test window.
    pub test_requests: u64,
    /// The early window: the first this many read requests of the test window.
    pub first_requests: u64,
    /// Hit rates over the first `first_requests` reads.
    pub early: HitRates,
    /// Hit rates over the whole test window.
    pub whole: HitRates,
    /// The manifest's extra early hits over a cold start as a share of the oracle's (1 = as
    /// good as knowing the future); absent when the oracle gains nothing.
    pub early_gain_vs_oracle: Option<f64>,
}

/// Hit rates of one stretch of replayed reads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HitRates {
    /// Starting from an empty cache.
    pub cold: f64,
    /// Starting with the manifest's keys loaded.
    pub warmed: f64,
    /// Starting with the best keys under the same budget chosen knowing the test window.
    pub oracle: f64,
}

/// Totals of a manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Totals {
    /// Distinct keys seen in the window (read or written).
    pub keys_seen: u64,
    /// Read requests in the window (sum of `count` over reads).
    pub requests_seen: u64,
    /// Entries selected.
    pub keys_selected: u64,
    /// Read requests of the selected keys.
    pub requests_selected: u64,
    /// Bytes the selected keys take against the budget: key + value + the per-item overhead
    /// of `scoring` each.
    pub bytes_selected: u64,
    /// Keys that passed the exclusion rules but were left out because the budget (or their
    /// category's share of it) was full.
    pub keys_over_budget: u64,
}

/// Totals of the selected entries of one category.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CategoryTotals {
    pub keys: u64,
    pub requests: u64,
    pub bytes: u64,
    /// The bytes of budget this category may take, when its rule limits it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget_bytes: Option<u64>,
    /// The TTL its rule gives the category's keys, in seconds (also in each entry's `ttl_s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_s: Option<u32>,
    /// Whether its keys are secrets (its rule's `sensitive`): shown only as the category and a
    /// keyed hash outside the manifest and the run directory.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub sensitive: bool,
}

/// One hot key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ManifestEntry {
    /// Position in the manifest, from 1; the warmer writes in this order.
    pub rank: u64,
    /// The key as the store sees it.
    pub key: String,
    /// The category the key belongs to (`default` when no rule matched).
    pub category: String,
    /// The ranking score; higher is more valuable. Comparable within one manifest only.
    pub score: f64,
    /// Read requests in the window (sum of `count`).
    pub requests: u64,
    /// Reads logged as hits.
    pub hits: u64,
    /// Reads logged as misses.
    pub misses: u64,
    /// Bytes the entry takes: key + typical value size.
    pub size_bytes: u64,
    /// The TTL to give the key, in seconds: its category's TTL when the rule sets one, else
    /// the median TTL given on writes of the key; absent when neither is known.
    pub ttl_s: Option<u32>,
    /// The last time the key was accessed.
    pub last_seen: DateTime<Utc>,
}

/// The checksum stored in `header.entries_sha256`: lowercase hex sha256 of the entries
/// serialized as one compact JSON array (fields in declaration order, as serde writes them).
pub fn entries_sha256(entries: &[ManifestEntry]) -> String {
    let bytes = serde_json::to_vec(entries).expect("manifest entries serialize");
    let digest = Sha256::digest(&bytes);
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A header with every required field and empty entries (`entries_sha256` to be set).
    pub(crate) fn header() -> ManifestHeader {
        let at = DateTime::from_timestamp_micros(1_700_000_000_000_000).unwrap();
        ManifestHeader {
            schema: MANIFEST_SCHEMA_ID.into(),
            generator: "test".into(),
            generated_at: at,
            window: ObservationWindow { start: at, end: at },
            budget: Budget {
                bytes: 300,
                source: "test".into(),
                capacity_bytes: None,
            },
            totals: Totals {
                keys_seen: 0,
                requests_seen: 0,
                keys_selected: 0,
                requests_selected: 0,
                bytes_selected: 0,
                keys_over_budget: 0,
            },
            categories: Default::default(),
            scoring: None,
            exclusions: Default::default(),
            prediction: None,
            entries_sha256: entries_sha256(&[]),
        }
    }

    fn entry(rank: u64, key: &str, score: f64) -> ManifestEntry {
        ManifestEntry {
            rank,
            key: key.into(),
            category: "default".into(),
            score,
            requests: 10,
            hits: 7,
            misses: 3,
            size_bytes: 120,
            ttl_s: Some(300),
            last_seen: DateTime::from_timestamp_micros(1_700_000_000_123_456).unwrap(),
        }
    }

    /// The warmer recomputes the checksum from parsed entries, so it must survive a JSON round
    /// trip, including scores that are not round numbers.
    #[test]
    fn checksum_survives_json_round_trip() {
        let entries = vec![entry(1, "a", 0.1 + 0.2), entry(2, "b:ü", 1.0 / 3.0)];
        let text = serde_json::to_string_pretty(&entries).unwrap();
        let parsed: Vec<ManifestEntry> = serde_json::from_str(&text).unwrap();
        assert_eq!(entries_sha256(&parsed), entries_sha256(&entries));
    }

    /// Any change to an entry changes the checksum.
    #[test]
    fn checksum_detects_changes() {
        let entries = vec![entry(1, "a", 2.0)];
        let mut changed = entries.clone();
        changed[0].requests += 1;
        assert_ne!(entries_sha256(&entries), entries_sha256(&changed));
    }
}
