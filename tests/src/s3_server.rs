//! An S3-compatible object store of our own: moto's server (`moto_server`, from PyPI, in the
//! venv `scripts/test` fills), which speaks S3's HTTP API on loopback and keeps objects in
//! memory. No S3 server of Debian's or of the other registries we reach is packaged (MinIO,
//! Garage and SeaweedFS are not), and moto is the one the Python and Rust AWS SDKs test with.

use super::*;

/// The credentials the tests give both the analyzer and boto3; moto accepts any.
const ACCESS_KEY: &str = "cachewarm-test";
const SECRET_KEY: &str = "cachewarm-test-secret";
const REGION: &str = "us-east-1";

/// A `moto_server` of our own.
#[derive(Debug)]
pub struct S3Server {
    // Held for its `Drop`, which stops the server.
    _process: Process,
    pub port: u16,
}

impl S3Server {
    /// Starts a server and creates `buckets` in it.
    pub fn start(buckets: &[&str]) -> S3Server {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let log = dir.path().join("moto.log");
        let log_file = std::fs::File::create(&log).expect("create moto log");
        let python = spark_python();
        let server = python.with_file_name("moto_server");
        let mut child = Command::new(&server)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().expect("clone log handle"))
            .stderr(log_file)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "start {} ({e}); hint: scripts/test installs moto[server]",
                    server.display()
                )
            });
        wait_for_port(port, &mut child, &log);
        let server = S3Server {
            _process: Process {
                name: "moto_server",
                child,
                dir,
                log,
            },
            port,
        };
        for bucket in buckets {
            server.boto3(&format!("s3.create_bucket(Bucket={bucket:?})"));
        }
        server
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The standard AWS variables that point a client (the analyzer, polars, boto3) here.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT_URL", self.endpoint()),
            ("AWS_ALLOW_HTTP", "true".into()),
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY.into()),
            ("AWS_SECRET_ACCESS_KEY", SECRET_KEY.into()),
            ("AWS_REGION", REGION.into()),
            ("AWS_DEFAULT_REGION", REGION.into()),
        ]
    }

    /// Runs Python `statements` with `s3`, a boto3 client of this server (boto3 comes with
    /// moto): an S3 client of its own, to check what the analyzer stored. Returns stdout.
    pub fn boto3(&self, statements: &str) -> String {
        let script = format!("import boto3\ns3 = boto3.client('s3')\n{statements}\n");
        let output = Command::new(spark_python())
            .args(["-c", &script])
            .envs(self.env())
            .output()
            .expect("run boto3");
        let output = check_exit(output, 0, &format!("boto3: {statements}"));
        String::from_utf8(output.stdout).expect("boto3 prints UTF-8")
    }

    /// The keys of every object in `bucket`, sorted.
    pub fn keys(&self, bucket: &str) -> Vec<String> {
        let listing = self.boto3(&format!(
            "for page in s3.get_paginator('list_objects_v2').paginate(Bucket={bucket:?}):\n    \
             for o in page.get('Contents', []):\n        print(o['Key'])"
        ));
        let mut keys: Vec<String> = listing.lines().map(str::to_owned).collect();
        keys.sort();
        keys
    }

    /// Uploads the local file `from` as `s3://bucket/key`.
    pub fn upload(&self, from: &Path, bucket: &str, key: &str) {
        self.boto3(&format!(
            "s3.upload_file({:?}, {bucket:?}, {key:?})",
            from.to_str().expect("UTF-8 path")
        ));
    }
}
