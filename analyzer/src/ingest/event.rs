//! One parsed access event, and the field parsers every reader shares.

use chrono::DateTime;
use schemas::Op;

pub use crate::dataset::AccessEvent;

/// The latest timestamp the dataset takes: the end of year 9999, where calendars (and
/// chrono, which names the partitions) stop being useful.
const MAX_SECONDS: i64 = 253_402_300_799;

/// Microseconds since the epoch from whole seconds and microseconds, for timestamps between
/// 1970 and the end of year 9999; logs hold nothing outside that, so anything else is a
/// broken line rather than a time to store.
pub fn ts_from_parts(seconds: i64, micros: i64) -> Result<i64, String> {
    if !(0..=MAX_SECONDS).contains(&seconds) || !(0..1_000_000).contains(&micros) {
        return Err(format!(
            "timestamp {seconds}.{micros:06} s is outside 1970-01-01 to 9999-12-31"
        ));
    }
    Ok(seconds * 1_000_000 + micros)
}

/// Parses a timestamp: RFC 3339, or Unix seconds with an optional fraction (`1700000000.25`).
/// Returns microseconds since the epoch.
pub fn parse_ts(text: &str) -> Result<i64, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err("empty timestamp".into());
    }
    if text.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return parse_unix_seconds(text);
    }
    let t = DateTime::parse_from_rfc3339(text)
        .map_err(|e| format!("timestamp `{text}` is neither RFC 3339 nor Unix seconds: {e}"))?;
    ts_from_parts(t.timestamp(), i64::from(t.timestamp_subsec_micros()))
}

/// Unix seconds with an optional decimal fraction, parsed exactly (no float rounding).
fn parse_unix_seconds(text: &str) -> Result<i64, String> {
    let bad = || format!("timestamp `{text}` is not valid Unix seconds");
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    if whole.is_empty() || fraction.contains('.') {
        return Err(bad());
    }
    let seconds: i64 = whole.parse().map_err(|_| bad())?;
    // Digits beyond microseconds are truncated.
    let mut micros: i64 = 0;
    for (i, digit) in fraction.bytes().take(6).enumerate() {
        micros += i64::from(digit - b'0') * 10_i64.pow(5 - i as u32);
    }
    ts_from_parts(seconds, micros)
}

/// Parses a read outcome: `true`/`false`/`1`/`0` in any case; empty is unknown.
pub fn parse_hit(text: &str) -> Result<Option<bool>, String> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    if text == "1" || text.eq_ignore_ascii_case("true") {
        Ok(Some(true))
    } else if text == "0" || text.eq_ignore_ascii_case("false") {
        Ok(Some(false))
    } else {
        Err(format!("hit `{text}` is not true/false/1/0"))
    }
}

/// Parses an optional unsigned 32-bit field; empty is unknown.
pub fn parse_u32(field: &str, text: &str) -> Result<Option<u32>, String> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    text.parse()
        .map(Some)
        .map_err(|_| format!("{field} `{text}` is not a whole number between 0 and 4294967295"))
}

/// Parses an operation name; empty means a read.
pub fn parse_op(text: &str) -> Result<Op, String> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(Op::Get);
    }
    Op::parse(text).ok_or_else(|| {
        let known: Vec<&str> = Op::ALL.iter().map(|op| op.as_str()).collect();
        format!("op `{text}` is not one of {}", known.join(", "))
    })
}

/// Turns key bytes into the dataset's key text: UTF-8 as is, every byte of an invalid
/// sequence escaped as `\xNN`.
pub fn key_from_bytes(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(text) => text.to_owned(),
        Err(_) => {
            let mut out = String::with_capacity(bytes.len() + 8);
            for chunk in bytes.utf8_chunks() {
                out.push_str(chunk.valid());
                for byte in chunk.invalid() {
                    out.push_str(&format!("\\x{byte:02X}"));
                }
            }
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Unix seconds are parsed digit by digit, so fractions keep every microsecond that a float
    /// would round away.
    #[test]
    fn unix_seconds_keep_microseconds() {
        assert_eq!(parse_ts("1700000000"), Ok(1_700_000_000_000_000));
        assert_eq!(parse_ts("1700000000.5"), Ok(1_700_000_000_500_000));
        assert_eq!(parse_ts("1700000000.000001"), Ok(1_700_000_000_000_001));
        assert_eq!(parse_ts("1700000000.1234567"), Ok(1_700_000_000_123_456));
        assert!(parse_ts("1.2.3").is_err());
        assert!(parse_ts(".5").is_err());
        // Found by fuzzing: these overflowed the microsecond arithmetic.
        assert!(parse_ts("9223372036854775807").is_err());
        assert!(parse_ts("253402300800").is_err());
        assert!(parse_ts("253402300799.999999").is_ok());
    }

    #[test]
    fn rfc3339_with_offset_is_converted_to_utc() {
        // 2023-11-14T22:13:20Z is Unix second 1 700 000 000.
        assert_eq!(
            parse_ts("2023-11-14T23:13:20+01:00"),
            Ok(1_700_000_000_000_000)
        );
        assert!(parse_ts("yesterday").is_err());
    }

    #[test]
    fn invalid_utf8_key_bytes_are_escaped() {
        assert_eq!(key_from_bytes(b"user:\xff\xfe:1"), "user:\\xFF\\xFE:1");
        assert_eq!(key_from_bytes("café".as_bytes()), "café");
    }

    #[test]
    fn hit_values() {
        assert_eq!(parse_hit("TRUE"), Ok(Some(true)));
        assert_eq!(parse_hit("0"), Ok(Some(false)));
        assert_eq!(parse_hit(""), Ok(None));
        assert!(parse_hit("maybe").is_err());
    }
}
