//! Twitter's published cache traces (Yang et al., OSDI'20; github.com/twitter/cache-trace):
//! no header, `timestamp,key,key_size,value_size,client_id,operation,ttl`.
//!
//! ```text
//! 0,q:q:1:8WTfjZU14ee,17,213,4,get,0
//! ```
//!
//! Keys may contain commas, so the key is everything between the first field and the last
//! five. The timestamp is seconds from the start of the trace, read as Unix seconds (the
//! traces are anonymised in time too). `value_size` is 0 on a get that missed, so a get with a
//! value size is a hit and one without is a miss.

use std::io::BufRead;

use schemas::Op;

use super::{AccessEvent, ReadOutcome, ReaderError, Sink, key_from_bytes};

/// Every line has at least seven comma-separated fields, numbers where numbers belong and a
/// known operation.
pub fn sniff(head: &[&str]) -> bool {
    !head.is_empty() && head.iter().all(|line| parse_line(line.as_bytes()).is_ok())
}

/// Reads a Twitter trace from `input` into `sink`.
pub fn read(input: &mut dyn BufRead, sink: &mut dyn Sink) -> Result<ReadOutcome, ReaderError> {
    super::read_independent_lines(input, sink, parse_line)
}

fn parse_line(line: &[u8]) -> Result<AccessEvent, String> {
    let mut fields = line.splitn(2, |&b| b == b',');
    let ts = fields.next().unwrap_or_default();
    let rest = fields.next().ok_or("expected 7 comma-separated fields")?;
    // The last five fields, from the right; what is left is the key.
    let mut tail = rest.rsplitn(6, |&b| b == b',');
    let ttl = tail.next();
    let operation = tail.next();
    let client = tail.next();
    let value_size = tail.next();
    let key_size = tail.next();
    let key = tail.next();
    let (Some(key), Some(_key_size), Some(value_size), Some(client), Some(operation), Some(ttl)) =
        (key, key_size, value_size, client, operation, ttl)
    else {
        return Err("expected 7 comma-separated fields".into());
    };
    if key.is_empty() {
        return Err("empty key".into());
    }
    fn text<'a>(field: &'a [u8], name: &str) -> Result<&'a str, String> {
        std::str::from_utf8(field).map_err(|_| format!("{name} is not UTF-8"))
    }
    let ts_text = text(ts, "timestamp")?;
    let seconds: i64 = ts_text
        .parse()
        .map_err(|_| format!("timestamp `{ts_text}` is not whole seconds"))?;
    let value_size = super::parse_u32("value_size", text(value_size, "value_size")?)?;
    let ttl = super::parse_u32("ttl", text(ttl, "ttl")?)?;
    let op_name = text(operation, "operation")?;
    let op = match op_name {
        "get" | "gets" => Op::Get,
        "set" => Op::Set,
        "add" => Op::Add,
        "replace" => Op::Replace,
        "cas" => Op::Cas,
        "delete" => Op::Delete,
        "incr" => Op::Incr,
        "decr" => Op::Decr,
        "append" | "prepend" => Op::Other,
        other => return Err(format!("unknown operation `{other}`")),
    };
    let mut event = AccessEvent::new(super::ts_from_parts(seconds, 0)?, key_from_bytes(key));
    event.op = op;
    event.client = Some(text(client, "client")?.to_owned());
    match op {
        Op::Get => {
            event.hit = Some(value_size.unwrap_or(0) > 0);
            event.value_size = value_size.filter(|&size| size > 0);
        }
        _ if op.is_write() => {
            event.value_size = value_size;
            event.ttl_s = ttl.filter(|&ttl| ttl > 0);
        }
        _ => {}
    }
    Ok(event)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::VecSink;

    /// Commas inside keys stay in the key; a get with value size 0 is a miss.
    #[test]
    fn keys_with_commas_and_misses() {
        let mut sink = VecSink::default();
        let text = "0,q:q:1:8WTfjZU14ee,17,213,4,get,0\n\
                    1,a,b,,c,5,0,7,gets,0\n\
                    2,k,1,100,7,set,3600\n\
                    3,k,1,0,7,frob,0\n";
        let stats = read(&mut text.as_bytes(), &mut sink).unwrap().unwrap();
        assert_eq!(stats.lines, 4);
        let e = &sink.events;
        assert_eq!(
            (e[0].key.as_str(), e[0].hit, e[0].value_size),
            ("q:q:1:8WTfjZU14ee", Some(true), Some(213))
        );
        assert_eq!(
            (e[1].key.as_str(), e[1].hit, e[1].ts_us),
            ("a,b,,c", Some(false), 1_000_000)
        );
        assert_eq!(
            (e[2].op, e[2].ttl_s, e[2].client.as_deref()),
            (Op::Set, Some(3600), Some("7"))
        );
        assert_eq!(sink.rejections[0].line, 4);
    }
}
