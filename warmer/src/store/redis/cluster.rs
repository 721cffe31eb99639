//! Redis Cluster: the crate's async cluster connection, one pipeline per primary per batch.
//!
//! The crate routes a pipeline by its first key and refuses one whose keys span slots
//! (`route_for_pipeline`: CrossSlot), and a batch of manifest keys spans nearly as many slots
//! as it has keys; one request per key would leave the pipelining to chance. So each batch is
//! split by the primary that owns each key's slot (the slot owners come from `CLUSTER SLOTS`,
//! the slots from the crate's `Slot::for_key`), each primary's share goes out as one pipeline
//! (`route_pipeline`, routed by a slot of that share), all primaries at once, and the replies
//! are put back in the batch's order. The commands and the reading of their replies are the
//! single server's (`super`).
//!
//! Redirects: the crate follows a MOVED or ASK by resending the whole pipeline to the node
//! named, which is right for one slot and wrong for a pipeline that spans several (the other
//! slots answer MOVED back, until the crate gives up). So when a primary's pipeline ends in a
//! redirect, the slot owners are read again and that share is resent one command at a time,
//! each routed and redirected by the crate on its own. A write replayed that way can find the
//! key already there from the crate's attempts and count it as present: undo then keeps it, the
//! safe side of the error.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use redis::aio::ConnectionLike;
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{
    MultipleNodeRoutingInfo, Route, RoutingInfo, SingleNodeRoutingInfo, Slot, SlotAddr,
};
use redis::{ErrorKind, Pipeline, RedisError, RedisResult, Value};
use schemas::report::HitCounters;

use super::{
    DELETE_IF_EQUAL, counter, dump_candidates, dumped, exists, fetched, hit_counters, parse_info,
    push_delete_if_equal, push_dump, push_fetch, push_write, settle_undo, undo_candidates,
    write_outcome,
};
use crate::store::tls::{TlsOptions, install_crypto_provider};
use crate::store::{
    CALL_TIMEOUT, CONNECT_TIMEOUT, CacheStore, Fetched, StoreError, UndoOutcome, WriteItem,
    WriteMode, WriteOutcome, redact,
};

/// Which primary owns each slot, as an index into the primaries listed by `CLUSTER SLOTS`.
/// Keyed by the crate's `Slot`, which keeps its number to itself (`Slot::new` and
/// `Slot::for_key` make one, nothing reads it back), so that keys are hashed by the crate.
#[derive(Debug, Default)]
struct SlotOwners {
    owner: HashMap<Slot, usize>,
    primaries: usize,
}

#[derive(Clone)]
pub struct RedisClusterStore {
    url: String,
    connection: ClusterConnection,
    owners: Arc<RwLock<Arc<SlotOwners>>>,
}

impl std::fmt::Debug for RedisClusterStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisClusterStore")
            .field("url", &self.url)
            .finish()
    }
}

impl RedisClusterStore {
    /// Connects through the seed `nodes` (`redis[s]://…` URLs), over TLS with `tls`, and reads
    /// the slot owners; `url` is the cluster's address as given, for messages.
    pub async fn connect(
        url: &str,
        nodes: &[String],
        tls: Option<&TlsOptions>,
    ) -> Result<RedisClusterStore, StoreError> {
        let redacted = redact(url);
        let error = |e: RedisError| cluster_error(&redacted, e);
        let mut builder = ClusterClientBuilder::new(nodes.iter().map(String::as_str))
            .connection_timeout(CONNECT_TIMEOUT)
            .response_timeout(CALL_TIMEOUT);
        if let Some(tls) = tls {
            install_crypto_provider();
            tls.warn_if_insecure(&redacted);
            let certificates = tls.redis_certificates().map_err(|message| StoreError {
                kind: "redis-cluster",
                url: redacted.clone(),
                message,
                transient: false,
            })?;
            if let Some(certificates) = certificates {
                builder = builder.certs(certificates);
            }
            // Set after `certs`, which makes the mode `Secure` when none is set yet.
            builder = builder.tls(if tls.insecure {
                redis::TlsMode::Insecure
            } else {
                redis::TlsMode::Secure
            });
        }
        let client = builder.build().map_err(error)?;
        let connection = client.get_async_connection().await.map_err(error)?;
        let store = RedisClusterStore {
            url: redacted,
            connection,
            owners: Arc::default(),
        };
        store.refresh_owners().await?;
        Ok(store)
    }

