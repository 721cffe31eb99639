//! The `exec:` source on real servers: loader processes speaking protocol v1 (DESIGN.md) warm
//! Redis and memcached. The README's plain-Python loader, several entries per key under store
//! keys of their own (found by undo), misses and errors counted with their reasons, loaders
//! that crash, hang or write garbage (restarted, their keys asked again, their stderr in the
//! report), an interrupted run resumed, and a loader for another kind of store refused.

// A failed step should stop the test where it failed.
#![allow(clippy::unwrap_used)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use cachewarm_tests::{
    MemcachedServer, RedisServer, check_exit, ingest_and_rank, report_of, run_args, warmer_command,
};
use memcache::exp::Get;
use redis::Commands;
use schemas::report::{EntryOutcome, Outcome};

/// The longest a test waits for a background run before it gives up (a bound against hanging,
/// not a timing assertion).
const PATIENCE: Duration = Duration::from_secs(120);

/// The loader the README shows.
fn readme_loader() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../sample_data/loader/loader.py")
        .display()
        .to_string()
}

/// The test loader whose behaviour each key picks (see its docstring).
fn faulty_loader() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("loaders/faulty.py")
        .display()
        .to_string()
}

/// A manifest of `keys`, ranked by `analyzer` from an access log in which earlier keys are
/// read more often (so the manifest keeps their order).
struct Setup {
    dir: tempfile::TempDir,
    manifest: schemas::Manifest,
    manifest_path: String,
}

impl Setup {
    fn new(keys: &[String]) -> Setup {
        Setup::ranked(keys, &[])
    }

