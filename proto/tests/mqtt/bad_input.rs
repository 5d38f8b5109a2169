//! Bytes that are not a valid packet: each gives one exact error and the
//! reason code a server sends for it.

use bytes::BytesMut;
use quicmq_proto::mqtt::*;

use crate::decoded;

const V311: ProtocolVersion = ProtocolVersion::V311;
const V5: ProtocolVersion = ProtocolVersion::V5;

const SHORT: &str = "packet ends inside a field";
const TRAILING: &str = "bytes after the last field";
const FLAGS_0000: &str = "fixed header flags must be 0000";
const FLAGS_0010: &str = "fixed header flags must be 0010";
const NOT_ALLOWED: &str = "property not allowed in this packet";
const TWICE: &str = "property included more than once";
const WILDCARD: &str = "wildcard in topic name";
const ID_0: &str = "packet identifier 0";

/// A packet with the right remaining length for `body`.
fn pkt(first: u8, body: &[u8]) -> Vec<u8> {
    assert!(body.len() < 128);
    let mut wire = vec![first, body.len() as u8];
    wire.extend_from_slice(body);
    wire
}

/// A CONNECT body: protocol name, `level`, `flags`, keep alive 60, then `rest`.
fn connect(level: u8, flags: u8, rest: &[u8]) -> Vec<u8> {
    let mut body = b"\x00\x04MQTT".to_vec();
    body.extend_from_slice(&[level, flags, 0x00, 0x3c]);
    body.extend_from_slice(rest);
    pkt(0x10, &body)
}

fn error(wire: &[u8], version: ProtocolVersion) -> DecodeError {
    let mut buf = BytesMut::from(wire);
    match decode(&mut buf, version, 1 << 20) {
        Err(e) => e,
        Ok(p) => panic!("{wire:02x?} decoded to {p:?}"),
    }
}

fn malformed(wire: &[u8], version: ProtocolVersion, why: &'static str) {
    let e = error(wire, version);
    assert_eq!(e, DecodeError::Malformed(why), "{wire:02x?} as {version:?}");
    assert_eq!(e.reason_code(), ReasonCode::MALFORMED_PACKET);
}

fn protocol(wire: &[u8], version: ProtocolVersion, why: &'static str) {
    let e = error(wire, version);
    assert_eq!(e, DecodeError::Protocol(why), "{wire:02x?} as {version:?}");
    assert_eq!(e.reason_code(), ReasonCode::PROTOCOL_ERROR);
}

fn topic_name_invalid(wire: &[u8], version: ProtocolVersion, why: &'static str) {
    let e = error(wire, version);
    assert_eq!(
        e,
        DecodeError::TopicNameInvalid(why),
        "{wire:02x?} as {version:?}"
    );
    assert_eq!(e.reason_code(), ReasonCode::TOPIC_NAME_INVALID);
}

