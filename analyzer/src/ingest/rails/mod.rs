//! Rails cache instrumentation, in either of the two forms apps have:
//!
//! - the debug log lines of ActiveSupport's cache log subscriber, anywhere in a Rails log:
//!   ```text
//!   D, [2026-11-20T10:00:00.123456 #4242] DEBUG -- : Cache read: views/products/1-20261120
//!   Cache fetch_hit: views/products/1-20261120
//!   Cache generate: views/products/2-20261120
//!   Cache write: views/products/2-20261120 ({:expires_in=>5 minutes})
//!   ```
//!   `Cache read: K` followed by `Cache fetch_hit: K` is a hit, followed by
//!   `Cache generate: K` a miss; a plain read keeps `hit` null. `fetch_hit` and `generate` are
//!   outcomes of the read, not events of their own. Lines without a timestamp (Rails'
//!   development log has none) take the last timestamp seen earlier in the file, or the time
//!   of the ingest when there was none. Other log lines are not cache events and are skipped.
//! - JSON lines of `cache_*.active_support` events
//!   (`{"name": "cache_read.active_support", "key": "…", "hit": true, "store": "…", "time": …}`),
//!   as apps subscribe and log them; the store becomes the namespace.

use std::io::BufRead;

use schemas::Op;
use serde::Deserialize;

use super::{AccessEvent, ReadOutcome, ReadStats, ReaderError, Sink};

/// Words that follow `Cache ` in the log subscriber's lines.
const LOG_OPERATIONS: [&str; 8] = [
    "read",
    "read_multi",
    "fetch_hit",
    "generate",
    "write",
    "write_multi",
    "delete",
    "exist?",
];

/// A Rails cache log line, a Rails request line, or an `active_support` cache event.
pub fn sniff(head: &[&str]) -> bool {
    head.iter().any(|line| {
        find_cache_operation(line).is_some()
            || line.starts_with("Started GET ")
            || line.starts_with("Started POST ")
            || (line.starts_with('{') && line.contains("active_support") && line.contains("cache_"))
    })
}

/// Where `Cache <operation>: ` starts in a line, with the operation and the rest of the line.
fn find_cache_operation(line: &str) -> Option<(&str, &str)> {
    let start = line.find("Cache ")?;
    let after = &line[start + "Cache ".len()..];
    let (operation, rest) = after.split_once(':')?;
    LOG_OPERATIONS
        .contains(&operation)
        .then_some((operation, rest.strip_prefix(' ').unwrap_or(rest)))
}

/// Reads Rails cache instrumentation from `input` into `sink`.
pub fn read(input: &mut dyn BufRead, sink: &mut dyn Sink) -> Result<ReadOutcome, ReaderError> {
    let mut state = LogState {
        last_ts: None,
        pending_read: None,
    };
    let lines = super::for_each_line(input, |line_number, line| {
        let Ok(line) = std::str::from_utf8(line) else {
            sink.reject(line_number, "line is not UTF-8".into());
            return Ok(());
        };
        if line.starts_with('{') {
            match parse_json_event(line) {
                Ok(events) => {
                    for event in events {
                        sink.event(event)?;
                    }
                }
                Err(reason) => sink.reject(line_number, reason),
            }
            return Ok(());
        }
        if let Some(ts) = logger_timestamp(line) {
            state.last_ts = Some(ts);
        }
        let Some((operation, rest)) = find_cache_operation(line) else {
            return Ok(());
        };
        match state.log_line(operation, rest, sink) {
            Ok(()) => {}
            Err(LineError::Reject(reason)) => sink.reject(line_number, reason),
            Err(LineError::Dataset(error)) => return Err(error.into()),
        }
        Ok(())
    })?;
    if let Some(read) = state.pending_read.take() {
        sink.event(read)?;
    }
    Ok(Ok(ReadStats {
        lines,
        ..ReadStats::default()
    }))
}

enum LineError {
    Reject(String),
    Dataset(crate::dataset::DatasetError),
}

impl From<crate::dataset::DatasetError> for LineError {
    fn from(error: crate::dataset::DatasetError) -> Self {
        LineError::Dataset(error)
    }
}

struct LogState {
    last_ts: Option<i64>,
    /// A `Cache read` whose outcome may follow on the next cache line.
    pending_read: Option<AccessEvent>,
}

