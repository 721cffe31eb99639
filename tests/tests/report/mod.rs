//! Effectiveness reports on real servers: live traffic the test generates and counts itself
//! against real Redis and memcached targets while `warmer run --observe` measures the stores'
//! own counters; report.json checked against its JSON Schema; report.html and the trend page
//! loaded in headless Chromium; the run history read back with polars; the metrics file and
//! the push checked by a real Prometheus Pushgateway.

// A failed step should stop the test where it failed.
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use cachewarm_tests::{
    MemcachedServer, RedisServer, Rng, Zipf, app_keys, bin, ingest_and_rank, read_manifest,
};
use memcache::exp::Get;
use redis::Commands;
use schemas::Report;
use serde_json::{Value, json};

mod history;
mod measured;

const TTL_S: u64 = 3600;

/// Each observation window of the runs below.
const OBSERVE: Duration = Duration::from_secs(4);
/// How long the test reads after a window starts: well inside the window, so every read of
/// the test's falls in it and nothing else does.
const READ_FOR: Duration = Duration::from_millis(1800);

/// `keys` read `reads` times through `replica` (see [`drive_workload`]), logged into `dir`,
/// ingested and ranked under `budget` into `dir/manifest.json`; its path.
fn manifest_from_workload(
    dir: &Path,
    replica: &RedisServer,
    keys: &[String],
    reads: usize,
    budget: &str,
    rank_args: &[&str],
) -> PathBuf {
    let log = dir.join("access.jsonl");
    drive_workload(replica, &log, keys, reads);
    ingest_and_rank(dir, &log, budget, "manifest.json", rank_args).1
}

/// A read-through workload (GET; SET with a TTL on a miss) against `redis`, logged as
/// canonical JSON lines with the hit or miss the server answered.
fn drive_workload(redis: &RedisServer, log: &Path, keys: &[String], reads: usize) {
    let mut connection = redis.connection();
    let zipf = Zipf::new(keys.len(), 1.0);
    let mut rng = Rng::new(6);
    let mut out = std::io::BufWriter::new(std::fs::File::create(log).unwrap());
    let start_us: u64 = 1_763_700_000_000_000;
    for i in 0..reads {
        let key = &keys[zipf.sample(&mut rng)];
        let ts = (start_us + i as u64 * 1_000) as f64 / 1e6;
        let value: Option<String> = connection.get(key).unwrap();
        let hit = value.is_some();
        let key_json = serde_json::to_string(key).unwrap();
        writeln!(
            out,
            r#"{{"ts": {ts:.6}, "key": {key_json}, "op": "get", "hit": {hit}}}"#
        )
        .unwrap();
        if !hit {
            let value = format!("{{\"key\":{key_json},\"pad\":\"{}\"}}", "x".repeat(64));
            let _: () = connection.set_ex(key, &value, TTL_S).unwrap();
            writeln!(
                out,
                r#"{{"ts": {ts:.6}, "key": {key_json}, "op": "set", "value_size": {}, "ttl_s": {TTL_S}}}"#,
                value.len()
            )
            .unwrap();
        }
    }
    out.flush().unwrap();
}

/// Hits and misses the test counted from the answers to its own reads.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Tally {
    hits: u64,
    misses: u64,
}

impl Tally {
    fn count(&mut self, hit: bool) {
        if hit {
            self.hits += 1;
        } else {
            self.misses += 1;
        }
    }

    fn rate(&self) -> Option<f64> {
        let reads = self.hits + self.misses;
        (reads > 0).then(|| self.hits as f64 / reads as f64)
    }
}

/// Live traffic: reads `keys` in turn from both stores for `READ_FOR`, counting each answer.
fn live_traffic(redis: &RedisServer, memcached: &MemcachedServer, keys: &[String]) -> [Tally; 2] {
    let mut connection = redis.connection();
    let client = memcached.client();
    let mut tallies = [Tally::default(); 2];
    let start = Instant::now();
    let mut i = 0;
    while start.elapsed() < READ_FOR {
        let key = &keys[i % keys.len()];
        let value: Option<Vec<u8>> = connection.get(key).unwrap();
        tallies[0].count(value.is_some());
        tallies[1].count(client.run(Get::new(key)).unwrap().hit());
        i += 1;
        std::thread::sleep(Duration::from_millis(2));
    }
    tallies
}

