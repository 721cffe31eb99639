//! Rank: the dataset's hot keys, packed into a byte budget, as a manifest.
//!
//! Two halves, with the key-stats table (`schemas::key_stats`) between them. First the per-key
//! aggregation: polars over every Parquet file of the dataset (`aggregate`), or any SQL engine
//! running `sql`'s query, whose table `key_stats` reads back. Then, once per key, each key is
//! classified into a category, checked against the exclusion rules, scored, and the keys are
//! packed greedily by score into the budget (`build_manifest`), whichever engine aggregated.
//!
//! The score is the value of a warmed byte: recency-weighted read requests (each read weighs
//! `0.5^(age / half-life)`) × the cost of a miss (the key's mean logged miss latency, else the
//! dataset's, else 1) ÷ the bytes the item takes in the store (key + value + per-item
//! overhead). Packing by this density fills the budget with the entries expected to save the
//! most miss time per byte; a key that does not fit is skipped and smaller keys after it may
//! still fill the rest. Ties are broken by key, and weights are summed in fixed point, so the
//! same dataset and config always give the same manifest.

mod aggregate;
pub mod auto;
pub mod budget;
pub mod categories;
pub mod key_stats;
pub mod sql;
mod tally;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};
use schemas::config::CategoryRule;
use schemas::keys::{StoreKind, check_key};
use schemas::manifest::{
    Budget, CategoryTotals, ObservationWindow, Scoring, Totals, entries_sha256,
};
use schemas::{MANIFEST_SCHEMA_ID, Manifest, ManifestEntry, ManifestHeader};

pub use aggregate::{
    AggregateOptions, HalfLife, aggregate, dataset_files, is_read, scan, time_span,
};
pub use budget::ResolvedBudget;
pub use categories::Classifier;
pub use key_stats::{DatasetStats, KeyStatsError, read_key_stats};
pub use schemas::KeyStats;
pub use schemas::key_stats::WEIGHT_SCALE;

/// The category of keys no rule matches.
pub const DEFAULT_CATEGORY: &str = "default";

/// Errors while ranking.
#[derive(Debug, thiserror::Error)]
pub enum RankError {
    #[error("dataset `{0}` holds no Parquet files")]
    EmptyDataset(PathBuf),
    #[error("dataset `{0}` holds no events in the chosen time range")]
    NoEvents(PathBuf),
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
    #[error("failed to read the Parquet file `{path}`")]
    Read {
        path: PathBuf,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("the Parquet file `{path}` has no column `{column}`")]
    MissingColumn { path: PathBuf, column: String },
    #[error("column `{column}` of the Parquet file `{path}` is {found}, expected {expected}")]
    ColumnType {
        path: PathBuf,
        column: &'static str,
        found: String,
        expected: &'static str,
    },
    #[error("the Parquet file `{0}` holds an event without a time (`ts` is null)")]
    NullTime(PathBuf),
    #[error("the Parquet file `{0}` holds an event without a key (`key` is null)")]
    NullKey(PathBuf),
    #[error("the dataset `{path}` holds an event at {micros} µs from the epoch, out of range")]
    TimeOutOfRange { path: PathBuf, micros: i64 },
    #[error("the key-stats table `{0}` holds no keys")]
    NoKeys(PathBuf),
    #[error("the key-stats table `{path}` is not usable")]
    KeyStats {
        path: PathBuf,
        #[source]
        source: KeyStatsError,
    },
    #[error(
        "the key-stats table `{path}` mixes rows of {column} {first} and {other}: aggregate \
         every part with the same --reference-time and --half-life"
    )]
    MixedKeyStats {
        path: PathBuf,
        column: &'static str,
        first: String,
        other: String,
    },
    #[error(
        "the key-stats table `{path}` holds key `{key}` twice: merge partial aggregates first \
         (docs/DESIGN-NOTES.md, \"Key stats\")"
    )]
    DuplicateKey { path: PathBuf, key: String },
    #[error("failed to write the manifest `{path}`")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Rule(#[from] categories::RuleError),
}

/// Bytes a store spends per item beyond key and value, when not configured.
///
/// Redis: a dict entry (24), the value object (16), the key and value sds headers and the
/// expires dict entry (24), rounded up by jemalloc: about 70. Memcached: the item header (48)
/// with its CAS (8): 56. A SQL cache row: the row header, the `expires` column, and the key a
/// second time in the primary-key index, about 40 plus the key. Unknown stores: 50.
pub fn default_item_overhead(store: Option<StoreKind>) -> u64 {
    match store {
        Some(StoreKind::Redis) => 70,
        Some(StoreKind::Memcached) => 56,
        Some(StoreKind::Sql) => 40,
        None => 50,
    }
}

