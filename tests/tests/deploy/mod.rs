//! `warmer run` in a deploy, on real servers: killed and resumed, stopped by SIGTERM and
//! resumed, undone, switched off by the environment profile, detached and watched with
//! `warmer status`, a target that dies mid-run or restarts, stores that evict, and stores with
//! little memory (max_fill and the high-water mark).

// A failed step should stop the test where it failed.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use cachewarm_tests::{
    MemcachedServer, RedisServer, Rng, app_keys, check_exit, ingest_and_rank, report_of, run_args,
    warmer_command,
};
use memcache::exp::{Get, Meta};
use redis::Commands;
use schemas::Checkpoint;
use schemas::report::Outcome;

mod coverage;
mod faults;
mod lifecycle;
mod limits;
mod throttle;
mod undo;

/// The longest a test waits for a background run before it gives up (a bound against hanging,
/// not a timing assertion).
const PATIENCE: Duration = Duration::from_secs(120);

fn value_for(key: &str) -> String {
    format!(
        "{{\"key\":\"{key}\",\"data\":\"{}\"}}",
        "v".repeat(40 + key.len() % 90)
    )
}

/// A deploy's setting: a replica holding a value for every key, and a manifest of those keys.
struct Setup {
    dir: tempfile::TempDir,
    replica: RedisServer,
    manifest: schemas::Manifest,
    manifest_path: String,
}

impl Setup {
    /// `keys` keys, each read a few times in a canonical access log, ranked into a manifest
    /// that takes them all; the replica holds each one's value with an hour to live.
    fn new(keys: usize) -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let keys = app_keys(keys);
        let log = dir.path().join("access.jsonl");
        let mut out = std::io::BufWriter::new(std::fs::File::create(&log).unwrap());
        for (i, key) in keys.iter().enumerate() {
            for read in 0..2 + (keys.len() - i) % 7 {
                let ts = 1_763_700_000.0 + i as f64 + read as f64 * 0.001;
                writeln!(
                    out,
                    r#"{{"ts": {ts:.3}, "key": {}, "op": "get", "hit": true, "value_size": {}}}"#,
                    serde_json::to_string(key).unwrap(),
                    value_for(key).len()
                )
                .unwrap();
            }
        }
        out.flush().unwrap();
        drop(out);
        let (_, manifest_path) = ingest_and_rank(dir.path(), &log, "4MiB", "manifest.json", &[]);
        let manifest = cachewarm_tests::read_manifest(&manifest_path);
        assert_eq!(manifest.entries.len(), keys.len());
        let replica = RedisServer::start(&[]);
        let mut connection = replica.connection();
        for key in &keys {
            let _: () = connection.set_ex(key, value_for(key), 3600).unwrap();
        }
        Setup {
            manifest_path: manifest_path.to_str().unwrap().to_owned(),
            dir,
            replica,
            manifest,
        }
    }

    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).to_str().unwrap().to_owned()
    }

    /// `warmer run` from the replica into `targets`, with runs under `runs`.
    fn run_args(&self, targets: &[String], runs: &str, extra: &[&str]) -> Vec<String> {
        // The targets include memcached and SQL caches of the replica's raw strings.
        let extra: Vec<&str> = std::iter::once("--allow-cross-kind")
            .chain(extra.iter().copied())
            .collect();
        run_args(
            &self.manifest_path,
            &self.replica.url(),
            targets,
            &self.path(runs),
            &extra,
        )
    }
}

