//! `warmer`: the deploy-step half of cachewarm. See the library's crate docs for the flow.
//!
//! This file parses the command line and maps the outcome to an exit code; each subcommand's
//! arguments and handler are in `cli/`.

mod cli;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use cli::{
    report::ReportArgs, run::RunArgs, snapshot::SnapshotArgs, status::StatusArgs, undo::UndoArgs,
};

/// Warms cache stores from a hot-key manifest, and reports what it did.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    Run(Box<RunArgs>),
    Snapshot(SnapshotArgs),
    Undo(UndoArgs),
    Status(StatusArgs),
    Report(ReportArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .init();
    // The hooks let the run's worker threads give way on the CPU once live traffic is
    // protected (see `warmer::priority`).
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .on_thread_start(warmer::priority::follow)
        .on_thread_unpark(warmer::priority::follow)
        .build();
    let runtime = match runtime {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: failed to start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Run(args) => cli::run::run(*args).await,
            Command::Snapshot(args) => cli::snapshot::snapshot(args).await,
            Command::Undo(args) => cli::undo::undo(args).await,
            Command::Status(args) => cli::status::status(args),
            Command::Report(args) => cli::report::report(args),
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
