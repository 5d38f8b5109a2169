//! A small certificate authority: the cluster CA that signs the
//! certificates nodes and routers present to each other on gRPC, and a CA
//! for device (client) certificates. `quicmq ca new` and `quicmq ca issue`
//! are its command line; a single-node development cluster generates its
//! own at bootstrap.

use std::path::Path;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};

use super::TlsError;

/// What a certificate issued by a [`CertificateAuthority`] is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertUsage {
    /// A TLS client (a device).
    Client,
    /// A TLS server.
    Server,
    /// A cluster node: it dials its peers and serves them, under the name
    /// `quicmq-node` (added to the certificate's names).
    Node,
    /// A router following the cluster: a client, named `quicmq-router`
    /// (added to the certificate's names).
    Router,
    /// An operator of the nodes' admin API over TLS (`admin_mtls`): a
    /// client, named `quicmq-admin` (added to the certificate's names).
    Admin,
}

/// A certificate and its private key, PEM.
#[derive(Debug, Clone)]
pub struct IssuedCert {
    /// The certificate.
    pub cert_pem: String,
    /// Its private key (PKCS#8).
    pub key_pem: String,
}

impl IssuedCert {
    /// Write `cert` and `key` (the key readable by its owner only).
    pub fn save(&self, cert: &Path, key: &Path) -> Result<(), TlsError> {
        write(cert, &self.cert_pem, "cert", false)?;
        write(key, &self.key_pem, "key", true)
    }
}

fn write(path: &Path, text: &str, key: &'static str, secret: bool) -> Result<(), TlsError> {
    let error = |e: std::io::Error| TlsError::File {
        key,
        path: path.to_path_buf(),
        reason: e.to_string(),
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(error)?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    if secret {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    #[cfg(not(unix))]
    let _ = secret;
    let mut file = options.open(path).map_err(error)?;
    std::io::Write::write_all(&mut file, text.as_bytes()).map_err(error)
}

/// A CA certificate with its signing key.
///
/// ```
/// use quicmq_node::tls::{CertUsage, CertificateAuthority, CertIdentityField};
///
/// let ca = CertificateAuthority::generate("fleet devices").unwrap();
/// let device = ca.issue("meter-17", &[], CertUsage::Client).unwrap();
/// let der = rustls_pki_types::pem::PemObject::from_pem_slice(device.cert_pem.as_bytes());
/// let der: rustls_pki_types::CertificateDer = der.unwrap();
/// assert_eq!(CertIdentityField::CommonName.identity(&der).unwrap(), "meter-17");
/// ```
pub struct CertificateAuthority {
    issuer: Issuer<'static, KeyPair>,
    cert_pem: String,
    key_pem: String,
}

impl std::fmt::Debug for CertificateAuthority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertificateAuthority")
            .finish_non_exhaustive()
    }
}

fn generate_error(e: impl std::fmt::Display) -> TlsError {
    TlsError::Generate(e.to_string())
}

impl CertificateAuthority {
    /// A new CA named `name` (its common name), valid for ten years.
    pub fn generate(name: &str) -> Result<CertificateAuthority, TlsError> {
        let key = KeyPair::generate().map_err(generate_error)?;
        let mut params = CertificateParams::new(Vec::<String>::new()).map_err(generate_error)?;
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        // An hour back: clocks of the cluster's machines differ a little.
        params.not_before = time::OffsetDateTime::now_utc() - time::Duration::hours(1);
        params.not_after = params.not_before + time_years(10);
        let cert = params.self_signed(&key).map_err(generate_error)?;
        let key_pem = key.serialize_pem();
        Ok(CertificateAuthority {
            cert_pem: cert.pem(),
            key_pem,
            issuer: Issuer::new(params, key),
        })
    }

