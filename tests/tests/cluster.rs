//! Redis Cluster targets and sources on a real 3-node cluster: warmed from a single Redis
//! replica, read as a replica and as a snapshot source, undone, budgeted by the capacity of its
//! primaries, stopped by their evictions, and warmed while its slots move.

// A failed step should stop the test where it failed.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use cachewarm_tests::{
    RedisCluster, RedisServer, app_keys, ingest_and_rank, report_of, run_bin, warm,
};
use redis::{Commands, ConnectionLike};

/// A value of `size` bytes that names its key, so a value found under the wrong key shows.
fn value_for(key: &str, size: usize) -> String {
    let head = format!("{{\"key\":{}}}", serde_json::to_string(key).unwrap());
    format!("{head}{}", "v".repeat(size.saturating_sub(head.len())))
}

/// A remaining TTL for the `i`th key: spread from 20 minutes to about 2 hours, so a TTL copied
/// from the wrong key shows.
fn ttl_for(i: usize) -> u64 {
    1200 + (i as u64 * 37) % 6000
}

/// A manifest of `keys` (each read a few times in a canonical access log, ranked under a budget
/// that takes them all) in `dir`.
fn manifest_of(dir: &Path, keys: &[String], value_size: usize) -> String {
    let log = dir.join("access.jsonl");
    let mut out = std::io::BufWriter::new(std::fs::File::create(&log).unwrap());
    for (i, key) in keys.iter().enumerate() {
        for read in 0..2 + i % 5 {
            let ts = 1_763_700_000.0 + i as f64 + read as f64 * 0.001;
            writeln!(
                out,
                r#"{{"ts": {ts:.3}, "key": {}, "op": "get", "hit": true, "value_size": {value_size}}}"#,
                serde_json::to_string(key).unwrap(),
            )
            .unwrap();
        }
    }
    out.flush().unwrap();
    drop(out);
    let (_, manifest) = ingest_and_rank(dir, &log, "256MiB", "manifest.json", &[]);
    assert_eq!(
        cachewarm_tests::read_manifest(&manifest).entries.len(),
        keys.len()
    );
    manifest.to_str().unwrap().to_owned()
}

/// Stores each key's value with its TTL through `connection` (a server's or a cluster's).
fn fill(connection: &mut impl ConnectionLike, keys: &[String], value_size: usize) {
    for (i, key) in keys.iter().enumerate() {
        let _: () = connection
            .set_ex(key, value_for(key, value_size), ttl_for(i))
            .unwrap();
    }
}

/// Each key's value and remaining TTL in milliseconds, where live.
fn contents(
    connection: &mut impl ConnectionLike,
    keys: &[String],
) -> BTreeMap<String, (String, i64)> {
    keys.iter()
        .filter_map(|key| {
            let value: Option<String> = connection.get(key).unwrap();
            let pttl: i64 = connection.pttl(key).unwrap();
            value.map(|value| (key.clone(), (value, pttl)))
        })
        .collect()
}

/// The target holds exactly the source's values, each with a TTL within a few seconds of the
/// source's (the warmer copies the remaining TTL it read; both count down alike since).
fn assert_same_contents(
    source: &BTreeMap<String, (String, i64)>,
    target: &BTreeMap<String, (String, i64)>,
) {
    assert_eq!(
        source.keys().collect::<Vec<_>>(),
        target.keys().collect::<Vec<_>>()
    );
    for (key, (value, pttl)) in source {
        let (target_value, target_pttl) = &target[key];
        assert_eq!(target_value, value, "{key}");
        assert!(
            (pttl - target_pttl).abs() < 5_000,
            "{key}: TTL {target_pttl} ms in the target, {pttl} ms in the source"
        );
    }
}

/// Each node's own `keyspace_hits` and `keyspace_misses`.
fn read_counters_per_node(cluster: &RedisCluster) -> Vec<(u64, u64)> {
    cluster
        .nodes
        .iter()
        .map(|node| {
            let info: String = redis::cmd("INFO")
                .arg("stats")
                .query(&mut node.connection())
                .unwrap();
            let counter = |name: &str| -> u64 {
                info.lines()
                    .find_map(|line| line.strip_prefix(name)?.strip_prefix(':'))
                    .unwrap()
                    .trim()
                    .parse()
                    .unwrap()
            };
            (counter("keyspace_hits"), counter("keyspace_misses"))
        })
        .collect()
}

