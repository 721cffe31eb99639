//! Report v1: what a warm run did, target by target, and how much of the manifest's request
//! weight each target held before and after.
//!
//! This file holds the report and one target's section; the outcome vocabulary and its counts
//! are in `outcome.rs`, read-back validation in `verify.rs`, live-traffic windows in
//! `traffic.rs`, and the loader's section in `loader.rs`. Every type is re-exported here.

mod loader;
mod outcome;
mod traffic;
mod verify;

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::manifest::Prediction;

pub use loader::{LOADER_FAILURES_LISTED, LoaderFailure, LoaderReport};
pub use outcome::{Counts, EntryOutcome};
pub use traffic::{HitCounters, HitWindow, Observation};
pub use verify::{MISMATCHES_LISTED, Mismatch, Verification, VerifyCounts};

/// The schema id of report v1, stored in `schema`.
pub const REPORT_SCHEMA_ID: &str = "cachewarm.report/v1";

/// The report of one warm run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Report {
    /// Always [`REPORT_SCHEMA_ID`] for this version.
    pub schema: String,
    /// The run's id; also the name of its run directory.
    pub run_id: String,
    /// The program and version that ran, e.g. `warmer 0.1.0`.
    pub generator: String,
    /// The manifest the run warmed from.
    pub manifest: ManifestRef,
    /// The environment profile the run used, when one was named.
    pub environment: Option<String>,
    /// Where values came from (credentials redacted).
    pub source: String,
    /// Why the source failed, when it did; the entries not read are counted as `not_attempted`.
    pub source_error: Option<String>,
    /// True when nothing was written: the counts say what would have been.
    pub dry_run: bool,
    /// How the run ended.
    pub outcome: Outcome,
    pub timings: Timings,
    /// One section per target store, in the order they were given.
    pub targets: Vec<TargetReport>,
    /// How live traffic was observed around the warm (`--observe`, `--baseline-hit-rate`);
    /// absent when it was not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observation: Option<Observation>,
    /// The analyzer's backtest of the manifest (its header's `prediction`), to set beside the
    /// measured hit rates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prediction: Option<Prediction>,
    /// How much request weight the manifest's first N entries carry, sampled along the ranks
    /// (first and last rank included), for the coverage-by-rank chart.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rank_curve: Vec<RankPoint>,
    /// The loader processes, when the source was one (`exec:`); absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loader: Option<LoaderReport>,
    /// The shard of the manifest this run warmed (`--shard`); absent for a whole-manifest
    /// run. A shard's counts, coverage and `manifest.entries` are over its own entries; ranks
    /// (`not_warmed`, `budget_cut_rank`, `rank_curve`) are the manifest's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<crate::Shard>,
    /// For a report merged from the shards' reports (`warmer report --merge`): the shards'
    /// runs, by shard index. Absent for one run's report.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub merged_from: Vec<MergedRun>,
}

/// One shard's run in a merged report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MergedRun {
    pub shard: crate::Shard,
    pub run_id: String,
    /// The run directory as `warmer report --merge` was given it.
    pub run_dir: String,
    pub outcome: Outcome,
}

/// One point of the cumulative request weight along the manifest's ranks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RankPoint {
    /// A rank, from 1.
    pub rank: u64,
    /// The sum of `requests` of the entries ranked 1 to `rank`.
    pub requests: u64,
}

/// Which manifest a report is about.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ManifestRef {
    pub path: String,
    /// The manifest's `entries_sha256`.
    pub sha256: String,
    pub entries: u64,
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Every entry was handled.
    Completed,
    /// The timeout stopped the run; the entries not reached are counted as `not_attempted`.
    TimedOut,
    /// A signal stopped the run after its in-flight batches.
    Interrupted,
}

/// When the run happened and how long its phases took.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Timings {
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    /// Wall time of the whole run, observation windows included, milliseconds.
    pub total_ms: u64,
    /// Wall time spent writing (after the coverage probe, before the final probe), milliseconds.
    pub warm_ms: u64,
}

