//! Every warmed entry is what the application would read (issue 13): values written by the
//! applications' own clients (Django's pymemcache with `pickle_serde`, pylibmc, Dalli) are
//! copied memcached → memcached, directly and through a snapshot, with their client flags, and
//! read back by the same clients as equal values of the same types; Redis values of every type
//! are copied with their TTLs into a server, a cluster and through a snapshot, never replacing
//! a key already present, and undone; copies between kinds of store are refused unless asked
//! for; snapshots written by pyarrow (its defaults and other codecs) warm completely, and one
//! that cannot be read says why everywhere; `--verify` reports exactly the keys changed behind
//! the run's back.
//!
//! `scripts/test` installs the clients: pylibmc and Dalli from Debian, pymemcache into
//! [`python_packages`], pyarrow and Django (for `SafeString`) into [`fidelity_packages`].

// A failed step should stop the test where it failed.
#![allow(clippy::unwrap_used)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use cachewarm_tests::{
    MemcachedServer, RedisCluster, RedisServer, check_exit, ingest_and_rank, python_packages,
    read_manifest, report_of, warmer_command,
};
use redis::ConnectionLike;
use schemas::Report;

/// Where `scripts/test` installs pyarrow and Django for these tests (beside
/// [`python_packages`]).
fn fidelity_packages() -> PathBuf {
    python_packages().with_file_name("fidelity")
}

/// Runs `/usr/bin/python3 -c script args…` with the tests' packages on its path, `input` on
/// stdin; panics with its output unless it exits 0. Returns stdout.
fn python(script: &str, args: &[&str], input: &str) -> String {
    let path = std::env::join_paths([python_packages(), fidelity_packages()]).unwrap();
    let mut command = Command::new("/usr/bin/python3");
    command
        .arg("-c")
        .arg(script)
        .args(args)
        .env("PYTHONPATH", path);
    feed(
        command,
        input,
        "python3 (scripts/test installs its packages)",
    )
}

/// Runs `/usr/bin/ruby -e script args…` (Dalli from Debian); as [`python`].
fn ruby(script: &str, args: &[&str], input: &str) -> String {
    let mut command = Command::new("/usr/bin/ruby");
    command.arg("-e").arg(script).args(args);
    feed(command, input, "ruby (scripts/test installs ruby-dalli)")
}

fn feed(mut command: Command, input: &str, what: &str) -> String {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("start {what}: {e}"));
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "{what} failed ({})\n--- stdout ---\n{}\n--- stderr ---\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// A manifest of `keys` (a canonical CSV log reading each key three times, through
/// `analyzer ingest` and `analyzer rank`).
fn manifest_for(dir: &Path, keys: &[String]) -> PathBuf {
    let log = dir.join("access.csv");
    let mut out = String::from("ts,key,op,hit\n");
    for round in 0..3 {
        for (i, key) in keys.iter().enumerate() {
            let ts = 1_763_700_000 + round * 10_000 + i;
            out.push_str(&format!("{ts},{key},get,true\n"));
        }
    }
    std::fs::write(&log, out).unwrap();
    let (_, manifest) = ingest_and_rank(dir, &log, "64MiB", "manifest.json", &[]);
    assert_eq!(read_manifest(&manifest).entries.len(), keys.len());
    manifest
}

/// `warmer ARGS…` in `dir`; the output once it exited with `code`.
fn warmer(dir: &Path, args: &[&str], code: i32) -> Output {
    let output = warmer_command(dir, args).output().unwrap();
    check_exit(output, code, &format!("warmer {}", args.join(" ")))
}

/// `warmer run` of `manifest` from `source` into `target`, `extra` added; its report and run
/// directory.
fn warm(
    dir: &Path,
    manifest: &Path,
    source: &str,
    target: &str,
    extra: &[&str],
) -> (Report, PathBuf) {
    let runs = dir.join("runs");
    let mut args = vec![
        "run",
        "--manifest",
        manifest.to_str().unwrap(),
        "--source",
        source,
        "--target",
        target,
        "--runs-dir",
        runs.to_str().unwrap(),
        "--verify",
    ];
    args.extend(extra);
    report_of(&warmer(dir, &args, 0).stdout)
}

