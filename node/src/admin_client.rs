//! A small HTTP/1.1 client for a node's or router's admin endpoint, used by
//! the `quicmq` CLI (`cluster`, `health`), the benchmarks and the tests:
//! one request per connection (`Connection: close`), an optional bearer
//! token, optional TLS with an admin certificate ([`tls_config`], for a
//! node with `admin_mtls`), chunked bodies decoded, and a time limit on the
//! whole exchange.
//!
//! ```no_run
//! # async fn demo() -> Result<(), quicmq_node::admin_client::AdminError> {
//! use std::time::Duration;
//! use quicmq_node::admin_client::{request, AdminRequest};
//!
//! let reply = request(&AdminRequest {
//!     addr: "127.0.0.1:8080",
//!     method: "GET",
//!     path: "/api/cluster/status",
//!     token: Some("s3cret"),
//!     tls: None,
//!     timeout: Duration::from_secs(5),
//! })
//! .await?;
//! println!("{} {}", reply.status, reply.body);
//! # Ok(()) }
//! ```

use std::sync::Arc;
use std::time::Duration;

use rustls::ClientConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Why an admin request got no HTTP answer.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// The endpoint could not be reached.
    #[error("cannot connect to the admin endpoint {addr}: {source}")]
    Connect {
        /// The address asked for.
        addr: String,
        /// The socket error.
        source: std::io::Error,
    },
    /// The connection failed during the exchange.
    #[error("admin endpoint {addr}: {source}")]
    Io {
        /// The address asked for.
        addr: String,
        /// The socket error.
        source: std::io::Error,
    },
    /// No complete answer within the time limit.
    #[error("the admin endpoint {addr} did not answer within {timeout:?}")]
    Timeout {
        /// The address asked for.
        addr: String,
        /// The limit.
        timeout: Duration,
    },
    /// The answer is not an HTTP response.
    #[error("the admin endpoint {addr} sent something that is not an HTTP response")]
    NotHttp {
        /// The address asked for.
        addr: String,
    },
    /// The token cannot go into a header (a line break or other control
    /// character).
    #[error("the admin token contains a control character; write it on one line")]
    BadToken,
    /// The CA, certificate or key for TLS cannot be used.
    #[error("admin TLS: {0}")]
    Tls(String),
}

/// The TLS configuration to reach a node's admin endpoint with
/// `admin_mtls`: `ca` (PEM) is the cluster CA its certificate chains to,
/// `identity` the admin certificate chain and key (PEM; `quicmq ca issue
/// DIR --name NAME --usage admin`). Without an identity only the open
/// paths answer.
///
/// # Errors
///
/// When a PEM text holds nothing usable, or the key does not fit.
pub fn tls_config(
    ca: &[u8],
    identity: Option<(&[u8], &[u8])>,
) -> Result<Arc<ClientConfig>, AdminError> {
    let bad = |what: &str, e: &dyn std::fmt::Display| AdminError::Tls(format!("{what}: {e}"));
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca) {
        let cert = cert.map_err(|e| bad("the CA file", &e))?;
        roots.add(cert).map_err(|e| bad("the CA file", &e))?;
    }
    if roots.is_empty() {
        return Err(AdminError::Tls(
            "the CA file holds no PEM certificate".into(),
        ));
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| bad("TLS 1.3", &e))?
        .with_root_certificates(roots);
    let mut config = match identity {
        None => builder.with_no_client_auth(),
        Some((chain, key)) => {
            let chain = CertificateDer::pem_slice_iter(chain)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| bad("the certificate", &e))?;
            let key = PrivateKeyDer::from_pem_slice(key).map_err(|e| bad("the key", &e))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| bad("the certificate and key", &e))?
        }
    };
    config.alpn_protocols = vec![quicmq_proto::cluster_tls::ALPN_ADMIN.to_vec()];
    Ok(Arc::new(config))
}

/// One request to an admin endpoint.
#[derive(Debug, Clone)]
pub struct AdminRequest<'a> {
    /// `HOST:PORT`.
    pub addr: &'a str,
    /// `GET` or `POST` (sent without a body).
    pub method: &'a str,
    /// The path, e.g. `/metrics`.
    pub path: &'a str,
    /// Sent as `Authorization: Bearer TOKEN` when set.
    pub token: Option<&'a str>,
    /// TLS to a node with `admin_mtls` ([`tls_config`]); the node is
    /// verified under the name `quicmq-node`.
    pub tls: Option<Arc<ClientConfig>>,
    /// Limit on the whole exchange.
    pub timeout: Duration,
}

