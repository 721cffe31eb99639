//! Certificates made by the test with the `openssl` command (Debian's; `scripts/test` installs
//! it): a CA, a server certificate it signs for 127.0.0.1 and localhost, a client certificate it
//! signs, and a second CA that signed none of them (the wrong one).

use std::path::{Path, PathBuf};
use std::process::Command;

/// The PEM files of a test PKI, in a temporary directory removed on drop.
#[derive(Debug)]
pub struct TestCerts {
    dir: tempfile::TempDir,
}

impl TestCerts {
    /// Makes a CA, a server and a client certificate signed by it, and an unrelated CA.
    pub fn new() -> TestCerts {
        let dir = tempfile::tempdir().expect("temp dir");
        let certs = TestCerts { dir };
        certs.make_ca("ca", "cachewarm test CA");
        certs.make_ca("wrong-ca", "cachewarm unrelated CA");
        certs.sign(
            "server",
            "localhost",
            "subjectAltName=IP:127.0.0.1,DNS:localhost",
        );
        certs.sign("client", "cachewarm warmer", "extendedKeyUsage=clientAuth");
        certs
    }

    /// The file `name` (`ca.pem`, `server.key`…).
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The file `name`, as text for a URL or an argument.
    pub fn file(&self, name: &str) -> String {
        self.path(name)
            .to_str()
            .expect("a UTF-8 temporary path")
            .to_owned()
    }

    fn make_ca(&self, name: &str, subject: &str) {
        openssl(
            self.dir.path(),
            &[
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "2",
                "-keyout",
                &format!("{name}.key"),
                "-out",
                &format!("{name}.pem"),
                "-subj",
                &format!("/CN={subject}"),
            ],
        );
    }

    /// A key and a certificate `name` for `subject`, signed by `ca`, with `extension`.
    fn sign(&self, name: &str, subject: &str, extension: &str) {
        let dir = self.dir.path();
        openssl(
            dir,
            &[
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                &format!("{name}.key"),
                "-out",
                &format!("{name}.csr"),
                "-subj",
                &format!("/CN={subject}"),
            ],
        );
        std::fs::write(dir.join(format!("{name}.ext")), format!("{extension}\n"))
            .expect("write the extension file");
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                &format!("{name}.csr"),
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "2",
                "-out",
                &format!("{name}.pem"),
                "-extfile",
                &format!("{name}.ext"),
            ],
        );
    }
}

impl Default for TestCerts {
    fn default() -> Self {
        TestCerts::new()
    }
}

fn openssl(dir: &Path, args: &[&str]) {
    let output = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run openssl (scripts/test installs it)");
    assert!(
        output.status.success(),
        "openssl {} failed:\n{}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
}