impl LogState {
    fn log_line(
        &mut self,
        operation: &str,
        rest: &str,
        sink: &mut dyn Sink,
    ) -> Result<(), LineError> {
        let ts = self
            .last_ts
            .unwrap_or_else(|| chrono::Utc::now().timestamp_micros());
        let (key, options) = split_key(rest);
        if key.is_empty() {
            return Err(LineError::Reject(format!(
                "`Cache {operation}:` without a key"
            )));
        }
        let pending = self.pending_read.take();
        match (operation, pending) {
            ("fetch_hit" | "generate", Some(mut read)) if read.key == key => {
                read.hit = Some(operation == "fetch_hit");
                sink.event(read)?;
                return Ok(());
            }
            (_, Some(read)) => sink.event(read)?,
            (_, None) => {}
        }
        let event = |op: Op, key: &str| {
            let mut event = AccessEvent::new(ts, key.to_owned());
            event.op = op;
            event
        };
        match operation {
            "read" => self.pending_read = Some(event(Op::Get, key)),
            // An outcome without its read (the read line was cut off): not an event.
            "fetch_hit" | "generate" => {}
            "read_multi" => {
                for key in list_keys(rest)? {
                    sink.event(event(Op::Get, &key))?;
                }
            }
            "write" => {
                let mut write = event(Op::Set, key);
                write.ttl_s = options.and_then(expires_in_seconds);
                sink.event(write)?;
            }
            "write_multi" => {
                for key in list_keys(rest)? {
                    sink.event(event(Op::Set, &key))?;
                }
            }
            "delete" => sink.event(event(Op::Delete, key))?,
            "exist?" => sink.event(event(Op::Other, key))?,
            _ => {}
        }
        Ok(())
    }
}

/// `KEY ({options})` → (`KEY`, `{options}`).
fn split_key(rest: &str) -> (&str, Option<&str>) {
    match rest.rfind(" (") {
        Some(at) if rest.ends_with(')') => (rest[..at].trim(), Some(&rest[at + 2..rest.len() - 1])),
        _ => (rest.trim(), None),
    }
}

/// The keys of `["a", "b"]` (read_multi / write_multi lines).
fn list_keys(rest: &str) -> Result<Vec<String>, LineError> {
    let (list, _) = split_key(rest);
    let Some(list) = list.strip_prefix('[').and_then(|l| l.strip_suffix(']')) else {
        // ActiveSupport 6 logs `Cache read_multi: a/b/c`: keys hold `/` too, so they cannot
        // be told apart.
        return Err(LineError::Reject(
            "the keys of a `/`-joined multi-key line cannot be told apart".into(),
        ));
    };
    Ok(list
        .split(", ")
        .map(|key| key.trim().trim_matches('"').to_owned())
        .filter(|key| !key.is_empty())
        .collect())
}

/// `{:expires_in=>5 minutes}` or `{expires_in: 300}` → seconds.
fn expires_in_seconds(options: &str) -> Option<u32> {
    let at = options.find("expires_in")?;
    let after = options[at + "expires_in".len()..]
        .trim_start_matches(['=', '>', ':', ' '])
        .trim_start();
    let mut words = after.split([' ', ',', '}']);
    let amount: f64 = words.next()?.parse().ok()?;
    let unit = words.next().unwrap_or("seconds").trim_end_matches('s');
    let factor = match unit {
        "second" | "" => 1.0,
        "minute" => 60.0,
        "hour" => 3600.0,
        "day" => 86_400.0,
        "week" => 604_800.0,
        _ => 1.0,
    };
    Some((amount * factor).round() as u32)
}

/// The timestamp of Ruby's Logger format: `X, [2026-11-20T10:00:00.123456 #4242] …`.
fn logger_timestamp(line: &str) -> Option<i64> {
    let start = line.find(", [")? + 3;
    let end = start + line[start..].find(' ')?;
    let text = &line[start..end];
    chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f")
        .ok()
        .and_then(|t| {
            let t = t.and_utc();
            super::ts_from_parts(t.timestamp(), i64::from(t.timestamp_subsec_micros())).ok()
        })
        .or_else(|| super::parse_ts(text).ok())
}

#[derive(Debug, Deserialize)]
struct JsonEvent {
    name: String,
    key: serde_json::Value,
    #[serde(default)]
    hit: Option<bool>,
    #[serde(default)]
    store: Option<String>,
    #[serde(default, alias = "timestamp", alias = "ts")]
    time: Option<serde_json::Value>,
}