/// What to rank and how: the flags and the config file, resolved.
#[derive(Debug, Clone)]
pub struct RankOptions {
    /// The budget the entries are packed into.
    pub budget: ResolvedBudget,
    /// How reads are weighted by age.
    pub half_life: HalfLife,
    /// Keys whose last read is older than this before the window's end are left out.
    pub window: Option<Duration>,
    /// Keys read fewer times are one-hit wonders, left out (unless their category says else).
    pub min_requests: u64,
    /// The target store kind: its key rules and overhead.
    pub store: Option<StoreKind>,
    /// The longest Redis key accepted, in bytes.
    pub redis_max_key_bytes: usize,
    /// Bytes counted per item beyond key and value.
    pub item_overhead: u64,
    /// Category rules, in the order they are tried (the config's, then presets').
    pub categories: Vec<CategoryRule>,
    /// Rank only keys of these categories (all when empty).
    pub only_categories: Vec<String>,
    /// Rank only keys matching one of these shell patterns (all when empty).
    pub key_patterns: Vec<glob::Pattern>,
    /// Rank only events before this instant (the train window of a backtest).
    pub until: Option<DateTime<Utc>>,
}

impl RankOptions {
    /// Options with the defaults of everything but the budget.
    pub fn new(budget: ResolvedBudget) -> RankOptions {
        RankOptions {
            budget,
            half_life: HalfLife::Auto,
            window: None,
            min_requests: 2,
            store: None,
            redis_max_key_bytes: schemas::keys::REDIS_DEFAULT_MAX_KEY_BYTES,
            item_overhead: default_item_overhead(None),
            categories: Vec::new(),
            only_categories: Vec::new(),
            key_patterns: Vec::new(),
            until: None,
        }
    }

    fn aggregate_options(&self) -> AggregateOptions {
        AggregateOptions {
            until: self.until,
            half_life: self.half_life,
        }
    }
}

/// Builds the manifest of the dataset at `dataset`.
pub fn rank(dataset: &Path, options: &RankOptions) -> Result<Manifest, RankError> {
    if options.half_life == HalfLife::Auto {
        return auto::rank(dataset, options);
    }
    let stats = aggregate(dataset, &options.aggregate_options())?;
    build_manifest(&stats, options, generated_at())
}

/// Builds the manifest of the key-stats table at `path` (`rank --key-stats`), which another
/// engine aggregated; the options' half-life and `until` were the aggregation's to apply.
pub fn rank_key_stats(path: &Path, options: &RankOptions) -> Result<Manifest, RankError> {
    let stats = read_key_stats(path)?;
    build_manifest(&stats, options, generated_at())
}

/// The manifest's `generated_at`: now, or `SOURCE_DATE_EPOCH` when set (the reproducible-builds
/// convention), so a pipeline can ask for byte-identical manifests from the same inputs.
pub fn generated_at() -> DateTime<Utc> {
    std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|text| text.trim().parse::<i64>().ok())
        .and_then(|seconds| DateTime::from_timestamp(seconds, 0))
        .unwrap_or_else(Utc::now)
}

/// Why a key is left out before packing, in the order the rules are checked.
fn exclusion(
    key: &KeyStats,
    category: &str,
    rule: Option<&CategoryRule>,
    options: &RankOptions,
    window_end: DateTime<Utc>,
) -> Option<&'static str> {
    if let Some(store) = options.store
        && check_key(store, &key.key, options.redis_max_key_bytes).is_err()
    {
        return Some("invalid_key");
    }
    if !options.only_categories.is_empty() && !options.only_categories.iter().any(|c| c == category)
    {
        return Some("not_selected");
    }
    if !options.key_patterns.is_empty() && !options.key_patterns.iter().any(|p| p.matches(&key.key))
    {
        return Some("not_selected");
    }
    if rule.and_then(|r| r.enabled) == Some(false) {
        return Some("category_disabled");
    }
    if key.deleted_last {
        return Some("deleted");
    }
    if key.requests == 0 {
        return Some("write_only");
    }
    if let Some(window) = options.window {
        let cutoff =
            window_end - chrono::Duration::from_std(window).unwrap_or(chrono::Duration::MAX);
        if key.last_read.is_none_or(|read| read < cutoff) {
            return Some("not_read_in_window");
        }
    }
    match rule.and_then(|r| r.min_requests) {
        Some(min) if key.requests < min => Some("below_category_min_requests"),
        Some(_) => None,
        None if key.requests < options.min_requests => Some("one_hit_wonder"),
        None => None,
    }
}

