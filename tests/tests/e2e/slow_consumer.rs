//! A subscriber that never reads: its session queue stays within
//! `max_queued_messages`, the overflow is dropped and counted, publishers
//! and other subscribers are not held up.
//!
//! One test in this file, so the process-global drop counter moves only
//! because of it and the accounting can be exact.

use std::time::{Duration, Instant};

use quicmq_node::client::{Event, Transport};
use quicmq_proto::mqtt::{
    Packet, Properties, ProtocolVersion, QoS, ReasonCode, Subscribe, SubscriptionOptions,
};
use quicmq_tests::{counter, PacketStream, RawClient, TestNode};

const QUEUE_FULL: &str = "quicmq_messages_dropped_total{reason=\"queue_full\"}";
const MESSAGES: usize = 3000;
const PAYLOAD: usize = 4096;
const MAX_QUEUED: usize = 100;
/// The broker's write high-water mark per connection (connection/mod.rs).
const WRITE_HIGH_WATER: usize = 1024 * 1024;
/// The slow client's socket receive buffer.
const SLOW_RCVBUF: u32 = 8 * 1024;

/// The most a never-reading client can be holding for the broker beyond
/// its session queue: kernel buffers both ends, the writer's high-water
/// mark and one 64 KiB batch, in messages; `None` if the kernel's TCP
/// send-buffer limit cannot be read.
fn in_transit_bound() -> Option<usize> {
    let wmem = std::fs::read_to_string("/proc/sys/net/ipv4/tcp_wmem").ok()?;
    let max_sndbuf: usize = wmem.split_whitespace().nth(2)?.parse().ok()?;
    // The kernel doubles SO_RCVBUF for its bookkeeping.
    let bytes = max_sndbuf + 2 * SLOW_RCVBUF as usize + WRITE_HIGH_WATER + 64 * 1024;
    Some(bytes / PAYLOAD + 1)
}

#[tokio::test]
async fn a_subscriber_that_never_reads_is_bounded_and_holds_nobody_up() {
    let node = TestNode::start_with(&format!("max_queued_messages = {MAX_QUEUED}")).await;
    let dropped_before = counter(&node, QUEUE_FULL).await;

    // The slow subscriber: a raw socket with a small receive buffer that
    // stops reading after SUBACK.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(SLOW_RCVBUF).unwrap();
    let stream = socket.connect(node.addr(Transport::Tcp)).await.unwrap();
    let mut slow = PacketStream::new(stream, ProtocolVersion::V5);
    slow.send(Packet::Connect(Box::new(RawClient::connect_packet(
        "never-reads",
        true,
    ))))
    .await;
    assert!(matches!(slow.recv().await, Some(Packet::ConnAck(_))));
    slow.send(Packet::Subscribe(Subscribe {
        packet_id: 1,
        filters: vec![("flood/#".into(), SubscriptionOptions::new(QoS::AtMostOnce))],
        properties: Properties::default(),
    }))
    .await;
    assert!(matches!(slow.recv().await, Some(Packet::SubAck(_))));

    // A healthy subscriber on another topic, over QUIC.
    let side = node.connect(Transport::Quic, "side").await;
    side.subscribe(
        vec![("side/#".into(), SubscriptionOptions::new(QoS::AtLeastOnce))],
        Properties::default(),
    )
    .await
    .unwrap();

    let publisher = node.connect(Transport::Tcp, "flooder").await;
    let payload = bytes::Bytes::from(vec![b'x'; PAYLOAD]);
    let started = Instant::now();
    let flood = async {
        for i in 0..MESSAGES {
            publisher
                .publish(
                    &format!("flood/{}", i % 8),
                    payload.clone(),
                    QoS::AtMostOnce,
                    false,
                )
                .await
                .unwrap();
            if i % 500 == 499 {
                // Mid-flood, the healthy subscriber is served promptly.
                let sent = Instant::now();
                assert_eq!(
                    publisher
                        .publish("side/tick", i.to_string(), QoS::AtLeastOnce, false)
                        .await
                        .unwrap(),
                    ReasonCode::SUCCESS
                );
                match tokio::time::timeout(Duration::from_secs(2), side.recv()).await {
                    Ok(Some(Event::Publish(p))) => {
                        assert_eq!(&p.payload[..], i.to_string().as_bytes())
                    }
                    other => panic!("side subscriber during the flood: {other:?}"),
                }
                assert!(
                    sent.elapsed() < Duration::from_secs(2),
                    "side message took {:?}",
                    sent.elapsed()
                );
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(60), flood)
        .await
        .expect("the publisher is not held up by the slow subscriber");
    let flood_time = started.elapsed();

    // Wait (bounded) for the broker to route the whole flood: the counter
    // stops moving.
    let mut dropped = counter(&node, QUEUE_FULL).await - dropped_before;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let now = counter(&node, QUEUE_FULL).await - dropped_before;
        if now == dropped || Instant::now() > deadline {
            dropped = now;
            break;
        }
        dropped = now;
    }
    assert!(
        dropped > 0.0,
        "a full queue drops and counts (flood took {flood_time:?})"
    );

    // Now read: everything that was not dropped arrives, nothing more.
    let mut received = 0usize;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        assert!(Instant::now() < deadline, "draining took too long");
        match slow.recv_within(Duration::from_millis(1000)).await {
            Ok(Some(Packet::Publish(p))) => {
                assert_eq!(p.payload.len(), PAYLOAD);
                received += 1;
                assert!(received <= MESSAGES, "bounded loop");
            }
            Ok(Some(other)) => panic!("unexpected {other:?}"),
            Ok(None) => panic!("the broker closed the slow subscriber"),
            Err(_) => break,
        }
    }
    eprintln!(
        "flood {flood_time:?}: slow subscriber received {received}, dropped {dropped}, \
         in-transit bound {:?}",
        in_transit_bound()
    );
    assert_eq!(
        received + dropped as usize,
        MESSAGES,
        "every message was either delivered or counted as dropped \
         (received {received}, dropped {dropped})"
    );
    if let Some(bound) = in_transit_bound() {
        assert!(
            received <= bound + MAX_QUEUED,
            "the slow subscriber got {received}: more than the kernel buffers \
             and write budget ({bound}) plus a queue of {MAX_QUEUED} can hold"
        );
    }
    node.stop().await;
}
