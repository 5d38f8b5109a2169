//! Cluster mutual TLS between real node and router processes: who may
//! join, vote, forward and watch, the three ways a node gets its
//! certificate, and what a peer without the cluster's certificate gets.

use std::error::Error;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use quicmq_node::tls::{CertUsage, CertificateAuthority};
use quicmq_proto::cluster::v1::{
    admin_client::AdminClient, cluster_watch_client::ClusterWatchClient, raft_client::RaftClient,
    JoinRequest, RaftEncoding, RaftHeader, RaftRequest, StatusRequest, WatchRequest, WatchRole,
};
use quicmq_proto::cluster_tls::ClusterTls;
use quicmq_tests::{
    binary, cluster_status, free_udp_port, http_get, member_tls, metric_sum, ClusterPki,
    ClusterProcesses, NodeProcess, RouterProcess,
};

const REFUSED: &str = "quicmq_cluster_tls_refused_total";

fn channel(addr: SocketAddr, tls: &ClusterTls) -> tonic::transport::Channel {
    quicmq_raft::network::lazy_channel(&addr.to_string(), None, Some(tls.client_config())).unwrap()
}

fn members(status: &serde_json::Value) -> usize {
    status["members"].as_array().map_or(0, Vec::len)
}

/// A gRPC call refused at the handshake: what comes back is the
/// channel's transport failure (a TLS alert, a closed connection, or
/// for plaintext an HTTP/2 error), never an answer of a service.
fn refused_at_handshake(err: &tonic::Status) -> bool {
    err.source()
        .is_some_and(|e| e.downcast_ref::<tonic::transport::Error>().is_some())
}

/// `/health/ready` of a router answers 200.
async fn ready(admin: SocketAddr) -> bool {
    http_get(admin, "/health/ready").await.0 == 200
}

#[tokio::test]
async fn a_node_with_a_certificate_from_another_ca_is_refused_by_the_cluster() {
    let cluster = ClusterProcesses::start(2, &[]);
    let refused = || async {
        metric_sum(cluster.nodes[0].admin, REFUSED).await
            + metric_sum(cluster.nodes[1].admin, REFUSED).await
    };
    let before = refused().await;

    // The impostor trusts the cluster's CA and its own, and shows a node
    // certificate of its own CA: its start-up check passes, the cluster's
    // handshake does not.
    let other = CertificateAuthority::generate("another CA").unwrap();
    let pki = tempfile::tempdir().unwrap();
    let ca_both = pki.path().join("both.pem");
    std::fs::write(
        &ca_both,
        std::fs::read_to_string(cluster.pki.path("ca.pem")).unwrap() + other.cert_pem(),
    )
    .unwrap();
    let (cert, key) = (pki.path().join("node.pem"), pki.path().join("node-key.pem"));
    other
        .issue("node-3", &[], CertUsage::Node)
        .unwrap()
        .save(&cert, &key)
        .unwrap();
    let seeds = format!("{},{}", cluster.nodes[0].grpc, cluster.nodes[1].grpc);
    let dir = tempfile::tempdir().unwrap();
    let mut impostor = NodeProcess::launch(
        dir.path(),
        &[
            "--node-id",
            "3",
            "--join",
            &seeds,
            "--cluster-ca",
            ca_both.to_str().unwrap(),
            "--cluster-cert",
            cert.to_str().unwrap(),
            "--cluster-key",
            key.to_str().unwrap(),
        ],
    );

    // It keeps asking, and is refused every time.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if refused().await >= before + 2.0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the impostor's handshakes were not refused"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        std::net::TcpStream::connect(impostor.tcp).is_err(),
        "a node that is not a member does not serve"
    );
    for i in 0..2 {
        let status = cluster.status(i).await;
        assert_eq!(members(&status), 2, "{status:#}");
    }
    impostor.kill9();

    // Its gRPC calls get nowhere either: no vote, no status, no join.
    let foreign = member_tls(
        &(std::fs::read_to_string(cluster.pki.path("ca.pem")).unwrap() + other.cert_pem()),
        &other,
        CertUsage::Node,
    );
    let err = AdminClient::new(channel(cluster.nodes[0].grpc, &foreign))
        .status(StatusRequest::default())
        .await
        .expect_err("a certificate of another CA");
    assert!(refused_at_handshake(&err), "{err:?}");

    // A client without any certificate, and one speaking plain HTTP/2.
    let no_cert = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13])
    .unwrap()
    .with_root_certificates({
        let mut roots = rustls::RootCertStore::empty();
        let pem = std::fs::read(cluster.pki.path("ca.pem")).unwrap();
        for cert in rustls::pki_types::pem::PemObject::pem_slice_iter(&pem) {
            roots.add(cert.unwrap()).unwrap();
        }
        roots
    })
    .with_no_client_auth();
    let channel_without_cert = quicmq_raft::network::lazy_channel(
        &cluster.nodes[0].grpc.to_string(),
        None,
        Some(Arc::new(no_cert)),
    )
    .unwrap();
    let err = AdminClient::new(channel_without_cert)
        .status(StatusRequest::default())
        .await
        .expect_err("no client certificate");
    assert!(refused_at_handshake(&err), "{err:?}");
    let plain =
        quicmq_raft::network::lazy_channel(&cluster.nodes[0].grpc.to_string(), None, None).unwrap();
    let err = AdminClient::new(plain)
        .status(StatusRequest::default())
        .await
        .expect_err("plaintext");
    assert!(refused_at_handshake(&err), "{err:?}");

    // The cluster's own certificate works, and the cluster is whole.
    let status = AdminClient::new(cluster.pki.channel(cluster.nodes[0].grpc, CertUsage::Node))
        .status(StatusRequest::default())
        .await
        .expect("a node certificate of the cluster CA")
        .into_inner();
    assert_eq!(status.members.len(), 2);
}

