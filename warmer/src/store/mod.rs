//! The stores the warmer reads from and writes to, one folder per kind.
//!
//! Every store can be a target (write, probe) and a source (read a value and its remaining
//! TTL). Writes use add semantics unless `overwrite` is asked for: a live entry is never
//! replaced. All operations work on batches, pipelined on the wire.

mod memcached;
mod redis;
mod sqlite;
pub mod url;

use std::time::Duration;

use schemas::report::HitCounters;

pub use self::memcached::Hashing;
pub use self::url::{StoreUrl, UrlError, redact};

/// How long to wait for a TCP connection to a store server.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one call (a whole pipelined batch) may wait for its answer. The clients' own
/// defaults (500 ms for redis, 1 s for memcached) would fail a whole target on one slow batch
/// of large values; the run's deadline bounds every call anyway.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(30);

pub use schemas::keys::{MEMCACHED_MAX_KEY_BYTES, SQL_MAX_KEY_CHARS};

/// The kind of a store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreKind {
    Redis,
    Memcached,
    Sqlite,
}

/// Whether a store is opened to be read or written: a source is never created when missing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Source,
    Target,
}

/// What a value's bytes are, and so how a store writes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ValueEncoding {
    /// The bytes the application's client stored and reads back: a memcached item, a Redis
    /// string, a SQL cache row's value.
    #[default]
    Raw,
    /// A Redis `DUMP` payload: a value of any Redis type with its RDB version and checksum,
    /// written back with `RESTORE`. Only a Redis server can read it.
    RedisDump,
}

impl ValueEncoding {
    /// The name snapshots and messages use.
    pub fn name(self) -> &'static str {
        match self {
            ValueEncoding::Raw => "raw",
            ValueEncoding::RedisDump => "redis-dump",
        }
    }

    /// The encoding called `name` (see [`ValueEncoding::name`]).
    pub fn from_name(name: &str) -> Option<ValueEncoding> {
        [ValueEncoding::Raw, ValueEncoding::RedisDump]
            .into_iter()
            .find(|encoding| encoding.name() == name)
    }
}

/// A value read from a source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetched {
    pub value: Vec<u8>,
    /// Remaining time to live; `None` when the entry does not expire.
    pub ttl: Option<Duration>,
    /// memcached's client flags: how the application's client decodes the value (pickled,
    /// an int, compressed, Marshal'd…). 0 from stores that have none.
    pub flags: u32,
    pub encoding: ValueEncoding,
}

/// One write.
#[derive(Debug, Clone, Copy)]
pub struct WriteItem<'a> {
    pub key: &'a str,
    pub value: &'a [u8],
    pub ttl: Duration,
    /// memcached's client flags, written with the value (other stores have none to keep).
    pub flags: u32,
    pub encoding: ValueEncoding,
}

/// What became of one write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteOutcome {
    Written,
    /// Add semantics: a live entry was there, and kept.
    AlreadyPresent,
    /// The store refused this one write (the value too large, say); the store is still usable.
    Refused(String),
}

/// What became of one compare-and-delete (`warmer undo`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UndoOutcome {
    /// The key still held the value the run wrote, and was deleted.
    Deleted,
    /// The key holds another value now (rewritten since): kept.
    Changed,
    /// The key is gone already (expired, evicted or deleted).
    Missing,
}

/// The hash a run records of each value it writes, and `warmer undo` compares: the first 16
/// bytes of the value's SHA-256, in hex. 128 bits make a collision between a value the run
/// wrote and the value found later practically impossible, at half the size of the full hash.
pub fn value_hash(value: &[u8]) -> String {
    item_hash(value, 0)
}

/// The hash of a value written with memcached client `flags`: [`value_hash`] when the flags are
/// 0 (so written-keys logs from before flags were kept still compare), else the hash of the
/// value followed by the flags (4 bytes, big-endian): the same bytes under other flags are
/// another value to the application.
pub fn item_hash(value: &[u8], flags: u32) -> String {
    let mut text = String::with_capacity(32);
    push_item_hash(&mut text, value, flags);
    text
}

/// Appends [`item_hash`] of `value` and `flags` to `text` (the warm hashes every value it
/// sends: no allocation per byte).
pub fn push_item_hash(text: &mut String, value: &[u8], flags: u32) {
    use sha2::Digest;
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut hasher = sha2::Sha256::new();
    hasher.update(value);
    if flags != 0 {
        hasher.update(flags.to_be_bytes());
    }
    for &b in &hasher.finalize()[..16] {
        text.push(HEX[usize::from(b >> 4)] as char);
        text.push(HEX[usize::from(b & 15)] as char);
    }
}

/// A store that failed as a whole: unreachable, or a broken connection.
#[derive(Debug, thiserror::Error)]
#[error("{kind} store `{url}`: {message}")]
pub struct StoreError {
    pub kind: &'static str,
    pub url: String,
    pub message: String,
    /// Whether the same call may succeed if made again (a dropped connection, a timeout, a
    /// server still loading): the run retries those with backoff. A refused password or a
    /// protocol error is not retried.
    pub transient: bool,
}

