//! Secrets kept where they belong (issue 16): passwords given by a file or a variable reach
//! neither the process list (of the warmer or of its detached child) nor the run directory;
//! the run directory is its owner's only; sensitive keys (session ids) show in reports only
//! hashed, and undo still takes them back; the demo's reports hold none of the sample data's
//! session ids.

// A failed step should stop the test where it failed.
#![allow(clippy::unwrap_used)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cachewarm_tests::{RedisServer, check_exit, ingest_and_rank, report_of, warmer_command};

const SOURCE_PASSWORD: &str = "src-pw-4f1c9a77e2";
const TARGET_PASSWORD: &str = "tgt-pw-b83d10c5aa";

/// The ACL user of README's "Security" section: the commands a warming (and its undo, and
/// `--verify`) sends to a target, and nothing else. The test warms and undoes through it, so a
/// command missing from the README's list fails here.
const TARGET_ACL: &[&str] = &[
    "cachewarm",
    "on",
    ">tgt-pw-b83d10c5aa",
    "~*",
    "resetchannels",
    "-@all",
    "+ping",
    "+info",
    "+select",
    "+exists",
    "+get",
    "+pttl",
    "+dump",
    "+set",
    "+restore",
    "+evalsha",
    "+script|load",
    "+type",
    "+del",
];

/// The source's read-only ACL user, as README's "Security" section lists its commands.
const SOURCE_ACL: &[&str] = &[
    "reader",
    "on",
    ">src-pw-4f1c9a77e2",
    "~*",
    "resetchannels",
    "-@all",
    "+ping",
    "+info",
    "+select",
    "+get",
    "+pttl",
    "+dump",
];

/// `n` Django session keys (the ids are the test's own, random-looking) and `n` page keys.
fn keys(n: usize) -> (Vec<String>, Vec<String>) {
    let sessions = (0..n)
        .map(|i| {
            format!(
                ":1:django.contrib.sessions.cache{:032x}",
                0x9e37_79b9_u128 * (i as u128 + 7)
            )
        })
        .collect();
    let pages = (0..n).map(|i| format!(":1:views.page.{i}")).collect();
    (sessions, pages)
}

/// A log where every key is read a few times, ranked with the Django preset into `dir` under
/// `budget`, `rank_args` added.
fn manifest(dir: &Path, all: &[&String], budget: &str, rank_args: &[&str]) -> PathBuf {
    let log = dir.join("access.csv");
    let mut text = String::from("ts,key,op,hit,value_size,ttl_s,client\n");
    for (i, key) in all.iter().enumerate() {
        for read in 0..3 {
            text.push_str(&format!(
                "{},{key},get,1,64,,web-1\n",
                1_763_700_000 + i * 10 + read
            ));
        }
    }
    std::fs::write(&log, text).unwrap();
    let mut args = vec!["--preset", "django"];
    args.extend_from_slice(rank_args);
    let (_, manifest) = ingest_and_rank(dir, &log, budget, "manifest.json", &args);
    manifest
}

/// Every file under `dir`, recursively.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(files_under(&path));
        } else {
            out.push(path);
        }
    }
    out
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// The command line of process `pid`, its arguments joined by spaces.
fn cmdline(pid: u32) -> String {
    let bytes = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    String::from_utf8_lossy(&bytes).replace('\0', " ")
}

/// Redis servers with passwords: the source takes `requirepass` (the test's own writes) and
/// its read-only ACL user, the target only its ACL user (its default user is off). The source
/// holds every page and half the sessions (the other half are not warmed, and so listed by the
/// report).
fn servers(sessions: &[String], pages: &[String]) -> (RedisServer, RedisServer) {
    let mut args = vec![
        "--requirepass",
        SOURCE_PASSWORD,
        "--maxmemory",
        "64mb",
        "--user",
    ];
    args.extend_from_slice(SOURCE_ACL);
    let source = RedisServer::start(&args);
    let mut acl = vec!["--user"];
    acl.extend_from_slice(TARGET_ACL);
    acl.extend_from_slice(&["--user", "default", "off"]);
    let target = RedisServer::start(&acl);
    let mut connection = redis::Client::open(format!(
        "redis://:{SOURCE_PASSWORD}@127.0.0.1:{}",
        source.port
    ))
    .unwrap()
    .get_connection()
    .unwrap();
    for key in pages.iter().chain(sessions.iter().step_by(2)) {
        redis::cmd("SET")
            .arg(key)
            .arg(format!("value of {key}"))
            .arg("EX")
            .arg(3600)
            .query::<()>(&mut connection)
            .unwrap();
    }
    (source, target)
}