/// An admin endpoint's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminReply {
    /// The HTTP status code.
    pub status: u16,
    /// The body (de-chunked).
    pub body: String,
}

/// Sends `req` and reads the whole answer.
///
/// # Errors
///
/// When the endpoint cannot be reached, fails, answers with something that
/// is not HTTP, or does not answer within `req.timeout`.
pub async fn request(req: &AdminRequest<'_>) -> Result<AdminReply, AdminError> {
    let addr = req.addr.to_owned();
    let authorization = match req.token {
        Some(token) if token.chars().any(char::is_control) => return Err(AdminError::BadToken),
        Some(token) => format!("Authorization: Bearer {token}\r\n"),
        None => String::new(),
    };
    let head = format!(
        "{} {} HTTP/1.1\r\nHost: {}\r\n{authorization}Content-Length: 0\r\nConnection: close\r\n\r\n",
        req.method, req.path, req.addr
    );
    let exchange = async {
        let socket = tokio::net::TcpStream::connect(req.addr)
            .await
            .map_err(|source| AdminError::Connect {
                addr: addr.clone(),
                source,
            })?;
        let io = |source| AdminError::Io {
            addr: addr.clone(),
            source,
        };
        match &req.tls {
            None => exchange(socket, head.as_bytes()).await.map_err(io),
            Some(config) => {
                let tls = tokio_rustls::TlsConnector::from(config.clone())
                    .connect(quicmq_proto::cluster_tls::server_name(), socket)
                    .await
                    .map_err(io)?;
                exchange(tls, head.as_bytes()).await.map_err(io)
            }
        }
    };
    let response = tokio::time::timeout(req.timeout, exchange)
        .await
        .map_err(|_| AdminError::Timeout {
            addr: addr.clone(),
            timeout: req.timeout,
        })??;
    parse_response(&response).ok_or(AdminError::NotHttp { addr })
}

/// Writes `head` and reads the whole answer (a peer that closes a TLS
/// stream without close_notify ends it too).
async fn exchange(
    mut io: impl AsyncRead + AsyncWrite + Unpin,
    head: &[u8],
) -> std::io::Result<Vec<u8>> {
    io.write_all(head).await?;
    let mut response = Vec::new();
    match io.read_to_end(&mut response).await {
        Ok(_) => Ok(response),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !response.is_empty() => {
            Ok(response)
        }
        Err(e) => Err(e),
    }
}

/// The status and body of an HTTP/1.1 response (`None`: not one).
fn parse_response(response: &[u8]) -> Option<AdminReply> {
    let text = String::from_utf8_lossy(response);
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status = head.split(' ').nth(1)?.parse().ok()?;
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_string()
    };
    Some(AdminReply { status, body })
}

/// The body of a chunked HTTP response.
fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let size = size.split(';').next().unwrap_or("").trim();
        let Ok(size) = usize::from_str_radix(size, 16) else {
            break;
        };
        let (Some(chunk), Some(after)) = (rest.get(..size), rest.get(size..)) else {
            break;
        };
        if size == 0 {
            break;
        }
        out.push_str(chunk);
        body = after.trim_start_matches("\r\n");
    }
    out
}

/// The value of one sample in a Prometheus text exposition: `series` is
/// the metric name with its labels exactly as rendered. `None` if the
/// series is not there.
///
/// ```
/// use quicmq_node::admin_client::metric;
///
/// let text = "# TYPE x gauge\nx 3\ny{a=\"1\"} 4.5\n";
/// assert_eq!(metric(text, "x"), Some(3.0));
/// assert_eq!(metric(text, "y{a=\"1\"}"), Some(4.5));
/// assert_eq!(metric(text, "z"), None);
/// ```
pub fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .find_map(|line| {
            let (name, value) = line.rsplit_once(' ')?;
            (name == series).then(|| value.parse().ok())?
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responses_plain_and_chunked() {
        let plain = parse_response(b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 3\r\n\r\nno\n");
        assert_eq!(
            plain,
            Some(AdminReply {
                status: 401,
                body: "no\n".into()
            })
        );
        let chunked = parse_response(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n",
        );
        assert_eq!(chunked.map(|r| r.body), Some("abcde".into()));
        assert_eq!(parse_response(b"garbage"), None);
        assert_eq!(parse_response(b"HTTP/1.1 abc\r\n\r\n"), None);
        // A chunk size past the end stops decoding, no panic.
        assert_eq!(dechunk("ff\r\nabc"), "");
    }
}
