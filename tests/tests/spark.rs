//! The per-key aggregation on Apache Spark (`integrations/spark`): real PySpark from PyPI in
//! `local[2]` mode runs the SQL of `analyzer aggregate-sql --dialect spark` over a dataset the
//! analyzer ingested from a generated log, and the key stats it writes must rank into the
//! manifest the analyzer ranks on its own: one aggregation written twice (polars and SQL) is
//! only worth having if the two agree.
//!
//! The DuckDB dialect of the same query runs too, through DuckDB from PyPI.
//!
//! `scripts/test` installs Java 17 (Debian), and PySpark and DuckDB (PyPI) into
//! [`spark_python`]'s venv.

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
pub(crate) fn write_log(path: &Path) {
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

pub(crate) fn text(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// Runs the analyzer with a fixed `generated_at`, so manifests compare byte for byte.
pub(crate) fn analyzer(args: &[&str]) -> std::process::Output {
    let output = Command::new(bin("analyzer"))
        .args(args)
        .env("SOURCE_DATE_EPOCH", "1795200000")
        .output()
        .unwrap();
    check_exit(output, 0, &format!("analyzer {}", args.join(" ")))
}

/// Runs the PySpark job in `local[2]` mode with `args`.
fn spark_job(args: &[&str]) {
    let job =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../integrations/spark/cachewarm_keystats.py");
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

/// The generated log ingested into `DIR/dataset`, and ranked there by the analyzer alone into
/// `DIR/local.json`.
pub(crate) fn dataset_and_local_manifest(dir: &Path) -> (PathBuf, PathBuf) {
    let log = dir.join("access.csv");
    let dataset = dir.join("dataset");
    let manifest = dir.join("local.json");
    write_log(&log);
    analyzer(&["ingest", text(&log), "--out", text(&dataset)]);
    let partitions = std::fs::read_dir(&dataset)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with("date=")
        })
        .count();
    assert_eq!(partitions, 2, "the log should span two days");
    // `rank`'s default half-life, `auto`, is a backtest no single query runs; the SQL's default
    // is an eighth of the events' span (whole µs, rounded down), so the local ranking is given
    // that one, read off a first ranking's window.
    let mut args = vec!["rank", "--data", text(&dataset), "--out", text(&manifest)];
    args.extend(RANK_ARGS);
    analyzer(&args);
    let window = read_manifest(&manifest).header.window;
    let span_us = (window.end - window.start).num_microseconds().unwrap();
    let eighth = format!("{}us", span_us / 8);
    args.extend(["--half-life", eighth.as_str()]);
    analyzer(&args);
    (dataset, manifest)
}

/// The flags both rankings are given: a budget that packing reaches, and a store whose key
/// rules leave keys out.
pub(crate) const RANK_ARGS: [&str; 4] = ["--budget", BUDGET, "--store", "memcached"];

/// Ranks the key stats at `key_stats` into `manifest` and checks it is the local manifest,
/// byte for byte, and the table the local aggregation's, row for row.
fn assert_ranks_as_local(dataset: &Path, local: &Path, key_stats: &Path, manifest: &Path) {
    let mut args = vec![
        "rank",
        "--key-stats",
        text(key_stats),
        "--out",
        text(manifest),
    ];
    args.extend(RANK_ARGS);
    analyzer(&args);

    let (local_manifest, other) = (read_manifest(local), read_manifest(manifest));
    // The workload exercises every rule: packing stops at the budget, and keys are left out
    // as deleted, read once, and invalid for memcached (keys with spaces).
    assert!(
        local_manifest.entries.len() > 300,
        "{}",
        local_manifest.entries.len()
    );
    assert!(local_manifest.header.totals.keys_over_budget > 0);
    for reason in ["deleted", "one_hit_wonder", "invalid_key"] {
        assert!(
            local_manifest.header.exclusions.contains_key(reason),
            "{reason}"
        );
    }
    let keys = |m: &schemas::Manifest| m.entries.iter().map(|e| e.key.clone()).collect::<Vec<_>>();
    assert_eq!(
        keys(&other),
        keys(&local_manifest),
        "the same keys in the same order"
    );
    assert_eq!(other, local_manifest);
    assert!(
        std::fs::read(manifest).unwrap() == std::fs::read(local).unwrap(),
        "the manifests differ in their bytes"
    );

    let local_stats = rank::aggregate(dataset, &AggregateOptions::default()).unwrap();
    let other_stats = rank::read_key_stats(key_stats).unwrap();
    assert_eq!(other_stats.keys.len(), local_stats.keys.len());
    assert_eq!(sorted(other_stats.keys), sorted(local_stats.keys));
}

/// The manifest ranked from Spark's key stats is the one the analyzer ranks alone, byte for
/// byte (Spark's medians are exact), and so is every row of the key-stats table. The job takes
/// the query from a file here, as `spark-submit` on a cluster would.
#[test]
fn spark_key_stats_rank_into_the_local_manifest() {
    let dir = tempfile::tempdir().unwrap();
    let (dataset, local) = dataset_and_local_manifest(dir.path());
    let sql = dir.path().join("aggregate.sql");
    std::fs::write(
        &sql,
        analyzer(&["aggregate-sql", "--dialect", "spark"]).stdout,
    )
    .unwrap();
    let key_stats = dir.path().join("key-stats");
    let started = Instant::now();
    spark_job(&[
        "--data",
        text(&dataset),
        "--sql",
        text(&sql),
        "--out",
        text(&key_stats),
    ]);
    eprintln!("the Spark job took {:?}", started.elapsed());
    assert_ranks_as_local(&dataset, &local, &key_stats, &dir.path().join("spark.json"));
}

/// The same query in DuckDB's dialect, run by DuckDB over the same dataset, gives the same
/// table and manifest: the SQL is written once for every engine.
#[test]
fn duckdb_key_stats_rank_into_the_local_manifest() {
    let dir = tempfile::tempdir().unwrap();
    let (dataset, local) = dataset_and_local_manifest(dir.path());
    let sql = dir.path().join("aggregate.sql");
    std::fs::write(
        &sql,
        analyzer(&["aggregate-sql", "--dialect", "duckdb"]).stdout,
    )
    .unwrap();
    let key_stats = dir.path().join("key-stats.parquet");
    duckdb_key_stats(&dataset, &sql, &key_stats);
    assert_ranks_as_local(
        &dataset,
        &local,
        &key_stats,
        &dir.path().join("duckdb.json"),
    );
}

/// The job asks the analyzer for the query when given `--analyzer`, passing its aggregation
/// flags on: it must run what `aggregate-sql` prints for them, not a query of its own.
#[test]
fn the_job_asks_the_analyzer_for_the_query_with_its_flags() {
    let flags = [
        "--half-life",
        "6h",
        "--reference-time",
        "2026-11-21T00:00:00Z",
        "--approx-medians",
    ];
    let mut args = vec!["aggregate-sql", "--dialect", "spark"];
    args.extend(flags);
    let expected = String::from_utf8(analyzer(&args).stdout).unwrap();
    let script = "import sys\n\
        import cachewarm_keystats as job\n\
        args = job.parse_args(['--data', 'd', '--out', 'o'] + sys.argv[1:])\n\
        sys.stdout.write(job.aggregate_sql(args))\n";
    let analyzer_bin = bin("analyzer");
    let output = Command::new(spark_python())
        .args(["-c", script, "--analyzer", text(&analyzer_bin)])
        .args(flags)
        .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("../integrations/spark"))
        // Importing the job from the clone must not leave bytecode in it.
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .output()
        .unwrap();
    let output = check_exit(output, 0, "the job's aggregate_sql");
    assert_eq!(String::from_utf8(output.stdout).unwrap(), expected);
    assert!(expected.contains("percentile_approx("), "{expected}");
}

