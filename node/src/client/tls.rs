//! rustls client configuration (aws-lc-rs provider) for QUIC and TLS.
//!
//! Configurations are cached per process by (CA certificates, insecure,
//! QUIC or not), so that connections made by one process share rustls'
//! session store and resume TLS sessions (tickets) when they reconnect.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

use super::error::ClientError;
use super::options::TlsOptions;

/// The ALPN protocol of MQTT over QUIC.
pub(crate) const ALPN_MQTT: &[u8] = b"mqtt";

/// Where CA bundles usually are when no CA file is given.
const SYSTEM_CA_FILES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/ca-bundle.pem",
    "/etc/ssl/cert.pem",
];

/// The crypto provider every TLS and QUIC connection uses.
pub(crate) fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

#[derive(Clone, PartialEq, Eq, Hash)]
struct CacheKey {
    ca_pem: Option<Vec<u8>>,
    insecure: bool,
    quic: bool,
    /// PEM of the client certificate chain and of its key.
    client_pem: Option<(Vec<u8>, Vec<u8>)>,
}

fn cache() -> &'static Mutex<HashMap<CacheKey, Arc<rustls::ClientConfig>>> {
    static CACHE: OnceLock<Mutex<HashMap<CacheKey, Arc<rustls::ClientConfig>>>> = OnceLock::new();
    CACHE.get_or_init(|| Mutex::new(HashMap::new()))
}

fn system_ca_file() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("SSL_CERT_FILE") {
        return Some(PathBuf::from(path));
    }
    SYSTEM_CA_FILES
        .iter()
        .map(PathBuf::from)
        .find(|path| path.is_file())
}

fn read_ca(path: &Path) -> Result<Vec<u8>, ClientError> {
    std::fs::read(path)
        .map_err(|e| ClientError::Tls(format!("cannot read CA file {}: {e}", path.display())))
}

/// The rustls client configuration for `opts`; `quic` selects TLS 1.3 only
/// and ALPN `mqtt`.
pub(crate) fn client_config(
    opts: &TlsOptions,
    quic: bool,
) -> Result<Arc<rustls::ClientConfig>, ClientError> {
    let ca_pem = if opts.insecure {
        None
    } else {
        let path = match &opts.ca_file {
            Some(path) => path.clone(),
            None => system_ca_file().ok_or_else(|| {
                ClientError::Tls(
                    "no CA certificates: give a CA file or allow insecure connections".into(),
                )
            })?,
        };
        Some(read_ca(&path)?)
    };
    let client_pem = match &opts.client_cert {
        None => None,
        Some((cert, key)) => {
            let read = |path: &Path, what: &str| {
                std::fs::read(path).map_err(|e| {
                    ClientError::Tls(format!("cannot read client {what} {}: {e}", path.display()))
                })
            };
            Some((read(cert, "certificate")?, read(key, "key")?))
        }
    };
    let key = CacheKey {
        ca_pem,
        insecure: opts.insecure,
        quic,
        client_pem,
    };
    if let Some(config) = cache()
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .get(&key)
    {
        return Ok(config.clone());
    }
    let config = Arc::new(build(&key)?);
    cache()
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .insert(key, config.clone());
    Ok(config)
}

