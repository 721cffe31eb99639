//! The per-key aggregation on Apache Spark (`integrations/spark`): real PySpark from PyPI in
//! `local[2]` mode runs the SQL of `analyzer aggregate-sql --dialect spark` over a dataset the
//! analyzer ingested from a generated log, and the key stats it writes must rank into the
//! manifest the analyzer ranks on its own: one aggregation written twice (polars and SQL) is
//! only worth having if the two agree.
//!
//! `scripts/test` installs Java 17 (Debian) and PySpark (PyPI) into [`spark_python`]'s venv.

// A failed step should stop the test where it failed.
#![allow(clippy::unwrap_used)]

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use analyzer::rank::{self, AggregateOptions, KeyStats};
use cachewarm_tests::{Rng, Zipf, app_keys, bin, check_exit, read_manifest, spark_python};

/// Keys in the generated log, and events: enough for hundreds of ranked keys across two
/// daily partitions, few enough that Spark takes seconds.
const KEYS: usize = 3000;
const EVENTS: usize = 60_000;
/// 2026-11-19T18:00:00Z: the log runs past midnight into a second partition.
const START_US: i64 = 1_795_111_200_000_000;
const BUDGET: &str = "256KiB";

/// A log in the canonical CSV with every column the aggregation reads: reads that hit, miss or
/// do not say, with and without latencies, rows of `count` > 1, writes with value sizes (an
/// even number of them per key is common, so medians fall between two values and are
/// rounded) and TTLs, deletes, and operations that are neither.
fn write_log(path: &Path) {
    let keys = app_keys(KEYS);
    let zipf = Zipf::new(KEYS, 0.9);
    let mut rng = Rng::new(17);
    let mut text = String::from("ts,key,op,hit,count,value_size,ttl_s,latency_us,client\n");
    let mut ts = START_US;
    for _ in 0..EVENTS {
        ts += 1 + (rng.next_u64() % 1_500_000) as i64;
        let k = zipf.sample(&mut rng);
        let roll = rng.unit();
        let base_size = 100 + (k * 37 % 900);
        let (op, hit, count, size, ttl, latency) = if roll < 0.78 {
            let outcome = rng.unit();
            let hit = if outcome < 0.8 {
                "1"
            } else if outcome < 0.95 {
                "0"
            } else {
                ""
            };
            let latency = if hit == "0" && rng.unit() < 0.7 {
                (200 + rng.next_u64() % 5000).to_string()
            } else {
                String::new()
            };
            let count = if rng.unit() < 0.05 { 3 } else { 1 };
            let size = if hit == "1" && rng.unit() < 0.3 {
                (base_size + (rng.next_u64() % 3) as usize).to_string()
            } else {
                String::new()
            };
            ("get", hit, count, size, String::new(), latency)
        } else if roll < 0.93 {
            let size = (base_size + (rng.next_u64() % 7) as usize).to_string();
            let ttl = ["60", "300", "3600", ""][(rng.next_u64() % 4) as usize].to_owned();
            ("set", "", 1, size, ttl, String::new())
        } else if roll < 0.97 {
            ("delete", "", 1, String::new(), String::new(), String::new())
        } else {
            ("touch", "", 1, String::new(), String::new(), String::new())
        };
        let _ = writeln!(
            text,
            "{}.{:06},{},{op},{hit},{count},{size},{ttl},{latency},web-{}",
            ts / 1_000_000,
            ts % 1_000_000,
            keys[k],
            k % 3
        );
    }
    std::fs::write(path, text).unwrap();
}

fn text(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// Runs the analyzer with a fixed `generated_at`, so manifests compare byte for byte.
fn analyzer(args: &[&str]) -> std::process::Output {
    let output = Command::new(bin("analyzer"))
        .args(args)
        .env("SOURCE_DATE_EPOCH", "1795200000")
        .output()
        .unwrap();
    check_exit(output, 0, &format!("analyzer {}", args.join(" ")))
}

/// Runs the PySpark job in `local[2]` mode with `args`.
fn spark_job(args: &[&str]) {
    let job = Path::new(env!("CARGO_MANIFEST_DIR")).join("../integrations/spark/cachewarm_keystats.py");
    let python = spark_python();
    let output = Command::new(&python)
        .arg(job)
        .args(["--master", "local[2]"])
        .args(["--conf", "spark.sql.shuffle.partitions=4"])
        .args(["--conf", "spark.ui.enabled=false"])
        .args(args)
        .env("PYSPARK_PYTHON", &python)
        .output()
        .unwrap();
    check_exit(output, 0, "the PySpark job");
}

fn sorted(mut keys: Vec<KeyStats>) -> Vec<KeyStats> {
    keys.sort_by(|a, b| a.key.cmp(&b.key));
    keys
}

/// The manifest ranked from Spark's key stats is the one the analyzer ranks alone, byte for
/// byte (Spark's medians are exact); and so is every row of the key-stats table.
#[test]
fn spark_key_stats_rank_into_the_local_manifest() {
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| -> PathBuf { dir.path().join(name) };
    write_log(&path("access.csv"));
    analyzer(&["ingest", text(&path("access.csv")), "--out", text(&path("dataset"))]);
    let partitions = std::fs::read_dir(path("dataset"))
        .unwrap()
        .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().starts_with("date="))
        .count();
    assert_eq!(partitions, 2, "the log should span two days");

    let common = ["--budget", BUDGET, "--store", "memcached"];
    let mut args = vec!["rank", "--data", text(&path("dataset")), "--out"];
    args.push(text(&path("local.json")));
    args.extend(common);
    analyzer(&args);

    let sql = analyzer(&["aggregate-sql", "--dialect", "spark"]).stdout;
    std::fs::write(path("aggregate.sql"), sql).unwrap();
    let started = Instant::now();
    spark_job(&[
        "--data",
        text(&path("dataset")),
        "--sql",
        text(&path("aggregate.sql")),
        "--out",
        text(&path("key-stats")),
    ]);
    eprintln!("the Spark job took {:?}", started.elapsed());

    let mut args = vec!["rank", "--key-stats", text(&path("key-stats")), "--out"];
    args.push(text(&path("spark.json")));
    args.extend(common);
    analyzer(&args);

    let local = read_manifest(&path("local.json"));
    let spark = read_manifest(&path("spark.json"));
    // The workload exercises every rule: packing stops at the budget, and keys are left out
    // as deleted, read once, and invalid for memcached (keys with spaces).
    assert!(local.entries.len() > 300, "{}", local.entries.len());
    assert!(local.header.totals.keys_over_budget > 0);
    for reason in ["deleted", "one_hit_wonder", "invalid_key"] {
        assert!(local.header.exclusions.contains_key(reason), "{reason}");
    }
    let keys = |m: &schemas::Manifest| m.entries.iter().map(|e| e.key.clone()).collect::<Vec<_>>();
    assert_eq!(keys(&spark), keys(&local), "the same keys in the same order");
    assert_eq!(spark, local);
    assert!(
        std::fs::read(path("spark.json")).unwrap() == std::fs::read(path("local.json")).unwrap(),
        "the manifests differ in their bytes"
    );

    let local_stats = rank::aggregate(&path("dataset"), &AggregateOptions::default()).unwrap();
    let spark_stats = rank::read_key_stats(&path("key-stats")).unwrap();
    assert_eq!(spark_stats.keys.len(), local_stats.keys.len());
    assert_eq!(sorted(spark_stats.keys), sorted(local_stats.keys));
}
