//! The admin API authenticates: a node refuses to serve it on an address
//! other than loopback without a bearer token, and with a token every
//! request but those to the open paths (/metrics, /health/*) needs it. An
//! attacker who reaches the port cannot remove members, make the node
//! leave, reload the rules or read the subscription filters; the
//! `quicmq cluster` CLI works with `--token-file`.

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::Duration;

use quicmq_node::admin_client::{request, AdminRequest};
use quicmq_tests::{binary, free_tcp_port, metric_sum, NodeProcess};

/// One admin request with an optional token: (status, body).
async fn admin(addr: SocketAddr, method: &str, path: &str, token: Option<&str>) -> (u16, String) {
    let addr = addr.to_string();
    let reply = request(&AdminRequest {
        addr: &addr,
        method,
        path,
        token,
        tls: None,
        timeout: Duration::from_secs(5),
    })
    .await
    .expect("the admin endpoint answers");
    (reply.status, reply.body)
}

/// `quicmq-node` with `args` on free loopback ports, expected to refuse to
/// start: its exit status and what it printed.
fn refused_start(args: &[&str]) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(binary("quicmq-node"))
        .arg("--data-dir")
        .arg(dir.path())
        .args(["--tcp-addr", "127.0.0.1:0", "--quic-addr", "127.0.0.1:0"])
        .args(["--routed-addr", "off", "--tls-addr", "off"])
        .args(["--grpc-addr", "127.0.0.1:0"])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("quicmq-node starts");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while child.try_wait().expect("wait").is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("quicmq-node {args:?} kept running");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let output = child.wait_with_output().expect("output");
    let text = String::from_utf8_lossy(&output.stderr).into_owned()
        + &String::from_utf8_lossy(&output.stdout);
    (output.status.success(), text)
}

/// A node process serving its admin API on 0.0.0.0 with `extra` flags,
/// once that port answers; the loopback address to reach it at.
fn node_with_public_admin(data: &std::path::Path, extra: &[&str]) -> (NodeProcess, SocketAddr) {
    let admin_addr = SocketAddr::from(([0, 0, 0, 0], free_tcp_port()));
    let admin_arg = admin_addr.to_string();
    let mut args = vec!["--admin-addr", admin_arg.as_str()];
    args.extend_from_slice(extra);
    let node = tokio::task::block_in_place(|| {
        let mut node = NodeProcess::launch(data, &args);
        node.wait_listening();
        node
    });
    let addr = SocketAddr::from(([127, 0, 0, 1], admin_addr.port()));
    // The admin listener comes up after MQTT.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(addr).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "admin port never opened"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    (node, addr)
}