    fn error(&self, e: RedisError) -> StoreError {
        cluster_error(&self.url, e)
    }

    /// Reads `CLUSTER SLOTS` from any node: each range's primary is its first node, known by
    /// its endpoint, port and id (endpoints alone can repeat: `?` when a node has none).
    async fn refresh_owners(&self) -> Result<(), StoreError> {
        let mut connection = self.connection.clone();
        let mut command = redis::cmd("CLUSTER");
        command.arg("SLOTS");
        let reply = connection
            .route_command(
                command,
                RoutingInfo::SingleNode(SingleNodeRoutingInfo::Random),
            )
            .await
            .map_err(|e| self.error(e))?;
        let unexpected = || StoreError {
            kind: "redis-cluster",
            url: self.url.clone(),
            message: format!("unexpected CLUSTER SLOTS reply {reply:?}"),
            transient: false,
        };
        let Value::Array(ranges) = &reply else {
            return Err(unexpected());
        };
        let mut primaries: Vec<&[Value]> = Vec::new();
        let mut owner = HashMap::new();
        for range in ranges {
            let Value::Array(range) = range else {
                return Err(unexpected());
            };
            let (Some(Value::Int(start)), Some(Value::Int(end)), Some(Value::Array(primary))) =
                (range.first(), range.get(1), range.get(2))
            else {
                return Err(unexpected());
            };
            let node = &primary[..primary.len().min(3)];
            if node.len() < 2 {
                return Err(unexpected());
            }
            let index = match primaries.iter().position(|p| *p == node) {
                Some(index) => index,
                None => {
                    primaries.push(node);
                    primaries.len() - 1
                }
            };
            for slot in *start..=*end {
                let slot = u16::try_from(slot).ok().and_then(Slot::new);
                owner.insert(slot.ok_or_else(unexpected)?, index);
            }
        }
        let owners = SlotOwners {
            owner,
            primaries: primaries.len(),
        };
        *self.owners.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(owners);
        Ok(())
    }

    /// Sends the commands `push` adds for each key (`per_key` commands on `keys[i]` for index
    /// `i`) as one pipeline per primary, all at once; returns the replies in the batch's order,
    /// as a single server's pipeline would.
    async fn pipeline(
        &self,
        keys: &[&str],
        per_key: usize,
        push: impl Fn(&mut Pipeline, usize),
    ) -> Result<Vec<RedisResult<Value>>, StoreError> {
        let owners = Arc::clone(&self.owners.read().unwrap_or_else(|e| e.into_inner()));
        // One share per primary, and one for keys of a slot no primary owns (the crate routes
        // it, and the cluster answers with its error).
        let mut shares: Vec<Vec<usize>> = vec![Vec::new(); owners.primaries + 1];
        for (i, key) in keys.iter().enumerate() {
            let owner = owners.owner.get(&Slot::for_key(key));
            shares[owner.copied().unwrap_or(owners.primaries)].push(i);
        }
        let mut sent = tokio::task::JoinSet::new();
        for (index, share) in shares.iter().enumerate() {
            let Some(&first) = share.first() else {
                continue;
            };
            let mut pipe = redis::pipe();
            for &i in share {
                push(&mut pipe, i);
            }
            let route =
                SingleNodeRoutingInfo::SpecificNode(Route::with_key(keys[first], SlotAddr::Master));
            let mut connection = self.connection.clone();
            sent.spawn(async move {
                let count = pipe.len();
                let replies = connection.route_pipeline(pipe, 0, count, route).await;
                (index, replies)
            });
        }
        let mut replies: Vec<RedisResult<Value>> =
            (0..keys.len() * per_key).map(|_| Ok(Value::Nil)).collect();
        let mut redirected = Vec::new();
        while let Some(done) = sent.join_next().await {
            let (index, result) = done.expect("a pipeline task does not panic");
            match result {
                Ok(values) if values.len() == shares[index].len() * per_key => {
                    let mut values = values.into_iter();
                    for &i in &shares[index] {
                        for reply in &mut replies[i * per_key..(i + 1) * per_key] {
                            *reply = values.next().map_or(Ok(Value::Nil), Value::extract_error);
                        }
                    }
                }
                Ok(values) => {
                    return Err(StoreError {
                        kind: "redis-cluster",
                        url: self.url.clone(),
                        message: format!(
                            "{} replies to a pipeline of {} commands",
                            values.len(),
                            shares[index].len() * per_key
                        ),
                        transient: false,
                    });
                }
                Err(e) if e.redirect_node().is_some() => redirected.push(index),
                Err(e) => return Err(self.error(e)),
            }
        }
        if !redirected.is_empty() {
            self.refresh_owners().await?;
            let resend: Vec<usize> = redirected
                .into_iter()
                .flat_map(|index| shares[index].iter().copied())
                .collect();
            let mut pipe = redis::pipe();
            for &i in &resend {
                push(&mut pipe, i);
            }
            let mut resent = self.one_by_one(&pipe).await?.into_iter();
            for i in resend {
                for reply in &mut replies[i * per_key..(i + 1) * per_key] {
                    *reply = resent.next().unwrap_or(Ok(Value::Nil));
                }
            }
        }
        Ok(replies)
    }

