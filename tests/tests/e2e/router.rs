//! Stateless routers in front of real node processes: steering by the
//! server ID in connection IDs, connection migration, router failover and
//! Stateless Resets for a dead node's connections.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use quicmq_node::client::{Client, ClientOptions, Event, Transport};
use quicmq_proto::mqtt::{ConnAck, Properties, QoS, ReasonCode, SubscriptionOptions};
use quicmq_tests::{free_udp_port, http_get, options_for, NodeProcess, RouterProcess};
use tempfile::TempDir;

const RESET_KEY: &str = "5d1b0f1c2a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5";
const LB_KEY: &str = "8f95f09245765f80256934e50c66207f";

struct Fleet {
    nodes: Vec<NodeProcess>,
    routers: Vec<RouterProcess>,
    vip: SocketAddr,
    ca: PathBuf,
    _dirs: Vec<TempDir>,
}

fn server_id(i: usize) -> String {
    format!("{:04x}", i + 1)
}

/// `nodes` node processes (one certificate) behind `routers` routers that
/// share one public UDP address.
fn fleet(nodes: usize, routers: usize) -> Fleet {
    let dirs: Vec<TempDir> = (0..nodes).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut processes: Vec<NodeProcess> = Vec::new();
    for (i, dir) in dirs.iter().enumerate() {
        let node_id = (i + 1).to_string();
        let mut args = vec![
            "--node-id",
            &node_id,
            "--reset-key",
            RESET_KEY,
            "--quic-lb-key",
            LB_KEY,
        ];
        let cert = dirs[0].path().join("dev-cert.pem").display().to_string();
        let key = dirs[0].path().join("dev-key.pem").display().to_string();
        if i > 0 {
            args.extend(["--cert", &cert, "--key", &key]);
        }
        processes.push(NodeProcess::spawn_with(dir.path(), &args));
    }
    let vip: SocketAddr = format!("127.0.0.1:{}", free_udp_port()).parse().unwrap();
    let table: Vec<(String, SocketAddr)> = processes
        .iter()
        .enumerate()
        .map(|(i, n)| (server_id(i), n.routed))
        .collect();
    let table: Vec<(&str, SocketAddr)> = table.iter().map(|(s, a)| (s.as_str(), *a)).collect();
    let routers = (0..routers)
        .map(|_| RouterProcess::spawn(vip, &table, RESET_KEY, &["--quic-lb-key", LB_KEY]))
        .collect();
    Fleet {
        ca: dirs[0].path().join("dev-cert.pem"),
        nodes: processes,
        routers,
        vip,
        _dirs: dirs,
    }
}

impl Fleet {
    /// Options of an independent device (no tokens from this process's
    /// other connections, which would steer it to their node).
    fn options(&self, client_id: &str) -> ClientOptions {
        let mut options = options_for(self.vip, Transport::Quic, client_id, &self.ca);
        options.quic_reuse_tokens = false;
        options
    }

    async fn connect(&self, client_id: &str) -> (Client, String) {
        let (client, connack) = Client::connect(self.options(client_id))
            .await
            .expect("connect through the router");
        (client, node_of(&connack))
    }
}

fn node_of(connack: &ConnAck) -> String {
    quicmq_tests::connack_node(connack).expect("CONNACK names the node")
}

#[tokio::test]
async fn routers_steer_every_connection_to_one_node_and_spread_new_ones() {
    let fleet = fleet(2, 2);
    let mut per_node: HashMap<String, usize> = HashMap::new();
    let mut clients = Vec::new();
    for i in 0..20 {
        let options = fleet.options(&format!("steer-{i}"));
        let (client, connack) = Client::connect(options)
            .await
            .expect("connect through the router");
        let node = node_of(&connack);
        *per_node.entry(node).or_default() += 1;
        clients.push(client);
    }
    assert_eq!(
        per_node.len(),
        2,
        "Initials spread over both nodes: {per_node:?}"
    );
    for (i, client) in clients.iter().enumerate() {
        quicmq_tests::echo(client, &format!("steer/{i}"), &format!("m{i}")).await;
    }
}

