//! Report v1: what a warm run did, target by target, and how much of the manifest's request
//! weight each target held before and after.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::manifest::Prediction;

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
}

/// What the loader processes of an `exec:` source did (loader protocol v1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LoaderReport {
    /// The command, as given after `exec:`.
    pub command: String,
    /// The first loader's hello: which application, framework, cache alias and serializer
    /// made the values.
    pub hello: Option<crate::loader::Hello>,
    /// Loader processes run side by side (`--loader-workers`).
    pub workers: u32,
    /// Processes started, restarts included.
    pub started: u64,
    /// Processes started again after one crashed, stalled or broke the protocol.
    pub restarts: u64,
    /// Requests answered in full.
    pub requests: u64,
    /// Keys asked again after a retryable error or a failed loader.
    pub retries: u64,
    /// Keys the loader had nothing for, by its reason.
    pub misses: BTreeMap<String, u64>,
    /// Keys that could not be loaded in the end (the loader's error, a loader that kept
    /// failing, a value over `--max-value-size`), by reason.
    pub errors: BTreeMap<String, u64>,
    /// The first loader failures (crash, stall, a line that is not protocol), each with the
    /// end of that loader's stderr.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failures: Vec<LoaderFailure>,
}

/// How many failures [`LoaderReport::failures`] lists at most.
pub const LOADER_FAILURES_LISTED: usize = 10;

/// One loader process that failed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LoaderFailure {
    pub at: DateTime<Utc>,
    /// Which worker (from 0).
    pub worker: u32,
    /// What went wrong: the exit status, the stall, or the line that was not protocol.
    pub message: String,
    /// The last lines the loader wrote to stderr before it was stopped.
    pub stderr_tail: Vec<String>,
}

/// How live traffic was observed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Observation {
    /// The length of each observation window asked for (`--observe`), milliseconds; 0 when
    /// only a baseline was given.
    pub observe_ms: u64,
    /// The hit rate given on the command line (`--baseline-hit-rate`) to compare the window
    /// after warming with, instead of measuring a window before warming.
    pub baseline_hit_rate: Option<f64>,
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

/// Read-back validation: after each batch is written, the keys written are read back from the
/// target and compared with what was sent: the value's hash, memcached's client flags, and the
/// remaining TTL (within the time since the write, plus 2 s for stores that keep seconds).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Verification {
    /// The target holds what the run sent.
    pub verified: u64,
    /// The target holds something else, or nothing, and the source does not explain it.
    pub mismatched: u64,
    /// Rewritten by the live application in the source and the target alike between the
    /// write and the read-back (see [`VerifyCounts::changed`]). Not a mismatch.
    #[serde(default)]
    pub changed: u64,
    /// The first mismatches (lowest ranks first, at most [`MISMATCHES_LISTED`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mismatches: Vec<Mismatch>,
}

/// What the read-back of written keys found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct VerifyCounts {
    /// The target holds what the run sent.
    pub verified: u64,
    /// The target holds something else, or nothing, and the source does not explain it.
    pub mismatched: u64,
    /// The target holds something else, and so does the source, alike: the live application
    /// rewrote the key in both between the write and the read-back. Not a mismatch.
    #[serde(default)]
    pub changed: u64,
}

impl VerifyCounts {
    /// Adds another set of counts to this one.
    pub fn add(&mut self, other: &VerifyCounts) {
        self.verified += other.verified;
        self.mismatched += other.mismatched;
        self.changed += other.changed;
    }
}

/// How many entries [`Verification::mismatches`] lists at most.
pub const MISMATCHES_LISTED: usize = 25;

/// A written key whose read-back did not match what was sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Mismatch {
    pub rank: u64,
    pub key: String,
    pub category: String,
    /// What differed: `missing`, the value (sizes and hashes), the flags, or the TTL.
    pub reason: String,
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
}

/// How many entries [`TargetReport::not_warmed`] lists at most.
pub const NOT_WARMED_LISTED: usize = 25;

/// A store's read counters over a window of live traffic: the difference of its cumulative
/// counters between the window's start and end. The warmer itself does not read the store
/// during a window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HitWindow {
    /// When the counters were read at the start (after the reply).
    pub started_at: DateTime<Utc>,
    /// When they were read at the end (before the request).
    pub finished_at: DateTime<Utc>,
    /// Reads that hit during the window.
    pub hits: u64,
    /// Reads that missed during the window.
    pub misses: u64,
    /// `hits / (hits + misses)`; absent when there were no reads.
    pub hit_rate: Option<f64>,
}

