//! One target through a run: probe, write batch after batch, probe again, report.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use schemas::checkpoint::TargetProgress;
use schemas::report::{
    CategoryReport, Counts, HitCounters, NOT_WARMED_LISTED, NotWarmed, TargetReport, TargetStatus,
    ThrottleReport,
};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::coverage::{self, Probe};
use super::faults::{self, Breaker};
use super::pace::Pace;
use super::progress::categories_by_name;
use super::throttle::Throttle;
use super::verify::{self, Verdict, VerifyTally};
use super::written::{self, Record, WrittenLog};
use super::{Batch, InFlight, RunSettings, Shared};
use crate::manifest::Entry;
use crate::source::Source;
use crate::store::{
    Fetched, Role, Store, StoreError, StoreUrl, WriteItem, WriteOutcome, push_item_hash,
};

/// How often a worker reads the store's eviction counter and used memory.
const STORE_CHECK_EVERY: Duration = Duration::from_secs(1);
/// Within this many bytes of the high-water mark, used memory is read this often.
const NEAR_MARK_BYTES: u64 = 1 << 20;
const NEAR_MARK_CHECK_EVERY: Duration = Duration::from_millis(20);
/// What an entry takes in a store beyond its key and value, at least, for the high-water
/// estimate between readings of used memory. A Redis string with a TTL takes two dict entries,
/// an object header, allocator rounding, and its share of table growth on top of its key and
/// value: Redis 7 grew by about 230 bytes per 100–200-byte entry in the deploy tests;
/// memcached's item header is about 50. Each reading measures it again (see `check_store`),
/// upwards only.
const ITEM_OVERHEAD: u64 = 256;

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
#[derive(Debug, Default, Clone)]
pub(crate) struct Tally {
    counts: Counts,
    /// Indexed like the manifest's categories.
    categories: Vec<Counts>,
    failure_reasons: BTreeMap<String, u64>,
    bytes_written: u64,
    /// Entries before this index have all been handled.
    next_entry: usize,
    /// The byte budget stopped writing.
    budget_reached: bool,
    /// The rank of the first entry skipped for the budget.
    budget_cut_rank: Option<u64>,
    /// The first entries not warmed, in rank order.
    not_warmed: Vec<NotWarmed>,
    /// Which limit stopped writing: `max_fill` or `high_water`.
    stopped_by: Option<&'static str>,
    /// What the read-back of this invocation's writes found (`--verify`).
    verified: VerifyTally,
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

    /// Takes up where a checkpoint left off.
    fn restore(progress: &TargetProgress, names: &[String]) -> Tally {
        let mut tally = Tally {
            next_entry: progress.next_entry as usize,
            bytes_written: progress.bytes_written,
            budget_reached: progress.budget_reached,
            failure_reasons: progress.failure_reasons.clone(),
            categories: vec![Counts::default(); names.len()],
            ..Tally::default()
        };
        for (name, counts) in &progress.categories {
            if let Some(index) = names.iter().position(|n| n == name) {
                tally.categories[index] = counts.clone();
            }
            tally.counts.add(counts);
        }
        tally
    }

    fn progress(&self, names: &[String]) -> TargetProgress {
        TargetProgress {
            next_entry: self.next_entry as u64,
            bytes_written: self.bytes_written,
            budget_reached: self.budget_reached,
            categories: categories_by_name(names, &self.categories),
            failure_reasons: self.failure_reasons.clone(),
        }
    }
}

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

