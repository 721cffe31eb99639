//! One target through a run: probe, write batch after batch, probe again, report.
//!
//! # Layout
//!
//! - this file: the target's lifecycle ([`TargetRun`]): connect and measure before warming,
//!   hand the store to a worker, measure again, write the target's section of the report.
//! - [`worker`]: the write loop that runs in the target's own task.
//! - [`decide`]: the per-batch decisions taken before writing (key rules, TTL, limits).
//! - [`limits`]: the byte budget, the high-water mark and the used-memory estimate.
//! - [`tally`]: the per-outcome accounting of what the writes came to.

mod decide;
mod limits;
mod tally;
mod worker;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use schemas::checkpoint::TargetProgress;
use schemas::report::{CategoryReport, HitCounters, TargetReport, TargetStatus, ThrottleReport};
use tokio::time::Instant;

use super::Shared;
use super::coverage::{self, Probe, Seen};
use super::faults::Breaker;
use super::pace::Pace;
use super::throttle::{Gate, Prober, Throttle};
use crate::rundir::written::{self, WrittenLog};
use crate::source::Source;
use crate::store::{Store, StoreUrl, WriteMode};
use limits::Limits;
use tally::Tally;
pub(crate) use worker::Worker;

/// A target's state for the whole run.
#[derive(Debug)]
pub(crate) struct TargetRun {
    /// The target's place in the run's target list.
    pub index: usize,
    url: String,
    kind: &'static str,
    store: Option<Arc<Store>>,
    error: Option<String>,
    waiting: bool,
    tally: Tally,
    budget: Option<u64>,
    before: Option<Probe>,
    after: Option<Probe>,
    hits_before: Option<HitCounters>,
    hits_after: Option<HitCounters>,
    evictions_before: Option<u64>,
    /// The used-memory line writing never crosses (`high_water` of the capacity), and what
    /// the store held before warming.
    high_water: Option<u64>,
    used_before: Option<u64>,
    throttle: Option<Throttle>,
    throttle_report: Option<ThrottleReport>,
    /// Store calls made again after a failure.
    retried: Arc<AtomicU64>,
    /// Entries handled by earlier invocations of a resumed run.
    handled_before: u64,
    pub next_entry: usize,
}

impl TargetRun {
    /// Takes a target's connection result and measures it before warming: read counters,
    /// capacity (hence the byte budget), and coverage.
    pub async fn prepare(
        index: usize,
        url: String,
        parsed: &StoreUrl,
        store: Result<Store, String>,
        shared: &Arc<Shared>,
        resumed: Option<&TargetProgress>,
    ) -> TargetRun {
        let tally = resumed.map_or_else(Tally::default, |progress| {
            Tally::restore(progress, shared.board.categories())
        });
        let mut target = TargetRun {
            index,
            url,
            kind: parsed.name(),
            store: None,
            error: None,
            waiting: false,
            next_entry: tally.next_entry,
            handled_before: tally.counts.total(),
            tally,
            budget: None,
            before: None,
            after: None,
            hits_before: None,
            hits_after: None,
            evictions_before: None,
            high_water: None,
            used_before: None,
            throttle: None,
            throttle_report: None,
            retried: Arc::default(),
        };
        let store = match store {
            Ok(store) => Arc::new(store),
            Err(error) => {
                tracing::error!(target = target.url, error, "target unavailable");
                target.error = Some(error);
                return target;
            }
        };
        let deadline = shared.deadline;
        target.hits_before = within(deadline, store.hit_counters()).await.flatten();
        if shared.settings.stop_on_evictions {
            target.evictions_before = within(deadline, store.evictions()).await.flatten();
        }
        match within(deadline, store.capacity()).await {
            Some(Some(capacity)) => {
                // A shard writes its part of the budget: the shards together never pass
                // what one warmer would.
                let budget = (capacity as f64 * shared.settings.max_fill) as u64;
                target.budget = Some(shared.settings.part_of(budget));
                target.high_water = Some((capacity as f64 * shared.settings.high_water) as u64);
                target.used_before = within(deadline, store.used_memory()).await.flatten();
            }
            Some(None) => {}
            None => tracing::warn!(target = target.url, "could not read the store's capacity"),
        }
        // A store in the warmer's process (SQLite) has no round trip to measure, and no live
        // clients on its wire.
        if let Some(multiple) = shared.settings.latency_multiple
            && !shared.settings.dry_run
            && !store.in_process()
        {
            // The throttle's probes need a connection of their own (see `throttle`).
            let probe = tokio::time::timeout_at(deadline, Prober::connect(parsed.clone()));
            if let Ok(Some(probe)) = probe.await {
                target.throttle =
                    tokio::time::timeout_at(deadline, Throttle::start(probe, multiple))
                        .await
                        .ok()
                        .flatten();
            }
        }
        // A fresh run that adds learns the coverage before from its writes' answers (see
        // `coverage`); else the manifest keys are probed now (no store key of the run's own is
        // known yet).
        let settings = &shared.settings;
        if resumed.is_none() && !settings.dry_run && settings.write_mode == WriteMode::Add {
            target.tally.seen = Some(Seen::new(
                shared.manifest.entries,
                shared.manifest.categories.len(),
            ));
        } else {
            match coverage::probe(&store, shared, HashMap::new(), deadline).await {
                Ok(probe) => target.before = Some(probe),
                Err(error) => tracing::warn!(target = target.url, error, "coverage probe failed"),
            }
        }
        target.store = Some(store);
        target
    }

