//! The add path to memcached: quiet-mode meta sets (with the items' client flags), pipelined per
//! server, closed by `mn`.
//!
//! Why not the `memcache` crate's meta client for this one path: its batches ask a reply of
//! every command (it stamps each with an opaque token and checks the echoes) and keep the `q`
//! flag to itself (`meta_api` says quiet semantics are the executor's concern, and the
//! executor never uses them), and each `Set` copies its value into a `MetaCommand` before the
//! batch copies it again into the payload. On the warm's hot path that was half the memcached
//! ratio (profile in docs/benchmarks.md). memcached's own fastest loading path, and the
//! benchmark's limit, is `ms <key> <size> T<ttl> ME q` … `mn`: only failures answer.
//!
//! So a batch is encoded here into one buffer per server (each value copied once), written on
//! a connection of that server while the answers are read (a batch of `NS` answers can be
//! larger than the socket buffers), and read up to the `MN`. Keys are routed with the store's
//! router, the same one the crate's client uses, so a key goes to the server the probes and
//! reads ask. Answers are still checked per key: every `ms` carries `O<position>`, which
//! memcached echoes on `NS` (already present: add semantics) and the other return codes.
//! memcached's error lines (`SERVER_ERROR object too large for cache`, …) carry no opaque: such
//! a line only says one command between the last echoed position and the next failed, so the
//! keys in that span are asked for afterwards (`mg <key>` without value, through the crate):
//! a key that is absent was refused with that error, one present was stored by the add.

use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use memcache::exp::Router;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::store::{CALL_TIMEOUT, CONNECT_TIMEOUT, WriteItem, WriteOutcome};

/// memcached reads a TTL above 30 days as a Unix time (the crate's `Ttl` does the same).
const MAX_RELATIVE_SECS: u64 = 30 * 24 * 60 * 60;
/// Idle connections kept per server (the warm keeps a few batches in flight).
const MAX_IDLE: usize = 8;

/// Connections for the quiet add path, one idle list per server.
pub(super) struct QuietWriter {
    /// Server identities as given, in the order the router indexes them.
    servers: Vec<String>,
    router: Arc<dyn Router>,
    idle: Vec<Mutex<Vec<TcpStream>>>,
}

/// One server's share of a batch: the items' indexes, in order, and their encoded commands.
struct Share {
    server: usize,
    items: Vec<usize>,
    payload: Vec<u8>,
}

/// What a server answered for its share.
struct Answers {
    /// (position in the share, outcome) for every command that answered.
    tagged: Vec<(usize, WriteOutcome)>,
    /// Error lines without an opaque: (positions the error may be at, message).
    untagged: Vec<(std::ops::Range<usize>, String)>,
}

impl QuietWriter {
    pub(super) fn new(servers: &[String], router: Arc<dyn Router>) -> QuietWriter {
        QuietWriter {
            servers: servers.to_vec(),
            router,
            idle: servers.iter().map(|_| Mutex::new(Vec::new())).collect(),
        }
    }

