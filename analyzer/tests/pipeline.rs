//! ingest → Parquet dataset → rank, through the library on real files: the counts the manifest
//! carries are the ones the test wrote into its logs.

// A failed step should stop the test where it failed.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::io::Write;

use analyzer::dataset;
use analyzer::ingest::{Format, IngestOptions, ingest};
use analyzer::rank::{
    AggregateOptions, RankOptions, ResolvedBudget, aggregate, build_manifest, rank,
};

/// Writes a CSV (plain) and a JSON-lines (gzip) log over two UTC days; returns the reads per key.
fn write_logs(dir: &std::path::Path) -> (Vec<String>, HashMap<String, u64>) {
    let mut reads: HashMap<String, u64> = HashMap::new();
    let mut csv = String::from("key,ts,op,hit,count,value_size,ttl_s\n");
    let mut jsonl = String::new();
    // Key k is read k times (k = 1..=30) on day one, half of them logged with count 2.
    let day_one = 1_763_596_800u64; // 2025-11-20T00:00:00Z
    for k in 1..=30u64 {
        let key = format!("k:{k:02}");
        let mut left = k;
        let mut n = 0;
        while left > 0 {
            let count = if left >= 2 && n % 2 == 0 { 2 } else { 1 };
            csv.push_str(&format!(
                "{key},{},get,{},{count},,\n",
                day_one + n,
                n % 3 == 0
            ));
            left -= count;
            n += 1;
        }
        csv.push_str(&format!("{key},{},set,,,{},600\n", day_one + n, 10 * k));
        *reads.entry(key).or_default() += k;
    }
    // Day two, JSON lines: k:01 becomes the hottest key; a write-only key is never read.
    let day_two = day_one + 86_400;
    for n in 0..100u64 {
        jsonl.push_str(&format!(
            "{{\"ts\": {}.25, \"key\": \"k:01\", \"hit\": true}}\n",
            day_two + n
        ));
    }
    jsonl.push_str(&format!(
        "{{\"ts\": {day_two}, \"key\": \"write-only\", \"op\": \"set\", \"value_size\": 5}}\n"
    ));
    jsonl.push_str("{\"ts\": \"garbage\", \"key\": \"x\"}\n");
    *reads.get_mut("k:01").unwrap() += 100;

    let csv_path = dir.join("day1.csv");
    std::fs::write(&csv_path, csv).unwrap();
    let json_path = dir.join("day2.log.gz");
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(jsonl.as_bytes()).unwrap();
    std::fs::write(&json_path, encoder.finish().unwrap()).unwrap();
    let inputs = vec![
        csv_path.to_str().unwrap().to_owned(),
        json_path.to_str().unwrap().to_owned(),
    ];
    (inputs, reads)
}

/// The manifest's per-key figures equal what the logs hold, ranking follows requests, the
/// budget is respected, and the same dataset ranks to the same entries.
#[test]
fn ingest_then_rank_counts_what_the_logs_hold() {
    let dir = tempfile::tempdir().unwrap();
    let (inputs, reads) = write_logs(dir.path());
    let data = dir.path().join("dataset");

    let summary = ingest(&inputs, &IngestOptions::default(), &data).unwrap();
    assert_eq!(summary.rejected, 1);
    assert_eq!(summary.files[1].first_rejections[0].line, 102);
    assert_eq!(summary.files[1].format, Some(Format::Jsonl));
    let files = dataset::data_files(&data).unwrap();
    let partitions: Vec<String> = files
        .iter()
        .map(|f| {
            f.parent()
                .unwrap()
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    assert_eq!(partitions, ["date=2025-11-20", "date=2025-11-21"]);

    let mut everything = RankOptions::new(ResolvedBudget::bytes(u64::MAX));
    everything.min_requests = 1;
    let manifest = rank(&data, &everything).unwrap();
    assert_eq!(
        manifest.entries.len(),
        reads.len(),
        "write-only keys are not ranked"
    );
    assert_eq!(manifest.header.exclusions["write_only"], 1);
    assert_eq!(manifest.header.totals.keys_seen, reads.len() as u64 + 1);
    for entry in &manifest.entries {
        assert_eq!(entry.requests, reads[&entry.key], "{}", entry.key);
        assert_eq!(entry.ttl_s, Some(600));
    }
    // k:01, the most read and the most recent, comes first; then the score never rises.
    assert_eq!(manifest.entries[0].key, "k:01");
    assert!(
        manifest
            .entries
            .windows(2)
            .all(|w| w[0].score >= w[1].score)
    );
    let k30 = manifest.entries.iter().find(|e| e.key == "k:30").unwrap();
    assert_eq!(k30.size_bytes, 4 + 300);

    // A budget that holds only some keys: the packed bytes stay within it.
    let mut tight = RankOptions::new(ResolvedBudget::bytes(1000));
    tight.min_requests = 1;
    let packed = rank(&data, &tight).unwrap();
    let overhead = tight.item_overhead;
    let bytes: u64 = packed.entries.iter().map(|e| e.size_bytes + overhead).sum();
    assert!(bytes <= 1000 && !packed.entries.is_empty());
    assert_eq!(packed.header.totals.bytes_selected, bytes);
    assert_eq!(
        packed.header.totals.keys_selected + packed.header.totals.keys_over_budget,
        reads.len() as u64
    );

    // Deterministic: the same dataset and options give the same entries and checksum.
    let now = chrono::Utc::now();
    let stats = || aggregate(&data, &AggregateOptions::default()).unwrap();
    let a = build_manifest(&stats(), &tight, now).unwrap();
    let b = build_manifest(&stats(), &tight, now).unwrap();
    assert_eq!(a, b);
}

/// Every file under the dataset, hidden ones included.
fn dataset_files(data: &std::path::Path) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(data).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            for file in std::fs::read_dir(&path).unwrap() {
                found.push(file.unwrap().path().to_string_lossy().into_owned());
            }
        } else {
            found.push(path.to_string_lossy().into_owned());
        }
    }
    found.sort();
    found
}

