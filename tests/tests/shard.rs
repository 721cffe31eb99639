//! Sharded warmers (`warmer run --shard i/n`) on real servers: four shards run side by side
//! against one Redis and one memcached write exactly what one unsharded run writes; a shard
//! killed mid-run resumes its own run directory and nothing is lost; undo takes back one
//! shard's keys; together the shards stay within one warmer's byte budget; and
//! `warmer report --merge` sums the shards' counts, or refuses a set that is not one deploy.
//! Which keys belong to which shard is computed here with Python's hashlib, not by the warmer.

// A failed step should stop the test where it failed.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use cachewarm_tests::{
    MemcachedServer, RedisServer, app_keys, check_exit, feed, ingest_and_rank, report_of, run_args,
    warmer_command,
};
use redis::Commands;
use schemas::report::{Counts, Outcome};
use schemas::{Checkpoint, Report};

use crate::deploy::{memcached_contents, redis_contents};

const SHARDS: u32 = 4;
/// The longest a test waits for a shard to make progress (a bound against hanging).
const PATIENCE: Duration = Duration::from_secs(120);

/// A deploy: a replica holding a value for every key, and a manifest of those keys.
struct Deploy {
    dir: tempfile::TempDir,
    replica: RedisServer,
    manifest: schemas::Manifest,
    manifest_path: String,
}

