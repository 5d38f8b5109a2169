//! The `quicmq-node` binary as a real process: `kill -9` and restart keeps
//! persistent sessions, their queues and retained messages; SIGTERM sends
//! DISCONNECT 0x8B to clients and exits 0.

use std::time::Duration;

use quicmq_node::client::{Client, ClientOptions, Event, Transport};
use quicmq_proto::mqtt::{Properties, QoS, ReasonCode, SubscriptionOptions};
use quicmq_tests::{options_for, NodeProcess};

fn options(node: &NodeProcess, transport: Transport, client_id: &str) -> ClientOptions {
    let addr = match transport {
        Transport::Quic => node.quic,
        _ => node.tcp,
    };
    options_for(
        addr,
        transport,
        client_id,
        &node.data_dir.join("dev-cert.pem"),
    )
}

#[tokio::test]
async fn kill_9_and_restart_keeps_sessions_queues_and_retained() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = NodeProcess::spawn(dir.path());
    let mut sub_options = options(&node, Transport::Quic, "durable-sub");
    sub_options.session_expiry_interval = Some(3600);
    let (sub, _) = Client::connect(sub_options).await.unwrap();
    sub.subscribe(
        vec![("fleet/#".into(), SubscriptionOptions::new(QoS::AtLeastOnce))],
        Properties::default(),
    )
    .await
    .unwrap();
    sub.disconnect(ReasonCode::NORMAL_DISCONNECTION)
        .await
        .unwrap();
    let (publisher, _) = Client::connect(options(&node, Transport::Tcp, "durable-pub"))
        .await
        .unwrap();
    for i in 0..20 {
        let r = publisher
            .publish(
                &format!("fleet/{i}"),
                format!("{i}"),
                QoS::AtLeastOnce,
                false,
            )
            .await
            .unwrap();
        assert_eq!(r, ReasonCode::SUCCESS);
    }
    publisher
        .publish("fleet/config", "v7", QoS::AtLeastOnce, true)
        .await
        .unwrap();
    // Every PUBACK above was sent after the store was flushed: kill -9 now.
    node.kill9();
    drop(publisher);
    let node = NodeProcess::spawn(dir.path());
    let mut sub_options = options(&node, Transport::Quic, "durable-sub");
    sub_options.session_expiry_interval = Some(3600);
    sub_options.clean_start = false;
    let (sub, connack) = Client::connect(sub_options).await.unwrap();
    assert!(connack.session_present);
    let mut got = Vec::new();
    while got.len() < 21 {
        match tokio::time::timeout(Duration::from_secs(5), sub.recv()).await {
            Ok(Some(Event::Publish(p))) => {
                got.push(String::from_utf8_lossy(&p.payload).to_string())
            }
            other => panic!("after {} messages: {other:?}", got.len()),
        }
    }
    let expected: Vec<String> = (0..20)
        .map(|i| i.to_string())
        .chain(["v7".to_string()])
        .collect();
    assert_eq!(got, expected, "every acknowledged message, in order");
    let (late, _) = Client::connect(options(&node, Transport::Tcp, "late"))
        .await
        .unwrap();
    late.subscribe(
        vec![(
            "fleet/config".into(),
            SubscriptionOptions::new(QoS::AtMostOnce),
        )],
        Properties::default(),
    )
    .await
    .unwrap();
    match tokio::time::timeout(Duration::from_secs(5), late.recv()).await {
        Ok(Some(Event::Publish(p))) => assert_eq!(&p.payload[..], b"v7"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn sigterm_disconnects_clients_with_0x8b_and_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = NodeProcess::spawn(dir.path());
    let (tcp, _) = Client::connect(options(&node, Transport::Tcp, "term-tcp"))
        .await
        .unwrap();
    let (quic, _) = Client::connect(options(&node, Transport::Quic, "term-quic"))
        .await
        .unwrap();
    let status = node.terminate();
    assert!(status.success(), "exit status {status:?}");
    for client in [tcp, quic] {
        match tokio::time::timeout(Duration::from_secs(5), client.recv()).await {
            Ok(Some(Event::Disconnect(d))) => {
                assert_eq!(d.reason_code, ReasonCode::SERVER_SHUTTING_DOWN)
            }
            other => panic!("{:?}: {other:?}", client.transport()),
        }
    }
}

#[test]
fn config_errors_name_the_key_and_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("quicmq.toml");
    std::fs::write(&config, "max_packet_size = 3\n").unwrap();
    let out = std::process::Command::new(quicmq_tests::binary("quicmq-node"))
        .arg("--config")
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("max_packet_size"), "{stderr}");
    let out = std::process::Command::new(quicmq_tests::binary("quicmq-node"))
        .env("QUICMQ_TCP_ADDR", "not-an-address")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("tcp-addr") || stderr.contains("QUICMQ_TCP_ADDR"),
        "{stderr}"
    );
}

