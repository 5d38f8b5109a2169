//! The EMQX MQTT-over-QUIC stream convention: a control stream plus data
//! streams; PUBACK on the PUBLISH's stream; deliveries on the SUBSCRIBE's
//! stream.

use std::time::Duration;

use quicmq_node::client::{Event, Transport};
use quicmq_proto::mqtt::{Properties, QoS, ReasonCode, SubscriptionOptions};
use quicmq_tests::TestNode;

#[tokio::test]
async fn data_streams_carry_their_own_subscriptions_and_acks() {
    let node = TestNode::start().await;
    let control = node.connect(Transport::Quic, "multi").await;
    let sensors = control.open_stream().await.unwrap();
    let alarms = control.open_stream().await.unwrap();
    sensors
        .subscribe(
            vec![(
                "sensors/#".into(),
                SubscriptionOptions::new(QoS::AtLeastOnce),
            )],
            Properties::default(),
        )
        .await
        .unwrap();
    alarms
        .subscribe(
            vec![(
                "alarms/#".into(),
                SubscriptionOptions::new(QoS::AtLeastOnce),
            )],
            Properties::default(),
        )
        .await
        .unwrap();
    let publisher = node.connect(Transport::Quic, "multi-pub").await;
    let data = publisher.open_stream().await.unwrap();
    // A PUBLISH on a data stream is acknowledged there.
    assert_eq!(
        data.publish("sensors/1", "s", QoS::AtLeastOnce, false)
            .await
            .unwrap(),
        ReasonCode::SUCCESS
    );
    assert_eq!(
        data.publish("alarms/1", "a", QoS::AtLeastOnce, false)
            .await
            .unwrap(),
        ReasonCode::SUCCESS
    );
    let on = |client: &quicmq_node::client::Client| {
        let client = client.clone();
        async move {
            match tokio::time::timeout(Duration::from_secs(5), client.recv()).await {
                Ok(Some(Event::Publish(p))) => p.topic,
                other => panic!("{other:?}"),
            }
        }
    };
    assert_eq!(
        on(&sensors).await,
        "sensors/1",
        "delivered on the SUBSCRIBE's stream"
    );
    assert_eq!(on(&alarms).await, "alarms/1");
    assert!(
        tokio::time::timeout(Duration::from_millis(200), control.recv())
            .await
            .is_err(),
        "nothing on the control stream"
    );
    // Closing the connection ends every stream's session together.
    node.stop().await;
}