/// Key limits that depend on configuration rather than the store kind.
#[derive(Debug, Clone, Copy)]
pub struct KeyLimits {
    /// The longest Redis key the warmer will write, in bytes.
    pub redis_max_key_bytes: usize,
}

impl Default for KeyLimits {
    fn default() -> Self {
        KeyLimits {
            redis_max_key_bytes: schemas::keys::REDIS_DEFAULT_MAX_KEY_BYTES,
        }
    }
}

/// A connected store.
#[derive(Debug)]
pub enum Store {
    Redis(redis::RedisStore),
    RedisCluster(redis::RedisClusterStore),
    Memcached(memcached::MemcachedStore),
    Sqlite(sqlite::SqliteStore),
}

impl Store {
    /// Connects to the store at `url`. A snapshot file is not a store: see `source`.
    pub async fn connect(url: &StoreUrl, role: Role) -> Result<Store, StoreError> {
        match url {
            StoreUrl::Redis { url } => redis::RedisStore::connect(url).await.map(Store::Redis),
            StoreUrl::RedisCluster { url, nodes } => redis::RedisClusterStore::connect(url, nodes)
                .await
                .map(Store::RedisCluster),
            StoreUrl::Memcached { servers, hashing } => {
                memcached::MemcachedStore::connect(servers, *hashing)
                    .await
                    .map(Store::Memcached)
            }
            StoreUrl::Sqlite { path, table } => sqlite::SqliteStore::open(path, table, role)
                .await
                .map(Store::Sqlite),
            StoreUrl::Snapshot { path } => Err(StoreError {
                kind: "snapshot",
                url: path.display().to_string(),
                message: "a snapshot file can be a source, not a target".into(),
                transient: false,
            }),
        }
    }

    pub fn kind(&self) -> StoreKind {
        match self {
            // A cluster takes the keys a server takes: the same rules.
            Store::Redis(_) | Store::RedisCluster(_) => StoreKind::Redis,
            Store::Memcached(_) => StoreKind::Memcached,
            Store::Sqlite(_) => StoreKind::Sqlite,
        }
    }

    /// Whether `key` may be written to a store of this kind; the reason when it may not.
    pub fn check_key(&self, key: &str, limits: &KeyLimits) -> Result<(), String> {
        check_key(self.kind(), key, limits)
    }

    /// Which of `keys` hold a live entry.
    pub async fn contains(&self, keys: &[&str]) -> Result<Vec<bool>, StoreError> {
        match self {
            Store::Redis(store) => store.contains(keys).await,
            Store::RedisCluster(store) => store.contains(keys).await,
            Store::Memcached(store) => store.contains(keys).await,
            Store::Sqlite(store) => store.contains(keys).await,
        }
    }

    /// The live value and remaining TTL of each of `keys`.
    pub async fn fetch(&self, keys: &[&str]) -> Result<Vec<Option<Fetched>>, StoreError> {
        match self {
            Store::Redis(store) => store.fetch(keys).await,
            Store::RedisCluster(store) => store.fetch(keys).await,
            Store::Memcached(store) => store.fetch(keys).await,
            Store::Sqlite(store) => store.fetch(keys).await,
        }
    }

