//! Graceful in-process shutdown: every 5.0 client of every transport (and
//! every QUIC data stream) gets DISCONNECT 0x8B, 3.1.1 clients see the
//! connection close, no will is published, and persistent sessions are
//! parked and flushed so a restart has them.

use std::time::Duration;

use bytes::Bytes;
use quicmq_node::client::{Client, Event, Transport};
use quicmq_proto::mqtt::{
    LastWill, Properties, ProtocolVersion, QoS, ReasonCode, SubscriptionOptions,
};
use quicmq_tests::{TestNode, TRANSPORTS};

async fn expect_shutdown_disconnect(client: &Client, what: &str) {
    match tokio::time::timeout(Duration::from_secs(5), client.recv()).await {
        Ok(Some(Event::Disconnect(d))) => {
            assert_eq!(d.reason_code, ReasonCode::SERVER_SHUTTING_DOWN, "{what}")
        }
        other => panic!("{what}: expected DISCONNECT 0x8B, got {other:?}"),
    }
    match tokio::time::timeout(Duration::from_secs(5), client.recv()).await {
        Ok(Some(Event::Closed(_))) => {}
        other => panic!("{what}: expected the close after DISCONNECT, got {other:?}"),
    }
}

#[tokio::test]
async fn shutdown_sends_0x8b_on_every_transport_and_keeps_sessions() {
    let mut node = TestNode::start().await;
    let mut clients = Vec::new();
    for transport in TRANSPORTS {
        let mut options = node.options(transport, &format!("bye-{}", transport.name()));
        options.session_expiry_interval = Some(300);
        options.will = Some(LastWill {
            topic: "bye/will".into(),
            payload: Bytes::from_static(b"will"),
            qos: QoS::AtLeastOnce,
            retain: true,
            properties: Properties::default(),
        });
        let (client, _) = Client::connect(options).await.unwrap();
        client
            .subscribe(
                vec![(
                    format!("bye/{}", transport.name()),
                    SubscriptionOptions::new(QoS::AtLeastOnce),
                )],
                Properties::default(),
            )
            .await
            .unwrap();
        clients.push((transport, client));
    }
    let control = node.connect(Transport::Quic, "bye-streams").await;
    let data = control.open_stream().await.unwrap();
    data.subscribe(
        vec![("bye/data".into(), SubscriptionOptions::new(QoS::AtMostOnce))],
        Properties::default(),
    )
    .await
    .unwrap();
    let mut old = node.options(Transport::Tls, "bye-311");
    old.protocol = ProtocolVersion::V311;
    let (old, _) = Client::connect(old).await.unwrap();

    node.restart().await;

    for (transport, client) in &clients {
        expect_shutdown_disconnect(client, transport.name()).await;
    }
    expect_shutdown_disconnect(&control, "QUIC control stream").await;
    match tokio::time::timeout(Duration::from_secs(5), data.recv()).await {
        Ok(Some(Event::Closed(_) | Event::Disconnect(_))) => {}
        other => panic!("QUIC data stream: expected it to close, got {other:?}"),
    }
    match tokio::time::timeout(Duration::from_secs(5), old.recv()).await {
        Ok(Some(Event::Closed(_))) => {}
        other => panic!("3.1.1 has no server DISCONNECT: expected a close, got {other:?}"),
    }

    // Sessions were parked and flushed; the wills were not published (the
    // will is retained, so a new subscriber would see it).
    let watcher = node.connect(Transport::Tcp, "bye-watcher").await;
    watcher
        .subscribe(
            vec![(
                "bye/will".into(),
                SubscriptionOptions::new(QoS::AtLeastOnce),
            )],
            Properties::default(),
        )
        .await
        .unwrap();
    assert!(
        tokio::time::timeout(Duration::from_millis(300), watcher.recv())
            .await
            .is_err(),
        "no will on a server shutdown"
    );
    let publisher = node.connect(Transport::Tcp, "bye-pub").await;
    for transport in TRANSPORTS {
        let mut options = node.options(transport, &format!("bye-{}", transport.name()));
        options.session_expiry_interval = Some(300);
        options.clean_start = false;
        let (client, connack) = Client::connect(options).await.unwrap();
        assert!(connack.session_present, "{transport:?}: session restored");
        assert_eq!(
            publisher
                .publish(
                    &format!("bye/{}", transport.name()),
                    "back",
                    QoS::AtLeastOnce,
                    false
                )
                .await
                .unwrap(),
            ReasonCode::SUCCESS
        );
        match tokio::time::timeout(Duration::from_secs(5), client.recv()).await {
            Ok(Some(Event::Publish(p))) => assert_eq!(&p.payload[..], b"back"),
            other => panic!("{transport:?}: {other:?}"),
        }
    }
    node.stop().await;
}

#[tokio::test]
async fn admin_endpoint_closes_on_shutdown() {
    let node = TestNode::start().await;
    let admin = node.admin();
    let (status, _) = quicmq_tests::http_get(admin, "/health/ready").await;
    assert_eq!(status, 200);
    node.stop().await;
    // After shutdown the admin listener is gone: a probe cannot succeed.
    let probe = tokio::time::timeout(
        Duration::from_secs(2),
        tokio::net::TcpStream::connect(admin),
    )
    .await;
    assert!(
        !matches!(probe, Ok(Ok(_))),
        "the admin endpoint no longer accepts connections"
    );
}
