//! MQTT across a cluster of real node processes: publishes forwarded to
//! subscribers on other nodes, retained messages committed through Raft,
//! shared subscriptions balanced cluster-wide, a node joining under load.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use quicmq_node::client::{Client, ClientOptions, Event};
use quicmq_proto::mqtt::{Properties, QoS, ReasonCode, SubscriptionOptions};
use quicmq_tests::ClusterProcesses;
use rand::{Rng, SeedableRng};

fn options(cluster: &ClusterProcesses, node: usize, client_id: &str) -> ClientOptions {
    cluster.tcp_options(node, client_id)
}

async fn connect(cluster: &ClusterProcesses, node: usize, client_id: &str) -> Client {
    let (client, _) = Client::connect(options(cluster, node, client_id))
        .await
        .unwrap_or_else(|e| panic!("connect {client_id} to node {}: {e}", node + 1));
    client
}

async fn subscribe(client: &Client, filter: &str, qos: QoS) {
    let codes = client
        .subscribe(
            vec![(filter.into(), SubscriptionOptions::new(qos))],
            Properties::default(),
        )
        .await
        .expect("SUBACK");
    assert_eq!(codes.reason_codes, vec![ReasonCode(qos as u8)], "{filter}");
}

/// The next PUBLISH a client receives (topic, payload, QoS).
async fn next_message(client: &Client) -> (String, String, QoS) {
    loop {
        match tokio::time::timeout(Duration::from_secs(10), client.recv()).await {
            Ok(Some(Event::Publish(p))) => {
                return (
                    p.topic.clone(),
                    String::from_utf8_lossy(&p.payload).into_owned(),
                    p.qos,
                )
            }
            Ok(Some(_)) => continue,
            other => panic!("no message: {other:?}"),
        }
    }
}

async fn no_message(client: &Client, within: Duration) {
    if let Ok(Some(Event::Publish(p))) = tokio::time::timeout(within, client.recv()).await {
        panic!("unexpected message on {}", p.topic);
    }
}

#[tokio::test]
async fn a_publish_on_one_node_reaches_subscribers_on_every_node() {
    let cluster = ClusterProcesses::start(3, &[]);
    let mut subscribers = Vec::new();
    for node in 0..3 {
        let client = connect(&cluster, node, &format!("sub-{node}")).await;
        subscribe(&client, "plant/+/temp", QoS::ExactlyOnce).await;
        subscribers.push(client);
    }
    let publisher = connect(&cluster, 0, "pub").await;
    for qos in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce] {
        let payload = format!("q{}", qos as u8);
        let code = publisher
            .publish("plant/7/temp", payload.clone(), qos, false)
            .await
            .expect("published");
        assert_eq!(code, ReasonCode::SUCCESS);
        for (node, sub) in subscribers.iter().enumerate() {
            let (topic, got, got_qos) = next_message(sub).await;
            assert_eq!(
                (topic.as_str(), got.as_str(), got_qos),
                ("plant/7/temp", payload.as_str(), qos),
                "subscriber on node {}",
                node + 1
            );
        }
    }
    // A topic nobody subscribed to goes nowhere; PUBACK says so.
    let code = publisher
        .publish("other/topic", "x", QoS::AtLeastOnce, false)
        .await
        .unwrap();
    assert_eq!(code, ReasonCode::NO_MATCHING_SUBSCRIBERS);
    for sub in &subscribers {
        no_message(sub, Duration::from_millis(200)).await;
    }

    // After UNSUBSCRIBE on node 3, node 3's route goes and it gets nothing.
    subscribers[2]
        .unsubscribe(vec!["plant/+/temp".into()])
        .await
        .unwrap();
    let status = cluster
        .wait_status(0, Duration::from_secs(5), |s| {
            s["routes"].as_array().unwrap().iter().any(|r| {
                r["filter"] == "plant/+/temp" && r["node_ids"].as_array().unwrap().len() == 2
            })
        })
        .await;
    assert!(status["routes"].is_array());
    publisher
        .publish("plant/8/temp", "after", QoS::AtLeastOnce, false)
        .await
        .unwrap();
    assert_eq!(next_message(&subscribers[0]).await.1, "after");
    assert_eq!(next_message(&subscribers[1]).await.1, "after");
    no_message(&subscribers[2], Duration::from_millis(300)).await;
}

