//! The admin endpoint over TLS (`admin_mtls`): an axum [`Listener`] that
//! accepts TCP connections and runs their TLS handshakes (the node's
//! cluster certificate; client certificates of the cluster CA optional),
//! each on a task of its own — at most [`MAX_HANDSHAKES`] at once and
//! [`HANDSHAKE_TIMEOUT`] each — so a slow or silent client holds up no
//! other. [`AdminPeer`] carries the role of the client's certificate (if
//! it showed one) into every request of its connection.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::connect_info::Connected;
use axum::serve::{IncomingStream, Listener};
use quicmq_proto::cluster_tls::PeerRole;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Semaphore};
use tokio_rustls::server::TlsStream;

/// TLS handshakes in progress at once.
pub const MAX_HANDSHAKES: usize = 64;

/// Time a client has to finish its handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// Accepted, handshaken admin connections.
pub struct AdminTlsListener {
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
}

impl AdminTlsListener {
    /// Serves TLS with `config` on `listener` (accepting starts at once,
    /// on a task that ends when this listener is dropped).
    ///
    /// # Errors
    ///
    /// When the listener's own address cannot be read.
    pub fn new(
        listener: TcpListener,
        config: Arc<rustls::ServerConfig>,
    ) -> std::io::Result<AdminTlsListener> {
        let local = listener.local_addr()?;
        let (tx, ready) = mpsc::channel(MAX_HANDSHAKES);
        let acceptor = tokio_rustls::TlsAcceptor::from(config);
        let slots = Arc::new(Semaphore::new(MAX_HANDSHAKES));
        tokio::spawn(async move {
            loop {
                if tx.is_closed() {
                    return;
                }
                let (tcp, peer) = match listener.accept().await {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        tracing::debug!(error = %e, "admin accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let Ok(slot) = slots.clone().try_acquire_owned() else {
                    // Too many handshakes at once: this one is dropped.
                    continue;
                };
                let (acceptor, tx) = (acceptor.clone(), tx.clone());
                tokio::spawn(async move {
                    let _slot = slot;
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                        Ok(Ok(tls)) => {
                            let _ = tx.send((tls, peer)).await;
                        }
                        Ok(Err(e)) => {
                            tracing::debug!(%peer, error = %e, "admin TLS handshake failed")
                        }
                        Err(_) => tracing::debug!(%peer, "admin TLS handshake timed out"),
                    }
                });
            }
        });
        Ok(AdminTlsListener { ready, local })
    }
}

impl Listener for AdminTlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(accepted) => accepted,
            // The accepting task is gone: nothing will come any more.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}

/// Who is at the other end of an admin connection.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AdminPeer {
    /// The role its certificate names (verified under the cluster CA by
    /// the handshake); `None` without one, or on plain HTTP.
    pub role: Option<PeerRole>,
}

impl AdminPeer {
    /// Whether it showed an admin certificate.
    pub fn is_admin(&self) -> bool {
        self.role.is_some_and(PeerRole::may_administer)
    }
}

impl Connected<IncomingStream<'_, TcpListener>> for AdminPeer {
    fn connect_info(_: IncomingStream<'_, TcpListener>) -> AdminPeer {
        AdminPeer::default()
    }
}

impl Connected<IncomingStream<'_, AdminTlsListener>> for AdminPeer {
    fn connect_info(stream: IncomingStream<'_, AdminTlsListener>) -> AdminPeer {
        let role = stream
            .io()
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|chain| chain.first())
            .and_then(PeerRole::of);
        AdminPeer { role }
    }
}
