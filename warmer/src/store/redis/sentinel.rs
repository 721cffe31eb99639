//! Redis through Sentinel:
//! `redis[s]+sentinel://[user:pass@]host:port[,host:port…]/MASTER_NAME[/DB][?options]`. The
//! hosts are the sentinels; the credentials in the URL (or its `password_file`/`password_env`)
//! are the master's, and `DB` the master's database. The sentinels are asked without
//! credentials unless `sentinel_password_file=PATH` or `sentinel_password_env=CACHEWARM_…`
//! (and `sentinel_username=NAME` for an ACL user) give theirs: a Sentinel's `requirepass` is
//! its own, not the master's. `rediss+sentinel://` speaks TLS to the sentinels and to the
//! master alike, with the TLS options of `rediss://` (`ca`, `cert`, `key`, `insecure`).
//!
//! The redis crate finds the master through the sentinels (`SentinelClient`) but has no
//! connection manager for it, so [`SentinelConnection`] is one: it keeps the master's
//! multiplexed connection and forgets it when it breaks or the server answers `READONLY` (it
//! was demoted), and the next call asks the sentinels again. The failed call is transient, so
//! the run retries it with backoff as it does through a restart (`retry`), and the retry lands
//! on the new master once the sentinels have switched.
//!
//! A forced failover (`SENTINEL FAILOVER`) promotes the replica before the old master is told:
//! a write the old master takes in between is lost when it becomes a replica. So once the
//! master was seen with a replica, each write batch is confirmed with `WAIT 1` (the batch is
//! on a replica); a batch no replica acknowledged is failed as transient and sent again, to
//! the new master. Keys of such a batch that had reached the replica count as present there.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cachewarm_secret::{Holder, read_password};
use percent_encoding::percent_decode_str;
use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::sentinel::{SentinelClient, SentinelClientBuilder, SentinelServerType};
use redis::{
    AsyncConnectionConfig, Cmd, ConnectionAddr, Pipeline, RedisError, RedisFuture, TlsMode, Value,
};

use super::RedisStore;
use super::url::{parse_cluster, split_tls_options};
use crate::store::tls::{TLS_OPTIONS, TlsOptions, install_crypto_provider};
use crate::store::{
    Address, CALL_TIMEOUT, CONNECT_TIMEOUT, Role, StoreError, StoreKind, UrlError, redact,
};

/// How long a write batch waits for a replica's acknowledgement (see the module's comment).
const REPLICA_ACK_TIMEOUT: Duration = Duration::from_secs(2);

/// A password, kept out of `Debug` output.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

/// The sentinels (`host:port`), the master's name, database and credentials, the sentinels'
/// own credentials, and TLS (`rediss+sentinel://`).
#[derive(Clone, PartialEq, Eq)]
pub struct SentinelUrl {
    pub url: String,
    pub sentinels: Vec<(String, u16)>,
    pub master: String,
    pub db: i64,
    pub username: Option<String>,
    pub password: Option<Secret>,
    pub sentinel_username: Option<String>,
    pub sentinel_password: Option<Secret>,
    /// Some for `rediss+sentinel://`; boxed, as it is most of the address's size.
    pub tls: Option<Box<TlsOptions>>,
}

/// The URL redacted: it may hold the master's password.
impl std::fmt::Debug for SentinelUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SentinelUrl")
            .field("url", &redact(&self.url))
            .field("sentinels", &self.sentinels)
            .field("master", &self.master)
            .field("db", &self.db)
            .field("username", &self.username)
            .field("password", &self.password)
            .field("sentinel_username", &self.sentinel_username)
            .field("sentinel_password", &self.sentinel_password)
            .field("tls", &self.tls)
            .finish()
    }
}

