//! `warmer`: the deploy-step half of cachewarm. See the library's crate docs for the flow.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use warmer::run::{ResumeFrom, RunError, RunSettings};
use warmer::settings::{self, Resolved, RunFlags};
use warmer::source::{SnapshotWriter, Source, SourceUrl};

/// Warms cache stores from a hot-key manifest, and reports what it did.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    Run(Box<RunArgs>),
    Snapshot(SnapshotArgs),
    Undo(UndoArgs),
    Status(StatusArgs),
    Report(ReportArgs),
}

/// Warm the targets with the manifest's keys, most valuable first, never replacing a live
/// entry. Store failures are reported and do not fail the run unless --strict.
///
/// Settings come from flags, then CACHEWARM_* variables, then cachewarm.toml ([env.NAME] over
/// [warmer]), then the defaults shown.
#[derive(Debug, clap::Args)]
struct RunArgs {
    /// The config file [default: CACHEWARM_CONFIG, else ./cachewarm.toml when present].
    #[arg(long)]
    config: Option<PathBuf>,
    /// The manifest written by `analyzer rank` (`.json` or `.json.zst`).
    #[arg(long)]
    manifest: Option<PathBuf>,
    /// Where values come from: a replica store URL (redis://, memcached://, sqlite://), a
    /// snapshot file (.parquet), or `exec:COMMAND ARGS…`: loader processes that compute
    /// values with the application's own code (loader protocol v1, see the README).
    #[arg(long)]
    source: Option<String>,
    /// A store to warm; repeat for several. Default: the embedded SQLite store
    /// `sqlite://cachewarm-cache.sqlite3` (table `cachewarm_cache`).
    #[arg(long = "target")]
    targets: Vec<String>,
    /// Count what would be written, write nothing.
    #[arg(long)]
    dry_run: bool,
    /// Replace live entries too (the default keeps them).
    #[arg(long)]
    overwrite: bool,
    /// Stop cleanly after this long (`90s`, `5m`); the report counts what was not reached
    /// [default: 5m].
    #[arg(long, value_parser = parse_duration)]
    timeout: Option<Duration>,
    /// Entries per pipelined batch [default: 2000].
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    batch_size: Option<u32>,
    /// Write batches in flight per target [default: 3].
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=64))]
    concurrency: Option<u32>,
    /// At most this many writes per second per target [default: no limit].
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    rate: Option<u64>,
    /// At most this many key + value bytes per second per target (`4MiB`) [default: no limit].
    #[arg(long, value_parser = parse_rate_size)]
    bandwidth: Option<u64>,
    /// Warm only entries of this manifest category; repeat for several [default: all].
    #[arg(long = "category")]
    categories: Vec<String>,
    /// Skip entries whose remaining TTL is shorter than this [default: 60s].
    #[arg(long, value_parser = parse_duration)]
    min_ttl: Option<Duration>,
    /// TTL for entries when neither the source nor the manifest gives one [default: 1h].
    #[arg(long, value_parser = parse_duration)]
    default_ttl: Option<Duration>,
    /// The most of a target's capacity (Redis maxmemory, memcached limit_maxbytes) the run
    /// may fill, as a percentage [default: 50%].
    #[arg(long, value_parser = parse_percent)]
    max_fill: Option<f64>,
    /// Longest Redis key to write, in bytes [default: 65536].
    #[arg(long)]
    redis_max_key_bytes: Option<usize>,
    /// Run directories (report, checkpoint, written-keys logs) are created under this
    /// directory [default: cachewarm-runs].
    #[arg(long)]
    runs_dir: Option<PathBuf>,
    /// The environment profile; default from CACHEWARM_ENV, RAILS_ENV, RACK_ENV, DJANGO_ENV,
    /// APP_ENV. Warming is off in development and test unless turned on.
    #[arg(long = "env")]
    environment: Option<String>,
    /// Turn warming on or off, whatever the environment and config say.
    #[arg(long)]
    enabled: Option<bool>,
    /// Exit 1 when a store or the source failed, a loader included (by default the run exits
    /// 0 so a deploy never breaks because of warming).
    #[arg(long)]
    strict: bool,
    /// Keep writing to a store whose eviction counter grows during the run (by default the
    /// run stops writing to it and reports why).
    #[arg(long)]
    keep_writing_on_evictions: bool,
    /// Never push a target's used memory (live data included) past this share of its
    /// capacity [default: 90%].
    #[arg(long, value_parser = parse_percent)]
    high_water: Option<f64>,
    /// Retries of a failed store call, with exponential backoff and jitter, before its batch
    /// counts as failed; three failed batches in a row open the store's circuit breaker
    /// [default: 4].
    #[arg(long, value_parser = clap::value_parser!(u32).range(0..=20))]
    retries: Option<u32>,
    /// Slow writing down when the store's latency rises above this multiple of its latency
    /// before warming, or `off` [default: 1.5].
    #[arg(long, value_parser = |t: &str| warmer::settings::parse_latency_multiple(t).map(Off))]
    latency_multiple: Option<Off<f64>>,
    /// Loader processes run side by side for an `exec:` source [default: the number of
    /// cores].
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=256))]
    loader_workers: Option<u32>,
    /// Restart a loader that writes no line for this long while it owes answers, and ask its
    /// keys again [default: 30s].
    #[arg(long, value_parser = parse_duration)]
    loader_timeout: Option<Duration>,
    /// The largest value taken from a loader, a manifest key's entries together (`16MiB`);
    /// larger ones are skipped and counted failed [default: 16MiB].
    #[arg(long, value_parser = warmer::settings::parse_size)]
    max_value_size: Option<u64>,
    /// Continue an interrupted run: the run directory given, or without one the latest
    /// unfinished run of the same manifest and targets (a new run when there is none).
    #[arg(long, value_name = "RUN_DIR", num_args = 0..=1)]
    resume: Option<Option<PathBuf>>,
    /// Run in the background (a new session, output to warmer.log in the run directory);
    /// prints the run directory and returns at once.
    #[arg(long)]
    detach: bool,
    /// The new run's id (used by --detach).
    #[arg(long, hide = true)]
    run_id: Option<String>,
    /// Measure the hit rate of live traffic over this long just before warming and again
    /// just after (`60s`, `5m`), from the targets' own read counters. The run takes the
    /// window, the warm, then the window again; --timeout bounds the warm only.
    #[arg(long, value_parser = parse_duration)]
    observe: Option<Duration>,
    /// Compare the window after warming with this hit rate (`0.82` or `82%`) instead of
    /// measuring a window before warming.
    #[arg(long, value_parser = parse_rate)]
    baseline_hit_rate: Option<f64>,
    /// Write Prometheus metrics of the run to this file (for node_exporter's textfile
    /// collector; written atomically).
    #[arg(long)]
    metrics_file: Option<PathBuf>,
    /// Push the run's metrics to this Prometheus Pushgateway (`http://pushgateway:9091`).
    #[arg(long)]
    pushgateway: Option<String>,
    /// Do not append the run to the run history (`RUNS_DIR/runs.parquet`).
    #[arg(long)]
    no_history: bool,
    /// Copy values between stores of different kinds (Redis into memcached or SQL, or the
    /// other way round). Refused by default: each kind's application client encodes values its
    /// own way, so the copy would read back as other bytes (raw strings excepted).
    #[arg(long)]
    allow_cross_kind: bool,
    /// Read back every key written, after its batch, and compare value hash, client flags and
    /// TTL with what was sent; the report counts `verified` and `mismatched` [default: off:
    /// it costs about a tenth of the run's time].
    #[arg(long, overrides_with = "no_verify")]
    verify: bool,
    /// Do not read back what was written.
    #[arg(long, overrides_with = "verify")]
    no_verify: bool,
    /// Wait this long between a batch's write and its read-back (a test's hook).
    #[arg(long, hide = true, value_parser = parse_duration)]
    verify_delay: Option<Duration>,
}

