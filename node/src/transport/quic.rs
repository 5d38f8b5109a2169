//! MQTT over QUIC (ALPN `mqtt`), interoperable with EMQX clients: the first
//! bidirectional stream the client opens is the control stream; further
//! client-opened bidirectional streams are data streams.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use quinn::crypto::rustls::QuicServerConfig;

use super::stream_context;
use crate::broker::Broker;
use crate::connection::stream::{spawn_stream, Inbound};
use crate::connection::{serve, Link};
use crate::tls::TlsError;

/// Data streams a client may have open at once.
const MAX_STREAMS: u32 = 64;

/// Bind the QUIC endpoint.
pub fn bind_quic(addr: SocketAddr, tls: rustls::ServerConfig) -> Result<quinn::Endpoint, TlsError> {
    let crypto = QuicServerConfig::try_from(tls)
        .map_err(|e| TlsError::Generate(format!("QUIC TLS configuration: {e}")))?;
    let mut server = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    let mut transport = quinn::TransportConfig::default();
    transport.max_concurrent_bidi_streams(MAX_STREAMS.into());
    transport.max_concurrent_uni_streams(0u32.into());
    // Dead clients are found by MQTT keep alive; this bounds clients with
    // keep alive 0 that vanish.
    transport.max_idle_timeout(Some(quinn::IdleTimeout::from(quinn::VarInt::from_u32(
        300_000,
    ))));
    server.transport_config(Arc::new(transport));
    server.migration(true);
    quinn::Endpoint::server(server, addr).map_err(|e| TlsError::File {
        key: "quic_addr",
        path: addr.to_string().into(),
        reason: e.to_string(),
    })
}

/// Accept MQTT-over-QUIC connections until the broker shuts down.
pub async fn serve_quic(broker: Arc<Broker>, endpoint: quinn::Endpoint) {
    let mut shutdown = broker.shutdown_signal();
    loop {
        let incoming = tokio::select! {
            incoming = endpoint.accept() => incoming,
            _ = crate::broker::shutdown_started(&mut shutdown) => return,
        };
        let Some(incoming) = incoming else { return };
        tokio::spawn(serve_connection(broker.clone(), incoming));
    }
}

async fn serve_connection(broker: Arc<Broker>, incoming: quinn::Incoming) {
    let peer = incoming.remote_address();
    let timeout = broker.settings().connect_timeout;
    let connection = match tokio::time::timeout(timeout, incoming).await {
        Ok(Ok(connection)) => connection,
        Ok(Err(e)) => {
            tracing::debug!(%peer, error = %e, "QUIC handshake failed");
            return;
        }
        Err(_) => {
            tracing::debug!(%peer, "QUIC handshake timed out");
            return;
        }
    };
    let control = match tokio::time::timeout(timeout, connection.accept_bi()).await {
        Ok(Ok(streams)) => streams,
        _ => {
            connection.close(0u32.into(), b"no control stream");
            return;
        }
    };
    let (ctx, inbound) = stream_context(&broker, "quic");
    let (send, recv) = control;
    let control = spawn_stream(&ctx, 0, recv, send);
    let data_ctx = ctx.clone();
    let data_connection = connection.clone();
    let accept_data = tokio::spawn(async move {
        let mut index = 0u64;
        while let Ok((send, recv)) = data_connection.accept_bi().await {
            index += 1;
            let writer = spawn_stream(&data_ctx, index, recv, send);
            let opened = Inbound::StreamOpened {
                stream: index,
                writer,
            };
            if data_ctx.inbound.send(opened).await.is_err() {
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
    };
    serve(broker, link).await;
    accept_data.abort();
    // Let the last packets (DISCONNECT) reach the client before closing.
    tokio::time::sleep(Duration::from_millis(100)).await;
    connection.close(0u32.into(), b"");
}
