//! The canonical CSV format: a header row naming `AccessEvent` columns in any order.
//!
//! Only `ts` and `key` are required; `op` defaults to `get` and `count` to 1. Columns that are
//! not `AccessEvent` columns are ignored with a warning, so logs with extra context still load.

use std::io::BufRead;

use schemas::event::columns;

use super::{EventRef, ReadOutcome, ReadStats, ReaderError, Sink};
use super::{key_from_bytes, parse_hit, parse_op, parse_ts, parse_u32};

/// Positions of the known columns in the header.
#[derive(Debug, Default)]
struct Columns {
    ts: usize,
    key: usize,
    op: Option<usize>,
    hit: Option<usize>,
    count: Option<usize>,
    value_size: Option<usize>,
    ttl_s: Option<usize>,
    latency_us: Option<usize>,
    client: Option<usize>,
    namespace: Option<usize>,
}

/// A header row that names the `ts` and `key` columns.
pub fn sniff(head: &[&str]) -> bool {
    let Some(header) = head.first() else {
        return false;
    };
    let names: Vec<String> = header
        .split(',')
        .map(|name| name.trim().trim_matches('"').to_ascii_lowercase())
        .collect();
    names.iter().any(|name| name == columns::TS) && names.iter().any(|name| name == columns::KEY)
}

/// Reads canonical CSV from `input` into `sink`.
pub fn read(input: &mut dyn BufRead, sink: &mut dyn Sink) -> Result<ReadOutcome, ReaderError> {
    let mut reader = ::csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(true)
        .from_reader(input);
    let header = match reader.byte_headers() {
        Ok(header) => header.clone(),
        Err(error) => {
            return csv_error(error).map(|reason| Err(format!("bad CSV header: {reason}")));
        }
    };
    if header.is_empty() {
        return Ok(Ok(ReadStats::default()));
    }
    let mut warnings = Vec::new();
    let columns = match map_header(&header, &mut warnings) {
        Ok(columns) => columns,
        Err(reason) => return Ok(Err(reason)),
    };

    let mut record = ::csv::ByteRecord::new();
    let mut key_buffer = String::new();
    let mut lines = 1;
    loop {
        match reader.read_byte_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {
                let line = record.position().map_or(lines + 1, |p| p.line());
                lines = line;
                if record.len() == 1 && record[0].is_empty() {
                    continue;
                }
                match parse_record(&record, &columns, header.len(), &mut key_buffer) {
                    Ok(event) => sink.event_ref(event)?,
                    Err(reason) => sink.reject(line, reason),
                }
            }
            Err(error) => {
                let line = error.position().map_or(lines + 1, |p| p.line());
                lines = line;
                let reason = csv_error(error)?;
                sink.reject(line, reason);
            }
        }
    }
    // A record may span lines (quoted newlines): count up to where the reader stopped.
    lines = lines.max(reader.position().line().saturating_sub(1));
    Ok(Ok(ReadStats {
        lines,
        warnings,
        ..ReadStats::default()
    }))
}

/// Splits a csv error into an I/O failure (which stops the ingest) or a line's reason.
fn csv_error(error: ::csv::Error) -> Result<String, ReaderError> {
    match error.into_kind() {
        ::csv::ErrorKind::Io(io) => Err(io.into()),
        other => Ok(format!("{:?}", other)),
    }
}

fn map_header(header: &::csv::ByteRecord, warnings: &mut Vec<String>) -> Result<Columns, String> {
    let mut ts = None;
    let mut key = None;
    let mut columns = Columns::default();
    let mut seen = std::collections::HashSet::new();
    for (index, raw) in header.iter().enumerate() {
        let name = String::from_utf8_lossy(raw).trim().to_ascii_lowercase();
        if !seen.insert(name.clone()) {
            return Err(format!("CSV header names column `{name}` twice"));
        }
        let slot = match name.as_str() {
            columns::TS => &mut ts,
            columns::KEY => &mut key,
            columns::OP => &mut columns.op,
            columns::HIT => &mut columns.hit,
            columns::COUNT => &mut columns.count,
            columns::VALUE_SIZE => &mut columns.value_size,
            columns::TTL_S => &mut columns.ttl_s,
            columns::LATENCY_US => &mut columns.latency_us,
            columns::CLIENT => &mut columns.client,
            columns::NAMESPACE => &mut columns.namespace,
            _ => {
                warnings.push(format!(
                    "column `{name}` is not an AccessEvent column: ignored"
                ));
                continue;
            }
        };
        *slot = Some(index);
    }
    let found = || {
        header
            .iter()
            .map(|raw| String::from_utf8_lossy(raw).into_owned())
            .collect::<Vec<_>>()
            .join(", ")
    };
    columns.ts = ts.ok_or_else(|| {
        format!(
            "CSV header lacks the required column `ts` (found: {})",
            found()
        )
    })?;
    columns.key = key.ok_or_else(|| {
        format!(
            "CSV header lacks the required column `key` (found: {})",
            found()
        )
    })?;
    Ok(columns)
}

