//! MQTT 3.1.1 and 5.0: packets, properties, reason codes, topics and the
//! sans-IO codec.
//!
//! Decoding is incremental: [`decode`] takes a growing buffer of bytes read
//! from a stream and returns `Ok(None)` until a whole packet is there. The
//! payload of a PUBLISH is split off the buffer without copying.
//!
//! ```
//! use bytes::{Bytes, BytesMut};
//! use quicmq_proto::mqtt::*;
//!
//! let publish = Packet::Publish(Publish {
//!     dup: false,
//!     qos: QoS::AtLeastOnce,
//!     retain: false,
//!     topic: "sensors/1/temp".into(),
//!     packet_id: Some(7),
//!     properties: Properties::default(),
//!     payload: Bytes::from_static(b"21.5"),
//! });
//! let mut wire = BytesMut::new();
//! encode(&publish, ProtocolVersion::V5, &mut wire).unwrap();
//!
//! // A stream may deliver the packet in pieces.
//! let mut buf = BytesMut::from(&wire[..3]);
//! assert_eq!(decode(&mut buf, ProtocolVersion::V5, 1 << 20).unwrap(), None);
//! buf.extend_from_slice(&wire[3..]);
//! assert_eq!(decode(&mut buf, ProtocolVersion::V5, 1 << 20).unwrap(), Some(publish));
//! ```

mod codec;
mod error;
mod packet;
mod primitives;
mod properties;
mod reason;
pub mod topic;

pub use codec::{decode, encode};
pub use error::{DecodeError, EncodeError};
pub use packet::{
    Auth, ConnAck, Connect, Disconnect, LastWill, Packet, PacketType, ProtocolVersion, Publish,
    PublishResponse, QoS, RetainHandling, SubAck, Subscribe, SubscriptionOptions, UnsubAck,
    Unsubscribe,
};
pub use properties::Properties;
pub use reason::ReasonCode;

/// The largest packet MQTT can express: 268,435,455 bytes of remaining
/// length plus a 5-byte fixed header.
pub const MAX_PACKET_SIZE: u32 = 268_435_460;
