//! Broker features end to end, over TCP, TLS and QUIC: QoS 0/1/2, retained
//! messages, wildcards, shared subscriptions, subscription options and
//! identifiers, message expiry, property pass-through.

use std::time::Duration;

use bytes::Bytes;
use quicmq_node::client::{Client, Event, Transport};
use quicmq_proto::mqtt::{
    Properties, Publish, QoS, ReasonCode, RetainHandling, SubscriptionOptions,
};
use quicmq_tests::{TestNode, TRANSPORTS};

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

async fn subscribe(client: &Client, filter: &str, options: SubscriptionOptions) -> ReasonCode {
    let suback = client
        .subscribe(vec![(filter.to_string(), options)], Properties::default())
        .await
        .expect("SUBACK");
    suback.reason_codes[0]
}

fn qos(q: QoS) -> SubscriptionOptions {
    SubscriptionOptions::new(q)
}

#[tokio::test]
async fn qos_0_1_2_end_to_end_on_every_transport() {
    let node = TestNode::start().await;
    for transport in TRANSPORTS {
        let sub = node.connect(transport, &format!("sub-{transport:?}")).await;
        assert_eq!(
            subscribe(&sub, "e2e/+/x", qos(QoS::ExactlyOnce)).await,
            ReasonCode::GRANTED_QOS_2
        );
        let publisher = node.connect(transport, &format!("pub-{transport:?}")).await;
        for q in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce] {
            let topic = format!("e2e/{}/x", q as u8);
            let reason = publisher
                .publish(&topic, format!("m{}", q as u8), q, false)
                .await
                .unwrap();
            assert_eq!(reason, ReasonCode::SUCCESS, "{transport:?} {q:?}");
            let p = next_publish(&sub).await;
            assert_eq!(
                (p.topic.as_str(), p.qos),
                (topic.as_str(), q),
                "{transport:?}"
            );
            assert_eq!(&p.payload[..], format!("m{}", q as u8).as_bytes());
        }
        // No subscriber: 5.0 says so in the PUBACK.
        let reason = publisher
            .publish("nobody/here", "x", QoS::AtLeastOnce, false)
            .await
            .unwrap();
        assert_eq!(reason, ReasonCode::NO_MATCHING_SUBSCRIBERS);
        // Subscription QoS caps delivery QoS.
        let low = node.connect(transport, &format!("low-{transport:?}")).await;
        subscribe(&low, "cap/#", qos(QoS::AtMostOnce)).await;
        publisher
            .publish("cap/1", "x", QoS::ExactlyOnce, false)
            .await
            .unwrap();
        assert_eq!(next_publish(&low).await.qos, QoS::AtMostOnce);
    }
    node.stop().await;
}

#[tokio::test]
async fn wildcards_and_dollar_topics() {
    let node = TestNode::start().await;
    let all = node.connect(Transport::Tcp, "all").await;
    subscribe(&all, "#", qos(QoS::AtLeastOnce)).await;
    let sys = node.connect(Transport::Tcp, "sys").await;
    subscribe(&sys, "$internal/+", qos(QoS::AtLeastOnce)).await;
    let publisher = node.connect(Transport::Tcp, "p").await;
    publisher
        .publish("$internal/x", "d", QoS::AtLeastOnce, false)
        .await
        .unwrap();
    publisher
        .publish("plain/x", "p", QoS::AtLeastOnce, false)
        .await
        .unwrap();
    assert_eq!(next_publish(&sys).await.topic, "$internal/x");
    assert_eq!(
        next_publish(&all).await.topic,
        "plain/x",
        "# must not match $internal/x"
    );
    assert_nothing(&sys, 200).await;
    // Invalid filters are refused per filter.
    let suback = all
        .subscribe(
            vec![
                ("a/#/b".into(), qos(QoS::AtMostOnce)),
                ("ok/+".into(), qos(QoS::AtMostOnce)),
            ],
            Properties::default(),
        )
        .await
        .unwrap();
    assert_eq!(
        suback.reason_codes,
        vec![ReasonCode::TOPIC_FILTER_INVALID, ReasonCode::GRANTED_QOS_0]
    );
    node.stop().await;
}

#[tokio::test]
async fn retained_messages_set_replace_delete_and_retain_handling() {
    let node = TestNode::start().await;
    for transport in TRANSPORTS {
        let topic = format!("ret/{transport:?}");
        let publisher = node.connect(transport, &format!("rp-{transport:?}")).await;
        publisher
            .publish(&topic, "v1", QoS::AtLeastOnce, true)
            .await
            .unwrap();
        publisher
            .publish(&topic, "v2", QoS::AtLeastOnce, true)
            .await
            .unwrap();
        let sub = node.connect(transport, &format!("rs-{transport:?}")).await;
        subscribe(&sub, &topic, qos(QoS::AtLeastOnce)).await;
        let p = next_publish(&sub).await;
        assert_eq!(
            (&p.payload[..], p.retain),
            (&b"v2"[..], true),
            "replaced, flagged retained"
        );
        // A live (not retained-at-subscribe) delivery has RETAIN 0 unless
        // Retain As Published.
        publisher
            .publish(&topic, "v3", QoS::AtLeastOnce, true)
            .await
            .unwrap();
        assert!(!next_publish(&sub).await.retain);
        let rap = node.connect(transport, &format!("rap-{transport:?}")).await;
        let mut options = qos(QoS::AtLeastOnce);
        options.retain_as_published = true;
        options.retain_handling = RetainHandling::DoNotSend;
        subscribe(&rap, &topic, options).await;
        assert_nothing(&rap, 200).await;
        publisher
            .publish(&topic, "v4", QoS::AtLeastOnce, true)
            .await
            .unwrap();
        assert!(next_publish(&rap).await.retain, "retain as published");
        // Send-if-new: a second identical SUBSCRIBE gets no retained copy.
        let ifnew = node.connect(transport, &format!("rn-{transport:?}")).await;
        let mut options = qos(QoS::AtLeastOnce);
        options.retain_handling = RetainHandling::SendIfNew;
        subscribe(&ifnew, &topic, options).await;
        assert_eq!(&next_publish(&ifnew).await.payload[..], b"v4");
        subscribe(&ifnew, &topic, options).await;
        assert_nothing(&ifnew, 200).await;
        // Empty payload deletes.
        publisher
            .publish(&topic, Bytes::new(), QoS::AtLeastOnce, true)
            .await
            .unwrap();
        let late = node.connect(transport, &format!("rl-{transport:?}")).await;
        subscribe(&late, &topic, qos(QoS::AtLeastOnce)).await;
        assert_nothing(&late, 200).await;
    }
    node.stop().await;
}

