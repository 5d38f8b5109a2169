//! A node that dies and stays dead does not stop the cluster: the leader
//! marks it `down` within `member_down_after`, its routes are withdrawn,
//! publishes on the survivors are acknowledged as if its plain subscribers
//! never existed, its persistent sessions are adopted by live members
//! (their messages queued and replayed when the client resumes), and when
//! it comes back it is `alive` again and serves.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use quicmq_node::client::{Client, ClientOptions, Event};
use quicmq_proto::mqtt::{QoS, ReasonCode};
use quicmq_tests::{metric_sum, persistent, subscribe_qos1 as subscribe, ClusterProcesses};
use serde_json::Value;

/// `member_down_after` of these clusters, milliseconds.
const DOWN_AFTER_MS: u64 = 1_000;

/// Payloads of the PUBLISH packets `client` receives within `within`.
async fn payloads(client: &Client, within: Duration, want: usize) -> Vec<String> {
    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + within;
    while got.len() < want {
        match tokio::time::timeout_at(deadline, client.recv()).await {
            Ok(Some(Event::Publish(p))) => got.push(String::from_utf8_lossy(&p.payload).into()),
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => break,
        }
    }
    got
}

fn member_state(status: &Value, node_id: u64) -> String {
    status["members"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|m| m["node_id"] == node_id)
        .and_then(|m| m["state"].as_str())
        .unwrap_or("absent")
        .to_owned()
}

fn routed_nodes(status: &Value, filter: &str) -> Vec<u64> {
    status["routes"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|r| r["filter"] == filter)
        .and_then(|r| r["node_ids"].as_array())
        .map(|ids| ids.iter().filter_map(Value::as_u64).collect())
        .unwrap_or_default()
}

