//! Where values come from: a replica store (any store URL) or a snapshot file.

mod snapshot;

use std::collections::HashSet;

use crate::store::{Fetched, Role, Store, StoreError, StoreUrl};

pub use snapshot::{Snapshot, SnapshotError, write_snapshot};

/// A value source.
#[derive(Debug)]
pub enum Source {
    /// A live store read in pipelined batches (value + remaining TTL).
    Replica(Store),
    /// A Parquet snapshot, loaded for the keys the run needs.
    Snapshot(Snapshot),
}

/// Why a source could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
}

impl Source {
    /// Opens the source at `url`; a snapshot keeps only the entries of `wanted` keys.
    pub async fn open(url: &StoreUrl, wanted: &HashSet<&str>) -> Result<Source, SourceError> {
        match url {
            StoreUrl::Snapshot { path } => {
                let path = path.clone();
                let wanted: HashSet<String> = wanted.iter().map(|k| (*k).to_owned()).collect();
                let snapshot =
                    tokio::task::spawn_blocking(move || Snapshot::load(&path, Some(&wanted)))
                        .await
                        .expect("snapshot loading does not panic")?;
                Ok(Source::Snapshot(snapshot))
            }
            store => Ok(Source::Replica(Store::connect(store, Role::Source).await?)),
        }
    }

    /// The live value and remaining TTL of each of `keys`.
    pub async fn fetch(&self, keys: &[&str]) -> Result<Vec<Option<Fetched>>, StoreError> {
        match self {
            Source::Replica(store) => store.fetch(keys).await,
            Source::Snapshot(snapshot) => Ok(snapshot.fetch(keys, chrono::Utc::now())),
        }
    }
}
