//! The dataset: hive-partitioned Parquet, `DATASET/date=YYYY-MM-DD/part-*.parquet`, one row per
//! `AccessEvent`, zstd-compressed. Spark, Trino, DuckDB and polars read it as it is.
//!
//! Files are written under a hidden temporary name and renamed into place when complete, so a
//! reader (or a crashed ingest) never leaves a half-written file where readers look.

mod event;
pub mod ledger;
mod writer;

use std::path::{Path, PathBuf};

pub use event::AccessEvent;
pub use ledger::{Ledger, LedgerEntry, LedgerError};
pub use writer::{DatasetError, DatasetWriter};

/// The name of the partition directory holding events of the UTC day `date` (`YYYY-MM-DD`).
pub fn partition_dir(root: &Path, date: &str) -> PathBuf {
    root.join(format!("date={date}"))
}

/// Every complete Parquet file of the dataset, sorted by path.
pub fn data_files(root: &Path) -> std::io::Result<Vec<PathBuf>> {
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
            if !name.starts_with('.') && name.ends_with(".parquet") {
                files.push(path);
            }
        }
    }
    files.sort();
    Ok(files)
}
