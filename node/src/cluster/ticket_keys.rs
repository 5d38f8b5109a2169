//! The cluster's TLS session-ticket keys on this node: the node's
//! [`TicketKeyRing`] follows the keys in `ClusterState`, and while this
//! node leads it adds the next key when one is due (first at once, then
//! one per ticket lifetime; see
//! [`quicmq_raft::state::next_ticket_key_due`]).

use std::sync::Arc;
use std::time::Duration;

use quicmq_raft::command::{Command, CommandResponse, TicketKeyRecord};
use quicmq_raft::state::{next_ticket_key_due, StateChange};
use quicmq_raft::ClusterNode;
use tokio::sync::broadcast::error::RecvError;

use crate::broker::now_ms;
use crate::tls::TicketKeyRing;

/// Longest sleep between two looks at the schedule.
const MAX_WAIT: Duration = Duration::from_secs(5);
/// Wait while a key is due but this node does not lead (or the proposal
/// failed).
const DUE_RETRY: Duration = Duration::from_millis(200);

/// Keeps `ring` in step with the cluster's ticket keys until the cluster
/// shuts down; on the leader, adds keys of `lifetime` on schedule.
pub async fn follow(cluster: ClusterNode, ring: Arc<TicketKeyRing>, lifetime: Duration) {
    let lifetime_ms = u64::try_from(lifetime.as_millis()).unwrap_or(u64::MAX);
    let mut changes = cluster.shared().subscribe();
    let load = |ring: &TicketKeyRing| cluster.shared().read(|s| ring.set(s.ticket_keys()));
    load(&ring);
    loop {
        let (due, next_id) = cluster.shared().read(|s| {
            let keys = s.ticket_keys();
            let next_id = keys.last().map_or(1, |k| k.id.wrapping_add(1).max(1));
            (next_ticket_key_due(keys, lifetime_ms), next_id)
        });
        let now = now_ms();
        let wait = if due > now {
            Duration::from_millis(due - now).min(MAX_WAIT)
        } else {
            if cluster.is_leader() {
                add_key(&cluster, next_id, lifetime_ms, now).await;
            }
            DUE_RETRY
        };
        tokio::select! {
            batch = changes.recv() => match batch {
                Ok(batch) => {
                    if batch
                        .changes
                        .iter()
                        .any(|c| matches!(c, StateChange::TicketKeys | StateChange::Replaced))
                    {
                        load(&ring);
                    }
                }
                Err(RecvError::Lagged(_)) => load(&ring),
                Err(RecvError::Closed) => return,
            },
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

async fn add_key(cluster: &ClusterNode, id: u32, lifetime_ms: u64, now_ms: u64) {
    let mut key = [0u8; 32];
    if aws_lc_rs::rand::fill(&mut key).is_err() {
        tracing::error!("no randomness for a TLS ticket key");
        return;
    }
    let command = Command::AddTicketKey {
        key: TicketKeyRecord {
            id,
            key,
            sealing_from_ms: now_ms,
            lifetime_ms,
        },
        now_ms,
    };
    match cluster.propose(command).await {
        Ok(CommandResponse::Applied(true)) => {
            tracing::info!(key_id = id, "added TLS session ticket key")
        }
        Ok(_) => tracing::debug!(key_id = id, "another leader added this ticket key"),
        Err(e) => tracing::warn!(key_id = id, "could not add a TLS session ticket key: {e}"),
    }
}
