//! Stats: workload characterization of the dataset, per group, with the columns of Twitter's
//! published per-cluster table (Yang, Yue, Vinayak, OSDI'20), so a workload can be set beside
//! those clusters.
//!
//! polars scans the dataset lazily and aggregates it per cache object (a `namespace`, `key`
//! pair), and per object, operation and TTL; the objects are then assigned to groups and
//! merged here. Memory is bounded by the number of distinct objects, as for ranking.
//!
//! Groups come from a [`GroupBy`]: the `namespace` column, nothing (only the overall row), or
//! any function of the key ([`GroupBy::Key`]), which is the hook for grouping by key category.
//!
//! # Layout
//!
//! - `scan`: the polars queries over the dataset.
//! - [`zipf`]: the Zipf alpha estimator.
//! - [`table`]: the text table and the labels it shares with Twitter's table.

mod scan;
pub mod table;
pub mod zipf;

use std::borrow::Cow;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::Serialize;

pub use table::{duration_label, render_table};

/// The name of the group of events whose `namespace` is null.
pub const NO_NAMESPACE: &str = "-";
/// The name of the row over the whole dataset.
pub const OVERALL: &str = "all";
/// How many TTLs the TTL mix lists, most requested first (Twitter's table lists up to 10).
pub const TOP_TTLS: usize = 10;

/// A key's group: called once per distinct key of each aggregate (so a few times per key),
/// it must give the same answer every time.
pub type KeyGrouper = dyn Fn(&str) -> String + Send + Sync;

/// How events are grouped into rows; the overall row is always computed too.
#[derive(Clone, Default)]
pub enum GroupBy {
    /// One group per value of the `namespace` column; events without one form the group
    /// [`NO_NAMESPACE`].
    #[default]
    Namespace,
    /// No groups: only the overall row.
    None,
    /// A group computed from the key, e.g. its category under the category rules. `name` says
    /// what the groups are (it is reported as [`Stats::by`]).
    Key {
        name: String,
        group: Arc<KeyGrouper>,
    },
}

impl GroupBy {
    /// Groups by `group(key)`, reported as grouped by `name`.
    pub fn key(name: &str, group: impl Fn(&str) -> String + Send + Sync + 'static) -> GroupBy {
        GroupBy::Key {
            name: name.to_owned(),
            group: Arc::new(group),
        }
    }

    /// What the groups are, as reported: `namespace`, `none`, or a key grouping's name.
    pub fn name(&self) -> &str {
        match self {
            GroupBy::Namespace => "namespace",
            GroupBy::None => "none",
            GroupBy::Key { name, .. } => name,
        }
    }

    /// The group of an object, or `None` when there are no groups.
    fn group_of<'a>(&self, namespace: Option<&'a str>, key: &str) -> Option<Cow<'a, str>> {
        match self {
            GroupBy::Namespace => Some(Cow::Borrowed(namespace.unwrap_or(NO_NAMESPACE))),
            GroupBy::None => None,
            GroupBy::Key { group, .. } => Some(Cow::Owned(group(key))),
        }
    }
}

impl std::fmt::Debug for GroupBy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "GroupBy({})", self.name())
    }
}

/// Errors while computing stats.
#[derive(Debug, thiserror::Error)]
pub enum StatsError {
    #[error(
        "dataset `{0}` holds no Parquet files\n  hint: write it first with \
         `analyzer ingest LOGS --out {0}`"
    )]
    EmptyDataset(PathBuf),
    #[error("failed to list the dataset `{path}`")]
    List {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to aggregate the dataset `{path}`")]
    Polars {
        path: PathBuf,
        #[source]
        source: polars::error::PolarsError,
    },
}

/// The stats of a dataset: one row per group and the overall row.
#[derive(Debug, Clone, Serialize)]
pub struct Stats {
    pub dataset: PathBuf,
    /// What the groups are: `namespace`, `none`, or the name of a key grouping.
    pub by: String,
    /// The groups, most requests first (ties by name).
    pub groups: Vec<GroupStats>,
    /// The whole dataset.
    pub overall: GroupStats,
}

/// One operation's share of a group's requests.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OpShare {
    pub op: String,
    pub requests: u64,
    /// Of all the group's requests.
    pub share: f64,
}

/// One TTL's share of a group's requests that carry a TTL.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TtlShare {
    pub ttl_s: u32,
    /// As Twitter's table writes it: `240s`, `1.8h`, `4d`.
    pub label: String,
    pub requests: u64,
    /// Of the group's requests that carry a TTL.
    pub share: f64,
}

