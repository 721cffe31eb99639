//! `analyzer stats` through the binary on generated workloads whose figures the test knows:
//! three namespaces drawn from Zipf laws with α = 0.6, 0.9 and 1.2 are written as the canonical
//! CSV, ingested into a real Parquet dataset, and every column of `stats --json` is checked
//! against what the test computed from the rows it wrote; the Zipf alpha must come back within
//! 0.05 of the generator's.

// A failed step should stop the test where it failed.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Write;
use std::path::Path;

use cachewarm_tests::{Rng, Zipf, app_keys, run_bin};
use serde_json::Value;

/// Keys per namespace, and requests drawn from them. More keys than requests, as in a sampled
/// trace: most keys are seen once or never, which throws a fit over every rank off (a
/// least-squares fit gets 0.51, 0.66, 0.85; a likelihood fit over every seen key 0.53, 0.83,
/// 1.16), while enough keys get 20 or more requests for the head fit. Small enough for a debug
/// build.
const KEYS: usize = 200_000;
const REQUESTS: usize = 150_000;
const NAMESPACES: [(&str, f64); 3] = [("zipf-0.6", 0.6), ("zipf-0.9", 0.9), ("zipf-1.2", 1.2)];
/// TTLs given on sets, with their weights.
const TTLS: [(u32, u64); 4] = [(300, 5), (3_600, 3), (6_480, 1), (345_600, 1)];
/// 2026-11-20T23:30:00Z: the workloads cross midnight, so the dataset has two partitions.
const START_US: i64 = 1_795_735_800_000_000;

/// What the test wrote for one group of rows.
#[derive(Debug, Default)]
struct Expected {
    requests: u64,
    per_key: HashMap<(String, String), u64>,
    ops: BTreeMap<&'static str, u64>,
    ttls: BTreeMap<u32, u64>,
    key_bytes: u64,
    value_bytes: u64,
    with_value_size: u64,
    hits: u64,
    misses: u64,
    first_us: i64,
    last_us: i64,
}

impl Expected {
    fn add(&mut self, row: &Row) {
        if self.requests == 0 {
            self.first_us = row.ts_us;
        }
        self.first_us = self.first_us.min(row.ts_us);
        self.last_us = self.last_us.max(row.ts_us);
        self.requests += 1;
        *self
            .per_key
            .entry((row.namespace.to_owned(), row.key.clone()))
            .or_default() += 1;
        *self.ops.entry(row.op).or_default() += 1;
        if let Some(ttl) = row.ttl_s {
            *self.ttls.entry(ttl).or_default() += 1;
        }
        self.key_bytes += row.key.len() as u64;
        if let Some(size) = row.value_size {
            self.value_bytes += u64::from(size);
            self.with_value_size += 1;
        }
        match row.hit {
            Some(true) => self.hits += 1,
            Some(false) => self.misses += 1,
            None => {}
        }
    }

    fn keys(&self) -> u64 {
        self.per_key.len() as u64
    }

    fn one_hit_wonders(&self) -> u64 {
        self.per_key.values().filter(|&&n| n == 1).count() as u64
    }
}

#[derive(Debug)]
struct Row {
    ts_us: i64,
    namespace: &'static str,
    key: String,
    op: &'static str,
    hit: Option<bool>,
    value_size: Option<u32>,
    ttl_s: Option<u32>,
}

/// Draws every namespace's requests and writes them as canonical CSV to `path`.
fn write_workload(path: &Path) -> Vec<Row> {
    let keys = app_keys(KEYS);
    let ttl_weight: u64 = TTLS.iter().map(|(_, w)| w).sum();
    let mut rng = Rng::new(20261120);
    let mut rows = Vec::new();
    for (index, (namespace, alpha)) in NAMESPACES.into_iter().enumerate() {
        let zipf = Zipf::new(KEYS, alpha);
        // Namespaces differ in request rate: one request every 10, 20, 30 ms.
        let step_us = 10_000 * (index as i64 + 1);
        for i in 0..REQUESTS {
            let rank = zipf.sample(&mut rng);
            let value_size = 40 + (rank as u32 * 37) % 4_000;
            let (op, hit, size, ttl_s) = match rng.next_u64() % 100 {
                0..=2 => ("delete", None, None, None),
                3..=9 => {
                    let mut pick = rng.next_u64() % ttl_weight;
                    let ttl = TTLS
                        .iter()
                        .find(|(_, w)| {
                            let found = pick < *w;
                            pick = pick.saturating_sub(*w);
                            found
                        })
                        .map(|(ttl, _)| *ttl);
                    ("set", None, Some(value_size), ttl)
                }
                10..=14 => ("get", None, None, None),
                15..=29 => ("get", Some(false), None, None),
                _ => ("get", Some(true), Some(value_size), None),
            };
            rows.push(Row {
                ts_us: START_US + i as i64 * step_us + (index as i64) * 1_234,
                namespace,
                key: keys[rank].clone(),
                op,
                hit,
                value_size: size,
                ttl_s,
            });
        }
    }
    let mut out = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    writeln!(out, "ts,key,op,hit,value_size,ttl_s,namespace").unwrap();
    let text = |value: Option<String>| value.unwrap_or_default();
    for row in &rows {
        writeln!(
            out,
            "{}.{:06},{},{},{},{},{},{}",
            row.ts_us / 1_000_000,
            row.ts_us % 1_000_000,
            row.key,
            row.op,
            text(row.hit.map(|h| h.to_string())),
            text(row.value_size.map(|s| s.to_string())),
            text(row.ttl_s.map(|t| t.to_string())),
            row.namespace
        )
        .unwrap();
    }
    out.flush().unwrap();
    rows
}

