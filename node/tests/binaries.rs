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