/// Runs SQL `statements` in one DuckDB connection.
fn duckdb(statements: &[String]) {
    let script = "import sys, duckdb\n\
        con = duckdb.connect()\n\
        for statement in sys.argv[1:]:\n\
        \x20   con.execute(statement)\n";
    let output = Command::new(spark_python())
        .args(["-c", script])
        .args(statements)
        .output()
        .unwrap();
    check_exit(output, 0, "DuckDB");
}

/// Runs the query in `sql` over the dataset's events with DuckDB, into the Parquet file `out`.
pub(crate) fn duckdb_key_stats(dataset: &Path, sql: &Path, out: &Path) {
    duckdb(&[
        format!(
            "CREATE VIEW events AS SELECT * FROM read_parquet('{}/date=*/*.parquet')",
            text(dataset)
        ),
        format!(
            "COPY ({}) TO '{}' (FORMAT parquet)",
            std::fs::read_to_string(sql).unwrap(),
            text(out)
        ),
    ]);
}

/// A key-stats table that cannot be ranked is refused with its file and what is wrong in
/// it: a key twice (parts not merged), rows of different reference times, a column of the
/// wrong type, a column missing. Each is made by DuckDB from a good table.
#[test]
fn unusable_key_stats_are_refused_naming_the_file_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let (dataset, _) = dataset_and_local_manifest(dir.path());
    let sql = dir.path().join("aggregate.sql");
    std::fs::write(
        &sql,
        analyzer(&["aggregate-sql", "--dialect", "duckdb"]).stdout,
    )
    .unwrap();
    let good = dir.path().join("good.parquet");
    duckdb_key_stats(&dataset, &sql, &good);
    let cases = [
        (
            "twice",
            "SELECT * FROM t UNION ALL (SELECT * FROM t LIMIT 1)",
            "holds key `",
        ),
        (
            "mixed",
            "SELECT * REPLACE (CASE WHEN requests = 2 THEN reference_time - INTERVAL 1 HOUR \
             ELSE reference_time END AS reference_time) FROM t",
            "mixes rows of reference_time",
        ),
        (
            "text",
            "SELECT * REPLACE (CAST(requests AS VARCHAR) AS requests) FROM t",
            "column `requests` is",
        ),
        (
            "missing",
            "SELECT * EXCLUDE (half_life_us) FROM t",
            "column `half_life_us` is missing",
        ),
    ];
    for (name, query, message) in cases {
        let bad = dir.path().join(format!("{name}.parquet"));
        duckdb(&[
            format!(
                "CREATE VIEW t AS SELECT * FROM read_parquet('{}')",
                text(&good)
            ),
            format!("COPY ({query}) TO '{}' (FORMAT parquet)", text(&bad)),
        ]);
        let out = dir.path().join(format!("{name}.json"));
        let mut args = vec!["rank", "--key-stats", text(&bad), "--out", text(&out)];
        args.extend(RANK_ARGS);
        let output = Command::new(bin("analyzer")).args(&args).output().unwrap();
        let output = check_exit(output, 1, name);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(text(&bad)), "{name}: {stderr}");
        assert!(stderr.contains(message), "{name}: {stderr}");
        assert!(!out.exists(), "{name}");
    }
}

