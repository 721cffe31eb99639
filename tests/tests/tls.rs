//! Redis (`rediss://`, `rediss+cluster://`) and memcached (`memcached+tls://`) over TLS, on
//! servers that take TLS only and demand a client certificate, with certificates the test
//! makes: a warm from a TLS replica into a TLS target (values read back with `redis-cli --tls`
//! and pymemcache over TLS), a wrong CA and a missing client certificate refused with errors
//! that name the target, and `?insecure=true` warned about.

// A failed step should stop the test where it failed.
#![allow(clippy::unwrap_used)]

use std::io::Write;
use std::path::Path;
use std::process::Command;

use cachewarm_tests::{
    MemcachedServer, RedisCluster, RedisServer, TestCerts, assert_refused, check_exit, feed,
    ingest_and_rank, python_packages, run_args, warm, warmer_command,
};

/// The value stored under `key`, naming it, so a value under the wrong key shows.
fn value_for(key: &str) -> String {
    format!("value-of-{key}")
}

/// Keys without spaces or quotes, so each is one word on a `redis-cli` line.
fn keys(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("app:v2:item:{i}")).collect()
}

/// A manifest of `keys` (each read a few times in a canonical access log, all under the
/// budget) in `dir`.
fn manifest_of(dir: &Path, keys: &[String]) -> String {
    let log = dir.join("access.jsonl");
    let mut out = std::io::BufWriter::new(std::fs::File::create(&log).unwrap());
    for (i, key) in keys.iter().enumerate() {
        for read in 0..2 + i % 3 {
            let ts = 1_763_700_000.0 + i as f64 + read as f64 * 0.001;
            writeln!(
                out,
                r#"{{"ts": {ts:.3}, "key": "{key}", "op": "get", "hit": true, "value_size": 20}}"#
            )
            .unwrap();
        }
    }
    out.flush().unwrap();
    drop(out);
    let (_, manifest) = ingest_and_rank(dir, &log, "64MiB", "manifest.json", &[]);
    manifest.to_str().unwrap().to_owned()
}

/// A TLS-only Redis holding `keys` (their [`value_for`], an hour's TTL), and the manifest of
/// those keys in `dir`.
fn filled_tls_replica(certs: &TestCerts, dir: &Path, keys: &[String]) -> (RedisServer, String) {
    let replica = RedisServer::start_tls(certs);
    let commands: String = keys
        .iter()
        .map(|key| format!("SET {key} {} EX 3600\n", value_for(key)))
        .collect();
    feed(replica.cli_tls(certs), &commands, "redis-cli --tls (fill)");
    (replica, manifest_of(dir, keys))
}

/// Warms `target` from `source` with `manifest` and checks that all `keys` were written.
fn warm_all(dir: &Path, manifest: &str, source: &str, target: &str, keys: usize) {
    let (report, _) = warm(dir, manifest, source, target, &[]);
    assert_eq!(
        report.targets[0].counts.written, keys as u64,
        "{:?} {:?}",
        report.targets[0].error, report.source_error
    );
}

/// `rediss://` to `server` with `options` after `?`.
fn tls_url(server: &RedisServer, options: &str) -> String {
    format!("rediss://127.0.0.1:{}?{options}", server.port)
}

/// `ca=…&cert=…&key=…` with `certs`' CA `ca` (`ca.pem` or `wrong-ca.pem`) and client certificate.
fn options(certs: &TestCerts, ca: &str) -> String {
    format!(
        "ca={}&cert={}&key={}",
        certs.file(ca),
        certs.file("client.pem"),
        certs.file("client.key")
    )
}

