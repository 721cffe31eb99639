//! A Redis Sentinel setup of our own: a master, a replica of it, and one Sentinel (quorum 1)
//! watching them, each a `redis-server` on a free port.

use super::*;

/// The name the Sentinel knows the master by.
pub const MASTER_NAME: &str = "cachewarm";

/// How long the replica may take to sync, or the Sentinel to see a failover through.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(30);

/// A master, its replica and a Sentinel.
#[derive(Debug)]
pub struct RedisSentinel {
    /// The master and the replica, in the roles they started in.
    pub servers: Vec<RedisServer>,
    // Held for its drop, which stops the Sentinel.
    _sentinel: Process,
    pub sentinel_port: u16,
}

impl RedisSentinel {
    /// Starts the master, its replica (synced before this returns), and a Sentinel that
    /// knows both.
    pub fn start() -> RedisSentinel {
        let master = RedisServer::start(&[]);
        let master_port = master.port.to_string();
        let replica = RedisServer::start(&["--replicaof", "127.0.0.1", &master_port]);
        let port = free_port();
        let dir = tempfile::tempdir().expect("temp dir");
        let log = dir.path().join("sentinel.log");
        // The Sentinel rewrites its configuration file, so it gets one of its own.
        let config = dir.path().join("sentinel.conf");
        std::fs::write(
            &config,
            format!(
                "port {port}\nbind 127.0.0.1\nlogfile {}\ndir {}\n\
                 sentinel monitor {MASTER_NAME} 127.0.0.1 {master_port} 1\n\
                 sentinel down-after-milliseconds {MASTER_NAME} 2000\n\
                 sentinel failover-timeout {MASTER_NAME} 10000\n",
                log.display(),
                dir.path().display()
            ),
        )
        .expect("write sentinel.conf");
        let mut child = Command::new("redis-server")
            .arg(&config)
            .arg("--sentinel")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server --sentinel (it comes with redis-server)");
        wait_for_port(port, &mut child, &log);
        let setup = RedisSentinel {
            servers: vec![master, replica],
            _sentinel: Process {
                name: "redis-sentinel",
                child,
                dir,
                log,
            },
            sentinel_port: port,
        };
        setup.wait_until("the replica is synced and the Sentinel knows it", |setup| {
            let replicas: Vec<redis::Value> = redis::cmd("SENTINEL")
                .arg("REPLICAS")
                .arg(MASTER_NAME)
                .query(&mut setup.sentinel_connection())
                .unwrap_or_default();
            let info: String = redis::cmd("INFO")
                .arg("replication")
                .query(&mut setup.servers[1].connection())
                .unwrap_or_default();
            !replicas.is_empty() && info.contains("master_link_status:up")
        });
        setup
    }

    /// `redis+sentinel://127.0.0.1:PORT/MASTER_NAME`.
    pub fn url(&self) -> String {
        format!(
            "redis+sentinel://127.0.0.1:{}/{MASTER_NAME}",
            self.sentinel_port
        )
    }

    fn sentinel_connection(&self) -> redis::Connection {
        redis::Client::open(format!("redis://127.0.0.1:{}", self.sentinel_port))
            .and_then(|client| client.get_connection())
            .expect("connect to the test's Sentinel")
    }

    /// The port of the master the Sentinel names now.
    pub fn master_port(&self) -> u16 {
        let (_, port): (String, u16) = redis::cmd("SENTINEL")
            .arg("GET-MASTER-ADDR-BY-NAME")
            .arg(MASTER_NAME)
            .query(&mut self.sentinel_connection())
            .expect("SENTINEL GET-MASTER-ADDR-BY-NAME");
        port
    }

    /// The server the Sentinel names master now.
    pub fn master(&self) -> &RedisServer {
        let port = self.master_port();
        self.servers
            .iter()
            .find(|server| server.port == port)
            .expect("the master is one of ours")
    }

    /// `SENTINEL FAILOVER`, then waits until the Sentinel names the other server and that server
    /// says it is a master (the old master may still be on its way to being its replica).
    pub fn failover(&self) {
        let old = self.master_port();
        let _: () = redis::cmd("SENTINEL")
            .arg("FAILOVER")
            .arg(MASTER_NAME)
            .query(&mut self.sentinel_connection())
            .expect("SENTINEL FAILOVER");
        self.wait_until("the failover is through", |setup| {
            let port = setup.master_port();
            let info: String = redis::cmd("INFO")
                .arg("replication")
                .query(&mut setup.master().connection())
                .unwrap_or_default();
            port != old && info.contains("role:master")
        });
    }

    fn wait_until(&self, what: &str, done: impl Fn(&RedisSentinel) -> bool) {
        let start = Instant::now();
        while !done(self) {
            assert!(
                start.elapsed() < SETTLE_TIMEOUT,
                "not within {SETTLE_TIMEOUT:?}: {what}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}
