//! `analyzer`: the nightly half of cachewarm. See the crate docs of the library for the flow.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use analyzer::ingest::{self, Format, IngestOptions, IngestSummary};
use analyzer::rank::sql::{self, Dialect, SqlOptions};
use analyzer::rank::{self, HalfLife, RankOptions};
use analyzer::settings::{self, RankFlags};
use analyzer::simulate::{self, SimulateOptions, Simulation, Split};
use analyzer::stats::{self, GroupBy};
use anyhow::Context;
use clap::{Parser, Subcommand};

/// Turns cache access logs into a Parquet dataset and ranks the hot keys into a manifest.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    Ingest(IngestArgs),
    Rank(RankArgs),
    AggregateSql(AggregateSqlArgs),
    Simulate(SimulateArgs),
    Stats(StatsArgs),
}

/// Read access logs into the Parquet dataset (`DATASET/date=YYYY-MM-DD/*.parquet`).
#[derive(Debug, clap::Args)]
struct IngestArgs {
    /// Log files to read; `-` reads stdin. Plain, gzip or zstd.
    #[arg(required = true)]
    inputs: Vec<String>,
    /// The dataset directory (created when missing), or `s3://BUCKET/PREFIX` (credentials and
    /// endpoint from the standard AWS variables).
    #[arg(long)]
    out: PathBuf,
    /// The log format.
    #[arg(long, value_enum, default_value = "auto")]
    format: Format,
    /// Print the summary as JSON instead of text.
    #[arg(long)]
    json: bool,
    /// Ingest inputs even when the dataset's ledger says it holds them already.
    #[arg(long)]
    force: bool,
}

/// Rank the dataset's hot keys into a manifest that fits a byte budget.
#[derive(Debug, clap::Args)]
struct RankArgs {
    /// The dataset directory written by `analyzer ingest`, or its `s3://BUCKET/PREFIX`.
    #[arg(
        long,
        required_unless_present = "key_stats",
        conflicts_with = "key_stats"
    )]
    data: Option<PathBuf>,
    /// Rank a key-stats Parquet table (a file or a directory of them, local or `s3://`) that
    /// another engine aggregated with the SQL of `analyzer aggregate-sql`, instead of a dataset.
    #[arg(long, conflicts_with = "simulate")]
    key_stats: Option<PathBuf>,
    /// Where to write the manifest; a name ending in `.zst` is zstd-compressed.
    #[arg(long)]
    out: PathBuf,
    #[command(flatten)]
    rank: RankFlags,
    /// Also backtest the ranking (see `analyzer simulate`) and store its prediction in the
    /// manifest header, where the warmer's report shows it beside what it measured.
    #[arg(long)]
    simulate: bool,
    #[command(flatten)]
    backtest: BacktestFlags,
}

/// Print the per-key aggregation as one SQL query over a relation named `events` (the
/// dataset), for Spark, DuckDB or Trino; its result is the key-stats table that `rank
/// --key-stats` ranks.
#[derive(Debug, clap::Args)]
struct AggregateSqlArgs {
    /// The engine the query is written for.
    #[arg(long, value_enum)]
    dialect: Dialect,
    /// Half-life of a read's weight (`6h`), or `off` [default: an eighth of the events' span;
    /// `rank`'s default, `auto`, backtests on the events, which one query cannot].
    #[arg(long)]
    half_life: Option<String>,
    /// The instant read weights are relative to (RFC 3339) [default: the last event, as
    /// `rank`]. Give the same one, and a --half-life, to every part to be merged.
    #[arg(long, value_parser = settings::parse_instant)]
    reference_time: Option<chrono::DateTime<chrono::Utc>>,
    /// Approximate medians (Spark's percentile_approx, DuckDB's approx_quantile), which hold
    /// bounded memory per key; Trino's are always approximate.
    #[arg(long)]
    approx_medians: bool,
}

