//! MQTT over TCP and over TLS-over-TCP: one stream per connection.

use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

use super::stream_context;
use crate::broker::Broker;
use crate::connection::{serve, stream::spawn_stream, Link, PeerCertificate};

/// Accept MQTT-over-TCP connections until the broker shuts down.
pub async fn serve_tcp(broker: Arc<Broker>, listener: TcpListener) {
    let mut shutdown = broker.shutdown_signal();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = crate::broker::shutdown_started(&mut shutdown) => return,
        };
        match accepted {
            Ok((socket, peer)) => {
                if admitted(&broker, peer) {
                    tokio::spawn(serve_plain(broker.clone(), socket));
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "TCP accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    }
}

/// Whether `max_handshake_rate_per_ip` admits one more connection from
/// `peer`; one that is not admitted is closed before any TLS or MQTT work.
fn admitted(broker: &Broker, peer: std::net::SocketAddr) -> bool {
    let admitted = broker
        .settings()
        .limits
        .handshakes
        .admit(peer.ip(), std::time::Instant::now());
    if !admitted {
        metrics::counter!(crate::metrics::LIMITS_HIT, "limit" => "handshake_rate").increment(1);
        tracing::trace!(%peer, "connection over the handshake rate closed");
    }
    admitted
}

async fn serve_plain(broker: Arc<Broker>, socket: TcpStream) {
    let Ok(peer) = socket.peer_addr() else { return };
    let _ = socket.set_nodelay(true);
    let (ctx, inbound) = stream_context(&broker, "tcp");
    let (reader, writer) = socket.into_split();
    let control = spawn_stream(&ctx, 0, reader, writer);
    let link = Link {
        transport: "tcp",
        peer,
        ctx,
        inbound,
        control,
        quic: None,
        certificate: PeerCertificate::None,
    };
    serve(broker, link).await;
}

/// Accept MQTT-over-TLS connections until the broker shuts down.
pub async fn serve_tls(
    broker: Arc<Broker>,
    listener: TcpListener,
    config: Arc<rustls::ServerConfig>,
) {
    let acceptor = TlsAcceptor::from(config);
    let mut shutdown = broker.shutdown_signal();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = crate::broker::shutdown_started(&mut shutdown) => return,
        };
        match accepted {
            Ok((socket, peer)) if !admitted(&broker, peer) => drop(socket),
            Ok((socket, peer)) => {
                let broker = broker.clone();
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let _ = socket.set_nodelay(true);
                    let timeout = broker.settings().connect_timeout;
                    let tls = match tokio::time::timeout(timeout, acceptor.accept(socket)).await {
                        Ok(Ok(tls)) => tls,
                        Ok(Err(e)) => {
                            tracing::debug!(%peer, error = %e, "TLS handshake failed");
                            return;
                        }
                        Err(_) => {
                            tracing::debug!(%peer, "TLS handshake timed out");
                            return;
                        }
                    };
                    let certificate = PeerCertificate::of(
                        broker.settings().client_certs.as_ref(),
                        tls.get_ref().1.peer_certificates(),
                    );
                    let (ctx, inbound) = stream_context(&broker, "tls");
                    let (reader, writer) = tokio::io::split(tls);
                    let control = spawn_stream(&ctx, 0, reader, writer);
                    let link = Link {
                        transport: "tls",
                        peer,
                        ctx,
                        inbound,
                        control,
                        quic: None,
                        certificate,
                    };
                    serve(broker, link).await;
                });
            }
            Err(e) => {
                tracing::warn!(error = %e, "TLS accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    }
}
