//! The one vocabulary of where a manifest entry ended up at a target ([`EntryOutcome`]), and
//! the counts kept under the same names ([`Counts`]).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Where one manifest entry ended up at one target: the one vocabulary of outcomes. Each has a
/// count of the same name in [`Counts`]; an entry not in the store after the run is listed in
/// `TargetReport::not_warmed` with one of them as its reason. The run history's columns and
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
}
