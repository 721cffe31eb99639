//! Rank: the dataset's hot keys, packed into a byte budget, as a manifest.
//!
//! polars aggregates the dataset per key (lazily, over every Parquet file), then the keys are
//! ranked by read requests (ties broken by key, so the same dataset always gives the same
//! manifest) and packed greedily: a key that does not fit is skipped and smaller keys after it
//! may still fill the rest of the budget.

mod aggregate;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use schemas::manifest::{Budget, CategoryTotals, ObservationWindow, Totals, entries_sha256};
use schemas::{MANIFEST_SCHEMA_ID, Manifest, ManifestEntry, ManifestHeader};

pub use aggregate::{DatasetStats, KeyStats, aggregate};

/// The category of every key until category rules are configured.
pub const DEFAULT_CATEGORY: &str = "default";

/// Errors while ranking.
#[derive(Debug, thiserror::Error)]
pub enum RankError {
    #[error("dataset `{0}` holds no Parquet files")]
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
    #[error("failed to write the manifest `{path}`")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// What to rank and how.
#[derive(Debug, Clone)]
pub struct RankOptions {
    /// Key + value bytes the manifest may hold.
    pub budget_bytes: u64,
    /// How the budget was given, for the manifest header (e.g. `--budget 64MiB`).
    pub budget_source: String,
}

/// Builds the manifest of the dataset at `dataset`.
pub fn rank(dataset: &Path, options: &RankOptions) -> Result<Manifest, RankError> {
    let stats = aggregate(dataset)?;
    Ok(build_manifest(stats, options, Utc::now()))
}

/// Ranks and packs aggregated keys into a manifest.
pub fn build_manifest(
    stats: DatasetStats,
    options: &RankOptions,
    generated_at: DateTime<Utc>,
) -> Manifest {
    let mut entries = Vec::new();
    let mut bytes_selected = 0u64;
    let mut keys_over_budget = 0u64;
    let mut categories: BTreeMap<String, CategoryTotals> = BTreeMap::new();
    for key in &stats.keys {
        let size = key.key.len() as u64 + key.value_size.unwrap_or(stats.typical_value_size);
        if bytes_selected + size > options.budget_bytes {
            keys_over_budget += 1;
            continue;
        }
        bytes_selected += size;
        let totals = categories
            .entry(DEFAULT_CATEGORY.to_owned())
            .or_insert(CategoryTotals {
                keys: 0,
                requests: 0,
                bytes: 0,
            });
        totals.keys += 1;
        totals.requests += key.requests;
        totals.bytes += size;
        entries.push(ManifestEntry {
            rank: entries.len() as u64 + 1,
            key: key.key.clone(),
            category: DEFAULT_CATEGORY.to_owned(),
            score: key.requests as f64,
            requests: key.requests,
            hits: key.hits,
            misses: key.misses,
            size_bytes: size,
            ttl_s: key.ttl_s,
            last_seen: key.last_seen,
        });
    }
    let header = ManifestHeader {
        schema: MANIFEST_SCHEMA_ID.to_owned(),
        generator: format!("analyzer {}", env!("CARGO_PKG_VERSION")),
        generated_at,
        window: ObservationWindow {
            start: stats.window_start,
            end: stats.window_end,
        },
        budget: Budget {
            bytes: options.budget_bytes,
            source: options.budget_source.clone(),
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
        entries_sha256: entries_sha256(&entries),
    };
    Manifest { header, entries }
}

/// Writes `manifest` to `path` (zstd-compressed when the name ends in `.zst`), atomically: a
/// temporary file beside it, synced, then renamed over the target.
///
/// The layout is the header on one line and one entry per line, so a manifest stays readable
/// with `head`, `grep` and `zstdcat`.
pub fn write_manifest(manifest: &Manifest, path: &Path) -> Result<(), RankError> {
    let write_error = |source| RankError::Write {
        path: path.to_path_buf(),
        source,
    };
    let mut text = Vec::with_capacity(128 * (manifest.entries.len() + 8));
    text.extend_from_slice(b"{\"header\":");
    serde_json::to_writer(&mut text, &manifest.header)
        .map_err(std::io::Error::from)
        .map_err(write_error)?;
    text.extend_from_slice(b",\n\"entries\":[");
    for (i, entry) in manifest.entries.iter().enumerate() {
        text.extend_from_slice(if i == 0 { b"\n" } else { b",\n" });
        serde_json::to_writer(&mut text, entry)
            .map_err(std::io::Error::from)
            .map_err(write_error)?;
    }
    text.extend_from_slice(b"\n]}\n");
    if path.extension().is_some_and(|ext| ext == "zst") {
        text = zstd::encode_all(text.as_slice(), 3).map_err(write_error)?;
    }
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(dir).map_err(write_error)?;
    let temp = dir.join(format!(
        ".{}.tmp",
        path.file_name().unwrap_or_default().to_string_lossy()
    ));
    let mut file = std::fs::File::create(&temp).map_err(write_error)?;
    file.write_all(&text).map_err(write_error)?;
    file.sync_all().map_err(write_error)?;
    std::fs::rename(&temp, path).map_err(write_error)
}
