//! `quicmq sub -c -i ID` stays: through a router in front of a 3-node
//! cluster, its node is killed with `kill -9` and it reconnects by itself,
//! resumes its persistent session on another node and keeps printing,
//! with every acknowledged QoS 1 message among its lines.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::process::Stdio;
use std::time::{Duration, Instant};

use quicmq_node::client::{Client, ClientOptions, QoS, ReasonCode, Transport};
use quicmq_tests::{binary, free_udp_port, metric_sum, ClusterProcesses, RouterProcess};
use tokio::io::{AsyncBufReadExt, BufReader};

const MESSAGES: u32 = 60;
const KILL_AFTER: u32 = 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quicmq_sub_keeps_printing_across_a_kill_of_its_node() {
    let mut cluster = ClusterProcesses::start(3, &[]);
    let seeds: Vec<SocketAddr> = cluster.nodes.iter().map(|n| n.grpc).collect();
    let vip: SocketAddr = format!("127.0.0.1:{}", free_udp_port()).parse().unwrap();
    let tls = cluster.router_args();
    let tls: Vec<&str> = tls.iter().map(String::as_str).collect();
    let _router = RouterProcess::spawn_with_seeds(vip, &seeds, &tls);
    // The router serves once it knows the cluster.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let mut probe = ClientOptions::new("127.0.0.1", vip.port(), Transport::Quic);
        probe.tls.insecure = true;
        probe.client_id = "router-probe".into();
        probe.connect_timeout = Duration::from_secs(3);
        if let Ok((client, _)) = Client::connect(probe).await {
            client.disconnect(ReasonCode::SUCCESS).await.ok();
            break;
        }
        assert!(Instant::now() < deadline, "the router never served");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let port = vip.port().to_string();
    let mut sub = tokio::process::Command::new(binary("quicmq"))
        .args(["sub", "-h", "127.0.0.1", "-p", &port, "--insecure"])
        .args([
            "-c", "-i", "cli-sub", "-q", "1", "-t", "cli/seq", "-W", "180",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("quicmq sub starts");
    let mut lines = BufReader::new(sub.stdout.take().expect("stdout")).lines();
    let stderr = sub.stderr.take().expect("stderr");
    let stderr = tokio::spawn(async move {
        let mut text = String::new();
        let mut lines = BufReader::new(stderr).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            text.push_str(&line);
            text.push('\n');
        }
        text
    });

    // Its node: the one with a QUIC client.
    let deadline = Instant::now() + Duration::from_secs(15);
    let home = 'found: loop {
        for (i, node) in cluster.nodes.iter().enumerate() {
            if metric_sum(node.admin, "quicmq_connections{transport=\"quic\"}").await >= 1.0 {
                break 'found i;
            }
        }
        assert!(Instant::now() < deadline, "the subscriber never connected");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let other = (home + 1) % 3;
    let (publisher, _) = Client::connect(cluster.tcp_options(other, "cli-pub"))
        .await
        .expect("publisher connects");

    // Subscribed once a warm-up message comes through.
    let deadline = Instant::now() + Duration::from_secs(20);
    'warm: loop {
        publisher
            .publish("cli/seq", "0", QoS::AtLeastOnce, false)
            .await
            .expect("warm-up PUBACK");
        let wait = tokio::time::sleep(Duration::from_millis(300));
        tokio::pin!(wait);
        loop {
            tokio::select! {
                line = lines.next_line() => match line {
                    Ok(Some(line)) if line == "cli/seq 0" => break 'warm,
                    Ok(Some(_)) => {}
                    other => panic!("quicmq sub ended before subscribing: {other:?}"),
                },
                _ = &mut wait => break,
            }
        }
        assert!(Instant::now() < deadline, "the subscription never took");
    }

    // QoS 1 messages every 50 ms, each sent again until acknowledged (as
    // an application would); the subscriber's node dies after KILL_AFTER
    // of them and stays dead.
    let mut acked = BTreeSet::new();
    let give_up = Instant::now() + Duration::from_secs(60);
    for seq in 1..=MESSAGES {
        while Instant::now() < give_up {
            let sent = publisher.publish("cli/seq", seq.to_string(), QoS::AtLeastOnce, false);
            if let Ok(Ok(ReasonCode::SUCCESS)) =
                tokio::time::timeout(Duration::from_secs(10), sent).await
            {
                acked.insert(seq);
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        if seq == KILL_AFTER {
            // It stays dead: the cluster marks it down by itself.
            cluster.nodes[home].kill9();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(acked.len() as u32, MESSAGES, "acknowledged: {acked:?}");

    // Every acknowledged message is printed, duplicates allowed.
    let mut printed = BTreeSet::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !acked.is_subset(&printed) {
        match tokio::time::timeout_at(deadline, lines.next_line()).await {
            Ok(Ok(Some(line))) => {
                if let Some(seq) = line.strip_prefix("cli/seq ").and_then(|s| s.parse().ok()) {
                    printed.insert(seq);
                }
            }
            other => {
                let missing: Vec<_> = acked.difference(&printed).collect();
                panic!(
                    "quicmq sub stopped printing ({other:?}); acknowledged and missing: {missing:?}"
                );
            }
        }
    }
    sub.start_kill().ok();
    let _ = sub.wait().await;
    let stderr = stderr.await.unwrap_or_default();
    println!(
        "{} of {MESSAGES} acknowledged, {} printed; stderr:\n{stderr}",
        acked.len(),
        printed.len()
    );
    assert!(
        stderr.contains("connection lost") && stderr.contains("reconnected after"),
        "each reconnect is announced on stderr: {stderr}"
    );
    assert!(stderr.contains("session resumed"), "{stderr}");
}
