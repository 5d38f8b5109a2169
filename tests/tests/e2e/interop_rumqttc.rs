//! Interoperability with a client nobody here wrote: rumqttc, MQTT 3.1.1
//! and 5.0 over TCP.

use std::time::Duration;

use quicmq_node::client::Transport;
use quicmq_tests::TestNode;

#[tokio::test]
async fn rumqttc_v311_subscribe_publish_qos1_qos2() {
    use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
    let node = TestNode::start().await;
    let addr = node.addr(Transport::Tcp);
    let mut options = MqttOptions::new("rumqttc-311", addr.ip().to_string(), addr.port());
    options.set_keep_alive(Duration::from_secs(10));
    let (client, mut eventloop) = AsyncClient::new(options, 16);
    client
        .subscribe("interop/#", QoS::ExactlyOnce)
        .await
        .unwrap();
    client
        .publish("interop/1", QoS::AtLeastOnce, false, "one")
        .await
        .unwrap();
    client
        .publish("interop/2", QoS::ExactlyOnce, false, "two")
        .await
        .unwrap();
    client
        .publish("interop/0", QoS::AtMostOnce, true, "zero")
        .await
        .unwrap();
    let mut received = Vec::new();
    let (mut puback, mut pubcomp, mut suback) = (false, false, false);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while received.len() < 3 || !puback || !pubcomp || !suback {
        let event = tokio::time::timeout_at(deadline, eventloop.poll())
            .await
            .expect("events in time")
            .expect("no connection error");
        match event {
            Event::Incoming(Packet::Publish(p)) => received.push((p.topic, p.qos)),
            Event::Incoming(Packet::PubAck(_)) => puback = true,
            Event::Incoming(Packet::PubComp(_)) => pubcomp = true,
            Event::Incoming(Packet::SubAck(s)) => {
                assert_eq!(
                    s.return_codes,
                    vec![rumqttc::SubscribeReasonCode::Success(QoS::ExactlyOnce)]
                );
                suback = true;
            }
            _ => {}
        }
    }
    received.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        received,
        vec![
            ("interop/0".to_string(), QoS::AtMostOnce),
            ("interop/1".to_string(), QoS::AtLeastOnce),
            ("interop/2".to_string(), QoS::ExactlyOnce),
        ]
    );
    node.stop().await;
}

#[tokio::test]
async fn rumqttc_v5_subscribe_publish_with_properties() {
    use rumqttc::v5::mqttbytes::v5::{Packet, PublishProperties};
    use rumqttc::v5::mqttbytes::QoS;
    use rumqttc::v5::{AsyncClient, Event, MqttOptions};
    let node = TestNode::start().await;
    let addr = node.addr(Transport::Tcp);
    let mut options = MqttOptions::new("rumqttc-5", addr.ip().to_string(), addr.port());
    options.set_keep_alive(Duration::from_secs(10));
    let (client, mut eventloop) = AsyncClient::new(options, 16);
    client.subscribe("v5/#", QoS::ExactlyOnce).await.unwrap();
    let properties = PublishProperties {
        user_properties: vec![("origin".into(), "rumqttc".into())],
        response_topic: Some("v5/reply".into()),
        ..Default::default()
    };
    client
        .publish_with_properties("v5/a", QoS::AtLeastOnce, false, "hello", properties)
        .await
        .unwrap();
    client
        .publish("v5/b", QoS::ExactlyOnce, false, "exactly")
        .await
        .unwrap();
    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while got.len() < 2 {
        let event = tokio::time::timeout_at(deadline, eventloop.poll())
            .await
            .expect("events in time")
            .expect("no connection error");
        if let Event::Incoming(Packet::Publish(p)) = event {
            got.push(p);
        }
    }
    got.sort_by(|a, b| a.topic.cmp(&b.topic));
    assert_eq!(&got[0].payload[..], b"hello");
    let props = got[0]
        .properties
        .clone()
        .expect("properties passed through");
    assert_eq!(
        props.user_properties,
        vec![("origin".to_string(), "rumqttc".to_string())]
    );
    assert_eq!(props.response_topic.as_deref(), Some("v5/reply"));
    assert_eq!(
        (&got[1].payload[..], got[1].qos),
        (&b"exactly"[..], QoS::ExactlyOnce)
    );
    node.stop().await;
}

/// Mosquitto's ACL semantics, seen from rumqttc: a `#` subscription next to
/// a deny rule is granted and receives everything but the denied topic.
#[tokio::test]
async fn rumqttc_hash_subscription_under_a_partial_acl() {
    use rumqttc::v5::mqttbytes::v5::{Packet, SubscribeReasonCode};
    use rumqttc::v5::mqttbytes::QoS;
    use rumqttc::v5::{AsyncClient, Event, MqttOptions};
    let dir = tempfile::tempdir().unwrap();
    let acl = dir.path().join("acl");
    std::fs::write(
        &acl,
        "deny subscribe all test/nosubscribe\nallow both all #\n",
    )
    .unwrap();
    let node = TestNode::start_with(&format!("acl_file = {:?}\n", acl.display().to_string())).await;
    let addr = node.addr(Transport::Tcp);
    let connect = |id: &str| {
        let mut options = MqttOptions::new(id, addr.ip().to_string(), addr.port());
        options.set_keep_alive(Duration::from_secs(10));
        AsyncClient::new(options, 16)
    };
    let (watcher, mut watcher_loop) = connect("rumqttc-watch");
    let (publisher, mut publisher_loop) = connect("rumqttc-pub");
    tokio::spawn(async move { while publisher_loop.poll().await.is_ok() {} });
    watcher.subscribe("#", QoS::AtLeastOnce).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    macro_rules! next {
        () => {
            tokio::time::timeout_at(deadline, watcher_loop.poll())
                .await
                .expect("events in time")
                .expect("no connection error")
        };
    }
    loop {
        if let Event::Incoming(Packet::SubAck(ack)) = next!() {
            assert_eq!(
                ack.return_codes,
                vec![SubscribeReasonCode::Success(QoS::AtLeastOnce)]
            );
            break;
        }
    }
    for topic in ["test/nosubscribe", "test/open", "other/x"] {
        publisher
            .publish(topic, QoS::AtLeastOnce, false, "m")
            .await
            .unwrap();
    }
    let mut got = Vec::new();
    while got.len() < 2 {
        if let Event::Incoming(Packet::Publish(p)) = next!() {
            got.push(String::from_utf8_lossy(&p.topic).into_owned());
        }
    }
    // Anything the deny rule withheld would have come before `other/x`.
    assert_eq!(got, ["test/open", "other/x"]);
    node.stop().await;
}