/// `warmer snapshot` of `manifest`'s keys from `source` into `DIR/name`; its path and output.
fn snapshot(dir: &Path, manifest: &Path, source: &str, name: &str) -> (String, String) {
    let out = dir.join(name).to_str().unwrap().to_owned();
    let args = [
        "snapshot",
        "--manifest",
        manifest.to_str().unwrap(),
        "--source",
        source,
        "--out",
        &out,
    ];
    let output = warmer(dir, &args, 0);
    (out, String::from_utf8(output.stdout).unwrap())
}

/// Every entry written, and read back as sent.
fn assert_all_written_and_verified(report: &Report, entries: usize) {
    let target = &report.targets[0];
    assert_eq!(
        target.counts.written as usize, entries,
        "{:?}",
        target.counts
    );
    let verification = target
        .verification
        .as_ref()
        .expect("the run was given --verify");
    assert_eq!(
        (verification.verified as usize, verification.mismatched),
        (entries, 0),
        "{verification:?}"
    );
}

// --- memcached client flags ---------------------------------------------------------------

/// Django's memcached backend: `PyMemcacheCache` builds a pymemcache `HashClient` with
/// `allow_unicode_keys`, `default_noreply=False` and `serde=pickle_serde`. `write` stores the
/// values and prints their keys; `check` reads them and prints each one that is not equal, or
/// not of the same type.
const DJANGO_CLIENT: &str = r#"
import sys
from pymemcache import HashClient, serde
from django.utils.safestring import SafeString
mode, server = sys.argv[1], sys.argv[2]
client = HashClient([server], allow_unicode_keys=True, default_noreply=False, serde=serde.pickle_serde)
values = {
    ":1:dict": {"name": "Ada"},
    ":1:int": 42,
    ":1:str": "hello",
    ":1:bytes": b"\x00\xffraw",
    ":1:safe": SafeString("<b>safe</b>"),
    ":1:large": {"rows": ["r%06d" % i for i in range(40000)]},
    ":1:list": [1, 2.5, None, "x"],
}
if mode == "write":
    for key, value in values.items():
        assert client.set(key, value, expire=3600)
    print("\n".join(values))
else:
    for key, value in values.items():
        got = client.get(key)
        if got != value or type(got) is not type(value):
            print(f"{key}: {type(got).__name__} {got!r:.60}")
"#;

/// pylibmc (Django's `PyLibMCCache`) with its own flags (pickled 1, int 4, zlib 8, text 16);
/// the large value is compressed (`min_compress_len`). (A bool reads back as an int from
/// pylibmc itself, so none is stored.)
const PYLIBMC_CLIENT: &str = r#"
import sys
import pylibmc
mode, server = sys.argv[1], sys.argv[2]
client = pylibmc.Client([server])
values = {
    "plm:dict": {"name": "Ada"},
    "plm:int": 42,
    "plm:str": "hello",
    "plm:bytes": b"\x00\xffraw",
    "plm:large": "z" * 300000,
}
if mode == "write":
    for key, value in values.items():
        assert client.set(key, value, time=3600, min_compress_len=1024)
    print("\n".join(values))
else:
    for key, value in values.items():
        got = client.get(key)
        if got != value or type(got) is not type(value):
            print(f"{key}: {type(got).__name__} {got!r:.60}")
"#;

/// Rails' `:mem_cache_store` client, Dalli: a Hash and an Integer Marshal'd (flag 1), a raw
/// String (flag 0), a large String compressed (flag 2).
const DALLI_CLIENT: &str = r##"
require "dalli"
mode, server = ARGV[0], ARGV[1]
client = Dalli::Client.new(server, compress: true)
values = {
  "rails:hash" => { "name" => "Ada", "tags" => [1, 2] },
  "rails:int" => 42,
  "rails:raw" => "hello",
  "rails:large" => "w" * 200_000,
}
if mode == "write"
  values.each do |key, value|
    raw = key == "rails:raw"
    client.set(key, value, 3600, raw: raw) or raise "set #{key}"
  end
  puts values.keys
else
  values.each do |key, value|
    got = client.get(key)
    puts "#{key}: #{got.class} #{got.inspect[0, 60]}" unless got == value && got.class == value.class
  end
end
"##;