    /// Ranked with `rank_args` (a preset, say) besides.
    fn ranked(keys: &[String], rank_args: &[&str]) -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("access.jsonl");
        let mut out = std::io::BufWriter::new(std::fs::File::create(&log).unwrap());
        for (i, key) in keys.iter().enumerate() {
            for read in 0..2 + (keys.len() - i) {
                let ts = 1_763_700_000.0 + read as f64 + i as f64 * 0.0001;
                writeln!(
                    out,
                    r#"{{"ts": {ts:.4}, "key": {}, "op": "get", "hit": true, "value_size": 20}}"#,
                    serde_json::to_string(key).unwrap(),
                )
                .unwrap();
            }
        }
        out.flush().unwrap();
        drop(out);
        let (_, manifest_path) =
            ingest_and_rank(dir.path(), &log, "64MiB", "manifest.json", rank_args);
        let manifest = cachewarm_tests::read_manifest(&manifest_path);
        assert_eq!(manifest.entries.len(), keys.len());
        Setup {
            manifest_path: manifest_path.to_str().unwrap().to_owned(),
            dir,
            manifest,
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `warmer run` from the manifest with `source`, into `targets`, plus `extra`.
    fn args(&self, source: &str, targets: &[String], extra: &[&str]) -> Vec<String> {
        run_args(
            &self.manifest_path,
            source,
            targets,
            self.path("runs").to_str().unwrap(),
            extra,
        )
    }

    /// A fresh state directory for the faulty loader.
    fn state(&self, name: &str) -> PathBuf {
        let state = self.path(name);
        std::fs::create_dir_all(&state).unwrap();
        state
    }

    /// The manifest category of `key`.
    fn category_of(&self, key: &str) -> String {
        let entry = self.manifest.entries.iter().find(|e| e.key == key).unwrap();
        entry.category.clone()
    }
}

fn warmer(dir: &Path, args: &[String], state: Option<&Path>) -> Command {
    let mut command = warmer_command(dir, args);
    if let Some(state) = state {
        command.env("FAULTY_STATE", state);
    }
    command
}

fn run(dir: &Path, args: &[String], state: Option<&Path>, code: i32, what: &str) -> Output {
    check_exit(warmer(dir, args, state).output().unwrap(), code, what)
}

fn text(output: &Output) -> String {
    format!(
        "--- stdout ---\n{}\n--- stderr ---\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn strings(keys: &[&str]) -> Vec<String> {
    keys.iter().map(|k| (*k).to_owned()).collect()
}

/// The README shows the very loader the tests run.
#[test]
fn the_readme_shows_the_loader_the_tests_run() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let loader = std::fs::read_to_string(readme_loader()).unwrap();
    assert!(
        readme.contains(&format!("```python\n{loader}```")),
        "README.md's loader differs from sample_data/loader/loader.py"
    );
}

/// The README's 20-line Python loader warms Redis and memcached: every key it knows is read
/// back through each store's own client with the value the loader computed, every key it does
/// not know is a miss with the loader's reason, and the report carries the loader's hello.
#[test]
fn the_readme_loader_warms_redis_and_memcached() {
    let keys: Vec<String> = (0..300)
        .map(|i| match i % 10 {
            9 => format!("product:{i}"),
            _ => format!("user:{i}"),
        })
        .collect();
    let setup = Setup::new(&keys);
    let users: Vec<&String> = keys.iter().filter(|k| k.starts_with("user:")).collect();
    let others = keys.len() - users.len();

    let redis = RedisServer::start(&[]);
    let source = format!("exec:/usr/bin/python3 {}", readme_loader());
    let args = setup.args(&source, &[redis.url()], &["--loader-workers", "2"]);
    let output = run(setup.dir.path(), &args, None, 0, "warm redis");
    let (report, _) = report_of(&output.stdout);
    let counts = &report.targets[0].counts;
    assert_eq!(counts.written, users.len() as u64, "{}", text(&output));
    assert_eq!(counts.source_miss, others as u64);
    let loader = report.loader.as_ref().unwrap();
    let hello = loader.hello.as_ref().unwrap();
    assert_eq!(hello.framework.as_deref(), Some("plain-python"));
    assert_eq!(loader.workers, 2);
    assert_eq!(loader.misses.get("no such user"), Some(&(others as u64)));
    assert!(loader.failures.is_empty(), "{:?}", loader.failures);
    let mut connection = redis.connection();
    for key in &users {
        let value: String = connection.get(key.as_str()).unwrap();
        assert_eq!(value, format!("value of {key}"));
        let ttl: i64 = connection.ttl(key.as_str()).unwrap();
        assert!((3500..=3600).contains(&ttl), "{key}: TTL {ttl}");
    }
    let dbsize: u64 = redis::cmd("DBSIZE").query(&mut connection).unwrap();
    assert_eq!(dbsize, users.len() as u64);

    let memcached = MemcachedServer::start(64);
    let source = format!("exec:/usr/bin/python3 {} memcached", readme_loader());
    let args = setup.args(&source, &[memcached.url()], &[]);
    let output = run(setup.dir.path(), &args, None, 0, "warm memcached");
    let (report, _) = report_of(&output.stdout);
    assert_eq!(report.targets[0].counts.written, users.len() as u64);
    let client = memcached.client();
    for key in &users {
        let item = client.run(Get::new(key)).unwrap();
        assert_eq!(
            item.value.as_deref(),
            Some(format!("value of {key}").as_bytes()),
            "{key}"
        );
    }
}

/// A key whose loader answers two entries under store keys of its own (a version bump) is
/// written as both, counted once under the manifest key's category, and `warmer undo` finds
/// and deletes both store keys. The final coverage probe asks for the store keys written:
/// the manifest keys themselves are never in the store, so probing them read 1 of 4 warm.
#[test]
fn several_entries_under_other_store_keys_are_written_together_and_undone() {
    let keys = strings(&["page:1:multi", "page:2:multi", "page:3", "page:4:multi"]);
    let setup = Setup::new(&keys);
    let redis = RedisServer::start(&[]);
    let state = setup.state("state");
    let source = format!("exec:/usr/bin/python3 {} redis", faulty_loader());
    let args = setup.args(&source, &[redis.url()], &[]);
    let output = run(setup.dir.path(), &args, Some(&state), 0, "warm");
    let (report, run_dir) = report_of(&output.stdout);
    let target = &report.targets[0];
    assert_eq!(target.counts.written, 4, "{}", text(&output));
    let category = setup.category_of("page:1:multi");
    let multi_in_category = keys
        .iter()
        .filter(|k| k.contains("multi") && setup.category_of(k) == category)
        .count() as u64;
    assert!(target.categories[&category].counts.written >= multi_in_category);
    let mut connection = redis.connection();
    for key in keys.iter().filter(|k| k.contains("multi")) {
        let value: String = connection.get(format!("v2:{key}")).unwrap();
        assert_eq!(value, format!("value of {key}"));
        let meta: String = connection.get(format!("v2:{key}:meta")).unwrap();
        assert_eq!(meta, "meta");
        let exists: bool = connection.exists(key).unwrap();
        assert!(!exists, "the manifest key {key} itself is not written");
    }
    let dbsize: u64 = redis::cmd("DBSIZE").query(&mut connection).unwrap();
    assert_eq!(dbsize, 3 * 2 + 1);
    let before = target.coverage_before.as_ref().unwrap();
    let after = target.coverage_after.as_ref().unwrap();
    assert_eq!(before.keys_present, 0);
    assert_eq!(after.keys_present, keys.len() as u64, "{after:?}");
    assert_eq!(after.requests_present, after.requests_total, "{after:?}");

    let undo = run(
        setup.dir.path(),
        &strings(&["undo", run_dir.to_str().unwrap()]),
        None,
        0,
        "undo",
    );
    assert!(
        String::from_utf8_lossy(&undo.stdout).contains("deleted 7"),
        "{}",
        text(&undo)
    );
    let dbsize: u64 = redis::cmd("DBSIZE").query(&mut connection).unwrap();
    assert_eq!(dbsize, 0);
}

/// Misses are counted `source_miss` with the loader's reason; errors that are not retryable
/// are counted `failed` with it; a retryable error is asked again and then written; a value
/// over `--max-value-size` is skipped and counted failed with that reason.
#[test]
fn misses_errors_and_oversized_values_are_counted_with_their_reasons() {
    let keys = strings(&[
        "k:1",
        "k:2:miss",
        "k:3:fail",
        "k:4:flaky",
        "k:5:big",
        "k:6:miss",
        "k:7:flaky",
        "k:8",
    ]);
    let setup = Setup::new(&keys);
    let redis = RedisServer::start(&[]);
    let state = setup.state("state");
    let source = format!("exec:/usr/bin/python3 {} redis", faulty_loader());
    let args = setup.args(
        &source,
        &[redis.url()],
        &["--max-value-size", "1MiB", "--loader-workers", "1"],
    );
    let output = run(setup.dir.path(), &args, Some(&state), 0, "warm");
    let (report, _) = report_of(&output.stdout);
    let target = &report.targets[0];
    let counts = &target.counts;
    assert_eq!(
        (counts.written, counts.source_miss, counts.failed),
        (4, 2, 2),
        "{}",
        text(&output)
    );
    assert_eq!(
        target
            .failure_reasons
            .get("loader error: the database said no"),
        Some(&1)
    );
    assert_eq!(
        target
            .failure_reasons
            .get("value over --max-value-size (1.0 MiB)"),
        Some(&1),
        "{:?}",
        target.failure_reasons
    );
    let loader = report.loader.as_ref().unwrap();
    assert_eq!(loader.misses.get("object deleted"), Some(&2));
    assert!(loader.retries >= 2, "the flaky keys were asked again");
    let missed = target
        .not_warmed
        .iter()
        .find(|n| n.key == "k:2:miss")
        .unwrap();
    assert_eq!(missed.reason, EntryOutcome::SourceMiss);
    assert_eq!(missed.detail.as_deref(), Some("object deleted"));
    let mut connection = redis.connection();
    for key in ["k:1", "k:4:flaky", "k:7:flaky", "k:8"] {
        let value: String = connection.get(key).unwrap();
        assert_eq!(value, format!("value of {key}"));
    }

    // Under the default cap the 2 MiB value is written.
    let redis = RedisServer::start(&[]);
    let args = setup.args(&source, &[redis.url()], &[]);
    let output = run(
        setup.dir.path(),
        &args,
        Some(&state),
        0,
        "warm, default cap",
    );
    let (report, _) = report_of(&output.stdout);
    // The two misses and the key whose loader always errs stay unwritten: 8 - 2 - 1.
    let counts = &report.targets[0].counts;
    assert_eq!((counts.written, counts.failed), (5, 1), "{}", text(&output));
    let big: Vec<u8> = redis.connection().get("k:5:big").unwrap();
    assert_eq!(big.len(), 2 << 20);
}

/// A loader that crashes mid-request, one that hangs, and one that writes a line that is not
/// JSON are each killed, reported with the end of their stderr, and restarted; their keys are
/// asked again and written, and the run exits 0. A key that crashes the loader every time is
/// counted failed after its retries while the keys after it are written. `--strict` turns
/// loader failures into exit 1.
#[test]
fn crashing_hanging_and_garbage_loaders_are_restarted_and_reported() {
    let mut keys = strings(&[
        "a:1",
        "a:2:crash",
        "a:3",
        "a:4:hang",
        "a:5",
        "a:6:garbage",
        "a:7",
        "a:8:poison",
        "a:9",
    ]);
    keys.extend((10..60).map(|i| format!("a:{i}")));
    let setup = Setup::new(&keys);
    let redis = RedisServer::start(&[]);
    let state = setup.state("state");
    let source = format!("exec:/usr/bin/python3 {} redis", faulty_loader());
    let extra = [
        "--loader-timeout",
        "1s",
        "--retries",
        "2",
        "--loader-workers",
        "2",
        "--batch-size",
        "10",
    ];
    let args = setup.args(&source, &[redis.url()], &extra);
    let started = Instant::now();
    let output = run(setup.dir.path(), &args, Some(&state), 0, "warm");
    assert!(started.elapsed() < PATIENCE);
    let (report, _) = report_of(&output.stdout);
    assert_eq!(report.outcome, Outcome::Completed);
    let counts = &report.targets[0].counts;
    assert_eq!(
        (counts.written, counts.failed),
        (keys.len() as u64 - 1, 1),
        "{}",
        text(&output)
    );
    let poisoned = report.targets[0]
        .not_warmed
        .iter()
        .find(|n| n.key == "a:8:poison")
        .unwrap();
    assert!(
        poisoned
            .detail
            .as_deref()
            .unwrap()
            .contains("loader crashed"),
        "{poisoned:?}"
    );
    let loader = report.loader.as_ref().unwrap();
    assert!(loader.restarts >= 3, "{loader:?}");
    let failure_with = |message: &str, stderr: &str| {
        loader.failures.iter().any(|f| {
            f.message.contains(message) && f.stderr_tail.iter().any(|l| l.contains(stderr))
        })
    };
    assert!(
        failure_with(
            "exit status: 3",
            "RuntimeError: loader crashed on a:2:crash"
        ),
        "{:#?}",
        loader.failures
    );
    assert!(
        failure_with("it hangs", "hanging on a:4:hang"),
        "{:#?}",
        loader.failures
    );
    assert!(
        failure_with("not a protocol v1 answer", "garbage for a:6:garbage"),
        "{:#?}",
        loader.failures
    );
    let mut connection = redis.connection();
    for key in keys.iter().filter(|k| !k.contains("poison")) {
        let value: String = connection.get(key).unwrap();
        assert_eq!(value, format!("value of {key}"));
    }

    // --strict: the same loader failures fail the deploy step.
    let redis = RedisServer::start(&[]);
    let state = setup.state("strict-state");
    let mut args = setup.args(&source, &[redis.url()], &extra);
    args.push("--strict".into());
    let output = run(setup.dir.path(), &args, Some(&state), 1, "strict warm");
    let (report, _) = report_of(&output.stdout);
    assert_eq!(report.targets[0].counts.written, keys.len() as u64 - 1);
}

/// SIGTERM stops a loader run after its batches in flight; `--resume` finishes it without
/// asking the loader again for the keys already handled, and every key ends up written.
#[test]
fn an_interrupted_loader_run_resumes_where_it_stopped() {
    let keys: Vec<String> = (0..120).map(|i| format!("r:{i}")).collect();
    let setup = Setup::new(&keys);
    let redis = RedisServer::start(&[]);
    let state = setup.state("first");
    // 20 ms per key, one worker: about 2.4 s for the whole manifest.
    let source = format!("exec:/usr/bin/python3 {} redis 0.02", faulty_loader());
    let args = setup.args(
        &source,
        &[redis.url()],
        &["--loader-workers", "1", "--batch-size", "5"],
    );
    let child = warmer(setup.dir.path(), &args, Some(&state))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let runs = setup.path("runs");
    loop {
        let progressed = std::fs::read_dir(&runs)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|run| {
                serde_json::from_slice::<schemas::Checkpoint>(
                    &std::fs::read(run.path().join("checkpoint.json")).ok()?,
                )
                .ok()
            })
            .any(|c| c.next_entry >= 20);
        if progressed {
            break;
        }
        assert!(started.elapsed() < PATIENCE, "the run never progressed");
        std::thread::sleep(Duration::from_millis(20));
    }
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let output = check_exit(child.wait_with_output().unwrap(), 0, "interrupted run");
    let (report, run_dir) = report_of(&output.stdout);
    assert_eq!(report.outcome, Outcome::Interrupted, "{}", text(&output));
    let first = report.targets[0].counts.clone();
    assert!(first.written >= 20 && first.not_attempted > 0, "{first:?}");

