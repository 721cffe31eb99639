//! One warm run: manifest + source → targets → report.
//!
//! The source is read in rank-ordered batches by one task while every target writes in a task
//! of its own, so a slow target does not hold the others back and reading overlaps writing.
//! The run stops cleanly at its deadline or on a stop signal, between batches: what was not
//! reached is counted as `not_attempted`, so the report always accounts for every entry.
//!
//! A run lives in its run directory ([`crate::rundir`]): `checkpoint.json` (rewritten as
//! batches finish, see [`progress`]), `report.json`, the written-keys logs
//! ([`crate::rundir::written`]) that `warmer undo` reads, and a `lock` file held while a process
//! works on it. A resumed run ([`RunSettings::resume`]) continues in the same directory: each
//! target skips the entries it had handled, and its counts and bytes carry over.

//!
//! This file holds the run's settings and its course from start to report; `setup` checks the
//! inputs before the run directory is made, `read` feeds the targets from the source, and
//! `target/` is one target's task.

mod coverage;
mod error;
pub(crate) mod faults;
mod observe;
mod pace;
pub mod progress;
mod read;
mod setup;
mod target;
mod throttle;
mod verify;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use schemas::checkpoint::TargetProgress;
use schemas::report::{ManifestRef, Outcome, Timings};
use schemas::{REPORT_SCHEMA_ID, Report};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::manifest::ManifestFile;
use crate::rundir::write_json_atomically;
use crate::source::Source;
use crate::store::{KeyLimits, Role, Store, WriteMode, redact};
use progress::Board;
use setup::Plan;
use target::TargetRun;

pub use error::{RunError, error_chain};
pub(crate) use read::{Batch, InFlight, stream_entries};

/// Everything a run needs, resolved from flags and defaults before any work starts.
#[derive(Debug, Clone)]
pub struct RunSettings {
    pub manifest: PathBuf,
    pub source: String,
    pub targets: Vec<String>,
    /// Count what would be written, write nothing.
    pub dry_run: bool,
    /// Whether live entries are kept (add) or replaced.
    pub write_mode: WriteMode,
    /// The whole run, probes included, ends by then.
    pub timeout: Duration,
    /// Entries per pipelined batch.
    pub batch_size: usize,
    /// Entries whose remaining TTL is shorter are skipped.
    pub min_ttl: Duration,
    /// The TTL of entries for which neither the source nor the manifest gives one.
    pub default_ttl: Duration,
    /// The share of a target's capacity the run may fill (0 < max_fill ≤ 1).
    pub max_fill: f64,
    pub key_limits: KeyLimits,
    /// Run directories are created under this one.
    pub runs_dir: PathBuf,
    pub environment: Option<String>,
    /// Write batches in flight per target.
    pub concurrency: usize,
    /// Writes per second per target, when limited.
    pub rate: Option<u64>,
    /// Key + value bytes per second per target, when limited.
    pub bandwidth: Option<u64>,
    /// Only entries of these categories are written, when given.
    pub categories: Option<Vec<String>>,
    /// Stop writing to a target whose eviction counter grows during the run.
    pub stop_on_evictions: bool,
    /// A target's used memory is never pushed past this share of its capacity.
    pub high_water: f64,
    /// Retries of a failed store call, with exponential backoff and jitter.
    pub retries: u32,
    /// Slow down when the store's latency exceeds this multiple of its baseline; `None`: off.
    pub latency_multiple: Option<f64>,
    /// Loader processes of an `exec:` source.
    pub loader: crate::source::LoaderSettings,
    /// Continue an earlier run instead of starting one.
    pub resume: Option<ResumeFrom>,
    /// Copy between stores of different kinds (Redis → memcached, …), whose applications'
    /// clients may not read each other's bytes.
    pub allow_cross_kind: bool,
    /// Read back what each batch wrote and compare it with what was sent (`run::verify`).
    pub verify: bool,
    /// A pause between a batch's write and its read-back: a test's hook to change keys behind
    /// the run's back.
    pub verify_delay: Duration,
    /// The new run's id (`--detach` picks it before starting the run in the background).
    pub run_id: Option<String>,
    /// Live-traffic observation and the report's outputs.
    pub report: crate::report::ReportSettings,
    /// Warm only this shard of the manifest (`--shard`), with its part of the budget, rate
    /// and bandwidth; `None`: the whole manifest.
    pub shard: Option<schemas::Shard>,
}

