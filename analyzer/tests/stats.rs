//! `stats` through the library on a dataset written with the dataset writer: rows that stand
//! for several requests, reads with and without an outcome, a null namespace, and grouping by
//! a function of the key (the hook for key categories). Every figure is checked against what
//! the test computes from the events it wrote.

// A failed step should stop the test where it failed.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use analyzer::dataset::DatasetWriter;
use analyzer::ingest::AccessEvent;
use analyzer::stats::{self, GroupBy, GroupStats, NO_NAMESPACE, StatsError, zipf};
use schemas::Op;

/// 2026-11-20T22:00:00Z: the events run past midnight into a second partition.
const START_US: i64 = 1_795_730_400_000_000;

/// A mixed workload over two namespaces (one of them null) and two key families.
fn events() -> Vec<AccessEvent> {
    let mut events = Vec::new();
    for i in 0..3_000u32 {
        // Low ranks are requested far more often than high ones; every 97th key just once.
        let id = if i % 97 == 0 {
            10_000 + i
        } else {
            (i * i) % 211 % (1 + i % 40)
        };
        let family = if i % 3 == 0 { "session" } else { "views/page" };
        let mut event = AccessEvent::new(
            START_US + i64::from(i) * 7_000_000,
            format!("{family}:{id}"),
        );
        event.namespace = (i % 4 != 0).then(|| "web".to_owned());
        event.count = 1 + i % 3;
        match i % 10 {
            0 => {
                event.op = Op::Set;
                event.value_size = Some(100 + id);
                event.ttl_s = Some([60, 3_600, 86_400][(i % 7 % 3) as usize]);
            }
            1 => {
                event.op = Op::Add;
                event.ttl_s = Some(60);
            }
            2 => event.op = Op::Delete,
            3 | 4 => event.hit = Some(false),
            5 => event.hit = None,
            _ => {
                event.hit = Some(true);
                event.value_size = Some(100 + id);
            }
        }
        events.push(event);
    }
    events
}

fn write_dataset(dir: &Path, events: &[AccessEvent]) {
    let mut writer = DatasetWriter::new(dir, "test");
    for event in events {
        writer.push(event).unwrap();
    }
    assert_eq!(writer.finish().unwrap().len(), 2, "two UTC days, two files");
}

/// What the events of one group add up to, computed the plain way.
#[derive(Debug, Default)]
struct Expected {
    requests: u64,
    per_key: HashMap<(Option<String>, String), u64>,
    ops: BTreeMap<String, u64>,
    ttls: BTreeMap<u32, u64>,
    key_bytes: u64,
    value_bytes: u64,
    with_value_size: u64,
    hits: u64,
    misses: u64,
    first_us: Option<i64>,
    last_us: Option<i64>,
}

impl Expected {
    fn of<'a>(events: impl Iterator<Item = &'a AccessEvent>) -> Expected {
        let mut expected = Expected::default();
        for event in events {
            let n = u64::from(event.count);
            expected.requests += n;
            *expected
                .per_key
                .entry((event.namespace.clone(), event.key.clone()))
                .or_default() += n;
            *expected.ops.entry(event.op.to_string()).or_default() += n;
            if let Some(ttl) = event.ttl_s {
                *expected.ttls.entry(ttl).or_default() += n;
            }
            expected.key_bytes += event.key.len() as u64 * n;
            if let Some(size) = event.value_size {
                expected.value_bytes += u64::from(size) * n;
                expected.with_value_size += n;
            }
            if event.op == Op::Get {
                match event.hit {
                    Some(true) => expected.hits += n,
                    Some(false) => expected.misses += n,
                    None => {}
                }
            }
            expected.first_us = Some(expected.first_us.unwrap_or(i64::MAX).min(event.ts_us));
            expected.last_us = Some(expected.last_us.unwrap_or(i64::MIN).max(event.ts_us));
        }
        expected
    }

    fn check(&self, group: &GroupStats) {
        let name = &group.group;
        let close = |actual: f64, expected: f64, what: &str| {
            assert!(
                (actual - expected).abs() <= 1e-9 * expected.abs().max(1.0),
                "{name}: {what}: got {actual}, expected {expected}"
            );
        };
        let requests = self.requests as f64;
        let keys = self.per_key.len() as f64;
        let one_hit = self.per_key.values().filter(|&&n| n == 1).count() as u64;
        assert_eq!(group.requests, self.requests, "{name}: requests");
        assert_eq!(group.keys, self.per_key.len() as u64, "{name}: keys");
        assert_eq!(group.one_hit_wonders, one_hit, "{name}: one-hit wonders");
        close(group.one_hit_wonder_ratio, one_hit as f64 / keys, "one-hit");
        close(group.compulsory_miss_ratio, keys / requests, "compulsory");
        close(group.mean_frequency, requests / keys, "mean frequency");
        assert_eq!(group.reads_with_outcome, self.hits + self.misses);
        assert_eq!(group.read_misses, self.misses);
        close(
            group.production_miss_ratio.unwrap(),
            self.misses as f64 / (self.hits + self.misses) as f64,
            "miss ratio",
        );
        close(
            group.key_size_mean,
            self.key_bytes as f64 / requests,
            "key size",
        );
        close(
            group.value_size_mean.unwrap(),
            self.value_bytes as f64 / self.with_value_size as f64,
            "value size",
        );
        let span_s = (self.last_us.unwrap() - self.first_us.unwrap()) as f64 / 1e6;
        close(group.span_s, span_s, "span");
        close(group.requests_per_s.unwrap(), requests / span_s, "rate");
        let ops: BTreeMap<String, u64> = group
            .ops
            .iter()
            .map(|o| (o.op.clone(), o.requests))
            .collect();
        assert_eq!(ops, self.ops, "{name}: operations");
        for op in &group.ops {
            close(op.share, op.requests as f64 / requests, "op share");
        }
        let ttls: BTreeMap<u32, u64> = group.ttls.iter().map(|t| (t.ttl_s, t.requests)).collect();
        assert_eq!(ttls, self.ttls, "{name}: TTLs");
        let with_ttl: u64 = self.ttls.values().sum();
        assert_eq!(group.requests_with_ttl, with_ttl);
        for ttl in &group.ttls {
            close(
                ttl.share,
                ttl.requests as f64 / with_ttl as f64,
                "TTL share",
            );
            assert_eq!(ttl.label, stats::duration_label(u64::from(ttl.ttl_s)));
        }
        let head = self
            .per_key
            .values()
            .filter(|&&n| n >= zipf::HEAD_MIN_REQUESTS)
            .count();
        assert_eq!(
            group.zipf_fit_keys,
            head as u64 * u64::from(head >= zipf::HEAD_MIN_KEYS)
        );
        assert_eq!(group.zipf_alpha.is_some(), head >= zipf::HEAD_MIN_KEYS);
    }
}