    let resumed_state = setup.state("second");
    let mut resume = args.clone();
    resume.extend(["--resume".to_owned(), run_dir.to_str().unwrap().to_owned()]);
    let output = run(setup.dir.path(), &resume, Some(&resumed_state), 0, "resume");
    let (report, _) = report_of(&output.stdout);
    assert_eq!(report.outcome, Outcome::Completed);
    let counts = &report.targets[0].counts;
    assert_eq!(counts.written, keys.len() as u64, "{}", text(&output));
    let asked_again = std::fs::read_to_string(resumed_state.join("asked")).unwrap();
    let asked_again: Vec<&str> = asked_again.lines().collect();
    // The first 20 keys were handled before the signal: the resumed run does not ask for them.
    for key in &keys[..20] {
        assert!(!asked_again.contains(&key.as_str()), "{key} asked again");
    }
    let dbsize: u64 = redis::cmd("DBSIZE").query(&mut redis.connection()).unwrap();
    assert_eq!(dbsize, keys.len() as u64);
}

/// A loader whose hello says it makes values for another kind of store is refused before
/// anything is written or any run directory made: exit 2 naming both kinds. So is a loader
/// command that cannot be run.
#[test]
fn a_loader_for_another_store_kind_is_refused() {
    let keys = strings(&["x:1", "x:2"]);
    let setup = Setup::new(&keys);
    let redis = RedisServer::start(&[]);
    let state = setup.state("state");
    let source = format!("exec:/usr/bin/python3 {} memcached", faulty_loader());
    let args = setup.args(&source, &[redis.url()], &[]);
    let output = run(setup.dir.path(), &args, Some(&state), 2, "kind mismatch");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("store_kind \"memcached\"") && stderr.contains("is a redis store"),
        "{stderr}"
    );
    assert!(!setup.path("runs").exists(), "no run directory is made");
    let dbsize: u64 = redis::cmd("DBSIZE").query(&mut redis.connection()).unwrap();
    assert_eq!(dbsize, 0);

    let args = setup.args("exec:/nonexistent/loader --flag", &[redis.url()], &[]);
    let output = run(setup.dir.path(), &args, None, 2, "missing loader");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("cannot run loader `/nonexistent/loader`"),
        "{stderr}"
    );
}

