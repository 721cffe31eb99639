//! Every warmed entry is what the application would read (issue 13): values written by the
//! applications' own clients (Django's pymemcache with `pickle_serde`, pylibmc, Dalli) are
//! copied memcached → memcached, directly and through a snapshot, with their client flags, and
//! read back by the same clients as equal values of the same types; Redis values of every type
//! are copied with their TTLs into a server, a cluster and through a snapshot, never replacing
//! a key already present, and undone; copies between kinds of store are refused unless asked
//! for; snapshots written by pyarrow (its defaults and other codecs) warm completely, and one
//! that cannot be read says why everywhere; `--verify` reports exactly the keys changed behind
//! the run's back.
//!
//! `scripts/test` installs the clients: pylibmc and Dalli from Debian, pymemcache into
//! [`python_packages`], pyarrow and Django (for `SafeString`) into [`fidelity_packages`].

// A failed step should stop the test where it failed.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use cachewarm_tests::{
    MemcachedServer, RedisCluster, RedisServer, check_exit, feed, ingest_and_rank, python_packages,
    read_manifest, report_of, warmer_command,
};
use redis::ConnectionLike;
use schemas::Report;

mod clients;
mod redis_types;
mod snapshots;
mod verify;

/// Where `scripts/test` installs pyarrow and Django for these tests (beside
/// [`python_packages`]).
fn fidelity_packages() -> PathBuf {
    python_packages().with_file_name("fidelity")
}

/// Runs `/usr/bin/python3 -c script args…` with the tests' packages on its path, `input` on
/// stdin; panics with its output unless it exits 0. Returns stdout.
fn python(script: &str, args: &[&str], input: &str) -> String {
    let path = std::env::join_paths([python_packages(), fidelity_packages()]).unwrap();
    let mut command = Command::new("/usr/bin/python3");
    command
        .arg("-c")
        .arg(script)
        .args(args)
        .env("PYTHONPATH", path);
    feed(
        command,
        input,
        "python3 (scripts/test installs its packages)",
    )
}

/// Runs `/usr/bin/ruby -e script args…` (Dalli from Debian); as [`python`].
fn ruby(script: &str, args: &[&str], input: &str) -> String {
    let mut command = Command::new("/usr/bin/ruby");
    command.arg("-e").arg(script).args(args);
    feed(command, input, "ruby (scripts/test installs ruby-dalli)")
}

/// A manifest of `keys` (a canonical CSV log reading each key three times, through
/// `analyzer ingest` and `analyzer rank`).
fn manifest_for(dir: &Path, keys: &[String]) -> PathBuf {
    let log = dir.join("access.csv");
    let mut out = String::from("ts,key,op,hit\n");
    for round in 0..3 {
        for (i, key) in keys.iter().enumerate() {
            let ts = 1_763_700_000 + round * 10_000 + i;
            out.push_str(&format!("{ts},{key},get,true\n"));
        }
    }
    std::fs::write(&log, out).unwrap();
    let (_, manifest) = ingest_and_rank(dir, &log, "64MiB", "manifest.json", &[]);
    assert_eq!(read_manifest(&manifest).entries.len(), keys.len());
    manifest
}

/// `warmer ARGS…` in `dir`; the output once it exited with `code`.
fn warmer(dir: &Path, args: &[&str], code: i32) -> Output {
    let output = warmer_command(dir, args).output().unwrap();
    check_exit(output, code, &format!("warmer {}", args.join(" ")))
}

/// `warmer run` of `manifest` from `source` into `target` with `--verify`, `extra` added; its
/// report and run directory.
fn warm(
    dir: &Path,
    manifest: &Path,
    source: &str,
    target: &str,
    extra: &[&str],
) -> (Report, PathBuf) {
    let extra: Vec<&str> = std::iter::once("--verify")
        .chain(extra.iter().copied())
        .collect();
    cachewarm_tests::warm(dir, manifest.to_str().unwrap(), source, target, &extra)
}

/// `warmer snapshot` of `manifest`'s keys from `source` into `DIR/name`; its path and output.
fn snapshot(dir: &Path, manifest: &Path, source: &str, name: &str) -> (String, String) {
    let out = dir.join(name).to_str().unwrap().to_owned();
    let args = [
        "snapshot",
        "--manifest",
        manifest.to_str().unwrap(),
        "--source",
        source,
        "--out",
        &out,
    ];
    let output = warmer(dir, &args, 0);
    (out, String::from_utf8(output.stdout).unwrap())
}

/// Every entry written, and read back as sent.
fn assert_all_written_and_verified(report: &Report, entries: usize) {
    let target = &report.targets[0];
    assert_eq!(
        target.counts.written as usize, entries,
        "{:?}",
        target.counts
    );
    let verification = target
        .verification
        .as_ref()
        .expect("the run was given --verify");
    assert_eq!(
        (verification.verified as usize, verification.mismatched),
        (entries, 0),
        "{verification:?}"
    );
}

/// Sets each of `keys` to `value of KEY` for an hour.
fn set_strings(connection: &mut redis::Connection, keys: &[String]) {
    for key in keys {
        let _: () = redis::cmd("SET")
            .arg(key)
            .arg(format!("value of {key}"))
            .arg("EX")
            .arg(3600)
            .query(connection)
            .unwrap();
    }
}

/// Redis → memcached, directly or from a snapshot taken from Redis, is refused with exit 2 and
/// a message that says why and how to allow it; nothing is written. With `--allow-cross-kind`
/// the raw strings are copied.
#[test]
fn cross_kind_copies_are_refused_unless_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let replica = RedisServer::start(&[]);
    let keys: Vec<String> = (0..20).map(|i| format!("raw:{i}")).collect();
    set_strings(&mut replica.connection(), &keys);
    let manifest = manifest_for(dir.path(), &keys);
    let memcached = MemcachedServer::start(64);
    let (snap, _) = snapshot(dir.path(), &manifest, &replica.url(), "snap.parquet");
    for source in [replica.url(), snap] {
        let args = [
            "run",
            "--manifest",
            manifest.to_str().unwrap(),
            "--source",
            &source,
            "--target",
            &memcached.url(),
        ];
        let output = warmer(dir.path(), &args, 2);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains("refusing to copy Redis values into the memcached target")
                && stderr.contains("--allow-cross-kind"),
            "{stderr}"
        );
        assert_eq!(memcached.stat("curr_items"), 0);
    }
    let (report, _) = warm(
        dir.path(),
        &manifest,
        &replica.url(),
        &memcached.url(),
        &["--allow-cross-kind"],
    );
    assert_all_written_and_verified(&report, keys.len());
}
