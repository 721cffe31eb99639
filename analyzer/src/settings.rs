//! Flags and the config file, resolved into the options of a command before any work starts.
//!
//! Layers, lowest first: built-in defaults < `cachewarm.toml` < `CACHEWARM_*` environment
//! variables < flags. The environment variables are the flags' own (clap reads them), so a
//! value from the environment overrides the file just as a flag does.

use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};
use schemas::config::{CategoryRule, Config};
use schemas::keys::StoreKind;

use crate::rank::budget::{self, BudgetSpec, Capacity, DEFAULT_MAX_BUDGET_SHARE};
use crate::rank::categories::{self, Classifier};
use crate::rank::{HalfLife, RankOptions, default_item_overhead};

/// The config file read when none is named.
pub use schemas::config::DEFAULT_FILE as DEFAULT_CONFIG_FILE;

/// A config or flag value that cannot be used, with where it came from.
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
    #[error("{0}")]
    Flag(String),
    #[error(transparent)]
    Budget(#[from] budget::BudgetError),
}

/// The config file and where it was read from; the defaults when there is none.
#[derive(Debug, Clone, Default)]
pub struct LoadedConfig {
    pub config: Config,
    pub path: Option<PathBuf>,
}

impl LoadedConfig {
    fn error(&self, message: String) -> SettingsError {
        match &self.path {
            Some(path) => SettingsError::Config {
                path: path.clone(),
                message,
            },
            None => SettingsError::Flag(message),
        }
    }
}

/// Reads the config at `path`; without one, `./cachewarm.toml` when it exists.
pub fn load_config(path: Option<&Path>) -> Result<LoadedConfig, SettingsError> {
    let (config, path) = schemas::config::load(path).map_err(|(path, e)| match e {
        schemas::config::ReadError::Io(source) => SettingsError::Read { path, source },
        schemas::config::ReadError::Invalid(message) => SettingsError::Config { path, message },
    })?;
    Ok(LoadedConfig { config, path })
}

/// The flags shared by `rank` and `simulate`: what to rank and how.
#[derive(Debug, Clone, clap::Args)]
pub struct RankFlags {
    /// Key + value bytes the manifest may hold: bytes or units (`512KiB`, `64MiB`, `1GB`), or
    /// a share of capacity (`50%`, with --capacity or --capacity-from). Never more than 50% of
    /// a known capacity unless the config's `rank.max_budget_share` raises it.
    #[arg(long, env = "CACHEWARM_BUDGET")]
    pub budget: String,
    /// The target store's capacity, for a budget given as a share.
    #[arg(long, value_parser = parse_size, conflicts_with = "capacity_from")]
    pub capacity: Option<u64>,
    /// Read the capacity from a live store: `redis://…` (maxmemory) or
    /// `memcached://host:port[,host:port…]` (limit_maxbytes summed). Also sets the store kind.
    /// A Redis password: `?password_file=FILE` or `?password_env=CACHEWARM_…`, not in the URL.
    #[arg(long, env = "CACHEWARM_CAPACITY_FROM")]
    pub capacity_from: Option<String>,
    /// The config file [default: ./cachewarm.toml when it exists].
    #[arg(long, env = "CACHEWARM_CONFIG")]
    pub config: Option<PathBuf>,
    /// Half-life of a read's weight (`6h`), `off`, or `auto`: the candidate (from minutes to
    /// days, by the dataset's span, and `off`) that a backtest on the dataset's older part finds
    /// best for the newer part's early reads [default: auto].
    #[arg(long)]
    pub half_life: Option<String>,
    /// Leave out keys not read within this span before the dataset's end (`7d`).
    #[arg(long)]
    pub window: Option<String>,
    /// Leave out keys read fewer times (one-hit wonders) [default: 2].
    #[arg(long)]
    pub min_requests: Option<u64>,
    /// The target store kind: `redis`, `memcached` or `sql` (key rules and per-item overhead).
    #[arg(long)]
    pub store: Option<String>,
    /// Bytes a store spends per item beyond key and value [default: by store kind].
    #[arg(long, value_parser = parse_size)]
    pub item_overhead: Option<u64>,
    /// Built-in category rules to add after the config's: `django`, `rails`.
    #[arg(long = "preset", value_delimiter = ',')]
    pub presets: Vec<String>,
    /// Rank only keys of these categories.
    #[arg(long = "category", value_delimiter = ',')]
    pub categories: Vec<String>,
    /// Rank only keys matching one of these shell patterns (`user:*`).
    #[arg(long = "key")]
    pub keys: Vec<String>,
}

fn parse_size(text: &str) -> Result<u64, String> {
    text.trim()
        .parse::<bytesize::ByteSize>()
        .map(|size| size.as_u64())
        .map_err(|e| format!("`{text}` is not a size ({e}); use bytes or units like 512KiB, 64MiB"))
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text.trim())
        .map_err(|e| format!("`{text}` is not a duration ({e}); use units like 90s, 6h, 7d"))
}

/// Parses an instant given as RFC 3339 (`2026-11-20T12:00:00Z`).
pub fn parse_instant(text: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(text.trim())
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| {
            format!("`{text}` is not an RFC 3339 instant ({e}), e.g. 2026-11-20T12:00:00Z")
        })
}

/// Refuses a half-life for `rank --key-stats`: it was the aggregation's to apply
/// (`aggregate-sql --half-life`) and the table's weights already carry it, so one given here
/// (flag or config) would be silently ignored.
pub fn refuse_half_life(flags: &RankFlags, loaded: &LoadedConfig) -> Result<(), SettingsError> {
    const WHY: &str = "is the aggregation's (`aggregate-sql --half-life`); the key-stats \
                       table's weights already carry it";
    if flags.half_life.is_some() {
        return Err(SettingsError::Flag(format!("--half-life {WHY}")));
    }
    if loaded.config.rank.half_life.is_some() {
        return Err(loaded.error(format!(
            "rank.half_life {WHY}; use a config without it with --key-stats"
        )));
    }
    Ok(())
}

