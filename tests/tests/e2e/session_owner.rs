//! A session belongs to the identity that created it, tested as an
//! attacker would try it against real node processes: bob, logged in with
//! his own password, connects with alice's client ID over TCP, TLS and
//! QUIC, on the node that holds her session and on another node of the
//! cluster. He gets CONNACK 0x87 (3.1.1: return code 5), nothing of hers,
//! and her session and connection stay as they were. An identity the ACL
//! grants `session_takeover=any` may take over.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use quicmq_node::auth::{hash_password, PasswordFile};
use quicmq_node::client::{Client, ClientError, ClientOptions, Event, Transport};
use quicmq_proto::mqtt::{Properties, ProtocolVersion, QoS, ReasonCode, SubscriptionOptions};
use quicmq_tests::{
    free_tcp_port, metric_sum, options_for, ClusterProcesses, NodeProcess, TRANSPORTS,
};

const ACL: &str = "\
allow both user:alice dev/alice/#
allow both user:bob   dev/bob/#
allow both user:ops   dev/# session_takeover=any
allow publish user:feeder dev/#
";

const USERS: [&str; 4] = ["alice", "bob", "ops", "feeder"];

/// The password file and ACL of these tests; the flags that use them.
fn auth_args(dir: &Path) -> Vec<String> {
    let mut users = PasswordFile::default();
    for name in USERS {
        users
            .set(
                name,
                &hash_password(format!("{name}-pw").as_bytes()).unwrap(),
            )
            .unwrap();
    }
    let passwd = dir.join("passwd");
    std::fs::write(&passwd, users.to_text()).unwrap();
    let acl = dir.join("acl");
    std::fs::write(&acl, ACL).unwrap();
    vec![
        "--password-file".into(),
        passwd.display().to_string(),
        "--acl-file".into(),
        acl.display().to_string(),
        "--allow-anonymous".into(),
        "false".into(),
    ]
}

/// One node of the cluster, as a client sees it.
#[derive(Clone)]
struct Endpoint {
    tcp: SocketAddr,
    tls: Option<SocketAddr>,
    quic: SocketAddr,
    ca: std::path::PathBuf,
}

impl Endpoint {
    fn of(node: &NodeProcess, tls: Option<SocketAddr>) -> Endpoint {
        Endpoint {
            tcp: node.tcp,
            tls,
            quic: node.quic,
            ca: node.data_dir.join("dev-cert.pem"),
        }
    }

    fn options(&self, transport: Transport, user: &str, client_id: &str) -> ClientOptions {
        let addr = match transport {
            Transport::Tcp => self.tcp,
            Transport::Tls => self.tls.expect("TLS listener"),
            Transport::Quic => self.quic,
        };
        let mut options = options_for(addr, transport, client_id, &self.ca);
        options.username = Some(user.into());
        options.password = Some(Bytes::from(format!("{user}-pw")));
        options
    }
}

fn persistent(mut options: ClientOptions, clean_start: bool) -> ClientOptions {
    options.clean_start = clean_start;
    options.session_expiry_interval = Some(3600);
    options
}

/// The CONNACK: `Ok` with the client, or the refusal's reason code.
async fn connect(options: ClientOptions) -> Result<(Client, bool), ReasonCode> {
    match Client::connect(options).await {
        Ok((client, connack)) => Ok((client, connack.session_present)),
        Err(ClientError::Refused(connack)) => Err(connack.reason_code),
        Err(e) => panic!("connect: {e}"),
    }
}

async fn subscribe(client: &Client, filter: &str) {
    let suback = client
        .subscribe(
            vec![(filter.into(), SubscriptionOptions::new(QoS::AtLeastOnce))],
            Properties::default(),
        )
        .await
        .expect("SUBACK");
    assert_eq!(suback.reason_codes, [ReasonCode(1)], "{filter}");
}

