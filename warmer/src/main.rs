//! `warmer`: the deploy-step half of cachewarm. See the library's crate docs for the flow.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use warmer::run::{RunError, RunSettings};
use warmer::source::{SnapshotWriter, Source};
use warmer::store::{KeyLimits, StoreUrl};

/// The embedded default target: a Django-style cache table in a local SQLite file.
const DEFAULT_TARGET: &str = "sqlite://cachewarm-cache.sqlite3?table=cachewarm_cache";

/// Environment variables that name the environment profile, in order of precedence.
const ENVIRONMENT_VARIABLES: [&str; 5] = [
    "CACHEWARM_ENV",
    "RAILS_ENV",
    "RACK_ENV",
    "DJANGO_ENV",
    "APP_ENV",
];

/// Warms cache stores from a hot-key manifest, and reports what it did.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    Run(RunArgs),
    Snapshot(SnapshotArgs),
    Report(ReportArgs),
}

/// Warm the targets with the manifest's keys, most valuable first, never replacing a live
/// entry. Store failures are reported and do not fail the run unless --strict.
#[derive(Debug, clap::Args)]
struct RunArgs {
    /// The manifest written by `analyzer rank` (`.json` or `.json.zst`).
    #[arg(long)]
    manifest: PathBuf,
    /// Where values come from: a replica store URL (redis://, memcached://, sqlite://) or a
    /// snapshot file (.parquet).
    #[arg(long)]
    source: String,
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
    /// Stop cleanly after this long (`90s`, `5m`); the report counts what was not reached.
    #[arg(long, default_value = "5m", value_parser = parse_duration)]
    timeout: Duration,
    /// Entries per pipelined batch.
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    batch_size: u32,
    /// Skip entries whose remaining TTL is shorter than this.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    min_ttl: Duration,
    /// TTL for entries when neither the source nor the manifest gives one.
    #[arg(long, default_value = "1h", value_parser = parse_duration)]
    default_ttl: Duration,
    /// The most of a target's capacity (Redis maxmemory, memcached limit_maxbytes) the run
    /// may fill, as a percentage.
    #[arg(long, default_value = "50%", value_parser = parse_percent)]
    max_fill: f64,
    /// Longest Redis key to write, in bytes.
    #[arg(long, default_value_t = 65536)]
    redis_max_key_bytes: usize,
    /// Run directories (report, checkpoint) are created under this directory.
    #[arg(long, default_value = "cachewarm-runs")]
    runs_dir: PathBuf,
    /// The environment profile; default from CACHEWARM_ENV, RAILS_ENV, RACK_ENV, DJANGO_ENV,
    /// APP_ENV.
    #[arg(long = "env")]
    environment: Option<String>,
    /// Exit 1 when a store or the source failed (by default the run exits 0 so a deploy never
    /// breaks because of warming).
    #[arg(long)]
    strict: bool,
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
    humantime::parse_duration(text.trim())
        .map_err(|e| format!("`{text}` is not a duration ({e}); use forms like 90s, 5m, 24h"))
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

fn parse_percent(text: &str) -> Result<f64, String> {
    let number = text.trim().trim_end_matches('%');
    match number.parse::<f64>() {
        Ok(p) if p > 0.0 && p <= 100.0 => Ok(p / 100.0),
        _ => Err(format!(
            "`{text}` is not a percentage between 0 and 100 (like 50%)"
        )),
    }
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
            Command::Run(args) => run(args).await,
            Command::Snapshot(args) => snapshot(args).await,
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
    let environment = args.environment.or_else(|| {
        ENVIRONMENT_VARIABLES
            .iter()
            .find_map(|name| std::env::var(name).ok().filter(|v| !v.is_empty()))
    });
    let targets = if args.targets.is_empty() {
        vec![DEFAULT_TARGET.to_owned()]
    } else {
        args.targets
    };
    let settings = RunSettings {
        manifest: args.manifest,
        source: args.source,
        targets,
        dry_run: args.dry_run,
        overwrite: args.overwrite,
        timeout: args.timeout,
        batch_size: args.batch_size as usize,
        min_ttl: args.min_ttl,
        default_ttl: args.default_ttl,
        max_fill: args.max_fill,
        key_limits: KeyLimits {
            redis_max_key_bytes: args.redis_max_key_bytes,
        },
        report: warmer::report::ReportSettings {
            observe: args.observe.filter(|d| !d.is_zero()),
            baseline_hit_rate: args.baseline_hit_rate,
            history: (!args.no_history).then(|| args.runs_dir.join("runs.parquet")),
            metrics_file: args.metrics_file,
            pushgateway: args.pushgateway,
        },
        runs_dir: args.runs_dir,
        environment,
    };
    let (stop_sender, stop) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        stop_signal().await;
        tracing::warn!("interrupted: finishing the batches in flight");
        let _ = stop_sender.send(true);
    });
    let result = warmer::run::run(settings, stop).await.map_err(|error| {
        let code = match error {
            RunError::Output { .. } => ExitCode::FAILURE,
            _ => ExitCode::from(2),
        };
        (anyhow::Error::new(error), code)
    })?;
    print!(
        "{}",
        warmer::report::summary(&result.report, &result.run_dir)
    );
    let failed = result.report.source_error.is_some()
        || result
            .report
            .targets
            .iter()
            .any(|t| t.status == schemas::report::TargetStatus::Failed);
    Ok(if failed && args.strict {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM (what deploy systems and Kubernetes send). A signal
/// that cannot be listened for never resolves, rather than stopping the run at once.
async fn stop_signal() {
    let interrupt = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut terminate) => {
                terminate.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = interrupt => {}
        _ = terminate => {}
    }
}

fn report(args: ReportArgs) -> Result<ExitCode, Failure> {
    let rows = warmer::report::history::read(&args.history).map_err(|e| (e, ExitCode::from(2)))?;
    let failure = |error: warmer::run::RunError| (anyhow::Error::new(error), ExitCode::FAILURE);
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("failed to create `{}`", args.out.display()))
        .map_err(|e| (e, ExitCode::FAILURE))?;
    let page = args.out.join("trend.html");
    warmer::report::write_atomically(&page, &warmer::report::html::render_trend(&rows))
        .map_err(failure)?;
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
    let url = StoreUrl::parse(&args.source).map_err(|e| usage(e.into()))?;
    let source = Source::open(&url, &manifest)
        .await
        .map_err(|e| failure(e.into()))?;
    let context = || format!("failed to write snapshot `{}`", args.out.display());
    let mut writer = SnapshotWriter::create(&args.out, chrono::Utc::now())
        .with_context(context)
        .map_err(failure)?;
    // Streamed: one batch of values in memory at a time, rows in the manifest's rank order
    // (the order a run reads them back in).
    let mut batches = warmer::manifest::batches(&manifest, 500, 4);
    while let Some(batch) = batches.recv().await {
        let batch = batch.map_err(|e| failure(e.into()))?;
        let keys: Vec<&str> = batch.iter().map(|e| e.key.as_str()).collect();
        let fetched = source.fetch(&keys).await.map_err(|e| failure(e.into()))?;
        for (key, value) in keys.iter().zip(&fetched) {
            if let Some(value) = value {
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
    Ok(ExitCode::SUCCESS)
}