/// Per namespace (the null one included) and overall, counts weigh every figure.
#[test]
fn namespaces_and_counts() {
    let dir = tempfile::tempdir().unwrap();
    let events = events();
    write_dataset(dir.path(), &events);
    let stats = stats::stats(dir.path(), &GroupBy::Namespace).unwrap();
    assert_eq!(stats.by, "namespace");
    let names: Vec<&str> = stats.groups.iter().map(|g| g.group.as_str()).collect();
    assert_eq!(names, ["web", NO_NAMESPACE], "most requests first");
    Expected::of(events.iter().filter(|e| e.namespace.is_some())).check(&stats.groups[0]);
    Expected::of(events.iter().filter(|e| e.namespace.is_none())).check(&stats.groups[1]);
    Expected::of(events.iter()).check(&stats.overall);
    assert_eq!(stats.overall.group, stats::OVERALL);

    let table = stats::render_table(&stats);
    assert_eq!(table.lines().count(), 2 + 2 + 1, "{table}");
}

/// A function of the key groups the rows (the hook key categories plug into); a key that
/// lives in two namespaces is two objects in its group.
#[test]
fn groups_by_a_function_of_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let events = events();
    write_dataset(dir.path(), &events);
    let family = |key: &str| key.split(':').next().unwrap_or_default().to_owned();
    let by = GroupBy::key("family", family);
    let stats = stats::stats(dir.path(), &by).unwrap();
    assert_eq!(stats.by, "family");
    let mut names: Vec<&str> = stats.groups.iter().map(|g| g.group.as_str()).collect();
    names.sort_unstable();
    assert_eq!(names, ["session", "views/page"]);
    for group in &stats.groups {
        Expected::of(events.iter().filter(|e| family(&e.key) == group.group)).check(group);
    }
    Expected::of(events.iter()).check(&stats.overall);

    let overall_only = stats::stats(dir.path(), &GroupBy::None).unwrap();
    assert!(overall_only.groups.is_empty());
    assert_eq!(overall_only.overall.requests, stats.overall.requests);
}

/// A dataset directory without Parquet files, or no directory at all, is an error naming it.
#[test]
fn empty_and_missing_datasets() {
    let dir = tempfile::tempdir().unwrap();
    let error = stats::stats(dir.path(), &GroupBy::Namespace).unwrap_err();
    assert!(matches!(error, StatsError::EmptyDataset(_)), "{error:?}");
    assert!(
        error
            .to_string()
            .contains(&dir.path().display().to_string())
    );

    let missing = dir.path().join("nowhere");
    let error = stats::stats(&missing, &GroupBy::Namespace).unwrap_err();
    assert!(matches!(error, StatsError::List { .. }), "{error:?}");
    assert!(error.to_string().contains(&missing.display().to_string()));
}