    /// The commands of `pipe`, each routed and redirected by the crate on its own, all at once.
    async fn one_by_one(&self, pipe: &Pipeline) -> Result<Vec<RedisResult<Value>>, StoreError> {
        let mut sent = tokio::task::JoinSet::new();
        for (index, command) in pipe.cmd_iter().enumerate() {
            let command = command.clone();
            let mut connection = self.connection.clone();
            sent.spawn(async move {
                let reply = connection.req_packed_command(&command).await;
                (index, reply.and_then(Value::extract_error))
            });
        }
        let mut replies: Vec<RedisResult<Value>> =
            (0..pipe.len()).map(|_| Ok(Value::Nil)).collect();
        while let Some(done) = sent.join_next().await {
            let (index, reply) = done.expect("a command task does not panic");
            // A server's answer to this one command (WRONGTYPE, a value too large) is that
            // command's outcome; anything else (the connection, a redirect the crate could not
            // follow) fails the batch, as it would on a single server.
            replies[index] = match reply {
                Err(e) if !matches!(e.kind(), ErrorKind::Server(_)) || e.is_cluster_error() => {
                    return Err(self.error(e));
                }
                reply => reply,
            };
        }
        Ok(replies)
    }

    /// One INFO section of every primary (the crate sends a command routed to all primaries to
    /// each, and answers with a map of node address to reply).
    async fn info(&self, section: &str) -> Result<Vec<HashMap<String, String>>, StoreError> {
        let mut connection = self.connection.clone();
        let reply = connection
            .route_command(
                redis::cmd("INFO").arg(section).clone(),
                RoutingInfo::MultiNode((MultipleNodeRoutingInfo::AllMasters, None)),
            )
            .await
            .map_err(|e| self.error(e))?;
        let Value::Map(by_node) = reply else {
            return Err(StoreError {
                kind: "redis-cluster",
                url: self.url.clone(),
                message: format!("unexpected reply to INFO on every primary: {reply:?}"),
                transient: false,
            });
        };
        by_node
            .into_iter()
            .map(|(_, text)| {
                let text: String = redis::from_redis_value(text.extract_error()?)?;
                Ok(parse_info(&text))
            })
            .collect::<RedisResult<_>>()
            .map_err(|e| self.error(e))
    }
}

impl CacheStore for RedisClusterStore {
    async fn contains(&self, keys: &[&str]) -> Result<Vec<bool>, StoreError> {
        let replies = self
            .pipeline(keys, 1, |pipe, i| {
                pipe.cmd("EXISTS").arg(keys[i]);
            })
            .await?;
        Ok(replies.into_iter().map(exists).collect())
    }

