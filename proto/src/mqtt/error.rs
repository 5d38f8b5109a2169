//! Errors of the MQTT codec. Each carries the reason code a server sends
//! (in CONNACK or DISCONNECT) before closing the connection.

use super::ReasonCode;

/// Why bytes could not be decoded into a packet.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The bytes break the packet grammar (reason 0x81).
    #[error("malformed packet: {0}")]
    Malformed(&'static str),
    /// The bytes parse but break a protocol rule (reason 0x82).
    #[error("protocol error: {0}")]
    Protocol(&'static str),
    /// The packet is larger than the receiver accepts (reason 0x95).
    #[error("packet of {size} bytes exceeds the maximum packet size of {max} bytes")]
    PacketTooLarge {
        /// Size of the whole packet (fixed header included).
        size: usize,
        /// The limit in force.
        max: u32,
    },
    /// CONNECT names a protocol this codec does not speak (reason 0x84).
    #[error("unsupported protocol name or level {0}")]
    UnsupportedProtocolVersion(u8),
    /// A topic name is invalid: wildcard, empty or not allowed (reason 0x90).
    #[error("invalid topic name: {0}")]
    TopicNameInvalid(&'static str),
    /// A topic alias is 0 or above the negotiated maximum (reason 0x94).
    #[error("invalid topic alias: {0}")]
    TopicAliasInvalid(&'static str),
    /// A topic filter is invalid (reason 0x8F).
    #[error("invalid topic filter: {0}")]
    TopicFilterInvalid(&'static str),
}

impl DecodeError {
    /// The reason code to send to the peer before closing.
    ///
    /// ```
    /// use quicmq_proto::mqtt::{DecodeError, ReasonCode};
    /// assert_eq!(DecodeError::Malformed("x").reason_code(), ReasonCode::MALFORMED_PACKET);
    /// ```
    pub fn reason_code(&self) -> ReasonCode {
        match self {
            DecodeError::Malformed(_) => ReasonCode::MALFORMED_PACKET,
            DecodeError::Protocol(_) => ReasonCode::PROTOCOL_ERROR,
            DecodeError::PacketTooLarge { .. } => ReasonCode::PACKET_TOO_LARGE,
            DecodeError::UnsupportedProtocolVersion(_) => ReasonCode::UNSUPPORTED_PROTOCOL_VERSION,
            DecodeError::TopicNameInvalid(_) => ReasonCode::TOPIC_NAME_INVALID,
            DecodeError::TopicAliasInvalid(_) => ReasonCode::TOPIC_ALIAS_INVALID,
            DecodeError::TopicFilterInvalid(_) => ReasonCode::TOPIC_FILTER_INVALID,
        }
    }
}

/// Why a packet could not be encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// A string, binary field or the whole packet is longer than MQTT allows.
    #[error("{0} is too long to encode")]
    TooLong(&'static str),
    /// The packet does not exist in the target protocol version (AUTH in 3.1.1).
    #[error("{0} cannot be sent with MQTT 3.1.1")]
    NotInVersion(&'static str),
    /// A field holds a value the packet cannot carry (QoS 0 with a packet id, ...).
    #[error("invalid field: {0}")]
    InvalidField(&'static str),
}
