//! Reconnect storms: hundreds of persistent sessions connecting and
//! subscribing at once, on one node and on a 3-node cluster, over TCP and
//! QUIC. Every SUBACK arrives and grants what was asked; nothing is left
//! waiting. (Before the fix, a few dozen concurrent persistent SUBSCRIBEs
//! hung for ever in sled's `flush_async`.)

use std::time::Duration;

use quicmq_node::client::{Client, ClientOptions, Event, Transport};
use quicmq_proto::mqtt::{Properties, QoS, ReasonCode, SubscriptionOptions};
use quicmq_tests::{options_for, persistent, ClusterProcesses, NodeProcess};

/// Sessions per storm.
const SESSIONS: usize = 500;
/// QUIC clients per client endpoint (UDP socket), as a fleet simulator
/// would hold them: the test process stays light enough for the node to
/// be what is measured.
const CLIENTS_PER_ENDPOINT: usize = 25;

/// One storm at a time in this test binary: four at once on 2 cores would
/// test the machine, not the node.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
/// How long the whole storm may take (a debug build on 2 cores).
const STORM_DEADLINE: Duration = Duration::from_secs(120);

/// The filter and QoS of session `i`: half share one filter, half have a
/// filter of their own; QoS 1 and 0 alternate in each half.
fn plan(i: usize) -> (String, QoS) {
    let filter = if i.is_multiple_of(2) {
        "storm/shared".to_string()
    } else {
        format!("storm/own/{i}")
    };
    let qos = if i % 4 < 2 {
        QoS::AtLeastOnce
    } else {
        QoS::AtMostOnce
    };
    (filter, qos)
}

/// A client endpoint on loopback with socket buffers big enough for the
/// server flights of its clients' handshakes arriving together.
fn client_endpoint() -> quinn::Endpoint {
    let socket = std::net::UdpSocket::bind((std::net::Ipv4Addr::LOCALHOST, 0)).expect("bind");
    let buffers = socket2::SockRef::from(&socket);
    let _ = buffers.set_recv_buffer_size(4 << 20);
    let _ = buffers.set_send_buffer_size(4 << 20);
    quinn::Endpoint::new(
        quinn::EndpointConfig::default(),
        None,
        socket,
        std::sync::Arc::new(quinn::TokioRuntime),
    )
    .expect("client endpoint")
}

/// Connects `SESSIONS` persistent sessions at once (session `i` to
/// `options[i % options.len()]`), each subscribing to its filter, and
/// returns the clients once every SUBACK has arrived and granted its QoS.
async fn storm(
    nodes: &[(std::net::SocketAddr, std::path::PathBuf)],
    transport: Transport,
    tag: &str,
) -> Vec<Client> {
    let started = std::time::Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    let mut endpoint = None;
    for i in 0..SESSIONS {
        let (addr, cert) = &nodes[i % nodes.len()];
        let mut options: ClientOptions =
            persistent(options_for(*addr, transport, &format!("{tag}-{i}"), cert));
        if transport == Transport::Quic {
            if i % CLIENTS_PER_ENDPOINT == 0 {
                endpoint = Some(client_endpoint());
            }
            options.quic_endpoint = endpoint.clone();
        }
        options.connect_timeout = Duration::from_secs(60);
        options.session_expiry_interval = Some(3600);
        tasks.spawn(async move {
            let started = std::time::Instant::now();
            let (client, connack) = Client::connect(options)
                .await
                .map_err(|e| format!("session {i}: connect: {e} after {:?}", started.elapsed()))?;
            if connack.reason_code != ReasonCode::SUCCESS {
                return Err(format!("session {i}: CONNACK {:?}", connack.reason_code));
            }
            let (filter, qos) = plan(i);
            let ack = client
                .subscribe(
                    vec![(filter, SubscriptionOptions::new(qos))],
                    Properties::default(),
                )
                .await
                .map_err(|e| format!("session {i}: subscribe: {e}"))?;
            if ack.reason_codes != vec![ReasonCode(qos as u8)] {
                return Err(format!("session {i}: SUBACK {:?}", ack.reason_codes));
            }
            Ok((i, client))
        });
    }
    let mut clients: Vec<Option<Client>> = (0..SESSIONS).map(|_| None).collect();
    let collected = tokio::time::timeout(STORM_DEADLINE, async {
        let mut failures = Vec::new();
        while let Some(joined) = tasks.join_next().await {
            match joined.expect("storm task") {
                Ok((i, client)) => clients[i] = Some(client),
                Err(e) => failures.push(e),
            }
        }
        failures
    })
    .await;
    let failures = match collected {
        Ok(failures) => failures,
        Err(_) => {
            let done = clients.iter().filter(|c| c.is_some()).count();
            panic!("{done} of {SESSIONS} sessions subscribed within {STORM_DEADLINE:?}; the rest are still waiting");
        }
    };
    assert!(
        failures.is_empty(),
        "{} sessions failed: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    eprintln!(
        "{tag}: {SESSIONS} persistent sessions connected and subscribed in {:?}",
        started.elapsed()
    );
    clients
        .into_iter()
        .map(|c| c.expect("every session subscribed"))
        .collect()
}

