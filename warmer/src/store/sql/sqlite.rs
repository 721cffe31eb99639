//! `sqlite://PATH[?table=NAME][&max_entries=N]`: an SQL database cache in an SQLite file, laid
//! out as Django's DatabaseCache table (see [`super`], also for the entry limit).
//!
//! It is the warmer's embedded default store. Add is an insert that may replace only an
//! expired row, one transaction per batch. `expires` is written the way Django's SQLite backend
//! writes datetimes (`YYYY-MM-DD HH:MM:SS.ffffff`, UTC), and a year-9999 `expires` (Django's
//! `timeout=None`) means the entry does not expire.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Datelike, NaiveDateTime, Utc};
use rusqlite::{Connection, OpenFlags, OptionalExtension, params};

use super::{SqlOptions, live_until, new_rows_allowed};
use crate::store::{
    Address, CacheStore, Fetched, Role, StoreError, StoreKind, UndoOutcome, UrlError,
    ValueEncoding, WriteItem, WriteMode, WriteOutcome, value_hash,
};

const EXPIRES_FORMAT: &str = "%Y-%m-%d %H:%M:%S%.6f";

/// A table laid out as Django's DatabaseCache in an SQLite file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqliteUrl {
    pub path: PathBuf,
    pub table: String,
    /// The cache's `MAX_ENTRIES`: the table never grows past it.
    pub max_entries: Option<u64>,
}

impl Address for SqliteUrl {
    const SCHEMES: &'static [&'static str] = &["sqlite://"];
    const NAME: &'static str = "sqlite";
    const KIND: StoreKind = StoreKind::Sql;
    type Store = SqliteStore;

    fn parse(text: &str) -> Result<SqliteUrl, UrlError> {
        let rest = text.strip_prefix("sqlite://").unwrap_or(text);
        let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
        if path.is_empty() {
            return Err(UrlError::new(text, "expected sqlite://PATH[?table=NAME]"));
        }
        let options = SqlOptions::parse(text, query, |_, _| {
            Err("the query parameters are `table` and `max_entries`".into())
        })?;
        Ok(SqliteUrl {
            path: PathBuf::from(path),
            table: options.table,
            max_entries: options.max_entries,
        })
    }

    async fn connect(&self, role: Role) -> Result<SqliteStore, StoreError> {
        SqliteStore::open(self, role).await
    }
}

#[derive(Debug, Clone)]
pub struct SqliteStore {
    url: String,
    table: String,
    max_entries: Option<u64>,
    connection: Arc<Mutex<Connection>>,
}

impl SqliteStore {
    /// Opens the cache table; as a target, creates the file and the table when missing.
    pub async fn open(address: &SqliteUrl, role: Role) -> Result<SqliteStore, StoreError> {
        let (path, table) = (&address.path, &address.table);
        let url = format!("sqlite://{}?table={table}", path.display());
        let error = |message: String| StoreError {
            kind: "sqlite",
            url: url.clone(),
            message,
            transient: false,
        };
        let path: PathBuf = path.to_path_buf();
        let table_name = table.to_owned();
        let connection =
            tokio::task::spawn_blocking(move || open_blocking(&path, &table_name, role))
                .await
                .map_err(|e| error(e.to_string()))?
                .map_err(error)?;
        Ok(SqliteStore {
            url,
            table: table.to_owned(),
            max_entries: address.max_entries,
            connection: Arc::new(Mutex::new(connection)),
        })
    }

    /// Runs `work` on the connection off the async workers.
    async fn with_connection<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Connection, &str) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, StoreError> {
        let connection = Arc::clone(&self.connection);
        let table = self.table.clone();
        // SQLite waits out a busy database itself (busy_timeout): what reaches here is not
        // worth retrying.
        let error = |message: String| StoreError {
            kind: "sqlite",
            url: self.url.clone(),
            message,
            transient: false,
        };
        tokio::task::spawn_blocking(move || {
            let mut connection = connection
                .lock()
                .map_err(|_| rusqlite::Error::InvalidQuery)?;
            work(&mut connection, &table)
        })
        .await
        .map_err(|e| error(e.to_string()))?
        .map_err(|e| error(e.to_string()))
    }
}

impl CacheStore for SqliteStore {
    fn in_process(&self) -> bool {
        true
    }

