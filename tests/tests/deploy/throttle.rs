//! The adaptive throttle on real stores: it holds nothing back on a store no one else reads,
//! and it takes over when live clients read the store, with every entry still written.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use super::*;

/// With nobody else reading the stores, the run is never slowed down: the report says there
/// was no live traffic and no cut, and the summary says the run was not slowed. The run's own
/// reads (`--verify` reads back every key it writes) are not taken for live traffic. (On an idle
/// store the probes only ever measured the run's own writes, and it cut itself down to 155
/// writes/s.)
#[test]
fn an_idle_store_is_not_throttled() {
    let setup = Setup::new(3000);
    let redis = RedisServer::start(&[]);
    let memcached = MemcachedServer::start(64);
    let args = setup.run_args(
        &[redis.url(), memcached.url()],
        "runs",
        // At 2,000 writes a second the warm lasts long enough for the throttle to look at
        // the stores' read counters several times while the read-backs go on.
        &["--batch-size", "100", "--verify", "--rate", "2000"],
    );
    let output = run_to_end_logging(setup.dir.path(), &args, "warm idle stores");
    // With nothing to protect, the run keeps its CPU priority.
    let log = String::from_utf8_lossy(&output.stderr);
    assert!(!log.contains(GIVE_WAY), "{log}");
    let (report, _) = report_of(&output.stdout);
    for target in &report.targets {
        let throttle = target.throttle.as_ref().unwrap();
        assert!(!throttle.live_traffic, "{}: {throttle:?}", target.url);
        assert_eq!(throttle.backoffs, 0, "{}", target.url);
        assert_eq!(throttle.lowest_rate, None, "{}", target.url);
        assert_eq!(
            target.counts.written,
            writable(&setup, &target.url),
            "{}",
            target.url
        );
    }
    let summary = String::from_utf8_lossy(&output.stdout);
    assert_eq!(
        summary
            .matches("no live traffic on the store: the run was not slowed down")
            .count(),
        2,
        "{summary}"
    );
}

/// Clients reading a Redis and a memcached while they are warmed are live traffic: the report
/// says so for both, the run's threads give way on the CPU, and the paced writes (pipelines of
/// a few) still warm every entry with its value. The run's own reads do not count: `--verify`
/// reads back every key written.
#[test]
fn live_readers_are_seen_and_every_entry_is_still_written() {
    let setup = Setup::new(3000);
    let redis = RedisServer::start(&[]);
    let memcached = MemcachedServer::start(64);
    let reading = Arc::new(AtomicBool::new(true));
    let readers: Vec<_> = [redis.url(), memcached.url()]
        .into_iter()
        .map(|url| {
            let reading = Arc::clone(&reading);
            let redis = url.starts_with("redis").then(|| redis.connection());
            let memcached = (!url.starts_with("redis")).then(|| memcached.client());
            std::thread::spawn(move || {
                let (mut redis, mut memcached) = (redis, memcached);
                let mut reads = 0u64;
                while reading.load(Ordering::Relaxed) {
                    let key = format!("live:{}", reads % 100);
                    if let Some(connection) = &mut redis {
                        let _: Option<String> = connection.get(&key).unwrap();
                    }
                    if let Some(client) = &mut memcached {
                        client.run(Get::new(&key)).unwrap();
                    }
                    reads += 1;
                }
                reads
            })
        })
        .collect();
    let args = setup.run_args(
        &[redis.url(), memcached.url()],
        "runs",
        &["--batch-size", "100", "--verify"],
    );
    let output = run_to_end_logging(setup.dir.path(), &args, "warm stores being read");
    reading.store(false, Ordering::Relaxed);
    // The run's threads gave way on the CPU (whether a thread moves is the warmer's unit
    // test `threads_move_to_the_idle_policy_once_the_run_gives_way`).
    let log = String::from_utf8_lossy(&output.stderr);
    assert_eq!(log.matches(GIVE_WAY).count(), 1, "{log}");
    for reader in readers {
        assert!(reader.join().unwrap() > 0);
    }
    let (report, _) = report_of(&output.stdout);
    for target in &report.targets {
        let throttle = target.throttle.as_ref().unwrap();
        assert!(throttle.live_traffic, "{}: {throttle:?}", target.url);
        let writable = writable(&setup, &target.url);
        assert_eq!(target.counts.written, writable, "{}", target.url);
        let verified = target.verification.as_ref().unwrap();
        assert_eq!(verified.verified, writable, "{}", target.url);
    }
    let expected: BTreeMap<String, String> = setup
        .manifest
        .entries
        .iter()
        .map(|e| (e.key.clone(), value_for(&e.key)))
        .collect();
    assert_eq!(redis_contents(&redis), expected);
    let expected: BTreeMap<String, Vec<u8>> = expected
        .into_iter()
        .filter(|(key, _)| !key.contains(' '))
        .map(|(key, value)| (key, value.into_bytes()))
        .collect();
    assert_eq!(memcached_contents(&memcached, &setup.manifest), expected);
}

/// The warmer's log line (at `info`) when live traffic makes the run's threads give way on the
/// host's CPUs.
const GIVE_WAY: &str = "the run's threads give way on the host's CPUs";

/// The manifest's entries a target can hold: memcached keys have no spaces.
fn writable(setup: &Setup, url: &str) -> u64 {
    let entries = &setup.manifest.entries;
    if url.starts_with("memcached") {
        entries.iter().filter(|e| !e.key.contains(' ')).count() as u64
    } else {
        entries.len() as u64
    }
}