/// Take back what a run wrote: delete each key it wrote where the key still holds the value
/// it wrote. Keys rewritten since, and keys that were there before the run, are kept.
#[derive(Debug, clap::Args)]
struct UndoArgs {
    /// The run's directory [default: the newest under --runs-dir].
    run_dir: Option<PathBuf>,
    /// Where run directories are [default: CACHEWARM_RUNS_DIR, else cachewarm-runs].
    #[arg(long)]
    runs_dir: Option<PathBuf>,
    /// A target URL with its password, for a target whose password the run's records hold
    /// redacted; repeat for several [default: CACHEWARM_TARGETS, separated by spaces].
    #[arg(long = "target")]
    targets: Vec<String>,
}

/// Show where a run stands: running, finished, interrupted or killed; its progress and counts.
#[derive(Debug, clap::Args)]
struct StatusArgs {
    /// The run's directory [default: the newest under --runs-dir].
    run_dir: Option<PathBuf>,
    /// Where run directories are [default: CACHEWARM_RUNS_DIR, else cachewarm-runs].
    #[arg(long)]
    runs_dir: Option<PathBuf>,
    /// Print the status as JSON.
    #[arg(long)]
    json: bool,
}

/// Render the trend page over the run history (`runs.parquet`) into a directory.
#[derive(Debug, clap::Args)]
struct ReportArgs {
    /// The run history, `runs.parquet` beside the run directories.
    #[arg(long)]
    history: PathBuf,
    /// The directory to write `trend.html` into (created when missing).
    #[arg(long)]
    out: PathBuf,
}