/// A loader is the application: it gets the warmer's environment without the warmer's secrets.
/// The target's password (in a variable its URL names, and the default one), the key-hash
/// secret and the URL variables `--detach` uses never reach it; the application's own
/// variables (`PGPASSWORD` for its database, the Django integration's `CACHEWARM_DJANGO_*`) do.
/// The loader writes the names it sees as the value, read back from Redis.
#[test]
fn a_loader_does_not_get_the_warmers_secrets() {
    const PASSWORD: &str = "target-secret-4471";
    let keys = strings(&["page:env"]);
    let setup = Setup::new(&keys);
    let redis = RedisServer::start(&["--requirepass", PASSWORD]);
    let state = setup.state("state");
    let source = format!("exec:/usr/bin/python3 {} redis", faulty_loader());
    let target = format!(
        "redis://127.0.0.1:{}?password_env=CACHEWARM_APP_REDIS_PW",
        redis.port
    );
    let args = setup.args(&source, &[target], &[]);
    let output = warmer(setup.dir.path(), &args, Some(&state))
        .env("CACHEWARM_APP_REDIS_PW", PASSWORD)
        .env("CACHEWARM_TARGET_PASSWORD", "unused-default-secret")
        .env("CACHEWARM_KEY_HASH_SECRET", "key-hash-secret")
        .env("CACHEWARM_SOURCE", &source)
        .env("PGPASSWORD", "the-apps-own-database")
        .env("CACHEWARM_DJANGO_KEY_PATTERN", "{key}")
        .output()
        .unwrap();
    let output = check_exit(output, 0, "warm with secrets in the environment");
    let client =
        redis::Client::open(format!("redis://:{PASSWORD}@127.0.0.1:{}", redis.port)).unwrap();
    let mut connection = client.get_connection().unwrap();
    let seen: String = connection
        .get("page:env")
        .unwrap_or_else(|e| panic!("{e}: {}", text(&output)));
    let seen: Vec<String> = serde_json::from_str(&seen).unwrap();
    for hidden in [
        "CACHEWARM_APP_REDIS_PW",
        "CACHEWARM_TARGET_PASSWORD",
        "CACHEWARM_KEY_HASH_SECRET",
        "CACHEWARM_SOURCE",
    ] {
        assert!(!seen.iter().any(|n| n == hidden), "{hidden} in {seen:?}");
    }
    for kept in ["PGPASSWORD", "CACHEWARM_DJANGO_KEY_PATTERN"] {
        assert!(seen.iter().any(|n| n == kept), "{kept} not in {seen:?}");
    }
}