#[tokio::test]
async fn retained_messages_are_identical_on_every_node_after_random_updates() {
    let cluster = ClusterProcesses::start(3, &[]);
    let mut publishers = Vec::new();
    for node in 0..3 {
        publishers.push(connect(&cluster, node, &format!("retainer-{node}")).await);
    }
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let mut expected: BTreeMap<String, String> = BTreeMap::new();
    for i in 0..1000 {
        let topic = format!("r/{}", rng.gen_range(0..60));
        let node = rng.gen_range(0..3);
        // One in four is a delete (empty retained payload).
        let payload = if rng.gen_range(0..4) == 0 {
            String::new()
        } else {
            format!("v{i}")
        };
        publishers[node]
            .publish(&topic, payload.clone(), QoS::AtLeastOnce, true)
            .await
            .expect("retained publish");
        if payload.is_empty() {
            expected.remove(&topic);
        } else {
            expected.insert(topic, payload);
        }
    }
    // A new subscriber on each node gets the same retained set.
    for node in 0..3 {
        let client = connect(&cluster, node, &format!("reader-{node}")).await;
        subscribe(&client, "r/#", QoS::AtLeastOnce).await;
        let mut got = BTreeMap::new();
        while got.len() < expected.len() {
            let (topic, payload, _) = next_message(&client).await;
            got.insert(topic, payload);
        }
        no_message(&client, Duration::from_millis(200)).await;
        assert_eq!(got, expected, "retained set on node {}", node + 1);
    }
    let status = cluster.status(1).await;
    assert_eq!(
        status["retained_messages"].as_u64(),
        Some(expected.len() as u64)
    );
}

#[tokio::test]
async fn shared_subscription_members_on_different_nodes_each_get_a_share() {
    let cluster = ClusterProcesses::start(3, &[]);
    let mut members = Vec::new();
    for node in 0..3 {
        let client = connect(&cluster, node, &format!("worker-{node}")).await;
        subscribe(&client, "$share/workers/jobs/#", QoS::AtLeastOnce).await;
        members.push(client);
    }
    // An ordinary subscriber next to the group gets every message.
    let watcher = connect(&cluster, 1, "watcher").await;
    subscribe(&watcher, "jobs/#", QoS::AtLeastOnce).await;
    // Wait until the publishing node knows all three members' routes.
    cluster
        .wait_status(0, Duration::from_secs(5), |s| {
            s["routes"].as_array().unwrap().iter().any(|r| {
                r["filter"] == "$share/workers/jobs/#"
                    && r["node_ids"].as_array().unwrap().len() == 3
            })
        })
        .await;
    let publisher = connect(&cluster, 0, "boss").await;
    let total = 60;
    for i in 0..total {
        publisher
            .publish(
                &format!("jobs/{i}"),
                format!("{i}"),
                QoS::AtLeastOnce,
                false,
            )
            .await
            .unwrap();
    }
    let mut shares = HashMap::new();
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while seen.len() < total && tokio::time::Instant::now() < deadline {
        for (node, member) in members.iter().enumerate() {
            if let Ok(Some(Event::Publish(p))) =
                tokio::time::timeout(Duration::from_millis(20), member.recv()).await
            {
                *shares.entry(node).or_insert(0) += 1;
                seen.push(String::from_utf8_lossy(&p.payload).into_owned());
            }
        }
    }
    seen.sort_by_key(|s| s.parse::<u32>().unwrap());
    let want: Vec<String> = (0..total).map(|i| i.to_string()).collect();
    assert_eq!(seen, want, "each message went to exactly one member");
    for node in 0..3 {
        assert!(
            shares.get(&node).copied().unwrap_or(0) >= total / 6,
            "member on node {} got a fair share: {shares:?}",
            node + 1
        );
    }
    for _ in 0..total {
        next_message(&watcher).await;
    }
}

