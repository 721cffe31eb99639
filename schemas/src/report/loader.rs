//! The report's section on an `exec:` source's loader processes (loader protocol v1).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::loader::Hello;

/// What the loader processes of an `exec:` source did (loader protocol v1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LoaderReport {
    /// The command, as given after `exec:`.
    pub command: String,
    /// The first loader's hello: which application, framework, cache alias and serializer
    /// made the values.
    pub hello: Option<Hello>,
    /// Loader processes run side by side (`--loader-workers`).
    pub workers: u32,
    /// Processes started, restarts included.
    pub started: u64,
    /// Processes started again after one crashed, stalled or broke the protocol.
    pub restarts: u64,
    /// Requests answered in full.
    pub requests: u64,
    /// Keys asked again after a retryable error or a failed loader.
    pub retries: u64,
    /// Keys the loader had nothing for, by its reason.
    pub misses: BTreeMap<String, u64>,
    /// Keys that could not be loaded in the end (the loader's error, a loader that kept
    /// failing, a value over `--max-value-size`), by reason.
    pub errors: BTreeMap<String, u64>,
    /// The first loader failures (crash, stall, a line that is not protocol), each with the
    /// end of that loader's stderr.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failures: Vec<LoaderFailure>,
}

/// How many failures [`LoaderReport::failures`] lists at most.
pub const LOADER_FAILURES_LISTED: usize = 10;

/// One loader process that failed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LoaderFailure {
    pub at: DateTime<Utc>,
    /// Which worker (from 0).
    pub worker: u32,
    /// What went wrong: the exit status, the stall, or the line that was not protocol.
    pub message: String,
    /// The last lines the loader wrote to stderr before it was stopped.
    pub stderr_tail: Vec<String>,
}
