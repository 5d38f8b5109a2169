//! Client certificates (mutual TLS) on the TLS and QUIC listeners: a
//! certificate from the configured CA authenticates the client as its
//! identity (CN or SAN), which the ACL then sees as the user name; one
//! from another CA fails the handshake; without one, a client falls back
//! to the other methods unless certificates are required.

use std::path::{Path, PathBuf};

use quicmq_node::client::{Client, ClientError, ClientOptions, Transport};
use quicmq_node::tls::{CertUsage, CertificateAuthority};
use quicmq_proto::mqtt::{QoS, ReasonCode};
use quicmq_tests::{counter, echo, TestNode};

/// A device certificate named `cn` (plus `sans`) from `ca`, written into
/// `dir`; returns (cert, key).
fn device(ca: &CertificateAuthority, dir: &Path, cn: &str, sans: &[&str]) -> (PathBuf, PathBuf) {
    let sans: Vec<String> = sans.iter().map(|s| s.to_string()).collect();
    let issued = ca.issue(cn, &sans, CertUsage::Client).unwrap();
    let (cert, key) = (
        dir.join(format!("{cn}.pem")),
        dir.join(format!("{cn}-key.pem")),
    );
    issued.save(&cert, &key).unwrap();
    (cert, key)
}

struct Pki {
    dir: tempfile::TempDir,
    ca: CertificateAuthority,
    ca_file: PathBuf,
}

fn pki() -> Pki {
    let dir = tempfile::tempdir().unwrap();
    let ca = CertificateAuthority::generate("devices").unwrap();
    let ca_file = dir.path().join("ca.pem");
    ca.save(&ca_file, &dir.path().join("ca-key.pem")).unwrap();
    Pki { dir, ca, ca_file }
}

fn with_cert(mut options: ClientOptions, cert: &(PathBuf, PathBuf)) -> ClientOptions {
    options.tls.client_cert = Some(cert.clone());
    options
}

async fn refused(options: ClientOptions) -> ReasonCode {
    match Client::connect(options).await {
        Err(ClientError::Refused(connack)) => connack.reason_code,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[tokio::test]
async fn certificate_identity_authenticates_and_is_the_acl_user_name() {
    let pki = pki();
    let acl = pki.dir.path().join("acl");
    std::fs::write(&acl, "allow both all devices/%u/#\n").unwrap();
    let node = TestNode::start_with(&format!(
        "client_ca = {:?}\nallow_anonymous = false\nacl_file = {:?}\n",
        pki.ca_file, acl
    ))
    .await;
    let meter = device(&pki.ca, pki.dir.path(), "meter-1", &[]);
    let before = counter(&node, "quicmq_auth_total{result=\"certificate\"}").await;
    for transport in [Transport::Tls, Transport::Quic] {
        let id = format!("meter-1-{transport:?}");
        let (client, _) = Client::connect(with_cert(node.options(transport, &id), &meter))
            .await
            .unwrap_or_else(|e| panic!("{transport:?}: {e}"));
        // The ACL's %u is the certificate's CN.
        echo(&client, "devices/meter-1/echo", "mine").await;
        assert_eq!(
            client
                .publish("devices/meter-2/x", "not mine", QoS::AtLeastOnce, false)
                .await
                .unwrap(),
            ReasonCode::NOT_AUTHORIZED,
            "{transport:?}"
        );
        client.disconnect(ReasonCode::SUCCESS).await.unwrap();
    }
    assert!(counter(&node, "quicmq_auth_total{result=\"certificate\"}").await >= before + 2.0);

    // A CONNECT that names another user than the certificate: 0x86.
    let mut options = with_cert(node.options(Transport::Tls, "impostor"), &meter);
    options.username = Some("meter-2".into());
    assert_eq!(
        refused(options).await,
        ReasonCode::BAD_USER_NAME_OR_PASSWORD
    );
    // Naming the same user is fine.
    let mut options = with_cert(node.options(Transport::Quic, "named"), &meter);
    options.username = Some("meter-1".into());
    Client::connect(options).await.expect("same user name");

    // No certificate and no user: anonymous, refused (0x87).
    for transport in [Transport::Tls, Transport::Quic, Transport::Tcp] {
        assert_eq!(
            refused(node.options(transport, "nobody")).await,
            ReasonCode::NOT_AUTHORIZED,
            "{transport:?}"
        );
    }

    // A certificate from another CA fails the TLS handshake.
    let other = CertificateAuthority::generate("someone else").unwrap();
    let forged = device(&other, pki.dir.path(), "meter-1-forged", &[]);
    for transport in [Transport::Tls, Transport::Quic] {
        match Client::connect(with_cert(node.options(transport, "forged"), &forged)).await {
            Err(ClientError::Refused(connack)) => {
                panic!("{transport:?}: got as far as CONNACK {connack:?}")
            }
            Err(_) => {}
            Ok(_) => panic!("{transport:?}: a certificate of another CA was accepted"),
        }
    }
    node.stop().await;
}

#[tokio::test]
async fn required_certificates_and_the_san_identity() {
    let pki = pki();
    let acl = pki.dir.path().join("acl");
    std::fs::write(&acl, "allow both all devices/%u/#\n").unwrap();
    let node = TestNode::start_with(&format!(
        "client_ca = {:?}\nrequire_client_cert = true\ncert_identity = \"san\"\nacl_file = {:?}\n",
        pki.ca_file, acl
    ))
    .await;
    let gauge = device(
        &pki.ca,
        pki.dir.path(),
        "gauge-cn",
        &["gauge-7.fleet.example"],
    );
    let (client, _) = Client::connect(with_cert(node.options(Transport::Quic, "g7"), &gauge))
        .await
        .unwrap();
    echo(&client, "devices/gauge-7.fleet.example/t", "by SAN").await;
    // Without a certificate, the handshake itself fails.
    for transport in [Transport::Tls, Transport::Quic] {
        match Client::connect(node.options(transport, "no-cert")).await {
            Ok(_) => panic!("{transport:?}: connected without the required certificate"),
            Err(ClientError::Refused(connack)) => {
                panic!("{transport:?}: got as far as CONNACK {connack:?}")
            }
            Err(_) => {}
        }
    }
    // A certificate without a SAN gives no identity: 0x86.
    let bare = device(&pki.ca, pki.dir.path(), "bare", &[]);
    assert_eq!(
        refused(with_cert(node.options(Transport::Tls, "bare"), &bare)).await,
        ReasonCode::BAD_USER_NAME_OR_PASSWORD
    );
    node.stop().await;
}
