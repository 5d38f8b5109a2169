//! Limits end to end: session expiry, the bounded offline queue and its
//! drop policies, the inbound Receive Maximum for QoS 2, and QoS 2
//! duplicate suppression.

use std::time::Duration;

use bytes::Bytes;
use quicmq_node::client::{Client, Event, Transport};
use quicmq_proto::mqtt::{
    Packet, Properties, Publish, PublishResponse, QoS, ReasonCode, SubscriptionOptions,
};
use quicmq_tests::{counter, RawClient, TestNode};

const QUEUE_FULL: &str = "quicmq_messages_dropped_total{reason=\"queue_full\"}";

async fn next_publish(client: &Client) -> Publish {
    match tokio::time::timeout(Duration::from_secs(5), client.recv()).await {
        Ok(Some(Event::Publish(p))) => p,
        other => panic!("expected a PUBLISH, got {other:?}"),
    }
}

async fn assert_nothing(client: &Client, wait_ms: u64) {
    if let Ok(Some(event)) =
        tokio::time::timeout(Duration::from_millis(wait_ms), client.recv()).await
    {
        panic!("expected nothing, got {event:?}");
    }
}

/// Connect `client_id` over TCP with a session expiry, subscribe to
/// `filter` with QoS 1 and leave with a normal DISCONNECT.
async fn park_session(node: &TestNode, client_id: &str, expiry: u32, filter: &str) {
    let mut options = node.options(Transport::Tcp, client_id);
    options.session_expiry_interval = Some(expiry);
    let (client, connack) = Client::connect(options).await.unwrap();
    assert!(!connack.session_present);
    client
        .subscribe(
            vec![(filter.into(), SubscriptionOptions::new(QoS::AtLeastOnce))],
            Properties::default(),
        )
        .await
        .unwrap();
    client
        .disconnect(ReasonCode::NORMAL_DISCONNECTION)
        .await
        .unwrap();
}

async fn resume(node: &TestNode, client_id: &str, expiry: u32) -> (Client, bool) {
    let mut options = node.options(Transport::Tcp, client_id);
    options.clean_start = false;
    options.session_expiry_interval = Some(expiry);
    let (client, connack) = Client::connect(options).await.unwrap();
    (client, connack.session_present)
}

#[tokio::test]
async fn session_expiry_ends_an_offline_session_after_its_interval_only() {
    let node = TestNode::start().await;
    let expired_before = counter(&node, "quicmq_sessions_expired_total").await;
    park_session(&node, "short-lived", 1, "expiry/short").await;
    park_session(&node, "long-lived", 60, "expiry/long").await;
    tokio::time::sleep(Duration::from_millis(2200)).await;
    // The expired session's subscription went with it: nobody matches.
    let publisher = node.connect(Transport::Tcp, "expiry-pub").await;
    assert_eq!(
        publisher
            .publish("expiry/short", "x", QoS::AtLeastOnce, false)
            .await
            .unwrap(),
        ReasonCode::NO_MATCHING_SUBSCRIBERS,
        "the 1 s session's subscription is gone"
    );
    assert_eq!(
        publisher
            .publish("expiry/long", "kept", QoS::AtLeastOnce, false)
            .await
            .unwrap(),
        ReasonCode::SUCCESS,
        "the 60 s session still subscribes"
    );
    let (_short, present) = resume(&node, "short-lived", 1).await;
    assert!(!present, "a session with expiry 1 s is gone after 2 s");
    let (long, present) = resume(&node, "long-lived", 60).await;
    assert!(
        present,
        "a session with expiry 60 s is still there after 2 s"
    );
    assert_eq!(&next_publish(&long).await.payload[..], b"kept");
    assert!(
        counter(&node, "quicmq_sessions_expired_total").await >= expired_before + 1.0,
        "the expiry is counted"
    );
    node.stop().await;
}

/// An offline persistent QoS 1 subscriber, 30 messages published while it
/// is away with a queue of 10: returns the payloads it gets on resuming.
async fn offline_overflow(policy: &str, id: &str) -> Vec<u32> {
    let node = TestNode::start_with(&format!(
        "max_queued_messages = 10\nqueue_drop_policy = \"{policy}\""
    ))
    .await;
    park_session(&node, id, 300, "overflow/#").await;
    let before = counter(&node, QUEUE_FULL).await;
    let publisher = node.connect(Transport::Tcp, &format!("{id}-pub")).await;
    for i in 0..30u32 {
        let reason = publisher
            .publish("overflow/t", i.to_string(), QoS::AtLeastOnce, false)
            .await
            .unwrap();
        assert_eq!(reason, ReasonCode::SUCCESS, "message {i}");
    }
    let after = counter(&node, QUEUE_FULL).await;
    assert!(
        after - before >= 20.0,
        "{policy}: 20 drops counted as queue_full ({before} -> {after})"
    );
    let (sub, present) = resume(&node, id, 300).await;
    assert!(present);
    let mut got = Vec::new();
    while let Ok(Some(Event::Publish(p))) =
        tokio::time::timeout(Duration::from_millis(500), sub.recv()).await
    {
        got.push(
            std::str::from_utf8(&p.payload)
                .unwrap()
                .parse::<u32>()
                .unwrap(),
        );
        assert!(got.len() <= 30, "bounded loop");
    }
    node.stop().await;
    got
}