fn assert_close(actual: &Value, expected: f64, what: &str) {
    let actual = actual
        .as_f64()
        .unwrap_or_else(|| panic!("{what}: {actual} is not a number"));
    assert!(
        (actual - expected).abs() <= 1e-9 * expected.abs().max(1.0),
        "{what}: got {actual}, expected {expected}"
    );
}

/// Checks one group of `stats --json` against what the test wrote.
fn check_group(group: &Value, expected: &Expected) {
    let name = group["group"].as_str().unwrap().to_owned();
    let what = |field: &str| format!("{name}: {field}");
    let requests = expected.requests as f64;
    let keys = expected.keys() as f64;
    assert_eq!(group["requests"], expected.requests, "{}", what("requests"));
    assert_eq!(group["keys"], expected.keys(), "{}", what("keys"));
    assert_close(
        &group["mean_frequency"],
        requests / keys,
        &what("mean frequency"),
    );
    assert_eq!(group["one_hit_wonders"], expected.one_hit_wonders());
    assert_close(
        &group["one_hit_wonder_ratio"],
        expected.one_hit_wonders() as f64 / keys,
        &what("one-hit-wonder ratio"),
    );
    assert_close(
        &group["compulsory_miss_ratio"],
        keys / requests,
        &what("compulsory miss ratio"),
    );
    assert_eq!(group["reads_with_outcome"], expected.hits + expected.misses);
    assert_close(
        &group["production_miss_ratio"],
        expected.misses as f64 / (expected.hits + expected.misses) as f64,
        &what("production miss ratio"),
    );
    assert_close(
        &group["key_size_mean"],
        expected.key_bytes as f64 / requests,
        &what("key size"),
    );
    assert_close(
        &group["value_size_mean"],
        expected.value_bytes as f64 / expected.with_value_size as f64,
        &what("value size"),
    );
    let span_s = (expected.last_us - expected.first_us) as f64 / 1e6;
    assert_close(&group["span_s"], span_s, &what("span"));
    assert_close(
        &group["requests_per_s"],
        requests / span_s,
        &what("request rate"),
    );
    assert_close(&group["kqps"], requests / span_s / 1e3, &what("kqps"));

    let ops: BTreeMap<String, f64> = group["ops"]
        .as_array()
        .unwrap()
        .iter()
        .map(|op| {
            (
                op["op"].as_str().unwrap().to_owned(),
                op["share"].as_f64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        ops.keys().collect::<Vec<_>>(),
        expected.ops.keys().collect::<Vec<_>>(),
        "{}",
        what("operations")
    );
    for (op, n) in &expected.ops {
        assert_close(&ops[*op].into(), *n as f64 / requests, &what(op));
    }

    let with_ttl: u64 = expected.ttls.values().sum();
    assert_eq!(group["requests_with_ttl"], with_ttl);
    let ttls = group["ttls"].as_array().unwrap();
    assert_eq!(ttls.len(), expected.ttls.len(), "{}", what("TTLs"));
    for ttl in ttls {
        let seconds = ttl["ttl_s"].as_u64().unwrap() as u32;
        let n = expected.ttls[&seconds];
        assert_eq!(ttl["requests"], n, "{}", what("TTL requests"));
        assert_close(
            &ttl["share"],
            n as f64 / with_ttl as f64,
            &what("TTL share"),
        );
    }
    // Most requested first.
    let order: Vec<u64> = ttls
        .iter()
        .map(|t| t["requests"].as_u64().unwrap())
        .collect();
    assert!(order.windows(2).all(|w| w[0] >= w[1]), "{name}: {order:?}");
}

fn stats_json(dataset: &Path, by: &str) -> Value {
    let output = run_bin(
        "analyzer",
        &[
            "stats",
            "--data",
            dataset.to_str().unwrap(),
            "--by",
            by,
            "--json",
        ],
        0,
    );
    serde_json::from_slice(&output.stdout).expect("stats --json prints JSON")
}

/// Every column against the test's own figures, per namespace and overall; alpha within 0.05.
#[test]
fn stats_match_the_generated_workload() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.csv");
    let dataset = dir.path().join("dataset");
    let rows = write_workload(&log);
    run_bin(
        "analyzer",
        &[
            "ingest",
            log.to_str().unwrap(),
            "--out",
            dataset.to_str().unwrap(),
        ],
        0,
    );
    let partitions = std::fs::read_dir(&dataset)
        .unwrap()
        .filter(|entry| {
            let name = entry.as_ref().unwrap().file_name();
            name.to_string_lossy().starts_with("date=")
        })
        .count();
    assert_eq!(partitions, 2, "the workload crosses midnight");

    let mut per_namespace: BTreeMap<&str, Expected> = BTreeMap::new();
    let mut overall = Expected::default();
    for row in &rows {
        per_namespace.entry(row.namespace).or_default().add(row);
        overall.add(row);
    }

    let stats = stats_json(&dataset, "namespace");
    assert_eq!(stats["by"], "namespace");
    let groups = stats["groups"].as_array().unwrap();
    let names: HashSet<&str> = groups
        .iter()
        .map(|g| g["group"].as_str().unwrap())
        .collect();
    assert_eq!(names, per_namespace.keys().copied().collect());
    for (namespace, alpha) in NAMESPACES {
        let group = groups.iter().find(|g| g["group"] == namespace).unwrap();
        check_group(group, &per_namespace[namespace]);
        let fit = group["zipf_alpha"].as_f64().unwrap();
        eprintln!(
            "{namespace}: Zipf alpha {fit:.4} from the {} most requested keys",
            group["zipf_fit_keys"]
        );
        assert!(
            (fit - alpha).abs() < 0.05,
            "{namespace}: Zipf alpha {fit}, generated with {alpha}"
        );
    }
    assert_eq!(stats["overall"]["group"], "all");
    check_group(&stats["overall"], &overall);

    // Without groups only the overall row is left, and it is the same.
    let ungrouped = stats_json(&dataset, "none");
    assert_eq!(ungrouped["groups"].as_array().unwrap().len(), 0);
    assert_eq!(ungrouped["overall"], stats["overall"]);

    // The table: Twitter's column order, one line per namespace, the overall row last.
    let output = run_bin(
        "analyzer",
        &["stats", "--data", dataset.to_str().unwrap()],
        0,
    );
    let text = String::from_utf8(output.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let header = lines[0];
    let columns = [
        "group",
        "miss ratio",
        "key size",
        "value size",
        "kqps",
        "mean freq",
        "one-hit-wonder %",
        "compulsory miss %",
        "common TTL",
        "operation",
        "Zipf alpha",
        "keys",
        "requests",
        "span",
        "req/s",
    ];
    let positions: Vec<usize> = columns
        .iter()
        .map(|c| {
            header
                .find(c)
                .unwrap_or_else(|| panic!("no `{c}` in {header}"))
        })
        .collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "{header}");
    assert_eq!(lines.len(), 2 + NAMESPACES.len() + 1, "{text}");
    assert!(lines.last().unwrap().starts_with("all "), "{text}");
    for (namespace, _) in NAMESPACES {
        let line = lines
            .iter()
            .find(|l| l.starts_with(namespace))
            .unwrap_or_else(|| panic!("no row for {namespace} in\n{text}"));
        let expected = &per_namespace[namespace];
        let mut ops: Vec<(&str, u64)> = expected.ops.iter().map(|(op, n)| (*op, *n)).collect();
        ops.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        let mix = ops
            .iter()
            .map(|(op, n)| format!("{op}:{:.2}", *n as f64 / expected.requests as f64))
            .collect::<Vec<_>>()
            .join(" ");
        assert!(line.contains(&mix), "`{mix}` not in {line}");
        let requests = format!(" {} ", expected.requests);
        assert!(line.contains(&requests), "{line}");
    }
}

/// An empty or missing dataset is an error that names the path, not an empty table.
#[test]
fn empty_or_missing_dataset_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let missing = dir.path().join("missing");
    for dataset in [&empty, &missing] {
        let output = run_bin(
            "analyzer",
            &["stats", "--data", dataset.to_str().unwrap()],
            1,
        );
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.starts_with("error: ") && stderr.contains(dataset.to_str().unwrap()),
            "{stderr}"
        );
        assert!(output.stdout.is_empty());
    }
}
