//! The end-to-end test harness: real `redis-server` (alone, TLS only, as a 3-node Redis Cluster
//! or as a master, a replica and a Sentinel),
//! `memcached` and PostgreSQL processes on free loopback ports in temporary directories,
//! stopped on drop, with their logs printed when a test fails; and helpers to run the
//! project's binaries.
//!
//! The servers come from PATH, PostgreSQL from Debian's `/usr/lib/postgresql/VERSION/bin`
//! (`scripts/test` installs them when missing).

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

mod certs;
mod memcached_server;
mod postgres_server;
mod redis_sentinel;
mod redis_server;
mod s3_server;

pub use certs::TestCerts;
pub use memcached_server::MemcachedServer;
pub use postgres_server::{POSTGRES_USER, PostgresServer};
pub use redis_sentinel::{MASTER_NAME, RedisSentinel, SentinelSecurity};
pub use redis_server::{RedisCluster, RedisServer};
pub use s3_server::S3Server;

/// How long a server may take to accept connections.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// A port that was free a moment ago.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("bind an ephemeral loopback port")
        .port()
}

fn wait_for_port(port: u16, child: &mut Child, log: &Path) {
    let start = Instant::now();
    while start.elapsed() < START_TIMEOUT {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!(
                "server exited with {status} before accepting connections; log:\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("server did not listen on port {port} within {START_TIMEOUT:?}");
}

/// A running server process and its scratch directory.
#[derive(Debug)]
struct Process {
    name: &'static str,
    child: Child,
    dir: tempfile::TempDir,
    log: PathBuf,
}

impl Process {
    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.stop();
        if std::thread::panicking() {
            eprintln!(
                "---- {} log ({}) ----\n{}",
                self.name,
                self.dir.path().display(),
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
        }
    }
}

/// Whether the tests run as root: memcached then needs `-u`, and PostgreSQL, which refuses
/// root, runs as an unprivileged user.
fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|out| String::from_utf8_lossy(&out.stdout).trim() == "0")
        .unwrap_or(false)
}

/// Where `scripts/test` installs Python packages that Debian does not ship at the version the
/// tests need (pymemcache), outside the clone so it survives between runs: put it on
/// `PYTHONPATH` of `/usr/bin/python3`.
pub fn python_packages() -> PathBuf {
    let home = std::env::var_os("HOME").expect("HOME is set");
    Path::new(&home).join(".cache/cachewarm/python")
}

/// The Python of the virtualenv where `scripts/test` installs PySpark, DuckDB and moto's S3
/// server (pinned, from PyPI), outside the clone so it survives between runs; Spark's Java 17
/// comes from Debian.
pub fn spark_python() -> PathBuf {
    let home = std::env::var_os("HOME").expect("HOME is set");
    let python = Path::new(&home).join(".cache/cachewarm/spark-venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing; hint: scripts/test installs PySpark and DuckDB there",
        python.display()
    );
    python
}

/// Variables that would change a warmer run's environment profile or settings: the tests
/// remove them and set their own.
pub const WARMER_ENVIRONMENT: [&str; 8] = [
    "CACHEWARM_ENV",
    "RAILS_ENV",
    "RACK_ENV",
    "DJANGO_ENV",
    "APP_ENV",
    "CACHEWARM_CONFIG",
    "CACHEWARM_ENABLED",
    "CACHEWARM_MEMCACHED_HASHING",
];

/// The warmer, with no profile or config from the test's own environment, working in `dir`.
pub fn warmer_command<S: AsRef<std::ffi::OsStr>>(dir: &Path, args: &[S]) -> Command {
    let mut command = Command::new(bin("warmer"));
    command.args(args).current_dir(dir);
    for name in WARMER_ENVIRONMENT {
        command.env_remove(name);
    }
    command
}

/// `warmer ARGS` in `dir`, once it is known to have failed with a line that names `target`
/// and says `why`; its stdout and stderr together, for further checks.
pub fn assert_refused(dir: &Path, args: &[String], target: &str, why: &str) -> String {
    let output = warmer_command(dir, args).output().expect("run the warmer");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert_ne!(output.status.code(), Some(0), "{text}");
    assert!(
        text.lines()
            .any(|line| line.contains(target) && line.contains(why)),
        "no error naming {target} and {why}:\n{text}"
    );
    text
}

