//! Session lifecycle end to end: persistent sessions and their offline
//! queues, takeover, redelivery with DUP, Receive Maximum, client ID
//! assignment, keep alive, wills, topic aliases, Maximum Packet Size.

use std::time::Duration;

use bytes::Bytes;
use quicmq_node::client::{Client, Event, Transport};
use quicmq_proto::mqtt::{
    Disconnect, LastWill, Packet, Properties, ProtocolVersion, Publish, PublishResponse, QoS,
    ReasonCode, Subscribe, SubscriptionOptions,
};
use quicmq_tests::{PacketStream, RawClient, TestNode, TRANSPORTS};

async fn next_event(client: &Client) -> Event {
    tokio::time::timeout(Duration::from_secs(5), client.recv())
        .await
        .expect("an event in time")
        .expect("client still open")
}

async fn next_publish(client: &Client) -> Publish {
    match next_event(client).await {
        Event::Publish(p) => p,
        other => panic!("expected PUBLISH, got {other:?}"),
    }
}

fn sub_packet(packet_id: u16, filter: &str, qos: QoS) -> Packet {
    Packet::Subscribe(Subscribe {
        packet_id,
        filters: vec![(filter.into(), SubscriptionOptions::new(qos))],
        properties: Properties::default(),
    })
}

#[tokio::test]
async fn persistent_session_queues_while_offline_on_every_transport() {
    let node = TestNode::start().await;
    for transport in TRANSPORTS {
        let id = format!("persist-{transport:?}");
        let mut options = node.options(transport, &id);
        options.clean_start = true;
        options.session_expiry_interval = Some(300);
        let (sub, connack) = Client::connect(options.clone()).await.unwrap();
        assert!(!connack.session_present);
        sub.subscribe(
            vec![("q/#".into(), SubscriptionOptions::new(QoS::AtLeastOnce))],
            Properties::default(),
        )
        .await
        .unwrap();
        sub.disconnect(ReasonCode::NORMAL_DISCONNECTION)
            .await
            .unwrap();
        let publisher = node.connect(transport, &format!("qp-{transport:?}")).await;
        for i in 0..5 {
            let r = publisher
                .publish(&format!("q/{i}"), format!("{i}"), QoS::AtLeastOnce, false)
                .await
                .unwrap();
            assert_eq!(
                r,
                ReasonCode::SUCCESS,
                "the offline session counts as a subscriber"
            );
        }
        publisher
            .publish("q/zero", "qos0", QoS::AtMostOnce, false)
            .await
            .unwrap();
        options.clean_start = false;
        let (sub, connack) = Client::connect(options.clone()).await.unwrap();
        assert!(connack.session_present);
        for i in 0..5 {
            let p = next_publish(&sub).await;
            assert_eq!(&p.payload[..], i.to_string().as_bytes(), "in order");
        }
        // QoS 0 is not queued for offline sessions.
        assert!(tokio::time::timeout(Duration::from_millis(200), sub.recv())
            .await
            .is_err());
        // Clean start discards the session.
        sub.disconnect(ReasonCode::NORMAL_DISCONNECTION)
            .await
            .unwrap();
        options.clean_start = true;
        let (_sub, connack) = Client::connect(options).await.unwrap();
        assert!(!connack.session_present);
    }
    node.stop().await;
}

#[tokio::test]
async fn persistent_sessions_survive_a_restart() {
    let mut node = TestNode::start().await;
    let mut options = node.options(Transport::Tcp, "survivor");
    options.session_expiry_interval = Some(600);
    let (sub, _) = Client::connect(options).await.unwrap();
    sub.subscribe(
        vec![("keep/#".into(), SubscriptionOptions::new(QoS::ExactlyOnce))],
        Properties::default(),
    )
    .await
    .unwrap();
    sub.disconnect(ReasonCode::NORMAL_DISCONNECTION)
        .await
        .unwrap();
    let publisher = node.connect(Transport::Tcp, "survivor-pub").await;
    publisher
        .publish("keep/1", "queued", QoS::ExactlyOnce, false)
        .await
        .unwrap();
    publisher
        .publish("keep/r", "retained", QoS::AtLeastOnce, true)
        .await
        .unwrap();
    drop(publisher);
    node.restart().await;
    let mut options = node.options(Transport::Tcp, "survivor");
    options.clean_start = false;
    options.session_expiry_interval = Some(600);
    let (sub, connack) = Client::connect(options).await.unwrap();
    assert!(connack.session_present, "session restored from sled");
    let p = next_publish(&sub).await;
    assert_eq!((&p.payload[..], p.qos), (&b"queued"[..], QoS::ExactlyOnce));
    let p = next_publish(&sub).await;
    assert_eq!(
        &p.payload[..],
        b"retained",
        "live copy of the retained publish"
    );
    let fresh = node.connect(Transport::Tcp, "fresh").await;
    fresh
        .subscribe(
            vec![("keep/r".into(), SubscriptionOptions::new(QoS::AtLeastOnce))],
            Properties::default(),
        )
        .await
        .unwrap();
    assert_eq!(&next_publish(&fresh).await.payload[..], b"retained");
    node.stop().await;
}

