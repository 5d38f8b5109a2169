//! `quicmq bench pub`: N publishers, each sending timestamped messages at
//! a rate (or as fast as its in-flight window allows) until a count or a
//! time limit.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::client::{Client, ClientError, ClientOptions, QoS, ReasonCode};

use super::connect::{connect_all, disconnect_all, id_prefix, ErrorTally};
use super::error::BenchError;
use super::payload::{unix_nanos, PayloadHeader, HEADER_LEN};
use super::plan::{expand_sequence, expand_template, Bound, Pacer};
use super::progress::{Counters, ProgressMode};
use super::stats::{LatencyHistogram, Mode, Summary};

/// Publishes in flight per publisher at QoS 0 when not configured.
pub const QOS0_WINDOW: usize = 64;
/// Cap on the default QoS 1/2 window (the server's Receive Maximum).
pub const MAX_WINDOW: usize = 4096;

/// What `quicmq bench pub` does.
#[derive(Debug, Clone)]
pub struct PubSettings {
    /// Connection options shared by every publisher; a non-empty client
    /// identifier is the prefix of theirs (`ID-0`, `ID-1`, ...).
    pub options: ClientOptions,
    /// Publishers.
    pub clients: usize,
    /// Topic; `%i` is replaced by the publisher's index, `%n` by the
    /// message's number (from 0, per publisher).
    pub topic: String,
    /// QoS of every message.
    pub qos: QoS,
    /// Whether every message is retained.
    pub retain: bool,
    /// Payload bytes, at least [`HEADER_LEN`].
    pub payload_size: usize,
    /// Messages per second per publisher; 0 = as fast as the window
    /// allows.
    pub rate: f64,
    /// Messages per publisher and time limit of the sending phase.
    pub bound: Bound,
    /// Publishes in flight per publisher; `None` = the server's Receive
    /// Maximum (capped at [`MAX_WINDOW`]) for QoS 1/2, [`QOS0_WINDOW`]
    /// for QoS 0.
    pub inflight: Option<usize>,
    /// How long to wait for outstanding acknowledgements after sending
    /// stopped; those still missing then count as errors.
    pub drain_timeout: Duration,
}

/// The in-flight window of a publisher: the configured one, else the
/// server's Receive Maximum for QoS 1/2 (65535 when absent, capped at
/// [`MAX_WINDOW`]) or [`QOS0_WINDOW`]; at least 1.
///
/// ```
/// use quicmq_node::bench::window;
/// use quicmq_node::client::QoS;
/// assert_eq!(window(None, QoS::AtLeastOnce, Some(1024)), 1024);
/// assert_eq!(window(None, QoS::ExactlyOnce, None), 4096);
/// assert_eq!(window(None, QoS::AtMostOnce, Some(10)), 64);
/// assert_eq!(window(Some(0), QoS::AtLeastOnce, Some(10)), 1);
/// ```
pub fn window(configured: Option<usize>, qos: QoS, server_receive_maximum: Option<u16>) -> usize {
    let default = match qos {
        QoS::AtMostOnce => QOS0_WINDOW,
        QoS::AtLeastOnce | QoS::ExactlyOnce => server_receive_maximum
            .map_or(MAX_WINDOW, usize::from)
            .min(MAX_WINDOW),
    };
    configured.unwrap_or(default).max(1)
}

/// Connected publishers, ready to [`run`](Self::run).
pub struct PubBench {
    settings: PubSettings,
    clients: Vec<(usize, Client)>,
    errors: ErrorTally,
    progress: ProgressMode,
}

impl PubBench {
    /// Checks the settings and connects the publishers. Fails only when
    /// the settings are invalid or no publisher could connect.
    pub async fn connect(
        settings: PubSettings,
        progress: ProgressMode,
    ) -> Result<PubBench, BenchError> {
        if settings.payload_size < HEADER_LEN {
            return Err(BenchError::PayloadTooSmall {
                size: settings.payload_size,
            });
        }
        if settings.clients == 0 {
            return Err(BenchError::InvalidSetting("no publishers".into()));
        }
        if settings.rate.is_nan() || settings.rate < 0.0 {
            return Err(BenchError::InvalidSetting(format!(
                "rate {} is negative",
                settings.rate
            )));
        }
        let prefix = id_prefix(&settings.options, "pub");
        let (clients, errors) = connect_all(
            &settings.options,
            &prefix,
            settings.clients,
            progress,
            "connecting",
        )
        .await;
        if clients.is_empty() {
            return Err(BenchError::NoClient(errors.first));
        }
        Ok(PubBench {
            settings,
            clients,
            errors,
            progress,
        })
    }

    /// Publishers connected.
    pub fn connected(&self) -> usize {
        self.clients.len()
    }