    /// Hands the store to a worker task, unless the target already failed.
    pub fn take_worker(&mut self, shared: &Shared, source: &Arc<Source>) -> Option<Worker> {
        if self.error.is_some() {
            return None;
        }
        let log = if shared.settings.dry_run {
            None
        } else {
            let path = written::log_path(&shared.run_dir, self.index);
            match WrittenLog::open(path) {
                Ok(log) => Some(log),
                Err(error) => {
                    // Without the log `warmer undo` could not take the writes back: write
                    // nothing rather than something that cannot be undone.
                    self.error = Some(format!("cannot open the written-keys log: {error}"));
                    return None;
                }
            }
        };
        let store = self.store.take()?;
        self.waiting = true;
        let settings = &shared.settings;
        Some(Worker {
            index: self.index,
            store,
            source: Arc::clone(source),
            limits: Limits::new(
                self.budget,
                self.high_water,
                self.used_before.unwrap_or(0),
                &self.tally,
            )
            .with_peers(settings.shard.map_or(1, |shard| shard.count)),
            tally: std::mem::take(&mut self.tally),
            error: None,
            timed_out: false,
            log,
            // A shard's part of the rate and bandwidth, at least 1 a second.
            ops_pace: settings.rate.map(|r| Pace::new(settings.part_of(r).max(1))),
            bytes_pace: settings
                .bandwidth
                .map(|b| Pace::new(settings.part_of(b).max(1))),
            evictions_before: self.evictions_before,
            store_checked: Instant::now(),
            breaker: Breaker::default(),
            retried: Arc::clone(&self.retried),
            gate: Arc::new(Gate::new(self.throttle.as_ref().and_then(Throttle::limit))),
            throttle: self.throttle.take(),
        })
    }

    /// The target's progress, for the checkpoint.
    pub fn progress(&self, shared: &Shared) -> TargetProgress {
        self.tally.progress(shared.board.categories())
    }

    /// Whether a worker task has this target's store.
    pub fn is_waiting(&self) -> bool {
        self.waiting
    }

    /// Takes the worker back after the warm phase.
    pub fn put_worker(&mut self, worker: Worker) {
        self.waiting = false;
        self.store = Some(worker.store);
        self.throttle_report = worker.throttle.as_ref().map(Throttle::report);
        self.tally = worker.tally;
        self.next_entry = self.tally.next_entry;
        if worker.error.is_some() {
            self.error = worker.error;
        }
    }

    /// Whether the target has not failed.
    pub fn is_ok(&self) -> bool {
        self.error.is_none()
    }

    /// Marks the target failed.
    pub fn fail(&mut self, error: String) {
        self.waiting = false;
        self.error = Some(error);
    }