impl HitWindow {
    /// The window between two readings of a store's counters. A counter that went down (the
    /// store restarted, or `CONFIG RESETSTAT`) gives no window.
    pub fn between(
        start: &HitCounters,
        end: &HitCounters,
        started_at: DateTime<Utc>,
        finished_at: DateTime<Utc>,
    ) -> Option<HitWindow> {
        let hits = end.hits.checked_sub(start.hits)?;
        let misses = end.misses.checked_sub(start.misses)?;
        let reads = hits + misses;
        Some(HitWindow {
            started_at,
            finished_at,
            hits,
            misses,
            hit_rate: (reads > 0).then(|| hits as f64 / reads as f64),
        })
    }
}

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

/// Where one manifest entry ended up at one target: the one vocabulary of outcomes. Each has a
/// count of the same name in [`Counts`]; an entry not in the store after the run is listed in
/// [`TargetReport::not_warmed`] with one of them as its reason. The run history's columns and
/// the Prometheus `result` label use the same names ([`EntryOutcome::as_str`]).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum EntryOutcome {
    /// Written by this run.
    Written,
    /// Left alone: the store already held a live entry for the key.
    AlreadyPresent,
    /// The source had no value for the key.
    SourceMiss,
    /// The key is not valid for this store and was never sent.
    InvalidKey,
    /// Not written because the byte budget was reached.
    SkippedBudget,
    /// Not written because its remaining TTL was below the minimum.
    SkippedNearExpiry,
    /// The store refused or failed the write, or the value cannot be stored there.
    Failed,
    /// Not reached: the run stopped (timeout, signal, store failure) before this entry.
    NotAttempted,
}

impl EntryOutcome {
    /// Every outcome, in the order reports list them.
    pub const ALL: [EntryOutcome; 8] = [
        EntryOutcome::Written,
        EntryOutcome::AlreadyPresent,
        EntryOutcome::SourceMiss,
        EntryOutcome::InvalidKey,
        EntryOutcome::SkippedBudget,
        EntryOutcome::SkippedNearExpiry,
        EntryOutcome::Failed,
        EntryOutcome::NotAttempted,
    ];

    /// The name in JSON, in the run history and in metric labels.
    pub const fn as_str(self) -> &'static str {
        match self {
            EntryOutcome::Written => "written",
            EntryOutcome::AlreadyPresent => "already_present",
            EntryOutcome::SourceMiss => "source_miss",
            EntryOutcome::InvalidKey => "invalid_key",
            EntryOutcome::SkippedBudget => "skipped_budget",
            EntryOutcome::SkippedNearExpiry => "skipped_near_expiry",
            EntryOutcome::Failed => "failed",
            EntryOutcome::NotAttempted => "not_attempted",
        }
    }

    /// A short label for summaries and table headers (`over budget` for `skipped_budget`).
    pub const fn label(self) -> &'static str {
        match self {
            EntryOutcome::Written => "written",
            EntryOutcome::AlreadyPresent => "already present",
            EntryOutcome::SourceMiss => "source miss",
            EntryOutcome::InvalidKey => "invalid key",
            EntryOutcome::SkippedBudget => "over budget",
            EntryOutcome::SkippedNearExpiry => "near expiry",
            EntryOutcome::Failed => "failed",
            EntryOutcome::NotAttempted => "not attempted",
        }
    }

    /// Whether an entry with this outcome is in the store after the run (as far as the run
    /// knows): written, or already there.
    pub const fn is_in_store(self) -> bool {
        matches!(self, EntryOutcome::Written | EntryOutcome::AlreadyPresent)
    }
}

impl std::fmt::Display for EntryOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where each manifest entry ended up at one target: one count per [`EntryOutcome`], under its
/// name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Counts {
    /// Written by this run.
    pub written: u64,
    /// Left alone: the store already held a live entry for the key.
    pub already_present: u64,
    /// The source had no value for the key.
    pub source_miss: u64,
    /// The key is not valid for this store and was never sent.
    pub invalid_key: u64,
    /// Not written because the byte budget was reached.
    pub skipped_budget: u64,
    /// Not written because its remaining TTL was below the minimum.
    pub skipped_near_expiry: u64,
    /// The store refused or failed the write, or the value cannot be stored there.
    pub failed: u64,
    /// Not reached: the run stopped (timeout, signal, store failure) before this entry.
    pub not_attempted: u64,
}

