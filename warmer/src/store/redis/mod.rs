//! Redis: one multiplexed connection, one pipeline per batch.
//!
//! The connection is the crate's `ConnectionManager`: when a Redis restarts or a connection
//! drops mid-run, the call in flight fails (and the run retries it with backoff) while the
//! manager dials again, so a store that comes back within the retries is warmed to the end.
//!
//! Values of every type are copied. A source read is `GET` + `PTTL`; a key that answers
//! `WRONGTYPE` (a hash, set, sorted set, list or stream) is read again with `DUMP` + `PTTL`,
//! which gives its whole value in Redis's own serialization ([`ValueEncoding::RedisDump`]).
//! Add is `SET key value NX PX ttl` for a string (replace drops `NX`) and `RESTORE key ttl
//! payload` for a dump (replace adds `REPLACE`): without `REPLACE`, `RESTORE` answers `BUSYKEY`
//! for a key that exists, which is add semantics. A payload the target refuses (the RDB
//! version of a newer server, a bad checksum) fails that one write, with Redis's reason.
//!
//! Strings keep `GET`/`SET` rather than `DUMP`/`RESTORE` for everything: the bytes stay the
//! application's own (a snapshot of them is readable by any tool, and undo and `--verify`
//! compare them as the application reads them), and they are copied faster (measured: see
//! docs/benchmarks.md). A Redis Cluster (`cluster`) sends the same commands and reads the
//! replies with the same functions, below the store.

mod cluster;
pub(super) mod dump;
mod sentinel;
mod url;

use std::collections::HashMap;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Pipeline, RedisResult, Value};
use schemas::report::HitCounters;

use super::{
    CALL_TIMEOUT, CONNECT_TIMEOUT, CacheStore, Fetched, StoreError, UndoOutcome, ValueEncoding,
    WriteItem, WriteMode, WriteOutcome, duration_from_millis, redact, value_hash,
};

use super::tls::{TlsOptions, install_crypto_provider};

pub use cluster::RedisClusterStore;
pub use sentinel::SentinelUrl;
pub use url::{ClusterUrl, RedisUrl};

/// Compare-and-delete: deletes KEYS[1] only if it holds exactly ARGV[1]: its string value, or
/// with ARGV[2] = `dump` its `DUMP` (a value of another type). Returns 1 when deleted, 0 when
/// the key holds another value, -1 when it is gone.
const DELETE_IF_EQUAL: &str = r"
local kind = redis.call('TYPE', KEYS[1])['ok']
if kind == 'none' then return -1 end
local current
if ARGV[2] == 'dump' then
  current = redis.call('DUMP', KEYS[1])
elseif kind == 'string' then
  current = redis.call('GET', KEYS[1])
end
if current == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
";

#[derive(Clone)]
pub struct RedisStore {
    url: String,
    connection: Connection,
}

/// A server's connection: the crate's manager, or the master a Sentinel names.
#[derive(Clone)]
enum Connection {
    Manager(ConnectionManager),
    Sentinel(sentinel::SentinelConnection),
}

impl redis::aio::ConnectionLike for Connection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a redis::Cmd) -> redis::RedisFuture<'a, Value> {
        match self {
            Connection::Manager(c) => c.req_packed_command(cmd),
            Connection::Sentinel(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> redis::RedisFuture<'a, Vec<Value>> {
        match self {
            Connection::Manager(c) => c.req_packed_commands(pipeline, offset, count),
            Connection::Sentinel(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Connection::Manager(c) => c.get_db(),
            Connection::Sentinel(c) => c.get_db(),
        }
    }
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("url", &self.url)
            .finish()
    }
}

