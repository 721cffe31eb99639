//! The cachewarm warmer: a hot-key manifest and a value source in, warm cache stores out,
//! and a report of what it did.
//!
//! The flow of a run: [`manifest`] reads and verifies the manifest; [`source`] opens the value
//! source (a replica store or a snapshot file); [`run`] reads values in rank-ordered batches
//! and hands them to one task per target [`store`], which writes with add semantics (never
//! replacing a live entry), within the byte budget and the run's deadline; finally every
//! target is probed again and the report and checkpoint are written into the run directory. With
//! `--observe`, a window of live traffic before and after the warm is measured on the targets'
//! own hit counters (`run::observe`).
//!
//! # Layout
//!
//! - [`manifest`]: loading and verifying manifest v1.
//! - [`store`]: the store contract, and one folder per store (Redis, memcached, SQL), each
//!   parsing its own URL.
//! - [`source`]: value sources and their addresses: replica stores and snapshots.
//! - [`run`]: the orchestration of a run, per-target writing, coverage probes.
//! - [`report`]: what a run leaves behind beyond `report.json`: the summary, `report.md`,
//!   `report.html`, the run history (`runs.parquet`) and Prometheus metrics.
//! - [`env_vars`]: the names of the `CACHEWARM_*` variables.
//! - [`settings`]: flags, `CACHEWARM_*` variables and `cachewarm.toml` resolved into a run's
//!   settings, with environment profiles.
//! - [`undo`]: taking back what a run wrote.
//! - [`status`]: where a run stands, from its run directory.

pub mod env_vars;
pub mod manifest;
pub mod report;
pub mod run;
pub mod settings;
pub mod source;
pub mod status;
pub mod store;
pub mod undo;
