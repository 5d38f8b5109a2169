//! Incremental decoding: packets arriving in pieces and several packets in
//! one buffer.

use bytes::{Bytes, BytesMut};
use quicmq_proto::mqtt::*;

use crate::encoded;

fn big_connect() -> Packet {
    Packet::Connect(Box::new(Connect {
        protocol: ProtocolVersion::V5,
        clean_start: true,
        keep_alive: 30,
        client_id: "client-1".into(),
        will: Some(LastWill {
            topic: "clients/1/status".into(),
            payload: Bytes::from_static(b"offline"),
            qos: QoS::AtLeastOnce,
            retain: true,
            properties: Properties {
                will_delay_interval: Some(5),
                content_type: Some("text/plain".into()),
                ..Properties::default()
            },
        }),
        username: Some("user".into()),
        password: Some(Bytes::from_static(b"secret")),
        properties: Properties {
            session_expiry_interval: Some(3600),
            receive_maximum: Some(20),
            user_properties: vec![("a".into(), "b".into())],
            ..Properties::default()
        },
    }))
}

fn big_publish() -> Packet {
    Packet::Publish(Publish {
        dup: false,
        qos: QoS::ExactlyOnce,
        retain: false,
        topic: "a/b".into(),
        packet_id: Some(9),
        properties: Properties::default(),
        payload: Bytes::from(vec![7u8; 300]),
    })
}

#[test]
fn byte_by_byte() {
    for version in [ProtocolVersion::V311, ProtocolVersion::V5] {
        for packet in [big_connect(), big_publish(), Packet::PingReq] {
            let packet = match (packet, version) {
                (Packet::Connect(mut c), v) => {
                    c.protocol = v;
                    if v == ProtocolVersion::V311 {
                        c.properties = Properties::default();
                        if let Some(w) = c.will.as_mut() {
                            w.properties = Properties::default();
                        }
                    }
                    Packet::Connect(c)
                }
                (p, _) => p,
            };
            let wire = encoded(&packet, version);
            let mut buf = BytesMut::new();
            for (i, &byte) in wire.iter().enumerate() {
                buf.extend_from_slice(&[byte]);
                let got = decode(&mut buf, version, MAX_PACKET_SIZE).unwrap();
                if i + 1 < wire.len() {
                    assert_eq!(got, None, "byte {i} of {packet:?}");
                    assert_eq!(buf.len(), i + 1, "nothing consumed");
                } else {
                    assert_eq!(got, Some(packet.clone()));
                    assert!(buf.is_empty());
                }
            }
        }
    }
}

#[test]
fn two_packets_in_one_buffer() {
    let v = ProtocolVersion::V5;
    let mut buf = encoded(&big_publish(), v);
    buf.extend_from_slice(&encoded(&Packet::PubAck(PublishResponse::success(9)), v));
    buf.extend_from_slice(&[0xE0]);
    assert_eq!(
        decode(&mut buf, v, MAX_PACKET_SIZE),
        Ok(Some(big_publish()))
    );
    assert_eq!(
        decode(&mut buf, v, MAX_PACKET_SIZE),
        Ok(Some(Packet::PubAck(PublishResponse::success(9))))
    );
    assert_eq!(decode(&mut buf, v, MAX_PACKET_SIZE), Ok(None));
    buf.extend_from_slice(&[0x00]);
    assert_eq!(
        decode(&mut buf, v, MAX_PACKET_SIZE),
        Ok(Some(Packet::Disconnect(Disconnect::new(
            ReasonCode::NORMAL_DISCONNECTION
        ))))
    );
    assert!(buf.is_empty());
}

#[test]
fn publish_payload_is_zero_copy() {
    let v = ProtocolVersion::V311;
    let mut buf = encoded(&big_publish(), v);
    let range = buf.as_ptr() as usize..buf.as_ptr() as usize + buf.len();
    let Some(Packet::Publish(p)) = decode(&mut buf, v, MAX_PACKET_SIZE).unwrap() else {
        panic!("not a publish");
    };
    assert_eq!(p.payload.len(), 300);
    assert!(range.contains(&(p.payload.as_ptr() as usize)));
}

#[test]
fn size_limit_applies_before_the_body_arrives() {
    // PUBLISH announcing 1000 bytes of body; only the fixed header is here.
    let mut buf = BytesMut::from(&[0x30, 0xE8, 0x07][..]);
    let err = decode(&mut buf, ProtocolVersion::V5, 100).unwrap_err();
    assert_eq!(
        err,
        DecodeError::PacketTooLarge {
            size: 1003,
            max: 100
        }
    );
    assert_eq!(err.reason_code(), ReasonCode::PACKET_TOO_LARGE);
    // Under the limit the same header just waits for more.
    let mut buf = BytesMut::from(&[0x30, 0xE8, 0x07][..]);
    assert_eq!(decode(&mut buf, ProtocolVersion::V5, 1003), Ok(None));
    assert_eq!(buf.len(), 3);
    // The limit includes the fixed header: PINGREQ is 2 bytes.
    let mut buf = BytesMut::from(&[0xC0, 0x00][..]);
    assert!(matches!(
        decode(&mut buf, ProtocolVersion::V5, 1),
        Err(DecodeError::PacketTooLarge { size: 2, max: 1 })
    ));
    assert_eq!(
        decode(&mut buf, ProtocolVersion::V5, 2),
        Ok(Some(Packet::PingReq))
    );
}

#[test]
fn incomplete_fixed_header_waits() {
    for partial in [&[][..], &[0x30], &[0x30, 0x80], &[0x30, 0xFF, 0xFF, 0xFF]] {
        let mut buf = BytesMut::from(partial);
        assert_eq!(
            decode(&mut buf, ProtocolVersion::V5, MAX_PACKET_SIZE),
            Ok(None)
        );
        assert_eq!(buf.len(), partial.len());
    }
}