impl RedisStore {
    /// Connects to `client_url` (the crate's form of `url`, which messages name) with `tls`.
    pub async fn connect(
        url: &str,
        client_url: &str,
        tls: &TlsOptions,
    ) -> Result<RedisStore, StoreError> {
        let redacted = redact(url);
        let error = |e: redis::RedisError| store_error(&redacted, &e);
        let client = tls_client(&redacted, client_url, tls)?;
        // The manager's own reconnect attempts are few and quick: the run's retries (with
        // backoff and jitter, see `run::faults`) decide how long a store may stay away.
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(CALL_TIMEOUT))
            .set_number_of_retries(1)
            .set_min_delay(std::time::Duration::from_millis(50))
            .set_max_delay(std::time::Duration::from_millis(500));
        let connection = client
            .get_connection_manager_with_config(config)
            .await
            .map_err(error)?;
        Ok(RedisStore {
            url: redacted,
            connection: Connection::Manager(connection),
        })
    }

    /// The store on the master a Sentinel names (`url` redacted).
    fn with_sentinel(url: String, connection: sentinel::SentinelConnection) -> RedisStore {
        RedisStore {
            url,
            connection: Connection::Sentinel(connection),
        }
    }

    fn error(&self, e: redis::RedisError) -> StoreError {
        store_error(&self.url, &e)
    }

    async fn pipeline(
        &self,
        pipe: &redis::Pipeline,
    ) -> Result<Vec<RedisResult<Value>>, StoreError> {
        let mut connection = self.connection.clone();
        pipe.query_async(&mut connection)
            .await
            .map_err(|e| self.error(e))
    }

    async fn info(&self, section: &str) -> Result<HashMap<String, String>, StoreError> {
        let mut connection = self.connection.clone();
        let text: String = redis::cmd("INFO")
            .arg(section)
            .query_async(&mut connection)
            .await
            .map_err(|e| self.error(e))?;
        Ok(parse_info(&text))
    }
}

impl CacheStore for RedisStore {
    async fn contains(&self, keys: &[&str]) -> Result<Vec<bool>, StoreError> {
        let mut pipe = redis::pipe();
        pipe.ignore_errors();
        for key in keys {
            pipe.cmd("EXISTS").arg(*key);
        }
        let replies = self.pipeline(&pipe).await?;
        Ok(replies.into_iter().map(exists).collect())
    }

    /// `GET` + `PTTL` per key, then `DUMP` + `PTTL` for the keys of other types. (One `MGET`
    /// for the batch's values plus a `PTTL` per key halves the replica's commands, but measured
    /// slower end to end, with 100 B and 2 KiB values alike: docs/benchmarks.md.)
    async fn fetch(&self, keys: &[&str]) -> Result<Vec<Option<Fetched>>, StoreError> {
        let mut pipe = redis::Pipeline::with_capacity(keys.len() * 2);
        pipe.ignore_errors();
        for key in keys {
            push_fetch(&mut pipe, key);
        }
        let (mut fetched, others) = fetched(self.pipeline(&pipe).await?);
        if !others.is_empty() {
            let mut pipe = redis::Pipeline::with_capacity(others.len() * 2);
            pipe.ignore_errors();
            for &i in &others {
                push_dump(&mut pipe, keys[i]);
            }
            let dumped = dumped(self.pipeline(&pipe).await?);
            for (i, value) in others.into_iter().zip(dumped) {
                fetched[i] = value;
            }
        }
        Ok(fetched)
    }

