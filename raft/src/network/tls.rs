//! The I/O side of the cluster's mutual TLS ([`quicmq_proto::cluster_tls`]
//! is the profile): the gRPC server's accept loop with TLS handshakes,
//! the dialled side, and the role check every service runs.
//!
//! - [`incoming`] accepts TCP connections and, when the node has cluster
//!   TLS, completes each handshake on its own task (bounded in number and
//!   time) before tonic sees the connection. A peer without a certificate
//!   of the cluster CA never gets to HTTP/2. Each connection carries a
//!   [`PeerConnection`] into the requests made on it.
//! - [`dial`] opens a connection to a peer (directly or through a
//!   `CONNECT` proxy) and, with cluster TLS, runs the client handshake
//!   under the server name [`cluster_tls::NODE_NAME`].
//! - [`RoleCheck`] is the interceptor in front of each service: `Raft`,
//!   `Admin` and `Forward` need a node certificate, `ClusterWatch` a node
//!   or router one.
//!
//! A cluster configured as plaintext (its network secures it) accepts
//! plain TCP and checks no role.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use quicmq_proto::cluster_tls::{self, PeerRole};
use rustls::{ClientConfig, ServerConfig};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Semaphore};
use tokio_rustls::{TlsAcceptor, TlsConnector, TlsStream};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::server::Connected;

/// How long a peer may take to complete its TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// Handshakes in progress at once; a connection beyond them is closed at
/// once, so a flood of half-open connections costs bounded memory.
pub const MAX_HANDSHAKES: usize = 256;

/// Counter of connections and calls refused by cluster TLS, by `reason`:
/// `handshake` (no certificate, another CA, not TLS), `timeout`, `busy`
/// (too many handshakes), `no_role`, `role` (a call the certificate's
/// role may not make).
pub const REFUSED_METRIC: &str = "quicmq_cluster_tls_refused_total";

/// What the gRPC services know of the peer of a connection; tonic puts it
/// in the extensions of every request made on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerConnection {
    /// The peer's address.
    pub remote_addr: Option<SocketAddr>,
    /// Whether the connection is cluster TLS (else the cluster is
    /// plaintext).
    pub secured: bool,
    /// The role its verified certificate names (`None` on plaintext).
    pub role: Option<PeerRole>,
}

/// A connection to or from a peer: plain TCP, or TLS over it.
#[derive(Debug)]
pub enum PeerStream {
    /// Plain TCP (a plaintext cluster).
    Plain(TcpStream),
    /// Cluster TLS.
    Tls(Box<TlsStream<TcpStream>>),
}

macro_rules! delegate {
    ($self:ident, $s:ident => $e:expr) => {
        match $self.get_mut() {
            PeerStream::Plain($s) => {
                let $s = Pin::new($s);
                $e
            }
            PeerStream::Tls($s) => {
                let $s = Pin::new($s.as_mut());
                $e
            }
        }
    };
}

impl AsyncRead for PeerStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        delegate!(self, s => s.poll_read(cx, buf))
    }
}

impl AsyncWrite for PeerStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        delegate!(self, s => s.poll_write(cx, buf))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        delegate!(self, s => s.poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            PeerStream::Plain(s) => s.is_write_vectored(),
            PeerStream::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        delegate!(self, s => s.poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        delegate!(self, s => s.poll_shutdown(cx))
    }
}

/// A connection the gRPC server accepted, with what is known of its peer.
#[derive(Debug)]
pub struct AcceptedPeer {
    stream: PeerStream,
    info: PeerConnection,
}

impl Connected for AcceptedPeer {
    type ConnectInfo = PeerConnection;

    fn connect_info(&self) -> PeerConnection {
        self.info
    }
}

impl AsyncRead for AcceptedPeer {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for AcceptedPeer {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

/// The connections of `listener` for tonic's `serve_with_incoming`: with
/// `tls`, only those that completed a handshake with a certificate of the
/// cluster CA that names a role. The accept loop ends when the stream is
/// dropped (the server stopped).
pub fn incoming(
    listener: TcpListener,
    tls: Option<Arc<ServerConfig>>,
) -> ReceiverStream<io::Result<AcceptedPeer>> {
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(accept_loop(listener, tls.map(TlsAcceptor::from), tx));
    ReceiverStream::new(rx)
}

async fn accept_loop(
    listener: TcpListener,
    acceptor: Option<TlsAcceptor>,
    tx: mpsc::Sender<io::Result<AcceptedPeer>>,
) {
    let handshakes = Arc::new(Semaphore::new(MAX_HANDSHAKES));
    let log = Arc::new(RefusalLog::default());
    loop {
        let (tcp, remote) = tokio::select! {
            _ = tx.closed() => return,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: keep serving
                    // the connections already open, try again shortly.
                    tracing::warn!("gRPC accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = tcp.set_nodelay(true);
        let Some(acceptor) = acceptor.clone() else {
            let peer = AcceptedPeer {
                stream: PeerStream::Plain(tcp),
                info: PeerConnection {
                    remote_addr: Some(remote),
                    secured: false,
                    role: None,
                },
            };
            if tx.send(Ok(peer)).await.is_err() {
                return;
            }
            continue;
        };
        let Ok(permit) = handshakes.clone().try_acquire_owned() else {
            refused("busy", remote, &log, "too many TLS handshakes in progress");
            continue;
        };
        let (tx, log) = (tx.clone(), log.clone());
        tokio::spawn(async move {
            let _permit = permit;
            let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Err(_) => return refused("timeout", remote, &log, "TLS handshake timed out"),
                Ok(Err(e)) => return refused("handshake", remote, &log, &e.to_string()),
                Ok(Ok(tls)) => tls,
            };
            let role = tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|chain| chain.first())
                .and_then(PeerRole::of);
            let Some(role) = role else {
                return refused(
                    "no_role",
                    remote,
                    &log,
                    "its certificate names neither quicmq-node nor quicmq-router",
                );
            };
            let peer = AcceptedPeer {
                stream: PeerStream::Tls(Box::new(TlsStream::Server(tls))),
                info: PeerConnection {
                    remote_addr: Some(remote),
                    secured: true,
                    role: Some(role),
                },
            };
            let _ = tx.send(Ok(peer)).await;
        });
    }
}

fn refused(reason: &'static str, remote: SocketAddr, log: &RefusalLog, why: &str) {
    metrics::counter!(REFUSED_METRIC, "reason" => reason).increment(1);
    log.warn(remote, why);
}

/// Warns of refused peers at most once per [`RefusalLog::INTERVAL`],
/// saying how many refusals it kept quiet about: a misconfigured peer
/// that retries every 100 ms must not flood the log.
#[derive(Debug, Default)]
struct RefusalLog {
    state: Mutex<Option<(Instant, u64)>>,
}

impl RefusalLog {
    const INTERVAL: Duration = Duration::from_secs(10);

