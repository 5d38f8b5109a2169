//! Wills held by the cluster: a client's will is committed when it
//! connects, released when its connection ends without a normal
//! DISCONNECT (or its node goes down, or restarts after a crash), and
//! published by the Raft leader when due — once, because the publisher
//! removes it through Raft first and publishes only if its removal
//! applied.
//!
//! - [`will_record`] / [`last_will`]: a will as the cluster stores it and
//!   back.
//! - [`WillChanges`]: this node's releases and removals, committed in
//!   order (many per log entry), retried while the cluster has no leader.
//! - [`publish_due`]: the leader's task that publishes due wills.

use std::sync::Weak;
use std::time::Duration;

use quicmq_proto::mqtt::{LastWill, QoS};
use quicmq_raft::command::{Command, CommandResponse, HeldWill, WillKey, WillOp, WillRecord};
use quicmq_raft::state::StateChange;
use tokio::sync::{broadcast, mpsc, oneshot};

use super::link::{properties_block, properties_of_block, ClusterLink};
use crate::broker::now_ms;

/// Most operations in one log entry.
const MAX_BATCH: usize = 256;
/// How long a release or removal is retried while nothing commits (the
/// cluster has no leader): after that, the leader publishes the wills of
/// this node's clients only if it marks this node down.
const RETRY_FOR: Duration = Duration::from_secs(60);
/// How often the leader looks for due wills when nothing wakes it.
const PUBLISH_TICK: Duration = Duration::from_secs(1);

/// The cluster's record of `will`.
pub fn will_record(will: &LastWill) -> WillRecord {
    WillRecord {
        topic: will.topic.clone(),
        payload: will.payload.clone(),
        qos: will.qos as u8,
        retain: will.retain,
        properties: properties_block(&will.properties),
    }
}

/// The will of a record (`None` if it does not decode, which a record
/// written by [`will_record`] always does).
pub fn last_will(record: &WillRecord) -> Option<LastWill> {
    let properties = properties_of_block(&record.properties)?;
    Some(LastWill {
        topic: record.topic.clone(),
        payload: record.payload.clone(),
        qos: QoS::from_u8(record.qos)?,
        retain: record.retain,
        properties,
    })
}

/// The cluster's record of a connection's will (not released yet).
pub fn held_will(will: &LastWill, run: u64, session_expiry_s: u32) -> HeldWill {
    HeldWill {
        run,
        will: will_record(will),
        delay_s: will.properties.will_delay_interval.unwrap_or(0),
        session_expiry_s,
        due_at_ms: None,
    }
}

/// One change to this node's wills, in the order the node made them.
enum WillChange {
    Op(WillOp),
    /// Answered once everything sent before is committed (or given up).
    Flush(oneshot::Sender<()>),
}

/// Commits this node's will releases and removals in order.
#[derive(Clone)]
pub(crate) struct WillChanges {
    tx: mpsc::UnboundedSender<WillChange>,
}

/// The queue [`commit`] serves.
pub(crate) struct WillChangeQueue(mpsc::UnboundedReceiver<WillChange>);

impl WillChanges {
    /// The sender and the queue its task ([`commit`]) serves.
    pub(crate) fn new() -> (WillChanges, WillChangeQueue) {
        let (tx, rx) = mpsc::unbounded_channel();
        (WillChanges { tx }, WillChangeQueue(rx))
    }

    /// The connection of `key` ended abnormally: its will is due at
    /// `due_at_ms` unless its client comes back first.
    pub(crate) fn release(&self, key: WillKey, due_at_ms: u64) {
        let _ = self
            .tx
            .send(WillChange::Op(WillOp::Release { key, due_at_ms }));
    }

    /// The connection of `key` ended normally (or was taken over within
    /// the delay, or its node is shutting down): no will.
    pub(crate) fn remove(&self, key: WillKey) {
        let _ = self.tx.send(WillChange::Op(WillOp::Remove { key }));
    }

    /// Waits until what was sent before is committed, at most `timeout`.
    pub(crate) async fn flush(&self, timeout: Duration) {
        let (done, flushed) = oneshot::channel();
        if self.tx.send(WillChange::Flush(done)).is_ok() {
            let _ = tokio::time::timeout(timeout, flushed).await;
        }
    }
}

