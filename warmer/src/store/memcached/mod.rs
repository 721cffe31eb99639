//! Memcached through the `memcache` crate's meta-protocol client, which pipelines each batch
//! per server and routes keys across servers.
//!
//! Add is `ms <key> <size> T<ttl> F<flags> ME` (add mode), sent in quiet mode by [`quiet`] (see
//! there why not through the crate); a source read is `mg <key> v t f`. The client flags go
//! with every value: they tell the application's client how to decode it (pymemcache and
//! Django: 1 pickled, 2 int, 16 text; pylibmc: 1 pickled, 2 int, 4 long, 8 zlib; Dalli: 1
//! Marshal, 2 compressed), so an item copied without them reads back as other bytes.
//!
//! With several servers, keys are routed by [`route::AppRouter`] as the application's own
//! client routes them (`hashing` in the URL or the config), for every operation: writes (the
//! quiet path shares the router), source reads, coverage probes and `warmer undo`.

mod route;

mod quiet;
mod tls;
mod url;

use std::sync::Arc;
use std::time::Duration;

use memcache::exp::{AsyncMetaClient, Delete, Get, Meta, MutationStatus, Router, Set, Ttl};
use schemas::report::HitCounters;

use super::{
    CALL_TIMEOUT, CONNECT_TIMEOUT, CacheStore, Fetched, StoreError, UndoOutcome, ValueEncoding,
    WriteItem, WriteMode, WriteOutcome, item_hash,
};

use super::tls::TlsOptions;
use route::AppRouter;
pub use route::{Hashing, ServerName};
pub use url::{MemcachedUrl, with_default_hashing};

pub struct MemcachedStore {
    url: String,
    /// What the clients dial, per server: the server, or its end of the TLS bridge.
    servers: Vec<String>,
    /// Kept open while the store is (`memcached+tls://`).
    _bridge: Option<tls::TlsBridge>,
    client: AsyncMetaClient,
    /// The add path's connections, routed like `client` (see [`quiet`]).
    quiet: Box<quiet::QuietWriter>,
}

/// The store's router, shared by the crate's client and the quiet add path.
struct SharedRouter(Arc<dyn Router>);

impl Router for SharedRouter {
    fn route(&self, key: &[u8], servers: &[String]) -> usize {
        self.0.route(key, servers)
    }
}

impl std::fmt::Debug for MemcachedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemcachedStore")
            .field("url", &self.url)
            .finish()
    }
}

impl MemcachedStore {
    /// `hashing` may be `None` only with one server (the URL parser refuses the rest first);
    /// over TLS with `tls`.
    pub async fn connect(
        servers: &[String],
        hashing: Option<Hashing>,
        tls: Option<&TlsOptions>,
    ) -> Result<MemcachedStore, StoreError> {
        let scheme = if tls.is_some() {
            "memcached+tls"
        } else {
            "memcached"
        };
        let url = match hashing {
            Some(hashing) if servers.len() > 1 => {
                format!("{scheme}://{}?hashing={hashing}", servers.join(","))
            }
            _ => format!("{scheme}://{}", servers.join(",")),
        };
        let store_error = |message: String| StoreError {
            kind: "memcached",
            url: url.clone(),
            message,
            transient: false,
        };
        // A connection that fails may work on the next try; a bad server name never will.
        let error = |e: memcache::exp::Error| StoreError {
            transient: true,
            ..store_error(e.to_string())
        };
        let names = servers
            .iter()
            .map(|server| ServerName::parse(server))
            .collect::<Result<Vec<_>, _>>()
            .map_err(store_error)?;
        let hashing = match hashing {
            Some(hashing) => hashing,
            // One server needs no scheme: every library sends every key to it.
            None if names.len() == 1 => Hashing::Ketama,
            None => {
                return Err(store_error(
                    "several servers need a `hashing` choice".into(),
                ));
            }
        };
        let router: Arc<dyn Router> = Arc::new(AppRouter::new(hashing, &names));
        let bridge = match tls {
            Some(tls) => {
                tls.warn_if_insecure(&url);
                let config = tls.rustls_config().map_err(store_error)?;
                let bridge = tls::open(&names, config)
                    .await
                    .map_err(|(message, transient)| StoreError {
                        transient,
                        ..store_error(message)
                    })?;
                Some(bridge)
            }
            None => None,
        };
        let servers = match &bridge {
            Some(bridge) => bridge.addresses.clone(),
            None => servers.to_vec(),
        };
        let client = AsyncMetaClient::builder()
            .router(SharedRouter(Arc::clone(&router)))
            .connect_timeout(Some(CONNECT_TIMEOUT))
            .io_timeout(Some(CALL_TIMEOUT))
            .connect_multiple_async(servers.iter().map(String::as_str))
            .await
            .map_err(error)?;
        // Connections are dialed lazily: ask every server now so a down one fails here.
        client.noop().await.map_err(error)?;
        Ok(MemcachedStore {
            url,
            quiet: Box::new(quiet::QuietWriter::new(&servers, router)),
            servers,
            _bridge: bridge,
            client,
        })
    }