/// The client library's reconnecting client: the node is killed and
/// comes back from its data directory; the client reconnects by itself
/// (backoff with jitter), resumes its persistent session and gets what
/// was published meanwhile.
#[tokio::test]
async fn a_reconnecting_client_resumes_after_the_node_is_killed_and_restarted() {
    use quicmq_node::client::{Backoff, ReconnectEvent, ReconnectingClient};
    let dir = tempfile::tempdir().unwrap();
    let mut node = NodeProcess::spawn(dir.path());
    for transport in [Transport::Tcp, Transport::Quic] {
        let id = format!("phoenix-{transport}");
        let mut opts = options(&node, transport, &id);
        opts.clean_start = false;
        opts.session_expiry_interval = Some(600);
        // A killed node sends nothing: QUIC notices by the idle timeout.
        opts.quic_idle_timeout = Duration::from_secs(2);
        opts.quic_keep_alive_interval = Some(Duration::from_millis(500));
        let backoff = Backoff {
            initial: Duration::from_millis(50),
            max: Duration::from_millis(500),
            jitter: 0.5,
        };
        let (client, _) = ReconnectingClient::connect(opts, backoff).await.unwrap();
        client
            .client()
            .expect("connected")
            .subscribe(
                vec![(
                    format!("{id}/t"),
                    SubscriptionOptions::new(QoS::AtLeastOnce),
                )],
                Properties::default(),
            )
            .await
            .unwrap();

        node.kill9();
        match tokio::time::timeout(Duration::from_secs(10), client.recv()).await {
            Ok(Some(ReconnectEvent::Lost(_))) => {}
            other => panic!("{transport}: the loss is reported: {other:?}"),
        }
        node.restart();
        let (publisher, _) = Client::connect(options(&node, Transport::Tcp, "p"))
            .await
            .unwrap();
        publisher
            .publish(&format!("{id}/t"), "while away", QoS::AtLeastOnce, false)
            .await
            .unwrap();
        let mut reconnected = false;
        loop {
            match tokio::time::timeout(Duration::from_secs(15), client.recv()).await {
                Ok(Some(ReconnectEvent::Reconnected { connack, .. })) => {
                    assert!(connack.session_present, "{transport}: session resumed");
                    reconnected = true;
                }
                Ok(Some(ReconnectEvent::Event(event))) => {
                    let Event::Publish(p) = *event else { continue };
                    assert!(reconnected);
                    assert_eq!(&p.payload[..], b"while away");
                    break;
                }
                Ok(Some(ReconnectEvent::Lost(why))) => println!("{transport}: lost again: {why}"),
                other => panic!("{transport}: {other:?}"),
            }
        }
        // Publishing through it works on the new connection.
        assert_eq!(
            client
                .publish(&format!("{id}/t"), "again", QoS::AtLeastOnce, false)
                .await
                .unwrap(),
            ReasonCode::SUCCESS
        );
        client.disconnect().await.unwrap();
        publisher.disconnect(ReasonCode::SUCCESS).await.unwrap();
    }
}
