//! The cluster's TLS profile: how nodes and routers prove to each other on
//! gRPC that they belong to the cluster.
//!
//! Every gRPC connection between cluster members is mutual TLS 1.3 under
//! one cluster CA. What a certificate may do is said by the DNS name in
//! its subject alternative names:
//!
//! - [`NODE_NAME`] (`quicmq-node`): a node. It serves gRPC, and may join,
//!   vote, forward and watch. Peers dial every node under this one server
//!   name, so a node's certificate needs no host name or address of its
//!   own (pods and instances come and go).
//! - [`ROUTER_NAME`] (`quicmq-router`): a router. It may only follow the
//!   cluster (`ClusterWatch`).
//! - [`ADMIN_NAME`] (`quicmq-admin`): an operator. Nothing on gRPC; it
//!   authenticates to a node's admin HTTP endpoint when that serves TLS
//!   (`admin_mtls`, [`ClusterTls::admin_server_config`]).
//!
//! A certificate chained to another CA fails the handshake; one of the
//! cluster's CA without either name is refused after it.
//!
//! [`ClusterTls`] turns the PEM files into rustls configurations, checking
//! at start-up that the member's own certificate chains to the CA and
//! names a role, so a wrong file is a start-up error, not a cluster that
//! silently refuses the member. Sans-IO: the caller reads the files and
//! gives the time; the handshakes happen in `raft` (nodes) and `router`.
//!
//! ```
//! use quicmq_proto::cluster_tls::PeerRole;
//!
//! assert_eq!(PeerRole::Node.name(), "quicmq-node");
//! assert!(PeerRole::Node.may_watch() && !PeerRole::Router.may_join());
//! ```

use std::sync::Arc;

use rustls::client::danger::ServerCertVerifier;
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::server::danger::ClientCertVerifier;
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};

/// The DNS name in every node certificate, and the server name peers
/// dial nodes under.
pub const NODE_NAME: &str = "quicmq-node";

/// The DNS name in every router certificate.
pub const ROUTER_NAME: &str = "quicmq-router";

/// The DNS name in every admin (operator) certificate.
pub const ADMIN_NAME: &str = "quicmq-admin";

/// The ALPN protocol of a node's admin HTTP endpoint over TLS.
pub const ALPN_ADMIN: &[u8] = b"http/1.1";

/// The ALPN protocol of the cluster's gRPC (HTTP/2).
pub const ALPN_GRPC: &[u8] = b"h2";

/// What a cluster member's certificate lets it do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PeerRole {
    /// A node: every cluster service.
    Node,
    /// A router: the cluster watch only.
    Router,
    /// An operator: a node's admin API, nothing on gRPC.
    Admin,
}

impl PeerRole {
    /// The DNS name that gives a certificate this role.
    pub fn name(self) -> &'static str {
        match self {
            PeerRole::Node => NODE_NAME,
            PeerRole::Router => ROUTER_NAME,
            PeerRole::Admin => ADMIN_NAME,
        }
    }

    /// May join, vote, replicate, forward and use the admin service.
    pub fn may_join(self) -> bool {
        self == PeerRole::Node
    }

    /// May follow the cluster (`ClusterWatch`).
    pub fn may_watch(self) -> bool {
        matches!(self, PeerRole::Node | PeerRole::Router)
    }

    /// May use a node's admin API without its bearer token.
    pub fn may_administer(self) -> bool {
        self == PeerRole::Admin
    }

    /// The role a certificate names, if any: node first (a node may also
    /// watch). Only the names are read; the chain must have been verified
    /// already (the handshake does that).
    pub fn of(cert: &CertificateDer<'_>) -> Option<PeerRole> {
        let cert = webpki::EndEntityCert::try_from(cert).ok()?;
        [PeerRole::Node, PeerRole::Router, PeerRole::Admin]
            .into_iter()
            .find(|role| {
                let name = ServerName::try_from(role.name()).expect("a valid DNS name");
                cert.verify_is_valid_for_subject_name(&name).is_ok()
            })
    }
}

