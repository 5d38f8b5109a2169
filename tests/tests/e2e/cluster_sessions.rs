//! Persistent sessions across a cluster of node processes: resumed on
//! another node with their subscriptions, taken over across nodes (0x8E),
//! wills published once; and a node cut off from the majority refusing
//! what needs Raft with a clear reason code instead of hanging.

use std::time::{Duration, Instant};

use quicmq_node::client::{Client, ClientOptions, Event};
use quicmq_proto::mqtt::{LastWill, Properties, QoS, ReasonCode, SubscriptionOptions};
use quicmq_tests::{persistent, subscribe_qos1 as subscribe, ClusterProcesses};

fn options(cluster: &ClusterProcesses, node: usize, client_id: &str) -> ClientOptions {
    cluster.tcp_options(node, client_id)
}

async fn next_event(client: &Client) -> Event {
    match tokio::time::timeout(Duration::from_secs(10), client.recv()).await {
        Ok(Some(event)) => event,
        other => panic!("no event: {other:?}"),
    }
}

async fn next_payload(client: &Client) -> String {
    loop {
        if let Event::Publish(p) = next_event(client).await {
            return String::from_utf8_lossy(&p.payload).into_owned();
        }
    }
}

#[tokio::test]
async fn a_session_created_on_one_node_resumes_on_another_with_its_subscriptions() {
    let cluster = ClusterProcesses::start(3, &[]);
    let (first, connack) = Client::connect(persistent(options(&cluster, 0, "roamer")))
        .await
        .unwrap();
    assert!(!connack.session_present);
    subscribe(&first, "roam/a").await;
    subscribe(&first, "roam/b/+").await;
    first.disconnect(ReasonCode::SUCCESS).await.unwrap();

    let (second, connack) = Client::connect(persistent(options(&cluster, 1, "roamer")))
        .await
        .unwrap();
    assert!(connack.session_present, "the session moved to node 2");
    let status = cluster.status(2).await;
    assert_eq!(status["persistent_sessions"], 1);

    // Both subscriptions work on node 2, fed from node 3.
    let publisher = Client::connect(options(&cluster, 2, "feeder"))
        .await
        .unwrap()
        .0;
    publisher
        .publish("roam/a", "one", QoS::AtLeastOnce, false)
        .await
        .unwrap();
    publisher
        .publish("roam/b/x", "two", QoS::AtLeastOnce, false)
        .await
        .unwrap();
    assert_eq!(next_payload(&second).await, "one");
    assert_eq!(next_payload(&second).await, "two");

    // Node 1 dropped its copy: it has no subscriber for the topic any more.
    cluster
        .wait_status(2, Duration::from_secs(5), |s| {
            s["routes"]
                .as_array()
                .unwrap()
                .iter()
                .all(|r| r["filter"] != "roam/a" || r["node_ids"].as_array().unwrap() == &[2])
        })
        .await;

    // Clean start on node 3 discards it everywhere.
    second.disconnect(ReasonCode::SUCCESS).await.unwrap();
    let mut clean = options(&cluster, 2, "roamer");
    clean.clean_start = true;
    let (third, connack) = Client::connect(clean).await.unwrap();
    assert!(!connack.session_present);
    third.disconnect(ReasonCode::SUCCESS).await.unwrap();
    cluster
        .wait_status(0, Duration::from_secs(5), |s| s["persistent_sessions"] == 0)
        .await;
}

#[tokio::test]
async fn connecting_on_another_node_takes_the_session_over() {
    let cluster = ClusterProcesses::start(3, &[]);
    let (first, _) = Client::connect(persistent(options(&cluster, 0, "twin")))
        .await
        .unwrap();
    subscribe(&first, "twin/t").await;
    let started = Instant::now();
    let (second, connack) = Client::connect(persistent(options(&cluster, 1, "twin")))
        .await
        .unwrap();
    assert!(connack.session_present);
    match next_event(&first).await {
        Event::Disconnect(d) => assert_eq!(d.reason_code, ReasonCode::SESSION_TAKEN_OVER),
        other => panic!("the first connection is taken over: {other:?}"),
    }
    println!("cross-node takeover took {:?}", started.elapsed());
    let publisher = Client::connect(options(&cluster, 2, "p")).await.unwrap().0;
    publisher
        .publish("twin/t", "to the new owner", QoS::AtLeastOnce, false)
        .await
        .unwrap();
    assert_eq!(next_payload(&second).await, "to the new owner");
}

