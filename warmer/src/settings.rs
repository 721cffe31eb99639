//! Flags, `CACHEWARM_*` environment variables and `cachewarm.toml`, resolved into one
//! [`RunSettings`] before any work starts.
//!
//! Layers, lowest first: built-in defaults < the file's `[warmer]` < the file's `[env.NAME]`
//! for the run's environment profile < `CACHEWARM_*` variables < flags. The profile is
//! `--env`, else the first of [`PROFILE_VARIABLES`] that is set; warming is off in
//! `development` and `test` unless a layer turns it on. A value that cannot be used is refused
//! with where it came from: the file and field, or the variable, and the value.

use std::path::{Path, PathBuf};
use std::time::Duration;

use schemas::config::{Config, WarmerConfig};

use crate::run::{ResumeFrom, RunSettings};
use crate::store::{Hashing, KeyLimits, WriteMode};

use crate::env_vars;

/// Environment variables that name the environment profile, in order of precedence.
pub const PROFILE_VARIABLES: [&str; 5] = [
    env_vars::ENV,
    "RAILS_ENV",
    "RACK_ENV",
    "DJANGO_ENV",
    "APP_ENV",
];

/// Profiles in which warming is off unless configured on.
const OFF_BY_DEFAULT: [&str; 2] = ["development", "test"];

/// The config file read when none is named.
pub use schemas::config::DEFAULT_FILE as DEFAULT_CONFIG_FILE;
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

/// A setting that cannot be used, naming where it came from.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("cannot read the config file `{path}`")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("config file `{path}`: {message}")]
    Config { path: PathBuf, message: String },
    #[error("environment variable `{name}` is `{value}`: {message}")]
    Variable {
        name: &'static str,
        value: String,
        message: String,
    },
    #[error("{0}")]
    Missing(String),
}

/// The flags of `warmer run`, as given: `None` where a flag was not given, so lower layers
/// can fill it.
#[derive(Debug, Clone, Default)]
pub struct RunFlags {
    pub config: Option<PathBuf>,
    pub environment: Option<String>,
    pub enabled: Option<bool>,
    pub manifest: Option<PathBuf>,
    pub source: Option<String>,
    pub targets: Vec<String>,
    pub timeout: Option<Duration>,
    pub concurrency: Option<u32>,
    pub rate: Option<u64>,
    pub bandwidth: Option<u64>,
    pub max_fill: Option<f64>,
    pub categories: Vec<String>,
    pub batch_size: Option<u32>,
    pub min_ttl: Option<Duration>,
    pub default_ttl: Option<Duration>,
    pub runs_dir: Option<PathBuf>,
    pub strict: bool,
    pub dry_run: bool,
    pub overwrite: bool,
    pub redis_max_key_bytes: Option<usize>,
    pub keep_writing_on_evictions: bool,
    pub high_water: Option<f64>,
    pub retries: Option<u32>,
    /// `Some(None)`: adaptive throttling off.
    pub latency_multiple: Option<Option<f64>>,
    pub loader_workers: Option<u32>,
    pub loader_timeout: Option<Duration>,
    pub max_value_size: Option<u64>,
    pub resume: Option<ResumeFrom>,
    pub run_id: Option<String>,
    /// Copy between stores of different kinds.
    pub allow_cross_kind: bool,
    /// `--verify` / `--no-verify`; `None`: the default ([`DEFAULT_VERIFY`]).
    pub verify: Option<bool>,
    /// The test hook between a batch's write and its read-back.
    pub verify_delay: Option<Duration>,
    /// Live-traffic observation windows and the report's outputs.
    pub observe: Option<Duration>,
    pub baseline_hit_rate: Option<f64>,
    pub metrics_file: Option<PathBuf>,
    pub pushgateway: Option<String>,
    /// Do not append the run to `RUNS_DIR/runs.parquet`.
    pub no_history: bool,
}

/// What the settings came to.
#[derive(Debug, Clone)]
#[allow(clippy::large_enum_variant)]
pub enum Resolved {
    /// Warm with these settings; exit 1 on a store failure when `strict`.
    Run { settings: RunSettings, strict: bool },
    /// Warming is off here: exit 0 and say why.
    Disabled { reason: String },
}

/// The config file and where it came from.
#[derive(Debug, Clone, Default)]
pub struct LoadedConfig {
    pub config: Config,
    pub path: Option<PathBuf>,
}