/// A key that passed the exclusion rules, and what its score is made of.
pub(crate) struct Candidate<'a> {
    /// Its position in the aggregated keys.
    pub index: usize,
    pub stats: &'a KeyStats,
    /// Its category's id in [`Eligible::categories`].
    pub category: usize,
    pub size: u64,
    pub footprint: u64,
    pub miss_cost: f64,
    /// The reads it needs not to be a one-hit wonder (its category's minimum, else the
    /// options').
    pub min_requests: u64,
}

impl Candidate<'_> {
    /// The value of a warmed byte, given the key's weighted reads (see the module docs).
    pub fn score(&self, weighted_requests: u64, recency_factor: f64) -> f64 {
        weighted_requests as f64 / WEIGHT_SCALE * recency_factor * self.miss_cost
            / self.footprint as f64
    }
}

/// The keys that passed the exclusion rules, their categories, and why the others were left
/// out.
pub(crate) struct Eligible<'a> {
    pub candidates: Vec<Candidate<'a>>,
    /// Each category's name and the index of its rule.
    pub categories: Vec<(String, Option<usize>)>,
    pub exclusions: BTreeMap<String, u64>,
    pub classifier: Classifier,
    /// Whether any miss latency was logged (else every miss costs 1).
    pub miss_latencies_known: bool,
}

impl Eligible<'_> {
    /// The bytes of `budget` each category may take, when its rule limits it.
    pub fn category_budgets(&self, budget: u64) -> Vec<Option<u64>> {
        self.categories
            .iter()
            .map(|(_, rule)| {
                let share = self.classifier.categories[(*rule)?].budget_share?;
                Some((share * budget as f64).floor() as u64)
            })
            .collect()
    }
}

/// Classifies the aggregated keys, and keeps those the exclusion rules let through.
pub(crate) fn eligible<'a>(
    stats: &'a DatasetStats,
    options: &RankOptions,
) -> Result<Eligible<'a>, RankError> {
    let classifier = Classifier::new(options.categories.clone())?;
    let (latency_sum, latency_n) = stats.keys.iter().fold((0u64, 0u64), |(sum, n), key| {
        (sum + key.miss_latency_us, n + key.miss_latencies)
    });
    let dataset_miss_cost = (latency_n > 0).then(|| latency_sum as f64 / latency_n as f64);
    let miss_cost = |key: &KeyStats| -> f64 {
        if key.miss_latencies > 0 {
            key.miss_latency_us as f64 / key.miss_latencies as f64
        } else {
            dataset_miss_cost.unwrap_or(1.0)
        }
    };

    let mut exclusions: BTreeMap<String, u64> = BTreeMap::new();
    let mut categories = Vec::new();
    let mut category_ids: HashMap<String, usize> = HashMap::new();
    let mut candidates = Vec::with_capacity(stats.keys.len());
    for (index, key) in stats.keys.iter().enumerate() {
        let (category, rule) = classifier.classify(&key.key);
        let reason = exclusion(
            key,
            &category,
            rule.map(|r| &classifier.categories[r]),
            options,
            stats.window_end,
        );
        if let Some(reason) = reason {
            *exclusions.entry(reason.to_owned()).or_default() += 1;
            continue;
        }
        let category = match category_ids.get(&category) {
            Some(&id) => id,
            None => {
                categories.push((category.clone(), rule));
                category_ids.insert(category, categories.len() - 1);
                categories.len() - 1
            }
        };
        let size = (key.key.len() as u64)
            .saturating_add(key.value_size.unwrap_or(stats.typical_value_size));
        candidates.push(Candidate {
            index,
            stats: key,
            category,
            size,
            footprint: size.saturating_add(options.item_overhead),
            miss_cost: miss_cost(key),
            min_requests: rule
                .and_then(|r| classifier.categories[r].min_requests)
                .unwrap_or(options.min_requests),
        });
    }
    Ok(Eligible {
        candidates,
        categories,
        exclusions,
        classifier,
        miss_latencies_known: dataset_miss_cost.is_some(),
    })
}

