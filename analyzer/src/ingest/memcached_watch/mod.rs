//! memcached's `watch fetchers mutations` output: one `name=value` line per item operation.
//!
//! ```text
//! ts=1795256189.887549 gid=2 type=item_get key=%3A1%3Aq%3Aprofile%3A293 status=not_found clsid=0 cfd=23 size=0
//! ts=1795256189.888208 gid=4 type=item_store key=%3A1%3Aq%3Aprofile%3A293 status=stored cmd=set ttl=1800 clsid=8 cfd=23 size=400
//! skipped=12
//! ```
//!
//! Traps handled here (DESIGN.md, known traps):
//! - fields are found by name, not position;
//! - keys are URI-encoded;
//! - the digits after the dot in `ts=` are microseconds printed without zero padding:
//!   `.99667` is 99 667 µs, not 0.99667 s;
//! - a `set` logs an `item_get` just before its `item_store` (same connection, same key):
//!   that lookup is the store's own, not a read, and is dropped;
//! - `skipped=N` says the watcher dropped N lines: counted as lost, not as events.

use std::collections::HashMap;
use std::io::BufRead;

use schemas::Op;

use super::{AccessEvent, ReadOutcome, ReadStats, ReaderError, Sink, key_from_bytes};

/// Lines start with `ts=` and carry a `type=item_` field.
pub fn sniff(head: &[&str]) -> bool {
    let mut seen = false;
    for line in head {
        if line.starts_with("skipped=") {
            continue;
        }
        if !(line.starts_with("ts=") && line.contains(" type=")) {
            return false;
        }
        seen = true;
    }
    seen
}

/// Reads watch output from `input` into `sink`.
pub fn read(input: &mut dyn BufRead, sink: &mut dyn Sink) -> Result<ReadOutcome, ReaderError> {
    let mut lost = 0u64;
    // The last `item_get` of each connection, held back until the connection's next line
    // says whether it was a set's own lookup.
    let mut pending: HashMap<u64, (AccessEvent, u64)> = HashMap::new();
    let lines = super::for_each_line(input, |line_number, line| {
        if let Some(count) = line.strip_prefix(b"skipped=") {
            match std::str::from_utf8(count)
                .ok()
                .and_then(|c| c.trim().parse::<u64>().ok())
            {
                Some(count) => lost = lost.saturating_add(count),
                None => sink.reject(line_number, "`skipped=` without a count".into()),
            }
            return Ok(());
        }
        let parsed = match parse_line(line) {
            Ok(parsed) => parsed,
            Err(reason) => {
                sink.reject(line_number, reason);
                return Ok(());
            }
        };
        let Some(Parsed {
            event,
            connection,
            is_get,
        }) = parsed
        else {
            return Ok(());
        };
        if let Some((held, _)) = pending.remove(&connection) {
            let set_lookup = !is_get && event.op.is_write() && held.key == event.key;
            if !set_lookup {
                sink.event(held)?;
            }
        }
        if is_get {
            pending.insert(connection, (event, line_number));
        } else {
            sink.event(event)?;
        }
        Ok(())
    })?;
    // What is still held was the last line of its connection: a read.
    let mut rest: Vec<(AccessEvent, u64)> = pending.into_values().collect();
    rest.sort_by_key(|(_, line)| *line);
    for (event, _) in rest {
        sink.event(event)?;
    }
    Ok(Ok(ReadStats {
        lines,
        lost,
        ..ReadStats::default()
    }))
}

struct Parsed {
    event: AccessEvent,
    /// The client connection (`cfd`), 0 when not logged.
    connection: u64,
    is_get: bool,
}

/// Parses one line; `Ok(None)` for a watch line that is not an item operation.
fn parse_line(line: &[u8]) -> Result<Option<Parsed>, String> {
    let text = std::str::from_utf8(line).map_err(|_| "line is not UTF-8".to_owned())?;
    let mut ts = None;
    let mut kind = None;
    let mut key = None;
    let mut status = None;
    let mut cmd = None;
    let mut ttl = None;
    let mut size = None;
    let mut connection = 0;
    for field in text.split_ascii_whitespace() {
        let Some((name, value)) = field.split_once('=') else {
            continue;
        };
        match name {
            "ts" => ts = Some(value),
            "type" => kind = Some(value),
            "key" => key = Some(value),
            "status" => status = Some(value),
            "cmd" => cmd = Some(value),
            "ttl" => ttl = Some(value),
            "size" => size = Some(value),
            "cfd" => connection = value.parse().unwrap_or(0),
            _ => {}
        }
    }
    let ts = parse_watch_ts(ts.ok_or("no `ts=` field")?)?;
    let kind = kind.ok_or("no `type=` field")?;
    let op = match kind {
        "item_get" => Op::Get,
        "item_store" => cmd.map_or(Op::Set, |cmd| match cmd {
            "set" => Op::Set,
            "add" => Op::Add,
            "replace" => Op::Replace,
            "cas" => Op::Cas,
            "incr" => Op::Incr,
            "decr" => Op::Decr,
            _ => Op::Other,
        }),
        "item_delete" | "deleted" => Op::Delete,
        "item_touch" | "touch" => Op::Touch,
        // Evictions, expirations and other internal events are not client operations.
        _ => return Ok(None),
    };
    let key = key.ok_or("no `key=` field")?;
    let mut event = AccessEvent::new(ts, uri_decode(key)?);
    event.op = op;
    let size = size.and_then(|s| s.parse::<u32>().ok());
    match op {
        Op::Get => {
            event.hit = match status {
                Some("found") => Some(true),
                Some("not_found") => Some(false),
                _ => None,
            };
            event.value_size = size.filter(|_| event.hit == Some(true));
        }
        _ if op.is_write() => {
            event.value_size = size;
            // memcached logs the TTL it was given; 0 and -1 mean no expiry.
            event.ttl_s = ttl.and_then(|t| t.parse::<u32>().ok()).filter(|&t| t > 0);
        }
        _ => {}
    }
    Ok(Some(Parsed {
        event,
        connection,
        is_get: op == Op::Get,
    }))
}