#[test]
fn a_node_does_not_serve_the_admin_api_beyond_loopback_without_a_token() {
    let port = free_tcp_port().to_string();
    let (ok, text) = refused_start(&["--admin-addr", &format!("0.0.0.0:{port}")]);
    assert!(!ok);
    assert!(
        text.contains("admin_addr") && text.contains("admin_token_file"),
        "{text}"
    );

    let dir = tempfile::tempdir().unwrap();
    let short = dir.path().join("token");
    std::fs::write(&short, "123\n").unwrap();
    let (ok, text) = refused_start(&[
        "--admin-addr",
        &format!("0.0.0.0:{port}"),
        "--admin-token-file",
        short.to_str().unwrap(),
    ]);
    assert!(!ok);
    assert!(
        text.contains("admin_token_file") && text.contains("at least 16"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_token_the_admin_api_refuses_everything_but_the_open_paths() {
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("admin-token");
    let made = Command::new(binary("quicmq"))
        .arg("token")
        .arg("new")
        .arg(&token_file)
        .status()
        .expect("quicmq token new");
    assert!(made.success());
    let token = std::fs::read_to_string(&token_file)
        .unwrap()
        .trim()
        .to_owned();
    assert_eq!(token.len(), 64);
    let (node, addr) = node_with_public_admin(
        &dir.path().join("data"),
        &["--admin-token-file", token_file.to_str().unwrap()],
    );

    // Open without the token.
    for path in ["/metrics", "/health/live", "/health/ready"] {
        assert_eq!(admin(addr, "GET", path, None).await.0, 200, "{path}");
    }
    // Everything else: 401 without the token or with a wrong one.
    let attacks = [
        ("GET", "/api/cluster/status"),
        ("POST", "/api/cluster/remove/2"),
        ("POST", "/api/auth/reload"),
        ("POST", "/api/cluster/leave"),
    ];
    let wrong = "x".repeat(64);
    for (method, path) in attacks {
        for token in [None, Some(wrong.as_str()), Some(&token[..63])] {
            let (status, body) = admin(addr, method, path, token).await;
            assert_eq!(status, 401, "{method} {path} with {token:?}: {body}");
            assert!(
                !body.contains("filters"),
                "nothing of the cluster leaks: {body}"
            );
        }
    }
    // The node is still serving (the leave was refused).
    assert_eq!(admin(addr, "GET", "/health/ready", None).await.0, 200);
    let (status, body) = admin(addr, "GET", "/api/cluster/status", Some(&token)).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"members\""), "{body}");
    assert!(
        metric_sum(addr, "quicmq_admin_refused_total").await >= 12.0,
        "refusals are counted"
    );

    // The CLI: refused without the token (and says how to pass it), served
    // with it.
    let cli = |with_token: bool| {
        let mut command = Command::new(binary("quicmq"));
        command.args(["cluster", "status", "--admin", &addr.to_string()]);
        command.env_remove("QUICMQ_ADMIN_TOKEN_FILE");
        if with_token {
            command.arg("--token-file").arg(&token_file);
        }
        command.output().expect("quicmq cluster status")
    };
    let refused = tokio::task::block_in_place(|| cli(false));
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--token-file"));
    let served = tokio::task::block_in_place(|| cli(true));
    assert!(served.status.success(), "{served:?}");
    assert!(String::from_utf8_lossy(&served.stdout).contains("\"members\""));
    drop(node);
}

/// One request over TLS with `tls`: (status, body), or the failure.
async fn admin_tls(
    addr: SocketAddr,
    path: &str,
    tls: std::sync::Arc<rustls::ClientConfig>,
) -> Result<(u16, String), String> {
    let addr = addr.to_string();
    request(&AdminRequest {
        addr: &addr,
        method: "GET",
        path,
        token: None,
        tls: Some(tls),
        timeout: Duration::from_secs(5),
    })
    .await
    .map(|reply| (reply.status, reply.body))
    .map_err(|e| e.to_string())
}

/// `quicmq ca ARGS...`, which must succeed.
fn ca(args: &[&std::ffi::OsStr]) {
    let status = Command::new(binary("quicmq"))
        .arg("ca")
        .args(args)
        .stdout(Stdio::null())
        .status()
        .expect("quicmq ca");
    assert!(status.success(), "quicmq ca {args:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_admin_mtls_an_admin_certificate_of_the_cluster_ca_is_the_credential() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (node, addr) = node_with_public_admin(&data, &["--admin-mtls", "true"]);
    // The node bootstrapped alone: its cluster CA is in its data directory.
    let ca_dir = data.join("cluster-ca");
    let out = |name: &str| dir.path().join(name);
    for (name, usage) in [("ops", "admin"), ("watcher", "router")] {
        let prefix = out(name);
        ca(&[
            "issue".as_ref(),
            ca_dir.as_os_str(),
            "--name".as_ref(),
            name.as_ref(),
            "--usage".as_ref(),
            usage.as_ref(),
            "--out".as_ref(),
            prefix.as_os_str(),
        ]);
    }
    let other_ca = out("other-ca");
    ca(&["new".as_ref(), other_ca.as_os_str()]);
    let impostor = out("impostor");
    ca(&[
        "issue".as_ref(),
        other_ca.as_os_str(),
        "--name".as_ref(),
        "ops".as_ref(),
        "--usage".as_ref(),
        "admin".as_ref(),
        "--out".as_ref(),
        impostor.as_os_str(),
    ]);
    let read = |path: std::path::PathBuf| std::fs::read(path).unwrap();
    let cluster_ca = read(ca_dir.join("ca.pem"));
    let tls = |name: Option<&str>| {
        let identity = name.map(|n| {
            (
                read(out(&format!("{n}.pem"))),
                read(out(&format!("{n}-key.pem"))),
            )
        });
        quicmq_node::admin_client::tls_config(
            &cluster_ca,
            identity.as_ref().map(|(c, k)| (c.as_slice(), k.as_slice())),
        )
        .unwrap()
    };

    // Without a certificate: the open paths only.
    for path in ["/metrics", "/health/ready"] {
        assert_eq!(
            admin_tls(addr, path, tls(None)).await.unwrap().0,
            200,
            "{path}"
        );
    }
    assert_eq!(
        admin_tls(addr, "/api/cluster/status", tls(None))
            .await
            .unwrap()
            .0,
        401
    );
    // A router certificate of the same CA is no admin.
    assert_eq!(
        admin_tls(addr, "/api/cluster/status", tls(Some("watcher")))
            .await
            .unwrap()
            .0,
        401
    );
    // An admin certificate of another CA fails the handshake.
    assert!(
        admin_tls(addr, "/api/cluster/status", tls(Some("impostor")))
            .await
            .is_err()
    );
    // Plain HTTP gets no answer.
    let plain = addr.to_string();
    assert!(request(&AdminRequest {
        addr: &plain,
        method: "GET",
        path: "/api/cluster/status",
        token: None,
        tls: None,
        timeout: Duration::from_secs(5),
    })
    .await
    .is_err_and(|e| !e.to_string().is_empty()));
    // The admin certificate is the credential.
    let (status, body) = admin_tls(addr, "/api/cluster/status", tls(Some("ops")))
        .await
        .unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"members\""));

    // The CLI with --cafile, --cert and --key.
    let status = tokio::task::block_in_place(|| {
        Command::new(binary("quicmq"))
            .args(["cluster", "status", "--admin", &addr.to_string()])
            .arg("--cafile")
            .arg(ca_dir.join("ca.pem"))
            .arg("--cert")
            .arg(out("ops.pem"))
            .arg("--key")
            .arg(out("ops-key.pem"))
            .env_remove("QUICMQ_ADMIN_TOKEN_FILE")
            .output()
            .expect("quicmq cluster status")
    });
    assert!(status.status.success(), "{status:?}");
    assert!(String::from_utf8_lossy(&status.stdout).contains("\"members\""));
    drop(node);
}
