//! Several memcached servers, keys routed as the application's own client routes them: the
//! warmer writes with `hashing=ketama|dalli|rendezvous`, and the real client library (pylibmc
//! from Debian, Dalli from Debian, pymemcache `HashClient` from PyPI) configured with the same
//! server list must read every key back; and the other way round, keys the library wrote are
//! found by the warmer reading the servers as its source. `warmer undo` deletes what it wrote,
//! routed the same way.
//!
//! `scripts/test` installs the libraries (pymemcache into [`python_packages`]).

// A failed step should stop the test where it failed.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use cachewarm_tests::{
    MemcachedServer, RedisServer, check_exit, feed, ingest_and_rank, python_packages,
    read_manifest, report_of, warmer_command,
};
use redis::Commands;

/// Enough keys that each of three servers gets a fair share, few enough to stay quick.
const KEYS: usize = 300;

/// The application's client, with how it is configured in a Django or Rails app.
#[derive(Debug, Clone, Copy)]
enum App {
    /// Django `PyLibMCCache` with `"behaviors": {"ketama": True}`.
    Pylibmc,
    /// Rails `:mem_cache_store` (Dalli) with default options.
    Dalli,
    /// Django `PyMemcacheCache`: pymemcache `HashClient`, default hasher, unicode keys on.
    Pymemcache,
}

impl App {
    fn hashing(self) -> &'static str {
        match self {
            App::Pylibmc => "ketama",
            App::Dalli => "dalli",
            App::Pymemcache => "rendezvous",
        }
    }
}

/// Reads (`read`) or writes (`write`) the `key<TAB>value` lines on stdin with pylibmc or
/// pymemcache; prints how many keys were found with their value (or written), then the keys
/// that were not.
const PYTHON_CLIENT: &str = r#"
import sys
mode, kind, servers = sys.argv[1], sys.argv[2], sys.argv[3].split(",")
if kind == "pylibmc":
    import pylibmc
    client = pylibmc.Client(servers, behaviors={"ketama": True})
    get = client.get
    put = lambda k, v: client.set(k, v, time=3600)
else:
    from pymemcache.client.hash import HashClient
    client = HashClient(servers, allow_unicode_keys=True)
    get = client.get
    put = lambda k, v: client.set(k, v, expire=3600, noreply=False)
pairs = [line.split("\t", 1) for line in sys.stdin.read().split("\n") if line]
if mode == "read":
    bad = [k for k, v in pairs if get(k) != v.encode()]
else:
    bad = [k for k, v in pairs if not put(k, v.encode())]
print(len(pairs) - len(bad))
for k in bad[:10]:
    print(k)
"#;

/// The same with Dalli; values are written raw (not Marshal'ed), as a cache of strings is.
const RUBY_CLIENT: &str = r#"
require "dalli"
mode, servers = ARGV[0], ARGV[1].split(",")
client = Dalli::Client.new(servers)
pairs = STDIN.read.force_encoding("UTF-8").split("\n").reject(&:empty?).map { |l| l.split("\t", 2) }
bad = if mode == "read"
  pairs.reject { |k, v| client.get(k) == v }.map(&:first)
else
  pairs.reject { |k, v| client.set(k, v, 3600, raw: true) }.map(&:first)
end
puts pairs.size - bad.size
bad.first(10).each { |k| puts k }
"#;

/// Runs the application's client on `pairs` against `servers`; returns how many keys it
/// found (or wrote), and the first keys it did not.
fn app_client(app: App, mode: &str, servers: &[String], pairs: &[(String, String)]) -> usize {
    let servers = servers.join(",");
    let command = match app {
        App::Dalli => {
            let mut command = Command::new("/usr/bin/ruby");
            command.args(["-e", RUBY_CLIENT, mode, &servers]);
            command
        }
        App::Pylibmc | App::Pymemcache => {
            let kind = match app {
                App::Pylibmc => "pylibmc",
                _ => "pymemcache",
            };
            let mut command = Command::new("/usr/bin/python3");
            command
                .args(["-c", PYTHON_CLIENT, mode, kind, &servers])
                .env("PYTHONPATH", python_packages());
            command
        }
    };
    let input: String = pairs.iter().map(|(k, v)| format!("{k}\t{v}\n")).collect();
    let stdout = feed(
        command,
        &input,
        &format!(
            "the {app:?} client (scripts/test installs python3-pylibmc, ruby-dalli and pymemcache)"
        ),
    );
    let mut lines = stdout.lines();
    let count: usize = lines.next().unwrap().trim().parse().unwrap();
    let missed: Vec<&str> = lines.collect();
    assert!(
        missed.is_empty() || count < pairs.len(),
        "inconsistent client output:\n{stdout}"
    );
    if count < pairs.len() {
        eprintln!(
            "{app:?} {mode}: {count} of {} keys; first misses: {missed:?}",
            pairs.len()
        );
    }
    count
}

