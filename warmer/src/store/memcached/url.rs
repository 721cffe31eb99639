//! `memcached://host:port[,host:port…][?hashing=NAME]`: the servers in the order written, and
//! how the application's client spreads keys over them; `memcached+tls://` the same over TLS,
//! with the TLS options ([`TlsOptions`]).

use super::{Hashing, MemcachedStore, ServerName};
use crate::env_vars;
use crate::store::tls::{TLS_OPTIONS, TlsOptions};
use crate::store::url::query_pairs;
use crate::store::{Address, Role, StoreError, StoreKind, UrlError};

/// One or more memcached servers, as `host:port` in the order written, and how keys are spread
/// over them (required with more than one server).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemcachedUrl {
    pub servers: Vec<String>,
    pub hashing: Option<Hashing>,
    /// Over TLS (`memcached+tls://`), with these options.
    pub tls: Option<TlsOptions>,
}

impl Address for MemcachedUrl {
    const SCHEMES: &'static [&'static str] = &["memcached://", "memcached+tls://"];
    const NAME: &'static str = "memcached";
    const KIND: StoreKind = StoreKind::Memcached;
    type Store = MemcachedStore;

    fn parse(text: &str) -> Result<MemcachedUrl, UrlError> {
        let error = |reason: &str| UrlError::new(text, reason);
        let (rest, mut tls) = match text.strip_prefix("memcached+tls://") {
            Some(rest) => (rest, Some(TlsOptions::default())),
            None => (text.strip_prefix("memcached://").unwrap_or(text), None),
        };
        let (list, query) = rest.split_once('?').unwrap_or((rest, ""));
        let mut servers = Vec::new();
        for server in list.trim_end_matches('/').split(',').map(str::trim) {
            if server.is_empty() {
                return Err(error("expected memcached://host:port[,host:port…]"));
            }
            // A missing port is 11211, as in every client; the host stays as written, since
            // the clients hash the name, not the address it resolves to.
            let name = ServerName::parse(server).map_err(|reason| error(&reason))?;
            servers.push(if name.host.contains(':') {
                format!("[{}]:{}", name.host, name.port)
            } else {
                format!("{}:{}", name.host, name.port)
            });
        }
        let mut hashing = None;
        for pair in query_pairs(query) {
            match pair {
                ("hashing", name) => {
                    hashing = Some(name.parse::<Hashing>().map_err(|e| error(&e))?);
                }
                (name, value) => {
                    let taken = match &mut tls {
                        Some(tls) => tls.take(name, value).map_err(|e| error(&e))?,
                        None => false,
                    };
                    if !taken {
                        return Err(error(&format!(
                            "the query parameters are `hashing` and, with memcached+tls://, \
                             {TLS_OPTIONS}"
                        )));
                    }
                }
            }
        }
        if let Some(tls) = &tls {
            tls.check().map_err(|e| error(&e))?;
        }
        if servers.len() > 1 && hashing.is_none() {
            // Guessing would spread keys where the application never reads them.
            return Err(error(&format!(
                "with several memcached servers, say how the application's client spreads \
                 keys over them: add ?hashing=NAME to the URL (`warmer run` also takes \
                 `memcached_hashing` in the `[warmer]` or `[env.NAME]` section of {}, or \
                 {}); NAME is {}",
                schemas::config::DEFAULT_FILE,
                env_vars::MEMCACHED_HASHING,
                Hashing::choices()
            )));
        }
        Ok(MemcachedUrl {
            servers,
            hashing,
            tls,
        })
    }

    async fn connect(&self, _role: Role) -> Result<MemcachedStore, StoreError> {
        MemcachedStore::connect(&self.servers, self.hashing, self.tls.as_ref()).await
    }
}

/// `text` with `?hashing=NAME` added when it is a memcached URL with several servers and no
/// choice of its own: how a `memcached_hashing` setting reaches each URL, so the recorded
/// targets (reports, checkpoints, `warmer undo`) carry the routing they were written with.
pub fn with_default_hashing(text: &str, hashing: Hashing) -> String {
    match text
        .strip_prefix("memcached://")
        .or_else(|| text.strip_prefix("memcached+tls://"))
    {
        Some(rest) if rest.contains(',') && !rest.contains("hashing=") => {
            let separator = if rest.contains('?') { '&' } else { '?' };
            format!("{text}{separator}hashing={hashing}")
        }
        _ => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `memcached+tls://` takes the TLS options; `memcached://` refuses them.
    #[test]
    fn tls_options_need_the_tls_scheme() {
        let url = MemcachedUrl::parse("memcached+tls://a:1?ca=/c/ca.pem&insecure=true").unwrap();
        let tls = url.tls.unwrap();
        assert_eq!((tls.ca, tls.insecure), (Some("/c/ca.pem".into()), true));
        let error = MemcachedUrl::parse("memcached://a:1?ca=/c/ca.pem").unwrap_err();
        assert!(error.reason.contains("memcached+tls://"), "{error}");
        assert!(MemcachedUrl::parse("memcached+tls://a:1?key=k.pem").is_err());
    }

    /// Several servers without a choice are refused, naming the setting; the setting fills
    /// in only where the URL makes no choice of its own.
    #[test]
    fn several_memcached_servers_need_a_hashing_choice() {
        let error = MemcachedUrl::parse("memcached://a:1,b:2")
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
        assert_eq!(
            with_default_hashing("memcached+tls://a:1,b:2?ca=c.pem", Hashing::Dalli),
            "memcached+tls://a:1,b:2?ca=c.pem&hashing=dalli"
        );
        for unchanged in [
            "memcached://a:1",
            "memcached://a:1,b:2?hashing=dalli",
            "redis://a:1",
        ] {
            assert_eq!(with_default_hashing(unchanged, Hashing::Ketama), unchanged);
        }
    }
}
