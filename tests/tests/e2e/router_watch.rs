//! Routers that follow the cluster's watch stream (`--seeds`) instead of a
//! static node table: they learn the members, the QUIC-LB configuration and
//! the reset key from the cluster, pick up a joining node, reset a dead
//! node's clients, and forward nothing before the first snapshot.

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use quicmq_node::client::{Client, ClientOptions, Transport};
use quicmq_proto::mqtt::{ConnAck, QoS};
use quicmq_tests::{
    free_tcp_port, free_udp_port, http_get, metric, ClusterProcesses, RouterProcess,
};
use serde_json::Value;

const RESET_KEY: &str = "5d1b0f1c2a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5";
const LB_KEY: &str = "8f95f09245765f80256934e50c66207f";

/// Options of an independent device through the routers' public address.
/// Every node has its own development certificate: trust any.
fn options(vip: SocketAddr, client_id: &str) -> ClientOptions {
    let mut options = ClientOptions::new(vip.ip().to_string(), vip.port(), Transport::Quic);
    options.client_id = client_id.to_string();
    options.tls.insecure = true;
    options.tls.server_name = Some("localhost".into());
    options.connect_timeout = Duration::from_secs(5);
    options.quic_reuse_tokens = false;
    options
}

async fn connect(vip: SocketAddr, client_id: &str) -> (Client, String) {
    let (client, connack) = Client::connect(options(vip, client_id))
        .await
        .expect("connect through the router");
    (client, node_of(&connack))
}

fn node_of(connack: &ConnAck) -> String {
    quicmq_tests::connack_node(connack).expect("CONNACK names the node")
}

/// The router's `/api/nodes`.
async fn nodes(router: &RouterProcess) -> Value {
    let (status, body) = http_get(router.admin, "/api/nodes").await;
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).expect("/api/nodes is JSON")
}

fn live(table: &Value) -> BTreeSet<String> {
    table["nodes"]
        .as_array()
        .expect("nodes array")
        .iter()
        .filter(|n| n["live"] == true)
        .filter_map(|n| n["server_id"].as_str().map(str::to_string))
        .collect()
}

