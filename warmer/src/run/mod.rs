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

mod coverage;
pub(crate) mod faults;
mod observe;
mod pace;
pub mod progress;
mod target;
mod throttle;
mod verify;

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use schemas::checkpoint::TargetProgress;
use schemas::report::{ManifestRef, Outcome, Timings};
use schemas::{REPORT_SCHEMA_ID, Report};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::manifest::{self, Entry, ManifestError, ManifestFile};
use crate::rundir::{WriteError, write_json_atomically};
use crate::source::{Answer, LoaderError, LoaderSource, Source, SourceUrl, loader};
use crate::store::{KeyLimits, Role, Store, StoreKind, StoreUrl, UrlError, WriteMode, redact};
use progress::Board;
use target::TargetRun;

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

/// Errors that stop a run before it starts, or keep its outputs from being written. Store
/// failures are not among them: they are reported, and the run goes on with the other stores.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error(transparent)]
    Url(#[from] UrlError),
    #[error("`{0}` cannot be a target: a snapshot file is a source only")]
    SnapshotTarget(String),
    #[error("failed to write `{path}`")]
    Output {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot resume `{dir}`: {message}")]
    Resume { dir: PathBuf, message: String },
    #[error("run `{dir}` has finished already; there is nothing to resume")]
    Finished { dir: PathBuf },
    #[error(
        "run `{dir}` is being worked on by another warmer process{}",
        pid.map(|p| format!(" (pid {p})")).unwrap_or_default()
    )]
    Busy { dir: PathBuf, pid: Option<u32> },
    #[error("{0}")]
    Categories(String),
    #[error(transparent)]
    Loader(LoaderError),
    #[error(
        "refusing to copy {source_kind} values into the {target_kind} target `{target}`: a value \
         is what the application's client makes of its bytes, and each kind of store is read by \
         another client with its own encoding (Django's and Rails' Redis and memcached backends \
         serialize differently; memcached's client flags and Redis's data types do not exist \
         elsewhere), so the copies would read back as other bytes\nhint: pass \
         --allow-cross-kind when the values are raw strings that mean the same in both"
    )]
    CrossKind {
        source_kind: &'static str,
        target_kind: &'static str,
        target: String,
    },
}

impl From<WriteError> for RunError {
    fn from(error: WriteError) -> RunError {
        RunError::Output {
            path: error.path,
            source: error.source,
        }
    }
}

/// A store kind's name in messages.
fn kind_name(kind: StoreKind) -> &'static str {
    match kind {
        StoreKind::Redis => "Redis",
        StoreKind::Memcached => "memcached",
        StoreKind::Sql => "SQL database cache",
    }
}

/// The kind of store behind a source, where known before connecting (a snapshot says in its
/// metadata which kind it was taken from; one that does not, or cannot be read yet, is
/// unknown: its failure is reported when the run opens it).
fn source_kind(url: &SourceUrl) -> Option<StoreKind> {
    match url {
        SourceUrl::Store(store) => Some(store.kind()),
        SourceUrl::Snapshot(path) => crate::source::snapshot_kind(path),
    }
}

/// `error` and its causes, each after a colon: what a report, a log line and the summary
/// show (a thiserror error displays only its own message).
pub fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(error) = cause {
        let message = error.to_string();
        // `#[error(transparent)]` wrappers repeat their source's message.
        if !text.ends_with(&message) {
            text.push_str(": ");
            text.push_str(&message);
        }
        cause = error.source();
    }
    text
}

/// The share of the timeout kept for the final probe of the targets (at most
/// [`FINAL_PROBE_MAX`]), so a run stopped by its deadline can still report what the stores hold
/// and yet ends by its timeout.
const FINAL_PROBE_SHARE: f64 = 0.1;
const FINAL_PROBE_MAX: Duration = Duration::from_secs(30);

/// Batches queued between the source reader and each target.
const QUEUED_BATCHES: usize = 2;
/// Manifest batches parsed ahead of the source reader.
const PARSED_AHEAD: usize = 4;
/// Source reads in flight at once. A replica answers one pipelined batch while the next is
/// on the wire and the one before is being handed to the targets, so neither the warmer nor
/// the replica waits for a round trip.
const FETCHES_IN_FLIGHT: usize = 3;