fn both(check: fn(&[u8], ProtocolVersion, &'static str), wire: &[u8], why: &'static str) {
    check(wire, V311, why);
    check(wire, V5, why);
}

#[test]
fn truncated_packets_wait() {
    let wire = connect(4, 0x02, b"\x00\x01a");
    for n in 0..wire.len() {
        let mut buf = BytesMut::from(&wire[..n]);
        assert_eq!(decode(&mut buf, V311, 1 << 20), Ok(None), "prefix of {n}");
        assert_eq!(buf.len(), n);
    }
    assert!(decoded(&wire, V311).is_ok());
}

#[test]
fn body_shorter_than_fields() {
    // CONNECT whose client identifier runs past the remaining length.
    malformed(&connect(4, 0x02, b"\x00\x01"), V311, SHORT);
    // CONNECT cut inside the keep alive.
    malformed(b"\x10\x09\x00\x04MQTT\x04\x02\x00", V311, SHORT);
    // PUBLISH whose topic length runs past the packet.
    both(malformed, &pkt(0x30, b"\x00\x05a"), SHORT);
    both(malformed, &pkt(0x30, b"\x00"), SHORT);
    // QoS 1 PUBLISH without room for the packet identifier.
    both(malformed, &pkt(0x32, b"\x00\x02ab"), SHORT);
    // SUBSCRIBE filter without its options byte.
    both(malformed, &pkt(0x82, b"\x00\x01\x00\x01a"), SHORT);
    // PUBACK with a 1-byte packet identifier.
    both(malformed, &pkt(0x40, b"\x00"), SHORT);
    // CONNACK without the return code.
    both(malformed, &pkt(0x20, b"\x00"), SHORT);
    // 5.0 CONNACK without the property length.
    malformed(&pkt(0x20, b"\x00\x00"), V5, SHORT);
    // 5.0 property block longer than the packet.
    malformed(&pkt(0x30, b"\x00\x03a/b\x09\x01"), V5, SHORT);
    // A property value cut short inside its block.
    malformed(&pkt(0x30, b"\x00\x03a/b\x02\x02\x00"), V5, SHORT);
}

#[test]
fn body_longer_than_fields() {
    both(malformed, &pkt(0xC0, b"\x00"), TRAILING);
    both(malformed, &pkt(0xD0, b"\x00"), TRAILING);
    malformed(&pkt(0x40, b"\x00\x01\x00"), V311, TRAILING);
    malformed(&pkt(0x62, b"\x00\x01\x00"), V311, TRAILING);
    malformed(&pkt(0xE0, b"\x00"), V311, TRAILING);
    malformed(&pkt(0xB0, b"\x00\x01\x00"), V311, TRAILING);
    malformed(&pkt(0x20, b"\x00\x00\x00"), V311, TRAILING);
    malformed(&pkt(0x20, b"\x00\x00\x00\x00"), V5, TRAILING);
    // CONNECT with a byte after the client identifier.
    malformed(&connect(4, 0x02, b"\x00\x01ab"), V311, TRAILING);
    // 5.0 PUBACK with (empty) properties followed by garbage.
    malformed(&pkt(0x40, b"\x00\x01\x00\x00\xFF"), V5, TRAILING);
    // 5.0 DISCONNECT likewise.
    malformed(&pkt(0xE0, b"\x00\x00\xFF"), V5, TRAILING);
}

#[test]
fn invalid_utf8_and_nul() {
    const UTF8: &str = "string is not valid UTF-8";
    const NUL: &str = "string contains U+0000";
    both(malformed, &pkt(0x30, b"\x00\x02\xC3\x28"), UTF8);
    both(malformed, &pkt(0x30, b"\x00\x02a\x00"), NUL);
    // In a client identifier.
    malformed(&connect(4, 0x02, b"\x00\x01\xFF"), V311, UTF8);
    // In a subscription filter.
    malformed(&pkt(0x82, b"\x00\x01\x00\x01\x00\x00"), V311, NUL);
    malformed(&pkt(0x82, b"\x00\x01\x00\x00\x01\x00\x00"), V5, NUL);
    // In a user property name.
    malformed(
        &pkt(0x30, b"\x00\x01a\x07\x26\x00\x01\x00\x00\x01bz"),
        V5,
        NUL,
    );
    // In a user name.
    malformed(&connect(4, 0x82, b"\x00\x01a\x00\x01\xC0"), V311, UTF8);
}

#[test]
fn reserved_fixed_header_flags() {
    // Reported from the first byte alone.
    for first in [0x11, 0x21, 0x41, 0x58, 0x71, 0x91, 0xB4, 0xC1, 0xD2, 0xE8] {
        both(malformed, &[first], FLAGS_0000);
    }
    for first in [0x60, 0x63, 0x80, 0x83, 0xA0, 0xAA] {
        both(malformed, &[first], FLAGS_0010);
    }
    malformed(&[0xF1], V5, FLAGS_0000);
}

#[test]
fn packet_type_0_and_auth_in_v311() {
    both(malformed, b"\x00\x00", "packet type 0");
    malformed(b"\xF0\x00", V311, "AUTH in MQTT 3.1.1");
}

#[test]
fn qos_3_and_dup_on_qos_0() {
    both(
        malformed,
        &pkt(0x36, b"\x00\x03a/b\x00\x01"),
        "PUBLISH with QoS 3",
    );
    both(
        malformed,
        &pkt(0x38, b"\x00\x03a/b"),
        "PUBLISH with QoS 0 and DUP set",
    );
    // Subscription options with QoS 3.
    malformed(
        &pkt(0x82, b"\x00\x01\x00\x01a\x03"),
        V311,
        "subscription with QoS 3",
    );
    malformed(
        &pkt(0x82, b"\x00\x01\x00\x00\x01a\x03"),
        V5,
        "subscription with QoS 3",
    );
    // Will QoS 3.
    malformed(
        &connect(4, 0x1E, b"\x00\x01a\x00\x01w\x00\x00"),
        V311,
        "will QoS 3",
    );
}

#[test]
fn five_byte_varint() {
    const LONG: &str = "variable byte integer longer than 4 bytes";
    both(malformed, b"\x30\xFF\xFF\xFF\xFF\x01", LONG);
    // The 4th byte with a continuation bit is enough to tell.
    both(malformed, b"\x30\x80\x80\x80\x80", LONG);
    // In a property length.
    malformed(&pkt(0x30, b"\x00\x01a\x80\x80\x80\x80\x01\x00"), V5, LONG);
    // In a subscription identifier.
    malformed(
        &pkt(0x30, b"\x00\x01a\x06\x0b\x80\x80\x80\x80\x01"),
        V5,
        LONG,
    );
}

#[test]
fn oversize_before_body() {
    let mut buf = BytesMut::from(&b"\x30\xFF\xFF\xFF\x7F"[..]);
    let e = decode(&mut buf, V5, 1 << 20).unwrap_err();
    assert_eq!(
        e,
        DecodeError::PacketTooLarge {
            size: 268_435_460,
            max: 1 << 20
        }
    );
    assert_eq!(e.reason_code(), ReasonCode::PACKET_TOO_LARGE);
}

#[test]
fn connect_flags() {
    both(
        malformed,
        &connect(4, 0x03, b"\x00\x01a"),
        "CONNECT reserved flag set",
    );
    malformed(
        &connect(5, 0x03, b"\x00\x00\x01a"),
        V5,
        "CONNECT reserved flag set",
    );
    const NO_WILL: &str = "will QoS or retain without a will";
    malformed(&connect(4, 0x22, b"\x00\x01a"), V311, NO_WILL);
    malformed(&connect(4, 0x0A, b"\x00\x01a"), V311, NO_WILL);
    malformed(&connect(5, 0x12, b"\x00\x00\x01a"), V5, NO_WILL);
    // 3.1.1 password without user name.
    malformed(
        &connect(4, 0x42, b"\x00\x01a\x00\x01p"),
        V311,
        "password without user name",
    );
    // 5.0 allows it.
    let Ok(Packet::Connect(c)) = decoded(&connect(5, 0x42, b"\x00\x00\x01a\x00\x01p"), V5) else {
        panic!("CONNECT expected");
    };
    assert_eq!(c.username, None);
    assert_eq!(c.password.as_deref(), Some(&b"p"[..]));
    // Flags promise a user name that is not there.
    malformed(&connect(4, 0x82, b"\x00\x01a"), V311, SHORT);
}

#[test]
fn unsupported_protocol() {
    let mut mqisdp = b"\x00\x06MQIsdp\x03\x02\x00\x3c".to_vec();
    mqisdp.extend_from_slice(b"\x00\x01a");
    let cases = [
        (pkt(0x10, &mqisdp), 3),
        (connect(6, 0x02, b"\x00\x01a"), 6),
        (connect(3, 0x02, b"\x00\x01a"), 3),
        (pkt(0x10, b"\x00\x04MQTX\x04\x02\x00\x3c\x00\x01a"), 4),
        (
            pkt(0x10, b"\x00\x04mqtt\x05\x02\x00\x3c\x00\x00\x00\x01a"),
            5,
        ),
    ];
    for (wire, level) in cases {
        for v in [V311, V5] {
            let e = error(&wire, v);
            assert_eq!(e, DecodeError::UnsupportedProtocolVersion(level));
            assert_eq!(e.reason_code(), ReasonCode::UNSUPPORTED_PROTOCOL_VERSION);
        }
    }
}

#[test]
fn topic_alias_0() {
    let e = error(&pkt(0x30, b"\x00\x01a\x03\x23\x00\x00hi"), V5);
    assert_eq!(e, DecodeError::TopicAliasInvalid("topic alias 0"));
    assert_eq!(e.reason_code(), ReasonCode::TOPIC_ALIAS_INVALID);
}

#[test]
fn property_not_allowed() {
    // Topic alias in a PUBACK.
    malformed(&pkt(0x40, b"\x00\x01\x00\x03\x23\x00\x01"), V5, NOT_ALLOWED);
    // Will delay interval among the CONNECT properties.
    malformed(
        &connect(5, 0x02, b"\x05\x18\x00\x00\x00\x01\x00\x01a"),
        V5,
        NOT_ALLOWED,
    );
    // Session expiry among the will properties.
    malformed(
        &connect(
            5,
            0x06,
            b"\x00\x00\x01a\x05\x11\x00\x00\x00\x01\x00\x01w\x00\x00",
        ),
        V5,
        NOT_ALLOWED,
    );
    // Reason string in an UNSUBSCRIBE.
    malformed(
        &pkt(0xA2, b"\x00\x01\x04\x1f\x00\x01x\x00\x01a"),
        V5,
        NOT_ALLOWED,
    );
    // Subscription identifier in a CONNACK.
    malformed(&pkt(0x20, b"\x00\x00\x02\x0b\x01"), V5, NOT_ALLOWED);
    // Maximum QoS in a CONNECT.
    malformed(&connect(5, 0x02, b"\x02\x24\x01\x00\x01a"), V5, NOT_ALLOWED);
    // Unknown identifiers, one byte or multi-byte.
    malformed(&pkt(0x30, b"\x00\x01a\x02\x7f\x00"), V5, "unknown property");
    malformed(
        &pkt(0x30, b"\x00\x01a\x03\x80\x01\x00"),
        V5,
        "unknown property",
    );
}

#[test]
fn duplicate_property() {
    // Message expiry interval twice.
    protocol(
        &pkt(
            0x30,
            b"\x00\x01a\x0a\x02\x00\x00\x00\x01\x02\x00\x00\x00\x02z",
        ),
        V5,
        TWICE,
    );
    // Topic alias twice.
    protocol(
        &pkt(0x30, b"\x00\x01a\x06\x23\x00\x01\x23\x00\x01"),
        V5,
        TWICE,
    );
    // Subscription identifier twice in a SUBSCRIBE.
    protocol(
        &pkt(0x82, b"\x00\x01\x04\x0b\x01\x0b\x02\x00\x01a\x00"),
        V5,
        TWICE,
    );
    // Twice is fine in a PUBLISH, and user properties repeat anywhere.
    assert!(decoded(&pkt(0x30, b"\x00\x01a\x04\x0b\x01\x0b\x02"), V5).is_ok());
    assert!(decoded(
        &pkt(0xE0, b"\x00\x0a\x26\x00\x00\x00\x00\x26\x00\x00\x00\x00"),
        V5
    )
    .is_ok());
}

#[test]
fn property_values() {
    const ZERO_OR_ONE: &str = "property value must be 0 or 1";
    protocol(
        &connect(5, 0x02, b"\x03\x21\x00\x00\x00\x01a"),
        V5,
        "receive maximum 0",
    );
    protocol(
        &pkt(0x20, b"\x00\x00\x05\x27\x00\x00\x00\x00"),
        V5,
        "maximum packet size 0",
    );
    protocol(&pkt(0x20, b"\x00\x00\x02\x24\x02"), V5, ZERO_OR_ONE);
    protocol(&pkt(0x20, b"\x00\x00\x02\x25\x02"), V5, ZERO_OR_ONE);
    protocol(&pkt(0x30, b"\x00\x01a\x02\x01\x02"), V5, ZERO_OR_ONE);
    protocol(&connect(5, 0x02, b"\x02\x17\x02\x00\x01a"), V5, ZERO_OR_ONE);
    protocol(
        &pkt(0x82, b"\x00\x01\x02\x0b\x00\x00\x01a\x00"),
        V5,
        "subscription identifier 0",
    );
}

#[test]
fn publish_topics() {
    both(topic_name_invalid, &pkt(0x30, b"\x00\x03a/+"), WILDCARD);
    both(topic_name_invalid, &pkt(0x30, b"\x00\x03a/#"), WILDCARD);
    topic_name_invalid(&pkt(0x30, b"\x00\x01#\x00"), V5, WILDCARD);
    // Empty topic: never in 3.1.1, only with an alias in 5.0.
    const EMPTY: &str = "empty topic name without a topic alias";
    topic_name_invalid(&pkt(0x30, b"\x00\x00"), V311, EMPTY);
    topic_name_invalid(&pkt(0x30, b"\x00\x00\x00"), V5, EMPTY);
    assert!(decoded(&pkt(0x30, b"\x00\x00\x03\x23\x00\x01"), V5).is_ok());
    // Will topic with a wildcard, or empty.
    topic_name_invalid(
        &connect(4, 0x06, b"\x00\x01a\x00\x01#\x00\x00"),
        V311,
        WILDCARD,
    );
    topic_name_invalid(
        &connect(4, 0x06, b"\x00\x01a\x00\x00\x00\x00"),
        V311,
        "empty topic name",
    );
}

#[test]
fn packet_id_0() {
    both(protocol, &pkt(0x32, b"\x00\x03a/b\x00\x00"), ID_0);
    for first in [0x40, 0x50, 0x62, 0x70] {
        both(protocol, &[first, 0x02, 0x00, 0x00], ID_0);
    }
    both(protocol, &pkt(0x82, b"\x00\x00\x00\x00\x01a\x00"), ID_0);
    both(protocol, &pkt(0xA2, b"\x00\x00\x00\x00\x01a"), ID_0);
    both(protocol, &pkt(0x90, b"\x00\x00\x00\x00"), ID_0);
    protocol(&pkt(0xB0, b"\x00\x00"), V311, ID_0);
}

#[test]
fn subscribe_rules() {
    protocol(
        &pkt(0x82, b"\x00\x01"),
        V311,
        "SUBSCRIBE without topic filters",
    );
    protocol(
        &pkt(0x82, b"\x00\x01\x00"),
        V5,
        "SUBSCRIBE without topic filters",
    );
    protocol(
        &pkt(0xA2, b"\x00\x01"),
        V311,
        "UNSUBSCRIBE without topic filters",
    );
    protocol(
        &pkt(0xA2, b"\x00\x01\x00"),
        V5,
        "UNSUBSCRIBE without topic filters",
    );
    const RESERVED: &str = "reserved subscription option bits set";
    malformed(&pkt(0x82, b"\x00\x01\x00\x00\x01a\x40"), V5, RESERVED);
    malformed(&pkt(0x82, b"\x00\x01\x00\x00\x01a\x80"), V5, RESERVED);
    // 3.1.1 options carry only the QoS.
    malformed(&pkt(0x82, b"\x00\x01\x00\x01a\x04"), V311, RESERVED);
    malformed(&pkt(0x82, b"\x00\x01\x00\x01a\x20"), V311, RESERVED);
    protocol(
        &pkt(0x82, b"\x00\x01\x00\x00\x01a\x30"),
        V5,
        "retain handling 3",
    );
    // A bad second filter spoils the packet.
    malformed(
        &pkt(0x82, b"\x00\x01\x00\x00\x01a\x00\x00\x01b\xC0"),
        V5,
        RESERVED,
    );
    protocol(&pkt(0x90, b"\x00\x01"), V311, "SUBACK without reason codes");
    protocol(
        &pkt(0xB0, b"\x00\x01\x00"),
        V5,
        "UNSUBACK without reason codes",
    );
}

#[test]
fn connack_reserved_flags() {
    both(
        malformed,
        &pkt(0x20, b"\x02\x00"),
        "CONNACK reserved flags set",
    );
}

#[test]
fn suback_reserved_311_return_codes() {
    for code in [0x03u8, 0x4d, 0x82, 0xff] {
        malformed(
            &pkt(0x90, &[0x00, 0x01, 0x00, code]),
            ProtocolVersion::V311,
            "SUBACK with a reserved 3.1.1 return code",
        );
    }
    // The same codes are 5.0 reason codes (properties length 0 first).
    let mut buf = BytesMut::from(&pkt(0x90, &[0x00, 0x01, 0x00, 0x87])[..]);
    assert!(matches!(
        decode(&mut buf, ProtocolVersion::V5, 1 << 20),
        Ok(Some(Packet::SubAck(_)))
    ));
}

#[test]
fn connack_reserved_311_return_codes() {
    for code in [6u8, 0x80, 0xff] {
        malformed(
            &pkt(0x20, &[0x00, code]),
            ProtocolVersion::V311,
            "CONNACK with a reserved 3.1.1 return code",
        );
    }
}
