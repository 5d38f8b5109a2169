//! MQTT 5.0 properties on the wire (§2.2.2): a variable byte integer length
//! followed by identifier/value pairs, each identifier valid only in some
//! packets (§2.2.2.2).

mod decode;
mod encode;

pub(crate) use decode::read;
pub(crate) use encode::{block_len, measure, write};

/// Where a property block appears; each is one bit of a property's mask.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Context {
    Connect = 1 << 0,
    ConnAck = 1 << 1,
    Publish = 1 << 2,
    /// PUBACK, PUBREC, PUBREL and PUBCOMP.
    PubResponse = 1 << 3,
    Subscribe = 1 << 4,
    SubAck = 1 << 5,
    Unsubscribe = 1 << 6,
    UnsubAck = 1 << 7,
    Disconnect = 1 << 8,
    Auth = 1 << 9,
    Will = 1 << 10,
}

const CONNECT: u16 = Context::Connect as u16;
const CONNACK: u16 = Context::ConnAck as u16;
const PUBLISH: u16 = Context::Publish as u16;
const PUBRESP: u16 = Context::PubResponse as u16;
const SUBSCRIBE: u16 = Context::Subscribe as u16;
const SUBACK: u16 = Context::SubAck as u16;
const UNSUBACK: u16 = Context::UnsubAck as u16;
const DISCONNECT: u16 = Context::Disconnect as u16;
const AUTH: u16 = Context::Auth as u16;
const WILL: u16 = Context::Will as u16;
const ALL: u16 = 0x07FF;

// Property identifiers (§2.2.2.2).
const PAYLOAD_FORMAT_INDICATOR: u8 = 0x01;
const MESSAGE_EXPIRY_INTERVAL: u8 = 0x02;
const CONTENT_TYPE: u8 = 0x03;
const RESPONSE_TOPIC: u8 = 0x08;
const CORRELATION_DATA: u8 = 0x09;
const SUBSCRIPTION_IDENTIFIER: u8 = 0x0B;
const SESSION_EXPIRY_INTERVAL: u8 = 0x11;
const ASSIGNED_CLIENT_IDENTIFIER: u8 = 0x12;
const SERVER_KEEP_ALIVE: u8 = 0x13;
const AUTHENTICATION_METHOD: u8 = 0x15;
const AUTHENTICATION_DATA: u8 = 0x16;
const REQUEST_PROBLEM_INFORMATION: u8 = 0x17;
const WILL_DELAY_INTERVAL: u8 = 0x18;
const REQUEST_RESPONSE_INFORMATION: u8 = 0x19;
const RESPONSE_INFORMATION: u8 = 0x1A;
const SERVER_REFERENCE: u8 = 0x1C;
const REASON_STRING: u8 = 0x1F;
const RECEIVE_MAXIMUM: u8 = 0x21;
const TOPIC_ALIAS_MAXIMUM: u8 = 0x22;
const TOPIC_ALIAS: u8 = 0x23;
const MAXIMUM_QOS: u8 = 0x24;
const RETAIN_AVAILABLE: u8 = 0x25;
const USER_PROPERTY: u8 = 0x26;
const MAXIMUM_PACKET_SIZE: u8 = 0x27;
const WILDCARD_SUBSCRIPTION_AVAILABLE: u8 = 0x28;
const SUBSCRIPTION_IDENTIFIER_AVAILABLE: u8 = 0x29;
const SHARED_SUBSCRIPTION_AVAILABLE: u8 = 0x2A;

/// The packets a property identifier may appear in; 0 = unknown identifier.
fn allowed_in(id: u8) -> u16 {
    match id {
        PAYLOAD_FORMAT_INDICATOR
        | MESSAGE_EXPIRY_INTERVAL
        | CONTENT_TYPE
        | RESPONSE_TOPIC
        | CORRELATION_DATA => PUBLISH | WILL,
        SUBSCRIPTION_IDENTIFIER => PUBLISH | SUBSCRIBE,
        SESSION_EXPIRY_INTERVAL => CONNECT | CONNACK | DISCONNECT,
        ASSIGNED_CLIENT_IDENTIFIER | SERVER_KEEP_ALIVE | RESPONSE_INFORMATION => CONNACK,
        AUTHENTICATION_METHOD | AUTHENTICATION_DATA => CONNECT | CONNACK | AUTH,
        REQUEST_PROBLEM_INFORMATION | REQUEST_RESPONSE_INFORMATION => CONNECT,
        WILL_DELAY_INTERVAL => WILL,
        SERVER_REFERENCE => CONNACK | DISCONNECT,
        REASON_STRING => CONNACK | PUBRESP | SUBACK | UNSUBACK | DISCONNECT | AUTH,
        RECEIVE_MAXIMUM | TOPIC_ALIAS_MAXIMUM | MAXIMUM_PACKET_SIZE => CONNECT | CONNACK,
        TOPIC_ALIAS => PUBLISH,
        MAXIMUM_QOS
        | RETAIN_AVAILABLE
        | WILDCARD_SUBSCRIPTION_AVAILABLE
        | SUBSCRIPTION_IDENTIFIER_AVAILABLE
        | SHARED_SUBSCRIPTION_AVAILABLE => CONNACK,
        USER_PROPERTY => ALL,
        _ => 0,
    }
}

