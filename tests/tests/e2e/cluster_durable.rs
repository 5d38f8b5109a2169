//! Durable QoS 1/2 queues of persistent sessions: a message acknowledged
//! to its publisher is committed, through Raft, to the queue of every
//! persistent session it reached, so killing the node that held the
//! session loses none of it; the node that resumes the session replays
//! the queue with DUP set. Without a majority the publisher hears 0x80
//! instead of an acknowledgement.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use quicmq_node::client::{Client, ClientOptions, Event};
use quicmq_proto::mqtt::{QoS, ReasonCode};
use quicmq_tests::{http_get, metric, persistent, subscribe_qos1 as subscribe, ClusterProcesses};

fn options(cluster: &ClusterProcesses, node: usize, client_id: &str) -> ClientOptions {
    cluster.tcp_options(node, client_id)
}

#[tokio::test]
async fn acknowledged_messages_survive_the_kill_of_the_sessions_node() {
    const COUNT: usize = 200;
    let mut cluster = ClusterProcesses::start(3, &[]);
    // A persistent subscriber on node 2, offline while the messages come.
    let (sub, _) = Client::connect(persistent(options(&cluster, 1, "keeper")))
        .await
        .unwrap();
    subscribe(&sub, "durable/#").await;
    sub.disconnect(ReasonCode::SUCCESS).await.unwrap();

    // Published on node 1: forwarded to node 2, queued there and, before
    // each PUBACK, committed to the session's durable queue.
    let (publisher, _) = Client::connect(options(&cluster, 0, "pub")).await.unwrap();
    for i in 0..COUNT {
        let code = publisher
            .publish("durable/x", i.to_string(), QoS::AtLeastOnce, false)
            .await
            .expect("PUBACK");
        assert_eq!(code, ReasonCode::SUCCESS, "message {i}");
    }

    // The node holding the session dies with its store.
    cluster.nodes[1].kill9();

    // Resumed on node 3: everything acknowledged is replayed, with DUP.
    let started = Instant::now();
    let (sub, connack) = Client::connect(persistent(options(&cluster, 2, "keeper")))
        .await
        .unwrap();
    assert!(connack.session_present);
    let mut seen = BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while seen.len() < COUNT {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, sub.recv()).await {
            Ok(Some(Event::Publish(p))) => {
                assert!(p.dup, "a replayed message has DUP set");
                seen.insert(
                    String::from_utf8_lossy(&p.payload)
                        .parse::<usize>()
                        .unwrap(),
                );
            }
            Ok(Some(_)) => {}
            other => panic!("{} of {COUNT} messages replayed: {other:?}", seen.len()),
        }
    }
    assert_eq!(seen, (0..COUNT).collect::<BTreeSet<_>>());
    println!(
        "{COUNT} messages replayed on node 3 in {:?}",
        started.elapsed()
    );
    let (_, body) = http_get(cluster.nodes[2].admin, "/metrics").await;
    assert_eq!(
        metric(&body, "quicmq_durable_replayed_total"),
        Some(COUNT as f64)
    );

    // Acknowledged now; the session moves on to node 1 and keeps
    // working. (Acknowledgements node 3 had not committed yet when node 1
    // took the session may come again, with DUP: at least once.)
    sub.disconnect(ReasonCode::SUCCESS).await.unwrap();
    let (sub, _) = Client::connect(persistent(options(&cluster, 0, "keeper")))
        .await
        .unwrap();
    publisher
        .publish("durable/x", "after", QoS::AtLeastOnce, false)
        .await
        .unwrap();
    loop {
        match tokio::time::timeout(Duration::from_secs(10), sub.recv()).await {
            Ok(Some(Event::Publish(p))) if &p.payload[..] == b"after" => break,
            Ok(Some(Event::Publish(p))) => assert!(p.dup, "only replays come before it"),
            Ok(Some(_)) => {}
            other => panic!("{other:?}"),
        }
    }
    // Everything is acknowledged: once node 1's acknowledgements commit,
    // the cluster holds no queued message for the session.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, body) = http_get(cluster.nodes[0].admin, "/api/cluster/status").await;
        let status: serde_json::Value = serde_json::from_str(&body).unwrap();
        if status["queued_messages"] == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "queue not empty: {status}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn without_a_majority_a_durable_publish_is_refused_not_acknowledged() {
    let mut cluster = ClusterProcesses::start(3, &[]);
    let (sub, _) = Client::connect(persistent(options(&cluster, 0, "alone")))
        .await
        .unwrap();
    subscribe(&sub, "lonely/t").await;
    let (publisher, _) = Client::connect(options(&cluster, 0, "p")).await.unwrap();
    cluster.nodes[1].kill9();
    cluster.nodes[2].kill9();
    let started = Instant::now();
    let code = publisher
        .publish("lonely/t", "m", QoS::AtLeastOnce, false)
        .await
        .expect("an answer");
    assert_eq!(
        code,
        ReasonCode::UNSPECIFIED_ERROR,
        "not acknowledged as delivered"
    );
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "{:?}",
        started.elapsed()
    );
    // A QoS 0 message needs no commit and still flows.
    publisher
        .publish("lonely/t", "q0", QoS::AtMostOnce, false)
        .await
        .unwrap();
    loop {
        match tokio::time::timeout(Duration::from_secs(5), sub.recv()).await {
            Ok(Some(Event::Publish(p))) if &p.payload[..] == b"q0" => break,
            Ok(Some(_)) => {}
            other => panic!("{other:?}"),
        }
    }
}

/// A publish routed to a session on a node that just died is refused
/// (0x80) once the node has been unreachable for about a second, not
/// after the 8 s durable-queue timeout: the publisher learns early and
/// may send again. Nothing is acknowledged that no live node queued.
#[tokio::test]
async fn a_publish_to_a_dead_nodes_session_is_refused_within_seconds() {
    let mut cluster = ClusterProcesses::start(3, &[]);
    let (sub, _) = Client::connect(persistent(options(&cluster, 1, "stranded")))
        .await
        .unwrap();
    subscribe(&sub, "stranded/#").await;
    let (publisher, _) = Client::connect(options(&cluster, 0, "pub")).await.unwrap();
    let code = publisher
        .publish("stranded/x", "before", QoS::AtLeastOnce, false)
        .await
        .expect("PUBACK");
    assert_eq!(code, ReasonCode::SUCCESS);

    cluster.nodes[1].kill9();
    let sent = Instant::now();
    let code = tokio::time::timeout(
        Duration::from_secs(20),
        publisher.publish("stranded/x", "after", QoS::AtLeastOnce, false),
    )
    .await
    .expect("a PUBACK at all")
    .expect("PUBACK");
    let took = sent.elapsed();
    println!("PUBACK {code:?} after {took:?}");
    assert_eq!(code, ReasonCode::UNSPECIFIED_ERROR, "not acknowledged");
    assert!(took < Duration::from_secs(5), "refused after {took:?}");
}
