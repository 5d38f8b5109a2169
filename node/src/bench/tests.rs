//! The runners against an in-process broker on loopback.

use std::time::Duration;

use tempfile::TempDir;

use super::*;
use crate::client::{ClientOptions, QoS, Transport};
use crate::config::{NodeConfig, Overrides};
use crate::node::RunningNode;

struct Node {
    node: RunningNode,
    _dir: TempDir,
}

async fn start_node() -> Node {
    let dir = tempfile::tempdir().unwrap();
    let toml = format!(
        "data_dir = {:?}\nquic_addr = \"127.0.0.1:0\"\nrouted_addr = \"127.0.0.1:0\"\ntcp_addr = \"127.0.0.1:0\"\n\
         tls_addr = \"off\"\nadmin_addr = \"off\"\ngrpc_addr = \"127.0.0.1:0\"\n",
        dir.path().display().to_string()
    );
    let file: Overrides = toml::from_str(&toml).unwrap();
    let config = NodeConfig::resolve(Overrides::default(), file).unwrap();
    let node = RunningNode::start(&config).await.unwrap();
    Node { node, _dir: dir }
}

impl Node {
    fn options(&self, transport: Transport) -> ClientOptions {
        let addr = match transport {
            Transport::Quic => self.node.addrs().quic,
            Transport::Tcp => self.node.addrs().tcp,
            Transport::Tls => self.node.addrs().tls,
        }
        .unwrap();
        let mut opts = ClientOptions::new("127.0.0.1", addr.port(), transport);
        opts.tls.insecure = true;
        opts
    }
}

fn pub_settings(opts: ClientOptions, qos: QoS, count: u64) -> PubSettings {
    PubSettings {
        options: opts,
        clients: 2,
        topic: "bench/%i".into(),
        qos,
        retain: false,
        payload_size: 32,
        rate: 0.0,
        bound: Bound {
            count: Some(count),
            duration: Duration::from_secs(20),
        },
        inflight: None,
        drain_timeout: Duration::from_secs(10),
    }
}

fn sub_settings(opts: ClientOptions, qos: QoS, count: Option<u64>) -> SubSettings {
    SubSettings {
        options: opts,
        clients: 2,
        filter: "bench/#".into(),
        qos,
        share: None,
        count,
        idle: Duration::from_millis(500),
        deadline: Duration::from_secs(20),
    }
}

