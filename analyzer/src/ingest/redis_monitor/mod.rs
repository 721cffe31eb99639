//! Redis `MONITOR` output, as `redis-cli monitor` prints it, or raw with the leading `+`:
//!
//! ```text
//! 1795256189.888298 [0 127.0.0.1:54892] "GET" ":1:q:profile:293"
//! +1795256189.888434 [0 127.0.0.1:54892] "SET" ":1:q:profile:293" "…" "EX" "1800"
//! ```
//!
//! Arguments are quoted with C-style escapes (`\"`, `\\`, `\n`, `\xHH`). The database number
//! becomes the namespace (`db0`) and the client address the client.
//!
//! MONITOR does not say whether a read hit. For read-through traffic it can be inferred from
//! what the same client (connection) does next, since a read-through client that missed
//! writes the key before it sends anything else:
//! - a `GET` followed by a `SET` (or `SETEX`, `PSETEX`, `SETNX`) of the same key from the same
//!   client within [`MISS_WINDOW_US`] (250 ms) is a miss;
//! - a `GET` after which the same client sent any other command first is a hit, at once;
//! - a `GET` after which its client said nothing for the window is a hit too (the client that
//!   missed would have written by then).
//!
//! So only a `GET` whose client says nothing more in the last 250 ms of the log, and every
//! other read command (`MGET`, `GETEX`, `GETDEL`, hash reads), keeps `hit` null: nothing can
//! be inferred for them.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::io::BufRead;

// foldhash (seeded at random per run, as std's) rather than std's SipHash: the client table and
// the pending GETs' index are looked up on every line, where SipHash took ~5% of the parse.
use foldhash::HashMap;
use schemas::Op;
use wide::u8x16;

use super::{AccessEvent, EventRef, ReadOutcome, ReadStats, ReaderError, Sink, key_from_bytes};

/// How long after a `GET` a `SET` of the same key by the same client marks the `GET` a miss.
/// A read-through client recomputes a value in milliseconds to tens of milliseconds (4 ms at
/// most in the real capture in `sample_data/real`); 250 ms leaves room for slow pages while
/// keeping the reads left unknown at the end of a capture few.
pub const MISS_WINDOW_US: i64 = 250_000;

/// The first line (after `redis-cli`'s `OK`) is a MONITOR line.
pub fn sniff(head: &[&str]) -> bool {
    let mut lines = head.iter().filter(|line| line.trim() != "OK").peekable();
    lines.peek().is_some() && lines.all(|line| parse_line(line.as_bytes()).is_ok())
}

/// A GET held until its outcome is known or its window has passed (events leave in order).
struct PendingRead {
    /// The read, without its client and namespace: those are `origin`'s.
    event: AccessEvent,
    origin: Origin,
    /// `Some(false)` when a write of the key by the client came within the window, `Some(true)`
    /// when the client sent another command first; `None` while neither has happened.
    hit: Option<bool>,
}

/// Where a command came from, as indexes into [`Origins`].
#[derive(Debug, Clone, Copy)]
struct Origin {
    client: usize,
    namespace: usize,
}

/// Every client and namespace seen, each text kept once: a log has a few of them and
/// millions of events, which borrow them rather than carry copies.
#[derive(Debug, Default)]
struct Origins {
    client_ids: HashMap<String, usize>,
    clients: Vec<String>,
    /// (database number as logged, namespace `db{n}`).
    namespaces: Vec<(String, String)>,
}

impl Origins {
    fn of(&mut self, command: &Command) -> Origin {
        let client = match self.client_ids.get(command.client) {
            Some(&id) => id,
            None => {
                self.clients.push(command.client.to_owned());
                self.client_ids
                    .insert(command.client.to_owned(), self.clients.len() - 1);
                self.clients.len() - 1
            }
        };
        let namespace = match self.namespaces.iter().position(|(db, _)| db == command.db) {
            Some(id) => id,
            None => {
                let db = command.db.to_owned();
                self.namespaces.push((db.clone(), format!("db{db}")));
                self.namespaces.len() - 1
            }
        };
        Origin { client, namespace }
    }