/// Waits until the router's live nodes are exactly `expected`.
async fn wait_live(router: &RouterProcess, expected: &[&str], timeout: Duration) -> Value {
    let expected: BTreeSet<String> = expected.iter().map(|s| s.to_string()).collect();
    let deadline = Instant::now() + timeout;
    loop {
        let table = nodes(router).await;
        if live(&table) == expected {
            return table;
        }
        assert!(
            Instant::now() < deadline,
            "live nodes never became {expected:?}: {table:#}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn routers_follow_the_cluster_through_a_join_and_a_kill() {
    let mut cluster =
        ClusterProcesses::start(3, &["--reset-key", RESET_KEY, "--quic-lb-key", LB_KEY]);
    let seeds: Vec<SocketAddr> = cluster.nodes.iter().map(|n| n.grpc).collect();
    let vip: SocketAddr = format!("127.0.0.1:{}", free_udp_port()).parse().unwrap();
    // No --node, no --reset-key, no QUIC-LB settings: all from the cluster.
    let tls = cluster.router_args();
    let tls: Vec<&str> = tls.iter().map(String::as_str).collect();
    let routers: Vec<RouterProcess> = (0..2)
        .map(|_| RouterProcess::spawn_with_seeds(vip, &seeds, &tls))
        .collect();
    for router in &routers {
        let table = wait_live(router, &["0001", "0002", "0003"], Duration::from_secs(10)).await;
        assert_eq!(table["cluster_id"], "quicmq", "{table:#}");
        assert!(table["revision"].as_u64().unwrap_or(0) > 0, "{table:#}");
        assert!(
            table["leader_node_id"].as_u64().unwrap_or(0) > 0,
            "{table:#}"
        );
        assert_eq!(table["quic_lb"]["encrypted"], true, "the cluster's key");
        assert!(
            quicmq_tests::metric_sum(router.admin, "quicmq_router_watch_events_total").await >= 1.0
        );
    }

    // New connections spread over all three nodes, and every packet of a
    // connection reaches its node.
    let mut by_node: HashMap<String, Vec<Client>> = HashMap::new();
    for i in 0..60 {
        let (client, node) = connect(vip, &format!("watch-{i}")).await;
        quicmq_tests::echo(&client, &format!("watch/{i}"), &format!("m{i}")).await;
        by_node.entry(node).or_default().push(client);
        if by_node.len() == 3 && i >= 11 {
            break;
        }
    }
    let seen: BTreeSet<&str> = by_node.keys().map(String::as_str).collect();
    assert_eq!(seen, BTreeSet::from(["0001", "0002", "0003"]));

    // A fourth node joins: the routers learn it from the watch stream and
    // steer new connections to it.
    let revision_before = nodes(&routers[0]).await["revision"].as_u64().unwrap_or(0);
    cluster.add_node();
    let joined = Instant::now();
    for router in &routers {
        wait_live(
            router,
            &["0001", "0002", "0003", "0004"],
            Duration::from_secs(10),
        )
        .await;
    }
    let mut reached = None;
    for i in 0..80 {
        let (client, node) = connect(vip, &format!("joiner-{i}")).await;
        let done = node == "0004";
        by_node.entry(node).or_default().push(client);
        if done {
            reached = Some(joined.elapsed());
            break;
        }
    }
    let reached = reached.expect("a new connection reached node 0004");
    println!("node 4 serving → its first connection through the routers: {reached:?}");
    assert!(reached < Duration::from_secs(5), "{reached:?}");
    quicmq_tests::echo(&by_node["0004"][0], "joined/4", "hello").await;
    let table = nodes(&routers[0]).await;
    assert!(
        table["revision"].as_u64().unwrap_or(0) > revision_before,
        "{table:#}"
    );

    // kill -9 the node router 0 watches: its clients get Stateless Resets
    // within the health window, and router 0 reconnects to another seed.
    let watched = table["seed"].as_str().expect("seed").to_string();
    let victim = cluster
        .nodes
        .iter()
        .position(|n| n.grpc.to_string() == watched)
        .expect("router 0 watches one of the nodes");
    let victim_sid = format!("{:04x}", victim + 1);
    let doomed = by_node.remove(&victim_sid).unwrap_or_default();
    assert!(!doomed.is_empty(), "clients on {victim_sid}");
    let reconnects_before =
        quicmq_tests::metric_sum(routers[0].admin, "quicmq_router_watch_reconnects_total").await;
    cluster.nodes[victim].kill9();
    let killed = Instant::now();
    for client in &doomed {
        loop {
            assert!(
                killed.elapsed() < Duration::from_secs(10),
                "no Stateless Reset within 10 s"
            );
            let sent = client
                .publish("doomed/x", "x", QoS::AtMostOnce, false)
                .await;
            if sent.is_err() || client.is_closed() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let reset_after = killed.elapsed();
    println!(
        "kill -9 of node {victim_sid} → its {} clients reset: {reset_after:?}",
        doomed.len()
    );
    assert!(reset_after < Duration::from_secs(3), "{reset_after:?}");
    let mut resets = 0.0;
    for router in &routers {
        resets +=
            quicmq_tests::metric_sum(router.admin, "quicmq_router_stateless_resets_total").await;
    }
    assert!(resets >= 1.0, "{resets} resets");
    let mut alive: Vec<&str> = vec!["0001", "0002", "0003", "0004"];
    alive.retain(|s| *s != victim_sid);
    for router in &routers {
        wait_live(router, &alive, Duration::from_secs(5)).await;
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let table = nodes(&routers[0]).await;
        if table["seed"] != watched.as_str() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "router 0 never left its dead seed: {table:#}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        quicmq_tests::metric_sum(routers[0].admin, "quicmq_router_watch_reconnects_total").await
            > reconnects_before
    );

    // The survivors keep working, and new connections avoid the dead node.
    for (node, clients) in &by_node {
        quicmq_tests::echo(&clients[0], &format!("after/{node}"), "still").await;
    }
    for i in 0..8 {
        let (client, node) = connect(vip, &format!("after-{i}")).await;
        assert_ne!(node, victim_sid);
        quicmq_tests::echo(&client, &format!("after/{i}"), "ok").await;
    }
}

#[tokio::test]
async fn without_cluster_state_a_router_is_not_ready_and_forwards_nothing() {
    // A seed where nothing listens: the router never gets a snapshot.
    let seed: SocketAddr = format!("127.0.0.1:{}", free_tcp_port()).parse().unwrap();
    let vip: SocketAddr = format!("127.0.0.1:{}", free_udp_port()).parse().unwrap();
    let router = RouterProcess::launch_with_seeds(vip, &[seed], &["--cluster-plaintext"]);
    let deadline = Instant::now() + Duration::from_secs(20);
    while tokio::net::TcpStream::connect(router.admin).await.is_err() {
        assert!(Instant::now() < deadline, "router admin never listened");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (status, body) = http_get(router.admin, "/health/ready").await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("no cluster state"), "{body}");
    let (status, _) = http_get(router.admin, "/api/nodes").await;
    assert_eq!(status, 503);

    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut initial = vec![0xc0, 0, 0, 0, 1, 8, 1, 2, 3, 4, 5, 6, 7, 8, 0, 0];
    initial.resize(1200, 0);
    for _ in 0..5 {
        socket.send_to(&initial, vip).await.unwrap();
    }
    let series = "quicmq_router_dropped_packets_total{reason=\"no_cluster_state\"}";
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, body) = http_get(router.admin, "/metrics").await;
        let dropped = metric(&body, series).unwrap_or(0.0);
        let reconnects = metric(&body, "quicmq_router_watch_reconnects_total").unwrap_or(0.0);
        if dropped >= 5.0 && reconnects >= 2.0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "dropped {dropped}, reconnects {reconnects}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (status, _) = http_get(router.admin, "/health/ready").await;
    assert_eq!(status, 503);
}