/// The ledger makes ingest safe to repeat: an input that fails part way (a truncated gzip)
/// leaves no file behind while the inputs before it stay ingested; a re-run skips what the
/// dataset holds, so no event is counted twice; `force` ingests again on purpose.
#[test]
fn ingest_is_safe_to_repeat() {
    let dir = tempfile::tempdir().unwrap();
    let (inputs, reads) = write_logs(dir.path());
    let data = dir.path().join("dataset");
    let gz = std::fs::read(&inputs[1]).unwrap();
    let truncated = dir.path().join("truncated.log.gz");
    std::fs::write(&truncated, &gz[..gz.len() / 2]).unwrap();
    let options = IngestOptions::default();

    let first = vec![inputs[0].clone(), truncated.to_str().unwrap().to_owned()];
    let error = ingest(&first, &options, &data).unwrap_err();
    assert!(error.to_string().contains("truncated.log.gz"), "{error}");
    let after_failure = dataset_files(&data);
    assert!(
        after_failure.iter().all(|f| !f.ends_with(".tmp")),
        "left behind: {after_failure:?}"
    );
    assert_eq!(
        after_failure.len(),
        2,
        "the CSV's one partition and the ledger"
    );

    let summary = ingest(&inputs, &options, &data).unwrap();
    assert!(
        summary.files[0]
            .skipped
            .as_deref()
            .unwrap()
            .contains("already ingested")
    );
    assert!(summary.files[1].skipped.is_none());
    let mut everything = RankOptions::new(ResolvedBudget::bytes(u64::MAX));
    everything.min_requests = 1;
    let manifest = rank(&data, &everything).unwrap();
    for entry in &manifest.entries {
        assert_eq!(entry.requests, reads[&entry.key], "{}", entry.key);
    }

    // The same content under another name is the same input.
    let copy = dir.path().join("copy.csv");
    std::fs::copy(&inputs[0], &copy).unwrap();
    let again = ingest(&[copy.to_str().unwrap().to_owned()], &options, &data).unwrap();
    assert_eq!(again.events, 0);
    assert!(again.written.is_empty());

    let forced = IngestOptions {
        force: true,
        ..IngestOptions::default()
    };
    let again = ingest(&[copy.to_str().unwrap().to_owned()], &forced, &data).unwrap();
    assert!(again.events > 0);
    assert_eq!(again.written.len(), 1);
}

/// Inputs may be glob patterns, for schedulers that run no shell; a pattern that matches
/// nothing is an error naming it.
#[test]
fn glob_inputs() {
    let dir = tempfile::tempdir().unwrap();
    write_logs(dir.path());
    let data = dir.path().join("dataset");
    let pattern = dir.path().join("day*").to_str().unwrap().to_owned();
    let summary = ingest(&[pattern], &IngestOptions::default(), &data).unwrap();
    assert_eq!(summary.files.len(), 2);
    let nothing = dir
        .path()
        .join("nothing-*.log")
        .to_str()
        .unwrap()
        .to_owned();
    let error = ingest(&[nothing], &IngestOptions::default(), &data).unwrap_err();
    assert!(error.to_string().contains("nothing-*.log"), "{error}");
}

/// Exclusions are counted per reason: a key deleted after its reads, a key written and never
/// read, a key read once, a key whose last read is older than the window; only the key read
/// often and lately is ranked.
#[test]
fn exclusions_are_counted_per_reason() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("log.csv");
    let t0 = 1_763_596_800u64;
    let mut text = String::from("ts,key,op\n");
    for n in 0..5 {
        text.push_str(&format!("{},deleted,get\n", t0 + n));
        text.push_str(&format!("{},stale,get\n", t0 + n));
        text.push_str(&format!("{},hot,get\n", t0 + 86_000 + n));
    }
    text.push_str(&format!("{},deleted,delete\n", t0 + 10));
    text.push_str(&format!("{},written,set\n", t0 + 20));
    text.push_str(&format!("{},once,get\n", t0 + 30));
    std::fs::write(&csv, text).unwrap();
    let data = dir.path().join("dataset");
    let inputs = vec![csv.to_str().unwrap().to_owned()];
    ingest(&inputs, &IngestOptions::default(), &data).unwrap();

    let mut options = RankOptions::new(ResolvedBudget::bytes(1 << 20));
    options.window = Some(std::time::Duration::from_secs(3600));
    let manifest = rank(&data, &options).unwrap();
    let keys: Vec<&str> = manifest.entries.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(keys, ["hot"]);
    let exclusions = &manifest.header.exclusions;
    assert_eq!(exclusions["deleted"], 1);
    assert_eq!(exclusions["write_only"], 1);
    assert_eq!(
        exclusions["not_read_in_window"], 2,
        "stale and once: {exclusions:?}"
    );
    assert_eq!(exclusions.values().sum::<u64>(), 4);
}