/// `output`, once it is known to have exited with `code`; else a panic with its output.
pub fn check_exit(output: Output, code: i32, what: &str) -> Output {
    if output.status.code() != Some(code) {
        panic!(
            "{what}: exited with {:?}, expected {code}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            output.status.code(),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    output
}

/// The path of one of the workspace's binaries, built by `cargo build --workspace` (which
/// `cargo test --workspace` does before running tests).
pub fn bin(name: &str) -> PathBuf {
    // The test executable lives in target/<profile>/deps/.
    let exe = std::env::current_exe().expect("current test executable");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test executable is in target/<profile>/deps");
    let path = profile_dir.join(name);
    assert!(
        path.exists(),
        "{} is missing; hint: run `cargo build --workspace --bins` first (scripts/test does)",
        path.display()
    );
    path
}

/// Runs a workspace binary with `args`; panics with its output unless it exits with `code`.
pub fn run_bin(name: &str, args: &[&str], code: i32) -> Output {
    let output = Command::new(bin(name))
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run {name}: {e}"));
    if output.status.code() != Some(code) {
        panic!(
            "{name} {} exited with {:?}, expected {code}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            args.join(" "),
            output.status.code(),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    output
}

/// Runs `command` with `input` on its stdin; its stdout, once it exited 0 (else a panic with
/// both outputs). `what` names the program in messages.
pub fn feed(mut command: Command, input: &str, what: &str) -> String {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("start {what}: {e}"));
    child
        .stdin
        .take()
        .expect("a piped stdin")
        .write_all(input.as_bytes())
        .unwrap_or_else(|e| panic!("write to {what}: {e}"));
    let output = child
        .wait_with_output()
        .unwrap_or_else(|e| panic!("wait for {what}: {e}"));
    assert!(
        output.status.success(),
        "{what} failed ({})\n--- stdout ---\n{}\n--- stderr ---\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .unwrap_or_else(|e| panic!("{what} printed other than UTF-8: {e}"))
}

/// The arguments of `warmer run` of `manifest` from `source` into each of `targets`, with run
/// directories under `runs`, and `extra` after them.
pub fn run_args<T: AsRef<str>>(
    manifest: &str,
    source: &str,
    targets: &[T],
    runs: &str,
    extra: &[&str],
) -> Vec<String> {
    let mut args: Vec<String> = [
        "run",
        "--manifest",
        manifest,
        "--source",
        source,
        "--runs-dir",
        runs,
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    for target in targets {
        args.push("--target".into());
        args.push(target.as_ref().to_owned());
    }
    args.extend(extra.iter().map(|s| (*s).to_owned()));
    args
}

/// `warmer run` of `manifest` from `source` into `target` in `dir` (runs under `dir/runs`),
/// `extra` added, expected to exit 0: its report and run directory.
pub fn warm(
    dir: &Path,
    manifest: &str,
    source: &str,
    target: &str,
    extra: &[&str],
) -> (schemas::Report, PathBuf) {
    let runs = dir.join("runs");
    let args = run_args(
        manifest,
        source,
        &[target],
        runs.to_str().expect("a UTF-8 temporary path"),
        extra,
    );
    let output = warmer_command(dir, &args)
        .output()
        .expect("start the warmer");
    report_of(&check_exit(output, 0, &format!("warmer {}", args.join(" "))).stdout)
}

/// The report whose path `warmer run` printed (`report: PATH`), and its run directory.
pub fn report_of(stdout: &[u8]) -> (schemas::Report, PathBuf) {
    let text = String::from_utf8_lossy(stdout);
    let path = text
        .lines()
        .find_map(|line| line.strip_prefix("report: "))
        .unwrap_or_else(|| panic!("no report path in output:\n{text}"));
    let path = PathBuf::from(path.trim());
    let report = serde_json::from_slice(&std::fs::read(&path).expect("read report.json"))
        .expect("a valid report");
    (
        report,
        path.parent().expect("a run directory").to_path_buf(),
    )
}

/// Runs the nightly job on `log`: `analyzer ingest LOG --out DIR/dataset --json`, then
/// `analyzer rank` under `budget` into `DIR/MANIFEST`, with `rank_args` added. Returns the
/// ingest summary and the manifest's path.
pub fn ingest_and_rank(
    dir: &Path,
    log: &Path,
    budget: &str,
    manifest: &str,
    rank_args: &[&str],
) -> (serde_json::Value, PathBuf) {
    let dataset = dir.join("dataset");
    let manifest = dir.join(manifest);
    let text = |path: &Path| path.to_str().expect("UTF-8 test paths").to_owned();
    let ingest = run_bin(
        "analyzer",
        &["ingest", &text(log), "--out", &text(&dataset), "--json"],
        0,
    );
    let summary = serde_json::from_slice(&ingest.stdout).expect("ingest --json prints JSON");
    let mut args = vec![
        "rank".to_owned(),
        "--data".to_owned(),
        text(&dataset),
        "--budget".to_owned(),
        budget.to_owned(),
        "--out".to_owned(),
        text(&manifest),
    ];
    args.extend(rank_args.iter().map(|a| (*a).to_owned()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    run_bin("analyzer", &args, 0);
    (summary, manifest)
}

/// Reads a manifest written by `analyzer rank`, plain or zstd-compressed.
pub fn read_manifest(path: &Path) -> schemas::Manifest {
    let mut bytes = std::fs::read(path).expect("read the manifest");
    if path.extension().is_some_and(|ext| ext == "zst") {
        bytes = zstd::decode_all(bytes.as_slice()).expect("decompress the manifest");
    }
    serde_json::from_slice(&bytes).expect("a valid manifest")
}

/// A small deterministic random number generator (xorshift64*), so workloads are reproducible
/// without a dependency.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A float in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Samples ranks 0..n with probability proportional to 1 / (rank + 1)^alpha.
#[derive(Debug, Clone)]
pub struct Zipf {
    cumulative: Vec<f64>,
}

impl Zipf {
    pub fn new(n: usize, alpha: f64) -> Zipf {
        let mut total = 0.0;
        let cumulative = (0..n)
            .map(|rank| {
                total += 1.0 / ((rank + 1) as f64).powf(alpha);
                total
            })
            .collect::<Vec<_>>();
        Zipf {
            cumulative: cumulative.iter().map(|c| c / total).collect(),
        }
    }

    pub fn sample(&self, rng: &mut Rng) -> usize {
        let u = rng.unit();
        self.cumulative
            .partition_point(|&c| c <= u)
            .min(self.cumulative.len() - 1)
    }
}

/// Keys shaped like a Django and Rails app's: page fragments, sessions, model caches, and one
/// in thirty with a space (valid for Redis and SQL caches, invalid for memcached).
pub fn app_keys(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| match i % 10 {
            0 => format!("views/products/{i}-20261120"),
            1 => format!(":1:django.contrib.sessions.cache{i:08x}"),
            2 if i % 30 == 2 => format!("report for user {i}"),
            _ => format!("app:v2:item:{i}"),
        })
        .collect()
}
