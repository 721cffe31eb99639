//! The canonical JSON lines format: one object per line with `AccessEvent` field names.
//!
//! `ts` is a number of Unix seconds or an RFC 3339 string; it is read from the raw JSON text so
//! a fraction keeps every microsecond (a float would round it). Fields that are not
//! `AccessEvent` fields are ignored.

use std::borrow::Cow;
use std::io::BufRead;

use schemas::Op;
use serde::Deserialize;
use serde_json::value::RawValue;

use super::{EventRef, ReadOutcome, ReadStats, ReaderError, Sink};
use super::{parse_op, parse_ts};

/// One line's fields; text borrows from the line unless it holds JSON escapes.
#[derive(Debug, Deserialize)]
struct Line<'a> {
    #[serde(borrow)]
    ts: &'a RawValue,
    #[serde(borrow)]
    key: Cow<'a, str>,
    #[serde(default, borrow)]
    op: Option<Cow<'a, str>>,
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
    #[serde(default, borrow)]
    client: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    namespace: Option<Cow<'a, str>>,
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
    let lines = super::for_each_line(input, |line_number, line| {
        match parse_line(line) {
            Ok(line) => sink.event_ref(line.event())?,
            Err(reason) => sink.reject(line_number, reason),
        }
        Ok(())
    })?;
    Ok(Ok(ReadStats {
        lines,
        ..ReadStats::default()
    }))
}

/// A parsed line: the event's text still borrows from the line (or from the `Line`, for
/// text with escapes).
struct Parsed<'a> {
    line: Line<'a>,
    ts_us: i64,
    op: Op,
    hit: Option<bool>,
}

impl Parsed<'_> {
    fn event(&self) -> EventRef<'_> {
        let line = &self.line;
        EventRef {
            ts_us: self.ts_us,
            key: &line.key,
            op: self.op,
            hit: self.hit,
            count: line.count.unwrap_or(1),
            value_size: line.value_size,
            ttl_s: line.ttl_s,
            latency_us: line.latency_us,
            client: line.client.as_deref(),
            namespace: line.namespace.as_deref(),
        }
    }
}

fn parse_line(text: &[u8]) -> Result<Parsed<'_>, String> {
    let line: Line = serde_json::from_slice(text).map_err(|e| format!("invalid JSON: {e}"))?;
    let ts_text = line.ts.get();
    let ts_us = if ts_text.starts_with('"') {
        let ts: Cow<str> = serde_json::from_str(ts_text).map_err(|e| format!("ts: {e}"))?;
        parse_ts(&ts)?
    } else {
        parse_ts(ts_text)?
    };
    if line.key.is_empty() {
        return Err("empty key".into());
    }
    let op = parse_op(line.op.as_deref().unwrap_or(""))?;
    let hit = match line.hit {
        None => None,
        Some(Hit::Bool(hit)) => Some(hit),
        Some(Hit::Number(1)) => Some(true),
        Some(Hit::Number(0)) => Some(false),
        Some(Hit::Number(n)) => return Err(format!("hit `{n}` is not true/false/1/0")),
    };
    Ok(Parsed {
        line,
        ts_us,
        op,
        hit,
    })
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