/// The application's memcached client, with the script that drives it.
#[derive(Debug, Clone, Copy)]
enum App {
    Django,
    Pylibmc,
    Dalli,
}

impl App {
    /// Runs the client's script in `mode` against `server` (`host:port`).
    fn run(self, mode: &str, server: &str) -> String {
        match self {
            App::Django => python(DJANGO_CLIENT, &[mode, server], ""),
            App::Pylibmc => python(PYLIBMC_CLIENT, &[mode, server], ""),
            App::Dalli => ruby(DALLI_CLIENT, &[mode, server], ""),
        }
    }
}

/// The application's client writes into memcached A. `warmer run` A → B, then `warmer
/// snapshot` of A and a run from the snapshot into C: the same client reads on B and on C
/// values equal to the originals, of the same types; every write is verified; `warmer undo`
/// of the copy deletes every key (its compare includes the flags).
fn app_values_survive_a_copy(app: App) {
    let dir = tempfile::tempdir().unwrap();
    let a = MemcachedServer::start(64);
    let keys: Vec<String> = app
        .run("write", &a.address())
        .lines()
        .map(str::to_owned)
        .collect();
    assert!(keys.len() >= 4, "{keys:?}");
    let wrong = app.run("check", &a.address());
    assert!(
        wrong.is_empty(),
        "{app:?} reads other values where it wrote them:\n{wrong}"
    );
    let manifest = manifest_for(dir.path(), &keys);

    let b = MemcachedServer::start(64);
    let (report, run_dir) = warm(dir.path(), &manifest, &a.url(), &b.url(), &[]);
    assert_all_written_and_verified(&report, keys.len());
    let wrong = app.run("check", &b.address());
    assert!(
        wrong.is_empty(),
        "{app:?} on the copy read other values:\n{wrong}"
    );

    let (path, out) = snapshot(dir.path(), &manifest, &a.url(), "snap.parquet");
    assert!(
        out.contains("client flags"),
        "the snapshot shows the flags:\n{out}"
    );
    let c = MemcachedServer::start(64);
    let (report, _) = warm(dir.path(), &manifest, &path, &c.url(), &[]);
    assert_all_written_and_verified(&report, keys.len());
    let wrong = app.run("check", &c.address());
    assert!(
        wrong.is_empty(),
        "{app:?} after the snapshot read other values:\n{wrong}"
    );

    let undo = warmer(dir.path(), &["undo", run_dir.to_str().unwrap()], 0);
    let text = String::from_utf8_lossy(&undo.stdout);
    assert!(text.contains(&format!("deleted {}", keys.len())), "{text}");
    assert_eq!(b.stat("curr_items"), 0);
}

#[test]
fn django_pymemcache_values_survive_a_copy() {
    app_values_survive_a_copy(App::Django);
}

#[test]
fn pylibmc_values_survive_a_copy() {
    app_values_survive_a_copy(App::Pylibmc);
}

#[test]
fn dalli_values_survive_a_copy() {
    app_values_survive_a_copy(App::Dalli);
}

// --- Redis data types ---------------------------------------------------------------------

/// One key of each type, with a TTL each (and a hash and a set large enough to be kept as
/// hash tables, whose dumps come out in each server's own order).
fn fill_every_type(connection: &mut impl ConnectionLike) -> Vec<String> {
    let mut run = |args: &[&str]| {
        let mut command = redis::cmd(args[0]);
        for arg in &args[1..] {
            command.arg(*arg);
        }
        let _: redis::Value = command.query(connection).unwrap();
    };
    run(&["SET", "t:string", "plain bytes"]);
    run(&["HSET", "t:hash", "name", "Ada", "born", "1815"]);
    run(&["SADD", "t:set", "a", "b", "c"]);
    run(&["ZADD", "t:zset", "1", "one", "2.5", "two", "-3", "minus"]);
    run(&["RPUSH", "t:list", "x", "y", "x", "z"]);
    run(&["XADD", "t:stream", "1-1", "event", "signup", "user", "7"]);
    run(&["XADD", "t:stream", "2-1", "event", "login"]);
    for i in 0..300 {
        let (field, value) = (format!("f{i}"), format!("v{i}"));
        run(&["HSET", "t:bighash", &field, &value]);
        run(&["SADD", "t:bigset", &field]);
    }
    let keys: Vec<String> = [
        "t:string",
        "t:hash",
        "t:set",
        "t:zset",
        "t:list",
        "t:stream",
        "t:bighash",
        "t:bigset",
    ]
    .iter()
    .map(|k| (*k).to_owned())
    .collect();
    for (i, key) in keys.iter().enumerate() {
        let seconds = (3000 + 100 * i).to_string();
        run(&["EXPIRE", key, &seconds]);
    }
    keys
}