    /// `event` with the client and namespace of `origin`.
    fn view<'a>(&'a self, event: &'a AccessEvent, origin: Origin) -> EventRef<'a> {
        let client = self.clients[origin.client].as_str();
        EventRef {
            client: (!client.is_empty()).then_some(client),
            namespace: Some(&self.namespaces[origin.namespace].1),
            ..event.view()
        }
    }
}

/// Reads MONITOR output from `input` into `sink`.
pub fn read(input: &mut dyn BufRead, sink: &mut dyn Sink) -> Result<ReadOutcome, ReaderError> {
    // GETs within the window of the newest line, oldest first, and where to find each by
    // (client, key). Indexes are absolute: `first` is the index of the queue's front.
    let mut pending: VecDeque<PendingRead> = VecDeque::new();
    let mut first = 0usize;
    let mut by_client_key = ClientKeyIndex::default();
    let mut origins = Origins::default();
    let lines = super::for_each_line(input, |line_number, line| {
        if line == b"OK" {
            return Ok(());
        }
        let command = match parse_line(line) {
            Ok(command) => command,
            Err(reason) => {
                sink.reject(line_number, reason);
                return Ok(());
            }
        };
        // Reads older than the window can no longer be marked: settle them.
        while let Some(front) = pending.front() {
            if front.event.ts_us.saturating_add(MISS_WINDOW_US) >= command.ts_us {
                break;
            }
            let read = pending.pop_front().expect("front exists");
            by_client_key.remove_if(read.origin.client, &read.event.key, first);
            first += 1;
            // A window without a write of the key by its client: a hit.
            let hit = Some(read.hit.unwrap_or(true));
            sink.event_ref(EventRef {
                hit,
                ..origins.view(&read.event, read.origin)
            })?;
        }
        let events = match to_events(&command) {
            Ok(events) => events,
            Err(reason) => {
                sink.reject(line_number, reason);
                return Ok(());
            }
        };
        let origin = origins.of(&command);
        // The command's writes answer their keys' pending GETs of this client (misses); then
        // the client's other pending GETs were hits, since it went on to something else.
        for (event, _) in events.iter().filter(|(_, r)| *r == Role::ReadThroughWrite) {
            if let Some(index) = by_client_key.take(origin.client, &event.key) {
                pending[index - first].hit = Some(false);
            }
        }
        for index in by_client_key.take_client(origin.client) {
            pending[index - first].hit = Some(true);
        }
        for (event, role) in events {
            if role == Role::ReadThroughGet {
                by_client_key.insert(origin.client, &event.key, first + pending.len());
                pending.push_back(PendingRead {
                    event,
                    origin,
                    hit: None,
                });
            } else {
                sink.event_ref(origins.view(&event, origin))?;
            }
        }
        Ok(())
    })?;
    // Reads within the window of the end: known when their client went on, else unknown.
    for read in pending {
        sink.event_ref(EventRef {
            hit: read.hit,
            ..origins.view(&read.event, read.origin)
        })?;
    }
    Ok(Ok(ReadStats {
        lines,
        ..ReadStats::default()
    }))
}

/// Where the pending GET of each (client, key) is, by client id ([`Origins`]), found without
/// allocating on lookup: this is looked up for every write of a busy log.
#[derive(Debug, Default)]
struct ClientKeyIndex(Vec<HashMap<String, usize>>);

impl ClientKeyIndex {
    fn insert(&mut self, client: usize, key: &str, index: usize) {
        if self.0.len() <= client {
            self.0.resize_with(client + 1, HashMap::default);
        }
        self.0[client].insert(key.to_owned(), index);
    }

    /// Removes and returns the index of the pending GET of `client` and `key`.
    fn take(&mut self, client: usize, key: &str) -> Option<usize> {
        self.0.get_mut(client)?.remove(key)
    }

    /// Removes every pending GET of `client`, returning their indexes. The client's map keeps
    /// its allocation: it is refilled by the client's next GET.
    fn take_client(&mut self, client: usize) -> impl Iterator<Item = usize> + '_ {
        self.0
            .get_mut(client)
            .into_iter()
            .flat_map(|keys| keys.drain().map(|(_, index)| index))
    }

    /// Forgets the entry of `client` and `key` if it still points at `index`.
    fn remove_if(&mut self, client: usize, key: &str, index: usize) {
        if let Some(keys) = self.0.get_mut(client)
            && keys.get(key) == Some(&index)
        {
            keys.remove(key);
        }
    }
}

