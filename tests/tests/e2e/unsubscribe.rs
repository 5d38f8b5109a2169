//! UNSUBSCRIBE end to end: reason codes per filter, no deliveries after it
//! (ordinary, shared and persistent subscriptions), 3.1.1's empty UNSUBACK.

use std::time::Duration;

use quicmq_node::client::{Client, Event, Transport};
use quicmq_proto::mqtt::{Properties, ProtocolVersion, QoS, ReasonCode, SubscriptionOptions};
use quicmq_tests::{TestNode, TRANSPORTS};

async fn subscribe(client: &Client, filters: &[&str]) {
    let suback = client
        .subscribe(
            filters
                .iter()
                .map(|f| (f.to_string(), SubscriptionOptions::new(QoS::AtLeastOnce)))
                .collect(),
            Properties::default(),
        )
        .await
        .unwrap();
    assert!(
        suback.reason_codes.iter().all(|c| !c.is_error()),
        "{suback:?}"
    );
}

async fn assert_nothing(client: &Client, wait_ms: u64) {
    if let Ok(Some(event)) =
        tokio::time::timeout(Duration::from_millis(wait_ms), client.recv()).await
    {
        panic!("expected nothing, got {event:?}");
    }
}

#[tokio::test]
async fn unsuback_codes_and_no_deliveries_after_unsubscribe_on_every_transport() {
    let node = TestNode::start().await;
    for transport in TRANSPORTS {
        let t = transport.name();
        let sub = node.connect(transport, &format!("unsub-{t}")).await;
        let publisher = node.connect(transport, &format!("unsub-pub-{t}")).await;
        let (a, b, shared) = (
            format!("unsub/{t}/a/#"),
            format!("unsub/{t}/b"),
            format!("$share/g/unsub/{t}/s"),
        );
        subscribe(&sub, &[&a, &b, &shared]).await;
        let unsuback = sub
            .unsubscribe(vec![a.clone(), format!("never/{t}"), shared.clone()])
            .await
            .unwrap();
        assert_eq!(
            unsuback.reason_codes,
            vec![
                ReasonCode::SUCCESS,
                ReasonCode::NO_SUBSCRIPTION_EXISTED,
                ReasonCode::SUCCESS
            ],
            "{transport:?}"
        );
        for topic in [format!("unsub/{t}/a/1"), format!("unsub/{t}/s")] {
            assert_eq!(
                publisher
                    .publish(&topic, "gone", QoS::AtLeastOnce, false)
                    .await
                    .unwrap(),
                ReasonCode::NO_MATCHING_SUBSCRIBERS,
                "{transport:?} {topic}: nobody subscribes any more"
            );
        }
        assert_eq!(
            publisher
                .publish(&b, "kept", QoS::AtLeastOnce, false)
                .await
                .unwrap(),
            ReasonCode::SUCCESS
        );
        match tokio::time::timeout(Duration::from_secs(5), sub.recv()).await {
            Ok(Some(Event::Publish(p))) => {
                assert_eq!(
                    (p.topic.as_str(), &p.payload[..]),
                    (b.as_str(), &b"kept"[..])
                )
            }
            other => panic!("{transport:?}: {other:?}"),
        }
        assert_nothing(&sub, 200).await;
        // A second UNSUBSCRIBE of the same filter: nothing existed.
        let again = sub.unsubscribe(vec![a]).await.unwrap();
        assert_eq!(
            again.reason_codes,
            vec![ReasonCode::NO_SUBSCRIPTION_EXISTED]
        );
    }
    node.stop().await;
}

#[tokio::test]
async fn unsubscribe_of_a_persistent_session_survives_a_restart() {
    let mut node = TestNode::start().await;
    let mut options = node.options(Transport::Quic, "unsub-durable");
    options.session_expiry_interval = Some(300);
    let (sub, _) = Client::connect(options).await.unwrap();
    subscribe(&sub, &["durable/gone", "durable/kept"]).await;
    let unsuback = sub.unsubscribe(vec!["durable/gone".into()]).await.unwrap();
    assert_eq!(unsuback.reason_codes, vec![ReasonCode::SUCCESS]);
    sub.disconnect(ReasonCode::NORMAL_DISCONNECTION)
        .await
        .unwrap();
    node.restart().await;
    let publisher = node.connect(Transport::Tcp, "unsub-durable-pub").await;
    assert_eq!(
        publisher
            .publish("durable/gone", "x", QoS::AtLeastOnce, false)
            .await
            .unwrap(),
        ReasonCode::NO_MATCHING_SUBSCRIBERS,
        "the stored session does not bring the subscription back"
    );
    assert_eq!(
        publisher
            .publish("durable/kept", "x", QoS::AtLeastOnce, false)
            .await
            .unwrap(),
        ReasonCode::SUCCESS
    );
    node.stop().await;
}

#[tokio::test]
async fn v311_unsuback_has_no_reason_codes_and_stops_deliveries() {
    let node = TestNode::start().await;
    for transport in [Transport::Tls, Transport::Quic] {
        let t = transport.name();
        let mut options = node.options(transport, &format!("unsub-311-{t}"));
        options.protocol = ProtocolVersion::V311;
        let (sub, _) = Client::connect(options).await.unwrap();
        let filter = format!("old/{t}/#");
        subscribe(&sub, &[&filter]).await;
        let unsuback = sub.unsubscribe(vec![filter.clone()]).await.unwrap();
        assert!(unsuback.reason_codes.is_empty(), "{unsuback:?}");
        let publisher = node.connect(transport, &format!("unsub-311-pub-{t}")).await;
        assert_eq!(
            publisher
                .publish(&format!("old/{t}/1"), "x", QoS::AtLeastOnce, false)
                .await
                .unwrap(),
            ReasonCode::NO_MATCHING_SUBSCRIBERS
        );
        assert_nothing(&sub, 200).await;
    }
    node.stop().await;
}
