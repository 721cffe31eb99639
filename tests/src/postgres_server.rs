//! A PostgreSQL server of our own, from Debian's `/usr/lib/postgresql/VERSION/bin`, plain or
//! taking TCP connections over TLS only.

use super::*;

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
    /// Where the server's Unix socket is: the test's own client connects there, so that it
    /// reads a TLS-only server too.
    socket_dir: PathBuf,
}

/// The user the tests connect as: the cluster's superuser.
pub const POSTGRES_USER: &str = "postgres";

impl PostgresServer {
    /// Runs `initdb` and starts `postgres`; as root, both run as `nobody` (they refuse root),
    /// in a directory that user owns.
    pub fn start() -> PostgresServer {
        PostgresServer::start_with(None)
    }

    /// A server whose TCP connections (on 127.0.0.1 and 127.0.0.2) must be TLS with a client
    /// certificate signed by `certs`' CA (`hostssl … clientcert=verify-ca`, no `host` line),
    /// its own certificate `certs`' server one (made out to 127.0.0.1 and localhost only).
    pub fn start_tls(certs: &TestCerts) -> PostgresServer {
        PostgresServer::start_with(Some(certs))
    }

    fn start_with(certs: Option<&TestCerts>) -> PostgresServer {
        let bin = postgres_bin();
        let dir = tempfile::tempdir().expect("temp dir");
        // The server reads its certificate and key as `nobody`, and takes a key only when no
        // one else may read it: copies of its own, made before the directory changes hands.
        if let Some(certs) = certs {
            for file in ["server.pem", "server.key", "ca.pem"] {
                let copy = dir.path().join(file);
                std::fs::copy(certs.path(file), &copy).expect("copy a certificate file");
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o600))
                    .expect("chmod a certificate file");
            }
        }
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
        let mut postgres = command("postgres");
        postgres
            .arg("-D")
            .arg(&data)
            .args(["-p", &port.to_string()])
            .arg("-c")
            .arg(format!("unix_socket_directories={}", dir.path().display()))
            .args(["-c", "fsync=off", "-c", "synchronous_commit=off"])
            .args(["-c", "full_page_writes=off"]);
        if certs.is_some() {
            // TCP only over TLS, with a client certificate; the Unix socket (the test's own
            // client) with the password alone.
            std::fs::write(
                data.join("pg_hba.conf"),
                "local all all scram-sha-256\n\
                 hostssl all all 127.0.0.0/8 scram-sha-256 clientcert=verify-ca\n",
            )
            .expect("write pg_hba.conf");
            let file = |name: &str| dir.path().join(name).display().to_string();
            postgres
                .args(["-c", "listen_addresses=127.0.0.1,127.0.0.2", "-c", "ssl=on"])
                .args(["-c", &format!("ssl_cert_file={}", file("server.pem"))])
                .args(["-c", &format!("ssl_key_file={}", file("server.key"))])
                .args(["-c", &format!("ssl_ca_file={}", file("ca.pem"))]);
        } else {
            postgres.args(["-c", "listen_addresses=127.0.0.1"]);
        }
        let mut child = postgres.spawn().expect("start postgres");
        wait_for_port(port, &mut child, &log);
        let socket_dir = dir.path().to_owned();
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
            socket_dir,
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
            .host_path(&self.socket_dir)
            .port(self.port)
            .user(POSTGRES_USER)
            .password(&self.password)
            .dbname("postgres");
        config.connect(postgres::NoTls)
    }

    /// `psql` (libpq, Django's client underneath) to the server over TLS as libpq's
    /// `sslmode=verify-full` checks it, with `certs`' CA and client certificate; the password
    /// in its environment.
    pub fn psql_tls(&self, certs: &TestCerts) -> Command {
        let mut command = Command::new(postgres_bin().join("psql"));
        command
            .arg(format!(
                "host=127.0.0.1 port={} user={POSTGRES_USER} dbname=postgres \
                 sslmode=verify-full sslrootcert={} sslcert={} sslkey={}",
                self.port,
                certs.file("ca.pem"),
                certs.file("client.pem"),
                certs.file("client.key")
            ))
            .args(["--no-psqlrc", "-At", "-v", "ON_ERROR_STOP=1"])
            .env("PGPASSWORD", &self.password);
        command
    }

    /// A connection (on the server's Unix socket) for the test's own reads and writes.
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
