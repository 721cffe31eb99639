//! Redis through Sentinel (`redis+sentinel://`): a warm that a `SENTINEL FAILOVER` interrupts
//! goes on on the new master and loses no key; a Sentinel's master is a source too; `rediss+sentinel://` to a setup that takes TLS
//! only, into the database the URL names, with the Sentinel's password apart from the master's.

// A failed step should stop the test where it failed.
#![allow(clippy::unwrap_used)]

use std::io::Write;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use cachewarm_tests::{
    MASTER_NAME, RedisSentinel, RedisServer, SentinelSecurity, TestCerts, assert_refused,
    check_exit, ingest_and_rank, report_of, run_args, warm, warmer_command,
};
use redis::Commands;

/// The value stored under `key`, naming it, so a value under the wrong key shows.
fn value_for(key: &str) -> String {
    format!("value-of-{key}")
}

/// `n` keys, a replica holding them (their [`value_for`], an hour's TTL), and a manifest that
/// takes them all, in `dir`.
fn replica_and_manifest(dir: &Path, n: usize) -> (Vec<String>, RedisServer, String) {
    let replica = RedisServer::start(&[]);
    let (keys, manifest) = filled_with_manifest(dir, n, &mut replica.connection());
    (keys, replica, manifest)
}

/// `n` keys written through `connection` (their [`value_for`], an hour's TTL), and a manifest
/// in `dir` that takes them all.
fn filled_with_manifest(
    dir: &Path,
    n: usize,
    connection: &mut redis::Connection,
) -> (Vec<String>, String) {
    let keys: Vec<String> = (0..n).map(|i| format!("app:v2:item:{i}")).collect();
    for key in &keys {
        let _: () = connection.set_ex(key, value_for(key), 3600).unwrap();
    }
    let log = dir.join("access.jsonl");
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
    let (_, manifest) = ingest_and_rank(dir, &log, "64MiB", "manifest.json", &[]);
    (keys, manifest.to_str().unwrap().to_owned())
}

/// The master a Sentinel names as the source (`redis+sentinel://` for `--source`): the warm
/// reads every key from it, and the target holds each with its value and a TTL from the
/// master's.
#[test]
fn a_sentinel_names_the_source() {
    let sentinel = RedisSentinel::start();
    let dir = tempfile::tempdir().unwrap();
    let (keys, manifest) =
        filled_with_manifest(dir.path(), 50, &mut sentinel.master().connection());
    let target = RedisServer::start(&[]);
    let (report, _) = warm(dir.path(), &manifest, &sentinel.url(), &target.url(), &[]);
    assert_eq!(report.source_error, None);
    let counts = &report.targets[0].counts;
    assert_eq!(counts.written, keys.len() as u64, "{counts:?}");
    let mut connection = target.connection();
    for key in &keys {
        let value: Option<String> = connection.get(key).unwrap();
        assert_eq!(value.as_deref(), Some(value_for(key).as_str()), "{key}");
        let ttl: i64 = connection.ttl(key).unwrap();
        assert!((3500..=3600).contains(&ttl), "{key}: TTL {ttl}");
    }
}

/// A warm into the master a Sentinel names, slowed (`--rate`) so that a `SENTINEL FAILOVER`
/// comes mid-run: the run completes with nothing failed, and the new master holds every key
/// with the replica's value. Writes the old master took after its replica was promoted are lost
/// with it; the warmer sends those again (each batch waits for a replica's acknowledgement), so
/// a key missing here is one the warmer lost.
#[test]
fn a_warm_survives_a_sentinel_failover() {
    let sentinel = RedisSentinel::start();
    let dir = tempfile::tempdir().unwrap();
    let (keys, replica, manifest) = replica_and_manifest(dir.path(), 300);
    let args = run_args(
        &manifest,
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

/// `rediss+sentinel://` to a setup that takes TLS only (clients, replication and the
/// Sentinel's links, client certificates demanded), whose Sentinel has a password of its own
/// (`requirepass`) apart from the master's: with both passwords from files, the Sentinel's
/// with an ACL user name, a warm into database 3 writes every key there and none in database
/// 0, and neither password shows in the run directory. Without the Sentinel's password, or with the master's given to the Sentinel, the master
/// is not found: the target fails with an error that names it.
#[test]
fn a_warm_through_a_tls_sentinel_with_its_own_password() {
    let certs = TestCerts::new();
    let sentinel = RedisSentinel::start_with(SentinelSecurity {
        certs: Some(&certs),
        master_password: Some("master-pw-4d1f"),
        sentinel_password: Some("sentinel-pw-9c2e"),
    });
    let dir = tempfile::tempdir().unwrap();
    let (keys, replica, manifest) = replica_and_manifest(dir.path(), 40);
    let master_file = dir.path().join("master.pw");
    std::fs::write(&master_file, "master-pw-4d1f\n").unwrap();
    let sentinel_file = dir.path().join("sentinel.pw");
    std::fs::write(&sentinel_file, "sentinel-pw-9c2e\n").unwrap();
    let url = |sentinel_password: &Path| {
        format!(
            "rediss+sentinel://127.0.0.1:{}/{MASTER_NAME}/3?ca={}&cert={}&key={}\
             &password_file={}&sentinel_username=default&sentinel_password_file={}",
            sentinel.sentinel_port,
            certs.file("ca.pem"),
            certs.file("client.pem"),
            certs.file("client.key"),
            master_file.display(),
            sentinel_password.display()
        )
    };
    let (report, run_dir) = warm(
        dir.path(),
        &manifest,
        &replica.url(),
        &url(&sentinel_file),
        &[],
    );
    let target = &report.targets[0];
    assert_eq!(
        target.counts.written,
        keys.len() as u64,
        "{:?}",
        target.error
    );
    let mut master = sentinel.connection(sentinel.master());
    let _: () = redis::cmd("SELECT").arg(3).query(&mut master).unwrap();
    for key in &keys {
        let value: Option<String> = master.get(key).unwrap();
        assert_eq!(value.as_deref(), Some(value_for(key).as_str()), "{key}");
    }
    let _: () = redis::cmd("SELECT").arg(0).query(&mut master).unwrap();
    let in_db0: u64 = redis::cmd("DBSIZE").query(&mut master).unwrap();
    assert_eq!(in_db0, 0);
    // Neither password is written anywhere in the run directory.
    for file in std::fs::read_dir(&run_dir).unwrap().flatten() {
        let text = String::from_utf8_lossy(&std::fs::read(file.path()).unwrap()).into_owned();
        assert!(
            !text.contains("pw-"),
            "a password in {}",
            file.path().display()
        );
    }

    let without = url(Path::new("/nonexistent")).replace(
        "&sentinel_username=default&sentinel_password_file=/nonexistent",
        "",
    );
    for (i, refused) in [without, url(&master_file)].iter().enumerate() {
        let args = run_args(
            &manifest,
            &replica.url(),
            &[refused],
            &format!("runs-refused-{i}"),
            &["--strict"],
        );
        let named = format!(
            "rediss+sentinel://127.0.0.1:{}/{MASTER_NAME}/3",
            sentinel.sentinel_port
        );
        let text = assert_refused(dir.path(), &args, &named, "error");
        assert!(!text.contains("pw-"), "a password shows:\n{text}");
    }
}
