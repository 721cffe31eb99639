//! The TLS options a store URL takes after `?`, the same for every store that speaks TLS:
//! `ca=FILE` (the CA certificates, PEM, that sign the server's certificate, instead of the
//! system's roots), `cert=FILE&key=FILE` (a client certificate and its key, PEM, for servers
//! that demand one) and `insecure=true` (no check of the server's certificate at all; logged as
//! a warning on every connect).
//!
//! Without `ca`, servers are checked against the system's roots, read by rustls-native-certs
//! (the redis crate's `tls-rustls` default) rather than webpki-roots' copy of Mozilla's list:
//! the operator's trust store is what the host trusts, a private CA added to it included, and it
//! is updated with the system rather than with a rebuild of the warmer.
//!
//! PostgreSQL takes the same files under libpq's names (`sslrootcert`, `sslcert`, `sslkey`) and
//! says by its `sslmode` how much of the server's certificate is checked ([`ServerCheck`]).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use percent_encoding::percent_decode_str;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::verify_server_cert_signed_by_trust_anchor;
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::ParsedCertificate;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

/// A store URL's TLS options.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsOptions {
    pub ca: Option<PathBuf>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    pub insecure: bool,
}

/// The query parameters [`TlsOptions`] takes, for messages.
pub const TLS_OPTIONS: &str = "`ca`, `cert`, `key`, `insecure`";

impl TlsOptions {
    /// Takes the query pair `name=value` when it is a TLS option (true), else leaves it (false).
    pub fn take(&mut self, name: &str, value: &str) -> Result<bool, String> {
        let path = || {
            let path = percent_decode_str(value).decode_utf8_lossy();
            if path.is_empty() {
                Err(format!("`{name}` needs a file: `{name}=FILE`"))
            } else {
                Ok(Some(PathBuf::from(path.as_ref())))
            }
        };
        match name {
            "ca" => self.ca = path()?,
            "cert" => self.cert = path()?,
            "key" => self.key = path()?,
            "insecure" => {
                self.insecure = match value {
                    "true" | "1" | "yes" => true,
                    "false" | "0" | "no" => false,
                    _ => return Err(format!("`insecure` is true or false, not `{value}`")),
                }
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// Refuses a client certificate without its key, or a key without its certificate.
    pub fn check(&self) -> Result<(), String> {
        match (&self.cert, &self.key) {
            (Some(_), None) | (None, Some(_)) => {
                Err("a client certificate needs both `cert=FILE` and `key=FILE`".into())
            }
            _ => Ok(()),
        }
    }

    /// Whether any option is set (a plain-text URL with them is refused).
    pub fn is_set(&self) -> bool {
        *self != TlsOptions::default()
    }

    /// The files, read, in the redis crate's form; none when neither `ca` nor `cert` is set
    /// (the system's roots, no client certificate).
    pub fn redis_certificates(&self) -> Result<Option<redis::TlsCertificates>, String> {
        if self.ca.is_none() && self.cert.is_none() {
            return Ok(None);
        }
        let client_tls = match (&self.cert, &self.key) {
            (Some(cert), Some(key)) => Some(redis::ClientTlsConfig {
                client_cert: read(cert, "client certificate (cert)")?,
                client_key: read(key, "client key (key)")?,
            }),
            _ => None,
        };
        let root_cert = match &self.ca {
            Some(ca) => Some(read(ca, "CA certificate (ca)")?),
            None => None,
        };
        Ok(Some(redis::TlsCertificates {
            client_tls,
            root_cert,
        }))
    }

    /// Logs, once per connect, that the server's certificate goes unchecked.
    pub fn warn_if_insecure(&self, url: &str) {
        if self.insecure {
            warn_unverified(url, "?insecure=true");
        }
    }
}

/// How much of a server's certificate a connection checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerCheck {
    /// Signed by a trusted root, and made out to the host dialed: the default everywhere.
    Full,
    /// Signed by a trusted root, for any host (PostgreSQL's `sslmode=verify-ca`).
    Chain,
    /// Nothing (`?insecure=true`; PostgreSQL's `prefer` and `require` without a CA).
    Nothing,
}

impl TlsOptions {
    /// A rustls client configuration for the stores whose socket we own (memcached): the same
    /// roots, client certificate and `insecure` as the redis crate makes of these options.
    pub fn rustls_config(&self) -> Result<Arc<ClientConfig>, String> {
        let check = if self.insecure {
            ServerCheck::Nothing
        } else {
            ServerCheck::Full
        };
        let mut config = self.client_config(check)?;
        // memcached (OpenSSL, verifying clients without a session id context) answers a
        // resumed session with an internal-error alert; every connection makes a full
        // handshake instead, which costs a round trip per connection, not per call.
        config.resumption = rustls::client::Resumption::disabled();
        Ok(Arc::new(config))
    }

    /// A rustls client configuration with these options' roots and client certificate, that
    /// checks the server's certificate as `check` says.
    pub fn client_config(&self, check: ServerCheck) -> Result<ClientConfig, String> {
        install_crypto_provider();
        let builder = ClientConfig::builder();
        let builder = match check {
            ServerCheck::Full => builder.with_root_certificates(self.roots()?),
            ServerCheck::Chain => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(Lenient {
                    chain_to: Some(self.roots()?),
                    provider: provider(),
                })),
            ServerCheck::Nothing => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(Lenient {
                    chain_to: None,
                    provider: provider(),
                })),
        };
        match (&self.cert, &self.key) {
            (Some(cert_path), Some(key_path)) => {
                let chain =
                    CertificateDer::pem_slice_iter(&read(cert_path, "client certificate (cert)")?)
                        .collect::<Result<Vec<_>, _>>()
                        .map_err(|e| pem_error(cert_path, &e))?;
                let key = PrivateKeyDer::from_pem_slice(&read(key_path, "client key (key)")?)
                    .map_err(|e| pem_error(key_path, &e))?;
                builder
                    .with_client_auth_cert(chain, key)
                    .map_err(|e| format!("the client certificate and key do not go together: {e}"))
            }
            _ => Ok(builder.with_no_client_auth()),
        }
    }