    /// Measures the target after warming, within `deadline`.
    pub async fn finish(&mut self, shared: &Arc<Shared>, deadline: Instant) {
        let Some(store) = &self.store else {
            return;
        };
        self.hits_after = within(deadline, store.hit_counters()).await.flatten();
        if let Some(seen) = self.tally.seen.take() {
            match coverage::probe_untold(store, shared, seen, deadline).await {
                Ok((before, after)) => (self.before, self.after) = (Some(before), Some(after)),
                Err(error) => tracing::warn!(target = self.url, error, "coverage probe failed"),
            }
            return;
        }
        // The keys the run (and the invocations before it) wrote for entries under keys of
        // their own: those are what the application reads.
        // (A dry run writes no log: the manifest keys are probed.)
        let path = written::log_path(&shared.run_dir, self.index);
        let store_keys = written::store_keys(&path).unwrap_or_else(|error| {
            tracing::warn!(target = self.url, %error, path = %path.display(),
                "cannot read the written-keys log; coverage probes the manifest keys");
            HashMap::new()
        });
        match coverage::probe(store, shared, store_keys, deadline).await {
            Ok(probe) => self.after = Some(probe),
            Err(error) => tracing::warn!(target = self.url, error, "final coverage probe failed"),
        }
    }

    /// The target's section of the report.
    pub fn report(&self, shared: &Shared, warm_ms: u64) -> TargetReport {
        let entries = shared.manifest.entries;
        let verifying = shared.settings.verify && !shared.settings.dry_run;
        let mut counts = self.tally.counts.clone();
        counts.not_attempted = entries - counts.total();
        let categories = shared
            .manifest
            .categories
            .iter()
            .enumerate()
            .map(|(index, category)| {
                let mut counts = self
                    .tally
                    .categories
                    .get(index)
                    .cloned()
                    .unwrap_or_default();
                counts.not_attempted = category.keys - counts.total();
                let coverage = |probe: &Option<Probe>| {
                    probe
                        .as_ref()
                        .and_then(|p| p.categories.get(index).cloned())
                };
                let report = CategoryReport {
                    counts,
                    coverage_before: coverage(&self.before),
                    coverage_after: coverage(&self.after),
                    verification: verifying.then(|| self.tally.verified.category(index)),
                };
                (category.name.clone(), report)
            })
            .collect();
        // This invocation's own pace.
        let handled = (entries - counts.not_attempted).saturating_sub(self.handled_before);
        TargetReport {
            url: self.url.clone(),
            kind: self.kind.to_owned(),
            status: if self.error.is_some() {
                TargetStatus::Failed
            } else {
                TargetStatus::Ok
            },
            error: self.error.clone(),
            counts,
            bytes_written: self.tally.bytes_written,
            budget_bytes: self.budget,
            keys_per_s: if warm_ms == 0 {
                0.0
            } else {
                handled as f64 * 1000.0 / warm_ms as f64
            },
            coverage_before: self.before.as_ref().map(|p| p.overall.clone()),
            coverage_after: self.after.as_ref().map(|p| p.overall.clone()),
            hit_counters_before: self.hits_before.clone(),
            hit_counters_after: self.hits_after.clone(),
            failure_reasons: self.tally.failure_reasons.clone(),
            categories,
            window_before: None,
            window_after: None,
            budget_cut_rank: self.tally.budget_cut_rank,
            not_warmed: self.tally.not_warmed.clone(),
            stopped_by: self.tally.stopped_by.map(|limit| limit.as_str().to_owned()),
            throttle: self.throttle_report.clone(),
            retries: self.retried.load(Ordering::Relaxed),
            verification: verifying.then(|| self.tally.verified.report()),
        }
    }
}

/// Runs `future` until `deadline`; `None` when it failed or ran out of time.
async fn within<T, E: std::fmt::Display>(
    deadline: Instant,
    future: impl std::future::Future<Output = Result<T, E>>,
) -> Option<T> {
    match tokio::time::timeout_at(deadline, future).await {
        Ok(Ok(value)) => Some(value),
        Ok(Err(error)) => {
            tracing::warn!(%error, "store query failed");
            None
        }
        Err(_) => None,
    }
}