#[tokio::test]
async fn full_queue_drop_oldest_keeps_the_newest_ten() {
    let got = offline_overflow("drop-oldest", "overflow-oldest").await;
    assert_eq!(got, (20..30).collect::<Vec<_>>());
}

#[tokio::test]
async fn full_queue_drop_newest_keeps_the_oldest_ten() {
    let got = offline_overflow("drop-newest", "overflow-newest").await;
    assert_eq!(got, (0..10).collect::<Vec<_>>());
}

#[tokio::test]
async fn dropped_queue_entries_leave_the_store_too() {
    let mut node = TestNode::start_with("max_queued_messages = 10").await;
    park_session(&node, "overflow-stored", 300, "stored/#").await;
    let publisher = node.connect(Transport::Tcp, "overflow-stored-pub").await;
    for i in 0..30u32 {
        publisher
            .publish("stored/t", i.to_string(), QoS::AtLeastOnce, false)
            .await
            .unwrap();
    }
    drop(publisher);
    // The restarted node has the default queue limit (10000): whatever the
    // store still holds comes back.
    node.restart().await;
    let (sub, present) = resume(&node, "overflow-stored", 300).await;
    assert!(present);
    let mut got = Vec::new();
    while let Ok(Some(Event::Publish(p))) =
        tokio::time::timeout(Duration::from_millis(500), sub.recv()).await
    {
        got.push(String::from_utf8_lossy(&p.payload).to_string());
        assert!(got.len() <= 30, "bounded loop");
    }
    let expected: Vec<String> = (20..30).map(|i: u32| i.to_string()).collect();
    assert_eq!(got, expected, "only the ten kept messages were stored");
    node.stop().await;
}

fn qos2(topic: &str, packet_id: u16, dup: bool, payload: &'static [u8]) -> Packet {
    Packet::Publish(Publish {
        dup,
        qos: QoS::ExactlyOnce,
        retain: false,
        topic: topic.into(),
        packet_id: Some(packet_id),
        properties: Properties::default(),
        payload: Bytes::from_static(payload),
    })
}

async fn expect_pubrec(raw: &mut RawClient, packet_id: u16) {
    match raw.recv().await {
        Some(Packet::PubRec(r)) => assert_eq!(r.packet_id, packet_id),
        other => panic!("expected PUBREC {packet_id}, got {other:?}"),
    }
}

#[tokio::test]
async fn inbound_receive_maximum_for_unreleased_qos2_is_enforced() {
    let node = TestNode::start_with("receive_maximum = 2").await;
    let (mut raw, connack) = RawClient::connect(
        node.addr(Transport::Tcp),
        RawClient::connect_packet("greedy", true),
    )
    .await;
    assert_eq!(connack.properties.receive_maximum, Some(2), "announced");
    raw.send(qos2("rm/in", 1, false, b"1")).await;
    expect_pubrec(&mut raw, 1).await;
    raw.send(qos2("rm/in", 2, false, b"2")).await;
    expect_pubrec(&mut raw, 2).await;
    // Two unreleased; a third is one too many.
    raw.send(qos2("rm/in", 3, false, b"3")).await;
    match raw.recv().await {
        Some(Packet::Disconnect(d)) => {
            assert_eq!(d.reason_code, ReasonCode::RECEIVE_MAXIMUM_EXCEEDED)
        }
        other => panic!("expected DISCONNECT 0x93, got {other:?}"),
    }
    assert!(raw.recv().await.is_none(), "then the connection closes");

    // Releasing keeps a client within the limit indefinitely.
    let (mut raw, _) = RawClient::connect(
        node.addr(Transport::Tcp),
        RawClient::connect_packet("polite", true),
    )
    .await;
    for id in 1..=5u16 {
        raw.send(qos2("rm/in", id, false, b"x")).await;
        expect_pubrec(&mut raw, id).await;
        raw.send(Packet::PubRel(PublishResponse::success(id))).await;
        match raw.recv().await {
            Some(Packet::PubComp(c)) => {
                assert_eq!((c.packet_id, c.reason_code), (id, ReasonCode::SUCCESS))
            }
            other => panic!("expected PUBCOMP, got {other:?}"),
        }
    }
    node.stop().await;
}