/// The part of a target that runs in its own task during the warm phase.
#[derive(Debug)]
pub(crate) struct Worker {
    index: usize,
    store: Arc<Store>,
    /// Read again for keys that read back other than written (see `verify`).
    source: Arc<Source>,
    tally: Tally,
    budget: Option<u64>,
    error: Option<String>,
    pub timed_out: bool,
    /// Where the run records what it sends and writes (none in a dry run).
    log: Option<WrittenLog>,
    ops_pace: Option<Pace>,
    bytes_pace: Option<Pace>,
    /// The store's eviction counter when the run began, and when it was last read.
    evictions_before: Option<u64>,
    store_checked: Instant,
    /// The used-memory line and the last reading of used memory, with the bytes written by
    /// then: between readings the run adds what it wrote since.
    high_water: Option<u64>,
    used: u64,
    written_at_reading: u64,
    items_at_reading: u64,
    item_overhead: u64,
    breaker: Breaker,
    retried: Arc<AtomicU64>,
    throttle: Option<Throttle>,
    /// The adaptive write-rate limit, when the throttle set one.
    throttle_pace: Option<Pace>,
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
            kind: parsed.kind(),
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
                target.budget = Some((capacity as f64 * shared.settings.max_fill) as u64);
                target.high_water = Some((capacity as f64 * shared.settings.high_water) as u64);
                target.used_before = within(deadline, store.used_memory()).await.flatten();
            }
            Some(None) => {}
            None => tracing::warn!(target = target.url, "could not read the store's capacity"),
        }
        // SQLite is in-process: no round trip to measure, and no live clients on its wire.
        if let Some(multiple) = shared.settings.latency_multiple
            && !shared.settings.dry_run
            && !matches!(parsed, StoreUrl::Sqlite { .. })
        {
            // The throttle's probes need a connection of their own (see `throttle`).
            let probe = tokio::time::timeout_at(deadline, Store::connect(parsed, Role::Target));
            if let Ok(Ok(probe)) = probe.await {
                target.throttle =
                    tokio::time::timeout_at(deadline, Throttle::start(probe, multiple))
                        .await
                        .ok()
                        .flatten();
            }
        }
        match coverage::probe(&store, shared, deadline).await {
            Ok(probe) => target.before = Some(probe),
            Err(error) => tracing::warn!(target = target.url, error, "coverage probe failed"),
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
            tally: std::mem::take(&mut self.tally),
            budget: self.budget,
            error: None,
            timed_out: false,
            log,
            ops_pace: settings.rate.map(Pace::new),
            bytes_pace: settings.bandwidth.map(Pace::new),
            evictions_before: self.evictions_before,
            store_checked: Instant::now(),
            high_water: self.high_water,
            used: self.used_before.unwrap_or(0),
            written_at_reading: self.tally.bytes_written,
            items_at_reading: self.tally.counts.written,
            item_overhead: ITEM_OVERHEAD,
            breaker: Breaker::default(),
            retried: Arc::clone(&self.retried),
            throttle_pace: self
                .throttle
                .as_ref()
                .and_then(Throttle::limit)
                .map(|rate| Pace::new(rate as u64)),
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
        match coverage::probe(store, shared, deadline).await {
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
            stopped_by: self.tally.stopped_by.map(str::to_owned),
            throttle: self.throttle_report.clone(),
            retries: self.retried.load(Ordering::Relaxed),
            verification: verifying.then(|| self.tally.verified.report()),
        }
    }
}

/// What one write call came back with.
type WriteResult = Result<Result<Vec<WriteOutcome>, StoreError>, tokio::time::error::Elapsed>;

/// A write task's result: the batch, its write's outcome (`None`: nothing was sent), and the
/// read-back verdicts of the entries written (index in the batch, verdict), with `--verify`.
type Written = (Pending, Option<WriteResult>, Vec<(usize, Verdict)>);

/// A batch whose writes are on the wire: the decisions taken, waiting for the outcomes.
#[derive(Debug)]
struct Pending {
    batch: Arc<Batch>,
    decided: Vec<Option<Disposition>>,
    /// (index in the batch, key + value bytes) of each item sent, in order.
    sent: Vec<(usize, u64)>,
    bytes: u64,
    /// Leading entries this target had handled before a resume: not counted again.
    skip: usize,
}

