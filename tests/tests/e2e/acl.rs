//! The ACL against a real node: publish, subscribe, wills and retained
//! messages, wildcard filters, `%u`/`%c`, MQTT 5 and 3.1.1 answers, and a
//! reload (admin API and SIGHUP) while clients stay connected.

use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use quicmq_node::auth::{hash_password, PasswordFile};
use quicmq_node::client::{Client, ClientError, Event, Transport};
use quicmq_proto::mqtt::{
    LastWill, Properties, ProtocolVersion, QoS, ReasonCode, SubscriptionOptions,
};
use quicmq_tests::{http_post, metric_sum, NodeProcess, TestNode};

const ACL: &str = "\
# the fleet
deny  subscribe all        fleet/secret/keys/#
allow both      all        fleet/%c/#
allow both      user:alice fleet/#
allow subscribe user:bob   fleet/+/status
allow publish   all        wills/%u
";

fn write_files(dir: &Path, acl: &str) -> (String, String) {
    let mut users = PasswordFile::default();
    for (name, password) in [("alice", "a-pw"), ("bob", "b-pw")] {
        users
            .set(name, &hash_password(password.as_bytes()).unwrap())
            .unwrap();
    }
    let passwd = dir.join("passwd");
    std::fs::write(&passwd, users.to_text()).unwrap();
    let acl_path = dir.join("acl");
    std::fs::write(&acl_path, acl).unwrap();
    (passwd.display().to_string(), acl_path.display().to_string())
}

async fn acl_node(acl: &str) -> (TestNode, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let (passwd, acl_path) = write_files(dir.path(), acl);
    let node = TestNode::start_with(&format!(
        "password_file = {passwd:?}\nacl_file = {acl_path:?}\n"
    ))
    .await;
    (node, dir)
}

async fn login(
    node: &TestNode,
    user: &str,
    client_id: &str,
    protocol: ProtocolVersion,
) -> Result<Client, ClientError> {
    let mut options = node.options(Transport::Tcp, client_id);
    options.protocol = protocol;
    options.username = Some(user.into());
    options.password = Some(Bytes::from(format!("{}-pw", &user[..1])));
    Client::connect(options).await.map(|(client, _)| client)
}

async fn subscribe(client: &Client, filter: &str) -> ReasonCode {
    client
        .subscribe(
            vec![(filter.into(), SubscriptionOptions::new(QoS::AtLeastOnce))],
            Properties::default(),
        )
        .await
        .unwrap()
        .reason_codes[0]
}

async fn publish(client: &Client, topic: &str, qos: QoS, retain: bool) -> ReasonCode {
    client
        .publish(topic, Bytes::from_static(b"m"), qos, retain)
        .await
        .unwrap()
}

/// The topics of the PUBLISHes that arrive within a short while.
async fn received(client: &Client) -> Vec<String> {
    let mut topics = Vec::new();
    while let Ok(Some(Event::Publish(p))) =
        tokio::time::timeout(Duration::from_millis(400), client.recv()).await
    {
        topics.push(p.topic.clone());
    }
    topics
}

