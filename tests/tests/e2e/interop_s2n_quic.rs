//! Interoperability with a QUIC implementation nobody here wrote: s2n-quic
//! (AWS; its TLS is s2n-tls on aws-lc) connects to the node with ALPN
//! `mqtt`, trusting the node's development certificate, and speaks raw
//! MQTT 5.0 bytes (encoded and decoded with `quicmq_proto` only) on its own
//! bidirectional streams: the first is the control stream, a later one a
//! data stream.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use quicmq_node::client::Transport;
use quicmq_proto::mqtt::{
    Packet, Properties, ProtocolVersion, Publish, PublishResponse, QoS, ReasonCode, Subscribe,
    SubscriptionOptions,
};
use quicmq_tests::{PacketStream, RawClient, TestNode};
use s2n_quic::client::Connect;
use s2n_quic::stream::BidirectionalStream;

/// An s2n-quic client endpoint that trusts `cert` and offers ALPN `mqtt`.
fn s2n_client(cert: &std::path::Path) -> s2n_quic::Client {
    let tls = s2n_quic::provider::tls::default::Client::builder()
        .with_certificate(cert)
        .expect("trust the development certificate")
        .with_application_protocols(["mqtt"])
        .expect("ALPN")
        .build()
        .expect("TLS config");
    s2n_quic::Client::builder()
        .with_tls(tls)
        .expect("TLS provider")
        .with_io("127.0.0.1:0")
        .expect("UDP socket")
        .start()
        .expect("s2n-quic client starts")
}

async fn s2n_connect(client: &s2n_quic::Client, addr: SocketAddr) -> s2n_quic::Connection {
    let connect = Connect::new(addr).with_server_name("localhost");
    let mut connection = tokio::time::timeout(Duration::from_secs(5), client.connect(connect))
        .await
        .expect("QUIC handshake in time")
        .expect("QUIC handshake with the node");
    connection.keep_alive(true).expect("keep alive");
    assert_eq!(
        &connection.application_protocol().expect("ALPN")[..],
        b"mqtt",
        "ALPN negotiated"
    );
    connection
}

async fn open_stream(connection: &mut s2n_quic::Connection) -> PacketStream<BidirectionalStream> {
    let stream = tokio::time::timeout(
        Duration::from_secs(5),
        connection.open_bidirectional_stream(),
    )
    .await
    .expect("stream opens in time")
    .expect("bidirectional stream");
    PacketStream::new(stream, ProtocolVersion::V5)
}

fn connect_packet(client_id: &str) -> Packet {
    Packet::Connect(Box::new(RawClient::connect_packet(client_id, true)))
}

fn subscribe(packet_id: u16, filter: &str, qos: QoS) -> Packet {
    Packet::Subscribe(Subscribe {
        packet_id,
        filters: vec![(filter.into(), SubscriptionOptions::new(qos))],
        properties: Properties::default(),
    })
}

fn publish(topic: &str, payload: &'static [u8], qos: QoS, packet_id: Option<u16>) -> Packet {
    Packet::Publish(Publish {
        dup: false,
        qos,
        retain: false,
        topic: topic.into(),
        packet_id,
        properties: Properties::default(),
        payload: Bytes::from_static(payload),
    })
}

async fn expect_connack<S>(stream: &mut PacketStream<S>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    match stream.recv().await {
        Some(Packet::ConnAck(c)) => {
            assert_eq!(c.reason_code, ReasonCode::SUCCESS);
            assert!(!c.session_present);
        }
        other => panic!("expected CONNACK, got {other:?}"),
    }
}

