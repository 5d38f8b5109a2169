//! [`ReconnectingClient`]: a client that outlives its connections. When
//! the connection is lost (the node died, a router reset it, the network
//! went away) it connects again with exponential [`Backoff`] and jitter,
//! resuming a persistent session (clean start 0) so the broker replays
//! what was not acknowledged; publishes wait for the next connection.
//!
//! TLS tickets are kept per process, so the new handshake is a resumed one
//! when the cluster shares its ticket keys.
//!
//! ```no_run
//! use quicmq_node::client::{Backoff, ClientOptions, QoS, ReconnectEvent, ReconnectingClient, Transport};
//!
//! # async fn demo() -> Result<(), quicmq_node::client::ClientError> {
//! let mut opts = ClientOptions::new("127.0.0.1", 14567, Transport::Quic);
//! opts.tls.insecure = true;
//! opts.client_id = "sensor-7".into();
//! opts.clean_start = false;
//! opts.session_expiry_interval = Some(3600);
//! let (client, _) = ReconnectingClient::connect(opts, Backoff::default()).await?;
//! client.publish("sensors/7", "21.5", QoS::AtLeastOnce, false).await?;
//! while let Some(event) = client.recv().await {
//!     if let ReconnectEvent::Reconnected { down, .. } = event {
//!         println!("back after {down:?}");
//!     }
//! }
//! # Ok(()) }
//! ```

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::{mpsc, watch, Mutex};

use super::{Client, ClientError, ClientOptions, ConnAck, Event, QoS, ReasonCode, Resumption};

/// How long to wait before each reconnection attempt: `initial`, doubled
/// per failed attempt up to `max`, each wait then shortened by a random
/// fraction of up to `jitter` (so a fleet that lost one node does not come
/// back in lockstep).
#[derive(Debug, Clone, PartialEq)]
pub struct Backoff {
    /// Wait before the first attempt.
    pub initial: Duration,
    /// Longest wait.
    pub max: Duration,
    /// Fraction (0 to 1) of each wait that is random.
    pub jitter: f64,
}

impl Default for Backoff {
    /// 100 ms doubling to 5 s, half of each wait random.
    fn default() -> Backoff {
        Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(5),
            jitter: 0.5,
        }
    }
}

impl Backoff {
    /// The wait before attempt `attempt` (0 for the first) given `random`
    /// in `[0, 1)`.
    ///
    /// ```
    /// use std::time::Duration;
    /// use quicmq_node::client::Backoff;
    /// let b = Backoff { initial: Duration::from_millis(100), max: Duration::from_secs(1), jitter: 0.5 };
    /// assert_eq!(b.delay(0, 0.0), Duration::from_millis(100));
    /// assert_eq!(b.delay(1, 0.0), Duration::from_millis(200));
    /// assert_eq!(b.delay(9, 0.0), Duration::from_secs(1));
    /// assert_eq!(b.delay(9, 0.5), Duration::from_millis(750));
    /// ```
    pub fn delay(&self, attempt: u32, random: f64) -> Duration {
        let base = self
            .initial
            .saturating_mul(2u32.saturating_pow(attempt.min(30)))
            .min(self.max);
        let cut = self.jitter.clamp(0.0, 1.0) * random.clamp(0.0, 1.0);
        base.mul_f64(1.0 - cut).max(Duration::from_millis(1))
    }
}

/// What a [`ReconnectingClient`] reports.
#[derive(Debug)]
pub enum ReconnectEvent {
    /// An event of the current connection (a message, or the server's
    /// DISCONNECT before the connection goes).
    Event(Box<Event>),
    /// The connection was lost, and why; reconnection starts.
    Lost(String),
    /// Connected again.
    Reconnected {
        /// The new CONNACK (`session_present`: the session was resumed).
        connack: Box<ConnAck>,
        /// Attempts it took.
        attempts: u32,
        /// From losing the connection to the new CONNACK.
        down: Duration,
    },
    /// Reconnection stopped for good: the broker refused the client (bad
    /// credentials, not authorized, banned). The last event.
    GaveUp(ClientError),
}

