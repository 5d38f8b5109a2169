//! Limits that keep one client, or one source of traffic, from taking the
//! node from everyone else (sans-IO: each takes the clock as an argument):
//!
//! - [`ConnectionSlots`]: connected clients, in all and per address
//!   (`max_connections`, `max_connections_per_ip`; CONNACK 0x97);
//! - [`SourceRate`]: new connections per second per address
//!   (`max_handshake_rate_per_ip`; over it, a QUIC Initial is ignored and a
//!   TCP connection closed before any TLS or MQTT work);
//! - [`TokenBucket`]: PUBLISHes per second per client
//!   (`max_publish_rate`; 0x96 Message rate too high);
//! - [`HandshakeLoad`]: QUIC handshakes in progress, past which clients
//!   must prove their address with a Retry (`quic_retry_above`).

mod connection_slots;
mod handshake_load;
mod source_rate;
mod token_bucket;

use std::net::IpAddr;
use std::sync::Arc;

pub use connection_slots::{ConnectionSlot, ConnectionSlots, SlotRefused};
pub use handshake_load::{HandshakeInProgress, HandshakeLoad};
pub use source_rate::{SourceRate, MAX_TRACKED_SOURCES};
pub use token_bucket::TokenBucket;

/// The node's abuse limits, shared by its listeners and connections.
#[derive(Debug, Clone)]
pub struct AbuseLimits {
    /// Connected clients.
    pub connections: Arc<ConnectionSlots>,
    /// New connections per second per source address.
    pub handshakes: Arc<SourceRate>,
    /// QUIC handshakes in progress and the Retry threshold.
    pub handshake_load: Arc<HandshakeLoad>,
    /// PUBLISHes per second per client (0: no limit).
    pub publish_rate: u32,
    /// PUBLISHes a client may send at once above the rate.
    pub publish_burst: u32,
}

impl AbuseLimits {
    /// A bucket for one client's PUBLISHes, if the rate is limited.
    pub fn publish_bucket(&self, now: std::time::Instant) -> Option<TokenBucket> {
        (self.publish_rate > 0)
            .then(|| TokenBucket::new(self.publish_rate, self.publish_burst, now))
    }
}

impl Default for AbuseLimits {
    /// No limits, Retry above 64 handshakes in progress.
    fn default() -> Self {
        AbuseLimits {
            connections: Arc::new(ConnectionSlots::new(0, 0)),
            handshakes: Arc::new(SourceRate::new(0, 0)),
            handshake_load: Arc::new(HandshakeLoad::new(DEFAULT_RETRY_ABOVE)),
            publish_rate: 0,
            publish_burst: 0,
        }
    }
}

/// Default `quic_retry_above`.
pub const DEFAULT_RETRY_ABOVE: usize = 64;

/// An IPv4 address seen through a dual-stack socket is the IPv4 source.
pub(crate) fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    }
}
