//! The dataset on object storage: `ingest --out s3://…`, `rank --data s3://…` and `rank
//! --key-stats s3://…` against a real S3-compatible server started by the harness (moto's),
//! checked with an S3 client of its own (boto3). Ranking from object storage must give the
//! manifest ranking from a local copy gives, byte for byte, and the ingest ledger must keep an
//! input from being counted twice there as it does locally.

// A failed step should stop the test where it failed.
#![allow(clippy::unwrap_used)]

use std::process::Command;

use cachewarm_tests::{S3Server, bin, check_exit};

use crate::spark::{RANK_ARGS, dataset_and_local_manifest, duckdb_key_stats, text};

const BUCKET: &str = "cachewarm";

/// Runs the analyzer against `server` with a fixed `generated_at`, expecting exit `code`.
fn analyzer(server: &S3Server, args: &[&str], code: i32) -> std::process::Output {
    let output = Command::new(bin("analyzer"))
        .args(args)
        .envs(server.env())
        .env("SOURCE_DATE_EPOCH", "1795200000")
        .output()
        .unwrap();
    check_exit(output, code, &format!("analyzer {}", args.join(" ")))
}

/// Ingest uploads the dataset's partitions and a ledger entry; a second ingest of the same log
/// adds nothing; ranking the uploaded dataset gives the local manifest, byte for byte.
#[test]
fn a_dataset_ingested_to_s3_ranks_as_the_local_one() {
    let server = S3Server::start(&[BUCKET]);
    let dir = tempfile::tempdir().unwrap();
    let (local_dataset, _) = dataset_and_local_manifest(dir.path());
    let log = dir.path().join("access.csv");
    let dataset = format!("s3://{BUCKET}/events");
    // Both ranked with the defaults, the half-life's backtest included.
    let local = dir.path().join("local-default.json");
    let mut args = vec![
        "rank",
        "--data",
        text(&local_dataset),
        "--out",
        text(&local),
    ];
    args.extend(RANK_ARGS);
    crate::spark::analyzer(&args);

    let first = analyzer(&server, &["ingest", text(&log), "--out", &dataset], 0);
    let keys = server.keys(BUCKET);
    let parquet: Vec<&String> = keys.iter().filter(|k| k.ends_with(".parquet")).collect();
    assert_eq!(parquet.len(), 2, "one file per day: {keys:?}");
    assert!(
        parquet
            .iter()
            .all(|k| k.starts_with("events/date=2026-11-")),
        "{keys:?}"
    );
    let ledger: Vec<&String> = keys
        .iter()
        .filter(|k| k.starts_with("events/_ingest_ledger/"))
        .collect();
    assert_eq!(ledger.len(), 1, "one ledger entry: {keys:?}");
    assert_eq!(
        keys.len(),
        3,
        "nothing else, no staging leftovers: {keys:?}"
    );
    let stdout = String::from_utf8_lossy(&first.stdout);
    assert!(stdout.contains("ingested 60000 events"), "{stdout}");

    let again = analyzer(&server, &["ingest", text(&log), "--out", &dataset], 0);
    let stdout = String::from_utf8_lossy(&again.stdout);
    assert!(stdout.contains("already ingested"), "{stdout}");
    assert_eq!(server.keys(BUCKET), keys, "the second ingest added nothing");

    let manifest = dir.path().join("s3.json");
    let mut args = vec!["rank", "--data", &dataset, "--out", text(&manifest)];
    args.extend(RANK_ARGS);
    analyzer(&server, &args, 0);
    assert!(
        std::fs::read(&manifest).unwrap() == std::fs::read(&local).unwrap(),
        "the manifest ranked from S3 differs from the local one"
    );
}

/// A key-stats table another engine wrote to object storage (here DuckDB's, uploaded with a
/// Spark-style `_SUCCESS` marker beside it) ranks into the local manifest.
#[test]
fn key_stats_on_s3_rank_as_the_local_manifest() {
    let server = S3Server::start(&[BUCKET]);
    let dir = tempfile::tempdir().unwrap();
    let (dataset, local) = dataset_and_local_manifest(dir.path());
    let sql = dir.path().join("aggregate.sql");
    std::fs::write(
        &sql,
        crate::spark::analyzer(&["aggregate-sql", "--dialect", "duckdb"]).stdout,
    )
    .unwrap();
    let table = dir.path().join("key-stats.parquet");
    duckdb_key_stats(&dataset, &sql, &table);
    server.upload(&table, BUCKET, "key-stats/part-00000.parquet");
    let marker = dir.path().join("_SUCCESS");
    std::fs::write(&marker, "").unwrap();
    server.upload(&marker, BUCKET, "key-stats/_SUCCESS");

    let manifest = dir.path().join("s3.json");
    let location = format!("s3://{BUCKET}/key-stats");
    let mut args = vec!["rank", "--key-stats", &location, "--out", text(&manifest)];
    args.extend(RANK_ARGS);
    analyzer(&server, &args, 0);
    assert!(
        std::fs::read(&manifest).unwrap() == std::fs::read(&local).unwrap(),
        "the manifest ranked from key stats on S3 differs from the local one"
    );
}

/// A bucket that does not exist is reported with the location and the server's answer in the
/// cause chain; nothing is written.
#[test]
fn a_missing_bucket_is_reported_with_the_location() {
    let server = S3Server::start(&[BUCKET]);
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("m.json");
    let output = analyzer(
        &server,
        &[
            "rank",
            "--data",
            "s3://no-such-bucket/events",
            "--budget",
            "1MiB",
            "--out",
            text(&manifest),
        ],
        1,
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("s3://no-such-bucket/events"), "{stderr}");
    assert!(stderr.contains("Caused by:"), "{stderr}");
    assert!(stderr.to_lowercase().contains("bucket"), "{stderr}");
    assert!(!manifest.exists());
}