/// The warmer started in the background with its output captured, for a test that acts on the
/// stores while it runs.
fn spawn_warmer(dir: &Path, args: &[String]) -> std::process::Child {
    warmer_command(dir, args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Flags of the eviction tests: slow, small batches, and neither max_fill nor the high-water
/// mark in the way, so that only evictions stop the run.
const UNTIL_EVICTIONS: [&str; 8] = [
    "--rate",
    "40",
    "--batch-size",
    "4",
    "--max-fill",
    "100%",
    "--high-water",
    "100%",
];

fn run_to_end(dir: &Path, args: &[String], what: &str) -> Output {
    check_exit(warmer_command(dir, args).output().unwrap(), 0, what)
}

/// [`run_to_end`] with the warmer's log at `info` on its stderr.
fn run_to_end_logging(dir: &Path, args: &[String], what: &str) -> Output {
    let output = warmer_command(dir, args)
        .env("RUST_LOG", "warmer=info")
        .output()
        .unwrap();
    check_exit(output, 0, what)
}

/// Waits until a run under `runs_dir` has checkpointed progress.
fn wait_for_progress(runs_dir: &str) {
    let started = Instant::now();
    loop {
        let progressed = std::fs::read_dir(runs_dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|run| checkpoint_of(&run.path()))
            .any(|c| c.next_entry > 0);
        if progressed {
            return;
        }
        assert!(started.elapsed() < PATIENCE, "the run never progressed");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn checkpoint_of(run_dir: &Path) -> Option<Checkpoint> {
    serde_json::from_slice(&std::fs::read(run_dir.join("checkpoint.json")).ok()?).ok()
}

/// Every string key in a Redis and its value.
pub(crate) fn redis_contents(redis: &RedisServer) -> BTreeMap<String, String> {
    let mut connection = redis.connection();
    let keys: Vec<String> = connection.keys("*").unwrap();
    keys.into_iter()
        .map(|key| {
            let value: String = connection.get(&key).unwrap();
            (key, value)
        })
        .collect()
}

/// The manifest's keys a memcached holds, with their values.
pub(crate) fn memcached_contents(
    memcached: &MemcachedServer,
    manifest: &schemas::Manifest,
) -> BTreeMap<String, Vec<u8>> {
    let client = memcached.client();
    manifest
        .entries
        .iter()
        .filter(|e| !e.key.contains(' '))
        .filter_map(|e| {
            let result = client.run(Get::new(&e.key)).unwrap();
            result
                .hit()
                .then(|| (e.key.clone(), result.value.unwrap_or_default()))
        })
        .collect()
}

fn memcached_get(memcached: &MemcachedServer, key: &str) -> Option<(Vec<u8>, i64)> {
    let result = memcached
        .client()
        .run(Get::new(key).meta(Meta::NONE.ttl()))
        .unwrap();
    result.hit().then(|| {
        (
            result.value.unwrap_or_default(),
            result.item.ttl.unwrap_or(0),
        )
    })
}

/// Keys live in a target before the run: two manifest keys (valid for every store) and one of
/// the application's own.
fn live_keys(manifest: &schemas::Manifest) -> Vec<String> {
    let mut keys: Vec<String> = manifest
        .entries
        .iter()
        .map(|e| e.key.clone())
        .filter(|key| !key.contains(' '))
        .step_by(7)
        .take(2)
        .collect();
    keys.push("app:own".to_owned());
    keys
}

fn seed_live_keys(redis: &RedisServer, memcached: &MemcachedServer, manifest: &schemas::Manifest) {
    let mut connection = redis.connection();
    let client = memcached.client();
    for key in &live_keys(manifest) {
        let _: () = connection.set_ex(key, "kept", 7200).unwrap();
        client
            .set(key, "kept")
            .ttl(memcache::exp::Ttl::secs(7200))
            .send()
            .unwrap();
    }
}

/// The keys live before the run still hold their own value, with their own TTL (7200 s when
/// set, so above 7000 unless the test ran for minutes).
fn assert_live_keys_untouched(
    redis: &RedisServer,
    memcached: &MemcachedServer,
    manifest: &schemas::Manifest,
) {
    let mut connection = redis.connection();
    for key in &live_keys(manifest) {
        let value: Option<String> = connection.get(key).unwrap();
        assert_eq!(value.as_deref(), Some("kept"), "redis {key}");
        let ttl: i64 = connection.ttl(key).unwrap();
        assert!(ttl > 7000, "redis {key}: TTL changed to {ttl}");
        let (value, ttl) = memcached_get(memcached, key).unwrap();
        assert_eq!(value, b"kept", "memcached {key}");
        assert!(ttl > 7000, "memcached {key}: TTL changed to {ttl}");
    }
}
