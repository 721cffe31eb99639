//! Redis: one multiplexed connection, one pipeline per batch.
//!
//! Add is `SET key value NX PX ttl` (replace drops `NX`); a source read is `GET` + `PTTL`.

use std::collections::HashMap;

use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, RedisResult, Value};
use schemas::report::HitCounters;

use super::{
    CALL_TIMEOUT, CONNECT_TIMEOUT, Fetched, StoreError, UndoOutcome, WriteItem, WriteOutcome,
    duration_from_millis, redact, value_hash,
};

/// Compare-and-delete: deletes KEYS[1] only if it holds exactly ARGV[1]. Returns 1 when
/// deleted, 0 when the key holds another value, -1 when it is gone.
const DELETE_IF_EQUAL: &str = r"
local current = redis.call('GET', KEYS[1])
if not current then return -1 end
if current == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
";

#[derive(Clone)]
pub struct RedisStore {
    url: String,
    connection: MultiplexedConnection,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("url", &self.url)
            .finish()
    }
}

impl RedisStore {
    pub async fn connect(url: &str) -> Result<RedisStore, StoreError> {
        let redacted = redact(url);
        let error = |e: redis::RedisError| StoreError {
            kind: "redis",
            url: redacted.clone(),
            message: e.to_string(),
        };
        let client = redis::Client::open(url).map_err(error)?;
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(CALL_TIMEOUT));
        let connection = client
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .map_err(error)?;
        Ok(RedisStore {
            url: redacted,
            connection,
        })
    }

    fn error(&self, e: redis::RedisError) -> StoreError {
        StoreError {
            kind: "redis",
            url: self.url.clone(),
            message: e.to_string(),
        }
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

    pub async fn contains(&self, keys: &[&str]) -> Result<Vec<bool>, StoreError> {
        let mut pipe = redis::pipe();
        pipe.ignore_errors();
        for key in keys {
            pipe.cmd("EXISTS").arg(*key);
        }
        let replies = self.pipeline(&pipe).await?;
        Ok(replies
            .into_iter()
            .map(|reply| matches!(reply, Ok(Value::Int(n)) if n > 0))
            .collect())
    }

    /// `GET` + `PTTL` per key. (One `MGET` for the batch's values plus a `PTTL` per key halves
    /// the replica's commands, but measured slower end to end, with 100 B and 2 KiB values
    /// alike: docs/benchmarks.md.)
    pub async fn fetch(&self, keys: &[&str]) -> Result<Vec<Option<Fetched>>, StoreError> {
        let mut pipe = redis::Pipeline::with_capacity(keys.len() * 2);
        pipe.ignore_errors();
        for key in keys {
            // Sized buffers, as in `write`.
            for name in ["GET", "PTTL"] {
                let mut command = redis::Cmd::with_capacity(2, key.len() + 4);
                command.arg(name).arg(*key);
                pipe.add_command(command);
            }
        }
        let replies = self.pipeline(&pipe).await?;
        let mut fetched = Vec::with_capacity(keys.len());
        let mut replies = replies.into_iter();
        while let (Some(value), Some(pttl)) = (replies.next(), replies.next()) {
            // A key that is not a string (a hash, say) answers GET with WRONGTYPE: not a value
            // the warmer can copy, so it counts as a miss.
            fetched.push(match (value, pttl) {
                (Ok(Value::BulkString(value)), Ok(Value::Int(pttl))) if pttl != -2 => {
                    Some(Fetched {
                        value,
                        ttl: duration_from_millis(pttl),
                    })
                }
                _ => None,
            });
        }
        Ok(fetched)
    }

    pub async fn write(
        &self,
        items: &[WriteItem<'_>],
        overwrite: bool,
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
            let millis = u64::try_from(item.ttl.as_millis())
                .unwrap_or(u64::MAX)
                .max(1);
            let mut command = redis::Cmd::with_capacity(6, item.key.len() + item.value.len() + 30);
            command.arg("SET").arg(item.key).arg(item.value);
            if !overwrite {
                command.arg("NX");
            }
            command.arg("PX").arg(millis);
            pipe.add_command(command);
        }
        let replies = self.pipeline(&pipe).await?;
        Ok(replies
            .into_iter()
            .map(|reply| match reply {
                Ok(Value::Okay) => WriteOutcome::Written,
                Ok(Value::SimpleString(s)) if s == "OK" => WriteOutcome::Written,
                Ok(Value::Nil) => WriteOutcome::AlreadyPresent,
                Ok(other) => WriteOutcome::Refused(format!("unexpected reply {other:?}")),
                Err(e) => WriteOutcome::Refused(e.to_string()),
            })
            .collect())
    }

    /// `GET` each key, compare its value's hash, then run [`DELETE_IF_EQUAL`] with the value
    /// read, pipelined by its SHA (`EVALSHA`); a server that does not know the script yet gets
    /// it through `Script::invoke_async`, which loads it.
    pub async fn delete_if_unchanged(
        &self,
        items: &[(&str, &str)],
    ) -> Result<Vec<UndoOutcome>, StoreError> {
        let keys: Vec<&str> = items.iter().map(|(key, _)| *key).collect();
        let mut pipe = redis::pipe();
        pipe.ignore_errors();
        for key in &keys {
            pipe.cmd("GET").arg(*key);
        }
        let values = self.pipeline(&pipe).await?;
        let mut outcomes = vec![UndoOutcome::Missing; items.len()];
        let mut candidates = Vec::new();
        for (i, (value, (_, hash))) in values.into_iter().zip(items).enumerate() {
            match value {
                Ok(Value::BulkString(value)) if value_hash(&value) == *hash => {
                    candidates.push((i, value));
                }
                Ok(Value::Nil) => {}
                _ => outcomes[i] = UndoOutcome::Changed,
            }
        }
        if candidates.is_empty() {
            return Ok(outcomes);
        }
        let script = redis::Script::new(DELETE_IF_EQUAL);
        let mut pipe = redis::pipe();
        pipe.ignore_errors();
        for (i, value) in &candidates {
            pipe.cmd("EVALSHA")
                .arg(script.get_hash())
                .arg(1)
                .arg(items[*i].0)
                .arg(value.as_slice());
        }
        let replies = self.pipeline(&pipe).await?;
        for ((i, value), reply) in candidates.iter().zip(replies) {
            let reply = match reply {
                Ok(reply) => reply,
                Err(e)
                    if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) =>
                {
                    let mut connection = self.connection.clone();
                    script
                        .key(items[*i].0)
                        .arg(value.as_slice())
                        .invoke_async(&mut connection)
                        .await
                        .map_err(|e| self.error(e))?
                }
                Err(e) => return Err(self.error(e)),
            };
            outcomes[*i] = match reply {
                Value::Int(1) => UndoOutcome::Deleted,
                Value::Int(0) => UndoOutcome::Changed,
                _ => UndoOutcome::Missing,
            };
        }
        Ok(outcomes)
    }

    /// `evicted_keys` from INFO stats.
    pub async fn evictions(&self) -> Result<u64, StoreError> {
        let info = self.info("stats").await?;
        Ok(info
            .get("evicted_keys")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0))
    }

    async fn info(&self, section: &str) -> Result<HashMap<String, String>, StoreError> {
        let mut connection = self.connection.clone();
        let text: String = redis::cmd("INFO")
            .arg(section)
            .query_async(&mut connection)
            .await
            .map_err(|e| self.error(e))?;
        Ok(text
            .lines()
            .filter_map(|line| line.split_once(':'))
            .map(|(name, value)| (name.to_owned(), value.trim().to_owned()))
            .collect())
    }

    /// `maxmemory` from INFO (readable where CONFIG is disabled); none when unlimited.
    pub async fn capacity(&self) -> Result<Option<u64>, StoreError> {
        let info = self.info("memory").await?;
        Ok(info
            .get("maxmemory")
            .and_then(|v| v.parse::<u64>().ok())
            .filter(|&bytes| bytes > 0))
    }

    pub async fn hit_counters(&self) -> Result<HitCounters, StoreError> {
        let info = self.info("stats").await?;
        let counter = |name: &str| info.get(name).and_then(|v| v.parse().ok()).unwrap_or(0);
        Ok(HitCounters {
            hits: counter("keyspace_hits"),
            misses: counter("keyspace_misses"),
        })
    }
}