/// Commits the changes of `queue` through `link`'s Raft node, until the
/// link is gone (held only while a batch is proposed, so that a node that
/// shuts down lets go of its Raft store).
pub(crate) async fn commit(link: Weak<ClusterLink>, queue: WillChangeQueue) {
    let mut rx = queue.0;
    while let Some(first) = rx.recv().await {
        let mut ops = Vec::new();
        let mut flushed = Vec::new();
        let mut next = Some(first);
        while let Some(change) = next.take() {
            match change {
                WillChange::Op(op) => ops.push(op),
                WillChange::Flush(done) => flushed.push(done),
            }
            if ops.len() < MAX_BATCH {
                next = rx.try_recv().ok();
            }
        }
        if !ops.is_empty() {
            let Some(node) = link.upgrade().map(|l| l.cluster().clone()) else {
                return;
            };
            let started = tokio::time::Instant::now();
            let mut backoff = Duration::from_millis(100);
            let command = Command::Wills(ops);
            loop {
                match node.propose(command.clone()).await {
                    Ok(_) => break,
                    Err(e) if started.elapsed() < RETRY_FOR => {
                        tracing::debug!("will changes not committed yet (retrying): {e}");
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(2));
                    }
                    Err(e) => {
                        tracing::warn!("will changes not committed: {e}");
                        break;
                    }
                }
            }
        }
        for done in flushed {
            let _ = done.send(());
        }
    }
}

/// While this node leads the cluster, publishes the released wills that
/// are due: each is removed through Raft first and published only if the
/// removal applied. Wakes when wills are released and at each one's time.
pub(crate) async fn publish_due(
    link: Weak<ClusterLink>,
    mut changes: broadcast::Receiver<quicmq_raft::store::ChangeBatch>,
) {
    // A deadline, not a duration: other state changes wake the loop all
    // the time and must not push the next look further away.
    let mut next_look = tokio::time::Instant::now() + PUBLISH_TICK;
    loop {
        tokio::select! {
            batch = changes.recv() => match batch {
                Ok(batch) => {
                    let wake = batch.changes.iter().any(|c| {
                        matches!(c, StateChange::WillsReleased | StateChange::Member(_) | StateChange::Replaced)
                    });
                    if !wake {
                        continue;
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => return,
            },
            () = tokio::time::sleep_until(next_look) => {}
        }
        let Some(link) = link.upgrade() else { return };
        next_look = tokio::time::Instant::now() + PUBLISH_TICK;
        if !link.cluster().is_leader() {
            continue;
        }
        let now = now_ms();
        let (due, next_due): (Vec<(WillKey, WillRecord)>, Option<u64>) =
            link.cluster().shared().read(|s| {
                let due = s
                    .wills()
                    .due(now)
                    .take(MAX_BATCH)
                    .map(|(key, will)| (key.clone(), will.will.clone()))
                    .collect();
                (due, s.wills().next_due())
            });
        if let Some(next) = next_due {
            let wait = Duration::from_millis(next.saturating_sub(now)).min(PUBLISH_TICK);
            next_look = tokio::time::Instant::now() + wait;
        }
        if due.is_empty() {
            continue;
        }
        let ops = due
            .iter()
            .map(|(key, _)| WillOp::Remove { key: key.clone() })
            .collect();
        let answers = match link.cluster().propose(Command::Wills(ops)).await {
            Ok(CommandResponse::Batch(answers)) => answers,
            Ok(other) => {
                tracing::warn!("unexpected answer to will removals: {other:?}");
                continue;
            }
            Err(e) => {
                tracing::debug!("due wills not taken (retrying): {e}");
                continue;
            }
        };
        // More may be due: look again at once.
        next_look = tokio::time::Instant::now();
        let Some(broker) = link.broker() else {
            continue;
        };
        for ((key, record), answer) in due.into_iter().zip(answers) {
            if answer != CommandResponse::Applied(true) {
                continue;
            }
            match last_will(&record) {
                Some(will) => {
                    tracing::info!(client_id = %key.client_id, from = key.node_id, "publishing the will of a client whose connection is gone");
                    broker.publish_will(&key.client_id, will);
                }
                None => {
                    tracing::warn!(client_id = %key.client_id, "a will record that does not decode was dropped");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use quicmq_proto::mqtt::Properties;

    #[test]
    fn will_records_round_trip() {
        let will = LastWill {
            topic: "dev/1/status".into(),
            payload: Bytes::from_static(b"offline"),
            qos: QoS::AtLeastOnce,
            retain: true,
            properties: Properties {
                will_delay_interval: Some(30),
                content_type: Some("text/plain".into()),
                ..Properties::default()
            },
        };
        assert_eq!(last_will(&will_record(&will)), Some(will.clone()));
        let held = held_will(&will, 7, 3600);
        assert_eq!(held.delay_s, 30);
        assert_eq!(held.session_expiry_s, 3600);
        assert_eq!(held.due_at_ms, None);
        let mut bad = will_record(&will);
        bad.qos = 3;
        assert_eq!(last_will(&bad), None);
    }
}
