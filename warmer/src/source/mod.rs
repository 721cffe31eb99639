//! Where values come from: a replica store (any store URL) or a snapshot file.

mod snapshot;
mod url;

use std::sync::Arc;

use crate::manifest::{ManifestError, ManifestFile};
use crate::store::{Fetched, Role, Store, StoreError, StoreKind};

pub use snapshot::{
    SOURCE_KIND_KEY, Snapshot, SnapshotError, SnapshotWriter, key_hash, snapshot_kind,
    write_snapshot,
};
pub use url::SourceUrl;

/// A value source.
#[derive(Debug)]
pub enum Source {
    /// A live store read in pipelined batches (value + remaining TTL).
    Replica(Store),
    /// A Parquet snapshot, read in step with the manifest.
    Snapshot(Arc<Snapshot>),
}

/// Why a source could not be opened or read.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
    #[error(transparent)]
    Manifest(#[from] ManifestError),
}

impl Source {
    /// Opens the source at `url` for the keys of `manifest` from entry `from` on (a resumed
    /// run reads no earlier entry: a snapshot skips their rows instead of keeping them aside).
    pub async fn open(
        url: &SourceUrl,
        manifest: &Arc<ManifestFile>,
        from: u64,
    ) -> Result<Source, SourceError> {
        match url {
            SourceUrl::Snapshot(path) => {
                let path = path.clone();
                let manifest = Arc::clone(manifest);
                let snapshot = tokio::task::spawn_blocking(move || {
                    let mut keys =
                        Vec::with_capacity(manifest.entries.saturating_sub(from) as usize);
                    let mut index = 0u64;
                    manifest.stream(8192, |batch| {
                        for entry in batch {
                            if index >= from {
                                keys.push(key_hash(&entry.key));
                            }
                            index += 1;
                        }
                        true
                    })?;
                    keys.sort_unstable();
                    keys.dedup();
                    Ok::<_, SourceError>(Snapshot::open(&path, keys)?)
                })
                .await
                .expect("snapshot opening does not panic")?;
                Ok(Source::Snapshot(Arc::new(snapshot)))
            }
            SourceUrl::Store(store) => {
                Ok(Source::Replica(Store::connect(store, Role::Source).await?))
            }
        }
    }

    /// The kind of store the values come from; `None` for a snapshot that does not say.
    pub fn kind(&self) -> Option<StoreKind> {
        match self {
            Source::Replica(store) => Some(store.kind()),
            Source::Snapshot(snapshot) => snapshot.source_kind(),
        }
    }

    /// The live value and remaining TTL of each of `keys`.
    pub async fn fetch(&self, keys: &[&str]) -> Result<Vec<Option<Fetched>>, SourceError> {
        self.fetch_retrying(keys, 0).await
    }

    /// [`fetch`](Self::fetch), with a replica's transient failures retried `retries` times
    /// with backoff (see `run::faults`).
    pub async fn fetch_retrying(
        &self,
        keys: &[&str],
        retries: u32,
    ) -> Result<Vec<Option<Fetched>>, SourceError> {
        match self {
            Source::Replica(store) => {
                let retried = std::sync::Arc::default();
                let fetched =
                    crate::run::faults::retrying(retries, &retried, || store.fetch(keys)).await;
                Ok(fetched?)
            }
            Source::Snapshot(snapshot) => {
                let snapshot = Arc::clone(snapshot);
                let keys: Vec<String> = keys.iter().map(|k| (*k).to_owned()).collect();
                let fetched = tokio::task::spawn_blocking(move || {
                    let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
                    snapshot.fetch(&keys, chrono::Utc::now())
                })
                .await
                .expect("snapshot reading does not panic")?;
                Ok(fetched)
            }
        }
    }
}
