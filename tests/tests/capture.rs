//! Logs captured live from the harness's real servers while the test drives a read-through
//! workload it counts itself: memcached's `watch fetchers mutations` and Redis `MONITOR`
//! (raw, with the leading `+`). `analyzer ingest` must find exactly the reads, hits, misses
//! and writes the test issued.

// A failed step should stop the test where it failed.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

use cachewarm_tests::{
    MemcachedServer, RedisServer, Rng, Zipf, app_keys, ingest_and_rank, read_manifest,
};
use redis::Commands;
use schemas::Manifest;

/// What the workload issued.
#[derive(Debug, Default)]
struct Issued {
    reads: HashMap<String, u64>,
    hits: u64,
    misses: u64,
    writes: u64,
}

/// A streaming log connection whose lines a thread copies to a file, and which can be asked to
/// wait until a line containing a marker has arrived.
struct Capture {
    lines: mpsc::Receiver<String>,
    out: std::fs::File,
}

impl Capture {
    /// Sends `command` on a new connection to `port`, waits for the `ok` reply line, then copies
    /// every further line.
    fn start(port: u16, command: &str, ok: &str, out: &Path) -> Capture {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
        stream.write_all(command.as_bytes()).unwrap();
        let mut reader = BufReader::new(stream);
        let mut first = String::new();
        reader.read_line(&mut first).unwrap();
        assert_eq!(
            first.trim_end(),
            ok,
            "the server refused `{}`",
            command.trim()
        );
        let (sender, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in reader.lines() {
                let Ok(line) = line else { break };
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        Capture {
            lines,
            out: std::fs::File::create(out).unwrap(),
        }
    }

    /// Copies lines to the file until one contains `marker` (included).
    fn until(&mut self, marker: &str) {
        loop {
            let line = self
                .lines
                .recv_timeout(Duration::from_secs(10))
                .unwrap_or_else(|_| panic!("`{marker}` never reached the capture"));
            writeln!(self.out, "{line}").unwrap();
            if line.contains(marker) {
                return;
            }
        }
    }
}

/// The manifest of a captured log, with every key read (no budget limit, one-hit wonders in).
fn ingest_and_rank_all(dir: &Path, log: &Path, format: &str) -> (serde_json::Value, Manifest) {
    let (summary, manifest) =
        ingest_and_rank(dir, log, "1GiB", "manifest.json", &["--min-requests", "1"]);
    assert_eq!(summary["files"][0]["format"], format, "auto-detection");
    assert_eq!(summary["rejected"], 0, "{summary}");
    (summary, read_manifest(&manifest))
}

fn check(manifest: &Manifest, summary: &serde_json::Value, issued: &Issued) {
    let reads: u64 = issued.reads.values().sum();
    assert_eq!(manifest.header.totals.requests_seen, reads);
    assert_eq!(manifest.entries.len(), issued.reads.len());
    for entry in &manifest.entries {
        assert_eq!(entry.requests, issued.reads[&entry.key], "{}", entry.key);
    }
    let hits: u64 = manifest.entries.iter().map(|e| e.hits).sum();
    let misses: u64 = manifest.entries.iter().map(|e| e.misses).sum();
    assert_eq!((hits, misses), (issued.hits, issued.misses));
    assert_eq!(summary["events"], reads + issued.writes);
}

/// memcached `watch fetchers mutations`, driven over the ASCII protocol as Django's
/// pymemcache and Rails' Dalli speak it.
#[test]
fn memcached_watch_capture() {
    let dir = tempfile::tempdir().unwrap();
    let memcached = MemcachedServer::start(64);
    let log = dir.path().join("watch.log");
    let mut capture = Capture::start(memcached.port, "watch fetchers mutations\r\n", "OK", &log);

    let client = memcache::Client::connect(format!(
        "memcache://127.0.0.1:{}?protocol=ascii",
        memcached.port
    ))
    .unwrap();
    let keys: Vec<String> = app_keys(300)
        .into_iter()
        .filter(|k| !k.contains(' '))
        .collect();
    let zipf = Zipf::new(keys.len(), 0.9);
    let mut rng = Rng::new(7);
    let mut issued = Issued::default();
    for _ in 0..2000 {
        let key = &keys[zipf.sample(&mut rng)];
        *issued.reads.entry(key.clone()).or_default() += 1;
        let value: Option<String> = client.get(key).unwrap();
        if value.is_some() {
            issued.hits += 1;
        } else {
            issued.misses += 1;
            client.set(key, format!("value of {key}"), 600).unwrap();
            issued.writes += 1;
        }
    }
    // A last read that the test can wait for: everything before it is in the capture.
    let _: Option<String> = client.get("capture-end").unwrap();
    *issued.reads.entry("capture-end".into()).or_default() += 1;
    issued.misses += 1;
    capture.until("key=capture-end");

    let (summary, manifest) = ingest_and_rank_all(dir.path(), &log, "memcached-watch");
    check(&manifest, &summary, &issued);
}

/// Redis `MONITOR` read raw from the socket (lines start with `+`), with read-through traffic
/// whose hits the analyzer must infer.
#[test]
fn redis_monitor_capture() {
    let dir = tempfile::tempdir().unwrap();
    let redis = RedisServer::start(&[]);
    let log = dir.path().join("monitor.log");
    let mut capture = Capture::start(redis.port, "MONITOR\r\n", "+OK", &log);

    let mut connection = redis.connection();
    let keys = app_keys(300);
    let zipf = Zipf::new(keys.len(), 0.9);
    let mut rng = Rng::new(11);
    let mut issued = Issued::default();
    for i in 0..2000 {
        let key = &keys[zipf.sample(&mut rng)];
        *issued.reads.entry(key.clone()).or_default() += 1;
        let value: Option<String> = connection.get(key).unwrap();
        if value.is_some() {
            issued.hits += 1;
        } else {
            issued.misses += 1;
            // Both write forms apps use: SET … EX and SETEX.
            if i % 2 == 0 {
                let _: () = connection
                    .set_ex(key, format!("value of {key}"), 600)
                    .unwrap();
            } else {
                let _: () = redis::cmd("SETEX")
                    .arg(key)
                    .arg(600)
                    .arg(format!("value of {key}"))
                    .query(&mut connection)
                    .unwrap();
            }
            issued.writes += 1;
        }
    }
    // Past the miss window, a keyless command settles every read; the test waits for it.
    std::thread::sleep(Duration::from_millis(300));
    let _: () = redis::cmd("PING")
        .arg("capture-end")
        .query(&mut connection)
        .unwrap();
    capture.until("capture-end");

    let (summary, manifest) = ingest_and_rank_all(dir.path(), &log, "redis-monitor");
    check(&manifest, &summary, &issued);
}

/// Redis `MONITOR` of a short burst from four connections whose read-through steps interleave
/// (another connection's commands come between a miss and its write), captured to the end
/// with no pause: every read is within the 250 ms miss window of the end, so only each
/// connection's own next command can say whether it hit. Each connection's last command is a
/// `PING`, as a client's next request would be; every hit and miss must then be known.
#[test]
fn redis_monitor_capture_settles_reads_by_connection() {
    const CONNECTIONS: usize = 4;
    let dir = tempfile::tempdir().unwrap();
    let redis = RedisServer::start(&[]);
    let log = dir.path().join("monitor.log");
    let mut capture = Capture::start(redis.port, "MONITOR\r\n", "+OK", &log);

    let mut connections: Vec<_> = (0..CONNECTIONS).map(|_| redis.connection()).collect();
    // The key each connection missed and has yet to write.
    let mut to_write: Vec<Option<String>> = vec![None; CONNECTIONS];
    let keys = app_keys(200);
    let zipf = Zipf::new(keys.len(), 0.9);
    let mut rng = Rng::new(23);
    let mut issued = Issued::default();
    let write = |connection: &mut redis::Connection, key: &str| {
        let _: () = connection
            .set_ex(key, format!("value of {key}"), 600)
            .unwrap();
    };
    for _ in 0..1500 {
        let c = (rng.next_u64() % CONNECTIONS as u64) as usize;
        if let Some(key) = to_write[c].take() {
            write(&mut connections[c], &key);
            issued.writes += 1;
            continue;
        }
        let key = &keys[zipf.sample(&mut rng)];
        *issued.reads.entry(key.clone()).or_default() += 1;
        let value: Option<String> = connections[c].get(key).unwrap();
        if value.is_some() {
            issued.hits += 1;
        } else {
            issued.misses += 1;
            to_write[c] = Some(key.clone());
        }
    }
    for (c, connection) in connections.iter_mut().enumerate() {
        if let Some(key) = to_write[c].take() {
            write(connection, &key);
            issued.writes += 1;
        }
        let _: () = redis::cmd("PING")
            .arg(format!("capture-end-{c}"))
            .query(connection)
            .unwrap();
    }
    capture.until(&format!("capture-end-{}", CONNECTIONS - 1));

    let (summary, manifest) = ingest_and_rank_all(dir.path(), &log, "redis-monitor");
    check(&manifest, &summary, &issued);
}
