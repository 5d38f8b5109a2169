//! The `ClusterWatch` gRPC service: a snapshot of the member table, the
//! QUIC-LB configuration and the keys a watcher's role allows, then a new
//! snapshot after each change of any of them or of the leader.
//!
//! Whole snapshots rather than deltas: the watched state is small (one
//! record per node), and a snapshot is always correct on its own, so a
//! watcher never has to reason about missed updates.

use std::pin::Pin;

use quicmq_proto::cluster::v1::{
    cluster_watch_server, watch_event::Event, ClusterKeys, ClusterSnapshot, QuicLbConfig,
    QuicLbConfigState, WatchEvent, WatchRequest, WatchRole,
};
use tokio::sync::{broadcast, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

use super::{member_to_pb, ClusterNode};
use crate::state::StateChange;

/// Serves `ClusterWatch` for one node.
pub(super) struct WatchService {
    node: ClusterNode,
}

impl WatchService {
    pub(super) fn new(node: ClusterNode) -> Self {
        Self { node }
    }
}

type EventStream = Pin<Box<dyn Stream<Item = Result<WatchEvent, Status>> + Send>>;

#[tonic::async_trait]
impl cluster_watch_server::ClusterWatch for WatchService {
    type WatchStream = EventStream;

    async fn watch(&self, request: Request<WatchRequest>) -> Result<Response<EventStream>, Status> {
        let req = request.into_inner();
        if !req.cluster_id.is_empty() && req.cluster_id != self.node.cluster_id() {
            return Err(Status::failed_precondition(format!(
                "cluster ID {:?} does not match this cluster's ID {:?}",
                req.cluster_id,
                self.node.cluster_id()
            )));
        }
        let role = WatchRole::try_from(req.role).unwrap_or(WatchRole::Observer);
        tracing::info!(watcher = %req.watcher, ?role, "cluster watch opened");
        metrics::gauge!("quicmq_cluster_watchers").increment(1.0);
        let (tx, rx) = mpsc::channel(16);
        tokio::spawn(follow(self.node.clone(), role, tx));
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

/// Sends a snapshot now and after every relevant change, until the watcher
/// goes away or the node stops.
async fn follow(node: ClusterNode, role: WatchRole, tx: mpsc::Sender<Result<WatchEvent, Status>>) {
    let mut changes = node.shared().subscribe();
    let mut metrics = node.raft().metrics();
    let mut leader = metrics.borrow_and_update().current_leader;
    let mut send_now = true;
    loop {
        if send_now {
            let event = snapshot_event(&node, role);
            if tx.send(Ok(event)).await.is_err() {
                break;
            }
            send_now = false;
        }
        tokio::select! {
            batch = changes.recv() => match batch {
                Ok(batch) => {
                    send_now = batch.changes.iter().any(|c| matches!(
                        c,
                        StateChange::Bootstrapped | StateChange::Member(_) | StateChange::Replaced
                    ));
                }
                Err(broadcast::error::RecvError::Lagged(_)) => send_now = true,
                Err(broadcast::error::RecvError::Closed) => break,
            },
            changed = metrics.changed() => {
                if changed.is_err() {
                    break;
                }
                let now = metrics.borrow_and_update().current_leader;
                if now != leader {
                    leader = now;
                    send_now = true;
                }
            }
            () = tx.closed() => break,
        }
    }
    metrics::gauge!("quicmq_cluster_watchers").decrement(1.0);
}

/// The whole watched state, with the secrets `role` may see.
fn snapshot_event(node: &ClusterNode, role: WatchRole) -> WatchEvent {
    let leader = node.current_leader().unwrap_or(0);
    let revision = node.shared().revision();
    let router = role == WatchRole::Router;
    node.shared().read(|s| {
        let quic_lb_configs = s
            .quic_lb()
            .map(|c| QuicLbConfig {
                config_id: u32::from(c.config_id),
                server_id_len: u32::from(c.server_id_len),
                nonce_len: u32::from(c.nonce_len),
                key: if router {
                    c.key.map(|k| k.to_vec().into())
                } else {
                    None
                },
                state: QuicLbConfigState::Active.into(),
            })
            .into_iter()
            .collect();
        let keys = s.keys().map(|k| ClusterKeys {
            stateless_reset_key: if router {
                k.stateless_reset_key.to_vec().into()
            } else {
                Default::default()
            },
            token_key: Default::default(),
            ticket_keys: Vec::new(),
        });
        WatchEvent {
            revision,
            event: Some(Event::Snapshot(ClusterSnapshot {
                cluster_id: s.cluster_id().unwrap_or(node.cluster_id()).to_owned(),
                members: s.members().iter().map(member_to_pb).collect(),
                quic_lb_configs,
                keys,
                leader_node_id: leader,
            })),
        }
    })
}