/// Keys per node, by DBSIZE on each node's own connection.
fn keys_per_node(cluster: &RedisCluster) -> Vec<u64> {
    cluster
        .nodes
        .iter()
        .map(|node| redis::cmd("DBSIZE").query(&mut node.connection()).unwrap())
        .collect()
}

/// Warming a cluster from a single Redis replica: every key lands on the primary that owns its
/// slot (all three hold some), with the replica's value and remaining TTL; a key the cluster
/// held before the run keeps its own value and TTL (add semantics); coverage is probed on the
/// cluster too, and the read counters are those of all three primaries. No node answered a
/// redirect: each primary's pipeline held only keys it owns.
#[test]
fn a_replica_warms_a_cluster() {
    let dir = tempfile::tempdir().unwrap();
    let keys = app_keys(300);
    let manifest = manifest_of(dir.path(), &keys, 200);
    let replica = RedisServer::start(&[]);
    fill(&mut replica.connection(), &keys, 200);
    let cluster = RedisCluster::start(&[]);
    let mut connection = cluster.connection();
    let live = &keys[5];
    let _: () = connection.set_ex(live, "kept", 7200).unwrap();
    // The application's reads before the deploy: one hit, and misses on every primary.
    let reads = &keys[..30];
    for key in reads {
        let _: Option<String> = connection.get(key).unwrap();
    }
    let per_node = read_counters_per_node(&cluster);
    assert!(
        per_node.iter().all(|&(_, misses)| misses > 0),
        "{per_node:?}"
    );

    let (report, _) = warm(dir.path(), &manifest, &replica.url(), &cluster.url(), &[]);
    let target = &report.targets[0];
    assert_eq!(target.kind, "redis-cluster");
    let before = target.hit_counters_before.as_ref().unwrap();
    assert_eq!((before.hits, before.misses), (1, reads.len() as u64 - 1));
    assert_eq!(target.counts.written, keys.len() as u64 - 1);
    assert_eq!(target.counts.already_present, 1);
    assert_eq!(
        target.coverage_after.as_ref().unwrap().keys_present,
        keys.len() as u64
    );

    let mut expected = contents(&mut replica.connection(), &keys);
    expected.remove(live);
    let mut warmed = contents(&mut connection, &keys);
    let (value, pttl) = warmed.remove(live).unwrap();
    assert_eq!(value, "kept");
    assert!(pttl > 7_000_000, "the live key's TTL changed to {pttl} ms");
    assert_same_contents(&expected, &warmed);
    let per_node = keys_per_node(&cluster);
    assert!(per_node.iter().all(|&n| n > 0), "{per_node:?}");
    assert_eq!(per_node.iter().sum::<u64>(), keys.len() as u64);
    assert_eq!(redirects(&cluster), 0);
}

/// A cluster as the source: a single Redis is warmed with its values and TTLs, read from all
/// three primaries; and a snapshot taken from the cluster restores the same into another.
#[test]
fn a_cluster_is_a_source_and_a_snapshot_source() {
    let dir = tempfile::tempdir().unwrap();
    let keys = app_keys(300);
    let manifest = manifest_of(dir.path(), &keys, 200);
    let cluster = RedisCluster::start(&[]);
    // A tenth of the manifest is missing from the source.
    let stored: Vec<String> = keys
        .iter()
        .enumerate()
        .filter(|(i, _)| i % 10 != 3)
        .map(|(_, key)| key.clone())
        .collect();
    fill(&mut cluster.connection(), &stored, 200);
    assert!(keys_per_node(&cluster).iter().all(|&n| n > 0));

    let target = RedisServer::start(&[]);
    let (report, _) = warm(dir.path(), &manifest, &cluster.url(), &target.url(), &[]);
    let counts = &report.targets[0].counts;
    assert_eq!(counts.written, stored.len() as u64);
    assert_eq!(counts.source_miss, (keys.len() - stored.len()) as u64);
    let source = contents(&mut cluster.connection(), &keys);
    assert_same_contents(&source, &contents(&mut target.connection(), &keys));

    let snapshot = dir.path().join("snap.parquet");
    let snapshot = snapshot.to_str().unwrap();
    let out = run_bin(
        "warmer",
        &[
            "snapshot",
            "--manifest",
            &manifest,
            "--source",
            &cluster.url(),
            "--out",
            snapshot,
        ],
        0,
    );
    let found = format!("{} of {}", stored.len(), keys.len());
    assert!(String::from_utf8_lossy(&out.stdout).contains(&found));
    let restored = RedisServer::start(&[]);
    warm(dir.path(), &manifest, snapshot, &restored.url(), &[]);
    assert_same_contents(&source, &contents(&mut restored.connection(), &keys));
}

