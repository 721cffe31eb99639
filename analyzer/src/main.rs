//! `analyzer`: the nightly half of cachewarm. See the crate docs of the library for the flow.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use analyzer::ingest::{self, Format, IngestOptions, IngestSummary};
use analyzer::rank::{self, RankOptions};
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
    Stats(StatsArgs),
}

/// Read access logs into the Parquet dataset (`DATASET/date=YYYY-MM-DD/*.parquet`).
#[derive(Debug, clap::Args)]
struct IngestArgs {
    /// Log files to read; `-` reads stdin. Plain, gzip or zstd.
    #[arg(required = true)]
    inputs: Vec<String>,
    /// The dataset directory (created when missing).
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
    /// The dataset directory written by `analyzer ingest`.
    #[arg(long)]
    data: PathBuf,
    /// Key + value bytes the manifest may hold: plain bytes or units (`512KiB`, `64MiB`, `1GB`).
    #[arg(long, value_parser = parse_size)]
    budget: Size,
    /// Where to write the manifest; a name ending in `.zst` is zstd-compressed.
    #[arg(long)]
    out: PathBuf,
}

/// Characterize the dataset's workload per group, with the columns of Twitter's published
/// per-cluster table (miss ratio, sizes, request rate, frequency, one-hit wonders, TTL and
/// operation mix, Zipf alpha).
#[derive(Debug, clap::Args)]
struct StatsArgs {
    /// The dataset directory written by `analyzer ingest`.
    #[arg(long)]
    data: PathBuf,
    /// What a row is: one per `namespace` value (null namespace: `-`), or `none` (only the
    /// overall row, which is always printed).
    #[arg(long, value_enum, default_value = "namespace")]
    by: StatsBy,
    /// Print the stats as JSON instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum StatsBy {
    Namespace,
    None,
}

/// A size as given on the command line, and its value in bytes.
#[derive(Debug, Clone)]
struct Size {
    text: String,
    bytes: u64,
}

fn parse_size(text: &str) -> Result<Size, String> {
    text.trim()
        .parse::<bytesize::ByteSize>()
        .map(|size| Size {
            text: text.trim().to_owned(),
            bytes: size.as_u64(),
        })
        .map_err(|e| {
            format!("`{text}` is not a size ({e}); use bytes or units like 512KiB, 64MiB, 1GB")
        })
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
        Command::Stats(args) => run_stats(args),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error}");
            for cause in error.chain().skip(1) {
                eprintln!("  Caused by: {cause}");
            }
            ExitCode::FAILURE
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
    let options = RankOptions {
        budget_bytes: args.budget.bytes,
        budget_source: format!("--budget {}", args.budget.text),
    };
    let manifest = rank::rank(&args.data, &options)
        .with_context(|| format!("failed to rank `{}`", args.data.display()))?;
    rank::write_manifest(&manifest, &args.out)?;
    let totals = &manifest.header.totals;
    let share = if totals.requests_seen == 0 {
        0.0
    } else {
        100.0 * totals.requests_selected as f64 / totals.requests_seen as f64
    };
    println!("manifest: {}", args.out.display());
    println!(
        "{} of {} keys selected, carrying {:.1}% of {} read requests, {} of {} budget bytes",
        totals.keys_selected,
        totals.keys_seen,
        share,
        totals.requests_seen,
        totals.bytes_selected,
        manifest.header.budget.bytes
    );
    Ok(ExitCode::SUCCESS)
}

fn run_stats(args: StatsArgs) -> anyhow::Result<ExitCode> {
    let by = match args.by {
        StatsBy::Namespace => GroupBy::Namespace,
        StatsBy::None => GroupBy::None,
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
