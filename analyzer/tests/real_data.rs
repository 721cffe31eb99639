//! Every reader on the real samples in `sample_data/real/` (written by others or by real
//! servers, never edited): auto-detection picks the right format, nothing is rejected, and the
//! events in the Parquet dataset add up to what the files and their provenance notes say.

// A failed step should stop the test where it failed.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use analyzer::dataset;
use analyzer::ingest::{Format, IngestOptions, IngestSummary, ingest};
use arrow_array::{Array, BooleanArray, StringArray, UInt32Array};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

fn real(path: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../sample_data/real")
        .join(path)
        .to_str()
        .unwrap()
        .to_owned()
}

/// Totals of the dataset's rows, by operation: (sum of count, hits, misses, rows).
#[derive(Debug, Default, PartialEq)]
struct Totals {
    requests: u64,
    hits: u64,
    misses: u64,
    unknown: u64,
}

fn ingest_alone(
    input: &str,
) -> (
    IngestSummary,
    HashMap<String, Totals>,
    PathBuf,
    tempfile::TempDir,
) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("dataset");
    let summary = ingest(&[input.to_owned()], &IngestOptions::default(), &data).unwrap();
    let mut by_op: HashMap<String, Totals> = HashMap::new();
    for file in dataset::data_files(&data).unwrap() {
        let reader = ParquetRecordBatchReaderBuilder::try_new(File::open(&file).unwrap())
            .unwrap()
            .build()
            .unwrap();
        for batch in reader {
            let batch = batch.unwrap();
            let column = |name: &str| batch.column_by_name(name).unwrap().clone();
            let op = column("op");
            let op = op.as_any().downcast_ref::<StringArray>().unwrap();
            let hit = column("hit");
            let hit = hit.as_any().downcast_ref::<BooleanArray>().unwrap();
            let count = column("count");
            let count = count.as_any().downcast_ref::<UInt32Array>().unwrap();
            for row in 0..batch.num_rows() {
                let totals = by_op.entry(op.value(row).to_owned()).or_default();
                let n = u64::from(count.value(row));
                totals.requests += n;
                let outcome = (!hit.is_null(row)).then(|| hit.value(row));
                match outcome {
                    Some(true) => totals.hits += n,
                    Some(false) => totals.misses += n,
                    None => totals.unknown += n,
                }
            }
        }
    }
    (summary, by_op, data, dir)
}

fn lines_containing(path: &str, needle: &str) -> u64 {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter(|line| line.contains(needle))
        .count() as u64
}

/// memcached watch: 3,000 client reads (the provenance note), every miss followed by one set,
/// and the set's own `item_get` lookups not counted as reads.
#[test]
fn memcached_watch_sample() {
    let path = real("real-servers/memcached-watch.log");
    let (summary, ops, _, _dir) = ingest_alone(&path);
    assert_eq!(summary.files[0].format, Some(Format::MemcachedWatch));
    assert_eq!(summary.formats["memcached-watch"].events, summary.events);
    assert_eq!((summary.rejected, summary.lost), (0, 0));
    let stores = lines_containing(&path, "type=item_store");
    let gets = &ops["get"];
    assert_eq!(gets.requests, 3000);
    assert_eq!(gets.unknown, 0);
    assert_eq!(gets.misses, stores);
    assert_eq!(gets.hits, 3000 - stores);
    assert_eq!(ops["set"].requests, stores);
}

/// Redis MONITOR: 3,000 reads, the SETs and DELs as logged; every SET of the read-through
/// client marks the GET before it a miss, and only GETs of the last 250 ms whose connection
/// said nothing more stay unknown.
#[test]
fn redis_monitor_sample() {
    let path = real("real-servers/redis-monitor.log");
    let (summary, ops, _, _dir) = ingest_alone(&path);
    assert_eq!(summary.files[0].format, Some(Format::RedisMonitor));
    assert_eq!(summary.rejected, 0);
    let gets = &ops["get"];
    assert_eq!(gets.requests, 3000);
    assert_eq!(gets.requests, lines_containing(&path, "] \"GET\""));
    let sets = lines_containing(&path, "] \"SET\"");
    assert_eq!(ops["set"].requests, sets);
    assert_eq!(ops["delete"].requests, lines_containing(&path, "] \"DEL\""));
    assert_eq!(gets.misses, sets);
    // A GET of the capture's last 250 ms is settled by its client's next command (a SET of
    // its key: a miss; anything else: a hit); one whose client sends nothing more is unknown.
    let text = std::fs::read_to_string(&path).unwrap();
    let commands: Vec<(f64, &str, &str)> = text
        .lines()
        .filter_map(|line| {
            let mut words = line.split(' ');
            let ts = words.next()?.parse().ok()?;
            let client = words.nth(1)?;
            Some((ts, client, words.next()?))
        })
        .collect();
    let end = commands.last().unwrap().0;
    let recent_unanswered = commands
        .iter()
        .enumerate()
        .filter(|(i, (ts, client, command))| {
            *command == "\"GET\""
                && ts + 0.25 >= end
                && !commands[i + 1..].iter().any(|(_, c, _)| c == client)
        })
        .count() as u64;
    assert_eq!(gets.unknown, recent_unanswered);
    assert_eq!(gets.hits + gets.misses + gets.unknown, 3000);
}