impl std::fmt::Display for PeerRole {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Why the cluster TLS material cannot be used. Each variant says which
/// of the three inputs is at fault, so the caller can name its config key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClusterTlsError {
    /// The CA certificates.
    #[error("{0}")]
    Ca(String),
    /// The member's own certificate (chain).
    #[error("{0}")]
    Certificate(String),
    /// The member's private key.
    #[error("{0}")]
    Key(String),
}

/// A member's cluster TLS: its role, and the rustls configurations it
/// dials (and, for a node, serves) gRPC with. Cheap to clone.
#[derive(Debug, Clone)]
pub struct ClusterTls {
    role: PeerRole,
    client: Arc<ClientConfig>,
    server: Option<Arc<ServerConfig>>,
    admin_server: Option<Arc<ServerConfig>>,
}

impl ClusterTls {
    /// Builds the configurations from PEM texts: `ca` (one or more CA
    /// certificates: several during a CA rotation), `chain` (the member's
    /// certificate first) and its `key` (PKCS#8, PKCS#1 or SEC1). `now`
    /// checks the member's own certificate, which must chain to `ca` and
    /// name a role.
    ///
    /// # Errors
    ///
    /// Which input is unusable and why: unparsable PEM, a certificate
    /// another CA issued or that is expired, a certificate without a role
    /// name, a key that does not match.
    pub fn new(
        ca: &[u8],
        chain: &[u8],
        key: &[u8],
        provider: Arc<CryptoProvider>,
        now: UnixTime,
    ) -> Result<ClusterTls, ClusterTlsError> {
        let roots = roots(ca)?;
        let chain = certificates(chain).map_err(ClusterTlsError::Certificate)?;
        let key = PrivateKeyDer::from_pem_slice(key)
            .map_err(|e| ClusterTlsError::Key(format!("no usable PEM private key: {e}")))?;
        let (leaf, intermediates) = chain
            .split_first()
            .ok_or_else(|| ClusterTlsError::Certificate("no PEM certificate in it".into()))?;
        let role = PeerRole::of(leaf).ok_or_else(|| {
            ClusterTlsError::Certificate(format!(
                "it names none of {NODE_NAME}, {ROUTER_NAME}, {ADMIN_NAME} (a DNS subject \
                 alternative name); issue it with `quicmq ca issue DIR --name NAME --usage \
                 node` (or `--usage router`, `--usage admin`)"
            ))
        })?;
        let verifier = client_verifier(&roots, &provider)?;
        verifier
            .verify_client_cert(leaf, intermediates, now)
            .map_err(|e| not_trusted(&e))?;
        if role == PeerRole::Node {
            WebPkiServerVerifier::builder_with_provider(roots.clone(), provider.clone())
                .build()
                .map_err(|e| ClusterTlsError::Ca(e.to_string()))?
                .verify_server_cert(leaf, intermediates, &server_name(), &[], now)
                .map_err(|e| not_trusted(&e))?;
        }
        let mut client = ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| ClusterTlsError::Ca(e.to_string()))?
            .with_root_certificates(roots.clone())
            .with_client_auth_cert(chain.clone(), key.clone_key())
            .map_err(|e| ClusterTlsError::Key(e.to_string()))?;
        client.alpn_protocols = vec![ALPN_GRPC.to_vec()];
        let admin_server = match role {
            PeerRole::Node => {
                // Operators may show a certificate; probes and Prometheus
                // come without one and reach only the open paths.
                let optional =
                    WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone())
                        .allow_unauthenticated()
                        .build()
                        .map_err(|e| ClusterTlsError::Ca(e.to_string()))?;
                let mut admin = ServerConfig::builder_with_provider(provider.clone())
                    .with_protocol_versions(&[&rustls::version::TLS13])
                    .map_err(|e| ClusterTlsError::Ca(e.to_string()))?
                    .with_client_cert_verifier(optional)
                    .with_single_cert(chain.clone(), key.clone_key())
                    .map_err(|e| ClusterTlsError::Key(e.to_string()))?;
                admin.alpn_protocols = vec![ALPN_ADMIN.to_vec()];
                admin.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
                admin.send_tls13_tickets = 0;
                Some(Arc::new(admin))
            }
            PeerRole::Router | PeerRole::Admin => None,
        };
        let server = match role {
            PeerRole::Router | PeerRole::Admin => None,
            PeerRole::Node => {
                let mut server = ServerConfig::builder_with_provider(provider)
                    .with_protocol_versions(&[&rustls::version::TLS13])
                    .map_err(|e| ClusterTlsError::Ca(e.to_string()))?
                    .with_client_cert_verifier(verifier)
                    .with_single_cert(chain, key)
                    .map_err(|e| ClusterTlsError::Key(e.to_string()))?;
                server.alpn_protocols = vec![ALPN_GRPC.to_vec()];
                // No resumption between members: every connection shows
                // its certificate.
                server.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
                server.send_tls13_tickets = 0;
                Some(Arc::new(server))
            }
        };
        Ok(ClusterTls {
            role,
            client: Arc::new(client),
            server,
            admin_server,
        })
    }

    /// The role this member's certificate names.
    pub fn role(&self) -> PeerRole {
        self.role
    }

    /// The configuration to dial nodes with (server name [`server_name`]).
    pub fn client_config(&self) -> Arc<ClientConfig> {
        self.client.clone()
    }

    /// The configuration to serve peers with; `None` for a router, which
    /// serves no gRPC.
    pub fn server_config(&self) -> Option<Arc<ServerConfig>> {
        self.server.clone()
    }

    /// A node's configuration for its admin HTTP endpoint over TLS (ALPN
    /// `http/1.1`, the node certificate, client certificates of the
    /// cluster CA optional; [`PeerRole::of`] tells what one may do).
    /// `None` for a router or an admin certificate.
    pub fn admin_server_config(&self) -> Option<Arc<ServerConfig>> {
        self.admin_server.clone()
    }
}

