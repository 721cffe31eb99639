//! The write loop: the part of a target that runs in its own task during the warm phase. It
//! takes batches from the source reader, decides them ([`decide`](super::decide)), paces and
//! logs them, keeps a few writes in flight, and counts each batch once its writes are back
//! ([`Tally`]), in rank order.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;

use super::decide::{self, Pending, Rules, ttl_of};
use super::limits::{Limit, Limits};
use super::tally::{Naming, Tally, merge_item};
use crate::retry;
use crate::run::faults::Breaker;
use crate::run::pace::Pace;
use crate::run::throttle::{Gate, Throttle};
use crate::run::verify::{self, Verdict};
use crate::run::{Batch, InFlight, Shared};
use crate::rundir::written::{Record, WrittenLog};
use crate::source::Source;
use crate::store::{Store, StoreError, WriteItem, WriteOutcome, push_entry_hash};
use schemas::report::EntryOutcome;

/// How often a worker reads the store's eviction counter and used memory.
pub(super) const STORE_CHECK_EVERY: Duration = Duration::from_secs(1);
/// Near the high-water mark, used memory is read this often.
const NEAR_MARK_CHECK_EVERY: Duration = Duration::from_millis(20);

/// What one write call came back with.
type WriteResult = Result<Result<Vec<WriteOutcome>, StoreError>, tokio::time::error::Elapsed>;

/// A write task's result: the batch, its write's outcome (`None`: nothing was sent), and the
/// read-back verdicts of the items written (entry index in the batch, item index, verdict),
/// with `--verify`.
type Written = (Pending, Option<WriteResult>, Vec<((usize, usize), Verdict)>);

/// The part of a target that runs in its own task during the warm phase.
#[derive(Debug)]
pub(crate) struct Worker {
    pub(super) index: usize,
    pub(super) store: Arc<Store>,
    /// Read again for keys that read back other than written (see `run::verify`).
    pub(super) source: Arc<Source>,
    pub(super) tally: Tally,
    pub(super) error: Option<String>,
    pub timed_out: bool,
    /// Where the run records what it sends and writes (none in a dry run).
    pub(super) log: Option<WrittenLog>,
    pub(super) ops_pace: Option<Pace>,
    pub(super) bytes_pace: Option<Pace>,
    /// The store's eviction counter when the run began, and when it was last read.
    pub(super) evictions_before: Option<u64>,
    pub(super) store_checked: Instant,
    /// The budget, the high-water mark and the estimate of used memory.
    pub(super) limits: Limits,
    pub(super) breaker: Breaker,
    pub(super) retried: Arc<AtomicU64>,
    pub(super) throttle: Option<Throttle>,
    /// The adaptive write-rate limit, as the write tasks see it.
    pub(super) gate: Arc<Gate>,
}

