//! What a target's writes came to: one count per outcome, overall and per category, the
//! bytes written, how far the target got, and the first entries not warmed. Bookkeeping only:
//! no store, no clock, so every rule here is unit-tested below.

use std::collections::BTreeMap;

use schemas::checkpoint::TargetProgress;
use schemas::report::{Counts, EntryOutcome, NOT_WARMED_LISTED, NotWarmed};

use super::decide::writes_category;
use super::limits::Limit;
use crate::manifest::{CategoryTotal, Entry};
use crate::run::Batch;
use crate::run::coverage::Seen;
use crate::run::progress::categories_by_name;
use crate::rundir::mask::KeyMask;

/// What a target's writes came to so far.
#[derive(Debug, Default, Clone)]
pub(crate) struct Tally {
    pub(super) counts: Counts,
    /// Indexed like the manifest's categories.
    pub(super) categories: Vec<Counts>,
    pub(super) failure_reasons: BTreeMap<String, u64>,
    pub(super) bytes_written: u64,
    /// Entries before this index have all been handled.
    pub(super) next_entry: usize,
    /// The byte budget stopped writing.
    pub(super) budget_reached: bool,
    /// The rank of the first entry skipped for the budget.
    pub(super) budget_cut_rank: Option<u64>,
    /// The first entries not warmed, in rank order.
    pub(super) not_warmed: Vec<NotWarmed>,
    /// Which limit stopped writing.
    pub(super) stopped_by: Option<Limit>,
    /// What the read-back of this invocation's writes found (`--verify`).
    pub(super) verified: crate::run::verify::VerifyTally,
    /// What the writes told of coverage, when the run counts it from them (see
    /// [`crate::run::coverage`]).
    pub(super) seen: Option<Seen>,
}

/// What an entry comes to once one more of its items is back, given what its items before
/// came to (`None`: this is its first). An entry with several items (a loader's store keys) is
/// failed when any item was refused, else written when any was, else skipped for the budget
/// when any found no room (it is not all in the store), else already present.
pub(super) fn merge_item(so_far: Option<EntryOutcome>, item: EntryOutcome) -> EntryOutcome {
    use EntryOutcome::{AlreadyPresent, Failed, SkippedBudget, Written};
    let Some(so_far) = so_far else {
        return item;
    };
    [Failed, Written, SkippedBudget]
        .into_iter()
        .find(|outcome| so_far == *outcome || item == *outcome)
        .unwrap_or(AlreadyPresent)
}

/// The manifest's categories, and how their keys are shown: what names a listed entry.
pub(super) struct Naming<'a> {
    pub categories: &'a [CategoryTotal],
    pub mask: &'a KeyMask,
}

impl Tally {
    /// Remembers an entry not warmed, while fewer than [`NOT_WARMED_LISTED`] are listed.
    fn note(
        &mut self,
        rank: u64,
        entry: &Entry,
        outcome: EntryOutcome,
        detail: Option<String>,
        naming: &Naming<'_>,
    ) {
        if outcome.is_in_store() {
            return;
        }
        if outcome == EntryOutcome::SkippedBudget && self.budget_cut_rank.is_none() {
            self.budget_cut_rank = Some(rank);
        }
        if self.not_warmed.len() < NOT_WARMED_LISTED {
            let category = naming.categories.get(entry.category as usize);
            self.not_warmed.push(NotWarmed {
                rank,
                key: naming.mask.show(&entry.key, category).into_owned(),
                category: category.map_or_else(String::new, |c| c.name.clone()),
                requests: entry.requests,
                reason: outcome,
                detail,
            });
        }
    }

    fn record(&mut self, category: u32, outcome: EntryOutcome) {
        let index = category as usize;
        if index >= self.categories.len() {
            self.categories.resize(index + 1, Counts::default());
        }
        let category = &mut self.categories[index];
        for counts in [&mut self.counts, category] {
            *counts.get_mut(outcome) += 1;
        }
    }

