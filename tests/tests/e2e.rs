//! The whole path on real servers: a read-through workload against a real Redis writes the
//! canonical access log → `analyzer ingest` → `analyzer rank` → `warmer run` from that Redis
//! (the warm replica) into an empty Redis, a memcached and an SQLite cache table → the report's
//! counts are checked against what the servers hold, read directly.

// A failed step should stop the test where it failed.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::Path;

use cachewarm_tests::{
    MemcachedServer, RedisServer, Rng, Zipf, app_keys, ingest_and_rank, read_manifest, run_bin,
};
use memcache::exp::{Get, Meta};
use redis::Commands;
use schemas::Report;
use schemas::report::TargetReport;

const TTL_S: u64 = 3600;

fn value_for(key: &str, rng: &mut Rng) -> String {
    let padding = 20 + (rng.next_u64() % 300) as usize;
    format!("{{\"key\":\"{key}\",\"data\":\"{}\"}}", "x".repeat(padding))
}

/// Drives a read-through workload (GET; on a miss SET with a TTL) against `redis` and writes
/// each operation, with the hit or miss the server answered, to `log` as canonical JSON lines.
/// Returns the number of reads per key.
fn drive_workload(
    redis: &RedisServer,
    log: &Path,
    keys: &[String],
    reads: usize,
) -> HashMap<String, u64> {
    let mut connection = redis.connection();
    let zipf = Zipf::new(keys.len(), 1.0);
    let mut rng = Rng::new(20261121);
    let mut out = std::io::BufWriter::new(std::fs::File::create(log).unwrap());
    let mut reads_per_key = HashMap::new();
    let start_us: u64 = 1_763_700_000_000_000;
    for i in 0..reads {
        let key = &keys[zipf.sample(&mut rng)];
        let ts = (start_us + i as u64 * 1_000) as f64 / 1e6;
        let value: Option<String> = connection.get(key).unwrap();
        let hit = value.is_some();
        *reads_per_key.entry(key.clone()).or_insert(0) += 1;
        writeln!(
            out,
            r#"{{"ts": {ts:.6}, "key": {}, "op": "get", "hit": {hit}, "client": "web-1"}}"#,
            serde_json::to_string(key).unwrap()
        )
        .unwrap();
        if !hit {
            let value = value_for(key, &mut rng);
            let _: () = connection.set_ex(key, &value, TTL_S).unwrap();
            writeln!(
                out,
                r#"{{"ts": {ts:.6}, "key": {}, "op": "set", "value_size": {}, "ttl_s": {TTL_S}}}"#,
                serde_json::to_string(key).unwrap(),
                value.len()
            )
            .unwrap();
        }
    }
    out.flush().unwrap();
    reads_per_key
}

fn read_report(stdout: &[u8]) -> Report {
    let text = String::from_utf8_lossy(stdout);
    let path = text
        .lines()
        .find_map(|line| line.strip_prefix("report: "))
        .unwrap_or_else(|| panic!("no report path in output:\n{text}"));
    serde_json::from_slice(&std::fs::read(path.trim()).unwrap()).unwrap()
}

fn target<'a>(report: &'a Report, kind: &str) -> &'a TargetReport {
    report.targets.iter().find(|t| t.kind == kind).unwrap()
}

fn memcached_has(client: &memcache::exp::MetaClient, key: &str) -> Option<(Vec<u8>, i64)> {
    let result = client.run(Get::new(key).meta(Meta::NONE.ttl())).unwrap();
    result.hit().then(|| {
        (
            result.value.unwrap_or_default(),
            result.item.ttl.unwrap_or(0),
        )
    })
}

