//! The password file and the ACL in a cluster of node processes: one
//! node's files become the cluster's through Raft, every node enforces
//! them, a reload on any node reaches all, and a node that restarts with
//! stale files does not overwrite them.

use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;
use quicmq_node::auth::{hash_password, PasswordFile};
use quicmq_node::client::{Client, ClientError, ClientOptions};
use quicmq_proto::mqtt::{QoS, ReasonCode};
use quicmq_tests::{http_post, ClusterProcesses};

fn passwords(users: &[(&str, &str)]) -> String {
    let mut file = PasswordFile::default();
    for (name, password) in users {
        file.set(name, &hash_password(password.as_bytes()).unwrap())
            .unwrap();
    }
    file.to_text()
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

/// CONNACK code of `user`/`password` at `options`' node, and a PUBLISH
/// answer to `topic` when it connected.
async fn attempt(
    mut options: ClientOptions,
    user: &str,
    password: &str,
    topic: &str,
) -> (ReasonCode, Option<ReasonCode>) {
    options.username = Some(user.into());
    options.password = Some(Bytes::from(password.to_owned()));
    match Client::connect(options).await {
        Ok((client, connack)) => {
            let published = client
                .publish(topic, Bytes::from_static(b"x"), QoS::AtLeastOnce, false)
                .await
                .ok();
            let _ = client.disconnect(ReasonCode::SUCCESS).await;
            (connack.reason_code, published)
        }
        Err(ClientError::Refused(connack)) => (connack.reason_code, None),
        Err(e) => panic!("{e}"),
    }
}

/// Retries `check` until it holds or 10 s pass.
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(10);
    while !check().await {
        assert!(Instant::now() < deadline, "{what}: not within 10 s");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_nodes_files_are_enforced_by_every_node_and_reloads_reach_all() {
    let dir = tempfile::tempdir().unwrap();
    let passwd = write(dir.path(), "passwd", &passwords(&[("alice", "one")]));
    let acl = write(dir.path(), "acl", "allow both user:alice a/#\n");
    let stale_passwd = write(dir.path(), "stale", &passwords(&[("mallory", "x")]));
    let mut cluster = tokio::task::block_in_place(|| {
        let mut cluster = ClusterProcesses::start(0, &[]);
        cluster.add_node_with(&["--password-file", &passwd, "--acl-file", &acl]);
        // No files of its own: the cluster's.
        cluster.add_node_with(&["--allow-anonymous", "false"]);
        // Stale files: the cluster's win.
        cluster.add_node_with(&["--password-file", &stale_passwd]);
        cluster
    });
    for node in 0..3 {
        let options = cluster.tcp_options(node, &format!("alice-{node}"));
        assert_eq!(
            attempt(options.clone(), "alice", "one", "a/x").await,
            (
                ReasonCode::SUCCESS,
                Some(ReasonCode::NO_MATCHING_SUBSCRIBERS)
            ),
            "node {node}"
        );
        assert_eq!(
            attempt(options.clone(), "alice", "one", "b/x").await,
            (ReasonCode::SUCCESS, Some(ReasonCode::NOT_AUTHORIZED)),
            "node {node}: the ACL"
        );
        assert_eq!(
            attempt(options, "mallory", "x", "a/x").await.0,
            ReasonCode::BAD_USER_NAME_OR_PASSWORD,
            "node {node}: stale files are not in force"
        );
    }

    // New files on node 1, reloaded there: every node follows.
    write(
        dir.path(),
        "passwd",
        &passwords(&[("alice", "two"), ("bob", "b")]),
    );
    write(dir.path(), "acl", "allow both all #\n");
    cluster.nodes[0].hangup();
    for node in 0..3 {
        let options = cluster.tcp_options(node, &format!("bob-{node}"));
        eventually(&format!("node {node} follows the reload"), || {
            let options = options.clone();
            async move {
                attempt(options, "bob", "b", "b/x").await
                    == (
                        ReasonCode::SUCCESS,
                        Some(ReasonCode::NO_MATCHING_SUBSCRIBERS),
                    )
            }
        })
        .await;
    }

    // A reload on node 3 pushes its (stale) files: explicit, so they win.
    let (status, body) = http_post(cluster.nodes[2].admin, "/api/auth/reload").await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"users\":1"), "{body}");
    let options = cluster.tcp_options(0, "mallory-0");
    eventually("node 1 follows node 3's reload", || {
        let options = options.clone();
        async move { attempt(options, "mallory", "x", "z").await.0 == ReasonCode::SUCCESS }
    })
    .await;

    // A restarted node keeps the cluster's rules, not its files.
    tokio::task::block_in_place(|| {
        cluster.nodes[0].kill9();
        cluster.nodes[0].restart();
    });
    let options = cluster.tcp_options(0, "after-restart");
    assert_eq!(
        attempt(options.clone(), "mallory", "x", "z").await.0,
        ReasonCode::SUCCESS
    );
    assert_eq!(
        attempt(options, "bob", "b", "z").await.0,
        ReasonCode::BAD_USER_NAME_OR_PASSWORD
    );
}
