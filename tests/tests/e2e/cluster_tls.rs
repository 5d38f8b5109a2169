//! TLS session resumption across the cluster: a ticket issued by one node
//! resumes the session on another (the cluster's ticket keys), over QUIC
//! and over TLS on TCP. Over TCP the client's rustls connection says the
//! handshake was resumed; over QUIC (quinn hides it) the node's count of
//! tickets it opened, with the connection established, says the same: a
//! ticket whose PSK did not check out would have failed the handshake.
//!
//! One test per process on purpose: the client library keeps tickets per
//! process, and a ticket of another test's cluster would only be refused.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use quicmq_node::client::{Client, ClientOptions, Transport};
use quicmq_proto::mqtt::ReasonCode;
use quicmq_tests::{free_tcp_port, http_get, metric, ClusterProcesses};

/// Every node has its own development certificate: trust any, so that
/// one session store (per CA setting) serves all nodes.
fn options(addr: SocketAddr, transport: Transport, client_id: &str) -> ClientOptions {
    let mut options = ClientOptions::new(addr.ip().to_string(), addr.port(), transport);
    options.client_id = client_id.to_string();
    options.tls.insecure = true;
    options.tls.server_name = Some("localhost".into());
    options.connect_timeout = Duration::from_secs(5);
    options
}

async fn counter(admin: SocketAddr, series: &str) -> f64 {
    let (status, body) = http_get(admin, "/metrics").await;
    assert_eq!(status, 200);
    metric(&body, series).unwrap_or(0.0)
}

/// Connects and disconnects; returns whether the handshake resumed (TLS
/// on TCP only).
async fn handshake(addr: SocketAddr, transport: Transport, client_id: &str) -> Option<bool> {
    let (client, _) = Client::connect(options(addr, transport, client_id))
        .await
        .expect("connects");
    let resumed = client.tls_resumed();
    // The tickets came with the handshake; give the client a moment to
    // store them before the connection goes.
    tokio::time::sleep(Duration::from_millis(50)).await;
    client
        .disconnect(ReasonCode::SUCCESS)
        .await
        .expect("DISCONNECT");
    resumed
}

/// Node 1 issues a ticket: a first handshake with it is a full one (the
/// cluster adds its first ticket key right after it forms; retried until
/// a ticket came with the handshake).
async fn first_ticket_from(admin: SocketAddr, addr: SocketAddr, transport: Transport) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let before = counter(admin, "quicmq_tls_tickets_issued_total").await;
        assert_ne!(
            handshake(addr, transport, "first").await,
            Some(true),
            "no ticket yet: a full handshake"
        );
        if counter(admin, "quicmq_tls_tickets_issued_total").await > before {
            return;
        }
        assert!(Instant::now() < deadline, "node 1 never issued a ticket");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn a_ticket_from_one_node_resumes_on_the_others() {
    let cluster = ClusterProcesses::start(3, &[]);
    let (n1, n2, n3) = (&cluster.nodes[0], &cluster.nodes[1], &cluster.nodes[2]);

    // QUIC: a ticket from node 1 resumes on node 2, then node 2's on node 3.
    first_ticket_from(n1.admin, n1.quic, Transport::Quic).await;
    for (node, name) in [(n2, "node 2"), (n3, "node 3")] {
        let opened = counter(node.admin, "quicmq_tls_tickets_opened_total").await;
        handshake(node.quic, Transport::Quic, "roamer").await;
        assert_eq!(
            counter(node.admin, "quicmq_tls_tickets_opened_total").await,
            opened + 1.0,
            "{name} resumed the session with a ticket another node issued"
        );
        assert_eq!(
            counter(
                node.admin,
                "quicmq_tls_tickets_refused_total{reason=\"unknown_key\"}"
            )
            .await,
            0.0
        );
    }
}

#[tokio::test]
async fn tls_over_tcp_resumes_on_another_node() {
    let mut cluster = ClusterProcesses::start(0, &[]);
    let tls1: SocketAddr = format!("127.0.0.1:{}", free_tcp_port()).parse().unwrap();
    let tls2: SocketAddr = format!("127.0.0.1:{}", free_tcp_port()).parse().unwrap();
    cluster.add_node_with(&["--tls-addr", &tls1.to_string()]);
    cluster.add_node_with(&["--tls-addr", &tls2.to_string()]);
    let (n1, n2) = (&cluster.nodes[0], &cluster.nodes[1]);
    first_ticket_from(n1.admin, tls1, Transport::Tls).await;
    assert_eq!(
        handshake(tls2, Transport::Tls, "roamer").await,
        Some(true),
        "node 2 resumed node 1's TLS session (rustls: HandshakeKind::Resumed)"
    );
    assert!(counter(n2.admin, "quicmq_tls_tickets_opened_total").await >= 1.0);
}
