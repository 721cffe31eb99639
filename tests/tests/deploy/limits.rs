//! The warm's limits on real stores: stores that evict are no longer written, little memory
//! stops at `--max-fill` and at the high-water mark, and `--bandwidth` caps the bytes per second.

use super::*;

/// A store that starts evicting while it is warmed (live traffic filled its memory) is left
/// alone from then on, and the report says why; the deploy is not failed.
#[test]
fn a_store_that_evicts_is_no_longer_written() {
    let setup = Setup::new(240);
    let redis = RedisServer::start(&["--maxmemory", "4mb", "--maxmemory-policy", "allkeys-lru"]);
    let mut connection = redis.connection();
    let filler = "f".repeat(1024);
    let args = setup.run_args(&[redis.url()], "runs", &UNTIL_EVICTIONS);
    let child = spawn_warmer(setup.dir.path(), &args);
    wait_for_progress(&setup.path("runs"));
    // The application's own writes fill the store at once, until it evicts.
    let mut pipe = redis::pipe();
    for i in 0..6000 {
        pipe.set(format!("live:{i}"), &filler).ignore();
    }
    let () = pipe.query(&mut connection).unwrap();
    assert!(evicted_keys(&redis) > 0);
    let output = check_exit(
        child.wait_with_output().unwrap(),
        0,
        "warm a store that evicts",
    );
    let (report, _) = report_of(&output.stdout);
    let target = &report.targets[0];
    assert_eq!(target.status, schemas::report::TargetStatus::Failed);
    let error = target.error.as_deref().unwrap();
    assert!(error.contains("evicted"), "{error}");
    assert!(target.counts.written < report.manifest.entries);
    assert_eq!(target.counts.total(), report.manifest.entries);
}