    /// Load a CA certificate and key (PEM); `cert_key` and `key_key` name
    /// the config keys in errors.
    pub fn load(
        cert: &Path,
        key: &Path,
        cert_key: &'static str,
        key_key: &'static str,
    ) -> Result<CertificateAuthority, TlsError> {
        let read = |path: &Path, config_key: &'static str| {
            std::fs::read_to_string(path).map_err(|e| TlsError::File {
                key: config_key,
                path: path.to_path_buf(),
                reason: e.to_string(),
            })
        };
        let cert_pem = read(cert, cert_key)?;
        let key_pem = read(key, key_key)?;
        let signing = KeyPair::from_pem(&key_pem).map_err(|e| TlsError::File {
            key: key_key,
            path: key.to_path_buf(),
            reason: e.to_string(),
        })?;
        let issuer = Issuer::from_ca_cert_pem(&cert_pem, signing).map_err(|e| TlsError::File {
            key: cert_key,
            path: cert.to_path_buf(),
            reason: e.to_string(),
        })?;
        Ok(CertificateAuthority {
            issuer,
            cert_pem,
            key_pem,
        })
    }

    /// Write the CA certificate and key (the key readable by its owner
    /// only).
    pub fn save(&self, cert: &Path, key: &Path) -> Result<(), TlsError> {
        write(cert, &self.cert_pem, "ca", false)?;
        write(key, &self.key_pem, "ca_key", true)
    }

    /// The CA certificate, PEM.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// A certificate for `common_name` (also its first DNS name when it is
    /// a usable one) plus `alt_names` (DNS names or IP addresses), valid
    /// for five years, with a fresh key.
    pub fn issue(
        &self,
        common_name: &str,
        alt_names: &[String],
        usage: CertUsage,
    ) -> Result<IssuedCert, TlsError> {
        let mut names: Vec<String> = alt_names.to_vec();
        if usage != CertUsage::Client && !names.iter().any(|n| n == common_name) {
            names.insert(0, common_name.to_owned());
        }
        let role = match usage {
            CertUsage::Node => Some(quicmq_proto::cluster_tls::NODE_NAME),
            CertUsage::Router => Some(quicmq_proto::cluster_tls::ROUTER_NAME),
            CertUsage::Admin => Some(quicmq_proto::cluster_tls::ADMIN_NAME),
            CertUsage::Client | CertUsage::Server => None,
        };
        if let Some(role) = role.filter(|r| !names.iter().any(|n| n == r)) {
            names.push(role.to_owned());
        }
        let mut params = CertificateParams::new(names).map_err(generate_error)?;
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = match usage {
            CertUsage::Client | CertUsage::Router | CertUsage::Admin => {
                vec![ExtendedKeyUsagePurpose::ClientAuth]
            }
            CertUsage::Server => vec![ExtendedKeyUsagePurpose::ServerAuth],
            CertUsage::Node => vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ],
        };
        params.not_before = time::OffsetDateTime::now_utc() - time::Duration::hours(1);
        params.not_after = params.not_before + time_years(5);
        let key = KeyPair::generate().map_err(generate_error)?;
        let cert = params
            .signed_by(&key, &self.issuer)
            .map_err(generate_error)?;
        Ok(IssuedCert {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

fn time_years(years: i64) -> time::Duration {
    time::Duration::days(365 * years + years / 4)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saved_ca_loads_and_issues_certificates_that_chain_to_it() {
        let dir = tempfile::tempdir().unwrap();
        let ca = CertificateAuthority::generate("test cluster").unwrap();
        let (cert, key) = (dir.path().join("ca.pem"), dir.path().join("ca-key.pem"));
        ca.save(&cert, &key).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&key).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let loaded =
            CertificateAuthority::load(&cert, &key, "cluster_ca", "cluster_ca_key").unwrap();
        let leaf = loaded
            .issue("node-1", &["127.0.0.1".into()], CertUsage::Node)
            .unwrap();
        // The leaf verifies against the CA with webpki, as rustls will.
        use rustls_pki_types::pem::PemObject;
        let ca_der =
            rustls_pki_types::CertificateDer::from_pem_slice(ca.cert_pem().as_bytes()).unwrap();
        let leaf_der =
            rustls_pki_types::CertificateDer::from_pem_slice(leaf.cert_pem.as_bytes()).unwrap();
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca_der).unwrap();
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            std::sync::Arc::new(roots),
            super::super::provider(),
        )
        .build()
        .unwrap();
        verifier
            .verify_client_cert(&leaf_der, &[], rustls_pki_types::UnixTime::now())
            .unwrap();
    }

    #[test]
    fn loading_names_the_key_of_a_bad_file() {
        let dir = tempfile::tempdir().unwrap();
        let cert = dir.path().join("ca.pem");
        std::fs::write(&cert, "junk").unwrap();
        let err = CertificateAuthority::load(
            &cert,
            &dir.path().join("none.pem"),
            "cluster_ca",
            "cluster_ca_key",
        )
        .unwrap_err();
        assert!(err.to_string().starts_with("cluster_ca_key: "), "{err}");
    }
}
