//! Bad input over real TCP sockets: each case gets the right reason code
//! (or a silent close where MQTT has no way to say it), and the broker keeps
//! serving other clients.

use std::time::Duration;

use bytes::BytesMut;
use quicmq_node::client::Transport;
use quicmq_proto::mqtt::{
    decode, encode, Connect, Packet, Properties, ProtocolVersion, QoS, ReasonCode,
    SubscriptionOptions,
};
use quicmq_tests::TestNode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn connect_bytes(version: ProtocolVersion, client_id: &str) -> Vec<u8> {
    let mut out = BytesMut::new();
    let connect = Packet::Connect(Box::new(Connect {
        protocol: version,
        clean_start: true,
        keep_alive: 30,
        client_id: client_id.into(),
        will: None,
        username: None,
        password: None,
        properties: Properties::default(),
    }));
    encode(&connect, version, &mut out).unwrap();
    out.to_vec()
}

/// Read packets until the server closes the connection; returns them.
async fn read_until_closed(socket: &mut TcpStream, version: ProtocolVersion) -> Vec<Packet> {
    let mut buf = BytesMut::new();
    let mut packets = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        while let Ok(Some(p)) = decode(&mut buf, version, u32::MAX) {
            packets.push(p);
        }
        let read = tokio::time::timeout_at(deadline, socket.read_buf(&mut buf))
            .await
            .expect("server closes the connection in time");
        match read {
            Ok(0) | Err(_) => return packets,
            Ok(_) => {}
        }
    }
}

/// Open a connection, CONNECT (v5), send `bad`, and return what came back
/// after the CONNACK.
async fn after_connect(node: &TestNode, bad: &[u8]) -> Vec<Packet> {
    let mut socket = TcpStream::connect(node.addr(Transport::Tcp)).await.unwrap();
    socket
        .write_all(&connect_bytes(ProtocolVersion::V5, "bad-client"))
        .await
        .unwrap();
    socket.write_all(bad).await.unwrap();
    let packets = read_until_closed(&mut socket, ProtocolVersion::V5).await;
    assert!(
        matches!(packets.first(), Some(Packet::ConnAck(c)) if c.reason_code == ReasonCode::SUCCESS),
        "{packets:?}"
    );
    packets[1..].to_vec()
}

fn disconnect_reason(packets: &[Packet]) -> Option<ReasonCode> {
    packets.iter().find_map(|p| match p {
        Packet::Disconnect(d) => Some(d.reason_code),
        _ => None,
    })
}

/// A well-behaved client still gets its messages through.
async fn assert_broker_serves(node: &TestNode) {
    let sub = node.connect(Transport::Tcp, "healthy-sub").await;
    sub.subscribe(
        vec![(
            "health/check".into(),
            SubscriptionOptions::new(QoS::AtLeastOnce),
        )],
        Properties::default(),
    )
    .await
    .unwrap();
    let publisher = node.connect(Transport::Tcp, "healthy-pub").await;
    publisher
        .publish("health/check", "ok", QoS::AtLeastOnce, false)
        .await
        .unwrap();
    let got = tokio::time::timeout(Duration::from_secs(5), sub.recv())
        .await
        .expect("delivery in time");
    assert!(matches!(got, Some(quicmq_node::client::Event::Publish(p)) if &p.payload[..] == b"ok"));
}

