//! memcached over TLS (`memcached+tls://`), through a bridge of our own in the warmer.
//!
//! The memcache crate's clients (the meta client for reads, probes and undo; the classic one
//! for `stats`) dial plain TCP themselves, and the crate's own TLS is OpenSSL, which the deploy
//! binary must not link. So each server gets a listener on a loopback port in the warmer; every
//! connection the clients (and [`quiet`](super::quiet)'s add path) make to it is carried to the
//! server over TLS by tokio-rustls, with the URL's [`TlsOptions`]. Only the warmer's own
//! connections are carried: a connection from another user's process on the host (which could
//! otherwise borrow the warmer's client certificate) is refused, its owner read from
//! `/proc/net/tcp` (Linux, where the warmer is deployed; elsewhere every connection is refused).
//!
//! Before the bridge opens, each server is dialed once and sent `mn`, so that a certificate
//! the server does not accept, or one of the server's that fails verification, fails the
//! connect with rustls's reason rather than as a closed connection later.

use std::net::SocketAddr;
use std::sync::Arc;

use rustls::ClientConfig;
use rustls::pki_types::ServerName as TlsName;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use super::ServerName;
use crate::store::CONNECT_TIMEOUT;
use crate::store::tls::is_tls_refusal;

/// The loopback listeners, one per server, closed on drop.
pub(super) struct TlsBridge {
    /// `127.0.0.1:port` per server, in the servers' order: what the clients dial.
    pub addresses: Vec<String>,
    listeners: Vec<JoinHandle<()>>,
}

impl Drop for TlsBridge {
    fn drop(&mut self) {
        for listener in &self.listeners {
            listener.abort();
        }
    }
}

/// Checks each of `servers` over TLS with `config`, then opens the bridge to them. The error
/// is the first server's that failed, with its cause chain, and whether it may pass (a server
/// away, not a handshake refused).
pub(super) async fn open(
    servers: &[ServerName],
    config: Arc<ClientConfig>,
) -> Result<TlsBridge, (String, bool)> {
    let connector = TlsConnector::from(config);
    for server in servers {
        probe(&connector, server).await.map_err(|e| {
            let message = format!(
                "TLS to {}: {}",
                address(server),
                crate::store::cause_chain(&e)
            );
            (message, !is_tls_refusal(&e))
        })?;
    }
    let mut bridge = TlsBridge {
        addresses: Vec::new(),
        listeners: Vec::new(),
    };
    for server in servers {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await.map_err(|e| {
            (
                format!("cannot open the TLS bridge's loopback port: {e}"),
                false,
            )
        })?;
        let local = listener
            .local_addr()
            .map_err(|e| (format!("the TLS bridge's loopback port: {e}"), false))?;
        bridge.addresses.push(local.to_string());
        let (connector, server) = (connector.clone(), server.clone());
        bridge.listeners.push(tokio::spawn(async move {
            while let Ok((client, peer)) = listener.accept().await {
                if !owned_by_us(peer, local) {
                    tracing::warn!(%peer, "refused a connection to the TLS bridge from another user");
                    continue;
                }
                let (connector, server) = (connector.clone(), server.clone());
                tokio::spawn(async move { carry(client, &connector, &server).await });
            }
        }));
    }
    Ok(bridge)
}

/// A TLS connection to `server`.
async fn dial(
    connector: &TlsConnector,
    server: &ServerName,
) -> std::io::Result<TlsStream<TcpStream>> {
    let address = address(server);
    let connect = async {
        let tcp = TcpStream::connect((server.host.as_str(), server.port)).await?;
        tcp.set_nodelay(true)?;
        let name = TlsName::try_from(server.host.clone())
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
        connector.connect(name, tcp).await
    };
    tokio::time::timeout(CONNECT_TIMEOUT, connect)
        .await
        .map_err(|_| {
            std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("timed out connecting to {address}"),
            )
        })?
}

/// `host:port`, for messages.
fn address(server: &ServerName) -> String {
    format!("{}:{}", server.host, server.port)
}

/// Dials `server` and sends `mn`: with TLS 1.3 a server refuses a client certificate only
/// after the handshake, on the first read.
async fn probe(connector: &TlsConnector, server: &ServerName) -> std::io::Result<()> {
    let mut tls = BufReader::new(dial(connector, server).await?);
    tls.get_mut().write_all(b"mn\r\n").await?;
    tls.get_mut().flush().await?;
    let mut line = String::new();
    tls.read_line(&mut line).await?;
    if line.trim_end() == "MN" {
        Ok(())
    } else {
        Err(std::io::Error::other(format!(
            "the server answered `mn` with {line:?}"
        )))
    }
}

/// Carries one client connection to `server` over TLS until either side closes it.
async fn carry(mut client: TcpStream, connector: &TlsConnector, server: &ServerName) {
    let result = match dial(connector, server).await {
        Ok(mut tls) => tokio::io::copy_bidirectional(&mut client, &mut tls)
            .await
            .map(drop),
        Err(e) => Err(e),
    };
    if let Err(e) = result {
        // The client sees its connection close, fails the call, and the run retries it.
        tracing::debug!(server = %address(server), error = %crate::store::cause_chain(&e), "TLS bridge connection ended");
    }
}

/// Whether the connection from `peer` to the bridge's `local` address was made by a process
/// of the warmer's own user: its socket's line in `/proc/net/tcp` (local `peer`, remote
/// `local`) names the owner's uid.
fn owned_by_us(peer: SocketAddr, local: SocketAddr) -> bool {
    use std::os::unix::fs::MetadataExt;
    let (SocketAddr::V4(peer), SocketAddr::V4(local)) = (peer, local) else {
        return false;
    };
    // The kernel prints each address as its 32-bit word in memory, in hex, and the port.
    let hex = |a: std::net::SocketAddrV4| {
        format!(
            "{:08X}:{:04X}",
            u32::from_ne_bytes(a.ip().octets()),
            a.port()
        )
    };
    let (peer, local) = (hex(peer), hex(local));
    let (Ok(table), Ok(me)) = (
        std::fs::read_to_string("/proc/net/tcp"),
        std::fs::metadata("/proc/self"),
    ) else {
        return false;
    };
    table.lines().skip(1).any(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        fields.len() > 7
            && fields[1] == peer
            && fields[2] == local
            && fields[7].parse::<u32>().is_ok_and(|uid| uid == me.uid())
    })
}