/// A warm from a TLS-only replica into a TLS-only target, both demanding a client
/// certificate: every key arrives, as `redis-cli --tls` reads it back; with `?insecure=true`
/// (no CA given) the warm works too, and says in its log that nothing was checked.
#[test]
fn warms_from_a_tls_replica_into_a_tls_target() {
    let certs = TestCerts::new();
    let keys = keys(60);
    let dir = tempfile::tempdir().unwrap();
    let (replica, manifest) = filled_tls_replica(&certs, dir.path(), &keys);
    let target = RedisServer::start_tls(&certs);
    let source = tls_url(&replica, &options(&certs, "ca.pem"));
    warm_all(
        dir.path(),
        &manifest,
        &source,
        &tls_url(&target, &options(&certs, "ca.pem")),
        keys.len(),
    );
    let gets: String = keys.iter().map(|key| format!("GET {key}\n")).collect();
    let values = feed(target.cli_tls(&certs), &gets, "redis-cli --tls (read back)");
    let expected: Vec<String> = keys.iter().map(|key| value_for(key)).collect();
    assert_eq!(values.lines().collect::<Vec<_>>(), expected);

    let insecure = RedisServer::start_tls(&certs);
    let url = tls_url(
        &insecure,
        &format!(
            "insecure=true&cert={}&key={}",
            certs.file("client.pem"),
            certs.file("client.key")
        ),
    );
    let args = run_args(&manifest, &source, &[&url], "runs-insecure", &[]);
    let output = check_exit(
        warmer_command(dir.path(), &args).output().unwrap(),
        0,
        "a warm with ?insecure=true",
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("without certificate verification"),
        "{stderr}"
    );
    let values = feed(
        insecure.cli_tls(&certs),
        &gets,
        "redis-cli --tls (insecure)",
    );
    assert_eq!(values.lines().collect::<Vec<_>>(), expected);
}

/// A target whose certificate is not signed by the CA given, and a target that demands a
/// client certificate the URL does not give: the run fails that target with an error that
/// names it and says why (a certificate verification failure: an unknown issuer), and
/// nothing is written to it.
#[test]
fn refuses_a_wrong_ca_and_a_missing_client_certificate() {
    let certs = TestCerts::new();
    let keys = keys(5);
    let dir = tempfile::tempdir().unwrap();
    let (replica, manifest) = filled_tls_replica(&certs, dir.path(), &keys);
    let target = RedisServer::start_tls(&certs);
    let source = tls_url(&replica, &options(&certs, "ca.pem"));
    let cases = [
        (options(&certs, "wrong-ca.pem"), "UnknownIssuer"),
        (
            format!("ca={}", certs.file("ca.pem")),
            "CertificateRequired",
        ),
    ];
    for (i, (options, why)) in cases.iter().enumerate() {
        let url = tls_url(&target, options);
        let runs = format!("runs-{i}");
        let args = run_args(&manifest, &source, &[&url], &runs, &["--strict"]);
        let output = warmer_command(dir.path(), &args).output().unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        assert_ne!(output.status.code(), Some(0), "{text}");
        let named = format!("rediss://127.0.0.1:{}", target.port);
        let line = text
            .lines()
            .find(|line| line.contains(&named) && line.contains(why))
            .unwrap_or_else(|| panic!("no error naming {named} and {why}:\n{text}"));
        if i == 0 {
            assert!(line.contains("invalid peer certificate"), "{line}");
        }
    }
    let dbsize = feed(
        target.cli_tls(&certs),
        "DBSIZE\n",
        "redis-cli --tls (dbsize)",
    );
    assert_eq!(dbsize.trim(), "0");
}

/// A Redis Cluster that takes TLS only, its nodes speaking TLS to each other too
/// (`--tls-cluster yes`) and demanding client certificates: a warm from a TLS replica into
/// `rediss+cluster://` writes every key, spread over the three primaries by slot, as
/// `redis-cli --tls -c` (which follows the cluster's redirects) reads back.
#[test]
fn warms_a_tls_cluster() {
    let certs = TestCerts::new();
    let keys = keys(60);
    let dir = tempfile::tempdir().unwrap();
    let (replica, manifest) = filled_tls_replica(&certs, dir.path(), &keys);
    let cluster = RedisCluster::start_tls(&certs);
    let nodes: Vec<String> = cluster
        .nodes
        .iter()
        .map(|node| format!("127.0.0.1:{}", node.port))
        .collect();
    let target = format!(
        "rediss+cluster://{}?{}",
        nodes.join(","),
        options(&certs, "ca.pem")
    );
    let source = tls_url(&replica, &options(&certs, "ca.pem"));
    warm_all(dir.path(), &manifest, &source, &target, keys.len());
    let gets: String = keys.iter().map(|key| format!("GET {key}\n")).collect();
    let mut cli = cluster.nodes[0].cli_tls(&certs);
    cli.arg("-c");
    let values = feed(cli, &gets, "redis-cli --tls -c (read back)");
    let expected: Vec<String> = keys.iter().map(|key| value_for(key)).collect();
    // redis-cli tells of each redirect it followed on a line of its own.
    let values: Vec<&str> = values
        .lines()
        .filter(|line| !line.starts_with("-> Redirected"))
        .collect();
    assert_eq!(values, expected);
    let per_node: Vec<usize> = cluster
        .nodes
        .iter()
        .map(|node| {
            feed(node.cli_tls(&certs), "DBSIZE\n", "redis-cli --tls (dbsize)")
                .trim()
                .parse()
                .unwrap()
        })
        .collect();
    assert!(per_node.iter().all(|&n| n > 0), "{per_node:?}");
    assert_eq!(per_node.iter().sum::<usize>(), keys.len());

    // The nodes' certificates checked against a CA that did not sign them: refused, named.
    let wrong = format!(
        "rediss+cluster://{}?{}",
        nodes.join(","),
        options(&certs, "wrong-ca.pem")
    );
    let args = run_args(
        &manifest,
        &source,
        &[&wrong],
        "runs-wrong-ca",
        &["--strict"],
    );
    let named = format!("rediss+cluster://{}", nodes.join(","));
    assert_refused(dir.path(), &args, &named, "UnknownIssuer");
}