#[tokio::test]
async fn malformed_packets_get_their_reason_codes() {
    let node = TestNode::start_with("max_packet_size = 1024").await;
    let cases: Vec<(&str, Vec<u8>, ReasonCode)> = vec![
        // PUBLISH QoS 3.
        (
            "qos 3",
            vec![0x36, 0x05, 0x00, 0x01, b'a', 0x00, 0x01],
            ReasonCode::MALFORMED_PACKET,
        ),
        // PUBREL with reserved flags 0000 instead of 0010.
        (
            "reserved flags",
            vec![0x60, 0x02, 0x00, 0x01],
            ReasonCode::MALFORMED_PACKET,
        ),
        // Remaining length says 2, but a PUBLISH topic length says 5.
        (
            "wrong remaining length",
            vec![0x30, 0x02, 0x00, 0x05],
            ReasonCode::MALFORMED_PACKET,
        ),
        // Topic with invalid UTF-8.
        (
            "invalid utf-8",
            vec![0x30, 0x05, 0x00, 0x02, 0xC3, 0x28, 0x00],
            ReasonCode::MALFORMED_PACKET,
        ),
        // A second CONNECT.
        (
            "second connect",
            connect_bytes(ProtocolVersion::V5, "again"),
            ReasonCode::PROTOCOL_ERROR,
        ),
        // Oversize: remaining length 2000 > 1024.
        (
            "oversize",
            vec![0x30, 0xD0, 0x0F],
            ReasonCode::PACKET_TOO_LARGE,
        ),
        // Topic alias 0 (property 0x23).
        (
            "topic alias 0",
            vec![0x30, 0x07, 0x00, 0x01, b'a', 0x03, 0x23, 0x00, 0x00],
            ReasonCode::TOPIC_ALIAS_INVALID,
        ),
        // Topic alias above the maximum (64): alias 100.
        (
            "topic alias over max",
            vec![0x30, 0x07, 0x00, 0x01, b'a', 0x03, 0x23, 0x00, 100],
            ReasonCode::TOPIC_ALIAS_INVALID,
        ),
        // Wildcard in a PUBLISH topic name.
        (
            "wildcard topic",
            vec![0x30, 0x04, 0x00, 0x01, b'#', 0x00],
            ReasonCode::TOPIC_NAME_INVALID,
        ),
        // Variable byte integer of five bytes.
        (
            "5-byte varint",
            vec![0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x01],
            ReasonCode::MALFORMED_PACKET,
        ),
    ];
    for (name, bytes, expected) in cases {
        let packets = after_connect(&node, &bytes).await;
        assert_eq!(
            disconnect_reason(&packets),
            Some(expected),
            "case `{name}`: {packets:?}"
        );
    }
    assert_broker_serves(&node).await;
    node.stop().await;
}

#[tokio::test]
async fn truncated_packet_waits_and_closes_without_reply_on_eof() {
    let node = TestNode::start().await;
    let mut socket = TcpStream::connect(node.addr(Transport::Tcp)).await.unwrap();
    let connect = connect_bytes(ProtocolVersion::V5, "truncated");
    socket
        .write_all(&connect[..connect.len() - 3])
        .await
        .unwrap();
    // Half a CONNECT is not an error yet: nothing comes back.
    let mut one = [0u8; 1];
    let early = tokio::time::timeout(Duration::from_millis(300), socket.read(&mut one)).await;
    assert!(
        early.is_err(),
        "the broker waits for the rest of the packet"
    );
    socket.shutdown().await.unwrap();
    let packets = read_until_closed(&mut socket, ProtocolVersion::V5).await;
    assert!(packets.is_empty(), "{packets:?}");
    assert_broker_serves(&node).await;
    node.stop().await;
}

#[tokio::test]
async fn publish_before_connect_closes_without_connack() {
    let node = TestNode::start().await;
    let mut socket = TcpStream::connect(node.addr(Transport::Tcp)).await.unwrap();
    socket
        .write_all(&[0x30, 0x04, 0x00, 0x01, b'a', b'x'])
        .await
        .unwrap();
    let packets = read_until_closed(&mut socket, ProtocolVersion::V5).await;
    assert!(
        packets.is_empty(),
        "no CONNACK for a PUBLISH before CONNECT: {packets:?}"
    );
    assert_broker_serves(&node).await;
    node.stop().await;
}

#[tokio::test]
async fn unsupported_protocol_level_gets_connack_return_code_1() {
    let node = TestNode::start().await;
    let mut socket = TcpStream::connect(node.addr(Transport::Tcp)).await.unwrap();
    let mut connect = connect_bytes(ProtocolVersion::V311, "old");
    connect[8] = 3; // protocol level byte after "\0\x04MQTT"
    socket.write_all(&connect).await.unwrap();
    let packets = read_until_closed(&mut socket, ProtocolVersion::V311).await;
    match packets.as_slice() {
        [Packet::ConnAck(c)] => assert_eq!(c.reason_code, ReasonCode::UNSUPPORTED_PROTOCOL_VERSION),
        other => panic!("expected one CONNACK, got {other:?}"),
    }
    node.stop().await;
}

#[tokio::test]
async fn v311_protocol_errors_close_silently() {
    let node = TestNode::start().await;
    let mut socket = TcpStream::connect(node.addr(Transport::Tcp)).await.unwrap();
    socket
        .write_all(&connect_bytes(ProtocolVersion::V311, "old-bad"))
        .await
        .unwrap();
    socket
        .write_all(&[0x36, 0x05, 0x00, 0x01, b'a', 0x00, 0x01])
        .await
        .unwrap();
    let packets = read_until_closed(&mut socket, ProtocolVersion::V311).await;
    assert!(
        matches!(packets.as_slice(), [Packet::ConnAck(_)]),
        "{packets:?}"
    );
    assert_broker_serves(&node).await;
    node.stop().await;
}