/// One MONITOR line; arguments without escapes borrow from the line.
#[derive(Debug, PartialEq)]
struct Command<'a> {
    ts_us: i64,
    db: &'a str,
    client: &'a str,
    args: Vec<Arg<'a>>,
}

/// How an event takes part in hit inference.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Role {
    ReadThroughGet,
    ReadThroughWrite,
    Plain,
}

fn parse_line(line: &[u8]) -> Result<Command<'_>, String> {
    let line = line.strip_prefix(b"+").unwrap_or(line);
    // `TIMESTAMP [DB CLIENT] ` is all text; the arguments may be long and are parsed as bytes.
    let origin_end = memchr::memchr(b']', line)
        .ok_or_else(|| "expected `TIMESTAMP [DB CLIENT] \"COMMAND\" …`".to_owned())?;
    let head = std::str::from_utf8(&line[..origin_end])
        .map_err(|_| "timestamp or client is not UTF-8".to_owned())?;
    let (ts, origin) = head
        .split_once(" [")
        .ok_or_else(|| "expected `[DB CLIENT]` after the timestamp".to_owned())?;
    let ts_us = super::parse_ts(ts)?;
    let (db, client) = origin.split_once(' ').unwrap_or((origin, ""));
    if db.parse::<u32>().is_err() {
        return Err(format!("database `{db}` is not a number"));
    }
    let rest = line[origin_end + 1..]
        .strip_prefix(b" ")
        .ok_or_else(|| "expected a space after `[DB CLIENT]`".to_owned())?;
    let args = parse_args(rest)?;
    if args.is_empty() {
        return Err("no command".into());
    }
    Ok(Command {
        ts_us,
        db,
        client,
        args,
    })
}

/// One quoted argument: its text between the quotes, escapes as written, and its length once
/// unescaped. Values are the long arguments and, being binary, are full of escapes, yet only
/// their length is used: they are measured, not copied; keys and names are unescaped when
/// asked for ([`Arg::bytes`]).
#[derive(Debug, Clone, Copy, PartialEq)]
struct Arg<'a> {
    raw: &'a [u8],
    len: usize,
}

impl<'a> Arg<'a> {
    /// The argument's length once unescaped.
    fn len(&self) -> usize {
        self.len
    }

    /// The argument unescaped; borrowed when it has no escapes (every escape is longer than
    /// the byte it stands for, so a length equal to the raw one means none).
    fn bytes(&self) -> Cow<'a, [u8]> {
        if self.len == self.raw.len() {
            return Cow::Borrowed(self.raw);
        }
        let mut out = Vec::with_capacity(self.len);
        let mut rest = self.raw;
        while let Some(at) = memchr::memchr(b'\\', rest) {
            out.extend_from_slice(&rest[..at]);
            let (byte, width) = unescape(&rest[at..]).expect("checked by parse_args");
            out.push(byte);
            rest = &rest[at + width..];
        }
        out.extend_from_slice(rest);
        Cow::Owned(out)
    }
}

/// How many bytes the escape at the start of `escape` takes, checked as [`unescape`] checks
/// it: the rule [`measure_quoted`] follows, and falls back on for anything but the common
/// escapes.
#[inline(always)]
fn escape_width(escape: &[u8]) -> Result<usize, &'static str> {
    match escape.get(1) {
        Some(b'n' | b'r' | b't' | b'a' | b'b' | b'\\' | b'"') => Ok(2),
        Some(b'x')
            if escape
                .get(2..4)
                .is_some_and(|digits| digits.iter().all(u8::is_ascii_hexdigit)) =>
        {
            Ok(4)
        }
        _ => unescape(escape).map(|(_, width)| width),
    }
}