/// CacheLib kvcache, both column orders: reads are the sum of op_count over GET rows, hits the
/// sum of cache_hits, as the test sums them from the CSV itself.
#[test]
fn cachelib_samples_in_both_column_orders() {
    for name in ["cachelib/kv_traces_1.csv", "cachelib/kv_traces_2.csv"] {
        let path = real(name);
        let (summary, ops, _, _dir) = ingest_alone(&path);
        assert_eq!(summary.files[0].format, Some(Format::Cachelib), "{name}");
        assert_eq!(
            summary.rejected, 0,
            "{name}: {:?}",
            summary.files[0].first_rejections
        );
        let text = std::fs::read_to_string(&path).unwrap();
        let mut lines = text.lines();
        let header: Vec<&str> = lines.next().unwrap().split(',').collect();
        let at = |name: &str| header.iter().position(|h| *h == name).unwrap();
        let (mut reads, mut hits, mut sets) = (0u64, 0u64, 0u64);
        for line in lines {
            let fields: Vec<&str> = line.split(',').collect();
            let count: u64 = fields[at("op_count")].parse().unwrap();
            match fields[at("op")] {
                "GET" | "GET_LEASE" => {
                    reads += count;
                    hits += fields[at("cache_hits")].parse::<u64>().unwrap();
                }
                "SET" | "SET_LEASE" => sets += count,
                _ => {}
            }
        }
        let gets = &ops["get"];
        assert_eq!(
            (gets.requests, gets.hits, gets.misses),
            (reads, hits, reads - hits),
            "{name}"
        );
        assert_eq!(ops.get("set").map_or(0, |s| s.requests), sets, "{name}");
    }
}

/// Rails, both forms, as ActiveSupport 6.1 itself writes them (`sample_data/real/rails`,
/// produced by its `generate.rb`, which counted what its workload did in `counts.json`).
#[test]
fn rails_samples_from_active_support() {
    let counts: HashMap<String, u64> =
        serde_json::from_str(&std::fs::read_to_string(real("rails/counts.json")).unwrap()).unwrap();
    let plain_misses = counts["plain_reads"] - counts["plain_read_hits"];

    let (summary, ops, _, _dir) = ingest_alone(&real("rails/cache.log"));
    assert_eq!(summary.files[0].format, Some(Format::Rails));
    assert_eq!(
        summary.rejected, 0,
        "{:?}",
        summary.files[0].first_rejections
    );
    let gets = &ops["get"];
    assert_eq!(gets.requests, counts["reads"]);
    assert_eq!((gets.hits, gets.misses), (counts["hits"], counts["misses"]));
    assert_eq!(
        gets.unknown, counts["plain_reads"],
        "the log does not say whether a read hit"
    );
    assert_eq!(ops["set"].requests, counts["writes"]);
    assert_eq!(ops["delete"].requests, counts["deletes"]);

    let (summary, ops, _, _dir) = ingest_alone(&real("rails/events.jsonl"));
    assert_eq!(summary.files[0].format, Some(Format::Rails));
    assert_eq!(
        summary.rejected, 0,
        "{:?}",
        summary.files[0].first_rejections
    );
    let gets = &ops["get"];
    assert_eq!(gets.requests, counts["reads"]);
    assert_eq!(gets.hits, counts["hits"] + counts["plain_read_hits"]);
    assert_eq!(gets.misses, counts["misses"] + plain_misses);
    assert_eq!(ops["set"].requests, counts["writes"]);
    assert_eq!(ops["delete"].requests, counts["deletes"]);
}
