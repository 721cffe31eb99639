//! `cachewarm.toml`: the configuration file both programs read.
//!
//! Durations and sizes are strings in the units people write (`6h`, `90s`, `64MiB`); the
//! programs parse them when they resolve their settings, so a bad value is refused with the file
//! and the field named. Unknown keys are errors everywhere.
//!
//! ```toml
//! [rank]
//! half_life = "6h"          # a read's weight halves every 6 hours; "off", or "auto" (the default)
//! window = "7d"             # keys not read in the last 7 days of the dataset are left out
//! min_requests = 2          # keys read fewer times are one-hit wonders, left out
//! store = "memcached"       # the target store kind: key rules and per-item overhead
//! max_budget_share = 0.5    # the budget never exceeds this share of a known capacity
//! presets = ["django"]      # built-in category rules, tried after the file's own
//!
//! [[category]]
//! name = "sessions"
//! prefix = [":1:django.contrib.sessions.cache"]
//! budget_share = 0.25       # at most a quarter of the budget
//! ttl = "30m"               # the TTL the warmer gives these keys (unless the source has one)
//!
//! [warmer]                  # `warmer run` in every environment
//! manifest = "/data/cachewarm/manifest.json.zst"
//! timeout = "5m"
//! rate = 5000               # writes per second per target
//!
//! [env.production]          # layered over [warmer] when the environment is `production`
//! source = "redis://old-primary:6379"
//! targets = ["redis://new-primary:6379"]
//! max_fill = "40%"
//!
//! [env.development]
//! enabled = true            # development and test are off unless turned on
//! ```

use std::collections::BTreeMap;

use std::path::{Path, PathBuf};

/// The config file read when none is named, in the working directory.
pub const DEFAULT_FILE: &str = "cachewarm.toml";

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Why a config file could not be read.
#[derive(Debug)]
pub enum ReadError {
    /// The file could not be read.
    Io(std::io::Error),
    /// It is not a valid config; the message names the field, line and column.
    Invalid(String),
}

/// Reads the config at `path`, or without one `./cachewarm.toml` when it exists; the
/// defaults, and no path, when there is none. An error comes with the file it is about.
pub fn load(path: Option<&Path>) -> Result<(Config, Option<PathBuf>), (PathBuf, ReadError)> {
    let path = match path {
        Some(path) => path.to_path_buf(),
        None if Path::new(DEFAULT_FILE).is_file() => PathBuf::from(DEFAULT_FILE),
        None => return Ok((Config::default(), None)),
    };
    match read(&path) {
        Ok(config) => Ok((config, Some(path))),
        Err(error) => Err((path, error)),
    }
}

/// Reads and parses the config file at `path`. Both programs read it this way, so a file one
/// accepts the other accepts too.
pub fn read(path: &Path) -> Result<Config, ReadError> {
    let text = std::fs::read_to_string(path).map_err(ReadError::Io)?;
    toml::from_str(&text).map_err(|e| ReadError::Invalid(e.to_string().trim_end().to_owned()))
}

/// The whole file. Each program reads the sections it knows; every section is optional.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// How `analyzer rank` scores, excludes and packs keys.
    #[serde(default)]
    pub rank: RankConfig,
    /// Category rules, tried in order: the first that matches a key names its category. Keys
    /// no rule matches are in the category `default`.
    #[serde(default, rename = "category")]
    pub categories: Vec<CategoryRule>,
    /// How `warmer run` warms, in every environment.
    #[serde(default)]
    pub warmer: WarmerConfig,
    /// Per-environment settings (`[env.production]`), layered over `[warmer]` when the run's
    /// environment profile has that name.
    #[serde(default)]
    pub env: BTreeMap<String, WarmerConfig>,
}

