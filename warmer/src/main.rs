//! `warmer`: the deploy-step half of cachewarm. See the library's crate docs for the flow.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

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
    #[command(flatten)]
    flags: RunFlags,
    /// Run in the background (a new session, output to warmer.log in the run directory);
    /// prints the run directory and returns at once.
    #[arg(long)]
    detach: bool,
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
    let (settings, strict) =
        match settings::resolve(args.flags, &settings::process_env).map_err(|e| usage(e.into()))? {
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
