//! Each packet type in both versions against bytes worked out by hand from
//! the specifications.

use bytes::Bytes;
use quicmq_proto::mqtt::*;

use crate::{decoded, encoded};

const V311: ProtocolVersion = ProtocolVersion::V311;
const V5: ProtocolVersion = ProtocolVersion::V5;

/// Encodes to exactly `wire` and decodes `wire` back to `packet`.
fn both_ways(packet: Packet, version: ProtocolVersion, wire: &[u8]) {
    assert_eq!(&encoded(&packet, version)[..], wire, "encoding {packet:?}");
    assert_eq!(decoded(wire, version), Ok(packet), "decoding {wire:02x?}");
}

fn connect(protocol: ProtocolVersion) -> Connect {
    Connect {
        protocol,
        clean_start: true,
        keep_alive: 60,
        client_id: "a".into(),
        will: None,
        username: None,
        password: None,
        properties: Properties::default(),
    }
}

#[test]
fn ping() {
    for v in [V311, V5] {
        both_ways(Packet::PingReq, v, &[0xC0, 0x00]);
        both_ways(Packet::PingResp, v, &[0xD0, 0x00]);
    }
}

#[test]
fn connect_minimal() {
    both_ways(
        Packet::Connect(Box::new(connect(V311))),
        V311,
        b"\x10\x0d\x00\x04MQTT\x04\x02\x00\x3c\x00\x01a",
    );
    both_ways(
        Packet::Connect(Box::new(connect(V5))),
        V5,
        b"\x10\x0e\x00\x04MQTT\x05\x02\x00\x3c\x00\x00\x01a",
    );
}

#[test]
fn connect_ignores_the_connection_version() {
    let wire = b"\x10\x0e\x00\x04MQTT\x05\x02\x00\x3c\x00\x00\x01a";
    assert_eq!(
        decoded(wire, V311),
        Ok(Packet::Connect(Box::new(connect(V5))))
    );
    // And is encoded with its own level.
    assert_eq!(
        &encoded(&Packet::Connect(Box::new(connect(V5))), V311)[..],
        wire
    );
}

#[test]
fn connect_full_v311() {
    let c = Connect {
        protocol: V311,
        clean_start: true,
        keep_alive: 10,
        client_id: "c".into(),
        will: Some(LastWill {
            topic: "w".into(),
            payload: Bytes::from_static(b"p"),
            qos: QoS::AtLeastOnce,
            retain: true,
            properties: Properties::default(),
        }),
        username: Some("u".into()),
        password: Some(Bytes::from_static(b"pw")),
        properties: Properties::default(),
    };
    both_ways(
        Packet::Connect(Box::new(c)),
        V311,
        b"\x10\x1a\x00\x04MQTT\x04\xee\x00\x0a\x00\x01c\x00\x01w\x00\x01p\x00\x01u\x00\x02pw",
    );
}

#[test]
fn connect_full_v5() {
    let c = Connect {
        protocol: V5,
        clean_start: false,
        keep_alive: 0,
        client_id: String::new(),
        will: Some(LastWill {
            topic: "w".into(),
            payload: Bytes::new(),
            qos: QoS::ExactlyOnce,
            retain: false,
            properties: Properties {
                will_delay_interval: Some(1),
                ..Properties::default()
            },
        }),
        username: None,
        // Password without user name is allowed in 5.0.
        password: Some(Bytes::from_static(b"x")),
        properties: Properties {
            receive_maximum: Some(10),
            ..Properties::default()
        },
    };
    both_ways(
        Packet::Connect(Box::new(c)),
        V5,
        &[
            0x10, 0x1e, 0x00, 0x04, b'M', b'Q', b'T', b'T', 0x05, 0x54, 0x00, 0x00, // header
            0x03, 0x21, 0x00, 0x0a, // receive maximum 10
            0x00, 0x00, // client id ""
            0x05, 0x18, 0x00, 0x00, 0x00, 0x01, // will delay 1
            0x00, 0x01, b'w', 0x00, 0x00, // will topic, payload
            0x00, 0x01, b'x', // password
        ],
    );
}

