//! `warmer report`: the trend page over the run history, or one report for a deploy merged
//! from its shards' run directories.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

use super::Failure;

/// Render the trend page over the run history (`--history`), or merge the reports of a
/// deploy's shards into one report (`--merge`).
#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("what").required(true).args(["history", "merge"])))]
pub struct ReportArgs {
    /// The run history, `runs.parquet` beside the run directories: writes `trend.html`.
    #[arg(long)]
    history: Option<PathBuf>,
    /// The run directories of every shard of one deploy (`warmer run --shard i/n`): writes
    /// one `report.json`, `report.md` and `report.html` for the whole deploy. Counts are the
    /// sums of the shards'.
    #[arg(long, value_name = "RUN_DIR", num_args = 1..)]
    merge: Vec<PathBuf>,
    /// The directory to write into (created when missing).
    #[arg(long)]
    out: PathBuf,
}

pub fn report(args: ReportArgs) -> Result<ExitCode, Failure> {
    let failure =
        |error: warmer::rundir::WriteError| (anyhow::Error::new(error), ExitCode::FAILURE);
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("failed to create `{}`", args.out.display()))
        .map_err(|e| (e, ExitCode::FAILURE))?;
    if !args.merge.is_empty() {
        let report = warmer::report::merge::merge_run_dirs(&args.merge)
            .map_err(|e| (anyhow::Error::new(e), ExitCode::from(2)))?;
        warmer::rundir::write_json_atomically(&args.out.join(warmer::rundir::REPORT_FILE), &report)
            .map_err(failure)?;
        // The run directory's own outputs only: the shards have appended to the history and
        // written their metrics already.
        warmer::report::write_outputs(&report, &args.out, &Default::default()).map_err(failure)?;
        print!("{}", warmer::report::summary(&report, &args.out));
        return Ok(ExitCode::SUCCESS);
    }
    let Some(history) = args.history else {
        unreachable!("clap requires --history or --merge");
    };
    let rows = warmer::report::history::read(&history).map_err(|e| (e, ExitCode::from(2)))?;
    let page = args.out.join("trend.html");
    let trend = warmer::report::html::render_trend(&rows);
    warmer::rundir::write_atomically(&page, trend.as_bytes()).map_err(failure)?;
    println!(
        "trend: {} ({} rows from {})",
        page.display(),
        rows.len(),
        history.display()
    );
    Ok(ExitCode::SUCCESS)
}