/// A `warmer run` in the background with its stderr watched line by line.
struct WarmerRun {
    child: Child,
    /// One message per "observation window started" line.
    windows: mpsc::Receiver<String>,
    stderr: std::thread::JoinHandle<String>,
}

impl WarmerRun {
    fn start(args: &[&str]) -> WarmerRun {
        let mut child = Command::new(bin("warmer"))
            .args(args)
            .env("RUST_LOG", "warmer=info")
            .env("NO_COLOR", "1")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (sender, windows) = mpsc::channel();
        let stderr = std::thread::spawn(move || {
            let mut all = String::new();
            for line in BufReader::new(stderr).lines() {
                let line = line.unwrap();
                if line.contains("observation window started") {
                    let _ = sender.send(line.clone());
                }
                all.push_str(&line);
                all.push('\n');
            }
            all
        });
        WarmerRun {
            child,
            windows,
            stderr,
        }
    }

    /// Waits for the next observation window to start; returns its log line.
    fn next_window(&self) -> String {
        self.windows
            .recv_timeout(Duration::from_secs(120))
            .expect("the warmer announces its observation window")
    }

    /// Waits for the run to end; returns its report.
    fn finish(mut self) -> (Report, PathBuf) {
        let mut stdout = String::new();
        self.child
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut stdout)
            .unwrap();
        let status = self.child.wait().unwrap();
        let stderr = self.stderr.join().unwrap();
        assert!(
            status.success(),
            "warmer failed\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}"
        );
        let path = stdout
            .lines()
            .find_map(|line| line.strip_prefix("report: "))
            .unwrap_or_else(|| panic!("no report path in output:\n{stdout}"));
        let path = PathBuf::from(path.trim());
        let report = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        (report, path.parent().unwrap().to_path_buf())
    }
}

/// Validates the JSON file `instance` against the committed JSON Schema `schemas/json/NAME`
/// with Python's `jsonschema` (Debian's python3-jsonschema; a Rust validator would change the
/// features of crates polars is built with, and rebuild it).
pub(crate) fn assert_valid(name: &str, instance: &Path) {
    let schema = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../schemas/json")
        .join(name);
    let check = "import json, sys, jsonschema\n\
                 schema = json.load(open(sys.argv[1]))\n\
                 cls = jsonschema.validators.validator_for(schema)\n\
                 cls.check_schema(schema)\n\
                 errors = [f'{list(e.absolute_path)}: {e.message}' \
                           for e in cls(schema).iter_errors(json.load(open(sys.argv[2])))]\n\
                 print(cls.__name__)\n\
                 sys.exit('\\n'.join(errors) if errors else 0)\n";
    // Debian's interpreter, where python3-jsonschema installs; another `python3` may come
    // first on PATH (pyenv) without the package.
    let python = if Path::new("/usr/bin/python3").exists() {
        "/usr/bin/python3"
    } else {
        "python3"
    };
    let out = Command::new(python)
        .args(["-c", check])
        .arg(&schema)
        .arg(instance)
        .output()
        .expect("run python3 (scripts/test installs python3-jsonschema)");
    assert!(
        out.status.success(),
        "{} does not match {name}:\n{}{}",
        instance.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // schemars writes draft 2020-12; the check must not fall back to an older draft.
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "Draft202012Validator"
    );
}

