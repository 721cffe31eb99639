//! `warmer status [RUN_DIR]`: where a run stands, read from its run directory alone (the
//! checkpoint, the report, and whether a process holds the run's lock), so it works from any
//! shell while the run goes on, after it finished, and after it was killed.

use std::fmt::Write;
use std::path::{Path, PathBuf};

use schemas::report::{EntryOutcome, Outcome};
use schemas::{Checkpoint, Report};
use serde::Serialize;

use crate::report::counts_line;
use crate::rundir::{self, REPORT_FILE};

/// Where a run stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// A warmer process holds the run's lock.
    Running,
    /// Every entry was handled at every target.
    Finished,
    /// The last invocation stopped on a signal; resumable.
    Interrupted,
    /// The last invocation stopped at its timeout; resumable.
    TimedOut,
    /// The last invocation ended with a target or the source failed; resumable.
    Incomplete,
    /// No process holds the lock and the last invocation left no report: it was killed.
    Stopped,
}

/// A run's status.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    pub run_dir: PathBuf,
    pub state: State,
    pub checkpoint: Checkpoint,
    /// The report of the last invocation that got to its end, when there is one.
    pub report: Option<Report>,
}

/// Reads the status of the run in `run_dir`.
pub fn status(run_dir: &Path) -> Result<Status, String> {
    let checkpoint = rundir::read_checkpoint(run_dir)?;
    let report: Option<Report> = std::fs::read(run_dir.join(REPORT_FILE))
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok());
    let locked = match rundir::try_lock(run_dir) {
        Ok(Some(_lock)) => false,
        Ok(None) => true,
        Err(e) => {
            return Err(format!(
                "cannot check the lock of `{}`: {e}",
                run_dir.display()
            ));
        }
    };
    // The report of the last invocation carries the checkpoint's own time; an older report
    // belongs to an invocation before one that was killed.
    let last_report = report
        .as_ref()
        .filter(|r| r.timings.finished_at >= checkpoint.updated_at);
    let state = if locked {
        State::Running
    } else if checkpoint.finished {
        State::Finished
    } else {
        match last_report.map(|r| r.outcome) {
            Some(Outcome::Interrupted) => State::Interrupted,
            Some(Outcome::TimedOut) => State::TimedOut,
            Some(Outcome::Completed) => State::Incomplete,
            None => State::Stopped,
        }
    };
    Ok(Status {
        run_dir: run_dir.to_path_buf(),
        state,
        checkpoint,
        report,
    })
}

/// The newest run directory under `runs_dir`.
pub fn latest_run(runs_dir: &Path) -> Option<PathBuf> {
    rundir::run_dirs(runs_dir).into_iter().next()
}

/// The newest run under `runs_dir` of `shard` (of the whole manifest for `None`): shards
/// sharing a runs directory each take back, or look at, their own run.
pub fn latest_run_of(runs_dir: &Path, shard: Option<schemas::Shard>) -> Option<PathBuf> {
    rundir::run_dirs(runs_dir)
        .into_iter()
        .find(|dir| rundir::read_checkpoint(dir).is_ok_and(|c| c.shard == shard))
}

/// The status as a few lines of text.
pub fn text(status: &Status) -> String {
    let c = &status.checkpoint;
    let mut out = String::new();
    let state = match status.state {
        State::Running => format!(
            "running{}",
            c.pid.map(|p| format!(" (pid {p})")).unwrap_or_default()
        ),
        State::Finished => "finished".to_owned(),
        State::Interrupted => "interrupted; resume with `warmer run … --resume`".to_owned(),
        State::TimedOut => "stopped by its timeout; resume with `warmer run … --resume`".to_owned(),
        State::Incomplete => {
            "ended with a failed target or source; resume with `warmer run … --resume`".to_owned()
        }
        State::Stopped => {
            "stopped without a report (killed); resume with `warmer run … --resume`".to_owned()
        }
    };
    let _ = writeln!(
        out,
        "run {} ({}): {state}",
        c.run_id,
        status.run_dir.display()
    );
    let _ = writeln!(
        out,
        "  manifest {} ({} entries{}){}{}",
        c.manifest_path,
        c.manifest_entries,
        c.shard
            .map(|shard| format!(" of shard {shard}"))
            .unwrap_or_default(),
        c.environment
            .as_ref()
            .map(|e| format!(", environment {e}"))
            .unwrap_or_default(),
        if c.resumed > 0 {
            format!(", resumed {} time(s)", c.resumed)
        } else {
            String::new()
        }
    );
    let share = if c.manifest_entries == 0 {
        100.0
    } else {
        c.next_entry as f64 * 100.0 / c.manifest_entries as f64
    };
    let _ = writeln!(
        out,
        "  progress: {} of {} entries handled at every target ({share:.1}%), updated {}",
        c.next_entry,
        c.manifest_entries,
        c.updated_at.format("%Y-%m-%d %H:%M:%S UTC")
    );
    for (i, url) in c.targets.iter().enumerate() {
        let counts = c.counts.get(i).cloned().unwrap_or_default();
        let next = c.progress.get(i).map_or(c.next_entry, |p| p.next_entry);
        // A run under way has no `not_attempted` count yet: the checkpoint leaves it out.
        let line = counts_line(&counts, &EntryOutcome::ALL[..EntryOutcome::ALL.len() - 1]);
        let _ = writeln!(out, "  {url}: at entry {next}; {line}");
    }
    if let Some(report) = &status.report {
        let _ = writeln!(
            out,
            "  report: {}",
            status.run_dir.join(REPORT_FILE).display()
        );
        if let Some(error) = &report.source_error {
            let _ = writeln!(out, "  source failed: {error}");
        }
        for target in report.targets.iter().filter(|t| t.error.is_some()) {
            let _ = writeln!(
                out,
                "  {} failed: {}",
                target.url,
                target.error.as_deref().unwrap_or_default()
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `warmer status` of a run interrupted half-way, twice resumed, whose last invocation
    /// left a report: the text an operator reads (reviewed in `snapshots/`).
    #[test]
    fn interrupted_run_text() {
        let report = crate::report::tests::sample();
        let checkpoint: Checkpoint = serde_json::from_value(serde_json::json!({
            "schema": schemas::CHECKPOINT_SCHEMA_ID,
            "run_id": report.run_id,
            "manifest_sha256": "ab".repeat(32),
            "targets": ["redis://new:6379"],
            "next_entry": 2,
            "counts": [report.targets[0].counts],
            "finished": false,
            "updated_at": "2026-11-21T00:00:09Z",
            "manifest_path": "m.json",
            "manifest_entries": 3,
            "environment": "prod",
            "resumed": 2,
        }))
        .expect("a valid checkpoint");
        let status = Status {
            run_dir: PathBuf::from("/runs/20261121T000000000Z-1"),
            state: State::Interrupted,
            checkpoint,
            report: Some(report),
        };
        insta::assert_snapshot!(text(&status));
    }
}
