//! [`EgressProxy`]: the HTTP `CONNECT` proxy a node dials its peers through
//! (`--peer-proxy`), with links that can be cut: a network partition
//! between chosen node processes on loopback.
//!
//! Each node gets its own proxy, so the proxy knows the sender of every
//! tunnel and its `CONNECT` line names the receiver. [`EgressProxy::block`]
//! black-holes the links to the given addresses, as a partition does: open
//! tunnels stop carrying bytes and new `CONNECT`s get no answer, so the
//! nodes find out through their own timeouts and keep-alives, not through
//! a reset. [`EgressProxy::heal`] lifts every block; the stalled tunnels
//! are closed then and the nodes dial again.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use quicmq_chaos::egress_proxy::EgressProxy;
//!
//! let proxy = EgressProxy::start().await?;
//! // quicmq-node --peer-proxy <proxy.addr()> ...
//! proxy.block(["127.0.0.1:7001".to_string()]);
//! proxy.heal();
//! # Ok(()) }
//! ```

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// The longest `CONNECT` request header read.
const MAX_REQUEST: usize = 8 * 1024;

/// Why a `CONNECT` request was not understood.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// Not `CONNECT HOST:PORT HTTP/1.x`.
    #[error("not a CONNECT HOST:PORT HTTP/1.x request")]
    Malformed,
    /// Longer than [`MAX_REQUEST`] without ending.
    #[error("request header over {MAX_REQUEST} bytes")]
    TooLong,
}

/// Reads a `CONNECT` request from the bytes received so far: `Ok(None)`
/// while the header is incomplete, else the target and the header length.
///
/// # Errors
///
/// When the request is not a `CONNECT` or its header is too long.
pub fn parse_request(received: &[u8]) -> Result<Option<(String, usize)>, RequestError> {
    let Some(end) = received.windows(4).position(|w| w == b"\r\n\r\n") else {
        return if received.len() > MAX_REQUEST {
            Err(RequestError::TooLong)
        } else {
            Ok(None)
        };
    };
    let header = std::str::from_utf8(&received[..end]).map_err(|_| RequestError::Malformed)?;
    let line = header.lines().next().unwrap_or_default();
    let mut parts = line.split(' ');
    let (Some("CONNECT"), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(RequestError::Malformed);
    };
    let has_port = target
        .rsplit_once(':')
        .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
    if !has_port || !version.starts_with("HTTP/1.") {
        return Err(RequestError::Malformed);
    }
    Ok(Some((target.to_owned(), end + 4)))
}

/// Counts of one proxy.
#[derive(Debug, Default)]
pub struct EgressCounters {
    /// Tunnels opened.
    pub tunnels: AtomicU64,
    /// `CONNECT`s held unanswered because their target was blocked.
    pub held: AtomicU64,
}

struct Shared {
    blocked: Mutex<HashSet<String>>,
    /// Bumped on every block and heal; tunnels re-check their target.
    generation: watch::Sender<u64>,
    counters: EgressCounters,
}

impl Shared {
    fn is_blocked(&self, target: &str) -> bool {
        self.blocked
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(target)
    }
}

/// A `CONNECT` proxy on loopback whose links can be black-holed.
pub struct EgressProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl Drop for EgressProxy {
    fn drop(&mut self) {
        self.task.abort();
        // Open tunnels end with the proxy.
        self.shared.generation.send_modify(|g| *g = u64::MAX);
    }
}

impl EgressProxy {
    /// Starts a proxy on a free loopback port.
    ///
    /// # Errors
    ///
    /// When no port can be bound.
    pub async fn start() -> std::io::Result<EgressProxy> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            blocked: Mutex::default(),
            generation: watch::channel(0).0,
            counters: EgressCounters::default(),
        });
        let task = tokio::spawn(accept(listener, shared.clone()));
        Ok(EgressProxy { addr, shared, task })
    }

    /// Where the node dials (`--peer-proxy`).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The proxy's counts.
    pub fn counters(&self) -> &EgressCounters {
        &self.shared.counters
    }

    /// Black-holes every link to `targets` (`HOST:PORT` as the node dials
    /// them), open or new, until [`EgressProxy::heal`].
    pub fn block(&self, targets: impl IntoIterator<Item = String>) {
        self.shared
            .blocked
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend(targets);
        self.shared.generation.send_modify(|g| *g += 1);
    }

    /// Lifts every block: stalled tunnels close, new ones open.
    pub fn heal(&self) {
        self.shared
            .blocked
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
        self.shared.generation.send_modify(|g| *g += 1);
    }
}

async fn accept(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        let Ok((client, _)) = listener.accept().await else {
            continue;
        };
        let _ = client.set_nodelay(true);
        tokio::spawn(serve(client, shared.clone()));
    }
}

