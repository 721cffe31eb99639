//! One target through a run: probe, write batch after batch, probe again, report.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use schemas::report::{
    CategoryReport, Counts, HitCounters, NOT_WARMED_LISTED, NotWarmed, TargetReport, TargetStatus,
};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::coverage::{self, Probe};
use super::{Batch, InFlight, RunSettings, Shared};
use crate::manifest::Entry;
use crate::store::{Fetched, Store, StoreError, StoreUrl, WriteItem, WriteOutcome};

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
    /// Indexed like the manifest's categories.
    categories: Vec<Counts>,
    failure_reasons: BTreeMap<String, u64>,
    bytes_written: u64,
    /// Entries before this index have all been handled.
    next_entry: usize,
    /// The rank of the first entry skipped for the budget.
    budget_cut_rank: Option<u64>,
    /// The first entries not warmed, in rank order.
    not_warmed: Vec<NotWarmed>,
}

impl Tally {
    /// Remembers an entry not warmed, while fewer than [`NOT_WARMED_LISTED`] are listed.
    fn note(
        &mut self,
        rank: u64,
        entry: &Entry,
        reason: &str,
        detail: Option<String>,
        shared: &Shared,
    ) {
        if reason == "skipped_budget" && self.budget_cut_rank.is_none() {
            self.budget_cut_rank = Some(rank);
        }
        if self.not_warmed.len() < NOT_WARMED_LISTED {
            let category = shared.manifest.categories.get(entry.category as usize);
            self.not_warmed.push(NotWarmed {
                rank,
                key: entry.key.clone(),
                category: category.map_or_else(String::new, |c| c.name.clone()),
                requests: entry.requests,
                reason: reason.to_owned(),
                detail,
            });
        }
    }

    fn record(&mut self, category: u32, disposition: Disposition) {
        let index = category as usize;
        if index >= self.categories.len() {
            self.categories.resize(index + 1, Counts::default());
        }
        let category = &mut self.categories[index];
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
    store: Option<Arc<Store>>,
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
    store: Arc<Store>,
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
        shared: &Arc<Shared>,
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
            Ok(store) => Arc::new(store),
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
    pub async fn finish(&mut self, shared: &Arc<Shared>, deadline: Instant) {
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
        let entries = shared.manifest.entries;
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
                };
                (category.name.clone(), report)
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
            window_before: None,
            window_after: None,
            budget_cut_rank: self.tally.budget_cut_rank,
            not_warmed: self.tally.not_warmed.clone(),
        }
    }
}

/// Pipelined writes in flight per target. One batch on the wire while the next is being
/// encoded and the one before is being counted keeps the store busy without a pause for each
/// round trip; more only queues in the socket buffers.
const WRITES_IN_FLIGHT: usize = 3;

/// What one write call came back with.
type WriteResult = Result<Result<Vec<WriteOutcome>, StoreError>, tokio::time::error::Elapsed>;

/// A batch whose writes are on the wire: the decisions taken, waiting for the outcomes.
#[derive(Debug)]
struct Pending {
    batch: Arc<Batch>,
    decided: Vec<Option<Disposition>>,
    /// (index in the batch, key + value bytes) of each item sent, in order.
    sent: Vec<(usize, u64)>,
    bytes: u64,
}

impl Worker {
    /// Writes every batch it receives until the channel closes.
    pub async fn run(
        mut self,
        mut batches: mpsc::Receiver<Arc<Batch>>,
        shared: Arc<Shared>,
    ) -> Worker {
        let store = Arc::clone(&self.store);
        let mut writes: InFlight<(Pending, Option<WriteResult>)> = InFlight::new(WRITES_IN_FLIGHT);
        let mut in_flight_bytes = 0u64;
        let mut open = true;
        while open || !writes.is_empty() {
            enum Step {
                Batch(Option<Arc<Batch>>),
                Done(Option<Result<(Pending, Option<WriteResult>), tokio::task::JoinError>>),
            }
            // Take the next batch while fewer than WRITES_IN_FLIGHT are out, count finished
            // writes otherwise (or when no batch is ready).
            let step = tokio::select! {
                biased;
                batch = batches.recv(), if open && !writes.is_full() => Step::Batch(batch),
                done = writes.next(), if !writes.is_empty() => Step::Done(done),
            };
            let batch = match step {
                Step::Batch(Some(batch)) => batch,
                Step::Batch(None) => {
                    open = false;
                    continue;
                }
                Step::Done(done) => {
                    let Some(Ok((pending, result))) = done else {
                        self.error = Some("a write task failed".to_owned());
                        break;
                    };
                    in_flight_bytes -= pending.bytes;
                    self.settle(pending, result, &shared);
                    if self.stopped() {
                        break;
                    }
                    continue;
                }
            };
            if let Some(budget) = self.budget {
                let batch_bytes: u64 = batch
                    .entries
                    .iter()
                    .zip(&batch.fetched)
                    .filter_map(|(e, f)| Some((e.key.len() + f.as_ref()?.value.len()) as u64))
                    .sum();
                if self.tally.bytes_written + in_flight_bytes + batch_bytes > budget {
                    // Near the stop line the budget needs what the writes in flight came to
                    // (an entry already present takes no budget): settle them first, so the
                    // line falls exactly where writing one batch at a time would put it.
                    while !self.stopped()
                        && let Some(Ok((pending, result))) = writes.next().await
                    {
                        in_flight_bytes -= pending.bytes;
                        self.settle(pending, result, &shared);
                    }
                }
            }
            if self.stopped() {
                // Stop taking work: the sender sees the channel close and moves on.
                break;
            }
            let pending = self.decide(batch, &shared, in_flight_bytes);
            if pending.sent.is_empty() {
                self.settle(pending, None, &shared);
                continue;
            }
            in_flight_bytes += pending.bytes;
            let store = Arc::clone(&store);
            let shared = Arc::clone(&shared);
            writes.push(async move {
                let result = write(&store, &pending, &shared).await;
                (pending, Some(result))
            });
        }
        drop(batches);
        // After a failure or a timeout the writes still in flight are not counted: their
        // entries stay `not_attempted`, after the last entry counted in order. (They share the
        // deadline or the broken store, so they would not have come to more.)
        writes.abort().await;
        self
    }

