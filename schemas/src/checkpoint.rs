//! Checkpoint v1: what a resumed run needs to skip finished work.
//!
//! The warmer writes it into the run directory atomically (temp file, fsync, rename), so a
//! reader sees either the previous checkpoint or the new one, never a torn file.

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
}
