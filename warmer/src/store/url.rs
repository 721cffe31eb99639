//! Store addresses: `redis://`, `redis+cluster://host:port[,host:port…]`,
//! `memcached://host:port[,host:port…][?hashing=…]`, `sqlite://path?table=…`, and snapshot
//! files (`file://…` or a path ending in `.parquet`).

use std::path::PathBuf;

use super::Hashing;
use super::memcached::ServerName;

/// The table of the embedded default store, and of any `sqlite://` URL that names none.
pub const DEFAULT_SQLITE_TABLE: &str = "cachewarm_cache";

/// A parsed store address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreUrl {
    /// A Redis server; the URL is passed to the redis crate as given.
    Redis { url: String },
    /// A Redis Cluster as given (`url`), and its seed nodes: one `redis://[user:pass@]host:port`
    /// URL per node, each carrying the credentials given once in the cluster URL.
    RedisCluster { url: String, nodes: Vec<String> },
    /// One or more memcached servers, as `host:port` in the order written, and how keys are
    /// spread over them (required with more than one server).
    Memcached {
        servers: Vec<String>,
        hashing: Option<Hashing>,
    },
    /// A table laid out as Django's DatabaseCache in an SQLite file.
    Sqlite { path: PathBuf, table: String },
    /// A Parquet snapshot file (key, value, expires_at); a source only.
    Snapshot { path: PathBuf },
}

/// Why an address was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid store URL `{url}`: {reason}")]
pub struct UrlError {
    pub url: String,
    pub reason: String,
}

impl StoreUrl {
    /// Parses a store address.
    pub fn parse(text: &str) -> Result<StoreUrl, UrlError> {
        let error = |reason: &str| UrlError {
            url: redact(text),
            reason: reason.to_owned(),
        };
        if let Some(rest) = text.strip_prefix("memcached://") {
            let (list, query) = rest.split_once('?').unwrap_or((rest, ""));
            let mut servers = Vec::new();
            for server in list.trim_end_matches('/').split(',').map(str::trim) {
                if server.is_empty() {
                    return Err(error("expected memcached://host:port[,host:port…]"));
                }
                // A missing port is 11211, as in every client; the host stays as written,
                // since the clients hash the name, not the address it resolves to.
                let name = ServerName::parse(server).map_err(|reason| error(&reason))?;
                servers.push(if name.host.contains(':') {
                    format!("[{}]:{}", name.host, name.port)
                } else {
                    format!("{}:{}", name.host, name.port)
                });
            }
            let mut hashing = None;
            for pair in query.split('&').filter(|p| !p.is_empty()) {
                match pair.split_once('=') {
                    Some(("hashing", name)) => {
                        hashing = Some(name.parse::<Hashing>().map_err(|e| error(&e))?);
                    }
                    _ => return Err(error("the only query parameter is `hashing`")),
                }
            }
            if servers.len() > 1 && hashing.is_none() {
                // Guessing would spread keys where the application never reads them.
                return Err(error(&format!(
                    "with several memcached servers, say how the application's client spreads \
                     keys over them: add ?hashing=NAME to the URL (`warmer run` also takes \
                     `memcached_hashing` in the `[warmer]` or `[env.NAME]` section of {}, or \
                     {}); NAME is {}",
                    schemas::config::DEFAULT_FILE,
                    crate::settings::env_vars::MEMCACHED_HASHING,
                    Hashing::choices()
                )));
            }
            return Ok(StoreUrl::Memcached { servers, hashing });
        }
        if let Some(rest) = text.strip_prefix("sqlite://") {
            let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
            if path.is_empty() {
                return Err(error("expected sqlite://PATH[?table=NAME]"));
            }
            let mut table = DEFAULT_SQLITE_TABLE.to_owned();
            for pair in query.split('&').filter(|p| !p.is_empty()) {
                match pair.split_once('=') {
                    Some(("table", name)) if is_identifier(name) => table = name.to_owned(),
                    Some(("table", _)) => {
                        return Err(error("table must be letters, digits and underscores"));
                    }
                    _ => return Err(error("the only query parameter is `table`")),
                }
            }
            return Ok(StoreUrl::Sqlite {
                path: PathBuf::from(path),
                table,
            });
        }
        if text.starts_with("redis://") || text.starts_with("redis+unix://") {
            return Ok(StoreUrl::Redis {
                url: text.to_owned(),
            });
        }
        if let Some(rest) = text.strip_prefix("redis+cluster://") {
            return match parse_cluster(rest) {
                Ok(nodes) => Ok(StoreUrl::RedisCluster {
                    url: text.to_owned(),
                    nodes,
                }),
                Err(reason) => Err(error(&reason)),
            };
        }
        if text.starts_with("rediss+cluster://") {
            return Err(error(
                "TLS (rediss+cluster://) is not supported yet; reach the nodes over a TLS tunnel",
            ));
        }
        if text.starts_with("rediss://") {
            return Err(error(
                "TLS (rediss://) is not supported yet; reach the server over a TLS tunnel",
            ));
        }
        if let Some(path) = text.strip_prefix("file://") {
            return Ok(StoreUrl::Snapshot {
                path: PathBuf::from(path),
            });
        }
        if text.ends_with(".parquet") {
            return Ok(StoreUrl::Snapshot {
                path: PathBuf::from(text),
            });
        }
        Err(error(
            "expected redis://, redis+cluster://, memcached://, sqlite:// or a snapshot file \
             (.parquet)",
        ))
    }
}

