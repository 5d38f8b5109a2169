//! Dialling peers through an HTTP `CONNECT` proxy (RFC 9110 §9.3.6): for
//! networks where nodes reach each other only through an egress proxy, and
//! for fault injection (the chaos suite cuts node-to-node links in its own
//! proxy).
//!
//! [`parse_response`] is the sans-IO part: it reads the proxy's answer to
//! a `CONNECT`. [`tunnel`] is the thin async shell around it.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The longest proxy answer header accepted.
const MAX_RESPONSE: usize = 8 * 1024;

/// How long a proxy may take to dial the target and answer.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a tunnel through the proxy was not opened.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// The proxy could not be reached, or the connection broke.
    #[error("proxy {proxy}: {source}")]
    Io {
        /// The proxy's address.
        proxy: String,
        /// What went wrong.
        #[source]
        source: std::io::Error,
    },
    /// The answer is not an HTTP/1.x response.
    #[error("the proxy's answer is not an HTTP/1 response")]
    Malformed,
    /// The answer's header is longer than [`MAX_RESPONSE`].
    #[error("the proxy's answer header exceeds {MAX_RESPONSE} bytes")]
    TooLong,
    /// The proxy refused the tunnel.
    #[error("the proxy refused the tunnel with status {0}")]
    Refused(u16),
    /// The proxy did not answer in time.
    #[error("the proxy did not answer within {ANSWER_TIMEOUT:?}")]
    Timeout,
}

/// The request that asks for a tunnel to `target` (`HOST:PORT`).
pub fn request(target: &str) -> String {
    format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n")
}

/// Reads the proxy's answer from the bytes received so far: `Ok(None)`
/// while the header is incomplete, `Ok(Some(n))` when a 2xx header of `n`
/// bytes ended (bytes after it belong to the tunnel).
///
/// # Errors
///
/// A refusal (non-2xx status), an answer that is not HTTP/1, or a header
/// longer than 8 KiB.
///
/// # Examples
///
/// ```
/// use quicmq_raft::network::connect_proxy::parse_response;
///
/// assert_eq!(parse_response(b"HTTP/1.1 200 OK\r\n").unwrap(), None);
/// assert_eq!(parse_response(b"HTTP/1.1 200 OK\r\n\r\n").unwrap(), Some(19));
/// assert!(parse_response(b"HTTP/1.1 403 Forbidden\r\n\r\n").is_err());
/// ```
pub fn parse_response(received: &[u8]) -> Result<Option<usize>, ProxyError> {
    let Some(end) = received.windows(4).position(|w| w == b"\r\n\r\n") else {
        if received.len() > MAX_RESPONSE {
            return Err(ProxyError::TooLong);
        }
        // What came so far must still look like a status line.
        let prefix = &received[..received.len().min(5)];
        if !b"HTTP/".starts_with(prefix) {
            return Err(ProxyError::Malformed);
        }
        return Ok(None);
    };
    let header = &received[..end];
    let status_line = header.split(|b| *b == b'\n').next().unwrap_or_default();
    let status_line = std::str::from_utf8(status_line).map_err(|_| ProxyError::Malformed)?;
    let mut parts = status_line.trim_end_matches('\r').splitn(3, ' ');
    let version = parts.next().unwrap_or_default();
    if !version.starts_with("HTTP/1.") {
        return Err(ProxyError::Malformed);
    }
    let status: u16 = parts
        .next()
        .and_then(|s| s.parse().ok())
        .ok_or(ProxyError::Malformed)?;
    if !(200..300).contains(&status) {
        return Err(ProxyError::Refused(status));
    }
    Ok(Some(end + 4))
}

/// Opens a TCP tunnel to `target` (`HOST:PORT`) through the `CONNECT`
/// proxy at `proxy` (`HOST:PORT`).
///
/// # Errors
///
/// When the proxy cannot be reached, refuses, or answers badly or late.
pub async fn tunnel(proxy: &str, target: &str) -> Result<TcpStream, ProxyError> {
    let io = |source| ProxyError::Io {
        proxy: proxy.to_owned(),
        source,
    };
    let open = async {
        let mut stream = TcpStream::connect(proxy).await.map_err(io)?;
        stream.set_nodelay(true).map_err(io)?;
        stream
            .write_all(request(target).as_bytes())
            .await
            .map_err(io)?;
        // Byte by byte: nothing of the tunnel may be read past the header.
        let mut received = Vec::with_capacity(128);
        loop {
            let byte = stream.read_u8().await.map_err(io)?;
            received.push(byte);
            if byte == b'\n' {
                if let Some(end) = parse_response(&received)? {
                    debug_assert_eq!(end, received.len());
                    return Ok(stream);
                }
            } else if received.len() > MAX_RESPONSE {
                return Err(ProxyError::TooLong);
            }
        }
    };
    tokio::time::timeout(ANSWER_TIMEOUT, open)
        .await
        .map_err(|_| ProxyError::Timeout)?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_2xx_answer_ends_at_its_blank_line() {
        let answer = b"HTTP/1.0 200 Connection established\r\nVia: x\r\n\r\nrest";
        assert_eq!(parse_response(answer).unwrap(), Some(answer.len() - 4));
    }

    #[test]
    fn an_incomplete_answer_waits_for_more() {
        assert_eq!(parse_response(b"").unwrap(), None);
        assert_eq!(parse_response(b"HTT").unwrap(), None);
        assert_eq!(
            parse_response(b"HTTP/1.1 200 OK\r\nVia: x\r\n").unwrap(),
            None
        );
    }

    #[test]
    fn refusals_and_garbage_are_errors() {
        assert!(matches!(
            parse_response(b"HTTP/1.1 403 Forbidden\r\n\r\n"),
            Err(ProxyError::Refused(403))
        ));
        assert!(matches!(
            parse_response(b"SSH-2.0-x\r\n"),
            Err(ProxyError::Malformed)
        ));
        assert!(matches!(
            parse_response(b"HTTP/2 200\r\n\r\n"),
            Err(ProxyError::Malformed)
        ));
        assert!(matches!(
            parse_response(b"HTTP/1.1 abc OK\r\n\r\n"),
            Err(ProxyError::Malformed)
        ));
        let long = [b"HTTP/1.1 200 OK\r\nX: ".as_slice(), &[b'a'; 9000]].concat();
        assert!(matches!(parse_response(&long), Err(ProxyError::TooLong)));
    }

    #[test]
    fn the_request_names_the_target_twice() {
        assert_eq!(
            request("10.0.0.2:7000"),
            "CONNECT 10.0.0.2:7000 HTTP/1.1\r\nHost: 10.0.0.2:7000\r\n\r\n"
        );
    }

    #[tokio::test]
    async fn a_tunnel_carries_bytes_after_the_answer() {
        let proxy = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = proxy.local_addr().unwrap().to_string();
        let server = tokio::spawn(async move {
            let (mut s, _) = proxy.accept().await.unwrap();
            let mut buf = [0u8; 256];
            let n = s.read(&mut buf).await.unwrap();
            assert!(buf[..n].starts_with(b"CONNECT peer:1 HTTP/1.1\r\n"));
            // The answer and the first tunnel bytes in one segment.
            s.write_all(b"HTTP/1.1 200 OK\r\n\r\nhello").await.unwrap();
        });
        let mut stream = tunnel(&addr, "peer:1").await.unwrap();
        let mut hello = [0u8; 5];
        stream.read_exact(&mut hello).await.unwrap();
        assert_eq!(&hello, b"hello");
        server.await.unwrap();
    }
}