/// Reads the config named by `--config`, else `CACHEWARM_CONFIG`, else `./cachewarm.toml` when
/// it exists; none is fine.
pub fn load_config(
    flag: Option<&Path>,
    var: &dyn Fn(&str) -> Option<String>,
) -> Result<LoadedConfig, SettingsError> {
    let path = flag
        .map(Path::to_path_buf)
        .or_else(|| var(env_vars::CONFIG).map(PathBuf::from));
    let (config, path) = schemas::config::load(path.as_deref()).map_err(|(path, e)| match e {
        schemas::config::ReadError::Io(source) => SettingsError::Read { path, source },
        schemas::config::ReadError::Invalid(message) => SettingsError::Config { path, message },
    })?;
    Ok(LoadedConfig { config, path })
}

/// The process's environment, for [`resolve`].
pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// Resolves the run's settings from `flags`, the environment (`var`) and the config file.
pub fn resolve(
    flags: RunFlags,
    var: &dyn Fn(&str) -> Option<String>,
) -> Result<Resolved, SettingsError> {
    let loaded = load_config(flags.config.as_deref(), var)?;
    let (environment, named_by) = match &flags.environment {
        Some(name) => (Some(name.clone()), "--env".to_owned()),
        None => PROFILE_VARIABLES
            .iter()
            .find_map(|name| var(name).map(|value| (Some(value), (*name).to_owned())))
            .unwrap_or((None, String::new())),
    };
    let layers = Layers::new(&loaded, environment.as_deref());

    let enabled = match flags.enabled {
        Some(enabled) => Some((enabled, "--enabled".to_owned())),
        None => match var(env_vars::ENABLED) {
            Some(text) => Some((
                parse_bool(&text).map_err(|m| variable(env_vars::ENABLED, &text, m))?,
                format!("{}={text}", env_vars::ENABLED),
            )),
            None => layers
                .get(|c| c.enabled)
                .map(|(enabled, field)| (enabled, layers.describe(&field, enabled))),
        },
    };
    match (&environment, enabled) {
        (_, Some((false, why))) => {
            return Ok(Resolved::Disabled {
                reason: format!("warming is turned off by {why}"),
            });
        }
        (Some(name), None) if OFF_BY_DEFAULT.contains(&name.to_ascii_lowercase().as_str()) => {
            return Ok(Resolved::Disabled {
                reason: format!(
                    "warming is off in the `{name}` environment (named by {named_by}); turn it \
                     on with `[env.{name}] enabled = true` in {}, {}=true or --enabled true",
                    DEFAULT_CONFIG_FILE,
                    env_vars::ENABLED
                ),
            });
        }
        _ => {}
    }

    let manifest = match flags.manifest {
        Some(path) => path,
        None => match var(env_vars::MANIFEST) {
            Some(path) => PathBuf::from(path),
            None => layers
                .get(|c| c.manifest.clone())
                .map(|(m, _)| PathBuf::from(m))
                .ok_or_else(|| {
                    SettingsError::Missing(format!(
                        "no manifest to warm from\nhint: give --manifest, {} or `manifest` in the \
                     `[warmer]` section of {DEFAULT_CONFIG_FILE}",
                        env_vars::MANIFEST
                    ))
                })?,
        },
    };
    let source = match flags.source {
        Some(source) => source,
        None => match var(env_vars::SOURCE) {
            Some(source) => source,
            None => layers
                .get(|c| c.source.clone())
                .map(|(s, _)| s)
                .ok_or_else(|| {
                    SettingsError::Missing(format!(
                        "no value source\nhint: give --source, {} or `source` in the `[warmer]` \
                     section of {DEFAULT_CONFIG_FILE}",
                        env_vars::SOURCE
                    ))
                })?,
        },
    };
    let targets = if !flags.targets.is_empty() {
        flags.targets
    } else if let Some(text) = var(env_vars::TARGETS) {
        text.split_whitespace().map(str::to_owned).collect()
    } else if let Some((targets, _)) = layers.get(|c| c.targets.clone()) {
        targets
    } else {
        vec![DEFAULT_TARGET.to_owned()]
    };
    if targets.is_empty() {
        return Err(layers.error("targets", "[]", "at least one target is needed"));
    }
    // How the application's client spreads keys over several memcached servers, for the
    // memcached URLs (source and targets) that do not say it themselves.
    let hashing = layered(
        None,
        var,
        env_vars::MEMCACHED_HASHING,
        &layers,
        "memcached_hashing",
        |c| c.memcached_hashing.clone(),
        |t| t.parse::<Hashing>(),
    )?;
    let (source, targets) = match hashing {
        Some(hashing) => (
            crate::store::with_default_hashing(&source, hashing),
            targets
                .iter()
                .map(|t| crate::store::with_default_hashing(t, hashing))
                .collect(),
        ),
        None => (source, targets),
    };

    let timeout = layered(
        flags.timeout,
        var,
        env_vars::TIMEOUT,
        &layers,
        "timeout",
        |c| c.timeout.clone(),
        parse_duration,
    )?
    .unwrap_or(DEFAULT_TIMEOUT);
    let min_ttl = layered(
        flags.min_ttl,
        var,
        env_vars::MIN_TTL,
        &layers,
        "min_ttl",
        |c| c.min_ttl.clone(),
        parse_duration,
    )?
    .unwrap_or(DEFAULT_MIN_TTL);
    let default_ttl = layered(
        flags.default_ttl,
        var,
        env_vars::DEFAULT_TTL,
        &layers,
        "default_ttl",
        |c| c.default_ttl.clone(),
        parse_duration,
    )?
    .unwrap_or(DEFAULT_DEFAULT_TTL);
    let max_fill = layered(
        flags.max_fill,
        var,
        env_vars::MAX_FILL,
        &layers,
        "max_fill",
        |c| c.max_fill.clone(),
        parse_percent,
    )?
    .unwrap_or(DEFAULT_MAX_FILL);
    let bandwidth = layered(
        flags.bandwidth,
        var,
        env_vars::BANDWIDTH,
        &layers,
        "bandwidth",
        |c| c.bandwidth.clone(),
        parse_rate_size,
    )?;
    let as_text = |n: Option<u64>| n.map(|n| n.to_string());
    let concurrency = layered(
        flags.concurrency.map(u64::from),
        var,
        env_vars::CONCURRENCY,
        &layers,
        "concurrency",
        |c| as_text(c.concurrency.map(u64::from)),
        |t| parse_count(t, 1, 64),
    )?
    .unwrap_or(DEFAULT_CONCURRENCY.into());
    let batch_size = layered(
        flags.batch_size.map(u64::from),
        var,
        env_vars::BATCH_SIZE,
        &layers,
        "batch_size",
        |c| as_text(c.batch_size.map(u64::from)),
        |t| parse_count(t, 1, 100_000),
    )?
    .unwrap_or(DEFAULT_BATCH_SIZE.into());
    let rate = layered(
        flags.rate,
        var,
        env_vars::RATE,
        &layers,
        "rate",
        |c| as_text(c.rate),
        |t| parse_count(t, 1, u64::MAX),
    )?;
    let runs_dir = match flags.runs_dir {
        Some(dir) => dir,
        None => var(env_vars::RUNS_DIR)
            .or_else(|| layers.get(|c| c.runs_dir.clone()).map(|(d, _)| d))
            .map_or_else(|| PathBuf::from(DEFAULT_RUNS_DIR), PathBuf::from),
    };
    let categories = if !flags.categories.is_empty() {
        Some(flags.categories)
    } else if let Some(text) = var(env_vars::CATEGORIES) {
        Some(
            text.split(',')
                .map(|c| c.trim().to_owned())
                .filter(|c| !c.is_empty())
                .collect(),
        )
    } else {
        layers.get(|c| c.categories.clone()).map(|(c, _)| c)
    };
    let strict = flags.strict
        || match var(env_vars::STRICT) {
            Some(text) => parse_bool(&text).map_err(|m| variable(env_vars::STRICT, &text, m))?,
            None => layers.get(|c| c.strict).is_some_and(|(s, _)| s),
        };
    let stop_on_evictions = !flags.keep_writing_on_evictions
        && layers.get(|c| c.stop_on_evictions).is_none_or(|(s, _)| s);
    let high_water = layered(
        flags.high_water,
        var,
        env_vars::HIGH_WATER,
        &layers,
        "high_water",
        |c| c.high_water.clone(),
        parse_percent,
    )?
    .unwrap_or(DEFAULT_HIGH_WATER);
    let retries = layered(
        flags.retries.map(u64::from),
        var,
        env_vars::RETRIES,
        &layers,
        "retries",
        |c| as_text(c.retries.map(u64::from)),
        |t| parse_count(t, 0, 20),
    )?
    .map_or(DEFAULT_RETRIES, |n| n as u32);
    let latency_multiple = layered(
        flags.latency_multiple,
        var,
        env_vars::LATENCY_MULTIPLE,
        &layers,
        "latency_multiple",
        |c| c.latency_multiple.as_ref().map(ToString::to_string),
        parse_latency_multiple,
    )?
    .unwrap_or(Some(DEFAULT_LATENCY_MULTIPLE));
    let loader_workers = layered(
        flags.loader_workers.map(u64::from),
        var,
        env_vars::LOADER_WORKERS,
        &layers,
        "loader_workers",
        |c| as_text(c.loader_workers.map(u64::from)),
        |t| parse_count(t, 1, 256),
    )?
    .map_or_else(
        || std::thread::available_parallelism().map_or(1, std::num::NonZero::get),
        |n| n as usize,
    );
    let loader_timeout = layered(
        flags.loader_timeout,
        var,
        env_vars::LOADER_TIMEOUT,
        &layers,
        "loader_timeout",
        |c| c.loader_timeout.clone(),
        parse_duration,
    )?
    .unwrap_or(DEFAULT_LOADER_TIMEOUT);
    let max_value_size = layered(
        flags.max_value_size,
        var,
        env_vars::MAX_VALUE_SIZE,
        &layers,
        "max_value_size",
        |c| c.max_value_size.clone(),
        parse_size,
    )?
    .unwrap_or(DEFAULT_MAX_VALUE_SIZE);

    let settings = RunSettings {
        manifest,
        source,
        targets,
        dry_run: flags.dry_run,
        write_mode: if flags.overwrite {
            WriteMode::Overwrite
        } else {
            WriteMode::Add
        },
        timeout,
        batch_size: batch_size as usize,
        min_ttl,
        default_ttl,
        max_fill,
        key_limits: flags
            .redis_max_key_bytes
            .map_or_else(KeyLimits::default, |bytes| KeyLimits {
                redis_max_key_bytes: bytes,
            }),
        environment,
        concurrency: concurrency as usize,
        rate,
        bandwidth,
        categories,
        stop_on_evictions,
        high_water,
        retries,
        latency_multiple,
        loader: crate::source::LoaderSettings {
            workers: loader_workers,
            timeout: loader_timeout,
            max_value_size,
        },
        resume: flags.resume,
        run_id: flags.run_id,
        allow_cross_kind: flags.allow_cross_kind,
        verify: flags.verify.unwrap_or(DEFAULT_VERIFY),
        verify_delay: flags.verify_delay.unwrap_or_default(),
        report: crate::report::ReportSettings {
            observe: flags.observe,
            baseline_hit_rate: flags.baseline_hit_rate,
            history: (!flags.no_history).then(|| runs_dir.join("runs.parquet")),
            metrics_file: flags.metrics_file,
            pushgateway: flags.pushgateway,
        },
        runs_dir,
    };
    Ok(Resolved::Run { settings, strict })
}

