//! The subcommands of `warmer`: each file holds one subcommand's arguments and handler.

pub mod detach;
pub mod report;
pub mod run;
pub mod snapshot;
pub mod status;
pub mod undo;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use warmer::settings;

/// Errors carry their exit code: 2 for usage and configuration, 1 for the rest.
pub type Failure = (anyhow::Error, ExitCode);

/// Which shard's run `warmer undo` and `warmer status` take when no run directory is given.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ShardArgs {
    /// Take the newest run of this shard (`index/count`) [default: CACHEWARM_SHARD, else
    /// JOB_COMPLETION_INDEX of CACHEWARM_SHARDS, else the newest run of any].
    #[arg(long, value_parser = |t: &str| t.parse::<schemas::Shard>())]
    shard: Option<schemas::Shard>,
    /// How many shards; the index comes from JOB_COMPLETION_INDEX unless --shard gives it.
    #[arg(long)]
    shards: Option<u32>,
}

/// The run directory given, else the newest under the runs directory (of the shard, when one
/// is named).
pub fn run_dir_or_latest(
    run_dir: Option<PathBuf>,
    runs_dir: Option<PathBuf>,
    shard: ShardArgs,
) -> Result<PathBuf, Failure> {
    if let Some(dir) = run_dir {
        return Ok(dir);
    }
    let usage = |e: anyhow::Error| (e, ExitCode::from(2));
    let runs_dir = runs_dir
        .or_else(|| settings::process_env(warmer::env_vars::RUNS_DIR).map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(settings::DEFAULT_RUNS_DIR));
    let shard =
        settings::shard_from_flags_and_env(shard.shard, shard.shards, &settings::process_env)
            .map_err(|e| usage(e.into()))?;
    let latest = match shard {
        Some(shard) => warmer::status::latest_run_of(&runs_dir, Some(shard))
            .with_context(|| format!("no run of shard {shard} under `{}`", runs_dir.display())),
        None => warmer::status::latest_run(&runs_dir)
            .with_context(|| format!("no run directory under `{}`", runs_dir.display())),
    };
    latest.map_err(usage)
}
