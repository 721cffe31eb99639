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
//! Dependencies run one way, from the top of this list down (no module imports one that
//! imports it back; `scripts/check-module-cycles` checks):
//!
//! - The binary (`main.rs`, `cli/`): one file per subcommand, above everything here.
//! - [`settings`]: flags, `CACHEWARM_*` variables and `cachewarm.toml` resolved into a run's
//!   settings, with environment profiles; each layered setting is declared once.
//! - [`run`]: the orchestration of a run: `setup` checks the inputs, `read` feeds the targets
//!   from the source; `run/target/` is one target's lifecycle, write loop, per-batch
//!   decisions, capacity limits and tally.
//! - [`manifest`]: loading and verifying manifest v1. [`source`]: value sources and their
//!   addresses: replica stores, snapshots (`source/snapshot/`) and loader processes
//!   (`source/loader/`).
//! - [`report`]: what a run leaves behind beyond `report.json`: the summary, `report.md`,
//!   `report.html`, the run history (`runs.parquet`) and Prometheus metrics.
//! - [`rundir`]: the run directory (checkpoint, lock, written-keys logs) and the output
//!   writers; [`status`] and [`undo`] read it.
//! - [`store`]: the store contract, and one folder per store (Redis, memcached, SQL), each
//!   parsing its own URL.
//! - `retry` and [`env_vars`]: backoff for store calls and the variable names, at the bottom;
//!   [`priority`]: the run's threads giving way on the host's CPUs under live traffic.

pub mod env_vars;
pub mod manifest;
pub mod priority;
pub mod report;
pub(crate) mod retry;
pub mod run;
pub mod rundir;
pub mod settings;
pub mod source;
pub mod status;
pub mod store;
pub mod undo;
