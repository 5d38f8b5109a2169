//! Client certificates (mutual TLS) on the QUIC and TLS listeners: which
//! CAs sign them, whether a client must present one, and which field of a
//! verified certificate is the client's identity.
//!
//! A client whose certificate verified is authenticated as its identity:
//! that is its user name for the ACL, no password is asked for, and a
//! CONNECT that names another user is refused (0x86).

use std::path::Path;
use std::sync::Arc;

use rustls::server::danger::ClientCertVerifier;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

use super::TlsError;

/// Which field of a client certificate names the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CertIdentityField {
    /// The subject's first common name (CN).
    #[default]
    CommonName,
    /// The first subject alternative name that is a DNS name, else an
    /// e-mail address, else a URI.
    SubjectAltName,
}

impl std::str::FromStr for CertIdentityField {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "cn" => Ok(CertIdentityField::CommonName),
            "san" => Ok(CertIdentityField::SubjectAltName),
            other => Err(format!(
                "`{other}` is not a certificate field; use `cn` or `san`"
            )),
        }
    }
}

/// Why a verified certificate gives no identity.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CertIdentityError {
    /// The DER did not parse (rustls verified it, so this is unexpected).
    #[error("the client certificate does not parse: {0}")]
    Malformed(String),
    /// The configured field is missing or empty.
    #[error("the client certificate has no {0}")]
    Missing(&'static str),
}

impl CertIdentityField {
    /// The identity `certificate` (DER) gives under this field.
    ///
    /// ```
    /// use quicmq_node::tls::CertIdentityField;
    ///
    /// let mut params = rcgen::CertificateParams::new(vec!["device-7.example".into()]).unwrap();
    /// params.distinguished_name.push(rcgen::DnType::CommonName, "device-7");
    /// let key = rcgen::KeyPair::generate().unwrap();
    /// let cert = params.self_signed(&key).unwrap();
    /// assert_eq!(CertIdentityField::CommonName.identity(cert.der()).unwrap(), "device-7");
    /// assert_eq!(
    ///     CertIdentityField::SubjectAltName.identity(cert.der()).unwrap(),
    ///     "device-7.example"
    /// );
    /// ```
    pub fn identity(self, certificate: &[u8]) -> Result<String, CertIdentityError> {
        let (_, cert) = X509Certificate::from_der(certificate)
            .map_err(|e| CertIdentityError::Malformed(e.to_string()))?;
        let found = match self {
            CertIdentityField::CommonName => cert
                .subject()
                .iter_common_name()
                .next()
                .and_then(|cn| cn.as_str().ok())
                .map(str::to_owned),
            CertIdentityField::SubjectAltName => {
                let names = cert
                    .subject_alternative_name()
                    .map_err(|e| CertIdentityError::Malformed(e.to_string()))?;
                let names = names
                    .map(|ext| ext.value.general_names.clone())
                    .unwrap_or_default();
                let pick = |want: fn(&GeneralName) -> Option<String>| names.iter().find_map(want);
                pick(|n| match n {
                    GeneralName::DNSName(s) => Some((*s).to_owned()),
                    _ => None,
                })
                .or_else(|| {
                    pick(|n| match n {
                        GeneralName::RFC822Name(s) => Some((*s).to_owned()),
                        _ => None,
                    })
                })
                .or_else(|| {
                    pick(|n| match n {
                        GeneralName::URI(s) => Some((*s).to_owned()),
                        _ => None,
                    })
                })
            }
        };
        found
            .filter(|identity| !identity.is_empty())
            .ok_or(CertIdentityError::Missing(match self {
                CertIdentityField::CommonName => "common name (CN)",
                CertIdentityField::SubjectAltName => "DNS, e-mail or URI subject alternative name",
            }))
    }
}

/// What the listeners do with client certificates (`client_ca`,
/// `require_client_cert`, `cert_identity`).
#[derive(Clone)]
pub struct ClientCertPolicy {
    /// Verifies client certificates against the configured CAs.
    pub verifier: Arc<dyn ClientCertVerifier>,
    /// Whether a client must present a certificate.
    pub required: bool,
    /// The field that names the client.
    pub identity: CertIdentityField,
}

impl std::fmt::Debug for ClientCertPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientCertPolicy")
            .field("required", &self.required)
            .field("identity", &self.identity)
            .finish_non_exhaustive()
    }
}