    /// Publishes until the bound, waits for outstanding acknowledgements,
    /// disconnects and summarises.
    pub async fn run(self) -> Summary {
        let PubBench {
            settings,
            clients,
            mut errors,
            progress,
        } = self;
        let counters = Arc::new(Counters::default());
        let total = settings
            .bound
            .count
            .map(|count| count.saturating_mul(clients.len() as u64));
        let bar = progress.start("publishing", total, counters.clone());
        let settings = Arc::new(settings);
        let start = Instant::now();
        let mut tasks = JoinSet::new();
        for (index, client) in &clients {
            tasks.spawn(publish_loop(
                client.clone(),
                *index,
                settings.clone(),
                start,
                counters.clone(),
            ));
        }
        let mut latency = LatencyHistogram::new();
        let mut completed = 0;
        let mut last = start;
        while let Some(joined) = tasks.join_next().await {
            match joined {
                Ok(outcome) => {
                    completed += outcome.completed;
                    latency.merge(&outcome.latency);
                    last = last.max(outcome.last_completion);
                    errors.merge(outcome.errors);
                }
                Err(e) => errors.add(format!("publisher task failed: {e}")),
            }
        }
        drop(bar);
        let connected = clients.len() as u64;
        disconnect_all(clients.into_iter().map(|(_, client)| client)).await;
        Summary {
            mode: Mode::Pub,
            transport: settings.options.transport,
            clients: settings.clients as u64,
            connected,
            qos: Some(settings.qos),
            payload_size: Some(settings.payload_size),
            messages: completed,
            expected: None,
            errors: errors.count,
            first_error: errors.first,
            stop: None,
            held: None,
            elapsed: last.duration_since(start),
            latency: latency.summary(),
        }
    }
}

/// What one publisher did.
struct PublisherOutcome {
    completed: u64,
    latency: LatencyHistogram,
    last_completion: Instant,
    errors: ErrorTally,
}

/// One finished publish.
struct Completion {
    result: Result<ReasonCode, ClientError>,
    latency: Duration,
    at: Instant,
}

impl PublisherOutcome {
    fn absorb(
        &mut self,
        joined: Result<Completion, tokio::task::JoinError>,
        qos: QoS,
        counters: &Counters,
    ) {
        match joined {
            Ok(Completion {
                result: Ok(reason),
                latency,
                at,
            }) if !reason.is_error() => {
                self.completed += 1;
                counters.success();
                if qos != QoS::AtMostOnce {
                    self.latency.record(latency);
                }
                self.last_completion = self.last_completion.max(at);
            }
            Ok(Completion {
                result: Ok(reason), ..
            }) => {
                counters.error();
                self.errors
                    .add(format!("the broker refused a message: {reason}"));
            }
            Ok(Completion { result: Err(e), .. }) => {
                counters.error();
                self.errors.add(format!("publish failed: {e}"));
            }
            Err(e) => {
                counters.error();
                self.errors.add(format!("publish task failed: {e}"));
            }
        }
    }
}

/// Sends the messages of publisher `index`, keeping up to its window in
/// flight, then waits for what is outstanding.
async fn publish_loop(
    client: Client,
    index: usize,
    settings: Arc<PubSettings>,
    start: Instant,
    counters: Arc<Counters>,
) -> PublisherOutcome {
    let qos = settings.qos;
    let bound = settings.bound;
    let pacer = Pacer::new(settings.rate);
    let deadline = tokio::time::Instant::from_std(start + bound.duration);
    let size = window(
        settings.inflight,
        qos,
        client.connack().properties.receive_maximum,
    );
    let gate = Arc::new(Semaphore::new(size));
    let topic: Arc<str> = expand_template(&settings.topic, index).into();
    let topic_per_message = topic.contains("%n");
    let retain = settings.retain;
    let publisher = u32::try_from(index).unwrap_or(u32::MAX);
    let mut outcome = PublisherOutcome {
        completed: 0,
        latency: LatencyHistogram::new(),
        last_completion: start,
        errors: ErrorTally::default(),
    };
    let mut tasks: JoinSet<Completion> = JoinSet::new();
    let mut sent: u64 = 0;
    loop {
        if !bound.may_send(sent, start.elapsed()) {
            break;
        }
        if client.is_closed() {
            outcome.errors.add("the connection closed while publishing");
            counters.error();
            break;
        }
        if pacer.is_paced() {
            let due = pacer.due(sent);
            if !bound.due_in_time(due) {
                break;
            }
            tokio::time::sleep_until(tokio::time::Instant::from_std(start + due)).await;
        }
        let permit = tokio::select! {
            permit = gate.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
            _ = tokio::time::sleep_until(deadline) => break,
        };
        while let Some(joined) = tasks.try_join_next() {
            outcome.absorb(joined, qos, &counters);
        }
        let header = PayloadHeader {
            sent_unix_ns: unix_nanos(SystemTime::now()),
            publisher,
            sequence: u32::try_from(sent).unwrap_or(u32::MAX),
        };
        let payload = match header.encode(settings.payload_size) {
            Ok(payload) => payload,
            Err(e) => {
                outcome.errors.add(e);
                break;
            }
        };
        let client = client.clone();
        let topic: Arc<str> = if topic_per_message {
            expand_sequence(&topic, sent).into()
        } else {
            topic.clone()
        };
        tasks.spawn(async move {
            let begun = Instant::now();
            let result = client.publish(&topic, payload, qos, retain).await;
            let at = Instant::now();
            drop(permit);
            Completion {
                result,
                latency: at.duration_since(begun),
                at,
            }
        });
        sent += 1;
    }
    let drain_deadline = tokio::time::Instant::now() + settings.drain_timeout;
    loop {
        match tokio::time::timeout_at(drain_deadline, tasks.join_next()).await {
            Ok(Some(joined)) => outcome.absorb(joined, qos, &counters),
            Ok(None) => break,
            Err(_) => {
                let left = tasks.len() as u64;
                tasks.abort_all();
                outcome.errors.add_many(
                    left,
                    format!(
                        "{left} publishes not completed {:?} after sending stopped",
                        settings.drain_timeout
                    ),
                );
                break;
            }
        }
    }
    outcome
}