    /// Counts every entry of a settled `batch` that this target handles: the first `skip` were
    /// handled before a resume, a disabled category is not written. An entry left undecided
    /// (its write never came back) counts as failed; `refused` gives the store's reason for
    /// entries it refused, by index in the batch.
    pub(super) fn account(
        &mut self,
        batch: &Batch,
        decided: Vec<Option<EntryOutcome>>,
        skip: usize,
        refused: &[(usize, String)],
        enabled: &[bool],
        naming: &Naming<'_>,
    ) {
        for (i, (entry, outcome)) in batch.entries.iter().zip(decided).enumerate() {
            if i < skip || !writes_category(enabled, entry.category) {
                continue;
            }
            let outcome = outcome.unwrap_or(EntryOutcome::Failed);
            self.record(entry.category, outcome);
            if let Some(seen) = &mut self.seen {
                seen.record((batch.start + i) as u64, entry, outcome, &batch.fetched[i]);
            }
            let detail = refused
                .iter()
                .find(|(j, _)| *j == i)
                .map(|(_, r)| r.clone());
            self.note(entry.rank, entry, outcome, detail, naming);
        }
        self.next_entry = self.next_entry.max(batch.start + batch.entries.len());
    }

    /// Takes up where a checkpoint left off.
    pub(super) fn restore(progress: &TargetProgress, names: &[String]) -> Tally {
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

    pub(super) fn progress(&self, names: &[String]) -> TargetProgress {
        TargetProgress {
            next_entry: self.next_entry as u64,
            bytes_written: self.bytes_written,
            budget_reached: self.budget_reached,
            categories: categories_by_name(names, &self.categories),
            failure_reasons: self.failure_reasons.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(key: &str, category: u32, requests: u64) -> Entry {
        Entry::of(key, category, requests)
    }

    /// A batch of a whole-manifest run: entry `i` has rank `start + i + 1`.
    fn batch(start: usize, mut entries: Vec<Entry>) -> Batch {
        for (i, entry) in entries.iter_mut().enumerate() {
            entry.rank = (start + i + 1) as u64;
        }
        Batch {
            start,
            fetched: vec![crate::source::Answer::Miss(None); entries.len()],
            entries,
        }
    }

    fn naming(categories: &[CategoryTotal]) -> Naming<'_> {
        static MASK: std::sync::LazyLock<KeyMask> =
            std::sync::LazyLock::new(|| KeyMask::from_secret(b"test"));
        Naming {
            categories,
            mask: &MASK,
        }
    }

    fn categories() -> Vec<CategoryTotal> {
        ["pages", "users"]
            .into_iter()
            .map(|name| CategoryTotal {
                name: name.to_owned(),
                keys: 10,
                requests: 100,
                sensitive: false,
            })
            .collect()
    }

    /// Every handled entry lands in exactly one count, overall and in its category; entries
    /// a resume already handled and entries of disabled categories are not counted again.
    #[test]
    fn account_counts_each_handled_entry_once() {
        let entries = vec![
            entry("a", 0, 9),
            entry("b", 1, 8),
            entry("c", 0, 7),
            entry("d", 1, 6),
            entry("e", 0, 5),
        ];
        let decided = vec![
            Some(EntryOutcome::Written),
            Some(EntryOutcome::AlreadyPresent),
            Some(EntryOutcome::SourceMiss),
            None,
            Some(EntryOutcome::Written),
        ];
        let mut tally = Tally::default();
        tally.account(
            &batch(10, entries.clone()),
            decided,
            1,
            &[],
            &[true, true],
            &naming(&categories()),
        );
        let c = &tally.counts;
        assert_eq!(
            (c.written, c.already_present, c.source_miss, c.failed),
            (1, 1, 1, 1),
            "the skipped first entry is not counted; an undecided one is failed"
        );
        assert_eq!(c.total(), 4);
        assert_eq!(tally.categories[0].written, 1);
        assert_eq!(tally.categories[0].source_miss, 1);
        assert_eq!(tally.categories[1].already_present, 1);
        assert_eq!(tally.categories[1].failed, 1);
        assert_eq!(tally.next_entry, 15);

        let mut only_pages = Tally::default();
        let decided = vec![Some(EntryOutcome::Written); 5];
        only_pages.account(
            &batch(0, entries),
            decided,
            0,
            &[],
            &[true, false],
            &naming(&categories()),
        );
        assert_eq!(only_pages.counts.written, 3);
        assert_eq!(only_pages.categories.get(1).map_or(0, Counts::total), 0);
    }

    /// `not_warmed` lists entries not in the store after the run, in rank order, with the
    /// store's reason for a refusal; the first entry skipped for the budget is the cut rank.
    #[test]
    fn account_lists_entries_not_warmed_with_reasons() {
        let entries = vec![
            entry("ok", 0, 9),
            entry("refused", 1, 8),
            entry("over", 0, 7),
            entry("over2", 0, 6),
            entry("bad key", 1, 5),
        ];
        let decided = vec![
            Some(EntryOutcome::Written),
            Some(EntryOutcome::Failed),
            Some(EntryOutcome::SkippedBudget),
            Some(EntryOutcome::SkippedBudget),
            Some(EntryOutcome::InvalidKey),
        ];
        let refused = vec![(1, "value too large".to_owned())];
        let mut tally = Tally::default();
        tally.account(
            &batch(100, entries),
            decided,
            0,
            &refused,
            &[true, true],
            &naming(&categories()),
        );
        let listed: Vec<(u64, &str, EntryOutcome, Option<&str>)> = tally
            .not_warmed
            .iter()
            .map(|n| (n.rank, n.key.as_str(), n.reason, n.detail.as_deref()))
            .collect();
        assert_eq!(
            listed,
            vec![
                (
                    102,
                    "refused",
                    EntryOutcome::Failed,
                    Some("value too large")
                ),
                (103, "over", EntryOutcome::SkippedBudget, None),
                (104, "over2", EntryOutcome::SkippedBudget, None),
                (105, "bad key", EntryOutcome::InvalidKey, None),
            ]
        );
        assert_eq!(tally.not_warmed[0].category, "users");
        assert_eq!(tally.not_warmed[0].requests, 8);
        assert_eq!(tally.budget_cut_rank, Some(103));
    }

    /// Regression: an item that found no room under a SQL cache's entry limit made its entry
    /// `already_present`, so a run stopped by `MAX_ENTRIES` counted the entries it left out as
    /// present in the store instead of `skipped_budget`.
    #[test]
    fn an_entry_is_what_its_items_came_to() {
        use EntryOutcome::{AlreadyPresent, Failed, SkippedBudget, Written};
        for item in [Written, AlreadyPresent, SkippedBudget, Failed] {
            assert_eq!(merge_item(None, item), item, "a lone item is the entry");
        }
        let cases = [
            (AlreadyPresent, SkippedBudget, SkippedBudget),
            (SkippedBudget, AlreadyPresent, SkippedBudget),
            (SkippedBudget, Written, Written),
            (Written, AlreadyPresent, Written),
            (Written, Failed, Failed),
            (Failed, SkippedBudget, Failed),
            (AlreadyPresent, AlreadyPresent, AlreadyPresent),
        ];
        for (so_far, item, entry) in cases {
            assert_eq!(
                merge_item(Some(so_far), item),
                entry,
                "{so_far:?} then {item:?}"
            );
        }
    }

    /// The list stops at NOT_WARMED_LISTED entries, but the counts go on.
    #[test]
    fn not_warmed_is_capped() {
        let entries: Vec<Entry> = (0..NOT_WARMED_LISTED + 5)
            .map(|i| entry(&format!("k{i}"), 0, 1))
            .collect();
        let decided = vec![Some(EntryOutcome::SourceMiss); entries.len()];
        let mut tally = Tally::default();
        tally.account(
            &batch(0, entries),
            decided,
            0,
            &[],
            &[true],
            &naming(&categories()),
        );
        assert_eq!(tally.not_warmed.len(), NOT_WARMED_LISTED);
        assert_eq!(tally.counts.source_miss, (NOT_WARMED_LISTED + 5) as u64);
        assert_eq!(tally.not_warmed.last().map(|n| n.rank), Some(25));
    }

    /// A checkpoint's progress restores the same counts, bytes and position, categories
    /// matched by name (the checkpoint leaves out categories with no count).
    #[test]
    fn progress_restores_the_tally() {
        let names = vec!["pages".to_owned(), "users".to_owned()];
        let mut tally = Tally {
            bytes_written: 1234,
            budget_reached: true,
            ..Tally::default()
        };
        tally.record(1, EntryOutcome::Written);
        tally.record(1, EntryOutcome::Failed);
        tally.failure_reasons.insert("OOM".to_owned(), 1);
        tally.next_entry = 7;
        let progress = tally.progress(&names);
        assert_eq!(progress.categories.keys().collect::<Vec<_>>(), ["users"]);
        let back = Tally::restore(&progress, &names);
        assert_eq!(back.counts, tally.counts);
        assert_eq!(back.categories[1], tally.categories[1]);
        assert_eq!(back.categories[0], Counts::default());
        assert_eq!(
            (back.next_entry, back.bytes_written, back.budget_reached),
            (7, 1234, true)
        );
        assert_eq!(back.failure_reasons, tally.failure_reasons);
        assert_eq!(back.progress(&names), progress);
    }
}