#[tokio::test]
async fn publish_and_subscribe_follow_the_acl() {
    let (node, _dir) = acl_node(ACL).await;
    let alice = login(&node, "alice", "a1", ProtocolVersion::V5)
        .await
        .unwrap();
    let bob = login(&node, "bob", "b1", ProtocolVersion::V5)
        .await
        .unwrap();

    // SUBSCRIBE: per filter, 0x87 where refused.
    assert_eq!(subscribe(&bob, "fleet/+/status").await, ReasonCode(1));
    assert_eq!(subscribe(&bob, "fleet/b1/#").await, ReasonCode(1), "%c");
    assert_eq!(
        subscribe(&bob, "fleet/#").await,
        ReasonCode(1),
        "a broad filter is granted and delivers what bob may read"
    );
    assert_eq!(
        subscribe(&bob, "fleet/a1/x").await,
        ReasonCode::NOT_AUTHORIZED
    );
    assert_eq!(
        subscribe(&alice, "fleet/#").await,
        ReasonCode(1),
        "overlaps the deny of fleet/secret/keys/#: granted, read checked per message"
    );
    assert_eq!(subscribe(&alice, "fleet/+/status").await, ReasonCode(1));
    assert_eq!(
        subscribe(&alice, "$share/g/fleet/a1/in").await,
        ReasonCode(1),
        "a shared subscription is checked on its filter"
    );
    assert_eq!(
        subscribe(&alice, "fleet/secret/keys/a").await,
        ReasonCode::NOT_AUTHORIZED
    );
    assert_eq!(
        subscribe(&alice, "fleet/secret/keys/+").await,
        ReasonCode::NOT_AUTHORIZED,
        "all inside the denied subtree"
    );
    assert_eq!(
        subscribe(&bob, "$share/g/fleet/a1/x").await,
        ReasonCode::NOT_AUTHORIZED,
        "a shared subscription follows the same rule"
    );

    // PUBLISH: 0x87 for QoS 1 and 2, silence for QoS 0; nothing delivered.
    assert_eq!(
        publish(&bob, "fleet/x/status", QoS::AtLeastOnce, false).await,
        ReasonCode::NOT_AUTHORIZED
    );
    assert_eq!(
        publish(&bob, "fleet/x/status", QoS::ExactlyOnce, false).await,
        ReasonCode::NOT_AUTHORIZED
    );
    publish(&bob, "fleet/x/status", QoS::AtMostOnce, false).await;
    assert_eq!(
        publish(&bob, "fleet/b1/status", QoS::AtLeastOnce, false).await,
        ReasonCode::SUCCESS,
        "its own subtree"
    );
    assert_eq!(
        publish(&alice, "fleet/z/status", QoS::AtLeastOnce, false).await,
        ReasonCode::SUCCESS
    );
    for topic in ["fleet/a1/data", "fleet/secret/keys/k"] {
        let code = publish(&alice, topic, QoS::AtLeastOnce, false).await;
        assert!(!code.is_error(), "{topic}: {code:?}");
    }
    // Both hold `fleet/#`; each receives only what it may read.
    let bob_got = received(&bob).await;
    assert_eq!(
        bob_got,
        ["fleet/b1/status", "fleet/z/status"],
        "{bob_got:?}"
    );
    let alice_got = received(&alice).await;
    assert_eq!(
        alice_got,
        ["fleet/b1/status", "fleet/z/status", "fleet/a1/data"]
    );

    // Retained: a refused PUBLISH is not retained either.
    assert_eq!(
        publish(&bob, "fleet/r/status", QoS::AtLeastOnce, true).await,
        ReasonCode::NOT_AUTHORIZED
    );
    for topic in ["fleet/q/status", "fleet/secret/keys/r"] {
        let code = publish(&alice, topic, QoS::AtLeastOnce, true).await;
        assert!(!code.is_error(), "{topic}: {code:?}");
    }
    let _ = received(&alice).await;
    let late = login(&node, "alice", "a2", ProtocolVersion::V5)
        .await
        .unwrap();
    assert_eq!(subscribe(&late, "fleet/#").await, ReasonCode(1));
    assert_eq!(
        received(&late).await,
        ["fleet/q/status"],
        "a retained message it may not read is withheld too"
    );
}

#[tokio::test]
async fn wills_need_publish_rights() {
    let (node, _dir) = acl_node(ACL).await;
    let with_will = |topic: &str| {
        let mut options = node.options(Transport::Tcp, "b-will");
        options.username = Some("bob".into());
        options.password = Some(Bytes::from_static(b"b-pw"));
        options.will = Some(LastWill {
            topic: topic.into(),
            payload: Bytes::from_static(b"gone"),
            qos: QoS::AtLeastOnce,
            retain: false,
            properties: Properties::default(),
        });
        options
    };
    let (ok, _) = Client::connect(with_will("wills/bob")).await.unwrap();
    drop(ok);
    match Client::connect(with_will("fleet/x/status")).await {
        Err(ClientError::Refused(connack)) => {
            assert_eq!(connack.reason_code, ReasonCode::NOT_AUTHORIZED);
        }
        other => panic!("a will outside the ACL connected: {other:?}"),
    }
}

#[tokio::test]
async fn mqtt_311_clients_get_positive_acknowledgements_and_subscribe_failures() {
    let (node, _dir) = acl_node(ACL).await;
    let bob = login(&node, "bob", "b1", ProtocolVersion::V311)
        .await
        .unwrap();
    let alice = login(&node, "alice", "a1", ProtocolVersion::V5)
        .await
        .unwrap();
    assert_eq!(subscribe(&alice, "fleet/+/status").await, ReasonCode(1));
    // 3.1.1 has no negative PUBACK (§3.3.5): acknowledged, dropped.
    assert_eq!(
        publish(&bob, "fleet/x/status", QoS::AtLeastOnce, false).await,
        ReasonCode::SUCCESS
    );
    assert_eq!(
        publish(&bob, "fleet/x/status", QoS::ExactlyOnce, false).await,
        ReasonCode::SUCCESS
    );
    assert!(received(&alice).await.is_empty());
    // SUBACK failure is 0x80 in 3.1.1.
    let code = subscribe(&bob, "fleet/a1/x").await;
    assert!(code.is_error(), "{code:?}");
}

