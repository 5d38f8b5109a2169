//! Raft metrics on the node's `/metrics`: term, leader, log and applied
//! index, apply lag, snapshot index, voters and learners, and members by
//! liveness (`quicmq_cluster_members{state}`).

use std::sync::Arc;

use openraft::{RaftMetrics, ServerState};
use tokio::sync::watch;

use crate::store::SharedState;
use crate::{MemberNode, NodeId};

/// Updates the gauges after every change of openraft's metrics, until Raft
/// stops.
pub(super) async fn export(
    mut metrics: watch::Receiver<RaftMetrics<NodeId, MemberNode>>,
    shared: Arc<SharedState>,
) {
    loop {
        {
            let m = metrics.borrow_and_update();
            let applied = m.last_applied.map_or(0, |l| l.index);
            let last_log = m.last_log_index.unwrap_or(0);
            metrics::gauge!("quicmq_raft_term").set(m.current_term as f64);
            metrics::gauge!("quicmq_raft_leader_id").set(m.current_leader.unwrap_or(0) as f64);
            metrics::gauge!("quicmq_raft_is_leader").set(if m.state == ServerState::Leader {
                1.0
            } else {
                0.0
            });
            metrics::gauge!("quicmq_raft_last_log_index").set(last_log as f64);
            metrics::gauge!("quicmq_raft_applied_index").set(applied as f64);
            metrics::gauge!("quicmq_raft_apply_lag").set(last_log.saturating_sub(applied) as f64);
            metrics::gauge!("quicmq_raft_snapshot_index")
                .set(m.snapshot.map_or(0, |l| l.index) as f64);
            metrics::gauge!("quicmq_raft_purged_index").set(m.purged.map_or(0, |l| l.index) as f64);
            let membership = m.membership_config.membership();
            metrics::gauge!("quicmq_raft_voters").set(membership.voter_ids().count() as f64);
            metrics::gauge!("quicmq_raft_learners").set(membership.learner_ids().count() as f64);
            metrics::gauge!("quicmq_cluster_revision").set(shared.revision() as f64);
            let mut by_state = [("alive", 0u32), ("suspect", 0), ("down", 0), ("left", 0)];
            shared.read(|s| {
                for member in s.members().iter() {
                    if let Some(slot) = by_state
                        .iter_mut()
                        .find(|(l, _)| *l == member.state.label())
                    {
                        slot.1 += 1;
                    }
                }
            });
            for (state, count) in by_state {
                metrics::gauge!("quicmq_cluster_members", "state" => state).set(f64::from(count));
            }
        }
        if metrics.changed().await.is_err() {
            return;
        }
    }
}