#[tokio::test]
async fn a_router_certificate_may_watch_but_not_vote_join_or_forward() {
    let cluster = ClusterProcesses::start(2, &[]);
    let target = cluster.nodes[1].grpc;
    let router = cluster.pki.member_tls(CertUsage::Router);
    let before = metric_sum(cluster.nodes[1].admin, REFUSED).await;

    let mut watch = ClusterWatchClient::new(channel(target, &router))
        .watch(WatchRequest {
            cluster_id: "quicmq".into(),
            role: WatchRole::Router.into(),
            watcher: "test router".into(),
            after_revision: 0,
        })
        .await
        .expect("a router may watch")
        .into_inner();
    let first = tokio::time::timeout(Duration::from_secs(5), watch.message())
        .await
        .expect("a snapshot in time")
        .expect("a snapshot");
    assert!(first.is_some());

    let err = RaftClient::new(channel(target, &router))
        .vote(RaftRequest {
            header: Some(RaftHeader {
                cluster_id: "quicmq".into(),
                from_node_id: 1,
                to_node_id: 2,
                encoding: RaftEncoding::Bincode1.into(),
            }),
            payload: Default::default(),
        })
        .await
        .expect_err("a router may not vote");
    assert_eq!(err.code(), tonic::Code::PermissionDenied, "{err:?}");
    assert!(err.message().contains("quicmq-router"), "{err:?}");
    let err = AdminClient::new(channel(target, &router))
        .join(JoinRequest {
            cluster_id: "quicmq".into(),
            node_id: 9,
            grpc_addr: "127.0.0.1:1".into(),
            ..Default::default()
        })
        .await
        .expect_err("a router may not join");
    assert_eq!(err.code(), tonic::Code::PermissionDenied, "{err:?}");
    let err =
        quicmq_proto::cluster::v1::forward_client::ForwardClient::new(channel(target, &router))
            .barrier(quicmq_proto::cluster::v1::BarrierRequest::default())
            .await
            .expect_err("a router may not forward");
    assert_eq!(err.code(), tonic::Code::PermissionDenied, "{err:?}");
    assert!(metric_sum(cluster.nodes[1].admin, REFUSED).await >= before + 3.0);
    assert_eq!(members(&cluster.status(0).await), 2);
}