fn target_connection(target: &RedisServer) -> redis::Connection {
    redis::Client::open(format!(
        "redis://cachewarm:{TARGET_PASSWORD}@127.0.0.1:{}",
        target.port
    ))
    .unwrap()
    .get_connection()
    .unwrap()
}

/// A warm whose source password comes from a file and target password from
/// `CACHEWARM_TARGET_PASSWORD`, detached: neither password is in the command line of the
/// warmer or of its background child, nor in any file under the runs directory, nor in what
/// it printed; the run directory is 0700 and its files 0600; the report names the sessions
/// not warmed only by category and hash; undo (through the least-privilege ACL user of the
/// README) removes the session keys the run wrote. The analyzer's `--capacity-from` takes
/// the same password file.
#[test]
fn passwords_from_file_and_variable_stay_out_of_argv_and_run_directory() {
    let dir = tempfile::tempdir().unwrap();
    let (sessions, pages) = keys(12);
    let all: Vec<&String> = sessions.iter().chain(&pages).collect();
    let (source, target) = servers(&sessions, &pages);
    let password_file = dir.path().join("source.pw");
    std::fs::write(&password_file, format!("{SOURCE_PASSWORD}\n")).unwrap();
    std::fs::set_permissions(&password_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let source_url = format!(
        "redis://reader@127.0.0.1:{}?password_file={}",
        source.port,
        password_file.display()
    );
    let manifest = manifest(dir.path(), &all, "50%", &["--capacity-from", &source_url]);
    // Half of the source's 64 MiB maxmemory: the analyzer got in with the file's password.
    let budget = cachewarm_tests::read_manifest(&manifest)
        .header
        .budget
        .bytes;
    assert_eq!(budget, 32 * 1024 * 1024);
    // The analyzer's files hold every key: its owner's only too.
    assert_eq!(mode(&manifest), 0o600);
    let parts: Vec<PathBuf> = files_under(&dir.path().join("dataset"))
        .into_iter()
        .filter(|file| file.extension().is_some_and(|e| e == "parquet"))
        .collect();
    assert!(!parts.is_empty());
    for part in parts {
        assert_eq!(mode(&part), 0o600, "{}", part.display());
    }

    let target_url = format!("redis://cachewarm@127.0.0.1:{}", target.port);
    let runs = dir.path().join("runs");
    let args: Vec<String> = [
        "run",
        "--manifest",
        manifest.to_str().unwrap(),
        "--source",
        &source_url,
        "--target",
        &target_url,
        "--runs-dir",
        runs.to_str().unwrap(),
        "--detach",
        // Slow, so that the background run is still there when its command line is read.
        "--rate",
        "8",
        "--batch-size",
        "2",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    let parent = warmer_command(dir.path(), &args)
        .env("CACHEWARM_TARGET_PASSWORD", TARGET_PASSWORD)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let parent_cmdline = cmdline(parent.id());
    let output = parent.wait_with_output().unwrap();
    let output = check_exit(output, 0, "warmer run --detach");
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    let pid: u32 = stderr
        .split("(pid ")
        .nth(1)
        .and_then(|rest| rest.split(')').next())
        .and_then(|pid| pid.parse().ok())
        .unwrap_or_else(|| panic!("no pid in {stderr}"));
    // Read once `setsid` has run the warmer: mid-exec, the kernel shows an empty command line.
    let started = Instant::now();
    let child_cmdline = loop {
        let line = cmdline(pid);
        let exec_done = !line.is_empty() && !line.starts_with("setsid");
        if exec_done || started.elapsed() > Duration::from_secs(2) {
            break line;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    assert!(child_cmdline.contains("warmer"), "{child_cmdline:?}");
    assert!(!child_cmdline.contains("--source"), "{child_cmdline}");
    for line in [&parent_cmdline, &child_cmdline, &stderr] {
        assert!(
            !line.contains(SOURCE_PASSWORD) && !line.contains(TARGET_PASSWORD),
            "{line}"
        );
    }
    let run_dir = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
    let started = Instant::now();
    while !run_dir.join("report.html").is_file() {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the detached run did not finish: {}",
            std::fs::read_to_string(run_dir.join("warmer.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // The history is appended after the reports: wait for the run to let go of its lock.
    while Command::new("flock")
        .args(["-n", run_dir.join("lock").to_str().unwrap(), "true"])
        .status()
        .is_ok_and(|s| !s.success())
    {
        std::thread::sleep(Duration::from_millis(100));
    }

    let report: schemas::Report =
        serde_json::from_slice(&std::fs::read(run_dir.join("report.json")).unwrap()).unwrap();
    let target_report = &report.targets[0];
    assert_eq!(
        target_report.counts.written as usize,
        pages.len() + sessions.len() / 2
    );
    let listed: Vec<&str> = target_report
        .not_warmed
        .iter()
        .map(|e| e.key.as_str())
        .collect();
    assert_eq!(listed.len(), sessions.len() / 2, "{listed:?}");
    for key in &listed {
        assert!(key.starts_with("django.sessions#"), "{key}");
    }

    assert_eq!(mode(&runs), 0o700);
    assert_eq!(mode(&run_dir), 0o700);
    let files = files_under(&runs);
    assert!(files.len() >= 6, "{files:?}");
    for file in &files {
        assert_eq!(mode(file), 0o600, "{}", file.display());
        let text = String::from_utf8_lossy(&std::fs::read(file).unwrap()).into_owned();
        assert!(
            !text.contains(SOURCE_PASSWORD) && !text.contains(TARGET_PASSWORD),
            "a password in {}",
            file.display()
        );
        if file
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("report."))
        {
            for key in &sessions {
                let id = key.trim_start_matches(":1:django.contrib.sessions.cache");
                assert!(!text.contains(id), "session id {id} in {}", file.display());
            }
        }
    }

    // Undo finds the target's password where the run did (the variable the run's records
    // name) and removes the sessions it wrote.
    let mut connection = target_connection(&target);
    let written: Vec<bool> = sessions
        .iter()
        .map(|key| {
            redis::cmd("EXISTS")
                .arg(key)
                .query(&mut connection)
                .unwrap()
        })
        .collect();
    assert_eq!(written.iter().filter(|w| **w).count(), sessions.len() / 2);
    let undo = warmer_command(dir.path(), &["undo", run_dir.to_str().unwrap()])
        .env("CACHEWARM_TARGET_PASSWORD", TARGET_PASSWORD)
        .output()
        .unwrap();
    let undo = check_exit(undo, 0, "warmer undo");
    let printed = String::from_utf8_lossy(&undo.stderr) + String::from_utf8_lossy(&undo.stdout);
    assert!(!printed.contains(TARGET_PASSWORD), "{printed}");
    for key in sessions.iter().chain(&pages) {
        let exists: bool = redis::cmd("EXISTS")
            .arg(key)
            .query(&mut connection)
            .unwrap();
        assert!(!exists, "{key} is still in the target after undo");
    }
}

/// A password on the command line still works, with a warning that says where it is seen;
/// the warning, the reports and the run directory show it redacted.
#[test]
fn a_password_on_the_command_line_warns() {
    let dir = tempfile::tempdir().unwrap();
    let (sessions, pages) = keys(3);
    let all: Vec<&String> = sessions.iter().chain(&pages).collect();
    let manifest = manifest(dir.path(), &all, "1MiB", &[]);
    let (source, target) = servers(&sessions, &pages);
    let source_url = format!("redis://:{SOURCE_PASSWORD}@127.0.0.1:{}", source.port);
    let target_url = format!(
        "redis://cachewarm:{TARGET_PASSWORD}@127.0.0.1:{}",
        target.port
    );
    let runs = dir.path().join("runs");
    let args = cachewarm_tests::run_args(
        manifest.to_str().unwrap(),
        &source_url,
        &[target_url],
        runs.to_str().unwrap(),
        &[],
    );
    let output = warmer_command(dir.path(), &args).output().unwrap();
    let output = check_exit(output, 0, "warmer run with passwords in argv");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("visible to every user of the host"),
        "{stderr}"
    );
    let (report, run_dir) = report_of(&output.stdout);
    assert_eq!(report.targets[0].counts.written as usize, pages.len() + 2);
    let printed = stderr + String::from_utf8_lossy(&output.stdout);
    for file in files_under(&run_dir) {
        let text = String::from_utf8_lossy(&std::fs::read(&file).unwrap()).into_owned();
        assert!(!text.contains(SOURCE_PASSWORD), "{}", file.display());
        assert!(!text.contains(TARGET_PASSWORD), "{}", file.display());
    }
    assert!(!printed.contains(SOURCE_PASSWORD) && !printed.contains(TARGET_PASSWORD));
}

/// The demo (README): the sample data's Django and Rails session ids, read from the sample
/// logs here, appear in neither `report.html` nor `report.md`; the sessions not warmed are
/// listed by category and hash instead.
#[test]
fn the_demo_reports_hold_no_session_id() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let sample = root.join("sample_data");
    let mut ids = std::collections::BTreeSet::new();
    for log in ["access.csv", "access.jsonl"] {
        let text = std::fs::read_to_string(sample.join(log)).unwrap();
        for marker in ["django.contrib.sessions.cache", "_session_id:"] {
            for piece in text.split(marker).skip(1) {
                let id: String = piece
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric())
                    .collect();
                if id.len() >= 8 {
                    ids.insert(id);
                }
            }
        }
    }
    assert!(ids.len() >= 10, "the sample data's session ids: {ids:?}");

    let dir = tempfile::tempdir().unwrap();
    let dataset = dir.path().join("dataset");
    let path = |p: &Path| p.to_str().unwrap().to_owned();
    let analyzer = |args: &[String]| {
        let output = Command::new(cachewarm_tests::bin("analyzer"))
            .args(args)
            .output()
            .unwrap();
        check_exit(output, 0, &format!("analyzer {}", args.join(" ")));
    };
    analyzer(&[
        "ingest".into(),
        path(&sample.join("access.csv")),
        path(&sample.join("access.jsonl")),
        "--out".into(),
        path(&dataset),
    ]);
    // The demo's own rank arguments (scripts/demo).
    analyzer(
        &[
            "rank",
            "--data",
            &path(&dataset),
            "--budget",
            "50%",
            "--capacity",
            "96KiB",
            "--store",
            "sql",
            "--preset",
            "django,rails",
            "--simulate",
            "--out",
            "manifest.json",
        ]
        .map(str::to_owned)
        .map(|a| {
            if a == "manifest.json" {
                path(&dir.path().join(a))
            } else {
                a
            }
        }),
    );
    let replica = format!(
        "sqlite://{}?table=django_cache",
        sample.join("replica.sqlite3").display()
    );
    let runs = path(&dir.path().join("runs"));
    let args = [
        "run",
        "--manifest",
        "manifest.json",
        "--source",
        &replica,
        "--runs-dir",
        &runs,
    ];
    let output = warmer_command(dir.path(), &args).output().unwrap();
    let output = check_exit(output, 0, "warmer run (the demo's)");
    let (report, run_dir) = report_of(&output.stdout);
    let hashed = report.targets[0]
        .not_warmed
        .iter()
        .filter(|e| e.key.starts_with("django.sessions#") || e.key.starts_with("rails.sessions#"))
        .count();
    assert!(
        hashed > 0,
        "no session listed as not warmed: {:?}",
        report.targets[0].not_warmed
    );
    for name in ["report.html", "report.md", "report.json"] {
        let text = std::fs::read_to_string(run_dir.join(name)).unwrap();
        for id in &ids {
            assert!(!text.contains(id.as_str()), "session id {id} in {name}");
        }
    }
}

/// A Redis Cluster target whose nodes require a password, given once by `password_file` in
/// the `redis+cluster://` URL: every seed node gets it, and every key lands in the cluster.
#[test]
fn a_cluster_takes_its_password_from_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let (sessions, pages) = keys(6);
    let all: Vec<&String> = sessions.iter().chain(&pages).collect();
    let manifest = manifest(dir.path(), &all, "1MiB", &[]);
    let (source, _) = servers(&sessions, &pages);
    let cluster = cachewarm_tests::RedisCluster::start(&[]);
    // Set once the cluster is formed: the bus between the nodes takes no password.
    for node in &cluster.nodes {
        redis::cmd("CONFIG")
            .arg("SET")
            .arg("requirepass")
            .arg(TARGET_PASSWORD)
            .query::<()>(&mut node.connection())
            .unwrap();
    }
    let files = dir.path().join("secrets");
    std::fs::create_dir(&files).unwrap();
    for (name, password) in [("source", SOURCE_PASSWORD), ("cluster", TARGET_PASSWORD)] {
        std::fs::write(files.join(name), password).unwrap();
    }
    let source_url = format!(
        "redis://reader@127.0.0.1:{}?password_file={}",
        source.port,
        files.join("source").display()
    );
    let target_url = format!(
        "{}?password_file={}",
        cluster.url(),
        files.join("cluster").display()
    );
    let (report, run_dir) = cachewarm_tests::warm(
        dir.path(),
        manifest.to_str().unwrap(),
        &source_url,
        &target_url,
        &[],
    );
    assert_eq!(
        report.targets[0].counts.written as usize,
        pages.len() + sessions.len() / 2,
        "{:?}",
        report.targets[0]
    );
    let seeds = cluster
        .nodes
        .iter()
        .map(|node| format!("redis://:{TARGET_PASSWORD}@127.0.0.1:{}", node.port));
    let mut connection = redis::cluster::ClusterClient::new(seeds.collect::<Vec<_>>())
        .and_then(|client| client.get_connection())
        .unwrap();
    for key in &pages {
        let value: Option<String> = redis::cmd("GET").arg(key).query(&mut connection).unwrap();
        assert_eq!(value, Some(format!("value of {key}")));
    }
    for file in files_under(&run_dir) {
        let text = String::from_utf8_lossy(&std::fs::read(&file).unwrap()).into_owned();
        assert!(!text.contains(TARGET_PASSWORD), "{}", file.display());
    }
}