#[tokio::test]
async fn a_will_is_published_once_by_the_owning_node() {
    let cluster = ClusterProcesses::start(3, &[]);
    let mut watchers = Vec::new();
    for node in 0..3 {
        let w = Client::connect(options(&cluster, node, &format!("w{node}")))
            .await
            .unwrap()
            .0;
        subscribe(&w, "wills/#").await;
        watchers.push(w);
    }
    let mut opts = persistent(options(&cluster, 1, "mortal"));
    opts.will = Some(LastWill {
        topic: "wills/mortal".into(),
        payload: "gone".into(),
        qos: QoS::AtLeastOnce,
        retain: false,
        properties: Properties::default(),
    });
    let (mortal, _) = Client::connect(opts).await.unwrap();
    // 0x04: disconnect with will message.
    mortal.disconnect(ReasonCode(0x04)).await.unwrap();
    for w in &watchers {
        assert_eq!(next_payload(w).await, "gone");
    }
    for w in &watchers {
        if let Ok(Some(Event::Publish(p))) =
            tokio::time::timeout(Duration::from_millis(500), w.recv()).await
        {
            panic!("the will came twice: {p:?}");
        }
    }
}

#[tokio::test]
async fn a_node_cut_off_from_the_majority_refuses_raft_writes_with_a_reason_code() {
    let mut cluster = ClusterProcesses::start(3, &[]);
    let client = Client::connect(options(&cluster, 2, "lonely"))
        .await
        .unwrap()
        .0;
    cluster.nodes[0].kill9();
    cluster.nodes[1].kill9();

    // A retained PUBLISH needs Raft: refused with 0x80, not a hang.
    let started = Instant::now();
    let code = client
        .publish("kept", "x", QoS::AtLeastOnce, true)
        .await
        .expect("a PUBACK");
    assert_eq!(code, ReasonCode::UNSPECIFIED_ERROR);
    assert!(started.elapsed() < Duration::from_secs(10));

    // A new filter needs a route: SUBACK 0x80 for it.
    let ack = client
        .subscribe(
            vec![(
                "new/filter".into(),
                SubscriptionOptions::new(QoS::AtLeastOnce),
            )],
            Properties::default(),
        )
        .await
        .expect("a SUBACK");
    assert_eq!(ack.reason_codes, vec![ReasonCode::UNSPECIFIED_ERROR]);

    // Messages that need no Raft still flow on the node.
    let local = Client::connect(options(&cluster, 2, "local"))
        .await
        .unwrap()
        .0;
    local
        .publish("plain", "y", QoS::AtLeastOnce, false)
        .await
        .expect("non-retained publishes need no Raft");

    // A persistent session needs a claim: CONNACK 0x88.
    let err = Client::connect(persistent(options(&cluster, 2, "latecomer")))
        .await
        .expect_err("no leader to claim the session with");
    assert_eq!(
        err.connack().map(|c| c.reason_code),
        Some(ReasonCode::SERVER_UNAVAILABLE),
        "{err:?}"
    );
    let reason = err
        .connack()
        .and_then(|c| c.properties.reason_string.clone());
    assert!(
        reason.as_deref().is_some_and(|r| r.contains("claim")),
        "{reason:?}"
    );
    // Over QUIC it names the other members to try (Server Reference).
    let node = &cluster.nodes[2];
    let quic = quicmq_tests::options_for(
        node.quic,
        quicmq_node::client::Transport::Quic,
        "latecomer-quic",
        &node.data_dir.join("dev-cert.pem"),
    );
    let err = Client::connect(persistent(quic))
        .await
        .expect_err("no leader to claim the session with");
    let connack = err.connack().expect("a CONNACK");
    assert_eq!(connack.reason_code, ReasonCode::SERVER_UNAVAILABLE);
    let reference = connack
        .properties
        .server_reference
        .clone()
        .unwrap_or_default();
    let named: Vec<&str> = reference.split(' ').collect();
    for other in &cluster.nodes[..2] {
        assert!(
            named.contains(&other.quic.to_string().as_str()),
            "{reference:?} names {}",
            other.quic
        );
    }

    // The majority comes back: writes work again.
    cluster.nodes[0].restart();
    cluster.nodes[1].restart();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let code = client
            .publish("kept", "x", QoS::AtLeastOnce, true)
            .await
            .expect("a PUBACK");
        // Committed: success (0x10, no subscribers, is a success too).
        if code.0 < 0x80 {
            break;
        }
        assert!(Instant::now() < deadline, "writes did not resume");
    }
}

