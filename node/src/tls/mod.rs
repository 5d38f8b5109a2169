//! Certificates and rustls configurations of the node's listeners.
//!
//! Every configuration names its crypto provider explicitly (aws-lc-rs).
//! Without a configured certificate the node generates a self-signed one
//! for `localhost`, `127.0.0.1` and `::1` into its data directory and
//! reuses it on later starts.
//!
//! Session tickets are sealed with the cluster's ticket keys
//! ([`tickets`]), so a client resumes its TLS session on any node. QUIC
//! clients that come back to the node they were on (they hold its
//! address-validation token) get node-local, single-use sessions instead
//! ([`home_sessions`]), with which rustls accepts 0-RTT.

mod client_certs;
mod home_sessions;
mod pki;
mod tickets;

pub use client_certs::{CertIdentityError, CertIdentityField, ClientCertPolicy};
pub use home_sessions::{HomeSessionStore, DEFAULT_HOME_SESSIONS};
pub use pki::{CertUsage, CertificateAuthority, IssuedCert};
pub use tickets::{ClusterTicketer, TicketKeyRing, TicketRefused};

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::aws_lc_rs;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// The ALPN protocol of MQTT over QUIC.
pub const ALPN_MQTT: &[u8] = b"mqtt";

/// Why certificates could not be loaded or made.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A certificate or key file could not be read or parsed.
    #[error("{key}: cannot use {path}: {reason}")]
    File {
        /// The config key naming the file.
        key: &'static str,
        /// The file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// The self-signed development certificate could not be made.
    #[error("cannot generate the development certificate: {0}")]
    Generate(String),
    /// rustls refused the configuration.
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
}

/// A certificate chain and its private key.
pub struct Identity {
    /// Certificate chain, leaf first.
    pub chain: Vec<CertificateDer<'static>>,
    /// Private key of the leaf.
    pub key: PrivateKeyDer<'static>,
    /// Where the leaf certificate is (for clients to trust it).
    pub cert_path: PathBuf,
}

impl Identity {
    /// Load a PEM certificate chain and key.
    pub fn load(cert: &Path, key: &Path) -> Result<Identity, TlsError> {
        let file_error = |key: &'static str, path: &Path, reason: String| TlsError::File {
            key,
            path: path.to_path_buf(),
            reason,
        };
        let chain = CertificateDer::pem_file_iter(cert)
            .map_err(|e| file_error("cert", cert, e.to_string()))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| file_error("cert", cert, e.to_string()))?;
        if chain.is_empty() {
            return Err(file_error("cert", cert, "no PEM certificate in it".into()));
        }
        let private =
            PrivateKeyDer::from_pem_file(key).map_err(|e| file_error("key", key, e.to_string()))?;
        Ok(Identity {
            chain,
            key: private,
            cert_path: cert.to_path_buf(),
        })
    }

    /// Load `dev-cert.pem` / `dev-key.pem` from `data_dir`, generating them
    /// first if they are not there.
    pub fn development(data_dir: &Path) -> Result<Identity, TlsError> {
        let cert = data_dir.join("dev-cert.pem");
        let key = data_dir.join("dev-key.pem");
        if !cert.exists() || !key.exists() {
            let names = vec![
                "localhost".to_string(),
                "127.0.0.1".to_string(),
                "::1".to_string(),
            ];
            let generated = rcgen::generate_simple_self_signed(names)
                .map_err(|e| TlsError::Generate(e.to_string()))?;
            let write = |path: &Path, pem: String| {
                std::fs::write(path, pem)
                    .map_err(|e| TlsError::Generate(format!("{}: {e}", path.display())))
            };
            write(&cert, generated.cert.pem())?;
            write(&key, generated.signing_key.serialize_pem())?;
            tracing::warn!(cert = %cert.display(), "generated a self-signed development certificate; configure `cert` and `key` for production");
        }
        Identity::load(&cert, &key)
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(aws_lc_rs::default_provider())
}

/// The rustls server configuration of the TLS-over-TCP listener; session
/// tickets are sealed with `tickets`.
pub fn tcp_server_config(
    identity: &Identity,
    tickets: &Arc<TicketKeyRing>,
    client_certs: Option<&ClientCertPolicy>,
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let builder = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?;
    let builder = match client_certs {
        Some(policy) => builder.with_client_cert_verifier(policy.verifier.clone()),
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_single_cert(identity.chain.clone(), identity.key.clone_key())?;
    config.ticketer = Arc::new(ClusterTicketer::new(tickets.clone()));
    Ok(Arc::new(config))
}

/// The rustls server configurations of the QUIC listener (TLS 1.3, ALPN
/// `mqtt`).
pub struct QuicTlsConfigs {
    /// For new clients: tickets sealed with the cluster's keys resume on any
    /// node (no 0-RTT).
    pub cluster: rustls::ServerConfig,
    /// For clients returning with this node's address-validation token:
    /// tickets of node-local, single-use sessions that allow 0-RTT here
    /// (cluster tickets still resume, without 0-RTT).
    pub home: rustls::ServerConfig,
}

/// The QUIC listener's configurations: `tickets` seal cluster tickets,
/// `home` keeps the node-local sessions; `client_certs` asks clients for
/// certificates.
pub fn quic_server_configs(
    identity: &Identity,
    tickets: &Arc<TicketKeyRing>,
    home: &Arc<HomeSessionStore>,
    client_certs: Option<&ClientCertPolicy>,
) -> Result<QuicTlsConfigs, TlsError> {
    let base = || -> Result<rustls::ServerConfig, TlsError> {
        let builder = rustls::ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])?;
        let builder = match client_certs {
            Some(policy) => builder.with_client_cert_verifier(policy.verifier.clone()),
            None => builder.with_no_client_auth(),
        };
        let mut config =
            builder.with_single_cert(identity.chain.clone(), identity.key.clone_key())?;
        config.alpn_protocols = vec![ALPN_MQTT.to_vec()];
        Ok(config)
    };
    let mut cluster = base()?;
    cluster.ticketer = Arc::new(ClusterTicketer::with_home(tickets.clone(), home.clone()));
    let mut home_config = base()?;
    // No ticketer: stateful resumption, the condition for early data.
    home_config.session_storage = home.clone();
    // QUIC allows only 0 or u32::MAX; the real bound is flow control.
    home_config.max_early_data_size = u32::MAX;
    Ok(QuicTlsConfigs {
        cluster,
        home: home_config,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn development_certificate_is_generated_once_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let first = Identity::development(dir.path()).unwrap();
        let again = Identity::development(dir.path()).unwrap();
        assert_eq!(first.chain, again.chain);
        let ring = TicketKeyRing::new();
        tcp_server_config(&first, &ring, None).unwrap();
        let home = HomeSessionStore::new(ring.clone(), 10, 1_000);
        let quic = quic_server_configs(&first, &ring, &home, None).unwrap();
        assert_eq!(quic.cluster.alpn_protocols, vec![b"mqtt".to_vec()]);
        assert!(quic.cluster.ticketer.enabled());
        assert!(!quic.home.ticketer.enabled(), "stateful: 0-RTT possible");
        assert_eq!(quic.home.max_early_data_size, u32::MAX);
    }

    #[test]
    fn missing_files_name_the_key() {
        let err = Identity::load(
            Path::new("/nonexistent/c.pem"),
            Path::new("/nonexistent/k.pem"),
        )
        .err()
        .unwrap();
        assert!(
            err.to_string()
                .starts_with("cert: cannot use /nonexistent/c.pem"),
            "{err}"
        );
    }
}