    /// The CA certificates of `ca`, else the system's.
    fn roots(&self) -> Result<RootCertStore, String> {
        let mut roots = RootCertStore::empty();
        match &self.ca {
            Some(ca) => {
                for cert in CertificateDer::pem_slice_iter(&read(ca, "CA certificate (ca)")?) {
                    let cert = cert.map_err(|e| pem_error(ca, &e))?;
                    roots.add(cert).map_err(|e| pem_error(ca, &e))?;
                }
            }
            None => {
                let found = rustls_native_certs::load_native_certs();
                if let Some(error) = found.errors.first().filter(|_| found.certs.is_empty()) {
                    return Err(format!("cannot read the system's CA certificates: {error}"));
                }
                roots.add_parsable_certificates(found.certs);
            }
        }
        Ok(roots)
    }
}

fn pem_error(path: &Path, error: &dyn std::fmt::Display) -> String {
    format!(
        "{} is no PEM file of the kind expected: {error}",
        path.display()
    )
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The checks rustls has no verifier of its own for: none at all (`?insecure=true`: every
/// server certificate accepted, the one its documentation describes), and PostgreSQL's
/// `verify-ca` (signed by a trusted root, whatever host it names). Either way the handshake's
/// signatures are still checked, so the session is encrypted, to whoever answered.
#[derive(Debug)]
struct Lenient {
    /// The roots the certificate must chain to; none: anything goes.
    chain_to: Option<RootCertStore>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for Lenient {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if let Some(roots) = &self.chain_to {
            verify_server_cert_signed_by_trust_anchor(
                &ParsedCertificate::try_from(end_entity)?,
                roots,
                intermediates,
                now,
                self.provider.signature_verification_algorithms.all,
            )?;
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// Logs, once per connect, that the server's certificate of `url` goes unchecked, because of
/// `option`.
pub fn warn_unverified(url: &str, option: &str) {
    tracing::warn!(
        target_url = url,
        "TLS without certificate verification ({option}): anyone on the path can read and \
         change what the warmer sends"
    );
}

/// Whether `error` or one of its causes is rustls refusing the handshake (a certificate that
/// fails verification, a client certificate the server wants): trying again will not help.
pub fn is_tls_refusal(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(error);
    while let Some(error) = cause {
        if error.is::<rustls::Error>() {
            return true;
        }
        // An io::Error's `source` skips the error it wraps (tokio-rustls wraps rustls's).
        cause = match error.downcast_ref::<std::io::Error>() {
            Some(io) => io.get_ref().map(|inner| inner as _),
            None => error.source(),
        };
    }
    false
}

/// Makes ring rustls's process-wide provider. The redis crate's rustls enables none and builds
/// its configuration with the process default; installing is idempotent (a second call
/// returns the provider already there, which is fine).
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

fn read(path: &Path, what: &str) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("cannot read the {what} file {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The options are recognised by name, paths percent-decoded; anything else is left to the
    /// store's own parser, and half a client certificate is refused.
    #[test]
    fn takes_tls_options() {
        let mut tls = TlsOptions::default();
        assert!(tls.take("ca", "/etc/ssl/my%20ca.pem").unwrap());
        assert!(tls.take("cert", "c.pem").unwrap());
        assert!(tls.take("insecure", "true").unwrap());
        assert!(!tls.take("hashing", "ketama").unwrap());
        assert!(tls.take("insecure", "maybe").is_err());
        assert!(tls.take("ca", "").is_err());
        assert_eq!(tls.ca, Some(PathBuf::from("/etc/ssl/my ca.pem")));
        assert!(tls.check().unwrap_err().contains("key=FILE"));
        assert!(tls.take("key", "k.pem").unwrap());
        assert!(tls.check().is_ok());
        let error = TlsOptions {
            ca: Some("/nonexistent/ca.pem".into()),
            ..TlsOptions::default()
        }
        .redis_certificates()
        .unwrap_err();
        assert!(
            error.contains("CA certificate (ca) file /nonexistent/ca.pem"),
            "{error}"
        );
    }
}
