//! Meta CacheLib kvcache traces (`cachebench` trace replay): CSV with a header, columns found
//! by name because their order differs between files.
//!
//! ```text
//! op_time,key,key_size,op,op_count,size,cache_hits,ttl,usecase,sub_usecase
//! 604038471,a54f88ab02ece24d,24,GET,3,0,0,0,699950563,699950563
//! ```
//!
//! A row stands for `op_count` identical operations; for reads, `cache_hits` of them hit. A
//! read row becomes up to two events: the hits and the misses, each with its count. `usecase`
//! and `sub_usecase` become the namespace `usecase/sub_usecase`.

use std::io::BufRead;

use schemas::Op;

use super::{AccessEvent, ReadOutcome, ReadStats, ReaderError, Sink, key_from_bytes};

const REQUIRED: [&str; 4] = ["op_time", "key", "op", "op_count"];

/// A header naming `op_time`, `key`, `op` and `op_count`.
pub fn sniff(head: &[&str]) -> bool {
    head.first().is_some_and(|header| {
        let names: Vec<&str> = header.split(',').map(str::trim).collect();
        REQUIRED.iter().all(|required| names.contains(required))
    })
}

/// Column positions.
#[derive(Debug)]
struct Columns {
    op_time: usize,
    key: usize,
    op: usize,
    op_count: usize,
    size: Option<usize>,
    cache_hits: Option<usize>,
    ttl: Option<usize>,
    usecase: Option<usize>,
    sub_usecase: Option<usize>,
    width: usize,
}

/// Reads a kvcache trace from `input` into `sink`.
pub fn read(input: &mut dyn BufRead, sink: &mut dyn Sink) -> Result<ReadOutcome, ReaderError> {
    let mut reader = ::csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(true)
        .from_reader(input);
    let header = match reader.byte_headers() {
        Ok(header) => header.clone(),
        Err(error) => match error.into_kind() {
            ::csv::ErrorKind::Io(io) => return Err(io.into()),
            other => return Ok(Err(format!("bad header: {other:?}"))),
        },
    };
    let find = |name: &str| header.iter().position(|column| column == name.as_bytes());
    let mut missing = REQUIRED.iter().filter(|name| find(name).is_none());
    if let Some(name) = missing.next() {
        return Ok(Err(format!("kvcache header lacks the column `{name}`")));
    }
    let columns = Columns {
        op_time: find("op_time").unwrap_or_default(),
        key: find("key").unwrap_or_default(),
        op: find("op").unwrap_or_default(),
        op_count: find("op_count").unwrap_or_default(),
        size: find("size"),
        cache_hits: find("cache_hits"),
        ttl: find("ttl"),
        usecase: find("usecase"),
        sub_usecase: find("sub_usecase"),
        width: header.len(),
    };
    let mut record = ::csv::ByteRecord::new();
    let mut lines = 1;
    loop {
        match reader.read_byte_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {
                lines = record.position().map_or(lines + 1, |p| p.line());
                match parse_record(&record, &columns) {
                    Ok(events) => {
                        for event in events {
                            sink.event(event)?;
                        }
                    }
                    Err(reason) => sink.reject(lines, reason),
                }
            }
            Err(error) => {
                lines = error.position().map_or(lines + 1, |p| p.line());
                match error.into_kind() {
                    ::csv::ErrorKind::Io(io) => return Err(io.into()),
                    other => sink.reject(lines, format!("{other:?}")),
                }
            }
        }
    }
    Ok(Ok(ReadStats {
        lines,
        ..ReadStats::default()
    }))
}

fn parse_record(record: &::csv::ByteRecord, columns: &Columns) -> Result<Vec<AccessEvent>, String> {
    if record.len() != columns.width {
        return Err(format!(
            "expected {} fields as in the header, found {}",
            columns.width,
            record.len()
        ));
    }
    let text = |index: usize| std::str::from_utf8(&record[index]).unwrap_or("");
    let optional_u32 = |index: Option<usize>, name: &str| {
        index.map_or(Ok(None), |i| super::parse_u32(name, text(i)))
    };
    let seconds: i64 = text(columns.op_time)
        .parse()
        .map_err(|_| format!("op_time `{}` is not whole seconds", text(columns.op_time)))?;
    let key = &record[columns.key];
    if key.is_empty() {
        return Err("empty key".into());
    }
    let count = super::parse_u32("op_count", text(columns.op_count))?.unwrap_or(1);
    if count == 0 {
        return Err("op_count is 0".into());
    }
    let size = optional_u32(columns.size, "size")?;
    let ttl = optional_u32(columns.ttl, "ttl")?.filter(|&ttl| ttl > 0);
    let namespace = match (columns.usecase, columns.sub_usecase) {
        (Some(u), Some(s)) => Some(format!("{}/{}", text(u), text(s))),
        (Some(u), None) => Some(text(u).to_owned()),
        _ => None,
    };
    let mut base = AccessEvent::new(super::ts_from_parts(seconds, 0)?, key_from_bytes(key));
    base.namespace = namespace;
    let op_name = text(columns.op);
    let events = match op_name {
        "GET" | "GET_LEASE" => {
            let hits = optional_u32(columns.cache_hits, "cache_hits")?;
            match hits {
                None => {
                    base.count = count;
                    vec![base]
                }
                Some(hits) if hits > count => {
                    return Err(format!("cache_hits {hits} is more than op_count {count}"));
                }
                Some(hits) => {
                    let mut events = Vec::with_capacity(2);
                    if hits > 0 {
                        let mut hit = base.clone();
                        hit.hit = Some(true);
                        hit.count = hits;
                        hit.value_size = size.filter(|&s| s > 0);
                        events.push(hit);
                    }
                    if count > hits {
                        let mut miss = base;
                        miss.hit = Some(false);
                        miss.count = count - hits;
                        events.push(miss);
                    }
                    events
                }
            }
        }
        "SET" | "SET_LEASE" => {
            base.op = Op::Set;
            base.count = count;
            base.value_size = size;
            base.ttl_s = ttl;
            vec![base]
        }
        "DELETE" => {
            base.op = Op::Delete;
            base.count = count;
            vec![base]
        }
        other => return Err(format!("unknown op `{other}`")),
    };
    Ok(events)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::VecSink;

    /// Columns are found by name in either order; a read row splits into hits and misses.
    #[test]
    fn maps_columns_by_name_and_splits_hits() {
        let text = "op_time,key,key_size,op,op_count,size,cache_hits,usecase,sub_usecase,ttl\n\
                    10,k1,56,GET,5,21,2,u,s,0\n\
                    11,k2,56,SET,1,30,0,u,s,600\n\
                    12,k3,56,GET,3,0,4,u,s,0\n";
        let mut sink = VecSink::default();
        read(&mut text.as_bytes(), &mut sink).unwrap().unwrap();
        let events: Vec<(&str, Op, Option<bool>, u32)> = sink
            .events
            .iter()
            .map(|e| (e.key.as_str(), e.op, e.hit, e.count))
            .collect();
        assert_eq!(
            events,
            [
                ("k1", Op::Get, Some(true), 2),
                ("k1", Op::Get, Some(false), 3),
                ("k2", Op::Set, None, 1),
            ]
        );
        assert_eq!(sink.events[2].ttl_s, Some(600));
        assert_eq!(sink.events[0].namespace.as_deref(), Some("u/s"));
        assert_eq!(sink.rejections[0].line, 4);
    }
}
