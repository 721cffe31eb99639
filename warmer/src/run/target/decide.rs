//! The per-batch decisions a target takes before it writes: which entries are for the store
//! to answer, and which are settled here (invalid key, source miss, near expiry, over a
//! limit). No I/O: unit-tested below.

use std::sync::Arc;
use std::time::Duration;

use super::limits::Limits;
use super::tally::Tally;
use crate::manifest::Entry;
use crate::run::{Batch, Shared};
use crate::source::Answer;
use crate::store::Fetched;
use schemas::report::EntryOutcome;

/// The run's rules for deciding entries.
#[derive(Debug, Clone, Copy)]
pub(super) struct Rules<'a> {
    /// Indexed like the manifest's categories: whether the run writes that category.
    pub enabled: &'a [bool],
    /// Entries whose remaining TTL is shorter are skipped.
    pub min_ttl: Duration,
    /// The TTL of entries for which neither the source nor the manifest gives one.
    pub default_ttl: Duration,
}

impl Rules<'_> {
    pub fn of(shared: &Shared) -> Rules<'_> {
        Rules {
            enabled: &shared.category_enabled,
            min_ttl: shared.settings.min_ttl,
            default_ttl: shared.settings.default_ttl,
        }
    }
}

/// A batch whose writes are on the wire: the decisions taken, waiting for the outcomes.
#[derive(Debug)]
pub(super) struct Pending {
    pub batch: Arc<Batch>,
    pub decided: Vec<Option<EntryOutcome>>,
    /// The source's reason for entries it had nothing for, or failed to load.
    pub reasons: Vec<(usize, String)>,
    /// (index in the batch, index among the entry's items, key + value bytes) of each item
    /// sent, in order. An entry's items (a loader's several store keys) are sent together.
    pub sent: Vec<(usize, usize, u64)>,
    pub bytes: u64,
    /// Leading entries this target had handled before a resume: not counted again.
    pub skip: usize,
}

/// Whether the run writes entries of `category` (all, when categories were not chosen).
pub(super) fn writes_category(enabled: &[bool], category: u32) -> bool {
    enabled.get(category as usize).copied().unwrap_or(true)
}

/// Decides every entry of `batch` that is not for the store to answer: invalid key (by
/// `key_ok`), source miss, near expiry, over budget. `in_flight_bytes` are taken as written.
pub(super) fn decide(
    batch: Arc<Batch>,
    tally: &mut Tally,
    limits: &Limits,
    rules: Rules<'_>,
    key_ok: impl Fn(&str) -> bool,
    in_flight_bytes: u64,
    in_flight_items: u64,
) -> Pending {
    let mut decided = vec![None; batch.entries.len()];
    let mut reasons = Vec::new();
    let mut sent = Vec::with_capacity(batch.entries.len());
    let mut pending_bytes = 0u64;
    // A resumed target skips what it handled before (another target may be behind it).
    let skip = tally
        .next_entry
        .saturating_sub(batch.start)
        .min(batch.entries.len());
    for (i, (entry, answer)) in batch.entries.iter().zip(&batch.fetched).enumerate() {
        if i < skip || !writes_category(rules.enabled, entry.category) {
            continue;
        }
        match answer {
            // A key the store cannot hold is invalid whatever the source has for it.
            _ if !key_ok(&entry.key) && !matches!(answer, Answer::Entries(_)) => {
                decided[i] = Some(EntryOutcome::InvalidKey);
                continue;
            }
            Answer::Miss(reason) => {
                decided[i] = Some(EntryOutcome::SourceMiss);
                reasons.extend(reason.clone().map(|r| (i, r)));
                continue;
            }
            Answer::Failed(reason) => {
                decided[i] = Some(EntryOutcome::Failed);
                reasons.push((i, reason.clone()));
                continue;
            }
            Answer::Value(_) | Answer::Entries(_) => {}
        }
        // A loader's entries go under store keys of their own: those are what the store must
        // take. They are written together or not at all.
        if answer.items(&entry.key).any(|(key, _)| !key_ok(key)) {
            decided[i] = Some(EntryOutcome::InvalidKey);
            continue;
        }
        if answer
            .items(&entry.key)
            .any(|(_, fetched)| ttl_of(entry, fetched, rules.default_ttl) < rules.min_ttl)
        {
            decided[i] = Some(EntryOutcome::SkippedNearExpiry);
            continue;
        }
        let (size, items) =
            answer
                .items(&entry.key)
                .fold((0u64, 0u64), |(size, items), (key, fetched)| {
                    (size + (key.len() + fetched.value.len()) as u64, items + 1)
                });
        let crossed = limits.crossed(
            tally,
            in_flight_bytes + pending_bytes + size,
            in_flight_items + sent.len() as u64 + items,
        );
        if tally.budget_reached || crossed.is_some() {
            // The budget is a stop line: once reached, nothing later is written, so the
            // warm keys are exactly the top of the ranking that fits. The high-water mark
            // is one too.
            if !tally.budget_reached {
                tally.stopped_by = crossed;
            }
            tally.budget_reached = true;
            decided[i] = Some(EntryOutcome::SkippedBudget);
            continue;
        }
        pending_bytes += size;
        sent.extend(
            answer
                .items(&entry.key)
                .enumerate()
                .map(|(j, (key, fetched))| (i, j, (key.len() + fetched.value.len()) as u64)),
        );
    }
    Pending {
        batch,
        decided,
        reasons,
        sent,
        bytes: pending_bytes,
        skip,
    }
}

