//! How long a QUIC client takes from `connect` to CONNACK over a path with
//! a given round-trip time: a full handshake, a resumed one (TLS ticket, no
//! certificate), and one with the CONNECT in 0-RTT early data.
//!
//! A real node process behind our [`UdpProxy`], which delays every datagram
//! both ways (loopback has no round-trip time worth measuring). Connections
//! are made one after the other, so each is measured alone.

use std::fmt;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use quicmq_node::client::{Client, ClientOptions, ReasonCode, Resumption, Transport};
use quicmq_tests::NodeProcess;

use crate::impairment::Impairment;
use crate::report::quantile;
use crate::scenario::ScenarioError;
use crate::udp_proxy::UdpProxy;

/// One way of reconnecting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandshakeKind {
    /// No ticket, no token: certificate exchange and address validation.
    Full,
    /// A TLS ticket of the node (PSK): no certificate; CONNECT after the
    /// handshake.
    Resumed,
    /// A node-local ticket allowing early data: CONNECT in the first flight.
    ZeroRtt,
}

impl HandshakeKind {
    /// Every kind, in report order.
    pub const ALL: [HandshakeKind; 3] = [
        HandshakeKind::Full,
        HandshakeKind::Resumed,
        HandshakeKind::ZeroRtt,
    ];

    fn name(self) -> &'static str {
        match self {
            HandshakeKind::Full => "full",
            HandshakeKind::Resumed => "resumed",
            HandshakeKind::ZeroRtt => "0-RTT",
        }
    }
}

/// Connect → CONNACK times of one kind.
#[derive(Debug, Clone)]
pub struct HandshakeTimes {
    /// The kind.
    pub kind: HandshakeKind,
    /// One per connection.
    pub times: Vec<Duration>,
    /// Connections whose CONNECT the node accepted as early data.
    pub zero_rtt_accepted: usize,
}

/// The measurement.
#[derive(Debug, Clone)]
pub struct HandshakeReport {
    /// Round-trip time the proxy adds.
    pub rtt: Duration,
    /// Per kind.
    pub kinds: Vec<HandshakeTimes>,
}

impl fmt::Display for HandshakeReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = |d: Option<Duration>| {
            d.map_or_else(
                || "-".into(),
                |d| format!("{:.1} ms", d.as_secs_f64() * 1e3),
            )
        };
        writeln!(
            f,
            "connect → CONNACK over QUIC, path RTT {} ms",
            self.rtt.as_millis()
        )?;
        for k in &self.kinds {
            writeln!(
                f,
                "  {:<8} n={:<4} p50 {:>9}  p99 {:>9}  0-RTT accepted {}",
                k.kind.name(),
                k.times.len(),
                ms(quantile(&k.times, 0.5)),
                ms(quantile(&k.times, 0.99)),
                k.zero_rtt_accepted
            )?;
        }
        Ok(())
    }
}

fn options(
    addr: SocketAddr,
    ca: &Path,
    kind: HandshakeKind,
    resumption: &Resumption,
) -> ClientOptions {
    let mut o = ClientOptions::new(addr.ip().to_string(), addr.port(), Transport::Quic);
    o.client_id = "handshake-probe".into();
    o.tls.ca_file = Some(ca.to_path_buf());
    o.tls.server_name = Some("localhost".into());
    o.connect_timeout = Duration::from_secs(10);
    match kind {
        HandshakeKind::Full => {
            o.resumption = Resumption::new();
            o.quic_reuse_tokens = false;
        }
        HandshakeKind::Resumed => {
            o.resumption = resumption.clone();
            o.zero_rtt = false;
        }
        HandshakeKind::ZeroRtt => o.resumption = resumption.clone(),
    }
    o
}

/// Connects, returns (connect → CONNACK, whether 0-RTT was accepted), and
/// leaves once the node's tickets have arrived.
async fn once(options: ClientOptions) -> Result<(Duration, bool), ScenarioError> {
    let started = Instant::now();
    let (client, _) = Client::connect(options)
        .await
        .map_err(|e| ScenarioError::Setup(format!("connect: {e}")))?;
    let took = started.elapsed();
    let zero_rtt = client.zero_rtt_accepted();
    // Tickets and NEW_TOKEN follow the handshake by a round trip or so.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let _ = client.disconnect(ReasonCode::SUCCESS).await;
    Ok((took, zero_rtt))
}

/// Starts a node in `data_dir`, puts a path with round-trip time `rtt` in
/// front of its QUIC port and makes `connections` connections of each kind.
///
/// # Errors
///
/// The node or the proxy could not start, or a connection failed.
pub async fn measure(
    data_dir: &Path,
    rtt: Duration,
    connections: usize,
) -> Result<HandshakeReport, ScenarioError> {
    let node = tokio::task::block_in_place(|| NodeProcess::spawn(data_dir));
    let ca = data_dir.join("dev-cert.pem");
    let proxy = UdpProxy::start(node.quic)
        .await
        .map_err(|e| ScenarioError::Setup(format!("proxy: {e}")))?;
    proxy.set_impairment(Impairment {
        delay: rtt / 2,
        ..Impairment::default()
    });
    let addr = proxy.addr();
    // The cluster's first ticket key appears right after start: wait until
    // a connection brings tickets.
    let warm = Resumption::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while warm.tickets_held(addr, "localhost").1 == 0 {
        if Instant::now() > deadline {
            return Err(ScenarioError::Setup("the node issued no ticket".into()));
        }
        once(options(addr, &ca, HandshakeKind::ZeroRtt, &warm)).await?;
    }
    let mut kinds = Vec::new();
    for kind in HandshakeKind::ALL {
        let resumption = Resumption::new();
        // Two connections first: cluster tickets, then the node's own.
        for _ in 0..2 {
            once(options(addr, &ca, HandshakeKind::ZeroRtt, &resumption)).await?;
        }
        let mut times = Vec::with_capacity(connections);
        let mut zero_rtt_accepted = 0;
        for _ in 0..connections {
            let (took, zero_rtt) = once(options(addr, &ca, kind, &resumption)).await?;
            times.push(took);
            zero_rtt_accepted += usize::from(zero_rtt);
        }
        kinds.push(HandshakeTimes {
            kind,
            times,
            zero_rtt_accepted,
        });
    }
    drop(node);
    Ok(HandshakeReport { rtt, kinds })
}
