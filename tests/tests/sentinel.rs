//! Redis through Sentinel (`redis+sentinel://`): a warm that a `SENTINEL FAILOVER` interrupts
//! goes on on the new master and loses no key.

// A failed step should stop the test where it failed.
#![allow(clippy::unwrap_used)]

use std::io::Write;
use std::process::Stdio;
use std::time::Duration;

use cachewarm_tests::{
    RedisSentinel, RedisServer, check_exit, ingest_and_rank, report_of, run_args, warmer_command,
};
use redis::Commands;

/// The value stored under `key`, naming it, so a value under the wrong key shows.
fn value_for(key: &str) -> String {
    format!("value-of-{key}")
}

/// A warm into the master a Sentinel names, slowed (`--rate`) so that a `SENTINEL FAILOVER`
/// comes mid-run: the run completes with nothing failed, and the new master holds every key
/// with the replica's value. Writes the old master took after its replica was promoted are lost
/// with it; the warmer sends those again (each batch waits for a replica's acknowledgement), so
/// a key missing here is one the warmer lost.
#[test]
fn a_warm_survives_a_sentinel_failover() {
    let sentinel = RedisSentinel::start();
    let replica = RedisServer::start(&[]);
    let keys: Vec<String> = (0..300).map(|i| format!("app:v2:item:{i}")).collect();
    let mut connection = replica.connection();
    for key in &keys {
        let _: () = connection.set_ex(key, value_for(key), 3600).unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.jsonl");
    let mut out = std::fs::File::create(&log).unwrap();
    // Each key read twice: the ranking leaves out keys read once.
    for (i, key) in keys.iter().enumerate() {
        for read in 0..2 {
            let ts = 1_763_700_000.0 + i as f64 + f64::from(read) * 0.001;
            writeln!(
                out,
                r#"{{"ts": {ts:.3}, "key": "{key}", "op": "get", "hit": true, "value_size": 20}}"#
            )
            .unwrap();
        }
    }
    let (_, manifest) = ingest_and_rank(dir.path(), &log, "64MiB", "manifest.json", &[]);
    let args = run_args(
        manifest.to_str().unwrap(),
        &replica.url(),
        &[sentinel.url()],
        "runs",
        // About 10 s at this rate; retries enough to wait out the failover.
        &["--rate", "30", "--batch-size", "5", "--retries", "20"],
    );
    let mut child = warmer_command(dir.path(), &args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let before = sentinel.master_port();
    std::thread::sleep(Duration::from_secs(2));
    sentinel.failover();
    assert_ne!(sentinel.master_port(), before);
    if child.try_wait().unwrap().is_some() {
        let output = child.wait_with_output().unwrap();
        panic!(
            "the run was over before the failover was:\n{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let output = check_exit(
        child.wait_with_output().unwrap(),
        0,
        "a warm through a failover",
    );
    let (report, _) = report_of(&output.stdout);
    let target = &report.targets[0];
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        target.counts.failed, 0,
        "{:?}\n{stderr}",
        target.failure_reasons
    );
    assert_eq!(target.counts.not_attempted, 0, "{stderr}");
    assert!(target.retries > 0, "the failover was noticed: {stderr}");
    let mut master = sentinel.master().connection();
    let missing: Vec<&String> = keys
        .iter()
        .filter(|key| {
            master.get::<_, Option<String>>(*key).unwrap().as_deref() != Some(&value_for(key))
        })
        .collect();
    assert!(
        missing.is_empty(),
        "{} keys lost: {missing:?}\n{stderr}",
        missing.len()
    );
}