#[tokio::test]
async fn session_takeover_disconnects_the_old_connection_with_0x8e() {
    let node = TestNode::start().await;
    for transport in TRANSPORTS {
        let id = format!("twin-{transport:?}");
        let first = node.connect(transport, &id).await;
        let _second = node.connect(transport, &id).await;
        match next_event(&first).await {
            Event::Disconnect(d) => assert_eq!(d.reason_code, ReasonCode::SESSION_TAKEN_OVER),
            other => panic!("{transport:?}: expected DISCONNECT 0x8E, got {other:?}"),
        }
    }
    node.stop().await;
}

#[tokio::test]
async fn unacknowledged_messages_are_resent_with_dup_on_resume() {
    let node = TestNode::start().await;
    let addr = node.addr(Transport::Tcp);
    let mut connect = RawClient::connect_packet("forgetful", true);
    connect.properties.session_expiry_interval = Some(300);
    let (mut raw, _) = RawClient::connect(addr, connect.clone()).await;
    raw.send(sub_packet(1, "dup/#", QoS::AtLeastOnce)).await;
    assert!(matches!(raw.recv().await, Some(Packet::SubAck(_))));
    let publisher = node.connect(Transport::Tcp, "dup-pub").await;
    publisher
        .publish("dup/1", "once", QoS::AtLeastOnce, false)
        .await
        .unwrap();
    let first = match raw.recv().await {
        Some(Packet::Publish(p)) => p,
        other => panic!("{other:?}"),
    };
    assert!(!first.dup);
    raw.vanish().await;
    connect.clean_start = false;
    let (mut raw, connack) = RawClient::connect(addr, connect).await;
    assert!(connack.session_present);
    match raw.recv().await {
        Some(Packet::Publish(p)) => {
            assert!(p.dup, "resent with DUP");
            assert_eq!(p.packet_id, first.packet_id, "same packet identifier");
            raw.send(Packet::PubAck(PublishResponse::success(
                p.packet_id.unwrap(),
            )))
            .await;
        }
        other => panic!("{other:?}"),
    }
    node.stop().await;
}

#[tokio::test]
async fn receive_maximum_is_honoured_towards_the_client() {
    let node = TestNode::start().await;
    let mut connect = RawClient::connect_packet("slow", true);
    connect.properties.receive_maximum = Some(2);
    let (mut raw, connack) = RawClient::connect(node.addr(Transport::Tcp), connect).await;
    assert_eq!(
        connack.properties.receive_maximum,
        Some(1024),
        "ours is announced"
    );
    raw.send(sub_packet(1, "rm/#", QoS::AtLeastOnce)).await;
    assert!(matches!(raw.recv().await, Some(Packet::SubAck(_))));
    let publisher = node.connect(Transport::Tcp, "rm-pub").await;
    for i in 0..4 {
        publisher
            .publish(&format!("rm/{i}"), "x", QoS::AtLeastOnce, false)
            .await
            .unwrap();
    }
    let mut ids = Vec::new();
    for _ in 0..2 {
        match raw.recv().await {
            Some(Packet::Publish(p)) => ids.push(p.packet_id.unwrap()),
            other => panic!("{other:?}"),
        }
    }
    assert!(
        raw.recv_within(Duration::from_millis(300)).await.is_err(),
        "window of 2 is full"
    );
    raw.send(Packet::PubAck(PublishResponse::success(ids[0])))
        .await;
    assert!(
        matches!(raw.recv().await, Some(Packet::Publish(_))),
        "one more after one ack"
    );
    node.stop().await;
}

