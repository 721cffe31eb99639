//! Flags, `CACHEWARM_*` environment variables and `cachewarm.toml`, resolved into one
//! [`RunSettings`] before any work starts.
//!
//! Layers, lowest first: built-in defaults < the file's `[warmer]` < the file's `[env.NAME]`
//! for the run's environment profile < `CACHEWARM_*` variables < flags. The profile is
//! `--env`, else the first of [`PROFILE_VARIABLES`] that is set; warming is off in
//! `development` and `test` unless a layer turns it on. A value that cannot be used is refused
//! with where it came from: the file and field, or the variable, and the value.
//!
//! Each layered setting is declared once in `fields.rs` (variable, file field, reader,
//! default); `layers.rs` takes any of them through the layers, and [`resolve`] is one line per
//! setting. The flags are [`RunFlags`], which clap parses straight into.

mod fields;
mod flags;
mod layers;
mod parse;
mod shard;
#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};

use schemas::config::Config;

use crate::env_vars;
use crate::run::{ResumeFrom, RunSettings};
use crate::store::{KeyLimits, Role, WriteMode, redact, secret};

pub use fields::{
    DEFAULT_BATCH_SIZE, DEFAULT_CONCURRENCY, DEFAULT_DEFAULT_TTL, DEFAULT_HIGH_WATER,
    DEFAULT_LATENCY_MULTIPLE, DEFAULT_LOADER_TIMEOUT, DEFAULT_MAX_FILL, DEFAULT_MAX_VALUE_SIZE,
    DEFAULT_MIN_TTL, DEFAULT_RETRIES, DEFAULT_RUNS_DIR, DEFAULT_TARGET, DEFAULT_TIMEOUT,
    DEFAULT_VERIFY,
};
pub use flags::{Off, RunFlags};
pub use parse::{
    parse_duration, parse_latency_multiple, parse_percent, parse_rate_size, parse_size,
};

use layers::Layers;
pub use shard::from_flags_and_env as shard_from_flags_and_env;

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