/// The byte an escape (`\\` first) stands for, and how many bytes the escape takes.
fn unescape(escape: &[u8]) -> Result<(u8, usize), &'static str> {
    let byte = match escape.get(1) {
        Some(b'n') => b'\n',
        Some(b'r') => b'\r',
        Some(b't') => b'\t',
        Some(b'a') => 0x07,
        Some(b'b') => 0x08,
        Some(b'\\') => b'\\',
        Some(b'"') => b'"',
        Some(b'x') => {
            let digits = escape.get(2..4).ok_or("bad `\\x` escape")?;
            // Binary values are mostly `\xHH`: two hex digits are decoded directly, anything
            // else is left to `from_str_radix`, which decides as it always has.
            let byte = match (hex_digit(digits[0]), hex_digit(digits[1])) {
                (Some(high), Some(low)) => high << 4 | low,
                _ => std::str::from_utf8(digits)
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or("bad `\\x` escape")?,
            };
            return Ok((byte, 4));
        }
        _ => return Err("unknown escape in argument"),
    };
    Ok((byte, 2))
}

/// Where the closing `"` of a quoted argument is (`text` starts after the opening one), and
/// the argument's length once unescaped; every escape checked, as [`escape_width`] checks it.
///
/// Hand-written, 64 bytes at a time, rather than a search per escape (`memchr2`): values are
/// full of escapes, one every ten bytes or so, and a search per escape, or a branch per
/// escape on its kind, cost more than the rest of the line. Each block is turned into bit
/// masks of its `\\` and `"` (16 bytes per SIMD comparison), the escaped bytes are found
/// from the runs of backslashes with simdjson's carry trick ([`escaped_bytes`]), and the closing
/// quote is the first quote not escaped. The digits of a `\xHH` are never `\\` or `"`, so
/// they do not disturb the masks.
fn measure_quoted(text: &[u8]) -> Result<(usize, usize), String> {
    // Bytes the escapes took beyond the one each stands for.
    let mut saved = 0;
    // Whether the next block's first byte is escaped by this block's last backslash.
    let mut carried = 0u64;
    let mut at = 0;
    let mut padded = [0u8; 64];
    loop {
        let block: &[u8; 64] = match text.get(at..at + 64) {
            Some(block) => block.try_into().expect("a slice of 64"),
            None => {
                // The end of the line: zeros are neither `\\` nor `"`.
                let rest = &text[at..];
                padded.fill(0);
                padded[..rest.len()].copy_from_slice(rest);
                &padded
            }
        };
        let (backslashes, quotes) = block_masks(block);
        let escaped = escaped_bytes(backslashes, &mut carried);
        let closing = quotes & !escaped;
        // The bits below the closing quote, or all of them.
        let before = match closing {
            0 => u64::MAX,
            _ => (closing & closing.wrapping_neg()) - 1,
        };
        let mut escapes = escaped & before;
        while escapes != 0 {
            // The escaped byte; its backslash is the byte before.
            let byte = at + escapes.trailing_zeros() as usize;
            escapes &= escapes - 1;
            // Without a branch on the escape's kind (they come mixed, and a mispredicted
            // branch per escape cost more than the rest): its width from a table, the hex
            // digits checked whatever the kind; anything else is left to `escape_width`.
            let at_byte = |i: usize| usize::from(text.get(i).copied().unwrap_or(0));
            let width = ESCAPE_WIDTHS[at_byte(byte)];
            let hex = HEX_DIGITS[at_byte(byte + 1)] & HEX_DIGITS[at_byte(byte + 2)];
            let width = if width == 2 || (width == 4 && hex) {
                usize::from(width)
            } else {
                escape_width(&text[byte - 1..])?
            };
            saved += width - 1;
        }
        if closing != 0 {
            let stop = at + closing.trailing_zeros() as usize;
            return Ok((stop, stop - saved));
        }
        at += 64;
        // A backslash that ends the line is checked in one more block (and refused there).
        if at > text.len() || (at == text.len() && carried == 0) {
            return Err("unterminated quoted argument".to_owned());
        }
    }
}

/// The width of the escape `\\` + byte, by that byte: 2 for the one-letter escapes, 4 for
/// `\\x` (when two hex digits follow), 0 for none.
const ESCAPE_WIDTHS: [u8; 256] = {
    let mut widths = [0; 256];
    let simple = b"nrtab\\\"";
    let mut i = 0;
    while i < simple.len() {
        widths[simple[i] as usize] = 2;
        i += 1;
    }
    widths[b'x' as usize] = 4;
    widths
};

