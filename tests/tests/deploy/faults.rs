//! Targets that fail mid-run: one that dies leaves the others warmed, a Redis that restarts is
//! warmed to the end.

use super::*;

/// A target that dies mid-run does not fail the deploy: the Redis target is killed while the
/// run is going, the memcached target is still warmed with every valid key, the report names
/// the Redis failure, and the exit code is 0 — 1 with `--strict`.
#[test]
fn a_target_that_dies_mid_run_leaves_the_others_warmed() {
    let setup = Setup::new(200);
    let valid_for_memcached: Vec<&schemas::ManifestEntry> = setup
        .manifest
        .entries
        .iter()
        .filter(|e| !e.key.contains(' '))
        .collect();
    for strict in [false, true] {
        let mut redis = RedisServer::start(&[]);
        let memcached = MemcachedServer::start(64);
        let runs = if strict { "runs-strict" } else { "runs" };
        let mut extra = vec!["--rate", "100", "--batch-size", "5"];
        if strict {
            extra.push("--strict");
        }
        let args = setup.run_args(&[redis.url(), memcached.url()], runs, &extra);
        let child = spawn_warmer(setup.dir.path(), &args);
        // Kill the Redis target once the run has written something.
        wait_for_progress(&setup.path(runs));
        redis.stop();
        let output = check_exit(
            child.wait_with_output().unwrap(),
            if strict { 1 } else { 0 },
            "a run whose Redis target died",
        );
        let (report, _) = report_of(&output.stdout);
        let redis_report = &report.targets[0];
        assert_eq!(
            redis_report.status,
            schemas::report::TargetStatus::Failed,
            "{}",
            String::from_utf8_lossy(&output.stdout)
        );
        let error = redis_report.error.as_deref().unwrap();
        // Retried with backoff, then given up on by the breaker, not the timeout.
        assert!(error.contains("circuit breaker open"), "{error}");
        assert!(redis_report.retries > 0);
        assert_eq!(report.outcome, Outcome::Completed);
        assert!(
            redis_report.counts.written < report.manifest.entries,
            "Redis died before the run ended"
        );
        let memcached_report = &report.targets[1];
        assert_eq!(
            memcached_report.status,
            schemas::report::TargetStatus::Ok,
            "{:?}",
            memcached_report.error
        );
        assert_eq!(
            memcached_report.counts.written,
            valid_for_memcached.len() as u64
        );
        let held = memcached_contents(&memcached, &setup.manifest);
        assert_eq!(held.len(), valid_for_memcached.len());
        for entry in &valid_for_memcached {
            assert_eq!(
                held[&entry.key],
                value_for(&entry.key).into_bytes(),
                "{}",
                entry.key
            );
        }
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(stdout.contains("FAILED"), "{stdout}");
    }
}

/// A Redis that restarts mid-run (empty, on the same port) is reconnected: the writes that
/// failed are retried with backoff, the run completes with nothing failed, and every entry
/// after the restart is in the new server with the replica's value.
#[test]
fn a_redis_that_restarts_mid_run_is_warmed_to_the_end() {
    let setup = Setup::new(200);
    let mut redis = RedisServer::start(&[]);
    let args = setup.run_args(
        &[redis.url()],
        "runs",
        &[
            "--rate",
            "200",
            "--batch-size",
            "5",
            "--latency-multiple",
            "off",
        ],
    );
    let child = spawn_warmer(setup.dir.path(), &args);
    wait_for_progress(&setup.path("runs"));
    redis.restart();
    let output = check_exit(
        child.wait_with_output().unwrap(),
        0,
        "a run whose Redis restarted",
    );
    let (report, _) = report_of(&output.stdout);
    let target = &report.targets[0];
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(target.status, schemas::report::TargetStatus::Ok, "{stdout}");
    assert_eq!(report.outcome, Outcome::Completed);
    assert!(target.retries > 0, "the restart was noticed: {stdout}");
    assert_eq!(target.counts.failed, 0, "{:?}", target.failure_reasons);
    assert_eq!(target.counts.not_attempted, 0);
    let held = redis_contents(&redis);
    for (key, value) in &held {
        assert_eq!(*value, value_for(key), "{key}");
    }
    // The run lasts about a second at this rate and the restart comes early in it: the
    // second half of the manifest was written after it.
    for entry in &setup.manifest.entries[100..] {
        assert!(held.contains_key(&entry.key), "{} missing", entry.key);
    }
    assert!(
        held.len() < setup.manifest.entries.len(),
        "the restart emptied Redis"
    );
}