impl Counts {
    /// The count of one outcome.
    pub fn get(&self, outcome: EntryOutcome) -> u64 {
        match outcome {
            EntryOutcome::Written => self.written,
            EntryOutcome::AlreadyPresent => self.already_present,
            EntryOutcome::SourceMiss => self.source_miss,
            EntryOutcome::InvalidKey => self.invalid_key,
            EntryOutcome::SkippedBudget => self.skipped_budget,
            EntryOutcome::SkippedNearExpiry => self.skipped_near_expiry,
            EntryOutcome::Failed => self.failed,
            EntryOutcome::NotAttempted => self.not_attempted,
        }
    }

    /// The count of one outcome, to change it.
    pub fn get_mut(&mut self, outcome: EntryOutcome) -> &mut u64 {
        match outcome {
            EntryOutcome::Written => &mut self.written,
            EntryOutcome::AlreadyPresent => &mut self.already_present,
            EntryOutcome::SourceMiss => &mut self.source_miss,
            EntryOutcome::InvalidKey => &mut self.invalid_key,
            EntryOutcome::SkippedBudget => &mut self.skipped_budget,
            EntryOutcome::SkippedNearExpiry => &mut self.skipped_near_expiry,
            EntryOutcome::Failed => &mut self.failed,
            EntryOutcome::NotAttempted => &mut self.not_attempted,
        }
    }

    /// Each outcome with its count, in [`EntryOutcome::ALL`] order.
    pub fn iter(&self) -> impl Iterator<Item = (EntryOutcome, u64)> + '_ {
        EntryOutcome::ALL.into_iter().map(|o| (o, self.get(o)))
    }

    /// The number of entries these counts account for.
    pub fn total(&self) -> u64 {
        self.iter().map(|(_, n)| n).sum()
    }

    /// Adds another set of counts to this one.
    pub fn add(&mut self, other: &Counts) {
        for (outcome, n) in other.iter() {
            *self.get_mut(outcome) += n;
        }
    }
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

/// A store's cumulative read counters (Redis `keyspace_hits`/`keyspace_misses`, memcached
/// `get_hits`/`get_misses`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HitCounters {
    pub hits: u64,
    pub misses: u64,
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The outcome names are spelled once: `as_str` is the serde name, and `Counts` has one
    /// field per outcome under that name, which `get` reads.
    #[test]
    fn outcome_names_are_counts_fields() {
        for outcome in EntryOutcome::ALL {
            let json = serde_json::to_value(outcome).unwrap();
            assert_eq!(json, outcome.as_str());
            let back: EntryOutcome = serde_json::from_value(json).unwrap();
            assert_eq!(back, outcome);
        }
        let mut counts = Counts::default();
        for (n, outcome) in EntryOutcome::ALL.into_iter().enumerate() {
            *counts.get_mut(outcome) = n as u64 + 1;
        }
        let json = serde_json::to_value(&counts).unwrap();
        let fields = json.as_object().unwrap();
        assert_eq!(fields.len(), EntryOutcome::ALL.len());
        for (n, outcome) in EntryOutcome::ALL.into_iter().enumerate() {
            assert_eq!(fields[outcome.as_str()], n as u64 + 1, "{outcome}");
            assert_eq!(counts.get(outcome), n as u64 + 1);
        }
        assert_eq!(counts.total(), 36);
        let mut twice = counts.clone();
        twice.add(&counts);
        assert_eq!(twice.total(), 72);
    }

    fn counters(hits: u64, misses: u64) -> HitCounters {
        HitCounters { hits, misses }
    }

    /// A window is the difference of the counters; no reads is no rate, not 0; a counter
    /// that went down (a restart) gives no window rather than a wrapped one.
    #[test]
    fn hit_window_between_counters() {
        let t = Utc::now();
        let window = HitWindow::between(&counters(10, 5), &counters(40, 15), t, t).unwrap();
        assert_eq!((window.hits, window.misses), (30, 10));
        assert_eq!(window.hit_rate, Some(0.75));
        let idle = HitWindow::between(&counters(10, 5), &counters(10, 5), t, t).unwrap();
        assert_eq!(idle.hit_rate, None);
        assert!(HitWindow::between(&counters(10, 5), &counters(3, 9), t, t).is_none());
    }
}