/// The file's sections that apply, most specific first.
struct Layers<'a> {
    path: Option<&'a Path>,
    env: Option<(&'a str, &'a WarmerConfig)>,
    warmer: &'a WarmerConfig,
}

impl<'a> Layers<'a> {
    fn new(loaded: &'a LoadedConfig, environment: Option<&'a str>) -> Layers<'a> {
        let env = environment.and_then(|name| {
            loaded
                .config
                .env
                .get_key_value(name)
                .map(|(name, section)| (name.as_str(), section))
        });
        Layers {
            path: loaded.path.as_deref(),
            env,
            warmer: &loaded.config.warmer,
        }
    }

    /// The most specific value of a field, with its dotted name (`env.production.timeout`).
    fn get<T>(&self, field: impl Fn(&WarmerConfig) -> Option<T>) -> Option<(T, String)> {
        if let Some((name, section)) = self.env
            && let Some(value) = field(section)
        {
            return Some((value, format!("env.{name}")));
        }
        field(self.warmer).map(|value| (value, "warmer".to_owned()))
    }

    fn describe(&self, section: &str, value: bool) -> String {
        let file = self.path.map_or_else(
            || DEFAULT_CONFIG_FILE.to_owned(),
            |p| p.display().to_string(),
        );
        format!("`{section}.enabled = {value}` in `{file}`")
    }

    fn error(&self, field: &str, value: &str, message: impl std::fmt::Display) -> SettingsError {
        let path = self
            .path
            .map_or_else(|| PathBuf::from(DEFAULT_CONFIG_FILE), Path::to_path_buf);
        SettingsError::Config {
            path,
            message: format!("field `{field}` is `{value}`: {message}"),
        }
    }
}

