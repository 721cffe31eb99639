//! The fast parser of the analyzer's layout ([`schemas::manifest::lines`]): header line, `"entries":[` line, one compact entry
//! per line. Each entry's text is handed on as it is (the checksum covers it) with the fields a
//! run uses, read positionally where the line is serde's exact output.

use std::borrow::Cow;
use std::io::BufRead;

use schemas::ManifestHeader;
use schemas::manifest::lines;

use super::{Bytes, EntryFields, ManifestError, OnFields, Scan};

impl Bytes {
    /// A pass over a manifest in the line layout: `on_entry` gets each entry's text and its
    /// fields. `Err(Scan::NotLines)` when the first line shows another layout.
    /// One pass over a manifest in the line layout: `on_header` is given the header before
    /// `on_entry` is given the entries.
    pub(super) fn scan(
        &self,
        on_header: &mut dyn FnMut(&ManifestHeader),
        on_entry: &mut OnFields<'_>,
    ) -> Result<ManifestHeader, Scan> {
        let mut reader = self.reader()?;
        let mut line = Vec::with_capacity(4096);
        let mut next_line = |line: &mut Vec<u8>| -> Result<bool, ManifestError> {
            line.clear();
            let n = reader
                .read_until(b'\n', line)
                .map_err(|source| ManifestError::Read {
                    path: self.path.clone(),
                    source,
                })?;
            while line.last().is_some_and(|b| b.is_ascii_whitespace()) {
                line.pop();
            }
            Ok(n > 0)
        };
        next_line(&mut line)?;
        let Some(header_text) = lines::header_text(&line) else {
            return Err(Scan::NotLines);
        };
        let header =
            self.header_from(serde_json::from_slice(header_text).map_err(|_| Scan::NotLines)?)?;
        next_line(&mut line)?;
        if line != lines::ENTRIES_LINE {
            return Err(Scan::NotLines);
        }
        on_header(&header);
        let mut index = 0usize;
        loop {
            if !next_line(&mut line)? {
                return Err(self.parse_error("the file ends inside `entries`").into());
            }
            if line == lines::END_LINE {
                break;
            }
            let raw = lines::entry_text(&line);
            let fields = match positional_fields(raw) {
                Some(fields) => Ok(fields),
                None => serde_json::from_slice::<EntryFields<'_>>(raw),
            };
            let fields = fields.map_err(|e| {
                if index == 0 {
                    // Not one entry per line after all (an empty `entries`, say): the general
                    // reader decides.
                    Scan::NotLines
                } else {
                    self.parse_error(format!("entries[{index}]: {e}")).into()
                }
            })?;
            on_entry(raw, fields).map_err(|message| self.parse_error(message))?;
            index += 1;
        }
        while next_line(&mut line)? {
            if !line.is_empty() {
                return Err(self
                    .parse_error("text after the end of the manifest")
                    .into());
            }
        }
        Ok(header)
    }
}

/// The fields a run uses of an entry line in the analyzer's exact layout: serde's compact
/// text, fields in `ManifestEntry`'s order, a key without escapes. `None` for anything else,
/// which serde_json then reads.
///
/// Every pass of a run reads every entry line, and serde_json, which matches field names and
/// scans the fields a run does not use (`score`, `last_seen`, …) token by token, was a quarter
/// of the warmer's time (docs/benchmarks.md); this reader steps from one known field name to
/// the next. It checks only what it takes: the line's text is what the checksum covers, so a
/// line that is not serde's output does not get past the verifying pass either way.
pub(super) fn positional_fields(line: &[u8]) -> Option<EntryFields<'_>> {
    let mut rest = line.strip_prefix(b"{\"rank\":")?;
    let rank = take_number(&mut rest)?;
    rest = rest.strip_prefix(b",\"key\":\"")?;
    let key = take_plain_string(&mut rest)?;
    rest = rest.strip_prefix(b",\"category\":\"")?;
    let category = take_plain_string(&mut rest)?;
    rest = rest.strip_prefix(b",\"score\":")?;
    let comma = rest.iter().position(|&b| b == b',')?;
    rest = rest[comma..].strip_prefix(b",\"requests\":")?;
    let requests = take_number(&mut rest)?;
    for name in [&b",\"hits\":"[..], b",\"misses\":", b",\"size_bytes\":"] {
        rest = rest.strip_prefix(name)?;
        take_number(&mut rest)?;
    }
    rest = rest.strip_prefix(b",\"ttl_s\":")?;
    let ttl_s = match rest.strip_prefix(b"null") {
        Some(after) => {
            rest = after;
            None
        }
        None => Some(u32::try_from(take_number(&mut rest)?).ok()?),
    };
    rest = rest.strip_prefix(b",\"last_seen\":\"")?;
    take_plain_string(&mut rest)?;
    if rest != b"}" {
        return None;
    }
    Some(EntryFields {
        rank,
        key: Cow::Borrowed(key),
        category: Cow::Borrowed(category),
        requests,
        ttl_s,
    })
}

/// A JSON unsigned integer at the start of `rest` that fits a `u64`, consumed.
fn take_number(rest: &mut &[u8]) -> Option<u64> {
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 || digits > 20 || (digits > 1 && rest[0] == b'0') {
        return None;
    }
    let mut n = 0u64;
    for &b in &rest[..digits] {
        n = n.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
    }
    *rest = &rest[digits..];
    Some(n)
}

/// The text of a JSON string without escapes or control characters up to its closing quote,
/// consumed with the quote; `None` when it has any (serde_json decodes those).
fn take_plain_string<'a>(rest: &mut &'a [u8]) -> Option<&'a str> {
    let end = rest
        .iter()
        .position(|&b| b == b'"' || b == b'\\' || b < 0x20)?;
    if rest[end] != b'"' {
        return None;
    }
    let text = std::str::from_utf8(&rest[..end]).ok()?;
    *rest = &rest[end + 1..];
    Some(text)
}
