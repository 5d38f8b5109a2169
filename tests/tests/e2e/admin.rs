//! The admin HTTP endpoint over a plain HTTP/1.1 socket: health checks and
//! the Prometheus metrics after real traffic.
//!
//! Metrics are process-global (one recorder per process) and gauges are
//! set by whichever node touched them last, so this file runs one node at
//! a time: a single test.

use std::time::Duration;

use quicmq_node::client::{Event, Transport};
use quicmq_proto::mqtt::{Properties, QoS, ReasonCode, SubscriptionOptions};
use quicmq_tests::{http_get, metric, TestNode};

async fn metrics(node: &TestNode) -> String {
    let (status, body) = http_get(node.admin(), "/metrics").await;
    assert_eq!(status, 200, "{body}");
    body
}

/// Poll `/metrics` until `series` has `value` (gauges follow connection
/// tasks asynchronously); bounded to 3 s.
async fn wait_for_gauge(node: &TestNode, series: &str, value: f64) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    loop {
        let text = metrics(node).await;
        let now = metric(&text, series);
        if now == Some(value) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{series}: expected {value}, have {now:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn health_and_metrics_after_traffic() {
    let node = TestNode::start().await;
    let (status, body) = http_get(node.admin(), "/health/live").await;
    assert_eq!((status, body.trim()), (200, "ok"));
    let (status, body) = http_get(node.admin(), "/health/ready").await;
    assert_eq!((status, body.trim()), (200, "ready"));
    let (status, _) = http_get(node.admin(), "/no/such/page").await;
    assert_eq!(status, 404);

    let before = metrics(&node).await;
    let published_before =
        metric(&before, "quicmq_packets_received_total{type=\"publish\"}").unwrap_or(0.0);
    let quic_bytes_before =
        metric(&before, "quicmq_bytes_received_total{transport=\"quic\"}").unwrap_or(0.0);

    let sub = node.connect(Transport::Quic, "admin-sub").await;
    sub.subscribe(
        vec![
            ("admin/#".into(), SubscriptionOptions::new(QoS::AtLeastOnce)),
            ("other/+".into(), SubscriptionOptions::new(QoS::AtMostOnce)),
        ],
        Properties::default(),
    )
    .await
    .unwrap();
    let publisher = node.connect(Transport::Quic, "admin-pub").await;
    for i in 0..3 {
        publisher
            .publish(&format!("admin/{i}"), "m", QoS::AtLeastOnce, i == 0)
            .await
            .unwrap();
    }
    publisher
        .publish("admin/retained/2", "r", QoS::AtMostOnce, true)
        .await
        .unwrap();
    for _ in 0..4 {
        match tokio::time::timeout(Duration::from_secs(5), sub.recv()).await {
            Ok(Some(Event::Publish(_))) => {}
            other => panic!("{other:?}"),
        }
    }

    wait_for_gauge(&node, "quicmq_connections{transport=\"quic\"}", 2.0).await;
    wait_for_gauge(&node, "quicmq_sessions", 2.0).await;
    wait_for_gauge(&node, "quicmq_subscriptions", 2.0).await;
    wait_for_gauge(&node, "quicmq_retained_messages", 2.0).await;
    let text = metrics(&node).await;
    for series in [
        "quicmq_connections_total{transport=\"quic\"}",
        "quicmq_packets_sent_total{type=\"publish\"}",
        "quicmq_packets_received_total{type=\"subscribe\"}",
        "quicmq_messages_published_total",
    ] {
        assert!(metric(&text, series).is_some(), "{series} in {text}");
    }
    let published = metric(&text, "quicmq_packets_received_total{type=\"publish\"}")
        .expect("publish packets counted");
    assert!(
        published >= published_before + 4.0,
        "{published_before} -> {published}"
    );
    let quic_bytes = metric(&text, "quicmq_bytes_received_total{transport=\"quic\"}")
        .expect("QUIC bytes counted");
    assert!(quic_bytes > quic_bytes_before);
    assert!(
        text.contains("# TYPE quicmq_connections gauge"),
        "Prometheus type lines"
    );

    // The gauges follow clients and subscriptions going away.
    publisher
        .disconnect(ReasonCode::NORMAL_DISCONNECTION)
        .await
        .unwrap();
    wait_for_gauge(&node, "quicmq_connections{transport=\"quic\"}", 1.0).await;
    wait_for_gauge(&node, "quicmq_sessions", 1.0).await;
    sub.unsubscribe(vec!["other/+".into()]).await.unwrap();
    wait_for_gauge(&node, "quicmq_subscriptions", 1.0).await;
    publisher_clears_retained(&node).await;
    wait_for_gauge(&node, "quicmq_retained_messages", 1.0).await;
    node.stop().await;
}

async fn publisher_clears_retained(node: &TestNode) {
    let publisher = node.connect(Transport::Tcp, "admin-clear").await;
    publisher
        .publish("admin/0", bytes::Bytes::new(), QoS::AtLeastOnce, true)
        .await
        .unwrap();
}
