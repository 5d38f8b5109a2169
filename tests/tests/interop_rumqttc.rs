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
