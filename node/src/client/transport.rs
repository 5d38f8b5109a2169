//! Opening the transport: name resolution, TCP, TLS over TCP, or a QUIC
//! connection with its control stream.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use bytes::Bytes;
use tokio::net::TcpStream;

use super::conn::Link;
use super::error::ClientError;
use super::options::{ClientOptions, Transport};
use super::stream::{StreamReader, StreamWriter};
use super::tls;

/// A transport ready to carry CONNECT: for QUIC, the control stream is open.
pub(crate) struct Established {
    pub(crate) link: Link,
    pub(crate) reader: StreamReader,
    pub(crate) writer: StreamWriter,
    /// Local address for TCP/TLS (QUIC asks its endpoint, which may rebind).
    pub(crate) local_addr: Option<SocketAddr>,
    /// Whether the TLS handshake resumed a session (`None`: plain TCP, or
    /// QUIC, whose handshake kind quinn does not expose).
    pub(crate) tls_resumed: Option<bool>,
    /// Whether the first flight (CONNECT, ...) was already written: QUIC
    /// writes it itself, as 0-RTT early data where it can.
    pub(crate) flight_sent: bool,
    /// Whether the server accepted the first flight as 0-RTT early data.
    pub(crate) zero_rtt: bool,
}

/// Resolves `host:port`, IPv4 addresses first.
pub(crate) async fn resolve(host: &str, port: u16) -> Result<Vec<SocketAddr>, ClientError> {
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    let mut addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, port)).await?.collect();
    addrs.sort_by_key(SocketAddr::is_ipv6);
    if addrs.is_empty() {
        return Err(ClientError::Io(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!("{host} has no address"),
        )));
    }
    Ok(addrs)
}

/// Opens the transport `opts` asks for. QUIC also writes `flight` (the
/// encoded CONNECT and what goes with it) on the control stream, in 0-RTT
/// when it can; other transports leave that to the caller.
pub(crate) async fn establish(
    opts: &ClientOptions,
    flight: &Bytes,
) -> Result<Established, ClientError> {
    let addrs = resolve(&opts.host, opts.port).await?;
    match opts.transport {
        Transport::Tcp => {
            let tcp = connect_tcp(&addrs, opts.local_ip).await?;
            let local_addr = tcp.local_addr().ok();
            let (reader, writer) = tcp.into_split();
            Ok(Established {
                link: Link::Stream,
                reader: Box::new(reader),
                writer: StreamWriter::Io(Box::new(writer)),
                local_addr,
                tls_resumed: None,
                flight_sent: false,
                zero_rtt: false,
            })
        }
        Transport::Tls => {
            let config = tls::client_config(&opts.tls, false)?;
            let name = tls::server_name(&opts.tls, &opts.host)?;
            let tcp = connect_tcp(&addrs, opts.local_ip).await?;
            let local_addr = tcp.local_addr().ok();
            let stream = tokio_rustls::TlsConnector::from(config)
                .connect(name, tcp)
                .await
                .map_err(|e| ClientError::Tls(e.to_string()))?;
            let resumed =
                stream.get_ref().1.handshake_kind() == Some(rustls::HandshakeKind::Resumed);
            let (reader, writer) = tokio::io::split(stream);
            Ok(Established {
                link: Link::Stream,
                reader: Box::new(reader),
                writer: StreamWriter::Io(Box::new(writer)),
                local_addr,
                tls_resumed: Some(resumed),
                flight_sent: false,
                zero_rtt: false,
            })
        }
        Transport::Quic => connect_quic(opts, addrs[0], flight).await,
    }
}

async fn connect_tcp(
    addrs: &[SocketAddr],
    local_ip: Option<std::net::IpAddr>,
) -> Result<TcpStream, ClientError> {
    let mut last = None;
    for addr in addrs {
        let connected = match local_ip {
            None => TcpStream::connect(addr).await,
            Some(ip) => {
                let socket = if addr.is_ipv4() {
                    tokio::net::TcpSocket::new_v4()?
                } else {
                    tokio::net::TcpSocket::new_v6()?
                };
                socket.bind(SocketAddr::new(ip, 0))?;
                socket.connect(*addr).await
            }
        };
        match connected {
            Ok(tcp) => {
                tcp.set_nodelay(true)?;
                return Ok(tcp);
            }
            Err(e) => {
                tracing::debug!(%addr, error = %e, "TCP connect failed");
                last = Some(e);
            }
        }
    }
    Err(ClientError::Io(last.unwrap_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::NotFound, "no address to connect to")
    })))
}

