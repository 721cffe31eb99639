//! Coverage: how much of the manifest's request weight a store holds, before the run and
//! after it.
//!
//! An entry is asked for under its manifest key, unless the run wrote it under store keys of
//! its own (a loader's, after a key-version bump say): then it is present when all of those
//! are, since the application reads those keys and not the manifest's.
//!
//! A fresh run that writes with add semantics learns most of it from its own writes instead of
//! probing every key twice ([`Seen`]): a write that found its key there says the entry was
//! present before, and one that stored it says it was absent, and either way it is present
//! after. Only the entries the run did not write (source misses, invalid keys, entries over the
//! budget or near expiry, disabled categories, failed writes) are probed, once, at the end; for
//! them, before and after are the same, since the run did not touch them. A sample of the told
//! entries is probed along with them: if the store no longer holds one of those (evicted,
//! expired, deleted by the application), every entry is probed for the after figure.
//!
//! What that changes, said in the README: an untold entry's "before" is its state at the end
//! of the run, and a told entry's is its state when the run wrote it, not when the run began.
//! A key the application itself filled in the meantime counts as present before, which is what
//! the figure is read for: how much of the coverage the run added.
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use fixedbitset::FixedBitSet;
use schemas::report::{Coverage, EntryOutcome};
use tokio::time::Instant;

use super::{InFlight, Shared, stream_entries};
use crate::manifest::Entry;
use crate::source::Answer;
use crate::store::Store;

/// Keys per probe call. Probes are small commands (`EXISTS`, `mg` without value), so a batch
/// can be larger than a write batch.
const PROBE_BATCH: usize = 2000;
/// Probe calls in flight at once (see the warm phase: no pause for each round trip).
const PROBES_IN_FLIGHT: usize = 3;
/// About how many of the entries the writes told of are probed again at the end, to check that
/// the store still holds them.
const TOLD_SAMPLE: u64 = 10_000;

/// Coverage overall and per category (indexed like the manifest's categories).
#[derive(Debug, Clone)]
pub(crate) struct Probe {
    pub overall: Coverage,
    pub categories: Vec<Coverage>,
}

/// (requests present, requests total, keys present).
type Sums = (u64, u64, u64);

/// Sums overall and per category, as entries are counted.
#[derive(Debug, Clone, Default)]
struct Totals {
    overall: Sums,
    categories: Vec<Sums>,
}

impl Totals {
    fn new(categories: usize) -> Totals {
        Totals {
            overall: (0, 0, 0),
            categories: vec![(0, 0, 0); categories],
        }
    }

    fn add(&mut self, entry: &Entry, present: bool) {
        let index = entry.category as usize;
        if index >= self.categories.len() {
            self.categories.resize(index + 1, (0, 0, 0));
        }
        for total in [&mut self.overall, &mut self.categories[index]] {
            total.1 += entry.requests;
            if present {
                total.0 += entry.requests;
                total.2 += 1;
            }
        }
    }

    fn merge(&mut self, other: &Totals) {
        if other.categories.len() > self.categories.len() {
            self.categories.resize(other.categories.len(), (0, 0, 0));
        }
        let pairs = std::iter::once((&mut self.overall, &other.overall))
            .chain(self.categories.iter_mut().zip(&other.categories));
        for (sums, more) in pairs {
            sums.0 += more.0;
            sums.1 += more.1;
            sums.2 += more.2;
        }
    }

    fn probe(self) -> Probe {
        let coverage = |(present, total, keys): Sums| Coverage::new(present, total, keys);
        Probe {
            overall: coverage(self.overall),
            categories: self.categories.into_iter().map(coverage).collect(),
        }
    }
}

/// What a run's writes told of its target's coverage (see the module's header).
#[derive(Debug, Clone)]
pub(crate) struct Seen {
    /// By manifest index: the entry's write answered under its manifest key alone.
    told: FixedBitSet,
    told_count: u64,
    before: Totals,
    after: Totals,
    /// Entries written under store keys of their own, by manifest index: probed under those.
    store_keys: HashMap<u64, Vec<String>>,
    /// Those of them whose own keys include the manifest key: the write told their before.
    before_told: HashSet<u64>,
    /// Every `stride`-th manifest index: the keys of those told, probed again at the end.
    stride: u64,
    sampled: Vec<String>,
    entries: u64,
}

