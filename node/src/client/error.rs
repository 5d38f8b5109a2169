//! Errors of the MQTT client.

use quicmq_proto::mqtt::{ConnAck, EncodeError};

/// Why a client operation failed.
///
/// ```
/// use quicmq_node::client::ClientError;
/// let err = ClientError::Closed(Some("keep-alive timeout".into()));
/// assert_eq!(err.to_string(), "connection closed: keep-alive timeout");
/// ```
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server answered CONNECT with an error reason code; the CONNACK
    /// is kept whole (reason string, server reference, ...).
    #[error("connection refused by the server: {}{}", .0.reason_code, reason_string(.0))]
    Refused(Box<ConnAck>),
    /// The server broke the MQTT protocol (or the MQTT-over-QUIC conventions).
    #[error("protocol violation by the server: {0}")]
    Protocol(String),
    /// An I/O error: name resolution, socket, stream.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// TLS configuration or handshake failed (certificates, CA file, ALPN).
    #[error("TLS error: {0}")]
    Tls(String),
    /// The QUIC connection could not be made or was lost.
    #[error("QUIC error: {0}")]
    Quic(String),
    /// An operation did not finish in time (connect, disconnect).
    #[error("timed out: {0}")]
    Timeout(&'static str),
    /// The connection (or the stream of this handle) is closed; the reason
    /// when it was not a normal client-side close.
    #[error("connection closed{}", match .0 { Some(reason) => format!(": {reason}"), None => String::new() })]
    Closed(Option<String>),
    /// The packet is larger than the server's Maximum Packet Size.
    #[error("packet of {size} bytes exceeds the server's maximum packet size of {max} bytes")]
    PacketTooLarge {
        /// Size of the encoded packet.
        size: usize,
        /// The server's limit.
        max: u32,
    },
    /// The packet cannot be encoded (string too long, invalid field, ...).
    #[error("cannot encode packet: {0}")]
    Encode(#[from] EncodeError),
    /// The arguments of the call are not valid (empty filter list, topic
    /// alias above the server's maximum, ...).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The operation does not exist on this transport (`open_stream` and
    /// `rebind` need QUIC).
    #[error("unsupported: {0}")]
    Unsupported(&'static str),
}

fn reason_string(connack: &ConnAck) -> String {
    match &connack.properties.reason_string {
        Some(reason) => format!(" ({reason})"),
        None => String::new(),
    }
}

impl ClientError {
    /// Whether the error means the connection is gone or could not be made
    /// in time, so trying again on a new connection makes sense (as
    /// opposed to a refusal or a bad argument).
    ///
    /// ```
    /// use quicmq_node::client::ClientError;
    /// assert!(ClientError::Closed(None).is_connection_loss());
    /// assert!(!ClientError::InvalidArgument("x".into()).is_connection_loss());
    /// ```
    pub fn is_connection_loss(&self) -> bool {
        matches!(
            self,
            ClientError::Closed(_)
                | ClientError::Io(_)
                | ClientError::Quic(_)
                | ClientError::Timeout(_)
        )
    }

    /// The CONNACK of a refused connection.
    pub fn connack(&self) -> Option<&ConnAck> {
        match self {
            ClientError::Refused(connack) => Some(connack),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use quicmq_proto::mqtt::{Properties, ReasonCode};

    use super::*;

    #[test]
    fn messages_name_the_reason() {
        let refused = ClientError::Refused(Box::new(ConnAck {
            session_present: false,
            reason_code: ReasonCode::NOT_AUTHORIZED,
            properties: Properties {
                reason_string: Some("no".into()),
                ..Properties::default()
            },
        }));
        assert_eq!(
            refused.to_string(),
            "connection refused by the server: Not authorized (0x87) (no)"
        );
        assert_eq!(
            refused.connack().map(|c| c.reason_code),
            Some(ReasonCode::NOT_AUTHORIZED)
        );
        assert_eq!(ClientError::Closed(None).to_string(), "connection closed");
        assert!(ClientError::Timeout("connect").connack().is_none());
    }
}
