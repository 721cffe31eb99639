//! The end-to-end test harness: real `redis-server` (alone or as a 3-node Redis Cluster),
//! `memcached` and PostgreSQL processes on free loopback ports in temporary directories,
//! stopped on drop, with their logs printed when a test fails; and helpers to run the
//! project's binaries.
//!
//! The servers come from PATH, PostgreSQL from Debian's `/usr/lib/postgresql/VERSION/bin`
//! (`scripts/test` installs them when missing).

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

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

/// A `redis-server` of our own.
#[derive(Debug)]
pub struct RedisServer {
    process: Process,
    pub port: u16,
    extra: Vec<String>,
}

fn spawn_redis(port: u16, dir: &Path, log: &Path, extra: &[String]) -> Child {
    let mut child = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no"])
        .arg("--dir")
        .arg(dir)
        .arg("--logfile")
        .arg(log)
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start redis-server (is it installed? scripts/test installs it)");
    wait_for_port(port, &mut child, log);
    child
}

impl RedisServer {
    /// Starts a server with persistence off; `extra` are further `--name value` arguments.
    pub fn start(extra: &[&str]) -> RedisServer {
        RedisServer::start_on(free_port(), extra)
    }

    fn start_on(port: u16, extra: &[&str]) -> RedisServer {
        let dir = tempfile::tempdir().expect("temp dir");
        let log = dir.path().join("redis.log");
        let extra: Vec<String> = extra.iter().map(|a| (*a).to_owned()).collect();
        let child = spawn_redis(port, dir.path(), &log, &extra);
        RedisServer {
            process: Process {
                name: "redis-server",
                child,
                dir,
                log,
            },
            port,
            extra,
        }
    }

