//! The cluster TLS profile without sockets: certificates made with rcgen,
//! handshakes run between rustls connections in memory.

use std::sync::Arc;

use quicmq_proto::cluster_tls::{server_name, ClusterTls, ClusterTlsError, PeerRole};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
};
use rustls::pki_types::UnixTime;
use rustls::{ClientConnection, ServerConnection};

struct Ca {
    issuer: Issuer<'static, KeyPair>,
    pem: String,
}

fn ca(name: &str) -> Ca {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    let pem = params.self_signed(&key).unwrap().pem();
    Ca {
        issuer: Issuer::new(params, key),
        pem,
    }
}

/// A leaf with `names` (DNS SANs) and `usages`: (certificate, key) PEM.
fn leaf(ca: &Ca, names: &[&str], usages: &[ExtendedKeyUsagePurpose]) -> (String, String) {
    let key = KeyPair::generate().unwrap();
    let mut params =
        CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
    params.extended_key_usages = usages.to_vec();
    let cert = params.signed_by(&key, &ca.issuer).unwrap();
    (cert.pem(), key.serialize_pem())
}

const BOTH: &[ExtendedKeyUsagePurpose] = &[
    ExtendedKeyUsagePurpose::ServerAuth,
    ExtendedKeyUsagePurpose::ClientAuth,
];
const CLIENT: &[ExtendedKeyUsagePurpose] = &[ExtendedKeyUsagePurpose::ClientAuth];

fn member(ca_pem: &str, (cert, key): &(String, String)) -> Result<ClusterTls, ClusterTlsError> {
    ClusterTls::new(
        ca_pem.as_bytes(),
        cert.as_bytes(),
        key.as_bytes(),
        Arc::new(rustls::crypto::aws_lc_rs::default_provider()),
        UnixTime::now(),
    )
}

/// Runs a handshake in memory; `Ok` with the role the server saw.
fn handshake(client: &ClusterTls, server: &ClusterTls) -> Result<Option<PeerRole>, rustls::Error> {
    let mut c = ClientConnection::new(client.client_config(), server_name()).unwrap();
    let mut s = ServerConnection::new(server.server_config().expect("a node serves")).unwrap();
    for _ in 0..10 {
        let mut buf = Vec::new();
        while c.wants_write() {
            c.write_tls(&mut buf).unwrap();
        }
        let mut slice = &buf[..];
        while !slice.is_empty() {
            s.read_tls(&mut slice).unwrap();
        }
        s.process_new_packets()?;
        let mut buf = Vec::new();
        while s.wants_write() {
            s.write_tls(&mut buf).unwrap();
        }
        let mut slice = &buf[..];
        while !slice.is_empty() {
            c.read_tls(&mut slice).unwrap();
        }
        c.process_new_packets()?;
        if !c.is_handshaking() && !s.is_handshaking() {
            return Ok(s
                .peer_certificates()
                .and_then(|chain| chain.first())
                .and_then(PeerRole::of));
        }
    }
    panic!("the handshake did not finish");
}

#[test]
fn nodes_and_routers_of_one_ca_shake_hands_and_the_server_sees_the_role() {
    let ca = ca("cluster");
    let node = member(&ca.pem, &leaf(&ca, &["node-1", "quicmq-node"], BOTH)).unwrap();
    let other_node = member(&ca.pem, &leaf(&ca, &["quicmq-node"], BOTH)).unwrap();
    let router = member(&ca.pem, &leaf(&ca, &["quicmq-router"], CLIENT)).unwrap();
    assert_eq!(node.role(), PeerRole::Node);
    assert_eq!(router.role(), PeerRole::Router);
    assert!(router.server_config().is_none(), "routers serve no gRPC");
    assert_eq!(handshake(&node, &other_node).unwrap(), Some(PeerRole::Node));
    assert_eq!(handshake(&router, &node).unwrap(), Some(PeerRole::Router));
    assert_eq!(node.client_config().alpn_protocols, vec![b"h2".to_vec()]);
}

