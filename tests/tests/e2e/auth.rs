//! Authentication against a real node: a password file of argon2id
//! hashes (written by `quicmq passwd`), anonymous access, the CONNACK codes
//! of MQTT 5 and 3.1.1 on every transport, enhanced authentication
//! refused, and start-up errors of a bad password file.

use std::path::Path;
use std::process::Command;

use bytes::Bytes;
use quicmq_node::auth::{hash_password, PasswordFile};
use quicmq_node::client::{Client, ClientError, Transport};
use quicmq_node::config::{NodeConfig, Overrides};
use quicmq_node::node::RunningNode;
use quicmq_proto::mqtt::{ProtocolVersion, ReasonCode};
use quicmq_tests::{binary, metric_sum, NodeProcess, TestNode, TRANSPORTS};

fn write_passwords(dir: &Path, users: &[(&str, &str)]) -> std::path::PathBuf {
    let mut file = PasswordFile::default();
    for (name, password) in users {
        file.set(name, &hash_password(password.as_bytes()).unwrap())
            .unwrap();
    }
    let path = dir.join("passwd");
    std::fs::write(&path, file.to_text()).unwrap();
    path
}

async fn node_with_passwords(users: &[(&str, &str)]) -> (TestNode, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let path = write_passwords(dir.path(), users);
    // Every attempt of these tests comes from 127.0.0.1: no back-off, so
    // each gets the answer its credentials deserve (back-off has a test
    // of its own).
    let node = TestNode::start_with(&format!(
        "password_file = {:?}\nauth_backoff_after = 0\n",
        path.display().to_string()
    ))
    .await;
    (node, dir)
}

/// The CONNACK reason code of a connection attempt (SUCCESS when it
/// connected).
async fn connect_code(
    node: &TestNode,
    transport: Transport,
    protocol: ProtocolVersion,
    username: Option<&str>,
    password: Option<&str>,
) -> ReasonCode {
    let mut options = node.options(transport, "auth-test");
    options.protocol = protocol;
    options.username = username.map(str::to_owned);
    options.password = password.map(|p| Bytes::from(p.to_owned()));
    login_code(options).await
}

