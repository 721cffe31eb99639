//! `warmer undo RUN_DIR`: takes back what a run wrote (a rollback's step).
//!
//! The run's written-keys logs ([`crate::rundir::written`]) list each key it wrote, or sent and
//! never saw answered, with a hash of the value. Each such key is deleted only where it still
//! holds that value ([`Store::delete_if_unchanged`]): a key the application rewrote since, and
//! any key that was live before the run (the run never wrote those: add semantics), is kept.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::rundir::written::{self, Certainty};
use crate::rundir::{self, RunLock};
use crate::store::{Role, Store, StoreUrl, UndoOutcome, redact};

/// Keys per compare-and-delete call.
const UNDO_BATCH: usize = 500;
/// The file the summary is written to, in the run directory.
pub const UNDO_FILE: &str = "undo.json";

/// Why an undo could not start.
#[derive(Debug, thiserror::Error)]
pub enum UndoError {
    #[error("cannot undo `{dir}`: {message}")]
    Run { dir: PathBuf, message: String },
    #[error("run `{dir}` is still being worked on by a warmer process; stop it first")]
    Busy { dir: PathBuf },
}

/// What undo did at one target.
#[derive(Debug, Clone, Default, Serialize)]
pub struct TargetUndo {
    pub url: String,
    /// Keys the log lists (written, or sent without an answer).
    pub keys: u64,
    /// Of those, sent without an answer seen (the run was killed with them on the wire).
    pub unconfirmed: u64,
    pub deleted: u64,
    /// Kept: the key holds another value now.
    pub changed: u64,
    /// Gone already.
    pub missing: u64,
    /// Why the target could not be undone (entirely or from some point on).
    pub error: Option<String>,
}

/// What undo did.
#[derive(Debug, Clone, Serialize)]
pub struct UndoSummary {
    pub run_id: String,
    pub targets: Vec<TargetUndo>,
}

impl UndoSummary {
    /// Whether every target was undone.
    pub fn ok(&self) -> bool {
        self.targets.iter().all(|t| t.error.is_none())
    }
}

/// Undoes the run in `run_dir`. `urls` stand in for the run's target URLs whose password the
/// checkpoint holds redacted (matched by their redacted form).
pub async fn undo(run_dir: &Path, urls: &[String]) -> Result<UndoSummary, UndoError> {
    let error = |message: String| UndoError::Run {
        dir: run_dir.to_path_buf(),
        message,
    };
    let checkpoint = rundir::read_checkpoint(run_dir).map_err(error)?;
    let _lock: RunLock = rundir::try_lock(run_dir)
        .map_err(|e| error(format!("cannot lock it: {e}")))?
        .ok_or_else(|| UndoError::Busy {
            dir: run_dir.to_path_buf(),
        })?;
    let mut summary = UndoSummary {
        run_id: checkpoint.run_id.clone(),
        targets: Vec::new(),
    };
    for (index, redacted) in checkpoint.targets.iter().enumerate() {
        let mut target = TargetUndo {
            url: redacted.clone(),
            ..TargetUndo::default()
        };
        let url = urls
            .iter()
            .find(|url| redact(url) == *redacted)
            .cloned()
            .unwrap_or_else(|| redacted.clone());
        if let Err(message) = undo_target(run_dir, index, &url, &mut target).await {
            tracing::error!(target = redacted, message, "undo failed");
            target.error = Some(message);
        }
        summary.targets.push(target);
    }
    let path = run_dir.join(UNDO_FILE);
    if let Err(e) = rundir::write_json_atomically(&path, &summary) {
        tracing::warn!(error = %e, "could not write the undo summary");
    }
    Ok(summary)
}

async fn undo_target(
    run_dir: &Path,
    index: usize,
    url: &str,
    target: &mut TargetUndo,
) -> Result<(), String> {
    let log = written::log_path(run_dir, index);
    let keys =
        written::read_log(&log).map_err(|e| format!("cannot read `{}`: {e}", log.display()))?;
    target.keys = keys.len() as u64;
    target.unconfirmed = keys
        .iter()
        .filter(|(_, _, c)| *c == Certainty::Unconfirmed)
        .count() as u64;
    if keys.is_empty() {
        return Ok(());
    }
    if url.contains("***") {
        return Err(format!(
            "the run's record of this target has its password redacted\nhint: give the URL \
             with its password: warmer undo {} --target '{url}'",
            run_dir.display()
        ));
    }
    let parsed = StoreUrl::parse(url).map_err(|e| e.to_string())?;
    let store = Store::connect(&parsed, Role::Target)
        .await
        .map_err(|e| e.to_string())?;
    for chunk in keys.chunks(UNDO_BATCH) {
        let items: Vec<(&str, &str)> = chunk
            .iter()
            .map(|(key, hash, _)| (key.as_str(), hash.as_str()))
            .collect();
        let outcomes = store
            .delete_if_unchanged(&items)
            .await
            .map_err(|e| e.to_string())?;
        for outcome in outcomes {
            match outcome {
                UndoOutcome::Deleted => target.deleted += 1,
                UndoOutcome::Changed => target.changed += 1,
                UndoOutcome::Missing => target.missing += 1,
            }
        }
    }
    Ok(())
}

/// A few lines that say what undo did.
pub fn summary_text(summary: &UndoSummary, run_dir: &Path) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "undo of run {} ({}):",
        summary.run_id,
        run_dir.display()
    );
    for t in &summary.targets {
        let _ = writeln!(
            out,
            "  {}: deleted {}, kept (changed since) {}, already gone {} of {} keys the run wrote{}",
            t.url,
            t.deleted,
            t.changed,
            t.missing,
            t.keys,
            if t.unconfirmed > 0 {
                format!(
                    " ({} unconfirmed: sent when the run was killed)",
                    t.unconfirmed
                )
            } else {
                String::new()
            }
        );
        if let Some(error) = &t.error {
            let _ = writeln!(out, "    FAILED: {error}");
        }
    }
    out
}