/// Write a snapshot file (Parquet: key, value, expires_at) of the manifest's keys from a warm
/// store, to restore later with `warmer run --source FILE.parquet`.
#[derive(Debug, clap::Args)]
struct SnapshotArgs {
    /// The manifest whose keys to save.
    #[arg(long)]
    manifest: PathBuf,
    /// The warm store to read (redis://, memcached://, sqlite://).
    #[arg(long)]
    source: String,
    /// The snapshot file to write.
    #[arg(long)]
    out: PathBuf,
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    settings::parse_duration(text).map_err(|e| format!("`{text}` is {e}"))
}

fn parse_rate(text: &str) -> Result<f64, String> {
    let trimmed = text.trim();
    let rate = match trimmed.strip_suffix('%') {
        Some(number) => number.trim().parse::<f64>().map(|p| p / 100.0),
        None => trimmed.parse::<f64>(),
    };
    match rate {
        Ok(rate) if (0.0..=1.0).contains(&rate) => Ok(rate),
        _ => Err(format!(
            "`{text}` is not a hit rate; use a fraction between 0 and 1 (0.82) or a percentage (82%)"
        )),
    }
}

/// A setting that may be `off` (clap reads `Option<Option<T>>` as a flag with an optional
/// value, so the inner option needs a type of its own).
#[derive(Debug, Clone, Copy)]
struct Off<T>(Option<T>);

fn parse_percent(text: &str) -> Result<f64, String> {
    settings::parse_percent(text).map_err(|e| format!("`{text}` is {e}"))
}

fn parse_rate_size(text: &str) -> Result<u64, String> {
    settings::parse_rate_size(text).map_err(|e| format!("`{text}`: {e}"))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: failed to start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Run(args) => run(*args).await,
            Command::Snapshot(args) => snapshot(args).await,
            Command::Undo(args) => undo(args).await,
            Command::Status(args) => status(args),
            Command::Report(args) => report(args),
        }
    });
    match result {
        Ok(code) => code,
        Err((error, code)) => {
            eprintln!("error: {error}");
            for cause in error.chain().skip(1) {
                eprintln!("  Caused by: {cause}");
            }
            code
        }
    }
}

