//! Where ingest writes: the dataset itself, or, for a dataset on object storage, a local
//! staging directory whose files are uploaded once each input is complete.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::IngestError;
use crate::dataset::Ledger;
use crate::dataset::remote::{self, Remote};

/// The dataset ingest writes to.
pub(super) enum Target {
    Local,
    Remote {
        remote: Arc<Remote>,
        staging: tempfile::TempDir,
    },
}

impl Target {
    pub(super) fn open(dataset: &Path) -> Result<Target, IngestError> {
        if !remote::is_remote(dataset) {
            return Ok(Target::Local);
        }
        let remote = Arc::new(Remote::open(dataset)?);
        let staging = tempfile::Builder::new()
            .prefix("cachewarm-ingest-")
            .tempdir()
            .map_err(|source| IngestError::Staging { source })?;
        Ok(Target::Remote { remote, staging })
    }

    /// The dataset's ledger.
    pub(super) fn ledger(&self, dataset: &Path) -> Result<Ledger, IngestError> {
        Ok(match self {
            Target::Local => Ledger::load(dataset)?,
            Target::Remote { remote, .. } => Ledger::load_remote(remote.clone())?,
        })
    }

    /// The directory the dataset writer writes into.
    pub(super) fn write_root<'a>(&'a self, dataset: &'a Path) -> &'a Path {
        match self {
            Target::Local => dataset,
            Target::Remote { staging, .. } => staging.path(),
        }
    }

    /// Puts an input's finished files where readers look; returns where they are now.
    pub(super) fn publish(
        &self,
        root: &Path,
        paths: Vec<PathBuf>,
    ) -> Result<Vec<PathBuf>, IngestError> {
        let Target::Remote { remote, .. } = self else {
            return Ok(paths);
        };
        let mut published = Vec::with_capacity(paths.len());
        for path in paths {
            let relative = path
                .strip_prefix(root)
                .unwrap_or(&path)
                .to_string_lossy()
                .into_owned();
            remote.upload(&path, &relative)?;
            // Uploaded: the staging copy has served its purpose (it may be large).
            let _ = std::fs::remove_file(&path);
            published.push(remote.location(&relative));
        }
        Ok(published)
    }

    /// A published file's path relative to the dataset, as the ledger records it.
    pub(super) fn relative(&self, dataset: &Path, path: &Path) -> Option<String> {
        let relative = match self {
            Target::Local => path
                .strip_prefix(dataset)
                .ok()?
                .to_string_lossy()
                .into_owned(),
            Target::Remote { .. } => path
                .to_string_lossy()
                .strip_prefix(&*dataset.to_string_lossy())?
                .trim_start_matches('/')
                .to_owned(),
        };
        Some(relative)
    }
}