#[tokio::test]
async fn a_client_that_changes_its_address_keeps_its_session() {
    let fleet = fleet(2, 1);
    let (client, node) = fleet.connect("migrating").await;
    client
        .subscribe(
            vec![("mig/#".into(), SubscriptionOptions::new(QoS::AtLeastOnce))],
            Properties::default(),
        )
        .await
        .unwrap();
    let first = client.local_addr();
    let mut seen = std::collections::HashSet::new();
    let mut received = Vec::new();
    for i in 0..40u32 {
        if i == 15 {
            client.rebind().await.expect("rebind to a new UDP port");
        }
        if i == 30 {
            // A new source IP: 127.0.0.2 is as local as 127.0.0.1.
            client
                .rebind_to("127.0.0.2:0".parse().unwrap())
                .await
                .expect("rebind to a new address");
        }
        let r = client
            .publish("mig/x", i.to_string(), QoS::AtLeastOnce, false)
            .await
            .expect("PUBACK");
        assert_eq!(r, ReasonCode::SUCCESS);
        match tokio::time::timeout(Duration::from_secs(5), client.recv()).await {
            Ok(Some(Event::Publish(p))) => {
                received.push(String::from_utf8_lossy(&p.payload).to_string())
            }
            other => panic!("message {i}: {other:?}"),
        }
        seen.extend(client.local_addr());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let ips: std::collections::HashSet<_> = seen.iter().map(|a| a.ip()).collect();
    assert_eq!(
        seen.len(),
        3,
        "three local addresses over the run: {seen:?}, first {first:?}"
    );
    assert!(
        ips.contains(&std::net::IpAddr::from([127, 0, 0, 2])),
        "{ips:?}"
    );
    let expected: Vec<String> = (0..40).map(|i| i.to_string()).collect();
    assert_eq!(received, expected, "no loss, no duplicate, no reconnect");
    assert!(!client.is_closed());
    // The connection never left its node (a node drops packets whose
    // connection ID carries another server ID), and that node saw exactly
    // one connection: the migration needed no reconnect.
    let index = (0..fleet.nodes.len())
        .find(|i| server_id(*i) == node)
        .expect("CONNACK names a node of the fleet");
    let (status, body) = http_get(fleet.nodes[index].admin, "/metrics").await;
    assert_eq!(status, 200);
    assert_eq!(
        quicmq_tests::metric(&body, "quicmq_connections_total{transport=\"quic\"}"),
        Some(1.0),
        "one QUIC connection on node {node}"
    );
}

#[tokio::test]
async fn killing_one_of_two_routers_does_not_break_sessions() {
    let mut fleet = fleet(2, 2);
    let mut clients = Vec::new();
    for i in 0..8 {
        let (client, _) = fleet.connect(&format!("survivor-{i}")).await;
        client
            .subscribe(
                vec![(
                    format!("rf/{i}"),
                    SubscriptionOptions::new(QoS::AtLeastOnce),
                )],
                Properties::default(),
            )
            .await
            .unwrap();
        clients.push(client);
    }
    for router in &fleet.routers {
        let forwarded =
            quicmq_tests::metric_sum(router.admin, "quicmq_router_forwarded_packets_total").await;
        assert!(
            forwarded > 0.0,
            "both routers carry traffic before the kill"
        );
    }
    for round in 0..10u32 {
        if round == 3 {
            fleet.routers[0].kill9();
        }
        for (i, client) in clients.iter().enumerate() {
            let r = tokio::time::timeout(
                Duration::from_secs(10),
                client.publish(
                    &format!("rf/{i}"),
                    round.to_string(),
                    QoS::AtLeastOnce,
                    false,
                ),
            )
            .await
            .expect("PUBACK within 10 s")
            .expect("no reconnect needed");
            assert_eq!(r, ReasonCode::SUCCESS);
            match tokio::time::timeout(Duration::from_secs(10), client.recv()).await {
                Ok(Some(Event::Publish(p))) => {
                    assert_eq!(&p.payload[..], round.to_string().as_bytes())
                }
                other => panic!("client {i} round {round}: {other:?}"),
            }
        }
    }
    assert!(clients.iter().all(|c| !c.is_closed()));
}

#[tokio::test]
async fn a_dead_nodes_clients_get_a_stateless_reset_and_reconnect_elsewhere() {
    let mut fleet = fleet(2, 1);
    let mut on_second = Vec::new();
    for i in 0..16 {
        let (client, node) = fleet.connect(&format!("doomed-{i}")).await;
        if node == server_id(1) {
            on_second.push(client);
        }
    }
    assert!(!on_second.is_empty(), "some clients landed on node 0002");
    fleet.nodes[1].kill9();
    let killed = Instant::now();
    for client in &on_second {
        let deadline = killed + Duration::from_secs(10);
        loop {
            assert!(Instant::now() < deadline, "no Stateless Reset within 10 s");
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
    println!("kill -9 → every client of the dead node reset: {reset_after:?}");
    let resets = quicmq_tests::metric_sum(
        fleet.routers[0].admin,
        "quicmq_router_stateless_resets_total",
    )
    .await;
    assert!(
        resets >= on_second.len() as f64,
        "{resets} resets for {} clients",
        on_second.len()
    );
    // The router's health window is 500 ms; QUIC's own idle timeout is 30 s.
    assert!(reset_after < Duration::from_secs(5), "{reset_after:?}");
    let (client, node) = fleet.connect("doomed-back").await;
    assert_eq!(node, server_id(0), "new connections go to the live node");
    quicmq_tests::echo(&client, "back/1", "alive").await;
    println!(
        "kill -9 → reconnected to a live node: {:?}",
        killed.elapsed()
    );
}

#[tokio::test]
async fn a_returning_client_is_steered_home_by_its_token() {
    let fleet = fleet(3, 1);
    // Tokens are kept per process and server name; this test's name is its
    // own, so the other tests' tokens (other fleets) do not mix in.
    let connect = |client_id: String| {
        let mut options = fleet.options(&client_id);
        options.quic_reuse_tokens = true;
        options.tls.server_name = Some("127.0.0.1".into());
        async move {
            let (client, connack) = Client::connect(options)
                .await
                .expect("connect through the router");
            (client, node_of(&connack))
        }
    };
    let (first, home) = connect("homing".into()).await;
    // Let the node's NEW_TOKEN frames arrive, then leave.
    tokio::time::sleep(Duration::from_millis(300)).await;
    first
        .disconnect(ReasonCode::NORMAL_DISCONNECTION)
        .await
        .unwrap();
    for i in 0..8 {
        let (client, node) = connect(format!("homing-{i}")).await;
        assert_eq!(
            node, home,
            "reconnect {i} went to the node that issued its token"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
        client
            .disconnect(ReasonCode::NORMAL_DISCONNECTION)
            .await
            .unwrap();
    }
    let steered =
        quicmq_tests::metric_sum(fleet.routers[0].admin, "quicmq_router_token_steered_total").await;
    assert!(steered >= 8.0, "{steered} Initials steered by token");
}

#[tokio::test]
async fn malformed_datagrams_are_dropped_counted_and_harmless() {
    let fleet = fleet(1, 1);
    let (client, _) = fleet.connect("bystander").await;
    let junk = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut truncated_long = vec![0xc0, 0, 0, 0, 1, 8, 1, 2, 3];
    truncated_long.truncate(9);
    let mut cid_too_long = vec![0xc0, 0, 0, 0, 1, 21];
    cid_too_long.extend_from_slice(&[7; 40]);
    let cases: Vec<Vec<u8>> = vec![
        vec![],
        vec![0x40, 1, 2],
        truncated_long,
        cid_too_long,
        vec![0x80, 0, 0, 0, 0, 4, 1, 2, 3, 4, 0],
    ];
    let before = quicmq_tests::metric_sum(
        fleet.routers[0].admin,
        "quicmq_router_dropped_packets_total",
    )
    .await;
    for _ in 0..10 {
        for case in &cases {
            junk.send_to(case, fleet.vip).await.unwrap();
        }
        // Random bytes: whatever they parse as, the router must not fall over.
        let noise: Vec<u8> = (0..200).map(|_| rand_byte()).collect();
        junk.send_to(&noise, fleet.vip).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let dropped = quicmq_tests::metric_sum(
        fleet.routers[0].admin,
        "quicmq_router_dropped_packets_total",
    )
    .await
        - before;
    assert!(
        dropped >= 50.0,
        "every malformed datagram counted: {dropped}"
    );
    let (status, body) = http_get(fleet.routers[0].admin, "/metrics").await;
    assert_eq!(status, 200);
    for reason in ["unparseable", "cid_too_long", "version_negotiation"] {
        assert!(
            body.contains(&format!(
                "quicmq_router_dropped_packets_total{{reason=\"{reason}\"}}"
            )),
            "{reason} counted"
        );
    }
    quicmq_tests::echo(&client, "still/here", "yes").await;
}

fn rand_byte() -> u8 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static STATE: AtomicU64 = AtomicU64::new(0x2545_f491_4f6c_dd1d);
    let mut x = STATE.load(Ordering::Relaxed);
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    STATE.store(x, Ordering::Relaxed);
    (x >> 24) as u8
}
