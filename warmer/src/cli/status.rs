//! `warmer status`: where a run stands, as text or JSON.

use std::path::PathBuf;
use std::process::ExitCode;

use super::{Failure, ShardArgs, run_dir_or_latest};

/// Show where a run stands: running, finished, interrupted or killed; its progress and counts.
#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// The run's directory [default: the newest under --runs-dir].
    run_dir: Option<PathBuf>,
    /// Where run directories are [default: CACHEWARM_RUNS_DIR, else cachewarm-runs].
    #[arg(long)]
    runs_dir: Option<PathBuf>,
    #[command(flatten)]
    shard: ShardArgs,
    /// Print the status as JSON.
    #[arg(long)]
    json: bool,
}

pub fn status(args: StatusArgs) -> Result<ExitCode, Failure> {
    let usage = |error: anyhow::Error| (error, ExitCode::from(2));
    let run_dir = run_dir_or_latest(args.run_dir, args.runs_dir, args.shard)?;
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
