//! Atomic file writes for both cachewarm programs: a reader (or a deploy that kills the process
//! mid-write) sees the old file or the new one, never a part of one.
//!
//! Written as a temporary sibling (same directory, so the rename stays on one file system),
//! flushed to disk with `sync_all`, then renamed over the target. Both the analyzer (manifests)
//! and the warmer (checkpoints, reports, the run history, metrics files) write this way; this
//! crate is the one copy.
//!
//! Why a crate of its own rather than a module of `schemas`: `schemas` is the contract crate
//! (types, docs, JSON Schema, nothing else), and this is behaviour. Why hand-written rather than
//! `tempfile::NamedTempFile::persist` or `atomic-write-file`: the whole job is three standard
//! calls, and the temporary name stays predictable (hidden, after the target) for an operator
//! who finds one left by a power cut.
//!
//! Every file is created readable and writable by its owner only (`0600`): manifests, run
//! records and reports list cache keys, and keys can be sensitive (session ids). An operator
//! who wants to share one copies it on purpose.
//!
//! # Layout
//!
//! - [`write_atomic`]: bytes in memory to a file.
//! - [`write_atomic_with`]: a writer (e.g. Parquet) streaming into the temporary file.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// The mode of every file written here: the owner's only.
pub const OWNER_ONLY: u32 = 0o600;

/// Writes `bytes` to `path` atomically: temporary file, fsync, rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    write_atomic_with(path, |file| file.write_all(bytes))
}

/// Writes `path` atomically through `write`, which fills the temporary file (mode `0600`);
/// then fsync and rename. When anything fails the temporary file is removed and `path` is left
/// as it was.
pub fn write_atomic_with(
    path: &Path,
    write: impl FnOnce(&mut File) -> io::Result<()>,
) -> io::Result<()> {
    let temp = temp_path(path);
    let result = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(OWNER_ONLY)
        .open(&temp)
        .and_then(|mut file| {
            write(&mut file)?;
            file.sync_all()?;
            std::fs::rename(&temp, path)
        });
    if result.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    result
}

/// The temporary sibling of `path`: hidden, named after it, and unique to this process and
/// call, so two writers of one file never write into the same temporary file.
fn temp_path(path: &Path) -> PathBuf {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    path.with_file_name(format!(".{name}.{}.{n}.tmp", std::process::id()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The file is replaced whole, and no temporary file is left beside it.
    #[test]
    fn replaces_the_file_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("report.json");
        write_atomic(&path, b"first").unwrap();
        write_atomic(&path, b"second").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"second");
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["report.json"]);
    }

    /// The file is its owner's only, whatever the umask: it may list sensitive keys.
    #[test]
    fn the_file_is_the_owners_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("manifest.jsonl");
        write_atomic(&path, b"{}").unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    /// A writer that fails leaves the old file as it was, and no temporary file.
    #[test]
    fn a_failed_write_keeps_the_old_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("checkpoint.json");
        write_atomic(&path, b"old").unwrap();
        let error = write_atomic_with(&path, |file| {
            file.write_all(b"half")?;
            Err(io::Error::other("disk full"))
        })
        .unwrap_err();
        assert_eq!(error.to_string(), "disk full");
        assert_eq!(std::fs::read(&path).unwrap(), b"old");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    /// A directory that does not exist is an error, not a panic.
    #[test]
    fn a_missing_directory_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        assert!(write_atomic(&dir.path().join("no/such/file"), b"x").is_err());
    }
}