impl Seen {
    /// For a manifest (or a shard's part of it) of `entries` entries in `categories`.
    pub fn new(entries: u64, categories: usize) -> Seen {
        Seen {
            told: FixedBitSet::with_capacity(usize::try_from(entries).unwrap_or(usize::MAX)),
            told_count: 0,
            before: Totals::new(categories),
            after: Totals::new(categories),
            store_keys: HashMap::new(),
            before_told: HashSet::new(),
            stride: (entries / TOLD_SAMPLE).max(1),
            sampled: Vec::new(),
            entries,
        }
    }

    /// The entry at manifest `index`, of source answer `answer`, came to `outcome`.
    pub fn record(&mut self, index: u64, entry: &Entry, outcome: EntryOutcome, answer: &Answer) {
        let answered = matches!(
            outcome,
            EntryOutcome::Written | EntryOutcome::AlreadyPresent
        );
        match answer {
            Answer::Value(_) if answered => {
                let Ok(slot) = usize::try_from(index) else {
                    return;
                };
                self.told.grow(slot + 1);
                self.told.insert(slot);
                self.told_count += 1;
                if index.is_multiple_of(self.stride) {
                    self.sampled.push(entry.key.clone());
                }
                self.before
                    .add(entry, outcome == EntryOutcome::AlreadyPresent);
                self.after.add(entry, true);
            }
            Answer::Entries(items) if answered || outcome == EntryOutcome::Failed => {
                let keys: Vec<String> = items.iter().map(|(key, _)| key.clone()).collect();
                // The run wrote the manifest key itself: a probe at the end would find its
                // own write. Already there means every item was.
                if keys.contains(&entry.key) {
                    self.before
                        .add(entry, outcome == EntryOutcome::AlreadyPresent);
                    self.before_told.insert(index);
                }
                self.store_keys.insert(index, keys);
            }
            _ => {}
        }
    }

    fn is_told(&self, index: u64) -> bool {
        usize::try_from(index).is_ok_and(|slot| self.told.contains(slot))
    }
}

/// What the probes at the end of a run ask of a streamed entry.
enum Plan {
    /// Every entry, under the keys this map gives for its manifest index, else its manifest
    /// key.
    All(HashMap<u64, Vec<String>>),
    /// The entries the writes did not tell of.
    Untold(Box<Seen>),
}

/// Which figure a probe's answer counts for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Both,
    Before,
    After,
}

/// Probes every manifest entry that is valid for `store`, streaming the manifest, before
/// `deadline`: under the keys `store_keys` gives for its manifest index, else its manifest key.
pub(crate) async fn probe(
    store: &Arc<Store>,
    shared: &Arc<Shared>,
    store_keys: HashMap<u64, Vec<String>>,
    deadline: Instant,
) -> Result<Probe, String> {
    let (totals, _) = run_plan(store, shared, Arc::new(Plan::All(store_keys)), deadline).await?;
    Ok(totals.probe())
}

/// Coverage before and after a run whose writes told what they found (`seen`): the sample of
/// the told entries is probed, and the untold entries (the manifest is streamed again only if
/// there are any); when a sampled entry is gone, every entry is probed again for the after
/// figure.
pub(crate) async fn probe_untold(
    store: &Arc<Store>,
    shared: &Arc<Shared>,
    seen: Seen,
    deadline: Instant,
) -> Result<(Probe, Probe), String> {
    let mut lost = 0;
    for keys in seen.sampled.chunks(PROBE_BATCH) {
        let questions: Vec<Vec<&str>> = keys.iter().map(|key| vec![key.as_str()]).collect();
        let found = present(store, shared, &questions, deadline).await?;
        lost += found.iter().filter(|found| !**found).count();
    }
    let (mut before, mut after) = (seen.before.clone(), seen.after.clone());
    // Only when needed: the keys to probe every entry under, the written ones' own included.
    let every_entry = (lost > 0).then(|| seen.store_keys.clone());
    if seen.told_count < seen.entries {
        let (probed_before, probed_after) = run_plan(
            store,
            shared,
            Arc::new(Plan::Untold(Box::new(seen))),
            deadline,
        )
        .await?;
        before.merge(&probed_before);
        after.merge(&probed_after);
    }
    let Some(store_keys) = every_entry else {
        return Ok((before.probe(), after.probe()));
    };
    tracing::info!(
        lost,
        "the store no longer holds some of the sampled keys the run wrote; probing every entry"
    );
    let after = probe(store, shared, store_keys, deadline).await?;
    Ok((before.probe(), after))
}

