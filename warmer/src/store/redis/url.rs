//! `redis://` (and `redis+unix://`), passed to the redis crate as given, and
//! `redis+cluster://[user:pass@]host:port[,host:port…]`, the seed nodes of a Redis Cluster.

use super::{RedisClusterStore, RedisStore};
use crate::store::{Address, Role, StoreError, StoreKind, UrlError};

/// A Redis server; the URL is passed to the redis crate as given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisUrl {
    pub url: String,
}

impl Address for RedisUrl {
    const SCHEMES: &'static [&'static str] = &["redis://", "redis+unix://", "rediss://"];
    const NAME: &'static str = "redis";
    const KIND: StoreKind = StoreKind::Redis;
    type Store = RedisStore;

    fn parse(text: &str) -> Result<RedisUrl, UrlError> {
        if text.starts_with("rediss://") {
            return Err(UrlError::new(
                text,
                "TLS (rediss://) is not supported yet; reach the server over a TLS tunnel",
            ));
        }
        Ok(RedisUrl {
            url: text.to_owned(),
        })
    }

    async fn connect(&self, _role: Role) -> Result<RedisStore, StoreError> {
        RedisStore::connect(&self.url).await
    }
}

/// A Redis Cluster as given (`url`), and its seed nodes: one `redis://[user:pass@]host:port`
/// URL per node, each carrying the credentials given once in the cluster URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterUrl {
    pub url: String,
    pub nodes: Vec<String>,
}

impl Address for ClusterUrl {
    const SCHEMES: &'static [&'static str] = &["redis+cluster://", "rediss+cluster://"];
    const NAME: &'static str = "redis-cluster";
    // A cluster takes the keys a server takes: the same rules.
    const KIND: StoreKind = StoreKind::Redis;
    type Store = RedisClusterStore;

    fn parse(text: &str) -> Result<ClusterUrl, UrlError> {
        let Some(rest) = text.strip_prefix("redis+cluster://") else {
            return Err(UrlError::new(
                text,
                "TLS (rediss+cluster://) is not supported yet; reach the nodes over a TLS tunnel",
            ));
        };
        match parse_cluster(rest) {
            Ok(nodes) => Ok(ClusterUrl {
                url: text.to_owned(),
                nodes,
            }),
            Err(reason) => Err(UrlError::new(text, reason)),
        }
    }

    async fn connect(&self, _role: Role) -> Result<RedisClusterStore, StoreError> {
        RedisClusterStore::connect(&self.url, &self.nodes).await
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
                ]
            }
        );
        assert_eq!(
            ClusterUrl::parse("redis+cluster://[::1]:7000").unwrap(),
            ClusterUrl {
                url: "redis+cluster://[::1]:7000".into(),
                nodes: vec!["redis://[::1]:7000".into()]
            }
        );
    }
}