/// Which run `--resume` continues.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResumeFrom {
    /// This run directory.
    Dir(PathBuf),
    /// The latest unfinished run of the same manifest and targets under the runs directory;
    /// a new run when there is none.
    Latest,
}

/// A finished run: its report and where its outputs are.
#[derive(Debug)]
pub struct RunResult {
    pub report: Report,
    pub run_dir: PathBuf,
}

/// The share of the timeout kept for the final probe of the targets (at most
/// [`FINAL_PROBE_MAX`]), so a run stopped by its deadline can still report what the stores hold
/// and yet ends by its timeout.
const FINAL_PROBE_SHARE: f64 = 0.1;
const FINAL_PROBE_MAX: Duration = Duration::from_secs(30);

/// Settings every target task reads.
#[derive(Debug)]
pub(crate) struct Shared {
    pub manifest: Arc<ManifestFile>,
    pub settings: RunSettings,
    /// Connecting, probing and writing stop by then; the final probe has until the timeout.
    pub deadline: Instant,
    pub run_dir: PathBuf,
    /// 0 for a new run, then 1 for its first resume, and so on.
    pub invocation: u32,
    /// Where workers post their progress for the checkpoint.
    pub board: Board,
    /// Turns true on SIGINT/SIGTERM.
    pub stop: watch::Receiver<bool>,
    /// Indexed like the manifest's categories: whether the run writes that category.
    pub category_enabled: Vec<bool>,
    /// How reports and logs show the keys of sensitive categories.
    pub mask: crate::rundir::mask::KeyMask,
}