    fn stopped(&self) -> bool {
        self.error.is_some() || self.timed_out
    }

    /// Decides every entry of `batch` that is not for the store to answer: invalid key,
    /// source miss, near expiry, over budget. `in_flight_bytes` are taken as written.
    fn decide(&mut self, batch: Arc<Batch>, shared: &Shared, in_flight_bytes: u64) -> Pending {
        let settings = &shared.settings;
        let mut decided = vec![None; batch.entries.len()];
        let mut sent = Vec::with_capacity(batch.entries.len());
        let mut pending_bytes = 0u64;
        for (i, (entry, fetched)) in batch.entries.iter().zip(&batch.fetched).enumerate() {
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
            if ttl_of(entry, fetched, settings) < settings.min_ttl {
                decided[i] = Some(Disposition::SkippedNearExpiry);
                continue;
            }
            let size = (entry.key.len() + fetched.value.len()) as u64;
            let over_budget = self.budget.is_some_and(|budget| {
                self.tally.bytes_written + in_flight_bytes + pending_bytes + size > budget
            });
            if self.budget_reached || over_budget {
                // The budget is a stop line: once reached, nothing later is written, so the
                // warm keys are exactly the top of the ranking that fits.
                self.budget_reached = true;
                decided[i] = Some(Disposition::SkippedBudget);
                continue;
            }
            pending_bytes += size;
            sent.push((i, size));
        }
        Pending {
            batch,
            decided,
            sent,
            bytes: pending_bytes,
        }
    }

    /// Counts a batch once its writes are back (`None`: nothing was sent).
    fn settle(&mut self, pending: Pending, result: Option<WriteResult>, shared: &Shared) {
        let Pending {
            batch,
            mut decided,
            sent,
            ..
        } = pending;
        let mut refused = Vec::new();
        if let Some(result) = result {
            let outcomes = match result {
                Ok(Ok(outcomes)) => outcomes,
                Ok(Err(error)) => {
                    tracing::error!(%error, "target failed; the other targets go on");
                    self.error = Some(error.to_string());
                    return;
                }
                Err(_) => {
                    // Entries of this batch stay unaccounted: they are `not_attempted`.
                    self.timed_out = true;
                    return;
                }
            };
            for ((i, size), outcome) in sent.into_iter().zip(outcomes) {
                decided[i] = Some(match outcome {
                    WriteOutcome::Written => {
                        self.tally.bytes_written += size;
                        Disposition::Written
                    }
                    WriteOutcome::AlreadyPresent => Disposition::AlreadyPresent,
                    WriteOutcome::Refused(reason) => {
                        *self
                            .tally
                            .failure_reasons
                            .entry(reason.clone())
                            .or_default() += 1;
                        refused.push((i, reason));
                        Disposition::Failed
                    }
                });
            }
        }
        for (i, (entry, disposition)) in batch.entries.iter().zip(decided).enumerate() {
            let disposition = disposition.unwrap_or(Disposition::Failed);
            self.tally.record(entry.category, disposition);
            let reason = match disposition {
                Disposition::Written | Disposition::AlreadyPresent => None,
                Disposition::SourceMiss => Some("source_miss"),
                Disposition::InvalidKey => Some("invalid_key"),
                Disposition::SkippedBudget => Some("skipped_budget"),
                Disposition::SkippedNearExpiry => Some("skipped_near_expiry"),
                Disposition::Failed => Some("failed"),
            };
            if let Some(reason) = reason {
                let detail = refused
                    .iter()
                    .find(|(j, _)| *j == i)
                    .map(|(_, r)| r.clone());
                let rank = (batch.start + i + 1) as u64;
                self.tally.note(rank, entry, reason, detail, shared);
            }
        }
        self.tally.next_entry = batch.start + batch.entries.len();
    }
}

/// TTL precedence: the source's remaining TTL, then the manifest's observed TTL, then the
/// configured default.
fn ttl_of(entry: &Entry, fetched: &Fetched, settings: &RunSettings) -> Duration {
    fetched.ttl.unwrap_or_else(|| {
        entry
            .ttl_s
            .filter(|&secs| secs > 0)
            .map_or(settings.default_ttl, |secs| {
                Duration::from_secs(secs.into())
            })
    })
}

/// Sends the items of `pending` (a dry run asks which keys are present instead).
async fn write(store: &Store, pending: &Pending, shared: &Shared) -> WriteResult {
    let settings = &shared.settings;
    let batch = &pending.batch;
    if settings.dry_run {
        let keys: Vec<&str> = pending
            .sent
            .iter()
            .map(|&(i, _)| batch.entries[i].key.as_str())
            .collect();
        let present = tokio::time::timeout_at(shared.deadline, store.contains(&keys)).await?;
        return Ok(present.map(|present| {
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
        }));
    }
    let items: Vec<WriteItem<'_>> = pending
        .sent
        .iter()
        .filter_map(|&(i, _)| {
            let entry = &batch.entries[i];
            let fetched = batch.fetched[i].as_ref()?;
            Some(WriteItem {
                key: &entry.key,
                value: &fetched.value,
                ttl: ttl_of(entry, fetched, settings),
            })
        })
        .collect();
    tokio::time::timeout_at(shared.deadline, store.write(&items, settings.overwrite)).await
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
