//! Coverage before and after a run, learnt from the run's own writes (add semantics say whether
//! a key was there) and checked against the store: the figures are what the test itself put in
//! the stores, and keys the store loses during the run are not counted as present after it.

use super::*;

/// What `present` of the manifest's entries come to: (requests, keys).
fn weight(setup: &Setup, present: impl Fn(&str) -> bool) -> (u64, u64) {
    setup
        .manifest
        .entries
        .iter()
        .filter(|e| present(&e.key))
        .fold((0, 0), |(requests, keys), e| {
            (requests + e.requests, keys + 1)
        })
}

/// A fresh run takes the coverage before from its writes' answers and probes only what it did
/// not write. The stores already hold some manifest keys (answered "already there"), the
/// replica lacks others (never written: probed, and some of those the stores hold), and keys
/// with spaces are invalid for memcached: the before and after figures are exactly what the
/// test put in each store.
#[test]
fn coverage_counts_what_the_stores_held_and_hold() {
    let setup = Setup::new(400);
    let redis = RedisServer::start(&[]);
    let memcached = MemcachedServer::start(64);
    let keys: Vec<&str> = setup
        .manifest
        .entries
        .iter()
        .map(|e| e.key.as_str())
        .collect();
    // Every 10th key is live in the targets already; every 17th is not in the replica, and of
    // those every other one is live in the targets.
    let live: Vec<&str> = keys
        .iter()
        .enumerate()
        .filter(|(i, _)| i % 10 == 3 || (i % 17 == 5 && i % 2 == 0))
        .map(|(_, k)| *k)
        .collect();
    let missing: Vec<&str> = keys
        .iter()
        .enumerate()
        .filter(|(i, _)| i % 17 == 5)
        .map(|(_, k)| *k)
        .collect();
    let mut replica = setup.replica.connection();
    for key in &missing {
        let _: () = replica.del(*key).unwrap();
    }
    let mut connection = redis.connection();
    let client = memcached.client();
    for key in &live {
        let _: () = connection.set_ex(*key, "live", 3600).unwrap();
        if !key.contains(' ') {
            client
                .set(*key, "live")
                .ttl(memcache::exp::Ttl::secs(3600))
                .send()
                .unwrap();
        }
    }
    let args = setup.run_args(&[redis.url(), memcached.url()], "runs", &[]);
    let output = run_to_end(setup.dir.path(), &args, "warm with live keys");
    let (report, _) = report_of(&output.stdout);

    let is_live = |key: &str| live.contains(&key);
    let is_missing = |key: &str| missing.contains(&key);
    for target in &report.targets {
        let valid = |key: &str| target.url.starts_with("redis") || !key.contains(' ');
        let (requests, keys) = weight(&setup, |key| valid(key) && is_live(key));
        let before = target.coverage_before.as_ref().unwrap();
        assert_eq!(
            (before.requests_present, before.keys_present),
            (requests, keys),
            "{}",
            target.url
        );
        let (requests, keys) = weight(&setup, |key| {
            valid(key) && (is_live(key) || !is_missing(key))
        });
        let after = target.coverage_after.as_ref().unwrap();
        assert_eq!(
            (after.requests_present, after.keys_present),
            (requests, keys),
            "{}",
            target.url
        );
        let total: u64 = setup.manifest.entries.iter().map(|e| e.requests).sum();
        assert_eq!(after.requests_total, total, "{}", target.url);
    }
}

/// Keys the run wrote and the store let go before the run ended are not present after it: the
/// first hundred entries live two seconds, and the run (paced to 100 writes a second) lasts
/// past that, so the check of the written keys finds them gone and every entry is probed.
/// Counted from the writes alone, the after figure would be all 400.
#[test]
fn keys_gone_before_the_end_are_not_counted_after() {
    let setup = Setup::new(400);
    let redis = RedisServer::start(&[]);
    let mut replica = setup.replica.connection();
    let first: Vec<&str> = setup
        .manifest
        .entries
        .iter()
        .take(100)
        .map(|e| e.key.as_str())
        .collect();
    for key in &first {
        let _: () = replica.pexpire(*key, 2000).unwrap();
    }
    let args = setup.run_args(
        &[redis.url()],
        "runs",
        &["--min-ttl", "1s", "--rate", "100", "--batch-size", "10"],
    );
    let output = run_to_end(setup.dir.path(), &args, "warm short-lived keys");
    let (report, _) = report_of(&output.stdout);
    let target = &report.targets[0];
    let before = target.coverage_before.as_ref().unwrap();
    assert_eq!(before.keys_present, 0);
    let (requests, keys) = weight(&setup, |key| !first.contains(&key));
    let after = target.coverage_after.as_ref().unwrap();
    assert_eq!(
        (after.requests_present, after.keys_present),
        (requests, keys)
    );
    let mut connection = redis.connection();
    let dbsize: u64 = redis::cmd("DBSIZE").query(&mut connection).unwrap();
    assert_eq!(dbsize, 300);
}