struct Shared {
    current: watch::Receiver<Option<Client>>,
    events: Mutex<mpsc::UnboundedReceiver<ReconnectEvent>>,
    stop: watch::Sender<bool>,
    publish_timeout: Duration,
}

/// A client that reconnects by itself (see the [module](self) docs).
/// Cheap to clone; all clones share the connection.
#[derive(Clone)]
pub struct ReconnectingClient {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for ReconnectingClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReconnectingClient")
            .field("connected", &self.shared.current.borrow().is_some())
            .finish()
    }
}

impl ReconnectingClient {
    /// Connects once (errors are returned, as [`Client::connect`]'s), then
    /// keeps the client connected in the background. Reconnections use
    /// clean start 0 when the session outlives its connection
    /// (`session_expiry_interval` above 0), so the session resumes.
    ///
    /// Over QUIC the client keeps tickets and tokens of its own (unless
    /// `options.resumption` is already its own): after a lost connection it
    /// resumes the TLS session on whichever node takes it (a cluster
    /// ticket), and back on its node it connects in 0-RTT.
    pub async fn connect(
        mut options: ClientOptions,
        backoff: Backoff,
    ) -> Result<(ReconnectingClient, ConnAck), ClientError> {
        if options.resumption.is_shared() {
            options.resumption = Resumption::new();
        }
        let (client, connack) = Client::connect(options.clone()).await?;
        let (current_tx, current) = watch::channel(Some(client.clone()));
        let (events_tx, events) = mpsc::unbounded_channel();
        let (stop, stop_rx) = watch::channel(false);
        let mut again = options.clone();
        if again.session_expiry_interval.unwrap_or(0) > 0 {
            again.clean_start = false;
        }
        let publish_timeout = options.connect_timeout.max(Duration::from_secs(1)) * 4;
        tokio::spawn(keep_connected(
            client, again, backoff, current_tx, events_tx, stop_rx,
        ));
        let shared = Arc::new(Shared {
            current,
            events: Mutex::new(events),
            stop,
            publish_timeout,
        });
        Ok((ReconnectingClient { shared }, connack))
    }

    /// The next event; `None` after [`ReconnectingClient::disconnect`] or
    /// [`ReconnectEvent::GaveUp`].
    pub async fn recv(&self) -> Option<ReconnectEvent> {
        self.shared.events.lock().await.recv().await
    }

    /// The current connection, if connected.
    pub fn client(&self) -> Option<Client> {
        self.shared.current.borrow().clone()
    }

    /// Waits for a connection (up to four connect timeouts).
    pub async fn connected(&self) -> Result<Client, ClientError> {
        let mut current = self.shared.current.clone();
        let wait = async {
            current
                .wait_for(Option::is_some)
                .await
                .map(|client| client.clone())
        };
        match tokio::time::timeout(self.shared.publish_timeout, wait).await {
            Ok(Ok(client)) => client.ok_or(ClientError::Closed(None)),
            Ok(Err(_)) => Err(ClientError::Closed(Some("the client stopped".into()))),
            Err(_) => Err(ClientError::Timeout("reconnection")),
        }
    }