/// A loader's stderr is logged and its tail kept in the report: a line naming a key of a
/// sensitive category (here the traceback of a loader that crashes on a Django session key)
/// shows the key as its category and hash, in the log and in every file of the run.
#[test]
fn a_loaders_stderr_shows_sensitive_keys_masked() {
    let session = ":1:django.contrib.sessions.cachecrash7f3a9d2e41";
    let keys = strings(&["page:1", session]);
    let setup = Setup::ranked(&keys, &["--preset", "django"]);
    assert_eq!(setup.category_of(session), "django.sessions");
    let redis = RedisServer::start(&[]);
    let state = setup.state("state");
    let source = format!("exec:/usr/bin/python3 {} redis", faulty_loader());
    let args = setup.args(&source, &[redis.url()], &[]);
    let output = warmer(setup.dir.path(), &args, Some(&state))
        .env("RUST_LOG", "info")
        .output()
        .unwrap();
    let output = check_exit(output, 0, "warm with a loader that crashes on a session");
    let printed = text(&output);
    let id = session.trim_start_matches(":1:django.contrib.sessions.cache");
    assert!(!printed.contains(id), "{printed}");
    assert!(
        printed.contains("loader crashed on django.sessions#"),
        "{printed}"
    );
    let (report, run_dir) = report_of(&output.stdout);
    assert_eq!(report.targets[0].counts.written, 2);
    for file in std::fs::read_dir(&run_dir).unwrap() {
        let path = file.unwrap().path();
        if path
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("report."))
        {
            let text = String::from_utf8_lossy(&std::fs::read(&path).unwrap()).into_owned();
            assert!(!text.contains(id), "{}", path.display());
        }
    }
}