/// A key's type, its contents in a form that compares across servers (members sorted where
/// the type has no order), and its remaining TTL in ms.
fn describe(connection: &mut impl ConnectionLike, key: &str) -> (String, Vec<String>, i64) {
    let query = |connection: &mut dyn ConnectionLike, args: &[&str]| -> redis::Value {
        let mut command = redis::cmd(args[0]);
        for arg in &args[1..] {
            command.arg(*arg);
        }
        command.query(connection).unwrap()
    };
    let kind: String = redis::from_redis_value(query(connection, &["TYPE", key])).unwrap();
    let flat = |value: redis::Value| -> Vec<String> {
        format!("{value:?}")
            .split(", ")
            .map(str::to_owned)
            .collect()
    };
    let mut contents = match kind.as_str() {
        "string" => vec![redis::from_redis_value(query(connection, &["GET", key])).unwrap()],
        "hash" => {
            let map: std::collections::BTreeMap<String, String> =
                redis::from_redis_value(query(connection, &["HGETALL", key])).unwrap();
            map.into_iter().map(|(f, v)| format!("{f}={v}")).collect()
        }
        "set" => redis::from_redis_value(query(connection, &["SMEMBERS", key])).unwrap(),
        "zset" => {
            redis::from_redis_value(query(connection, &["ZRANGE", key, "0", "-1", "WITHSCORES"]))
                .unwrap()
        }
        "list" => redis::from_redis_value(query(connection, &["LRANGE", key, "0", "-1"])).unwrap(),
        "stream" => flat(query(connection, &["XRANGE", key, "-", "+"])),
        other => panic!("{key} has type {other}"),
    };
    if matches!(kind.as_str(), "set") {
        contents.sort();
    }
    let pttl: i64 = redis::from_redis_value(query(connection, &["PTTL", key])).unwrap();
    (kind, contents, pttl)
}

/// Every key of `keys` in `target` has the type and contents it has in `source`, and the same
/// TTL within a second (and within the time since the copy).
fn assert_same_values(
    source: &mut impl ConnectionLike,
    target: &mut impl ConnectionLike,
    keys: &[String],
) {
    for key in keys {
        let (kind, contents, pttl) = describe(source, key);
        let (copied_kind, copied, copied_pttl) = describe(target, key);
        assert_eq!((&copied_kind, &copied), (&kind, &contents), "{key}");
        assert!(
            pttl > 0 && copied_pttl > 0,
            "{key}: TTLs {pttl} and {copied_pttl}"
        );
        assert!(
            (pttl - copied_pttl).abs() <= 1000,
            "{key}: TTL {pttl} copied as {copied_pttl}"
        );
    }
}