#[tokio::test]
async fn passwords_are_checked_on_every_transport_and_protocol() {
    let (node, _dir) = node_with_passwords(&[("alice", "wonderland"), ("bob", "builder")]).await;
    for transport in TRANSPORTS {
        for protocol in [ProtocolVersion::V5, ProtocolVersion::V311] {
            let code = |u, p| connect_code(&node, transport, protocol, u, p);
            let what = format!("{transport:?} {protocol:?}");
            assert_eq!(
                code(Some("alice"), Some("wonderland")).await,
                ReasonCode::SUCCESS,
                "{what}"
            );
            assert_eq!(
                code(Some("alice"), Some("builder")).await,
                ReasonCode::BAD_USER_NAME_OR_PASSWORD,
                "{what}: wrong password"
            );
            assert_eq!(
                code(Some("mallory"), Some("wonderland")).await,
                ReasonCode::BAD_USER_NAME_OR_PASSWORD,
                "{what}: unknown user, the same answer"
            );
            assert_eq!(
                code(Some("bob"), None).await,
                ReasonCode::BAD_USER_NAME_OR_PASSWORD,
                "{what}: no password"
            );
            assert_eq!(
                code(None, None).await,
                ReasonCode::NOT_AUTHORIZED,
                "{what}: anonymous, refused once a password file is set"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_outcome_is_counted() {
    // A process of its own: its metrics count this test's logins alone.
    let dir = tempfile::tempdir().unwrap();
    let node = alice_node(dir.path(), &["--auth-backoff-after", "0"]);
    let attempt = |user: Option<&str>, password: Option<&str>, method: Option<&str>| {
        let mut options = node.tcp_options("counted");
        options.username = user.map(str::to_owned);
        options.password = password.map(|p| Bytes::from(p.to_owned()));
        options.properties.authentication_method = method.map(str::to_owned);
        login_code(options)
    };
    assert_eq!(
        attempt(Some("alice"), Some("pw"), None).await,
        ReasonCode::SUCCESS
    );
    assert_eq!(
        attempt(Some("alice"), Some("no"), None).await,
        ReasonCode::BAD_USER_NAME_OR_PASSWORD
    );
    assert_eq!(
        attempt(Some("eve"), Some("pw"), None).await,
        ReasonCode::BAD_USER_NAME_OR_PASSWORD
    );
    assert_eq!(
        attempt(None, None, None).await,
        ReasonCode::NOT_AUTHORIZED,
        "a password file closes the node to anonymous clients"
    );
    assert_eq!(
        attempt(Some("alice"), Some("pw"), Some("SCRAM-SHA-1")).await,
        ReasonCode::BAD_AUTHENTICATION_METHOD
    );
    let count = |result: &'static str| {
        let admin = node.admin;
        async move { metric_sum(admin, &format!("quicmq_auth_total{{result=\"{result}\"}}")).await }
    };
    assert_eq!(count("allowed").await, 1.0);
    assert_eq!(count("bad_credentials").await, 2.0);
    assert_eq!(count("not_authorized").await, 1.0);
    assert_eq!(count("bad_method").await, 1.0);
}

#[tokio::test]
async fn anonymous_access_follows_allow_anonymous() {
    // The single-node development default is open.
    let open = TestNode::start().await;
    assert_eq!(
        connect_code(&open, Transport::Tcp, ProtocolVersion::V5, None, None).await,
        ReasonCode::SUCCESS
    );
    // Closed without a password file: nobody gets in.
    let closed = TestNode::start_with("allow_anonymous = false\n").await;
    assert_eq!(
        connect_code(&closed, Transport::Tcp, ProtocolVersion::V5, None, None).await,
        ReasonCode::NOT_AUTHORIZED
    );
    assert_eq!(
        connect_code(
            &closed,
            Transport::Tcp,
            ProtocolVersion::V5,
            Some("a"),
            Some("b")
        )
        .await,
        ReasonCode::NOT_AUTHORIZED
    );
    // A password file and anonymous clients both.
    let dir = tempfile::tempdir().unwrap();
    let path = write_passwords(dir.path(), &[("alice", "pw")]);
    let both = TestNode::start_with(&format!(
        "password_file = {:?}\nallow_anonymous = true\n",
        path.display().to_string()
    ))
    .await;
    assert_eq!(
        connect_code(&both, Transport::Tcp, ProtocolVersion::V5, None, None).await,
        ReasonCode::SUCCESS
    );
    assert_eq!(
        connect_code(
            &both,
            Transport::Tcp,
            ProtocolVersion::V5,
            Some("alice"),
            Some("x")
        )
        .await,
        ReasonCode::BAD_USER_NAME_OR_PASSWORD,
        "a user name is still checked"
    );
}

#[tokio::test]
async fn enhanced_authentication_gets_bad_authentication_method() {
    let node = TestNode::start().await;
    let mut options = node.options(Transport::Tcp, "enhanced");
    options.properties.authentication_method = Some("SCRAM-SHA-256".into());
    match Client::connect(options).await {
        Err(ClientError::Refused(connack)) => {
            assert_eq!(connack.reason_code, ReasonCode::BAD_AUTHENTICATION_METHOD);
        }
        other => panic!("expected CONNACK 0x8C, got {other:?}"),
    }
}

#[tokio::test]
async fn an_unusable_password_file_stops_the_start_naming_key_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("passwd");
    std::fs::write(&path, "# users\nalice:plaintext\n").unwrap();
    let toml = format!(
        "data_dir = {:?}\npassword_file = {:?}\nquic_addr = \"127.0.0.1:0\"\nrouted_addr = \"127.0.0.1:0\"\n\
         tcp_addr = \"127.0.0.1:0\"\ntls_addr = \"off\"\nadmin_addr = \"off\"\ngrpc_addr = \"127.0.0.1:0\"\n",
        dir.path().join("data").display().to_string(),
        path.display().to_string()
    );
    let file: Overrides = toml::from_str(&toml).unwrap();
    let config = NodeConfig::resolve(Overrides::default(), file).unwrap();
    let err = match RunningNode::start(&config).await {
        Ok(_) => panic!("a node started with an unusable password file"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("password_file"), "{err}");
    assert!(err.contains("line 2"), "{err}");
    assert!(err.contains("quicmq passwd"), "{err}");

    std::fs::remove_file(&path).unwrap();
    let err = match RunningNode::start(&config).await {
        Ok(_) => panic!("a node started without its password file"),
        Err(e) => e.to_string(),
    };
    assert!(
        err.contains("password_file") && err.contains("cannot read"),
        "{err}"
    );
}

fn quicmq_passwd(args: &[&str], stdin: &str) -> std::process::Output {
    use std::io::Write;
    let mut child = Command::new(binary("quicmq"))
        .arg("passwd")
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("quicmq runs");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

#[tokio::test]
async fn quicmq_passwd_writes_entries_the_node_accepts() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("passwd");
    let file = path.to_str().unwrap();
    for (user, password) in [("alice", "one"), ("bob", "two"), ("alice", "three")] {
        let out = quicmq_passwd(&[file, user, "--stdin"], &format!("{password}\n"));
        assert!(out.status.success(), "{out:?}");
    }
    let out = quicmq_passwd(&[file, "bob", "-D"], "");
    assert!(out.status.success(), "{out:?}");
    let out = quicmq_passwd(&[file, "bob", "-D"], "");
    assert!(!out.status.success(), "deleting a missing user fails");
    assert!(String::from_utf8_lossy(&out.stderr).contains("not in"));
    let out = quicmq_passwd(&[file, "a:b", "--stdin"], "x\n");
    assert!(!out.status.success(), "a name with `:` is refused");

    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let text = std::fs::read_to_string(&path).unwrap();
    assert_eq!(text.lines().count(), 1, "{text}");
    assert!(text.starts_with("alice:$argon2id$"), "{text}");

    let node = TestNode::start_with(&format!(
        "password_file = {:?}\n",
        path.display().to_string()
    ))
    .await;
    let code = |u, p| connect_code(&node, Transport::Tcp, ProtocolVersion::V5, u, p);
    assert_eq!(
        code(Some("alice"), Some("three")).await,
        ReasonCode::SUCCESS
    );
    assert_eq!(
        code(Some("alice"), Some("one")).await,
        ReasonCode::BAD_USER_NAME_OR_PASSWORD
    );
    assert_eq!(
        code(Some("bob"), Some("two")).await,
        ReasonCode::BAD_USER_NAME_OR_PASSWORD
    );
}

/// A node process whose password file holds alice (password `pw`),
/// started with `extra` flags.
fn alice_node(dir: &Path, extra: &[&str]) -> NodeProcess {
    let path = write_passwords(dir, &[("alice", "pw")]);
    let path = path.to_str().unwrap().to_owned();
    let mut args = vec!["--password-file", path.as_str()];
    args.extend_from_slice(extra);
    tokio::task::block_in_place(|| NodeProcess::spawn_with(&dir.join("data"), &args))
}

/// The CONNACK reason code of one login with `options` (SUCCESS: it got
/// in, and left again).
async fn login_code(options: quicmq_node::client::ClientOptions) -> ReasonCode {
    match Client::connect(options).await {
        Ok((client, _)) => {
            let _ = client.disconnect(ReasonCode::SUCCESS).await;
            ReasonCode::SUCCESS
        }
        Err(ClientError::Refused(connack)) => connack.reason_code,
        Err(e) => panic!("{e}"),
    }
}

/// The reason code of one login to `node` from `source` (None: the
/// system's choice of address).
async fn login_from(
    node: &NodeProcess,
    source: Option<&str>,
    user: &str,
    password: &str,
    protocol: ProtocolVersion,
) -> ReasonCode {
    let mut options = node.tcp_options("login");
    options.protocol = protocol;
    options.local_ip = source.map(|ip| ip.parse().unwrap());
    options.username = Some(user.into());
    options.password = Some(Bytes::from(password.to_owned()));
    login_code(options).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guessing_address_backs_off_without_locking_out_the_user() {
    let dir = tempfile::tempdir().unwrap();
    let node = alice_node(
        dir.path(),
        &[
            "--auth-backoff-after",
            "3",
            "--auth-backoff-initial-ms",
            "60000",
        ],
    );
    let guesser = Some("127.0.0.2");
    for _ in 0..3 {
        assert_eq!(
            login_from(&node, guesser, "alice", "guess", ProtocolVersion::V5).await,
            ReasonCode::BAD_USER_NAME_OR_PASSWORD
        );
    }
    // The guesser waits now: Server busy before any password work, even
    // with the right password; 3.1.1 gets return code 3.
    assert_eq!(
        login_from(&node, guesser, "alice", "pw", ProtocolVersion::V5).await,
        ReasonCode::SERVER_BUSY
    );
    assert_eq!(
        login_from(&node, guesser, "alice", "guess", ProtocolVersion::V311).await,
        ReasonCode::SERVER_UNAVAILABLE
    );
    // alice from her own address is not locked out, and her login clears
    // her name's failures.
    assert_eq!(
        login_from(&node, Some("127.0.0.3"), "alice", "pw", ProtocolVersion::V5).await,
        ReasonCode::SUCCESS
    );
    let backoff = metric_sum(node.admin, "quicmq_auth_total{result=\"backoff\"}").await;
    assert_eq!(backoff, 2.0, "the two held-back attempts are counted");
    assert_eq!(
        metric_sum(node.admin, "quicmq_auth_total{result=\"bad_credentials\"}").await,
        3.0,
        "only three password checks ran for the guesser"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_work_beyond_the_queue_is_refused_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let node = alice_node(
        dir.path(),
        &[
            "--max-concurrent-auth",
            "1",
            "--auth-queue",
            "2",
            "--auth-backoff-after",
            "0",
        ],
    );
    // 24 logins at once, one hash worker, two waiting: the rest are
    // refused with Server busy; nothing else happens to them.
    let mut logins = tokio::task::JoinSet::new();
    for i in 0..24 {
        let mut options = node.tcp_options(&format!("flood-{i}"));
        options.username = Some("alice".into());
        options.password = Some(Bytes::from_static(b"pw"));
        logins.spawn(login_code(options));
    }
    let codes = logins.join_all().await;
    let ok = codes.iter().filter(|c| **c == ReasonCode::SUCCESS).count();
    let busy = codes
        .iter()
        .filter(|c| **c == ReasonCode::SERVER_BUSY)
        .count();
    assert_eq!(ok + busy, 24, "{codes:?}");
    assert!(ok >= 2 && busy >= 1, "{ok} in, {busy} busy");
    assert_eq!(
        metric_sum(node.admin, "quicmq_auth_total{result=\"busy\"}").await,
        busy as f64
    );
    // Once the flood is over, logins go through again.
    assert_eq!(
        login_from(&node, None, "alice", "pw", ProtocolVersion::V5).await,
        ReasonCode::SUCCESS
    );
}