/// Runs the warm described by `settings`; `stop` turning true interrupts it between batches.
pub async fn run(
    settings: RunSettings,
    stop: watch::Receiver<bool>,
) -> Result<RunResult, RunError> {
    let started_at = Utc::now();
    let start = Instant::now();
    let end = start + settings.timeout;
    let deadline = end
        - settings
            .timeout
            .mul_f64(FINAL_PROBE_SHARE)
            .min(FINAL_PROBE_MAX);

    let Plan {
        manifest,
        source_url,
        target_urls,
        redacted_targets,
        category_enabled,
        loader,
        key_hashes,
    } = setup::plan(&settings).await?;
    tracing::debug!(elapsed = ?start.elapsed(), "manifest verified");

    let (run_dir, lock, previous) = progress::open_run_dir(
        &settings,
        &manifest.header.entries_sha256,
        &redacted_targets,
        started_at,
    )?;
    let run_id = previous
        .as_ref()
        .map(|c| c.run_id.clone())
        .unwrap_or_else(|| {
            run_dir
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        });
    let invocation = previous.as_ref().map_or(0, |c| c.resumed + 1);
    let resumed_progress: Vec<TargetProgress> = previous
        .as_ref()
        .map(|c| c.progress.clone())
        .unwrap_or_default();
    if previous.is_some() {
        tracing::info!(run_id, invocation, "resuming");
    }
    tracing::info!(run_id, entries = manifest.entries, "warm run starting");

    let mask = crate::rundir::mask::KeyMask::load(
        &settings.runs_dir,
        std::env::var(crate::env_vars::KEY_HASH_SECRET)
            .ok()
            .filter(|secret| !secret.is_empty()),
    )
    .map_err(|source| RunError::Output {
        path: settings.runs_dir.join(crate::rundir::mask::SECRET_FILE),
        source,
    })?;
    let manifest = Arc::new(manifest);
    let board = Board::new(
        progress::CheckpointBase {
            run_id: run_id.clone(),
            manifest_sha256: manifest.header.entries_sha256.clone(),
            manifest_path: settings.manifest.display().to_string(),
            manifest_entries: manifest.entries,
            environment: settings.environment.clone(),
            targets: redacted_targets.clone(),
            resumed: invocation,
            dry_run: settings.dry_run,
            categories: manifest.categories.iter().map(|c| c.name.clone()).collect(),
            shard: settings.shard,
        },
        run_dir.join(crate::rundir::CHECKPOINT_FILE),
        redacted_targets
            .iter()
            .enumerate()
            .map(|(i, _)| resumed_progress.get(i).cloned().unwrap_or_default())
            .collect(),
    );
    // The checkpoint exists from the start, so even a run killed before its first batch can
    // be resumed (and found by `--resume`).
    board.write_now()?;
    let observer = observe::Observer::connect(
        settings.report.observe,
        settings.report.baseline_hit_rate,
        &target_urls,
        stop.clone(),
    )
    .await;
    let observing = Instant::now();
    let window_before = observer.before().await;
    // The timeout bounds the warm, not the observation window before it.
    let (end, deadline) = (end + observing.elapsed(), deadline + observing.elapsed());

    let shared = Arc::new(Shared {
        manifest,
        settings,
        deadline,
        run_dir: run_dir.clone(),
        invocation,
        board,
        stop: stop.clone(),
        category_enabled,
        mask,
    });
    let resume_from = resumed_progress
        .iter()
        .map(|p| p.next_entry)
        .chain(std::iter::repeat_n(
            0,
            redacted_targets
                .len()
                .saturating_sub(resumed_progress.len()),
        ))
        .min()
        .unwrap_or(0);
    // The source is opened (a snapshot's first pass over its keys) while the targets are
    // connected and measured, and the targets all at once: none of it depends on the rest.
    let source = async {
        match (loader, &source_url) {
            (Some(loader), _) => loader.map(|loader| Arc::new(Source::Loader(loader))),
            (None, Some(source_url)) => match tokio::time::timeout_at(
                deadline,
                Source::open(source_url, &shared.manifest, resume_from, key_hashes),
            )
            .await
            {
                Ok(Ok(source)) => Ok(Arc::new(source)),
                Ok(Err(error)) => Err(error_chain(&error)),
                Err(_) => Err("timed out opening the source".to_owned()),
            },
            (None, None) => Err("no source".to_owned()),
        }
    };
    let targets = shared.settings.targets.iter().zip(&target_urls).enumerate();
    let targets = futures_util::future::join_all(targets.map(|(index, (text, url))| {
        let shared = &shared;
        let resumed = resumed_progress.get(index);
        async move {
            let store = tokio::time::timeout_at(deadline, Store::connect(url, Role::Target)).await;
            let store = match store {
                Ok(Ok(store)) => Ok(store),
                Ok(Err(error)) => Err(error.to_string()),
                Err(_) => Err("timed out connecting".to_owned()),
            };
            TargetRun::prepare(index, redact(text), url, store, shared, resumed).await
        }
    }));
    let (source, mut targets) = tokio::join!(source, targets);

    let checkpointer = tokio::spawn(progress::keep_writing(Arc::clone(&shared)));
    let warm_start = Instant::now();
    let (source_error, outcome) = match &source {
        Ok(source) => read::warm(source, &mut targets, &shared, resume_from, stop).await,
        Err(error) => {
            tracing::error!(error, "source failed; nothing will be written");
            let outcome = if Instant::now() >= deadline {
                Outcome::TimedOut
            } else {
                Outcome::Completed
            };
            (Some(error.clone()), outcome)
        }
    };
    let warm_ms = warm_start.elapsed().as_millis() as u64;
    tracing::debug!(elapsed = ?start.elapsed(), warm_ms, "warm phase over");
    let loader_report = match &source {
        Ok(source) => {
            source.close().await;
            source.loader_report()
        }
        Err(_) => None,
    };
    shared.board.close();
    let _ = checkpointer.await;

    // An interrupted run exits promptly: a deploy system that sent SIGTERM waits only a grace
    // period, so the final coverage probe (a pass over every manifest key) is left out.
    if outcome != Outcome::Interrupted {
        for target in &mut targets {
            target.finish(&shared, end).await;
        }
    }

    let finished_at = Utc::now();
    let target_reports = targets
        .iter()
        .map(|t| {
            let mut report = t.report(&shared, warm_ms);
            // The target is fine but was not warmed (from some entry on): say why there too,
            // for readers of one target's section.
            if report.error.is_none()
                && let Some(error) = &source_error
            {
                report.error = Some(format!("not warmed: the source failed: {error}"));
            }
            report
        })
        .collect();
    let mut report = Report {
        schema: REPORT_SCHEMA_ID.to_owned(),
        run_id: run_id.clone(),
        generator: format!("warmer {}", env!("CARGO_PKG_VERSION")),
        manifest: ManifestRef {
            path: shared.settings.manifest.display().to_string(),
            sha256: shared.manifest.header.entries_sha256.clone(),
            entries: shared.manifest.entries,
        },
        environment: shared.settings.environment.clone(),
        source: redact(&shared.settings.source),
        source_error,
        dry_run: shared.settings.dry_run,
        outcome,
        timings: Timings {
            started_at,
            finished_at,
            total_ms: start.elapsed().as_millis() as u64,
            warm_ms,
        },
        targets: target_reports,
        observation: None,
        prediction: None,
        rank_curve: Vec::new(),
        loader: loader_report,
        shard: shared.settings.shard,
        merged_from: Vec::new(),
    };
    for target in &targets {
        shared.board.post(target.index, target.progress(&shared));
    }
    // Finished means every entry was handled at every target; a target that failed (or stopped
    // on evictions) leaves the run resumable for it.
    let finished = report.source_error.is_none()
        && targets
            .iter()
            .all(|t| t.is_ok() && t.next_entry as u64 >= shared.manifest.entries);
    let checkpoint = shared.board.checkpoint(finished, finished_at);
    write_json_atomically(&run_dir.join(crate::rundir::CHECKPOINT_FILE), &checkpoint)?;
    write_json_atomically(&run_dir.join("report.json"), &report)?;
    // The warm's report is on disk before the window after it: a deploy that kills the run
    // while it observes still has it.
    observer.after(&mut report, window_before, &shared).await;
    report.timings.finished_at = Utc::now();
    report.timings.total_ms = start.elapsed().as_millis() as u64;
    report.rank_curve = match &shared.manifest.rank_curve {
        Some(curve) => curve.clone(),
        None => crate::report::rank_curve(&shared.manifest).await,
    };
    write_json_atomically(&run_dir.join("report.json"), &report)?;
    crate::report::write_outputs(&report, &run_dir, &shared.settings.report)?;
    tracing::debug!(elapsed = ?start.elapsed(), "reports written");
    drop(lock);
    Ok(RunResult { report, run_dir })
}

/// Run ids sort by start time and stay unique across processes. A shard's run id ends with
/// its shard (`-shard2of4`): the shards of an indexed Job start in the same millisecond with
/// the same process id (1, in a container) and must never share a run directory.
pub fn new_run_id(started_at: chrono::DateTime<Utc>, shard: Option<schemas::Shard>) -> String {
    let id = format!(
        "{}-{}",
        started_at.format("%Y%m%dT%H%M%S%3fZ"),
        std::process::id()
    );
    match shard {
        Some(shard) => format!("{id}-shard{}of{}", shard.index, shard.count),
        None => id,
    }
}

impl RunSettings {
    /// This warmer's part of a limit that one warmer would have alone (the byte budget, the
    /// write rate, the bandwidth): all of it, or a shard's even part, so that the shards
    /// together never pass it.
    pub fn part_of(&self, total: u64) -> u64 {
        self.shard.map_or(total, |shard| shard.part(total))
    }
}