#[test]
fn connack() {
    let ok = ConnAck {
        session_present: true,
        reason_code: ReasonCode::SUCCESS,
        properties: Properties::default(),
    };
    both_ways(Packet::ConnAck(ok.clone()), V311, &[0x20, 0x02, 0x01, 0x00]);
    both_ways(Packet::ConnAck(ok), V5, &[0x20, 0x03, 0x01, 0x00, 0x00]);
    let refused = ConnAck {
        session_present: false,
        reason_code: ReasonCode::NOT_AUTHORIZED,
        properties: Properties::default(),
    };
    both_ways(
        Packet::ConnAck(refused.clone()),
        V311,
        &[0x20, 0x02, 0x00, 0x05],
    );
    both_ways(
        Packet::ConnAck(refused),
        V5,
        &[0x20, 0x03, 0x00, 0x87, 0x00],
    );
    // 5.0 codes without a 3.1.1 equivalent become "server unavailable".
    let busy = ConnAck {
        session_present: false,
        reason_code: ReasonCode::SERVER_BUSY,
        properties: Properties {
            receive_maximum: Some(10),
            ..Properties::default()
        },
    };
    assert_eq!(
        &encoded(&Packet::ConnAck(busy.clone()), V311)[..],
        &[0x20, 0x02, 0x00, 0x03]
    );
    both_ways(
        Packet::ConnAck(busy),
        V5,
        &[0x20, 0x06, 0x00, 0x89, 0x03, 0x21, 0x00, 0x0a],
    );
}

fn publish(qos: QoS, packet_id: Option<u16>) -> Publish {
    Publish {
        dup: false,
        qos,
        retain: false,
        topic: "a/b".into(),
        packet_id,
        properties: Properties::default(),
        payload: Bytes::from_static(b"hi"),
    }
}

#[test]
fn publish_v311() {
    both_ways(
        Packet::Publish(publish(QoS::AtMostOnce, None)),
        V311,
        b"\x30\x07\x00\x03a/bhi",
    );
    let mut p = publish(QoS::AtLeastOnce, Some(10));
    p.dup = true;
    p.retain = true;
    both_ways(Packet::Publish(p), V311, b"\x3b\x09\x00\x03a/b\x00\x0ahi");
    both_ways(
        Packet::Publish(publish(QoS::ExactlyOnce, Some(1))),
        V311,
        b"\x34\x09\x00\x03a/b\x00\x01hi",
    );
}

#[test]
fn publish_v5() {
    both_ways(
        Packet::Publish(publish(QoS::AtMostOnce, None)),
        V5,
        b"\x30\x08\x00\x03a/b\x00hi",
    );
    let mut p = publish(QoS::AtLeastOnce, Some(10));
    p.properties.topic_alias = Some(5);
    both_ways(
        Packet::Publish(p.clone()),
        V5,
        b"\x32\x0d\x00\x03a/b\x00\x0a\x03\x23\x00\x05hi",
    );
    // With the alias the topic may be empty.
    p.topic = String::new();
    both_ways(
        Packet::Publish(p),
        V5,
        b"\x32\x0a\x00\x00\x00\x0a\x03\x23\x00\x05hi",
    );
    // Several subscription identifiers, one of them multi-byte.
    let mut p = publish(QoS::AtMostOnce, None);
    p.payload = Bytes::new();
    p.properties.subscription_identifiers = vec![1, 200];
    both_ways(
        Packet::Publish(p),
        V5,
        b"\x30\x0b\x00\x03a/b\x05\x0b\x01\x0b\xc8\x01",
    );
}

