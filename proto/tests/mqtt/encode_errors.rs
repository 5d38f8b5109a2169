//! Packets that cannot be encoded: the error, and nothing written.

use bytes::{Bytes, BytesMut};
use quicmq_proto::mqtt::*;

fn refused(packet: &Packet, version: ProtocolVersion) -> EncodeError {
    let mut out = BytesMut::from(&b"kept"[..]);
    let e = encode(packet, version, &mut out).unwrap_err();
    assert_eq!(&out[..], b"kept", "nothing appended on error");
    e
}

fn publish(qos: QoS, packet_id: Option<u16>) -> Publish {
    Publish {
        dup: false,
        qos,
        retain: false,
        topic: "t".into(),
        packet_id,
        properties: Properties::default(),
        payload: Bytes::new(),
    }
}

#[test]
fn string_too_long() {
    let c = Connect {
        protocol: ProtocolVersion::V5,
        clean_start: true,
        keep_alive: 0,
        client_id: "x".repeat(65_536),
        will: None,
        username: None,
        password: None,
        properties: Properties::default(),
    };
    let e = refused(&Packet::Connect(Box::new(c)), ProtocolVersion::V5);
    assert!(matches!(e, EncodeError::TooLong(_)), "{e:?}");
    let mut p = publish(QoS::AtMostOnce, None);
    p.properties
        .user_properties
        .push(("k".into(), "v".repeat(65_536)));
    assert!(matches!(
        refused(&Packet::Publish(p), ProtocolVersion::V5),
        EncodeError::TooLong(_)
    ));
}

#[test]
fn packet_too_long() {
    let mut p = publish(QoS::AtMostOnce, None);
    // 268,435,455 bytes of remaining length fit; one more does not.
    p.payload = Bytes::from(vec![0u8; 268_435_455 - 3]);
    let mut out = BytesMut::new();
    assert_eq!(
        encode(&Packet::Publish(p.clone()), ProtocolVersion::V311, &mut out),
        Ok(268_435_460)
    );
    drop(out);
    p.payload = Bytes::from(vec![0u8; 268_435_455 - 2]);
    assert_eq!(
        refused(&Packet::Publish(p), ProtocolVersion::V311),
        EncodeError::TooLong("packet")
    );
}

#[test]
fn publish_packet_id_must_match_qos() {
    for v in [ProtocolVersion::V311, ProtocolVersion::V5] {
        for p in [
            publish(QoS::AtMostOnce, Some(1)),
            publish(QoS::AtLeastOnce, None),
            publish(QoS::ExactlyOnce, None),
            publish(QoS::AtLeastOnce, Some(0)),
        ] {
            assert!(matches!(
                refused(&Packet::Publish(p), v),
                EncodeError::InvalidField(_)
            ));
        }
        let mut dup = publish(QoS::AtMostOnce, None);
        dup.dup = true;
        assert!(matches!(
            refused(&Packet::Publish(dup), v),
            EncodeError::InvalidField(_)
        ));
        let mut wild = publish(QoS::AtMostOnce, None);
        wild.topic = "a/+".into();
        assert!(matches!(
            refused(&Packet::Publish(wild), v),
            EncodeError::InvalidField(_)
        ));
        let mut empty = publish(QoS::AtMostOnce, None);
        empty.topic = String::new();
        assert!(matches!(
            refused(&Packet::Publish(empty), v),
            EncodeError::InvalidField(_)
        ));
    }
}

#[test]
fn empty_subscribe_and_unsubscribe() {
    for v in [ProtocolVersion::V311, ProtocolVersion::V5] {
        let s = Subscribe {
            packet_id: 1,
            filters: Vec::new(),
            properties: Properties::default(),
        };
        assert!(matches!(
            refused(&Packet::Subscribe(s), v),
            EncodeError::InvalidField(_)
        ));
        let u = Unsubscribe {
            packet_id: 1,
            filters: Vec::new(),
            properties: Properties::default(),
        };
        assert!(matches!(
            refused(&Packet::Unsubscribe(u), v),
            EncodeError::InvalidField(_)
        ));
    }
}

#[test]
fn auth_not_in_v311() {
    let a = Auth {
        reason_code: ReasonCode::SUCCESS,
        properties: Properties::default(),
    };
    assert_eq!(
        refused(&Packet::Auth(a), ProtocolVersion::V311),
        EncodeError::NotInVersion("AUTH")
    );
}

#[test]
fn property_not_allowed_in_packet() {
    let mut d = Disconnect::new(ReasonCode::SUCCESS);
    d.properties.topic_alias = Some(3);
    assert!(matches!(
        refused(&Packet::Disconnect(d.clone()), ProtocolVersion::V5),
        EncodeError::InvalidField(_)
    ));
    // Dropped, not checked, in 3.1.1.
    let mut out = BytesMut::new();
    assert_eq!(
        encode(&Packet::Disconnect(d), ProtocolVersion::V311, &mut out),
        Ok(2)
    );
}

#[test]
fn packet_id_0_refused() {
    let p = Packet::PubAck(PublishResponse::success(0));
    assert!(matches!(
        refused(&p, ProtocolVersion::V5),
        EncodeError::InvalidField(_)
    ));
}
