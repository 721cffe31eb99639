//! The stores the warmer reads from and writes to: one contract, one folder per store, and
//! the one list of them (`stores!` below).
//!
//! Every store can be a target (write, probe) and a source (read a value and its remaining
//! TTL). Writes use add semantics unless [`WriteMode::Overwrite`] is asked for: a live entry is
//! never replaced. All operations work on batches, pipelined on the wire.
//!
//! A store is two types in its folder: an [`Address`] (its URL schemes, how its URL is parsed,
//! how it connects) and a [`CacheStore`] (the operations; what the store cannot tell, such as
//! its capacity or hit counters, keeps the trait's default: none). Adding a store is adding its
//! folder and one line to the `stores!` list.

mod memcached;
mod redis;
pub mod secret;
mod sql;
mod tls;
pub mod url;

use std::future::Future;
use std::time::Duration;

use schemas::report::HitCounters;

pub use self::memcached::{Hashing, with_default_hashing};
pub use self::url::{UrlError, redact};
/// What a store's keys and values follow (key rules, what a value means): the one vocabulary
/// for a store's kind, shared with the analyzer and the loader protocol.
pub use schemas::keys::StoreKind;

/// How long to wait for a TCP connection to a store server.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one call (a whole pipelined batch) may wait for its answer. The clients' own
/// defaults (500 ms for redis, 1 s for memcached) would fail a whole target on one slow batch
/// of large values; the run's deadline bounds every call anyway.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(30);

pub use schemas::keys::{MEMCACHED_MAX_KEY_BYTES, SQL_MAX_KEY_CHARS};

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

/// How a write treats a live entry under the same key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WriteMode {
    /// Never replace a live entry (Redis `SET NX`, memcached `ms` in add mode, SQL: insert or
    /// take over an expired row only).
    #[default]
    Add,
    /// Replace whatever is there (`--overwrite`).
    Overwrite,
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
    /// A new entry the store has no room for: a SQL cache at its entry limit (`max_entries`).
    /// Counted `skipped_budget`.
    NoRoom,
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

/// Appends the hash `warmer undo` compares for a value sent with `flags` in `encoding`:
/// [`item_hash`], of a `DUMP` payload's [comparable](comparable_dump) form.
pub fn push_entry_hash(text: &mut String, value: &[u8], flags: u32, encoding: ValueEncoding) {
    match encoding {
        ValueEncoding::Raw => push_item_hash(text, value, flags),
        ValueEncoding::RedisDump => push_item_hash(text, &comparable_dump(value), flags),
    }
}

/// The bytes a Redis `DUMP` payload is compared by: a hash or set kept as a hash table
/// dumps in each server's hash order, so its type and member count stand for it.
pub fn comparable_dump(payload: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    redis::dump::comparable(payload)
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

/// `error`'s message followed by each cause that adds to it (`: `-separated), so that a TLS
/// failure says why (an unknown issuer, a name mismatch) and not only that the connect failed.
pub fn cause_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = cause.source();
    }
    message
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

/// One store's address: the URL schemes that select it, how its URL is parsed, and how it
/// connects.
pub trait Address: Sized {
    /// The URL prefixes that select this store (`redis://`); messages name the first.
    const SCHEMES: &'static [&'static str];
    /// The store's name in reports and messages (`redis-cluster`, `sqlite`).
    const NAME: &'static str;
    /// What its keys and values follow.
    const KIND: StoreKind;
    /// The connected store.
    type Store: CacheStore;

    /// Parses `text`, which starts with one of [`SCHEMES`](Self::SCHEMES).
    fn parse(text: &str) -> Result<Self, UrlError>;

    /// Connects; a source is never created when missing.
    fn connect(&self, role: Role) -> impl Future<Output = Result<Self::Store, StoreError>> + Send;
}

/// What a connected store does. Key rules follow the store's [`StoreKind`].
pub trait CacheStore: std::fmt::Debug + Send + Sync {
    /// Which of `keys` hold a live entry.
    fn contains(&self, keys: &[&str])
    -> impl Future<Output = Result<Vec<bool>, StoreError>> + Send;

    /// The live value and remaining TTL of each of `keys`.
    fn fetch(
        &self,
        keys: &[&str],
    ) -> impl Future<Output = Result<Vec<Option<Fetched>>, StoreError>> + Send;

