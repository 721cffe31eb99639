//! A Redis Sentinel setup of our own: a master, a replica of it, and one Sentinel (quorum 1)
//! watching them, each a `redis-server` on a free port; plain, or TLS only everywhere with
//! passwords of the master's and of the Sentinel's own.

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
    /// The certificates of a TLS setup, for the test's own connections.
    tls: Option<redis::TlsCertificates>,
    master_password: Option<String>,
    sentinel_password: Option<String>,
}

/// How a Sentinel setup is secured; the default is not at all.
#[derive(Debug, Default, Clone, Copy)]
pub struct SentinelSecurity<'a> {
    /// TLS only, with a client certificate, for every client, the replication and the
    /// Sentinel's own links: `certs`' server certificate everywhere.
    pub certs: Option<&'a TestCerts>,
    /// The master's and the replica's `requirepass` (and `masterauth`, the Sentinel's
    /// `auth-pass`).
    pub master_password: Option<&'a str>,
    /// The Sentinel's own `requirepass`.
    pub sentinel_password: Option<&'a str>,
}

impl RedisSentinel {
    /// Starts the master, its replica (synced before this returns), and a Sentinel that
    /// knows both.
    pub fn start() -> RedisSentinel {
        RedisSentinel::start_with(SentinelSecurity::default())
    }

    /// As [`start`](Self::start), secured as `security` says.
    pub fn start_with(security: SentinelSecurity<'_>) -> RedisSentinel {
        let server = |replica_of: Option<u16>| {
            let port = free_port();
            let mut args = Vec::new();
            if let Some(certs) = security.certs {
                args.extend(crate::redis_server::tls_args(certs, port));
                args.extend(["--tls-replication".to_owned(), "yes".to_owned()]);
            }
            if let Some(password) = security.master_password {
                // `masterauth` too: after a failover the master is a replica.
                args.extend(["--requirepass".to_owned(), password.to_owned()]);
                args.extend(["--masterauth".to_owned(), password.to_owned()]);
            }
            if let Some(master) = replica_of {
                args.extend(["--replicaof".to_owned(), "127.0.0.1".to_owned()]);
                args.push(master.to_string());
            }
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            RedisServer::start_on(port, &args)
        };
        let master = server(None);
        let master_port = master.port.to_string();
        let replica = server(Some(master.port));
        let port = free_port();
        let dir = tempfile::tempdir().expect("temp dir");
        let log = dir.path().join("sentinel.log");
        let mut secured = String::new();
        match security.certs {
            Some(certs) => secured.push_str(&format!(
                "port 0\ntls-port {port}\ntls-replication yes\ntls-auth-clients yes\n\
                 tls-cert-file {}\ntls-key-file {}\ntls-ca-cert-file {}\n",
                certs.file("server.pem"),
                certs.file("server.key"),
                certs.file("ca.pem")
            )),
            None => secured.push_str(&format!("port {port}\n")),
        }
        if let Some(password) = security.sentinel_password {
            secured.push_str(&format!("requirepass {password}\n"));
        }
        let auth_pass = security
            .master_password
            .map(|password| format!("sentinel auth-pass {MASTER_NAME} {password}\n"))
            .unwrap_or_default();
        // The Sentinel rewrites its configuration file, so it gets one of its own.
        let config = dir.path().join("sentinel.conf");
        std::fs::write(
            &config,
            format!(
                "{secured}bind 127.0.0.1\nlogfile {}\ndir {}\n\
                 sentinel monitor {MASTER_NAME} 127.0.0.1 {master_port} 1\n\
                 {auth_pass}\
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
            tls: security.certs.map(|certs| {
                let read = |name: &str| std::fs::read(certs.path(name)).expect("read a PEM file");
                redis::TlsCertificates {
                    client_tls: Some(redis::ClientTlsConfig {
                        client_cert: read("client.pem"),
                        client_key: read("client.key"),
                    }),
                    root_cert: Some(read("ca.pem")),
                }
            }),
            master_password: security.master_password.map(str::to_owned),
            sentinel_password: security.sentinel_password.map(str::to_owned),
        };
        setup.wait_until("the replica is synced and the Sentinel knows it", |setup| {
            let replicas: Vec<redis::Value> = redis::cmd("SENTINEL")
                .arg("REPLICAS")
                .arg(MASTER_NAME)
                .query(&mut setup.sentinel_connection())
                .unwrap_or_default();
            let info: String = redis::cmd("INFO")
                .arg("replication")
                .query(&mut setup.connection(&setup.servers[1]))
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
        self.connect(self.sentinel_port, self.sentinel_password.as_deref())
    }

    /// A connection to `server` (the master or the replica), for the test's own reads.
    pub fn connection(&self, server: &RedisServer) -> redis::Connection {
        self.connect(server.port, self.master_password.as_deref())
    }

    /// A connection to `port` with `password`, over TLS in a TLS setup.
    fn connect(&self, port: u16, password: Option<&str>) -> redis::Connection {
        let auth = password.map(|p| format!(":{p}@")).unwrap_or_default();
        let client = match &self.tls {
            Some(tls) => redis::Client::build_with_tls(
                format!("rediss://{auth}127.0.0.1:{port}"),
                tls.clone(),
            ),
            None => redis::Client::open(format!("redis://{auth}127.0.0.1:{port}")),
        };
        client
            .and_then(|client| client.get_connection())
            .expect("connect to the test's Sentinel setup")
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
                .query(&mut setup.connection(setup.master()))
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