    /// Writes `items`: add semantics, or replace when `overwrite`. A Redis `DUMP` payload is
    /// refused by every store but Redis (only Redis can read it).
    pub async fn write(
        &self,
        items: &[WriteItem<'_>],
        overwrite: bool,
    ) -> Result<Vec<WriteOutcome>, StoreError> {
        if self.kind() != StoreKind::Redis
            && items
                .iter()
                .any(|item| item.encoding == ValueEncoding::RedisDump)
        {
            let (dumps, raw): (Vec<_>, Vec<_>) =
                (0..items.len()).partition(|&i| items[i].encoding == ValueEncoding::RedisDump);
            let raw_items: Vec<WriteItem<'_>> = raw.iter().map(|&i| items[i]).collect();
            let mut outcomes = vec![WriteOutcome::Written; items.len()];
            for i in dumps {
                outcomes[i] = WriteOutcome::Refused(
                    "a Redis DUMP payload (a hash, set, list, sorted set or stream) can only be \
                     restored into Redis"
                        .to_owned(),
                );
            }
            let written = Box::pin(self.write(&raw_items, overwrite)).await?;
            for (i, outcome) in raw.into_iter().zip(written) {
                outcomes[i] = outcome;
            }
            return Ok(outcomes);
        }
        match self {
            Store::Redis(store) => store.write(items, overwrite).await,
            Store::RedisCluster(store) => store.write(items, overwrite).await,
            Store::Memcached(store) => store.write(items, overwrite).await,
            Store::Sqlite(store) => store.write(items, overwrite).await,
        }
    }

    /// Deletes each `(key, value hash)` only where the key still holds a value with that hash,
    /// atomically per key: the value is read, its hash compared, and the delete is made
    /// conditional on the exact value read (Redis: a Lua compare-and-delete; memcached: the
    /// item's CAS; SQLite: `DELETE … WHERE value = ?`), so a write that lands in between is
    /// never deleted.
    pub async fn delete_if_unchanged(
        &self,
        items: &[(&str, &str)],
    ) -> Result<Vec<UndoOutcome>, StoreError> {
        match self {
            Store::Redis(store) => store.delete_if_unchanged(items).await,
            Store::RedisCluster(store) => store.delete_if_unchanged(items).await,
            Store::Memcached(store) => store.delete_if_unchanged(items).await,
            Store::Sqlite(store) => store.delete_if_unchanged(items).await,
        }
    }

    /// The store's cumulative count of evicted items, where it keeps one.
    pub async fn evictions(&self) -> Result<Option<u64>, StoreError> {
        match self {
            Store::Redis(store) => store.evictions().await.map(Some),
            Store::RedisCluster(store) => store.evictions().await.map(Some),
            Store::Memcached(store) => store.evictions().await.map(Some),
            Store::Sqlite(_) => Ok(None),
        }
    }

    /// The store's capacity in bytes, when it has a configured one.
    pub async fn capacity(&self) -> Result<Option<u64>, StoreError> {
        match self {
            Store::Redis(store) => store.capacity().await,
            Store::RedisCluster(store) => store.capacity().await,
            Store::Memcached(store) => store.capacity().await,
            Store::Sqlite(_) => Ok(None),
        }
    }

    /// The bytes the store holds now, where it says (Redis `used_memory`, memcached `bytes`).
    pub async fn used_memory(&self) -> Result<Option<u64>, StoreError> {
        match self {
            Store::Redis(store) => store.used_memory().await.map(Some),
            Store::RedisCluster(store) => store.used_memory().await.map(Some),
            Store::Memcached(store) => store.used_memory().await.map(Some),
            Store::Sqlite(_) => Ok(None),
        }
    }

    /// One round trip that does no work (Redis `PING`, memcached `mn`), to measure the
    /// store's latency; false where the store has none to measure (SQLite is in-process).
    pub async fn ping(&self) -> Result<bool, StoreError> {
        match self {
            Store::Redis(store) => store.ping().await.map(|()| true),
            Store::RedisCluster(store) => store.ping().await.map(|()| true),
            Store::Memcached(store) => store.ping().await.map(|()| true),
            Store::Sqlite(_) => Ok(false),
        }
    }

    /// The store's cumulative read counters, where it keeps them.
    pub async fn hit_counters(&self) -> Result<Option<HitCounters>, StoreError> {
        match self {
            Store::Redis(store) => store.hit_counters().await.map(Some),
            Store::RedisCluster(store) => store.hit_counters().await.map(Some),
            Store::Memcached(store) => store.hit_counters().await.map(Some),
            Store::Sqlite(_) => Ok(None),
        }
    }
}

/// The key rules of each store kind (see DESIGN.md, store semantics); the analyzer leaves out
/// keys by the same rules (`schemas::keys`).
pub fn check_key(kind: StoreKind, key: &str, limits: &KeyLimits) -> Result<(), String> {
    let kind = match kind {
        StoreKind::Redis => schemas::keys::StoreKind::Redis,
        StoreKind::Memcached => schemas::keys::StoreKind::Memcached,
        StoreKind::Sqlite => schemas::keys::StoreKind::Sql,
    };
    schemas::keys::check_key(kind, key, limits.redis_max_key_bytes)
}

/// A remaining TTL in milliseconds as stores report it; negative values mean none.
pub fn duration_from_millis(millis: i64) -> Option<Duration> {
    u64::try_from(millis).ok().map(Duration::from_millis)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn value_hash_is_the_first_half_of_sha256_in_hex() {
        assert_eq!(
            value_hash(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223" // sha256("abc"), first 16 bytes
        );
        assert_eq!(item_hash(b"abc", 0), value_hash(b"abc"));
        assert_ne!(item_hash(b"abc", 1), value_hash(b"abc"));
        assert_ne!(item_hash(b"abc", 1), item_hash(b"abc", 2));
    }

    #[test]
    fn key_rules_per_store_kind() {
        let limits = KeyLimits {
            redis_max_key_bytes: 8,
        };
        let long_250 = "k".repeat(250);
        let long_251 = "k".repeat(251);
        assert!(check_key(StoreKind::Memcached, &long_250, &limits).is_ok());
        assert!(check_key(StoreKind::Memcached, &long_251, &limits).is_err());
        assert!(check_key(StoreKind::Memcached, "a b", &limits).is_err());
        assert!(check_key(StoreKind::Memcached, "a\u{7f}", &limits).is_err());
        assert!(check_key(StoreKind::Redis, "a b", &limits).is_ok());
        assert!(check_key(StoreKind::Redis, "123456789", &limits).is_err());
        assert!(check_key(StoreKind::Sqlite, &"é".repeat(255), &limits).is_ok());
        assert!(check_key(StoreKind::Sqlite, &"é".repeat(256), &limits).is_err());
        for kind in [StoreKind::Redis, StoreKind::Memcached, StoreKind::Sqlite] {
            assert!(check_key(kind, "", &limits).is_err());
        }
    }
}