/// Whether each byte is a hex digit.
const HEX_DIGITS: [bool; 256] = {
    let mut digits = [false; 256];
    let mut byte = 0;
    while byte < 256 {
        digits[byte] = (byte as u8).is_ascii_hexdigit();
        byte += 1;
    }
    digits
};

/// The masks of the `\\` and of the `"` of `block`, bit `i` for byte `i`: a comparison and a
/// byte mask per 16 bytes.
#[inline(always)]
fn block_masks(block: &[u8; 64]) -> (u64, u64) {
    let (backslash, quote) = (u8x16::splat(b'\\'), u8x16::splat(b'"'));
    let mut backslashes = 0;
    let mut quotes = 0;
    for (i, chunk) in block.chunks_exact(16).enumerate() {
        let bytes = u8x16::new(chunk.try_into().expect("chunks of 16"));
        backslashes |= u64::from(bytes.simd_eq(backslash).to_bitmask()) << (16 * i);
        quotes |= u64::from(bytes.simd_eq(quote).to_bitmask()) << (16 * i);
    }
    (backslashes, quotes)
}

/// The bytes of a block that a backslash escapes, from the mask of its backslashes:
/// simdjson's `find_escaped_branchless`. In a run of backslashes, every other one escapes
/// the next byte, counting from the run's start; the run's starts on odd bits are added to
/// the run, so that the carry clears it, leaving the runs that start on even bits marked.
/// `carried` says whether the block's first byte is escaped, and is set for the next block.
#[inline(always)]
fn escaped_bytes(backslashes: u64, carried: &mut u64) -> u64 {
    const EVEN_BITS: u64 = 0x5555_5555_5555_5555;
    let backslashes = backslashes & !*carried;
    let follows_escape = (backslashes << 1) | *carried;
    let odd_starts = backslashes & !EVEN_BITS & !follows_escape;
    let (even_runs, overflow) = odd_starts.overflowing_add(backslashes);
    *carried = u64::from(overflow);
    (EVEN_BITS ^ (even_runs << 1)) & follows_escape
}

fn hex_digit(byte: u8) -> Option<u8> {
    match byte {
        b'0'..=b'9' => Some(byte - b'0'),
        b'a'..=b'f' => Some(byte - b'a' + 10),
        b'A'..=b'F' => Some(byte - b'A' + 10),
        _ => None,
    }
}

/// Parses `"ARG" "ARG" …` with MONITOR's escapes (those of `sdscatrepr`), checking every
/// escape and measuring each argument without copying it.
fn parse_args(mut text: &[u8]) -> Result<Vec<Arg<'_>>, String> {
    let mut args = Vec::with_capacity(4);
    loop {
        text = text.trim_ascii_start();
        let Some(rest) = text.strip_prefix(b"\"") else {
            if text.is_empty() {
                return Ok(args);
            }
            return Err("arguments must be double-quoted".into());
        };
        let (i, len) = measure_quoted(rest)?;
        args.push(Arg {
            raw: &rest[..i],
            len,
        });
        text = &rest[i + 1..];
    }
}

