//! `postgres://USER@HOST[:PORT]/DATABASE?table=NAME[&max_entries=N][&time_zone=ZONE]`
//! `[&sslmode=MODE][&sslrootcert=FILE][&sslcert=FILE&sslkey=FILE]`: the address of a Django
//! DatabaseCache table in PostgreSQL, parsed, with the password kept out of `Debug` output.
//!
//! The TLS parameters are libpq's, with libpq's meanings (see [`SslMode`]), so a URL from a
//! Django or psql setup works as it is; the other stores' names (`ca`, `cert`, `key`) are
//! taken too. Where libpq differs: without `sslrootcert`, `verify-ca` and `verify-full` check
//! against the system's roots (as every other store here; libpq reads
//! `~/.postgresql/root.crt`), and `sslmode=allow` is not taken.

use super::super::SqlOptions;
use super::PostgresStore;
use crate::store::tls::{ServerCheck, TlsOptions};
use crate::store::{Address, Role, StoreError, StoreKind, UrlError, redact};

/// libpq's `sslmode`: whether the connection is encrypted, and what of the server's
/// certificate is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    /// Plain text.
    Disable,
    /// TLS when the server offers it, else plain text (libpq's default, and so ours).
    Prefer,
    /// TLS or no connection.
    Require,
    /// TLS, the server's certificate signed by a trusted CA (any host name).
    VerifyCa,
    /// TLS, the server's certificate signed by a trusted CA and made out to the host dialed.
    VerifyFull,
}

impl SslMode {
    fn parse(name: &str) -> Result<SslMode, String> {
        Ok(match name {
            "disable" => SslMode::Disable,
            "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            "allow" => {
                return Err(
                    "sslmode=allow is not supported; use prefer (TLS when the server offers it)"
                        .into(),
                );
            }
            _ => {
                return Err(format!(
                    "sslmode is disable, prefer, require, verify-ca or verify-full, not `{name}`"
                ));
            }
        })
    }
}

/// The TLS a connection makes: libpq's `sslmode` and the certificate files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostgresTls {
    pub mode: SslMode,
    pub files: TlsOptions,
}

impl PostgresTls {
    /// How much of the server's certificate is checked. As libpq: `prefer` and `require`
    /// check nothing, unless a root certificate is given; then they check as `verify-ca`.
    pub fn check(&self) -> ServerCheck {
        match self.mode {
            SslMode::VerifyFull => ServerCheck::Full,
            SslMode::VerifyCa => ServerCheck::Chain,
            _ if self.files.ca.is_some() => ServerCheck::Chain,
            _ => ServerCheck::Nothing,
        }
    }
}

/// A password, kept out of `Debug` output.
#[derive(Clone, PartialEq, Eq)]
pub(super) struct Password(pub(super) String);

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

/// A Django DatabaseCache table in a PostgreSQL database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostgresUrl {
    /// The URL as given, redacted: for messages and reports.
    pub(super) redacted: String,
    pub(super) host: String,
    pub(super) port: u16,
    pub(super) user: String,
    pub(super) database: String,
    pub(super) password: Option<Password>,
    pub(super) time_zone: String,
    /// Boxed: it is most of the address's size, and addresses sit in an enum with small ones.
    pub(super) tls: Box<PostgresTls>,
    pub(super) options: SqlOptions,
}

impl Address for PostgresUrl {
    const SCHEMES: &'static [&'static str] = &["postgres://", "postgresql://"];
    const NAME: &'static str = "postgres";
    const KIND: StoreKind = StoreKind::Sql;
    type Store = PostgresStore;

    fn parse(text: &str) -> Result<PostgresUrl, UrlError> {
        const EXPECTED: &str = "expected postgres://USER@HOST[:PORT]/DATABASE?table=NAME";
        let error = |reason: &str| UrlError::new(text, reason);
        let parsed = url::Url::parse(text).map_err(|e| error(&format!("{EXPECTED}: {e}")))?;
        let decode = |part: &str| {
            percent_decode(part).ok_or_else(|| error(&format!("`{part}` is not UTF-8")))
        };
        let user = decode(parsed.username())?;
        if user.is_empty() {
            return Err(error(&format!("{EXPECTED}: the URL names no user")));
        }
        let host = match parsed.host() {
            Some(url::Host::Ipv6(address)) => address.to_string(),
            Some(host) => host.to_string(),
            None => return Err(error(&format!("{EXPECTED}: the URL names no host"))),
        };
        let database = decode(parsed.path().trim_start_matches('/'))?;
        let database = if database.is_empty() {
            // As libpq: the database named after the user.
            user.clone()
        } else {
            database
        };
        let password = parsed.password().map(decode).transpose()?.map(Password);
        let mut time_zone = "UTC".to_owned();
        let mut mode = None;
        let mut files = TlsOptions::default();
        let mut system_roots = false;
        let query = parsed.query().unwrap_or("");
        let options = SqlOptions::parse(text, query, |name, value| {
            // libpq's names for the other stores' TLS options.
            let name = match name {
                "sslrootcert" if value == "system" => {
                    system_roots = true;
                    return Ok(());
                }
                "sslrootcert" => "ca",
                "sslcert" => "cert",
                "sslkey" => "key",
                name => name,
            };
            match name {
                "time_zone" if is_zone_name(value) => {
                    value.clone_into(&mut time_zone);
                    Ok(())
                }
                "time_zone" => {
                    Err("time_zone must be a zone name such as UTC or Europe/Paris".into())
                }
                "sslmode" => {
                    mode = Some(SslMode::parse(value)?);
                    Ok(())
                }
                "insecure" => Err("`insecure` is not a PostgreSQL option: sslmode=require \
                     encrypts without checking the server's certificate"
                    .into()),
                _ if files.take(name, value)? => Ok(()),
                _ => Err(
                    "the query parameters are `table`, `max_entries`, `time_zone`, \
                     `sslmode`, `sslrootcert` (or `ca`), `sslcert` (or `cert`), `sslkey` (or \
                     `key`), `password_file` and `password_env`"
                        .into(),
                ),
            }
        })?;
        files.check().map_err(|reason| error(&reason))?;
        let mode = match mode {
            // As libpq 16: the system's roots are for checking the host's name.
            Some(mode) if system_roots && mode != SslMode::VerifyFull => {
                return Err(error(
                    "sslrootcert=system checks the server's name: it needs sslmode=verify-full",
                ));
            }
            None if system_roots => SslMode::VerifyFull,
            Some(mode) => mode,
            None => SslMode::Prefer,
        };
        if mode == SslMode::Disable && files.is_set() {
            return Err(error(
                "the certificate files (sslrootcert, sslcert, sslkey) need an sslmode other \
                 than disable",
            ));
        }
        Ok(PostgresUrl {
            redacted: redact(text),
            host,
            port: parsed.port().unwrap_or(5432),
            user,
            database,
            password,
            time_zone,
            tls: Box::new(PostgresTls { mode, files }),
            options,
        })
    }

    async fn connect(&self, _role: Role) -> Result<PostgresStore, StoreError> {
        PostgresStore::connect(self).await
    }
}

