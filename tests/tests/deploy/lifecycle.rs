//! A deploy's warm step interrupted and resumed (SIGKILL at random points, SIGTERM), switched
//! off by the environment profile, and detached and followed with `warmer status`.

use super::*;

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