/// Warns of each `--source`/`--target` that holds its password: the command line is in the
/// process list, readable by every user of the host. The run goes on, as before.
fn warn_inline_passwords(flags: &RunFlags) {
    for url in flags.source.iter().chain(&flags.targets) {
        if secret::has_inline_password(url) {
            tracing::warn!(
                url = redact(url),
                "a password on the command line is visible to every user of the host (ps); \
                 give it by ?{}=FILE, ?{}=CACHEWARM_… or {}/{} instead",
                secret::PASSWORD_FILE,
                secret::PASSWORD_ENV,
                env_vars::SOURCE_PASSWORD,
                env_vars::TARGET_PASSWORD,
            );
        }
    }
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
    warn_inline_passwords(&flags);
    let loaded = load_config(flags.config.as_deref(), var)?;
    let (environment, named_by) = match &flags.environment {
        Some(name) => (Some(name.clone()), "--env".to_owned()),
        None => PROFILE_VARIABLES
            .iter()
            .find_map(|name| var(name).map(|value| (Some(value), (*name).to_owned())))
            .unwrap_or((None, String::new())),
    };
    let layers = Layers::new(var, &loaded, environment.as_deref());

    match (
        &environment,
        layers.get_with_origin(flags.enabled, &fields::ENABLED)?,
    ) {
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

    let manifest = layers
        .get(flags.manifest, &fields::MANIFEST)?
        .ok_or_else(|| {
            SettingsError::Missing(format!(
                "no manifest to warm from\nhint: give --manifest, {} or `manifest` in the \
                 `[warmer]` section of {DEFAULT_CONFIG_FILE}",
                env_vars::MANIFEST
            ))
        })?;
    let source = layers.get(flags.source, &fields::SOURCE)?.ok_or_else(|| {
        SettingsError::Missing(format!(
            "no value source\nhint: give --source, {} or `source` in the `[warmer]` section of \
             {DEFAULT_CONFIG_FILE}",
            env_vars::SOURCE
        ))
    })?;
    let targets = layers
        .list(flags.targets, &fields::TARGETS)
        .unwrap_or_else(|| vec![DEFAULT_TARGET.to_owned()]);
    if targets.is_empty() {
        return Err(layers.error(fields::TARGETS.field, "[]", "at least one target is needed"));
    }
    let (source, targets) = match layers.get(None, &fields::MEMCACHED_HASHING)? {
        Some(hashing) => (
            crate::store::with_default_hashing(&source, hashing),
            targets
                .iter()
                .map(|t| crate::store::with_default_hashing(t, hashing))
                .collect(),
        ),
        None => (source, targets),
    };
    let source = secret::with_role_default(&source, Role::Source, var);
    let targets: Vec<String> = targets
        .iter()
        .map(|t| secret::with_role_default(t, Role::Target, var))
        .collect();
    let hidden_env = crate::source::loader::secret_variables(
        std::iter::once(source.as_str()).chain(targets.iter().map(String::as_str)),
    );
    let runs_dir = layers
        .get(flags.runs_dir, &fields::RUNS_DIR)?
        .unwrap_or_else(|| PathBuf::from(DEFAULT_RUNS_DIR));
    let shard = shard::resolve(&layers, var, flags.shard, flags.shards)?;
    let strict = layers
        .get(flags.strict.then_some(true), &fields::STRICT)?
        .unwrap_or(false);
    let verify = if flags.no_verify {
        false
    } else {
        flags.verify || DEFAULT_VERIFY
    };

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
        timeout: layers
            .get(flags.timeout, &fields::TIMEOUT)?
            .unwrap_or(DEFAULT_TIMEOUT),
        batch_size: layers
            .get(flags.batch_size, &fields::BATCH_SIZE)?
            .unwrap_or(DEFAULT_BATCH_SIZE) as usize,
        min_ttl: layers
            .get(flags.min_ttl, &fields::MIN_TTL)?
            .unwrap_or(DEFAULT_MIN_TTL),
        default_ttl: layers
            .get(flags.default_ttl, &fields::DEFAULT_TTL)?
            .unwrap_or(DEFAULT_DEFAULT_TTL),
        max_fill: layers
            .get(flags.max_fill, &fields::MAX_FILL)?
            .unwrap_or(DEFAULT_MAX_FILL),
        key_limits: flags
            .redis_max_key_bytes
            .map_or_else(KeyLimits::default, |bytes| KeyLimits {
                redis_max_key_bytes: bytes,
            }),
        environment: environment.clone(),
        concurrency: layers
            .get(flags.concurrency, &fields::CONCURRENCY)?
            .unwrap_or(DEFAULT_CONCURRENCY) as usize,
        rate: layers.get(flags.rate, &fields::RATE)?,
        bandwidth: layers.get(flags.bandwidth, &fields::BANDWIDTH)?,
        categories: layers.list(flags.categories, &fields::CATEGORIES),
        stop_on_evictions: layers
            .get(
                flags.keep_writing_on_evictions.then_some(false),
                &fields::STOP_ON_EVICTIONS,
            )?
            .unwrap_or(true),
        high_water: layers
            .get(flags.high_water, &fields::HIGH_WATER)?
            .unwrap_or(DEFAULT_HIGH_WATER),
        retries: layers
            .get(flags.retries, &fields::RETRIES)?
            .unwrap_or(DEFAULT_RETRIES),
        latency_multiple: layers
            .get(
                flags.latency_multiple.map(|Off(m)| m),
                &fields::LATENCY_MULTIPLE,
            )?
            .unwrap_or(Some(DEFAULT_LATENCY_MULTIPLE)),
        loader: crate::source::LoaderSettings {
            workers: layers
                .get(flags.loader_workers, &fields::LOADER_WORKERS)?
                .map_or_else(
                    || std::thread::available_parallelism().map_or(1, std::num::NonZero::get),
                    |n| n as usize,
                ),
            timeout: layers
                .get(flags.loader_timeout, &fields::LOADER_TIMEOUT)?
                .unwrap_or(DEFAULT_LOADER_TIMEOUT),
            max_value_size: layers
                .get(flags.max_value_size, &fields::MAX_VALUE_SIZE)?
                .unwrap_or(DEFAULT_MAX_VALUE_SIZE),
            hidden_env,
        },
        resume: flags
            .resume
            .map(|dir| dir.map_or(ResumeFrom::Latest, ResumeFrom::Dir)),
        run_id: flags.run_id,
        allow_cross_kind: flags.allow_cross_kind,
        verify,
        verify_delay: flags.verify_delay.unwrap_or_default(),
        report: crate::report::ReportSettings {
            // `--observe 0s` measures nothing, like no flag.
            observe: flags.observe.filter(|d| !d.is_zero()),
            baseline_hit_rate: flags.baseline_hit_rate,
            history: (!flags.no_history).then(|| runs_dir.join("runs.parquet")),
            metrics_file: flags.metrics_file,
            pushgateway: flags.pushgateway,
        },
        runs_dir,
        shard,
    };
    Ok(Resolved::Run { settings, strict })
}
