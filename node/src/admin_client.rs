//! A small HTTP/1.1 client for a node's or router's admin endpoint, used by
//! the `quicmq` CLI (`cluster`, `health`), the benchmarks and the tests:
//! one request per connection (`Connection: close`), an optional bearer
//! token, chunked bodies decoded, and a time limit on the whole exchange.
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
//!     timeout: Duration::from_secs(5),
//! })
//! .await?;
//! println!("{} {}", reply.status, reply.body);
//! # Ok(()) }
//! ```

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

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
}

/// One request to an admin endpoint.
#[derive(Debug, Clone, Copy)]
pub struct AdminRequest<'a> {
    /// `HOST:PORT`.
    pub addr: &'a str,
    /// `GET` or `POST` (sent without a body).
    pub method: &'a str,
    /// The path, e.g. `/metrics`.
    pub path: &'a str,
    /// Sent as `Authorization: Bearer TOKEN` when set.
    pub token: Option<&'a str>,
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
    let exchange = async {
        let mut socket = tokio::net::TcpStream::connect(req.addr)
            .await
            .map_err(|source| AdminError::Connect {
                addr: addr.clone(),
                source,
            })?;
        let head = format!(
            "{} {} HTTP/1.1\r\nHost: {}\r\n{authorization}Content-Length: 0\r\nConnection: close\r\n\r\n",
            req.method, req.path, req.addr
        );
        let io = |source| AdminError::Io {
            addr: addr.clone(),
            source,
        };
        socket.write_all(head.as_bytes()).await.map_err(io)?;
        let mut response = Vec::new();
        socket.read_to_end(&mut response).await.map_err(io)?;
        Ok(response)
    };
    let response = tokio::time::timeout(req.timeout, exchange)
        .await
        .map_err(|_| AdminError::Timeout {
            addr: addr.clone(),
            timeout: req.timeout,
        })??;
    parse_response(&response).ok_or(AdminError::NotHttp { addr })
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