/// Replica → Redis: every type copied with its TTL; a key already present in the target keeps
/// its value (counted `already_present`); every write verified; `warmer undo` deletes what the
/// run wrote, dumps included, and keeps the key that was there.
#[test]
fn redis_values_of_every_type_are_copied() {
    let dir = tempfile::tempdir().unwrap();
    let replica = RedisServer::start(&[]);
    let keys = fill_every_type(&mut replica.connection());
    let manifest = manifest_for(dir.path(), &keys);
    let target = RedisServer::start(&[]);
    let mut target_connection = target.connection();
    let _: () = redis::cmd("HSET")
        .arg("t:hash")
        .arg("name")
        .arg("kept")
        .query(&mut target_connection)
        .unwrap();

    let (report, run_dir) = warm(dir.path(), &manifest, &replica.url(), &target.url(), &[]);
    let target_report = &report.targets[0];
    assert_eq!(target_report.counts.written as usize, keys.len() - 1);
    assert_eq!(target_report.counts.already_present, 1);
    assert_eq!(target_report.counts.source_miss, 0);
    let verification = target_report.verification.as_ref().unwrap();
    assert_eq!(
        (verification.verified as usize, verification.mismatched),
        (keys.len() - 1, 0)
    );
    let copied: Vec<String> = keys.iter().filter(|k| *k != "t:hash").cloned().collect();
    assert_same_values(&mut replica.connection(), &mut target_connection, &copied);
    let kept: String = redis::cmd("HGET")
        .arg("t:hash")
        .arg("name")
        .query(&mut target_connection)
        .unwrap();
    assert_eq!(kept, "kept");

    for e in std::fs::read_dir(&run_dir).unwrap() {
        let p = e.unwrap().path();
        eprintln!(
            "DBG {} {}",
            p.display(),
            std::fs::read_to_string(&p).unwrap_or_default()
        );
    }
    let undo = warmer(dir.path(), &["undo", run_dir.to_str().unwrap()], 0);
    let text = String::from_utf8_lossy(&undo.stdout);
    assert!(
        text.contains(&format!("deleted {}", keys.len() - 1)),
        "{text}"
    );
    let left: u64 = redis::cmd("DBSIZE").query(&mut target_connection).unwrap();
    assert_eq!(left, 1, "only the key that was there is left");
}

/// Replica → Redis Cluster: the same, each key on the primary of its slot.
#[test]
fn redis_values_of_every_type_are_copied_into_a_cluster() {
    let dir = tempfile::tempdir().unwrap();
    let replica = RedisServer::start(&[]);
    let keys = fill_every_type(&mut replica.connection());
    let manifest = manifest_for(dir.path(), &keys);
    let cluster = RedisCluster::start(&[]);
    let (report, _) = warm(dir.path(), &manifest, &replica.url(), &cluster.url(), &[]);
    assert_all_written_and_verified(&report, keys.len());
    assert_same_values(&mut replica.connection(), &mut cluster.connection(), &keys);
}

/// Replica → snapshot → Redis: the snapshot keeps the dumps (its encoding column) and says
/// so; restored into an empty Redis, every type is there with its TTL.
#[test]
fn redis_values_of_every_type_go_through_a_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let replica = RedisServer::start(&[]);
    let keys = fill_every_type(&mut replica.connection());
    let manifest = manifest_for(dir.path(), &keys);
    let (path, out) = snapshot(dir.path(), &manifest, &replica.url(), "snap.parquet");
    assert!(
        out.contains(&format!("DUMP payloads): {}", keys.len() - 1)),
        "{out}"
    );
    let target = RedisServer::start(&[]);
    let (report, _) = warm(dir.path(), &manifest, &path, &target.url(), &[]);
    assert_all_written_and_verified(&report, keys.len());
    assert_same_values(&mut replica.connection(), &mut target.connection(), &keys);
}

// --- copies between kinds -----------------------------------------------------------------

/// Redis → memcached, directly or from a snapshot taken from Redis, is refused with exit 2 and
/// a message that says why and how to allow it; nothing is written. With `--allow-cross-kind`
/// the raw strings are copied.
#[test]
fn cross_kind_copies_are_refused_unless_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let replica = RedisServer::start(&[]);
    let keys: Vec<String> = (0..20).map(|i| format!("raw:{i}")).collect();
    let mut connection = replica.connection();
    for key in &keys {
        let _: () = redis::cmd("SET")
            .arg(key)
            .arg(format!("value of {key}"))
            .arg("EX")
            .arg(3600)
            .query(&mut connection)
            .unwrap();
    }
    let manifest = manifest_for(dir.path(), &keys);
    let memcached = MemcachedServer::start(64);
    let (snap, _) = snapshot(dir.path(), &manifest, &replica.url(), "snap.parquet");
    for source in [replica.url(), snap] {
        let args = [
            "run",
            "--manifest",
            manifest.to_str().unwrap(),
            "--source",
            &source,
            "--target",
            &memcached.url(),
        ];
        let output = warmer(dir.path(), &args, 2);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains("refusing to copy Redis values into the memcached target")
                && stderr.contains("--allow-cross-kind"),
            "{stderr}"
        );
        assert_eq!(memcached.stat("curr_items"), 0);
    }
    let (report, _) = warm(
        dir.path(),
        &manifest,
        &replica.url(),
        &memcached.url(),
        &["--allow-cross-kind"],
    );
    assert_all_written_and_verified(&report, keys.len());
}