impl Address for SentinelUrl {
    const SCHEMES: &'static [&'static str] = &["redis+sentinel://", "rediss+sentinel://"];
    const NAME: &'static str = "redis-sentinel";
    const KIND: StoreKind = StoreKind::Redis;
    type Store = RedisStore;

    fn parse(text: &str) -> Result<SentinelUrl, UrlError> {
        const EXPECTED: &str =
            "expected redis[s]+sentinel://[user:pass@]host:port[,host:port…]/MASTER_NAME[/DB]";
        let error = |reason: String| UrlError::new(text, reason);
        let (base, tls, kept) = split_tls_options(text).map_err(error)?;
        let (rest, tls) = match base.strip_prefix("rediss+sentinel://") {
            Some(rest) => (rest, Some(Box::new(tls))),
            None if tls.is_set() => {
                return Err(error(format!(
                    "the TLS options ({TLS_OPTIONS}) need a rediss+sentinel:// URL"
                )));
            }
            None => (
                base.strip_prefix("redis+sentinel://").unwrap_or(&base),
                None,
            ),
        };
        if let Some(tls) = &tls
            && tls.insecure
            && tls.cert.is_some()
        {
            // The redis crate's Sentinel client leaves the client certificate out of an
            // unverified connection to the master.
            return Err(error(
                "rediss+sentinel:// cannot present a client certificate (cert, key) with \
                 insecure=true; give the CA (ca=FILE) instead"
                    .into(),
            ));
        }
        let Some((hosts, path)) = rest.split_once('/') else {
            return Err(error(format!("{EXPECTED}; the master's name is missing")));
        };
        let (master, db) = match path.split_once('/') {
            Some((master, db)) => match db.parse::<i64>() {
                Ok(db) if db >= 0 => (master, db),
                _ => {
                    return Err(error(format!("{EXPECTED}; `{db}` is no database number")));
                }
            },
            None => (path, 0),
        };
        if master.is_empty() || master.contains(['/', '?', '#']) {
            return Err(error(format!("{EXPECTED}; `{master}` is no master name")));
        }
        let decode = |s: &str| percent_decode_str(s).decode_utf8_lossy().into_owned();
        let mut sentinel_username = None;
        let mut sentinel_password = None;
        for pair in kept {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            let holder = match name {
                "sentinel_username" => {
                    sentinel_username = Some(decode(value)).filter(|u| !u.is_empty());
                    continue;
                }
                "sentinel_password_file" => Holder::File,
                "sentinel_password_env" => Holder::Variable,
                _ => {
                    return Err(error(format!(
                        "unknown option `{name}`; the options are `sentinel_username`, \
                         `sentinel_password_file`, `sentinel_password_env`, `password_file`, \
                         `password_env`, and over rediss+sentinel:// {TLS_OPTIONS}"
                    )));
                }
            };
            if sentinel_password.is_some() {
                return Err(error("the sentinels' password is given twice".into()));
            }
            sentinel_password = Some(Secret(
                read_password(name, &decode(value), holder).map_err(error)?,
            ));
        }
        // The host list reads as a cluster's; its node URLs give back each host and port.
        let scheme = if tls.is_some() { "rediss" } else { "redis" };
        let nodes = parse_cluster(hosts, scheme).map_err(|e| {
            error(e.replace(&format!("{scheme}+cluster"), &format!("{scheme}+sentinel")))
        })?;
        let mut sentinels = Vec::new();
        for node in nodes {
            let address = node
                .rsplit_once('@')
                .map_or(&node[scheme.len() + "://".len()..], |(_, a)| a);
            let (host, port) = address.rsplit_once(':').unwrap_or((address, ""));
            let host = host.trim_start_matches('[').trim_end_matches(']');
            sentinels.push((host.to_owned(), port.parse().unwrap_or(26379)));
        }
        let (username, password) = match hosts.rsplit_once('@') {
            Some((userinfo, _)) => match userinfo.split_once(':') {
                Some((user, pass)) => (
                    Some(decode(user)).filter(|u| !u.is_empty()),
                    Some(Secret(decode(pass))),
                ),
                None => (Some(decode(userinfo)), None),
            },
            None => (None, None),
        };
        Ok(SentinelUrl {
            url: text.to_owned(),
            sentinels,
            master: decode(master),
            db,
            username,
            password,
            sentinel_username,
            sentinel_password,
            tls,
        })
    }

    async fn connect(&self, _role: Role) -> Result<RedisStore, StoreError> {
        let redacted = redact(&self.url);
        let error = |e: RedisError| StoreError {
            kind: "redis-sentinel",
            ..super::store_error(&redacted, &e)
        };
        let refused = |message: String| StoreError {
            kind: "redis-sentinel",
            url: redacted.clone(),
            message,
            transient: false,
        };
        let sentinels = self.sentinels.iter().map(|(host, port)| match &self.tls {
            Some(tls) => ConnectionAddr::TcpTls {
                host: host.clone(),
                port: *port,
                insecure: tls.insecure,
                tls_params: None,
            },
            None => ConnectionAddr::Tcp(host.clone(), *port),
        });
        let mut builder =
            SentinelClientBuilder::new(sentinels, &self.master, SentinelServerType::Master)
                .map_err(error)?
                .set_client_to_redis_db(self.db);
        if let Some(tls) = &self.tls {
            install_crypto_provider();
            tls.warn_if_insecure(&redacted);
            builder = builder.set_client_to_redis_tls_mode(if tls.insecure {
                TlsMode::Insecure
            } else {
                TlsMode::Secure
            });
            if let Some(certificates) = tls.redis_certificates().map_err(refused)? {
                builder = builder
                    .set_client_to_sentinel_certificates(certificates.clone())
                    .set_client_to_redis_certificates(certificates);
            }
        }
        if let Some(username) = &self.username {
            builder = builder.set_client_to_redis_username(username);
        }
        if let Some(password) = &self.password {
            builder = builder.set_client_to_redis_password(&password.0);
        }
        if let Some(username) = &self.sentinel_username {
            builder = builder.set_client_to_sentinel_username(username);
        }
        if let Some(password) = &self.sentinel_password {
            builder = builder.set_client_to_sentinel_password(&password.0);
        }
        let connection = SentinelConnection {
            inner: Arc::new(Inner {
                sentinel: tokio::sync::Mutex::new(builder.build().map_err(error)?),
                current: Mutex::new(None),
                replicated: AtomicBool::new(false),
                db: self.db,
            }),
        };
        // Connect now, so a wrong address or master name fails here, naming the store.
        connection.master().await.map_err(error)?;
        Ok(RedisStore::with_sentinel(redacted, connection))
    }
}