/// The error detector itself: a page with a script error, a console error and an external
/// resource is caught, so a clean report page means something.
#[test]
fn chromium_check_catches_errors() {
    let dir = tempfile::tempdir().unwrap();
    let page = dir.path().join("broken.html");
    std::fs::write(
        &page,
        "<!DOCTYPE html><html><body><script>console.error('bad');undefinedFunction();</script>\
         <img src=\"http://127.0.0.1:9/missing.png\"></body></html>",
    )
    .unwrap();
    let page = Chromium::load(&page);
    let errors = page.errors.join("\n");
    assert!(errors.contains("bad"), "{errors}");
    assert!(errors.contains("undefinedFunction"), "{errors}");
    assert!(errors.contains("missing.png"), "{errors}");
}

fn read_history(path: &Path) -> polars::prelude::DataFrame {
    use polars::prelude::*;
    LazyFrame::scan_parquet(
        PlRefPath::new(path.to_string_lossy()),
        ScanArgsParquet::default(),
    )
    .unwrap()
    .collect()
    .unwrap()
}

/// A page loaded in headless Chromium, driven over the DevTools protocol on a pipe
/// (`--remote-debugging-pipe`): every console error, uncaught exception and browser log error
/// (a resource that failed to load, say) is collected while the page loads.
pub(crate) struct Chromium {
    child: Child,
    commands: std::process::ChildStdin,
    messages: mpsc::Receiver<Value>,
    session: String,
    next_id: u64,
    errors: Vec<String>,
    _profile: tempfile::TempDir,
}

impl Chromium {
    pub(crate) fn load(page: &Path) -> Chromium {
        let profile = tempfile::tempdir().unwrap();
        // The protocol pipe is fds 3 (commands in) and 4 (replies out): the shell maps them
        // onto our stdin and stdout.
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(
                "exec chromium --headless --no-sandbox --disable-gpu --disable-dev-shm-usage \
                 --no-first-run --no-default-browser-check --remote-debugging-pipe \
                 --user-data-dir=\"$0\" about:blank 3<&0 4>&1 0</dev/null 1>&2",
            )
            .arg(profile.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromium (scripts/test installs it)");
        let commands = child.stdin.take().unwrap();
        let replies = child.stdout.take().unwrap();
        let (sender, messages) = mpsc::channel();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(replies);
            loop {
                let mut message = Vec::new();
                match reader.read_until(0, &mut message) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        message.pop();
                        if let Ok(value) = serde_json::from_slice(&message)
                            && sender.send(value).is_err()
                        {
                            break;
                        }
                    }
                }
            }
        });
        let mut browser = Chromium {
            child,
            commands,
            messages,
            session: String::new(),
            next_id: 0,
            errors: Vec::new(),
            _profile: profile,
        };
        let target = browser.call("Target.createTarget", json!({"url": "about:blank"}));
        let attached = browser.call(
            "Target.attachToTarget",
            json!({"targetId": target["targetId"], "flatten": true}),
        );
        browser.session = attached["sessionId"].as_str().unwrap().to_owned();
        for domain in ["Runtime.enable", "Log.enable", "Page.enable"] {
            browser.call(domain, json!({}));
        }
        let url = format!("file://{}", std::fs::canonicalize(page).unwrap().display());
        browser.call("Page.navigate", json!({"url": url}));
        browser.wait_for("Page.loadEventFired");
        // Late console messages and failed loads arrive just after the load event.
        let settle = Instant::now() + Duration::from_millis(500);
        while let Some(left) = settle.checked_duration_since(Instant::now()) {
            match browser.messages.recv_timeout(left) {
                Ok(message) => browser.note(&message),
                Err(_) => break,
            }
        }
        browser
    }

    fn send(&mut self, method: &str, params: Value) -> u64 {
        self.next_id += 1;
        let mut message = json!({"id": self.next_id, "method": method, "params": params});
        if !self.session.is_empty() {
            message["sessionId"] = json!(self.session);
        }
        let mut bytes = serde_json::to_vec(&message).unwrap();
        bytes.push(0);
        self.commands.write_all(&bytes).unwrap();
        self.commands.flush().unwrap();
        self.next_id
    }

    fn receive(&mut self) -> Value {
        let message = self
            .messages
            .recv_timeout(Duration::from_secs(60))
            .expect("chromium answers on the DevTools pipe");
        self.note(&message);
        message
    }

    fn call(&mut self, method: &str, params: Value) -> Value {
        let id = self.send(method, params);
        loop {
            let message = self.receive();
            if message["id"].as_u64() == Some(id) {
                assert!(message.get("error").is_none(), "{method}: {message}");
                return message["result"].clone();
            }
        }
    }

    fn wait_for(&mut self, event: &str) {
        while self.receive()["method"] != event {}
    }

    /// Collects what counts as an error.
    fn note(&mut self, message: &Value) {
        let params = &message["params"];
        match message["method"].as_str() {
            Some("Runtime.exceptionThrown") => {
                let details = &params["exceptionDetails"];
                self.errors.push(format!(
                    "exception: {} {}",
                    details["text"], details["exception"]["description"]
                ));
            }
            Some("Runtime.consoleAPICalled")
                if matches!(params["type"].as_str(), Some("error" | "assert")) =>
            {
                self.errors
                    .push(format!("console.error: {}", params["args"]));
            }
            Some("Log.entryAdded") if params["entry"]["level"] == "error" => {
                self.errors.push(format!(
                    "log: {} {}",
                    params["entry"]["text"], params["entry"]["url"]
                ));
            }
            _ => {}
        }
    }

    fn evaluate(&mut self, expression: &str) -> Value {
        let result = self.call(
            "Runtime.evaluate",
            json!({"expression": expression, "returnByValue": true}),
        );
        result["result"]["value"].clone()
    }

    pub(crate) fn assert_no_errors(&self) {
        assert!(self.errors.is_empty(), "page errors: {:#?}", self.errors);
    }

    /// The chart is in the rendered DOM, laid out with a size, and has drawn marks.
    pub(crate) fn assert_chart(&mut self, id: &str) {
        let found = self.evaluate(&format!(
            "(() => {{ const e = document.getElementById('{id}'); if (!e) return null; \
             const r = e.getBoundingClientRect(); \
             return [e.tagName, r.width, r.height, e.querySelectorAll('path, rect').length]; }})()"
        ));
        let found = found
            .as_array()
            .unwrap_or_else(|| panic!("chart {id} is not in the DOM"));
        assert_eq!(found[0], "svg", "{id}");
        assert!(found[1].as_f64() > Some(100.0), "{id}: {found:?}");
        assert!(found[2].as_f64() > Some(20.0), "{id}: {found:?}");
        assert!(found[3].as_u64() > Some(0), "{id} draws nothing");
    }
}