#[test]
fn publish_v5_properties_dropped_for_v311() {
    let mut p = publish(QoS::AtMostOnce, None);
    p.properties.message_expiry_interval = Some(5);
    assert_eq!(
        &encoded(&Packet::Publish(p), V311)[..],
        b"\x30\x07\x00\x03a/bhi"
    );
}

#[test]
fn publish_responses() {
    type Wrap = fn(PublishResponse) -> Packet;
    let make: [(Wrap, u8); 4] = [
        (Packet::PubAck, 0x40),
        (Packet::PubRec, 0x50),
        (Packet::PubRel, 0x62),
        (Packet::PubComp, 0x70),
    ];
    for (wrap, first) in make {
        for v in [V311, V5] {
            both_ways(
                wrap(PublishResponse::success(10)),
                v,
                &[first, 0x02, 0x00, 0x0a],
            );
        }
        let failed = PublishResponse {
            packet_id: 10,
            reason_code: ReasonCode(0x10),
            properties: Properties::default(),
        };
        both_ways(wrap(failed.clone()), V5, &[first, 0x03, 0x00, 0x0a, 0x10]);
        // 3.1.1 has no reason codes.
        assert_eq!(
            &encoded(&wrap(failed), V311)[..],
            &[first, 0x02, 0x00, 0x0a]
        );
        let with_reason = PublishResponse {
            packet_id: 10,
            reason_code: ReasonCode::SUCCESS,
            properties: Properties {
                reason_string: Some("x".into()),
                ..Properties::default()
            },
        };
        both_ways(
            wrap(with_reason),
            V5,
            &[first, 0x08, 0x00, 0x0a, 0x00, 0x04, 0x1f, 0x00, 0x01, b'x'],
        );
        // Long forms with nothing in them decode to the short form.
        assert_eq!(
            decoded(&[first, 0x04, 0x00, 0x0a, 0x00, 0x00], V5),
            Ok(wrap(PublishResponse::success(10)))
        );
    }
}

#[test]
fn subscribe() {
    let s = Subscribe {
        packet_id: 1,
        filters: vec![("a/b".into(), SubscriptionOptions::new(QoS::AtLeastOnce))],
        properties: Properties::default(),
    };
    both_ways(
        Packet::Subscribe(s.clone()),
        V311,
        b"\x82\x08\x00\x01\x00\x03a/b\x01",
    );
    both_ways(
        Packet::Subscribe(s),
        V5,
        b"\x82\x09\x00\x01\x00\x00\x03a/b\x01",
    );
    let s = Subscribe {
        packet_id: 1,
        filters: vec![(
            "a/b".into(),
            SubscriptionOptions {
                qos: QoS::ExactlyOnce,
                no_local: true,
                retain_as_published: true,
                retain_handling: RetainHandling::DoNotSend,
            },
        )],
        properties: Properties {
            subscription_identifiers: vec![7],
            ..Properties::default()
        },
    };
    both_ways(
        Packet::Subscribe(s.clone()),
        V5,
        b"\x82\x0b\x00\x01\x02\x0b\x07\x00\x03a/b\x2e",
    );
    // 3.1.1 keeps only the QoS.
    assert_eq!(
        &encoded(&Packet::Subscribe(s), V311)[..],
        b"\x82\x08\x00\x01\x00\x03a/b\x02"
    );
}

#[test]
fn subscribe_does_not_validate_filters() {
    let wire = b"\x82\x08\x00\x01\x00\x03a#b\x00";
    let Ok(Packet::Subscribe(s)) = decoded(wire, V311) else {
        panic!("SUBSCRIBE expected");
    };
    assert_eq!(s.filters[0].0, "a#b");
}