/// One setting through the layers: the flag, else the variable, else the file.
fn layered<T>(
    flag: Option<T>,
    var: &dyn Fn(&str) -> Option<String>,
    name: &'static str,
    layers: &Layers<'_>,
    field: &str,
    from_file: impl Fn(&WarmerConfig) -> Option<String>,
    parse: impl Fn(&str) -> Result<T, String>,
) -> Result<Option<T>, SettingsError> {
    if flag.is_some() {
        return Ok(flag);
    }
    if let Some(text) = var(name) {
        return parse(&text).map(Some).map_err(|m| variable(name, &text, m));
    }
    match layers.get(from_file) {
        Some((text, section)) => parse(&text)
            .map(Some)
            .map_err(|m| layers.error(&format!("{section}.{field}"), &text, m)),
        None => Ok(None),
    }
}

fn variable(name: &'static str, value: &str, message: String) -> SettingsError {
    SettingsError::Variable {
        name,
        value: value.to_owned(),
        message,
    }
}

/// A duration in the units people write: `90s`, `5m`, `24h`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text.trim())
        .map_err(|e| format!("not a duration ({e}); use forms like 90s, 5m, 24h"))
}

/// A percentage above 0 and at most 100 (`50%` or `50`), as a share.
pub fn parse_percent(text: &str) -> Result<f64, String> {
    match text.trim().trim_end_matches('%').parse::<f64>() {
        Ok(p) if p > 0.0 && p <= 100.0 => Ok(p / 100.0),
        _ => Err("not a percentage between 0 and 100 (like 50%)".to_owned()),
    }
}