impl ClientCertPolicy {
    /// Client certificates signed by a CA in `ca_file` (PEM) are verified;
    /// `required`: a client without one fails the handshake.
    pub fn load(
        ca_file: &Path,
        required: bool,
        identity: CertIdentityField,
    ) -> Result<ClientCertPolicy, TlsError> {
        let error = |reason: String| TlsError::File {
            key: "client_ca",
            path: ca_file.to_path_buf(),
            reason,
        };
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(ca_file).map_err(|e| error(e.to_string()))? {
            let cert = cert.map_err(|e| error(e.to_string()))?;
            roots.add(cert).map_err(|e| error(e.to_string()))?;
        }
        if roots.is_empty() {
            return Err(error("no PEM certificate in it".into()));
        }
        let builder =
            WebPkiClientVerifier::builder_with_provider(Arc::new(roots), super::provider());
        let builder = if required {
            builder
        } else {
            builder.allow_unauthenticated()
        };
        let verifier = builder.build().map_err(|e| error(e.to_string()))?;
        Ok(ClientCertPolicy {
            verifier,
            required,
            identity,
        })
    }

    /// The identity of a client that presented `chain` (leaf first; already
    /// verified by the handshake); `Ok(None)` without a certificate.
    pub fn identity_of(
        &self,
        chain: Option<&[CertificateDer<'_>]>,
    ) -> Result<Option<String>, CertIdentityError> {
        match chain.and_then(|chain| chain.first()) {
            None => Ok(None),
            Some(leaf) => self.identity.identity(leaf).map(Some),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert(cn: Option<&str>, sans: &[&str]) -> Vec<u8> {
        let mut params =
            rcgen::CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .unwrap();
        params.distinguished_name = rcgen::DistinguishedName::new();
        if let Some(cn) = cn {
            params
                .distinguished_name
                .push(rcgen::DnType::CommonName, cn);
        }
        let key = rcgen::KeyPair::generate().unwrap();
        params.self_signed(&key).unwrap().der().to_vec()
    }

    #[test]
    fn common_name_and_subject_alternative_names() {
        let der = cert(Some("meter-1"), &["meter-1.fleet.example"]);
        assert_eq!(
            CertIdentityField::CommonName.identity(&der).unwrap(),
            "meter-1"
        );
        assert_eq!(
            CertIdentityField::SubjectAltName.identity(&der).unwrap(),
            "meter-1.fleet.example"
        );
    }

    #[test]
    fn missing_fields_are_errors_that_say_which() {
        let no_cn = cert(None, &["a.example"]);
        let err = CertIdentityField::CommonName.identity(&no_cn).unwrap_err();
        assert_eq!(err, CertIdentityError::Missing("common name (CN)"));
        let no_san = cert(Some("x"), &[]);
        assert!(matches!(
            CertIdentityField::SubjectAltName.identity(&no_san),
            Err(CertIdentityError::Missing(_))
        ));
        assert!(matches!(
            CertIdentityField::CommonName.identity(b"not DER"),
            Err(CertIdentityError::Malformed(_))
        ));
    }

    #[test]
    fn field_names_parse() {
        assert_eq!("cn".parse(), Ok(CertIdentityField::CommonName));
        assert_eq!("san".parse(), Ok(CertIdentityField::SubjectAltName));
        assert!("CN="
            .parse::<CertIdentityField>()
            .unwrap_err()
            .contains("`cn` or `san`"));
    }

    #[test]
    fn a_ca_file_without_certificates_is_refused_naming_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ca.pem");
        std::fs::write(&path, "nothing here\n").unwrap();
        let err = ClientCertPolicy::load(&path, false, CertIdentityField::CommonName).unwrap_err();
        assert!(err.to_string().starts_with("client_ca: "), "{err}");
    }

    #[test]
    fn no_certificate_is_no_identity() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ca.pem");
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        std::fs::write(&path, params.self_signed(&key).unwrap().pem()).unwrap();
        let policy = ClientCertPolicy::load(&path, false, CertIdentityField::CommonName).unwrap();
        assert_eq!(policy.identity_of(None).unwrap(), None);
        assert_eq!(policy.identity_of(Some(&[])).unwrap(), None);
        let leaf = CertificateDer::from(cert(Some("d-1"), &[]));
        assert_eq!(
            policy.identity_of(Some(&[leaf])).unwrap(),
            Some("d-1".to_string())
        );
    }
}
