//! Where values come from: a replica store (any store URL), a snapshot file, or the
//! application's own loader processes (`exec:`, see [`loader`]).
//!
//! A source answers each manifest key with an [`Answer`]: a replica or a snapshot with at most
//! one value under the manifest key itself, a loader with any number of entries under store
//! keys of its own (written together), a miss with its reason, or a failure.

pub mod loader;
mod snapshot;
mod url;

use std::sync::Arc;

use crate::manifest::{ManifestError, ManifestFile};
use crate::store::{Fetched, Role, Store, StoreError, StoreKind};

pub use loader::{LoaderError, LoaderSettings, LoaderSource};
pub use snapshot::{
    SOURCE_KIND_KEY, Snapshot, SnapshotError, SnapshotWriter, key_hash, snapshot_kind,
    write_snapshot,
};
pub use url::SourceUrl;

/// What a source has for one manifest key.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    /// Nothing to warm; the source's reason, when it gives one.
    Miss(Option<String>),
    /// One value, stored under the manifest key (a replica, a snapshot).
    Value(Fetched),
    /// Values to write together, each under its own store key (a loader). The manifest
    /// key's category and rank stand for all of them.
    Entries(Vec<(String, Fetched)>),
    /// The source could not load the key, after its retries; why.
    Failed(String),
}

impl Answer {
    /// The `(store key, value)` pairs to write for `manifest_key`, in order.
    pub fn items<'a>(
        &'a self,
        manifest_key: &'a str,
    ) -> impl Iterator<Item = (&'a str, &'a Fetched)> + 'a {
        let single = match self {
            Answer::Value(fetched) => Some((manifest_key, fetched)),
            _ => None,
        };
        let many = match self {
            Answer::Entries(entries) => entries.as_slice(),
            _ => &[],
        };
        single
            .into_iter()
            .chain(many.iter().map(|(key, fetched)| (key.as_str(), fetched)))
    }

    /// Item `index` of [`items`](Self::items).
    pub fn item<'a>(
        &'a self,
        manifest_key: &'a str,
        index: usize,
    ) -> Option<(&'a str, &'a Fetched)> {
        match self {
            Answer::Value(fetched) if index == 0 => Some((manifest_key, fetched)),
            Answer::Entries(entries) => entries.get(index).map(|(k, f)| (k.as_str(), f)),
            _ => None,
        }
    }
}

impl From<Option<Fetched>> for Answer {
    fn from(fetched: Option<Fetched>) -> Answer {
        fetched.map_or(Answer::Miss(None), Answer::Value)
    }
}

/// A value source.
#[derive(Debug)]
pub enum Source {
    /// A live store read in pipelined batches (value + remaining TTL).
    Replica(Store),
    /// A Parquet snapshot, read in step with the manifest.
    Snapshot(Arc<Snapshot>),
    /// Loader processes computing values with the application's code.
    Loader(LoaderSource),
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
    #[error("a loader (`exec:`) computes values for a run; it cannot be read as a store here")]
    NotAStore,
}

impl Source {
    /// Opens the source at `url` for the keys of `manifest` from entry `from` on (a resumed
    /// run reads no earlier entry: a snapshot skips their rows instead of keeping them aside).
    /// `key_hashes`, when known, are the [`key_hash`]es of the manifest's keys in its order
    /// (`manifest::open_hashing_keys`); a snapshot otherwise reads the manifest for them.
    pub async fn open(
        url: &SourceUrl,
        manifest: &Arc<ManifestFile>,
        from: u64,
        key_hashes: Option<Vec<u64>>,
    ) -> Result<Source, SourceError> {
        match url {
            SourceUrl::Snapshot(path) => {
                let path = path.clone();
                let manifest = Arc::clone(manifest);
                let snapshot = tokio::task::spawn_blocking(move || {
                    let began = std::time::Instant::now();
                    let mut keys = match key_hashes {
                        Some(mut keys) => {
                            keys.drain(..keys.len().min(from as usize));
                            keys
                        }
                        None => {
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
                            keys
                        }
                    };
                    keys.sort_unstable();
                    keys.dedup();
                    let hashed = began.elapsed();
                    let snapshot = Snapshot::open(&path, keys)?;
                    tracing::debug!(?hashed, elapsed = ?began.elapsed(), held = snapshot.len(),
                        "snapshot opened");
                    Ok::<_, SourceError>(snapshot)
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

    /// The kind of store the values come from; `None` for a snapshot that does not say, and
    /// for a loader, which serializes each value for the target with the application's own
    /// client.
    pub fn kind(&self) -> Option<StoreKind> {
        match self {
            Source::Replica(store) => Some(store.kind()),
            Source::Snapshot(snapshot) => snapshot.source_kind(),
            Source::Loader(_) => None,
        }
    }

    /// The live value and remaining TTL of each of `keys` (a replica or a snapshot).
    pub async fn fetch(&self, keys: &[&str]) -> Result<Vec<Option<Fetched>>, SourceError> {
        self.fetch_retrying(keys, 0).await
    }

    /// What the source has for each of `keys`, with transient failures retried `retries`
    /// times with backoff (see `run::faults`). A loader answers every key, failures included:
    /// it does not fail as a whole.
    /// `sensitive` gives the keys of sensitive categories among `keys` and how logs show them,
    /// for a loader (whose stderr may name them).
    pub async fn answers(
        &self,
        keys: &[&str],
        retries: u32,
        sensitive: impl FnOnce() -> Vec<(String, String)>,
    ) -> Result<Vec<Answer>, SourceError> {
        match self {
            Source::Loader(loader) => Ok(loader.answers(keys, retries, sensitive()).await),
            source => Ok(source
                .fetch_retrying(keys, retries)
                .await?
                .into_iter()
                .map(Answer::from)
                .collect()),
        }
    }

    /// The loader's part of the report, when the source is a loader.
    pub fn loader_report(&self) -> Option<schemas::report::LoaderReport> {
        match self {
            Source::Loader(loader) => Some(loader.report()),
            _ => None,
        }
    }

    /// Ends the loader processes, if any (closes their stdin, then waits for them briefly).
    pub async fn close(&self) {
        if let Source::Loader(loader) = self {
            loader.close().await;
        }
    }

    /// [`fetch`](Self::fetch), with a replica's transient failures retried `retries` times
    /// with backoff (see `run::faults`).
    async fn fetch_retrying(
        &self,
        keys: &[&str],
        retries: u32,
    ) -> Result<Vec<Option<Fetched>>, SourceError> {
        match self {
            Source::Loader(_) => Err(SourceError::NotAStore),
            Source::Replica(store) => {
                let retried = std::sync::Arc::default();
                let fetched = crate::retry::retrying(retries, &retried, || store.fetch(keys)).await;
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
