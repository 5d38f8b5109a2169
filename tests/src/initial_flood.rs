//! A flood of QUIC Initials from many source addresses that never answer,
//! as a spoofed-source flood looks to a server: each Initial is a real
//! client's first flight (quinn-proto, ALPN `mqtt`), sent from its own
//! address in 127.0.0.0/8, and nothing the server sends back is answered.
//! Every flood is bounded: `sources × per_source` datagrams, then
//! listening for `listen`.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What a flood sent and got back.
#[derive(Debug, Default, Clone)]
pub struct FloodReport {
    /// Initial datagrams sent.
    pub initials: usize,
    /// Their bytes.
    pub bytes_sent: usize,
    /// Datagrams that came back.
    pub replies: usize,
    /// Their bytes.
    pub bytes_received: usize,
    /// Replies that were Retry packets.
    pub retries: usize,
    /// Size of a Retry datagram.
    pub retry_bytes: usize,
    /// Initials that got any answer (distinct connection IDs answered).
    pub answered: usize,
    /// Largest ratio of bytes received to bytes sent of any one source
    /// address (QUIC's anti-amplification limit is 3).
    pub worst_amplification: f64,
    /// That source's replies: (long-header type or 255, datagram length).
    pub worst_replies: Vec<(u8, usize)>,
}

/// The QUIC v1 long-header packet type of a datagram's first packet
/// (0 Initial, 1 0-RTT, 2 Handshake, 3 Retry), with the destination
/// connection ID; `None` for a short header or a truncated packet.
pub fn long_header(datagram: &[u8]) -> Option<(u8, &[u8])> {
    let first = *datagram.first()?;
    if first & 0x80 == 0 {
        return None;
    }
    let dcid_len = usize::from(*datagram.get(5)?);
    let dcid = datagram.get(6..6 + dcid_len)?;
    Some(((first & 0x30) >> 4, dcid))
}

fn client_config() -> Result<quinn_proto::ClientConfig, String> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| e.to_string())?
        // The handshake never gets as far as the server's certificate.
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
    tls.alpn_protocols = vec![b"mqtt".to_vec()];
    let quic =
        quinn_proto::crypto::rustls::QuicClientConfig::try_from(tls).map_err(|e| e.to_string())?;
    Ok(quinn_proto::ClientConfig::new(Arc::new(quic)))
}

/// Send `per_source` Initials from each of `sources` (addresses of this
/// host, e.g. 127.0.0.2 and up) to `target`, then count what comes back
/// for `listen`. Blocking: run it on a blocking thread.
pub fn initial_flood(
    target: SocketAddr,
    sources: &[IpAddr],
    per_source: usize,
    listen: Duration,
) -> Result<FloodReport, String> {
    let config = client_config()?;
    let mut report = FloodReport::default();
    let mut sockets = Vec::new();
    let mut sent_by = HashMap::new();
    for &source in sources {
        let socket = UdpSocket::bind((source, 0)).map_err(|e| format!("bind {source}: {e}"))?;
        socket.set_nonblocking(true).map_err(|e| e.to_string())?;
        let mut endpoint = quinn_proto::Endpoint::new(
            Arc::new(quinn_proto::EndpointConfig::default()),
            None,
            false,
            None,
        );
        for _ in 0..per_source {
            let now = Instant::now();
            let (_, mut connection) = endpoint
                .connect(now, config.clone(), target, "localhost")
                .map_err(|e| e.to_string())?;
            let mut datagram = Vec::new();
            let transmit = connection
                .poll_transmit(now, 1, &mut datagram)
                .ok_or("quinn-proto had no Initial to send")?;
            let sent = socket
                .send_to(&datagram[..transmit.size], target)
                .map_err(|e| e.to_string())?;
            report.initials += 1;
            report.bytes_sent += sent;
            *sent_by.entry(source).or_insert(0usize) += sent;
        }
        sockets.push((source, socket));
    }
    let mut received_by: HashMap<IpAddr, usize> = HashMap::new();
    let mut replies_of: HashMap<IpAddr, Vec<(u8, usize)>> = HashMap::new();
    let mut answered = HashSet::new();
    let deadline = Instant::now() + listen;
    let mut buf = vec![0u8; 65_536];
    while Instant::now() < deadline {
        let mut quiet = true;
        for (source, socket) in &sockets {
            while let Ok((len, _)) = socket.recv_from(&mut buf) {
                quiet = false;
                report.replies += 1;
                report.bytes_received += len;
                *received_by.entry(*source).or_default() += len;
                let kind = long_header(&buf[..len]).map_or(255, |(kind, _)| kind);
                replies_of.entry(*source).or_default().push((kind, len));
                if let Some((kind, dcid)) = long_header(&buf[..len]) {
                    if kind == 3 {
                        report.retries += 1;
                        report.retry_bytes = len;
                    }
                    answered.insert((*source, dcid.to_vec()));
                }
            }
        }
        if quiet {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    report.answered = answered.len();
    for (source, received) in &received_by {
        let ratio = *received as f64 / sent_by[source].max(1) as f64;
        if ratio > report.worst_amplification {
            report.worst_amplification = ratio;
            report.worst_replies = replies_of.remove(source).unwrap_or_default();
        }
    }
    Ok(report)
}

/// `count` loopback source addresses from 127.0.`third`.1 on.
pub fn loopback_sources(third: u8, count: u8) -> Vec<IpAddr> {
    (1..=count)
        .map(|i| IpAddr::from([127, 0, third, i]))
        .collect()
}
