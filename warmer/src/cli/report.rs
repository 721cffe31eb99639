//! `warmer report`: the trend page over the run history.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

use super::Failure;

/// Render the trend page over the run history (`runs.parquet`) into a directory.
#[derive(Debug, clap::Args)]
pub struct ReportArgs {
    /// The run history, `runs.parquet` beside the run directories.
    #[arg(long)]
    history: PathBuf,
    /// The directory to write `trend.html` into (created when missing).
    #[arg(long)]
    out: PathBuf,
}

pub fn report(args: ReportArgs) -> Result<ExitCode, Failure> {
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