fn build(key: &CacheKey) -> Result<rustls::ClientConfig, ClientError> {
    let provider = provider();
    let versions: &[&rustls::SupportedProtocolVersion] = if key.quic {
        &[&rustls::version::TLS13]
    } else {
        rustls::DEFAULT_VERSIONS
    };
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(versions)
        .map_err(|e| ClientError::Tls(e.to_string()))?;
    let builder = match &key.ca_pem {
        None => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate {
                algorithms: provider.signature_verification_algorithms,
            })),
        Some(pem) => builder.with_root_certificates(root_store(pem)?),
    };
    let mut config = match &key.client_pem {
        None => builder.with_no_client_auth(),
        Some((cert_pem, key_pem)) => {
            let chain = CertificateDer::pem_slice_iter(cert_pem)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| ClientError::Tls(format!("invalid client certificate: {e}")))?;
            if chain.is_empty() {
                return Err(ClientError::Tls(
                    "the client certificate file holds no certificate".into(),
                ));
            }
            let private = PrivateKeyDer::from_pem_slice(key_pem)
                .map_err(|e| ClientError::Tls(format!("invalid client key: {e}")))?;
            builder
                .with_client_auth_cert(chain, private)
                .map_err(|e| ClientError::Tls(format!("client certificate: {e}")))?
        }
    };
    if key.quic {
        config.alpn_protocols = vec![ALPN_MQTT.to_vec()];
    }
    Ok(config)
}

fn root_store(pem: &[u8]) -> Result<rustls::RootCertStore, ClientError> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(pem) {
        let cert = cert.map_err(|e| ClientError::Tls(format!("invalid CA file: {e}")))?;
        roots
            .add(cert)
            .map_err(|e| ClientError::Tls(format!("invalid CA certificate: {e}")))?;
    }
    if roots.is_empty() {
        return Err(ClientError::Tls("the CA file holds no certificate".into()));
    }
    Ok(roots)
}

/// The name to verify the server's certificate against.
pub(crate) fn server_name(
    opts: &TlsOptions,
    host: &str,
) -> Result<ServerName<'static>, ClientError> {
    let name = opts.server_name.as_deref().unwrap_or(host);
    ServerName::try_from(name.to_owned())
        .map_err(|e| ClientError::Tls(format!("invalid server name {name:?}: {e}")))
}

/// A certificate verifier that accepts every certificate but still checks
/// that the handshake is signed by the certificate's key.
#[derive(Debug)]
struct AcceptAnyCertificate {
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn self_signed_pem() -> String {
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        cert.cert.pem()
    }

    #[test]
    fn insecure_config_for_quic_has_alpn_and_is_cached() {
        let opts = TlsOptions {
            insecure: true,
            ..TlsOptions::default()
        };
        let a = client_config(&opts, true).unwrap();
        let b = client_config(&opts, true).unwrap();
        assert!(Arc::ptr_eq(&a, &b));
        assert_eq!(a.alpn_protocols, vec![b"mqtt".to_vec()]);
        let tcp = client_config(&opts, false).unwrap();
        assert!(tcp.alpn_protocols.is_empty());
        assert!(!Arc::ptr_eq(&a, &tcp));
    }

    #[test]
    fn ca_file_is_loaded_and_bad_files_are_tls_errors() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("ca.pem");
        std::fs::write(&good, self_signed_pem()).unwrap();
        let opts = TlsOptions {
            ca_file: Some(good),
            ..TlsOptions::default()
        };
        assert!(client_config(&opts, false).is_ok());

        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate").unwrap();
        let opts = TlsOptions {
            ca_file: Some(empty),
            ..TlsOptions::default()
        };
        assert!(matches!(
            client_config(&opts, true),
            Err(ClientError::Tls(_))
        ));

        let opts = TlsOptions {
            ca_file: Some(dir.path().join("missing.pem")),
            ..TlsOptions::default()
        };
        assert!(matches!(
            client_config(&opts, true),
            Err(ClientError::Tls(_))
        ));
    }

    #[test]
    fn server_name_prefers_the_override() {
        let opts = TlsOptions::default();
        assert_eq!(
            server_name(&opts, "127.0.0.1").unwrap(),
            ServerName::try_from("127.0.0.1").unwrap()
        );
        let opts = TlsOptions {
            server_name: Some("broker.example".into()),
            ..TlsOptions::default()
        };
        assert_eq!(
            server_name(&opts, "127.0.0.1").unwrap(),
            ServerName::try_from("broker.example").unwrap()
        );
        assert!(server_name(&TlsOptions::default(), "bad name!").is_err());
    }
}