/// A latency multiple (at least 1, like `1.5`), or `off`.
pub fn parse_latency_multiple(text: &str) -> Result<Option<f64>, String> {
    let text = text.trim();
    if text.eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    match text.parse::<f64>() {
        Ok(m) if m >= 1.0 && m.is_finite() => Ok(Some(m)),
        _ => Err("not a latency multiple of at least 1 (like 1.5), or `off`".to_owned()),
    }
}

/// Bytes per second: a size with an optional `/s` (`2MiB`, `2MiB/s`, `500000`).
pub fn parse_rate_size(text: &str) -> Result<u64, String> {
    parse_size(text.trim().trim_end_matches("/s"))
}

/// A size above 0 in bytes or units (`512KiB`, `16MiB`, `200000`).
pub fn parse_size(text: &str) -> Result<u64, String> {
    match text.trim().parse::<bytesize::ByteSize>() {
        Ok(size) if size.as_u64() > 0 => Ok(size.as_u64()),
        Ok(_) => Err("must be more than 0".to_owned()),
        Err(e) => Err(format!(
            "not a size ({e}); use bytes or units like 512KiB, 4MiB"
        )),
    }
}

fn parse_count(text: &str, min: u64, max: u64) -> Result<u64, String> {
    match text.trim().parse::<u64>() {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        _ => Err(format!("not a whole number from {min} to {max}")),
    }
}

fn parse_bool(text: &str) -> Result<bool, String> {
    match text.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => Err("not a boolean (true or false)".to_owned()),
    }
}