fn parse_json_event(line: &str) -> Result<Vec<AccessEvent>, String> {
    let event: JsonEvent = serde_json::from_str(line).map_err(|e| format!("invalid JSON: {e}"))?;
    let name = event
        .name
        .strip_suffix(".active_support")
        .ok_or_else(|| format!("event `{}` is not an active_support event", event.name))?;
    let ts = match &event.time {
        Some(serde_json::Value::String(text)) => super::parse_ts(text)?,
        Some(serde_json::Value::Number(number)) => super::parse_ts(&number.to_string())?,
        _ => return Err("no `time` field".into()),
    };
    let op = match name {
        "cache_read" | "cache_read_multi" => Op::Get,
        "cache_write" | "cache_write_multi" => Op::Set,
        "cache_delete" | "cache_delete_multi" => Op::Delete,
        "cache_exist?" => Op::Other,
        // Outcomes of a fetch whose cache_read is logged too.
        "cache_fetch_hit" | "cache_generate" => return Ok(Vec::new()),
        other => return Err(format!("unknown cache event `{other}`")),
    };
    let keys: Vec<String> = match &event.key {
        serde_json::Value::String(key) => vec![key.clone()],
        serde_json::Value::Array(keys) => keys
            .iter()
            .filter_map(|k| k.as_str().map(str::to_owned))
            .collect(),
        _ => return Err("`key` is not a string or a list".into()),
    };
    if keys.iter().any(String::is_empty) || keys.is_empty() {
        return Err("empty key".into());
    }
    Ok(keys
        .into_iter()
        .map(|key| {
            let mut access = AccessEvent::new(ts, key);
            access.op = op;
            access.hit = if op == Op::Get { event.hit } else { None };
            access.namespace = event.store.clone();
            access
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::VecSink;

    /// fetch: read + fetch_hit is one hit; read + generate + write is a miss and a write with
    /// its TTL; a plain read stays unknown. Lines without a timestamp take the last one seen.
    #[test]
    fn log_lines_pair_reads_with_their_outcome() {
        let text = "Started GET \"/products\" for 127.0.0.1\n\
            D, [2026-11-20T10:00:00.500000 #42] DEBUG -- : Cache read: views/a\n\
            Cache fetch_hit: views/a\n\
            Cache read: views/b ({:expires_in=>5 minutes})\n\
            Cache generate: views/b ({:expires_in=>5 minutes})\n\
            Cache write: views/b ({:expires_in=>5 minutes})\n\
            Cache read: views/c\n\
            Cache delete: views/c\n\
            Cache write: plain ({expires_in: 90})\n\
            Cache read: \n\
            Cache read_multi: views/x/views/y ({:compress=>false})\n\
            Cache read_multi: [\"m1\", \"m2\"]\n";
        let mut sink = VecSink::default();
        read(&mut text.as_bytes(), &mut sink).unwrap().unwrap();
        let events: Vec<(&str, Op, Option<bool>, Option<u32>)> = sink
            .events
            .iter()
            .map(|e| (e.key.as_str(), e.op, e.hit, e.ttl_s))
            .collect();
        assert_eq!(
            events,
            [
                ("views/a", Op::Get, Some(true), None),
                ("views/b", Op::Get, Some(false), None),
                ("views/b", Op::Set, None, Some(300)),
                ("views/c", Op::Get, None, None),
                ("views/c", Op::Delete, None, None),
                ("plain", Op::Set, None, Some(90)),
                ("m1", Op::Get, None, None),
                ("m2", Op::Get, None, None),
            ]
        );
        let expected_ts = chrono::DateTime::parse_from_rfc3339("2026-11-20T10:00:00.5Z")
            .unwrap()
            .timestamp_micros();
        assert!(sink.events.iter().all(|e| e.ts_us == expected_ts));
        let rejected: Vec<u64> = sink.rejections.iter().map(|r| r.line).collect();
        assert_eq!(rejected, [10, 11]);
    }

    #[test]
    fn active_support_json_events() {
        let text = concat!(
            r#"{"name":"cache_read.active_support","key":"k","hit":false,"store":"RedisCacheStore","time":"2026-11-20T10:00:00Z"}"#,
            "\n",
            r#"{"name":"cache_generate.active_support","key":"k","time":1763632800}"#,
            "\n",
            r#"{"name":"cache_write.active_support","key":"k","time":1763632800.25}"#,
            "\n",
            r#"{"name":"cache_read_multi.active_support","key":["a","b"],"time":1763632801}"#,
            "\n",
        );
        let mut sink = VecSink::default();
        read(&mut text.as_bytes(), &mut sink).unwrap().unwrap();
        let events: Vec<(&str, Op, Option<bool>)> = sink
            .events
            .iter()
            .map(|e| (e.key.as_str(), e.op, e.hit))
            .collect();
        assert_eq!(
            events,
            [
                ("k", Op::Get, Some(false)),
                ("k", Op::Set, None),
                ("a", Op::Get, None),
                ("b", Op::Get, None),
            ]
        );
        assert_eq!(sink.events[0].namespace.as_deref(), Some("RedisCacheStore"));
        assert_eq!(sink.events[1].ts_us, 1_763_632_800_250_000);
    }
}