/// The merge of partial aggregates that docs/DESIGN-NOTES.md ("Key stats") gives, run by
/// DuckDB on both sides: per key, sums, least and greatest instants, and the latest part's
/// deleted-last and medians.
const MERGE_SQL: &str = "SELECT key, \
    CAST(SUM(requests) AS BIGINT) AS requests, \
    CAST(SUM(hits) AS BIGINT) AS hits, \
    CAST(SUM(misses) AS BIGINT) AS misses, \
    CAST(SUM(weighted_requests) AS BIGINT) AS weighted_requests, \
    CAST(SUM(writes) AS BIGINT) AS writes, \
    MIN(first_seen) AS first_seen, MAX(last_read) AS last_read, MAX(last_seen) AS last_seen, \
    max_by(deleted_last, last_seen) AS deleted_last, \
    max_by(value_size, last_seen) AS value_size, max_by(ttl_s, last_seen) AS ttl_s, \
    CAST(SUM(miss_latency_us) AS BIGINT) AS miss_latency_us, \
    CAST(SUM(miss_latencies) AS BIGINT) AS miss_latencies, \
    MAX(reference_time) AS reference_time, MAX(half_life_us) AS half_life_us \
    FROM parts GROUP BY key";

/// Daily partial aggregates, made with the same reference time and half-life and merged as
/// the design notes say, are the one-pass aggregation: equal in every column but the medians
/// of keys seen on both days (medians do not merge). This is what lets a fleet aggregate each
/// day once and keep the parts.
#[test]
fn daily_partial_aggregates_merge_into_the_whole() {
    let dir = tempfile::tempdir().unwrap();
    let (dataset, local) = dataset_and_local_manifest(dir.path());
    let header = read_manifest(&local).header;
    let half_life_us = (header.scoring.unwrap().half_life_s.unwrap() * 1e6).round() as u64;
    let reference = header.window.end.to_rfc3339();
    let sql = dir.path().join("aggregate.sql");
    let half_life = format!("{half_life_us}us");
    let query = analyzer(&[
        "aggregate-sql",
        "--dialect",
        "duckdb",
        "--half-life",
        &half_life,
        "--reference-time",
        &reference,
    ]);
    std::fs::write(&sql, query.stdout).unwrap();
    let query = std::fs::read_to_string(&sql).unwrap();
    let mut days: Vec<PathBuf> = std::fs::read_dir(&dataset)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| {
            path.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("date=")
        })
        .collect();
    days.sort();
    let mut parts = Vec::new();
    for (n, day) in days.iter().enumerate() {
        let part = dir.path().join(format!("part-{n}.parquet"));
        duckdb(&[
            format!(
                "CREATE VIEW events AS SELECT * FROM read_parquet('{}/*.parquet')",
                text(day)
            ),
            format!("COPY ({query}) TO '{}' (FORMAT parquet)", text(&part)),
        ]);
        parts.push(format!("'{}'", text(&part)));
    }
    let merged = dir.path().join("merged.parquet");
    duckdb(&[
        format!(
            "CREATE VIEW parts AS SELECT * FROM read_parquet([{}])",
            parts.join(", ")
        ),
        format!("COPY ({MERGE_SQL}) TO '{}' (FORMAT parquet)", text(&merged)),
    ]);

    let whole = rank::aggregate(
        &dataset,
        &AggregateOptions {
            until: None,
            half_life: rank::HalfLife::Fixed(std::time::Duration::from_micros(half_life_us)),
        },
    )
    .unwrap();
    let merged = rank::read_key_stats(&merged).unwrap();
    assert_eq!(merged.keys.len(), whole.keys.len());
    let midnight = whole.window_start.date_naive().succ_opt().unwrap();
    let (mut both_days, mut medians_differ) = (0, 0);
    for (part, one) in sorted(merged.keys)
        .into_iter()
        .zip(sorted(whole.keys.clone()))
    {
        let on_both_days =
            one.first_seen.date_naive() < midnight && one.last_seen.date_naive() >= midnight;
        if on_both_days {
            both_days += 1;
            medians_differ +=
                usize::from((part.value_size, part.ttl_s) != (one.value_size, one.ttl_s));
            let without_medians = |k: &KeyStats| KeyStats {
                value_size: None,
                ttl_s: None,
                ..k.clone()
            };
            assert_eq!(without_medians(&part), without_medians(&one));
        } else {
            assert_eq!(part, one);
        }
    }
    assert_eq!(merged.window_end, whole.window_end);
    assert!(both_days > 100, "{both_days} keys seen on both days");
    eprintln!("{medians_differ} of {both_days} keys on both days have other medians merged");
}

/// A half-life in the config is the aggregation's too: with `--key-stats` it is refused
/// naming the config file and field, not silently ignored (the table's weights carry the
/// half-life the aggregation was given).
#[test]
fn a_config_half_life_is_refused_with_key_stats() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("cachewarm.toml");
    std::fs::write(&config, "[rank]\nhalf_life = \"6h\"\n").unwrap();
    let output = Command::new(bin("analyzer"))
        .args(["rank", "--key-stats", "unused.parquet", "--budget", BUDGET])
        .args(["--out", text(&dir.path().join("m.json"))])
        .args(["--config", text(&config)])
        .output()
        .unwrap();
    let output = check_exit(output, 2, "rank --key-stats with a config half-life");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains(text(&config)), "{stderr}");
    assert!(
        stderr.contains("rank.half_life is the aggregation's"),
        "{stderr}"
    );
}