fn options(cluster: &ClusterProcesses, index: usize, client_id: &str) -> ClientOptions {
    cluster.tcp_options(index, client_id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_node_is_marked_down_and_publishes_never_wait_on_it() {
    let down_after = DOWN_AFTER_MS.to_string();
    let mut cluster = ClusterProcesses::start(3, &["--member-down-after", &down_after]);

    // On node 2: a plain subscriber to t/# and a persistent one to fo/#.
    let (plain, _) = Client::connect(options(&cluster, 1, "plain-sub"))
        .await
        .expect("plain subscriber connects");
    subscribe(&plain, "t/#").await;
    let (durable, _) = Client::connect(persistent(options(&cluster, 1, "fosub")))
        .await
        .expect("persistent subscriber connects");
    subscribe(&durable, "fo/#").await;
    let (publisher, _) = Client::connect(options(&cluster, 0, "pub"))
        .await
        .expect("publisher connects");
    // Both reach their subscribers before the kill.
    for (topic, client) in [("t/warm", &plain), ("fo/warm", &durable)] {
        let code = publisher
            .publish(topic, "warm", QoS::AtLeastOnce, false)
            .await
            .expect("PUBACK");
        assert_eq!(code, ReasonCode::SUCCESS);
        assert_eq!(payloads(client, Duration::from_secs(10), 1).await, ["warm"]);
    }
    let status = cluster.status(0).await;
    assert_eq!(routed_nodes(&status, "t/#"), [2]);
    assert_eq!(member_state(&status, 2), "alive");

    cluster.nodes[1].kill9();
    let killed = Instant::now();
    drop(plain);

    // Down within member_down_after (plus probing and a commit).
    let status = cluster
        .wait_status(0, Duration::from_secs(15), |s| member_state(s, 2) == "down")
        .await;
    let marked = killed.elapsed();
    // Probing, one commit, and a loaded machine.
    assert!(
        marked < Duration::from_millis(DOWN_AFTER_MS + 4_000),
        "marked down after {marked:?}"
    );
    assert!(status["members"]
        .as_array()
        .unwrap()
        .iter()
        .any(|m| m["node_id"] == 2 && m["state_since_ms"].as_u64().unwrap_or(0) > 0));
    // Its plain route is withdrawn; the persistent session's filter moved
    // to the member that adopted it.
    assert!(routed_nodes(&status, "t/#").is_empty(), "{status:#}");
    let adopter = routed_nodes(&status, "fo/#");
    assert!(
        adopter.len() == 1 && adopter[0] != 2,
        "fo/# routed to {adopter:?}"
    );
    assert_eq!(
        metric_sum(
            cluster.nodes[0].admin,
            "quicmq_cluster_members{state=\"down\"}"
        )
        .await,
        1.0
    );

    // Publishes are answered at once: no subscriber left for t/x (0x10),
    // and fo/N queued for the adopted session.
    for n in 0..5 {
        let started = Instant::now();
        let code = publisher
            .publish(&format!("t/{n}"), "gone", QoS::AtLeastOnce, false)
            .await
            .expect("PUBACK");
        assert_eq!(code, ReasonCode::NO_MATCHING_SUBSCRIBERS);
        let code = publisher
            .publish(&format!("fo/{n}"), format!("m{n}"), QoS::AtLeastOnce, false)
            .await
            .expect("PUBACK");
        assert_eq!(code, ReasonCode::SUCCESS, "fo/{n}");
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "a publish waited {:?}",
            started.elapsed()
        );
    }

    // The persistent subscriber resumes on node 3 and gets all five.
    drop(durable);
    let (resumed, connack) = Client::connect(persistent(options(&cluster, 2, "fosub")))
        .await
        .expect("resumes on node 3");
    assert!(connack.session_present);
    // QoS 1: what it received before the kill may come again (its
    // acknowledgement may not have reached the cluster).
    let want: BTreeSet<String> = (0..5).map(|n| format!("m{n}")).collect();
    let mut got = BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !want.is_subset(&got) && Instant::now() < deadline {
        got.extend(payloads(&resumed, Duration::from_millis(500), 1).await);
    }
    assert!(want.is_subset(&got), "received {got:?}");
    // Delivered live from here on.
    publisher
        .publish("fo/live", "live", QoS::AtLeastOnce, false)
        .await
        .expect("PUBACK");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !got.contains("live") && Instant::now() < deadline {
        got.extend(payloads(&resumed, Duration::from_millis(500), 1).await);
    }
    assert!(got.contains("live"), "received {got:?}");

    // Node 2 comes back: alive again once it caught up, and it serves.
    cluster.nodes[1].restart();
    cluster
        .wait_status(0, Duration::from_secs(30), |s| {
            member_state(s, 2) == "alive"
        })
        .await;
    let (back, _) = Client::connect(options(&cluster, 1, "back-sub"))
        .await
        .expect("node 2 serves again");
    subscribe(&back, "t/back").await;
    let code = publisher
        .publish("t/back", "hello", QoS::AtLeastOnce, false)
        .await
        .expect("PUBACK");
    assert_eq!(code, ReasonCode::SUCCESS);
    assert_eq!(payloads(&back, Duration::from_secs(10), 1).await, ["hello"]);
    // The session it held stays with its new owner, and the adopter's
    // route for it is gone.
    cluster
        .wait_status(0, Duration::from_secs(10), |s| {
            routed_nodes(s, "fo/#") == [3]
        })
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_down_for_good_is_removed_and_joins_again_when_it_comes_back() {
    let down_after = DOWN_AFTER_MS.to_string();
    let mut cluster = ClusterProcesses::start(
        3,
        &[
            "--member-down-after",
            &down_after,
            "--member-remove-after",
            "3000",
        ],
    );
    let server_id = |status: &Value| {
        status["members"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|m| m["node_id"] == 3)
            .and_then(|m| m["server_id"].as_str())
            .map(str::to_owned)
    };
    let before = server_id(&cluster.status(0).await);

    cluster.nodes[2].kill9();
    let killed = Instant::now();
    let status = cluster
        .wait_status(0, Duration::from_secs(30), |s| member_state(s, 3) == "left")
        .await;
    let removed = killed.elapsed();
    assert!(
        removed >= Duration::from_millis(3_000),
        "removed after {removed:?}, before member_remove_after"
    );
    assert_eq!(server_id(&status), before, "its server ID stays reserved");
    // The two that are left still commit (a retained message).
    let (publisher, _) = Client::connect(options(&cluster, 0, "pub"))
        .await
        .expect("publisher connects");
    let code = publisher
        .publish("gone/retained", "kept", QoS::AtLeastOnce, true)
        .await
        .expect("PUBACK");
    assert_eq!(
        code,
        ReasonCode::NO_MATCHING_SUBSCRIBERS,
        "stored, nobody subscribed"
    );

    // It comes back with its data directory: it learns it was removed and
    // joins again, with the same server ID.
    cluster.nodes[2].restart();
    let status = cluster
        .wait_status(0, Duration::from_secs(30), |s| {
            member_state(s, 3) == "alive"
        })
        .await;
    assert_eq!(server_id(&status), before);
    let (back, _) = Client::connect(options(&cluster, 2, "back"))
        .await
        .expect("node 3 serves again");
    subscribe(&back, "gone/#").await;
    assert_eq!(
        payloads(&back, Duration::from_secs(10), 1).await,
        ["kept"],
        "it has the state committed while it was out"
    );
}

/// A client of node 2 (index 1) with a will on `wills/<client_id>`.
async fn with_will(
    cluster: &ClusterProcesses,
    client_id: &str,
    delay_s: Option<u32>,
    session_expiry_s: Option<u32>,
) -> Client {
    let mut options = options(cluster, 1, client_id);
    if session_expiry_s.is_some() {
        options = persistent(options);
        options.session_expiry_interval = session_expiry_s;
    }
    options.will = Some(quicmq_proto::mqtt::LastWill {
        topic: format!("wills/{client_id}"),
        payload: bytes::Bytes::from(format!("{client_id} is gone")),
        qos: QoS::AtLeastOnce,
        retain: false,
        properties: quicmq_proto::mqtt::Properties {
            will_delay_interval: delay_s,
            ..Default::default()
        },
    });
    let (client, _) = Client::connect(options)
        .await
        .unwrap_or_else(|e| panic!("{client_id} connects: {e}"));
    client
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wills_of_a_dead_nodes_clients_are_published_once_after_their_delay() {
    let down_after = DOWN_AFTER_MS.to_string();
    let mut cluster = ClusterProcesses::start(3, &["--member-down-after", &down_after]);
    let (watcher, _) = Client::connect(options(&cluster, 0, "will-watcher"))
        .await
        .expect("watcher connects");
    subscribe(&watcher, "wills/#").await;

    // On node 2: plain sessions (their session ends with the connection,
    // so the will is due at once, whatever its delay), persistent ones
    // with a delay, one that resumes elsewhere within its delay, one that
    // comes back with a clean start (its old session ends: will now), and
    // one that said goodbye properly.
    let _plain = with_will(&cluster, "plain", None, None).await;
    let _plain_delayed = with_will(&cluster, "plain-delayed", Some(60), None).await;
    let _delayed = with_will(&cluster, "delayed", Some(3), Some(600)).await;
    let _resumes = with_will(&cluster, "resumes", Some(30), Some(600)).await;
    let _fresh = with_will(&cluster, "fresh", Some(30), Some(600)).await;
    let polite = with_will(&cluster, "polite", None, None).await;
    polite
        .disconnect(ReasonCode::SUCCESS)
        .await
        .expect("DISCONNECT");
    // Every will is committed before its CONNACK: none waits on node 2.
    tokio::time::sleep(Duration::from_millis(300)).await;

    cluster.nodes[1].kill9();
    let killed = Instant::now();
    cluster
        .wait_status(0, Duration::from_secs(15), |s| member_state(s, 2) == "down")
        .await;
    let down = killed.elapsed();

    // Back on node 3 before their delay is over.
    let mut resumes = persistent(options(&cluster, 2, "resumes"));
    resumes.session_expiry_interval = Some(600);
    let (_resumed, connack) = Client::connect(resumes).await.expect("resumes on node 3");
    assert!(connack.session_present, "the adopted session resumes");
    let (_fresh, _) = Client::connect(options(&cluster, 2, "fresh"))
        .await
        .expect("connects again with a clean start");

    // Wills as they arrive, for 3 s past the longest delay.
    let mut arrived: Vec<(String, Duration)> = Vec::new();
    let deadline = tokio::time::Instant::from_std(killed + down + Duration::from_secs(6));
    while let Ok(event) = tokio::time::timeout_at(deadline, watcher.recv()).await {
        match event {
            Some(Event::Publish(p)) => arrived.push((p.topic.clone(), killed.elapsed())),
            Some(_) => {}
            None => break,
        }
    }
    let topics: Vec<&str> = arrived.iter().map(|(t, _)| t.as_str()).collect();
    let mut sorted = topics.clone();
    sorted.sort_unstable();
    assert_eq!(
        sorted,
        [
            "wills/delayed",
            "wills/fresh",
            "wills/plain",
            "wills/plain-delayed"
        ],
        "each will once, none for the resumed session or the polite client: {arrived:?}"
    );
    let at = |topic: &str| {
        arrived
            .iter()
            .find(|(t, _)| t == topic)
            .map(|(_, at)| *at)
            .unwrap_or_default()
    };
    // The plain sessions' wills follow the verdict at once; the delayed
    // one waits its 3 s from then.
    for plain in ["wills/plain", "wills/plain-delayed"] {
        assert!(
            at(plain) < down + Duration::from_secs(2),
            "{plain} at {:?}, node down at {down:?}",
            at(plain)
        );
    }
    assert!(
        at("wills/delayed") >= Duration::from_secs(3),
        "the delayed will came early: {:?}",
        at("wills/delayed")
    );
    assert!(
        at("wills/delayed") < down + Duration::from_secs(5),
        "the delayed will came late: {:?} (down at {down:?})",
        at("wills/delayed")
    );
    assert_eq!(
        cluster.status(0).await["wills"]["released"].as_u64(),
        Some(0),
        "nothing left to publish"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_and_restarted_publishes_the_wills_its_clients_left() {
    let mut cluster = ClusterProcesses::start(1, &[]);
    let mut watcher_options = persistent(options(&cluster, 0, "restart-watcher"));
    watcher_options.session_expiry_interval = Some(600);
    let (watcher, _) = Client::connect(watcher_options.clone())
        .await
        .expect("watcher connects");
    subscribe(&watcher, "wills/#").await;
    let mut device = options(&cluster, 0, "device");
    device.will = Some(quicmq_proto::mqtt::LastWill {
        topic: "wills/device".into(),
        payload: bytes::Bytes::from_static(b"device is gone"),
        qos: QoS::AtLeastOnce,
        retain: false,
        properties: Default::default(),
    });
    let (_device, _) = Client::connect(device).await.expect("device connects");
    drop(watcher);

    // Killed with the device connected: nobody saw its connection end.
    cluster.nodes[0].kill9();
    cluster.nodes[0].restart();
    let (watcher, connack) = Client::connect(watcher_options)
        .await
        .expect("watcher resumes");
    assert!(connack.session_present);
    let got = payloads(&watcher, Duration::from_secs(10), 2).await;
    assert_eq!(
        got,
        ["device is gone"],
        "the will of the killed run's client, once"
    );
}
