//! A `redis-server` of our own, alone or as a 3-node Redis Cluster, plain or TLS only.

use super::*;

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

    /// Starts a server that takes TLS only (`--port 0`), with `certs`' server certificate, and
    /// demands a client certificate signed by their CA (`--tls-auth-clients yes`).
    pub fn start_tls(certs: &TestCerts) -> RedisServer {
        let port = free_port();
        let args = tls_args(certs, port);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        RedisServer::start_on(port, &args)
    }

    /// `redis-cli` over TLS to a [`start_tls`](Self::start_tls) server, with `certs`' CA and
    /// client certificate, `--no-raw` off (values print as stored).
    pub fn cli_tls(&self, certs: &TestCerts) -> Command {
        let mut command = Command::new("redis-cli");
        command
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(tls_cli_args(certs));
        command
    }

    pub(crate) fn start_on(port: u16, extra: &[&str]) -> RedisServer {
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

/// `redis-cli`'s arguments for TLS with `certs`' CA and client certificate.
fn tls_cli_args(certs: &TestCerts) -> Vec<String> {
    vec![
        "--tls".to_owned(),
        "--cacert".to_owned(),
        certs.file("ca.pem"),
        "--cert".to_owned(),
        certs.file("client.pem"),
        "--key".to_owned(),
        certs.file("client.key"),
    ]
}

/// The arguments of a server that takes TLS only, on `port`, with `certs`' server certificate,
/// and demands a client certificate signed by their CA.
pub(crate) fn tls_args(certs: &TestCerts, port: u16) -> Vec<String> {
    let files = [
        ("--tls-cert-file", "server.pem"),
        ("--tls-key-file", "server.key"),
        ("--tls-ca-cert-file", "ca.pem"),
    ];
    let mut args = vec!["--port".to_owned(), "0".to_owned()];
    args.extend(["--tls-port".to_owned(), port.to_string()]);
    args.extend(["--tls-auth-clients".to_owned(), "yes".to_owned()]);
    for (flag, file) in files {
        args.extend([flag.to_owned(), certs.file(file)]);
    }
    args
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
        RedisCluster::start_with(extra, None)
    }

    /// A cluster whose nodes take TLS only, as [`RedisServer::start_tls`], and speak TLS to
    /// each other on the cluster bus (`--tls-cluster yes`, with the same certificates).
    pub fn start_tls(certs: &TestCerts) -> RedisCluster {
        RedisCluster::start_with(&[], Some(certs))
    }

    fn start_with(extra: &[&str], certs: Option<&TestCerts>) -> RedisCluster {
        let mut args = vec!["--cluster-enabled", "yes"];
        // Relative to the node's own --dir, so each node has its own.
        args.extend(["--cluster-config-file", "nodes.conf"]);
        args.extend(extra);
        let nodes: Vec<RedisServer> = cluster_ports(3)
            .into_iter()
            .map(|port| match certs {
                Some(certs) => {
                    let mut tls = tls_args(certs, port);
                    tls.extend(["--tls-cluster".to_owned(), "yes".to_owned()]);
                    let mut args = args.clone();
                    args.extend(tls.iter().map(String::as_str));
                    RedisServer::start_on(port, &args)
                }
                None => RedisServer::start_on(port, &args),
            })
            .collect();
        let mut create = Command::new("redis-cli");
        if let Some(certs) = certs {
            create.args(tls_cli_args(certs));
        }
        let output = create
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
            let info: String = match certs {
                Some(certs) => feed(node.cli_tls(certs), "CLUSTER INFO\n", "CLUSTER INFO"),
                None => redis::cmd("CLUSTER")
                    .arg("INFO")
                    .query(&mut node.connection())
                    .expect("CLUSTER INFO"),
            };
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
