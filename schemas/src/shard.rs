//! Shards of a manifest: `n` warmers split one manifest by a stable hash of each entry's key,
//! without talking to each other.
//!
//! The shard of a key, for `n` shards, is
//!
//! ```text
//! shard(key, n) = u64_be(sha256(utf8(key))[0..8]) mod n
//! ```
//!
//! the first 8 bytes of the SHA-256 of the key's text as it is in the manifest (UTF-8), read as
//! a big-endian unsigned 64-bit integer, modulo `n`. In Python:
//! `int(hashlib.sha256(key.encode()).hexdigest()[:16], 16) % n`. SHA-256 rather than blake3
//! (which the analyzer uses for file fingerprints): it is in every language's standard library
//! and in the SQL engines the aggregation runs on (Spark's `sha2(key, 256)`, DuckDB's and
//! Trino's `sha256`), so any tool can say which shard holds a key; and the warmer already
//! depends on it. The modulo's bias is below n / 2^64: nil for any number of shards.

use std::fmt;
use std::str::FromStr;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The most shards a manifest may be split into: far more than any fleet of warmers, and
/// small enough that a typo (`--shard 3/40000`) is caught.
pub const MAX_SHARDS: u32 = 4096;

/// One shard of `count`: the manifest entries whose key hashes to `index` ([`shard_of`]).
/// Written `index/count`, `index` from 0 (as Kubernetes' `JOB_COMPLETION_INDEX`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Shard {
    /// This shard, from 0 to `count - 1`.
    pub index: u32,
    /// How many shards the manifest is split into.
    pub count: u32,
}

/// The shard of `key` among `count` shards (see the module docs); `count` must be at least 1.
pub fn shard_of(key: &str, count: u32) -> u32 {
    let digest = Sha256::digest(key.as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    (u64::from_be_bytes(first) % u64::from(count.max(1))) as u32
}

impl Shard {
    /// A shard, checked: `index < count`, `1 <= count <= MAX_SHARDS`.
    pub fn new(index: u32, count: u32) -> Result<Shard, String> {
        if count == 0 || count > MAX_SHARDS {
            return Err(format!(
                "the number of shards must be from 1 to {MAX_SHARDS}, not {count}"
            ));
        }
        if index >= count {
            return Err(format!(
                "shard index {index} is not below the number of shards {count} (indexes count \
                 from 0, as JOB_COMPLETION_INDEX does)"
            ));
        }
        Ok(Shard { index, count })
    }

    /// Whether `key` is this shard's.
    pub fn owns(&self, key: &str) -> bool {
        shard_of(key, self.count) == self.index
    }

    /// This shard's part of a limit the `count` shards share: `total / count`, rounded down, so
    /// that the shards' parts together never exceed `total`.
    pub fn part(&self, total: u64) -> u64 {
        total / u64::from(self.count)
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

impl FromStr for Shard {
    type Err = String;

    /// Reads `index/count` (`2/4`).
    fn from_str(text: &str) -> Result<Shard, String> {
        let usage = || format!("`{text}` is not a shard; write it index/count, like 0/4");
        let (index, count) = text.trim().split_once('/').ok_or_else(usage)?;
        let index = index.trim().parse::<u32>().map_err(|_| usage())?;
        let count = count.trim().parse::<u32>().map_err(|_| usage())?;
        Shard::new(index, count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The hash is a contract other tools reproduce: these figures were computed with
    /// Python's hashlib (`int(hashlib.sha256(k.encode()).hexdigest()[:16], 16)`), not with
    /// this code, so a change to the function fails here.
    #[test]
    fn shard_of_matches_values_computed_with_python_hashlib() {
        let cases: [(&str, u64); 5] = PYTHON_FIRST_8_BYTES;
        for (key, first) in cases {
            for count in [1u32, 2, 3, 4, 7, 16, 1000] {
                assert_eq!(
                    u64::from(shard_of(key, count)),
                    first % u64::from(count),
                    "{key:?} of {count}"
                );
            }
        }
        assert_eq!(PYTHON_SHARDS_OF_4, {
            let keys = ["user:1", "user:2", "user:3", "user:4", "product:42"];
            keys.map(|k| shard_of(k, 4))
        });
    }

    /// `python3 -c 'import hashlib; print(int(hashlib.sha256(k.encode()).hexdigest()[:16], 16))'`
    const PYTHON_FIRST_8_BYTES: [(&str, u64); 5] = [
        ("user:1", 12_376_917_051_461_176_197),
        ("", 16_406_829_232_824_261_652),
        ("héllo wörld", 11_601_342_446_287_720_791),
        ("views/products/42-20261130", 17_105_899_852_760_785_419),
        (
            ":1:django.contrib.sessions.cached_db",
            18_398_667_241_433_374_257,
        ),
    ];
    /// `[int(hashlib.sha256(k.encode()).hexdigest()[:16], 16) % 4 for k in keys]`
    const PYTHON_SHARDS_OF_4: [u32; 5] = [1, 1, 2, 2, 0];

    #[test]
    fn reads_and_writes_index_slash_count() {
        assert_eq!("2/4".parse::<Shard>(), Ok(Shard { index: 2, count: 4 }));
        assert_eq!(" 0 / 1 ".parse::<Shard>(), Ok(Shard { index: 0, count: 1 }));
        assert_eq!(Shard { index: 3, count: 8 }.to_string(), "3/8");
        for bad in ["4/4", "1/0", "a/4", "2", "-1/4", "1/5000"] {
            assert!(bad.parse::<Shard>().is_err(), "{bad}");
        }
    }

    /// The shards' parts of a limit never add up to more than the limit, and lose less than
    /// one unit per shard.
    #[test]
    fn parts_never_add_up_to_more_than_the_whole() {
        for count in 1..=17u32 {
            for total in [0u64, 1, 5, 16, 999, 1 << 30, u64::MAX] {
                let sum: u128 = (0..count)
                    .map(|index| u128::from(Shard { index, count }.part(total)))
                    .sum();
                assert!(sum <= u128::from(total), "{total} over {count}");
                assert!(
                    u128::from(total) - sum < u128::from(count),
                    "{total} over {count}"
                );
            }
        }
    }

    /// Every key is in exactly one shard, and the shards are about even.
    #[test]
    fn every_key_is_in_exactly_one_shard() {
        let count = 4;
        let mut sizes = [0u32; 4];
        for i in 0..10_000 {
            let key = format!("key:{i}");
            let owners: Vec<u32> = (0..count)
                .filter(|&index| Shard { index, count }.owns(&key))
                .collect();
            assert_eq!(owners.len(), 1, "{key}");
            sizes[owners[0] as usize] += 1;
        }
        assert!(
            sizes.iter().all(|&s| (2300..2700).contains(&s)),
            "{sizes:?}"
        );
    }
}