/// The skeleton's contract, end to end: counts in the report equal what the servers hold; a
/// key live in a target before the run keeps its value and TTL; a second run writes nothing.
#[test]
fn logs_to_warm_stores_on_real_servers() {
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name).to_str().unwrap().to_owned();
    let replica = RedisServer::start(&[]);
    let redis_target = RedisServer::start(&[]);
    let memcached = MemcachedServer::start(64);

    // 1. A real workload against the replica, logged as the app would.
    let keys = app_keys(400);
    let reads = drive_workload(&replica, Path::new(&path("access.jsonl")), &keys, 3000);

    // 2. Ingest and rank under a budget that takes part of the keyspace.
    let (summary, manifest_path) = ingest_and_rank(
        dir.path(),
        Path::new(&path("access.jsonl")),
        "40KiB",
        "manifest.json",
        &[],
    );
    let total_reads: u64 = reads.values().sum();
    let misses = reads.len() as u64; // each key's first read misses, then it is set
    assert_eq!(summary["events"], total_reads + misses);
    assert_eq!(summary["rejected"], 0);
    let manifest = read_manifest(&manifest_path);
    assert!(manifest.entries.len() > 20 && manifest.entries.len() < reads.len());
    for entry in &manifest.entries {
        assert_eq!(entry.requests, reads[&entry.key], "{}", entry.key);
    }

    // 3. Prepare the targets: one key already live in each, one key gone from the replica.
    let mut replica_connection = replica.connection();
    let mut target_connection = redis_target.connection();
    let live_key = &manifest.entries[1].key;
    let _: () = target_connection.set_ex(live_key, "kept", 7200).unwrap();
    let memcached_client = memcached.client();
    let memcached_live = manifest
        .entries
        .iter()
        .find(|e| !e.key.contains(' ') && &e.key != live_key)
        .map(|e| e.key.clone())
        .unwrap();
    memcached_client
        .set(&memcached_live, "kept")
        .ttl(memcache::exp::Ttl::secs(7200))
        .send()
        .unwrap();
    let gone = &manifest.entries[5].key;
    let _: () = replica_connection.del(gone).unwrap();

    // 4. Warm.
    let sqlite = format!("sqlite://{}?table=django_cache", path("cache.sqlite3"));
    let args = [
        "run",
        "--manifest",
        &path("manifest.json"),
        "--source",
        &replica.url(),
        "--allow-cross-kind",
        "--target",
        &redis_target.url(),
        "--target",
        &memcached.url(),
        "--target",
        &sqlite,
        "--runs-dir",
        &path("runs"),
        "--batch-size",
        "16",
    ];
    let report = read_report(&run_bin("warmer", &args, 0).stdout);
    let entries = manifest.entries.len() as u64;
    let invalid_for_memcached = manifest
        .entries
        .iter()
        .filter(|e| e.key.contains(' '))
        .count() as u64;
    assert!(
        invalid_for_memcached > 0,
        "the budget should select a key with a space"
    );

    // Redis: read every manifest key back directly.
    let redis_report = target(&report, "redis");
    let mut present = 0;
    let mut covered_requests = 0;
    for entry in &manifest.entries {
        let value: Option<String> = target_connection.get(&entry.key).unwrap();
        if let Some(value) = value {
            present += 1;
            covered_requests += entry.requests;
            if &entry.key == live_key {
                assert_eq!(value, "kept");
                let ttl: i64 = target_connection.ttl(&entry.key).unwrap();
                assert!(ttl > 7000, "the live key's TTL was changed to {ttl}");
            } else {
                let source: String = replica_connection.get(&entry.key).unwrap();
                assert_eq!(value, source);
                let ttl: i64 = target_connection.ttl(&entry.key).unwrap();
                assert!(
                    ttl > 0 && ttl <= TTL_S as i64,
                    "TTL {ttl} not from the source"
                );
            }
        }
    }
    let dbsize: u64 = redis::cmd("DBSIZE").query(&mut target_connection).unwrap();
    assert_eq!(dbsize, present);
    let counts = &redis_report.counts;
    assert_eq!(counts.total(), entries);
    assert_eq!(counts.written + counts.already_present, present);
    assert_eq!(counts.already_present, 1);
    assert_eq!(counts.source_miss, 1);
    assert_eq!(counts.invalid_key + counts.failed + counts.not_attempted, 0);
    let after = redis_report.coverage_after.as_ref().unwrap();
    let before = redis_report.coverage_before.as_ref().unwrap();
    assert_eq!(after.requests_present, covered_requests);
    assert_eq!(after.keys_present, present);
    assert!(after.share > before.share);
    assert_eq!(before.keys_present, 1);

    // memcached: the same, and keys with spaces never sent.
    let mc_report = target(&report, "memcached");
    let mut mc_present = 0;
    for entry in &manifest.entries {
        match memcached_has(&memcached_client, &entry.key) {
            Some((value, ttl)) if entry.key == memcached_live => {
                assert_eq!(value, b"kept");
                assert!(ttl > 7000, "the live key's TTL was changed to {ttl}");
            }
            Some((value, ttl)) => {
                mc_present += 1;
                let source: String = replica_connection.get(&entry.key).unwrap();
                assert_eq!(value, source.as_bytes());
                assert!(ttl > 0 && ttl <= TTL_S as i64);
            }
            None => {}
        }
    }
    let mc = &mc_report.counts;
    assert_eq!(mc.total(), entries);
    assert_eq!(mc.written, mc_present);
    assert_eq!(mc.already_present, 1);
    assert_eq!(mc.invalid_key, invalid_for_memcached);
    assert_eq!(mc.source_miss, 1);
    assert_eq!(
        memcached.stat("curr_items"),
        mc.written + mc.already_present
    );

    // SQLite: rows in Django's cache table.
    let sqlite_report = target(&report, "sqlite");
    let connection = rusqlite::Connection::open(path("cache.sqlite3")).unwrap();
    let rows: BTreeMap<String, String> = connection
        .prepare("SELECT cache_key, value FROM django_cache")
        .unwrap()
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(rows.len() as u64, sqlite_report.counts.written);
    assert_eq!(sqlite_report.counts.written, entries - 1);
    for (key, value) in &rows {
        let source: String = replica_connection.get(key).unwrap();
        assert_eq!(value, &source);
    }

    // 5. A second run finds everything in place and writes nothing.
    let again = run_bin("warmer", &args, 0);
    let second = read_report(&again.stdout);
    for t in &second.targets {
        assert_eq!(t.counts.written, 0, "{}", t.url);
        assert_eq!(t.coverage_before, t.coverage_after);
    }
    assert!(String::from_utf8_lossy(&again.stdout).contains("nothing new written"));
}

