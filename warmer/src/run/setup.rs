//! What a run checks before it makes its run directory: the manifest verified, the source and
//! target addresses parsed, the categories known, a loader started, and no copy between kinds
//! of store unless allowed. A refusal here leaves nothing behind.

use crate::manifest::{self, ManifestFile};
use crate::source::{LoaderSource, SourceUrl, key_hash, loader};
use crate::store::{StoreKind, StoreUrl, redact};

use super::RunSettings;
use super::error::{RunError, error_chain};

/// The run's inputs, checked.
pub(super) struct Plan {
    pub manifest: ManifestFile,
    /// `None` for an `exec:` source, whose loader is in `loader`.
    pub source_url: Option<SourceUrl>,
    pub target_urls: Vec<StoreUrl>,
    /// The targets as reports and logs show them: without passwords.
    pub redacted_targets: Vec<String>,
    /// Indexed like the manifest's categories: whether the run writes that category.
    pub category_enabled: Vec<bool>,
    /// The loader of an `exec:` source, or why it did not start.
    pub loader: Option<Result<LoaderSource, String>>,
    /// For a snapshot source: the [`key_hash`] of every manifest entry's key, in order.
    pub key_hashes: Option<Vec<u64>>,
}

/// Checks the run's inputs and starts its loader, if any.
pub(super) async fn plan(settings: &RunSettings) -> Result<Plan, RunError> {
    // An `exec:` source is no store URL: its loader is started below, once the targets are
    // known.
    let loader_command = loader::command(&settings.source)
        .transpose()
        .map_err(RunError::Loader)?;
    let source_url = match loader_command {
        Some(_) => None,
        None => Some(SourceUrl::parse(&settings.source)?),
    };
    let path = settings.manifest.clone();
    let shard = settings.shard;
    // A snapshot finds its rows by the hashes of the manifest's keys: taken on the verifying
    // pass. A shard's entries are a subset, which the snapshot hashes for itself.
    let hash_keys = matches!(source_url, Some(SourceUrl::Snapshot(_))) && shard.is_none();
    let (manifest, key_hashes) = tokio::task::spawn_blocking(move || {
        if hash_keys {
            let (manifest, hashes) = manifest::open_hashing_keys(&path, key_hash)?;
            return Ok((manifest, Some(hashes)));
        }
        let manifest = manifest::open(&path)?;
        match shard {
            Some(shard) => manifest.restrict(shard).map(|manifest| (manifest, None)),
            None => Ok((manifest, None)),
        }
    })
    .await
    .expect("manifest verification does not panic")?;
    let target_urls = settings
        .targets
        .iter()
        .map(|text| match SourceUrl::parse(text) {
            Ok(SourceUrl::Snapshot(_)) => Err(RunError::SnapshotTarget(text.clone())),
            _ => Ok(StoreUrl::parse(text)?),
        })
        .collect::<Result<Vec<_>, _>>()?;
    let category_enabled = match &settings.categories {
        None => vec![true; manifest.categories.len()],
        Some(names) => {
            if let Some(unknown) = names
                .iter()
                .find(|name| !manifest.categories.iter().any(|c| &c.name == *name))
            {
                let known: Vec<&str> = manifest
                    .categories
                    .iter()
                    .map(|c| c.name.as_str())
                    .collect();
                return Err(RunError::Categories(format!(
                    "category `{unknown}` is not in manifest `{}`; its categories are: {}",
                    settings.manifest.display(),
                    known.join(", ")
                )));
            }
            manifest
                .categories
                .iter()
                .map(|c| names.contains(&c.name))
                .collect()
        }
    };
    let redacted_targets: Vec<String> = settings.targets.iter().map(|t| redact(t)).collect();
    // The loader says hello before the run directory is made: a loader for another kind of
    // store is a usage error, and leaves nothing behind. One that fails to start is reported
    // like a source that is down.
    let loader = match loader_command {
        None => None,
        Some(argv) => {
            let targets: Vec<(String, &StoreUrl)> = redacted_targets
                .iter()
                .cloned()
                .zip(target_urls.iter())
                .collect();
            match LoaderSource::start(argv, &settings.loader, &targets).await {
                Ok(loader) => Some(Ok(loader)),
                Err(error) if error.is_usage() => return Err(RunError::Loader(error)),
                Err(error) => {
                    tracing::error!(%error, "loader did not start; nothing will be written");
                    Some(Err(error_chain(&error)))
                }
            }
        }
    };
    if !settings.allow_cross_kind
        && let Some(source_kind) = source_url.as_ref().and_then(source_kind)
    {
        for (url, text) in target_urls.iter().zip(&redacted_targets) {
            if url.kind() != source_kind {
                return Err(RunError::CrossKind {
                    source_kind: kind_name(source_kind),
                    target_kind: kind_name(url.kind()),
                    target: text.clone(),
                });
            }
        }
    }
    Ok(Plan {
        manifest,
        source_url,
        target_urls,
        redacted_targets,
        category_enabled,
        loader,
        key_hashes,
    })
}

/// A store kind's name in messages.
fn kind_name(kind: StoreKind) -> &'static str {
    match kind {
        StoreKind::Redis => "Redis",
        StoreKind::Memcached => "memcached",
        StoreKind::Sql => "SQL database cache",
    }
}

/// The kind of store behind a source, where known before connecting (a snapshot says in its
/// metadata which kind it was taken from; one that does not, or cannot be read yet, is
/// unknown: its failure is reported when the run opens it).
fn source_kind(url: &SourceUrl) -> Option<StoreKind> {
    match url {
        SourceUrl::Store(store) => Some(store.kind()),
        SourceUrl::Snapshot(path) => crate::source::snapshot_kind(path),
    }
}
