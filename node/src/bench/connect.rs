//! Connecting and disconnecting the clients of a run.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::client::{Client, ClientError, ClientOptions, ReasonCode};

use super::plan::client_id;
use super::progress::{Counters, ProgressMode};

/// Handshakes in progress at once while a run connects its clients.
const MAX_CONNECTING: usize = 64;
/// Concurrent DISCONNECTs at the end of a run.
const MAX_DISCONNECTING: usize = 1000;
/// Limit on one DISCONNECT (it lingers up to ~0.6 s for the server).
const DISCONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Errors of a run: how many, and the first one's text.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct ErrorTally {
    pub(crate) count: u64,
    pub(crate) first: Option<String>,
}

impl ErrorTally {
    /// Counts one error.
    pub(crate) fn add(&mut self, error: impl ToString) {
        self.count += 1;
        if self.first.is_none() {
            self.first = Some(error.to_string());
        }
    }

    /// Counts `count` errors described by `error`.
    pub(crate) fn add_many(&mut self, count: u64, error: impl ToString) {
        if count > 0 {
            self.count += count - 1;
            self.add(error);
        }
    }

    /// Adds another tally (its first error comes after ours).
    pub(crate) fn merge(&mut self, other: ErrorTally) {
        self.count += other.count;
        if self.first.is_none() {
            self.first = other.first;
        }
    }
}

/// The identifier prefix of a run: the configured client identifier, or
/// `qb-MODE-RANDOM` (short enough for MQTT 3.1.1 servers that insist on
/// 23 characters with the index appended).
pub(crate) fn id_prefix(opts: &ClientOptions, mode: &str) -> String {
    if opts.client_id.is_empty() {
        format!("qb-{mode}-{:06x}", rand::random::<u32>() & 0xff_ffff)
    } else {
        opts.client_id.clone()
    }
}

/// Connects one client, timing it.
pub(crate) async fn connect_timed(opts: ClientOptions) -> (Result<Client, ClientError>, Duration) {
    let begun = Instant::now();
    let result = Client::connect(opts).await.map(|(client, _connack)| client);
    (result, begun.elapsed())
}

/// Connects `count` clients (identifiers `PREFIX-0`, `PREFIX-1`, ...) a
/// few at a time; returns those that connected, in index order, and the
/// failures.
pub(crate) async fn connect_all(
    template: &ClientOptions,
    prefix: &str,
    count: usize,
    progress: ProgressMode,
    label: &str,
) -> (Vec<(usize, Client)>, ErrorTally) {
    let counters = Arc::new(Counters::default());
    let _bar = progress.start(label, Some(count as u64), counters.clone());
    let gate = Arc::new(Semaphore::new(MAX_CONNECTING));
    let mut tasks = JoinSet::new();
    for index in 0..count {
        let mut opts = template.clone();
        opts.client_id = client_id(prefix, index);
        let gate = gate.clone();
        let counters = counters.clone();
        tasks.spawn(async move {
            let _permit = gate.acquire_owned().await;
            let (result, _) = connect_timed(opts).await;
            match &result {
                Ok(_) => counters.success(),
                Err(_) => counters.error(),
            }
            (index, result)
        });
    }
    let mut clients = Vec::with_capacity(count);
    let mut errors = ErrorTally::default();
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok((index, Ok(client))) => clients.push((index, client)),
            Ok((index, Err(e))) => errors.add(format!("client {index}: {e}")),
            Err(e) => errors.add(format!("connect task failed: {e}")),
        }
    }
    clients.sort_by_key(|(index, _)| *index);
    (clients, errors)
}

/// Sends DISCONNECT on every client (many at a time, each bounded in
/// time) and drops them.
pub(crate) async fn disconnect_all(clients: impl IntoIterator<Item = Client>) {
    let gate = Arc::new(Semaphore::new(MAX_DISCONNECTING));
    let mut tasks = JoinSet::new();
    for client in clients {
        let gate = gate.clone();
        tasks.spawn(async move {
            let _permit = gate.acquire_owned().await;
            if client.is_closed() {
                return;
            }
            match tokio::time::timeout(
                DISCONNECT_TIMEOUT,
                client.disconnect(ReasonCode::NORMAL_DISCONNECTION),
            )
            .await
            {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::debug!(error = %e, "disconnect failed"),
                Err(_) => tracing::debug!("disconnect timed out"),
            }
        });
    }
    while tasks.join_next().await.is_some() {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::Transport;

    #[test]
    fn tally_keeps_the_first_error() {
        let mut tally = ErrorTally::default();
        tally.add_many(0, "nothing");
        assert_eq!(tally, ErrorTally::default());
        tally.add("one");
        tally.add_many(3, "three");
        let mut other = ErrorTally::default();
        other.add("later");
        tally.merge(other);
        assert_eq!(tally.count, 5);
        assert_eq!(tally.first.as_deref(), Some("one"));
    }

    #[test]
    fn prefix_is_the_client_id_or_short_and_random() {
        let mut opts = ClientOptions::new("h", 1, Transport::Tcp);
        let prefix = id_prefix(&opts, "pub");
        assert!(prefix.starts_with("qb-pub-"));
        assert!(prefix.len() + "-99999".len() <= 23, "{prefix}");
        opts.client_id = "mine".into();
        assert_eq!(id_prefix(&opts, "pub"), "mine");
    }
}