/// Backtest the ranking: rank from the older part of the dataset, replay the newer part through
/// an LRU cache cold, warmed with that manifest, and warmed by a clairvoyant oracle.
#[derive(Debug, clap::Args)]
struct SimulateArgs {
    /// The dataset directory written by `analyzer ingest`, or its `s3://BUCKET/PREFIX`.
    #[arg(long)]
    data: PathBuf,
    #[command(flatten)]
    rank: RankFlags,
    #[command(flatten)]
    backtest: BacktestFlags,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

/// Characterize the dataset's workload per group, with the columns of Twitter's published
/// per-cluster table (miss ratio, sizes, request rate, frequency, one-hit wonders, TTL and
/// operation mix, Zipf alpha).
#[derive(Debug, clap::Args)]
struct StatsArgs {
    /// The dataset directory written by `analyzer ingest`, or its `s3://BUCKET/PREFIX`.
    #[arg(long)]
    data: PathBuf,
    /// What a row is: one per `namespace` value (null namespace: `-`), one per key category
    /// (the config's `[[category]]` rules and presets, as `rank` classifies), or `none` (only
    /// the overall row, which is always printed).
    #[arg(long, value_enum, default_value = "namespace")]
    by: StatsBy,
    /// The config file whose category rules `--by category` uses [default: ./cachewarm.toml
    /// when it exists].
    #[arg(long, env = "CACHEWARM_CONFIG")]
    config: Option<PathBuf>,
    /// Built-in category rules to add after the config's: `django`, `rails`.
    #[arg(long = "preset", value_delimiter = ',')]
    presets: Vec<String>,
    /// Print the stats as JSON instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum StatsBy {
    Namespace,
    Category,
    None,
}

/// How the backtest splits and replays the dataset.
#[derive(Debug, clap::Args)]
struct BacktestFlags {
    /// The instant the test window starts (RFC 3339) [default: at 80% of the dataset's span].
    #[arg(long, value_parser = settings::parse_instant)]
    split: Option<chrono::DateTime<chrono::Utc>>,
    /// The early window: the first N reads after the split [default: a tenth of the test reads].
    #[arg(long)]
    first: Option<u64>,
}

impl BacktestFlags {
    fn options(&self, rank: RankOptions) -> SimulateOptions {
        SimulateOptions {
            capacity: None,
            split: self.split.map_or(Split::Share(0.8), Split::At),
            first: self.first,
            rank,
        }
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
    let result = match cli.command {
        Command::Ingest(args) => run_ingest(args),
        Command::Rank(args) => run_rank(args),
        Command::AggregateSql(args) => run_aggregate_sql(args),
        Command::Simulate(args) => run_simulate(args),
        Command::Stats(args) => run_stats(args),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error}");
            let mut printed = error.to_string();
            for cause in error.chain().skip(1) {
                let text = cause.to_string();
                // Some crates (object_store) repeat their source's message in their own: a
                // cause the line above already says adds nothing.
                if !printed.contains(&text) {
                    eprintln!("  Caused by: {text}");
                    printed = text;
                }
            }
            // Usage and configuration errors exit 2, like clap's own; the rest 1.
            if error.downcast_ref::<settings::SettingsError>().is_some() {
                ExitCode::from(2)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

fn run_ingest(args: IngestArgs) -> anyhow::Result<ExitCode> {
    let options = IngestOptions {
        format: args.format,
        force: args.force,
        progress: std::io::stderr().is_terminal(),
    };
    let summary = ingest::ingest(&args.inputs, &options, &args.out)
        .with_context(|| format!("failed to ingest into `{}`", args.out.display()))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        print_ingest_summary(&summary);
    }
    Ok(if summary.any_refused() {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn print_ingest_summary(summary: &IngestSummary) {
    for file in &summary.files {
        match (&file.refused, &file.skipped) {
            (Some(reason), _) => {
                println!("{}: refused: {reason}", file.path);
                continue;
            }
            (None, Some(reason)) => {
                println!("{}: skipped: {reason}", file.path);
                continue;
            }
            (None, None) => println!(
                "{}: {}, {} lines, {} events, {} rejected",
                file.path,
                file.format.map_or("unknown", |f| f.as_str()),
                file.lines,
                file.events,
                file.rejected
            ),
        }
        if file.lost > 0 {
            println!(
                "  data loss: the log says {} lines were dropped before they were written",
                file.lost
            );
        }
        for warning in &file.warnings {
            println!("  warning: {warning}");
        }
        for rejection in &file.first_rejections {
            println!("  line {}: {}", rejection.line, rejection.reason);
        }
        if file.rejected > file.first_rejections.len() as u64 {
            println!(
                "  … and {} more rejected lines",
                file.rejected - file.first_rejections.len() as u64
            );
        }
    }
    if summary.formats.len() > 1 {
        for (format, totals) in &summary.formats {
            println!(
                "{format}: {} files, {} lines, {} events, {} rejected, {} lost",
                totals.files, totals.lines, totals.events, totals.rejected, totals.lost
            );
        }
    }
    if summary.lost > 0 {
        println!(
            "warning: the logs say {} lines were dropped before they were written (data loss \
             upstream)",
            summary.lost
        );
    }
    println!(
        "ingested {} events from {} lines ({} rejected) into {}",
        summary.events,
        summary.lines,
        summary.rejected,
        summary.dataset.display()
    );
}

fn run_rank(args: RankArgs) -> anyhow::Result<ExitCode> {
    let config = settings::load_config(args.rank.config.as_deref())?;
    let options = settings::rank_options(&args.rank, &config)?;
    let manifest = match (&args.data, &args.key_stats) {
        (_, Some(key_stats)) => {
            settings::refuse_half_life(&args.rank, &config)?;
            rank::rank_key_stats(key_stats, &options)
                .with_context(|| format!("failed to rank `{}`", key_stats.display()))?
        }
        (Some(data), None) => {
            let mut manifest = rank::rank(data, &options)
                .with_context(|| format!("failed to rank `{}`", data.display()))?;
            if args.simulate {
                let simulation = simulate::simulate(data, &args.backtest.options(options.clone()))
                    .with_context(|| format!("failed to backtest `{}`", data.display()))?;
                manifest.header.prediction = Some(simulation.prediction);
            }
            manifest
        }
        (None, None) => unreachable!("clap requires --data or --key-stats"),
    };
    rank::write_manifest(&manifest, &args.out)?;
    let header = &manifest.header;
    let totals = &header.totals;
    println!("manifest: {}", args.out.display());
    println!(
        "{} of {} keys selected, carrying {:.1}% of {} read requests, {} of {} budget bytes ({})",
        totals.keys_selected,
        totals.keys_seen,
        percent(totals.requests_selected, totals.requests_seen),
        totals.requests_seen,
        totals.bytes_selected,
        header.budget.bytes,
        header.budget.source,
    );
    if !header.exclusions.is_empty() {
        let reasons: Vec<String> = header
            .exclusions
            .iter()
            .map(|(reason, keys)| format!("{reason} {keys}"))
            .collect();
        println!("left out: {}", reasons.join(", "));
    }
    if header.categories.len() > 1 {
        for (name, category) in &header.categories {
            println!(
                "  {name}: {} keys, {} requests, {} bytes{}",
                category.keys,
                category.requests,
                category.bytes,
                category
                    .budget_bytes
                    .map(|b| format!(" of {b} allowed"))
                    .unwrap_or_default()
            );
        }
    }
    if let Some(scoring) = &header.scoring {
        print_half_life(scoring);
    }
    if let Some(prediction) = &header.prediction {
        print_prediction(prediction);
    }
    Ok(ExitCode::SUCCESS)
}

/// The half-life, and when `auto` chose it, its backtest's candidates.
fn print_half_life(scoring: &schemas::manifest::Scoring) {
    let name = |half_life_s: Option<f64>| match half_life_s {
        Some(seconds) => {
            humantime::format_duration(std::time::Duration::from_secs_f64(seconds)).to_string()
        }
        None => "off".to_owned(),
    };
    let Some(backtest) = &scoring.half_life_backtest else {
        println!("half-life: {}", name(scoring.half_life_s));
        return;
    };
    let (Some(first), Some(last)) = (backtest.folds.first(), backtest.folds.last()) else {
        return;
    };
    println!(
        "half-life: auto chose {} by a backtest of {} folds from {} to {} (keys read that a \
         clairvoyant choice under the budget holds: {})",
        name(scoring.half_life_s),
        backtest.folds.len(),
        first.split_at.to_rfc3339(),
        last.judged_until.to_rfc3339(),
        backtest.oracle_hits
    );
    for candidate in &backtest.candidates {
        println!(
            "  {:>12} {:>9} keys read{}{}",
            name(candidate.half_life_s),
            candidate.hits,
            candidate
                .share
                .map(|share| format!(" ({:.1}%)", 100.0 * share))
                .unwrap_or_default(),
            if candidate.half_life_s == scoring.half_life_s {
                "  <- chosen"
            } else {
                ""
            }
        );
    }
}

fn run_aggregate_sql(args: AggregateSqlArgs) -> anyhow::Result<ExitCode> {
    let half_life = match args.half_life.as_deref().map(settings::parse_half_life) {
        Some(Err(e)) => {
            return Err(settings::SettingsError::Flag(format!("--half-life: {e}")).into());
        }
        Some(Ok(HalfLife::Auto)) => {
            return Err(settings::SettingsError::Flag(
                "--half-life auto backtests candidates on the events, which one SQL query \
                 cannot: give a duration or `off`, or leave it out for an eighth of the span"
                    .into(),
            )
            .into());
        }
        Some(Ok(half_life)) => half_life,
        None => HalfLife::EighthOfSpan,
    };
    let options = SqlOptions {
        dialect: args.dialect,
        half_life,
        reference_time: args.reference_time,
        approx_medians: args.approx_medians,
    };
    let text =
        sql::aggregate_sql(&options).map_err(|e| settings::SettingsError::Flag(e.to_string()))?;
    print!("{text}");
    Ok(ExitCode::SUCCESS)
}

fn run_simulate(args: SimulateArgs) -> anyhow::Result<ExitCode> {
    let config = settings::load_config(args.rank.config.as_deref())?;
    let options = settings::rank_options(&args.rank, &config)?;
    let simulation: Simulation = simulate::simulate(&args.data, &args.backtest.options(options))
        .with_context(|| format!("failed to backtest `{}`", args.data.display()))?;
    if args.json {
        let document = serde_json::json!({
            "prediction": simulation.prediction,
            "train_manifest": {
                "keys_selected": simulation.train_manifest.header.totals.keys_selected,
                "bytes_selected": simulation.train_manifest.header.totals.bytes_selected,
                "exclusions": simulation.train_manifest.header.exclusions,
                "scoring": simulation.train_manifest.header.scoring,
            },
            "replay_requests_per_s": simulation.replay_requests_per_s,
        });
        println!("{}", serde_json::to_string_pretty(&document)?);
    } else {
        if let Some(scoring) = &simulation.train_manifest.header.scoring {
            print_half_life(scoring);
        }
        print_prediction(&simulation.prediction);
        println!(
            "replayed at {:.1} M requests/s",
            simulation.replay_requests_per_s / 1e6
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn print_prediction(p: &schemas::manifest::Prediction) {
    println!(
        "backtest: trained before {}, replayed {} reads through a {}-byte LRU, budget {} bytes",
        p.split_at.to_rfc3339(),
        p.test_requests,
        p.capacity_bytes,
        p.budget_bytes
    );
    println!("  hit rate        cold  warmed  oracle");
    println!(
        "  first {:<9} {:>5.1}% {:>6.1}% {:>6.1}%",
        p.first_requests,
        100.0 * p.early.cold,
        100.0 * p.early.warmed,
        100.0 * p.early.oracle
    );
    println!(
        "  whole window    {:>5.1}% {:>6.1}% {:>6.1}%",
        100.0 * p.whole.cold,
        100.0 * p.whole.warmed,
        100.0 * p.whole.oracle
    );
    match p.early_gain_vs_oracle {
        Some(share) => println!(
            "  the manifest gets {:.1}% of the oracle's extra early hits",
            100.0 * share
        ),
        None => println!("  the oracle gains nothing over a cold start here"),
    }
}

fn percent(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        100.0 * part as f64 / whole as f64
    }
}
fn run_stats(args: StatsArgs) -> anyhow::Result<ExitCode> {
    let by = match args.by {
        StatsBy::Namespace => GroupBy::Namespace,
        StatsBy::None => GroupBy::None,
        StatsBy::Category => {
            let config = settings::load_config(args.config.as_deref())?;
            let classifier = settings::classifier(&config, &args.presets)?;
            GroupBy::key("category", move |key| classifier.classify(key).0)
        }
    };
    let stats = stats::stats(&args.data, &by)
        .with_context(|| format!("failed to compute the stats of `{}`", args.data.display()))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&stats)?);
    } else {
        print!("{}", stats::render_table(&stats));
    }
    Ok(ExitCode::SUCCESS)
}