#[tokio::test]
async fn a_reload_applies_to_connected_clients_without_dropping_them() {
    let (node, dir) = acl_node("allow both all a/#\n").await;
    let client = login(&node, "alice", "c1", ProtocolVersion::V5)
        .await
        .unwrap();
    assert_eq!(subscribe(&client, "b/#").await, ReasonCode::NOT_AUTHORIZED);
    assert_eq!(
        publish(&client, "b/x", QoS::AtLeastOnce, false).await,
        ReasonCode::NOT_AUTHORIZED
    );

    // A broken file is refused and the rules in force stay.
    std::fs::write(dir.path().join("acl"), "allow everything\n").unwrap();
    let (status, body) = http_post(node.admin(), "/api/auth/reload").await;
    assert_eq!(status, 422, "{body}");
    assert!(
        body.contains("acl_file") && body.contains("line 1"),
        "{body}"
    );
    assert_eq!(
        publish(&client, "a/x", QoS::AtLeastOnce, false).await,
        ReasonCode::NO_MATCHING_SUBSCRIBERS
    );

    std::fs::write(
        dir.path().join("acl"),
        "allow both all a/#\nallow both all b/#\n",
    )
    .unwrap();
    let (status, body) = http_post(node.admin(), "/api/auth/reload").await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"acl_rules\":2"), "{body}");
    assert_eq!(subscribe(&client, "b/#").await, ReasonCode(1));
    assert_eq!(
        publish(&client, "b/x", QoS::AtLeastOnce, false).await,
        ReasonCode::SUCCESS,
        "the same connection, the new rules"
    );
    assert_eq!(received(&client).await, ["b/x"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_acl_of_a_running_process() {
    let dir = tempfile::tempdir().unwrap();
    let (passwd, acl) = write_files(dir.path(), "allow both all a/#\n");
    let data = dir.path().join("data");
    let node = tokio::task::block_in_place(|| {
        NodeProcess::spawn_with(&data, &["--password-file", &passwd, "--acl-file", &acl])
    });
    let mut options = node.tcp_options("h1");
    options.username = Some("alice".into());
    options.password = Some(Bytes::from_static(b"a-pw"));
    let (client, _) = Client::connect(options).await.unwrap();
    assert_eq!(
        publish(&client, "b/x", QoS::AtLeastOnce, false).await,
        ReasonCode::NOT_AUTHORIZED
    );
    assert_eq!(subscribe(&client, "b/#").await, ReasonCode::NOT_AUTHORIZED);
    // A process of its own: the counts are this test's.
    let admin = node.admin;
    let count = |access: &'static str| async move {
        let name = format!("quicmq_acl_denied_total{{access=\"{access}\"}}");
        metric_sum(admin, &name).await
    };
    assert_eq!(count("publish").await, 1.0);
    assert_eq!(count("subscribe").await, 1.0);
    std::fs::write(&acl, "allow both all #\n").unwrap();
    node.hangup();
    // The reload is asynchronous to the signal: poll for it.
    let mut code = ReasonCode::NOT_AUTHORIZED;
    for _ in 0..50 {
        code = publish(&client, "b/x", QoS::AtLeastOnce, false).await;
        if code != ReasonCode::NOT_AUTHORIZED {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(code, ReasonCode::NO_MATCHING_SUBSCRIBERS);
}

const BOB_NO_SECRETS: &str = "\
deny  subscribe user:bob secret/#
allow both      all      #
";

/// `#` over a denied subtree, security-sensitive shapes: an ordinary and a
/// shared subscription, a retained message, a topic alias, and a reload
/// that narrows the rules under a subscription already granted.
#[tokio::test]
async fn a_broad_subscription_never_reads_a_denied_subtree() {
    use quicmq_proto::mqtt::Publish;
    let (node, dir) = acl_node("allow both all #\n").await;
    let alice = login(&node, "alice", "a1", ProtocolVersion::V5)
        .await
        .unwrap();
    let bob = login(&node, "bob", "b1", ProtocolVersion::V5)
        .await
        .unwrap();
    let bob_shared = login(&node, "bob", "b2", ProtocolVersion::V5)
        .await
        .unwrap();
    // Granted while everything is allowed; the reload narrows it.
    assert_eq!(subscribe(&bob, "#").await, ReasonCode(1));
    std::fs::write(dir.path().join("acl"), BOB_NO_SECRETS).unwrap();
    let (status, body) = http_post(node.admin(), "/api/auth/reload").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        subscribe(&bob, "secret/#").await,
        ReasonCode::NOT_AUTHORIZED
    );
    assert_eq!(subscribe(&alice, "$share/g/#").await, ReasonCode(1));
    assert_eq!(subscribe(&bob_shared, "$share/g/#").await, ReasonCode(1));

    // Plain, retained, and through a topic alias (the second PUBLISH
    // names no topic).
    for topic in ["secret/a", "secret/b", "secret/c", "secret/d"] {
        assert_eq!(
            publish(&alice, topic, QoS::AtLeastOnce, topic == "secret/d").await,
            ReasonCode::SUCCESS
        );
    }
    let aliased = |topic: &str| Publish {
        dup: false,
        qos: QoS::AtLeastOnce,
        retain: false,
        topic: topic.into(),
        packet_id: None,
        properties: Properties {
            topic_alias: Some(1),
            ..Properties::default()
        },
        payload: Bytes::from_static(b"m"),
    };
    alice.publish_packet(aliased("secret/alias")).await.unwrap();
    alice.publish_packet(aliased("")).await.unwrap();
    for topic in ["open/a", "open/b", "open/c", "open/d"] {
        publish(&alice, topic, QoS::AtLeastOnce, false).await;
    }

    let bob_got = received(&bob).await;
    assert_eq!(bob_got, ["open/a", "open/b", "open/c", "open/d"]);
    // The group hands every secret to alice, and the rest by turns.
    let shared_bob = received(&bob_shared).await;
    assert!(
        shared_bob.iter().all(|t| t.starts_with("open/")),
        "{shared_bob:?}"
    );
    assert!(!shared_bob.is_empty(), "bob takes his turns on open topics");
    let shared_alice = received(&alice).await;
    let secrets: Vec<_> = shared_alice
        .iter()
        .filter(|t| t.starts_with("secret/"))
        .collect();
    assert_eq!(
        secrets,
        [
            "secret/a",
            "secret/b",
            "secret/c",
            "secret/d",
            "secret/alias",
            "secret/alias"
        ]
    );
    assert_eq!(shared_alice.len() + shared_bob.len(), 10);

    // A retained secret is withheld at SUBSCRIBE too.
    let late = login(&node, "bob", "b3", ProtocolVersion::V5)
        .await
        .unwrap();
    assert_eq!(subscribe(&late, "#").await, ReasonCode(1));
    assert_eq!(received(&late).await, Vec::<String>::new());
}

/// Read decisions are remembered per session and topic, and forgotten
/// when the ACL changes, whichever way it changes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remembered_read_decisions_follow_every_reload() {
    let (node, dir) = acl_node(BOB_NO_SECRETS).await;
    let alice = login(&node, "alice", "a1", ProtocolVersion::V5)
        .await
        .unwrap();
    let bob = login(&node, "bob", "b1", ProtocolVersion::V5)
        .await
        .unwrap();
    assert_eq!(subscribe(&bob, "#").await, ReasonCode(1));
    let round = || async {
        for topic in ["secret/x", "open/x"] {
            publish(&alice, topic, QoS::AtLeastOnce, false).await;
        }
        received(&bob).await
    };
    assert_eq!(round().await, ["open/x"]);
    assert_eq!(round().await, ["open/x"], "the same, from the cache");
    let reload = |acl: &'static str| {
        let path = dir.path().join("acl");
        let admin = node.admin();
        async move {
            std::fs::write(path, acl).unwrap();
            let (status, body) = http_post(admin, "/api/auth/reload").await;
            assert_eq!(status, 200, "{body}");
        }
    };
    reload("allow both all #\n").await;
    assert_eq!(round().await, ["secret/x", "open/x"], "widened");
    reload(BOB_NO_SECRETS).await;
    assert_eq!(round().await, ["open/x"], "narrowed again");
}
