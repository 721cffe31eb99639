//! `postgres://USER@HOST[:PORT]/DATABASE?table=NAME` (or `postgresql://`): Django's
//! DatabaseCache table in PostgreSQL (see [`super`]), through `tokio-postgres`.
//!
//! - TLS as libpq's `sslmode` says (see [`url::SslMode`]), through tokio-postgres-rustls with
//!   the rustls configuration of the other stores (`store::tls`): the same roots, client
//!   certificate and verifiers. `sslmode=require` without a root certificate is logged as a
//!   warning, as `?insecure=true` is elsewhere; `prefer`, the default, is not (it is what
//!   libpq and Django do unasked).
//! - Add is one statement per batch: `INSERT … ON CONFLICT (cache_key) DO UPDATE … WHERE
//!   expires < now RETURNING cache_key`. A row comes back when it was written (new, or an expired
//!   one taken over); a key that does not come back held a live entry, and keeps it.
//! - `expires` follows the column's type, read from the catalog when connecting. Django makes it
//!   `timestamp with time zone` under `USE_TZ = True`, and `timestamp` (wall time in
//!   `TIME_ZONE`) otherwise: the session's time zone is set to `time_zone=` (default UTC, as
//!   `startproject` sets `TIME_ZONE`), so PostgreSQL converts the warmer's instants either way.
//!   Year 9999 is Django's "never expires" (`timeout=None`).
//! - The password is never in the process list: it comes from the URL (put there from
//!   `password_file=PATH` or `password_env=VAR` by `store::secret`, or given in a config file or
//!   `CACHEWARM_TARGETS`), else from `PGPASSWORD`; reports show the URL redacted.
//! - A missing table is an error, not created: Django's `createcachetable` makes it, with the
//!   column types the application expects.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Datelike, Utc};
use tokio_postgres::config::SslMode as PgSslMode;
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, NoTls};
use tokio_postgres_rustls::MakeRustlsConnect;

mod url;

pub use url::PostgresUrl;
use url::SslMode;

use super::{live_until, new_rows_allowed, unique_runs};
use crate::env_vars;
use crate::store::{
    CONNECT_TIMEOUT, CacheStore, Fetched, StoreError, UndoOutcome, ValueEncoding, WriteItem,
    WriteMode, WriteOutcome, value_hash,
};

/// The SQL type of the `expires` column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expires {
    /// `timestamp with time zone` (Django's `USE_TZ = True`).
    WithTimeZone,
    /// `timestamp without time zone`: wall time in the session's (Django's) time zone.
    WallTime,
}

/// A connected PostgreSQL cache table.
#[derive(Debug)]
pub struct PostgresStore {
    /// Boxed, as the config: they are most of the store's size, and a store sits in an enum
    /// with small ones.
    address: Box<PostgresUrl>,
    config: Box<tokio_postgres::Config>,
    /// The TLS configuration; none under `sslmode=disable`. Boxed, as the config.
    tls: Option<Box<rustls::ClientConfig>>,
    expires: Expires,
    /// The connection; replaced by a new one when it breaks (a restarted server, a dropped
    /// connection), so a server that comes back within the run's retries is warmed on.
    client: tokio::sync::Mutex<Arc<Client>>,
    /// Held by a write from its row count to its insert, so that the batches in flight do not
    /// all count the same free rows (the lock is fair: batches go in the order they came).
    writing: tokio::sync::Mutex<()>,
}

impl PostgresStore {
    async fn connect(address: &PostgresUrl) -> Result<PostgresStore, StoreError> {
        let error = |message: String| StoreError {
            kind: "postgres",
            url: address.redacted.clone(),
            message,
            transient: false,
        };
        let mut config = tokio_postgres::Config::new();
        config
            .host(&address.host)
            .port(address.port)
            .user(&address.user)
            .dbname(&address.database)
            .application_name("cachewarm")
            .connect_timeout(CONNECT_TIMEOUT);
        let password = match &address.password {
            Some(password) => Some(password.0.clone()),
            None => std::env::var(env_vars::PGPASSWORD).ok(),
        };
        if let Some(password) = password {
            config.password(password);
        }
        let tls = match address.tls.mode {
            SslMode::Disable => None,
            mode => {
                config.ssl_mode(if mode == SslMode::Prefer {
                    PgSslMode::Prefer
                } else {
                    PgSslMode::Require
                });
                let check = address.tls.check();
                if mode == SslMode::Require && check == crate::store::tls::ServerCheck::Nothing {
                    crate::store::tls::warn_unverified(&address.redacted, "sslmode=require");
                }
                Some(Box::new(
                    address.tls.files.client_config(check).map_err(error)?,
                ))
            }
        };
        if tls.is_none() {
            config.ssl_mode(PgSslMode::Disable);
        }
        let client = open(&config, tls.as_deref(), &address.time_zone)
            .await
            .map_err(|e| pg_error(&address.redacted, &e))?;
        let expires = expires_type(&client, &address.options.table, &address.database)
            .await
            .map_err(|e| match e {
                Lookup::Postgres(e) => pg_error(&address.redacted, &e),
                Lookup::Table(message) => error(message),
            })?;
        Ok(PostgresStore {
            address: Box::new(address.clone()),
            config: Box::new(config),
            tls,
            expires,
            client: tokio::sync::Mutex::new(Arc::new(client)),
            writing: tokio::sync::Mutex::new(()),
        })
    }