impl Deploy {
    /// `keys` keys read a few times each, ranked into a manifest that takes them all; the
    /// replica holds each one's value (`value_len` bytes or so) with an hour to live.
    fn new(keys: usize, value_len: usize) -> Deploy {
        let dir = tempfile::tempdir().unwrap();
        let keys = app_keys(keys);
        let value = |key: &str| format!("{key}={}", "v".repeat(value_len + key.len() % 50));
        let log = dir.path().join("access.jsonl");
        let mut out = std::io::BufWriter::new(std::fs::File::create(&log).unwrap());
        for (i, key) in keys.iter().enumerate() {
            for read in 0..2 + (keys.len() - i) % 5 {
                let ts = 1_763_700_000.0 + i as f64 + read as f64 * 0.001;
                let (key_json, size) = (serde_json::to_string(key).unwrap(), value(key).len());
                writeln!(
                    out,
                    r#"{{"ts": {ts:.3}, "key": {key_json}, "op": "get", "hit": true, "value_size": {size}}}"#
                )
                .unwrap();
            }
        }
        out.into_inner().unwrap().flush().unwrap();
        let (_, manifest_path) = ingest_and_rank(dir.path(), &log, "64MiB", "manifest.json", &[]);
        let manifest = cachewarm_tests::read_manifest(&manifest_path);
        assert_eq!(manifest.entries.len(), keys.len());
        let replica = RedisServer::start(&[]);
        let mut connection = replica.connection();
        for key in &keys {
            let _: () = connection.set_ex(key, value(key), 3600).unwrap();
        }
        Deploy {
            dir,
            replica,
            manifest,
            manifest_path: manifest_path.to_str().unwrap().to_owned(),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `warmer run` from the replica into `targets` with runs under `runs`; the memcached
    /// target takes the replica's raw strings (`--allow-cross-kind`).
    fn args(&self, targets: &[String], runs: &str, extra: &[&str]) -> Vec<String> {
        let extra: Vec<&str> = ["--allow-cross-kind"]
            .into_iter()
            .chain(extra.iter().copied())
            .collect();
        let runs = self.path(runs);
        run_args(
            &self.manifest_path,
            &self.replica.url(),
            targets,
            runs.to_str().unwrap(),
            &extra,
        )
    }

    /// The arguments of shard `index` of [`SHARDS`].
    fn shard_args(
        &self,
        index: u32,
        targets: &[String],
        runs: &str,
        extra: &[&str],
    ) -> Vec<String> {
        let shard = format!("{index}/{SHARDS}");
        let mut extra = extra.to_vec();
        extra.extend(["--shard", shard.as_str()]);
        self.args(targets, runs, &extra)
    }

    /// Every manifest key's shard, by Python's hashlib: the documented function, computed
    /// by another implementation.
    fn python_shards(&self) -> BTreeMap<String, u32> {
        let keys: Vec<&str> = self
            .manifest
            .entries
            .iter()
            .map(|e| e.key.as_str())
            .collect();
        let script = format!(
            "import hashlib, json, sys\n\
             keys = json.load(sys.stdin)\n\
             print(json.dumps([int(hashlib.sha256(k.encode()).hexdigest()[:16], 16) % {SHARDS} for k in keys]))"
        );
        let mut python = Command::new("python3");
        python.args(["-c", &script]);
        let out = feed(
            python,
            &serde_json::to_string(&keys).unwrap(),
            "python3 hashlib",
        );
        let shards: Vec<u32> = serde_json::from_str(out.trim()).unwrap();
        keys.iter().map(|k| (*k).to_owned()).zip(shards).collect()
    }

    fn run(&self, args: &[String], what: &str) -> Output {
        check_exit(
            warmer_command(self.dir.path(), args).output().unwrap(),
            0,
            what,
        )
    }

    fn spawn(&self, args: &[String]) -> Child {
        warmer_command(self.dir.path(), args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }
}

/// Waits for each child and takes its report and run directory.
fn finish_all(children: Vec<Child>, what: &str) -> Vec<(Report, PathBuf)> {
    children
        .into_iter()
        .map(|child| report_of(&check_exit(child.wait_with_output().unwrap(), 0, what).stdout))
        .collect()
}

fn checkpoint_of(run_dir: &Path) -> Option<Checkpoint> {
    serde_json::from_slice(&std::fs::read(run_dir.join("checkpoint.json")).ok()?).ok()
}

/// `warmer report --merge DIRS… --out DIR`, expected to exit `code`.
fn merge(deploy: &Deploy, dirs: &[&Path], out: &str, code: i32) -> Output {
    let mut args = vec!["report".to_owned(), "--merge".to_owned()];
    args.extend(dirs.iter().map(|d| d.to_str().unwrap().to_owned()));
    args.extend([
        "--out".to_owned(),
        deploy.path(out).to_str().unwrap().to_owned(),
    ]);
    check_exit(
        warmer_command(deploy.dir.path(), &args).output().unwrap(),
        code,
        "warmer report --merge",
    )
}

/// The merged report's counts are the sums of the shards' reports, target by target and
/// category by category, and its entries the manifest's.
fn assert_merged_sums(deploy: &Deploy, shards: &[(Report, PathBuf)], out: &str) -> Report {
    let dirs: Vec<&Path> = shards.iter().map(|(_, d)| d.as_path()).collect();
    merge(deploy, &dirs, out, 0);
    let merged: Report =
        serde_json::from_slice(&std::fs::read(deploy.path(out).join("report.json")).unwrap())
            .unwrap();
    // The same contract and renderers as one run's report.
    crate::report::assert_valid(
        "report.v1.schema.json",
        &deploy.path(out).join("report.json"),
    );
    assert!(deploy.path(out).join("report.md").is_file());
    let mut page = crate::report::Chromium::load(&deploy.path(out).join("report.html"));
    page.assert_no_errors();
    for id in ["chart-coverage-by-rank", "chart-categories", "chart-budget"] {
        page.assert_chart(id);
    }
    assert_eq!(
        merged.manifest.entries,
        deploy.manifest.entries.len() as u64
    );
    assert_eq!(merged.merged_from.len(), SHARDS as usize);
    for (t, target) in merged.targets.iter().enumerate() {
        let mut sum = Counts::default();
        for (report, _) in shards {
            sum.add(&report.targets[t].counts);
        }
        assert_eq!(target.counts, sum, "{}", target.url);
        assert_eq!(
            target.counts.total(),
            merged.manifest.entries,
            "{}",
            target.url
        );
        let bytes: u64 = shards.iter().map(|(r, _)| r.targets[t].bytes_written).sum();
        assert_eq!(target.bytes_written, bytes);
        for (name, category) in &target.categories {
            let mut sum = Counts::default();
            for (report, _) in shards {
                sum.add(&report.targets[t].categories[name].counts);
            }
            assert_eq!(category.counts, sum, "{} {name}", target.url);
        }
    }
    merged
}

/// Four shards started together against one Redis and one memcached write exactly what one
/// unsharded run writes into fresh servers (every key and value read back); each shard took
/// exactly the keys that hash to it, in a run directory of its own; the merged report's
/// counts are the sums of the shards', and equal the unsharded run's.
#[test]
fn four_shards_side_by_side_write_what_one_run_writes() {
    let deploy = Deploy::new(300, 60);
    let (redis, memcached) = (RedisServer::start(&[]), MemcachedServer::start(64));
    let (fresh_redis, fresh_memcached) = (RedisServer::start(&[]), MemcachedServer::start(64));
    let targets = [redis.url(), memcached.url()];
    let children = (0..SHARDS)
        .map(|i| deploy.spawn(&deploy.shard_args(i, &targets, "runs", &["--batch-size", "16"])))
        .collect();
    let shards = finish_all(children, "shard");

    let python = deploy.python_shards();
    let dirs: BTreeSet<&PathBuf> = shards.iter().map(|(_, d)| d).collect();
    assert_eq!(
        dirs.len(),
        SHARDS as usize,
        "two shards shared a run directory"
    );
    for (i, (report, dir)) in shards.iter().enumerate() {
        let shard = report.shard.unwrap();
        assert_eq!((shard.index, shard.count), (i as u32, SHARDS));
        assert_eq!(checkpoint_of(dir).unwrap().shard, Some(shard));
        assert_eq!(report.outcome, Outcome::Completed);
        let mine = python.values().filter(|&&s| s == shard.index).count() as u64;
        assert_eq!(report.manifest.entries, mine, "shard {shard}");
    }
    // Each key in Redis was written by the shard Python assigns it to: its run directory's
    // written-keys log names it.
    for (key, shard) in &python {
        let (_, dir) = &shards[*shard as usize];
        let log = std::fs::read_to_string(dir.join("written-0.jsonl")).unwrap();
        assert!(
            log.contains(&serde_json::to_string(key).unwrap()),
            "{key} not in shard {shard}'s log"
        );
    }

    let reference = deploy.args(&[fresh_redis.url(), fresh_memcached.url()], "fresh", &[]);
    let (whole, _) = report_of(&deploy.run(&reference, "unsharded run").stdout);
    let written = redis_contents(&redis);
    assert_eq!(written.len(), deploy.manifest.entries.len());
    assert_eq!(written, redis_contents(&fresh_redis));
    assert_eq!(
        memcached_contents(&memcached, &deploy.manifest),
        memcached_contents(&fresh_memcached, &deploy.manifest)
    );

    let merged = assert_merged_sums(&deploy, &shards, "merged");
    for (target, one) in merged.targets.iter().zip(&whole.targets) {
        assert_eq!(target.counts, one.counts, "{}", target.url);
        let (after, one_after) = (
            target.coverage_after.as_ref().unwrap(),
            one.coverage_after.as_ref().unwrap(),
        );
        assert_eq!(after.requests_total, one_after.requests_total);
        assert_eq!(after.requests_present, one_after.requests_present);
    }
}

/// One of four shards killed with SIGKILL mid-run (slowed by `--rate`) and started again with
/// the same command line (`--resume`) continues its own run directory, and the stores end up
/// exactly as one unsharded run leaves fresh ones. `warmer undo --shard` then takes back only
/// that shard's keys. Merging refuses a missing shard and a shard given twice.
#[test]
fn a_shard_killed_mid_run_resumes_and_nothing_is_lost() {
    let deploy = Deploy::new(240, 40);
    let (redis, memcached) = (RedisServer::start(&[]), MemcachedServer::start(64));
    let (fresh_redis, fresh_memcached) = (RedisServer::start(&[]), MemcachedServer::start(64));
    let targets = [redis.url(), memcached.url()];
    // 200 writes/s for the deploy: 50/s per shard, so about a second and a half per shard.
    let slow = ["--rate", "200", "--batch-size", "4", "--resume"];
    let args: Vec<Vec<String>> = (0..SHARDS)
        .map(|i| deploy.shard_args(i, &targets, "runs", &slow))
        .collect();
    let mut children: Vec<Child> = args.iter().map(|a| deploy.spawn(a)).collect();

    let victim = 2;
    let runs = deploy.path("runs");
    let started = Instant::now();
    let victim_dir = loop {
        let found = std::fs::read_dir(&runs)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .find(|dir| {
                dir.to_string_lossy()
                    .ends_with(&format!("shard{victim}of{SHARDS}"))
                    && checkpoint_of(dir).is_some_and(|c| c.next_entry > 0)
            });
        if let Some(dir) = found {
            break dir;
        }
        assert!(
            started.elapsed() < PATIENCE,
            "shard {victim} never progressed"
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    let mut killed = children.remove(victim as usize);
    killed.kill().unwrap();
    killed.wait().unwrap();
    let checkpoint = checkpoint_of(&victim_dir).unwrap();
    assert!(
        !checkpoint.finished,
        "shard {victim} finished before the kill"
    );
    let mut shards = finish_all(children, "shard");

    let (report, dir) = report_of(&deploy.run(&args[victim as usize], "resumed shard").stdout);
    assert_eq!(
        dir, victim_dir,
        "the resume did not continue the killed shard's run"
    );
    assert_eq!(report.outcome, Outcome::Completed);
    assert_eq!(checkpoint_of(&dir).unwrap().resumed, 1);
    shards.insert(victim as usize, (report, dir));
    let shard = format!("{victim}/{SHARDS}");
    let status = [
        "status",
        "--runs-dir",
        runs.to_str().unwrap(),
        "--shard",
        &shard,
    ]
    .map(str::to_owned);
    let status = String::from_utf8(deploy.run(&status, "status of one shard").stdout).unwrap();
    assert!(
        status.contains(&victim_dir.display().to_string())
            && status.contains(&format!("of shard {shard}"))
            && status.contains("finished"),
        "{status}"
    );

    let reference = deploy.args(&[fresh_redis.url(), fresh_memcached.url()], "fresh", &[]);
    deploy.run(&reference, "unsharded run");
    assert_eq!(redis_contents(&redis), redis_contents(&fresh_redis));
    assert_eq!(
        memcached_contents(&memcached, &deploy.manifest),
        memcached_contents(&fresh_memcached, &deploy.manifest)
    );
    assert_merged_sums(&deploy, &shards, "merged");

    let dirs: Vec<&Path> = shards.iter().map(|(_, d)| d.as_path()).collect();
    let missing = merge(&deploy, &dirs[..3], "refused", 2);
    let text = String::from_utf8_lossy(&missing.stderr);
    assert!(text.contains("shard 3/4 of 4 is missing"), "{text}");
    let twice = [dirs.clone(), vec![dirs[1]]].concat();
    let text = String::from_utf8_lossy(&merge(&deploy, &twice, "refused", 2).stderr).into_owned();
    assert!(
        text.contains(&dirs[1].display().to_string()) && text.contains("twice"),
        "{text}"
    );

    // The rollback of one shard (as its pod in an indexed Job would run it).
    let mut undo = warmer_command(
        deploy.dir.path(),
        &["undo", "--runs-dir", runs.to_str().unwrap()],
    );
    undo.env("CACHEWARM_SHARDS", SHARDS.to_string())
        .env("JOB_COMPLETION_INDEX", victim.to_string());
    check_exit(undo.output().unwrap(), 0, "undo of one shard");
    let python = deploy.python_shards();
    let left: BTreeSet<String> = redis_contents(&redis).into_keys().collect();
    let expected: BTreeSet<String> = python
        .iter()
        .filter(|(_, s)| **s != victim)
        .map(|(k, _)| k.clone())
        .collect();
    assert_eq!(left, expected);
}

/// Four shards writing side by side into one Redis never write more key and value bytes than
/// one warmer's budget (`--max-fill` of `maxmemory`, computed here), and each was stopped by
/// its part of it.
#[test]
fn shards_together_stay_within_one_warmers_budget() {
    let deploy = Deploy::new(400, 1500);
    let maxmemory: u64 = 4 << 20;
    let redis = RedisServer::start(&["--maxmemory", &maxmemory.to_string()]);
    let budget = maxmemory / 10;
    let total: u64 = deploy
        .manifest
        .entries
        .iter()
        .map(|e| e.key.len() as u64 + 1500)
        .sum();
    assert!(
        total > budget,
        "the manifest fits the budget; the test would prove nothing"
    );
    let children = (0..SHARDS)
        .map(|i| {
            deploy.spawn(&deploy.shard_args(i, &[redis.url()], "runs", &["--max-fill", "10%"]))
        })
        .collect();
    let shards = finish_all(children, "shard");
    let stored: u64 = redis_contents(&redis)
        .iter()
        .map(|(k, v)| (k.len() + v.len()) as u64)
        .sum();
    assert!(
        stored <= budget,
        "the shards wrote {stored} bytes, over one warmer's {budget}"
    );
    assert!(
        stored > budget / 2,
        "the shards wrote only {stored} of {budget} bytes"
    );
    for (report, _) in &shards {
        let target = &report.targets[0];
        assert_eq!(
            target.stopped_by.as_deref(),
            Some("max_fill"),
            "{:?}",
            report.shard
        );
        assert_eq!(target.budget_bytes, Some(budget / u64::from(SHARDS)));
    }
}