/// pymemcache over TLS with `certs`' CA and client certificate, running `script` against the
/// server on `port` (as `client`, whose `get` gives the value as text and its flags); its
/// stdout.
fn pymemcache_tls(certs: &TestCerts, port: u16, script: &str) -> String {
    let program = format!(
        "import ssl, sys\n\
         from pymemcache.client.base import Client\n\
         context = ssl.create_default_context(cafile={ca:?})\n\
         context.load_cert_chain({cert:?}, {key:?})\n\
         class Flags:\n\
         \x20   def serialize(self, key, value): return value, 0\n\
         \x20   def deserialize(self, key, value, flags): return value.decode(), flags\n\
         client = Client(('127.0.0.1', {port}), tls_context=context, serde=Flags())\n\
         {script}\n",
        ca = certs.file("ca.pem"),
        cert = certs.file("client.pem"),
        key = certs.file("client.key"),
    );
    let mut command = Command::new("/usr/bin/python3");
    command
        .arg("-c")
        .arg(program)
        .env("PYTHONPATH", python_packages());
    feed(
        command,
        "",
        "pymemcache over TLS (scripts/test installs pymemcache)",
    )
}

/// memcached over TLS (`memcached+tls://`) on servers that take TLS only and demand a client
/// certificate: a warm from a TLS replica into a TLS target works (pymemcache reads every value
/// back over TLS, with its flags); a wrong CA fails the target with a certificate verification
/// error naming it, and a URL without the client certificate is refused by the server.
#[test]
fn warms_memcached_over_tls() {
    let certs = TestCerts::new();
    let replica = MemcachedServer::start_tls(&certs);
    let target = MemcachedServer::start_tls(&certs);
    let keys = keys(40);
    let sets: String = keys
        .iter()
        .map(|key| {
            format!(
                "client.set({key:?}, {:?}, expire=3600, noreply=False, flags=16)\n",
                value_for(key)
            )
        })
        .collect();
    pymemcache_tls(&certs, replica.port, &sets);
    let dir = tempfile::tempdir().unwrap();
    let manifest = manifest_of(dir.path(), &keys);
    let url = |server: &MemcachedServer, options: &str| {
        format!("memcached+tls://127.0.0.1:{}?{options}", server.port)
    };
    let source = url(&replica, &options(&certs, "ca.pem"));
    warm_all(
        dir.path(),
        &manifest,
        &source,
        &url(&target, &options(&certs, "ca.pem")),
        keys.len(),
    );
    let reads: String = keys
        .iter()
        .map(|key| format!("print(*client.get({key:?}))\n"))
        .collect();
    let read = pymemcache_tls(&certs, target.port, &reads);
    let expected: Vec<String> = keys
        .iter()
        .map(|key| format!("{} 16", value_for(key)))
        .collect();
    assert_eq!(read.lines().collect::<Vec<_>>(), expected);

    let empty = MemcachedServer::start_tls(&certs);
    let cases = [
        (options(&certs, "wrong-ca.pem"), "UnknownIssuer"),
        (format!("ca={}", certs.file("ca.pem")), "TLS to 127.0.0.1"),
    ];
    for (i, (options, why)) in cases.iter().enumerate() {
        let target_url = url(&empty, options);
        let args = run_args(
            &manifest,
            &source,
            &[&target_url],
            &format!("runs-{i}"),
            &["--strict"],
        );
        let named = format!("memcached+tls://127.0.0.1:{}", empty.port);
        assert_refused(dir.path(), &args, &named, why);
    }
    let count = pymemcache_tls(&certs, empty.port, "print(client.stats()[b'curr_items'])");
    assert_eq!(count.trim(), "0");
}
