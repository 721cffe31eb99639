//! `warmer run`: resolve the settings, warm (or start in the background), print the summary,
//! and pick the exit code; SIGINT and SIGTERM stop the run between batches.

use std::process::ExitCode;

use warmer::run::RunError;
use warmer::settings::{self, Resolved, RunFlags};

use super::Failure;

/// Warm the targets with the manifest's keys, most valuable first, never replacing a live
/// entry. Store failures are reported and do not fail the run unless --strict.
///
/// Settings come from flags, then CACHEWARM_* variables, then cachewarm.toml ([env.NAME] over
/// [warmer]), then the defaults shown.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    #[command(flatten)]
    flags: RunFlags,
    /// Run in the background (a new session, output to warmer.log in the run directory);
    /// prints the run directory and returns at once.
    #[arg(long)]
    detach: bool,
}

pub async fn run(args: RunArgs) -> Result<ExitCode, Failure> {
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
        return super::detach::detach_run(&settings).await;
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
