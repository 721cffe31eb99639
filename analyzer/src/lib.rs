//! The cachewarm analyzer: cache access logs in, a ranked hot-key manifest out.
//!
//! The data flows one way: [`ingest`] reads logs (one reader per format) into `AccessEvent`
//! rows and [`dataset`] writes them as hive-partitioned Parquet with arrow-rs; [`rank`] reads
//! the dataset with polars, aggregates it per key, ranks the keys and packs them into a byte
//! budget as a manifest v1 (see the `schemas` crate).
//!
//! # Layout
//!
//! Dependencies run one way (`scripts/check-module-cycles` checks): `ingest` → `dataset`,
//! `rank`/`stats`/`simulate` → `dataset`, `settings` → `rank`.
//!
//! - [`input`]: opening files or stdin, plain, gzip or zstd.
//! - [`ingest`]: the readers, one folder per format, and the ingest summary.
//! - [`dataset`]: the partitioned Parquet dataset and its row, `AccessEvent`.
//! - [`rank`]: the per-key aggregation into the key-stats table (polars here, or the SQL of
//!   `aggregate-sql` on Spark, DuckDB or Trino), then scoring, categories, exclusions, packing
//!   into a budget, and writing the manifest.
//! - [`simulate`]: the backtest that predicts how much a manifest helps.
//! - [`stats`]: workload characterization, with the columns of Twitter's published table.
//! - [`settings`]: flags and `cachewarm.toml`, resolved.

pub mod dataset;
pub mod ingest;
pub mod input;
pub mod rank;
pub mod settings;
pub mod simulate;
pub mod stats;
