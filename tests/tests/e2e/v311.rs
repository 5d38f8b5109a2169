//! MQTT 3.1.1 over QUIC and TLS (and TCP) with the crate's client: QoS 1
//! and 2 round trips, retained messages, persistent sessions (clean
//! session 0), and 5.0 publishers delivering to 3.1.1 subscribers.

use std::time::Duration;

use bytes::Bytes;
use quicmq_node::client::{Client, Event, Transport};
use quicmq_proto::mqtt::{
    Properties, ProtocolVersion, Publish, QoS, ReasonCode, SubscriptionOptions,
};
use quicmq_tests::{TestNode, TRANSPORTS};

async fn connect_311(
    node: &TestNode,
    transport: Transport,
    id: &str,
    clean: bool,
) -> (Client, bool) {
    let mut options = node.options(transport, id);
    options.protocol = ProtocolVersion::V311;
    options.clean_start = clean;
    let (client, connack) = Client::connect(options).await.unwrap();
    assert_eq!(client.protocol(), ProtocolVersion::V311);
    assert_eq!(connack.reason_code, ReasonCode::SUCCESS);
    (client, connack.session_present)
}

async fn next_publish(client: &Client) -> Publish {
    match tokio::time::timeout(Duration::from_secs(5), client.recv()).await {
        Ok(Some(Event::Publish(p))) => p,
        other => panic!("expected a PUBLISH, got {other:?}"),
    }
}

async fn subscribe(client: &Client, filter: &str, qos: QoS) -> ReasonCode {
    client
        .subscribe(
            vec![(filter.into(), SubscriptionOptions::new(qos))],
            Properties::default(),
        )
        .await
        .unwrap()
        .reason_codes[0]
}

#[tokio::test]
async fn v311_qos1_qos2_and_retained_on_every_transport() {
    let node = TestNode::start().await;
    for transport in TRANSPORTS {
        let t = transport.name();
        let (sub, _) = connect_311(&node, transport, &format!("311-sub-{t}"), true).await;
        assert_eq!(
            subscribe(&sub, &format!("v311/{t}/+"), QoS::ExactlyOnce).await,
            ReasonCode::GRANTED_QOS_2
        );
        let (publisher, _) = connect_311(&node, transport, &format!("311-pub-{t}"), true).await;
        for (qos, name) in [(QoS::AtLeastOnce, "q1"), (QoS::ExactlyOnce, "q2")] {
            let topic = format!("v311/{t}/{name}");
            let reason = publisher.publish(&topic, name, qos, false).await.unwrap();
            assert_eq!(reason, ReasonCode::SUCCESS, "{transport:?} {qos:?}");
            let p = next_publish(&sub).await;
            assert_eq!((p.topic.as_str(), p.qos), (topic.as_str(), qos), "{t}");
            assert_eq!(&p.payload[..], name.as_bytes());
            assert!(!p.retain);
        }
        // 3.1.1 has no "no matching subscribers": a plain PUBACK.
        assert_eq!(
            publisher
                .publish(&format!("nobody/{t}"), "x", QoS::AtLeastOnce, false)
                .await
                .unwrap(),
            ReasonCode::SUCCESS
        );
        // Retained: set by 3.1.1, delivered with RETAIN to a new 3.1.1
        // subscriber, at the lower of both QoS.
        let retained = format!("v311/{t}/config");
        publisher
            .publish(&retained, "r1", QoS::ExactlyOnce, true)
            .await
            .unwrap();
        let p = next_publish(&sub).await;
        assert!(!p.retain, "a live delivery is not flagged retained");
        let (late, _) = connect_311(&node, transport, &format!("311-late-{t}"), true).await;
        assert_eq!(
            subscribe(&late, &retained, QoS::AtLeastOnce).await,
            ReasonCode::GRANTED_QOS_1
        );
        let p = next_publish(&late).await;
        assert_eq!(
            (&p.payload[..], p.retain, p.qos),
            (&b"r1"[..], true, QoS::AtLeastOnce)
        );
        // Deleting it with an empty retained payload.
        publisher
            .publish(&retained, Bytes::new(), QoS::AtLeastOnce, true)
            .await
            .unwrap();
        let (later, _) = connect_311(&node, transport, &format!("311-later-{t}"), true).await;
        subscribe(&later, &retained, QoS::AtLeastOnce).await;
        assert!(
            tokio::time::timeout(Duration::from_millis(200), later.recv())
                .await
                .is_err(),
            "deleted"
        );
    }
    node.stop().await;
}

#[tokio::test]
async fn v311_persistent_session_queues_while_offline() {
    let node = TestNode::start().await;
    for transport in [Transport::Quic, Transport::Tls] {
        let t = transport.name();
        let id = format!("311-persist-{t}");
        let (sub, present) = connect_311(&node, transport, &id, false).await;
        assert!(!present);
        subscribe(&sub, &format!("keep311/{t}/#"), QoS::ExactlyOnce).await;
        sub.disconnect(ReasonCode::NORMAL_DISCONNECTION)
            .await
            .unwrap();
        let publisher = node
            .connect(transport, &format!("311-persist-pub-{t}"))
            .await;
        publisher
            .publish(&format!("keep311/{t}/1"), "a", QoS::AtLeastOnce, false)
            .await
            .unwrap();
        publisher
            .publish(&format!("keep311/{t}/2"), "b", QoS::ExactlyOnce, false)
            .await
            .unwrap();
        let (sub, present) = connect_311(&node, transport, &id, false).await;
        assert!(present, "{transport:?}: clean session 0 keeps the session");
        assert_eq!(&next_publish(&sub).await.payload[..], b"a");
        let p = next_publish(&sub).await;
        assert_eq!((&p.payload[..], p.qos), (&b"b"[..], QoS::ExactlyOnce));
        // Clean session 1 discards it.
        sub.disconnect(ReasonCode::NORMAL_DISCONNECTION)
            .await
            .unwrap();
        let (_sub, present) = connect_311(&node, transport, &id, true).await;
        assert!(!present);
    }
    node.stop().await;
}

#[tokio::test]
async fn v5_publisher_reaches_v311_subscriber_without_properties() {
    let node = TestNode::start().await;
    let (sub, _) = connect_311(&node, Transport::Quic, "311-mixed-sub", true).await;
    subscribe(&sub, "mixed/#", QoS::AtLeastOnce).await;
    let publisher = node.connect(Transport::Tls, "v5-mixed-pub").await;
    publisher
        .publish_packet(Publish {
            dup: false,
            qos: QoS::AtLeastOnce,
            retain: false,
            topic: "mixed/a".into(),
            packet_id: None,
            properties: Properties {
                user_properties: vec![("k".into(), "v".into())],
                message_expiry_interval: Some(60),
                content_type: Some("text/plain".into()),
                ..Properties::default()
            },
            payload: Bytes::from_static(b"from v5"),
        })
        .await
        .unwrap();
    let p = next_publish(&sub).await;
    assert_eq!(&p.payload[..], b"from v5");
    assert_eq!(
        p.properties,
        Properties::default(),
        "3.1.1 has no properties"
    );
    node.stop().await;
}
