//! Read-back validation (`--verify`): after a batch is written, the keys it wrote are read back
//! from the target and compared with what was sent: the hash of the value, memcached's client
//! flags, and the remaining TTL.
//!
//! The read-back runs in the batch's own write task, right after the write, so it overlaps the
//! other batches in flight and the window in which live traffic can touch a key between write
//! and read-back is one round trip.
//!
//! Telling a live rewrite from a mismatch: a key that reads back other than sent is read again
//! from the source. When the source now holds what the target holds (the application wrote
//! the key anew, to the source and the target alike, as it does while both are live), it is
//! counted `changed`, not a mismatch. Anything else is a mismatch: the key is gone, or the
//! target holds bytes, flags or a TTL that neither the run nor the source explains. (A write
//! made to the target only, between the write and its read-back, is therefore reported; the
//! mismatch lists both hashes, so it can be looked into.)
//!
//! A Redis value of another type than a string is compared by its `DUMP`. A hash or set large
//! enough to be kept as a hash table dumps its members in the server's hash order, which
//! differs between servers (the hash seed is random per process): for those (RDB types 2 and
//! 4), the same type and member count is taken as verified, since the bytes cannot agree.

use std::time::Duration;

use schemas::report::{MISMATCHES_LISTED, Mismatch, Verification, VerifyCounts};

use crate::source::Source;
use crate::store::{
    Fetched, Store, StoreError, ValueEncoding, WriteItem, comparable_dump, item_hash,
};

/// Slack on the remaining TTL read back: memcached keeps whole seconds (and rounds a TTL
/// down when it is sent), and clocks tick between the write and the read.
const TTL_SLACK: Duration = Duration::from_secs(2);

/// What the read-back of one written key found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    Verified,
    /// Rewritten by the live application in the source and the target alike.
    Changed,
    Mismatched(String),
}

/// A target's read-back results so far.
#[derive(Debug, Default, Clone)]
pub(crate) struct VerifyTally {
    overall: VerifyCounts,
    /// Indexed like the manifest's categories.
    categories: Vec<VerifyCounts>,
    mismatches: Vec<Mismatch>,
}

impl VerifyTally {
    /// Counts one verdict on store key `key` of the entry ranked `rank`, of the category at
    /// `index` named `category_name`; `key` as reports and logs show it (see
    /// [`crate::rundir::mask`]).
    pub fn record(
        &mut self,
        rank: u64,
        key: &str,
        index: usize,
        category_name: &str,
        verdict: Verdict,
    ) {
        if index >= self.categories.len() {
            self.categories.resize(index + 1, VerifyCounts::default());
        }
        for counts in [&mut self.overall, &mut self.categories[index]] {
            match &verdict {
                Verdict::Verified => counts.verified += 1,
                Verdict::Changed => counts.changed += 1,
                Verdict::Mismatched(_) => counts.mismatched += 1,
            }
        }
        if let Verdict::Mismatched(reason) = verdict {
            tracing::warn!(key, rank, reason, "read-back mismatch");
            if self.mismatches.len() < MISMATCHES_LISTED {
                self.mismatches.push(Mismatch {
                    rank,
                    key: key.to_owned(),
                    category: category_name.to_owned(),
                    reason,
                });
            }
        }
    }

    /// The counts of the category at `index`.
    pub fn category(&self, index: usize) -> VerifyCounts {
        self.categories.get(index).cloned().unwrap_or_default()
    }

    pub fn report(&self) -> Verification {
        Verification {
            verified: self.overall.verified,
            mismatched: self.overall.mismatched,
            changed: self.overall.changed,
            mismatches: self.mismatches.clone(),
        }
    }
}