/// The events a command stands for, without their client and namespace ([`Origins`] adds
/// them); keyless commands (`PING`, `INFO`, …) stand for none.
fn to_events(command: &Command) -> Result<Vec<(AccessEvent, Role)>, String> {
    // Command names are short ASCII: upper-case them on the stack.
    let mut upper = [0u8; 24];
    let raw = command.args[0].bytes();
    let name = if raw.len() <= upper.len() {
        upper[..raw.len()].copy_from_slice(&raw);
        upper[..raw.len()].make_ascii_uppercase();
        std::str::from_utf8(&upper[..raw.len()]).unwrap_or("")
    } else {
        ""
    };
    let args = &command.args[1..];
    let event = |key: &Arg, op: Op| {
        let mut event = AccessEvent::new(command.ts_us, key_from_bytes(&key.bytes()));
        event.op = op;
        event
    };
    let need = |n: usize| {
        if args.len() < n {
            Err(format!("{name} needs at least {n} arguments"))
        } else {
            Ok(())
        }
    };
    let events = match name {
        "GET" => {
            need(1)?;
            vec![(event(&args[0], Op::Get), Role::ReadThroughGet)]
        }
        "MGET" => args
            .iter()
            .map(|k| (event(k, Op::Get), Role::Plain))
            .collect(),
        "GETEX" | "GETDEL" | "HGET" | "HGETALL" | "HMGET" | "HKEYS" | "HVALS" | "HEXISTS"
        | "HLEN" | "HSTRLEN" => {
            need(1)?;
            vec![(event(&args[0], Op::Get), Role::Plain)]
        }
        "SET" => {
            need(2)?;
            vec![(
                set_event(event(&args[0], Op::Set), args, command.ts_us)?,
                Role::ReadThroughWrite,
            )]
        }
        "SETNX" => {
            need(2)?;
            let mut e = event(&args[0], Op::Add);
            e.value_size = Some(args[1].len() as u32);
            vec![(e, Role::ReadThroughWrite)]
        }
        "SETEX" | "PSETEX" => {
            need(3)?;
            let mut e = event(&args[0], Op::Set);
            let amount = number(&args[1])?;
            e.ttl_s = Some(saturate(if name == "SETEX" {
                amount
            } else {
                amount.div_ceil(1000)
            }));
            e.value_size = Some(args[2].len() as u32);
            vec![(e, Role::ReadThroughWrite)]
        }
        "MSET" | "MSETNX" => {
            if args.is_empty() || !args.len().is_multiple_of(2) {
                return Err(format!("{name} needs key value pairs"));
            }
            let op = if name == "MSET" { Op::Set } else { Op::Add };
            args.chunks(2)
                .map(|pair| {
                    let mut e = event(&pair[0], op);
                    e.value_size = Some(pair[1].len() as u32);
                    (e, Role::Plain)
                })
                .collect()
        }
        "DEL" | "UNLINK" => args
            .iter()
            .map(|k| (event(k, Op::Delete), Role::Plain))
            .collect(),
        "EXPIRE" | "PEXPIRE" | "EXPIREAT" | "PEXPIREAT" | "PERSIST" | "TOUCH" => {
            need(1)?;
            vec![(event(&args[0], Op::Touch), Role::Plain)]
        }
        "INCR" | "INCRBY" | "INCRBYFLOAT" | "HINCRBY" => {
            need(1)?;
            vec![(event(&args[0], Op::Incr), Role::Plain)]
        }
        "DECR" | "DECRBY" => {
            need(1)?;
            vec![(event(&args[0], Op::Decr), Role::Plain)]
        }
        "HSET" | "HMSET" | "HSETNX" => {
            need(1)?;
            vec![(event(&args[0], Op::Set), Role::Plain)]
        }
        _ => Vec::new(),
    };
    Ok(events)
}