/// Entries `start..start + entries.len()` of the manifest and what the source has for each.
#[derive(Debug)]
pub(crate) struct Batch {
    pub start: usize,
    pub entries: Vec<Entry>,
    pub fetched: Vec<Answer>,
}

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

    let path = settings.manifest.clone();
    let manifest = tokio::task::spawn_blocking(move || manifest::open(&path))
        .await
        .expect("manifest verification does not panic")?;
    // An `exec:` source is no store URL: its loader is started below, once the targets are
    // known.
    let loader_command = loader::command(&settings.source)
        .transpose()
        .map_err(RunError::Loader)?;
    let source_url = match loader_command {
        Some(_) => None,
        None => Some(SourceUrl::parse(&settings.source)?),
    };
    let target_urls = settings
        .targets
        .iter()
        .map(|text| match SourceUrl::parse(text) {
            Ok(SourceUrl::Snapshot(_)) => Err(RunError::SnapshotTarget(text.clone())),
            _ => Ok(StoreUrl::parse(text)?),
        })
        .collect::<Result<Vec<_>, _>>()?;
    let category_enabled = match &settings.categories {
        None => vec![true; manifest.categories.len()],
        Some(names) => {
            if let Some(unknown) = names
                .iter()
                .find(|name| !manifest.categories.iter().any(|c| &c.name == *name))
            {
                let known: Vec<&str> = manifest
                    .categories
                    .iter()
                    .map(|c| c.name.as_str())
                    .collect();
                return Err(RunError::Categories(format!(
                    "category `{unknown}` is not in manifest `{}`; its categories are: {}",
                    settings.manifest.display(),
                    known.join(", ")
                )));
            }
            manifest
                .categories
                .iter()
                .map(|c| names.contains(&c.name))
                .collect()
        }
    };
    let redacted_targets: Vec<String> = settings.targets.iter().map(|t| redact(t)).collect();
    // The loader says hello before the run directory is made: a loader for another kind of
    // store is a usage error, and leaves nothing behind. One that fails to start is reported
    // like a source that is down.
    let loader = match loader_command {
        None => None,
        Some(argv) => {
            let targets: Vec<(String, &StoreUrl)> = redacted_targets
                .iter()
                .cloned()
                .zip(target_urls.iter())
                .collect();
            match LoaderSource::start(argv, &settings.loader, &targets).await {
                Ok(loader) => Some(Ok(loader)),
                Err(error) if error.is_usage() => return Err(RunError::Loader(error)),
                Err(error) => {
                    tracing::error!(%error, "loader did not start; nothing will be written");
                    Some(Err(error_chain(&error)))
                }
            }
        }
    };
    if !settings.allow_cross_kind
        && let Some(source_kind) = source_url.as_ref().and_then(source_kind)
    {
        for (url, text) in target_urls.iter().zip(&redacted_targets) {
            if url.kind() != source_kind {
                return Err(RunError::CrossKind {
                    source_kind: kind_name(source_kind),
                    target_kind: kind_name(url.kind()),
                    target: text.clone(),
                });
            }
        }
    }

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
    let source = match (loader, &source_url) {
        (Some(loader), _) => loader.map(|loader| Arc::new(Source::Loader(loader))),
        (None, Some(source_url)) => match tokio::time::timeout_at(
            deadline,
            Source::open(source_url, &shared.manifest, resume_from),
        )
        .await
        {
            Ok(Ok(source)) => Ok(Arc::new(source)),
            Ok(Err(error)) => Err(error_chain(&error)),
            Err(_) => Err("timed out opening the source".to_owned()),
        },
        (None, None) => Err("no source".to_owned()),
    };

    let mut targets = Vec::with_capacity(target_urls.len());
    for (index, (text, url)) in shared.settings.targets.iter().zip(&target_urls).enumerate() {
        let store = tokio::time::timeout_at(deadline, Store::connect(url, Role::Target)).await;
        let store = match store {
            Ok(Ok(store)) => Ok(store),
            Ok(Err(error)) => Err(error.to_string()),
            Err(_) => Err("timed out connecting".to_owned()),
        };
        targets.push(
            TargetRun::prepare(
                index,
                redact(text),
                url,
                store,
                &shared,
                resumed_progress.get(index),
            )
            .await,
        );
    }

    let checkpointer = tokio::spawn(progress::keep_writing(Arc::clone(&shared)));
    let warm_start = Instant::now();
    let (source_error, outcome) = match &source {
        Ok(source) => warm(source, &mut targets, &shared, resume_from, stop).await,
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
    report.rank_curve = crate::report::rank_curve(&shared.manifest).await;
    write_json_atomically(&run_dir.join("report.json"), &report)?;
    crate::report::write_outputs(&report, &run_dir, &shared.settings.report)?;
    drop(lock);
    Ok(RunResult { report, run_dir })
}

