//! A `memcached` of our own, plain or TLS only.

use super::*;

/// A `memcached` of our own.
#[derive(Debug)]
pub struct MemcachedServer {
    process: Process,
    pub port: u16,
}

impl MemcachedServer {
    /// Starts a server with `memory_mb` of item memory.
    pub fn start(memory_mb: u32) -> MemcachedServer {
        MemcachedServer::start_with(memory_mb, &[])
    }

    /// Starts a server that takes TLS only (`-Z`), with `certs`' server certificate, and
    /// demands a client certificate signed by their CA (`ssl_verify_mode=2`: required).
    pub fn start_tls(certs: &TestCerts) -> MemcachedServer {
        let options = format!(
            "ssl_chain_cert={},ssl_key={},ssl_ca_cert={},ssl_verify_mode=2",
            certs.file("server.pem"),
            certs.file("server.key"),
            certs.file("ca.pem")
        );
        MemcachedServer::start_with(64, &["-Z", "-o", &options])
    }

    fn start_with(memory_mb: u32, extra: &[&str]) -> MemcachedServer {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let log = dir.path().join("memcached.log");
        let log_file = std::fs::File::create(&log).expect("create memcached log");
        let mut command = Command::new("memcached");
        command
            .args(["-l", "127.0.0.1", "-p", &port.to_string(), "-U", "0"])
            .args(["-m", &memory_mb.to_string(), "-v"])
            .args(extra);
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