/// Zone names go to `set_config`, as a parameter; still, only what a zone name holds.
fn is_zone_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/_+-".contains(&b))
}

fn percent_decode(text: &str) -> Option<String> {
    percent_encoding::percent_decode_str(text)
        .decode_utf8()
        .ok()
        .map(std::borrow::Cow::into_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The URL says where and which table; a password in it never shows in `Debug` or errors.
    #[test]
    fn parses_the_url() {
        let url = PostgresUrl::parse(
            "postgres://app:s%40cret@db.internal:6432/shop?table=django_cache&max_entries=300",
        )
        .unwrap();
        assert_eq!(url.host, "db.internal");
        assert_eq!(url.port, 6432);
        assert_eq!(url.user, "app");
        assert_eq!(url.database, "shop");
        assert_eq!(url.password, Some(Password("s@cret".into())));
        assert_eq!(url.options.table, "django_cache");
        assert_eq!(url.options.max_entries, Some(300));
        assert!(!format!("{url:?}").contains("cret"));
        assert_eq!(
            url.redacted,
            "postgres://app:***@db.internal:6432/shop?table=django_cache&max_entries=300"
        );
        // `password_file` is read before this parser sees the URL: see `store::secret`.
        let url = PostgresUrl::parse("postgresql://app@[::1]/").unwrap();
        assert_eq!((url.host.as_str(), url.port), ("::1", 5432));
        assert_eq!(url.database, "app");
        for bad in [
            "postgres://db.internal/shop",
            "postgres://app@db.internal/shop?sslmode=allow",
            "postgres://app@db.internal/shop?sslmode=verify",
            "postgres://app@db.internal/shop?sslmode=disable&sslrootcert=ca.pem",
            "postgres://app@db.internal/shop?sslmode=require&sslrootcert=system",
            "postgres://app@db.internal/shop?sslcert=c.pem",
            "postgres://app@db.internal/shop?insecure=true",
            "postgres://app@db.internal/shop?table=a;b",
            "postgres://app@db.internal/shop?time_zone=UTC';",
            "postgres://app@db.internal/shop?max_entries=many",
            "postgres://app:s3cret@db.internal/shop?tbl=x",
        ] {
            let error = PostgresUrl::parse(bad).unwrap_err();
            assert!(!error.to_string().contains("s3cret"), "{error}");
        }
    }

    /// libpq's `sslmode` and certificate names (or the other stores' `ca`, `cert`, `key`) say
    /// how a connection is encrypted and checked; `prefer` is the default, and a root
    /// certificate makes `prefer` and `require` check the chain, as in libpq.
    #[test]
    fn parses_sslmode_and_certificates() {
        let tls = |query: &str| {
            PostgresUrl::parse(&format!("postgres://app@db/shop?{query}"))
                .unwrap()
                .tls
        };
        let default = tls("table=c");
        assert_eq!(default.mode, SslMode::Prefer);
        assert_eq!(default.check(), ServerCheck::Nothing);
        let full =
            tls("sslmode=verify-full&sslrootcert=/etc/pg/root%20ca.crt&sslcert=c.pem&sslkey=k.pem");
        assert_eq!(full.mode, SslMode::VerifyFull);
        assert_eq!(full.check(), ServerCheck::Full);
        assert_eq!(full.files.ca, Some("/etc/pg/root ca.crt".into()));
        assert_eq!(full.files.key, Some("k.pem".into()));
        assert_eq!(
            tls("sslmode=verify-ca&ca=ca.pem").check(),
            ServerCheck::Chain
        );
        assert_eq!(
            tls("sslmode=require&sslrootcert=ca.pem").check(),
            ServerCheck::Chain
        );
        assert_eq!(tls("sslmode=require").check(), ServerCheck::Nothing);
        assert_eq!(tls("sslmode=disable").mode, SslMode::Disable);
        let system = tls("sslrootcert=system");
        assert_eq!((system.mode, system.files.ca), (SslMode::VerifyFull, None));
        let error = PostgresUrl::parse("postgres://app@db/shop?sslmode=allow").unwrap_err();
        assert!(error.reason.contains("prefer"), "{error}");
    }
}