    async fn fetch(&self, keys: &[&str]) -> Result<Vec<Option<Fetched>>, StoreError> {
        let replies = self
            .pipeline(keys, 2, |pipe, i| {
                push_fetch(pipe, keys[i]);
            })
            .await?;
        let (mut fetched, others) = fetched(replies);
        if !others.is_empty() {
            let other_keys: Vec<&str> = others.iter().map(|&i| keys[i]).collect();
            let replies = self
                .pipeline(&other_keys, 2, |pipe, i| push_dump(pipe, other_keys[i]))
                .await?;
            for (i, value) in others.into_iter().zip(dumped(replies)) {
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
        let keys: Vec<&str> = items.iter().map(|item| item.key).collect();
        let replies = self
            .pipeline(&keys, 1, |pipe, i| push_write(pipe, &items[i], mode))
            .await?;
        Ok(replies.into_iter().map(write_outcome).collect())
    }

    /// As on a single server: `GET` each key (`DUMP` for another type), compare its value's
    /// hash, then compare-and-delete
    /// with the value read. The script touches one key, so it runs on that key's primary; a
    /// primary that does not know the script yet (`NOSCRIPT`) gets it through
    /// `Script::invoke_async`, which loads it there.
    async fn delete_if_unchanged(
        &self,
        items: &[(&str, &str)],
    ) -> Result<Vec<UndoOutcome>, StoreError> {
        let keys: Vec<&str> = items.iter().map(|(key, _)| *key).collect();
        let values = self
            .pipeline(&keys, 1, |pipe, i| {
                pipe.cmd("GET").arg(keys[i]);
            })
            .await?;
        let (mut outcomes, mut candidates, others) = undo_candidates(values, items);
        if !others.is_empty() {
            let other_keys: Vec<&str> = others.iter().map(|&i| keys[i]).collect();
            let dumps = self
                .pipeline(&other_keys, 1, |pipe, i| {
                    pipe.cmd("DUMP").arg(other_keys[i]);
                })
                .await?;
            dump_candidates(dumps, &others, items, &mut outcomes, &mut candidates);
        }
        if candidates.is_empty() {
            return Ok(outcomes);
        }
        let candidate_keys: Vec<&str> = candidates.iter().map(|c| keys[c.index]).collect();
        let script = redis::Script::new(DELETE_IF_EQUAL);
        let replies = self
            .pipeline(&candidate_keys, 1, |pipe, c| {
                push_delete_if_equal(pipe, &script, candidate_keys[c], &candidates[c]);
            })
            .await?;
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

    /// `evicted_keys` summed over the primaries.
    async fn evictions(&self) -> Result<Option<u64>, StoreError> {
        let info = self.info("stats").await?;
        Ok(Some(
            info.iter().map(|node| counter(node, "evicted_keys")).sum(),
        ))
    }

    /// `maxmemory` summed over the primaries (a key lives on one of them, so the cluster holds
    /// their sum); none when any primary is unlimited, as the total is then unknown.
    async fn capacity(&self) -> Result<Option<u64>, StoreError> {
        let info = self.info("memory").await?;
        let total: Option<u64> = info
            .iter()
            .map(|node| Some(counter(node, "maxmemory")).filter(|&bytes| bytes > 0))
            .sum();
        Ok(total.filter(|&bytes| bytes > 0))
    }

    /// `used_memory` summed over the primaries.
    async fn used_memory(&self) -> Result<Option<u64>, StoreError> {
        let info = self.info("memory").await?;
        Ok(Some(
            info.iter().map(|node| counter(node, "used_memory")).sum(),
        ))
    }

    /// One `PING` to a node, for the store's latency as a client sees it.
    async fn ping(&self) -> Result<bool, StoreError> {
        let mut connection = self.connection.clone();
        redis::cmd("PING")
            .query_async::<()>(&mut connection)
            .await
            .map_err(|e| self.error(e))?;
        Ok(true)
    }

    /// The primaries' read counters, summed.
    async fn hit_counters(&self) -> Result<Option<HitCounters>, StoreError> {
        let info = self.info("stats").await?;
        Ok(Some(info.iter().map(hit_counters).fold(
            HitCounters { hits: 0, misses: 0 },
            |total, node| HitCounters {
                hits: total.hits + node.hits,
                misses: total.misses + node.misses,
            },
        )))
    }

    /// `fetch` reads each key with `GET` and `PTTL`, and both count as a lookup.
    fn lookups_per_fetch(&self) -> u64 {
        2
    }
}

/// As `store_error` for one server: the same errors are worth a retry (the cluster
/// connection has followed redirects and refreshed slots itself by then).
fn cluster_error(url: &str, e: RedisError) -> StoreError {
    StoreError {
        kind: "redis-cluster",
        ..super::store_error(url, &e)
    }
}
