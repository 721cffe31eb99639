//! Checkpoint v1: what a resumed run needs to skip finished work.
//!
//! The warmer writes it into the run directory atomically (temp file, fsync, rename), so a
//! reader sees either the previous checkpoint or the new one, never a torn file. It is
//! rewritten while the run goes (each time a target finishes a batch, coalesced while a write
//! is under way) and once more at the end, so after a crash it is at most about one batch
//! behind: a resumed run sends those writes again, and add semantics make that harmless.
//!
//! The fields after `updated_at` were added while v1 was current; they default when absent, so
//! a checkpoint written before them still reads.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::report::Counts;

/// The schema id of checkpoint v1, stored in `schema`.
pub const CHECKPOINT_SCHEMA_ID: &str = "cachewarm.checkpoint/v1";

/// The progress of one run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Checkpoint {
    /// Always [`CHECKPOINT_SCHEMA_ID`] for this version.
    pub schema: String,
    pub run_id: String,
    /// The `entries_sha256` of the manifest being warmed; a resume with another manifest is
    /// refused.
    pub manifest_sha256: String,
    /// The targets' URLs (credentials redacted), in order; a resume against other targets is
    /// refused.
    pub targets: Vec<String>,
    /// Every entry with a lower index (0-based, rank order) has been handled at every target.
    pub next_entry: u64,
    /// The counts so far, one per target, in the order of `targets`.
    pub counts: Vec<Counts>,
    /// Whether the run got to its end.
    pub finished: bool,
    pub updated_at: DateTime<Utc>,
    /// The manifest's path as the run was given it.
    #[serde(default)]
    pub manifest_path: String,
    /// How many entries the manifest holds.
    #[serde(default)]
    pub manifest_entries: u64,
    /// The environment profile the run used, when one was named.
    #[serde(default)]
    pub environment: Option<String>,
    /// Each target's own progress, in the order of `targets` (a fast target may be ahead of
    /// `next_entry`).
    #[serde(default)]
    pub progress: Vec<TargetProgress>,
    /// How many times the run has been resumed.
    #[serde(default)]
    pub resumed: u32,
    /// The process that last wrote this checkpoint.
    #[serde(default)]
    pub pid: Option<u32>,
    /// A dry run's checkpoint: only a dry run resumes it.
    #[serde(default)]
    pub dry_run: bool,
    /// The shard of the manifest this run warms (`--shard`); absent for a whole-manifest run.
    /// Entry indexes (`next_entry`) count the shard's entries only, so a resume must be of the
    /// same shard.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<crate::Shard>,
}

/// Where one target stands.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TargetProgress {
    /// Every entry with a lower index has been handled at this target.
    pub next_entry: u64,
    /// Key + value bytes written so far; a resumed run goes on counting against the budget
    /// from here.
    pub bytes_written: u64,
    /// The byte budget stopped writing here: a resumed run writes nothing more to it.
    pub budget_reached: bool,
    /// The counts so far per manifest category.
    #[serde(default)]
    pub categories: BTreeMap<String, Counts>,
    /// Failed writes so far, by the store's reason.
    #[serde(default)]
    pub failure_reasons: BTreeMap<String, u64>,
}
