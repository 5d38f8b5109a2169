//! The router binary as a user runs it. (Also makes `cargo test
//! --workspace` build it for the end-to-end tests in `tests/`.)

use std::process::Command;

#[test]
fn config_errors_name_the_key_and_exit_2() {
    let out = Command::new(env!("CARGO_BIN_EXE_quicmq-router"))
        .args(["--listen", "127.0.0.1:0", "--admin-addr", "off"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("`seeds`"), "{stderr}");
    let out = Command::new(env!("CARGO_BIN_EXE_quicmq-router"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--admin-addr",
            "off",
            "--node",
            "0001=127.0.0.1:1",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("`reset_key`"));
}

#[test]
fn help_lists_the_flags() {
    let out = Command::new(env!("CARGO_BIN_EXE_quicmq-router"))
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--listen",
        "--seeds",
        "--cluster-id",
        "--node",
        "--reset-key",
        "--quic-lb-key",
        "--probe-interval-ms",
        "--dead-after-ms",
        "--admin-addr",
    ] {
        assert!(help.contains(flag), "{flag}");
    }
}