/// The manifest's entries in batches of `batch_size`, parsed ahead on a thread of their own.
pub(crate) fn stream_entries(
    shared: &Shared,
    batch_size: usize,
) -> mpsc::Receiver<Result<Vec<Entry>, ManifestError>> {
    manifest::batches(&shared.manifest, batch_size, PARSED_AHEAD)
}

/// Reads the source in rank order and feeds every live target; returns the source's failure,
/// if any, and how the run ended.
async fn warm(
    source: &Arc<Source>,
    targets: &mut [TargetRun],
    shared: &Arc<Shared>,
    resume_from: u64,
    stop: watch::Receiver<bool>,
) -> (Option<String>, Outcome) {
    let mut senders = Vec::new();
    let mut handles = Vec::new();
    for target in targets.iter_mut() {
        let Some(worker) = target.take_worker(shared, source) else {
            continue;
        };
        let (sender, receiver) = mpsc::channel::<Arc<Batch>>(QUEUED_BATCHES);
        senders.push(sender);
        handles.push(tokio::spawn(worker.run(receiver, Arc::clone(shared))));
    }

    let mut source_error = None;
    let mut outcome = Outcome::Completed;
    if !senders.is_empty() {
        let mut entries = stream_entries(shared, shared.settings.batch_size);
        let mut fetches = InFlight::new(FETCHES_IN_FLIGHT);
        let mut next_start = 0usize;
        let mut reading = true;
        loop {
            // Keep FETCHES_IN_FLIGHT source reads going; hand the oldest on when it is back.
            while reading && !fetches.is_full() {
                if *stop.borrow() {
                    outcome = Outcome::Interrupted;
                    reading = false;
                    break;
                }
                let batch = match entries.recv().await {
                    Some(Ok(batch)) => batch,
                    Some(Err(error)) => {
                        let error = error_chain(&error);
                        tracing::error!(error, "manifest unreadable; stopping");
                        source_error = Some(error);
                        reading = false;
                        break;
                    }
                    None => {
                        reading = false;
                        break;
                    }
                };
                let mut batch = batch;
                let mut start = next_start;
                next_start += batch.len();
                // A resumed run reads from the first entry some target has not handled.
                if next_start as u64 <= resume_from {
                    continue;
                }
                if (start as u64) < resume_from {
                    let skip = resume_from as usize - start;
                    batch.drain(..skip);
                    start += skip;
                }
                let source = Arc::clone(source);
                let shared = Arc::clone(shared);
                fetches.push(async move {
                    // Entries of categories the run leaves out are not asked for (a loader
                    // would compute them for nothing); they are skipped when counted.
                    let wanted: Vec<bool> = batch
                        .iter()
                        .map(|e| {
                            shared
                                .category_enabled
                                .get(e.category as usize)
                                .copied()
                                .unwrap_or(true)
                        })
                        .collect();
                    let fetched = {
                        let keys: Vec<&str> = batch
                            .iter()
                            .zip(&wanted)
                            .filter(|(_, wanted)| **wanted)
                            .map(|(e, _)| e.key.as_str())
                            .collect();
                        let fetch = source.answers(&keys, shared.settings.retries);
                        tokio::time::timeout_at(shared.deadline, fetch).await
                    };
                    let fetched = fetched.map(|fetched| {
                        fetched.map(|answers| {
                            let mut answers = answers.into_iter();
                            wanted
                                .iter()
                                .map(|&wanted| match wanted {
                                    true => answers.next().unwrap_or(Answer::Miss(None)),
                                    false => Answer::Miss(None),
                                })
                                .collect::<Vec<_>>()
                        })
                    });
                    (start, batch, fetched)
                });
            }
            let Some(done) = fetches.next().await else {
                break;
            };
            let (start, batch_entries, fetched) = match done {
                Ok(done) => done,
                Err(error) => {
                    source_error = Some(format!("source task failed: {error}"));
                    break;
                }
            };
            let fetched = match fetched {
                Ok(Ok(fetched)) => fetched,
                Ok(Err(error)) => {
                    let error = error_chain(&error);
                    tracing::error!(error, "source failed; stopping");
                    source_error = Some(error);
                    break;
                }
                Err(_) => {
                    outcome = Outcome::TimedOut;
                    break;
                }
            };
            let batch = Arc::new(Batch {
                start,
                entries: batch_entries,
                fetched,
            });
            for sender in &senders {
                // A target that failed has dropped its receiver; the others go on.
                let _ = sender.send(Arc::clone(&batch)).await;
            }
            senders.retain(|sender| !sender.is_closed());
            if senders.is_empty() {
                // Every target has stopped: reading on would be wasted work.
                break;
            }
        }
        // Reads still in flight after a stop are dropped: their entries are not attempted.
        fetches.abort().await;
    }
    drop(senders);
    if outcome == Outcome::Completed && *stop.borrow() {
        // The targets stopped taking batches on the signal before the reader noticed it.
        outcome = Outcome::Interrupted;
    }
    for (handle, target) in handles
        .into_iter()
        .zip(targets.iter_mut().filter(|t| t.is_waiting()))
    {
        match handle.await {
            Ok(worker) => {
                if worker.timed_out && outcome == Outcome::Completed {
                    outcome = Outcome::TimedOut;
                }
                target.put_worker(worker);
            }
            Err(error) => target.fail(format!("target task failed: {error}")),
        }
    }
    (source_error, outcome)
}

