//! `warmer run --detach`: the same run started again in the background, in a session of its
//! own, with its output in the run directory. The source and targets go to it through its
//! environment (`CACHEWARM_SOURCE`, `CACHEWARM_TARGETS`), not its command line: a URL may hold
//! a password, and a command line is readable by every user of the host.

use std::process::ExitCode;

use anyhow::Context;
use warmer::run::{ResumeFrom, RunSettings};

use super::Failure;

/// Starts this same command again in the background, in a session of its own (through
/// `setsid` where it is installed, else in a process group of its own: the workspace forbids
/// the unsafe code a direct `setsid()` call needs), with its output in the run directory's
/// `warmer.log`; prints the run directory and returns.
pub async fn detach_run(settings: &RunSettings) -> Result<ExitCode, Failure> {
    use std::os::unix::process::CommandExt;
    let failure = |error: anyhow::Error| (error, ExitCode::FAILURE);
    let usage = |error: anyhow::Error| (error, ExitCode::from(2));
    // The background run must land in a directory known now, so the one to resume is picked
    // here, and a new run gets its id here.
    let run_dir = match &settings.resume {
        Some(ResumeFrom::Dir(dir)) => dir.clone(),
        Some(ResumeFrom::Latest) => {
            let path = settings.manifest.clone();
            let manifest = tokio::task::spawn_blocking(move || warmer::manifest::open(&path))
                .await
                .expect("manifest verification does not panic")
                .map_err(|e| usage(e.into()))?;
            let targets: Vec<String> = settings
                .targets
                .iter()
                .map(|t| warmer::store::redact(t))
                .collect();
            warmer::rundir::latest_unfinished(
                &settings.runs_dir,
                &manifest.header.entries_sha256,
                &targets,
                settings.dry_run,
                settings.shard,
            )
            .unwrap_or_else(|| {
                settings
                    .runs_dir
                    .join(warmer::run::new_run_id(chrono::Utc::now(), settings.shard))
            })
        }
        None => settings.runs_dir.join(
            settings
                .run_id
                .clone()
                .unwrap_or_else(|| warmer::run::new_run_id(chrono::Utc::now(), settings.shard)),
        ),
    };
    let resuming = run_dir.join(warmer::rundir::CHECKPOINT_FILE).is_file();
    let run_id = run_dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    warmer::rundir::create(&run_dir)
        .with_context(|| format!("failed to create `{}`", run_dir.display()))
        .map_err(failure)?;
    let log_path = run_dir.join("warmer.log");
    let log = warmer::rundir::open_owner_only(&log_path)
        .with_context(|| format!("failed to open `{}`", log_path.display()))
        .map_err(failure)?;
    let exe = std::env::current_exe()
        .context("cannot find the warmer executable")
        .map_err(failure)?;
    let mut child_args = child_args(std::env::args_os().skip(1).collect());
    if resuming {
        child_args.push("--resume".into());
        child_args.push(run_dir.clone().into_os_string());
    } else {
        child_args.push("--run-id".into());
        child_args.push(run_id.into());
    }
    let setsid = std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .map(|dir| dir.join("setsid"))
        .find(|path| path.is_file());
    let mut command = match &setsid {
        Some(setsid) => {
            let mut command = std::process::Command::new(setsid);
            command.arg(&exe);
            command
        }
        None => {
            let mut command = std::process::Command::new(&exe);
            command.process_group(0);
            command
        }
    };
    let stderr = log
        .try_clone()
        .with_context(|| format!("failed to open `{}`", log_path.display()))
        .map_err(failure)?;
    let child = command
        .args(&child_args)
        .env(warmer::env_vars::SOURCE, &settings.source)
        .env(warmer::env_vars::TARGETS, settings.targets.join(" "))
        .stdin(std::process::Stdio::null())
        .stdout(log)
        .stderr(stderr)
        .spawn()
        .with_context(|| format!("failed to start `{}` in the background", exe.display()))
        .map_err(failure)?;
    let absolute = std::path::absolute(&run_dir).unwrap_or(run_dir);
    println!("{}", absolute.display());
    eprintln!(
        "warmer: running in the background (pid {}); log {}; see `warmer status {}`",
        child.id(),
        absolute.join("warmer.log").display(),
        absolute.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// The command line for the background run: this one without `--detach`, `--resume [DIR]`,
/// `--run-id ID` (the caller adds what the background run must do), `--source URL` and
/// `--target URL` (given through the environment).
fn child_args(args: Vec<std::ffi::OsString>) -> Vec<std::ffi::OsString> {
    let mut out = Vec::with_capacity(args.len());
    let mut args = args.into_iter().peekable();
    while let Some(arg) = args.next() {
        let text = arg.to_string_lossy();
        if text == "--detach"
            || ["--resume=", "--run-id=", "--source=", "--target="]
                .iter()
                .any(|flag| text.starts_with(flag))
        {
            continue;
        }
        if text == "--resume" {
            // clap takes the next word as the directory unless it looks like a flag.
            if args
                .peek()
                .is_some_and(|next| !next.to_string_lossy().starts_with('-'))
            {
                args.next();
            }
            continue;
        }
        if ["--run-id", "--source", "--target"].contains(&text.as_ref()) {
            args.next();
            continue;
        }
        out.push(arg);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The background run gets the same command line minus what the parent decides for it,
    /// and minus the URLs (they may hold passwords; the child reads them from its environment).
    #[test]
    fn child_args_drop_detach_resume_and_run_id() {
        let args = |text: &str| -> Vec<std::ffi::OsString> {
            text.split_whitespace().map(Into::into).collect()
        };
        assert_eq!(
            child_args(args(
                "run --detach --resume runs/r1 --rate 5 --run-id x --target a"
            )),
            args("run --rate 5")
        );
        assert_eq!(
            child_args(args(
                "run --resume --target a --resume=runs/r2 --detach --source=redis://:pw@s --strict"
            )),
            args("run --strict")
        );
    }
}