    fn error(&self, e: &tokio_postgres::Error) -> StoreError {
        pg_error(&self.address.redacted, e)
    }

    /// The connection, dialed again first when the last one broke.
    async fn client(&self) -> Result<Arc<Client>, StoreError> {
        let mut client = self.client.lock().await;
        if client.is_closed() {
            let new = open(&self.config, self.tls.as_deref(), &self.address.time_zone)
                .await
                .map_err(|e| self.error(&e))?;
            *client = Arc::new(new);
        }
        Ok(Arc::clone(&client))
    }

    fn table(&self) -> &str {
        &self.address.options.table
    }

    /// The live rows among `keys`: value and expiry, by key.
    async fn live_rows(
        &self,
        client: &Client,
        keys: &[&str],
        now: DateTime<Utc>,
    ) -> Result<HashMap<String, Fetched>, StoreError> {
        let table = self.table();
        let rows = client
            .query(
                &format!(
                    "SELECT cache_key, value, expires::timestamptz FROM \"{table}\" \
                     WHERE cache_key = ANY($1)"
                ),
                &[&keys],
            )
            .await
            .map_err(|e| self.error(&e))?;
        Ok(rows
            .into_iter()
            .filter_map(|row| {
                let key: String = row.get(0);
                let value: String = row.get(1);
                let expires: DateTime<Utc> = row.get(2);
                let ttl = live_until(expires, now, expires.year() >= 9999)?;
                Some((
                    key,
                    Fetched {
                        value: value.into_bytes(),
                        ttl,
                        flags: 0,
                        encoding: ValueEncoding::Raw,
                    },
                ))
            })
            .collect())
    }

    /// How many rows the table holds, and which of `keys` it holds (live or expired).
    async fn rows_and_present(
        &self,
        client: &Client,
        keys: &[&str],
    ) -> Result<(u64, Vec<bool>), StoreError> {
        let table = self.table();
        let row = client
            .query_one(
                &format!(
                    "SELECT (SELECT count(*) FROM \"{table}\"), \
                     ARRAY(SELECT cache_key::text FROM \"{table}\" WHERE cache_key = ANY($1))"
                ),
                &[&keys],
            )
            .await
            .map_err(|e| self.error(&e))?;
        let rows: i64 = row.get(0);
        let present: Vec<String> = row.get(1);
        let present: std::collections::HashSet<String> = present.into_iter().collect();
        Ok((
            u64::try_from(rows).unwrap_or(0),
            keys.iter().map(|key| present.contains(*key)).collect(),
        ))
    }
}

/// Connects (over `tls` when given), runs the connection on its own task, and sets the
/// session's time zone.
async fn open(
    config: &tokio_postgres::Config,
    tls: Option<&rustls::ClientConfig>,
    time_zone: &str,
) -> Result<Client, tokio_postgres::Error> {
    // A broken connection shows on the client (`is_closed`, and the call's error).
    let ended = |error: tokio_postgres::Error| tracing::debug!(%error, "postgres connection ended");
    let client = match tls {
        Some(tls) => {
            let (client, connection) = config.connect(MakeRustlsConnect::new(tls.clone())).await?;
            tokio::spawn(async move { connection.await.map_err(ended) });
            client
        }
        None => {
            let (client, connection) = config.connect(NoTls).await?;
            tokio::spawn(async move { connection.await.map_err(ended) });
            client
        }
    };
    client
        .execute("SELECT set_config('TimeZone', $1, false)", &[&time_zone])
        .await?;
    Ok(client)
}

enum Lookup {
    Postgres(tokio_postgres::Error),
    Table(String),
}