    /// Kills the server and starts it again, empty, on the same port (a restart, as a
    /// deploy or a crash makes one).
    pub fn restart(&mut self) {
        self.process.stop();
        let process = &mut self.process;
        process.child = spawn_redis(self.port, process.dir.path(), &process.log, &self.extra);
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// A plain connection for the test's own reads and writes.
    pub fn connection(&self) -> redis::Connection {
        redis::Client::open(self.url())
            .and_then(|client| client.get_connection())
            .expect("connect to the test's redis-server")
    }

    /// Kills the server (to test how a run copes with a store that goes away).
    pub fn stop(&mut self) {
        self.process.stop();
    }
}

/// How long a new cluster may take until every node reports `cluster_state:ok`.
const CLUSTER_TIMEOUT: Duration = Duration::from_secs(30);

/// A Redis Cluster of our own: three primaries, no replicas, the 16384 slots split between
/// them by `redis-cli --cluster create`.
#[derive(Debug)]
pub struct RedisCluster {
    pub nodes: Vec<RedisServer>,
}

impl RedisCluster {
    /// Starts three cluster-enabled servers (`extra` goes to each) and joins them.
    pub fn start(extra: &[&str]) -> RedisCluster {
        let mut args = vec!["--cluster-enabled", "yes"];
        // Relative to the node's own --dir, so each node has its own.
        args.extend(["--cluster-config-file", "nodes.conf"]);
        args.extend(extra);
        let nodes: Vec<RedisServer> = cluster_ports(3)
            .into_iter()
            .map(|port| RedisServer::start_on(port, &args))
            .collect();
        let output = Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(nodes.iter().map(|node| format!("127.0.0.1:{}", node.port)))
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .expect("run redis-cli (it comes with redis-server)");
        assert!(
            output.status.success(),
            "redis-cli --cluster create failed:\n{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        let cluster = RedisCluster { nodes };
        let start = Instant::now();
        // `create` returns when the slots are assigned; each node says ok once it has heard
        // from the others that every slot is served.
        while !cluster.nodes.iter().all(|node| {
            let info: String = redis::cmd("CLUSTER")
                .arg("INFO")
                .query(&mut node.connection())
                .expect("CLUSTER INFO");
            info.contains("cluster_state:ok")
        }) {
            assert!(
                start.elapsed() < CLUSTER_TIMEOUT,
                "the cluster was not ok within {CLUSTER_TIMEOUT:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        cluster
    }

    /// `redis+cluster://` with every node as a seed.
    pub fn url(&self) -> String {
        let nodes: Vec<String> = self
            .nodes
            .iter()
            .map(|node| format!("127.0.0.1:{}", node.port))
            .collect();
        format!("redis+cluster://{}", nodes.join(","))
    }

    /// A cluster connection for the test's own reads and writes (the crate follows the slots).
    pub fn connection(&self) -> redis::cluster::ClusterConnection {
        redis::cluster::ClusterClient::new(self.nodes.iter().map(RedisServer::url))
            .and_then(|client| client.get_connection())
            .expect("connect to the test's cluster")
    }
}

/// `n` ports that were free a moment ago, each with its cluster bus port (port + 10000) free
/// as well.
fn cluster_ports(n: usize) -> Vec<u16> {
    let mut ports = Vec::new();
    while ports.len() < n {
        let port = free_port();
        let bus_free = port
            .checked_add(10_000)
            .is_some_and(|bus| TcpListener::bind(("127.0.0.1", bus)).is_ok());
        // No node's port may be another's bus port.
        let clash = ports
            .iter()
            .any(|&other| other == port || u32::from(other).abs_diff(u32::from(port)) == 10_000);
        if bus_free && !clash {
            ports.push(port);
        }
    }
    ports
}

/// A `memcached` of our own.
#[derive(Debug)]
pub struct MemcachedServer {
    process: Process,
    pub port: u16,
}

impl MemcachedServer {
    /// Starts a server with `memory_mb` of item memory.
    pub fn start(memory_mb: u32) -> MemcachedServer {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let log = dir.path().join("memcached.log");
        let log_file = std::fs::File::create(&log).expect("create memcached log");
        let mut command = Command::new("memcached");
        command
            .args(["-l", "127.0.0.1", "-p", &port.to_string(), "-U", "0"])
            .args(["-m", &memory_mb.to_string(), "-v"]);
        // memcached refuses to run as root without -u.
        if is_root() {
            command.args(["-u", "root"]);
        }
        let mut child = command
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().expect("clone log handle"))
            .stderr(log_file)
            .spawn()
            .expect("start memcached (is it installed? scripts/test installs it)");
        wait_for_port(port, &mut child, &log);
        MemcachedServer {
            process: Process {
                name: "memcached",
                child,
                dir,
                log,
            },
            port,
        }
    }

    pub fn url(&self) -> String {
        format!("memcached://127.0.0.1:{}", self.port)
    }

    /// `127.0.0.1:PORT`, one entry of a server list.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Kills the server (to test how a run copes with a store that goes away).
    pub fn stop(&mut self) {
        self.process.stop();
    }

    /// One of the server's `stats` counters.
    pub fn stat(&self, name: &str) -> u64 {
        let client = memcache::Client::connect(format!("memcache://127.0.0.1:{}", self.port))
            .expect("connect to the test's memcached");
        let stats = client.stats().expect("memcached stats");
        stats[0].1[name].parse().expect("a numeric stat")
    }

    /// A meta-protocol client for the test's own reads.
    pub fn client(&self) -> memcache::exp::MetaClient {
        memcache::exp::MetaClient::connect(format!("127.0.0.1:{}", self.port))
            .expect("connect to the test's memcached")
    }
}

/// A PostgreSQL server of our own: a new cluster (`initdb`) in a temporary directory, its
/// superuser's password in a file there (SCRAM on TCP, as a production server asks), with
/// durability off (a test's data need not survive a crash).
#[derive(Debug)]
pub struct PostgresServer {
    process: Process,
    pub port: u16,
    /// The superuser's password, and the file that holds it.
    pub password: String,
    pub password_file: PathBuf,
}

/// The user the tests connect as: the cluster's superuser.
pub const POSTGRES_USER: &str = "postgres";

impl PostgresServer {
    /// Runs `initdb` and starts `postgres`; as root, both run as `nobody` (they refuse root),
    /// in a directory that user owns.
    pub fn start() -> PostgresServer {
        let bin = postgres_bin();
        let dir = tempfile::tempdir().expect("temp dir");
        let data = dir.path().join("data");
        let log = dir.path().join("postgres.log");
        let log_file = std::fs::File::create(&log).expect("create the postgres log");
        let password = format!(
            "pw{:x}",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .as_nanos()
        );
        let password_file = dir.path().join("password");
        std::fs::write(&password_file, format!("{password}\n")).expect("write the password");
        let unprivileged = is_root().then(|| {
            let status = Command::new("chown")
                .args(["-R", "nobody:nogroup"])
                .arg(dir.path())
                .status()
                .expect("run chown");
            assert!(status.success(), "chown of the PostgreSQL directory failed");
            let id = |flag: &str| -> u32 {
                let out = Command::new("id")
                    .args([flag, "nobody"])
                    .output()
                    .expect("run id");
                String::from_utf8_lossy(&out.stdout)
                    .trim()
                    .parse()
                    .expect("a numeric id")
            };
            (id("-u"), id("-g"))
        });
        let command = |program: &str| {
            let mut command = Command::new(bin.join(program));
            // As `runuser -u nobody` would, but the program is our child itself (`runuser`
            // forks and waits), so that dropping the server stops the postmaster.
            if let Some((uid, gid)) = unprivileged {
                use std::os::unix::process::CommandExt;
                command.uid(uid).gid(gid);
            }
            command
                .stdin(Stdio::null())
                .stdout(log_file.try_clone().expect("clone log handle"))
                .stderr(log_file.try_clone().expect("clone log handle"));
            command
        };
        let status = command("initdb")
            .arg("-D")
            .arg(&data)
            .args(["-U", POSTGRES_USER, "--auth=scram-sha-256", "--no-sync"])
            .arg(format!("--pwfile={}", password_file.display()))
            .args(["-E", "UTF8", "--locale=C"])
            .status()
            .expect("run initdb (is postgresql installed? scripts/test installs it)");
        assert!(
            status.success(),
            "initdb failed; log:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        let port = free_port();
        let mut child = command("postgres")
            .arg("-D")
            .arg(&data)
            .args(["-p", &port.to_string(), "-c", "listen_addresses=127.0.0.1"])
            .arg("-c")
            .arg(format!("unix_socket_directories={}", dir.path().display()))
            .args(["-c", "fsync=off", "-c", "synchronous_commit=off"])
            .args(["-c", "full_page_writes=off"])
            .spawn()
            .expect("start postgres");
        wait_for_port(port, &mut child, &log);
        let server = PostgresServer {
            process: Process {
                name: "postgres",
                child,
                dir,
                log,
            },
            port,
            password,
            password_file,
        };
        // The port opens before the server takes queries ("the database system is starting
        // up"): wait for a first query.
        let start = Instant::now();
        while let Err(error) = server.try_client() {
            assert!(
                start.elapsed() < START_TIMEOUT,
                "postgres took no query within {START_TIMEOUT:?}: {error}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        server
    }

    /// `postgres://postgres@127.0.0.1:PORT/postgres?table=TABLE&password_file=PATH`, for the
    /// warmer: the password stays out of the URL.
    pub fn url(&self, table: &str) -> String {
        format!(
            "postgres://{POSTGRES_USER}@127.0.0.1:{}/postgres?table={table}&password_file={}",
            self.port,
            self.password_file.display()
        )
    }

    fn try_client(&self) -> Result<postgres::Client, postgres::Error> {
        let mut config = postgres::Config::new();
        config
            .host("127.0.0.1")
            .port(self.port)
            .user(POSTGRES_USER)
            .password(&self.password)
            .dbname("postgres");
        config.connect(postgres::NoTls)
    }

    /// A plain connection for the test's own reads and writes.
    pub fn client(&self) -> postgres::Client {
        self.try_client().expect("connect to the test's postgres")
    }

    /// Kills the server (to test how a run copes with a store that goes away).
    pub fn stop(&mut self) {
        self.process.stop();
    }
}

/// The newest PostgreSQL under Debian's `/usr/lib/postgresql/VERSION/bin`.
fn postgres_bin() -> PathBuf {
    let root = Path::new("/usr/lib/postgresql");
    let newest = std::fs::read_dir(root)
        .ok()
        .into_iter()
        .flatten()
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let version: u32 = entry.file_name().to_str()?.parse().ok()?;
            entry
                .path()
                .join("bin/postgres")
                .exists()
                .then_some((version, entry.path().join("bin")))
        })
        .max_by_key(|(version, _)| *version);
    match newest {
        Some((_, bin)) => bin,
        None => panic!(
            "no PostgreSQL under {}; hint: apt-get install postgresql (scripts/test does)",
            root.display()
        ),
    }
}

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