    /// Adds `items`; one outcome per item. `None` in the result's second part lists the items
    /// an error line may belong to, for the caller to look up (see the module docs).
    pub(super) async fn add(&self, items: &[WriteItem<'_>]) -> AddResult {
        let mut outcomes = vec![WriteOutcome::Written; items.len()];
        let shares = self.encode(items, &mut outcomes);
        let exchanges = shares.iter().map(|share| self.exchange(share));
        let answers = futures_join_all(exchanges).await;
        let mut uncertain = Vec::new();
        let mut broken = None;
        for (share, answers) in shares.iter().zip(answers) {
            match answers {
                Ok(answers) => {
                    for (position, outcome) in answers.tagged {
                        outcomes[share.items[position]] = outcome;
                    }
                    for (span, message) in answers.untagged {
                        let keys = span
                            .map(|position| share.items[position])
                            .filter(|&i| matches!(outcomes[i], WriteOutcome::Written))
                            .collect();
                        uncertain.push((keys, message));
                    }
                }
                Err(error) => {
                    // The connection broke: what the server did with this share is unknown. The
                    // batch fails as a whole (`broken`), for the run to retry; the outcomes
                    // stay for a caller that does not.
                    let reason = format!("outcome unknown: i/o error: {error}");
                    for &i in &share.items {
                        outcomes[i] = WriteOutcome::Refused(reason.clone());
                    }
                    broken = Some(reason);
                }
            }
        }
        AddResult {
            outcomes,
            uncertain,
            broken,
        }
    }

    /// Routes and encodes `items`, one payload per server, each ending with `mn`.
    fn encode(&self, items: &[WriteItem<'_>], outcomes: &mut [WriteOutcome]) -> Vec<Share> {
        let mut shares: Vec<Share> = Vec::new();
        let mut share_of = vec![usize::MAX; self.servers.len()];
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        for (i, item) in items.iter().enumerate() {
            let key = item.key.as_bytes();
            if key.is_empty() || key.len() > 250 || key.iter().any(|&b| b <= 0x20 || b == 0x7f) {
                // The run checks keys before writing (`check_key`); this is the protocol's own
                // limit, so no line can be torn by a key.
                outcomes[i] = WriteOutcome::Refused("key not valid for memcached".to_owned());
                continue;
            }
            let server = if self.servers.len() == 1 {
                0
            } else {
                self.router
                    .route(key, &self.servers)
                    .min(self.servers.len() - 1)
            };
            if share_of[server] == usize::MAX {
                share_of[server] = shares.len();
                shares.push(Share {
                    server,
                    items: Vec::new(),
                    payload: Vec::with_capacity(items.len() * (key.len() + item.value.len() + 40)),
                });
            }
            let share = &mut shares[share_of[server]];
            let secs = item.ttl.as_secs().max(1);
            let wire_ttl = if secs <= MAX_RELATIVE_SECS {
                secs
            } else {
                now + secs
            }
            .min(u64::from(u32::MAX));
            // `ms <key> <size> T<ttl> [F<flags>] ME q O<position>\r\n<value>\r\n`, written by hand: this
            // loop runs once per key of the warm.
            let payload = &mut share.payload;
            payload.extend_from_slice(b"ms ");
            payload.extend_from_slice(key);
            payload.push(b' ');
            push_decimal(payload, item.value.len() as u64);
            payload.extend_from_slice(b" T");
            push_decimal(payload, wire_ttl);
            // The client flags go with the value (an omitted F stores 0, as for most items).
            if item.flags != 0 {
                payload.extend_from_slice(b" F");
                push_decimal(payload, u64::from(item.flags));
            }
            payload.extend_from_slice(b" ME q O");
            push_decimal(payload, share.items.len() as u64);
            payload.extend_from_slice(b"\r\n");
            payload.extend_from_slice(item.value);
            payload.extend_from_slice(b"\r\n");
            share.items.push(i);
        }
        for share in &mut shares {
            share.payload.extend_from_slice(b"mn\r\n");
        }
        shares
    }

    /// Sends one share and reads its answers up to `MN`, within [`CALL_TIMEOUT`].
    async fn exchange(&self, share: &Share) -> std::io::Result<Answers> {
        let mut connection = self.checkout(share.server).await?;
        let answers = tokio::time::timeout(CALL_TIMEOUT, async {
            let (mut reader, mut writer) = connection.split();
            let write = async {
                writer.write_all(&share.payload).await?;
                writer.flush().await
            };
            // Either side failing ends the exchange (a write that fails leaves no `MN` to wait
            // for).
            let ((), answers) = tokio::try_join!(write, read_answers(&mut reader, share))?;
            Ok::<_, std::io::Error>(answers)
        })
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "timed out"))??;
        // Only a connection read up to its `MN` is clean enough to reuse.
        let mut idle = self.idle[share.server]
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if idle.len() < MAX_IDLE {
            idle.push(connection);
        }
        Ok(answers)
    }

    /// An idle connection of `server` that the server has not closed, or a new one. (A batch
    /// sent on a closed connection would fail after it may have landed in part, and could not
    /// be sent again: the keys that landed would then answer `NS`.)
    async fn checkout(&self, server: usize) -> std::io::Result<TcpStream> {
        loop {
            let pooled = self.idle[server]
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .pop();
            let Some(connection) = pooled else {
                break;
            };
            let mut byte = [0u8; 1];
            match connection.try_read(&mut byte) {
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(connection),
                // Closed (0 bytes), failed, or bytes nobody asked for: not reusable.
                _ => {}
            }
        }
        let address = &self.servers[server];
        let connection = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(address))
            .await
            .map_err(|_| {
                std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("timed out connecting to {address}"),
                )
            })??;
        connection.set_nodelay(true)?;
        Ok(connection)
    }
}

/// Outcomes of an add, and the items whose outcome an error line leaves open: (items, error).
pub(super) struct AddResult {
    pub outcomes: Vec<WriteOutcome>,
    pub uncertain: Vec<(Vec<usize>, String)>,
    /// A connection broke: the batch failed as a whole (the caller's retry sends it again;
    /// add semantics keep that harmless).
    pub broken: Option<String>,
}