/// Ranks a small workload against `replica` and returns the manifest's path.
fn manifest_from_workload(replica: &RedisServer, dir: &Path, keys: usize, budget: &str) -> String {
    let path = |name: &str| dir.join(name).to_str().unwrap().to_owned();
    drive_workload(
        replica,
        Path::new(&path("access.jsonl")),
        &app_keys(keys),
        800,
    );
    let log = dir.join("access.jsonl");
    let (_, manifest) = ingest_and_rank(dir, &log, budget, "manifest.json.zst", &[]);
    manifest.to_str().unwrap().to_owned()
}

/// A snapshot written from a warm Redis restores into a memcached that never saw the replica:
/// the values and the remaining TTLs survive the Parquet file.
#[test]
fn snapshot_from_redis_restores_into_memcached() {
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name).to_str().unwrap().to_owned();
    let replica = RedisServer::start(&[]);
    let memcached = MemcachedServer::start(64);
    let manifest_path = manifest_from_workload(&replica, dir.path(), 120, "1MiB");
    let manifest = read_manifest(Path::new(&manifest_path));

    let out = run_bin(
        "warmer",
        &[
            "snapshot",
            "--manifest",
            &manifest_path,
            "--source",
            &replica.url(),
            "--out",
            &path("snap.parquet"),
        ],
        0,
    );
    let entries = manifest.entries.len();
    assert!(String::from_utf8_lossy(&out.stdout).contains(&format!("{entries} of {entries}")));
    // The replica is gone: only the snapshot has the values now.
    drop(replica);

    let report = read_report(
        &run_bin(
            "warmer",
            &[
                "run",
                "--manifest",
                &manifest_path,
                "--source",
                &path("snap.parquet"),
                "--allow-cross-kind",
                "--target",
                &memcached.url(),
                "--runs-dir",
                &path("runs"),
            ],
            0,
        )
        .stdout,
    );
    let counts = &report.targets[0].counts;
    let invalid = manifest
        .entries
        .iter()
        .filter(|e| e.key.contains(' '))
        .count() as u64;
    assert_eq!(counts.written + counts.invalid_key, entries as u64);
    assert_eq!(counts.invalid_key, invalid);
    let client = memcached.client();
    for entry in manifest.entries.iter().filter(|e| !e.key.contains(' ')) {
        let (value, ttl) = memcached_has(&client, &entry.key).expect("restored");
        assert!(value.starts_with(format!("{{\"key\":\"{}\"", entry.key).as_bytes()));
        assert!(ttl > 0 && ttl <= TTL_S as i64);
    }
}

/// memcached's add path answers per key although only failures answer (quiet mode): a key
/// present before the run is counted present and kept, values over memcached's item size
/// (an error line without an opaque) are counted failed with the server's reason, and every
/// other key is written, each with its own outcome.
#[test]
fn memcached_add_outcomes_are_per_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name).to_str().unwrap().to_owned();
    let replica = RedisServer::start(&[]);
    let memcached = MemcachedServer::start(64);
    let manifest_path = manifest_from_workload(&replica, dir.path(), 120, "1MiB");
    let manifest = read_manifest(Path::new(&manifest_path));
    let keys: Vec<&str> = manifest
        .entries
        .iter()
        .map(|e| e.key.as_str())
        .filter(|k| !k.contains(' '))
        .collect();
    assert!(keys.len() > 20);
    // Two values over memcached's 1 MiB item limit, next to each other and apart; one key
    // already in memcached with a value of its own.
    let mut connection = replica.connection();
    let too_large = [keys[3], keys[4], keys[15]];
    for key in too_large {
        let _: () = connection.set_ex(key, vec![b'x'; 2 << 20], TTL_S).unwrap();
    }
    let present = keys[9];
    let client = memcached.client();
    client
        .set(present, "theirs")
        .ttl(memcache::exp::Ttl::secs(600))
        .send()
        .unwrap();

    let report = read_report(
        &run_bin(
            "warmer",
            &[
                "run",
                "--manifest",
                &manifest_path,
                "--source",
                &replica.url(),
                "--allow-cross-kind",
                "--target",
                &memcached.url(),
                "--runs-dir",
                &path("runs"),
                "--batch-size",
                "10",
            ],
            0,
        )
        .stdout,
    );
    let target = &report.targets[0];
    let counts = &target.counts;
    assert_eq!(counts.failed, too_large.len() as u64, "{counts:?}");
    assert_eq!(counts.already_present, 1, "{counts:?}");
    assert_eq!(counts.written, keys.len() as u64 - 4, "{counts:?}");
    assert!(
        target
            .failure_reasons
            .keys()
            .all(|reason| reason.contains("too large")),
        "{:?}",
        target.failure_reasons
    );
    for key in too_large {
        assert!(memcached_has(&client, key).is_none(), "{key}");
    }
    assert_eq!(memcached_has(&client, present).unwrap().0, b"theirs");
    for key in keys
        .iter()
        .filter(|k| !too_large.contains(k) && **k != present)
    {
        assert!(memcached_has(&client, key).is_some(), "{key} not written");
    }
}

