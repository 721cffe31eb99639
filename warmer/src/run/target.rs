//! One target through a run: probe, write batch after batch, probe again, report.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use schemas::report::{CategoryReport, Counts, HitCounters, TargetReport, TargetStatus};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::coverage::{self, Probe};
use super::{Batch, Shared, category_entries};
use crate::store::{Store, StoreUrl, WriteItem, WriteOutcome};

/// Where one manifest entry ended up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Disposition {
    Written,
    AlreadyPresent,
    SourceMiss,
    InvalidKey,
    SkippedBudget,
    SkippedNearExpiry,
    Failed,
}

/// What a target's writes came to so far.
#[derive(Debug, Default)]
pub(crate) struct Tally {
    counts: Counts,
    categories: BTreeMap<String, Counts>,
    failure_reasons: BTreeMap<String, u64>,
    bytes_written: u64,
    /// Entries before this index have all been handled.
    next_entry: usize,
}

impl Tally {
    fn record(&mut self, category: &str, disposition: Disposition) {
        let category = match self.categories.get_mut(category) {
            Some(counts) => counts,
            None => self.categories.entry(category.to_owned()).or_default(),
        };
        for counts in [&mut self.counts, category] {
            let slot = match disposition {
                Disposition::Written => &mut counts.written,
                Disposition::AlreadyPresent => &mut counts.already_present,
                Disposition::SourceMiss => &mut counts.source_miss,
                Disposition::InvalidKey => &mut counts.invalid_key,
                Disposition::SkippedBudget => &mut counts.skipped_budget,
                Disposition::SkippedNearExpiry => &mut counts.skipped_near_expiry,
                Disposition::Failed => &mut counts.failed,
            };
            *slot += 1;
        }
    }
}

/// A target's state for the whole run.
#[derive(Debug)]
pub(crate) struct TargetRun {
    url: String,
    kind: &'static str,
    store: Option<Store>,
    error: Option<String>,
    waiting: bool,
    tally: Tally,
    budget: Option<u64>,
    before: Option<Probe>,
    after: Option<Probe>,
    hits_before: Option<HitCounters>,
    hits_after: Option<HitCounters>,
    pub next_entry: usize,
}

/// The part of a target that runs in its own task during the warm phase.
#[derive(Debug)]
pub(crate) struct Worker {
    store: Store,
    tally: Tally,
    budget: Option<u64>,
    budget_reached: bool,
    error: Option<String>,
    pub timed_out: bool,
}

impl TargetRun {
    /// Takes a target's connection result and measures it before warming: read counters,
    /// capacity (hence the byte budget), and coverage.
    pub async fn prepare(
        url: String,
        parsed: &StoreUrl,
        store: Result<Store, String>,
        shared: &Shared,
    ) -> TargetRun {
        let mut target = TargetRun {
            url,
            kind: parsed.kind(),
            store: None,
            error: None,
            waiting: false,
            tally: Tally::default(),
            budget: None,
            before: None,
            after: None,
            hits_before: None,
            hits_after: None,
            next_entry: 0,
        };
        let store = match store {
            Ok(store) => store,
            Err(error) => {
                tracing::error!(target = target.url, error, "target unavailable");
                target.error = Some(error);
                return target;
            }
        };
        let deadline = shared.deadline;
        target.hits_before = within(deadline, store.hit_counters()).await.flatten();
        match within(deadline, store.capacity()).await {
            Some(Some(capacity)) => {
                target.budget = Some((capacity as f64 * shared.settings.max_fill) as u64);
            }
            Some(None) => {}
            None => tracing::warn!(target = target.url, "could not read the store's capacity"),
        }
        match coverage::probe(&store, shared, deadline).await {
            Ok(probe) => target.before = Some(probe),
            Err(error) => tracing::warn!(target = target.url, error, "coverage probe failed"),
        }
        target.store = Some(store);
        target
    }

    /// Hands the store to a worker task, unless the target already failed.
    pub fn take_worker(&mut self) -> Option<Worker> {
        if self.error.is_some() {
            return None;
        }
        let store = self.store.take()?;
        self.waiting = true;
        Some(Worker {
            store,
            tally: std::mem::take(&mut self.tally),
            budget: self.budget,
            budget_reached: false,
            error: None,
            timed_out: false,
        })
    }

    /// Whether a worker task has this target's store.
    pub fn is_waiting(&self) -> bool {
        self.waiting
    }

    /// Takes the worker back after the warm phase.
    pub fn put_worker(&mut self, worker: Worker) {
        self.waiting = false;
        self.store = Some(worker.store);
        self.tally = worker.tally;
        self.next_entry = self.tally.next_entry;
        if worker.error.is_some() {
            self.error = worker.error;
        }
    }

    /// Marks the target failed.
    pub fn fail(&mut self, error: String) {
        self.waiting = false;
        self.error = Some(error);
    }

    /// Measures the target after warming, within `deadline`.
    pub async fn finish(&mut self, shared: &Shared, deadline: Instant) {
        let Some(store) = &self.store else {
            return;
        };
        self.hits_after = within(deadline, store.hit_counters()).await.flatten();
        match coverage::probe(store, shared, deadline).await {
            Ok(probe) => self.after = Some(probe),
            Err(error) => tracing::warn!(target = self.url, error, "final coverage probe failed"),
        }
    }