async fn publish_all(client: &Client, topic: &str, payloads: &[&str]) {
    for payload in payloads {
        let code = client
            .publish(
                topic,
                Bytes::from(payload.to_string()),
                QoS::AtLeastOnce,
                false,
            )
            .await
            .expect("PUBACK");
        assert_eq!(code, ReasonCode::SUCCESS, "{topic}");
    }
}

/// The payloads that arrive until none has for `quiet`.
async fn received(client: &Client, quiet: Duration) -> Vec<String> {
    let mut payloads = Vec::new();
    while let Ok(Some(event)) = tokio::time::timeout(quiet, client.recv()).await {
        match event {
            Event::Publish(p) => payloads.push(String::from_utf8_lossy(&p.payload).into_owned()),
            Event::Disconnect(d) => payloads.push(format!("DISCONNECT {:?}", d.reason_code)),
            Event::Closed(why) => {
                payloads.push(format!("CLOSED {why:?}"));
                break;
            }
        }
    }
    payloads
}

/// The whole attack against `holder` (where alice's session lives) and
/// `other` (where bob tries; the same node or another one).
async fn bob_gets_nothing_of_alices_session(
    holder: &Endpoint,
    other: &Endpoint,
    transport: Transport,
) {
    let what = format!("{transport:?}");
    let id = format!("alice-dev-{transport:?}");
    let topic = "dev/alice/t";

    // alice keeps a persistent session and goes offline; a feeder queues
    // three messages for her.
    let (alice, _) = connect(persistent(holder.options(transport, "alice", &id), true))
        .await
        .expect("alice connects");
    subscribe(&alice, "dev/alice/#").await;
    alice.disconnect(ReasonCode::SUCCESS).await.unwrap();
    let (feeder, _) = connect(holder.options(Transport::Tcp, "feeder", &format!("feed-{what}")))
        .await
        .expect("feeder connects");
    publish_all(&feeder, topic, &["q1", "q2", "q3"]).await;

    // bob, logged in with his own password: resume, replace, 3.1.1 alike.
    for clean_start in [false, true] {
        let code = connect(persistent(
            other.options(transport, "bob", &id),
            clean_start,
        ))
        .await
        .err();
        assert_eq!(
            code,
            Some(ReasonCode::NOT_AUTHORIZED),
            "{what}: bob with clean start {clean_start}"
        );
    }
    let mut v311 = persistent(other.options(transport, "bob", &id), false);
    v311.protocol = ProtocolVersion::V311;
    v311.session_expiry_interval = None;
    assert_eq!(
        connect(v311).await.err(),
        Some(ReasonCode::NOT_AUTHORIZED),
        "{what}: 3.1.1 (return code 5)"
    );

    // alice is back: her session is whole, the three queued messages and
    // a live one arrive.
    let (alice, present) = connect(persistent(holder.options(transport, "alice", &id), false))
        .await
        .expect("alice resumes");
    assert!(present, "{what}: alice's session is still there");
    publish_all(&feeder, topic, &["live1"]).await;
    assert_eq!(
        received(&alice, Duration::from_millis(1500)).await,
        ["q1", "q2", "q3", "live1"],
        "{what}: alice receives her queue"
    );

    // While alice is connected bob cannot kick her off either.
    assert_eq!(
        connect(persistent(other.options(transport, "bob", &id), true))
            .await
            .err(),
        Some(ReasonCode::NOT_AUTHORIZED),
        "{what}: bob while alice is online"
    );
    publish_all(&feeder, topic, &["live2"]).await;
    assert_eq!(
        received(&alice, Duration::from_millis(1000)).await,
        ["live2"],
        "{what}: alice's connection is untouched"
    );
    alice.disconnect(ReasonCode::SUCCESS).await.unwrap();
    feeder.disconnect(ReasonCode::SUCCESS).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_is_refused_to_another_user_on_every_transport() {
    let dir = tempfile::tempdir().unwrap();
    let tls = SocketAddr::from(([127, 0, 0, 1], free_tcp_port()));
    let mut args = auth_args(dir.path());
    args.extend(["--tls-addr".into(), tls.to_string()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let node =
        tokio::task::block_in_place(|| NodeProcess::spawn_with(&dir.path().join("data"), &args));
    let endpoint = Endpoint::of(&node, Some(tls));
    for transport in TRANSPORTS {
        bob_gets_nothing_of_alices_session(&endpoint, &endpoint, transport).await;
    }
    assert!(
        metric_sum(
            node.admin,
            "quicmq_auth_total{result=\"not_session_owner\"}"
        )
        .await
            >= 12.0,
        "refusals are counted"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_is_refused_to_another_user_on_another_node() {
    let dir = tempfile::tempdir().unwrap();
    let args = auth_args(dir.path());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let cluster = tokio::task::block_in_place(|| ClusterProcesses::start(2, &args));
    let holder = Endpoint::of(&cluster.nodes[0], None);
    let other = Endpoint::of(&cluster.nodes[1], None);
    for transport in [Transport::Tcp, Transport::Quic] {
        bob_gets_nothing_of_alices_session(&holder, &other, transport).await;
    }
    // alice herself resumes on the other node.
    let (alice, present) = connect(persistent(
        other.options(Transport::Tcp, "alice", "alice-dev-Tcp"),
        false,
    ))
    .await
    .expect("alice resumes on node 2");
    assert!(present);
    alice.disconnect(ReasonCode::SUCCESS).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_sessions_are_bound_while_connected_and_takeover_is_granted_by_the_acl() {
    let dir = tempfile::tempdir().unwrap();
    let args = auth_args(dir.path());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let node =
        tokio::task::block_in_place(|| NodeProcess::spawn_with(&dir.path().join("data"), &args));
    let endpoint = Endpoint::of(&node, None);
    let (feeder, _) = connect(endpoint.options(Transport::Tcp, "feeder", "feeder"))
        .await
        .expect("feeder");

    // A plain (clean, no expiry) session of alice.
    let (alice, _) = connect(endpoint.options(Transport::Tcp, "alice", "plain-1"))
        .await
        .expect("alice");
    subscribe(&alice, "dev/alice/plain").await;
    assert_eq!(
        connect(endpoint.options(Transport::Quic, "bob", "plain-1"))
            .await
            .err(),
        Some(ReasonCode::NOT_AUTHORIZED),
        "bob cannot take a connected plain session"
    );
    publish_all(&feeder, "dev/alice/plain", &["p1"]).await;
    assert_eq!(received(&alice, Duration::from_millis(800)).await, ["p1"]);
    alice.disconnect(ReasonCode::SUCCESS).await.unwrap();
    // Once it ended, the client ID is free.
    let (bob, _) = connect(endpoint.options(Transport::Tcp, "bob", "plain-1"))
        .await
        .expect("the ended plain session binds nobody");
    bob.disconnect(ReasonCode::SUCCESS).await.unwrap();

    // ops may take over (session_takeover=any): alice is kicked with 0x8E
    // and ops resumes her session, which stays hers.
    let (alice, _) = connect(persistent(
        endpoint.options(Transport::Tcp, "alice", "alice-p"),
        true,
    ))
    .await
    .expect("alice");
    subscribe(&alice, "dev/alice/#").await;
    let (ops, present) = connect(persistent(
        endpoint.options(Transport::Tcp, "ops", "alice-p"),
        false,
    ))
    .await
    .expect("ops takes over");
    assert!(present, "ops resumes alice's session");
    let events = received(&alice, Duration::from_millis(800)).await;
    assert_eq!(
        events.first(),
        Some(&format!("DISCONNECT {:?}", ReasonCode::SESSION_TAKEN_OVER)),
        "alice is told her session was taken over: {events:?}"
    );
    ops.disconnect(ReasonCode::SUCCESS).await.unwrap();
    let (alice, present) = connect(persistent(
        endpoint.options(Transport::Tcp, "alice", "alice-p"),
        false,
    ))
    .await
    .expect("the session is still alice's");
    assert!(present);
    alice.disconnect(ReasonCode::SUCCESS).await.unwrap();
}