/// Reads back `items` (all written by the run, `elapsed` ago at most) from `store`, and the
/// ones that differ from `source` too; one verdict per item.
pub(crate) async fn verify(
    store: &Store,
    source: Option<&Source>,
    items: &[WriteItem<'_>],
    elapsed: impl Fn() -> Duration,
) -> Result<Vec<Verdict>, StoreError> {
    let keys: Vec<&str> = items.iter().map(|item| item.key).collect();
    let found = store.fetch(&keys).await?;
    let elapsed = elapsed();
    let mut verdicts: Vec<Verdict> = items
        .iter()
        .zip(&found)
        .map(
            |(item, found)| match compare(item, found.as_ref(), elapsed) {
                Ok(()) => Verdict::Verified,
                Err(reason) => Verdict::Mismatched(reason),
            },
        )
        .collect();
    let differing: Vec<usize> = (0..items.len())
        .filter(|&i| matches!(verdicts[i], Verdict::Mismatched(_)) && found[i].is_some())
        .collect();
    if let Some(source) = source
        && !differing.is_empty()
    {
        let keys: Vec<&str> = differing.iter().map(|&i| items[i].key).collect();
        // A source that cannot be read now leaves the mismatches as they are.
        if let Ok(now) = source.fetch(&keys).await {
            for (i, now) in differing.into_iter().zip(now) {
                if let (Some(now), Some(found)) = (now, &found[i])
                    && same_value(&now, found)
                {
                    verdicts[i] = Verdict::Changed;
                }
            }
        }
    }
    Ok(verdicts)
}

/// Whether two reads hold the same value (bytes, flags and encoding; TTLs aside).
fn same_value(a: &Fetched, b: &Fetched) -> bool {
    a.encoding == b.encoding && a.flags == b.flags && a.value == b.value
}

/// Compares what was sent with what was read back `elapsed` after the write was sent; the
/// reason when they differ.
pub(crate) fn compare(
    sent: &WriteItem<'_>,
    found: Option<&Fetched>,
    elapsed: Duration,
) -> Result<(), String> {
    let Some(found) = found else {
        return Err("missing: not in the store when read back".to_owned());
    };
    if found.encoding != sent.encoding {
        return Err(format!(
            "read back as a {} value, sent as {}",
            found.encoding.name(),
            sent.encoding.name()
        ));
    }
    let same_bytes = found.value == sent.value
        || (sent.encoding == ValueEncoding::RedisDump
            && comparable_dump(sent.value) == comparable_dump(&found.value));
    if !same_bytes {
        return Err(format!(
            "value differs: sent {} bytes (hash {}), found {} bytes (hash {})",
            sent.value.len(),
            item_hash(sent.value, 0),
            found.value.len(),
            item_hash(&found.value, 0)
        ));
    }
    if found.flags != sent.flags {
        return Err(format!(
            "client flags differ: sent {}, found {}",
            sent.flags, found.flags
        ));
    }
    let Some(ttl) = found.ttl else {
        return Err(format!(
            "TTL differs: sent {}, found none",
            humantime::format_duration(sent.ttl)
        ));
    };
    let low = sent.ttl.saturating_sub(elapsed + TTL_SLACK);
    let high = sent.ttl + TTL_SLACK;
    if ttl < low || ttl > high {
        return Err(format!(
            "TTL differs: sent {}, found {} ({} after the write)",
            humantime::format_duration(sent.ttl),
            humantime::format_duration(Duration::from_secs(ttl.as_secs())),
            humantime::format_duration(Duration::from_millis(elapsed.as_millis() as u64))
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(value: &[u8], flags: u32, ttl_s: u64) -> WriteItem<'_> {
        WriteItem {
            key: "k",
            value,
            ttl: Duration::from_secs(ttl_s),
            flags,
            encoding: ValueEncoding::Raw,
        }
    }

    fn fetched(value: &[u8], flags: u32, ttl_s: Option<u64>) -> Fetched {
        Fetched {
            value: value.to_vec(),
            ttl: ttl_s.map(Duration::from_secs),
            flags,
            encoding: ValueEncoding::Raw,
        }
    }

    /// What was sent, read back a little later, is verified; each kind of difference is a
    /// mismatch that says what differed.
    #[test]
    fn compares_value_flags_and_ttl() {
        let second = Duration::from_secs(1);
        let sent = item(b"v", 1, 600);
        assert_eq!(
            compare(&sent, Some(&fetched(b"v", 1, Some(599))), second),
            Ok(())
        );
        assert!(
            compare(&sent, None, second)
                .unwrap_err()
                .starts_with("missing")
        );
        let other = compare(&sent, Some(&fetched(b"w", 1, Some(600))), second);
        assert!(other.unwrap_err().starts_with("value differs"));
        let flags = compare(&sent, Some(&fetched(b"v", 0, Some(600))), second);
        assert!(flags.unwrap_err().starts_with("client flags differ"));
        let forever = compare(&sent, Some(&fetched(b"v", 1, None)), second);
        assert!(forever.unwrap_err().starts_with("TTL differs"));
        let short = compare(&sent, Some(&fetched(b"v", 1, Some(300))), second);
        assert!(short.unwrap_err().starts_with("TTL differs"));
        let long = compare(&sent, Some(&fetched(b"v", 1, Some(900))), second);
        assert!(long.unwrap_err().starts_with("TTL differs"));
    }

    /// A hash-table-encoded set or hash dumps in hash order: the same type and member count
    /// match; a listpack (type 16) must match byte for byte.
    #[test]
    fn hash_ordered_dumps_compare_by_type_and_count() {
        let dump = |bytes: &[u8]| Fetched {
            encoding: ValueEncoding::RedisDump,
            ..fetched(bytes, 0, Some(600))
        };
        let sent = WriteItem {
            encoding: ValueEncoding::RedisDump,
            ..item(&[4, 2, b'a', b'b'], 0, 600)
        };
        let second = Duration::from_secs(1);
        assert_eq!(
            compare(&sent, Some(&dump(&[4, 2, b'b', b'a'])), second),
            Ok(())
        );
        assert!(compare(&sent, Some(&dump(&[4, 3, b'b', b'a'])), second).is_err());
        let listpack = WriteItem {
            encoding: ValueEncoding::RedisDump,
            ..item(&[16, 2, b'a', b'b'], 0, 600)
        };
        assert!(compare(&listpack, Some(&dump(&[16, 2, b'b', b'a'])), second).is_err());
    }
}