impl Drop for Chromium {
    fn drop(&mut self) {
        let _ = self.send("Browser.close", json!({}));
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A `prometheus-pushgateway` of our own (Debian's package), on a free loopback port.
struct Pushgateway {
    child: Child,
    port: u16,
}

impl Pushgateway {
    fn start() -> Pushgateway {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut child = Command::new("prometheus-pushgateway")
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start prometheus-pushgateway (scripts/test installs it)");
        let start = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "pushgateway did not start"
            );
            assert!(child.try_wait().unwrap().is_none(), "pushgateway exited");
            std::thread::sleep(Duration::from_millis(50));
        }
        Pushgateway { child, port }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Pushes `text`; the Pushgateway answers 400 to anything its text parser refuses.
    fn push(&self, job: &str, text: &str) {
        let response = ureq::put(&format!("{}/metrics/job/{job}", self.url()))
            .header("Content-Type", "text/plain; version=0.0.4")
            .send(text);
        if let Err(error) = response {
            panic!("the pushgateway refused the metrics: {error}\n{text}");
        }
    }

    fn scrape(&self) -> String {
        ureq::get(&format!("{}/metrics", self.url()))
            .call()
            .unwrap()
            .body_mut()
            .read_to_string()
            .unwrap()
    }
}

impl Drop for Pushgateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