#[tokio::test]
async fn qos2_duplicate_before_pubrel_is_delivered_once() {
    let node = TestNode::start().await;
    let sub = node.connect(Transport::Tcp, "dup2-sub").await;
    sub.subscribe(
        vec![("dup2/#".into(), SubscriptionOptions::new(QoS::ExactlyOnce))],
        Properties::default(),
    )
    .await
    .unwrap();
    let (mut raw, _) = RawClient::connect(
        node.addr(Transport::Tcp),
        RawClient::connect_packet("dup2-pub", true),
    )
    .await;
    raw.send(qos2("dup2/a", 9, false, b"first")).await;
    expect_pubrec(&mut raw, 9).await;
    // The PUBREC "got lost": the client sends the PUBLISH again with DUP.
    raw.send(qos2("dup2/a", 9, true, b"first")).await;
    expect_pubrec(&mut raw, 9).await;
    raw.send(Packet::PubRel(PublishResponse::success(9))).await;
    match raw.recv().await {
        Some(Packet::PubComp(c)) => assert_eq!(c.packet_id, 9),
        other => panic!("expected PUBCOMP, got {other:?}"),
    }
    let p = next_publish(&sub).await;
    assert_eq!(&p.payload[..], b"first");
    assert_nothing(&sub, 300).await;
    // After PUBREL the identifier is free: the same id is a new message.
    raw.send(qos2("dup2/a", 9, false, b"second")).await;
    expect_pubrec(&mut raw, 9).await;
    assert_eq!(&next_publish(&sub).await.payload[..], b"second");
    // A PUBREL for an identifier never used is answered 0x92.
    raw.send(Packet::PubRel(PublishResponse::success(4242)))
        .await;
    match raw.recv().await {
        Some(Packet::PubComp(c)) => assert_eq!(
            (c.packet_id, c.reason_code),
            (4242, ReasonCode::PACKET_IDENTIFIER_NOT_FOUND)
        ),
        other => panic!("expected PUBCOMP 0x92, got {other:?}"),
    }
    node.stop().await;
}

#[tokio::test]
async fn session_expiry_is_capped_and_can_be_changed_on_disconnect() {
    let node = TestNode::start_with("max_session_expiry = 1").await;
    // Asked for 300 s, granted 1 s: CONNACK says so.
    let mut options = node.options(Transport::Quic, "capped");
    options.session_expiry_interval = Some(300);
    let (client, connack) = Client::connect(options).await.unwrap();
    assert_eq!(connack.properties.session_expiry_interval, Some(1));
    client
        .disconnect(ReasonCode::NORMAL_DISCONNECTION)
        .await
        .unwrap();
    node.stop().await;

    let node = TestNode::start().await;
    // 300 s on CONNECT, 1 s on DISCONNECT: the DISCONNECT's value applies.
    let mut options = node.options(Transport::Tcp, "shortened");
    options.session_expiry_interval = Some(300);
    let (client, _) = Client::connect(options).await.unwrap();
    client
        .disconnect_with(quicmq_proto::mqtt::Disconnect {
            reason_code: ReasonCode::NORMAL_DISCONNECTION,
            properties: Properties {
                session_expiry_interval: Some(1),
                ..Properties::default()
            },
        })
        .await
        .unwrap();
    // 0 on CONNECT, 60 on DISCONNECT: a protocol error (MQTT 5.0 §3.14.2.2.2).
    let (mut raw, _) = RawClient::connect(
        node.addr(Transport::Tcp),
        RawClient::connect_packet("no-expiry", true),
    )
    .await;
    raw.send(Packet::Disconnect(quicmq_proto::mqtt::Disconnect {
        reason_code: ReasonCode::NORMAL_DISCONNECTION,
        properties: Properties {
            session_expiry_interval: Some(60),
            ..Properties::default()
        },
    }))
    .await;
    match raw.recv().await {
        Some(Packet::Disconnect(d)) => assert_eq!(d.reason_code, ReasonCode::PROTOCOL_ERROR),
        other => panic!("expected DISCONNECT 0x82, got {other:?}"),
    }
    tokio::time::sleep(Duration::from_millis(2200)).await;
    let (_client, present) = resume(&node, "shortened", 300).await;
    assert!(!present, "expired after the 1 s set on DISCONNECT");
    let (_client, present) = resume(&node, "no-expiry", 300).await;
    assert!(!present, "the invalid DISCONNECT did not keep the session");
    node.stop().await;
}