#[tokio::test]
async fn s2n_quic_client_speaks_mqtt_on_the_control_stream() {
    let node = TestNode::start().await;
    let client = s2n_client(&node.dir.path().join("dev-cert.pem"));
    let mut connection = s2n_connect(&client, node.addr(Transport::Quic)).await;
    let mut control = open_stream(&mut connection).await;
    control.send(connect_packet("s2n-control")).await;
    expect_connack(&mut control).await;

    control.send(subscribe(1, "s2n/+", QoS::ExactlyOnce)).await;
    match control.recv().await {
        Some(Packet::SubAck(s)) => {
            assert_eq!(s.packet_id, 1);
            assert_eq!(s.reason_codes, vec![ReasonCode::GRANTED_QOS_2]);
        }
        other => panic!("expected SUBACK, got {other:?}"),
    }

    // Publish QoS 0, 1 and 2 to our own subscription; the deliveries and
    // the acknowledgements interleave on the one stream, so collect both.
    control
        .send(publish("s2n/0", b"zero", QoS::AtMostOnce, None))
        .await;
    control
        .send(publish("s2n/1", b"one", QoS::AtLeastOnce, Some(10)))
        .await;
    control
        .send(publish("s2n/2", b"two", QoS::ExactlyOnce, Some(11)))
        .await;

    let mut delivered: Vec<(String, QoS, Bytes)> = Vec::new();
    let (mut puback, mut pubcomp) = (false, false);
    // Deliveries we acknowledged with PUBREC and wait to see PUBREL for.
    let mut releasing: Vec<u16> = Vec::new();
    let mut released = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while delivered.len() < 3 || !puback || !pubcomp || released < 1 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "incomplete exchange: delivered {delivered:?}, puback {puback}, \
             pubcomp {pubcomp}, released {released}"
        );
        let packet = control.recv().await.expect("the node keeps the stream");
        match packet {
            Packet::Publish(p) => {
                assert!(!p.dup, "first delivery: {p:?}");
                match p.qos {
                    QoS::AtMostOnce => assert_eq!(p.packet_id, None),
                    QoS::AtLeastOnce => {
                        let id = p.packet_id.expect("QoS 1 delivery has a packet id");
                        control
                            .send(Packet::PubAck(PublishResponse::success(id)))
                            .await;
                    }
                    QoS::ExactlyOnce => {
                        let id = p.packet_id.expect("QoS 2 delivery has a packet id");
                        control
                            .send(Packet::PubRec(PublishResponse::success(id)))
                            .await;
                        releasing.push(id);
                    }
                }
                delivered.push((p.topic, p.qos, p.payload));
            }
            Packet::PubAck(a) => {
                assert_eq!((a.packet_id, a.reason_code), (10, ReasonCode::SUCCESS));
                puback = true;
            }
            Packet::PubRec(r) => {
                assert_eq!((r.packet_id, r.reason_code), (11, ReasonCode::SUCCESS));
                control
                    .send(Packet::PubRel(PublishResponse::success(11)))
                    .await;
            }
            Packet::PubComp(c) => {
                assert_eq!((c.packet_id, c.reason_code), (11, ReasonCode::SUCCESS));
                pubcomp = true;
            }
            Packet::PubRel(r) => {
                assert_eq!(r.reason_code, ReasonCode::SUCCESS);
                let at = releasing
                    .iter()
                    .position(|&id| id == r.packet_id)
                    .unwrap_or_else(|| panic!("PUBREL for unknown id {}", r.packet_id));
                releasing.remove(at);
                control
                    .send(Packet::PubComp(PublishResponse::success(r.packet_id)))
                    .await;
                released += 1;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    delivered.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        delivered,
        vec![
            ("s2n/0".into(), QoS::AtMostOnce, Bytes::from_static(b"zero")),
            ("s2n/1".into(), QoS::AtLeastOnce, Bytes::from_static(b"one")),
            ("s2n/2".into(), QoS::ExactlyOnce, Bytes::from_static(b"two")),
        ]
    );
    // Every QoS 1/2 delivery is finished: nothing is resent, and the node
    // still answers on the stream.
    control.send(Packet::PingReq).await;
    assert_eq!(control.recv().await, Some(Packet::PingResp));
    assert!(
        control
            .recv_within(Duration::from_millis(300))
            .await
            .is_err(),
        "nothing more after the exchange"
    );
    control
        .send(Packet::Disconnect(quicmq_proto::mqtt::Disconnect::new(
            ReasonCode::NORMAL_DISCONNECTION,
        )))
        .await;
    assert_eq!(
        control.recv().await,
        None,
        "the node closes the control stream after DISCONNECT"
    );
    node.stop().await;
}

#[tokio::test]
async fn s2n_quic_data_stream_gets_its_suback_and_deliveries() {
    let node = TestNode::start().await;
    let client = s2n_client(&node.dir.path().join("dev-cert.pem"));
    let mut connection = s2n_connect(&client, node.addr(Transport::Quic)).await;
    let mut control = open_stream(&mut connection).await;
    control.send(connect_packet("s2n-data")).await;
    expect_connack(&mut control).await;

    let mut data = open_stream(&mut connection).await;
    data.send(subscribe(7, "s2n-data/#", QoS::AtLeastOnce))
        .await;
    match data.recv().await {
        Some(Packet::SubAck(s)) => {
            assert_eq!(s.packet_id, 7);
            assert_eq!(s.reason_codes, vec![ReasonCode::GRANTED_QOS_1]);
        }
        other => panic!("expected SUBACK on the data stream, got {other:?}"),
    }

    // Another client (the crate's own, over TCP) publishes.
    let publisher = node.connect(Transport::Tcp, "s2n-data-pub").await;
    let reason = publisher
        .publish("s2n-data/x", "hello", QoS::AtLeastOnce, false)
        .await
        .unwrap();
    assert_eq!(reason, ReasonCode::SUCCESS);
    match data.recv().await {
        Some(Packet::Publish(p)) => {
            assert_eq!(p.topic, "s2n-data/x");
            assert_eq!(&p.payload[..], b"hello");
            assert_eq!(p.qos, QoS::AtLeastOnce);
            data.send(Packet::PubAck(PublishResponse::success(
                p.packet_id.expect("packet id"),
            )))
            .await;
        }
        other => panic!("expected the delivery on the data stream, got {other:?}"),
    }
    assert!(
        control
            .recv_within(Duration::from_millis(300))
            .await
            .is_err(),
        "nothing on the control stream"
    );
    // A PUBLISH on the data stream is acknowledged there.
    data.send(publish("s2n-data/y", b"own", QoS::AtLeastOnce, Some(8)))
        .await;
    let mut got_ack = false;
    let mut got_own = false;
    for _ in 0..2 {
        match data.recv().await {
            Some(Packet::PubAck(a)) => {
                assert_eq!(a.packet_id, 8);
                got_ack = true;
            }
            Some(Packet::Publish(p)) => {
                assert_eq!(&p.payload[..], b"own");
                data.send(Packet::PubAck(PublishResponse::success(
                    p.packet_id.expect("packet id"),
                )))
                .await;
                got_own = true;
            }
            other => panic!("{other:?}"),
        }
    }
    assert!(got_ack && got_own);
    node.stop().await;
}

