//! A Raft cluster of real `quicmq-node` processes on loopback: forming,
//! joining, server-ID allocation, failures of followers and the leader,
//! and bad input from would-be members and gRPC peers.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use quicmq_node::client::{Client, QoS, Transport};
use quicmq_node::tls::CertUsage;
use quicmq_proto::cluster::v1::{
    admin_client::AdminClient, raft_client::RaftClient, JoinRequest, RaftEncoding, RaftHeader,
    RaftRequest,
};
use quicmq_proto::mqtt::ReasonCode;
use quicmq_tests::{binary, options_for, ClusterProcesses};
use serde_json::Value;

fn members(status: &Value) -> &Vec<Value> {
    status["members"].as_array().expect("members array")
}

fn alive_voters(status: &Value) -> usize {
    members(status)
        .iter()
        .filter(|m| m["state"] == "alive" && m["role"] == "voter")
        .count()
}

fn leader(status: &Value) -> u64 {
    status["leader_node_id"].as_u64().unwrap_or(0)
}

/// A gRPC channel to a node of `cluster`, as a node of it.
fn channel(cluster: &ClusterProcesses, addr: std::net::SocketAddr) -> tonic::transport::Channel {
    cluster.pki.channel(addr, CertUsage::Node)
}

/// The server ID a node names in its CONNACK.
async fn connack_node(addr: std::net::SocketAddr, ca: &std::path::Path) -> String {
    let (client, connack) = Client::connect(options_for(addr, Transport::Tcp, "probe", ca))
        .await
        .expect("connect");
    client
        .disconnect(quicmq_proto::mqtt::ReasonCode::SUCCESS)
        .await
        .ok();
    connack
        .properties
        .user_properties
        .iter()
        .find(|(k, _)| k == "quicmq-node")
        .map(|(_, v)| v.clone())
        .expect("CONNACK names the node")
}

#[tokio::test]
async fn three_nodes_form_one_cluster_with_distinct_server_ids() {
    let cluster = ClusterProcesses::start(3, &[]);
    let mut leaders = HashSet::new();
    for i in 0..3 {
        let status = cluster
            .wait_status(i, Duration::from_secs(10), |s| {
                alive_voters(s) == 3 && leader(s) != 0
            })
            .await;
        assert_eq!(status["cluster_id"], "quicmq");
        assert_eq!(status["node_id"], (i + 1) as u64);
        leaders.insert(leader(&status));
        let server_ids: HashSet<&str> = members(&status)
            .iter()
            .map(|m| m["server_id"].as_str().unwrap())
            .collect();
        assert_eq!(server_ids.len(), 3, "server IDs are distinct: {status:#}");
    }
    assert_eq!(leaders.len(), 1, "every node names the same leader");

    // Each node mints CIDs with (and names in CONNACK) the server ID the
    // cluster allocated: node N gets N when it fits.
    for (i, node) in cluster.nodes.iter().enumerate() {
        let ca = node.data_dir.join("dev-cert.pem");
        assert_eq!(connack_node(node.tcp, &ca).await, format!("{:04x}", i + 1));
    }
}

#[tokio::test]
async fn later_nodes_join_as_learners_and_removed_nodes_leave() {
    let mut cluster = ClusterProcesses::start(3, &[]);
    cluster.add_node();
    let status = cluster
        .wait_status(3, Duration::from_secs(10), |s| members(s).len() == 4)
        .await;
    let fourth = members(&status)
        .iter()
        .find(|m| m["node_id"] == 4)
        .expect("node 4 is a member");
    assert_eq!(fourth["role"], "learner", "voters stay at 3: {status:#}");
    assert_eq!(alive_voters(&status), 3);

    // `quicmq cluster remove 4` through node 2's admin endpoint.
    let out = std::process::Command::new(binary("quicmq"))
        .args(["cluster", "remove", "4", "--admin"])
        .arg(cluster.nodes[1].admin.to_string())
        .output()
        .expect("quicmq runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let status = cluster
        .wait_status(0, Duration::from_secs(10), |s| {
            members(s)
                .iter()
                .any(|m| m["node_id"] == 4 && m["state"] == "left")
        })
        .await;
    // The left node's server ID stays reserved.
    assert!(members(&status)
        .iter()
        .any(|m| m["node_id"] == 4 && m["server_id"] == "0004"));

    // Removing an unknown node is a clear error.
    let out = std::process::Command::new(binary("quicmq"))
        .args(["cluster", "remove", "77", "--admin"])
        .arg(cluster.nodes[0].admin.to_string())
        .output()
        .expect("quicmq runs");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("not a member"));
}