    async fn write(
        &self,
        items: &[WriteItem<'_>],
        mode: WriteMode,
    ) -> Result<Vec<WriteOutcome>, StoreError> {
        // Each command's buffers are sized before its arguments go in: `pipe.cmd(…).arg(…)`
        // grows two vectors per command from empty, and allocation was 15-20% of the warmer's
        // time (profile in docs/benchmarks.md). The
        // crate still copies each value twice (into the command, then into the packed
        // pipeline): redis 1.8's `req_packed_commands` takes a `Pipeline`, not bytes, so the
        // RESP cannot be encoded here once and handed over (see docs/DESIGN-NOTES.md).
        let mut pipe = redis::Pipeline::with_capacity(items.len());
        pipe.ignore_errors();
        for item in items {
            push_write(&mut pipe, item, mode);
        }
        let replies = self.pipeline(&pipe).await?;
        if let Connection::Sentinel(connection) = &self.connection {
            connection
                .confirm_write()
                .await
                .map_err(|e| self.error(e))?;
        }
        Ok(replies.into_iter().map(write_outcome).collect())
    }

    /// `GET` each key (`DUMP` for a key of another type), compare its value's hash, then run
    /// [`DELETE_IF_EQUAL`] with the value read, pipelined by its SHA (`EVALSHA`); a server that
    /// does not know the script yet gets it through `Script::invoke_async`, which loads it.
    async fn delete_if_unchanged(
        &self,
        items: &[(&str, &str)],
    ) -> Result<Vec<UndoOutcome>, StoreError> {
        let keys: Vec<&str> = items.iter().map(|(key, _)| *key).collect();
        let mut pipe = redis::pipe();
        pipe.ignore_errors();
        for key in &keys {
            pipe.cmd("GET").arg(*key);
        }
        let (mut outcomes, mut candidates, others) =
            undo_candidates(self.pipeline(&pipe).await?, items);
        if !others.is_empty() {
            let mut pipe = redis::pipe();
            pipe.ignore_errors();
            for &i in &others {
                pipe.cmd("DUMP").arg(keys[i]);
            }
            let dumps = self.pipeline(&pipe).await?;
            dump_candidates(dumps, &others, items, &mut outcomes, &mut candidates);
        }
        if candidates.is_empty() {
            return Ok(outcomes);
        }
        let script = redis::Script::new(DELETE_IF_EQUAL);
        let mut pipe = redis::pipe();
        pipe.ignore_errors();
        for candidate in &candidates {
            push_delete_if_equal(&mut pipe, &script, items[candidate.index].0, candidate);
        }
        let replies = self.pipeline(&pipe).await?;
        let mut connection = self.connection.clone();
        settle_undo(
            &mut outcomes,
            &candidates,
            replies,
            items,
            &script,
            &mut connection,
        )
        .await
        .map_err(|e| self.error(e))?;
        Ok(outcomes)
    }

    /// `evicted_keys` from INFO stats.
    async fn evictions(&self) -> Result<Option<u64>, StoreError> {
        let info = self.info("stats").await?;
        Ok(Some(counter(&info, "evicted_keys")))
    }

    /// `maxmemory` from INFO (readable where CONFIG is disabled); none when unlimited.
    async fn capacity(&self) -> Result<Option<u64>, StoreError> {
        let info = self.info("memory").await?;
        Ok(Some(counter(&info, "maxmemory")).filter(|&bytes| bytes > 0))
    }

    /// `used_memory` from INFO: what the server holds now, in bytes.
    async fn used_memory(&self) -> Result<Option<u64>, StoreError> {
        let info = self.info("memory").await?;
        Ok(Some(
            info.get("used_memory")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0),
        ))
    }

    /// One `PING`, for the store's latency as a client sees it.
    async fn ping(&self) -> Result<bool, StoreError> {
        let mut connection = self.connection.clone();
        redis::cmd("PING")
            .query_async::<()>(&mut connection)
            .await
            .map_err(|e| self.error(e))?;
        Ok(true)
    }

    async fn hit_counters(&self) -> Result<Option<HitCounters>, StoreError> {
        Ok(Some(hit_counters(&self.info("stats").await?)))
    }

    /// `fetch` reads each key with `GET` and `PTTL`, and both count as a lookup.
    fn lookups_per_fetch(&self) -> u64 {
        2
    }
}

// The commands of each operation and how their replies are read, apart from the store, so
// that another connection (a cluster's) can send the same commands and read them the same way.

/// EXISTS's reply: whether the key is live.
fn exists(reply: RedisResult<Value>) -> bool {
    matches!(reply, Ok(Value::Int(n)) if n > 0)
}

/// The replies of `GET key` and `PTTL key` for each key in turn: the value and its remaining
/// TTL, where live; and the indexes of the keys that hold another type than a string (GET
/// answered WRONGTYPE), to read with [`push_dump`].
fn fetched(replies: Vec<RedisResult<Value>>) -> (Vec<Option<Fetched>>, Vec<usize>) {
    let mut fetched = Vec::with_capacity(replies.len() / 2);
    let mut others = Vec::new();
    let mut replies = replies.into_iter();
    while let (Some(value), Some(pttl)) = (replies.next(), replies.next()) {
        fetched.push(match (value, pttl) {
            (Ok(Value::BulkString(value)), Ok(Value::Int(pttl))) if pttl != -2 => Some(Fetched {
                value,
                ttl: duration_from_millis(pttl),
                flags: 0,
                encoding: ValueEncoding::Raw,
            }),
            (Err(e), _) if e.code() == Some("WRONGTYPE") => {
                others.push(fetched.len());
                None
            }
            _ => None,
        });
    }
    (fetched, others)
}

/// The replies of `DUMP key` and `PTTL key` for each key in turn: the serialized value and its
/// remaining TTL, where live.
fn dumped(replies: Vec<RedisResult<Value>>) -> Vec<Option<Fetched>> {
    let mut dumped = Vec::with_capacity(replies.len() / 2);
    let mut replies = replies.into_iter();
    while let (Some(value), Some(pttl)) = (replies.next(), replies.next()) {
        dumped.push(match (value, pttl) {
            (Ok(Value::BulkString(value)), Ok(Value::Int(pttl))) if pttl != -2 => Some(Fetched {
                value,
                ttl: duration_from_millis(pttl),
                flags: 0,
                encoding: ValueEncoding::RedisDump,
            }),
            _ => None,
        });
    }
    dumped
}

