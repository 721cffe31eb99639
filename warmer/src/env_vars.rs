//! The names of the environment variables the warmer reads, in one place, below every module
//! that reads them (settings, and the stores' messages that name them).

pub const CONFIG: &str = "CACHEWARM_CONFIG";
pub const ENV: &str = "CACHEWARM_ENV";
pub const ENABLED: &str = "CACHEWARM_ENABLED";
pub const MANIFEST: &str = "CACHEWARM_MANIFEST";
pub const SOURCE: &str = "CACHEWARM_SOURCE";
/// Target URLs separated by whitespace (a memcached URL has commas of its own).
pub const TARGETS: &str = "CACHEWARM_TARGETS";
pub const TIMEOUT: &str = "CACHEWARM_TIMEOUT";
pub const CONCURRENCY: &str = "CACHEWARM_CONCURRENCY";
pub const RATE: &str = "CACHEWARM_RATE";
pub const BANDWIDTH: &str = "CACHEWARM_BANDWIDTH";
pub const MAX_FILL: &str = "CACHEWARM_MAX_FILL";
/// Category names separated by commas.
pub const CATEGORIES: &str = "CACHEWARM_CATEGORIES";
pub const BATCH_SIZE: &str = "CACHEWARM_BATCH_SIZE";
pub const MIN_TTL: &str = "CACHEWARM_MIN_TTL";
pub const DEFAULT_TTL: &str = "CACHEWARM_DEFAULT_TTL";
pub const RUNS_DIR: &str = "CACHEWARM_RUNS_DIR";
pub const STRICT: &str = "CACHEWARM_STRICT";
pub const HIGH_WATER: &str = "CACHEWARM_HIGH_WATER";
pub const RETRIES: &str = "CACHEWARM_RETRIES";
pub const LATENCY_MULTIPLE: &str = "CACHEWARM_LATENCY_MULTIPLE";
pub const MEMCACHED_HASHING: &str = "CACHEWARM_MEMCACHED_HASHING";
pub const LOADER_WORKERS: &str = "CACHEWARM_LOADER_WORKERS";
pub const LOADER_TIMEOUT: &str = "CACHEWARM_LOADER_TIMEOUT";
pub const MAX_VALUE_SIZE: &str = "CACHEWARM_MAX_VALUE_SIZE";
/// The password of the source, for a source URL that gives none itself (see
/// `store::secret`).
pub const SOURCE_PASSWORD: &str = "CACHEWARM_SOURCE_PASSWORD";
/// The password of every target whose URL gives none itself; a target with a password of its
/// own names its variable: `?password_env=CACHEWARM_…`.
pub const TARGET_PASSWORD: &str = "CACHEWARM_TARGET_PASSWORD";
/// The secret of the keyed hash that stands in for sensitive keys in reports and logs
/// (default: the runs directory's `key-hash.secret`; see `rundir::mask`).
pub const KEY_HASH_SECRET: &str = "CACHEWARM_KEY_HASH_SECRET";
/// The shard this warmer takes, `index/count`.
pub const SHARD: &str = "CACHEWARM_SHARD";
/// How many shards; the index then comes from [`JOB_COMPLETION_INDEX`].
pub const SHARDS: &str = "CACHEWARM_SHARDS";
/// The pod's index in a Kubernetes indexed Job (`completionMode: Indexed`), from 0: the shard's
/// index when a number of shards is given.
pub const JOB_COMPLETION_INDEX: &str = "JOB_COMPLETION_INDEX";
/// libpq's variable for the PostgreSQL password, read by the `postgres://` store when the URL
/// gives none (so that it need not be in the process list).
pub const PGPASSWORD: &str = "PGPASSWORD";