// --- snapshots from other tools -----------------------------------------------------------

/// Writes `n` rows (`key`, `value`, `expires_at`) in a shuffled order with pyarrow into
/// `DIR/snap-CODEC.parquet` for each codec given (`default`: pyarrow's own defaults, snappy in
/// one row group), and prints the keys. Times are microseconds with UTC, or nanoseconds without
/// a zone for `gzip` (what pandas gives), to read both.
const PYARROW_WRITER: &str = r#"
import random, sys, datetime
import pyarrow as pa, pyarrow.parquet as pq
directory, n, codecs = sys.argv[1], int(sys.argv[2]), sys.argv[3].split(",")
keys = [f"pa:{i}" for i in range(n)]
rows = list(range(n))
random.Random(7).shuffle(rows)
now = datetime.datetime.now(datetime.timezone.utc)
expires = [now + datetime.timedelta(hours=1, seconds=i) for i in rows]
for codec in codecs:
    unit = pa.timestamp("ns") if codec == "gzip" else pa.timestamp("us", tz="UTC")
    times = [t.replace(tzinfo=None) for t in expires] if codec == "gzip" else expires
    table = pa.table({
        "key": pa.array([keys[i] for i in rows]),
        "value": pa.array([f"value {i}".encode() for i in rows], pa.binary()),
        "expires_at": pa.array(times, unit),
    })
    path = f"{directory}/snap-{codec}.parquet"
    if codec == "default":
        pq.write_table(table, path)
    else:
        pq.write_table(table, path, compression=codec)
print("\n".join(keys))
"#;

/// Snapshots pyarrow writes with its defaults (snappy, one large row group) and with gzip, lz4
/// and zstd, rows in any order, warm every key, with its value and a TTL of about an hour.
#[test]
fn pyarrow_snapshots_warm_completely() {
    let dir = tempfile::tempdir().unwrap();
    let directory = dir.path().to_str().unwrap();
    let out = python(
        PYARROW_WRITER,
        &[directory, "3000", "default,gzip,lz4,zstd"],
        "",
    );
    let keys: Vec<String> = out.lines().map(str::to_owned).collect();
    let manifest = manifest_for(dir.path(), &keys);
    for codec in ["default", "gzip", "lz4", "zstd"] {
        let target = MemcachedServer::start(64);
        let path = dir.path().join(format!("snap-{codec}.parquet"));
        let (report, _) = warm(
            dir.path(),
            &manifest,
            path.to_str().unwrap(),
            &target.url(),
            &[],
        );
        assert_eq!(report.source_error, None, "{codec}");
        assert_all_written_and_verified(&report, keys.len());
        let client = target.client();
        for key in [&keys[0], &keys[1234], &keys[2999]] {
            let n = key.strip_prefix("pa:").unwrap();
            let result = client
                .run(memcache::exp::Get::new(key).meta(memcache::exp::Meta::NONE.ttl()))
                .unwrap();
            assert_eq!(
                result.value.as_deref(),
                Some(format!("value {n}").as_bytes()),
                "{codec} {key}"
            );
            let ttl = result.item.ttl.unwrap();
            assert!(
                (3500..=3700 + 3000).contains(&ttl),
                "{codec} {key}: TTL {ttl}"
            );
        }
    }
}