/// Checks the table's layout, and reads the type of its `expires` column.
async fn expires_type(client: &Client, table: &str, database: &str) -> Result<Expires, Lookup> {
    let rows = client
        .query(
            "SELECT a.attname::text, format_type(a.atttypid, a.atttypmod) \
             FROM pg_attribute a WHERE a.attrelid = to_regclass($1) \
             AND a.attnum > 0 AND NOT a.attisdropped",
            &[&format!("\"{table}\"")],
        )
        .await
        .map_err(Lookup::Postgres)?;
    if rows.is_empty() {
        return Err(Lookup::Table(format!(
            "no table `{table}` in database `{database}`; hint: Django's `python manage.py \
             createcachetable` makes it, or name the cache table with ?table=NAME"
        )));
    }
    let columns: HashMap<String, String> = rows
        .into_iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
    for column in ["cache_key", "value"] {
        if !columns.contains_key(column) {
            return Err(Lookup::Table(format!(
                "table `{table}` has no `{column}` column: not a Django cache table"
            )));
        }
    }
    match columns.get("expires").map(String::as_str) {
        Some("timestamp with time zone") => Ok(Expires::WithTimeZone),
        Some("timestamp without time zone") => Ok(Expires::WallTime),
        other => Err(Lookup::Table(format!(
            "table `{table}`: expected an `expires` column of type timestamp or timestamptz, \
             found {}",
            other.unwrap_or("none")
        ))),
    }
}

/// The `expires` written for a TTL from `now`: at most the last day of year 9999, Django's
/// "never", with a day's margin so that no time zone turns it into year 10000, which Python's
/// datetime cannot read.
fn expires_at(now: DateTime<Utc>, ttl: Duration) -> DateTime<Utc> {
    let never = DateTime::parse_from_rfc3339("9999-12-30T00:00:00Z")
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or(DateTime::<Utc>::MAX_UTC);
    chrono::Duration::from_std(ttl)
        .ok()
        .and_then(|ttl| now.checked_add_signed(ttl))
        .map_or(never, |expires| expires.min(never))
}

impl CacheStore for PostgresStore {
    fn has_entry_limit(&self) -> bool {
        self.address.options.max_entries.is_some()
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
        let client = self.client().await?;
        let mut rows = self.live_rows(&client, keys, Utc::now()).await?;
        Ok(keys.iter().map(|key| rows.remove(*key)).collect())
    }

