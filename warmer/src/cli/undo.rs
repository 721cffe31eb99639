//! `warmer undo`: take back what a run wrote.

use std::path::PathBuf;
use std::process::ExitCode;

use warmer::settings;

use super::{Failure, ShardArgs, run_dir_or_latest};

/// Take back what a run wrote: delete each key it wrote where the key still holds the value
/// it wrote. Keys rewritten since, and keys that were there before the run, are kept.
#[derive(Debug, clap::Args)]
pub struct UndoArgs {
    /// The run's directory [default: the newest under --runs-dir].
    run_dir: Option<PathBuf>,
    /// Where run directories are [default: CACHEWARM_RUNS_DIR, else cachewarm-runs].
    #[arg(long)]
    runs_dir: Option<PathBuf>,
    #[command(flatten)]
    shard: ShardArgs,
    /// A target URL with its password, for a target whose password the run's records hold
    /// redacted (not for one given by password_file or a variable: the records name those);
    /// repeat for several [default: CACHEWARM_TARGETS, separated by spaces].
    #[arg(long = "target")]
    targets: Vec<String>,
}

pub async fn undo(args: UndoArgs) -> Result<ExitCode, Failure> {
    for url in &args.targets {
        if warmer::store::secret::has_inline_password(url) {
            tracing::warn!(
                url = warmer::store::redact(url),
                "a password on the command line is visible to every user of the host (ps); \
                 give the target in CACHEWARM_TARGETS instead"
            );
        }
    }
    let run_dir = run_dir_or_latest(args.run_dir, args.runs_dir, args.shard)?;
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