#[tokio::test]
async fn empty_client_id_is_assigned_and_server_keep_alive_is_announced() {
    let node = TestNode::start_with("max_keep_alive = 5").await;
    let mut options = node.options(Transport::Quic, "");
    options.keep_alive = 120;
    let (_client, connack) = Client::connect(options).await.unwrap();
    let assigned = connack
        .properties
        .assigned_client_identifier
        .expect("assigned");
    assert!(!assigned.is_empty());
    assert_eq!(connack.properties.server_keep_alive, Some(5));
    // 3.1.1 with an empty ID and a persistent session is refused (rc 2).
    let mut options = node.options(Transport::Tcp, "");
    options.protocol = quicmq_proto::mqtt::ProtocolVersion::V311;
    options.clean_start = false;
    let Err(refused) = Client::connect(options).await else {
        panic!("3.1.1 with an empty client ID and clean session 0 must be refused");
    };
    assert!(
        refused.to_string().contains("Client Identifier not valid"),
        "{refused}"
    );
    node.stop().await;
}

#[tokio::test]
async fn keep_alive_timeout_disconnects_with_0x8d() {
    let node = TestNode::start().await;
    let mut connect = RawClient::connect_packet("sleepy", true);
    connect.keep_alive = 1;
    let (mut raw, _) = RawClient::connect(node.addr(Transport::Tcp), connect).await;
    let start = std::time::Instant::now();
    match raw.recv().await {
        Some(Packet::Disconnect(d)) => assert_eq!(d.reason_code, ReasonCode::KEEP_ALIVE_TIMEOUT),
        other => panic!("{other:?}"),
    }
    let waited = start.elapsed();
    assert!(
        waited >= Duration::from_millis(1400),
        "1.5 x keep alive, waited {waited:?}"
    );
    node.stop().await;
}

fn will(delay: Option<u32>) -> LastWill {
    LastWill {
        topic: "wills/x".into(),
        payload: Bytes::from_static(b"gone"),
        qos: QoS::AtLeastOnce,
        retain: false,
        properties: Properties {
            will_delay_interval: delay,
            ..Properties::default()
        },
    }
}

#[tokio::test]
async fn wills_are_published_on_abnormal_disconnect_only() {
    let node = TestNode::start().await;
    let watcher = node.connect(Transport::Tcp, "watcher").await;
    watcher
        .subscribe(
            vec![("wills/#".into(), SubscriptionOptions::new(QoS::AtLeastOnce))],
            Properties::default(),
        )
        .await
        .unwrap();
    let addr = node.addr(Transport::Tcp);
    // Abnormal: published at once.
    let mut connect = RawClient::connect_packet("dies", true);
    connect.will = Some(will(None));
    let (raw, _) = RawClient::connect(addr, connect).await;
    raw.vanish().await;
    assert_eq!(&next_publish(&watcher).await.payload[..], b"gone");
    // Abnormal, persistent session, no delay: published at once too, and
    // the broker keeps serving (the session stays).
    let mut connect = RawClient::connect_packet("dies-persistent", true);
    connect.will = Some(will(None));
    connect.properties.session_expiry_interval = Some(60);
    let (raw, _) = RawClient::connect(addr, connect.clone()).await;
    raw.vanish().await;
    assert_eq!(&next_publish(&watcher).await.payload[..], b"gone");
    connect.clean_start = false;
    let (_back, connack) = RawClient::connect(addr, connect).await;
    assert!(connack.session_present);
    // Normal DISCONNECT: no will.
    let mut connect = RawClient::connect_packet("leaves", true);
    connect.will = Some(will(None));
    let (mut raw, _) = RawClient::connect(addr, connect).await;
    raw.send(Packet::Disconnect(Disconnect::new(
        ReasonCode::NORMAL_DISCONNECTION,
    )))
    .await;
    assert!(
        tokio::time::timeout(Duration::from_millis(300), watcher.recv())
            .await
            .is_err()
    );
    // DISCONNECT 0x04: will anyway.
    let mut connect = RawClient::connect_packet("leaves-with-will", true);
    connect.will = Some(will(None));
    let (mut raw, _) = RawClient::connect(addr, connect).await;
    raw.send(Packet::Disconnect(Disconnect::new(
        ReasonCode::DISCONNECT_WITH_WILL_MESSAGE,
    )))
    .await;
    assert_eq!(&next_publish(&watcher).await.payload[..], b"gone");
    node.stop().await;
}

