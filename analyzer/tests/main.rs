//! The analyzer's integration tests, one test binary (each binary links polars: one link
//! instead of five), as ripgrep gathers its own in `tests/tests.rs`.
//! Run one module with `cargo test -p analyzer --test integration MODULE::`.

mod cli;
mod fuzz_regressions;
mod pipeline;
mod real_data;
mod stats;
