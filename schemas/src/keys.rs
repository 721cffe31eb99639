//! Which keys each kind of store can hold (DESIGN.md, store semantics).
//!
//! The analyzer leaves keys out of a manifest by these rules, and the warmer checks them again
//! before any write, so both agree on what a valid key is.

use std::fmt;
use std::str::FromStr;

/// Memcached's limit on key length, in bytes.
pub const MEMCACHED_MAX_KEY_BYTES: usize = 250;
/// The `cache_key` column of Django's DatabaseCache is `varchar(255)`.
pub const SQL_MAX_KEY_CHARS: usize = 255;
/// The longest Redis key written unless configured otherwise, in bytes. Redis itself takes up
/// to 512 MiB; keys that long are a mistake in a cache.
pub const REDIS_DEFAULT_MAX_KEY_BYTES: usize = 64 * 1024;

/// The kinds of store, as far as their key rules go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StoreKind {
    Redis,
    Memcached,
    /// A SQL database cache (Django's DatabaseCache layout), SQLite or PostgreSQL.
    Sql,
}

impl StoreKind {
    pub fn as_str(self) -> &'static str {
        match self {
            StoreKind::Redis => "redis",
            StoreKind::Memcached => "memcached",
            StoreKind::Sql => "sql",
        }
    }
}

impl fmt::Display for StoreKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for StoreKind {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "redis" => Ok(StoreKind::Redis),
            "memcached" => Ok(StoreKind::Memcached),
            "sql" | "sqlite" | "postgres" => Ok(StoreKind::Sql),
            other => Err(format!(
                "`{other}` is not a store kind; use redis, memcached or sql"
            )),
        }
    }
}

/// Whether `key` may be written to a store of `kind`; the reason when it may not.
/// `redis_max_key_bytes` is the configured Redis limit ([`REDIS_DEFAULT_MAX_KEY_BYTES`] unless
/// set).
pub fn check_key(kind: StoreKind, key: &str, redis_max_key_bytes: usize) -> Result<(), String> {
    if key.is_empty() {
        return Err("empty key".into());
    }
    match kind {
        StoreKind::Redis if key.len() > redis_max_key_bytes => Err(format!(
            "key of {} bytes is longer than the configured Redis maximum of {redis_max_key_bytes}",
            key.len(),
        )),
        StoreKind::Memcached if key.len() > MEMCACHED_MAX_KEY_BYTES => Err(format!(
            "key of {} bytes is longer than memcached's {MEMCACHED_MAX_KEY_BYTES}",
            key.len()
        )),
        StoreKind::Memcached if key.bytes().any(|b| b <= b' ' || b == 0x7f) => {
            Err("memcached keys cannot hold whitespace or control characters".into())
        }
        StoreKind::Sql if key.chars().count() > SQL_MAX_KEY_CHARS => Err(format!(
            "key of {} characters is longer than the cache table's {SQL_MAX_KEY_CHARS}",
            key.chars().count()
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_has_its_rules() {
        let max = REDIS_DEFAULT_MAX_KEY_BYTES;
        assert!(check_key(StoreKind::Redis, "", max).is_err());
        assert!(check_key(StoreKind::Redis, "a key with spaces", max).is_ok());
        assert!(check_key(StoreKind::Memcached, "a key with spaces", max).is_err());
        assert!(check_key(StoreKind::Memcached, &"k".repeat(250), max).is_ok());
        assert!(check_key(StoreKind::Memcached, &"k".repeat(251), max).is_err());
        assert!(check_key(StoreKind::Sql, &"é".repeat(255), max).is_ok());
        assert!(check_key(StoreKind::Sql, &"é".repeat(256), max).is_err());
        assert!(check_key(StoreKind::Redis, &"k".repeat(11), 10).is_err());
    }
}
