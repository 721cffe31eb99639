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
    MemcachedServer, RedisServer, Rng, app_keys, check_exit, ingest_and_rank, report_of,
    warmer_command,
};
use memcache::exp::{Get, Meta};
use redis::Commands;
use schemas::Checkpoint;
use schemas::report::Outcome;

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
        let mut args: Vec<String> = [
            "run",
            "--manifest",
            &self.manifest_path,
            "--source",
            &self.replica.url(),
            // The targets include memcached and SQL caches of the replica's raw strings.
            "--allow-cross-kind",
            "--runs-dir",
            &self.path(runs),
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        for target in targets {
            args.push("--target".into());
            args.push(target.clone());
        }
        args.extend(extra.iter().map(|s| (*s).to_owned()));
        args
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
fn redis_contents(redis: &RedisServer) -> BTreeMap<String, String> {
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
fn memcached_contents(
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

/// A deploy's warm step killed with SIGKILL at a dozen random points, and resumed each time
/// with `--resume`, leaves the stores exactly as one uninterrupted run leaves fresh stores;
/// keys live before the run keep their value and TTL. (After a kill the checkpoint trails the
/// stores by a batch or so: the resumed run sends those writes again, and add semantics find
/// them present.)
#[test]
fn killed_at_random_points_and_resumed_equals_one_run() {
    let setup = Setup::new(240);
    let redis = RedisServer::start(&[]);
    let memcached = MemcachedServer::start(64);
    let fresh_redis = RedisServer::start(&[]);
    let fresh_memcached = MemcachedServer::start(64);
    seed_live_keys(&redis, &memcached, &setup.manifest);
    seed_live_keys(&fresh_redis, &fresh_memcached, &setup.manifest);

    // Slow enough (60 writes/s per target in batches of 4) that a kill lands mid-run.
    let slow = ["--rate", "60", "--batch-size", "4", "--resume"];
    let args = setup.run_args(&[redis.url(), memcached.url()], "runs", &slow);
    let mut rng = Rng::new(5);
    let mut killed_mid_run = 0;
    for _ in 0..12 {
        let mut child = warmer_command(setup.dir.path(), &args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(150 + rng.next_u64() % 900));
        child.kill().unwrap();
        child.wait().unwrap();
        let runs = std::fs::read_dir(setup.path("runs"));
        for run in runs.into_iter().flatten().flatten() {
            if let Some(checkpoint) = checkpoint_of(&run.path())
                && !checkpoint.finished
                && checkpoint.next_entry > 0
            {
                killed_mid_run += 1;
            }
        }
    }
    let checkpoints: Vec<Checkpoint> = std::fs::read_dir(setup.path("runs"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|run| checkpoint_of(&run.path()))
        .collect();
    assert!(
        killed_mid_run > 0,
        "no kill landed in the middle of a run: {checkpoints:#?}"
    );
    let output = run_to_end(setup.dir.path(), &args, "final resume");
    let (report, run_dir) = report_of(&output.stdout);
    assert_eq!(report.outcome, Outcome::Completed);
    let checkpoint = checkpoint_of(&run_dir).unwrap();
    assert!(checkpoint.finished);
    assert!(
        checkpoint.resumed > 0,
        "the last run did not resume a killed one"
    );

    let reference = setup.run_args(&[fresh_redis.url(), fresh_memcached.url()], "fresh", &[]);
    run_to_end(setup.dir.path(), &reference, "uninterrupted run");

    assert_eq!(redis_contents(&redis), redis_contents(&fresh_redis));
    assert_eq!(
        memcached_contents(&memcached, &setup.manifest),
        memcached_contents(&fresh_memcached, &setup.manifest)
    );
    assert_live_keys_untouched(&redis, &memcached, &setup.manifest);

    // The written-keys logs survived the kills: undoing every run directory leaves exactly
    // the keys that were live before.
    for run in std::fs::read_dir(setup.path("runs")).unwrap().flatten() {
        if run.path().join("checkpoint.json").is_file() {
            let undo = ["undo".to_owned(), run.path().to_str().unwrap().to_owned()];
            run_to_end(setup.dir.path(), &undo, "undo after kills");
        }
    }
    let live: BTreeMap<String, String> = live_keys(&setup.manifest)
        .into_iter()
        .map(|key| (key, "kept".to_owned()))
        .collect();
    assert_eq!(redis_contents(&redis), live);
    assert_eq!(memcached_contents(&memcached, &setup.manifest).len(), 2);
    assert_live_keys_untouched(&redis, &memcached, &setup.manifest);
}

/// SIGTERM (what Kubernetes and deploy tools send) stops the run after its batches in flight:
/// it exits 0 with the checkpoint and a report saying `interrupted`; `--resume RUN_DIR`
/// finishes the job, and the counts of both invocations add up to what the store holds.
#[test]
fn sigterm_stops_cleanly_and_resume_completes() {
    let setup = Setup::new(200);
    let redis = RedisServer::start(&[]);
    let args = setup.run_args(
        &[redis.url()],
        "runs",
        &["--rate", "50", "--batch-size", "5"],
    );
    let child = spawn_warmer(setup.dir.path(), &args);
    // Wait until the run has written something, then ask it to stop.
    wait_for_progress(&setup.path("runs"));
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let output = check_exit(child.wait_with_output().unwrap(), 0, "interrupted run");
    let (report, run_dir) = report_of(&output.stdout);
    assert_eq!(
        report.outcome,
        Outcome::Interrupted,
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let first = &report.targets[0].counts;
    assert!(first.not_attempted > 0, "the run ended before the signal");
    assert_eq!(first.total(), report.manifest.entries);
    let checkpoint = checkpoint_of(&run_dir).unwrap();
    assert!(!checkpoint.finished);
    assert_eq!(checkpoint.counts[0].written, first.written);
    let status = run_to_end(
        setup.dir.path(),
        &["status".to_owned(), run_dir.to_str().unwrap().to_owned()],
        "status",
    );
    assert!(String::from_utf8_lossy(&status.stdout).contains("interrupted"));

    let mut resume = args.clone();
    resume.extend(["--resume".to_owned(), run_dir.to_str().unwrap().to_owned()]);
    let output = run_to_end(setup.dir.path(), &resume, "resume");
    let (report, resumed_dir) = report_of(&output.stdout);
    assert_eq!(resumed_dir, run_dir);
    assert_eq!(report.outcome, Outcome::Completed);
    let counts = &report.targets[0].counts;
    assert_eq!(counts.not_attempted, 0);
    assert_eq!(counts.total(), report.manifest.entries);
    let dbsize: u64 = redis::cmd("DBSIZE").query(&mut redis.connection()).unwrap();
    assert_eq!(counts.written + counts.already_present, dbsize);
    assert!(checkpoint_of(&run_dir).unwrap().finished);

    // Resuming a finished run does nothing and says so.
    let output = run_to_end(setup.dir.path(), &resume, "resume of a finished run");
    assert!(String::from_utf8_lossy(&output.stdout).contains("finished already"));
    // Resuming against other targets is refused, naming the run and what differs.
    let mut wrong_targets = resume.clone();
    let at = wrong_targets.iter().position(|a| a == "--target").unwrap();
    wrong_targets[at + 1] = setup.replica.url();
    let output = check_exit(
        warmer_command(setup.dir.path(), &wrong_targets)
            .output()
            .unwrap(),
        2,
        "resume against other targets",
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("cannot resume") && stderr.contains("targets"),
        "{stderr}"
    );
}

/// `warmer undo` deletes what the run wrote, except a key rewritten since (compare-and-delete
/// on Redis, CAS on memcached), and never a key that was live before the run.
#[test]
fn undo_deletes_only_what_the_run_wrote_and_nobody_changed() {
    let setup = Setup::new(120);
    let redis = RedisServer::start(&[]);
    let memcached = MemcachedServer::start(64);
    seed_live_keys(&redis, &memcached, &setup.manifest);
    let sqlite_path = setup.path("cache.sqlite3");
    let sqlite = format!("sqlite://{sqlite_path}?table=django_cache");
    let args = setup.run_args(&[redis.url(), memcached.url(), sqlite], "runs", &[]);
    let output = run_to_end(setup.dir.path(), &args, "warm");
    let (report, run_dir) = report_of(&output.stdout);
    let redis_written = report.targets[0].counts.written;
    let memcached_written = report.targets[1].counts.written;
    assert!(redis_written > 100 && memcached_written > 100);
    assert_eq!(report.targets[2].counts.written, 120);

    // The application rewrites one warmed key in each store.
    let live = live_keys(&setup.manifest);
    let changed = &setup
        .manifest
        .entries
        .iter()
        .find(|e| !e.key.contains(' ') && !live.contains(&e.key))
        .unwrap()
        .key;
    let _: () = redis.connection().set_ex(changed, "new", 600).unwrap();
    memcached
        .client()
        .set(changed, "new")
        .ttl(memcache::exp::Ttl::secs(600))
        .send()
        .unwrap();
    let db = rusqlite::Connection::open(&sqlite_path).unwrap();
    db.execute(
        "UPDATE django_cache SET value = 'new' WHERE cache_key = ?1",
        [changed],
    )
    .unwrap();

    let output = run_to_end(
        setup.dir.path(),
        &["undo".to_owned(), run_dir.to_str().unwrap().to_owned()],
        "undo",
    );
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        text.contains(&format!("deleted {}", redis_written - 1)),
        "{text}"
    );
    assert!(
        text.contains(&format!("deleted {}", memcached_written - 1)),
        "{text}"
    );
    assert!(text.contains("deleted 119"), "{text}");

    // Left: the rewritten key and the keys live before the run.
    let mut expected: BTreeMap<String, String> = BTreeMap::new();
    expected.insert(changed.clone(), "new".to_owned());
    for key in live {
        expected.insert(key, "kept".to_owned());
    }
    assert_eq!(redis_contents(&redis), expected);
    let left = memcached_contents(&memcached, &setup.manifest);
    assert_eq!(left.len(), 3);
    assert_eq!(left[changed.as_str()], b"new");
    assert_live_keys_untouched(&redis, &memcached, &setup.manifest);
    let rows: Vec<(String, String)> = db
        .prepare("SELECT cache_key, value FROM django_cache")
        .unwrap()
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(rows, vec![(changed.clone(), "new".to_owned())]);

    // Undo again: nothing more to delete.
    let output = run_to_end(
        setup.dir.path(),
        &["undo".to_owned(), run_dir.to_str().unwrap().to_owned()],
        "second undo",
    );
    assert!(String::from_utf8_lossy(&output.stdout).contains("deleted 0"));
}

/// In development warming is off: the run exits 0, writes nothing and says why; the config
/// turns it on per environment; a bad config value exits 2 naming the file, field and value.
#[test]
fn environment_profiles_switch_warming() {
    let setup = Setup::new(40);
    let redis = RedisServer::start(&[]);
    let args = setup.run_args(&[redis.url()], "runs", &[]);
    let output = check_exit(
        warmer_command(setup.dir.path(), &args)
            .env("RAILS_ENV", "development")
            .output()
            .unwrap(),
        0,
        "development run",
    );
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        text.contains("development") && text.contains("RAILS_ENV"),
        "{text}"
    );
    let dbsize: u64 = redis::cmd("DBSIZE").query(&mut redis.connection()).unwrap();
    assert_eq!(dbsize, 0);
    assert!(!Path::new(&setup.path("runs")).exists());

    // cachewarm.toml in the working directory turns development on.
    std::fs::write(
        setup.dir.path().join("cachewarm.toml"),
        "[env.development]\nenabled = true\nbatch_size = 7\n",
    )
    .unwrap();
    let output = check_exit(
        warmer_command(setup.dir.path(), &args)
            .env("RAILS_ENV", "development")
            .output()
            .unwrap(),
        0,
        "development run, turned on",
    );
    let (report, _) = report_of(&output.stdout);
    assert_eq!(report.environment.as_deref(), Some("development"));
    let dbsize: u64 = redis::cmd("DBSIZE").query(&mut redis.connection()).unwrap();
    assert_eq!(report.targets[0].counts.written, dbsize);
    assert!(dbsize > 0);

    // production off by config; a flag wins over it.
    let config = setup.path("cachewarm-prod.toml");
    std::fs::write(&config, "[env.production]\nenabled = false\n").unwrap();
    let mut with_config = args.clone();
    with_config.extend(["--config".to_owned(), config.clone()]);
    let output = check_exit(
        warmer_command(setup.dir.path(), &with_config)
            .env("CACHEWARM_ENV", "production")
            .output()
            .unwrap(),
        0,
        "production, turned off",
    );
    assert!(String::from_utf8_lossy(&output.stdout).contains("env.production.enabled = false"));

    std::fs::write(&config, "[env.production]\ntimeout = \"soon\"\n").unwrap();
    let output = check_exit(
        warmer_command(setup.dir.path(), &with_config)
            .env("CACHEWARM_ENV", "production")
            .output()
            .unwrap(),
        2,
        "bad config",
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("cachewarm-prod.toml")
            && stderr.contains("env.production.timeout")
            && stderr.contains("soon"),
        "{stderr}"
    );
}

/// `--detach` returns at once with the run directory; `warmer status` follows the background
/// run until it has finished.
#[test]
fn detach_returns_and_status_follows_the_run() {
    let setup = Setup::new(100);
    let redis = RedisServer::start(&[]);
    let args = setup.run_args(
        &[redis.url()],
        "runs",
        &["--detach", "--rate", "100", "--batch-size", "10"],
    );
    let output = run_to_end(setup.dir.path(), &args, "detach");
    let run_dir = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    assert!(
        Path::new(&run_dir).is_dir(),
        "not a run directory: {run_dir}"
    );
    let status_args = ["status".to_owned(), run_dir.clone()];
    let started = Instant::now();
    let text = loop {
        let output = warmer_command(setup.dir.path(), &status_args)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&output.stdout).into_owned();
        if output.status.success() && text.contains(": finished") {
            break text;
        }
        assert!(
            started.elapsed() < PATIENCE,
            "the detached run did not finish: {text}\n{}",
            std::fs::read_to_string(Path::new(&run_dir).join("warmer.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(text.contains("100 of 100 entries"), "{text}");
    let log = std::fs::read_to_string(Path::new(&run_dir).join("warmer.log")).unwrap();
    assert!(log.contains("completed"), "{log}");
    let dbsize: u64 = redis::cmd("DBSIZE").query(&mut redis.connection()).unwrap();
    assert_eq!(dbsize, 100);

    // Without a run directory, status shows the newest run.
    let output = run_to_end(
        setup.dir.path(),
        &[
            "status".to_owned(),
            "--runs-dir".to_owned(),
            setup.path("runs"),
            "--json".to_owned(),
        ],
        "status --json",
    );
    let status: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(status["state"], "finished");
}

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

/// Reports and checkpoints hold target URLs with the password redacted, so undo takes the
/// real URL again (here from `CACHEWARM_TARGETS`, as a deploy passes it from a secret) and
/// refuses, with a hint, to guess.
#[test]
fn undo_takes_the_password_again() {
    let setup = Setup::new(30);
    let redis = RedisServer::start(&["--requirepass", "s3cret"]);
    let url = format!("redis://:s3cret@127.0.0.1:{}", redis.port);
    let args = setup.run_args(std::slice::from_ref(&url), "runs", &[]);
    let output = run_to_end(setup.dir.path(), &args, "warm");
    let (report, run_dir) = report_of(&output.stdout);
    assert!(!report.targets[0].url.contains("s3cret"));
    let checkpoint = std::fs::read_to_string(run_dir.join("checkpoint.json")).unwrap();
    assert!(!checkpoint.contains("s3cret"));

    let undo = ["undo".to_owned(), run_dir.to_str().unwrap().to_owned()];
    let output = check_exit(
        warmer_command(setup.dir.path(), &undo).output().unwrap(),
        1,
        "undo without the password",
    );
    assert!(String::from_utf8_lossy(&output.stdout).contains("hint"));
    let output = check_exit(
        warmer_command(setup.dir.path(), &undo)
            .env("CACHEWARM_TARGETS", &url)
            .output()
            .unwrap(),
        0,
        "undo with the password",
    );
    assert!(String::from_utf8_lossy(&output.stdout).contains("deleted 30"));
    let mut connection = redis::Client::open(url.as_str())
        .unwrap()
        .get_connection()
        .unwrap();
    let dbsize: u64 = redis::cmd("DBSIZE").query(&mut connection).unwrap();
    assert_eq!(dbsize, 0);
}

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