/// Adds `DUMP key` and `PTTL key` to `pipe`.
fn push_dump(pipe: &mut Pipeline, key: &str) {
    for name in ["DUMP", "PTTL"] {
        let mut command = redis::Cmd::with_capacity(2, key.len() + 4);
        command.arg(name).arg(key);
        pipe.add_command(command);
    }
}

/// Adds `GET key` and `PTTL key` to `pipe`, their buffers sized up front (as in `push_write`).
fn push_fetch(pipe: &mut Pipeline, key: &str) {
    for name in ["GET", "PTTL"] {
        let mut command = redis::Cmd::with_capacity(2, key.len() + 4);
        command.arg(name).arg(key);
        pipe.add_command(command);
    }
}

/// Adds `SET key value [NX] PX ttl` (a string) or `RESTORE key ttl payload [REPLACE]` (a
/// dump) to `pipe`, its buffers sized before the arguments go in (see `RedisStore::write`).
fn push_write(pipe: &mut Pipeline, item: &WriteItem<'_>, mode: WriteMode) {
    let millis = u64::try_from(item.ttl.as_millis())
        .unwrap_or(u64::MAX)
        .max(1);
    let mut command = redis::Cmd::with_capacity(6, item.key.len() + item.value.len() + 30);
    match item.encoding {
        ValueEncoding::Raw => {
            command.arg("SET").arg(item.key).arg(item.value);
            if mode == WriteMode::Add {
                command.arg("NX");
            }
            command.arg("PX").arg(millis);
        }
        ValueEncoding::RedisDump => {
            command
                .arg("RESTORE")
                .arg(item.key)
                .arg(millis)
                .arg(item.value);
            if mode == WriteMode::Overwrite {
                command.arg("REPLACE");
            }
        }
    }
    pipe.add_command(command);
}

fn write_outcome(reply: RedisResult<Value>) -> WriteOutcome {
    match reply {
        Ok(Value::Okay) => WriteOutcome::Written,
        Ok(Value::SimpleString(s)) if s == "OK" => WriteOutcome::Written,
        Ok(Value::Nil) => WriteOutcome::AlreadyPresent,
        // RESTORE without REPLACE on a key that exists.
        Err(e) if e.code() == Some("BUSYKEY") => WriteOutcome::AlreadyPresent,
        Ok(other) => WriteOutcome::Refused(format!("unexpected reply {other:?}")),
        Err(e) => WriteOutcome::Refused(e.to_string()),
    }
}

/// A key undo may delete: it still holds the value the run wrote.
#[derive(Debug)]
struct UndoCandidate {
    /// The item's index.
    index: usize,
    /// The value read: a string's bytes, or a `DUMP` payload.
    value: Vec<u8>,
    dump: bool,
}

/// Undo's first step, from the replies of `GET key` for each `(key, hash)`: each item's
/// outcome, the items to compare-and-delete (those that still hold a string with the hash the
/// run wrote; their outcome is settled by [`settle_undo`]), and the indexes of the keys of
/// another type, to compare by their `DUMP` ([`dump_candidates`]).
fn undo_candidates(
    values: Vec<RedisResult<Value>>,
    items: &[(&str, &str)],
) -> (Vec<UndoOutcome>, Vec<UndoCandidate>, Vec<usize>) {
    let mut outcomes = vec![UndoOutcome::Missing; items.len()];
    let mut candidates = Vec::new();
    let mut others = Vec::new();
    for (i, (value, (_, hash))) in values.into_iter().zip(items).enumerate() {
        match value {
            Ok(Value::BulkString(value)) if value_hash(&value) == *hash => {
                candidates.push(UndoCandidate {
                    index: i,
                    value,
                    dump: false,
                });
            }
            Ok(Value::Nil) => {}
            Err(e) if e.code() == Some("WRONGTYPE") => others.push(i),
            _ => outcomes[i] = UndoOutcome::Changed,
        }
    }
    (outcomes, candidates, others)
}