/// Reads answer lines up to `MN`: tagged return codes, and error lines with the span of
/// positions they may belong to.
async fn read_answers(
    reader: &mut (impl AsyncReadExt + Unpin),
    share: &Share,
) -> std::io::Result<Answers> {
    let mut answers = Answers {
        tagged: Vec::new(),
        untagged: Vec::new(),
    };
    let mut buffer = Vec::with_capacity(4096);
    let mut scanned = 0;
    // Positions before this one are known to precede every answer still to come.
    let mut after = 0usize;
    let mut pending_errors: Vec<String> = Vec::new();
    loop {
        while let Some(end) = buffer[scanned..].windows(2).position(|w| w == b"\r\n") {
            let line = &buffer[scanned..scanned + end];
            scanned += end + 2;
            if line == b"MN" {
                for message in pending_errors.drain(..) {
                    answers.untagged.push((after..share.items.len(), message));
                }
                return Ok(answers);
            }
            let text = String::from_utf8_lossy(line);
            let mut words = text.split(' ');
            let code = words.next().unwrap_or("");
            let opaque = words
                .find_map(|flag| flag.strip_prefix('O'))
                .and_then(|o| o.parse::<usize>().ok())
                .filter(|&o| o < share.items.len());
            match (code, opaque) {
                (_, Some(position)) => {
                    for message in pending_errors.drain(..) {
                        answers.untagged.push((after..position, message));
                    }
                    after = position + 1;
                    let outcome = match code {
                        "HD" => WriteOutcome::Written,
                        "NS" => WriteOutcome::AlreadyPresent,
                        other => WriteOutcome::Refused(format!("not stored: {other}")),
                    };
                    answers.tagged.push((position, outcome));
                }
                ("SERVER_ERROR", None) => {
                    pending_errors.push(format!("server error: {}", rest(&text)));
                }
                ("CLIENT_ERROR" | "ERROR", None) => {
                    pending_errors.push(format!("command rejected by server: {}", rest(&text)));
                }
                _ => {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        format!("unexpected answer to a meta set: {text:?}"),
                    ));
                }
            }
        }
        if scanned > 0 {
            buffer.drain(..scanned);
            scanned = 0;
        }
        let read = reader.read_buf(&mut buffer).await?;
        if read == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        if buffer.capacity() - buffer.len() < 1024 {
            buffer.reserve(4096);
        }
    }
}

/// An error line without its first word.
fn rest(line: &str) -> &str {
    line.split_once(' ').map_or("", |(_, rest)| rest)
}

fn push_decimal(buffer: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    buffer.extend_from_slice(&digits[at..]);
}

/// Runs the futures concurrently (one per server: a batch takes one round trip, not one per
/// server); their outputs in order.
async fn futures_join_all<F: Future>(futures: impl Iterator<Item = F>) -> Vec<F::Output> {
    let mut running: Vec<_> = futures.map(|f| Some(Box::pin(f))).collect();
    let mut outputs: Vec<Option<F::Output>> = running.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        for (slot, output) in running.iter_mut().zip(outputs.iter_mut()) {
            if let Some(future) = slot
                && let std::task::Poll::Ready(done) = future.as_mut().poll(cx)
            {
                *output = Some(done);
                *slot = None;
            }
        }
        if running.iter().all(Option::is_none) {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
    .await;
    outputs.into_iter().flatten().collect()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::store::ValueEncoding;

    #[test]
    fn decimals() {
        for n in [0u64, 7, 10, 12345, u64::MAX] {
            let mut buffer = Vec::new();
            push_decimal(&mut buffer, n);
            assert_eq!(buffer, n.to_string().as_bytes());
        }
    }

    /// The client flags travel with the value, or the app's client cannot decode it (a pickled
    /// dict written with flags 0 reads back as bytes).
    #[test]
    fn long_ttls_become_unix_times_and_flags_go_on_the_wire() {
        let router: Arc<dyn Router> = Arc::new(memcache::exp::Rendezvous::new());
        let writer = QuietWriter::new(&["127.0.0.1:1".to_owned()], router);
        let value = b"v".as_slice();
        let items = [
            WriteItem {
                key: "short",
                value,
                ttl: Duration::from_secs(60),
                flags: 0,
                encoding: ValueEncoding::Raw,
            },
            WriteItem {
                key: "long",
                value,
                ttl: Duration::from_secs(MAX_RELATIVE_SECS + 1),
                flags: 16,
                encoding: ValueEncoding::Raw,
            },
        ];
        let mut outcomes = vec![WriteOutcome::Written; 2];
        let shares = writer.encode(&items, &mut outcomes);
        let text = String::from_utf8(shares[0].payload.clone()).unwrap();
        let mut lines = text.split("\r\n");
        assert_eq!(lines.next(), Some("ms short 1 T60 ME q O0"));
        assert_eq!(lines.next(), Some("v"));
        let long = lines.next().unwrap();
        let ttl: u64 = long.split(' ').nth(3).unwrap()[1..].parse().unwrap();
        assert!(ttl > MAX_RELATIVE_SECS * 2, "{long}");
        assert_eq!(long.split(' ').nth(4), Some("F16"), "{long}");
        assert!(text.ends_with("\r\nmn\r\n"));
    }
}