/// TTL precedence: the source's remaining TTL, then the manifest's observed TTL, then the
/// configured default.
pub(super) fn ttl_of(entry: &Entry, fetched: &Fetched, default_ttl: Duration) -> Duration {
    fetched.ttl.unwrap_or_else(|| {
        entry
            .ttl_s
            .filter(|&secs| secs > 0)
            .map_or(default_ttl, |secs| Duration::from_secs(secs.into()))
    })
}

#[cfg(test)]
mod tests {
    use super::super::limits::Limit;
    use super::*;
    use crate::store::ValueEncoding;

    const RULES: Rules<'static> = Rules {
        enabled: &[true, true],
        min_ttl: Duration::from_secs(60),
        default_ttl: Duration::from_secs(3600),
    };

    fn entry(key: &str, category: u32, ttl_s: Option<u32>) -> Entry {
        Entry {
            rank: 0,
            key: key.to_owned(),
            category,
            requests: 1,
            ttl_s,
        }
    }

    fn value(len: usize, ttl_s: Option<u64>) -> Option<Fetched> {
        Some(Fetched {
            value: vec![b'v'; len],
            ttl: ttl_s.map(Duration::from_secs),
            flags: 0,
            encoding: ValueEncoding::Raw,
        })
    }

    fn batch(start: usize, rows: Vec<(Entry, Option<Fetched>)>) -> Arc<Batch> {
        let (entries, fetched): (Vec<Entry>, Vec<Option<Fetched>>) = rows.into_iter().unzip();
        let fetched = fetched.into_iter().map(Answer::from).collect();
        Arc::new(Batch {
            start,
            entries,
            fetched,
        })
    }

    fn no_limits(tally: &Tally) -> Limits {
        Limits::new(None, None, 0, tally)
    }

    /// Each rule settles its entries before the store is asked: a bad key before a source
    /// miss, a short TTL (from the source, else the manifest) before the budget.
    #[test]
    fn entries_the_store_need_not_answer_are_settled_here() {
        let batch = batch(
            0,
            vec![
                (entry("ok", 0, None), value(10, None)),
                (entry("bad key", 0, None), None),
                (entry("missing", 0, None), None),
                (entry("expiring", 0, None), value(10, Some(59))),
                (entry("manifest-ttl", 0, Some(30)), value(10, None)),
                (entry("source-ttl-wins", 0, Some(30)), value(10, Some(600))),
                (entry("zero-manifest-ttl", 0, Some(0)), value(10, None)),
            ],
        );
        let mut tally = Tally::default();
        let limits = no_limits(&tally);
        let pending = decide(
            batch,
            &mut tally,
            &limits,
            RULES,
            |key| !key.contains(' '),
            0,
            0,
        );
        use EntryOutcome::*;
        assert_eq!(
            pending.decided,
            vec![
                None,
                Some(InvalidKey),
                Some(SourceMiss),
                Some(SkippedNearExpiry),
                Some(SkippedNearExpiry),
                None,
                None,
            ]
        );
        assert_eq!(pending.sent, vec![(0, 0, 12), (5, 0, 25), (6, 0, 27)]);
        assert_eq!(pending.bytes, 12 + 25 + 27);
        assert_eq!(pending.skip, 0);
    }

    /// The budget is a stop line: the first entry that does not fit stops the target, and
    /// every later entry is skipped, even a smaller one that would fit. Bytes in flight count.
    #[test]
    fn the_first_entry_over_the_budget_stops_writing() {
        let rows = vec![
            (entry("a", 0, None), value(49, None)),
            (entry("b", 0, None), value(49, None)),
            (entry("c", 0, None), value(1, None)),
        ];
        let mut tally = Tally::default();
        let limits = Limits::new(Some(110), None, 0, &tally);
        let pending = decide(batch(0, rows), &mut tally, &limits, RULES, |_| true, 20, 1);
        assert_eq!(pending.sent, vec![(0, 0, 50)]);
        assert_eq!(
            pending.decided[1..],
            [
                Some(EntryOutcome::SkippedBudget),
                Some(EntryOutcome::SkippedBudget)
            ]
        );
        assert!(tally.budget_reached);
        assert_eq!(tally.stopped_by, Some(Limit::MaxFill));

        // Once reached, later batches write nothing.
        let rows = vec![(entry("d", 0, None), value(1, None))];
        let pending = decide(batch(3, rows), &mut tally, &limits, RULES, |_| true, 0, 0);
        assert!(pending.sent.is_empty());
        assert_eq!(tally.stopped_by, Some(Limit::MaxFill));
    }

    /// The high-water mark stops writing like the budget, and is named as the stop.
    #[test]
    fn the_high_water_mark_stops_writing() {
        let rows = vec![
            (entry("a", 0, None), value(99, None)),
            (entry("b", 0, None), value(99, None)),
        ];
        let mut tally = Tally::default();
        // 1000 used + 100 + 256 overhead fits under 1500; a second entry does not.
        let limits = Limits::new(None, Some(1500), 1000, &tally);
        let pending = decide(batch(0, rows), &mut tally, &limits, RULES, |_| true, 0, 0);
        assert_eq!(pending.sent, vec![(0, 0, 100)]);
        assert_eq!(tally.stopped_by, Some(Limit::HighWater));
    }

    /// A resumed target skips the entries it handled before, and disabled categories are
    /// left undecided and unsent.
    #[test]
    fn resumed_and_disabled_entries_are_left_alone() {
        let rows = vec![
            (entry("a", 0, None), value(1, None)),
            (entry("b", 0, None), value(1, None)),
            (entry("c", 1, None), value(1, None)),
            (entry("d", 0, None), value(1, None)),
        ];
        let mut tally = Tally {
            next_entry: 12,
            ..Tally::default()
        };
        let limits = no_limits(&tally);
        let rules = Rules {
            enabled: &[true, false],
            ..RULES
        };
        let pending = decide(batch(10, rows), &mut tally, &limits, rules, |_| true, 0, 0);
        assert_eq!(pending.skip, 2);
        assert_eq!(pending.sent, vec![(3, 0, 2)]);
        assert!(pending.decided.iter().all(Option::is_none));
    }
}