/// `warmer undo` on a cluster deletes what the run wrote, on every primary, except a key
/// rewritten since and a key that was there before the run.
#[test]
fn undo_on_a_cluster_deletes_only_what_the_run_wrote() {
    let dir = tempfile::tempdir().unwrap();
    let keys = app_keys(200);
    let manifest = manifest_of(dir.path(), &keys, 200);
    let replica = RedisServer::start(&[]);
    fill(&mut replica.connection(), &keys, 200);
    let cluster = RedisCluster::start(&[]);
    let mut connection = cluster.connection();
    let (live, changed) = (&keys[3], &keys[8]);
    let _: () = connection.set_ex(live, "kept", 7200).unwrap();

    let (report, run_dir) = warm(dir.path(), &manifest, &replica.url(), &cluster.url(), &[]);
    let written = report.targets[0].counts.written;
    assert_eq!(written, keys.len() as u64 - 1);
    let _: () = connection.set_ex(changed, "new", 600).unwrap();

    let output = run_bin("warmer", &["undo", run_dir.to_str().unwrap()], 0);
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        text.contains(&format!("deleted {}, kept (changed since) 1", written - 1)),
        "{text}"
    );
    let left: BTreeMap<String, String> = contents(&mut connection, &keys)
        .into_iter()
        .map(|(key, (value, _))| (key, value))
        .collect();
    let expected = BTreeMap::from([
        (live.clone(), "kept".to_owned()),
        (changed.clone(), "new".to_owned()),
    ]);
    assert_eq!(left, expected);
    assert_eq!(keys_per_node(&cluster).iter().sum::<u64>(), 2);
}

/// The budget on a cluster is `max_fill` of the primaries' `maxmemory` together: the run stops
/// there, and what it wrote fits.
#[test]
fn the_budget_is_a_share_of_the_primaries_maxmemory() {
    const MAXMEMORY: u64 = 4 * 1024 * 1024;
    let dir = tempfile::tempdir().unwrap();
    // 4 MB of values against a budget of a quarter of 12 MiB.
    let keys = app_keys(1000);
    let manifest = manifest_of(dir.path(), &keys, 4000);
    let replica = RedisServer::start(&[]);
    fill(&mut replica.connection(), &keys, 4000);
    let cluster = RedisCluster::start(&["--maxmemory", &MAXMEMORY.to_string()]);

    let (report, _) = warm(
        dir.path(),
        &manifest,
        &replica.url(),
        &cluster.url(),
        &["--max-fill", "25%"],
    );
    let target = &report.targets[0];
    let budget = 3 * MAXMEMORY / 4;
    assert_eq!(target.budget_bytes, Some(budget));
    assert!(target.bytes_written <= budget, "{}", target.bytes_written);
    assert!(target.counts.written > 0);
    assert!(target.counts.skipped_budget > 0);
    assert_eq!(
        keys_per_node(&cluster).iter().sum::<u64>(),
        target.counts.written
    );
}