/// A target that is down never fails the deploy: the other targets are warmed, the report
/// names the failure, the exit code is 0, and 1 with `--strict`. A dry run writes nothing.
#[test]
fn a_dead_target_is_reported_not_fatal() {
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name).to_str().unwrap().to_owned();
    let replica = RedisServer::start(&[]);
    let mut dead = RedisServer::start(&[]);
    let dead_url = dead.url();
    dead.stop();
    let live = RedisServer::start(&[]);
    let manifest_path = manifest_from_workload(&replica, dir.path(), 60, "1MiB");

    let dry = [
        "run",
        "--manifest",
        &manifest_path,
        "--source",
        &replica.url(),
        "--target",
        &live.url(),
        "--runs-dir",
        &path("runs"),
        "--dry-run",
    ];
    let dry_report = read_report(&run_bin("warmer", &dry, 0).stdout);
    let mut live_connection = live.connection();
    let dbsize: u64 = redis::cmd("DBSIZE").query(&mut live_connection).unwrap();
    assert_eq!(dbsize, 0, "a dry run wrote to the store");
    assert!(dry_report.dry_run);
    let would_write = dry_report.targets[0].counts.written;
    assert!(would_write > 0);

    let args = [
        "run",
        "--manifest",
        &manifest_path,
        "--source",
        &replica.url(),
        "--target",
        &dead_url,
        "--target",
        &live.url(),
        "--runs-dir",
        &path("runs"),
    ];
    let report = read_report(&run_bin("warmer", &args, 0).stdout);
    let dead_report = &report.targets[0];
    assert_eq!(dead_report.status, schemas::report::TargetStatus::Failed);
    assert!(dead_report.error.as_deref().unwrap_or("").contains("redis"));
    assert_eq!(dead_report.counts.not_attempted, report.manifest.entries);
    let live_report = &report.targets[1];
    assert_eq!(live_report.status, schemas::report::TargetStatus::Ok);
    let dbsize: u64 = redis::cmd("DBSIZE").query(&mut live_connection).unwrap();
    assert_eq!(live_report.counts.written, dbsize);
    assert_eq!(live_report.counts.written, would_write);

    let mut strict = args.to_vec();
    strict.push("--strict");
    run_bin("warmer", &strict, 1);
}

/// The run ends by its timeout even when a store stops answering: here the target Redis holds
/// every write (CLIENT PAUSE … WRITE) for longer than the run's timeout. The report says the run
/// timed out and still accounts for every entry; the deploy is not failed.
#[test]
fn a_stalled_target_ends_at_the_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name).to_str().unwrap().to_owned();
    let replica = RedisServer::start(&[]);
    let stalled = RedisServer::start(&[]);
    let manifest_path = manifest_from_workload(&replica, dir.path(), 60, "1MiB");
    let pause_ms = 20_000;
    let _: () = redis::cmd("CLIENT")
        .arg("PAUSE")
        .arg(pause_ms)
        .arg("WRITE")
        .query(&mut stalled.connection())
        .unwrap();

    let args = [
        "run",
        "--manifest",
        &manifest_path,
        "--source",
        &replica.url(),
        "--target",
        &stalled.url(),
        "--runs-dir",
        &path("runs"),
        "--timeout",
        "2s",
    ];
    let report = read_report(&run_bin("warmer", &args, 0).stdout);
    assert_eq!(report.outcome, schemas::report::Outcome::TimedOut);
    let counts = &report.targets[0].counts;
    assert_eq!(counts.total(), report.manifest.entries);
    assert_eq!(counts.not_attempted, report.manifest.entries);
    assert!(
        report.timings.total_ms < pause_ms,
        "the run outlived the stall"
    );
    let _: () = redis::cmd("CLIENT")
        .arg("UNPAUSE")
        .query(&mut stalled.connection())
        .unwrap();
}