/// The workload of one group. A request is one operation (a row stands for `count` of them);
/// a key is a distinct (`namespace`, `key`) pair, i.e. one cache object.
#[derive(Debug, Clone, Serialize)]
pub struct GroupStats {
    pub group: String,
    pub requests: u64,
    pub keys: u64,
    pub first_seen: DateTime<Utc>,
    pub last_seen: DateTime<Utc>,
    /// Seconds from the first to the last request.
    pub span_s: f64,
    /// Requests per second over the span; none when the span is zero.
    pub requests_per_s: Option<f64>,
    /// Thousands of requests per second, the unit of Twitter's table.
    pub kqps: Option<f64>,
    /// Requests per key.
    pub mean_frequency: f64,
    /// Keys requested exactly once (any operation), as in Twitter's table.
    pub one_hit_wonders: u64,
    /// `one_hit_wonders / keys`.
    pub one_hit_wonder_ratio: f64,
    /// The share of requests that are the first request of their key: `keys / requests`.
    pub compulsory_miss_ratio: f64,
    /// Reads (`get`) whose outcome the log gives.
    pub reads_with_outcome: u64,
    pub read_misses: u64,
    /// `read_misses / reads_with_outcome`; none when no read outcome was logged.
    pub production_miss_ratio: Option<f64>,
    /// The Zipf exponent of key popularity (see [`zipf`]); none when too few keys are
    /// requested often enough to fit it.
    pub zipf_alpha: Option<f64>,
    /// How many of the most requested keys the Zipf fit used.
    pub zipf_fit_keys: u64,
    /// Mean key bytes per request.
    pub key_size_mean: f64,
    /// Mean value bytes over the requests that logged a value size; none when none did.
    pub value_size_mean: Option<f64>,
    /// Every operation, most requests first (ties by name).
    pub ops: Vec<OpShare>,
    /// Requests that carry a TTL (writes, mostly).
    pub requests_with_ttl: u64,
    /// The [`TOP_TTLS`] most frequent TTLs, most requests first (ties by shorter TTL).
    pub ttls: Vec<TtlShare>,
}

/// Computes the stats of the dataset at `dataset`, grouped by `by`.
pub fn stats(dataset: &Path, by: &GroupBy) -> Result<Stats, StatsError> {
    let files = crate::dataset::data_files(dataset).map_err(|source| StatsError::List {
        path: dataset.to_path_buf(),
        source,
    })?;
    if files.is_empty() {
        return Err(StatsError::EmptyDataset(dataset.to_path_buf()));
    }
    let polars_error = |source| StatsError::Polars {
        path: dataset.to_path_buf(),
        source,
    };
    let mut overall = Accumulator::default();
    let mut groups: HashMap<String, Accumulator> = HashMap::new();
    scan::objects(&files, |object| {
        overall.add_object(&object);
        if let Some(name) = by.group_of(object.namespace, object.key) {
            group_mut(&mut groups, name).add_object(&object);
        }
    })
    .map_err(polars_error)?;
    scan::mix(&files, |mix| {
        overall.add_mix(&mix);
        if let Some(name) = by.group_of(mix.namespace, mix.key) {
            group_mut(&mut groups, name).add_mix(&mix);
        }
    })
    .map_err(polars_error)?;
    let mut groups: Vec<GroupStats> = groups
        .into_iter()
        .map(|(name, acc)| acc.finish(name))
        .collect();
    groups.sort_by(|a, b| b.requests.cmp(&a.requests).then(a.group.cmp(&b.group)));
    Ok(Stats {
        dataset: dataset.to_path_buf(),
        by: by.name().to_owned(),
        groups,
        overall: overall.finish(OVERALL.to_owned()),
    })
}

/// The accumulator of the group `name`, created when missing; looked up first, since most
/// objects join a group that exists already and need no owned name.
fn group_mut<'m>(
    groups: &'m mut HashMap<String, Accumulator>,
    name: Cow<'_, str>,
) -> &'m mut Accumulator {
    if !groups.contains_key(name.as_ref()) {
        groups.insert(name.to_string(), Accumulator::default());
    }
    groups.get_mut(name.as_ref()).expect("inserted above")
}

/// What the dataset says about one object (see [`scan::objects`]).
#[derive(Debug)]
struct Object<'a> {
    namespace: Option<&'a str>,
    key: &'a str,
    requests: u64,
    first_us: i64,
    last_us: i64,
    reads_with_outcome: u64,
    read_misses: u64,
    value_bytes: u64,
    requests_with_value_size: u64,
}

/// The requests of one object with one operation and one TTL (see [`scan::mix`]).
#[derive(Debug)]
struct Mix<'a> {
    namespace: Option<&'a str>,
    key: &'a str,
    op: &'a str,
    ttl_s: Option<u32>,
    requests: u64,
}

