//! Every layered setting of `warmer run`, declared once: its variable, its field in the file,
//! how its text is read, and its default. Adding a setting is a declaration here, a field in
//! [`RunFlags`](super::RunFlags) and one line in [`resolve`](super::resolve).

use std::path::PathBuf;
use std::time::Duration;

use crate::env_vars;
use schemas::Shard;

use crate::store::Hashing;

use super::layers::{List, Setting};
use super::parse::{
    parse_bool, parse_count, parse_duration, parse_latency_multiple, parse_percent,
    parse_rate_size, parse_size,
};

/// The embedded default target: a Django-style cache table in a local SQLite file.
pub const DEFAULT_TARGET: &str = "sqlite://cachewarm-cache.sqlite3?table=cachewarm_cache";
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(300);
/// Entries per pipelined batch. 2,000 rather than 500: every batch costs the same task wakeups,
/// channel hops, log line and progress post whatever its size, and on a loaded 2-core machine
/// the write phase of 1 M entries into Redis went from ~7 s to ~5 s (docs/benchmarks.md). A
/// batch of 2 KiB values is then 4 MB on the wire, well within what Redis and memcached take
/// from one client.
pub const DEFAULT_BATCH_SIZE: u32 = 2000;
/// Write batches in flight per target. One batch on the wire while the next is being encoded
/// and the one before is being counted keeps the store busy without a pause for each round
/// trip; more only queues in the socket buffers.
pub const DEFAULT_CONCURRENCY: u32 = 3;
pub const DEFAULT_MIN_TTL: Duration = Duration::from_secs(60);
pub const DEFAULT_DEFAULT_TTL: Duration = Duration::from_secs(3600);
pub const DEFAULT_MAX_FILL: f64 = 0.5;
/// A store's used memory is never pushed past this share of its capacity: what warming adds
/// must leave the live data room to grow without evictions.
pub const DEFAULT_HIGH_WATER: f64 = 0.9;
/// Retries of a failed store call: with backoff from 100 ms doubling (and jitter), four
/// retries wait out about 1.5–3 s, long enough for a restarting Redis or a failover.
pub const DEFAULT_RETRIES: u32 = 4;
/// The latency multiple above which the run slows down: the goal for live readers.
pub const DEFAULT_LATENCY_MULTIPLE: f64 = 1.5;
pub const DEFAULT_RUNS_DIR: &str = "cachewarm-runs";
/// How long a loader may go without a line while it owes answers. A loader computes values
/// with the application's code (database queries, template rendering): seconds per key are
/// possible, half a minute without any answer is a loader that hangs.
pub const DEFAULT_LOADER_TIMEOUT: Duration = Duration::from_secs(30);
/// The largest value taken from a loader: memcached's own item limit is 1 MiB by default and
/// Redis takes up to 512 MiB; 16 MiB keeps a run's memory (values of a batch in flight)
/// bounded while passing any value a cache is sensibly used for.
pub const DEFAULT_MAX_VALUE_SIZE: u64 = 16 << 20;
/// Read-back validation is off unless asked for (`--verify`): at 100 k entries (100 B values,
/// replica → Redis, 3 rounds each, docs/benchmarks.md) it cost 11% of the run's time (median
/// 9.1 s against 8.2 s; 22% of the write phase), above the 10% the issue allows a default.
pub const DEFAULT_VERIFY: bool = false;

/// A number or boolean field, as text for its setting's parser.
fn text<T: ToString>(value: Option<T>) -> Option<String> {
    value.map(|v| v.to_string())
}

/// Text taken as it is: a path or a URL.
fn verbatim<T: From<String>>(text: &str) -> Result<T, String> {
    Ok(T::from(text.to_owned()))
}