/// Parses one record into an event whose text borrows from the record (or from `key_buffer`
/// when the key is not UTF-8 and is escaped).
///
/// The record's UTF-8 is checked once, as a whole, rather than field by field; a field is
/// then a slice of that text (its ends fall between characters, which `str::get` checks, as
/// fields could otherwise split one character between them). A record that is not UTF-8
/// throughout takes the field by field path, which names the offending field.
fn parse_record<'r>(
    record: &'r ::csv::ByteRecord,
    columns: &Columns,
    width: usize,
    key_buffer: &'r mut String,
) -> Result<EventRef<'r>, String> {
    if record.len() != width {
        return Err(format!(
            "expected {width} fields as in the header, found {}",
            record.len()
        ));
    }
    let whole = std::str::from_utf8(record.as_slice()).ok();
    let text = |index: usize, name: &str| -> Result<&'r str, String> {
        whole
            .and_then(|whole| whole.get(record.range(index)?))
            .map_or_else(
                || {
                    std::str::from_utf8(&record[index])
                        .map_err(|_| format!("{name} is not valid UTF-8"))
                },
                Ok,
            )
    };
    let optional = |index: Option<usize>, name: &str| -> Result<&'r str, String> {
        index.map_or(Ok(""), |i| text(i, name))
    };
    let key_bytes = &record[columns.key];
    if key_bytes.is_empty() {
        return Err("empty key".into());
    }
    let ts_us = parse_ts(text(columns.ts, columns::TS)?)?;
    let key: &'r str = match text(columns.key, columns::KEY) {
        Ok(key) => key,
        Err(_) => {
            *key_buffer = key_from_bytes(key_bytes);
            let key_buffer: &'r String = key_buffer;
            key_buffer
        }
    };
    Ok(EventRef {
        ts_us,
        key,
        op: parse_op(optional(columns.op, columns::OP)?)?,
        hit: parse_hit(optional(columns.hit, columns::HIT)?)?,
        count: parse_u32(columns::COUNT, optional(columns.count, columns::COUNT)?)?.unwrap_or(1),
        value_size: parse_u32(
            columns::VALUE_SIZE,
            optional(columns.value_size, columns::VALUE_SIZE)?,
        )?,
        ttl_s: parse_u32(columns::TTL_S, optional(columns.ttl_s, columns::TTL_S)?)?,
        latency_us: parse_u32(
            columns::LATENCY_US,
            optional(columns.latency_us, columns::LATENCY_US)?,
        )?,
        client: non_empty(optional(columns.client, columns::CLIENT)?),
        namespace: non_empty(optional(columns.namespace, columns::NAMESPACE)?),
    })
}

fn non_empty(text: &str) -> Option<&str> {
    (!text.is_empty()).then_some(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::VecSink;
    use schemas::Op;

    fn run(text: &str) -> (ReadOutcome, VecSink) {
        let mut sink = VecSink::default();
        let outcome = read(&mut text.as_bytes(), &mut sink).unwrap();
        (outcome, sink)
    }

    /// Columns are found by name, in any order, and optional ones take their defaults.
    #[test]
    fn columns_in_any_order_with_defaults() {
        let (outcome, sink) = run("key,hit,ts,value_size,op\n\
             a,1,1700000000.5,100,\n\
             b,,2023-11-14T22:13:21Z,,set\n");
        assert_eq!(outcome.unwrap().lines, 3);
        assert_eq!(sink.events.len(), 2);
        let a = &sink.events[0];
        assert_eq!(
            (a.key.as_str(), a.op, a.hit, a.count, a.value_size),
            ("a", Op::Get, Some(true), 1, Some(100))
        );
        let b = &sink.events[1];
        assert_eq!(
            (b.op, b.hit, b.ts_us),
            (Op::Set, None, 1_700_000_001_000_000)
        );
    }

    /// Bad lines are rejected with their line numbers; good lines around them still load.
    #[test]
    fn malformed_lines_are_reported_by_line_number() {
        let (outcome, sink) = run("ts,key,count\n\
             1700000000,ok1,2\n\
             not-a-time,bad1,1\n\
             1700000001,ok2\n\
             1700000002,,1\n\
             1700000003,bad3,-4\n\
             1700000004,\"quoted,key\",3\n");
        assert_eq!(outcome.unwrap().lines, 7);
        let keys: Vec<&str> = sink.events.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(keys, ["ok1", "quoted,key"]);
        let lines: Vec<u64> = sink.rejections.iter().map(|r| r.line).collect();
        assert_eq!(lines, [3, 4, 5, 6]);
        assert!(sink.rejections[0].reason.contains("not-a-time"));
        assert!(sink.rejections[1].reason.contains("expected 3 fields"));
    }

    /// Without `ts` or `key` nothing can be ingested: the file is refused, naming the column.
    #[test]
    fn header_without_key_is_refused() {
        let (outcome, sink) = run("ts,value\n1,2\n");
        let reason = outcome.unwrap_err();
        assert!(reason.contains("`key`"), "{reason}");
        assert!(sink.events.is_empty());
    }

    /// Unknown columns are ignored, and the summary says so.
    #[test]
    fn unknown_columns_warn() {
        let (outcome, sink) = run("ts,key,region\n1,a,eu\n");
        let stats = outcome.unwrap();
        assert_eq!(sink.events.len(), 1);
        assert!(stats.warnings[0].contains("region"));
    }
}