// BUG (reported): `connection::serve` takes the first `Inbound` of the
// connection as the CONNECT; a data stream that the node accepts before the
// control stream's CONNECT is complete (QUIC streams are not ordered
// against each other, so this happens whenever the CONNECT is split across
// datagrams and a data stream's frame overtakes it) makes it
// `Inbound::StreamOpened`, and the connection is closed ("first packet is
// not CONNECT").
#[tokio::test]
async fn a_data_stream_that_overtakes_the_connect_does_not_kill_the_connection() {
    let node = TestNode::start().await;
    let client = s2n_client(&node.dir.path().join("dev-cert.pem"));
    let mut connection = s2n_connect(&client, node.addr(Transport::Quic)).await;
    let mut control = open_stream(&mut connection).await;
    let mut connect = bytes::BytesMut::new();
    quicmq_proto::mqtt::encode(
        &connect_packet("s2n-early-stream"),
        ProtocolVersion::V5,
        &mut connect,
    )
    .unwrap();
    let half = connect.len() / 2;
    {
        use tokio::io::AsyncWriteExt;
        let io = control.get_mut();
        io.write_all(&connect[..half]).await.unwrap();
        io.flush().await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut data = open_stream(&mut connection).await;
    data.send(subscribe(3, "early/#", QoS::AtMostOnce)).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    {
        use tokio::io::AsyncWriteExt;
        let io = control.get_mut();
        let rest = async {
            io.write_all(&connect[half..]).await?;
            AsyncWriteExt::flush(io).await
        };
        if let Err(e) = rest.await {
            panic!("the node closed the connection before the CONNECT was complete: {e}");
        }
    }
    match control.recv_within(Duration::from_secs(3)).await {
        Ok(Some(Packet::ConnAck(c))) => assert_eq!(c.reason_code, ReasonCode::SUCCESS),
        Ok(Some(other)) => panic!("expected CONNACK, got {other:?}"),
        Ok(None) => panic!("the node closed the connection instead of answering CONNECT"),
        Err(_) => panic!("no CONNACK within 3 s"),
    }
    match data.recv_within(Duration::from_secs(3)).await {
        Ok(Some(Packet::SubAck(s))) => assert_eq!(s.packet_id, 3),
        other => panic!("expected SUBACK on the data stream, got {other:?}"),
    }
    node.stop().await;
}

#[tokio::test]
async fn s2n_quic_client_verifies_the_node_certificate() {
    let node = TestNode::start().await;
    // The right certificate, the wrong name: the handshake must fail.
    let client = s2n_client(&node.dir.path().join("dev-cert.pem"));
    let connect =
        Connect::new(node.addr(Transport::Quic)).with_server_name("not-localhost.example");
    let attempt = tokio::time::timeout(Duration::from_secs(5), client.connect(connect))
        .await
        .expect("the handshake ends in time");
    assert!(attempt.is_err(), "a name the certificate lacks is refused");
    node.stop().await;
}

#[tokio::test]
async fn deliveries_of_a_finished_data_stream_fall_back_to_the_control_stream() {
    let node = TestNode::start().await;
    let client = s2n_client(&node.dir.path().join("dev-cert.pem"));
    let mut connection = s2n_connect(&client, node.addr(Transport::Quic)).await;
    let mut control = open_stream(&mut connection).await;
    control.send(connect_packet("s2n-fallback")).await;
    expect_connack(&mut control).await;
    let mut data = open_stream(&mut connection).await;
    data.send(subscribe(5, "fallback/#", QoS::AtMostOnce)).await;
    assert!(matches!(data.recv().await, Some(Packet::SubAck(_))));
    // The client finishes the data stream; the node finishes its side.
    data.get_mut().finish().unwrap();
    assert_eq!(data.recv().await, None, "the node ends the stream too");
    let publisher = node.connect(Transport::Tcp, "s2n-fallback-pub").await;
    publisher
        .publish("fallback/1", "still here", QoS::AtMostOnce, false)
        .await
        .unwrap();
    match control.recv().await {
        Some(Packet::Publish(p)) => assert_eq!(&p.payload[..], b"still here"),
        other => panic!("expected the delivery on the control stream, got {other:?}"),
    }
    node.stop().await;
}
