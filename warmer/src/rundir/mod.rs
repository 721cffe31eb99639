//! The run directory: what a run leaves on disk, and how other commands find and read it.
//!
//! `warmer run` writes it (through `run`); `warmer status` and `warmer undo` only read it, so
//! they depend on this module, not on the run's machinery. Its files: `checkpoint.json`
//! (progress, rewritten as batches finish), `report.json`, the written-keys logs
//! ([`written`]), and a `lock` file held while a process works on the run. The directory is
//! its owner's only (`0700`), and so are its files (`0600`): they list the keys written.

pub mod mask;
pub mod written;

use std::fs::File;
use std::path::{Path, PathBuf};

use schemas::Checkpoint;

pub const CHECKPOINT_FILE: &str = "checkpoint.json";
pub const REPORT_FILE: &str = "report.json";
/// Held (`flock`) by the process working on the run; the kernel lets go when it dies.
pub const LOCK_FILE: &str = "lock";

/// The lock on a run directory, held until dropped.
#[derive(Debug)]
pub struct RunLock {
    _file: File,
}

/// Makes the run directory `dir` (and the runs directory above it, if missing), its owner's
/// only (`0700`); one made by an older warmer is closed too.
pub fn create(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
}

/// Opens the file `path` of a run directory for appending, its owner's only.
pub fn open_owner_only(path: &Path) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .read(true)
        .mode(cachewarm_fs::OWNER_ONLY)
        .open(path)
}

/// Takes the lock of `run_dir`; `None` when another process holds it.
pub fn try_lock(run_dir: &Path) -> std::io::Result<Option<RunLock>> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .mode(cachewarm_fs::OWNER_ONLY)
        .create(true)
        .truncate(false)
        .write(true)
        .open(run_dir.join(LOCK_FILE))?;
    match file.try_lock() {
        Ok(()) => Ok(Some(RunLock { _file: file })),
        Err(std::fs::TryLockError::WouldBlock) => Ok(None),
        Err(std::fs::TryLockError::Error(error)) => Err(error),
    }
}

/// Takes the lock of `run_dir`, waiting up to half a second for it: `warmer status` holds it
/// for an instant to see whether a run is going on, and must not make a starting run fail.
pub(crate) fn lock_for_run(run_dir: &Path) -> std::io::Result<Option<RunLock>> {
    for _ in 0..10 {
        if let Some(lock) = try_lock(run_dir)? {
            return Ok(Some(lock));
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    Ok(None)
}

/// Reads a run directory's checkpoint.
pub fn read_checkpoint(run_dir: &Path) -> Result<Checkpoint, String> {
    let path = run_dir.join(CHECKPOINT_FILE);
    let text =
        std::fs::read(&path).map_err(|e| format!("cannot read `{}`: {e}", path.display()))?;
    serde_json::from_slice(&text)
        .map_err(|e| format!("`{}` is not a checkpoint: {e}", path.display()))
}

/// The run directories under `runs_dir`, newest first (run ids sort by start time).
pub fn run_dirs(runs_dir: &Path) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(runs_dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|entry| entry.path())
        .filter(|path| path.join(CHECKPOINT_FILE).is_file())
        .collect();
    dirs.sort_by(|a, b| b.file_name().cmp(&a.file_name()));
    dirs
}

/// The latest run under `runs_dir` of this manifest, these targets and this shard, if it has
/// not finished: what `--resume` without a directory continues. Shards sharing a runs
/// directory each find their own.
pub fn latest_unfinished(
    runs_dir: &Path,
    manifest_sha256: &str,
    targets: &[String],
    dry_run: bool,
    shard: Option<schemas::Shard>,
) -> Option<PathBuf> {
    run_dirs(runs_dir)
        .into_iter()
        .find_map(|dir| {
            let checkpoint = read_checkpoint(&dir).ok()?;
            (checkpoint.manifest_sha256 == manifest_sha256
                && checkpoint.targets == targets
                && checkpoint.dry_run == dry_run
                && checkpoint.shard == shard)
                .then_some((dir, checkpoint.finished))
        })
        .and_then(|(dir, finished)| (!finished).then_some(dir))
}

/// A file of the run's outputs could not be written.
#[derive(Debug, thiserror::Error)]
#[error("failed to write `{}`", path.display())]
pub struct WriteError {
    pub path: PathBuf,
    #[source]
    pub source: std::io::Error,
}

/// Writes `bytes` to `path` atomically (see [`cachewarm_fs`]).
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), WriteError> {
    cachewarm_fs::write_atomic(path, bytes).map_err(|source| WriteError {
        path: path.to_path_buf(),
        source,
    })
}

/// Writes `value` as pretty JSON to `path`, atomically.
pub fn write_json_atomically<T: serde::Serialize>(
    path: &Path,
    value: &T,
) -> Result<(), WriteError> {
    let mut text = serde_json::to_vec_pretty(value).map_err(|e| WriteError {
        path: path.to_path_buf(),
        source: e.into(),
    })?;
    text.push(b'\n');
    write_atomically(path, &text)
}
