//! Listeners: MQTT over TCP, over TLS and over QUIC, all serving one
//! [`Broker`](crate::broker::Broker).

mod quic;
mod routable_cid;
mod routable_token;
mod routed_socket;
mod tcp;

pub use quic::{bind_quic, serve_quic, QuicSetup};
pub use routable_cid::{RoutableCidGenerator, ServerIdMismatch};
pub use routable_token::RoutableTokenKey;
pub use routed_socket::RoutedSocket;
pub use tcp::{serve_tcp, serve_tls};

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::sync::mpsc;

use crate::broker::Broker;
use crate::connection::stream::{Inbound, StreamContext, WriteBudget};

/// Queue depth between a connection's stream readers and its core: a
/// client that floods fills it and then waits (TCP/QUIC flow control).
const INBOUND_DEPTH: usize = 64;

fn stream_context(
    broker: &Broker,
    transport: &'static str,
) -> (StreamContext, mpsc::Receiver<Inbound>) {
    let (inbound, rx) = mpsc::channel(INBOUND_DEPTH);
    let ctx = StreamContext {
        transport,
        max_packet_size: broker.settings().max_packet_size,
        version: Default::default(),
        budget: Arc::new(WriteBudget::default()),
        inbound,
        announcer: Default::default(),
    };
    (ctx, rx)
}

/// Addresses the node's listeners are bound to.
#[derive(Clone, Debug, Default)]
pub struct BoundAddrs {
    /// MQTT over QUIC (UDP), direct clients.
    pub quic: Option<SocketAddr>,
    /// Routed port (UDP, PROXY v2 from routers).
    pub routed: Option<SocketAddr>,
    /// MQTT over TCP.
    pub tcp: Option<SocketAddr>,
    /// MQTT over TLS.
    pub tls: Option<SocketAddr>,
    /// Admin HTTP.
    pub admin: Option<SocketAddr>,
    /// gRPC (Raft, forwarding, cluster watch, admin).
    pub grpc: Option<SocketAddr>,
}
