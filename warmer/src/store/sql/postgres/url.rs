//! `postgres://USER@HOST[:PORT]/DATABASE?table=NAME[&max_entries=N][&time_zone=ZONE]`: the address of a Django DatabaseCache table in PostgreSQL, parsed, with
//! the password kept out of `Debug` output.

use super::super::SqlOptions;
use super::PostgresStore;
use crate::store::{Address, Role, StoreError, StoreKind, UrlError, redact};

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
        let query = parsed.query().unwrap_or("");
        let options = SqlOptions::parse(text, query, |name, value| match name {
            "time_zone" if is_zone_name(value) => {
                value.clone_into(&mut time_zone);
                Ok(())
            }
            "time_zone" => Err("time_zone must be a zone name such as UTC or Europe/Paris".into()),
            "sslmode" => Err("TLS is not supported yet; reach the server over a TLS tunnel".into()),
            _ => Err(
                "the query parameters are `table`, `max_entries`, `time_zone`, \
                 `password_file` and `password_env`"
                    .into(),
            ),
        })?;
        Ok(PostgresUrl {
            redacted: redact(text),
            host,
            port: parsed.port().unwrap_or(5432),
            user,
            database,
            password,
            time_zone,
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
            "postgres://app@db.internal/shop?sslmode=require",
            "postgres://app@db.internal/shop?table=a;b",
            "postgres://app@db.internal/shop?time_zone=UTC';",
            "postgres://app@db.internal/shop?max_entries=many",
            "postgres://app:s3cret@db.internal/shop?tbl=x",
        ] {
            let error = PostgresUrl::parse(bad).unwrap_err();
            assert!(!error.to_string().contains("s3cret"), "{error}");
        }
    }
}
