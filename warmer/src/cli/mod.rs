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

/// The run directory given, else the newest under the runs directory.
pub fn run_dir_or_latest(
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