#[tokio::test]
async fn shared_subscriptions_round_robin() {
    let node = TestNode::start().await;
    let a = node.connect(Transport::Quic, "worker-a").await;
    let b = node.connect(Transport::Tcp, "worker-b").await;
    for w in [&a, &b] {
        subscribe(w, "$share/workers/jobs/#", qos(QoS::AtLeastOnce)).await;
    }
    let publisher = node.connect(Transport::Tcp, "boss").await;
    for i in 0..10 {
        publisher
            .publish(&format!("jobs/{i}"), "job", QoS::AtLeastOnce, false)
            .await
            .unwrap();
    }
    let mut counts = [0; 2];
    for (i, w) in [&a, &b].into_iter().enumerate() {
        while let Ok(Some(Event::Publish(_))) =
            tokio::time::timeout(Duration::from_millis(300), w.recv()).await
        {
            counts[i] += 1;
        }
    }
    assert_eq!(counts, [5, 5], "each job once, alternating");
    node.stop().await;
}

#[tokio::test]
async fn no_local_and_subscription_identifiers() {
    let node = TestNode::start().await;
    let me = node.connect(Transport::Quic, "me").await;
    let mut options = qos(QoS::AtLeastOnce);
    options.no_local = true;
    subscribe(&me, "chat/#", options).await;
    let props = Properties {
        subscription_identifiers: vec![42],
        ..Properties::default()
    };
    me.subscribe(vec![("chat/room".into(), qos(QoS::AtLeastOnce))], props)
        .await
        .unwrap();
    me.publish("chat/room", "mine", QoS::AtLeastOnce, false)
        .await
        .unwrap();
    // chat/# is No Local, chat/room is not: exactly one copy, with id 42.
    let p = next_publish(&me).await;
    assert_eq!(p.properties.subscription_identifiers, vec![42]);
    assert_nothing(&me, 200).await;
    let other = node.connect(Transport::Tcp, "other").await;
    other
        .publish("chat/room", "theirs", QoS::AtLeastOnce, false)
        .await
        .unwrap();
    let p = next_publish(&me).await;
    assert_eq!(&p.payload[..], b"theirs");
    assert_eq!(
        p.properties.subscription_identifiers,
        vec![42],
        "one delivery, all matching ids"
    );
    assert_eq!(p.qos, QoS::AtLeastOnce);
    node.stop().await;
}

#[tokio::test]
async fn message_expiry_and_property_pass_through() {
    let node = TestNode::start().await;
    let publisher = node.connect(Transport::Quic, "props-pub").await;
    let sub = node.connect(Transport::Quic, "props-sub").await;
    subscribe(&sub, "req/#", qos(QoS::AtLeastOnce)).await;
    let properties = Properties {
        message_expiry_interval: Some(100),
        response_topic: Some("resp/1".into()),
        correlation_data: Some(Bytes::from_static(b"corr")),
        content_type: Some("text/plain".into()),
        payload_format_indicator: Some(1),
        user_properties: vec![("k".into(), "v".into()), ("k".into(), "w".into())],
        ..Properties::default()
    };
    publisher
        .publish_packet(Publish {
            dup: false,
            qos: QoS::AtLeastOnce,
            retain: true,
            topic: "req/a".into(),
            packet_id: None,
            properties,
            payload: Bytes::from_static(b"hello"),
        })
        .await
        .unwrap();
    let p = next_publish(&sub).await;
    assert_eq!(p.properties.response_topic.as_deref(), Some("resp/1"));
    assert_eq!(p.properties.correlation_data.as_deref(), Some(&b"corr"[..]));
    assert_eq!(p.properties.content_type.as_deref(), Some("text/plain"));
    assert_eq!(p.properties.payload_format_indicator, Some(1));
    assert_eq!(p.properties.user_properties.len(), 2);
    let left = p
        .properties
        .message_expiry_interval
        .expect("expiry forwarded");
    assert!((99..=100).contains(&left), "{left}");
    // An expired retained message is not delivered.
    publisher
        .publish_packet(Publish {
            dup: false,
            qos: QoS::AtLeastOnce,
            retain: true,
            topic: "req/short".into(),
            packet_id: None,
            properties: Properties {
                message_expiry_interval: Some(1),
                ..Properties::default()
            },
            payload: Bytes::from_static(b"gone"),
        })
        .await
        .unwrap();
    let _ = next_publish(&sub).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let late = node.connect(Transport::Tcp, "props-late").await;
    subscribe(&late, "req/#", qos(QoS::AtLeastOnce)).await;
    let p = next_publish(&late).await;
    assert_eq!(p.topic, "req/a", "only the unexpired retained message");
    assert_nothing(&late, 200).await;
    node.stop().await;
}
