//! MQTT over QUIC (ALPN `mqtt`), interoperable with EMQX clients: the first
//! bidirectional stream the client opens is the control stream; further
//! client-opened bidirectional streams are data streams.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use quinn::crypto::rustls::QuicServerConfig;

use super::stream_context;
use crate::broker::Broker;
use crate::connection::stream::{open_data_stream, spawn_stream};
use crate::connection::{serve, Link, PeerCertificate};
use crate::keys::RESET_KEY_LEN;
use crate::limits::HandshakeInProgress;
use crate::metrics as m;
use crate::node::StartError;
use crate::tls;
use crate::transport::routable_cid::RoutableCidGenerator;
use crate::transport::routable_token::RoutableTokenKey;
use crate::transport::routed_socket::RoutedSocket;
use quicmq_proto::quic_lb::{LbCodec, ServerId};
use rustls_pki_types::CertificateDer;

/// Data streams a client may have open at once.
const MAX_STREAMS: u32 = 64;

/// What the QUIC endpoint is built from.
pub struct QuicSetup {
    /// Public port for direct clients.
    pub public: Option<SocketAddr>,
    /// Routed port for datagrams from routers.
    pub routed: Option<SocketAddr>,
    /// TLS configurations (ALPN `mqtt`): for new and for returning clients.
    pub tls: tls::QuicTlsConfigs,
    /// QUIC-LB codec of the cluster.
    pub lb: Arc<LbCodec>,
    /// This node's server ID.
    pub server_id: ServerId,
    /// Stateless reset key shared with routers.
    pub reset_key: [u8; RESET_KEY_LEN],
    /// Key sealing address-validation tokens, shared by all nodes.
    pub token_key: [u8; RESET_KEY_LEN],
}

/// The QUIC endpoint, and the server configuration for returning clients
/// (the endpoint's own serves new ones).
pub struct QuicEndpoint {
    /// The endpoint on the public and routed ports.
    pub endpoint: quinn::Endpoint,
    /// The socket under it.
    pub socket: Arc<RoutedSocket>,
    /// For connections whose Initial carried a valid address-validation
    /// token: node-local TLS sessions, 0-RTT accepted.
    pub returning: Arc<quinn::ServerConfig>,
}

/// Bind the QUIC endpoint on the public and routed ports.
pub fn bind_quic(setup: QuicSetup) -> Result<QuicEndpoint, StartError> {
    let bind_error = |e: String| StartError::Bind {
        key: "quic_addr",
        addr: format!("{:?} / {:?}", setup.public, setup.routed),
        reason: e,
    };
    let mut transport = quinn::TransportConfig::default();
    transport.max_concurrent_bidi_streams(MAX_STREAMS.into());
    transport.max_concurrent_uni_streams(0u32.into());
    // Dead clients are found by MQTT keep alive; this bounds clients with
    // keep alive 0 that vanish.
    transport.max_idle_timeout(Some(quinn::IdleTimeout::from(quinn::VarInt::from_u32(
        300_000,
    ))));
    let transport = Arc::new(transport);
    let token_key: Arc<dyn quinn::crypto::HandshakeTokenKey> = Arc::new(RoutableTokenKey::new(
        crate::keys::token_prk(&setup.token_key),
        setup.server_id,
    ));
    let server_config = |crypto: rustls::ServerConfig| {
        let crypto = QuicServerConfig::try_from(crypto)
            .map_err(|e| bind_error(format!("QUIC TLS configuration: {e}")))?;
        let mut server = quinn::ServerConfig::with_crypto(Arc::new(crypto));
        server.transport_config(transport.clone());
        server.migration(true);
        server.token_key(token_key.clone());
        Ok::<_, StartError>(server)
    };
    let server = server_config(setup.tls.cluster)?;
    let returning = Arc::new(server_config(setup.tls.home)?);
    let generator = RoutableCidGenerator::new(setup.lb, setup.server_id)
        .map_err(|e| StartError::Config(e.to_string()))?;
    let mut endpoint_config =
        quinn::EndpointConfig::new(Arc::new(crate::keys::quinn_reset_key(&setup.reset_key)));
    endpoint_config.cid_generator(move || Box::new(generator.clone()));
    let socket = Arc::new(
        RoutedSocket::bind(setup.public, setup.routed).map_err(|e| bind_error(e.to_string()))?,
    );
    let endpoint = quinn::Endpoint::new_with_abstract_socket(
        endpoint_config,
        Some(server),
        socket.clone(),
        Arc::new(quinn::TokioRuntime),
    )
    .map_err(|e| bind_error(e.to_string()))?;
    Ok(QuicEndpoint {
        endpoint,
        socket,
        returning,
    })
}