#[tokio::test]
async fn a_fourth_node_joins_while_messages_flow() {
    let mut cluster = ClusterProcesses::start(3, &[]);
    let subscriber = connect(&cluster, 2, "steady-sub").await;
    subscribe(&subscriber, "flow/#", QoS::AtLeastOnce).await;
    let publisher = connect(&cluster, 0, "steady-pub").await;
    let sender = tokio::spawn(async move {
        for i in 0..300u32 {
            publisher
                .publish("flow/x", i.to_string(), QoS::AtLeastOnce, false)
                .await
                .expect("PUBACK while a node joins");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        publisher
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    cluster.add_node();
    let publisher = sender.await.unwrap();
    for i in 0..300u32 {
        let (_, payload, _) = next_message(&subscriber).await;
        assert_eq!(payload, i.to_string(), "in order, none lost");
    }
    // The new node takes part: a subscriber there gets messages from node 1.
    let late = connect(&cluster, 3, "late-sub").await;
    subscribe(&late, "flow/#", QoS::AtLeastOnce).await;
    publisher
        .publish("flow/y", "hello node 4", QoS::AtLeastOnce, false)
        .await
        .unwrap();
    assert_eq!(next_message(&late).await.1, "hello node 4");
}

#[tokio::test]
async fn a_node_far_behind_catches_up_from_a_snapshot() {
    // Snapshots every 20 entries, and no more log kept behind them: a node
    // that misses 200 writes can only catch up from a snapshot.
    let mut cluster = ClusterProcesses::start(3, &["--raft-snapshot-logs", "20"]);
    cluster.nodes[2].kill9();
    let writer = connect(&cluster, 0, "writer").await;
    for i in 0..200 {
        writer
            .publish(
                &format!("snap/{}", i % 50),
                format!("v{i}"),
                QoS::AtLeastOnce,
                true,
            )
            .await
            .expect("retained publish with one node down");
    }
    // Under load nodes build snapshots and purge their logs late: wait until
    // the entries node 3 misses are gone from the logs of both live nodes
    // (either may lead when node 3 comes back), or node 3 could still catch
    // up from a log.
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    for node in 0..2 {
        loop {
            let (_, body) = quicmq_tests::http_get(cluster.nodes[node].admin, "/metrics").await;
            let index = quicmq_tests::metric(&body, "quicmq_raft_purged_index").unwrap_or(0.0);
            if index >= 100.0 {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "node {} log not purged past 100: {index}",
                node + 1
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    cluster.nodes[2].restart();
    let status = cluster
        .wait_status(2, Duration::from_secs(15), |s| s["retained_messages"] == 50)
        .await;
    assert_eq!(status["retained_messages"], 50);
    let (code, body) = quicmq_tests::http_get(cluster.nodes[2].admin, "/metrics").await;
    assert_eq!(code, 200);
    let installed = quicmq_tests::metric(&body, "quicmq_raft_snapshots_total{kind=\"installed\"}")
        .unwrap_or(0.0);
    assert!(installed >= 1.0, "node 3 installed a snapshot:\n{body}");
    // And its broker serves the same retained set once it has applied the
    // entries behind the snapshot too (the count of 50 holds as soon as
    // the snapshot is in; later values of the same topics follow).
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let mut attempt = 0;
    loop {
        attempt += 1;
        let reader = connect(&cluster, 2, &format!("reader-{attempt}")).await;
        subscribe(&reader, "snap/7", QoS::AtLeastOnce).await;
        let (_, payload, _) = next_message(&reader).await;
        if payload == "v157" {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "node 3 still serves {payload} for snap/7 after 10 s (want v157)"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn after_suback_a_publish_on_any_node_reaches_the_new_subscriber() {
    // The subscribing node acknowledges only once every live peer routes
    // by the new route: no wait between SUBACK and a PUBLISH elsewhere.
    let cluster = ClusterProcesses::start(3, &[]);
    let subscriber = connect(&cluster, 1, "fresh-sub").await;
    let publishers = [
        connect(&cluster, 0, "pub-1").await,
        connect(&cluster, 2, "pub-3").await,
    ];
    for round in 0..20 {
        let filter = format!("fresh/{round}");
        subscribe(&subscriber, &filter, QoS::AtLeastOnce).await;
        let publisher = &publishers[round % 2];
        let code = publisher
            .publish(&filter, format!("r{round}"), QoS::AtLeastOnce, false)
            .await
            .expect("published");
        assert_eq!(
            code,
            ReasonCode::SUCCESS,
            "round {round}: a subscriber matched"
        );
        let (topic, payload, _) = next_message(&subscriber).await;
        assert_eq!(
            (topic.as_str(), payload.as_str()),
            (filter.as_str(), format!("r{round}").as_str())
        );
    }
}