/// What happened at one target store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TargetReport {
    /// The target's URL, credentials redacted.
    pub url: String,
    /// The store: `redis`, `redis-cluster`, `memcached`, `sqlite` or `postgres`.
    pub kind: String,
    /// Whether the store stayed reachable for the whole run.
    pub status: TargetStatus,
    /// What went wrong, when `status` is `failed`; or, with `status` `ok`, why the run could
    /// not write everything here although the store was fine (the source failed). With its
    /// whole chain of causes.
    pub error: Option<String>,
    /// Every manifest entry lands in exactly one count.
    pub counts: Counts,
    /// Key + value bytes written.
    pub bytes_written: u64,
    /// The most bytes the run was allowed to write here (`max_fill` of the capacity), when the
    /// capacity is known.
    pub budget_bytes: Option<u64>,
    /// Entries handled per second of warm time.
    pub keys_per_s: f64,
    /// Share of the manifest's request weight present in the store before warming; absent when
    /// the store could not be probed.
    pub coverage_before: Option<Coverage>,
    /// The same, after warming.
    pub coverage_after: Option<Coverage>,
    /// The store's own read counters before warming, where it keeps them.
    pub hit_counters_before: Option<HitCounters>,
    /// The same, after warming.
    pub hit_counters_after: Option<HitCounters>,
    /// How many writes failed, by the store's reason.
    pub failure_reasons: BTreeMap<String, u64>,
    /// The counts and coverage per manifest category.
    pub categories: BTreeMap<String, CategoryReport>,
    /// The store's read counters over a window of live traffic just before warming
    /// (`--observe`); absent when not observed or the store keeps no counters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window_before: Option<HitWindow>,
    /// The same over the window just after warming.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window_after: Option<HitWindow>,
    /// The rank of the first entry left out because the byte budget was reached; absent when
    /// the budget was never reached.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget_cut_rank: Option<u64>,
    /// The most valuable entries (lowest ranks, at most [`NOT_WARMED_LISTED`]) that this run
    /// handled but that are not in the store after it, and why.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_warmed: Vec<NotWarmed>,
    /// What stopped writing before the end of the manifest, when a capacity limit did:
    /// `max_fill` (the run's byte budget, a share of the store's capacity), `high_water`
    /// (the store's used memory, live data included, reached the high-water mark) or
    /// `max_entries` (a SQL cache's table reached its entry limit, Django's `MAX_ENTRIES`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopped_by: Option<String>,
    /// How the run held back to keep the store's latency near what it was before warming;
    /// absent when adaptive throttling was off or the store has no latency to measure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub throttle: Option<ThrottleReport>,
    /// Store calls that failed and were made again (with backoff), over the whole target.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub retries: u64,
    /// Read-back validation of what this invocation wrote (`--verify`); absent when off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verification: Option<Verification>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// Adaptive throttling of one target (AIMD on its write rate, driven by the latency of a
/// separate probe connection).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ThrottleReport {
    /// The store's round-trip latency before warming (median of the probes), in µs.
    pub baseline_us: u64,
    /// The latency above which the run slowed down, in µs.
    pub threshold_us: u64,
    /// The highest median latency seen during the warm, in µs.
    pub peak_us: u64,
    /// How many times the write rate was cut.
    pub backoffs: u64,
    /// The lowest write rate the run fell to (writes/s); absent when it never slowed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lowest_rate: Option<u64>,
    /// Whether other clients read the store during the run. Without them the run is not
    /// slowed down: there is no live traffic to protect.
    #[serde(default)]
    pub live_traffic: bool,
}

/// How many entries [`TargetReport::not_warmed`] lists at most.
pub const NOT_WARMED_LISTED: usize = 25;

/// A manifest entry that is not in the store after the run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NotWarmed {
    pub rank: u64,
    pub key: String,
    pub category: String,
    /// The entry's read requests in the manifest.
    pub requests: u64,
    /// Why: `source_miss`, `invalid_key`, `skipped_budget`, `skipped_near_expiry` or `failed`.
    pub reason: EntryOutcome,
    /// The store's reason, for `failed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// Whether a target stayed usable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum TargetStatus {
    Ok,
    Failed,
}

/// How much of the manifest's request weight a store holds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Coverage {
    /// `requests_present / requests_total`, 0 when the total is 0.
    pub share: f64,
    /// Sum of `requests` of the manifest entries present in the store.
    pub requests_present: u64,
    /// Sum of `requests` of all manifest entries.
    pub requests_total: u64,
    /// Manifest entries present in the store.
    pub keys_present: u64,
}

impl Coverage {
    /// Builds a coverage figure from its parts.
    pub fn new(requests_present: u64, requests_total: u64, keys_present: u64) -> Coverage {
        let share = if requests_total == 0 {
            0.0
        } else {
            requests_present as f64 / requests_total as f64
        };
        Coverage {
            share,
            requests_present,
            requests_total,
            keys_present,
        }
    }
}

/// Counts and coverage of one category at one target.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CategoryReport {
    pub counts: Counts,
    pub coverage_before: Option<Coverage>,
    pub coverage_after: Option<Coverage>,
    /// Read-back validation of this category's writes (`--verify`); absent when off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verification: Option<VerifyCounts>,
}
