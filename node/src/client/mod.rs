//! The async MQTT 5.0 / 3.1.1 client of quicmq, over QUIC, TCP or TLS.
//!
//! Used by the `quicmq` CLI, the end-to-end tests and the chaos scenarios.
//!
//! - [`Client::connect`] opens the transport and runs CONNECT/CONNACK;
//!   background tasks then own the connection and [`Client`] is a cheap,
//!   cloneable handle to it.
//! - Over QUIC (ALPN `mqtt`) the first bidirectional stream is the control
//!   stream; [`Client::open_stream`] opens further data streams, each with
//!   its own handle: what is published or subscribed through a handle
//!   travels on its stream and is answered on it.
//! - The protocol logic is sans-IO and unit-tested: packet identifiers,
//!   the send quota (the server's Receive Maximum), requests waiting for
//!   acknowledgements, exactly-once reception, topic aliases and
//!   keep-alive.
//!
//! ```no_run
//! use quicmq_node::client::{Client, ClientOptions, Event, QoS, ReasonCode, Transport};
//!
//! # async fn demo() -> Result<(), quicmq_node::client::ClientError> {
//! let mut opts = ClientOptions::new("127.0.0.1", Transport::Quic.default_port(), Transport::Quic);
//! opts.tls.insecure = true;
//! let (client, _connack) = Client::connect(opts).await?;
//! let reason = client.publish("greetings", "hello", QoS::AtLeastOnce, false).await?;
//! println!("PUBACK: {reason}");
//! client.disconnect(ReasonCode::NORMAL_DISCONNECTION).await?;
//! # Ok(()) }
//! ```

mod alias;
mod closer;
mod conn;
mod driver;
mod error;
mod event;
mod handle;
mod inbound;
mod keepalive;
mod options;
mod packet_ids;
mod quota;
mod reconnect;
mod requests;
mod resumption;
mod stream;
#[cfg(test)]
mod tests;
mod tls;
mod transport;

pub use error::ClientError;
pub use event::Event;
pub use handle::Client;
pub use options::{ClientOptions, TlsOptions, Transport};
pub use reconnect::{Backoff, ReconnectEvent, ReconnectingClient};
pub use resumption::Resumption;

pub use quicmq_proto::mqtt::{
    ConnAck, Disconnect, LastWill, Properties, ProtocolVersion, Publish, QoS, ReasonCode,
    RetainHandling, SubAck, SubscriptionOptions, UnsubAck,
};
