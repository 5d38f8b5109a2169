//! `quicmq bench sub`: M subscribers counting messages and measuring the
//! end-to-end latency from the send time in each payload.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::client::{Client, ClientOptions, Event, Properties, QoS, SubscriptionOptions};

use super::connect::{connect_all, disconnect_all, id_prefix, ErrorTally};
use super::error::BenchError;
use super::payload::{unix_nanos, PayloadHeader};
use super::plan::{expand_template, shared_filter, SubProgress, SubStopRule};
use super::progress::{Counters, ProgressMode};
use super::stats::{LatencyHistogram, Mode, Summary};

/// How often the stop rule is checked.
const CHECK: Duration = Duration::from_millis(50);

/// What `quicmq bench sub` does.
#[derive(Debug, Clone)]
pub struct SubSettings {
    /// Connection options shared by every subscriber; a non-empty client
    /// identifier is the prefix of theirs (`ID-0`, `ID-1`, ...).
    pub options: ClientOptions,
    /// Subscribers.
    pub clients: usize,
    /// Topic filter; `%i` is replaced by the subscriber's index.
    pub filter: String,
    /// Maximum QoS of the subscription.
    pub qos: QoS,
    /// Share group: subscribe to `$share/GROUP/FILTER`.
    pub share: Option<String>,
    /// Messages each subscriber expects; the run ends when all have them.
    pub count: Option<u64>,
    /// The run ends after this long without a message (once one arrived).
    pub idle: Duration,
    /// Hard time limit of the run.
    pub deadline: Duration,
}

/// Connected and subscribed subscribers, ready to [`run`](Self::run).
pub struct SubBench {
    settings: SubSettings,
    clients: Vec<(usize, Client)>,
    errors: ErrorTally,
    progress: ProgressMode,
}

impl SubBench {
    /// Connects and subscribes every subscriber. Fails only when no
    /// subscriber could connect and subscribe.
    pub async fn connect(
        settings: SubSettings,
        progress: ProgressMode,
    ) -> Result<SubBench, BenchError> {
        if settings.clients == 0 {
            return Err(BenchError::InvalidSetting("no subscribers".into()));
        }
        let prefix = id_prefix(&settings.options, "sub");
        let (connected, mut errors) = connect_all(
            &settings.options,
            &prefix,
            settings.clients,
            progress,
            "connecting",
        )
        .await;
        let mut tasks = JoinSet::new();
        for (index, client) in connected {
            let filter = shared_filter(
                &expand_template(&settings.filter, index),
                settings.share.as_deref(),
            );
            let options = SubscriptionOptions::new(settings.qos);
            tasks.spawn(async move {
                let result = client
                    .subscribe(vec![(filter.clone(), options)], Properties::default())
                    .await;
                (index, client, filter, result)
            });
        }
        let mut clients = Vec::new();
        let mut refused = None;
        while let Some(joined) = tasks.join_next().await {
            match joined {
                Ok((index, client, filter, Ok(suback))) => {
                    match suback.reason_codes.iter().find(|code| code.is_error()) {
                        Some(&reason) => {
                            errors.add(format!("subscription to {filter} refused: {reason}"));
                            refused
                                .get_or_insert(BenchError::SubscriptionRefused { filter, reason });
                        }
                        None => clients.push((index, client)),
                    }
                }
                Ok((index, _, _, Err(e))) => errors.add(format!("client {index}: {e}")),
                Err(e) => errors.add(format!("subscribe task failed: {e}")),
            }
        }
        if clients.is_empty() {
            return Err(refused.unwrap_or(BenchError::NoClient(errors.first)));
        }
        clients.sort_by_key(|(index, _)| *index);
        Ok(SubBench {
            settings,
            clients,
            errors,
            progress,
        })
    }

    /// Subscribers ready.
    pub fn ready(&self) -> usize {
        self.clients.len()
    }

