//! Manifest v1: the ranked hot keys the analyzer chose under a capacity budget.
//!
//! Written by `analyzer rank` as JSON (optionally zstd-compressed, `.json.zst`), read by the
//! warmer. The warmer refuses a manifest whose `header.schema` it does not know or whose
//! `header.entries_sha256` does not match [`entries_sha256`] of its entries.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The schema id of manifest v1, stored in `header.schema`.
pub const MANIFEST_SCHEMA_ID: &str = "cachewarm.manifest/v1";

/// A hot-key manifest: a header, then the entries in rank order (most valuable first).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub header: ManifestHeader,
    pub entries: Vec<ManifestEntry>,
}

/// What the manifest is, where it came from, and what it holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ManifestHeader {
    /// Always [`MANIFEST_SCHEMA_ID`] for this version.
    pub schema: String,
    /// The program and version that wrote the manifest, e.g. `analyzer 0.1.0`.
    pub generator: String,
    /// When the manifest was written.
    pub generated_at: DateTime<Utc>,
    /// The span of the access events the ranking looked at.
    pub window: ObservationWindow,
    /// The capacity budget the entries were packed into.
    pub budget: Budget,
    /// Totals over the whole dataset and over the selected entries.
    pub totals: Totals,
    /// Totals of the selected entries per category.
    pub categories: BTreeMap<String, CategoryTotals>,
    /// Lowercase hex sha256 of the entries; see [`entries_sha256`].
    pub entries_sha256: String,
}

/// The time span of the events behind a manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ObservationWindow {
    /// The first event's timestamp.
    pub start: DateTime<Utc>,
    /// The last event's timestamp.
    pub end: DateTime<Utc>,
}

/// The byte budget of a manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Budget {
    /// Bytes of key + value the entries may take in all.
    pub bytes: u64,
    /// Where the figure came from, e.g. `--budget 64MiB`.
    pub source: String,
}

/// Totals of a manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Totals {
    /// Distinct keys read in the window.
    pub keys_seen: u64,
    /// Read requests in the window (sum of `count` over reads).
    pub requests_seen: u64,
    /// Entries selected.
    pub keys_selected: u64,
    /// Read requests of the selected keys.
    pub requests_selected: u64,
    /// Key + value bytes of the selected keys.
    pub bytes_selected: u64,
    /// Keys read in the window but left out because the budget was full.
    pub keys_over_budget: u64,
}

/// Totals of the selected entries of one category.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CategoryTotals {
    pub keys: u64,
    pub requests: u64,
    pub bytes: u64,
}

/// One hot key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ManifestEntry {
    /// Position in the manifest, from 1; the warmer writes in this order.
    pub rank: u64,
    /// The key as the store sees it.
    pub key: String,
    /// The category the key belongs to (`default` when no rule matched).
    pub category: String,
    /// The ranking score; higher is more valuable. Comparable within one manifest only.
    pub score: f64,
    /// Read requests in the window (sum of `count`).
    pub requests: u64,
    /// Reads logged as hits.
    pub hits: u64,
    /// Reads logged as misses.
    pub misses: u64,
    /// Bytes the entry takes: key + typical value size.
    pub size_bytes: u64,
    /// The TTL most often given on writes of the key, in seconds; absent when never logged.
    pub ttl_s: Option<u32>,
    /// The last time the key was accessed.
    pub last_seen: DateTime<Utc>,
}

/// The checksum stored in `header.entries_sha256`: lowercase hex sha256 of the entries
/// serialized as one compact JSON array (fields in declaration order, as serde writes them).
pub fn entries_sha256(entries: &[ManifestEntry]) -> String {
    let bytes = serde_json::to_vec(entries).expect("manifest entries serialize");
    let digest = Sha256::digest(&bytes);
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(rank: u64, key: &str, score: f64) -> ManifestEntry {
        ManifestEntry {
            rank,
            key: key.into(),
            category: "default".into(),
            score,
            requests: 10,
            hits: 7,
            misses: 3,
            size_bytes: 120,
            ttl_s: Some(300),
            last_seen: DateTime::from_timestamp_micros(1_700_000_000_123_456).unwrap(),
        }
    }

    /// The warmer recomputes the checksum from parsed entries, so it must survive a JSON round
    /// trip, including scores that are not round numbers.
    #[test]
    fn checksum_survives_json_round_trip() {
        let entries = vec![entry(1, "a", 0.1 + 0.2), entry(2, "b:ü", 1.0 / 3.0)];
        let text = serde_json::to_string_pretty(&entries).unwrap();
        let parsed: Vec<ManifestEntry> = serde_json::from_str(&text).unwrap();
        assert_eq!(entries_sha256(&parsed), entries_sha256(&entries));
    }

    /// Any change to an entry changes the checksum.
    #[test]
    fn checksum_detects_changes() {
        let entries = vec![entry(1, "a", 2.0)];
        let mut changed = entries.clone();
        changed[0].requests += 1;
        assert_ne!(entries_sha256(&entries), entries_sha256(&changed));
    }
}