impl StoreUrl {
    /// The store kind's name, as reports show it.
    pub fn kind(&self) -> &'static str {
        match self {
            StoreUrl::Redis { .. } => "redis",
            StoreUrl::RedisCluster { .. } => "redis-cluster",
            StoreUrl::Memcached { .. } => "memcached",
            StoreUrl::Sqlite { .. } => "sqlite",
            StoreUrl::Snapshot { .. } => "snapshot",
        }
    }
}

/// `[user:pass@]host:port[,host:port…][/]`, the part after `redis+cluster://`. The crate takes
/// the credentials per node, so they are copied into each node's URL as written (still
/// percent-encoded). A cluster has database 0 only, so no database path is accepted.
fn parse_cluster(rest: &str) -> Result<Vec<String>, String> {
    const EXPECTED: &str = "expected redis+cluster://[user:pass@]host:port[,host:port…]";
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.contains(['/', '?', '#']) {
        return Err(format!(
            "{EXPECTED}; a cluster has no database number or options in its URL"
        ));
    }
    let (userinfo, hosts) = match rest.rsplit_once('@') {
        // `@` and `,` in a password are percent-encoded; here they mean credentials per node.
        Some((userinfo, _)) if userinfo.contains(['@', ',']) => {
            return Err(format!(
                "{EXPECTED}; the credentials go once, before the first host"
            ));
        }
        Some((userinfo, hosts)) => (format!("{userinfo}@"), hosts),
        None => (String::new(), rest),
    };
    hosts
        .split(',')
        .map(|node| {
            let node = node.trim();
            let port = node
                .rsplit_once(':')
                .map(|(host, port)| (host, port.parse::<u16>()));
            match port {
                Some((host, Ok(port))) if !host.is_empty() && port > 0 => {
                    Ok(format!("redis://{userinfo}{node}"))
                }
                _ => Err(format!("{EXPECTED}; `{node}` is not host:port")),
            }
        })
        .collect()
}