/// Keys as Django and Rails apps write them, a few of them not ASCII (the libraries hash
/// those in ways of their own: signed chars in libmemcached, code points in pymemcache).
fn keys_and_values() -> Vec<(String, String)> {
    (0..KEYS)
        .map(|i| {
            let key = match i % 6 {
                0 => format!(":1:views.decorators.cache.cache_page.{i:032x}"),
                1 => format!("views/products/{i}-20261121"),
                2 => format!(":1:django.contrib.sessions.cache{i:08x}"),
                3 if i % 12 == 3 => format!("café:menu:{i}"),
                _ => format!("app:v2:item:{i}"),
            };
            let value = format!("{{\"n\":{i},\"pad\":\"{}\"}}", "v".repeat(20 + i % 50));
            (key, value)
        })
        .collect()
}

/// A manifest of `pairs`' keys: a canonical CSV log reading each key three times, through
/// `analyzer ingest` and `analyzer rank`.
fn manifest_for(dir: &Path, pairs: &[(String, String)]) -> PathBuf {
    let log = dir.join("access.csv");
    let mut out = String::from("ts,key,op,hit\n");
    for round in 0..3 {
        for (i, (key, _)) in pairs.iter().enumerate() {
            let ts = 1_763_700_000 + round * 10_000 + i;
            out.push_str(&format!("{ts},{key},get,true\n"));
        }
    }
    std::fs::write(&log, out).unwrap();
    let (_, manifest) = ingest_and_rank(dir, &log, "10MiB", "manifest.json", &[]);
    assert_eq!(
        read_manifest(&manifest).entries.len(),
        pairs.len(),
        "every key is in the manifest"
    );
    manifest
}

/// Items per server, read from each server's own `stats`.
fn items(servers: &[MemcachedServer]) -> Vec<u64> {
    servers.iter().map(|s| s.stat("curr_items")).collect()
}

fn three_servers() -> (Vec<MemcachedServer>, Vec<String>) {
    let servers: Vec<MemcachedServer> = (0..3).map(|_| MemcachedServer::start(64)).collect();
    let addresses = servers.iter().map(MemcachedServer::address).collect();
    (servers, addresses)
}

/// The warmer writes every key from a Redis replica into three memcached servers; the
/// application's client, given the same server list, finds every one of them; each server
/// holds a share; `warmer undo` then finds and deletes every key again. `via_config` names
/// the scheme in `cachewarm.toml` instead of the URL.
fn run_warmer(dir: &Path, args: &[&str]) -> Output {
    warmer_command(dir, args).output().unwrap()
}

fn warmer_writes_app_reads(app: App, via_config: bool) {
    let dir = tempfile::tempdir().unwrap();
    let pairs = keys_and_values();
    let manifest = manifest_for(dir.path(), &pairs);
    let replica = RedisServer::start(&[]);
    let mut connection = replica.connection();
    for (key, value) in &pairs {
        let _: () = connection.set_ex(key, value, 3600).unwrap();
    }
    let (servers, addresses) = three_servers();

    let list = addresses.join(",");
    let target = if via_config {
        std::fs::write(
            dir.path().join("cachewarm.toml"),
            format!("[warmer]\nmemcached_hashing = \"{}\"\n", app.hashing()),
        )
        .unwrap();
        format!("memcached://{list}")
    } else {
        format!("memcached://{list}?hashing={}", app.hashing())
    };
    let runs = dir.path().join("runs");
    let output = run_warmer(
        dir.path(),
        &[
            "run",
            "--manifest",
            manifest.to_str().unwrap(),
            "--source",
            &replica.url(),
            "--allow-cross-kind",
            "--target",
            &target,
            "--runs-dir",
            runs.to_str().unwrap(),
        ],
    );
    let output = check_exit(output, 0, "warmer run");
    let (report, run_dir) = report_of(&output.stdout);
    let counts = &report.targets[0].counts;
    assert_eq!(counts.written as usize, pairs.len(), "{counts:?}");

    // Each server got a share: a router that sent everything to one server fails here, and
    // the sum shows nothing was written twice.
    let per_server = items(&servers);
    assert_eq!(per_server.iter().sum::<u64>() as usize, pairs.len());
    for (server, count) in per_server.iter().enumerate() {
        assert!(
            *count as usize > pairs.len() / 10,
            "server {server} holds {count} of {} keys: {per_server:?}",
            pairs.len()
        );
    }

    // The application finds every key where its client looks.
    let found = app_client(app, "read", &addresses, &pairs);
    assert_eq!(
        found,
        pairs.len(),
        "{app:?} found {found} of {} keys",
        pairs.len()
    );

    // The coverage probes route the same way: the warmer saw every key after warming.
    let after = report.targets[0].coverage_after.as_ref().unwrap();
    assert_eq!(after.keys_present as usize, pairs.len());

    // Undo finds every key it wrote (the run recorded the target with its hashing).
    let output = run_warmer(dir.path(), &["undo", run_dir.to_str().unwrap()]);
    let output = check_exit(output, 0, "warmer undo");
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        text.contains(&format!("deleted {}", pairs.len())),
        "undo did not delete every key:\n{text}"
    );
    assert_eq!(items(&servers), vec![0, 0, 0]);
}