/// Streams the manifest and asks `store` what `plan` says of each entry; returns the before
/// and after sums of the probed entries (the same under [`Plan::All`]).
async fn run_plan(
    store: &Arc<Store>,
    shared: &Arc<Shared>,
    plan: Arc<Plan>,
    deadline: Instant,
) -> Result<(Totals, Totals), String> {
    let categories = shared.manifest.categories.len();
    let (mut before, mut after) = (Totals::new(categories), Totals::new(categories));
    let mut entries = stream_entries(shared, PROBE_BATCH);
    let mut probes = InFlight::new(PROBES_IN_FLIGHT);
    let mut reading = true;
    let mut next_index = 0u64;
    let began = Instant::now();
    let result = loop {
        let mut unreadable = None;
        while reading && !probes.is_full() {
            match entries.recv().await {
                Some(Ok(batch)) => {
                    let store = Arc::clone(store);
                    let shared = Arc::clone(shared);
                    let plan = Arc::clone(&plan);
                    let start = next_index;
                    next_index += batch.len() as u64;
                    probes.push(async move {
                        let asks = asks(&batch, start, &plan);
                        let keys: Vec<Vec<&str>> =
                            asks.iter().map(|(_, _, keys)| keys.clone()).collect();
                        let found = present(&store, &shared, &keys, deadline).await;
                        let answers: Result<Vec<(usize, Side, bool)>, String> =
                            found.map(|found| {
                                asks.iter()
                                    .zip(found)
                                    .map(|((entry, side, _), found)| (*entry, *side, found))
                                    .collect()
                            });
                        (batch, answers)
                    });
                }
                Some(Err(error)) => {
                    unreadable = Some(error.to_string());
                    reading = false;
                }
                None => reading = false,
            }
        }
        if let Some(error) = unreadable {
            break Err(error);
        }
        let Some(done) = probes.next().await else {
            break Ok(());
        };
        let (batch, answers) = match done {
            Ok(done) => done,
            Err(error) => break Err(format!("probe task failed: {error}")),
        };
        let answers = match answers {
            Ok(answers) => answers,
            Err(error) => break Err(error),
        };
        for (entry, side, found) in answers {
            let entry = &batch[entry];
            match side {
                Side::Both => {
                    before.add(entry, found);
                    after.add(entry, found);
                }
                Side::Before => before.add(entry, found),
                Side::After => after.add(entry, found),
            }
        }
    };
    probes.abort().await;
    result?;
    tracing::debug!(entries = next_index, elapsed = ?began.elapsed(), "coverage probed");
    Ok((before, after))
}

/// What to ask of the entries of `batch` (the first at manifest index `start`): (entry in the
/// batch, the figure the answer counts for, the keys that must all be present).
fn asks<'a>(batch: &'a [Entry], start: u64, plan: &'a Plan) -> Vec<(usize, Side, Vec<&'a str>)> {
    let mut asks = Vec::with_capacity(batch.len());
    for (i, (entry, index)) in batch.iter().zip(start..).enumerate() {
        let manifest_key = vec![entry.key.as_str()];
        let own = |store_keys: &'a HashMap<u64, Vec<String>>| {
            store_keys
                .get(&index)
                .map(|keys| keys.iter().map(String::as_str).collect::<Vec<_>>())
        };
        match plan {
            Plan::All(store_keys) => {
                asks.push((i, Side::Both, own(store_keys).unwrap_or(manifest_key)));
            }
            Plan::Untold(seen) => {
                if seen.is_told(index) {
                    continue;
                }
                if let Some(keys) = own(&seen.store_keys) {
                    if !seen.before_told.contains(&index) {
                        asks.push((i, Side::Before, manifest_key));
                    }
                    asks.push((i, Side::After, keys));
                } else {
                    asks.push((i, Side::Both, manifest_key));
                }
            }
        }
    }
    asks
}

/// Whether all of each of `questions`' keys are in `store`; a key invalid for the store counts
/// as absent.
async fn present(
    store: &Store,
    shared: &Shared,
    questions: &[Vec<&str>],
    deadline: Instant,
) -> Result<Vec<bool>, String> {
    let limits = &shared.settings.key_limits;
    let valid: Vec<bool> = questions
        .iter()
        .map(|keys| keys.iter().all(|key| store.check_key(key, limits).is_ok()))
        .collect();
    let keys: Vec<&str> = questions
        .iter()
        .zip(&valid)
        .filter(|(_, valid)| **valid)
        .flat_map(|(keys, _)| keys.iter().copied())
        .collect();
    if keys.is_empty() {
        return Ok(vec![false; questions.len()]);
    }
    let found = match tokio::time::timeout_at(deadline, store.contains(&keys)).await {
        Ok(Ok(found)) => found,
        Ok(Err(error)) => return Err(error.to_string()),
        Err(_) => return Err("timed out probing the store".into()),
    };
    let keys_per_question: Vec<usize> = questions.iter().map(Vec::len).collect();
    Ok(all_present(&keys_per_question, &valid, &found))
}

