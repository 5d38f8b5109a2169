//! `quicmq bench conn`: open many connections at a bounded rate, hold them
//! idle (keep-alive running), then disconnect them all.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::client::{Client, ClientOptions, Transport};

use super::connect::{connect_timed, disconnect_all, id_prefix, ErrorTally};
use super::error::BenchError;
use super::plan::{client_id, Pacer};
use super::progress::{Counters, ProgressMode};
use super::stats::{LatencyHistogram, Mode, Summary};

/// How often the hold phase counts the connections still open.
const HOLD_CHECK: Duration = Duration::from_secs(1);

/// What `quicmq bench conn` does.
#[derive(Debug, Clone)]
pub struct ConnSettings {
    /// Connection options shared by every connection; a non-empty client
    /// identifier is the prefix of theirs (`ID-0`, `ID-1`, ...).
    pub options: ClientOptions,
    /// Connections to open.
    pub clients: usize,
    /// Connections opened per second; 0 = as fast as `max_pending` allows.
    pub rate: f64,
    /// Handshakes in progress at once, at most.
    pub max_pending: usize,
    /// How long to hold the connections once all were attempted.
    pub hold: Duration,
    /// QUIC: open every connection on one client endpoint (one UDP
    /// socket) instead of one endpoint per connection.
    pub shared_endpoint: bool,
}

/// Open connections, ready to be held and closed.
pub struct ConnBench {
    settings: ConnSettings,
    pub(super) clients: Vec<Client>,
    errors: ErrorTally,
    latency: LatencyHistogram,
    elapsed: Duration,
    progress: ProgressMode,
}

impl ConnBench {
    /// Opens the connections at the configured rate. Fails only when the
    /// settings are invalid or the shared QUIC endpoint cannot be bound;
    /// failed connections are counted.
    pub async fn open(
        mut settings: ConnSettings,
        progress: ProgressMode,
    ) -> Result<ConnBench, BenchError> {
        if settings.clients == 0 {
            return Err(BenchError::InvalidSetting("no connections".into()));
        }
        if settings.rate.is_nan() || settings.rate < 0.0 {
            return Err(BenchError::InvalidSetting(format!(
                "rate {} is negative",
                settings.rate
            )));
        }
        if settings.shared_endpoint && settings.options.transport == Transport::Quic {
            let endpoint = shared_endpoint(&settings.options).await?;
            settings.options.quic_endpoint = Some(endpoint);
        }
        let prefix = id_prefix(&settings.options, "conn");
        let counters = Arc::new(Counters::default());
        let bar = progress.start(
            "connecting",
            Some(settings.clients as u64),
            counters.clone(),
        );
        let pacer = Pacer::new(settings.rate);
        let gate = Arc::new(Semaphore::new(settings.max_pending.max(1)));
        let start = Instant::now();
        let mut tasks = JoinSet::new();
        let mut clients = Vec::with_capacity(settings.clients);
        let mut errors = ErrorTally::default();
        let mut latency = LatencyHistogram::new();
        let mut absorb =
            |joined: Result<_, tokio::task::JoinError>, clients: &mut Vec<Client>| match joined {
                Ok((_, (Ok(client), took))) => {
                    latency.record(took);
                    clients.push(client);
                }
                Ok((index, (Err(e), _))) => errors.add(format!("connection {index}: {e}")),
                Err(e) => errors.add(format!("connect task failed: {e}")),
            };
        for index in 0..settings.clients {
            if pacer.is_paced() {
                let due = start + pacer.due(index as u64);
                tokio::time::sleep_until(tokio::time::Instant::from_std(due)).await;
            }
            let Ok(permit) = gate.clone().acquire_owned().await else {
                break;
            };
            while let Some(joined) = tasks.try_join_next() {
                absorb(joined, &mut clients);
            }
            let mut opts = settings.options.clone();
            opts.client_id = client_id(&prefix, index);
            let counters = counters.clone();
            tasks.spawn(async move {
                let outcome = connect_timed(opts).await;
                drop(permit);
                match &outcome.0 {
                    Ok(_) => counters.success(),
                    Err(_) => counters.error(),
                }
                (index, outcome)
            });
        }
        while let Some(joined) = tasks.join_next().await {
            absorb(joined, &mut clients);
        }
        let elapsed = start.elapsed();
        drop(bar);
        Ok(ConnBench {
            settings,
            clients,
            errors,
            latency,
            elapsed,
            progress,
        })
    }

    /// Connections open now.
    pub fn open_count(&self) -> usize {
        self.clients.iter().filter(|c| !c.is_closed()).count()
    }

    /// Holds the connections for the configured time, counts those that
    /// closed meanwhile (as errors), disconnects the rest and summarises.
    pub async fn hold_and_close(self) -> Summary {
        let ConnBench {
            settings,
            clients,
            mut errors,
            latency,
            elapsed,
            progress,
        } = self;
        let counters = Arc::new(Counters::default());
        let bar = progress.start("holding", Some(clients.len() as u64), counters.clone());
        let open = |clients: &[Client]| clients.iter().filter(|c| !c.is_closed()).count() as u64;
        let until = tokio::time::Instant::now() + settings.hold;
        loop {
            counters
                .done
                .store(open(&clients), std::sync::atomic::Ordering::Relaxed);
            let now = tokio::time::Instant::now();
            if now >= until {
                break;
            }
            tokio::time::sleep_until(until.min(now + HOLD_CHECK)).await;
        }
        let held = open(&clients);
        let connected = clients.len() as u64;
        errors.add_many(
            connected - held,
            format!("{} connections closed during the hold", connected - held),
        );
        drop(bar);
        disconnect_all(clients).await;
        if let Some(endpoint) = &settings.options.quic_endpoint {
            let _ = tokio::time::timeout(Duration::from_secs(1), endpoint.wait_idle()).await;
        }
        Summary {
            mode: Mode::Conn,
            transport: settings.options.transport,
            clients: settings.clients as u64,
            connected,
            qos: None,
            payload_size: None,
            messages: connected,
            expected: None,
            errors: errors.count,
            first_error: errors.first,
            stop: None,
            held: Some(held),
            elapsed,
            latency: latency.summary(),
        }
    }
}

/// One QUIC client endpoint for every connection of the run, of the
/// address family of the broker's first address (IPv4 first).
async fn shared_endpoint(opts: &ClientOptions) -> Result<quinn::Endpoint, BenchError> {
    let host = opts
        .host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(&opts.host);
    let mut addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, opts.port)).await?.collect();
    addrs.sort_by_key(SocketAddr::is_ipv6);
    let bind: SocketAddr = match addrs.first() {
        Some(addr) if addr.is_ipv6() => (Ipv6Addr::UNSPECIFIED, 0).into(),
        _ => (Ipv4Addr::UNSPECIFIED, 0).into(),
    };
    Ok(quinn::Endpoint::client(bind)?)
}