/// The server name every node is dialled under.
pub fn server_name() -> ServerName<'static> {
    dns_name(NODE_NAME)
}

/// One of the role names as a server name.
fn dns_name(name: &'static str) -> ServerName<'static> {
    // NODE_NAME and ROUTER_NAME are valid DNS names (tested), so the
    // fallback is never taken; it keeps this free of panics all the same.
    ServerName::try_from(name)
        .unwrap_or_else(|_| ServerName::IpAddress(std::net::Ipv4Addr::UNSPECIFIED.into()))
}

fn not_trusted(e: &rustls::Error) -> ClusterTlsError {
    ClusterTlsError::Certificate(format!(
        "not usable under the cluster CA ({e}): a certificate of another CA, expired, or \
         without the extended key usage its role needs"
    ))
}

fn certificates(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("not PEM certificates: {e}"))
}

fn roots(pem: &[u8]) -> Result<Arc<RootCertStore>, ClusterTlsError> {
    let certs = certificates(pem).map_err(ClusterTlsError::Ca)?;
    if certs.is_empty() {
        return Err(ClusterTlsError::Ca("no PEM certificate in it".into()));
    }
    let mut roots = RootCertStore::empty();
    for cert in certs {
        roots
            .add(cert)
            .map_err(|e| ClusterTlsError::Ca(format!("not a usable CA certificate: {e}")))?;
    }
    Ok(Arc::new(roots))
}

fn client_verifier(
    roots: &Arc<RootCertStore>,
    provider: &Arc<CryptoProvider>,
) -> Result<Arc<dyn ClientCertVerifier>, ClusterTlsError> {
    WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone())
        .build()
        .map_err(|e| ClusterTlsError::Ca(e.to_string()))
}