/// Whether each entry is present: all its keys (`keys_per_entry`) were `found`, which holds
/// one answer per key of each `valid` entry, in order (the others were not asked for).
fn all_present(keys_per_entry: &[usize], valid: &[bool], found: &[bool]) -> Vec<bool> {
    let mut found = found.iter();
    keys_per_entry
        .iter()
        .zip(valid)
        .map(|(&keys, &valid)| {
            // Each key of a valid entry takes its answer from `found`, present or not (so no
            // short-circuiting `all`).
            valid && (0..keys).filter(|_| found.next() == Some(&true)).count() == keys
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Fetched, ValueEncoding};

    fn entry(key: &str, category: u32, requests: u64) -> Entry {
        Entry::of(key, category, requests)
    }

    fn value() -> Fetched {
        Fetched {
            value: b"v".to_vec(),
            ttl: None,
            flags: 0,
            encoding: ValueEncoding::Raw,
        }
    }

    /// A write that stored its key counts present after only, one that found it there before
    /// and after; anything else is left to the probe at the end, and an entry written under
    /// store keys of its own is probed under those (under its manifest key, for before, unless
    /// the run wrote that key too: then the write told).
    #[test]
    fn writes_tell_their_entries_coverage_and_the_rest_is_asked() {
        use EntryOutcome::*;
        let entries = [
            entry("written", 0, 10),
            entry("there", 1, 5),
            entry("missing", 0, 3),
            entry("refused", 1, 2),
            entry("own", 0, 1),
            entry("same", 1, 4),
        ];
        let answers = [
            Answer::Value(value()),
            Answer::Value(value()),
            Answer::Miss(None),
            Answer::Value(value()),
            Answer::Entries(vec![("own:a".into(), value()), ("own:b".into(), value())]),
            Answer::Entries(vec![
                ("same".into(), value()),
                ("same:meta".into(), value()),
            ]),
        ];
        let outcomes = [
            Written,
            AlreadyPresent,
            SourceMiss,
            Failed,
            Written,
            AlreadyPresent,
        ];
        let mut seen = Seen::new(6, 2);
        for (index, ((entry, answer), outcome)) in
            entries.iter().zip(&answers).zip(outcomes).enumerate()
        {
            seen.record(index as u64, entry, outcome, answer);
        }
        assert_eq!(seen.told_count, 2);
        assert_eq!(seen.before.overall, (9, 19, 2));
        assert_eq!(seen.after.overall, (15, 15, 2));
        assert_eq!(seen.before.categories, [(0, 10, 0), (9, 9, 2)]);
        assert_eq!(seen.sampled, ["written", "there"]);

        let plan = Plan::Untold(Box::new(seen));
        let asked: Vec<(usize, Side, Vec<&str>)> = asks(&entries, 0, &plan);
        assert_eq!(
            asked,
            [
                (2, Side::Both, vec!["missing"]),
                (3, Side::Both, vec!["refused"]),
                (4, Side::Before, vec!["own"]),
                (4, Side::After, vec!["own:a", "own:b"]),
                (5, Side::After, vec!["same", "same:meta"]),
            ]
        );
        // The same entries streamed from manifest index 6 on are none of the told.
        assert_eq!(asks(&entries, 6, &plan).len(), 6);
    }

    /// About `TOLD_SAMPLE` told entries are kept for the check at the end, whatever the size.
    #[test]
    fn the_sample_of_told_entries_is_bounded() {
        let mut seen = Seen::new(1_000_000, 1);
        let told = entry("k", 0, 1);
        for index in 0..1_000_000 {
            seen.record(index, &told, EntryOutcome::Written, &Answer::Value(value()));
        }
        assert_eq!(seen.sampled.len() as u64, TOLD_SAMPLE);
    }

    /// An entry written under several store keys is present only when all of them are; an
    /// entry invalid for the store takes no answer and is absent.
    #[test]
    fn an_entry_is_present_when_all_its_keys_are() {
        let keys_per_entry = [1, 2, 2, 1, 1];
        let valid = [true, true, true, false, true];
        let found = [true, true, false, true, true, true];
        assert_eq!(
            all_present(&keys_per_entry, &valid, &found),
            [true, false, true, false, true]
        );
        assert_eq!(
            all_present(&[2], &[true], &[true]),
            [false],
            "an answer missing"
        );
    }
}