/// The greedy packing into the budget and the categories' shares of it, which the manifest
/// and each candidate half-life of the backtest (`auto`) go through alike.
pub(crate) struct Packer {
    budget: u64,
    pub bytes: u64,
    category_bytes: Vec<u64>,
    category_budgets: Vec<Option<u64>>,
}

impl Packer {
    pub fn new(budget: u64, category_budgets: Vec<Option<u64>>) -> Packer {
        Packer {
            budget,
            bytes: 0,
            category_bytes: vec![0; category_budgets.len()],
            category_budgets,
        }
    }

    /// Takes `candidate` when it fits the budget and its category's share.
    pub fn take(&mut self, candidate: &Candidate) -> bool {
        let category = candidate.category;
        let over_category = self.category_budgets[category].is_some_and(|cap| {
            self.category_bytes[category].saturating_add(candidate.footprint) > cap
        });
        if over_category || self.bytes.saturating_add(candidate.footprint) > self.budget {
            return false;
        }
        self.bytes = self.bytes.saturating_add(candidate.footprint);
        self.category_bytes[category] =
            self.category_bytes[category].saturating_add(candidate.footprint);
        true
    }
}

/// The first chunk [`in_order`] sorts: twice the candidates that fit `budget` at their mean
/// footprint, and some.
pub(crate) fn first_chunk(candidates: &[Candidate], budget: u64) -> usize {
    let total = candidates
        .iter()
        .fold(0u64, |total, c| total.saturating_add(c.footprint));
    let mean = total
        .checked_div(candidates.len() as u64)
        .unwrap_or(1)
        .max(1);
    usize::try_from(budget.saturating_mul(2) / mean)
        .unwrap_or(usize::MAX)
        .saturating_add(1024)
}

/// Visits `items` in `order`, best first, as the greedy packing takes them, until `visit` says
/// nothing more can fit. Only the head of the order can fit a budget: it is selected and sorted
/// a chunk at a time (`chunk` items, then twice as many each time), where sorting every key
/// by score, ties by key, took a large share of the ranking.
pub(crate) fn in_order<T>(
    items: &mut [T],
    mut chunk: usize,
    order: impl Fn(&T, &T) -> std::cmp::Ordering,
    mut visit: impl FnMut(&T) -> bool,
) {
    let mut rest = items;
    while !rest.is_empty() {
        let taken = chunk.clamp(1, rest.len());
        if taken < rest.len() {
            rest.select_nth_unstable_by(taken - 1, &order);
        }
        let (head, tail) = rest.split_at_mut(taken);
        head.sort_unstable_by(&order);
        for item in head.iter() {
            if !visit(item) {
                return;
            }
        }
        rest = tail;
        chunk = chunk.saturating_mul(2);
    }
}

/// Classifies, excludes, scores and packs aggregated keys into a manifest.
pub fn build_manifest(
    stats: &DatasetStats,
    options: &RankOptions,
    generated_at: DateTime<Utc>,
) -> Result<Manifest, RankError> {
    let eligible = eligible(stats, options)?;
    let weighted = |candidate: &Candidate| candidate.stats.weighted_requests;
    manifest_of(
        stats,
        eligible,
        &weighted,
        stats.half_life,
        options,
        generated_at,
    )
}

