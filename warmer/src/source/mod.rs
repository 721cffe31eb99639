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
                    // The blocking pool's threads have no wakeup hook of their own.
                    crate::priority::follow();
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::tests::{lines, manifest};
    use crate::store::ValueEncoding;

    /// A snapshot opens to the same keys from the verifying pass's hashes as from a pass of its
    /// own, for a fresh run and for resumed ones (none of the entries before `from`).
    #[tokio::test]
    async fn a_snapshot_opens_alike_from_the_verifying_pass_hashes() {
        let dir = tempfile::tempdir().unwrap();
        let original = manifest(50);
        let manifest_path = dir.path().join("manifest.json");
        std::fs::write(&manifest_path, lines(&original)).unwrap();
        // The snapshot holds every other manifest key (ranks 2, 4, …, 50) and one of its own.
        let value = Fetched {
            value: b"v".to_vec(),
            ttl: None,
            flags: 0,
            encoding: ValueEncoding::Raw,
        };
        let held: Vec<String> = (2..=50)
            .step_by(2)
            .map(|rank| format!("key:{rank}"))
            .collect();
        let rows = held
            .iter()
            .map(String::as_str)
            .chain(["not-in-the-manifest"])
            .map(|key| (key, &value));
        let snapshot_path = dir.path().join("snapshot.parquet");
        snapshot::write_snapshot(&snapshot_path, None, rows, chrono::Utc::now()).unwrap();
        let url = SourceUrl::Snapshot(snapshot_path);
        // The entries from `from` on are ranks `from + 1` to 50; the even ones are held.
        let held_from = |from: u64| (from + 1..=50).filter(|rank| rank % 2 == 0).count();
        for from in [0, 7, 8, 50, 60] {
            let (file, hashes) =
                crate::manifest::open_hashing_keys(&manifest_path, key_hash).unwrap();
            let file = Arc::new(file);
            for known in [Some(hashes), None] {
                let given = known.is_some();
                let Source::Snapshot(snapshot) =
                    Source::open(&url, &file, from, known).await.unwrap()
                else {
                    panic!("a snapshot URL opens a snapshot");
                };
                assert_eq!(
                    snapshot.len(),
                    held_from(from),
                    "from {from}, hashes given: {given}"
                );
            }
        }
    }
}