    /// Writes `items` in `mode`.
    fn write(
        &self,
        items: &[WriteItem<'_>],
        mode: WriteMode,
    ) -> impl Future<Output = Result<Vec<WriteOutcome>, StoreError>> + Send;

    /// Deletes each `(key, value hash)` only where the key still holds a value with that hash,
    /// atomically per key: the value is read, its hash compared, and the delete is made
    /// conditional on the exact value read (Redis: a Lua compare-and-delete; memcached: the
    /// item's CAS; SQL: `DELETE … WHERE value = ?`), so a write that lands in between is never
    /// deleted.
    fn delete_if_unchanged(
        &self,
        items: &[(&str, &str)],
    ) -> impl Future<Output = Result<Vec<UndoOutcome>, StoreError>> + Send;

    /// The store's cumulative count of evicted items, where it keeps one.
    fn evictions(&self) -> impl Future<Output = Result<Option<u64>, StoreError>> + Send {
        async { Ok(None) }
    }

    /// The store's capacity in bytes, when it has a configured one.
    fn capacity(&self) -> impl Future<Output = Result<Option<u64>, StoreError>> + Send {
        async { Ok(None) }
    }

    /// The bytes the store holds now, where it says (Redis `used_memory`, memcached `bytes`).
    fn used_memory(&self) -> impl Future<Output = Result<Option<u64>, StoreError>> + Send {
        async { Ok(None) }
    }

    /// One round trip that does no work (Redis `PING`, memcached `mn`), to measure the
    /// store's latency; false where the store has none to measure.
    fn ping(&self) -> impl Future<Output = Result<bool, StoreError>> + Send {
        async { Ok(false) }
    }

    /// The store's cumulative read counters, where it keeps them.
    fn hit_counters(&self) -> impl Future<Output = Result<Option<HitCounters>, StoreError>> + Send {
        async { Ok(None) }
    }

    /// How far one key of [`fetch`](Self::fetch) moves the [`hit_counters`](Self::hit_counters)
    /// (Redis reads a key with `GET` and `PTTL`), so that the run's own read-backs can be told
    /// from live traffic.
    fn lookups_per_fetch(&self) -> u64 {
        1
    }

    /// Whether the store lives in the warmer's process (SQLite): no round trip to measure, and
    /// no live clients on its wire to protect.
    fn in_process(&self) -> bool {
        false
    }

    /// Whether the store has a limit on its number of entries (a SQL cache's `max_entries`),
    /// past which its writes come back [`WriteOutcome::NoRoom`].
    fn has_entry_limit(&self) -> bool {
        false
    }
}

/// The registered stores, one line each: `Variant(its::Address)`. Makes [`StoreUrl`] (parsed
/// by the store whose scheme the text starts with) and [`Store`] (a connected store, each
/// operation handed to its [`CacheStore`]).
macro_rules! stores {
    ($($(#[$doc:meta])* $variant:ident($address:ty),)+) => {
        /// A parsed store address.
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub enum StoreUrl {
            $($(#[$doc])* $variant($address),)+
        }

        /// A connected store.
        #[derive(Debug)]
        pub enum Store {
            $($(#[$doc])* $variant(<$address as Address>::Store),)+
        }

        impl StoreUrl {
            /// Parses a store address; a password its `password_file` or `password_env`
            /// names is read here (see [`secret`]).
            pub fn parse(text: &str) -> Result<StoreUrl, UrlError> {
                let resolved = secret::resolve(text)?;
                let text = resolved.as_ref();
                $(
                    if <$address as Address>::SCHEMES.iter().any(|s| text.starts_with(s)) {
                        return <$address as Address>::parse(text).map(StoreUrl::$variant);
                    }
                )+
                Err(UrlError {
                    url: redact(text),
                    reason: format!("expected {}", Self::expected()),
                })
            }

            /// Whether `text` starts with a registered store's scheme.
            pub fn has_scheme(text: &str) -> bool {
                let schemes: &[&[&str]] = &[$(<$address as Address>::SCHEMES),+];
                schemes.iter().flat_map(|s| s.iter()).any(|s| text.starts_with(s))
            }

            /// The schemes a store address may start with, for messages: each store's first.
            pub fn expected() -> String {
                let schemes = [$(<$address as Address>::SCHEMES[0]),+];
                schemes.join(", ")
            }

            /// What the store's keys and values follow.
            pub fn kind(&self) -> StoreKind {
                match self {
                    $(StoreUrl::$variant(_) => <$address as Address>::KIND,)+
                }
            }

            /// The store's name, as reports show it.
            pub fn name(&self) -> &'static str {
                match self {
                    $(StoreUrl::$variant(_) => <$address as Address>::NAME,)+
                }
            }
        }

        impl Store {
            /// Connects to the store at `url`.
            pub async fn connect(url: &StoreUrl, role: Role) -> Result<Store, StoreError> {
                match url {
                    $(StoreUrl::$variant(address) => {
                        address.connect(role).await.map(Store::$variant)
                    })+
                }
            }

            pub fn kind(&self) -> StoreKind {
                match self {
                    $(Store::$variant(_) => <$address as Address>::KIND,)+
                }
            }

            /// Whether `key` may be written to a store of this kind; the reason when it may not.
            pub fn check_key(&self, key: &str, limits: &KeyLimits) -> Result<(), String> {
                check_key(self.kind(), key, limits)
            }

            /// See [`CacheStore::in_process`].
            pub fn in_process(&self) -> bool {
                match self {
                    $(Store::$variant(store) => store.in_process(),)+
                }
            }

            /// See [`CacheStore::has_entry_limit`].
            pub fn has_entry_limit(&self) -> bool {
                match self {
                    $(Store::$variant(store) => store.has_entry_limit(),)+
                }
            }

            /// See [`CacheStore::contains`].
            pub async fn contains(&self, keys: &[&str]) -> Result<Vec<bool>, StoreError> {
                match self {
                    $(Store::$variant(store) => store.contains(keys).await,)+
                }
            }

            /// See [`CacheStore::fetch`].
            pub async fn fetch(&self, keys: &[&str]) -> Result<Vec<Option<Fetched>>, StoreError> {
                match self {
                    $(Store::$variant(store) => store.fetch(keys).await,)+
                }
            }

            /// See [`CacheStore::write`]. A Redis `DUMP` payload is refused by every store
            /// but Redis (only Redis can read it).
            pub async fn write(
                &self,
                items: &[WriteItem<'_>],
                mode: WriteMode,
            ) -> Result<Vec<WriteOutcome>, StoreError> {
                if self.kind() != StoreKind::Redis
                    && items.iter().any(|item| item.encoding == ValueEncoding::RedisDump)
                {
                    let (dumps, raw): (Vec<_>, Vec<_>) = (0..items.len())
                        .partition(|&i| items[i].encoding == ValueEncoding::RedisDump);
                    let raw_items: Vec<WriteItem<'_>> = raw.iter().map(|&i| items[i]).collect();
                    let mut outcomes = vec![WriteOutcome::Written; items.len()];
                    for i in dumps {
                        outcomes[i] = WriteOutcome::Refused(
                            "a Redis DUMP payload (a hash, set, list, sorted set or stream) \
                             can only be restored into Redis"
                                .to_owned(),
                        );
                    }
                    let written = Box::pin(self.write(&raw_items, mode)).await?;
                    for (i, outcome) in raw.into_iter().zip(written) {
                        outcomes[i] = outcome;
                    }
                    return Ok(outcomes);
                }
                match self {
                    $(Store::$variant(store) => store.write(items, mode).await,)+
                }
            }

            /// See [`CacheStore::delete_if_unchanged`].
            pub async fn delete_if_unchanged(
                &self,
                items: &[(&str, &str)],
            ) -> Result<Vec<UndoOutcome>, StoreError> {
                match self {
                    $(Store::$variant(store) => store.delete_if_unchanged(items).await,)+
                }
            }

            /// See [`CacheStore::evictions`].
            pub async fn evictions(&self) -> Result<Option<u64>, StoreError> {
                match self {
                    $(Store::$variant(store) => store.evictions().await,)+
                }
            }

            /// See [`CacheStore::capacity`].
            pub async fn capacity(&self) -> Result<Option<u64>, StoreError> {
                match self {
                    $(Store::$variant(store) => store.capacity().await,)+
                }
            }

            /// See [`CacheStore::used_memory`].
            pub async fn used_memory(&self) -> Result<Option<u64>, StoreError> {
                match self {
                    $(Store::$variant(store) => store.used_memory().await,)+
                }
            }

            /// See [`CacheStore::ping`].
            pub async fn ping(&self) -> Result<bool, StoreError> {
                match self {
                    $(Store::$variant(store) => store.ping().await,)+
                }
            }

            /// See [`CacheStore::hit_counters`].
            pub async fn hit_counters(&self) -> Result<Option<HitCounters>, StoreError> {
                match self {
                    $(Store::$variant(store) => store.hit_counters().await,)+
                }
            }

            /// See [`CacheStore::lookups_per_fetch`].
            pub fn lookups_per_fetch(&self) -> u64 {
                match self {
                    $(Store::$variant(store) => store.lookups_per_fetch(),)+
                }
            }
        }
    };
}

stores! {
    /// A Redis server (`redis://`, `rediss://`, `redis+unix://`).
    Redis(redis::RedisUrl),
    /// A Redis Cluster (`redis+cluster://`, `rediss+cluster://`).
    RedisCluster(redis::ClusterUrl),
    /// The master a Redis Sentinel names (`redis[s]+sentinel://`).
    RedisSentinel(redis::SentinelUrl),
    /// One or more memcached servers (`memcached://`, `memcached+tls://`).
    Memcached(memcached::MemcachedUrl),
    /// A Django DatabaseCache table in an SQLite file (`sqlite://`).
    Sqlite(sql::SqliteUrl),
    /// A Django DatabaseCache table in PostgreSQL (`postgres://`).
    Postgres(sql::PostgresUrl),
}

/// The key rules of each store kind (see DESIGN.md, store semantics); the analyzer leaves out
/// keys by the same rules (`schemas::keys`).
pub fn check_key(kind: StoreKind, key: &str, limits: &KeyLimits) -> Result<(), String> {
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
    fn parses_every_kind() {
        assert_eq!(
            StoreUrl::parse("memcached://a:11211,b:11212?hashing=dalli").unwrap(),
            StoreUrl::Memcached(memcached::MemcachedUrl {
                servers: vec!["a:11211".into(), "b:11212".into()],
                hashing: Some(Hashing::Dalli),
                tls: None,
            })
        );
        // The default port, as every client assumes it; one server needs no hashing.
        assert_eq!(
            StoreUrl::parse("memcached://[::1]").unwrap(),
            StoreUrl::Memcached(memcached::MemcachedUrl {
                servers: vec!["[::1]:11211".into()],
                hashing: None,
                tls: None,
            })
        );
        assert_eq!(
            StoreUrl::parse("sqlite://var/cache.db?table=django_cache").unwrap(),
            StoreUrl::Sqlite(sql::SqliteUrl {
                path: "var/cache.db".into(),
                table: "django_cache".into(),
                max_entries: None,
            })
        );
        assert_eq!(
            StoreUrl::parse("sqlite:///abs/cache.db").unwrap(),
            StoreUrl::Sqlite(sql::SqliteUrl {
                path: "/abs/cache.db".into(),
                table: sql::DEFAULT_TABLE.into(),
                max_entries: None,
            })
        );
        assert!(matches!(
            StoreUrl::parse("redis://:pw@localhost:6379/2").unwrap(),
            StoreUrl::Redis(_)
        ));
        assert_eq!(
            StoreUrl::parse("redis+cluster://a:7000").unwrap().kind(),
            StoreKind::Redis
        );
    }

    /// A table name goes into SQL text, so anything but an identifier is refused.
    #[test]
    fn refuses_bad_addresses() {
        for bad in [
            "sqlite://x.db?table=a;drop",
            "sqlite://x.db?tbl=a",
            "memcached://a:1,",
            "memcached://a:1:2",
            "memcached://a:1?hashing=modula",
            "memcached://a:1?hash=ketama",
            "http://example.com",
            "rediss://secure:6380?insecure=maybe",
            "redis://plain:6379?ca=ca.pem",
            "redis+sentinel://s:26379",
            "redis+cluster://",
            "redis+cluster://a:7000,b",
            "redis+cluster://a:7000,:7001",
            "redis+cluster://a:7000/1",
            "redis+cluster://a:notaport",
            "redis+cluster://u:p@a:7000,u:p@b:7001",
            "rediss+cluster://a:7000?hashing=ketama",
        ] {
            assert!(StoreUrl::parse(bad).is_err(), "{bad}");
        }
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
        assert!(check_key(StoreKind::Sql, &"é".repeat(255), &limits).is_ok());
        assert!(check_key(StoreKind::Sql, &"é".repeat(256), &limits).is_err());
        for kind in [StoreKind::Redis, StoreKind::Memcached, StoreKind::Sql] {
            assert!(check_key(kind, "", &limits).is_err());
        }
    }
}
