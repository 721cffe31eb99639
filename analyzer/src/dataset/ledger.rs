//! The ingest ledger: which inputs the dataset already holds, so ingesting a file twice does
//! not count its events twice.
//!
//! `DATASET/_ingest_ledger.jsonl` holds one JSON line per ingested input: its fingerprint
//! (blake3 of its bytes as stored, compressed or not), where it was read from, when, how many
//! events it added and which Parquet files hold them. Readers of the dataset (Spark, DuckDB,
//! polars) skip files whose names start with `_`. A line is appended after the input's files
//! are in place, so a crash in between can at worst leave an input unrecorded (a re-run then
//! ingests it again), never recorded without its data.
//!
//! Object storage cannot append to an object, and rewriting one shared object would let two
//! ingests lose each other's lines. So on `s3://` each entry is an object of its own,
//! `DATASET/_ingest_ledger/{ingested_at}-{fingerprint}.json`, put once its input's files are
//! uploaded; loading lists them.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::remote::{Remote, RemoteError};

/// The ledger's file name inside the dataset.
pub const LEDGER_FILE: &str = "_ingest_ledger.jsonl";
/// The ledger's directory of one-entry objects inside a dataset on object storage.
pub const LEDGER_DIR: &str = "_ingest_ledger";

/// One ingested input.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LedgerEntry {
    pub fingerprint: String,
    pub input: String,
    pub bytes: u64,
    pub events: u64,
    pub ingested_at: DateTime<Utc>,
    /// The Parquet files the input's events went into, relative to the dataset.
    pub files: Vec<String>,
}

/// Errors reading or appending to the ledger; they name the file.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("failed to read the ingest ledger `{path}`")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the ingest ledger `{path}` line {line} is not a ledger entry: {message}")]
    Parse {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error("failed to append to the ingest ledger `{path}`")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to reach the ingest ledger on object storage")]
    Remote(#[from] RemoteError),
}

/// The ledger of one dataset.
#[derive(Debug)]
pub struct Ledger {
    path: PathBuf,
    remote: Option<Arc<Remote>>,
    by_fingerprint: HashMap<String, LedgerEntry>,
}

impl Ledger {
    /// Loads the ledger of the dataset at `root` (empty when the dataset is new).
    pub fn load(root: &Path) -> Result<Ledger, LedgerError> {
        let path = root.join(LEDGER_FILE);
        let mut by_fingerprint = HashMap::new();
        let file = match std::fs::File::open(&path) {
            Ok(file) => Some(file),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => None,
            Err(source) => return Err(LedgerError::Read { path, source }),
        };
        if let Some(file) = file {
            for (index, line) in BufReader::new(file).lines().enumerate() {
                let line = line.map_err(|source| LedgerError::Read {
                    path: path.clone(),
                    source,
                })?;
                if line.trim().is_empty() {
                    continue;
                }
                let entry: LedgerEntry =
                    serde_json::from_str(&line).map_err(|e| LedgerError::Parse {
                        path: path.clone(),
                        line: index + 1,
                        message: e.to_string(),
                    })?;
                by_fingerprint.insert(entry.fingerprint.clone(), entry);
            }
        }
        Ok(Ledger {
            path,
            remote: None,
            by_fingerprint,
        })
    }

    /// Loads the ledger of the dataset on object storage that `remote` reaches.
    pub fn load_remote(remote: Arc<Remote>) -> Result<Ledger, LedgerError> {
        let mut by_fingerprint = HashMap::new();
        for relative in remote.list(LEDGER_DIR)? {
            let bytes = remote.get(&relative)?;
            let entry: LedgerEntry =
                serde_json::from_slice(&bytes).map_err(|e| LedgerError::Parse {
                    path: remote.location(&relative),
                    line: 1,
                    message: e.to_string(),
                })?;
            by_fingerprint.insert(entry.fingerprint.clone(), entry);
        }
        Ok(Ledger {
            path: remote.location(LEDGER_DIR),
            remote: Some(remote),
            by_fingerprint,
        })
    }

    /// The earlier ingest of an input with this fingerprint, if any.
    pub fn find(&self, fingerprint: &str) -> Option<&LedgerEntry> {
        self.by_fingerprint.get(fingerprint)
    }

    /// Records an ingested input, durably.
    pub fn append(&mut self, entry: LedgerEntry) -> Result<(), LedgerError> {
        let error = |source| LedgerError::Write {
            path: self.path.clone(),
            source,
        };
        let mut line = serde_json::to_vec(&entry).map_err(|e| error(e.into()))?;
        if let Some(remote) = &self.remote {
            let name = format!(
                "{LEDGER_DIR}/{}-{}.json",
                entry.ingested_at.format("%Y%m%dT%H%M%S%6fZ"),
                entry.fingerprint
            );
            remote.put(&name, line)?;
            self.by_fingerprint.insert(entry.fingerprint.clone(), entry);
            return Ok(());
        }
        line.push(b'\n');
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir).map_err(error)?;
        }
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .map_err(error)?;
        file.write_all(&line).map_err(error)?;
        file.sync_all().map_err(error)?;
        self.by_fingerprint.insert(entry.fingerprint.clone(), entry);
        Ok(())
    }
}