    /// A whole-call failure: with memcached that is the connection (a refused write comes
    /// back per key), so it is worth retrying.
    fn error(&self, message: impl ToString) -> StoreError {
        StoreError {
            kind: "memcached",
            url: self.url.clone(),
            message: message.to_string(),
            transient: true,
        }
    }

    /// The add path: quiet meta sets (see [`quiet`]). Keys an error line may belong to are
    /// looked up: absent, the error was theirs; present, the add stored them.
    async fn add(&self, items: &[WriteItem<'_>]) -> Result<Vec<WriteOutcome>, StoreError> {
        let quiet::AddResult {
            mut outcomes,
            uncertain,
            broken,
        } = self.quiet.add(items).await;
        if let Some(reason) = broken {
            // A whole-call failure, retried by the run (see `run::faults`).
            return Err(self.error(reason));
        }
        for (indexes, message) in uncertain {
            let keys: Vec<&str> = indexes.iter().map(|&i| items[i].key).collect();
            let present = self.contains(&keys).await?;
            for (i, present) in indexes.into_iter().zip(present) {
                if !present {
                    outcomes[i] = WriteOutcome::Refused(message.clone());
                }
            }
        }
        Ok(outcomes)
    }

    /// Reads `stats` from every server with the crate's classic client (the meta client has
    /// no stats verb). Blocking, so it runs off the async workers.
    async fn stats(&self) -> Result<Vec<std::collections::HashMap<String, String>>, StoreError> {
        let urls: Vec<String> = self
            .servers
            .iter()
            .map(|server| format!("memcache://{server}"))
            .collect();
        let stats = tokio::task::spawn_blocking(move || {
            memcache::Client::connect(urls).and_then(|client| client.stats())
        })
        .await
        .map_err(|e| self.error(e))?
        .map_err(|e| self.error(e))?;
        Ok(stats.into_iter().map(|(_, stats)| stats).collect())
    }
}

impl CacheStore for MemcachedStore {
    async fn contains(&self, keys: &[&str]) -> Result<Vec<bool>, StoreError> {
        let results = self
            .client
            .run_many(keys.iter().map(|key| Get::new(key).without_value()))
            .await
            .map_err(|e| self.error(e))?;
        Ok(results
            .into_iter()
            .map(|result| result.is_ok_and(|r| r.hit()))
            .collect())
    }

    async fn fetch(&self, keys: &[&str]) -> Result<Vec<Option<Fetched>>, StoreError> {
        let results = self
            .client
            .run_many(keys.iter().map(|key| Get::new(key).meta(Meta::NONE.ttl())))
            .await
            .map_err(|e| self.error(e))?;
        Ok(results
            .into_iter()
            .map(|result| {
                let result = result.ok().filter(|r| r.hit())?;
                let value = result.value?;
                let ttl = result
                    .item
                    .ttl
                    .and_then(|secs| u64::try_from(secs).ok())
                    .map(Duration::from_secs);
                Some(Fetched {
                    value,
                    ttl,
                    // The flags say how the application's client decodes the bytes (pickle,
                    // int, Marshal): a copy without them hands the app raw bytes.
                    flags: result.client_flags.unwrap_or(0),
                    encoding: ValueEncoding::Raw,
                })
            })
            .collect())
    }