/// The `[warmer]` section, and each `[env.NAME]` section. Every field is optional; a field set
/// in `[env.NAME]` wins over `[warmer]`, the `CACHEWARM_*` variables and flags over both.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WarmerConfig {
    /// Whether `warmer run` warms at all. Default: true, except in the `development` and
    /// `test` environments.
    pub enabled: Option<bool>,
    /// The manifest to warm from (`.json` or `.json.zst`).
    pub manifest: Option<String>,
    /// Where values come from: a store URL or a snapshot file.
    pub source: Option<String>,
    /// The stores to warm.
    pub targets: Option<Vec<String>>,
    /// The whole run ends by then (`5m`).
    pub timeout: Option<String>,
    /// Write batches in flight per target. Default 3.
    pub concurrency: Option<u32>,
    /// Writes per second per target. Default: no limit.
    pub rate: Option<u64>,
    /// Bytes (key + value) per second per target (`2MiB`). Default: no limit.
    pub bandwidth: Option<String>,
    /// The most of a target's capacity the run may fill (`50%`).
    pub max_fill: Option<String>,
    /// Only entries of these manifest categories are warmed. Default: every category.
    pub categories: Option<Vec<String>>,
    /// Entries per pipelined batch. Default 500.
    pub batch_size: Option<u32>,
    /// Entries with less time to live are skipped (`60s`).
    pub min_ttl: Option<String>,
    /// The TTL of entries neither the source nor the manifest gives one (`1h`).
    pub default_ttl: Option<String>,
    /// Where run directories are created. Default `cachewarm-runs`.
    pub runs_dir: Option<String>,
    /// Exit 1 when a store or the source failed.
    pub strict: Option<bool>,
    /// Stop writing to a target whose eviction counter grows during the run. Default true.
    pub stop_on_evictions: Option<bool>,
    /// Never push a target's used memory (live data included) past this share of its
    /// capacity (`90%`). Default 90%.
    pub high_water: Option<String>,
    /// Times a failed store call is made again, with exponential backoff and jitter, before
    /// its batch counts as failed. Default 4.
    pub retries: Option<u32>,
    /// Slow writing down (AIMD on the write rate) when the store's latency rises above this
    /// multiple of its latency before warming (`1.5`), or `"off"`. Default 1.5.
    pub latency_multiple: Option<LatencyMultiple>,
    /// How the application's memcached client spreads keys over several servers, for
    /// memcached URLs with more than one server that do not say it themselves
    /// (`?hashing=`): `ketama` (pylibmc with `behaviors={"ketama": True}`, libmemcached),
    /// `dalli` (Ruby Dalli, Rails `:mem_cache_store`) or `rendezvous` (pymemcache
    /// `HashClient`, Django `PyMemcacheCache`). No default: a wrong guess would put keys
    /// where the application never reads them.
    pub memcached_hashing: Option<String>,
    /// Loader processes run side by side for an `exec:` source. Default: the number of cores.
    pub loader_workers: Option<u32>,
    /// The longest a loader may go without writing a line while it owes answers (`30s`);
    /// past it the loader is restarted and its request asked again. Default 30s.
    pub loader_timeout: Option<String>,
    /// The largest value the run takes from an `exec:` loader (`16MiB`), the entries of one
    /// manifest key together; a larger one is skipped and counted `failed`. Default 16MiB.
    pub max_value_size: Option<String>,
    /// The shard of the manifest this warmer takes, `index/count` (`"2/4"`, index from 0): only
    /// the entries whose key hashes to it (see `schemas::shard`). Default: the whole manifest.
    pub shard: Option<String>,
    /// How many shards the manifest is split into; the index then comes from
    /// `JOB_COMPLETION_INDEX` (a Kubernetes indexed Job) unless `shard` gives it.
    pub shards: Option<u32>,
}

/// A latency multiple, or `"off"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum LatencyMultiple {
    Multiple(f64),
    Text(String),
}

impl std::fmt::Display for LatencyMultiple {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LatencyMultiple::Multiple(m) => write!(f, "{m}"),
            LatencyMultiple::Text(text) => f.write_str(text),
        }
    }
}

/// The `[rank]` section.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RankConfig {
    /// Half-life of the recency weight of a read (`6h`), `off` to weigh every read alike, or
    /// `auto`: the candidate a backtest on the dataset's own window finds best. Default: `auto`.
    pub half_life: Option<String>,
    /// Keys whose last read is older than this span before the dataset's last event are left
    /// out (`7d`). Default: no limit.
    pub window: Option<String>,
    /// Keys read fewer times than this are one-hit wonders and left out. Default 2.
    pub min_requests: Option<u64>,
    /// The kind of store the manifest is for: `redis`, `memcached` or `sql`. Keys that store
    /// cannot hold are left out, and its per-item overhead is counted. Default: taken from
    /// `--capacity-from`, else none (only empty keys are invalid, overhead 50 bytes).
    pub store: Option<String>,
    /// Bytes a store spends per item beyond key and value; default by store kind.
    pub item_overhead: Option<u64>,
    /// The largest share of a known capacity the budget may take. Default 0.5.
    pub max_budget_share: Option<f64>,
    /// Built-in category rules to try after the file's own: `django`, `rails`.
    #[serde(default)]
    pub presets: Vec<String>,
}

/// One `[[category]]` rule: which keys it matches, and how the category is treated.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CategoryRule {
    /// The category's name. With `regex` rules it may use the match's groups: `rails.${1}`.
    pub name: String,
    /// Keys starting with any of these.
    #[serde(default)]
    pub prefix: Vec<String>,
    /// Keys matching any of these shell patterns (`*`, `?`, `[...]`).
    #[serde(default)]
    pub glob: Vec<String>,
    /// Keys matching any of these regular expressions (Rust `regex` syntax, unanchored).
    #[serde(default)]
    pub regex: Vec<String>,
    /// Whether keys of this category are warmed at all. Default true.
    pub enabled: Option<bool>,
    /// The largest share of the budget this category may take, from 0 to 1. Default: no
    /// limit of its own.
    pub budget_share: Option<f64>,
    /// Keys of this category read fewer times are left out. Default: `[rank] min_requests`.
    pub min_requests: Option<u64>,
    /// The TTL the warmer gives this category's keys when the source has none (`30m`).
    pub ttl: Option<String>,
    /// Whether a key of this category is a secret (a session id is a login token): reports,
    /// logs and the run history show it only as its category and a short keyed hash. Default
    /// false; true for the `django.sessions` and `rails.sessions` presets.
    pub sensitive: Option<bool>,
}