/// Scores and packs the keys `eligible` let through into a manifest, each with the weighted
/// reads `weighted` gives it, weighted with `half_life`: `auto` passes the chosen candidate's
/// sums and the keys it classified for its backtest, rather than classify them again.
pub(crate) fn manifest_of(
    stats: &DatasetStats,
    eligible: Eligible,
    weighted: &dyn Fn(&Candidate) -> u64,
    half_life: Option<std::time::Duration>,
    options: &RankOptions,
    generated_at: DateTime<Utc>,
) -> Result<Manifest, RankError> {
    let budget = options.budget.bytes;
    let category_budgets = eligible.category_budgets(budget);
    let Eligible {
        candidates,
        categories: category_names,
        exclusions,
        classifier,
        miss_latencies_known,
    } = eligible;
    let category_ttl = |rule: Option<usize>| -> Option<u32> {
        let ttl = classifier.categories[rule?].ttl.as_deref()?;
        humantime::parse_duration(ttl)
            .ok()
            .map(|d| u32::try_from(d.as_secs()).unwrap_or(u32::MAX))
    };
    let mut scored: Vec<(f64, &Candidate)> = candidates
        .iter()
        .map(|c| (c.score(weighted(c), stats.recency_factor), c))
        .collect();

    // Every category a candidate falls in is listed, with what it got (nothing, maybe).
    let mut categories: BTreeMap<String, CategoryTotals> = category_names
        .iter()
        .enumerate()
        .map(|(id, (name, rule))| {
            let totals = CategoryTotals {
                keys: 0,
                requests: 0,
                bytes: 0,
                budget_bytes: category_budgets[id],
                ttl_s: category_ttl(*rule),
                sensitive: rule.is_some_and(|r| classifier.categories[r].sensitive == Some(true)),
            };
            (name.clone(), totals)
        })
        .collect();
    let mut packer = Packer::new(budget, category_budgets.clone());
    let mut entries = Vec::new();
    let by_score = |(a_score, a): &(f64, &Candidate), (b_score, b): &(f64, &Candidate)| {
        b_score
            .total_cmp(a_score)
            .then_with(|| a.stats.key.cmp(&b.stats.key))
    };
    let chunk = first_chunk(&candidates, budget);
    let smallest = candidates.iter().map(|c| c.footprint).min().unwrap_or(0);
    in_order(&mut scored, chunk, by_score, |&(score, candidate)| {
        if packer.take(candidate) {
            let (name, _) = &category_names[candidate.category];
            let totals = categories.get_mut(name).expect("every category listed");
            totals.keys += 1;
            totals.requests += candidate.stats.requests;
            totals.bytes += candidate.footprint;
            let key = candidate.stats;
            entries.push(ManifestEntry {
                rank: entries.len() as u64 + 1,
                key: key.key.clone(),
                category: name.clone(),
                score,
                requests: key.requests,
                hits: key.hits,
                misses: key.misses,
                size_bytes: candidate.size,
                ttl_s: totals.ttl_s.or(key.ttl_s),
                last_seen: key.last_seen,
            });
        }
        packer.bytes.saturating_add(smallest) <= budget
    });
    let keys_over_budget = (candidates.len() - entries.len()) as u64;
    let bytes_selected = packer.bytes;
    categories.retain(|_, totals| totals.keys > 0 || totals.budget_bytes.is_some());
    let header = ManifestHeader {
        schema: MANIFEST_SCHEMA_ID.to_owned(),
        generator: format!("analyzer {}", env!("CARGO_PKG_VERSION")),
        generated_at,
        window: ObservationWindow {
            start: stats.window_start,
            end: stats.window_end,
        },
        budget: Budget {
            bytes: budget,
            source: options.budget.source.clone(),
            capacity_bytes: options.budget.capacity,
        },
        totals: Totals {
            keys_seen: stats.keys.len() as u64,
            requests_seen: stats.keys.iter().map(|k| k.requests).sum(),
            keys_selected: entries.len() as u64,
            requests_selected: entries.iter().map(|e| e.requests).sum(),
            bytes_selected,
            keys_over_budget,
        },
        categories,
        scoring: Some(Scoring {
            half_life_s: half_life.map(|h| h.as_secs_f64()),
            miss_cost: if miss_latencies_known {
                "miss_latency".into()
            } else {
                "uniform".into()
            },
            store: options.store.map(|s| s.as_str().to_owned()),
            item_overhead: options.item_overhead,
            half_life_backtest: None,
        }),
        exclusions,
        prediction: None,
        entries_sha256: entries_sha256(&entries),
    };
    Ok(Manifest { header, entries })
}

/// Writes `manifest` to `path` (zstd-compressed when the name ends in `.zst`), atomically: a
/// temporary file beside it, synced, then renamed over the target.
///
/// The layout is the header on one line and one entry per line ([`schemas::manifest::lines`]),
/// so a manifest stays readable with `head`, `grep` and `zstdcat`.
pub fn write_manifest(manifest: &Manifest, path: &Path) -> Result<(), RankError> {
    let write_error = |source| RankError::Write {
        path: path.to_path_buf(),
        source,
    };
    let mut text = Vec::with_capacity(128 * (manifest.entries.len() + 8));
    schemas::manifest::lines::write(manifest, &mut text)
        .map_err(std::io::Error::from)
        .map_err(write_error)?;
    if path.extension().is_some_and(|ext| ext == "zst") {
        text = zstd::encode_all(text.as_slice(), 3).map_err(write_error)?;
    }
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(dir).map_err(write_error)?;
    cachewarm_fs::write_atomic(path, &text).map_err(write_error)
}