/// Undo's first step for keys of another type than a string, from the replies of `DUMP key`
/// for the items at `others`. A restored value dumps as the payload the run wrote when the
/// target serializes it as the source did (same Redis version and encoding settings), and a
/// large hash or set as one of the same type and size ([`dump::comparable`], as the run
/// hashed it): otherwise it is kept, the safe side.
fn dump_candidates(
    dumps: Vec<RedisResult<Value>>,
    others: &[usize],
    items: &[(&str, &str)],
    outcomes: &mut [UndoOutcome],
    candidates: &mut Vec<UndoCandidate>,
) {
    for (&i, dump) in others.iter().zip(dumps) {
        match dump {
            Ok(Value::BulkString(value)) if value_hash(&dump::comparable(&value)) == items[i].1 => {
                candidates.push(UndoCandidate {
                    index: i,
                    value,
                    dump: true,
                });
            }
            Ok(Value::Nil) => outcomes[i] = UndoOutcome::Missing,
            _ => outcomes[i] = UndoOutcome::Changed,
        }
    }
}

/// `EVALSHA` of [`DELETE_IF_EQUAL`] on `key` with the value read.
fn push_delete_if_equal(
    pipe: &mut Pipeline,
    script: &redis::Script,
    key: &str,
    candidate: &UndoCandidate,
) {
    pipe.cmd("EVALSHA")
        .arg(script.get_hash())
        .arg(1)
        .arg(key)
        .arg(&candidate.value)
        .arg(if candidate.dump { "dump" } else { "get" });
}

/// Undo's second step, from the replies of [`DELETE_IF_EQUAL`] for each candidate: a server
/// that does not know the script yet (`NOSCRIPT`) gets it through `Script::invoke_async` on
/// `connection`, which loads it.
async fn settle_undo(
    outcomes: &mut [UndoOutcome],
    candidates: &[UndoCandidate],
    replies: Vec<RedisResult<Value>>,
    items: &[(&str, &str)],
    script: &redis::Script,
    connection: &mut impl redis::aio::ConnectionLike,
) -> RedisResult<()> {
    for (candidate, reply) in candidates.iter().zip(replies) {
        let i = candidate.index;
        let reply = match reply {
            Ok(reply) => reply,
            Err(e) if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) => {
                script
                    .key(items[i].0)
                    .arg(candidate.value.as_slice())
                    .arg(if candidate.dump { "dump" } else { "get" })
                    .invoke_async(connection)
                    .await?
            }
            Err(e) => return Err(e),
        };
        outcomes[i] = match reply {
            Value::Int(1) => UndoOutcome::Deleted,
            Value::Int(0) => UndoOutcome::Changed,
            _ => UndoOutcome::Missing,
        };
    }
    Ok(())
}

/// INFO's `name:value` lines.
fn parse_info(text: &str) -> HashMap<String, String> {
    text.lines()
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.to_owned(), value.trim().to_owned()))
        .collect()
}

/// A numeric INFO field; 0 when absent.
fn counter(info: &HashMap<String, String>, name: &str) -> u64 {
    info.get(name).and_then(|v| v.parse().ok()).unwrap_or(0)
}

fn hit_counters(info: &HashMap<String, String>) -> HitCounters {
    HitCounters {
        hits: counter(info, "keyspace_hits"),
        misses: counter(info, "keyspace_misses"),
    }
}

/// The crate's client for `client_url` with the certificates `tls` names (read now, so a
/// missing file fails the connect, naming it); `url` (redacted) is for messages.
fn tls_client(url: &str, client_url: &str, tls: &TlsOptions) -> Result<redis::Client, StoreError> {
    let refused = |message: String| StoreError {
        kind: "redis",
        url: url.to_owned(),
        message,
        transient: false,
    };
    if client_url.starts_with("rediss://") {
        install_crypto_provider();
        tls.warn_if_insecure(url);
    }
    let client = match tls.redis_certificates().map_err(refused)? {
        Some(certificates) => redis::Client::build_with_tls(client_url, certificates),
        None => redis::Client::open(client_url),
    };
    client.map_err(|e| store_error(url, &e))
}

/// A Redis failure as a store error; transient where the crate says a retry may succeed (a
/// dropped or refused connection, a timeout, `LOADING`, `BUSY`, `TRYAGAIN`), but never a
/// refused password or a TLS handshake refused.
pub(super) fn store_error(url: &str, e: &redis::RedisError) -> StoreError {
    let transient = e.is_timeout()
        || (e.kind() != redis::ErrorKind::AuthenticationFailed
            && !matches!(e.retry_method(), redis::RetryMethod::NoRetry)
            && !super::tls::is_tls_refusal(e));
    StoreError {
        kind: "redis",
        url: url.to_owned(),
        message: super::cause_chain(e),
        transient,
    }
}