#[tokio::test]
async fn killed_follower_and_leader_recover_and_the_cluster_keeps_accepting_writes() {
    let mut cluster = ClusterProcesses::start(3, &[]);
    let status = cluster
        .wait_status(0, Duration::from_secs(10), |s| {
            alive_voters(s) == 3 && leader(s) != 0
        })
        .await;
    let first_leader = leader(&status) as usize;

    // kill -9 a follower: the others keep a leader and accept a join.
    let follower = (1..=3).find(|&n| n != first_leader).unwrap();
    cluster.nodes[follower - 1].kill9();
    cluster.add_node();
    // The follower comes back from its data directory and catches up (it
    // learns of node 4, committed while it was down).
    cluster.nodes[follower - 1].restart();
    cluster
        .wait_status(follower - 1, Duration::from_secs(10), |s| {
            members(s).len() == 4 && leader(s) != 0
        })
        .await;

    // kill -9 the leader: a new one is elected among the others.
    let killed_at = Instant::now();
    cluster.nodes[first_leader - 1].kill9();
    let survivor = (1..=3).find(|&n| n != first_leader).unwrap();
    let status = cluster
        .wait_status(survivor - 1, Duration::from_secs(10), |s| {
            leader(s) != 0 && leader(s) != first_leader as u64
        })
        .await;
    println!(
        "leader {first_leader} killed; node {} leads after {:?}",
        leader(&status),
        killed_at.elapsed()
    );
    // Writes resume: a fifth node joins.
    cluster.add_node();
    cluster
        .wait_status(survivor - 1, Duration::from_secs(10), |s| {
            members(s).len() == 5
        })
        .await;
    // The old leader restarts and catches up with everything since.
    cluster.nodes[first_leader - 1].restart();
    let status = cluster
        .wait_status(first_leader - 1, Duration::from_secs(10), |s| {
            members(s).len() == 5 && leader(s) != 0
        })
        .await;
    assert_ne!(leader(&status), 0);
}

/// A leader cut off from both followers (SIGSTOP) still appends a retained
/// PUBLISH but can never commit it: the publisher gets PUBACK 0x80 once the
/// propose timeout (5 s) passes, not an acknowledgement and not silence.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_cut_off_from_the_majority_refuses_a_retained_publish() {
    let cluster = ClusterProcesses::start(3, &[]);
    let status = cluster
        .wait_status(0, Duration::from_secs(10), |s| {
            alive_voters(s) == 3 && leader(s) != 0
        })
        .await;
    let leader_index = leader(&status) as usize - 1;
    let (client, _) = Client::connect(cluster.tcp_options(leader_index, "cut-off"))
        .await
        .expect("connect to the leader");
    for (i, node) in cluster.nodes.iter().enumerate() {
        if i != leader_index {
            node.pause();
        }
    }
    let sent = Instant::now();
    let outcome = tokio::time::timeout(
        Duration::from_secs(15),
        client.publish("cut/off", "never", QoS::AtLeastOnce, true),
    )
    .await;
    for (i, node) in cluster.nodes.iter().enumerate() {
        if i != leader_index {
            node.resume();
        }
    }
    let reason = outcome
        .expect("PUBACK within 15 s (propose timeout 5 s)")
        .expect("publish");
    println!(
        "cut-off leader answered {reason:?} after {:?}",
        sent.elapsed()
    );
    assert_eq!(reason, ReasonCode::UNSPECIFIED_ERROR);
}

#[tokio::test]
async fn a_node_with_another_cluster_id_cannot_join() {
    let cluster = ClusterProcesses::start(1, &[]);
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(binary("quicmq-node"))
        .arg("--data-dir")
        .arg(dir.path())
        .args(["--node-id", "2", "--cluster-id", "other-cluster"])
        .args([
            "--grpc-addr",
            "127.0.0.1:0",
            "--advertise-addr",
            "127.0.0.1",
        ])
        .args([
            "--quic-addr",
            "off",
            "--routed-addr",
            "off",
            "--tls-addr",
            "off",
        ])
        .args(["--tcp-addr", "127.0.0.1:0", "--admin-addr", "off"])
        .args(cluster.pki.node_args())
        .arg("--join")
        .arg(cluster.nodes[0].grpc.to_string())
        .output()
        .expect("quicmq-node runs");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("cluster ID") && stderr.contains("other-cluster"),
        "{stderr}"
    );
}

