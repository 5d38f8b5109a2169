//! Keeps the broker's retained messages equal to the cluster's: loads them
//! all at start, then applies each committed change; the leader also
//! deletes expired ones through Raft.

use std::sync::Arc;
use std::time::Duration;

use quicmq_raft::command::{Command, RetainOp};
use quicmq_raft::state::StateChange;
use quicmq_raft::ClusterNode;
use tokio::sync::broadcast;

use super::link::retained_message;
use crate::broker::{now_ms, Broker};

/// How often the leader looks for expired retained messages.
const EXPIRY_SWEEP: Duration = Duration::from_secs(5);

/// Loads every retained message of the cluster into `broker`, then follows
/// the changes until the broker's shutdown.
pub fn spawn(broker: Arc<Broker>, node: ClusterNode) -> tokio::task::JoinHandle<()> {
    let changes = node.shared().subscribe();
    load_all(&broker, &node);
    tokio::spawn(follow(broker, node, changes))
}

fn load_all(broker: &Broker, node: &ClusterNode) {
    let messages = node.shared().read(|s| {
        s.retained()
            .iter()
            .filter_map(|(topic, record)| retained_message(topic, record))
            .collect()
    });
    broker.replace_retained(messages);
}

async fn follow(
    broker: Arc<Broker>,
    node: ClusterNode,
    mut changes: broadcast::Receiver<quicmq_raft::store::ChangeBatch>,
) {
    let mut sweep = tokio::time::interval(EXPIRY_SWEEP);
    let mut shutdown = broker.shutdown_signal();
    loop {
        tokio::select! {
            batch = changes.recv() => match batch {
                Ok(batch) => {
                    for change in batch.changes.iter() {
                        match change {
                            StateChange::Retained(topic) => {
                                let message = node.shared().read(|s| {
                                    s.retained().get(topic).and_then(|r| retained_message(topic, r))
                                });
                                broker.mirror_retained(topic, message);
                            }
                            StateChange::Replaced => load_all(&broker, &node),
                            _ => {}
                        }
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => load_all(&broker, &node),
                Err(broadcast::error::RecvError::Closed) => return,
            },
            _ = sweep.tick() => {
                if node.is_leader() {
                    delete_expired(&node).await;
                }
            }
            _ = crate::broker::shutdown_started(&mut shutdown) => return,
        }
    }
}

/// Commits the deletion of every expired retained message.
async fn delete_expired(node: &ClusterNode) {
    let now = now_ms();
    let expired: Vec<RetainOp> = node.shared().read(|s| {
        s.retained()
            .iter()
            .filter(|(_, r)| r.expires_at_ms.is_some_and(|at| at <= now))
            .map(|(topic, _)| RetainOp::Delete {
                topic: topic.clone(),
            })
            .collect()
    });
    if expired.is_empty() {
        return;
    }
    if let Err(e) = node.propose(Command::Retain(expired)).await {
        tracing::warn!("expired retained messages not deleted yet: {e}");
    }
}