#[tokio::test]
async fn qos1_fan_in_and_fan_out_over_tcp() {
    let node = start_node().await;
    let opts = node.options(Transport::Tcp);
    let subs = SubBench::connect(
        sub_settings(opts.clone(), QoS::AtLeastOnce, Some(100)),
        ProgressMode::hidden(),
    )
    .await
    .unwrap();
    assert_eq!(subs.ready(), 2);
    let receiving = tokio::spawn(subs.run());
    let pubs = PubBench::connect(
        pub_settings(opts, QoS::AtLeastOnce, 50),
        ProgressMode::hidden(),
    )
    .await
    .unwrap();
    let sent = pubs.run().await;
    assert_eq!(sent.messages, 100, "{sent}");
    assert_eq!(sent.errors, 0, "{sent}");
    assert_eq!(sent.latency.samples, 100);
    let received = receiving.await.unwrap();
    assert_eq!(received.messages, 200, "{received}");
    assert_eq!(received.expected, Some(200));
    assert_eq!(received.stop, Some("all-received"));
    assert_eq!(received.errors, 0, "{received}");
    assert_eq!(received.latency.samples, 200);
    assert!(received.to_json().contains(r#""mode":"sub""#));
}

#[tokio::test]
async fn qos0_shared_subscription_over_quic_stops_when_idle() {
    let node = start_node().await;
    let opts = node.options(Transport::Quic);
    let mut settings = sub_settings(opts.clone(), QoS::AtMostOnce, None);
    settings.share = Some("g".into());
    let subs = SubBench::connect(settings, ProgressMode::hidden())
        .await
        .unwrap();
    let receiving = tokio::spawn(subs.run());
    let sent = PubBench::connect(
        pub_settings(opts, QoS::AtMostOnce, 40),
        ProgressMode::hidden(),
    )
    .await
    .unwrap()
    .run()
    .await;
    assert_eq!(sent.messages, 80, "{sent}");
    assert_eq!(sent.latency.samples, 0, "no acks at QoS 0");
    let received = receiving.await.unwrap();
    // Each message goes to one member of the group.
    assert_eq!(received.messages, 80, "{received}");
    assert_eq!(received.stop, Some("idle"));
}

#[tokio::test]
async fn retained_publishes_one_topic_per_message() {
    let node = start_node().await;
    let opts = node.options(Transport::Tcp);
    let mut settings = pub_settings(opts.clone(), QoS::AtLeastOnce, 5);
    settings.topic = "kept/%i/%n".into();
    settings.retain = true;
    let sent = PubBench::connect(settings, ProgressMode::hidden())
        .await
        .unwrap()
        .run()
        .await;
    assert_eq!(sent.messages, 10, "{sent}");
    assert_eq!(sent.errors, 0, "{sent}");
    // A subscriber arriving afterwards gets the 10 distinct retained
    // messages (2 publishers x 5 topics).
    let mut settings = sub_settings(opts, QoS::AtLeastOnce, Some(10));
    settings.clients = 1;
    settings.filter = "kept/#".into();
    let received = SubBench::connect(settings, ProgressMode::hidden())
        .await
        .unwrap()
        .run()
        .await;
    assert_eq!(received.messages, 10, "{received}");
    assert_eq!(received.stop, Some("all-received"));
}

#[tokio::test]
async fn paced_publishers_stop_at_the_time_limit() {
    let node = start_node().await;
    let mut settings = pub_settings(node.options(Transport::Tcp), QoS::AtLeastOnce, 0);
    settings.clients = 1;
    settings.rate = 100.0;
    settings.bound = Bound {
        count: None,
        duration: Duration::from_millis(300),
    };
    let sent = PubBench::connect(settings, ProgressMode::hidden())
        .await
        .unwrap()
        .run()
        .await;
    assert!((20..=30).contains(&sent.messages), "{sent}");
    assert_eq!(sent.errors, 0);
}

#[tokio::test]
async fn idle_connections_share_one_quic_endpoint() {
    let node = start_node().await;
    for (transport, shared) in [
        (Transport::Quic, true),
        (Transport::Quic, false),
        (Transport::Tcp, true),
    ] {
        let settings = ConnSettings {
            options: node.options(transport),
            clients: 20,
            rate: 0.0,
            max_pending: 8,
            hold: Duration::from_millis(300),
            shared_endpoint: shared,
        };
        let open = ConnBench::open(settings, ProgressMode::hidden())
            .await
            .unwrap();
        assert_eq!(open.open_count(), 20);
        if transport == Transport::Quic {
            let ports: std::collections::HashSet<_> = open
                .clients
                .iter()
                .filter_map(|client| client.local_addr())
                .collect();
            assert_eq!(ports.len(), if shared { 1 } else { 20 });
        }
        let summary = open.hold_and_close().await;
        assert_eq!(summary.connected, 20, "{summary}");
        assert_eq!(summary.held, Some(20));
        assert_eq!(summary.errors, 0, "{summary}");
        assert_eq!(summary.latency.samples, 20);
    }
}

#[tokio::test]
async fn bad_settings_and_unreachable_brokers_are_errors() {
    let node = start_node().await;
    let mut settings = pub_settings(node.options(Transport::Tcp), QoS::AtMostOnce, 1);
    settings.payload_size = 15;
    assert!(matches!(
        PubBench::connect(settings, ProgressMode::hidden()).await,
        Err(BenchError::PayloadTooSmall { size: 15 })
    ));
    // A port nobody listens on.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let mut opts = node.options(Transport::Tcp);
    opts.port = port;
    let err = SubBench::connect(
        sub_settings(opts, QoS::AtMostOnce, None),
        ProgressMode::hidden(),
    )
    .await
    .err()
    .unwrap();
    assert!(matches!(err, BenchError::NoClient(Some(_))), "{err}");
}