#[tokio::test]
async fn a_join_with_a_members_address_is_refused() {
    let cluster = ClusterProcesses::start(2, &[]);
    let mut admin = AdminClient::new(channel(&cluster, cluster.nodes[1].grpc));
    let err = admin
        .join(JoinRequest {
            cluster_id: "quicmq".into(),
            node_id: 9,
            grpc_addr: cluster.nodes[0].grpc.to_string(),
            ..Default::default()
        })
        .await
        .expect_err("the address belongs to node 1");
    assert_eq!(err.code(), tonic::Code::AlreadyExists, "{err:?}");
    assert!(err.message().contains("already used by node 1"), "{err:?}");
    let err = admin
        .join(JoinRequest {
            cluster_id: "quicmq".into(),
            node_id: 0,
            grpc_addr: "127.0.0.1:1".into(),
            ..Default::default()
        })
        .await
        .expect_err("node ID 0");
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
}

#[tokio::test]
async fn garbage_from_a_grpc_peer_is_refused_and_harms_nobody() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut cluster = ClusterProcesses::start(2, &[]);
    let target = cluster.nodes[1].grpc;

    // Not HTTP/2 at all: the connection is closed.
    let mut raw = tokio::net::TcpStream::connect(target).await.unwrap();
    raw.write_all(b"\x16\x03\x01garbage garbage garbage\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 256];
    let closed = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match raw.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the node closes a non-gRPC connection");

    // Valid gRPC, garbage payloads and headers.
    let mut raft = RaftClient::new(channel(&cluster, target));
    let header = |cluster_id: &str, to: u64| RaftHeader {
        cluster_id: cluster_id.into(),
        from_node_id: 1,
        to_node_id: to,
        encoding: RaftEncoding::Bincode1.into(),
    };
    let err = raft
        .append_entries(RaftRequest {
            header: Some(header("quicmq", 2)),
            payload: vec![0xff; 64].into(),
        })
        .await
        .expect_err("garbage payload");
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");
    let err = raft
        .vote(RaftRequest {
            header: Some(header("another", 2)),
            payload: Default::default(),
        })
        .await
        .expect_err("wrong cluster");
    assert_eq!(err.code(), tonic::Code::FailedPrecondition, "{err:?}");
    let err = raft
        .vote(RaftRequest {
            header: Some(header("quicmq", 7)),
            payload: Default::default(),
        })
        .await
        .expect_err("wrong node");
    assert_eq!(err.code(), tonic::Code::FailedPrecondition, "{err:?}");
    let err = raft
        .client_write(RaftRequest {
            header: None,
            payload: Default::default(),
        })
        .await
        .expect_err("no header");
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");

    // The cluster still works: it has a leader and admits a new node.
    cluster.add_node();
    let status = cluster
        .wait_status(1, Duration::from_secs(10), |s| members(s).len() == 3)
        .await;
    assert_ne!(leader(&status), 0);
}

#[tokio::test]
async fn a_node_that_leaves_is_marked_left_and_exits() {
    let mut cluster = ClusterProcesses::start(3, &[]);
    let out = std::process::Command::new(binary("quicmq"))
        .args(["cluster", "leave", "--admin"])
        .arg(cluster.nodes[2].admin.to_string())
        .output()
        .expect("quicmq runs");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let status = cluster.nodes[2].wait_exit(Duration::from_secs(15));
    assert!(
        status.success(),
        "the node exits cleanly after leaving: {status}"
    );
    let status = cluster
        .wait_status(0, Duration::from_secs(5), |s| {
            members(s)
                .iter()
                .any(|m| m["node_id"] == 3 && m["state"] == "left")
        })
        .await;
    // Two voters remain and still commit: a fourth node joins.
    assert_eq!(alive_voters(&status), 2);
    cluster.add_node();
    cluster
        .wait_status(0, Duration::from_secs(10), |s| {
            members(s)
                .iter()
                .any(|m| m["node_id"] == 4 && m["state"] == "alive")
        })
        .await;
}