/// Up to `depth` tasks at once, their results taken in the order they were started: store
/// calls overlap on the wire while every count is still made in rank order.
#[derive(Debug)]
pub(crate) struct InFlight<T> {
    depth: usize,
    tasks: VecDeque<JoinHandle<T>>,
}

impl<T: Send + 'static> InFlight<T> {
    pub fn new(depth: usize) -> InFlight<T> {
        InFlight {
            depth: depth.max(1),
            tasks: VecDeque::with_capacity(depth),
        }
    }

    pub fn is_full(&self) -> bool {
        self.tasks.len() >= self.depth
    }

    pub fn is_empty(&self) -> bool {
        self.tasks.is_empty()
    }

    pub fn push(&mut self, task: impl Future<Output = T> + Send + 'static) {
        self.tasks.push_back(tokio::spawn(task));
    }

    /// The oldest task's result; `None` when none is running. Cancel-safe (for `select!`):
    /// the task leaves the queue only once its result is taken.
    pub async fn next(&mut self) -> Option<Result<T, tokio::task::JoinError>> {
        let result = self.tasks.front_mut()?.await;
        self.tasks.pop_front();
        Some(result)
    }

    /// Stops the tasks still running, and waits until they are gone (they may hold a store).
    pub async fn abort(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
        for task in self.tasks.drain(..) {
            let _ = task.await;
        }
    }
}

/// Run ids sort by start time and stay unique across processes.
pub fn new_run_id(started_at: chrono::DateTime<Utc>) -> String {
    format!(
        "{}-{}",
        started_at.format("%Y%m%dT%H%M%S%3fZ"),
        std::process::id()
    )
}
