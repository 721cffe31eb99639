//! The canonical JSON lines format: one object per line with `AccessEvent` field names.
//!
//! `ts` is a number of Unix seconds or an RFC 3339 string; it is read from the raw JSON text so
//! a fraction keeps every microsecond (a float would round it). Fields that are not
//! `AccessEvent` fields are ignored.

use std::io::BufRead;

use serde::Deserialize;
use serde_json::value::RawValue;

use super::{AccessEvent, ReadOutcome, ReaderError, Sink};
use super::{parse_op, parse_ts};

#[derive(Debug, Deserialize)]
struct Line<'a> {
    #[serde(borrow)]
    ts: &'a RawValue,
    key: String,
    #[serde(default)]
    op: Option<String>,
    #[serde(default)]
    hit: Option<Hit>,
    #[serde(default)]
    count: Option<u32>,
    #[serde(default)]
    value_size: Option<u32>,
    #[serde(default)]
    ttl_s: Option<u32>,
    #[serde(default)]
    latency_us: Option<u32>,
    #[serde(default)]
    client: Option<String>,
    #[serde(default)]
    namespace: Option<String>,
}

/// `hit` as apps write it: a boolean, or 1/0.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Hit {
    Bool(bool),
    Number(u8),
}

/// The first line is an object with `ts` and `key`.
pub fn sniff(head: &[&str]) -> bool {
    head.first()
        .is_some_and(|line| parse_line(line.trim().as_bytes()).is_ok())
}

/// Reads JSON lines from `input` into `sink`.
pub fn read(input: &mut dyn BufRead, sink: &mut dyn Sink) -> Result<ReadOutcome, ReaderError> {
    super::read_independent_lines(input, sink, parse_line)
}

fn parse_line(text: &[u8]) -> Result<AccessEvent, String> {
    let line: Line = serde_json::from_slice(text).map_err(|e| format!("invalid JSON: {e}"))?;
    let ts_text = line.ts.get();
    let ts = if ts_text.starts_with('"') {
        let ts: String = serde_json::from_str(ts_text).map_err(|e| format!("ts: {e}"))?;
        parse_ts(&ts)?
    } else {
        parse_ts(ts_text)?
    };
    if line.key.is_empty() {
        return Err("empty key".into());
    }
    let mut event = AccessEvent::new(ts, line.key);
    event.op = parse_op(line.op.as_deref().unwrap_or(""))?;
    event.hit = match line.hit {
        None => None,
        Some(Hit::Bool(hit)) => Some(hit),
        Some(Hit::Number(1)) => Some(true),
        Some(Hit::Number(0)) => Some(false),
        Some(Hit::Number(n)) => return Err(format!("hit `{n}` is not true/false/1/0")),
    };
    event.count = line.count.unwrap_or(1);
    event.value_size = line.value_size;
    event.ttl_s = line.ttl_s;
    event.latency_us = line.latency_us;
    event.client = line.client;
    event.namespace = line.namespace;
    Ok(event)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::VecSink;
    use schemas::Op;

    /// Both timestamp spellings load; a fractional number keeps its microseconds exactly.
    #[test]
    fn reads_both_timestamp_forms() {
        let mut sink = VecSink::default();
        let text = concat!(
            r#"{"ts": 1700000000.000001, "key": "a", "hit": 0}"#,
            "\n",
            r#"{"ts": "2023-11-14T22:13:20Z", "key": "b", "op": "SET", "ttl_s": 60, "extra": [1]}"#,
            "\n"
        );
        let stats = read(&mut text.as_bytes(), &mut sink).unwrap().unwrap();
        assert_eq!(stats.lines, 2);
        assert_eq!(sink.events[0].ts_us, 1_700_000_000_000_001);
        assert_eq!(sink.events[0].hit, Some(false));
        assert_eq!(
            (
                sink.events[1].ts_us,
                sink.events[1].op,
                sink.events[1].ttl_s
            ),
            (1_700_000_000_000_000, Op::Set, Some(60))
        );
    }

    /// Broken lines are rejected by number; blank lines are neither events nor rejections.
    #[test]
    fn rejects_bad_lines_by_number() {
        let mut sink = VecSink::default();
        let text = "{\"ts\":1,\"key\":\"a\"}\n\n{\"ts\":1}\n{not json\n{\"ts\":2,\"key\":\"b\",\"op\":\"zap\"}\n";
        let stats = read(&mut text.as_bytes(), &mut sink).unwrap().unwrap();
        assert_eq!(stats.lines, 5);
        assert_eq!(sink.events.len(), 1);
        let lines: Vec<u64> = sink.rejections.iter().map(|r| r.line).collect();
        assert_eq!(lines, [3, 4, 5]);
        assert!(sink.rejections[2].reason.contains("zap"));
    }
}