/// The environment a test gives [`resolve`].
#[cfg(test)]
fn fake_env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let vars: std::collections::BTreeMap<String, String> = vars
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    move |name| vars.get(name).cloned()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn config_file(text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cachewarm.toml");
        std::fs::write(&path, text).unwrap();
        (dir, path)
    }

    fn flags(config: &Path) -> RunFlags {
        RunFlags {
            config: Some(config.to_path_buf()),
            manifest: Some("m.json".into()),
            source: Some("redis://src:6379".into()),
            ..RunFlags::default()
        }
    }

    fn settings(resolved: Resolved) -> RunSettings {
        match resolved {
            Resolved::Run { settings, .. } => settings,
            Resolved::Disabled { reason } => panic!("disabled: {reason}"),
        }
    }

    /// Development and test are off by default, the message says which variable named the
    /// profile, and `[env.development] enabled = true` turns warming on.
    #[test]
    fn development_is_off_unless_turned_on() {
        let (_dir, path) = config_file("");
        let env = fake_env(&[("RAILS_ENV", "development")]);
        match resolve(flags(&path), &env).unwrap() {
            Resolved::Disabled { reason } => {
                assert!(
                    reason.contains("development") && reason.contains("RAILS_ENV"),
                    "{reason}"
                );
            }
            Resolved::Run { .. } => panic!("warming in development"),
        }
        let (_dir, path) = config_file("[env.development]\nenabled = true\n");
        assert!(matches!(
            resolve(flags(&path), &env).unwrap(),
            Resolved::Run { .. }
        ));
        // CACHEWARM_ENV comes before RAILS_ENV.
        let env = fake_env(&[("CACHEWARM_ENV", "production"), ("RAILS_ENV", "test")]);
        let run = settings(resolve(flags(&path), &env).unwrap());
        assert_eq!(run.environment.as_deref(), Some("production"));
    }

    /// Defaults < [warmer] < [env.NAME] < variables < flags.
    #[test]
    fn layers_in_order() {
        let (_dir, path) = config_file(
            "[warmer]\ntimeout = \"1m\"\nrate = 10\nmax_fill = \"30%\"\n\
             [env.production]\ntimeout = \"2m\"\ntargets = [\"redis://a:1\", \"memcached://b:2,c:3\"]\n",
        );
        let env = fake_env(&[("APP_ENV", "production")]);
        let run = settings(resolve(flags(&path), &env).unwrap());
        assert_eq!(run.timeout, Duration::from_secs(120));
        assert_eq!(run.rate, Some(10));
        assert!((run.max_fill - 0.3).abs() < 1e-9);
        assert_eq!(run.targets, ["redis://a:1", "memcached://b:2,c:3"]);
        assert_eq!(run.batch_size, DEFAULT_BATCH_SIZE as usize);

        let env = fake_env(&[("APP_ENV", "production"), ("CACHEWARM_TIMEOUT", "3m")]);
        let run = settings(resolve(flags(&path), &env).unwrap());
        assert_eq!(run.timeout, Duration::from_secs(180));
        let mut with_flag = flags(&path);
        with_flag.timeout = Some(Duration::from_secs(4));
        assert_eq!(
            settings(resolve(with_flag, &env).unwrap()).timeout,
            Duration::from_secs(4)
        );
    }

    /// A bad value names the file, the field and the value; a bad variable names the
    /// variable; an unknown key is refused.
    #[test]
    fn errors_name_where_the_value_came_from() {
        let (_dir, path) = config_file("[env.production]\ntimeout = \"5 parsecs\"\n");
        let env = fake_env(&[("CACHEWARM_ENV", "production")]);
        let error = resolve(flags(&path), &env).unwrap_err().to_string();
        assert!(error.contains("cachewarm.toml"), "{error}");
        assert!(
            error.contains("env.production.timeout") && error.contains("5 parsecs"),
            "{error}"
        );

        let (_dir, path) = config_file("");
        let env = fake_env(&[("CACHEWARM_RATE", "fast")]);
        let error = resolve(flags(&path), &env).unwrap_err().to_string();
        assert!(
            error.contains("CACHEWARM_RATE") && error.contains("fast"),
            "{error}"
        );

        let (_dir, path) = config_file("[warmer]\nspeed = 3\n");
        let error = resolve(flags(&path), &fake_env(&[]))
            .unwrap_err()
            .to_string();
        assert!(error.contains("speed"), "{error}");
    }

    /// `memcached_hashing` reaches the multi-server memcached URLs that make no choice of
    /// their own, source and targets; a variable wins over the file; a bad name is refused.
    #[test]
    fn memcached_hashing_fills_in_the_urls() {
        let (_dir, path) = config_file(
            "[warmer]
memcached_hashing = \"dalli\"
             targets = [\"memcached://a:1,b:2\", \"memcached://c:3,d:4?hashing=ketama\",              \"memcached://e:5\"]
",
        );
        let mut from_memcached = flags(&path);
        from_memcached.source = Some("memcached://s:1,t:2".into());
        let run = settings(resolve(from_memcached.clone(), &fake_env(&[])).unwrap());
        assert_eq!(run.source, "memcached://s:1,t:2?hashing=dalli");
        assert_eq!(
            run.targets,
            [
                "memcached://a:1,b:2?hashing=dalli",
                "memcached://c:3,d:4?hashing=ketama",
                "memcached://e:5"
            ]
        );
        let env = fake_env(&[("CACHEWARM_MEMCACHED_HASHING", "rendezvous")]);
        let run = settings(resolve(from_memcached, &env).unwrap());
        assert_eq!(run.targets[0], "memcached://a:1,b:2?hashing=rendezvous");

        let (_dir, path) = config_file(
            "[warmer]
memcached_hashing = \"crc\"
",
        );
        let error = resolve(flags(&path), &fake_env(&[]))
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("warmer.memcached_hashing") && error.contains("crc"),
            "{error}"
        );
    }
}