/// `SECONDS.MICROS` where MICROS is printed without zero padding (`.99667` is 99 667 µs).
fn parse_watch_ts(text: &str) -> Result<i64, String> {
    let bad = || format!("`ts={text}` is not SECONDS.MICROSECONDS");
    let (seconds, micros) = text.split_once('.').unwrap_or((text, "0"));
    let seconds: i64 = seconds.parse().map_err(|_| bad())?;
    let micros: i64 = micros.parse().map_err(|_| bad())?;
    super::ts_from_parts(seconds, micros)
}

/// memcached URI-encodes keys in watch output; invalid UTF-8 is escaped as `\xNN`.
fn uri_decode(text: &str) -> Result<String, String> {
    let bytes = text.as_bytes();
    if !bytes.contains(&b'%') {
        return Ok(text.to_owned());
    }
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| format!("key `{text}` has a bad %-escape"))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    Ok(key_from_bytes(&out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::VecSink;

    fn run(text: &str) -> (ReadStats, VecSink) {
        let mut sink = VecSink::default();
        let stats = read(&mut text.as_bytes(), &mut sink).unwrap().unwrap();
        (stats, sink)
    }

    /// `.99667` after the dot is 99 667 microseconds: the digits are not zero-padded.
    #[test]
    fn microseconds_are_not_a_decimal_fraction() {
        assert_eq!(
            parse_watch_ts("1795256190.99667"),
            Ok(1_795_256_190_099_667)
        );
        assert_eq!(parse_watch_ts("1795256190.49"), Ok(1_795_256_190_000_049));
        assert_eq!(
            parse_watch_ts("1795256190.887549"),
            Ok(1_795_256_190_887_549)
        );
        assert!(parse_watch_ts("1795256190.1234567").is_err());
    }

    /// A read-through miss logs get(miss), the set's own get, then the store: one read, one set.
    #[test]
    fn a_sets_own_lookup_is_not_a_read() {
        let (_, sink) = run(concat!(
            "ts=10.5 gid=1 type=item_get key=a%3Ab status=not_found clsid=0 cfd=7 size=0\n",
            "ts=10.6 gid=2 type=item_get key=other status=found clsid=1 cfd=8 size=9\n",
            "ts=10.7 gid=3 type=item_get key=a%3Ab status=not_found clsid=0 cfd=7 size=0\n",
            "ts=10.8 gid=4 type=item_store key=a%3Ab status=stored cmd=set ttl=60 clsid=8 cfd=7 size=400\n",
            "ts=10.9 gid=5 type=item_get key=a%3Ab status=found clsid=8 cfd=7 size=400\n",
        ));
        let summary: Vec<(&str, Op, Option<bool>)> = sink
            .events
            .iter()
            .map(|e| (e.key.as_str(), e.op, e.hit))
            .collect();
        assert_eq!(
            summary,
            [
                ("a:b", Op::Get, Some(false)),
                ("a:b", Op::Set, None),
                ("other", Op::Get, Some(true)),
                ("a:b", Op::Get, Some(true)),
            ]
        );
        let set = &sink.events[1];
        assert_eq!((set.ttl_s, set.value_size), (Some(60), Some(400)));
    }

    /// `skipped=` lines are data loss, reported, not events; garbage is rejected by line.
    #[test]
    fn skipped_lines_are_counted_as_lost() {
        let (stats, sink) =
            run("skipped=17\nts=1.1 type=item_get key=k status=found cfd=1\nnonsense here\n");
        assert_eq!(stats.lost, 17);
        assert_eq!(sink.events.len(), 1);
        assert_eq!(sink.rejections[0].line, 3);
    }
}
