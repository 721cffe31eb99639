//! The dataset: hive-partitioned Parquet, `DATASET/date=YYYY-MM-DD/part-*.parquet`, one row per
//! `AccessEvent`, zstd-compressed. Spark, Trino, DuckDB and polars read it as it is.
//!
//! Files are written under a hidden temporary name and renamed into place when complete, so a
//! reader (or a crashed ingest) never leaves a half-written file where readers look.
//!
//! The dataset may live on object storage (`s3://BUCKET/PREFIX`, see `remote`).

mod event;
pub mod ledger;
pub mod remote;
mod writer;

use std::path::{Path, PathBuf};

pub use event::{AccessEvent, EventRef};
pub use ledger::{Ledger, LedgerEntry, LedgerError};
pub use writer::{DatasetError, DatasetWriter};

/// The name of the partition directory holding events of the UTC day `date` (`YYYY-MM-DD`).
pub fn partition_dir(root: &Path, date: &str) -> PathBuf {
    root.join(format!("date={date}"))
}

/// Whether `name` (a file or directory name) is one readers of a dataset skip: hidden files
/// (ingest's temporary files) and `_` files (the ledger, Spark's `_SUCCESS`).
pub fn is_skipped(name: &str) -> bool {
    name.starts_with('.') || name.starts_with('_')
}

/// Every complete Parquet file of the dataset, sorted by path.
pub fn data_files(root: &Path) -> std::io::Result<Vec<PathBuf>> {
    if remote::is_remote(root) {
        let remote = remote::Remote::open(root).map_err(std::io::Error::other)?;
        let objects = remote.list("").map_err(std::io::Error::other)?;
        return Ok(objects
            .iter()
            .filter(|relative| {
                let mut parts = relative.split('/');
                let (partition, name) = (parts.next(), parts.next());
                partition.is_some_and(|p| p.starts_with("date="))
                    && name.is_some_and(|n| !is_skipped(n) && n.ends_with(".parquet"))
                    && parts.next().is_none()
            })
            .map(|relative| remote.location(relative))
            .collect());
    }
    let mut files = Vec::new();
    for partition in std::fs::read_dir(root)? {
        let partition = partition?;
        let is_partition = partition.file_name().to_string_lossy().starts_with("date=");
        if !is_partition || !partition.file_type()?.is_dir() {
            continue;
        }
        for file in std::fs::read_dir(partition.path())? {
            let path = file?.path();
            let name = path.file_name().unwrap_or_default().to_string_lossy();
            if !is_skipped(&name) && name.ends_with(".parquet") {
                files.push(path);
            }
        }
    }
    files.sort();
    Ok(files)
}