#[tokio::test]
async fn will_delay_waits_and_is_cancelled_by_reconnect() {
    let node = TestNode::start().await;
    let watcher = node.connect(Transport::Tcp, "delay-watcher").await;
    watcher
        .subscribe(
            vec![("wills/#".into(), SubscriptionOptions::new(QoS::AtLeastOnce))],
            Properties::default(),
        )
        .await
        .unwrap();
    let addr = node.addr(Transport::Tcp);
    let mut connect = RawClient::connect_packet("delayed", true);
    connect.will = Some(will(Some(2)));
    connect.properties.session_expiry_interval = Some(60);
    let (raw, _) = RawClient::connect(addr, connect.clone()).await;
    raw.vanish().await;
    let start = std::time::Instant::now();
    assert_eq!(&next_publish(&watcher).await.payload[..], b"gone");
    assert!(
        start.elapsed() >= Duration::from_millis(1500),
        "{:?}",
        start.elapsed()
    );
    // Reconnecting within the delay cancels the will.
    let (raw, _) = RawClient::connect(addr, connect.clone()).await;
    raw.vanish().await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    connect.clean_start = false;
    let (_back, connack) = RawClient::connect(addr, connect).await;
    assert!(connack.session_present);
    assert!(
        tokio::time::timeout(Duration::from_millis(2500), watcher.recv())
            .await
            .is_err()
    );
    node.stop().await;
}

#[tokio::test]
async fn topic_aliases_in_both_directions() {
    let node = TestNode::start().await;
    let addr = node.addr(Transport::Tcp);
    let mut connect = RawClient::connect_packet("alias-sub", true);
    connect.properties.topic_alias_maximum = Some(4);
    let (mut sub, connack) = RawClient::connect(addr, connect).await;
    assert_eq!(connack.properties.topic_alias_maximum, Some(64));
    sub.send(sub_packet(1, "alias/#", QoS::AtMostOnce)).await;
    assert!(matches!(sub.recv().await, Some(Packet::SubAck(_))));
    let (mut publisher, _) =
        RawClient::connect(addr, RawClient::connect_packet("alias-pub", true)).await;
    let publish = |topic: &str, alias: Option<u16>| {
        Packet::Publish(Publish {
            dup: false,
            qos: QoS::AtMostOnce,
            retain: false,
            topic: topic.into(),
            packet_id: None,
            properties: Properties {
                topic_alias: alias,
                ..Properties::default()
            },
            payload: Bytes::from_static(b"a"),
        })
    };
    // Inbound: set alias 3, then use it with an empty topic.
    publisher
        .send(publish("alias/long/topic/name", Some(3)))
        .await;
    publisher.send(publish("", Some(3))).await;
    let mut seen = Vec::new();
    for _ in 0..2 {
        match sub.recv().await {
            Some(Packet::Publish(p)) => seen.push((p.topic, p.properties.topic_alias)),
            other => panic!("{other:?}"),
        }
    }
    // Outbound: the broker set an alias on first use and used it after.
    assert_eq!(
        seen,
        vec![
            ("alias/long/topic/name".to_string(), Some(1)),
            (String::new(), Some(1))
        ]
    );
    node.stop().await;
}

#[tokio::test]
async fn maximum_packet_size_towards_the_client_drops_big_messages() {
    let node = TestNode::start().await;
    let mut options = node.options(Transport::Quic, "small");
    options.maximum_packet_size = Some(128);
    let (small, _) = Client::connect(options).await.unwrap();
    small
        .subscribe(
            vec![("size/#".into(), SubscriptionOptions::new(QoS::AtLeastOnce))],
            Properties::default(),
        )
        .await
        .unwrap();
    let publisher = node.connect(Transport::Quic, "big").await;
    publisher
        .publish("size/big", vec![0u8; 500], QoS::AtLeastOnce, false)
        .await
        .unwrap();
    publisher
        .publish("size/small", "ok", QoS::AtLeastOnce, false)
        .await
        .unwrap();
    let p = next_publish(&small).await;
    assert_eq!(
        p.topic, "size/small",
        "the oversize message was dropped, not sent"
    );
    node.stop().await;
}