    async fn write(
        &self,
        items: &[WriteItem<'_>],
        mode: WriteMode,
    ) -> Result<Vec<WriteOutcome>, StoreError> {
        if mode == WriteMode::Add {
            return self.add(items).await;
        }
        let sets = items.iter().map(|item| {
            let secs = u32::try_from(item.ttl.as_secs()).unwrap_or(u32::MAX).max(1);
            Set::new(item.key, item.value)
                .ttl(Ttl::secs(secs))
                .client_flags(item.flags)
        });
        let results = self
            .client
            .run_many(sets)
            .await
            .map_err(|e| self.error(e))?;
        Ok(results
            .into_iter()
            .map(|result| match result {
                Ok(r) if r.status == MutationStatus::Applied => WriteOutcome::Written,
                Ok(r) if r.status == MutationStatus::AlreadyExists => WriteOutcome::AlreadyPresent,
                Ok(r) => WriteOutcome::Refused(format!("not stored: {:?}", r.status)),
                Err(e) => WriteOutcome::Refused(e.to_string()),
            })
            .collect())
    }

    /// `mg <key> v f c` for the value, its flags and its CAS; where their hash matches
    /// ([`item_hash`]: a rewrite with other flags is a change), `md <key> C<cas>`, which
    /// deletes only if nothing changed the item since it was read.
    async fn delete_if_unchanged(
        &self,
        items: &[(&str, &str)],
    ) -> Result<Vec<UndoOutcome>, StoreError> {
        let results = self
            .client
            .run_many(
                items
                    .iter()
                    .map(|(key, _)| Get::new(key).meta(Meta::NONE.cas())),
            )
            .await
            .map_err(|e| self.error(e))?;
        let mut outcomes = vec![UndoOutcome::Missing; items.len()];
        let mut deletes = Vec::new();
        for (i, (result, (key, hash))) in results.into_iter().zip(items).enumerate() {
            let Some(result) = result.ok().filter(|r| r.hit()) else {
                continue;
            };
            match (result.value, result.item.cas) {
                (Some(value), Some(cas))
                    if item_hash(&value, result.client_flags.unwrap_or(0)) == *hash =>
                {
                    deletes.push((i, Delete::new(key).compare_cas(cas)));
                }
                _ => outcomes[i] = UndoOutcome::Changed,
            }
        }
        let (indexes, deletes): (Vec<usize>, Vec<Delete>) = deletes.into_iter().unzip();
        let results = self
            .client
            .run_many(deletes)
            .await
            .map_err(|e| self.error(e))?;
        for (i, result) in indexes.into_iter().zip(results) {
            outcomes[i] = match result {
                Ok(r) if r.status == MutationStatus::Applied => UndoOutcome::Deleted,
                Ok(r) if r.status == MutationStatus::NotFound => UndoOutcome::Missing,
                _ => UndoOutcome::Changed,
            };
        }
        Ok(outcomes)
    }

    /// `evictions` summed over the servers.
    async fn evictions(&self) -> Result<Option<u64>, StoreError> {
        let stats = self.stats().await?;
        Ok(Some(sum(&stats, "evictions")))
    }

    /// The sum of `limit_maxbytes` over the servers.
    async fn capacity(&self) -> Result<Option<u64>, StoreError> {
        let stats = self.stats().await?;
        Ok(Some(sum(&stats, "limit_maxbytes")).filter(|&bytes| bytes > 0))
    }

    /// The sum of `bytes` (what the items take) over the servers.
    async fn used_memory(&self) -> Result<Option<u64>, StoreError> {
        let stats = self.stats().await?;
        Ok(Some(sum(&stats, "bytes")))
    }

    /// One `mn` to every server, for the store's latency as a client sees it.
    async fn ping(&self) -> Result<bool, StoreError> {
        self.client.noop().await.map_err(|e| self.error(e))?;
        Ok(true)
    }

    async fn hit_counters(&self) -> Result<Option<HitCounters>, StoreError> {
        let stats = self.stats().await?;
        Ok(Some(HitCounters {
            hits: sum(&stats, "get_hits"),
            misses: sum(&stats, "get_misses"),
        }))
    }
}

fn sum(stats: &[std::collections::HashMap<String, String>], name: &str) -> u64 {
    stats
        .iter()
        .filter_map(|server| server.get(name)?.parse::<u64>().ok())
        .sum()
}