/// One client connection: its `CONNECT`, then the tunnel.
async fn serve(mut client: TcpStream, shared: Arc<Shared>) {
    let mut generation = shared.generation.subscribe();
    let mut received = Vec::with_capacity(256);
    let mut buf = [0u8; 1024];
    let (target, header_len) = loop {
        let Ok(n) = client.read(&mut buf).await else {
            return;
        };
        if n == 0 {
            return;
        }
        received.extend_from_slice(&buf[..n]);
        match parse_request(&received) {
            Ok(Some(found)) => break found,
            Ok(None) => {}
            Err(_) => {
                let _ = client.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n").await;
                return;
            }
        }
    };
    // Blocked: no answer (packets to a partitioned peer are lost) until the
    // client gives up or the block is lifted.
    if shared.is_blocked(&target) {
        shared.counters.held.fetch_add(1, Ordering::Relaxed);
        while shared.is_blocked(&target) {
            if generation.changed().await.is_err() || *generation.borrow() == u64::MAX {
                return;
            }
        }
    }
    let Ok(mut upstream) = TcpStream::connect(&target).await else {
        let _ = client.write_all(b"HTTP/1.1 502 Bad Gateway\r\n\r\n").await;
        return;
    };
    let _ = upstream.set_nodelay(true);
    if client
        .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
        .await
        .is_err()
    {
        return;
    }
    // Anything the client sent after its header belongs to the tunnel.
    if upstream.write_all(&received[header_len..]).await.is_err() {
        return;
    }
    shared.counters.tunnels.fetch_add(1, Ordering::Relaxed);
    generation.borrow_and_update();
    loop {
        tokio::select! {
            _ = tokio::io::copy_bidirectional(&mut client, &mut upstream) => return,
            changed = generation.changed() => {
                if changed.is_err() || *generation.borrow() == u64::MAX {
                    return;
                }
                if shared.is_blocked(&target) {
                    break;
                }
            }
        }
    }
    // Black-holed: hold both ends without carrying a byte; closed once the
    // block is lifted (the node dials again) or the proxy stops.
    while shared.is_blocked(&target) {
        if generation.changed().await.is_err() || *generation.borrow() == u64::MAX {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn connect_requests_parse_and_others_do_not() {
        assert_eq!(parse_request(b"CONNECT a:1 HTTP/1.1\r\n").unwrap(), None);
        let req = b"CONNECT 127.0.0.1:7000 HTTP/1.1\r\nHost: 127.0.0.1:7000\r\n\r\nx";
        assert_eq!(
            parse_request(req).unwrap(),
            Some(("127.0.0.1:7000".to_string(), req.len() - 1))
        );
        for bad in [
            &b"GET / HTTP/1.1\r\n\r\n"[..],
            b"CONNECT a HTTP/1.1\r\n\r\n",
            b"CONNECT :80 HTTP/1.1\r\n\r\n",
            b"CONNECT a:1 HTTP/2\r\n\r\n",
            b"CONNECT a:1 HTTP/1.1 x\r\n\r\n",
        ] {
            assert_eq!(parse_request(bad), Err(RequestError::Malformed));
        }
        assert_eq!(parse_request(&[b'a'; 9000]), Err(RequestError::TooLong));
    }

    async fn echo_server() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let (mut r, mut w) = s.split();
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                });
            }
        });
        addr
    }

    async fn tunnel(proxy: SocketAddr, target: SocketAddr) -> TcpStream {
        let mut s = TcpStream::connect(proxy).await.unwrap();
        s.write_all(format!("CONNECT {target} HTTP/1.1\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let mut answer = Vec::new();
        while !answer.ends_with(b"\r\n\r\n") {
            answer.push(s.read_u8().await.unwrap());
        }
        assert!(answer.starts_with(b"HTTP/1.1 200"), "{answer:?}");
        s
    }

    async fn round_trip(s: &mut TcpStream) -> bool {
        if s.write_all(b"ping").await.is_err() {
            return false;
        }
        let mut pong = [0u8; 4];
        matches!(
            tokio::time::timeout(Duration::from_millis(300), s.read_exact(&mut pong)).await,
            Ok(Ok(_))
        ) && &pong == b"ping"
    }

    #[tokio::test]
    async fn a_block_black_holes_open_and_new_tunnels_until_healed() {
        let target = echo_server().await;
        let proxy = EgressProxy::start().await.unwrap();
        let mut open = tunnel(proxy.addr(), target).await;
        assert!(round_trip(&mut open).await);

        proxy.block([target.to_string()]);
        assert!(
            !round_trip(&mut open).await,
            "the open tunnel carries nothing"
        );
        let mut held = TcpStream::connect(proxy.addr()).await.unwrap();
        held.write_all(format!("CONNECT {target} HTTP/1.1\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let mut byte = [0u8; 1];
        assert!(
            tokio::time::timeout(Duration::from_millis(300), held.read(&mut byte))
                .await
                .is_err(),
            "a new CONNECT gets no answer"
        );

        proxy.heal();
        // The held CONNECT is answered, the stalled tunnel is closed.
        let mut answer = Vec::new();
        while !answer.ends_with(b"\r\n\r\n") {
            answer.push(held.read_u8().await.unwrap());
        }
        assert!(answer.starts_with(b"HTTP/1.1 200"));
        assert!(round_trip(&mut held).await);
        let mut rest = Vec::new();
        let closed =
            tokio::time::timeout(Duration::from_secs(2), open.read_to_end(&mut rest)).await;
        assert!(
            matches!(closed, Ok(Ok(_)) | Ok(Err(_))),
            "stalled tunnel closed"
        );
        let mut fresh = tunnel(proxy.addr(), target).await;
        assert!(round_trip(&mut fresh).await);
        assert_eq!(proxy.counters().held.load(Ordering::Relaxed), 1);
    }
}
