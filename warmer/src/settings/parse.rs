//! Readers for settings' text, shared by the variables, the file and the flags: each says in
//! its message what it expected, and the caller adds where the text came from.

use std::time::Duration;

/// A duration in the units people write: `90s`, `5m`, `24h`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text.trim())
        .map_err(|e| format!("not a duration ({e}); use forms like 90s, 5m, 24h"))
}

/// A percentage above 0 and at most 100 (`50%` or `50`), as a share.
pub fn parse_percent(text: &str) -> Result<f64, String> {
    match text.trim().trim_end_matches('%').parse::<f64>() {
        Ok(p) if p > 0.0 && p <= 100.0 => Ok(p / 100.0),
        _ => Err("not a percentage between 0 and 100 (like 50%)".to_owned()),
    }
}

/// A latency multiple (at least 1, like `1.5`), or `off`.
pub fn parse_latency_multiple(text: &str) -> Result<Option<f64>, String> {
    let text = text.trim();
    if text.eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    match text.parse::<f64>() {
        Ok(m) if m >= 1.0 && m.is_finite() => Ok(Some(m)),
        _ => Err("not a latency multiple of at least 1 (like 1.5), or `off`".to_owned()),
    }
}

/// Bytes per second: a size with an optional `/s` (`2MiB`, `2MiB/s`, `500000`).
pub fn parse_rate_size(text: &str) -> Result<u64, String> {
    parse_size(text.trim().trim_end_matches("/s"))
}

/// A size above 0 in bytes or units (`512KiB`, `16MiB`, `200000`).
pub fn parse_size(text: &str) -> Result<u64, String> {
    match text.trim().parse::<bytesize::ByteSize>() {
        Ok(size) if size.as_u64() > 0 => Ok(size.as_u64()),
        Ok(_) => Err("must be more than 0".to_owned()),
        Err(e) => Err(format!(
            "not a size ({e}); use bytes or units like 512KiB, 4MiB"
        )),
    }
}

/// A whole number from `min` to `max`, in the type the setting has (`max` fits in it).
pub(super) fn parse_count<T: TryFrom<u64>>(text: &str, min: u64, max: u64) -> Result<T, String> {
    match text.trim().parse::<u64>() {
        Ok(n) if (min..=max).contains(&n) => {
            T::try_from(n).map_err(|_| format!("not a whole number from {min} to {max}"))
        }
        _ => Err(format!("not a whole number from {min} to {max}")),
    }
}

pub(super) fn parse_bool(text: &str) -> Result<bool, String> {
    match text.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => Err("not a boolean (true or false)".to_owned()),
    }
}