/// A snapshot the warmer cannot read (brotli, which no Parquet writer uses by default): the
/// run still exits 0, and the report (`source_error` and the target's `error`) and the summary
/// carry the cause, not only "failed to read snapshot".
#[test]
fn an_unreadable_snapshot_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let directory = dir.path().to_str().unwrap();
    let out = python(PYARROW_WRITER, &[directory, "50", "brotli"], "");
    let keys: Vec<String> = out.lines().map(str::to_owned).collect();
    let manifest = manifest_for(dir.path(), &keys);
    let target = MemcachedServer::start(64);
    let path = dir.path().join("snap-brotli.parquet");
    let runs = dir.path().join("runs");
    let args = [
        "run",
        "--manifest",
        manifest.to_str().unwrap(),
        "--source",
        path.to_str().unwrap(),
        "--target",
        &target.url(),
        "--runs-dir",
        runs.to_str().unwrap(),
    ];
    let output = warmer(dir.path(), &args, 0);
    let (report, _) = report_of(&output.stdout);
    let error = report.source_error.as_deref().unwrap();
    assert!(
        error.contains("failed to read snapshot") && error.contains("brotli"),
        "{error}"
    );
    let target_error = report.targets[0].error.as_deref().unwrap();
    assert!(target_error.contains("brotli"), "{target_error}");
    let summary = String::from_utf8_lossy(&output.stdout);
    assert!(summary.contains("brotli"), "{summary}");
    let log = String::from_utf8_lossy(&output.stderr);
    assert!(log.contains("brotli"), "{log}");
}

// --- read-back validation -----------------------------------------------------------------

/// A run writes 40 keys and pauses 3 s before reading them back (`--verify-delay`). Meanwhile
/// the test rewrites three of them in the target with other bytes, and a fourth in the source
/// and the target alike (what the live application does). The report lists exactly the three
/// as mismatched, counts the fourth `changed`, verifies the rest, and `--strict` exits 1. A run
/// that nothing disturbs verifies every key it wrote.
#[test]
fn verify_reports_exactly_the_keys_changed_behind_its_back() {
    let dir = tempfile::tempdir().unwrap();
    let replica = RedisServer::start(&[]);
    let keys: Vec<String> = (0..40).map(|i| format!("v:{i}")).collect();
    let mut source = replica.connection();
    for key in &keys {
        let _: () = redis::cmd("SET")
            .arg(key)
            .arg(format!("value of {key}"))
            .arg("EX")
            .arg(3600)
            .query(&mut source)
            .unwrap();
    }
    let manifest = manifest_for(dir.path(), &keys);
    let target = RedisServer::start(&[]);
    let runs = dir.path().join("runs");
    let args = [
        "run",
        "--manifest",
        manifest.to_str().unwrap(),
        "--source",
        &replica.url(),
        "--target",
        &target.url(),
        "--runs-dir",
        runs.to_str().unwrap(),
        "--verify",
        "--verify-delay",
        "3s",
        "--strict",
    ];
    let child = warmer_command(dir.path(), &args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut target_connection = target.connection();
    let start = Instant::now();
    loop {
        let size: usize = redis::cmd("DBSIZE").query(&mut target_connection).unwrap();
        if size == keys.len() {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the run wrote {size} keys"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let tampered = ["v:3", "v:17", "v:38"];
    for key in tampered {
        let _: () = redis::cmd("SET")
            .arg(key)
            .arg("other bytes")
            .arg("KEEPTTL")
            .query(&mut target_connection)
            .unwrap();
    }
    for connection in [&mut source, &mut target_connection] {
        let _: () = redis::cmd("SET")
            .arg("v:20")
            .arg("the app's new value")
            .arg("EX")
            .arg(3600)
            .query(connection)
            .unwrap();
    }
    let output = check_exit(child.wait_with_output().unwrap(), 1, "warmer run --strict");
    let (report, _) = report_of(&output.stdout);
    let verification = report.targets[0].verification.as_ref().unwrap();
    let mut mismatched: Vec<&str> = verification
        .mismatches
        .iter()
        .map(|m| m.key.as_str())
        .collect();
    mismatched.sort_unstable();
    let mut expected = tampered.to_vec();
    expected.sort_unstable();
    assert_eq!(mismatched, expected, "{verification:?}");
    assert_eq!(
        (
            verification.verified,
            verification.mismatched,
            verification.changed
        ),
        (36, 3, 1),
        "{verification:?}"
    );
    assert!(
        verification
            .mismatches
            .iter()
            .all(|m| m.reason.starts_with("value differs")),
        "{verification:?}"
    );
    let summary = String::from_utf8_lossy(&output.stdout);
    assert!(summary.contains("mismatched 3"), "{summary}");

    let quiet = RedisServer::start(&[]);
    let (report, _) = warm(
        dir.path(),
        &manifest,
        &replica.url(),
        &quiet.url(),
        &["--strict"],
    );
    assert_all_written_and_verified(&report, keys.len());
}