/// The master's connection, found again through the sentinels when it breaks (see the
/// module's comment). Clones share it.
#[derive(Clone)]
pub struct SentinelConnection {
    inner: Arc<Inner>,
}

struct Inner {
    /// Locked while the master is looked up, so concurrent calls look it up once.
    sentinel: tokio::sync::Mutex<SentinelClient>,
    current: Mutex<Option<MultiplexedConnection>>,
    /// Whether a master was ever seen with a replica: then writes wait for one.
    replicated: AtomicBool,
    /// The master's database, selected by each new connection.
    db: i64,
}

impl SentinelConnection {
    fn current(&self) -> Option<MultiplexedConnection> {
        self.inner
            .current
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn forget(&self) {
        *self.inner.current.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// The master's connection: the one kept, or a new one to the master the sentinels name.
    async fn master(&self) -> redis::RedisResult<MultiplexedConnection> {
        if let Some(connection) = self.current() {
            return Ok(connection);
        }
        let mut sentinel = self.inner.sentinel.lock().await;
        if let Some(connection) = self.current() {
            return Ok(connection);
        }
        let client = sentinel
            .async_get_client()
            .await
            .map_err(sentinels_refused)?;
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(CALL_TIMEOUT));
        let mut connection = client
            .get_multiplexed_async_connection_with_config(&config)
            .await?;
        let info: String = redis::cmd("INFO")
            .arg("replication")
            .query_async(&mut connection)
            .await?;
        let replicas = super::counter(&super::parse_info(&info), "connected_slaves");
        if replicas > 0 {
            self.inner.replicated.store(true, Ordering::Relaxed);
        }
        tracing::info!(master = %client.get_connection_info().addr(), replicas, "connected to the master the sentinels name");
        *self.inner.current.lock().unwrap_or_else(|e| e.into_inner()) = Some(connection.clone());
        Ok(connection)
    }

    /// Forgets the connection after an error that says the master is gone or demoted.
    fn check<T>(&self, result: redis::RedisResult<T>) -> redis::RedisResult<T> {
        if let Err(e) = &result
            && (e.is_io_error()
                || e.is_connection_dropped()
                || e.is_connection_refusal()
                || e.is_timeout()
                || e.code() == Some("READONLY"))
        {
            self.forget();
        }
        result
    }

    /// After a write batch: waits for one replica to have it, where the master has replicas.
    /// A batch none acknowledged fails (transient) and the connection is looked up again.
    pub(super) async fn confirm_write(&self) -> redis::RedisResult<()> {
        if !self.inner.replicated.load(Ordering::Relaxed) {
            return Ok(());
        }
        let mut connection = self.clone();
        let acknowledged: i64 = redis::cmd("WAIT")
            .arg(1)
            .arg(REPLICA_ACK_TIMEOUT.as_millis() as u64)
            .query_async(&mut connection)
            .await?;
        if acknowledged >= 1 {
            return Ok(());
        }
        self.forget();
        Err(RedisError::from(std::io::Error::new(
            std::io::ErrorKind::ConnectionAborted,
            "no replica acknowledged the batch (a failover under way?); it is sent again",
        )))
    }
}

/// A refused password from the sentinels, said to be theirs: the master's is in the URL's
/// user info, the sentinels' in its own options, and the crate's error names neither.
fn sentinels_refused(e: RedisError) -> RedisError {
    let refused = e.kind() == redis::ErrorKind::AuthenticationFailed
        || matches!(e.code(), Some("NOAUTH" | "WRONGPASS"));
    if !refused {
        return e;
    }
    RedisError::from((
        redis::ErrorKind::AuthenticationFailed,
        "the sentinels refused the connection: their password is \
         sentinel_password_file or sentinel_password_env (and sentinel_username), not the \
         master's",
        e.to_string(),
    ))
}

/// READONLY answers inside a pipeline's replies: a demoted master, the whole call to retry.
fn demoted(values: &[Value]) -> Option<RedisError> {
    values.iter().find_map(|value| match value {
        Value::ServerError(e) if e.code() == "READONLY" => Some(RedisError::from(e.clone())),
        _ => None,
    })
}

impl ConnectionLike for SentinelConnection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        Box::pin(async move {
            let mut connection = self.check(self.master().await)?;
            let reply = connection.req_packed_command(cmd).await;
            self.check(reply)
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        Box::pin(async move {
            let mut connection = self.check(self.master().await)?;
            let replies = connection
                .req_packed_commands(pipeline, offset, count)
                .await;
            let replies = match replies {
                Ok(values) => match demoted(&values) {
                    Some(e) => Err(e),
                    None => Ok(values),
                },
                Err(e) => Err(e),
            };
            self.check(replies)
        })
    }

    fn get_db(&self) -> i64 {
        self.inner.db
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The sentinels, the master's name, database and (decoded) credentials come apart; the
    /// sentinels' own password comes from its file, and TLS from the scheme.
    #[test]
    fn parses_sentinel_urls() {
        let url = SentinelUrl::parse("redis+sentinel://app:s%40cret@10.0.0.1:26379,s2:26380/cache")
            .unwrap();
        assert_eq!(
            url.sentinels,
            [("10.0.0.1".to_owned(), 26379), ("s2".to_owned(), 26380)]
        );
        assert_eq!((url.master.as_str(), url.db), ("cache", 0));
        assert_eq!(url.username.as_deref(), Some("app"));
        assert_eq!(url.password, Some(Secret("s@cret".into())));
        assert!(!format!("{url:?}").contains("cret"));
        assert_eq!((url.sentinel_password, url.tls), (None, None));

        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("sentinel-pw");
        std::fs::write(&file, "sent1nel\n").unwrap();
        let url = SentinelUrl::parse(&format!(
            "rediss+sentinel://s1:26379/cache/3?ca=/c/ca.pem&sentinel_username=watcher\
             &sentinel_password_file={}",
            file.display()
        ))
        .unwrap();
        assert_eq!(url.sentinels, [("s1".to_owned(), 26379)]);
        assert_eq!((url.master.as_str(), url.db), ("cache", 3));
        assert_eq!(url.sentinel_username.as_deref(), Some("watcher"));
        assert_eq!(url.sentinel_password, Some(Secret("sent1nel".into())));
        assert_eq!(url.tls.unwrap().ca, Some("/c/ca.pem".into()));

        for bad in [
            "redis+sentinel://a:26379",
            "redis+sentinel://a:26379/",
            "redis+sentinel://a/cache",
            "redis+sentinel://a:26379/cache/x",
            "redis+sentinel://a:26379/cache/1/2",
            "redis+sentinel://a:26379/cache?db=1",
            "redis+sentinel://a:26379/cache?ca=/c/ca.pem",
            "redis+sentinel://a:26379/cache?sentinel_password_env=HOME",
            "redis+sentinel://a:26379/cache?sentinel_password_file=/nonexistent",
            "rediss+sentinel://a:26379/cache?insecure=true&cert=c.pem&key=k.pem",
        ] {
            assert!(SentinelUrl::parse(bad).is_err(), "{bad}");
        }
    }
}