pub(super) const ENABLED: Setting<bool> = Setting {
    var: Some(env_vars::ENABLED),
    field: "enabled",
    file: |c| text(c.enabled),
    parse: parse_bool,
};
pub(super) const MANIFEST: Setting<PathBuf> = Setting {
    var: Some(env_vars::MANIFEST),
    field: "manifest",
    file: |c| c.manifest.clone(),
    parse: verbatim,
};
pub(super) const SOURCE: Setting<String> = Setting {
    var: Some(env_vars::SOURCE),
    field: "source",
    file: |c| c.source.clone(),
    parse: verbatim,
};
pub(super) const TARGETS: List = List {
    var: env_vars::TARGETS,
    field: "targets",
    file: |c| c.targets.clone(),
    // A memcached URL has commas of its own.
    split: |text| text.split_whitespace().map(str::to_owned).collect(),
};
pub(super) const CATEGORIES: List = List {
    var: env_vars::CATEGORIES,
    field: "categories",
    file: |c| c.categories.clone(),
    split: |text| {
        text.split(',')
            .map(|c| c.trim().to_owned())
            .filter(|c| !c.is_empty())
            .collect()
    },
};
/// How the application's client spreads keys over several memcached servers, for the
/// memcached URLs (source and targets) that do not say it themselves. It has no flag.
pub(super) const MEMCACHED_HASHING: Setting<Hashing> = Setting {
    var: Some(env_vars::MEMCACHED_HASHING),
    field: "memcached_hashing",
    file: |c| c.memcached_hashing.clone(),
    parse: |t| t.parse::<Hashing>(),
};
pub(super) const TIMEOUT: Setting<Duration> = Setting {
    var: Some(env_vars::TIMEOUT),
    field: "timeout",
    file: |c| c.timeout.clone(),
    parse: parse_duration,
};
pub(super) const MIN_TTL: Setting<Duration> = Setting {
    var: Some(env_vars::MIN_TTL),
    field: "min_ttl",
    file: |c| c.min_ttl.clone(),
    parse: parse_duration,
};
pub(super) const DEFAULT_TTL: Setting<Duration> = Setting {
    var: Some(env_vars::DEFAULT_TTL),
    field: "default_ttl",
    file: |c| c.default_ttl.clone(),
    parse: parse_duration,
};
pub(super) const MAX_FILL: Setting<f64> = Setting {
    var: Some(env_vars::MAX_FILL),
    field: "max_fill",
    file: |c| c.max_fill.clone(),
    parse: parse_percent,
};
pub(super) const BANDWIDTH: Setting<u64> = Setting {
    var: Some(env_vars::BANDWIDTH),
    field: "bandwidth",
    file: |c| c.bandwidth.clone(),
    parse: parse_rate_size,
};
pub(super) const CONCURRENCY: Setting<u32> = Setting {
    var: Some(env_vars::CONCURRENCY),
    field: "concurrency",
    file: |c| text(c.concurrency),
    parse: |t| parse_count(t, 1, 64),
};
pub(super) const BATCH_SIZE: Setting<u32> = Setting {
    var: Some(env_vars::BATCH_SIZE),
    field: "batch_size",
    file: |c| text(c.batch_size),
    parse: |t| parse_count(t, 1, 100_000),
};
pub(super) const RATE: Setting<u64> = Setting {
    var: Some(env_vars::RATE),
    field: "rate",
    file: |c| text(c.rate),
    parse: |t| parse_count(t, 1, u64::MAX),
};
pub(super) const RUNS_DIR: Setting<PathBuf> = Setting {
    var: Some(env_vars::RUNS_DIR),
    field: "runs_dir",
    file: |c| c.runs_dir.clone(),
    parse: verbatim,
};
pub(super) const STRICT: Setting<bool> = Setting {
    var: Some(env_vars::STRICT),
    field: "strict",
    file: |c| text(c.strict),
    parse: parse_bool,
};
/// It has no variable; its flag is `--keep-writing-on-evictions`, which turns it off.
pub(super) const STOP_ON_EVICTIONS: Setting<bool> = Setting {
    var: None,
    field: "stop_on_evictions",
    file: |c| text(c.stop_on_evictions),
    parse: parse_bool,
};
pub(super) const HIGH_WATER: Setting<f64> = Setting {
    var: Some(env_vars::HIGH_WATER),
    field: "high_water",
    file: |c| c.high_water.clone(),
    parse: parse_percent,
};
pub(super) const RETRIES: Setting<u32> = Setting {
    var: Some(env_vars::RETRIES),
    field: "retries",
    file: |c| text(c.retries),
    parse: |t| parse_count(t, 0, 20),
};
pub(super) const LATENCY_MULTIPLE: Setting<Option<f64>> = Setting {
    var: Some(env_vars::LATENCY_MULTIPLE),
    field: "latency_multiple",
    file: |c| text(c.latency_multiple.as_ref()),
    parse: parse_latency_multiple,
};
pub(super) const LOADER_WORKERS: Setting<u32> = Setting {
    var: Some(env_vars::LOADER_WORKERS),
    field: "loader_workers",
    file: |c| text(c.loader_workers),
    parse: |t| parse_count(t, 1, 256),
};
pub(super) const LOADER_TIMEOUT: Setting<Duration> = Setting {
    var: Some(env_vars::LOADER_TIMEOUT),
    field: "loader_timeout",
    file: |c| c.loader_timeout.clone(),
    parse: parse_duration,
};
pub(super) const MAX_VALUE_SIZE: Setting<u64> = Setting {
    var: Some(env_vars::MAX_VALUE_SIZE),
    field: "max_value_size",
    file: |c| c.max_value_size.clone(),
    parse: parse_size,
};
pub(super) const SHARD: Setting<Shard> = Setting {
    var: Some(env_vars::SHARD),
    field: "shard",
    file: |c| c.shard.clone(),
    parse: |t| t.parse::<Shard>(),
};
pub(super) const SHARDS: Setting<u32> = Setting {
    var: Some(env_vars::SHARDS),
    field: "shards",
    file: |c| text(c.shards),
    parse: |t| parse_count(t, 1, u64::from(schemas::shard::MAX_SHARDS)),
};