/// Errors carry their exit code: 2 for usage and configuration, 1 for the rest.
type Failure = (anyhow::Error, ExitCode);

async fn run(args: RunArgs) -> Result<ExitCode, Failure> {
    let usage = |error: anyhow::Error| (error, ExitCode::from(2));
    let detach = args.detach;
    let resume = args
        .resume
        .map(|dir| dir.map_or(ResumeFrom::Latest, ResumeFrom::Dir));
    let flags = RunFlags {
        config: args.config,
        environment: args.environment,
        enabled: args.enabled,
        manifest: args.manifest,
        source: args.source,
        targets: args.targets,
        timeout: args.timeout,
        concurrency: args.concurrency,
        rate: args.rate,
        bandwidth: args.bandwidth,
        max_fill: args.max_fill,
        categories: args.categories,
        batch_size: args.batch_size,
        min_ttl: args.min_ttl,
        default_ttl: args.default_ttl,
        observe: args.observe.filter(|d| !d.is_zero()),
        baseline_hit_rate: args.baseline_hit_rate,
        metrics_file: args.metrics_file,
        pushgateway: args.pushgateway,
        no_history: args.no_history,
        runs_dir: args.runs_dir,
        strict: args.strict,
        dry_run: args.dry_run,
        overwrite: args.overwrite,
        redis_max_key_bytes: args.redis_max_key_bytes,
        keep_writing_on_evictions: args.keep_writing_on_evictions,
        high_water: args.high_water,
        retries: args.retries,
        latency_multiple: args.latency_multiple.map(|Off(m)| m),
        loader_workers: args.loader_workers,
        loader_timeout: args.loader_timeout,
        max_value_size: args.max_value_size,
        resume,
        run_id: args.run_id,
        allow_cross_kind: args.allow_cross_kind,
        verify: if args.no_verify {
            Some(false)
        } else if args.verify {
            Some(true)
        } else {
            None
        },
        verify_delay: args.verify_delay,
    };
    let (settings, strict) =
        match settings::resolve(flags, &settings::process_env).map_err(|e| usage(e.into()))? {
            Resolved::Run { settings, strict } => (settings, strict),
            Resolved::Disabled { reason } => {
                println!("warmer: not warming: {reason}");
                return Ok(ExitCode::SUCCESS);
            }
        };
    if detach {
        return detach_run(&settings).await;
    }
    let (stop_sender, stop) = tokio::sync::watch::channel(false);
    let mut signals = StopSignals::new();
    tokio::spawn(async move {
        signals.next().await;
        tracing::warn!(
            "interrupted: finishing the batches in flight (a second signal stops at once)"
        );
        let _ = stop_sender.send(true);
        signals.next().await;
        eprintln!("warmer: stopped at once; the checkpoint is at most a batch behind");
        std::process::exit(130);
    });
    let result = match warmer::run::run(settings, stop).await {
        Ok(result) => result,
        Err(RunError::Finished { dir }) => {
            println!(
                "warmer: run `{}` has finished already; nothing to resume",
                dir.display()
            );
            return Ok(ExitCode::SUCCESS);
        }
        Err(error) => {
            let code = match error {
                RunError::Output { .. } => ExitCode::FAILURE,
                _ => ExitCode::from(2),
            };
            return Err((anyhow::Error::new(error), code));
        }
    };
    print!(
        "{}",
        warmer::report::summary(&result.report, &result.run_dir)
    );
    // A loader that failed (crashed, hung, broke the protocol, or could not load some keys)
    // is a failure of the source, even when its restarts got the keys written. A read-back
    // that found other than what was sent is a failure too, for --strict.
    let loader_failed = result
        .report
        .loader
        .as_ref()
        .is_some_and(|l| !l.failures.is_empty() || !l.errors.is_empty());
    let failed = result.report.source_error.is_some()
        || loader_failed
        || result.report.targets.iter().any(|t| {
            t.status == schemas::report::TargetStatus::Failed
                || t.verification.as_ref().is_some_and(|v| v.mismatched > 0)
        });
    Ok(if failed && strict {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// Starts this same command again in the background, in a session of its own (through
/// `setsid` where it is installed, else in a process group of its own: the workspace forbids
/// the unsafe code a direct `setsid()` call needs), with its output in the run directory's
/// `warmer.log`; prints the run directory and returns.
async fn detach_run(settings: &RunSettings) -> Result<ExitCode, Failure> {
    use std::os::unix::process::CommandExt;
    let failure = |error: anyhow::Error| (error, ExitCode::FAILURE);
    let usage = |error: anyhow::Error| (error, ExitCode::from(2));
    // The background run must land in a directory known now, so the one to resume is picked
    // here, and a new run gets its id here.
    let run_dir = match &settings.resume {
        Some(ResumeFrom::Dir(dir)) => dir.clone(),
        Some(ResumeFrom::Latest) => {
            let path = settings.manifest.clone();
            let manifest = tokio::task::spawn_blocking(move || warmer::manifest::open(&path))
                .await
                .expect("manifest verification does not panic")
                .map_err(|e| usage(e.into()))?;
            let targets: Vec<String> = settings
                .targets
                .iter()
                .map(|t| warmer::store::redact(t))
                .collect();
            warmer::rundir::latest_unfinished(
                &settings.runs_dir,
                &manifest.header.entries_sha256,
                &targets,
                settings.dry_run,
            )
            .unwrap_or_else(|| {
                settings
                    .runs_dir
                    .join(warmer::run::new_run_id(chrono::Utc::now()))
            })
        }
        None => settings.runs_dir.join(
            settings
                .run_id
                .clone()
                .unwrap_or_else(|| warmer::run::new_run_id(chrono::Utc::now())),
        ),
    };
    let resuming = run_dir.join(warmer::rundir::CHECKPOINT_FILE).is_file();
    let run_id = run_dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    std::fs::create_dir_all(&run_dir)
        .with_context(|| format!("failed to create `{}`", run_dir.display()))
        .map_err(failure)?;
    let log_path = run_dir.join("warmer.log");
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .with_context(|| format!("failed to open `{}`", log_path.display()))
        .map_err(failure)?;
    let exe = std::env::current_exe()
        .context("cannot find the warmer executable")
        .map_err(failure)?;
    let mut child_args = child_args(std::env::args_os().skip(1).collect());
    if resuming {
        child_args.push("--resume".into());
        child_args.push(run_dir.clone().into_os_string());
    } else {
        child_args.push("--run-id".into());
        child_args.push(run_id.into());
    }
    let setsid = std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .map(|dir| dir.join("setsid"))
        .find(|path| path.is_file());
    let mut command = match &setsid {
        Some(setsid) => {
            let mut command = std::process::Command::new(setsid);
            command.arg(&exe);
            command
        }
        None => {
            let mut command = std::process::Command::new(&exe);
            command.process_group(0);
            command
        }
    };
    let stderr = log
        .try_clone()
        .with_context(|| format!("failed to open `{}`", log_path.display()))
        .map_err(failure)?;
    let child = command
        .args(&child_args)
        .stdin(std::process::Stdio::null())
        .stdout(log)
        .stderr(stderr)
        .spawn()
        .with_context(|| format!("failed to start `{}` in the background", exe.display()))
        .map_err(failure)?;
    let absolute = std::path::absolute(&run_dir).unwrap_or(run_dir);
    println!("{}", absolute.display());
    eprintln!(
        "warmer: running in the background (pid {}); log {}; see `warmer status {}`",
        child.id(),
        absolute.join("warmer.log").display(),
        absolute.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// The command line for the background run: this one without `--detach`, `--resume [DIR]`
/// and `--run-id ID` (the caller adds what the background run must do).
fn child_args(args: Vec<std::ffi::OsString>) -> Vec<std::ffi::OsString> {
    let mut out = Vec::with_capacity(args.len());
    let mut args = args.into_iter().peekable();
    while let Some(arg) = args.next() {
        let text = arg.to_string_lossy();
        if text == "--detach" || text.starts_with("--resume=") || text.starts_with("--run-id=") {
            continue;
        }
        if text == "--resume" {
            // clap takes the next word as the directory unless it looks like a flag.
            if args
                .peek()
                .is_some_and(|next| !next.to_string_lossy().starts_with('-'))
            {
                args.next();
            }
            continue;
        }
        if text == "--run-id" {
            args.next();
            continue;
        }
        out.push(arg);
    }
    out
}

async fn undo(args: UndoArgs) -> Result<ExitCode, Failure> {
    let run_dir = run_dir_or_latest(args.run_dir, args.runs_dir)?;
    let mut targets = args.targets;
    if targets.is_empty()
        && let Some(text) = settings::process_env(warmer::env_vars::TARGETS)
    {
        // The deploy's own target list, where the URLs with passwords come from a secret.
        targets = text.split_whitespace().map(str::to_owned).collect();
    }
    let summary = warmer::undo::undo(&run_dir, &targets)
        .await
        .map_err(|e| (e.into(), ExitCode::from(2)))?;
    print!("{}", warmer::undo::summary_text(&summary, &run_dir));
    Ok(if summary.ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The run directory given, else the newest under the runs directory.
fn run_dir_or_latest(
    run_dir: Option<PathBuf>,
    runs_dir: Option<PathBuf>,
) -> Result<PathBuf, Failure> {
    if let Some(dir) = run_dir {
        return Ok(dir);
    }
    let runs_dir = runs_dir
        .or_else(|| settings::process_env(warmer::env_vars::RUNS_DIR).map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(settings::DEFAULT_RUNS_DIR));
    warmer::status::latest_run(&runs_dir)
        .with_context(|| format!("no run directory under `{}`", runs_dir.display()))
        .map_err(|e| (e, ExitCode::from(2)))
}

fn status(args: StatusArgs) -> Result<ExitCode, Failure> {
    let usage = |error: anyhow::Error| (error, ExitCode::from(2));
    let run_dir = run_dir_or_latest(args.run_dir, args.runs_dir)?;
    let status =
        warmer::status::status(&run_dir).map_err(|message| usage(anyhow::anyhow!(message)))?;
    if args.json {
        let text = serde_json::to_string_pretty(&status).expect("a status serializes");
        println!("{text}");
    } else {
        print!("{}", warmer::status::text(&status));
    }
    Ok(ExitCode::SUCCESS)
}

/// SIGINT (Ctrl-C) and SIGTERM (what deploy systems and Kubernetes send), listened for from
/// start to end: a listener made after a signal arrived could report that same signal again.
struct StopSignals {
    #[cfg(unix)]
    interrupt: Option<tokio::signal::unix::Signal>,
    #[cfg(unix)]
    terminate: Option<tokio::signal::unix::Signal>,
}

impl StopSignals {
    fn new() -> StopSignals {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            StopSignals {
                interrupt: signal(SignalKind::interrupt()).ok(),
                terminate: signal(SignalKind::terminate()).ok(),
            }
        }
        #[cfg(not(unix))]
        StopSignals {}
    }

    /// Resolves on the next signal. A signal that cannot be listened for never resolves,
    /// rather than stopping the run at once.
    async fn next(&mut self) {
        #[cfg(unix)]
        {
            async fn on(signal: &mut Option<tokio::signal::unix::Signal>) {
                match signal {
                    Some(signal) => {
                        signal.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            }
            tokio::select! {
                _ = on(&mut self.interrupt) => {}
                _ = on(&mut self.terminate) => {}
            }
        }
        #[cfg(not(unix))]
        {
            if tokio::signal::ctrl_c().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }
}

fn report(args: ReportArgs) -> Result<ExitCode, Failure> {
    let rows = warmer::report::history::read(&args.history).map_err(|e| (e, ExitCode::from(2)))?;
    let failure =
        |error: warmer::rundir::WriteError| (anyhow::Error::new(error), ExitCode::FAILURE);
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("failed to create `{}`", args.out.display()))
        .map_err(|e| (e, ExitCode::FAILURE))?;
    let page = args.out.join("trend.html");
    let trend = warmer::report::html::render_trend(&rows);
    warmer::rundir::write_atomically(&page, trend.as_bytes()).map_err(failure)?;
    println!(
        "trend: {} ({} rows from {})",
        page.display(),
        rows.len(),
        args.history.display()
    );
    Ok(ExitCode::SUCCESS)
}

async fn snapshot(args: SnapshotArgs) -> Result<ExitCode, Failure> {
    let usage = |error: anyhow::Error| (error, ExitCode::from(2));
    let failure = |error: anyhow::Error| (error, ExitCode::FAILURE);
    let manifest = warmer::manifest::open(&args.manifest).map_err(|e| usage(e.into()))?;
    let manifest = Arc::new(manifest);
    let url = SourceUrl::parse(&args.source).map_err(|e| usage(e.into()))?;
    let source = Source::open(&url, &manifest, 0)
        .await
        .map_err(|e| failure(e.into()))?;
    let context = || format!("failed to write snapshot `{}`", args.out.display());
    let mut writer = SnapshotWriter::create(&args.out, source.kind(), chrono::Utc::now())
        .with_context(context)
        .map_err(failure)?;
    // Streamed: one batch of values in memory at a time, rows in the manifest's rank order
    // (the order a run reads them back in).
    let mut batches = warmer::manifest::batches(&manifest, 500, 4);
    // How many rows carry each client flags value, and how many are Redis dumps: what the
    // application's clients will need to read them back, shown with the summary.
    let mut flags = std::collections::BTreeMap::<u32, u64>::new();
    let mut dumps = 0u64;
    while let Some(batch) = batches.recv().await {
        let batch = batch.map_err(|e| failure(e.into()))?;
        let keys: Vec<&str> = batch.iter().map(|e| e.key.as_str()).collect();
        let fetched = source.fetch(&keys).await.map_err(|e| failure(e.into()))?;
        for (key, value) in keys.iter().zip(&fetched) {
            if let Some(value) = value {
                *flags.entry(value.flags).or_default() += 1;
                if value.encoding == warmer::store::ValueEncoding::RedisDump {
                    dumps += 1;
                }
                writer
                    .push(key, value)
                    .with_context(context)
                    .map_err(failure)?;
            }
        }
    }
    let written = writer.finish().with_context(context).map_err(failure)?;
    println!(
        "snapshot: {} ({written} of {} manifest keys found in {})",
        args.out.display(),
        manifest.entries,
        warmer::store::redact(&args.source)
    );
    if flags.keys().any(|&f| f != 0) {
        let counts: Vec<String> = flags
            .iter()
            .map(|(flags, rows)| format!("{flags}: {rows}"))
            .collect();
        println!("  client flags (value: rows): {}", counts.join(", "));
    }
    if dumps > 0 {
        println!("  Redis values of other types than strings (kept as DUMP payloads): {dumps}");
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The background run gets the same command line minus what the parent decides for it.
    #[test]
    fn child_args_drop_detach_resume_and_run_id() {
        let args = |text: &str| -> Vec<std::ffi::OsString> {
            text.split_whitespace().map(Into::into).collect()
        };
        assert_eq!(
            child_args(args(
                "run --detach --resume runs/r1 --rate 5 --run-id x --target a"
            )),
            args("run --rate 5 --target a")
        );
        assert_eq!(
            child_args(args("run --resume --target a --resume=runs/r2 --detach")),
            args("run --target a")
        );
    }
}
