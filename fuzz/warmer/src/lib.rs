//! What each warmer fuzz target does with its input, one function per target. The targets in
//! `fuzz_targets/` call these, and so does the warmer's `tests/fuzz_regressions.rs` (it
//! includes this file), so a saved crasher is replayed exactly as the fuzzer ran it.
//!
//! Each function takes any bytes and must not panic: bad input becomes the reader's error,
//! rendered with its causes as a run prints it (which must not panic either) and returned; `Ok`
//! when the reader took the input.

use std::io::{Seek, Write};
use std::os::fd::AsRawFd;
use std::path::PathBuf;

use warmer::manifest::{self, ManifestError, ManifestFile};
use warmer::source::{Snapshot, SourceUrl, key_hash, loader, snapshot_kind};
use warmer::store::{StoreUrl, redact};

/// The keys the snapshot target asks for: those of the seeds' manifest
/// (`seeds/manifest/k6.json`), from which the seed snapshots were taken.
pub const SNAPSHOT_KEYS: [&str; 6] = ["k1", "k2", "k3", "k4", "k5", "k6"];

/// The manifest reader: `manifest::open_hashing_keys` (the verifying pass, as a run with a
/// snapshot source takes it), then, for a manifest that verifies, its entries streamed (their
/// keys' hashes the pass's), a stream cut short, and a shard's view.
///
/// Random bytes almost never carry the checksum of their own entries, so an input refused
/// only for its checksum is read again with the checksum it should have put in its place: the
/// streaming passes are fuzzed too.
pub fn manifest(data: &[u8]) -> Result<(), String> {
    let mut opened = open_manifest(data);
    if let Err(ManifestError::Checksum {
        expected, actual, ..
    }) = &opened
        && let Some(fixed) = replace(data, expected.as_bytes(), actual.as_bytes())
    {
        opened = open_manifest(&fixed);
    }
    let (file, hashes) = opened.map_err(|e| chain(&e))?;
    let mut streamed = Vec::new();
    file.stream(3, |batch| {
        streamed.extend(batch.iter().map(|entry| key_hash(&entry.key)));
        true
    })
    .map_err(|e| chain(&e))?;
    assert_eq!(
        streamed.len() as u64,
        file.entries,
        "the stream hands out every verified entry"
    );
    assert_eq!(
        streamed, hashes,
        "the verifying pass hashes the keys the stream hands out, in its order"
    );
    file.stream(1, |_| false).map_err(|e| chain(&e))?;
    let shard = schemas::Shard::new(1, 3).expect("a valid shard");
    let view = file.restrict(shard).map_err(|e| chain(&e))?;
    view.stream(2, |_| true).map_err(|e| chain(&e))
}

fn open_manifest(data: &[u8]) -> Result<(ManifestFile, Vec<u64>), ManifestError> {
    let file = scratch(data);
    manifest::open_hashing_keys(&fd_path(&file), key_hash)
}

/// `data` with the first `from` replaced by `to`; `None` when `from` is empty or absent.
fn replace(data: &[u8], from: &[u8], to: &[u8]) -> Option<Vec<u8>> {
    if from.is_empty() {
        return None;
    }
    let at = data.windows(from.len()).position(|w| w == from)?;
    Some([&data[..at], to, &data[at + from.len()..]].concat())
}

/// The snapshot reader: the source kind from the footer (`snapshot_kind`), then
/// `Snapshot::open` for [`SNAPSHOT_KEYS`] and every key fetched, in an order other than the
/// file's (rows are kept aside on the way), at a fixed time.
pub fn snapshot(data: &[u8]) -> Result<(), String> {
    let file = scratch(data);
    let path = fd_path(&file);
    let _ = snapshot_kind(&path);
    let mut hashes: Vec<u64> = SNAPSHOT_KEYS.iter().map(|k| key_hash(k)).collect();
    hashes.sort_unstable();
    hashes.dedup();
    let snapshot = Snapshot::open(&path, hashes).map_err(|e| chain(&e))?;
    let _ = (snapshot.len(), snapshot.source_kind());
    // An hour after the seeds were taken: some of their entries have expired by then.
    let now = chrono::DateTime::from_timestamp(1_796_074_000, 0).expect("a valid time");
    let mut keys = SNAPSHOT_KEYS;
    keys.reverse();
    for chunk in keys.chunks(2) {
        snapshot.fetch(chunk, now).map_err(|e| chain(&e))?;
    }
    Ok(())
}

/// The address parsers, as a run meets a `--source` or `--target` text: `exec:` commands
/// (`loader::command`), source addresses (`SourceUrl::parse`: snapshots and store URLs) and
/// target addresses (`StoreUrl::parse`), and the redaction every message uses. `Ok` when the
/// text is a command or a source address.
///
/// Addresses come from the command line, variables and TOML, all UTF-8: other bytes are passed
/// over. So are `password_file` and `sentinel_password_file`, which read the file they name (a
/// fuzzer's `/dev/zero` would take the memory, not find a bug).
pub fn url(data: &[u8]) -> Result<(), String> {
    let text = std::str::from_utf8(data).map_err(|e| e.to_string())?;
    if text.contains(warmer::store::secret::PASSWORD_FILE) {
        return Err("names a password file".to_owned());
    }
    let _ = redact(text);
    let target = StoreUrl::parse(text).map_err(|e| chain(&e));
    if let Some(command) = loader::command(text) {
        let words = command.map_err(|e| chain(&e))?;
        assert!(!words.is_empty(), "an `exec:` command has a program");
        return Ok(());
    }
    if let SourceUrl::Store(url) = SourceUrl::parse(text).map_err(|e| chain(&e))? {
        let _ = (url.kind(), url.name(), loader::store_kind(&url));
        target?;
    }
    Ok(())
}

/// The loader-protocol reader: `loader::read_output` over the input as a loader's whole stdout
/// (hello, then answer lines). The caps are small, so that values over `--max-value-size` and
/// lines over the line limit are within reach of inputs of a few KB.
pub fn loader_protocol(data: &[u8]) -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a current-thread runtime");
    runtime.block_on(loader::read_output(data, 256, 512))?;
    Ok(())
}

/// `error` and its causes, one after the other, as a run prints them.
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(inner) = cause {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        cause = inner.source();
    }
    text
}

/// An unnamed temporary file holding `data` (deleted when closed: nothing is left behind, even
/// when the fuzzer is stopped); the readers open it again through [`fd_path`].
fn scratch(data: &[u8]) -> std::fs::File {
    let mut file = tempfile::tempfile().expect("a temporary file");
    file.write_all(data).expect("write the input");
    file.rewind().expect("rewind the input");
    file
}

/// A path that opens `file` again: the readers take paths, and the file has no name.
fn fd_path(file: &std::fs::File) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", file.as_raw_fd()))
}
