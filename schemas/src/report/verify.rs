//! Read-back validation (`--verify`): what reading back the written keys found.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Read-back validation: after each batch is written, the keys written are read back from the
/// target and compared with what was sent: the value's hash, memcached's client flags, and the
/// remaining TTL (within the time since the write, plus 2 s for stores that keep seconds).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Verification {
    /// The target holds what the run sent.
    pub verified: u64,
    /// The target holds something else, or nothing, and the source does not explain it.
    pub mismatched: u64,
    /// Rewritten by the live application in the source and the target alike between the
    /// write and the read-back (see [`VerifyCounts::changed`]). Not a mismatch.
    #[serde(default)]
    pub changed: u64,
    /// The first mismatches (lowest ranks first, at most [`MISMATCHES_LISTED`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mismatches: Vec<Mismatch>,
}

/// What the read-back of written keys found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct VerifyCounts {
    /// The target holds what the run sent.
    pub verified: u64,
    /// The target holds something else, or nothing, and the source does not explain it.
    pub mismatched: u64,
    /// The target holds something else, and so does the source, alike: the live application
    /// rewrote the key in both between the write and the read-back. Not a mismatch.
    #[serde(default)]
    pub changed: u64,
}

impl VerifyCounts {
    /// Adds another set of counts to this one.
    pub fn add(&mut self, other: &VerifyCounts) {
        self.verified += other.verified;
        self.mismatched += other.mismatched;
        self.changed += other.changed;
    }
}

/// How many entries [`Verification::mismatches`] lists at most.
pub const MISMATCHES_LISTED: usize = 25;

/// A written key whose read-back did not match what was sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Mismatch {
    pub rank: u64,
    pub key: String,
    pub category: String,
    /// What differed: `missing`, the value (sizes and hashes), the flags, or the TTL.
    pub reason: String,
}