    fn warn(&self, remote: SocketAddr, why: &str) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        match state.as_mut() {
            Some((last, held)) if now.duration_since(*last) < Self::INTERVAL => *held += 1,
            _ => {
                let held = state.map_or(0, |(_, held)| held);
                tracing::warn!(
                    %remote,
                    held_back = held,
                    "refused a gRPC peer: {why} (cluster TLS needs a certificate of the \
                     cluster CA: cluster_ca, cluster_cert, cluster_key)"
                );
                *state = Some((now, 0));
            }
        }
    }
}

/// Opens a connection to the peer at `target` (`HOST:PORT`), through the
/// `CONNECT` proxy at `proxy` if any, and with `tls` runs the cluster TLS
/// handshake over it.
///
/// # Errors
///
/// When the peer (or proxy) cannot be reached, or the handshake fails
/// (the peer's certificate is not a node certificate of the cluster CA,
/// or it refused ours).
pub async fn dial(
    target: &str,
    proxy: Option<&str>,
    tls: Option<Arc<ClientConfig>>,
) -> io::Result<PeerStream> {
    let tcp = match proxy {
        Some(proxy) => super::connect_proxy::tunnel(proxy, target)
            .await
            .map_err(io::Error::other)?,
        None => TcpStream::connect(target).await?,
    };
    let _ = tcp.set_nodelay(true);
    let Some(tls) = tls else {
        return Ok(PeerStream::Plain(tcp));
    };
    let connect = TlsConnector::from(tls).connect(cluster_tls::server_name(), tcp);
    let stream = tokio::time::timeout(HANDSHAKE_TIMEOUT, connect)
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "cluster TLS handshake timed out"))?
        .map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("cluster TLS handshake with {target}: {e}"),
            )
        })?;
    Ok(PeerStream::Tls(Box::new(TlsStream::Client(stream))))
}

/// Which roles a service admits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admits {
    /// Nodes only: `Raft`, `Admin`, `Forward`.
    Nodes,
    /// Nodes and routers: `ClusterWatch`.
    Watchers,
}

/// The interceptor in front of a service: on a cluster TLS connection the
/// peer's role must be one the service admits, else `PERMISSION_DENIED`
/// (counted as `reason="role"`).
#[derive(Debug, Clone, Copy)]
pub struct RoleCheck(pub Admits);

impl RoleCheck {
    /// Whether a call on `peer`'s connection is admitted.
    ///
    /// ```
    /// use quicmq_proto::cluster_tls::PeerRole;
    /// use quicmq_raft::network::tls::{Admits, PeerConnection, RoleCheck};
    ///
    /// let router = PeerConnection { remote_addr: None, secured: true, role: Some(PeerRole::Router) };
    /// assert!(RoleCheck(Admits::Watchers).admits(Some(&router)));
    /// assert!(!RoleCheck(Admits::Nodes).admits(Some(&router)));
    /// ```
    pub fn admits(&self, peer: Option<&PeerConnection>) -> bool {
        match peer {
            // Every connection of a TLS server is secured; a plain one
            // comes from a plaintext cluster's server.
            Some(p) if !p.secured => true,
            Some(PeerConnection {
                role: Some(role), ..
            }) => match self.0 {
                Admits::Nodes => role.may_join(),
                Admits::Watchers => role.may_watch(),
            },
            _ => false,
        }
    }
}

impl tonic::service::Interceptor for RoleCheck {
    fn call(&mut self, request: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        let peer = request.extensions().get::<PeerConnection>();
        if self.admits(peer) {
            return Ok(request);
        }
        metrics::counter!(REFUSED_METRIC, "reason" => "role").increment(1);
        let shown = peer
            .and_then(|p| p.role)
            .map_or("no".to_owned(), |r| format!("a {r}"));
        Err(tonic::Status::permission_denied(format!(
            "this call needs a {} certificate of the cluster CA; the peer showed {shown} \
             certificate",
            cluster_tls::NODE_NAME
        )))
    }
}