fn is_allowed(id: u8, ctx: Context) -> bool {
    allowed_in(id) & ctx as u16 != 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mqtt::primitives::Reader;
    use crate::mqtt::{DecodeError, EncodeError, Properties};
    use bytes::{Bytes, BytesMut};

    fn decode(bytes: &'static [u8], ctx: Context) -> Result<Properties, DecodeError> {
        let mut r = Reader::new(Bytes::from_static(bytes));
        let p = read(&mut r, ctx)?;
        r.finish()?;
        Ok(p)
    }

    #[test]
    fn empty_block() {
        assert_eq!(decode(&[0], Context::Connect), Ok(Properties::default()));
        let mut out = BytesMut::new();
        let len = measure(&Properties::default(), Context::Publish).unwrap();
        write(&mut out, &Properties::default(), len);
        assert_eq!(&out[..], &[0]);
    }

    #[test]
    fn block_longer_than_packet_is_malformed() {
        assert!(matches!(
            decode(&[5, 0x01, 0], Context::Publish),
            Err(DecodeError::Malformed(_))
        ));
    }

    #[test]
    fn allowed_table() {
        assert!(is_allowed(TOPIC_ALIAS, Context::Publish));
        assert!(!is_allowed(TOPIC_ALIAS, Context::Will));
        assert!(is_allowed(WILL_DELAY_INTERVAL, Context::Will));
        assert!(!is_allowed(WILL_DELAY_INTERVAL, Context::Connect));
        assert!(is_allowed(USER_PROPERTY, Context::Unsubscribe));
        assert!(!is_allowed(REASON_STRING, Context::Unsubscribe));
        assert!(!is_allowed(0x00, Context::Connect));
        assert!(!is_allowed(0x2B, Context::ConnAck));
    }

    #[test]
    fn value_rules() {
        let protocol = |b| matches!(decode(b, Context::ConnAck), Err(DecodeError::Protocol(_)));
        assert!(protocol(&[3, 0x21, 0, 0]));
        assert!(protocol(&[5, 0x27, 0, 0, 0, 0]));
        assert!(protocol(&[2, 0x24, 2]));
        assert!(protocol(&[2, 0x25, 2]));
        assert!(protocol(&[2, 0x28, 2]));
        assert!(protocol(&[2, 0x29, 2]));
        assert!(protocol(&[2, 0x2A, 2]));
        assert!(protocol(&[4, 0x24, 1, 0x24, 1]));
        assert!(matches!(
            decode(&[2, 0x01, 2], Context::Publish),
            Err(DecodeError::Protocol(_))
        ));
        assert!(matches!(
            decode(&[2, 0x17, 2], Context::Connect),
            Err(DecodeError::Protocol(_))
        ));
        assert!(matches!(
            decode(&[2, 0x19, 2], Context::Connect),
            Err(DecodeError::Protocol(_))
        ));
        assert!(matches!(
            decode(&[3, 0x23, 0, 0], Context::Publish),
            Err(DecodeError::TopicAliasInvalid(_))
        ));
        assert!(matches!(
            decode(&[2, 0x0B, 0], Context::Subscribe),
            Err(DecodeError::Protocol(_))
        ));
    }

    #[test]
    fn repetition() {
        let two_ids: &[u8] = &[4, 0x0B, 1, 0x0B, 2];
        assert_eq!(
            decode(two_ids, Context::Publish).map(|p| p.subscription_identifiers),
            Ok(vec![1, 2])
        );
        assert!(matches!(
            decode(two_ids, Context::Subscribe),
            Err(DecodeError::Protocol(_))
        ));
        let users: &[u8] = &[12, 0x26, 0, 1, b'a', 0, 0, 0x26, 0, 1, b'a', 0, 0];
        assert_eq!(
            decode(users, Context::Auth).map(|p| p.user_properties.len()),
            Ok(2)
        );
    }

    #[test]
    fn measure_refuses_foreign_properties() {
        let p = Properties {
            topic_alias: Some(1),
            ..Properties::default()
        };
        assert!(measure(&p, Context::Publish).is_ok());
        assert!(matches!(
            measure(&p, Context::Connect),
            Err(EncodeError::InvalidField(_))
        ));
        let p = Properties {
            subscription_identifiers: vec![1, 2],
            ..Properties::default()
        };
        assert!(measure(&p, Context::Publish).is_ok());
        assert!(measure(&p, Context::Subscribe).is_err());
    }
}