#[tokio::test]
async fn a_connack_that_does_not_fit_the_client_closes_the_connection() {
    let node = TestNode::start().await;
    let socket = tokio::net::TcpStream::connect(node.addr(Transport::Tcp))
        .await
        .unwrap();
    let mut raw = PacketStream::new(socket, ProtocolVersion::V5);
    let mut connect = RawClient::connect_packet("tiny", false);
    connect.properties.maximum_packet_size = Some(16);
    connect.properties.session_expiry_interval = Some(600);
    raw.send(Packet::Connect(Box::new(connect))).await;
    raw.send(sub_packet(1, "tiny/#", QoS::AtLeastOnce)).await;
    assert!(
        matches!(raw.recv_within(Duration::from_secs(5)).await, Ok(None)),
        "closed without CONNACK, and the SUBSCRIBE is not served"
    );
    // Nothing of a session was made for it.
    let mut options = node.options(Transport::Tcp, "tiny");
    options.clean_start = false;
    options.session_expiry_interval = Some(600);
    let (client, connack) = Client::connect(options).await.unwrap();
    assert!(!connack.session_present);
    // A client whose limit the CONNACK fits is served as usual.
    let mut connect = RawClient::connect_packet("small-enough", true);
    connect.properties.maximum_packet_size = Some(64);
    let (_raw, connack) = RawClient::connect(node.addr(Transport::Tcp), connect).await;
    assert_eq!(connack.reason_code, ReasonCode::SUCCESS);
    client.disconnect(ReasonCode::SUCCESS).await.unwrap();
    node.stop().await;
}

#[tokio::test]
async fn a_dropped_oversize_publish_does_not_consume_a_topic_alias() {
    let node = TestNode::start().await;
    let addr = node.addr(Transport::Tcp);
    let mut connect = RawClient::connect_packet("alias-small", true);
    connect.properties.topic_alias_maximum = Some(4);
    connect.properties.maximum_packet_size = Some(64);
    let (mut sub, _) = RawClient::connect(addr, connect).await;
    sub.send(sub_packet(1, "big/#", QoS::AtMostOnce)).await;
    assert!(matches!(sub.recv().await, Some(Packet::SubAck(_))));
    let publisher = node.connect(Transport::Tcp, "alias-big-pub").await;
    publisher
        .publish("big/t", vec![7u8; 200], QoS::AtMostOnce, false)
        .await
        .unwrap();
    publisher
        .publish("big/t", "small", QoS::AtMostOnce, false)
        .await
        .unwrap();
    match sub.recv().await {
        Some(Packet::Publish(p)) => {
            assert_eq!(
                p.topic, "big/t",
                "the alias is set by the first PUBLISH actually sent"
            );
            assert_eq!(p.properties.topic_alias, Some(1));
            assert_eq!(&p.payload[..], b"small");
        }
        other => panic!("{other:?}"),
    }
    node.stop().await;
}

#[tokio::test]
async fn resuming_with_expiry_0_ends_the_stored_session_too() {
    let mut node = TestNode::start().await;
    let connect_with = |node: &TestNode, clean_start: bool, expiry: u32| {
        let mut options = node.options(Transport::Tcp, "shrinking");
        options.clean_start = clean_start;
        options.session_expiry_interval = Some(expiry);
        options
    };
    let (client, _) = Client::connect(connect_with(&node, true, 600))
        .await
        .unwrap();
    client
        .subscribe(
            vec![("s/#".into(), SubscriptionOptions::new(QoS::AtLeastOnce))],
            Properties::default(),
        )
        .await
        .unwrap();
    client
        .disconnect(ReasonCode::NORMAL_DISCONNECTION)
        .await
        .unwrap();
    let (client, connack) = Client::connect(connect_with(&node, false, 0))
        .await
        .unwrap();
    assert!(connack.session_present);
    client
        .disconnect(ReasonCode::NORMAL_DISCONNECTION)
        .await
        .unwrap();
    node.restart().await;
    let (_client, connack) = Client::connect(connect_with(&node, false, 600))
        .await
        .unwrap();
    assert!(
        !connack.session_present,
        "the session ended with its expiry-0 connection"
    );
    node.stop().await;
}
