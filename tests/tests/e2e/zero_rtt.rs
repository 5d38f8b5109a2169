//! 0-RTT: a QUIC client that comes back to the node it was on sends its
//! CONNECT (and a first QoS 0 PUBLISH) as early data, which the node
//! accepts once per ticket; through routers the client is steered home by
//! its token, and after its node dies it resumes the TLS session on
//! another node with a cluster ticket.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use quicmq_node::client::{Client, ClientOptions, Event, Resumption, Transport};
use quicmq_proto::mqtt::{Properties, Publish, QoS, ReasonCode, SubscriptionOptions};
use quicmq_tests::{free_udp_port, http_get, metric, ClusterProcesses, NodeProcess, RouterProcess};

async fn node_metric(admin: SocketAddr, series: &str) -> f64 {
    let (status, body) = http_get(admin, "/metrics").await;
    assert_eq!(status, 200);
    metric(&body, series).unwrap_or(0.0)
}

/// Waits until `resumption` holds tickets for `server` that `enough`
/// accepts (the node sends them right after the handshake).
async fn wait_tickets(
    resumption: &Resumption,
    server: SocketAddr,
    enough: impl Fn((usize, usize)) -> bool,
) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let held = resumption.tickets_held(server, "localhost");
        if enough(held) {
            return;
        }
        assert!(Instant::now() < deadline, "tickets held: {held:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn connect_and_leave(options: ClientOptions) -> (bool, String) {
    let (client, connack) = Client::connect(options).await.expect("connect");
    let node = quicmq_tests::connack_node(&connack).unwrap_or_default();
    let zero_rtt = client.zero_rtt_accepted();
    // The node's NEW_TOKEN and tickets follow the handshake.
    tokio::time::sleep(Duration::from_millis(100)).await;
    client
        .disconnect(ReasonCode::SUCCESS)
        .await
        .expect("DISCONNECT");
    (zero_rtt, node)
}