/// Resolves the flags and config into rank options. Reads a live store's capacity when
/// `--capacity-from` is given.
pub fn rank_options(
    flags: &RankFlags,
    loaded: &LoadedConfig,
) -> Result<RankOptions, SettingsError> {
    let file = &loaded.config.rank;
    let from_file = |field: &str, message: String| loaded.error(format!("rank.{field}: {message}"));

    let max_share = file.max_budget_share.unwrap_or(DEFAULT_MAX_BUDGET_SHARE);
    if !(max_share > 0.0 && max_share <= 1.0) {
        return Err(from_file(
            "max_budget_share",
            format!("{max_share} is not a share; use a number above 0 and at most 1"),
        ));
    }
    let capacity = match (&flags.capacity_from, flags.capacity) {
        (Some(url), _) => Some(budget::capacity_from(url)?),
        (None, Some(bytes)) => Some(Capacity {
            bytes,
            source: format!("--capacity {bytes}"),
            store: None,
        }),
        (None, None) => None,
    };
    let spec: BudgetSpec = budget::parse_budget(&flags.budget)
        .map_err(|e| SettingsError::Flag(format!("--budget: {e}")))?;
    let resolved = budget::resolve(&spec, flags.budget.trim(), capacity.as_ref(), max_share)?;

    let half_life = match flags.half_life.as_deref() {
        Some(text) => {
            parse_half_life(text).map_err(|e| SettingsError::Flag(format!("--half-life: {e}")))?
        }
        None => match file.half_life.as_deref() {
            Some(text) => parse_half_life(text).map_err(|e| from_file("half_life", e))?,
            None => HalfLife::Auto,
        },
    };
    let window = match (flags.window.as_deref(), file.window.as_deref()) {
        (Some(text), _) => {
            Some(parse_duration(text).map_err(|e| SettingsError::Flag(format!("--window: {e}")))?)
        }
        (None, Some(text)) => Some(parse_duration(text).map_err(|e| from_file("window", e))?),
        (None, None) => None,
    };
    let store = match (flags.store.as_deref(), file.store.as_deref()) {
        (Some(text), _) => Some(
            text.parse::<StoreKind>()
                .map_err(|e| SettingsError::Flag(format!("--store: {e}")))?,
        ),
        (None, Some(text)) => Some(
            text.parse::<StoreKind>()
                .map_err(|e| from_file("store", e))?,
        ),
        (None, None) => capacity.as_ref().and_then(|c| c.store),
    };

    let rules = category_rules(loaded, &flags.presets)?;
    let key_patterns = flags
        .keys
        .iter()
        .map(|pattern| {
            glob::Pattern::new(pattern)
                .map_err(|e| SettingsError::Flag(format!("--key `{pattern}`: {e}")))
        })
        .collect::<Result<Vec<_>, _>>()?;

    let mut options = RankOptions::new(resolved);
    options.half_life = half_life;
    options.window = window;
    options.min_requests = flags.min_requests.or(file.min_requests).unwrap_or(2);
    options.store = store;
    options.item_overhead = flags
        .item_overhead
        .or(file.item_overhead)
        .unwrap_or_else(|| default_item_overhead(store));
    options.categories = rules;
    options.only_categories = flags.categories.clone();
    options.key_patterns = key_patterns;
    Ok(options)
}

/// The config's category rules, then those of its presets and of `extra_presets`, checked.
pub fn category_rules(
    loaded: &LoadedConfig,
    extra_presets: &[String],
) -> Result<Vec<CategoryRule>, SettingsError> {
    let mut rules = loaded.config.categories.clone();
    let mut presets = loaded.config.rank.presets.clone();
    presets.extend(extra_presets.iter().cloned());
    for name in presets {
        let preset = categories::preset(&name).ok_or_else(|| {
            loaded.error(format!(
                "preset `{name}` is unknown; the presets are {}",
                categories::PRESETS.join(", ")
            ))
        })?;
        rules.extend(preset);
    }
    for (index, rule) in rules.iter().enumerate() {
        if let Some(ttl) = rule.ttl.as_deref() {
            parse_duration(ttl).map_err(|e| {
                loaded.error(format!("category[{index}] `{}`: ttl: {e}", rule.name))
            })?;
        }
    }
    Classifier::new(rules.clone()).map_err(|e| loaded.error(e.to_string()))?;
    Ok(rules)
}

/// The classifier of [`category_rules`].
pub fn classifier(
    loaded: &LoadedConfig,
    extra_presets: &[String],
) -> Result<Classifier, SettingsError> {
    Classifier::new(category_rules(loaded, extra_presets)?).map_err(|e| loaded.error(e.to_string()))
}

/// Parses a half-life: a duration (`6h`), `off`, or `auto`.
pub fn parse_half_life(text: &str) -> Result<HalfLife, String> {
    match text.trim() {
        "off" => return Ok(HalfLife::Off),
        "auto" => return Ok(HalfLife::Auto),
        _ => {}
    }
    let span = parse_duration(text)
        .map_err(|e| format!("{e}; or `off` for no decay, `auto` for a backtested choice"))?;
    if span.is_zero() {
        return Err(
            "a half-life of zero weighs every read as nothing; use `off` for no decay".into(),
        );
    }
    Ok(HalfLife::Fixed(span))
}