    /// Receives until the stop rule says so, disconnects and summarises.
    pub async fn run(self) -> Summary {
        let SubBench {
            settings,
            clients,
            mut errors,
            progress,
        } = self;
        let counters = Arc::new(Counters::default());
        let expected = settings
            .count
            .map(|count| count.saturating_mul(clients.len() as u64));
        let bar = progress.start("receiving", expected, counters.clone());
        let shared = Arc::new(Shared::new());
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut tasks = JoinSet::new();
        for (_, client) in &clients {
            tasks.spawn(receive_loop(
                client.clone(),
                settings.count,
                shared.clone(),
                counters.clone(),
                stop_rx.clone(),
            ));
        }
        let rule = SubStopRule {
            idle: settings.idle,
            deadline: settings.deadline,
        };
        let stop = loop {
            tokio::time::sleep(CHECK).await;
            let progress = SubProgress {
                elapsed: shared.base.elapsed(),
                clients: clients.len(),
                done: shared.done.load(Ordering::Relaxed),
                closed: shared.closed.load(Ordering::Relaxed),
                since_last_message: shared.since_last_message(),
            };
            if let Some(reason) = rule.decide(&progress) {
                break reason;
            }
        };
        let _ = stop_tx.send(true);
        let mut latency = LatencyHistogram::new();
        let mut received = 0;
        while let Some(joined) = tasks.join_next().await {
            match joined {
                Ok(outcome) => {
                    received += outcome.received;
                    latency.merge(&outcome.latency);
                    errors.merge(outcome.errors);
                }
                Err(e) => errors.add(format!("subscriber task failed: {e}")),
            }
        }
        drop(bar);
        let connected = clients.len() as u64;
        disconnect_all(clients.into_iter().map(|(_, client)| client)).await;
        Summary {
            mode: Mode::Sub,
            transport: settings.options.transport,
            clients: settings.clients as u64,
            connected,
            qos: Some(settings.qos),
            payload_size: None,
            messages: received,
            expected,
            errors: errors.count,
            first_error: errors.first,
            stop: Some(stop.name()),
            held: None,
            elapsed: shared.active(),
            latency: latency.summary(),
        }
    }
}

/// State the subscribers share with the stop rule.
struct Shared {
    base: Instant,
    /// Nanoseconds after `base` of the first message; `u64::MAX` = none.
    first: AtomicU64,
    /// Nanoseconds after `base` of the last message.
    last: AtomicU64,
    /// Subscribers that have their expected count.
    done: AtomicUsize,
    /// Subscribers whose connection closed.
    closed: AtomicUsize,
}

impl Shared {
    fn new() -> Shared {
        Shared {
            base: Instant::now(),
            first: AtomicU64::new(u64::MAX),
            last: AtomicU64::new(0),
            done: AtomicUsize::new(0),
            closed: AtomicUsize::new(0),
        }
    }

    fn now(&self) -> u64 {
        u64::try_from(self.base.elapsed().as_nanos()).unwrap_or(u64::MAX - 1)
    }

    fn message(&self) {
        let now = self.now();
        self.first.fetch_min(now, Ordering::Relaxed);
        self.last.fetch_max(now, Ordering::Relaxed);
    }

    fn since_last_message(&self) -> Option<Duration> {
        if self.first.load(Ordering::Relaxed) == u64::MAX {
            return None;
        }
        let last = self.last.load(Ordering::Relaxed);
        Some(Duration::from_nanos(self.now().saturating_sub(last)))
    }

    /// First to last message.
    fn active(&self) -> Duration {
        let first = self.first.load(Ordering::Relaxed);
        if first == u64::MAX {
            return Duration::ZERO;
        }
        Duration::from_nanos(self.last.load(Ordering::Relaxed).saturating_sub(first))
    }
}

/// What one subscriber received.
struct SubscriberOutcome {
    received: u64,
    latency: LatencyHistogram,
    errors: ErrorTally,
}

async fn receive_loop(
    client: Client,
    expected: Option<u64>,
    shared: Arc<Shared>,
    counters: Arc<Counters>,
    mut stop: watch::Receiver<bool>,
) -> SubscriberOutcome {
    let mut outcome = SubscriberOutcome {
        received: 0,
        latency: LatencyHistogram::new(),
        errors: ErrorTally::default(),
    };
    if expected == Some(0) {
        shared.done.fetch_add(1, Ordering::Relaxed);
    }
    loop {
        let event = tokio::select! {
            biased;
            _ = stop.wait_for(|stop| *stop) => break,
            event = client.recv() => event,
        };
        match event {
            Some(Event::Publish(message)) => {
                let now = unix_nanos(SystemTime::now());
                shared.message();
                counters.success();
                outcome.received += 1;
                if let Some(header) = PayloadHeader::decode(&message.payload) {
                    outcome.latency.record(header.latency(now));
                }
                if expected == Some(outcome.received) {
                    shared.done.fetch_add(1, Ordering::Relaxed);
                }
            }
            Some(Event::Disconnect(disconnect)) => {
                counters.error();
                outcome.errors.add(format!(
                    "the broker disconnected a subscriber: {}",
                    disconnect.reason_code
                ));
                shared.closed.fetch_add(1, Ordering::Relaxed);
                break;
            }
            Some(Event::Closed(reason)) => {
                counters.error();
                outcome.errors.add(format!(
                    "a subscriber's connection closed: {}",
                    reason.as_deref().unwrap_or("no reason")
                ));
                shared.closed.fetch_add(1, Ordering::Relaxed);
                break;
            }
            None => {
                shared.closed.fetch_add(1, Ordering::Relaxed);
                break;
            }
        }
    }
    outcome
}
