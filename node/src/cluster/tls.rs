//! The node's cluster mutual TLS: the [`ClusterTls`] it serves and dials
//! gRPC with, from the source its configuration names
//! ([`ClusterTlsSource`]).
//!
//! - Files: the CA, and this node's certificate and key (production).
//! - The CA and its key: the node issues itself a node certificate at
//!   every start (development fleets, Compose).
//! - Nothing configured, on a node that bootstraps: a CA generated into
//!   `DATA_DIR/cluster-ca/` on first start and reused after, so the
//!   single-node default is mutual TLS too. Nodes that join are given
//!   those files.
//! - Plaintext, for networks that secure the cluster themselves.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use quicmq_proto::cluster_tls::{ClusterTls, ClusterTlsError};
use rustls_pki_types::UnixTime;

use crate::config::{ClusterTlsSource, NodeConfig};
use crate::node::StartError;
use crate::tls::{CertUsage, CertificateAuthority};

/// Where a bootstrapping node without a configured CA keeps the one it
/// generates: `ca.pem` and `ca-key.pem`.
pub fn generated_ca_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("cluster-ca")
}

/// This node's cluster TLS (`None`: plaintext).
///
/// # Errors
///
/// A file that cannot be read or used, named by its config key: a
/// certificate of another CA, a router certificate, a key that does not
/// match.
pub fn load(config: &NodeConfig) -> Result<Option<ClusterTls>, StartError> {
    let name = format!("node-{}", config.cluster.node_id);
    let (ca_pem, cert_pem, key_pem) = match &config.cluster.tls {
        ClusterTlsSource::Plaintext => {
            tracing::warn!(
                "cluster_plaintext: gRPC between cluster members is NOT encrypted or \
                 authenticated; anyone who reaches the gRPC port can join, vote and forward"
            );
            return Ok(None);
        }
        ClusterTlsSource::Files { ca, cert, key } => (
            read(ca, "cluster_ca")?,
            read(cert, "cluster_cert")?,
            read(key, "cluster_key")?,
        ),
        ClusterTlsSource::CaKey { ca, ca_key } => {
            let authority = CertificateAuthority::load(ca, ca_key, "cluster_ca", "cluster_ca_key")?;
            let issued = authority.issue(&name, &[], CertUsage::Node)?;
            (read(ca, "cluster_ca")?, issued.cert_pem, issued.key_pem)
        }
        ClusterTlsSource::Generated => {
            let dir = generated_ca_dir(&config.data_dir);
            let (cert, key) = (dir.join("ca.pem"), dir.join("ca-key.pem"));
            // Half a CA (one file lost) is an error when loading, not replaced.
            let authority = if cert.exists() || key.exists() {
                CertificateAuthority::load(&cert, &key, "cluster_ca", "cluster_ca_key")?
            } else {
                let authority = CertificateAuthority::generate(&format!(
                    "quicmq cluster CA ({})",
                    config.cluster.cluster_id
                ))?;
                authority.save(&cert, &key)?;
                authority
            };
            tracing::info!(
                "cluster TLS: CA in {}; nodes that join need it: cluster_ca = {}, and \
                 cluster_ca_key = {} or a certificate from `quicmq ca issue {} --name NAME \
                 --usage node`",
                dir.display(),
                cert.display(),
                key.display(),
                dir.display()
            );
            let issued = authority.issue(&name, &[], CertUsage::Node)?;
            (
                authority.cert_pem().to_owned(),
                issued.cert_pem,
                issued.key_pem,
            )
        }
    };
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let tls = ClusterTls::new(
        ca_pem.as_bytes(),
        cert_pem.as_bytes(),
        key_pem.as_bytes(),
        provider,
        UnixTime::now(),
    )
    .map_err(|e| {
        let key = match (&e, &config.cluster.tls) {
            (ClusterTlsError::Ca(_), _) => "cluster_ca",
            (_, ClusterTlsSource::Files { .. }) => match e {
                ClusterTlsError::Key(_) => "cluster_key",
                _ => "cluster_cert",
            },
            _ => "cluster_ca_key",
        };
        StartError::Config(format!("{key}: {e}"))
    })?;
    Ok(Some(tls))
}

fn read(path: &Path, key: &'static str) -> Result<String, StartError> {
    std::fs::read_to_string(path)
        .map_err(|e| StartError::Config(format!("{key}: cannot read {}: {e}", path.display())))
}