#[tokio::test]
async fn a_client_returning_to_its_node_connects_and_publishes_in_0rtt() {
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProcess::spawn(dir.path());
    let ca = dir.path().join("dev-cert.pem");
    let resumption = Resumption::new();
    let options = |client_id: &str| {
        let mut o = quicmq_tests::options_for(node.quic, Transport::Quic, client_id, &ca);
        o.resumption = resumption.clone();
        o
    };
    let watcher = Client::connect(quicmq_tests::options_for(
        node.tcp,
        Transport::Tcp,
        "watcher",
        &ca,
    ))
    .await
    .expect("watcher connects")
    .0;
    watcher
        .subscribe(
            vec![("early/#".into(), SubscriptionOptions::new(QoS::AtMostOnce))],
            Properties::default(),
        )
        .await
        .expect("SUBACK");

    // A new client gets cluster tickets (the cluster's first ticket key
    // appears right after start: retry until tickets came).
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (zero_rtt, _) = connect_and_leave(options("device")).await;
        assert!(!zero_rtt, "no ticket yet: no 0-RTT");
        if resumption.tickets_held(node.quic, "localhost").1 > 0 {
            break;
        }
        assert!(Instant::now() < deadline, "no cluster ticket ever came");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Back with its token: resumed with a cluster ticket (no early data on
    // those), and given node-local tickets.
    let (zero_rtt, _) = connect_and_leave(options("device")).await;
    assert!(!zero_rtt, "cluster tickets never allow 0-RTT");
    wait_tickets(&resumption, node.quic, |(home, _)| home > 0).await;

    // Back again: CONNECT and a PUBLISH in the first flight, accepted.
    let accepted_before = node_metric(node.admin, "quicmq_quic_zero_rtt_connects_total").await;
    for round in 0..3 {
        let mut o = options("device");
        o.connect_publish = Some(Publish {
            dup: false,
            qos: QoS::AtMostOnce,
            retain: false,
            topic: format!("early/{round}"),
            packet_id: None,
            properties: Properties::default(),
            payload: Bytes::from(format!("0-RTT {round}")),
        });
        let (client, connack) = Client::connect(o).await.expect("0-RTT connect");
        assert_eq!(connack.reason_code, ReasonCode::SUCCESS);
        assert!(client.zero_rtt_accepted(), "round {round}: 0-RTT accepted");
        match tokio::time::timeout(Duration::from_secs(5), watcher.recv()).await {
            Ok(Some(Event::Publish(p))) => {
                assert_eq!(p.topic, format!("early/{round}"));
                assert_eq!(&p.payload[..], format!("0-RTT {round}").as_bytes());
            }
            other => panic!("the early PUBLISH of round {round}: {other:?}"),
        }
        // Each connection brings fresh node-local tickets for the next.
        tokio::time::sleep(Duration::from_millis(100)).await;
        client.disconnect(ReasonCode::SUCCESS).await.unwrap();
    }
    // The node counts a connection whose control stream opened in a 0-RTT
    // packet. The client's early data was accepted all three times (above),
    // but on a loaded machine the node can see the stream open in a 1-RTT
    // packet first (most likely the client's retransmission of the same
    // STREAM frame; seen once in CI: 2 of 3), so the node's count is at
    // least one and at most three.
    let counted =
        node_metric(node.admin, "quicmq_quic_zero_rtt_connects_total").await - accepted_before;
    assert!((1.0..=3.0).contains(&counted), "{counted}");
    assert!(node_metric(node.admin, "quicmq_tls_home_sessions_resumed_total").await >= 3.0);

    // With 0-RTT switched off the same client connects in one more round
    // trip and nothing arrives early.
    let mut o = options("device");
    o.zero_rtt = false;
    let (client, _) = Client::connect(o).await.expect("connect without 0-RTT");
    assert!(!client.zero_rtt_accepted());
    client.disconnect(ReasonCode::SUCCESS).await.unwrap();
}

#[tokio::test]
async fn through_routers_a_client_gets_home_in_0rtt_and_resumes_elsewhere_when_home_dies() {
    let mut cluster = ClusterProcesses::start(3, &[]);
    let seeds: Vec<SocketAddr> = cluster.nodes.iter().map(|n| n.grpc).collect();
    let vip: SocketAddr = format!("127.0.0.1:{}", free_udp_port()).parse().unwrap();
    let tls = cluster.router_args();
    let tls: Vec<&str> = tls.iter().map(String::as_str).collect();
    let router = RouterProcess::spawn_with_seeds(vip, &seeds, &tls);
    let resumption = Resumption::new();
    let options = || {
        let mut o = ClientOptions::new("127.0.0.1", vip.port(), Transport::Quic);
        o.client_id = "roaming-device".into();
        // Every node has its own development certificate: trust any.
        o.tls.insecure = true;
        o.tls.server_name = Some("localhost".into());
        o.connect_timeout = Duration::from_secs(5);
        o.resumption = resumption.clone();
        o
    };
    // Wait for the router to know the cluster and for a ticket key.
    let deadline = Instant::now() + Duration::from_secs(20);
    let home = loop {
        let attempt =
            match tokio::time::timeout(Duration::from_secs(6), Client::connect(options())).await {
                Ok(Ok((client, connack))) => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    client.disconnect(ReasonCode::SUCCESS).await.ok();
                    quicmq_tests::connack_node(&connack)
                }
                _ => None,
            };
        if let Some(node) = attempt {
            if resumption.tickets_held(vip, "localhost").1 > 0 {
                break node;
            }
        }
        assert!(Instant::now() < deadline, "never connected with a ticket");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    // Its token brings it back to the same node: first resumed with the
    // cluster ticket, then in 0-RTT with the node's own.
    let (zero_rtt, node) = connect_and_leave(options()).await;
    assert_eq!(node, home, "steered home by the token");
    assert!(!zero_rtt);
    wait_tickets(&resumption, vip, |(home, _)| home > 0).await;
    // A first flight larger than one datagram: the 0-RTT packets after
    // the Initial carry no token and follow it by the router's affinity.
    let mut o = options();
    o.connect_publish = Some(Publish {
        dup: false,
        qos: QoS::AtMostOnce,
        retain: false,
        topic: "early/big".into(),
        packet_id: None,
        properties: Properties::default(),
        payload: Bytes::from(vec![b'x'; 4000]),
    });
    let (zero_rtt, node) = connect_and_leave(o).await;
    assert_eq!(node, home);
    assert!(zero_rtt, "0-RTT accepted at home through the router");
    assert!(
        quicmq_tests::metric_sum(router.admin, "quicmq_router_affinity_steered_total").await >= 1.0
    );

    // Its node dies. The client, told it lost its connection, offers a
    // cluster ticket: another node resumes the TLS session.
    let index = *cluster
        .indices_by_server_id(0)
        .await
        .get(&home)
        .expect("home node is a member");
    cluster.nodes[index].kill9();
    resumption.set_failover(true);
    let opened_before: f64 = {
        let mut sum = 0.0;
        for (i, n) in cluster.nodes.iter().enumerate() {
            if i != index {
                sum += node_metric(n.admin, "quicmq_tls_tickets_opened_total").await;
            }
        }
        sum
    };
    let deadline = Instant::now() + Duration::from_secs(15);
    let (zero_rtt, node) = loop {
        match tokio::time::timeout(Duration::from_secs(6), Client::connect(options())).await {
            Ok(Ok((client, connack))) => {
                let zero_rtt = client.zero_rtt_accepted();
                client.disconnect(ReasonCode::SUCCESS).await.ok();
                break (
                    zero_rtt,
                    quicmq_tests::connack_node(&connack).unwrap_or_default(),
                );
            }
            other => {
                assert!(
                    Instant::now() < deadline,
                    "no node took the client: {other:?}"
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    assert_ne!(node, home, "a live node took over");
    assert!(!zero_rtt, "0-RTT only at home");
    let mut opened_after = 0.0;
    for (i, n) in cluster.nodes.iter().enumerate() {
        if i != index {
            opened_after += node_metric(n.admin, "quicmq_tls_tickets_opened_total").await;
        }
    }
    assert!(
        opened_after > opened_before,
        "the new node resumed the session with the cluster ticket"
    );
}