#[tokio::test]
async fn a_router_with_a_certificate_from_another_ca_never_gets_the_cluster_state() {
    let cluster = ClusterProcesses::start(1, &[]);
    let seeds = [cluster.nodes[0].grpc];
    let vip: SocketAddr = format!("127.0.0.1:{}", free_udp_port()).parse().unwrap();
    let stranger = ClusterPki::generate();
    let args = stranger.router_args();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let before = metric_sum(cluster.nodes[0].admin, REFUSED).await;
    let router = RouterProcess::launch_with_seeds(vip, &seeds, &args);
    let deadline = Instant::now() + Duration::from_secs(10);
    while metric_sum(cluster.nodes[0].admin, REFUSED).await < before + 2.0 {
        assert!(
            Instant::now() < deadline,
            "the router's handshakes were not refused"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(!ready(router.admin).await, "no cluster state, not ready");

    // The same router with the cluster's certificate follows the cluster.
    let args = cluster.router_args();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let vip: SocketAddr = format!("127.0.0.1:{}", free_udp_port()).parse().unwrap();
    let router = RouterProcess::spawn_with_seeds(vip, &seeds, &args);
    assert!(ready(router.admin).await);
}

#[tokio::test]
async fn a_bootstrapped_node_generates_the_cluster_ca_that_other_nodes_join_with() {
    // Node 1 alone, nothing configured: a CA of its own in its data
    // directory.
    let dir1 = tempfile::tempdir().unwrap();
    let node1 = NodeProcess::spawn_with(dir1.path(), &["--node-id", "1"]);
    let ca_dir = dir1.path().join("cluster-ca");
    let (ca, ca_key) = (ca_dir.join("ca.pem"), ca_dir.join("ca-key.pem"));
    assert!(ca.exists() && ca_key.exists());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&ca_key).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "the CA key is private");
    }

    // Node 2 joins with the CA and its key: it issues its own certificate.
    let dir2 = tempfile::tempdir().unwrap();
    let seed = node1.grpc.to_string();
    let _node2 = NodeProcess::spawn_with(
        dir2.path(),
        &[
            "--node-id",
            "2",
            "--join",
            &seed,
            "--cluster-ca",
            ca.to_str().unwrap(),
            "--cluster-ca-key",
            ca_key.to_str().unwrap(),
        ],
    );

    // Node 3 joins with a certificate `quicmq ca issue` made; no CA key.
    let certs = tempfile::tempdir().unwrap();
    let prefix = certs.path().join("node-3");
    let out = std::process::Command::new(binary("quicmq"))
        .args(["ca", "issue"])
        .arg(&ca_dir)
        .args(["--name", "node-3", "--usage", "node", "--out"])
        .arg(&prefix)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dir3 = tempfile::tempdir().unwrap();
    let (cert, key) = (
        certs.path().join("node-3.pem"),
        certs.path().join("node-3-key.pem"),
    );
    let _node3 = NodeProcess::spawn_with(
        dir3.path(),
        &[
            "--node-id",
            "3",
            "--join",
            &seed,
            "--cluster-ca",
            ca.to_str().unwrap(),
            "--cluster-cert",
            cert.to_str().unwrap(),
            "--cluster-key",
            key.to_str().unwrap(),
        ],
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let status = cluster_status(node1.admin).await;
        if members(&status) == 3 {
            break;
        }
        assert!(Instant::now() < deadline, "{status:#}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Restarted, node 1 keeps its CA: the others still trust it.
    let before = std::fs::read(&ca).unwrap();
    let mut node1 = node1;
    node1.kill9();
    node1.restart();
    assert_eq!(std::fs::read(&ca).unwrap(), before);
    let status = cluster_status(node1.admin).await;
    assert_eq!(members(&status), 3, "{status:#}");
}

#[tokio::test]
async fn a_plaintext_cluster_forms_when_every_member_says_so() {
    let cluster = ClusterProcesses::start(2, &["--cluster-plaintext", "true"]);
    let status = cluster
        .wait_status(1, Duration::from_secs(10), |s| members(s) == 2)
        .await;
    assert_eq!(members(&status), 2);
    let plain =
        quicmq_raft::network::lazy_channel(&cluster.nodes[0].grpc.to_string(), None, None).unwrap();
    let status = AdminClient::new(plain)
        .status(StatusRequest::default())
        .await
        .expect("plaintext gRPC")
        .into_inner();
    assert_eq!(status.members.len(), 2);
    let args = ["--cluster-plaintext", "true"];
    let vip: SocketAddr = format!("127.0.0.1:{}", free_udp_port()).parse().unwrap();
    let router = RouterProcess::spawn_with_seeds(vip, &[cluster.nodes[0].grpc], &args);
    assert!(ready(router.admin).await);
}

#[test]
fn bad_cluster_tls_settings_stop_the_node_and_name_the_key() {
    let run = |args: &[&str]| {
        let dir = tempfile::tempdir().unwrap();
        let out = std::process::Command::new(binary("quicmq-node"))
            .arg("--data-dir")
            .arg(dir.path())
            .args(["--grpc-addr", "127.0.0.1:0", "--admin-addr", "off"])
            .args([
                "--quic-addr",
                "off",
                "--routed-addr",
                "off",
                "--tls-addr",
                "off",
            ])
            .args(["--tcp-addr", "127.0.0.1:0"])
            .args(args)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{args:?}");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let stderr = run(&["--join", "127.0.0.1:1"]);
    assert!(
        stderr.contains("`cluster_ca`") && stderr.contains("cluster_plaintext"),
        "{stderr}"
    );

    // A router certificate on a node, a certificate of another CA, a CA
    // file that is not there.
    let pki = ClusterPki::generate();
    let other = ClusterPki::generate();
    let path = |pki: &ClusterPki, name: &str| pki.path(name).display().to_string();
    for (files, key, says) in [
        (
            [
                ("ca", &pki, "ca.pem"),
                ("cert", &pki, "router.pem"),
                ("key", &pki, "router-key.pem"),
            ],
            "cluster_cert",
            "quicmq-router",
        ),
        (
            [
                ("ca", &pki, "ca.pem"),
                ("cert", &other, "router.pem"),
                ("key", &other, "router-key.pem"),
            ],
            "cluster_cert",
            "cluster CA",
        ),
        (
            [
                ("ca", &pki, "missing.pem"),
                ("cert", &pki, "router.pem"),
                ("key", &pki, "router-key.pem"),
            ],
            "cluster_ca",
            "missing.pem",
        ),
    ] {
        let args: Vec<String> = files
            .iter()
            .flat_map(|(flag, pki, name)| [format!("--cluster-{flag}"), path(pki, name)])
            .collect();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let stderr = run(&args);
        assert!(
            stderr.contains(key) && stderr.contains(says),
            "{args:?}: {stderr}"
        );
    }

    // A router that follows seeds needs the cluster's TLS too.
    let out = std::process::Command::new(binary("quicmq-router"))
        .args(["--seeds", "127.0.0.1:1", "--admin-addr", "off"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("`cluster_ca`"), "{stderr}");
}