#[test]
fn an_admin_certificate_may_administer_and_nothing_on_grpc() {
    let ca = ca("cluster");
    let node = member(&ca.pem, &leaf(&ca, &["quicmq-node"], BOTH)).unwrap();
    let admin = member(&ca.pem, &leaf(&ca, &["quicmq-admin"], CLIENT)).unwrap();
    assert_eq!(admin.role(), PeerRole::Admin);
    assert!(PeerRole::Admin.may_administer());
    assert!(!PeerRole::Admin.may_join() && !PeerRole::Admin.may_watch());
    assert!(!PeerRole::Node.may_administer() && !PeerRole::Router.may_administer());
    assert!(admin.server_config().is_none() && admin.admin_server_config().is_none());
    // A node serves its admin endpoint over HTTP/1.1 and TLS 1.3.
    let served = node.admin_server_config().expect("a node serves admin TLS");
    assert_eq!(served.alpn_protocols, vec![b"http/1.1".to_vec()]);
    // On gRPC the server sees the admin role, which RoleCheck refuses.
    assert_eq!(handshake(&admin, &node).unwrap(), Some(PeerRole::Admin));
}

#[test]
fn a_certificate_of_another_ca_fails_the_handshake_both_ways() {
    let ours = ca("cluster");
    let theirs = ca("another");
    let node = member(&ours.pem, &leaf(&ours, &["quicmq-node"], BOTH)).unwrap();
    // The stranger trusts both CAs, so it gets past its own checks.
    let both = format!("{}{}", ours.pem, theirs.pem);
    let stranger = member(&both, &leaf(&theirs, &["quicmq-node"], BOTH)).unwrap();
    assert!(
        handshake(&stranger, &node).is_err(),
        "the node refuses the stranger"
    );
    let trusting = member(&both, &leaf(&ours, &["quicmq-node"], BOTH)).unwrap();
    assert!(
        handshake(&node, &stranger).is_err(),
        "the node does not trust the stranger"
    );
    assert!(handshake(&trusting, &stranger).is_ok());
}

#[test]
fn own_certificates_are_checked_when_the_configuration_is_built() {
    let ours = ca("cluster");
    let theirs = ca("another");
    // Of another CA.
    let err = member(&ours.pem, &leaf(&theirs, &["quicmq-node"], BOTH)).unwrap_err();
    assert!(
        matches!(err, ClusterTlsError::Certificate(ref m) if m.contains("cluster CA")),
        "{err}"
    );
    // No role name.
    let err = member(&ours.pem, &leaf(&ours, &["node-1"], BOTH)).unwrap_err();
    assert!(
        matches!(err, ClusterTlsError::Certificate(ref m) if m.contains("quicmq-node")),
        "{err}"
    );
    // A node certificate that cannot serve.
    let err = member(&ours.pem, &leaf(&ours, &["quicmq-node"], CLIENT)).unwrap_err();
    assert!(matches!(err, ClusterTlsError::Certificate(_)), "{err}");
    // A key of another certificate.
    let (cert, _) = leaf(&ours, &["quicmq-router"], CLIENT);
    let (_, key) = leaf(&ours, &["quicmq-router"], CLIENT);
    assert!(matches!(
        member(&ours.pem, &(cert, key)).unwrap_err(),
        ClusterTlsError::Key(_)
    ));
    // Not PEM at all.
    let good = leaf(&ours, &["quicmq-node"], BOTH);
    assert!(matches!(
        member("junk", &good).unwrap_err(),
        ClusterTlsError::Ca(_)
    ));
    assert!(matches!(
        member(&ours.pem, &("junk".into(), good.1.clone())).unwrap_err(),
        ClusterTlsError::Certificate(_)
    ));
    assert!(matches!(
        member(&ours.pem, &(good.0.clone(), "junk".into())).unwrap_err(),
        ClusterTlsError::Key(_)
    ));
}

#[test]
fn the_role_names_are_dns_names() {
    for name in [
        PeerRole::Node.name(),
        PeerRole::Router.name(),
        PeerRole::Admin.name(),
    ] {
        assert!(matches!(
            rustls::pki_types::ServerName::try_from(name),
            Ok(rustls::pki_types::ServerName::DnsName(_))
        ));
    }
    assert!(matches!(
        server_name(),
        rustls::pki_types::ServerName::DnsName(_)
    ));
}

#[test]
fn garbage_certificates_name_no_role() {
    let der = rustls::pki_types::CertificateDer::from(vec![0x30, 0x03, 0x01, 0x01, 0xff]);
    assert_eq!(PeerRole::of(&der), None);
}