    fn has_entry_limit(&self) -> bool {
        self.max_entries.is_some()
    }

    async fn contains(&self, keys: &[&str]) -> Result<Vec<bool>, StoreError> {
        Ok(self
            .fetch(keys)
            .await?
            .into_iter()
            .map(|f| f.is_some())
            .collect())
    }

    async fn fetch(&self, keys: &[&str]) -> Result<Vec<Option<Fetched>>, StoreError> {
        let keys: Vec<String> = keys.iter().map(|k| (*k).to_owned()).collect();
        self.with_connection(move |connection, table| {
            let now = Utc::now();
            let mut statement = connection.prepare_cached(&format!(
                "SELECT value, expires FROM \"{table}\" WHERE cache_key = ?1"
            ))?;
            let mut fetched = Vec::with_capacity(keys.len());
            for key in &keys {
                let row: Option<(String, String)> = statement
                    .query_row(params![key], |row| Ok((row.get(0)?, row.get(1)?)))
                    .optional()?;
                fetched.push(row.and_then(|(value, expires)| live(value, &expires, now)));
            }
            Ok(fetched)
        })
        .await
    }

    async fn write(
        &self,
        items: &[WriteItem<'_>],
        mode: WriteMode,
    ) -> Result<Vec<WriteOutcome>, StoreError> {
        let overwrite = mode == WriteMode::Overwrite;
        let max_entries = self.max_entries;
        let items: Vec<(String, Result<String, String>, Duration)> = items
            .iter()
            .map(|item| {
                let value = String::from_utf8(item.value.to_vec()).map_err(|_| {
                    "value is not UTF-8 text, which the cache table's text column requires"
                        .to_owned()
                });
                (item.key.to_owned(), value, item.ttl)
            })
            .collect();
        self.with_connection(move |connection, table| {
            let now = Utc::now();
            let now_text = now.format(EXPIRES_FORMAT).to_string();
            // Immediate: the write lock from the start, so that the row count read for the
            // entry limit stays true until the commit.
            let transaction =
                connection.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let mut outcomes = Vec::with_capacity(items.len());
            {
                let allowed = match max_entries {
                    Some(max_entries) => {
                        let rows = transaction.query_row(
                            &format!("SELECT count(*) FROM \"{table}\""),
                            [],
                            |row| row.get::<_, i64>(0).map(|n| n.unsigned_abs()),
                        )?;
                        let mut present = transaction.prepare_cached(&format!(
                            "SELECT count(*) > 0 FROM \"{table}\" WHERE cache_key = ?1"
                        ))?;
                        let keys: Vec<&str> = items.iter().map(|(key, ..)| key.as_str()).collect();
                        let present = keys
                            .iter()
                            .map(|key| present.query_row(params![key], |row| row.get(0)))
                            .collect::<rusqlite::Result<Vec<bool>>>()?;
                        let sendable: Vec<bool> =
                            items.iter().map(|(_, value, _)| value.is_ok()).collect();
                        new_rows_allowed(&keys, &present, &sendable, rows, max_entries)
                    }
                    None => vec![true; items.len()],
                };
                // Add: insert, or take over the row only when it has expired.
                let condition = if overwrite {
                    String::new()
                } else {
                    format!("WHERE \"{table}\".expires < ?4")
                };
                let mut statement = transaction.prepare_cached(&format!(
                    "INSERT INTO \"{table}\" (cache_key, value, expires) VALUES (?1, ?2, ?3) \
                     ON CONFLICT(cache_key) DO UPDATE SET value = excluded.value, \
                     expires = excluded.expires {condition}"
                ))?;
                for ((key, value, ttl), allowed) in items.iter().zip(allowed) {
                    let value = match value {
                        Ok(value) => value,
                        Err(reason) => {
                            outcomes.push(WriteOutcome::Refused(reason.clone()));
                            continue;
                        }
                    };
                    if !allowed {
                        outcomes.push(WriteOutcome::NoRoom);
                        continue;
                    }
                    let expires = chrono::Duration::from_std(*ttl)
                        .ok()
                        .and_then(|ttl| now.checked_add_signed(ttl))
                        .unwrap_or(DateTime::<Utc>::MAX_UTC)
                        .format(EXPIRES_FORMAT)
                        .to_string();
                    let changed = if overwrite {
                        statement.execute(params![key, value, expires])?
                    } else {
                        statement.execute(params![key, value, expires, now_text])?
                    };
                    outcomes.push(if changed > 0 {
                        WriteOutcome::Written
                    } else {
                        WriteOutcome::AlreadyPresent
                    });
                }
            }
            transaction.commit()?;
            Ok(outcomes)
        })
        .await
    }

    /// In one transaction: read each live row, compare its value's hash, and delete it on the
    /// condition that the value is still the one read.
    async fn delete_if_unchanged(
        &self,
        items: &[(&str, &str)],
    ) -> Result<Vec<UndoOutcome>, StoreError> {
        let items: Vec<(String, String)> = items
            .iter()
            .map(|(key, hash)| ((*key).to_owned(), (*hash).to_owned()))
            .collect();
        self.with_connection(move |connection, table| {
            let now = Utc::now();
            let transaction = connection.transaction()?;
            let mut outcomes = Vec::with_capacity(items.len());
            {
                let mut select = transaction.prepare_cached(&format!(
                    "SELECT value, expires FROM \"{table}\" WHERE cache_key = ?1"
                ))?;
                let mut delete = transaction.prepare_cached(&format!(
                    "DELETE FROM \"{table}\" WHERE cache_key = ?1 AND value = ?2"
                ))?;
                for (key, hash) in &items {
                    let row: Option<(String, String)> = select
                        .query_row(params![key], |row| Ok((row.get(0)?, row.get(1)?)))
                        .optional()?;
                    let Some(value) = row.and_then(|(value, expires)| live(value, &expires, now))
                    else {
                        outcomes.push(UndoOutcome::Missing);
                        continue;
                    };
                    if value_hash(&value.value) != *hash {
                        outcomes.push(UndoOutcome::Changed);
                        continue;
                    }
                    let value = String::from_utf8_lossy(&value.value).into_owned();
                    outcomes.push(if delete.execute(params![key, value])? > 0 {
                        UndoOutcome::Deleted
                    } else {
                        UndoOutcome::Changed
                    });
                }
            }
            transaction.commit()?;
            Ok(outcomes)
        })
        .await
    }
}

fn open_blocking(path: &Path, table: &str, role: Role) -> Result<Connection, String> {
    let flags = match role {
        Role::Target => OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE,
        Role::Source => OpenFlags::SQLITE_OPEN_READ_ONLY,
    };
    let connection = Connection::open_with_flags(path, flags).map_err(|e| e.to_string())?;
    // A live application may hold the database: wait for its locks rather than fail.
    connection
        .busy_timeout(Duration::from_secs(5))
        .map_err(|e| e.to_string())?;
    if role == Role::Target {
        connection
            .execute_batch(&format!(
                "CREATE TABLE IF NOT EXISTS \"{table}\" (\
                 \"cache_key\" varchar(255) NOT NULL PRIMARY KEY, \
                 \"value\" text NOT NULL, \
                 \"expires\" datetime NOT NULL);\
                 CREATE INDEX IF NOT EXISTS \"{table}_expires\" ON \"{table}\" (\"expires\");"
            ))
            .map_err(|e| e.to_string())?;
    }
    let exists: bool = connection
        .query_row(
            "SELECT count(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = ?1",
            params![table],
            |row| row.get(0),
        )
        .map_err(|e| e.to_string())?;
    if !exists {
        return Err(format!(
            "no table `{table}`; hint: name the cache table with ?table=NAME"
        ));
    }
    Ok(connection)
}

/// The value of a row that has not expired, with its remaining TTL.
fn live(value: String, expires: &str, now: DateTime<Utc>) -> Option<Fetched> {
    let expires = NaiveDateTime::parse_from_str(expires, "%Y-%m-%d %H:%M:%S%.f")
        .ok()?
        .and_utc();
    let ttl = live_until(expires, now, expires.year() == 9999)?;
    Some(Fetched {
        value: value.into_bytes(),
        ttl,
        flags: 0,
        encoding: ValueEncoding::Raw,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn address(path: &Path, table: &str, max_entries: Option<u64>) -> SqliteUrl {
        SqliteUrl {
            path: path.to_path_buf(),
            table: table.to_owned(),
            max_entries,
        }
    }

    fn item<'a>(key: &'a str, value: &'a str, secs: u64) -> WriteItem<'a> {
        WriteItem {
            key,
            value: value.as_bytes(),
            ttl: Duration::from_secs(secs),
            flags: 0,
            encoding: ValueEncoding::Raw,
        }
    }

    /// A target on a new Django cache table (at most `max_entries` rows) that holds a live row
    /// `live` and an expired row `stale`, both `old`; the file's path.
    async fn with_live_and_stale_rows(
        max_entries: Option<u64>,
    ) -> (tempfile::TempDir, PathBuf, SqliteStore) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cache.sqlite3");
        let store = SqliteStore::open(&address(&path, "django_cache", max_entries), Role::Target)
            .await
            .unwrap();
        Connection::open(&path)
            .unwrap()
            .execute(
                "INSERT INTO django_cache VALUES ('live', 'old', '9999-12-31 23:59:59.999999'), \
                 ('stale', 'old', '2000-01-01 00:00:00')",
                [],
            )
            .unwrap();
        (dir, path, store)
    }

    /// Add semantics on a real SQLite file: a live row is kept, an expired one is replaced,
    /// and `overwrite` replaces anyway.
    #[tokio::test]
    async fn add_keeps_live_rows_and_replaces_expired_ones() {
        let (_dir, _, store) = with_live_and_stale_rows(None).await;
        let outcomes = store
            .write(
                &[
                    item("live", "new", 600),
                    item("stale", "new", 600),
                    item("fresh", "new", 600),
                ],
                WriteMode::Add,
            )
            .await
            .unwrap();
        assert_eq!(
            outcomes,
            [
                WriteOutcome::AlreadyPresent,
                WriteOutcome::Written,
                WriteOutcome::Written
            ]
        );
        let fetched = store
            .fetch(&["live", "stale", "fresh", "absent"])
            .await
            .unwrap();
        assert_eq!(fetched[0].as_ref().unwrap().value, b"old");
        assert_eq!(fetched[0].as_ref().unwrap().ttl, None);
        let ttl = fetched[1].as_ref().unwrap().ttl.unwrap();
        assert!(ttl <= Duration::from_secs(600) && ttl > Duration::from_secs(590));
        assert!(fetched[3].is_none());

        let outcomes = store
            .write(&[item("live", "new", 600)], WriteMode::Overwrite)
            .await
            .unwrap();
        assert_eq!(outcomes, [WriteOutcome::Written]);
        let fetched = store.fetch(&["live"]).await.unwrap();
        assert_eq!(fetched[0].as_ref().unwrap().value, b"new");
    }

    /// A source is opened read-only and never created.
    #[tokio::test]
    async fn missing_source_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("absent.sqlite3");
        let error = SqliteStore::open(&address(&path, "t", None), Role::Source)
            .await
            .unwrap_err();
        assert_eq!(error.kind, "sqlite");
        assert!(!path.exists());
    }

    /// Django culls a third of a table that holds more than `MAX_ENTRIES` rows on its next
    /// write: new rows stop at the limit, while rows already there (an expired one taken over,
    /// a live one kept) take no room.
    #[tokio::test]
    async fn the_table_never_grows_past_max_entries() {
        let (_dir, path, store) = with_live_and_stale_rows(Some(4)).await;
        let outcomes = store
            .write(
                &[
                    item("a", "new", 600),
                    item("stale", "new", 600),
                    item("live", "new", 600),
                    item("b", "new", 600),
                    item("c", "new", 600),
                ],
                WriteMode::Add,
            )
            .await
            .unwrap();
        assert_eq!(
            outcomes,
            [
                WriteOutcome::Written,
                WriteOutcome::Written,
                WriteOutcome::AlreadyPresent,
                WriteOutcome::Written,
                WriteOutcome::NoRoom
            ]
        );
        let rows: i64 = Connection::open(&path)
            .unwrap()
            .query_row("SELECT count(*) FROM django_cache", [], |row| row.get(0))
            .unwrap();
        assert_eq!(rows, 4);
        let fetched = store.fetch(&["c", "stale"]).await.unwrap();
        assert!(fetched[0].is_none());
        assert_eq!(fetched[1].as_ref().unwrap().value, b"new");
    }
}