/// One group's figures while the objects stream past.
#[derive(Debug, Default)]
struct Accumulator {
    requests: u64,
    keys: u64,
    one_hit_wonders: u64,
    first_us: Option<i64>,
    last_us: Option<i64>,
    key_bytes: u128,
    reads_with_outcome: u64,
    read_misses: u64,
    value_bytes: u128,
    requests_with_value_size: u64,
    /// Request counts of the keys in the Zipf fit's head.
    head: Vec<u64>,
    ops: HashMap<String, u64>,
    ttls: HashMap<u32, u64>,
}

impl Accumulator {
    fn add_object(&mut self, object: &Object<'_>) {
        self.requests += object.requests;
        self.keys += 1;
        if object.requests == 1 {
            self.one_hit_wonders += 1;
        }
        self.first_us = Some(
            self.first_us
                .map_or(object.first_us, |t| t.min(object.first_us)),
        );
        self.last_us = Some(
            self.last_us
                .map_or(object.last_us, |t| t.max(object.last_us)),
        );
        self.key_bytes += object.key.len() as u128 * u128::from(object.requests);
        self.reads_with_outcome += object.reads_with_outcome;
        self.read_misses += object.read_misses;
        self.value_bytes += u128::from(object.value_bytes);
        self.requests_with_value_size += object.requests_with_value_size;
        if object.requests >= zipf::HEAD_MIN_REQUESTS {
            self.head.push(object.requests);
        }
    }

    fn add_mix(&mut self, mix: &Mix<'_>) {
        // Looked up before inserting: an owned key per object and operation would be wasted.
        match self.ops.get_mut(mix.op) {
            Some(requests) => *requests += mix.requests,
            None => {
                self.ops.insert(mix.op.to_owned(), mix.requests);
            }
        }
        if let Some(ttl) = mix.ttl_s {
            *self.ttls.entry(ttl).or_default() += mix.requests;
        }
    }

    fn finish(mut self, group: String) -> GroupStats {
        let ratio = |part: f64, whole: f64| if whole > 0.0 { part / whole } else { 0.0 };
        let requests = self.requests as f64;
        let keys = self.keys as f64;
        let first_us = self.first_us.unwrap_or(0);
        let last_us = self.last_us.unwrap_or(0);
        let span_s = (last_us - first_us) as f64 / 1e6;
        let requests_per_s = (span_s > 0.0).then(|| requests / span_s);
        let instant = |us: i64| DateTime::from_timestamp_micros(us).unwrap_or_default();

        let mut ops: Vec<OpShare> = self
            .ops
            .into_iter()
            .map(|(op, n)| OpShare {
                op,
                requests: n,
                share: ratio(n as f64, requests),
            })
            .collect();
        ops.sort_by(|a, b| b.requests.cmp(&a.requests).then(a.op.cmp(&b.op)));

        let requests_with_ttl: u64 = self.ttls.values().sum();
        let mut ttls: Vec<TtlShare> = self
            .ttls
            .into_iter()
            .map(|(ttl_s, n)| TtlShare {
                ttl_s,
                label: duration_label(u64::from(ttl_s)),
                requests: n,
                share: ratio(n as f64, requests_with_ttl as f64),
            })
            .collect();
        ttls.sort_by(|a, b| b.requests.cmp(&a.requests).then(a.ttl_s.cmp(&b.ttl_s)));
        ttls.truncate(TOP_TTLS);

        self.head.sort_unstable_by(|a, b| b.cmp(a));
        let fit = zipf::fit_head(&self.head);

        GroupStats {
            group,
            requests: self.requests,
            keys: self.keys,
            first_seen: instant(first_us),
            last_seen: instant(last_us),
            span_s,
            requests_per_s,
            kqps: requests_per_s.map(|rate| rate / 1000.0),
            mean_frequency: ratio(requests, keys),
            one_hit_wonders: self.one_hit_wonders,
            one_hit_wonder_ratio: ratio(self.one_hit_wonders as f64, keys),
            compulsory_miss_ratio: ratio(keys, requests),
            reads_with_outcome: self.reads_with_outcome,
            read_misses: self.read_misses,
            production_miss_ratio: (self.reads_with_outcome > 0)
                .then(|| ratio(self.read_misses as f64, self.reads_with_outcome as f64)),
            zipf_alpha: fit.map(|fit| fit.alpha),
            zipf_fit_keys: fit.map_or(0, |fit| fit.keys),
            key_size_mean: ratio(self.key_bytes as f64, requests),
            value_size_mean: (self.requests_with_value_size > 0).then(|| {
                ratio(
                    self.value_bytes as f64,
                    self.requests_with_value_size as f64,
                )
            }),
            ops,
            requests_with_ttl,
            ttls,
        }
    }
}