#[test]
fn suback() {
    let s = SubAck {
        packet_id: 1,
        reason_codes: vec![ReasonCode::GRANTED_QOS_0, ReasonCode::UNSPECIFIED_ERROR],
        properties: Properties::default(),
    };
    both_ways(
        Packet::SubAck(s.clone()),
        V311,
        &[0x90, 0x04, 0x00, 0x01, 0x00, 0x80],
    );
    both_ways(
        Packet::SubAck(s),
        V5,
        &[0x90, 0x05, 0x00, 0x01, 0x00, 0x00, 0x80],
    );
    let s = SubAck {
        packet_id: 1,
        reason_codes: vec![ReasonCode::GRANTED_QOS_2, ReasonCode::NOT_AUTHORIZED],
        properties: Properties::default(),
    };
    assert_eq!(
        &encoded(&Packet::SubAck(s.clone()), V311)[..],
        &[0x90, 0x04, 0x00, 0x01, 0x02, 0x80]
    );
    both_ways(
        Packet::SubAck(s),
        V5,
        &[0x90, 0x05, 0x00, 0x01, 0x00, 0x02, 0x87],
    );
}

#[test]
fn unsubscribe() {
    let u = Unsubscribe {
        packet_id: 2,
        filters: vec!["a/b".into(), "c".into()],
        properties: Properties::default(),
    };
    both_ways(
        Packet::Unsubscribe(u.clone()),
        V311,
        b"\xa2\x0a\x00\x02\x00\x03a/b\x00\x01c",
    );
    both_ways(
        Packet::Unsubscribe(u),
        V5,
        b"\xa2\x0b\x00\x02\x00\x00\x03a/b\x00\x01c",
    );
}

#[test]
fn unsuback() {
    let v311 = UnsubAck {
        packet_id: 2,
        reason_codes: Vec::new(),
        properties: Properties::default(),
    };
    both_ways(Packet::UnsubAck(v311), V311, &[0xB0, 0x02, 0x00, 0x02]);
    let v5 = UnsubAck {
        packet_id: 2,
        reason_codes: vec![ReasonCode::NO_SUBSCRIPTION_EXISTED],
        properties: Properties::default(),
    };
    both_ways(
        Packet::UnsubAck(v5.clone()),
        V5,
        &[0xB0, 0x04, 0x00, 0x02, 0x00, 0x11],
    );
    assert_eq!(
        &encoded(&Packet::UnsubAck(v5), V311)[..],
        &[0xB0, 0x02, 0x00, 0x02]
    );
}

#[test]
fn disconnect() {
    let normal = Disconnect::new(ReasonCode::NORMAL_DISCONNECTION);
    both_ways(Packet::Disconnect(normal.clone()), V311, &[0xE0, 0x00]);
    both_ways(Packet::Disconnect(normal), V5, &[0xE0, 0x00]);
    let taken = Disconnect::new(ReasonCode::SESSION_TAKEN_OVER);
    both_ways(Packet::Disconnect(taken.clone()), V5, &[0xE0, 0x01, 0x8E]);
    assert_eq!(
        &encoded(&Packet::Disconnect(taken), V311)[..],
        &[0xE0, 0x00]
    );
    let expiry = Disconnect {
        reason_code: ReasonCode::NORMAL_DISCONNECTION,
        properties: Properties {
            session_expiry_interval: Some(0),
            ..Properties::default()
        },
    };
    both_ways(
        Packet::Disconnect(expiry),
        V5,
        &[0xE0, 0x07, 0x00, 0x05, 0x11, 0x00, 0x00, 0x00, 0x00],
    );
}

#[test]
fn auth() {
    both_ways(
        Packet::Auth(Auth {
            reason_code: ReasonCode::SUCCESS,
            properties: Properties::default(),
        }),
        V5,
        &[0xF0, 0x00],
    );
    both_ways(
        Packet::Auth(Auth {
            reason_code: ReasonCode::CONTINUE_AUTHENTICATION,
            properties: Properties {
                authentication_method: Some("m".into()),
                ..Properties::default()
            },
        }),
        V5,
        &[0xF0, 0x06, 0x18, 0x04, 0x15, 0x00, 0x01, b'm'],
    );
}