fn is_identifier(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// `text` with `?hashing=NAME` added when it is a memcached URL with several servers and no
/// choice of its own: how a `memcached_hashing` setting reaches each URL, so the recorded
/// targets (reports, checkpoints, `warmer undo`) carry the routing they were written with.
pub fn with_default_hashing(text: &str, hashing: Hashing) -> String {
    match text.strip_prefix("memcached://") {
        Some(rest) if rest.contains(',') && !rest.contains("hashing=") => {
            let separator = if rest.contains('?') { '&' } else { '?' };
            format!("{text}{separator}hashing={hashing}")
        }
        _ => text.to_owned(),
    }
}

/// The address with any password replaced by `***`, for logs and reports.
pub fn redact(text: &str) -> String {
    match url::Url::parse(text) {
        Ok(mut parsed) if parsed.password().is_some() => {
            // Setting a password fails only for URLs that cannot have one, and this one has.
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        Ok(_) => text.to_owned(),
        // A list of hosts (`redis+cluster://u:p@a:1,b:2`) is no URL to the url crate, so the
        // password is found by hand: between the first `:` of the user info and its `@`.
        Err(_) => redact_userinfo(text).unwrap_or_else(|| text.to_owned()),
    }
}

fn redact_userinfo(text: &str) -> Option<String> {
    let (scheme, rest) = text.split_once("://")?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or(rest);
    let (userinfo, _) = authority.rsplit_once('@')?;
    let (user, _) = userinfo.split_once(':')?;
    Some(format!("{scheme}://{user}:***{}", &rest[userinfo.len()..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_kind() {
        assert_eq!(
            StoreUrl::parse("memcached://a:11211,b:11212?hashing=dalli").unwrap(),
            StoreUrl::Memcached {
                servers: vec!["a:11211".into(), "b:11212".into()],
                hashing: Some(Hashing::Dalli),
            }
        );
        // The default port, as every client assumes it; one server needs no hashing.
        assert_eq!(
            StoreUrl::parse("memcached://[::1]").unwrap(),
            StoreUrl::Memcached {
                servers: vec!["[::1]:11211".into()],
                hashing: None,
            }
        );
        assert_eq!(
            StoreUrl::parse("sqlite://var/cache.db?table=django_cache").unwrap(),
            StoreUrl::Sqlite {
                path: "var/cache.db".into(),
                table: "django_cache".into()
            }
        );
        assert_eq!(
            StoreUrl::parse("sqlite:///abs/cache.db").unwrap(),
            StoreUrl::Sqlite {
                path: "/abs/cache.db".into(),
                table: DEFAULT_SQLITE_TABLE.into()
            }
        );
        assert!(matches!(
            StoreUrl::parse("redis://:pw@localhost:6379/2").unwrap(),
            StoreUrl::Redis { .. }
        ));
        assert_eq!(
            StoreUrl::parse("snap/2026-11-20.parquet").unwrap(),
            StoreUrl::Snapshot {
                path: "snap/2026-11-20.parquet".into()
            }
        );
    }

    /// A table name goes into SQL text, so anything but an identifier is refused.
    #[test]
    fn refuses_bad_addresses() {
        for bad in [
            "sqlite://x.db?table=a;drop",
            "sqlite://x.db?tbl=a",
            "memcached://a:1,",
            "memcached://a:1:2",
            "memcached://a:1?hashing=modula",
            "memcached://a:1?hash=ketama",
            "http://example.com",
            "rediss://secure:6380",
            "redis+cluster://",
            "redis+cluster://a:7000,b",
            "redis+cluster://a:7000,:7001",
            "redis+cluster://a:7000/1",
            "redis+cluster://a:notaport",
            "redis+cluster://u:p@a:7000,u:p@b:7001",
            "rediss+cluster://a:7000",
        ] {
            assert!(StoreUrl::parse(bad).is_err(), "{bad}");
        }
    }

    /// Several servers without a choice are refused, naming the setting; the setting fills
    /// in only where the URL makes no choice of its own.
    #[test]
    fn several_memcached_servers_need_a_hashing_choice() {
        let error = StoreUrl::parse("memcached://a:1,b:2")
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("memcached_hashing") && error.contains("?hashing="),
            "{error}"
        );
        assert_eq!(
            with_default_hashing("memcached://a:1,b:2", Hashing::Ketama),
            "memcached://a:1,b:2?hashing=ketama"
        );
        for unchanged in [
            "memcached://a:1",
            "memcached://a:1,b:2?hashing=dalli",
            "redis://a:1",
        ] {
            assert_eq!(with_default_hashing(unchanged, Hashing::Ketama), unchanged);
        }
    }

    #[test]
    fn redacts_passwords() {
        assert_eq!(
            redact("redis://app:s3cret@cache:6379/0"),
            "redis://app:***@cache:6379/0"
        );
        let error = StoreUrl::parse("rediss://app:s3cret@cache:6380").unwrap_err();
        assert!(!error.to_string().contains("s3cret"));
        assert_eq!(
            redact("redis+cluster://app:s3cret@a:7000,b:7001"),
            "redis+cluster://app:***@a:7000,b:7001"
        );
        assert_eq!(
            redact("redis+cluster://:s3cret@a:7000"),
            "redis+cluster://:***@a:7000"
        );
        let error = StoreUrl::parse("redis+cluster://app:s3cret@a:7000,b").unwrap_err();
        assert!(!error.to_string().contains("s3cret"), "{error}");
    }

    /// The credentials are given once and go with every seed node, as the crate wants them.
    #[test]
    fn parses_cluster_seed_nodes() {
        let url = "redis+cluster://app:s3cret@10.0.0.1:7000, 10.0.0.2:7001/";
        assert_eq!(
            StoreUrl::parse(url).unwrap(),
            StoreUrl::RedisCluster {
                url: url.into(),
                nodes: vec![
                    "redis://app:s3cret@10.0.0.1:7000".into(),
                    "redis://app:s3cret@10.0.0.2:7001".into()
                ]
            }
        );
        assert_eq!(
            StoreUrl::parse("redis+cluster://[::1]:7000").unwrap(),
            StoreUrl::RedisCluster {
                url: "redis+cluster://[::1]:7000".into(),
                nodes: vec!["redis://[::1]:7000".into()]
            }
        );
    }
}