    async fn write(
        &self,
        items: &[WriteItem<'_>],
        mode: WriteMode,
    ) -> Result<Vec<WriteOutcome>, StoreError> {
        let _writing = self.writing.lock().await;
        let client = self.client().await?;
        let now = Utc::now();
        let mut outcomes: Vec<Option<WriteOutcome>> = items
            .iter()
            .map(|item| match std::str::from_utf8(item.value) {
                Err(_) => Some(WriteOutcome::Refused(
                    "value is not UTF-8 text, which the cache table's text column requires".into(),
                )),
                Ok(text) if text.contains('\0') => Some(WriteOutcome::Refused(
                    "value holds a NUL character, which PostgreSQL text cannot".into(),
                )),
                Ok(_) => None,
            })
            .collect();
        if let Some(max_entries) = self.address.options.max_entries {
            let keys: Vec<&str> = items.iter().map(|item| item.key).collect();
            let (rows, present) = self.rows_and_present(&client, &keys).await?;
            let sendable: Vec<bool> = outcomes.iter().map(Option::is_none).collect();
            for (i, allowed) in new_rows_allowed(&keys, &present, &sendable, rows, max_entries)
                .into_iter()
                .enumerate()
            {
                if !allowed {
                    outcomes[i] = Some(WriteOutcome::NoRoom);
                }
            }
        }
        let table = self.table();
        let condition = match mode {
            WriteMode::Add => format!("WHERE \"{table}\".expires < $4::timestamptz"),
            WriteMode::Overwrite => String::new(),
        };
        // The expires column takes the instant as is, or as wall time in the session's zone.
        let cast = match self.expires {
            Expires::WithTimeZone => "timestamptz",
            Expires::WallTime => "timestamp",
        };
        let statement = format!(
            "INSERT INTO \"{table}\" (cache_key, value, expires) \
             SELECT k, v, e::{cast} FROM UNNEST($1::text[], $2::text[], $3::timestamptz[]) \
             AS input(k, v, e) \
             ON CONFLICT (cache_key) DO UPDATE SET value = EXCLUDED.value, \
             expires = EXCLUDED.expires {condition} RETURNING cache_key::text"
        );
        let send: Vec<usize> = (0..items.len())
            .filter(|&i| outcomes[i].is_none())
            .collect();
        // One statement may not touch a row twice: a key repeated in the batch goes into the
        // next statement, in order.
        for run in unique_runs(&send, |&i| items[i].key) {
            let keys: Vec<&str> = run.iter().map(|&i| items[i].key).collect();
            let values: Vec<&str> = run
                .iter()
                .map(|&i| std::str::from_utf8(items[i].value).unwrap_or_default())
                .collect();
            let expires: Vec<DateTime<Utc>> =
                run.iter().map(|&i| expires_at(now, items[i].ttl)).collect();
            let rows = match mode {
                WriteMode::Add => {
                    client
                        .query(&statement, &[&keys, &values, &expires, &now])
                        .await
                }
                WriteMode::Overwrite => client.query(&statement, &[&keys, &values, &expires]).await,
            }
            .map_err(|e| self.error(&e))?;
            let written: std::collections::HashSet<String> =
                rows.into_iter().map(|row| row.get(0)).collect();
            for &i in &run {
                outcomes[i] = Some(if written.contains(items[i].key) {
                    WriteOutcome::Written
                } else {
                    WriteOutcome::AlreadyPresent
                });
            }
        }
        Ok(outcomes
            .into_iter()
            .map(|outcome| outcome.unwrap_or(WriteOutcome::AlreadyPresent))
            .collect())
    }

    /// Reads the live rows, compares each value's hash, and deletes those that match on the
    /// condition that the value is still the one read (`DELETE … WHERE value = $2`).
    async fn delete_if_unchanged(
        &self,
        items: &[(&str, &str)],
    ) -> Result<Vec<UndoOutcome>, StoreError> {
        let client = self.client().await?;
        let keys: Vec<&str> = items.iter().map(|(key, _)| *key).collect();
        let mut live = self.live_rows(&client, &keys, Utc::now()).await?;
        let mut outcomes = vec![UndoOutcome::Missing; items.len()];
        let mut candidates = Vec::new();
        for (i, (key, hash)) in items.iter().enumerate() {
            match live.remove(*key) {
                None => {}
                Some(fetched) if value_hash(&fetched.value) == *hash => {
                    candidates.push((i, String::from_utf8_lossy(&fetched.value).into_owned()));
                }
                Some(_) => outcomes[i] = UndoOutcome::Changed,
            }
        }
        if candidates.is_empty() {
            return Ok(outcomes);
        }
        let table = self.table();
        let candidate_keys: Vec<&str> = candidates.iter().map(|(i, _)| items[*i].0).collect();
        let values: Vec<&str> = candidates.iter().map(|(_, value)| value.as_str()).collect();
        let rows = client
            .query(
                &format!(
                    "DELETE FROM \"{table}\" AS c USING UNNEST($1::text[], $2::text[]) \
                     AS doomed(k, v) WHERE c.cache_key = doomed.k AND c.value = doomed.v \
                     RETURNING c.cache_key::text"
                ),
                &[&candidate_keys, &values],
            )
            .await
            .map_err(|e| self.error(&e))?;
        let deleted: std::collections::HashSet<String> =
            rows.into_iter().map(|row| row.get(0)).collect();
        for (i, _) in candidates {
            outcomes[i] = if deleted.contains(items[i].0) {
                UndoOutcome::Deleted
            } else {
                UndoOutcome::Changed
            };
        }
        Ok(outcomes)
    }

    /// `SELECT 1`, for the server's latency as a client sees it.
    async fn ping(&self) -> Result<bool, StoreError> {
        let client = self.client().await?;
        client
            .execute("SELECT 1", &[])
            .await
            .map_err(|e| self.error(&e))?;
        Ok(true)
    }
}

/// A PostgreSQL failure as a store error, with the server's own message; transient when the
/// connection broke or the server is starting or shutting down, never a refused password or
/// a refused TLS handshake.
fn pg_error(url: &str, e: &tokio_postgres::Error) -> StoreError {
    let message = match e.as_db_error() {
        Some(db) => format!("{}: {}", db.code().code(), db.message()),
        None => {
            let mut message = e.to_string();
            let mut source = std::error::Error::source(e);
            while let Some(cause) = source {
                message.push_str(&format!(": {cause}"));
                source = cause.source();
            }
            message
        }
    };
    let transient = match e.code() {
        Some(code) => {
            code.code().starts_with("08")
                || [
                    SqlState::ADMIN_SHUTDOWN,
                    SqlState::CRASH_SHUTDOWN,
                    SqlState::CANNOT_CONNECT_NOW,
                    SqlState::T_R_SERIALIZATION_FAILURE,
                    SqlState::T_R_DEADLOCK_DETECTED,
                    SqlState::TOO_MANY_CONNECTIONS,
                ]
                .contains(code)
        }
        // No SQLSTATE: the connection itself (refused, reset, closed, timed out), or a TLS
        // handshake refused (a certificate that fails verification), which stays refused.
        None => !crate::store::tls::is_tls_refusal(e),
    };
    StoreError {
        kind: "postgres",
        url: url.to_owned(),
        message,
        transient,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Django's "never" is year 9999; no TTL may write a later year.
    #[test]
    fn expires_stops_at_year_9999() {
        let now = Utc::now();
        assert_eq!(
            expires_at(now, Duration::from_secs(60)),
            now + chrono::Duration::seconds(60)
        );
        assert_eq!(expires_at(now, Duration::MAX).year(), 9999);
        assert_eq!(
            expires_at(now, Duration::from_secs(10_000 * 366 * 86_400)).year(),
            9999
        );
    }
}
