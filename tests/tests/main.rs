//! The end-to-end tests, one test binary (each binary links polars: one link instead of a dozen),
//! as ripgrep gathers its own in `tests/tests.rs`. Each module drives the `analyzer` and `warmer`
//! binaries against real servers started by the harness (`cachewarm_tests`, `tests/src/lib.rs`).
//! Run one module with `cargo test -p cachewarm-tests --test end_to_end MODULE::`.

mod capture;
mod cluster;
mod deploy;
mod e2e;
mod fidelity;
mod hashing;
mod loader;
mod object_storage;
mod postgres;
mod rank;
mod rank_quality;
mod report;
mod secrets;
mod sentinel;
mod shard;
mod spark;
mod stats;
mod tls;
