//! The `analyzer` binary as a nightly job runs it: stdin input, exit codes, messages.

// A failed step should stop the test where it failed.
#![allow(clippy::unwrap_used)]

use std::io::Write;
use std::process::{Command, Stdio};

fn analyzer() -> Command {
    Command::new(env!("CARGO_BIN_EXE_analyzer"))
}

/// `-` reads stdin, compressed or not, and the format is still recognised.
#[test]
fn ingests_gzip_from_stdin() {
    let dir = tempfile::tempdir().unwrap();
    let sample = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../sample_data/real/real-servers/memcached-watch.log");
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(&std::fs::read(sample).unwrap()).unwrap();
    let gz = encoder.finish().unwrap();

    let mut child = analyzer()
        .args(["ingest", "-", "--json", "--out"])
        .arg(dir.path().join("dataset"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(&gz).unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success());
    let summary: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(summary["files"][0]["format"], "memcached-watch");
    assert_eq!(summary["files"][0]["compression"], "gzip");
    // 3,000 client reads and the sets that followed their misses (see the provenance note).
    let stores = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../sample_data/real/real-servers/memcached-watch.log"),
    )
    .unwrap()
    .matches("type=item_store")
    .count();
    assert_eq!(summary["events"], 3000 + stores as u64);
}

/// A file no format matches is refused by name with the formats tried, exit 1; a bad flag
/// value is a usage error, exit 2, naming the value.
#[test]
fn refusals_and_usage_errors() {
    let dir = tempfile::tempdir().unwrap();
    let odd = dir.path().join("notes.txt");
    std::fs::write(&odd, "dear diary,\ntoday the cache was cold\n").unwrap();
    let output = analyzer()
        .args(["ingest", odd.to_str().unwrap(), "--out"])
        .arg(dir.path().join("dataset"))
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("notes.txt: refused") && stdout.contains("memcached-watch"),
        "{stdout}"
    );

    let output = analyzer()
        .args([
            "rank",
            "--data",
            "x",
            "--out",
            "y",
            "--budget",
            "12 parsecs",
        ])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("12 parsecs"));
}
