//! Redis through Sentinel: `redis+sentinel://[user:pass@]host:port[,host:port…]/MASTER_NAME`.
//! The hosts are the sentinels (asked without credentials); the credentials are the master's.
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

use percent_encoding::percent_decode_str;
use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::sentinel::{SentinelClient, SentinelClientBuilder, SentinelServerType};
use redis::{AsyncConnectionConfig, Cmd, ConnectionAddr, Pipeline, RedisError, RedisFuture, Value};

use super::RedisStore;
use super::url::parse_cluster;
use crate::store::{
    Address, CALL_TIMEOUT, CONNECT_TIMEOUT, Role, StoreError, StoreKind, UrlError, redact,
};

/// How long a write batch waits for a replica's acknowledgement (see the module's comment).
const REPLICA_ACK_TIMEOUT: Duration = Duration::from_secs(2);

/// The sentinels (`host:port`), the master's name, and the master's credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentinelUrl {
    pub url: String,
    pub sentinels: Vec<(String, u16)>,
    pub master: String,
    pub username: Option<String>,
    pub password: Option<String>,
}

impl Address for SentinelUrl {
    const SCHEMES: &'static [&'static str] = &["redis+sentinel://"];
    const NAME: &'static str = "redis-sentinel";
    const KIND: StoreKind = StoreKind::Redis;
    type Store = RedisStore;

    fn parse(text: &str) -> Result<SentinelUrl, UrlError> {
        const EXPECTED: &str =
            "expected redis+sentinel://[user:pass@]host:port[,host:port…]/MASTER_NAME";
        let error = |reason: String| UrlError::new(text, reason);
        let rest = text.strip_prefix("redis+sentinel://").unwrap_or(text);
        let Some((hosts, master)) = rest.split_once('/') else {
            return Err(error(format!("{EXPECTED}; the master's name is missing")));
        };
        if master.is_empty() || master.contains(['/', '?', '#']) {
            return Err(error(format!(
                "{EXPECTED}; `{master}` is no master name (no options are taken)"
            )));
        }
        // The host list reads as a cluster's; its node URLs give back each host and port.
        let nodes = parse_cluster(hosts, "redis")
            .map_err(|e| error(e.replace("redis+cluster", "redis+sentinel")))?;
        let mut sentinels = Vec::new();
        for node in nodes {
            let address = node
                .rsplit_once('@')
                .map_or(&node["redis://".len()..], |(_, a)| a);
            let (host, port) = address.rsplit_once(':').unwrap_or((address, ""));
            let host = host.trim_start_matches('[').trim_end_matches(']');
            sentinels.push((host.to_owned(), port.parse().unwrap_or(26379)));
        }
        let decode = |s: &str| percent_decode_str(s).decode_utf8_lossy().into_owned();
        let (username, password) = match hosts.rsplit_once('@') {
            Some((userinfo, _)) => match userinfo.split_once(':') {
                Some((user, pass)) => (
                    Some(decode(user)).filter(|u| !u.is_empty()),
                    Some(decode(pass)),
                ),
                None => (Some(decode(userinfo)), None),
            },
            None => (None, None),
        };
        Ok(SentinelUrl {
            url: text.to_owned(),
            sentinels,
            master: decode(master),
            username,
            password,
        })
    }

    async fn connect(&self, _role: Role) -> Result<RedisStore, StoreError> {
        let redacted = redact(&self.url);
        let error = |e: RedisError| StoreError {
            kind: "redis-sentinel",
            ..super::store_error(&redacted, &e)
        };
        let sentinels = self
            .sentinels
            .iter()
            .map(|(host, port)| ConnectionAddr::Tcp(host.clone(), *port));
        let mut builder =
            SentinelClientBuilder::new(sentinels, &self.master, SentinelServerType::Master)
                .map_err(error)?;
        if let Some(username) = &self.username {
            builder = builder.set_client_to_redis_username(username);
        }
        if let Some(password) = &self.password {
            builder = builder.set_client_to_redis_password(password);
        }
        let connection = SentinelConnection {
            inner: Arc::new(Inner {
                sentinel: tokio::sync::Mutex::new(builder.build().map_err(error)?),
                current: Mutex::new(None),
                replicated: AtomicBool::new(false),
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
        let client = sentinel.async_get_client().await?;
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
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The sentinels, the master's name and its (decoded) credentials come apart.
    #[test]
    fn parses_sentinel_urls() {
        let url = SentinelUrl::parse("redis+sentinel://app:s%40cret@10.0.0.1:26379,s2:26380/cache")
            .unwrap();
        assert_eq!(
            url.sentinels,
            [("10.0.0.1".to_owned(), 26379), ("s2".to_owned(), 26380)]
        );
        assert_eq!(url.master, "cache");
        assert_eq!(url.username.as_deref(), Some("app"));
        assert_eq!(url.password.as_deref(), Some("s@cret"));
        for bad in [
            "redis+sentinel://a:26379",
            "redis+sentinel://a:26379/",
            "redis+sentinel://a/cache",
            "redis+sentinel://a:26379/cache?db=1",
        ] {
            assert!(SentinelUrl::parse(bad).is_err(), "{bad}");
        }
    }
}