    /// Publishes on the current connection; when the connection is lost
    /// before the acknowledgement, publishes again on the next one (at
    /// least once: the broker may get it twice). Gives up after four
    /// connect timeouts without a connection.
    pub async fn publish(
        &self,
        topic: &str,
        payload: impl Into<Bytes>,
        qos: QoS,
        retain: bool,
    ) -> Result<ReasonCode, ClientError> {
        let payload: Bytes = payload.into();
        let deadline = Instant::now() + self.shared.publish_timeout;
        loop {
            let client = self.connected().await?;
            match client.publish(topic, payload.clone(), qos, retain).await {
                Ok(code) => return Ok(code),
                Err(e) if e.is_connection_loss() && Instant::now() < deadline => {
                    // The background task notices the loss and reconnects.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Stops reconnecting and disconnects normally.
    pub async fn disconnect(&self) -> Result<(), ClientError> {
        let _ = self.shared.stop.send(true);
        match self.client() {
            Some(client) => client.disconnect(ReasonCode::NORMAL_DISCONNECTION).await,
            None => Ok(()),
        }
    }
}

/// Whether a refused CONNECT is final (retrying cannot help).
fn is_final(e: &ClientError) -> bool {
    match e {
        ClientError::Refused(connack) => matches!(
            connack.reason_code.0,
            0x84 | 0x85 | 0x86 | 0x87 | 0x8A | 0x8C | 0x90 | 0x9A | 0x01..=0x05
        ),
        ClientError::InvalidArgument(_) | ClientError::Tls(_) => true,
        _ => false,
    }
}

async fn keep_connected(
    mut client: Client,
    options: ClientOptions,
    backoff: Backoff,
    current: watch::Sender<Option<Client>>,
    events: mpsc::UnboundedSender<ReconnectEvent>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        // Forward the connection's events until it ends.
        let why = loop {
            tokio::select! {
                event = client.recv() => match event {
                    Some(Event::Closed(why)) => break why.unwrap_or_else(|| "closed".into()),
                    None => break "closed".to_string(),
                    Some(event) => {
                        let _ = events.send(ReconnectEvent::Event(Box::new(event)));
                    }
                },
                _ = stop.wait_for(|s| *s) => return,
            }
        };
        if *stop.borrow() {
            return;
        }
        let _ = current.send(None);
        let _ = events.send(ReconnectEvent::Lost(why));
        // The node may be gone: offer a ticket any node opens.
        options.resumption.set_failover(true);
        let lost_at = Instant::now();
        let mut attempt = 0u32;
        client = loop {
            let wait = backoff.delay(attempt, rand::random::<f64>());
            attempt += 1;
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = stop.wait_for(|s| *s) => return,
            }
            match Client::connect(options.clone()).await {
                Ok((client, connack)) => {
                    options.resumption.set_failover(false);
                    let _ = current.send(Some(client.clone()));
                    let _ = events.send(ReconnectEvent::Reconnected {
                        connack: Box::new(connack),
                        attempts: attempt,
                        down: lost_at.elapsed(),
                    });
                    break client;
                }
                Err(e) if is_final(&e) => {
                    let _ = events.send(ReconnectEvent::GaveUp(e));
                    return;
                }
                Err(e) => tracing::debug!(attempt, "reconnect failed: {e}"),
            }
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_up_to_the_cap_and_jitter_only_shortens() {
        let b = Backoff::default();
        let mut last = Duration::ZERO;
        for attempt in 0..10 {
            let d = b.delay(attempt, 0.0);
            assert!(d >= last && d <= b.max, "{attempt}: {d:?}");
            last = d;
            let shortest = b.delay(attempt, 0.999_999);
            assert!(shortest >= d.mul_f64(0.5) - Duration::from_millis(1));
            assert!(shortest <= d);
        }
        assert_eq!(b.delay(u32::MAX, 0.0), b.max);
        let none = Backoff {
            jitter: 0.0,
            ..Backoff::default()
        };
        assert_eq!(none.delay(2, 0.7), Duration::from_millis(400));
    }

    #[test]
    fn refusals_that_retrying_cannot_fix_stop_it() {
        let refused = |code: u8| {
            ClientError::Refused(Box::new(ConnAck {
                session_present: false,
                reason_code: ReasonCode(code),
                properties: Default::default(),
            }))
        };
        assert!(is_final(&refused(0x86)), "bad user name or password");
        assert!(is_final(&refused(0x87)), "not authorized");
        assert!(!is_final(&refused(0x88)), "server unavailable: try again");
        assert!(!is_final(&refused(0x89)), "server busy");
        assert!(!is_final(&ClientError::Closed(None)));
        assert!(ClientError::Closed(None).is_connection_loss());
        assert!(!refused(0x87).is_connection_loss());
    }
}
