//! `redis://` and `rediss://` (TLS; and `redis+unix://`), passed to the redis crate without the
//! TLS options ([`TlsOptions`]), and `redis[s]+cluster://[user:pass@]host:port[,host:port…]`,
//! the seed nodes of a Redis Cluster. `redis[s]+sentinel://` is in `sentinel`.

use super::{RedisClusterStore, RedisStore};
use crate::store::tls::{TLS_OPTIONS, TlsOptions};
use crate::store::url::query_pairs;
use crate::store::{Address, Role, StoreError, StoreKind, UrlError};

/// A Redis server: `client_url` is the URL as given without the TLS options (with the crate's
/// `#insecure` for `insecure=true`), what the redis crate is handed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisUrl {
    pub url: String,
    pub client_url: String,
    pub tls: TlsOptions,
}

impl Address for RedisUrl {
    const SCHEMES: &'static [&'static str] = &["redis://", "redis+unix://", "rediss://"];
    const NAME: &'static str = "redis";
    const KIND: StoreKind = StoreKind::Redis;
    type Store = RedisStore;

    fn parse(text: &str) -> Result<RedisUrl, UrlError> {
        let (base, tls, kept) =
            split_tls_options(text).map_err(|reason| UrlError::new(text, reason))?;
        let tls_scheme = text.starts_with("rediss://");
        if tls.is_set() && !tls_scheme {
            return Err(UrlError::new(
                text,
                format!("the TLS options ({TLS_OPTIONS}) need a rediss:// URL"),
            ));
        }
        let mut client_url = base;
        if !kept.is_empty() {
            client_url = format!("{client_url}?{}", kept.join("&"));
        }
        if tls.insecure {
            client_url.push_str("#insecure");
        }
        Ok(RedisUrl {
            url: text.to_owned(),
            client_url,
            tls,
        })
    }

    async fn connect(&self, _role: Role) -> Result<RedisStore, StoreError> {
        RedisStore::connect(&self.url, &self.client_url, &self.tls).await
    }
}

/// `text` without its query, the TLS options in it, and the other query pairs as written.
pub(super) fn split_tls_options(text: &str) -> Result<(String, TlsOptions, Vec<&str>), String> {
    let (base, query) = text.split_once('?').unwrap_or((text, ""));
    if base.contains('#') || query.contains('#') {
        return Err("a `#` fragment is not taken; say `?insecure=true`".into());
    }
    let mut tls = TlsOptions::default();
    let mut kept = Vec::new();
    for pair in query.split('&').filter(|pair| !pair.is_empty()) {
        let (name, value) = query_pairs(pair).next().unwrap_or((pair, ""));
        if !tls.take(name, value)? {
            kept.push(pair);
        }
    }
    tls.check()?;
    Ok((base.to_owned(), tls, kept))
}

/// A Redis Cluster as given (`url`), its seed nodes (one `redis[s]://[user:pass@]host:port`
/// URL per node, each carrying the credentials given once in the cluster URL) and its TLS
/// options (`rediss+cluster://` only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterUrl {
    pub url: String,
    pub nodes: Vec<String>,
    pub tls: Option<TlsOptions>,
}

impl Address for ClusterUrl {
    const SCHEMES: &'static [&'static str] = &["redis+cluster://", "rediss+cluster://"];
    const NAME: &'static str = "redis-cluster";
    // A cluster takes the keys a server takes: the same rules.
    const KIND: StoreKind = StoreKind::Redis;
    type Store = RedisClusterStore;

    fn parse(text: &str) -> Result<ClusterUrl, UrlError> {
        let error = |reason: String| UrlError::new(text, reason);
        let (base, tls, kept) = split_tls_options(text).map_err(error)?;
        let (rest, scheme, tls) = match base.strip_prefix("rediss+cluster://") {
            Some(rest) => (rest, "rediss", Some(tls)),
            None if tls.is_set() => {
                return Err(error(format!(
                    "the TLS options ({TLS_OPTIONS}) need a rediss+cluster:// URL"
                )));
            }
            None => (
                base.strip_prefix("redis+cluster://").unwrap_or(&base),
                "redis",
                None,
            ),
        };
        if !kept.is_empty() {
            return Err(error(format!(
                "a cluster URL takes no options but the TLS ones ({TLS_OPTIONS})"
            )));
        }
        let nodes = parse_cluster(rest, scheme).map_err(error)?;
        Ok(ClusterUrl {
            url: text.to_owned(),
            nodes,
            tls,
        })
    }

    async fn connect(&self, _role: Role) -> Result<RedisClusterStore, StoreError> {
        RedisClusterStore::connect(&self.url, &self.nodes, self.tls.as_ref()).await
    }
}

/// `[user:pass@]host:port[,host:port…][/]`, the part after `redis[s]+cluster://`, as
/// `scheme://` node URLs. The crate takes the credentials per node, so they are copied into
/// each node's URL as written (still percent-encoded). A cluster has database 0 only, so no
/// database path is accepted.
pub(super) fn parse_cluster(rest: &str, scheme: &str) -> Result<Vec<String>, String> {
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
                    Ok(format!("{scheme}://{userinfo}{node}"))
                }
                _ => Err(format!("{EXPECTED}; `{node}` is not host:port")),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The credentials are given once and go with every seed node, as the crate wants them.
    #[test]
    fn parses_cluster_seed_nodes() {
        let url = "redis+cluster://app:s3cret@10.0.0.1:7000, 10.0.0.2:7001/";
        assert_eq!(
            ClusterUrl::parse(url).unwrap(),
            ClusterUrl {
                url: url.into(),
                nodes: vec![
                    "redis://app:s3cret@10.0.0.1:7000".into(),
                    "redis://app:s3cret@10.0.0.2:7001".into()
                ],
                tls: None,
            }
        );
        assert_eq!(
            ClusterUrl::parse("redis+cluster://[::1]:7000").unwrap(),
            ClusterUrl {
                url: "redis+cluster://[::1]:7000".into(),
                nodes: vec!["redis://[::1]:7000".into()],
                tls: None,
            }
        );
    }

    /// TLS options go to the crate as certificates, not in the URL it parses; `insecure` as
    /// the crate's own `#insecure`; they need a TLS scheme.
    #[test]
    fn parses_tls_options() {
        let url =
            RedisUrl::parse("rediss://:pw@cache:6380/2?ca=/c/ca.pem&protocol=resp3&insecure=true")
                .unwrap();
        assert_eq!(
            url.client_url,
            "rediss://:pw@cache:6380/2?protocol=resp3#insecure"
        );
        assert_eq!(url.tls.ca, Some("/c/ca.pem".into()));
        assert!(url.tls.insecure);
        let error = RedisUrl::parse("redis://cache:6379?ca=/c/ca.pem").unwrap_err();
        assert!(error.reason.contains("rediss://"), "{error}");
        let error = RedisUrl::parse("rediss://cache:6379?cert=/c/c.pem").unwrap_err();
        assert!(error.reason.contains("key=FILE"), "{error}");
        let cluster =
            ClusterUrl::parse("rediss+cluster://a:7000,b:7001?cert=c.pem&key=k.pem").unwrap();
        assert_eq!(cluster.nodes, ["rediss://a:7000", "rediss://b:7001"]);
        assert_eq!(cluster.tls.unwrap().key, Some("k.pem".into()));
        assert!(ClusterUrl::parse("redis+cluster://a:7000?ca=x").is_err());
    }
}