/// While a SUBSCRIBE waits for a route the cluster cannot commit (no
/// majority), its connection keeps answering PINGREQ and delivering on its
/// earlier subscriptions; the SUBACK comes within the deadline with 0x80
/// and a reason string, and the wait is in `quicmq_cluster_waits`.
#[tokio::test]
async fn a_connection_waiting_on_the_cluster_keeps_answering() {
    use quicmq_proto::mqtt::{Packet, Subscribe};
    use quicmq_tests::RawClient;

    let mut cluster = ClusterProcesses::start(3, &[]);
    let node = &cluster.nodes[2];
    let (tcp, admin) = (node.tcp, node.admin);
    let (mut raw, _) = RawClient::connect(tcp, RawClient::connect_packet("waiter", true)).await;
    let subscribe = |packet_id: u16, filter: &str| {
        Packet::Subscribe(Subscribe {
            packet_id,
            filters: vec![(filter.into(), SubscriptionOptions::new(QoS::AtMostOnce))],
            properties: Properties::default(),
        })
    };
    raw.send(subscribe(1, "early/x")).await;
    match raw.recv().await {
        Some(Packet::SubAck(ack)) => assert_eq!(ack.reason_codes, vec![ReasonCode(0)]),
        other => panic!("expected SUBACK, got {other:?}"),
    }
    let local = Client::connect(options(&cluster, 2, "local-publisher"))
        .await
        .unwrap()
        .0;
    cluster.nodes[0].kill9();
    cluster.nodes[1].kill9();

    let started = Instant::now();
    raw.send(subscribe(2, "late/filter")).await;
    raw.send(Packet::PingReq).await;
    local
        .publish("early/x", "meanwhile", QoS::AtMostOnce, false)
        .await
        .expect("a QoS 0 publish");
    let (mut pong, mut delivered, mut suback) = (None, None, None);
    while suback.is_none() {
        match raw.recv_within(Duration::from_secs(15)).await {
            Ok(Some(Packet::PingResp)) => pong = Some(started.elapsed()),
            Ok(Some(Packet::Publish(p))) => {
                assert_eq!(&p.payload[..], b"meanwhile");
                delivered = Some(started.elapsed());
            }
            Ok(Some(Packet::SubAck(ack))) => suback = Some((started.elapsed(), ack)),
            other => panic!("expected PINGRESP, PUBLISH or SUBACK, got {other:?}"),
        }
    }
    let (acked_after, ack) = suback.expect("a SUBACK");
    let pong = pong.expect("PINGRESP before the SUBACK");
    let delivered = delivered.expect("the delivery before the SUBACK");
    assert!(
        pong < Duration::from_secs(1) && delivered < Duration::from_secs(1),
        "answered while waiting: PINGRESP after {pong:?}, delivery after {delivered:?}"
    );
    assert_eq!(ack.packet_id, 2);
    assert_eq!(ack.reason_codes, vec![ReasonCode::UNSPECIFIED_ERROR]);
    assert!(
        ack.properties
            .reason_string
            .as_deref()
            .is_some_and(|r| r.contains("cluster")),
        "{ack:?}"
    );
    assert!(
        acked_after < Duration::from_secs(10),
        "SUBACK after {acked_after:?}"
    );
    let (_, metrics) = quicmq_tests::http_get(admin, "/metrics").await;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("quicmq_cluster_waits_count")
                && l.contains("op=\"subscribe\"")
                && l.contains("outcome=\"refused\"")),
        "no refused subscribe wait in /metrics"
    );
}
