//! The flags of `warmer run`, parsed by clap straight into [`RunFlags`]: the top layer of the
//! settings, each `None` (or empty, or false) where it was not given so lower layers can fill
//! it.

use std::path::PathBuf;
use std::time::Duration;

use super::parse;

/// The flags of `warmer run`, as given.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct RunFlags {
    /// The config file [default: CACHEWARM_CONFIG, else ./cachewarm.toml when present].
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// The manifest written by `analyzer rank` (`.json` or `.json.zst`).
    #[arg(long)]
    pub manifest: Option<PathBuf>,
    /// Where values come from: a replica store URL (redis://, memcached://, sqlite://), a
    /// snapshot file (.parquet), or `exec:COMMAND ARGS…`: loader processes that compute
    /// values with the application's own code (loader protocol v1, see the README).
    #[arg(long)]
    pub source: Option<String>,
    /// A store to warm; repeat for several. Default: the embedded SQLite store
    /// `sqlite://cachewarm-cache.sqlite3` (table `cachewarm_cache`).
    #[arg(long = "target")]
    pub targets: Vec<String>,
    /// Count what would be written, write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Replace live entries too (the default keeps them).
    #[arg(long)]
    pub overwrite: bool,
    /// Stop cleanly after this long (`90s`, `5m`); the report counts what was not reached
    /// [default: 5m].
    #[arg(long, value_parser = duration)]
    pub timeout: Option<Duration>,
    /// Entries per pipelined batch [default: 2000].
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub batch_size: Option<u32>,
    /// Write batches in flight per target [default: 3].
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub concurrency: Option<u32>,
    /// At most this many writes per second per target [default: no limit].
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub rate: Option<u64>,
    /// At most this many key + value bytes per second per target (`4MiB`) [default: no limit].
    #[arg(long, value_parser = rate_size)]
    pub bandwidth: Option<u64>,
    /// Warm only entries of this manifest category; repeat for several [default: all].
    #[arg(long = "category")]
    pub categories: Vec<String>,
    /// Skip entries whose remaining TTL is shorter than this [default: 60s].
    #[arg(long, value_parser = duration)]
    pub min_ttl: Option<Duration>,
    /// TTL for entries when neither the source nor the manifest gives one [default: 1h].
    #[arg(long, value_parser = duration)]
    pub default_ttl: Option<Duration>,
    /// The most of a target's capacity (Redis maxmemory, memcached limit_maxbytes) the run
    /// may fill, as a percentage [default: 50%].
    #[arg(long, value_parser = percent)]
    pub max_fill: Option<f64>,
    /// Longest Redis key to write, in bytes [default: 65536].
    #[arg(long)]
    pub redis_max_key_bytes: Option<usize>,
    /// Run directories (report, checkpoint, written-keys logs) are created under this
    /// directory [default: cachewarm-runs].
    #[arg(long)]
    pub runs_dir: Option<PathBuf>,
    /// The environment profile; default from CACHEWARM_ENV, RAILS_ENV, RACK_ENV, DJANGO_ENV,
    /// APP_ENV. Warming is off in development and test unless turned on.
    #[arg(long = "env")]
    pub environment: Option<String>,
    /// Turn warming on or off, whatever the environment and config say.
    #[arg(long)]
    pub enabled: Option<bool>,
    /// Exit 1 when a store or the source failed, a loader included (by default the run exits
    /// 0 so a deploy never breaks because of warming).
    #[arg(long)]
    pub strict: bool,
    /// Keep writing to a store whose eviction counter grows during the run (by default the
    /// run stops writing to it and reports why).
    #[arg(long)]
    pub keep_writing_on_evictions: bool,
    /// Never push a target's used memory (live data included) past this share of its
    /// capacity [default: 90%].
    #[arg(long, value_parser = percent)]
    pub high_water: Option<f64>,
    /// Retries of a failed store call, with exponential backoff and jitter, before its batch
    /// counts as failed; three failed batches in a row open the store's circuit breaker
    /// [default: 4].
    #[arg(long, value_parser = clap::value_parser!(u32).range(0..=20))]
    pub retries: Option<u32>,
    /// Slow writing down when the store's latency rises above this multiple of its latency
    /// before warming, or `off` [default: 1.5].
    #[arg(long, value_parser = |t: &str| parse::parse_latency_multiple(t).map(Off))]
    pub latency_multiple: Option<Off<f64>>,
    /// Loader processes run side by side for an `exec:` source [default: the number of
    /// cores].
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=256))]
    pub loader_workers: Option<u32>,
    /// Restart a loader that writes no line for this long while it owes answers, and ask its
    /// keys again [default: 30s].
    #[arg(long, value_parser = duration)]
    pub loader_timeout: Option<Duration>,
    /// The largest value taken from a loader, a manifest key's entries together (`16MiB`);
    /// larger ones are skipped and counted failed [default: 16MiB].
    #[arg(long, value_parser = parse::parse_size)]
    pub max_value_size: Option<u64>,
    /// Continue an interrupted run: the run directory given, or without one the latest
    /// unfinished run of the same manifest and targets (a new run when there is none).
    #[arg(long, value_name = "RUN_DIR", num_args = 0..=1)]
    pub resume: Option<Option<PathBuf>>,
    /// The new run's id (used by --detach).
    #[arg(long, hide = true)]
    pub run_id: Option<String>,
    /// Measure the hit rate of live traffic over this long just before warming and again
    /// just after (`60s`, `5m`), from the targets' own read counters. The run takes the
    /// window, the warm, then the window again; --timeout bounds the warm only.
    #[arg(long, value_parser = duration)]
    pub observe: Option<Duration>,
    /// Compare the window after warming with this hit rate (`0.82` or `82%`) instead of
    /// measuring a window before warming.
    #[arg(long, value_parser = hit_rate)]
    pub baseline_hit_rate: Option<f64>,
    /// Write Prometheus metrics of the run to this file (for node_exporter's textfile
    /// collector; written atomically).
    #[arg(long)]
    pub metrics_file: Option<PathBuf>,
    /// Push the run's metrics to this Prometheus Pushgateway (`http://pushgateway:9091`).
    #[arg(long)]
    pub pushgateway: Option<String>,
    /// Do not append the run to the run history (`RUNS_DIR/runs.parquet`).
    #[arg(long)]
    pub no_history: bool,
    /// Copy values between stores of different kinds (Redis into memcached or SQL, or the
    /// other way round). Refused by default: each kind's application client encodes values its
    /// own way, so the copy would read back as other bytes (raw strings excepted).
    #[arg(long)]
    pub allow_cross_kind: bool,
    /// Read back every key written, after its batch, and compare value hash, client flags and
    /// TTL with what was sent; the report counts `verified` and `mismatched` [default: off:
    /// the store answers a read-back per write, and a run takes about twice as long].
    #[arg(long, overrides_with = "no_verify")]
    pub verify: bool,
    /// Do not read back what was written.
    #[arg(long, overrides_with = "verify")]
    pub no_verify: bool,
    /// Warm only this shard of the manifest, `index/count` (`2/4`, index from 0): the entries
    /// whose key hashes to it (first 8 bytes of the key's SHA-256, big-endian, modulo count).
    /// The budget, rate and bandwidth are split evenly between the shards [default: the whole
    /// manifest].
    #[arg(long, value_parser = |t: &str| t.parse::<schemas::Shard>())]
    pub shard: Option<schemas::Shard>,
    /// How many shards the manifest is split into; the index comes from JOB_COMPLETION_INDEX
    /// (set by Kubernetes in an indexed Job) unless --shard gives it.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=i64::from(schemas::shard::MAX_SHARDS)))]
    pub shards: Option<u32>,
    /// Wait this long between a batch's write and its read-back (a test's hook).
    #[arg(long, hide = true, value_parser = duration)]
    pub verify_delay: Option<Duration>,
}

