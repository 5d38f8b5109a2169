//! The node binaries as a user runs them. (Also makes `cargo test
//! --workspace` build them for the end-to-end tests in `tests/`.)

use std::process::Command;

#[test]
fn node_help_lists_every_config_key() {
    let out = Command::new(env!("CARGO_BIN_EXE_quicmq-node"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--config",
        "--data-dir",
        "--quic-addr",
        "--routed-addr",
        "--node-id",
        "--cluster-id",
        "--grpc-addr",
        "--advertise-addr",
        "--join",
        "--voters",
        "--zone",
        "--peer-proxy",
        "--cluster-ca",
        "--cluster-cert",
        "--cluster-key",
        "--cluster-ca-key",
        "--cluster-plaintext",
        "--server-id-len",
        "--raft-snapshot-logs",
        "--quic-lb-config-id",
        "--quic-lb-nonce-len",
        "--quic-lb-key",
        "--reset-key",
        "--token-key",
        "--tcp-addr",
        "--tls-addr",
        "--admin-addr",
        "--cert",
        "--key",
        "--max-packet-size",
        "--receive-maximum",
        "--topic-alias-maximum",
        "--max-keep-alive",
        "--max-session-expiry",
        "--max-queued-messages",
        "--queue-drop-policy",
        "--log",
    ] {
        assert!(help.contains(flag), "{flag} missing from --help");
    }
}

#[test]
fn node_refuses_a_bad_key_file_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_quicmq-node"))
        .args(["--data-dir", dir.path().to_str().unwrap()])
        .args(["--voters", "4"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("`voters`"));
}

#[test]
fn cli_pub_reports_an_unreachable_broker() {
    let out = Command::new(env!("CARGO_BIN_EXE_quicmq"))
        .args([
            "pub",
            "-h",
            "127.0.0.1",
            "-p",
            "1",
            "--transport",
            "tcp",
            "-t",
            "a",
            "-m",
            "b",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(!out.stderr.is_empty(), "says why");
}

/// `quicmq health` (the image's HEALTHCHECK): exit 1 when nothing listens
/// or the endpoint answers 503, exit 0 on 200.
#[test]
fn cli_health_checks_the_admin_endpoint() {
    use std::io::{Read, Write};
    let health = |addr: &str| {
        Command::new(env!("CARGO_BIN_EXE_quicmq"))
            .args(["health", "--admin", addr, "--timeout", "10"])
            .output()
            .unwrap()
    };
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed_addr = closed.local_addr().unwrap().to_string();
    drop(closed);
    let out = health(&closed_addr);
    assert_eq!(out.status.code(), Some(1), "closed port: {out:?}");
    assert!(!out.stderr.is_empty(), "says why");

    for (answer, code) in [("503 Service Unavailable", 1), ("200 OK", 0)] {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let server = std::thread::spawn(move || {
            let (mut socket, _) = listener.accept().unwrap();
            let mut request = [0u8; 1024];
            let n = socket.read(&mut request).unwrap();
            let body = "ready\n";
            write!(
                socket,
                "HTTP/1.1 {answer}\r\ncontent-length: {}\r\n\r\n{body}",
                body.len()
            )
            .unwrap();
            String::from_utf8_lossy(&request[..n]).into_owned()
        });
        let out = health(&addr);
        let request = server.join().unwrap();
        assert!(request.starts_with("GET /health/ready "), "{request}");
        assert_eq!(out.status.code(), Some(code), "{answer}: {out:?}");
    }
}