async fn connect_quic(
    opts: &ClientOptions,
    addr: SocketAddr,
    flight: &Bytes,
) -> Result<Established, ClientError> {
    // The cached configuration with this client's ticket store: tickets
    // resume only under the same certificate verifier, which the clone
    // keeps.
    let mut crypto = (*tls::client_config(&opts.tls, true)?).clone();
    crypto.resumption = rustls::client::Resumption::store(opts.resumption.session_store(addr));
    crypto.enable_early_data = opts.zero_rtt;
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(Arc::new(crypto))
        .map_err(|e| ClientError::Tls(e.to_string()))?;
    let mut transport = quinn::TransportConfig::default();
    transport.keep_alive_interval(opts.quic_keep_alive_interval);
    let idle = quinn::IdleTimeout::try_from(opts.quic_idle_timeout)
        .map_err(|e| ClientError::InvalidArgument(format!("QUIC idle timeout: {e}")))?;
    transport.max_idle_timeout(Some(idle));
    let mut config = quinn::ClientConfig::new(Arc::new(crypto));
    config.transport_config(Arc::new(transport));
    // Address-validation tokens from earlier connections (NEW_TOKEN): a
    // returning client presents one, skips address validation, and routers
    // steer it back to the node that issued it.
    if opts.quic_reuse_tokens {
        config.token_store(opts.resumption.token_store(addr));
    } else {
        config.token_store(Arc::new(quinn::NoneTokenStore));
    }

    let endpoint = match &opts.quic_endpoint {
        Some(shared) => shared.clone(),
        None => {
            let bind: SocketAddr = match opts.local_ip {
                Some(ip) => (ip, 0).into(),
                None if addr.is_ipv6() => (Ipv6Addr::UNSPECIFIED, 0).into(),
                None => (Ipv4Addr::UNSPECIFIED, 0).into(),
            };
            quinn::Endpoint::client(bind)?
        }
    };
    let name = opts.tls.server_name.as_deref().unwrap_or(&opts.host);
    let name = name
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(name);
    let connecting = endpoint
        .connect_with(config, addr, name)
        .map_err(|e| ClientError::Quic(e.to_string()))?;
    let (connection, zero_rtt, control) = match connecting.into_0rtt() {
        // A ticket allowing early data: the control stream and the flight
        // go out with the handshake.
        Ok((connection, accepted)) => {
            let early = match open_control(&connection, flight).await {
                Ok(streams) => Some(streams),
                Err(e) => {
                    tracing::debug!(error = %e, "0-RTT control stream failed");
                    None
                }
            };
            let accepted = accepted.await;
            match early {
                Some(streams) if accepted => (connection, true, streams),
                // Refused early data is not delivered: send it again.
                _ => {
                    if let Some(reason) = connection.close_reason() {
                        return Err(connection_error(reason));
                    }
                    let streams = open_control(&connection, flight).await?;
                    (connection, false, streams)
                }
            }
        }
        Err(connecting) => {
            let connection = connecting.await.map_err(connection_error)?;
            let streams = open_control(&connection, flight).await?;
            (connection, false, streams)
        }
    };
    let (send, recv) = control;
    Ok(Established {
        link: Link::Quic {
            endpoint,
            connection,
        },
        reader: Box::new(recv),
        writer: StreamWriter::Quic(send),
        local_addr: None,
        // quinn does not expose rustls' handshake kind.
        tls_resumed: None,
        flight_sent: true,
        zero_rtt,
    })
}

/// Opens the control stream and writes `flight` on it.
async fn open_control(
    connection: &quinn::Connection,
    flight: &Bytes,
) -> Result<(quinn::SendStream, quinn::RecvStream), ClientError> {
    let (mut send, recv) = connection.open_bi().await.map_err(connection_error)?;
    send.write_all(flight).await.map_err(|e| match e {
        quinn::WriteError::ConnectionLost(reason) => connection_error(reason),
        other => ClientError::Quic(other.to_string()),
    })?;
    Ok((send, recv))
}

/// Classifies a QUIC connection error; handshake failures of TLS (crypto
/// error codes 0x100..=0x1ff, e.g. a bad certificate or no common ALPN)
/// become [`ClientError::Tls`].
pub(crate) fn connection_error(e: quinn::ConnectionError) -> ClientError {
    let code = match &e {
        quinn::ConnectionError::TransportError(t) => Some(u64::from(t.code)),
        quinn::ConnectionError::ConnectionClosed(c) => Some(u64::from(c.error_code)),
        _ => None,
    };
    match code {
        Some(0x100..=0x1ff) => ClientError::Tls(e.to_string()),
        _ => ClientError::Quic(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn resolves_ip_literals_with_and_without_brackets() {
        let addrs = resolve("127.0.0.1", 1883).await.unwrap();
        assert_eq!(addrs, vec![SocketAddr::from(([127, 0, 0, 1], 1883))]);
        let addrs = resolve("[::1]", 14567).await.unwrap();
        assert_eq!(addrs, vec![SocketAddr::from((Ipv6Addr::LOCALHOST, 14567))]);
    }

    #[test]
    fn crypto_close_codes_are_tls_errors() {
        let closed = quinn::ConnectionError::ConnectionClosed(quinn::ConnectionClose {
            error_code: quinn::TransportErrorCode::crypto(0x78),
            frame_type: None,
            reason: bytes::Bytes::new(),
        });
        assert!(matches!(connection_error(closed), ClientError::Tls(_)));
        assert!(matches!(
            connection_error(quinn::ConnectionError::TimedOut),
            ClientError::Quic(_)
        ));
    }
}