/// `SET key value [NX|XX] [GET] [EX s|PX ms|EXAT ts|PXAT ts|KEEPTTL]`.
fn set_event(mut event: AccessEvent, args: &[Arg<'_>], now_us: i64) -> Result<AccessEvent, String> {
    event.value_size = Some(args[1].len() as u32);
    let mut options = args[2..].iter();
    while let Some(option) = options.next() {
        let option = String::from_utf8_lossy(&option.bytes()).to_ascii_uppercase();
        let mut amount = || {
            options
                .next()
                .ok_or_else(|| format!("SET {option} needs a value"))
                .and_then(|v| number(v))
        };
        match option.as_str() {
            "NX" => event.op = Op::Add,
            "XX" => event.op = Op::Replace,
            "EX" => event.ttl_s = Some(saturate(amount()?)),
            "PX" => event.ttl_s = Some(saturate(amount()?.div_ceil(1000))),
            "EXAT" => event.ttl_s = Some(saturate(remaining(amount()?, now_us / 1_000_000))),
            "PXAT" => {
                event.ttl_s = Some(saturate(remaining(amount()?, now_us / 1000).div_ceil(1000)))
            }
            "GET" | "KEEPTTL" => {}
            other => return Err(format!("unknown SET option `{other}`")),
        }
    }
    Ok(event)
}

/// What is left from `now` until the absolute time `at` (same unit), 0 when `at` has passed.
fn remaining(at: u64, now: i64) -> u64 {
    at.saturating_sub(u64::try_from(now).unwrap_or(0))
}

fn saturate(value: u64) -> u32 {
    u32::try_from(value).unwrap_or(u32::MAX)
}

fn number(arg: &Arg) -> Result<u64, String> {
    let arg = arg.bytes();
    std::str::from_utf8(&arg)
        .ok()
        .and_then(|text| text.parse().ok())
        .ok_or_else(|| format!("`{}` is not a number", String::from_utf8_lossy(&arg)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::VecSink;

    fn run(text: &str) -> VecSink {
        let mut sink = VecSink::default();
        read(&mut text.as_bytes(), &mut sink).unwrap().unwrap();
        sink
    }

    /// Each GET's key, client and inferred hit, in the order they were emitted.
    fn reads(sink: &VecSink) -> Vec<(&str, &str, Option<bool>)> {
        sink.events
            .iter()
            .filter(|e| e.op == Op::Get)
            .map(|e| (e.key.as_str(), e.client.as_deref().unwrap(), e.hit))
            .collect()
    }

    #[test]
    fn quoted_arguments_and_escapes() {
        let command =
            parse_line(br#"+1.5 [3 10.0.0.1:5000] "SET" "k\"ey\\ \x41\n" "v" "PX" "1500""#)
                .unwrap();
        assert_eq!(command.args[1].bytes().as_ref(), b"k\"ey\\ A\n");
        assert_eq!((command.db, command.client), ("3", "10.0.0.1:5000"));
        let events = to_events(&command).unwrap();
        assert_eq!(events[0].0.ttl_s, Some(2));
        let mut origins = Origins::default();
        let origin = origins.of(&command);
        assert_eq!(origins.view(&events[0].0, origin).namespace, Some("db3"));
        assert!(parse_line(b"1.5 [0 c] \"GET").is_err());
        assert!(parse_line(b"1.5 [0 c] GET k").is_err());
    }

    /// Values are measured eight bytes at a time with several escapes per word: every escape,
    /// at every offset from a word's start and across words, counts as the one byte it stands
    /// for; a `\"` does not end the argument, a `\\` just before the closing quote does not
    /// escape it, and a bad or cut escape is an error wherever it falls.
    #[test]
    fn values_are_measured_with_escapes_at_every_offset() {
        let pieces = [r#"\""#, r"\\", r"\x0a", r"\n", "ab", r"\xFF", "c"];
        let decoded = [1, 1, 1, 1, 2, 1, 1];
        for pad in 0..16 {
            let mut raw = "p".repeat(pad);
            let mut expected = pad;
            for k in 0..40 {
                raw.push_str(pieces[(k * 3 + pad) % pieces.len()]);
                expected += decoded[(k * 3 + pad) % pieces.len()];
            }
            let line = format!(r#"1.0 [0 c] "SET" "k" "{raw}" "EX" "5""#);
            let command = parse_line(line.as_bytes()).unwrap();
            assert_eq!(command.args[2].raw, raw.as_bytes(), "pad {pad}");
            assert_eq!(command.args[2].len(), expected, "pad {pad}");
            assert_eq!(command.args[2].bytes().len(), expected, "pad {pad}");
            assert_eq!(command.args[3].raw, b"EX");
        }
        let command = parse_line(br#"1.0 [0 c] "SET" "k" "abcdefg\\" "x""#).unwrap();
        assert_eq!((command.args[2].len(), command.args[3].raw), (8, &b"x"[..]));
        for bad in [
            r#""abcdefgh\q""#,
            r#""abcdefgh\"#,
            r#""abcdefgh\""#,
            r#""abcdefghijklmn\x4""#,
            r#""abc\x4"#,
            r#""abcdefghijklmnop"#,
        ] {
            let line = format!(r#"1.0 [0 c] "SET" "k" {bad}"#);
            assert!(parse_line(line.as_bytes()).is_err(), "{bad}");
        }
    }

    /// GET then SET of the key by the same client within the window is a miss; a GET with no
    /// write within the window is a hit; another client's SET does not count; near the end, a
    /// GET answered by a SET is a miss, one whose client sent another command is a hit.
    #[test]
    fn infers_hits_for_read_through_traffic() {
        let sink = run(concat!(
            "OK\n",
            "10.000000 [0 a:1] \"GET\" \"k\"\n",
            "10.000100 [0 b:2] \"GET\" \"j\"\n",
            "10.200000 [0 a:1] \"SET\" \"k\" \"value\" \"EX\" \"60\"\n",
            "10.240000 [0 b:2] \"SET\" \"j\" \"v\"\n",
            "10.300000 [0 a:1] \"GET\" \"j\"\n",
            "10.900000 [0 a:1] \"SET\" \"j\" \"late\"\n",
            "12.000000 [0 a:1] \"PING\"\n",
            "12.100000 [0 a:1] \"GET\" \"k\"\n",
            "12.100100 [0 a:1] \"GET\" \"m\"\n",
            "12.100200 [0 a:1] \"SET\" \"m\" \"v\"\n",
        ));
        assert_eq!(
            reads(&sink),
            [
                ("k", "a:1", Some(false)),
                ("j", "b:2", Some(false)),
                ("j", "a:1", Some(true)),
                ("k", "a:1", Some(true)),
                ("m", "a:1", Some(false)),
            ]
        );
        let writes = sink.events.iter().filter(|e| e.op == Op::Set).count();
        assert_eq!(writes, 4);
    }

    /// Near the end of a capture, a GET is settled by its own client's next command: another
    /// command (even a GET, or a SET of another key) makes it a hit, a SET of its key a miss;
    /// other clients' commands say nothing about it, and a GET whose client says nothing more
    /// stays unknown.
    #[test]
    fn the_next_command_of_the_same_client_settles_a_get() {
        let sink = run(concat!(
            "20.000000 [0 a:1] \"GET\" \"k\"\n",
            "20.000100 [0 b:2] \"GET\" \"j\"\n",
            "20.000200 [0 c:3] \"GET\" \"m\"\n",
            "20.000300 [0 b:2] \"SET\" \"x\" \"v\"\n",
            "20.000400 [0 a:1] \"SET\" \"k\" \"v\"\n",
            "20.000500 [0 a:1] \"GET\" \"n\"\n",
            "20.000600 [0 a:1] \"GET\" \"p\"\n",
            "20.000700 [0 c:3] \"GET\" \"m\"\n",
        ));
        assert_eq!(
            reads(&sink),
            [
                ("k", "a:1", Some(false)),
                ("j", "b:2", Some(true)),
                ("m", "c:3", Some(true)),
                ("n", "a:1", Some(true)),
                ("p", "a:1", None),
                ("m", "c:3", None),
            ]
        );
    }

    #[test]
    fn multi_key_commands_fan_out() {
        let sink = run(concat!(
            "1.0 [0 c] \"MSET\" \"a\" \"1\" \"b\" \"22\"\n",
            "1.1 [0 c] \"DEL\" \"a\" \"b\" \"c\"\n",
            "1.2 [0 c] \"MGET\" \"a\" \"b\"\n",
            "1.3 [0 c] \"SETEX\" \"s\" \"30\" \"v\"\n",
            "1.4 [0 c] \"SET\" \"n\" \"v\" \"NX\" \"PX\" \"999\"\n",
        ));
        let ops: Vec<(&str, Op)> = sink.events.iter().map(|e| (e.key.as_str(), e.op)).collect();
        assert_eq!(
            ops,
            [
                ("a", Op::Set),
                ("b", Op::Set),
                ("a", Op::Delete),
                ("b", Op::Delete),
                ("c", Op::Delete),
                ("a", Op::Get),
                ("b", Op::Get),
                ("s", Op::Set),
                ("n", Op::Add),
            ]
        );
        assert_eq!(sink.events[7].ttl_s, Some(30));
        assert_eq!(sink.events[8].ttl_s, Some(1));
    }
}