    /// The target's section of the report.
    pub fn report(&self, shared: &Shared, warm_ms: u64) -> TargetReport {
        let entries = shared.manifest.entries.len() as u64;
        let mut counts = self.tally.counts.clone();
        counts.not_attempted = entries - counts.total();
        let categories = category_entries(&shared.manifest)
            .into_iter()
            .map(|(name, (keys, _requests))| {
                let mut counts = self
                    .tally
                    .categories
                    .get(&name)
                    .cloned()
                    .unwrap_or_default();
                counts.not_attempted = keys - counts.total();
                let coverage = |probe: &Option<Probe>| {
                    probe
                        .as_ref()
                        .and_then(|p| p.categories.get(&name).cloned())
                };
                let report = CategoryReport {
                    counts,
                    coverage_before: coverage(&self.before),
                    coverage_after: coverage(&self.after),
                };
                (name, report)
            })
            .collect();
        let handled = entries - counts.not_attempted;
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
        }
    }
}

impl Worker {
    /// Writes every batch it receives until the channel closes.
    pub async fn run(
        mut self,
        mut batches: mpsc::Receiver<Arc<Batch>>,
        shared: Arc<Shared>,
    ) -> Worker {
        while let Some(batch) = batches.recv().await {
            if self.error.is_some() || self.timed_out {
                // Stop taking work: the sender sees the channel close and moves on.
                break;
            }
            self.write_batch(&batch, &shared).await;
        }
        self
    }

    async fn write_batch(&mut self, batch: &Batch, shared: &Shared) {
        let settings = &shared.settings;
        let entries = &shared.manifest.entries[batch.start..batch.start + batch.fetched.len()];
        let mut items = Vec::with_capacity(entries.len());
        // (index in the batch, key + value bytes) of each item.
        let mut pending = Vec::with_capacity(entries.len());
        let mut pending_bytes = 0u64;
        let mut decided = vec![None; entries.len()];
        for (i, (entry, fetched)) in entries.iter().zip(&batch.fetched).enumerate() {
            if self
                .store
                .check_key(&entry.key, &settings.key_limits)
                .is_err()
            {
                decided[i] = Some(Disposition::InvalidKey);
                continue;
            }
            let Some(fetched) = fetched else {
                decided[i] = Some(Disposition::SourceMiss);
                continue;
            };
            // TTL precedence: the source's remaining TTL, then the manifest's observed TTL,
            // then the configured default.
            let ttl = fetched.ttl.unwrap_or_else(|| {
                entry
                    .ttl_s
                    .filter(|&secs| secs > 0)
                    .map_or(settings.default_ttl, |secs| {
                        Duration::from_secs(secs.into())
                    })
            });
            if ttl < settings.min_ttl {
                decided[i] = Some(Disposition::SkippedNearExpiry);
                continue;
            }
            let size = (entry.key.len() + fetched.value.len()) as u64;
            let over_budget = self
                .budget
                .is_some_and(|budget| self.tally.bytes_written + pending_bytes + size > budget);
            if self.budget_reached || over_budget {
                // The budget is a stop line: once reached, nothing later is written, so the
                // warm keys are exactly the top of the ranking that fits.
                self.budget_reached = true;
                decided[i] = Some(Disposition::SkippedBudget);
                continue;
            }
            pending_bytes += size;
            items.push(WriteItem {
                key: &entry.key,
                value: &fetched.value,
                ttl,
            });
            pending.push((i, size));
        }

        if !items.is_empty() {
            let outcomes = if settings.dry_run {
                let keys: Vec<&str> = items.iter().map(|item| item.key).collect();
                self.store.contains(&keys).await.map(|present| {
                    present
                        .into_iter()
                        .map(|p| {
                            if p {
                                WriteOutcome::AlreadyPresent
                            } else {
                                WriteOutcome::Written
                            }
                        })
                        .collect()
                })
            } else {
                match tokio::time::timeout_at(
                    shared.deadline,
                    self.store.write(&items, settings.overwrite),
                )
                .await
                {
                    Ok(result) => result,
                    Err(_) => {
                        // Entries of this batch stay unaccounted: they are `not_attempted`.
                        self.timed_out = true;
                        return;
                    }
                }
            };
            let outcomes = match outcomes {
                Ok(outcomes) => outcomes,
                Err(error) => {
                    tracing::error!(%error, "target failed; the other targets go on");
                    self.error = Some(error.to_string());
                    return;
                }
            };
            for ((i, size), outcome) in pending.into_iter().zip(outcomes) {
                decided[i] = Some(match outcome {
                    WriteOutcome::Written => {
                        self.tally.bytes_written += size;
                        Disposition::Written
                    }
                    WriteOutcome::AlreadyPresent => Disposition::AlreadyPresent,
                    WriteOutcome::Refused(reason) => {
                        *self.tally.failure_reasons.entry(reason).or_default() += 1;
                        Disposition::Failed
                    }
                });
            }
        }
        for (entry, disposition) in entries.iter().zip(decided) {
            let disposition = disposition.unwrap_or(Disposition::Failed);
            self.tally.record(&entry.category, disposition);
        }
        self.tally.next_entry = batch.start + entries.len();
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