/// Publishes one QoS 1 message to the shared filter and one to a few own
/// filters, and checks that their subscribers receive them: the routes of
/// the storm are in place.
async fn deliveries_reach_the_storm(publisher: &Client, clients: &[Client]) {
    publisher
        .publish("storm/shared", &b"all"[..], QoS::AtLeastOnce, false)
        .await
        .expect("PUBACK");
    for i in [1usize, 3, SESSIONS - 1] {
        publisher
            .publish(
                &format!("storm/own/{i}"),
                &b"own"[..],
                QoS::AtLeastOnce,
                false,
            )
            .await
            .expect("PUBACK");
    }
    let expect: Vec<(usize, &[u8])> = (0..SESSIONS)
        .filter(|i| i.is_multiple_of(2))
        .map(|i| (i, &b"all"[..]))
        .chain(
            [1usize, 3, SESSIONS - 1]
                .into_iter()
                .map(|i| (i, &b"own"[..])),
        )
        .collect();
    for (i, payload) in expect {
        let received = tokio::time::timeout(Duration::from_secs(30), async {
            loop {
                match clients[i].recv().await {
                    Some(Event::Publish(p)) => return Some(p.payload),
                    Some(_) => continue,
                    None => return None,
                }
            }
        })
        .await;
        match received {
            Ok(Some(got)) => assert_eq!(&got[..], payload, "session {i}"),
            other => panic!("session {i} received nothing: {other:?}"),
        }
    }
}

async fn close_all(clients: Vec<Client>) {
    let mut closing = tokio::task::JoinSet::new();
    for client in clients {
        closing.spawn(async move {
            let _ = client.disconnect(ReasonCode::SUCCESS).await;
        });
    }
    while closing.join_next().await.is_some() {}
}

/// The storm's routes deliver (see [`deliveries_reach_the_storm`]); then
/// every client leaves.
async fn check_and_close(publisher: &Client, clients: Vec<Client>, tag: &str) {
    let delivering = std::time::Instant::now();
    deliveries_reach_the_storm(publisher, &clients).await;
    eprintln!("{tag}: deliveries checked in {:?}", delivering.elapsed());
    let closing = std::time::Instant::now();
    close_all(clients).await;
    eprintln!("{tag}: closed in {:?}", closing.elapsed());
}

/// Where `node` takes clients of `transport`, and its certificate.
fn entry(node: &NodeProcess, transport: Transport) -> (std::net::SocketAddr, std::path::PathBuf) {
    let addr = match transport {
        Transport::Quic => node.quic,
        _ => node.tcp,
    };
    (addr, node.data_dir.join("dev-cert.pem"))
}

async fn one_node_storm(transport: Transport, tag: &str) {
    let _turn = ONE_AT_A_TIME.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProcess::spawn(dir.path());
    let clients = storm(&[entry(&node, transport)], transport, tag).await;
    let (publisher, _) = Client::connect(node.tcp_options(&format!("{tag}-pub")))
        .await
        .unwrap();
    check_and_close(&publisher, clients, tag).await;
}

async fn cluster_storm(transport: Transport, tag: &str) {
    let _turn = ONE_AT_A_TIME.lock().await;
    let cluster = ClusterProcesses::start(3, &[]);
    let nodes: Vec<_> = cluster.nodes.iter().map(|n| entry(n, transport)).collect();
    let clients = storm(&nodes, transport, tag).await;
    // A publisher on node 1 reaches subscribers on all three nodes.
    let (publisher, _) = Client::connect(cluster.tcp_options(0, &format!("{tag}-pub")))
        .await
        .unwrap();
    check_and_close(&publisher, clients, tag).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_hundred_persistent_sessions_subscribe_at_once_on_one_node_over_tcp() {
    one_node_storm(Transport::Tcp, "st1t").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_hundred_persistent_sessions_subscribe_at_once_on_one_node_over_quic() {
    one_node_storm(Transport::Quic, "st1q").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_hundred_persistent_sessions_subscribe_at_once_on_a_cluster_over_tcp() {
    cluster_storm(Transport::Tcp, "st3t").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_hundred_persistent_sessions_subscribe_at_once_on_a_cluster_over_quic() {
    cluster_storm(Transport::Quic, "st3q").await;
}