/// Slots that move while the cluster is warmed (`redis-cli --cluster reshard`, which migrates
/// their keys and answers ASK, then MOVED) lose no key: a primary's pipeline that meets a
/// redirect is resent key by key through the crate's routing. The nodes' error counters show
/// the run did meet redirects. (Keys written while the crate chased a redirect for a whole
/// pipeline can count as already present, so only the sum of the two counts is exact.)
#[test]
fn slots_moving_during_the_run_lose_no_key() {
    let dir = tempfile::tempdir().unwrap();
    let keys = app_keys(400);
    let manifest = manifest_of(dir.path(), &keys, 200);
    let replica = RedisServer::start(&[]);
    fill(&mut replica.connection(), &keys, 200);
    let cluster = RedisCluster::start(&[]);
    let runs = dir.path().join("runs");
    let run = std::process::Command::new(cachewarm_tests::bin("warmer"))
        .args(["run", "--manifest", &manifest, "--source", &replica.url()])
        .args([
            "--target",
            &cluster.url(),
            "--runs-dir",
            runs.to_str().unwrap(),
        ])
        // About 8 s of writes in batches of 5, for the reshard to land in the middle.
        .args(["--rate", "50", "--batch-size", "5"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_for_progress(&runs);

    let id = |node: &RedisServer| -> String {
        redis::cmd("CLUSTER")
            .arg("MYID")
            .query(&mut node.connection())
            .unwrap()
    };
    let (from, to) = (id(&cluster.nodes[0]), id(&cluster.nodes[1]));
    let reshard = std::process::Command::new("redis-cli")
        .args(["--cluster", "reshard"])
        .arg(format!("127.0.0.1:{}", cluster.nodes[2].port))
        .args(["--cluster-from", &from, "--cluster-to", &to])
        .args(["--cluster-slots", "3000", "--cluster-yes"])
        .output()
        .unwrap();
    assert!(
        reshard.status.success(),
        "{}",
        String::from_utf8_lossy(&reshard.stdout)
    );

    let output = run.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let (report, _) = report_of(&output.stdout);
    let target = &report.targets[0];
    assert_eq!(target.error, None);
    let counts = &target.counts;
    assert_eq!(counts.written + counts.already_present, keys.len() as u64);
    assert_same_contents(
        &contents(&mut replica.connection(), &keys),
        &contents(&mut cluster.connection(), &keys),
    );
    assert!(
        redirects(&cluster) > 0,
        "the run met no redirect: the test proves nothing"
    );
}

/// The MOVED and ASK redirects the nodes have answered, from their error counters.
fn redirects(cluster: &RedisCluster) -> u64 {
    cluster
        .nodes
        .iter()
        .map(|node| {
            let info: String = redis::cmd("INFO")
                .arg("errorstats")
                .query(&mut node.connection())
                .unwrap();
            ["errorstat_MOVED:count=", "errorstat_ASK:count="]
                .iter()
                .filter_map(|name| {
                    let rest = &info[info.find(name)? + name.len()..];
                    rest.split([',', '\r', '\n']).next()?.parse::<u64>().ok()
                })
                .sum::<u64>()
        })
        .sum()
}

/// Waits until a run under `runs` has checkpointed progress.
fn wait_for_progress(runs: &Path) {
    let start = std::time::Instant::now();
    loop {
        let progressed = std::fs::read_dir(runs)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|run| std::fs::read(run.path().join("checkpoint.json")).ok())
            .filter_map(|bytes| serde_json::from_slice::<schemas::Checkpoint>(&bytes).ok())
            .any(|checkpoint| checkpoint.next_entry > 0);
        if progressed {
            return;
        }
        assert!(
            start.elapsed() < std::time::Duration::from_secs(60),
            "the run never progressed"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// A cluster whose primaries start evicting while it is warmed (they were full of live data)
/// is left alone from then on, and the report says why: the eviction counter is the primaries'
/// together.
#[test]
fn a_cluster_that_evicts_is_no_longer_written() {
    let dir = tempfile::tempdir().unwrap();
    let keys = app_keys(240);
    let manifest = manifest_of(dir.path(), &keys, 200);
    let replica = RedisServer::start(&[]);
    fill(&mut replica.connection(), &keys, 200);
    let cluster = RedisCluster::start(&["--maxmemory", "4mb", "--maxmemory-policy", "allkeys-lru"]);
    // The application's own data, until every primary has evicted some.
    let mut connection = cluster.connection();
    let filler = "f".repeat(1024);
    let evicted = |node: &RedisServer| {
        let info: String = redis::cmd("INFO")
            .arg("stats")
            .query(&mut node.connection())
            .unwrap();
        !info.contains("evicted_keys:0")
    };
    for i in 0.. {
        let _: () = connection.set(format!("live:{i}"), &filler).unwrap();
        if i % 100 == 0 && cluster.nodes.iter().all(evicted) {
            break;
        }
    }

    let (report, _) = warm(
        dir.path(),
        &manifest,
        &replica.url(),
        &cluster.url(),
        &["--rate", "40", "--batch-size", "4", "--max-fill", "100%"],
    );
    let target = &report.targets[0];
    assert_eq!(target.status, schemas::report::TargetStatus::Failed);
    let error = target.error.as_deref().unwrap();
    assert!(error.contains("evicted"), "{error}");
    assert!(target.counts.not_attempted > 0);
    assert_eq!(target.counts.total(), keys.len() as u64);
}