/// A setting that may be `off` (clap reads `Option<Option<T>>` as a flag with an optional
/// value, so the inner option needs a type of its own).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Off<T>(pub Option<T>);

// The settings' own readers, for clap: their messages led by the text given.

fn duration(text: &str) -> Result<Duration, String> {
    parse::parse_duration(text).map_err(|e| format!("`{text}` is {e}"))
}

fn percent(text: &str) -> Result<f64, String> {
    parse::parse_percent(text).map_err(|e| format!("`{text}` is {e}"))
}

fn rate_size(text: &str) -> Result<u64, String> {
    parse::parse_rate_size(text).map_err(|e| format!("`{text}`: {e}"))
}

/// A hit rate: a fraction from 0 to 1 (`0.82`) or a percentage (`82%`).
fn hit_rate(text: &str) -> Result<f64, String> {
    let trimmed = text.trim();
    let rate = match trimmed.strip_suffix('%') {
        Some(number) => number.trim().parse::<f64>().map(|p| p / 100.0),
        None => trimmed.parse::<f64>(),
    };
    match rate {
        Ok(rate) if (0.0..=1.0).contains(&rate) => Ok(rate),
        _ => Err(format!(
            "`{text}` is not a hit rate; use a fraction between 0 and 1 (0.82) or a percentage (82%)"
        )),
    }
}