#[tokio::test]
async fn queued_messages_expire_while_the_session_is_offline() {
    let node = TestNode::start().await;
    park_session(&node, "expiring-queue", 300, "exp/#").await;
    let publisher = node.connect(Transport::Tcp, "expiring-queue-pub").await;
    for (topic, expiry) in [
        ("exp/short", Some(1)),
        ("exp/long", Some(100)),
        ("exp/none", None),
    ] {
        publisher
            .publish_packet(Publish {
                dup: false,
                qos: QoS::AtLeastOnce,
                retain: false,
                topic: topic.into(),
                packet_id: None,
                properties: Properties {
                    message_expiry_interval: expiry,
                    ..Properties::default()
                },
                payload: Bytes::from_static(b"m"),
            })
            .await
            .unwrap();
    }
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let (sub, present) = resume(&node, "expiring-queue", 300).await;
    assert!(present);
    let p = next_publish(&sub).await;
    assert_eq!(p.topic, "exp/long", "the 1 s message expired in the queue");
    let left = p
        .properties
        .message_expiry_interval
        .expect("remaining time");
    assert!(
        (96..=98).contains(&left),
        "100 s minus the ~2 s waited: {left}"
    );
    let p = next_publish(&sub).await;
    assert_eq!(p.topic, "exp/none");
    assert_eq!(p.properties.message_expiry_interval, None);
    assert_nothing(&sub, 300).await;
    node.stop().await;
}

#[tokio::test]
async fn subscription_and_topic_limits_refuse_with_their_reason_codes_and_serve_everyone_else() {
    let node = TestNode::start_with(
        "max_subscriptions = 2\nmax_topic_levels = 3\nmax_topic_length = 20\n",
    )
    .await;
    let (client, _) = Client::connect(node.options(Transport::Tcp, "limited"))
        .await
        .unwrap();
    let subscribe = |filter: &str| {
        let client = client.clone();
        let filter = filter.to_owned();
        async move {
            client
                .subscribe(
                    vec![(filter, SubscriptionOptions::new(QoS::AtLeastOnce))],
                    Properties::default(),
                )
                .await
                .unwrap()
                .reason_codes[0]
        }
    };
    assert_eq!(subscribe("a/b").await, ReasonCode(1));
    assert_eq!(subscribe("a/c").await, ReasonCode(1));
    assert_eq!(
        subscribe("a/d").await,
        ReasonCode::QUOTA_EXCEEDED,
        "a third one"
    );
    assert_eq!(
        subscribe("a/b").await,
        ReasonCode(1),
        "the same filter again"
    );
    assert_eq!(subscribe("a/b/c/d").await, ReasonCode::TOPIC_FILTER_INVALID);
    assert_eq!(
        subscribe("a/this-is-a-long-level").await,
        ReasonCode::TOPIC_FILTER_INVALID
    );
    let publish = |topic: &str, qos: QoS| {
        let client = client.clone();
        let topic = topic.to_owned();
        async move {
            client
                .publish(&topic, Bytes::from_static(b"m"), qos, false)
                .await
                .unwrap()
        }
    };
    assert_eq!(
        publish("a/b/c/d", QoS::AtLeastOnce).await,
        ReasonCode::TOPIC_NAME_INVALID
    );
    assert_eq!(
        publish("a/b/c/d", QoS::ExactlyOnce).await,
        ReasonCode::TOPIC_NAME_INVALID
    );
    publish("a/b/c/d", QoS::AtMostOnce).await;
    // Everything within the limits still flows, on this connection and to
    // others.
    let (other, _) = Client::connect(node.options(Transport::Tcp, "other"))
        .await
        .unwrap();
    other
        .subscribe(
            vec![("a/#".into(), SubscriptionOptions::new(QoS::AtLeastOnce))],
            Properties::default(),
        )
        .await
        .unwrap();
    assert_eq!(publish("a/b", QoS::AtLeastOnce).await, ReasonCode::SUCCESS);
    assert_eq!(&next_publish(&client).await.topic, "a/b");
    assert_eq!(&next_publish(&other).await.topic, "a/b");
    assert_nothing(&other, 300).await;

    // A will whose topic is over the limits refuses the CONNECT.
    let mut options = node.options(Transport::Tcp, "big-will");
    options.will = Some(quicmq_proto::mqtt::LastWill {
        topic: "w/x/y/z".into(),
        payload: Bytes::from_static(b"gone"),
        qos: QoS::AtMostOnce,
        retain: false,
        properties: Properties::default(),
    });
    match Client::connect(options).await {
        Err(quicmq_node::client::ClientError::Refused(connack)) => {
            assert_eq!(connack.reason_code, ReasonCode::TOPIC_NAME_INVALID);
        }
        other => panic!("a will over the limits connected: {other:?}"),
    }
}
