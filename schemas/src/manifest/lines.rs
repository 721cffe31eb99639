//! The line layout of a manifest file, written by `analyzer rank` and read by the warmer: the
//! header on the first line, `"entries":[` on the second, one compact entry per line (a comma
//! after every entry but the last), and `]}` on the last. The whole file is one JSON document,
//! and it stays readable with `head`, `grep` and `zstdcat`.
//!
//! Both sides use this module, so the layout is written and read in one place; the warmer reads
//! each entry line's fields positionally (`warmer/src/manifest/lines.rs`), and falls back to
//! serde_json for any other spelling.

use super::Manifest;

/// The start of the first line; the header's JSON and a comma follow.
pub const HEADER_START: &[u8] = b"{\"header\":";
/// The second line.
pub const ENTRIES_LINE: &[u8] = b"\"entries\":[";
/// The last line.
pub const END_LINE: &[u8] = b"]}";

/// Appends `manifest` in the line layout to `out`.
pub fn write(manifest: &Manifest, out: &mut Vec<u8>) -> serde_json::Result<()> {
    out.extend_from_slice(HEADER_START);
    serde_json::to_writer(&mut *out, &manifest.header)?;
    out.extend_from_slice(b",\n");
    out.extend_from_slice(ENTRIES_LINE);
    for (i, entry) in manifest.entries.iter().enumerate() {
        out.extend_from_slice(if i == 0 { b"\n" } else { b",\n" });
        serde_json::to_writer(&mut *out, entry)?;
    }
    out.push(b'\n');
    out.extend_from_slice(END_LINE);
    out.push(b'\n');
    Ok(())
}

/// The header's JSON on a first line (trailing whitespace already trimmed); `None` when the
/// line does not start the line layout.
pub fn header_text(line: &[u8]) -> Option<&[u8]> {
    line.strip_prefix(HEADER_START)?.strip_suffix(b",")
}

/// An entry's JSON on an entry line (trailing whitespace already trimmed).
pub fn entry_text(line: &[u8]) -> &[u8] {
    line.strip_suffix(b",").unwrap_or(line)
}

#[cfg(test)]
mod tests {
    use chrono::DateTime;
    use proptest::prelude::*;

    use super::*;
    use crate::manifest::tests::header;
    use crate::manifest::{ManifestEntry, entries_sha256};

    fn arbitrary_entry() -> impl Strategy<Value = ManifestEntry> {
        (
            any::<u64>(),
            // Any text, quotes, backslashes, control characters and non-ASCII included.
            any::<String>(),
            "[a-z_]{1,12}|\\PC{0,8}",
            prop_oneof![
                prop::num::f64::NORMAL,
                prop::num::f64::SUBNORMAL,
                prop::num::f64::ZERO
            ],
            (any::<u64>(), any::<u64>(), any::<u64>(), any::<u64>()),
            proptest::option::of(any::<u32>()),
            // 1970 to 2100, to the microsecond.
            0i64..4_102_444_800_000_000,
        )
            .prop_map(
                |(rank, key, category, score, (requests, hits, misses, size_bytes), ttl_s, us)| {
                    ManifestEntry {
                        rank,
                        key,
                        category,
                        score,
                        requests,
                        hits,
                        misses,
                        size_bytes,
                        ttl_s,
                        last_seen: DateTime::from_timestamp_micros(us).expect("in range"),
                    }
                },
            )
    }

    proptest! {
        /// What `write` lays out reads back line by line, through the helpers the warmer
        /// uses, as the same manifest; and the file as a whole is that manifest's JSON.
        #[test]
        fn line_layout_round_trips(entries in prop::collection::vec(arbitrary_entry(), 0..20)) {
            let mut header = header();
            header.entries_sha256 = entries_sha256(&entries);
            let manifest = Manifest { header, entries };
            let mut text = Vec::new();
            write(&manifest, &mut text).unwrap();

            let whole: Manifest = serde_json::from_slice(&text).unwrap();
            prop_assert_eq!(&whole, &manifest);

            let lines: Vec<&[u8]> = text.strip_suffix(b"\n").unwrap().split(|&b| b == b'\n').collect();
            prop_assert_eq!(lines.len(), manifest.entries.len() + 3);
            let header_json = header_text(lines[0]).unwrap();
            prop_assert_eq!(&serde_json::from_slice::<crate::ManifestHeader>(header_json).unwrap(), &manifest.header);
            prop_assert_eq!(lines[1], ENTRIES_LINE);
            for (line, entry) in lines[2..lines.len() - 1].iter().zip(&manifest.entries) {
                prop_assert_eq!(&serde_json::from_slice::<ManifestEntry>(entry_text(line)).unwrap(), entry);
            }
            prop_assert_eq!(lines[lines.len() - 1], END_LINE);
        }
    }
}