/// The application's client writes every key into three servers; the warmer, reading those
/// servers as its replica source with the same hashing, finds every value and copies it into
/// a fresh memcached.
fn app_writes_warmer_reads(app: App) {
    let dir = tempfile::tempdir().unwrap();
    let pairs = keys_and_values();
    let manifest = manifest_for(dir.path(), &pairs);
    let (servers, addresses) = three_servers();
    assert_eq!(app_client(app, "write", &addresses, &pairs), pairs.len());
    assert!(items(&servers).iter().all(|&n| n > 0));
    let target = MemcachedServer::start(64);

    let source = format!(
        "memcached://{}?hashing={}",
        addresses.join(","),
        app.hashing()
    );
    let runs = dir.path().join("runs");
    let output = run_warmer(
        dir.path(),
        &[
            "run",
            "--manifest",
            manifest.to_str().unwrap(),
            "--source",
            &source,
            "--target",
            &target.url(),
            "--runs-dir",
            runs.to_str().unwrap(),
        ],
    );
    let output = check_exit(output, 0, "warmer run from the app's servers");
    let (report, _) = report_of(&output.stdout);
    let counts = &report.targets[0].counts;
    assert_eq!(counts.source_miss, 0, "{counts:?}");
    assert_eq!(counts.written as usize, pairs.len(), "{counts:?}");
    let client = target.client();
    for (key, value) in &pairs {
        let result = client.run(memcache::exp::Get::new(key)).unwrap();
        assert_eq!(result.value.as_deref(), Some(value.as_bytes()), "{key}");
    }
}

#[test]
fn ketama_matches_pylibmc() {
    warmer_writes_app_reads(App::Pylibmc, false);
}

#[test]
fn ketama_reads_what_pylibmc_wrote() {
    app_writes_warmer_reads(App::Pylibmc);
}

#[test]
fn dalli_ring_matches_dalli() {
    warmer_writes_app_reads(App::Dalli, true);
}

#[test]
fn dalli_ring_reads_what_dalli_wrote() {
    app_writes_warmer_reads(App::Dalli);
}

#[test]
fn rendezvous_matches_pymemcache() {
    warmer_writes_app_reads(App::Pymemcache, false);
}

#[test]
fn rendezvous_reads_what_pymemcache_wrote() {
    app_writes_warmer_reads(App::Pymemcache);
}

/// Several servers and no scheme: refused before anything is written, exit 2, naming the
/// setting, since a guess would spread keys where the application never reads them.
#[test]
fn several_servers_without_hashing_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let pairs = keys_and_values();
    let manifest = manifest_for(dir.path(), &pairs[..20]);
    let replica = RedisServer::start(&[]);
    let (servers, addresses) = three_servers();
    let output = run_warmer(
        dir.path(),
        &[
            "run",
            "--manifest",
            manifest.to_str().unwrap(),
            "--source",
            &replica.url(),
            "--allow-cross-kind",
            "--target",
            &format!("memcached://{}", addresses.join(",")),
            "--runs-dir",
            dir.path().join("runs").to_str().unwrap(),
        ],
    );
    let output = check_exit(output, 2, "warmer run without hashing");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("memcached_hashing") && stderr.contains("?hashing="),
        "{stderr}"
    );
    assert_eq!(items(&servers), vec![0, 0, 0]);
}
