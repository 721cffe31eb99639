//! The contracts between the cachewarm `analyzer` and `warmer`.
//!
//! Both programs agree on four things, and this crate is where they are written down: the
//! access event that logs are ingested into, the hot-key manifest that the analyzer writes and
//! the warmer reads, the report a warm run leaves behind, and the checkpoint a resumed run needs.
//! The analyzer's two halves agree on a fifth, the key-stats table, which a Spark job may write
//! in place of the analyzer's own aggregation. Every JSON format carries a schema id with a
//! version; the JSON Schema files in `schemas/json/` are generated from these types (see
//! [`json_schemas`]) and a test fails when they are stale.
//!
//! # Layout
//!
//! - [`event`]: the `AccessEvent` columns as an Arrow schema, and the operation vocabulary.
//! - [`key_stats`]: key stats v1, the per-key aggregation that ranking scores and packs.
//! - [`manifest`]: manifest v1, and the checksum of its entries.
//! - [`report`]: report v1; in `report/`, the outcome vocabulary and its counts, read-back
//!   validation, live-traffic windows and the loader's section.
//! - [`checkpoint`]: checkpoint v1.
//! - [`config`]: the `cachewarm.toml` file.
//! - [`keys`]: the key rules of each store kind.
//! - [`shard`]: how `n` warmers split a manifest (the stable hash of a key to its shard).
//! - [`loader`]: loader protocol v1, between the warmer and an application's loader process.

pub mod checkpoint;
pub mod config;
pub mod event;
pub mod key_stats;
pub mod keys;
pub mod loader;
pub mod manifest;
pub mod report;
pub mod shard;

pub use checkpoint::{CHECKPOINT_SCHEMA_ID, Checkpoint};
pub use event::{Op, access_event_schema};
pub use key_stats::KeyStats;
pub use manifest::{MANIFEST_SCHEMA_ID, Manifest, ManifestEntry, ManifestHeader};
pub use report::{REPORT_SCHEMA_ID, Report};
pub use shard::{Shard, shard_of};

/// The JSON Schema documents of the on-disk formats, as `(file name, pretty JSON)` pairs, in the
/// form committed under `schemas/json/`.
pub fn json_schemas() -> Vec<(&'static str, String)> {
    fn render(schema: schemars::Schema) -> String {
        let mut text = serde_json::to_string_pretty(&schema).expect("a JSON Schema serializes");
        text.push('\n');
        text
    }
    vec![
        (
            "manifest.v1.schema.json",
            render(schemars::schema_for!(Manifest)),
        ),
        (
            "key-stats.v1.schema.json",
            render(schemars::schema_for!(KeyStats)),
        ),
        (
            "report.v1.schema.json",
            render(schemars::schema_for!(Report)),
        ),
        (
            "checkpoint.v1.schema.json",
            render(schemars::schema_for!(Checkpoint)),
        ),
        (
            "loader-hello.v1.schema.json",
            render(schemars::schema_for!(loader::HelloLine)),
        ),
        (
            "loader-request.v1.schema.json",
            render(schemars::schema_for!(loader::Request)),
        ),
        (
            "loader-answer.v1.schema.json",
            render(schemars::schema_for!(loader::AnswerLine)),
        ),
        (
            "config.schema.json",
            render(schemars::schema_for!(config::Config)),
        ),
    ]
}