/// Accept MQTT-over-QUIC connections until the broker shuts down;
/// connections of returning clients (a valid address-validation token in
/// their Initial) are served with `returning`.
pub async fn serve_quic(
    broker: Arc<Broker>,
    endpoint: quinn::Endpoint,
    returning: Arc<quinn::ServerConfig>,
) {
    let mut shutdown = broker.shutdown_signal();
    loop {
        let incoming = tokio::select! {
            incoming = endpoint.accept() => incoming,
            _ = crate::broker::shutdown_started(&mut shutdown) => return,
        };
        let Some(incoming) = incoming else { return };
        let limits = &broker.settings().limits;
        // Under handshake load, a client whose address is not validated
        // yet gets a Retry: stateless, no bigger than what came in, and
        // its token (sealed with the cluster's token key) is good on any
        // node. Only then does the per-address rate apply, so that Initials
        // with a spoofed source cannot use up a real client's rate.
        if !incoming.remote_address_validated()
            && incoming.may_retry()
            && limits.handshake_load.wants_retry()
        {
            match incoming.retry() {
                Ok(()) => metrics::counter!(m::QUIC_RETRIES).increment(1),
                Err(e) => tracing::debug!(error = %e, "QUIC Retry not sent"),
            }
            continue;
        }
        if !limits
            .handshakes
            .admit(incoming.remote_address().ip(), std::time::Instant::now())
        {
            metrics::counter!(m::LIMITS_HIT, "limit" => "handshake_rate").increment(1);
            // Ignored, not refused: nothing goes back to a source that may
            // be spoofed, and a real client's retransmitted Initial comes
            // back when its bucket has refilled.
            incoming.ignore();
            continue;
        }
        let handshake = limits.handshake_load.start();
        tokio::spawn(serve_connection(
            broker.clone(),
            incoming,
            returning.clone(),
            handshake,
        ));
    }
}

async fn serve_connection(
    broker: Arc<Broker>,
    incoming: quinn::Incoming,
    returning: Arc<quinn::ServerConfig>,
    handshake: HandshakeInProgress,
) {
    let peer = incoming.remote_address();
    let handshakes = metrics::gauge!(m::QUIC_HANDSHAKES);
    handshakes.increment(1.0);
    let handshake = HandshakeGauge {
        _load: handshake,
        gauge: handshakes,
    };
    let timeout = broker.settings().connect_timeout;
    // A valid token means the client was on a node of this cluster before
    // and routers steered it to the node that issued the token: here, its
    // node-local TLS session (and 0-RTT) may be waiting.
    let connecting = if incoming.remote_address_validated() {
        incoming.accept_with(returning)
    } else {
        incoming.accept()
    };
    let connecting = match connecting {
        Ok(connecting) => connecting,
        Err(e) => {
            tracing::debug!(%peer, error = %e, "QUIC connection refused");
            return;
        }
    };
    // With client certificates, nothing is served before the handshake is
    // complete: the client's certificate comes with its last handshake
    // flight, after the server's 0.5-RTT data could already have left.
    let client_certs = broker.settings().client_certs.clone();
    let early = if client_certs.is_some() {
        Err(connecting)
    } else {
        connecting.into_0rtt()
    };
    let connection = match early {
        // 0.5-RTT (on a server, quinn always allows it): the control
        // stream, and a CONNECT sent in 0-RTT early data, are served before
        // the handshake completes; the CONNACK leaves with the server's
        // first flight. Early data is accepted at most once per session
        // ticket (single-use node-local sessions), so a replayed flight
        // gets nowhere. A handshake that fails ends the connection and its
        // streams.
        Ok((connection, established)) => {
            // The handshake counts as in progress until it completes, fails
            // or times out.
            tokio::spawn(async move {
                let _ = tokio::time::timeout(timeout, established).await;
                drop(handshake);
            });
            connection
        }
        Err(connecting) => {
            let done = tokio::time::timeout(timeout, connecting).await;
            drop(handshake);
            match done {
                Ok(Ok(connection)) => connection,
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "QUIC handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%peer, "QUIC handshake timed out");
                    return;
                }
            }
        }
    };
    let certificate = PeerCertificate::of(
        client_certs.as_ref(),
        connection
            .peer_identity()
            .and_then(|any| any.downcast::<Vec<CertificateDer<'static>>>().ok())
            .as_deref()
            .map(Vec::as_slice),
    );
    let control = match tokio::time::timeout(timeout, connection.accept_bi()).await {
        Ok(Ok(streams)) => streams,
        Ok(Err(e)) => {
            tracing::debug!(%peer, error = %e, "QUIC connection ended before its control stream");
            return;
        }
        Err(_) => {
            connection.close(0u32.into(), b"no control stream");
            return;
        }
    };
    if control.1.is_0rtt() {
        metrics::counter!(crate::metrics::QUIC_ZERO_RTT_CONNECTS).increment(1);
    }
    let (ctx, inbound) = stream_context(&broker, "quic");
    let (send, recv) = control;
    let control = spawn_stream(&ctx, 0, recv, send);
    let data_ctx = ctx.clone();
    let data_connection = connection.clone();
    let accept_data = tokio::spawn(async move {
        let mut index = 0u64;
        while let Ok((send, recv)) = data_connection.accept_bi().await {
            index += 1;
            if !open_data_stream(&data_ctx, index, recv, send).await {
                return;
            }
        }
    });
    let link = Link {
        transport: "quic",
        peer,
        ctx,
        inbound,
        control,
        quic: Some(connection.clone()),
        certificate,
    };
    serve(broker, link).await;
    accept_data.abort();
    // Let the last packets (DISCONNECT) reach the client before closing.
    tokio::time::sleep(Duration::from_millis(100)).await;
    connection.close(0u32.into(), b"");
}

/// A handshake in progress, counted for Retry decisions and in
/// `quicmq_quic_handshakes_in_progress`.
struct HandshakeGauge {
    _load: HandshakeInProgress,
    gauge: metrics::Gauge,
}

impl Drop for HandshakeGauge {
    fn drop(&mut self) {
        self.gauge.decrement(1.0);
    }
}