impl Worker {
    /// Writes every batch it receives until the channel closes.
    pub async fn run(
        mut self,
        mut batches: mpsc::Receiver<Arc<Batch>>,
        shared: Arc<Shared>,
    ) -> Worker {
        let store = Arc::clone(&self.store);
        // A table with an entry limit is written one batch at a time: with several in flight,
        // a later batch could take the room left before an earlier one does, and the rows
        // warmed would no longer be the top of the ranking. Each batch is then also decided
        // after the one before has found the limit, so nothing is sent past it.
        let depth = if store.has_entry_limit() {
            1
        } else {
            shared.settings.concurrency
        };
        let mut writes: InFlight<Written> = InFlight::new(depth);
        let mut stop = shared.stop.clone();
        let mut in_flight_bytes = 0u64;
        let mut in_flight_items = 0u64;
        // The first reading of used memory is taken now that every connection of the run is
        // open (each holds buffers in the store's memory too).
        self.store_checked = Instant::now() - STORE_CHECK_EVERY;
        self.check_store().await;
        // The throttle runs in a task of its own, so that it looks at the store on time
        // however long the batches take.
        let (done, done_rx) = tokio::sync::oneshot::channel();
        let control = self
            .throttle
            .take()
            .map(|throttle| tokio::spawn(throttle.control(Arc::clone(&self.gate), done_rx)));
        let mut open = true;
        while open || !writes.is_empty() {
            enum Step {
                Batch(Option<Arc<Batch>>),
                Done(Option<Result<Written, tokio::task::JoinError>>),
            }
            // Take the next batch while fewer than WRITES_IN_FLIGHT are out, count finished
            // writes otherwise (or when no batch is ready).
            if open && *stop.borrow() {
                // Interrupted: finish the writes in flight, take no more batches. With none in
                // flight (a slow source kept the worker waiting) the loop ends here: the
                // `select!` below would have no branch left.
                open = false;
                continue;
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
                    .flat_map(|(e, answer)| answer.items(&e.key))
                    .map(|(key, fetched)| (key.len() + fetched.value.len()) as u64)
                    .fold((0, 0), |(bytes, items), size| (bytes + size, items + 1));
                if self
                    .limits
                    .crossed(
                        &self.tally,
                        in_flight_bytes + batch_bytes,
                        in_flight_items + batch_items,
                    )
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
            let key_limits = &shared.settings.key_limits;
            let pending = decide::decide(
                batch,
                &mut self.tally,
                &self.limits,
                Rules::of(&shared),
                |key| self.store.check_key(key, key_limits).is_ok(),
                in_flight_bytes,
                in_flight_items,
            );
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
            let store = Arc::clone(&store);
            let source = Arc::clone(&self.source);
            let shared = Arc::clone(&shared);
            let retried = Arc::clone(&self.retried);
            let gate = Arc::clone(&self.gate);
            writes.push(async move {
                let sent_at = Instant::now();
                let result = write(&store, &pending, &shared, &retried, &gate).await;
                let verdicts = match &result {
                    Ok(Ok(outcomes)) if shared.settings.verify && !shared.settings.dry_run => {
                        // Told before they are sent (see `throttle::Traffic`).
                        let keys = outcomes
                            .iter()
                            .filter(|outcome| matches!(outcome, WriteOutcome::Written))
                            .count() as u64;
                        gate.own_reads
                            .fetch_add(keys * store.lookups_per_fetch(), Ordering::Relaxed);
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
        let _ = done.send(());
        if let Some(control) = control {
            match control.await {
                Ok(throttle) => self.throttle = Some(throttle),
                Err(error) => tracing::warn!(%error, "the throttle's task failed"),
            }
        }
        self
    }

    fn stopped(&self) -> bool {
        self.error.is_some() || self.timed_out
    }

    /// Waits until the rate limits let `pending` go; false when that is past the deadline.
    async fn pace(&mut self, pending: &Pending, shared: &Shared) -> bool {
        let ops = self
            .ops_pace
            .as_mut()
            .map(|p| p.book(pending.sent.len() as u64));
        let bytes = self.bytes_pace.as_mut().map(|p| p.book(pending.bytes));
        // The adaptive limit is kept per pipeline, by the write task (see `write`).
        let Some(at) = ops.into_iter().chain(bytes).max() else {
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
        let mut entries = Vec::with_capacity(pending.sent.len());
        let mut own_keys = false;
        // The store keys: what undo deletes (a loader's may differ from the manifest's), and
        // what the final coverage probe asks for.
        for &(i, j, _) in &pending.sent {
            if let Some((key, fetched)) = batch.fetched[i].item(&batch.entries[i].key, j) {
                push_entry_hash(&mut hashes, &fetched.value, fetched.flags, fetched.encoding);
                own_keys |= key != batch.entries[i].key;
                keys.push(key);
                entries.push(i as u32);
            }
        }
        if !own_keys {
            entries.clear();
        }
        log.append_sent(
            shared.invocation,
            batch.start as u64,
            keys.into_iter(),
            &hashes,
            &entries,
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
        let every = if self.limits.near_mark(&self.tally) {
            NEAR_MARK_CHECK_EVERY
        } else {
            STORE_CHECK_EVERY
        };
        if self.store_checked.elapsed() < every {
            return;
        }
        self.store_checked = Instant::now();
        if self.limits.watches_memory() {
            let used = tokio::time::timeout(STORE_CHECK_EVERY, self.store.used_memory()).await;
            if let Ok(Ok(Some(used))) = used {
                self.limits.reading(used, &self.tally);
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

    /// Counts a batch once its writes are back (`None`: nothing was sent), and the read-back
    /// `verdicts` of its entries written.
    fn settle(
        &mut self,
        pending: Pending,
        result: Option<WriteResult>,
        verdicts: Vec<((usize, usize), Verdict)>,
        shared: &Shared,
    ) {
        let Pending {
            batch,
            mut decided,
            reasons,
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
            for (n, ((i, _, size), outcome)) in sent.into_iter().zip(outcomes).enumerate() {
                let item = match outcome {
                    WriteOutcome::Written => {
                        self.tally.bytes_written += size;
                        written_indexes.push(n as u32);
                        EntryOutcome::Written
                    }
                    WriteOutcome::AlreadyPresent => EntryOutcome::AlreadyPresent,
                    WriteOutcome::NoRoom => {
                        // A SQL cache at its entry limit: a stop line, as the byte budget.
                        if !self.tally.budget_reached {
                            self.tally.stopped_by = Some(Limit::MaxEntries);
                        }
                        self.tally.budget_reached = true;
                        EntryOutcome::SkippedBudget
                    }
                    WriteOutcome::Refused(reason) => {
                        *self
                            .tally
                            .failure_reasons
                            .entry(reason.clone())
                            .or_default() += 1;
                        refused.push((i, reason));
                        EntryOutcome::Failed
                    }
                };
                decided[i] = Some(merge_item(decided[i], item));
            }
        }
        for (i, reason) in reasons {
            if decided[i] == Some(EntryOutcome::Failed) {
                *self
                    .tally
                    .failure_reasons
                    .entry(reason.clone())
                    .or_default() += 1;
            }
            refused.push((i, reason));
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
        for ((i, j), verdict) in verdicts {
            let entry = &batch.entries[i];
            // A loader's store key may differ from the manifest key: name what was read back.
            let key = batch.fetched[i]
                .item(&entry.key, j)
                .map_or(entry.key.as_str(), |(key, _)| key);
            let category = shared.manifest.categories.get(entry.category as usize);
            let name = category.map_or("", |c| c.name.as_str());
            let shown = shared.mask.show(key, category);
            self.tally
                .verified
                .record(entry.rank, &shown, entry.category as usize, name, verdict);
        }
        self.tally.account(
            &batch,
            decided,
            skip,
            &refused,
            &shared.category_enabled,
            &Naming {
                categories: &shared.manifest.categories,
                mask: &shared.mask,
            },
        );
        shared
            .board
            .post(self.index, self.tally.progress(shared.board.categories()));
    }
}

/// Sends the items of `pending` (a dry run asks which keys are present instead), retrying
/// transient failures (see [`crate::run::faults`]) until the deadline; while the adaptive
/// limit holds, in pipelines the `gate` paces one by one.
async fn write(
    store: &Store,
    pending: &Pending,
    shared: &Shared,
    retried: &Arc<AtomicU64>,
    gate: &Gate,
) -> WriteResult {
    let settings = &shared.settings;
    let batch = &pending.batch;
    if settings.dry_run {
        let keys: Vec<&str> = pending
            .sent
            .iter()
            .filter_map(|&(i, j, _)| Some(batch.fetched[i].item(&batch.entries[i].key, j)?.0))
            .collect();
        let present = tokio::time::timeout_at(
            shared.deadline,
            retry::retrying(settings.retries, retried, || store.contains(&keys)),
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
        .filter_map(|&(i, j, _)| write_item(batch, i, j, shared))
        .collect();
    tokio::time::timeout_at(shared.deadline, async {
        let mut outcomes = Vec::with_capacity(items.len());
        let mut rest = &items[..];
        while !rest.is_empty() {
            let (n, at) = gate.book(rest.len());
            if let Some(at) = at.filter(|at| *at > Instant::now()) {
                tokio::time::sleep_until(at).await;
            }
            let (now, later) = rest.split_at(n);
            outcomes.extend(
                retry::retrying(settings.retries, retried, || {
                    store.write(now, settings.write_mode)
                })
                .await?,
            );
            rest = later;
        }
        Ok(outcomes)
    })
    .await
}

/// What is sent for item `j` of entry `i` of `batch`; `None` when the source had no value.
fn write_item<'b>(batch: &'b Batch, i: usize, j: usize, shared: &Shared) -> Option<WriteItem<'b>> {
    let entry = &batch.entries[i];
    let (key, fetched) = batch.fetched[i].item(&entry.key, j)?;
    Some(WriteItem {
        key,
        value: &fetched.value,
        ttl: ttl_of(entry, fetched, shared.settings.default_ttl),
        flags: fetched.flags,
        encoding: fetched.encoding,
    })
}

/// Reads back the entries of `pending` that `outcomes` say were written (see
/// [`verify`](crate::run::verify)), `--verify-delay` after the write (a test's hook); their
/// indexes in the batch and verdicts. A read-back that fails or runs past the deadline
/// verifies nothing (and says so in the log).
async fn read_back(
    store: &Store,
    source: &Source,
    pending: &Pending,
    outcomes: &[WriteOutcome],
    shared: &Shared,
    sent_at: Instant,
) -> Vec<((usize, usize), Verdict)> {
    let settings = &shared.settings;
    let (indexes, items): (Vec<(usize, usize)>, Vec<WriteItem<'_>>) = pending
        .sent
        .iter()
        .zip(outcomes)
        .filter(|(_, outcome)| matches!(outcome, WriteOutcome::Written))
        .filter_map(|(&(i, j, _), _)| Some(((i, j), write_item(&pending.batch, i, j, shared)?)))
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
