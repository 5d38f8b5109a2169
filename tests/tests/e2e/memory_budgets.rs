//! Byte budgets against a real node process: a subscriber that never
//! reads holds at most `max_queued_bytes` queued (plus what its Receive
//! Maximum lets in flight), offline sessions together hold at most
//! `max_memory_queued`, and the publisher and everyone else are served
//! meanwhile; one client cannot hold more than `max_subscriptions`
//! subscriptions (1000 by default).

use std::time::Duration;

use bytes::Bytes;
use quicmq_node::client::Client;
use quicmq_proto::mqtt::{Packet, Properties, QoS, ReasonCode, Subscribe, SubscriptionOptions};
use quicmq_tests::{http_get, metric, metric_sum, NodeProcess, RawClient};

const KIB: usize = 1024;

async fn gauge(node: &NodeProcess, series: &str) -> f64 {
    let (status, body) = http_get(node.admin, "/metrics").await;
    assert_eq!(status, 200);
    metric(&body, series).unwrap_or(0.0)
}

fn subscribe(packet_id: u16, filter: &str) -> Packet {
    Packet::Subscribe(Subscribe {
        packet_id,
        filters: vec![(filter.into(), SubscriptionOptions::new(QoS::AtLeastOnce))],
        properties: Properties::default(),
    })
}

/// Publishes `count` QoS 1 messages of `size` bytes to `topic`; every one
/// must be acknowledged with success.
async fn publish(node: &NodeProcess, topic: &str, count: usize, size: usize) {
    let (publisher, _) = Client::connect(node.tcp_options("budget-pub"))
        .await
        .unwrap();
    let payload = Bytes::from(vec![7u8; size]);
    for _ in 0..count {
        let code = publisher
            .publish(topic, payload.clone(), QoS::AtLeastOnce, false)
            .await
            .unwrap();
        assert_eq!(code, ReasonCode::SUCCESS);
    }
    leave(&publisher).await;
}

/// DISCONNECT, which must succeed.
async fn leave(client: &Client) {
    if let Err(e) = client.disconnect(ReasonCode::SUCCESS).await {
        panic!("DISCONNECT: {e}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_that_never_reads_is_bounded_in_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let node = tokio::task::block_in_place(|| {
        NodeProcess::spawn_with(&dir.path().join("data"), &["--max-queued-bytes", "1048576"])
    });
    // Receive Maximum 4: at most four 64 KiB messages in flight.
    let mut connect = RawClient::connect_packet("never-reads", true);
    connect.properties.receive_maximum = Some(4);
    let (mut stuck, _) = RawClient::connect(node.tcp, connect).await;
    stuck.send(subscribe(1, "flood/#")).await;
    assert!(matches!(stuck.recv().await, Some(Packet::SubAck(_))));

    // 160 × 64 KiB = 10 MiB for a client that reads nothing.
    publish(&node, "flood/x", 160, 64 * KIB).await;
    let held = gauge(&node, "quicmq_queued_bytes").await as usize;
    assert!(
        held <= KIB * KIB + 4 * 65 * KIB,
        "queued + in flight: {held} bytes for a 1 MiB queue"
    );
    assert!(
        metric_sum(
            node.admin,
            "quicmq_messages_dropped_total{reason=\"queue_full\"}"
        )
        .await
            >= 100.0,
        "the oldest were dropped to make room"
    );
    // Everyone else is served as usual.
    let (other, _) = Client::connect(node.tcp_options("other")).await.unwrap();
    quicmq_tests::echo(&other, "other/t", "still here").await;
    // The session ends with its client: its bytes go back.
    stuck.vanish().await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while gauge(&node, "quicmq_queued_bytes").await > 0.0 {
        assert!(tokio::time::Instant::now() < deadline, "bytes not released");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_sessions_together_stay_within_the_node_budget() {
    let dir = tempfile::tempdir().unwrap();
    let node = tokio::task::block_in_place(|| {
        NodeProcess::spawn_with(
            &dir.path().join("data"),
            &["--max-memory-queued", "2097152"],
        )
    });
    // Ten persistent sessions, offline, each wanting every message.
    for i in 0..10 {
        let mut options = quicmq_tests::persistent(node.tcp_options(&format!("parked-{i}")));
        options.session_expiry_interval = Some(600);
        let (client, _) = Client::connect(options).await.unwrap();
        client
            .subscribe(
                vec![("park/#".into(), SubscriptionOptions::new(QoS::AtLeastOnce))],
                Properties::default(),
            )
            .await
            .unwrap();
        leave(&client).await;
    }
    // 50 × 32 KiB for each of ten sessions would be 16 MiB.
    publish(&node, "park/x", 50, 32 * KIB).await;
    let held = gauge(&node, "quicmq_queued_bytes").await as usize;
    assert!(held <= 2 * KIB * KIB, "{held} bytes held, budget 2 MiB");
    assert!(held >= KIB * KIB, "the budget is used, not wasted: {held}");
    assert!(
        metric_sum(
            node.admin,
            "quicmq_messages_dropped_total{reason=\"node_memory\"}"
        )
        .await
            > 0.0
    );
    assert_eq!(
        gauge(&node, "quicmq_queued_bytes_limit").await as usize,
        2 * KIB * KIB
    );
    // A session that comes back gets what was kept for it, in order.
    let mut options = quicmq_tests::persistent(node.tcp_options("parked-0"));
    options.session_expiry_interval = Some(600);
    let (client, connack) = Client::connect(options).await.unwrap();
    assert!(connack.session_present);
    let mut received = 0;
    while let Ok(Some(quicmq_node::client::Event::Publish(_))) =
        tokio::time::timeout(Duration::from_millis(500), client.recv()).await
    {
        received += 1;
    }
    assert!(received > 0, "parked-0 got its share");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_holds_at_most_a_thousand_subscriptions_by_default() {
    let dir = tempfile::tempdir().unwrap();
    let node = tokio::task::block_in_place(|| NodeProcess::spawn(&dir.path().join("data")));
    let (mut raw, _) =
        RawClient::connect(node.tcp, RawClient::connect_packet("hoarder", true)).await;
    let mut granted = 0;
    let mut refused = 0;
    // 1010 filters, 101 per SUBSCRIBE.
    for batch in 0..10u16 {
        let filters = (0..101)
            .map(|i| {
                (
                    format!("hoard/{batch}/{i}"),
                    SubscriptionOptions::new(QoS::AtMostOnce),
                )
            })
            .collect();
        raw.send(Packet::Subscribe(Subscribe {
            packet_id: batch + 1,
            filters,
            properties: Properties::default(),
        }))
        .await;
        let Some(Packet::SubAck(suback)) = raw.recv().await else {
            panic!("no SUBACK")
        };
        for code in suback.reason_codes {
            if code == ReasonCode::QUOTA_EXCEEDED {
                refused += 1;
            } else {
                granted += 1;
            }
        }
    }
    assert_eq!((granted, refused), (1000, 10));
}