impl Worker {
    /// Writes every batch it receives until the channel closes.
    pub async fn run(
        mut self,
        mut batches: mpsc::Receiver<Arc<Batch>>,
        shared: Arc<Shared>,
    ) -> Worker {
        let store = Arc::clone(&self.store);
        let mut writes: InFlight<Written> = InFlight::new(shared.settings.concurrency);
        let mut stop = shared.stop.clone();
        let mut in_flight_bytes = 0u64;
        let mut in_flight_items = 0u64;
        // The first reading of used memory is taken now that every connection of the run is
        // open (each holds buffers in the store's memory too).
        self.store_checked = Instant::now() - STORE_CHECK_EVERY;
        self.check_store().await;
        let mut open = true;
        while open || !writes.is_empty() {
            enum Step {
                Batch(Option<Arc<Batch>>),
                Done(Option<Result<Written, tokio::task::JoinError>>),
            }
            // Take the next batch while fewer than WRITES_IN_FLIGHT are out, count finished
            // writes otherwise (or when no batch is ready).
            if open && *stop.borrow() {
                // Interrupted: finish the writes in flight, take no more batches.
                open = false;
            }
            let step = tokio::select! {
                biased;
                _ = stop.changed(), if open => continue,
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
                    let Some(Ok((pending, result, verdicts))) = done else {
                        self.error = Some("a write task failed".to_owned());
                        break;
                    };
                    in_flight_bytes -= pending.bytes;
                    in_flight_items -= pending.sent.len() as u64;
                    self.settle(pending, result, verdicts, &shared);
                    self.check_store().await;
                    if self.stopped() {
                        break;
                    }
                    continue;
                }
            };
            {
                let (batch_bytes, batch_items) = batch
                    .entries
                    .iter()
                    .zip(&batch.fetched)
                    .filter_map(|(e, f)| Some((e.key.len() + f.as_ref()?.value.len()) as u64))
                    .fold((0, 0), |(bytes, items), size| (bytes + size, items + 1));
                if self
                    .limit_crossed(in_flight_bytes + batch_bytes, in_flight_items + batch_items)
                    .is_some()
                {
                    // Near the stop line the budget needs what the writes in flight came to
                    // (an entry already present takes no budget): settle them first, so the
                    // line falls exactly where writing one batch at a time would put it.
                    while !self.stopped()
                        && let Some(Ok((pending, result, verdicts))) = writes.next().await
                    {
                        in_flight_bytes -= pending.bytes;
                        in_flight_items -= pending.sent.len() as u64;
                        self.settle(pending, result, verdicts, &shared);
                    }
                    self.check_store().await;
                }
            }
            if self.stopped() {
                // Stop taking work: the sender sees the channel close and moves on.
                break;
            }
            let pending = self.decide(batch, &shared, in_flight_bytes, in_flight_items);
            if pending.sent.is_empty() {
                self.settle(pending, None, Vec::new(), &shared);
                // Past a stop line the store is still watched: evictions are reported.
                self.check_store().await;
                if self.stopped() {
                    break;
                }
                continue;
            }
            if !self.pace(&pending, &shared).await {
                // The deadline comes before the rate lets this batch go.
                self.timed_out = true;
                break;
            }
            if let Err(error) = self.log_sent(&pending, &shared) {
                self.error = Some(format!("cannot append to the written-keys log: {error}"));
                break;
            }
            in_flight_bytes += pending.bytes;
            in_flight_items += pending.sent.len() as u64;
            if let Some(throttle) = &mut self.throttle
                && let Some(limit) = throttle.sent(pending.sent.len() as u64).await
            {
                self.throttle_pace = limit.map(|rate| Pace::new(rate as u64));
            }
            let store = Arc::clone(&store);
            let source = Arc::clone(&self.source);
            let shared = Arc::clone(&shared);
            let retried = Arc::clone(&self.retried);
            writes.push(async move {
                let sent_at = Instant::now();
                let result = write(&store, &pending, &shared, &retried).await;
                let verdicts = match &result {
                    Ok(Ok(outcomes)) if shared.settings.verify && !shared.settings.dry_run => {
                        read_back(&store, &source, &pending, outcomes, &shared, sent_at).await
                    }
                    _ => Vec::new(),
                };
                (pending, Some(result), verdicts)
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

    /// Which limit writing `bytes` (key + value) in `items` more entries would cross, writes in
    /// flight included in both: the budget (`max_fill`), or the high-water mark on used memory
    /// (`high_water`: the last reading of used memory, plus what was written since, each entry
    /// with [`ITEM_OVERHEAD`] added, since that is what it takes in the store).
    fn limit_crossed(&self, bytes: u64, items: u64) -> Option<&'static str> {
        if let Some(budget) = self.budget
            && self.tally.bytes_written + bytes > budget
        {
            return Some("max_fill");
        }
        let line = self.high_water?;
        let since = (self.tally.bytes_written - self.written_at_reading)
            + (self.tally.counts.written - self.items_at_reading) * self.item_overhead;
        (self.used + since + bytes + items * self.item_overhead > line).then_some("high_water")
    }

    /// Waits until the rate limits let `pending` go; false when that is past the deadline.
    async fn pace(&mut self, pending: &Pending, shared: &Shared) -> bool {
        let ops = self
            .ops_pace
            .as_mut()
            .map(|p| p.book(pending.sent.len() as u64));
        let bytes = self.bytes_pace.as_mut().map(|p| p.book(pending.bytes));
        let adaptive = self
            .throttle_pace
            .as_mut()
            .map(|p| p.book(pending.sent.len() as u64));
        let Some(at) = ops.into_iter().chain(bytes).chain(adaptive).max() else {
            return true;
        };
        if at > shared.deadline {
            return false;
        }
        tokio::time::sleep_until(at).await;
        true
    }

    /// Records the keys of `pending` and their value hashes before they are sent.
    fn log_sent(&mut self, pending: &Pending, shared: &Shared) -> std::io::Result<()> {
        let Some(log) = &mut self.log else {
            return Ok(());
        };
        let batch = &pending.batch;
        let mut hashes = String::with_capacity(pending.sent.len() * 32);
        let mut keys = Vec::with_capacity(pending.sent.len());
        for &(i, _) in &pending.sent {
            if let Some(fetched) = &batch.fetched[i] {
                push_item_hash(&mut hashes, &fetched.value, fetched.flags);
                keys.push(batch.entries[i].key.as_str());
            }
        }
        log.append_sent(
            shared.invocation,
            batch.start as u64,
            keys.into_iter(),
            &hashes,
        )
    }

    /// Reads the store's eviction counter and used memory, at most every
    /// [`STORE_CHECK_EVERY`]. Stops writing when the store has evicted keys since the run
    /// began: warming on would push out entries live traffic is using.
    async fn check_store(&mut self) {
        // Near the high-water mark the estimate between readings (bytes written plus a
        // per-entry overhead) is not to be trusted for long: the store's own growth (tables,
        // buffers) varies. There, used memory is read again after every batch, up to every
        // NEAR_MARK_CHECK_EVERY.
        let near_mark = self.limit_crossed(NEAR_MARK_BYTES, 0) == Some("high_water");
        let every = if near_mark {
            NEAR_MARK_CHECK_EVERY
        } else {
            STORE_CHECK_EVERY
        };
        if self.store_checked.elapsed() < every {
            return;
        }
        self.store_checked = Instant::now();
        if self.high_water.is_some() {
            let used = tokio::time::timeout(STORE_CHECK_EVERY, self.store.used_memory()).await;
            if let Ok(Ok(Some(used))) = used {
                // Live traffic's own writes (and the store's true overhead per item) show up
                // here. They make the measured overhead larger, which errs on the safe side.
                let items = self.tally.counts.written - self.items_at_reading;
                let bytes = self.tally.bytes_written - self.written_at_reading;
                let grown = used.saturating_sub(self.used).saturating_sub(bytes);
                if let Some(per_item) = grown.checked_div(items) {
                    self.item_overhead = self.item_overhead.max(per_item);
                }
                self.used = used;
                self.written_at_reading = self.tally.bytes_written;
                self.items_at_reading = self.tally.counts.written;
            }
        }
        let Some(before) = self.evictions_before else {
            return;
        };
        let now = tokio::time::timeout(STORE_CHECK_EVERY, self.store.evictions()).await;
        if let Ok(Ok(Some(now))) = now
            && now > before
        {
            let evicted = now - before;
            tracing::warn!(evicted, "the store is evicting; stopped writing to it");
            self.error = Some(format!(
                "stopped writing: the store evicted {evicted} keys during the run (its memory \
                 is full; warming on would push out live entries)"
            ));
        }
    }

    /// Decides every entry of `batch` that is not for the store to answer: invalid key,
    /// source miss, near expiry, over budget. `in_flight_bytes` are taken as written.
    fn decide(
        &mut self,
        batch: Arc<Batch>,
        shared: &Shared,
        in_flight_bytes: u64,
        in_flight_items: u64,
    ) -> Pending {
        let settings = &shared.settings;
        let mut decided = vec![None; batch.entries.len()];
        let mut sent = Vec::with_capacity(batch.entries.len());
        let mut pending_bytes = 0u64;
        // A resumed target skips what it handled before (another target may be behind it).
        let skip = self
            .tally
            .next_entry
            .saturating_sub(batch.start)
            .min(batch.entries.len());
        for (i, (entry, fetched)) in batch.entries.iter().zip(&batch.fetched).enumerate() {
            if i < skip
                || !shared
                    .category_enabled
                    .get(entry.category as usize)
                    .copied()
                    .unwrap_or(true)
            {
                continue;
            }
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
            let crossed = self.limit_crossed(
                in_flight_bytes + pending_bytes + size,
                in_flight_items + sent.len() as u64 + 1,
            );
            if self.tally.budget_reached || crossed.is_some() {
                // The budget is a stop line: once reached, nothing later is written, so the
                // warm keys are exactly the top of the ranking that fits. The high-water mark
                // is one too.
                if !self.tally.budget_reached {
                    self.tally.stopped_by = crossed;
                }
                self.tally.budget_reached = true;
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
            skip,
        }
    }

    /// Counts a batch once its writes are back (`None`: nothing was sent), and the read-back
    /// `verdicts` of its entries written.
    fn settle(
        &mut self,
        pending: Pending,
        result: Option<WriteResult>,
        verdicts: Vec<(usize, Verdict)>,
        shared: &Shared,
    ) {
        let Pending {
            batch,
            mut decided,
            sent,
            skip,
            ..
        } = pending;
        let mut written_indexes = Vec::new();
        let was_sent = result.is_some();
        let mut refused = Vec::new();
        if let Some(result) = result {
            let outcomes = match result {
                Ok(Ok(outcomes)) => {
                    self.breaker.succeeded();
                    outcomes
                }
                Ok(Err(error)) => match self.breaker.failed(&error) {
                    Some(open) => {
                        // The batch stays unaccounted, like the ones after it: `--resume`
                        // takes them up when the store is back.
                        tracing::error!(%error, "target failed; the other targets go on");
                        self.error = Some(open);
                        return;
                    }
                    None => {
                        tracing::warn!(%error, "batch failed after its retries; going on");
                        let reason = error.message.clone();
                        sent.iter()
                            .map(|_| WriteOutcome::Refused(reason.clone()))
                            .collect()
                    }
                },
                Err(_) => {
                    // Entries of this batch stay unaccounted: they are `not_attempted`.
                    self.timed_out = true;
                    return;
                }
            };
            for (n, ((i, size), outcome)) in sent.into_iter().zip(outcomes).enumerate() {
                decided[i] = Some(match outcome {
                    WriteOutcome::Written => {
                        self.tally.bytes_written += size;
                        written_indexes.push(n as u32);
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
        if let Some(log) = &mut self.log
            && was_sent
        {
            let record = Record::Written {
                run: shared.invocation,
                start: batch.start as u64,
                written: written_indexes,
            };
            if let Err(error) = log.append(&record) {
                // The sent line is there: undo still finds these keys, as unconfirmed.
                tracing::warn!(%error, path = %log.path().display(), "cannot append to the written-keys log");
            }
        }
        for (i, (entry, disposition)) in batch.entries.iter().zip(decided).enumerate() {
            if i < skip
                || !shared
                    .category_enabled
                    .get(entry.category as usize)
                    .copied()
                    .unwrap_or(true)
            {
                continue;
            }
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
        for (i, verdict) in verdicts {
            let entry = &batch.entries[i];
            let category = shared.manifest.categories.get(entry.category as usize);
            let name = category.map_or("", |c| c.name.as_str());
            let rank = (batch.start + i + 1) as u64;
            self.tally.verified.record(rank, entry, name, verdict);
        }
        self.tally.next_entry = self.tally.next_entry.max(batch.start + batch.entries.len());
        shared
            .board
            .post(self.index, self.tally.progress(shared.board.categories()));
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

/// Sends the items of `pending` (a dry run asks which keys are present instead), retrying
/// transient failures (see [`faults`]) until the deadline.
async fn write(
    store: &Store,
    pending: &Pending,
    shared: &Shared,
    retried: &Arc<AtomicU64>,
) -> WriteResult {
    let settings = &shared.settings;
    let batch = &pending.batch;
    if settings.dry_run {
        let keys: Vec<&str> = pending
            .sent
            .iter()
            .map(|&(i, _)| batch.entries[i].key.as_str())
            .collect();
        let present = tokio::time::timeout_at(
            shared.deadline,
            faults::retrying(settings.retries, retried, || store.contains(&keys)),
        )
        .await?;
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
        .filter_map(|&(i, _)| write_item(batch, i, settings))
        .collect();
    tokio::time::timeout_at(
        shared.deadline,
        faults::retrying(settings.retries, retried, || {
            store.write(&items, settings.overwrite)
        }),
    )
    .await
}

/// What is sent for entry `i` of `batch`; `None` when the source had no value.
fn write_item<'b>(batch: &'b Batch, i: usize, settings: &RunSettings) -> Option<WriteItem<'b>> {
    let entry = &batch.entries[i];
    let fetched = batch.fetched[i].as_ref()?;
    Some(WriteItem {
        key: &entry.key,
        value: &fetched.value,
        ttl: ttl_of(entry, fetched, settings),
        flags: fetched.flags,
        encoding: fetched.encoding,
    })
}

/// Reads back the entries of `pending` that `outcomes` say were written (see [`verify`]),
/// `--verify-delay` after the write (a test's hook); their indexes in the batch and verdicts.
/// A read-back that fails or runs past the deadline verifies nothing (and says so in the log).
async fn read_back(
    store: &Store,
    source: &Source,
    pending: &Pending,
    outcomes: &[WriteOutcome],
    shared: &Shared,
    sent_at: Instant,
) -> Vec<(usize, Verdict)> {
    let settings = &shared.settings;
    let (indexes, items): (Vec<usize>, Vec<WriteItem<'_>>) = pending
        .sent
        .iter()
        .zip(outcomes)
        .filter(|(_, outcome)| matches!(outcome, WriteOutcome::Written))
        .filter_map(|(&(i, _), _)| Some((i, write_item(&pending.batch, i, settings)?)))
        .unzip();
    if items.is_empty() {
        return Vec::new();
    }
    let read = async {
        if !settings.verify_delay.is_zero() {
            tokio::time::sleep(settings.verify_delay).await;
        }
        // A snapshot does not change: only a live replica can explain a rewrite.
        let source = matches!(source, Source::Replica(_)).then_some(source);
        verify::verify(store, source, &items, || sent_at.elapsed()).await
    };
    match tokio::time::timeout_at(shared.deadline, read).await {
        Ok(Ok(verdicts)) => indexes.into_iter().zip(verdicts).collect(),
        Ok(Err(error)) => {
            tracing::warn!(%error, "read-back failed; this batch is not verified");
            Vec::new()
        }
        Err(_) => Vec::new(),
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