/// `used_memory` of a Redis, in bytes, read on `connection` (a new connection would add its
/// own buffers to the figure).
fn used_memory(connection: &mut redis::Connection) -> u64 {
    let info: String = redis::cmd("INFO").arg("memory").query(connection).unwrap();
    info.lines()
        .find_map(|line| line.strip_prefix("used_memory:"))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

fn evicted_keys(redis: &RedisServer) -> u64 {
    let info: String = redis::cmd("INFO")
        .arg("stats")
        .query(&mut redis.connection())
        .unwrap();
    info.lines()
        .find_map(|line| line.strip_prefix("evicted_keys:"))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

/// A store with little memory: the run stops at max_fill (its byte budget, a share of
/// maxmemory) and the report says so; and where live data already fills the store close to
/// the high-water mark, the run stops before used memory crosses it, and no live key is
/// evicted because of warming.
#[test]
fn little_memory_stops_at_max_fill_and_at_the_high_water_mark() {
    let setup = Setup::new(1000);
    let maxmemory: u64 = 8 * 1024 * 1024;
    let data: u64 = setup
        .manifest
        .entries
        .iter()
        .map(|e| (e.key.len() + value_for(&e.key).len()) as u64)
        .sum();

    // max_fill: a budget of a third of the manifest's bytes.
    let redis = RedisServer::start(&["--maxmemory", "8mb", "--maxmemory-policy", "allkeys-lru"]);
    let share = format!("{}%", (data / 3) as f64 * 100.0 / maxmemory as f64);
    let args = setup.run_args(&[redis.url()], "runs", &["--max-fill", &share]);
    let output = run_to_end(setup.dir.path(), &args, "warm under a small max_fill");
    let (report, _) = report_of(&output.stdout);
    let target = &report.targets[0];
    assert_eq!(target.stopped_by.as_deref(), Some("max_fill"));
    let budget = target.budget_bytes.unwrap();
    assert!(budget.abs_diff(data / 3) <= 1, "{budget} vs {}", data / 3);
    assert!(target.bytes_written <= budget);
    assert!(target.counts.written > 0 && target.counts.skipped_budget > 0);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("stopped at max_fill"), "{stdout}");
    assert_eq!(evicted_keys(&redis), 0);

    // high_water: live data up to just under half of maxmemory, and the mark at half. The
    // room left takes about half the manifest: each entry takes more than its bytes in the
    // store, and the run's own connections hold buffers there (about 100 KiB with the
    // throttle's probe connection), which the run counts as used.
    let redis = RedisServer::start(&["--maxmemory", "8mb", "--maxmemory-policy", "allkeys-lru"]);
    let line = maxmemory / 2;
    let mut connection = redis.connection();
    let filler = "f".repeat(1024);
    let mut live = 0;
    while used_memory(&mut connection) < line - 2 * data {
        let _: () = connection.set(format!("live:{live}"), &filler).unwrap();
        live += 1;
    }
    let args = setup.run_args(
        &[redis.url()],
        "runs-hw",
        &[
            "--max-fill",
            "100%",
            "--high-water",
            "50%",
            "--batch-size",
            "20",
        ],
    );
    let output = run_to_end(
        setup.dir.path(),
        &args,
        "warm a store near its high-water mark",
    );
    let (report, _) = report_of(&output.stdout);
    let target = &report.targets[0];
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(target.stopped_by.as_deref(), Some("high_water"), "{stdout}");
    assert!(
        target.counts.written > 0 && target.counts.skipped_budget > 0,
        "{stdout}"
    );
    assert!(stdout.contains("high-water mark"), "{stdout}");
    // Read on the connection that was open when the run measured the store.
    let used = used_memory(&mut connection);
    assert!(
        used <= line,
        "used memory {used} crossed the high-water mark {line}"
    );
    assert_eq!(evicted_keys(&redis), 0);
    let dbsize: u64 = redis::cmd("DBSIZE").query(&mut connection).unwrap();
    assert_eq!(
        dbsize,
        live + target.counts.written,
        "every live key is still there"
    );
}

/// memcached evicting during the run (its memory full of live items) is left alone from then
/// on, as Redis is.
#[test]
fn a_memcached_that_evicts_is_no_longer_written() {
    let setup = Setup::new(240);
    let memcached = MemcachedServer::start(2);
    let client = memcached.client();
    let filler = "f".repeat(4000);
    let mut i = 0;
    while memcached.stat("evictions") == 0 {
        for _ in 0..200 {
            client
                .set(format!("live:{i}"), filler.as_str())
                .send()
                .unwrap();
            i += 1;
        }
    }
    let args = setup.run_args(&[memcached.url()], "runs", &UNTIL_EVICTIONS);
    // Live traffic keeps writing while the run goes on, as it would in production.
    let child = spawn_warmer(setup.dir.path(), &args);
    wait_for_progress(&setup.path("runs"));
    for _ in 0..2000 {
        client
            .set(format!("live:{i}"), filler.as_str())
            .send()
            .unwrap();
        i += 1;
    }
    let output = check_exit(
        child.wait_with_output().unwrap(),
        0,
        "warm a full memcached",
    );
    let (report, _) = report_of(&output.stdout);
    let target = &report.targets[0];
    assert_eq!(target.status, schemas::report::TargetStatus::Failed);
    let error = target.error.as_deref().unwrap();
    assert!(error.contains("evicted"), "{error}");
    assert!(target.counts.not_attempted > 0);
}

/// `--bandwidth` spaces the batches: the run cannot write faster than the limit (a lower bound
/// on its duration that pacing guarantees, not a timing race).
#[test]
fn bandwidth_limits_the_bytes_per_second() {
    let setup = Setup::new(200);
    let redis = RedisServer::start(&[]);
    let args = setup.run_args(
        &[redis.url()],
        "runs",
        &["--bandwidth", "16KiB", "--batch-size", "10"],
    );
    let output = run_to_end(setup.dir.path(), &args, "warm with a bandwidth limit");
    let (report, _) = report_of(&output.stdout);
    let target = &report.targets[0];
    assert_eq!(target.counts.written, setup.manifest.entries.len() as u64);
    // Adaptive throttling is on by default: it measured the store before warming.
    let throttle = target.throttle.as_ref().unwrap();
    assert!(throttle.baseline_us > 0 && throttle.threshold_us > throttle.baseline_us);
    // The first batch leaves at once, and each later one once the bytes before it have had
    // their time: the last leaves after all but its own bytes.
    let last: u64 = setup.manifest.entries[190..]
        .iter()
        .map(|e| (e.key.len() + value_for(&e.key).len()) as u64)
        .sum();
    let least_ms = (target.bytes_written - last) * 1000 / (16 * 1024);
    assert!(
        report.timings.warm_ms >= least_ms,
        "{} bytes in {} ms: faster than 16 KiB/s",
        target.bytes_written,
        report.timings.warm_ms
    );
}
