//! Proposing a command from any node: the leader appends it; a follower
//! passes it to the leader over the `Raft.ClientWrite` RPC; without a
//! leader, the proposal waits (with backoff) until the propose timeout.

use std::time::Duration;

use openraft::error::{ClientWriteError, RaftError};
use openraft::raft::ClientWriteResponse;
use quicmq_proto::cluster::v1::{raft_response::Outcome, RaftEncoding, RaftHeader, RaftRequest};
use tokio::time::Instant;

use super::ClusterNode;
use crate::codec;
use crate::command::{Command, CommandResponse};
use crate::error::ClusterError;
use crate::{MemberNode, NodeId, TypeConfig};

type WriteError = RaftError<NodeId, ClientWriteError<NodeId, MemberNode>>;

/// What one attempt came to.
enum Attempt {
    Done(Box<ClientWriteResponse<TypeConfig>>),
    /// Try again (after a pause), at the leader if one is named.
    Retry(String),
}

pub(super) async fn propose(
    node: &ClusterNode,
    command: Command,
) -> Result<CommandResponse, ClusterError> {
    let timeout = node.config().timing.propose_timeout;
    let deadline = Instant::now() + timeout;
    let mut backoff = Duration::from_millis(10);
    let started = Instant::now();
    loop {
        let attempt = match node.current_leader() {
            Some(leader) if leader != node.node_id() => {
                remote(node, leader, &command, deadline).await?
            }
            _ => local(node, command.clone(), deadline).await?,
        };
        match attempt {
            Attempt::Done(response) => {
                wait_applied(node, response.log_id.index, deadline).await;
                metrics::histogram!("quicmq_raft_propose_seconds")
                    .record(started.elapsed().as_secs_f64());
                return Ok(response.data);
            }
            Attempt::Retry(why) => {
                if Instant::now() + backoff >= deadline {
                    metrics::counter!("quicmq_raft_propose_failures_total").increment(1);
                    tracing::warn!("proposal failed: {why}");
                    return Err(ClusterError::NoLeader(timeout));
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_millis(200));
            }
        }
    }
}

fn classify(
    result: Result<ClientWriteResponse<TypeConfig>, WriteError>,
) -> Result<Attempt, ClusterError> {
    match result {
        Ok(r) => Ok(Attempt::Done(Box::new(r))),
        Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => Ok(Attempt::Retry(
            format!("not the leader (leader: {:?})", f.leader_id),
        )),
        Err(RaftError::APIError(ClientWriteError::ChangeMembershipError(e))) => {
            Err(ClusterError::Refused(e.to_string()))
        }
        Err(RaftError::Fatal(e)) => Err(ClusterError::Fatal(e.to_string())),
    }
}

/// Appends on this node. A leader cut off from the majority still takes
/// the entry but can never commit it: the deadline bounds that wait, so
/// the proposer gets an error (and the client a refusal) instead of
/// waiting forever.
async fn local(
    node: &ClusterNode,
    command: Command,
    deadline: Instant,
) -> Result<Attempt, ClusterError> {
    match tokio::time::timeout_at(deadline, node.raft().client_write(command)).await {
        Ok(result) => classify(result),
        Err(_) => {
            metrics::counter!("quicmq_raft_propose_failures_total").increment(1);
            tracing::warn!(
                "proposal not committed within the propose timeout (cut off from the majority?)"
            );
            Err(ClusterError::NoLeader(node.config().timing.propose_timeout))
        }
    }
}

async fn remote(
    node: &ClusterNode,
    leader: NodeId,
    command: &Command,
    deadline: Instant,
) -> Result<Attempt, ClusterError> {
    let Some(addr) = node.grpc_addr_of(leader) else {
        return Ok(Attempt::Retry(format!(
            "leader {leader} has no known address"
        )));
    };
    let mut client = match node.channels().raft_client(&addr) {
        Ok(c) => c,
        Err(e) => return Ok(Attempt::Retry(format!("leader address {addr}: {e}"))),
    };
    let mut request = tonic::Request::new(RaftRequest {
        header: Some(RaftHeader {
            cluster_id: node.cluster_id().to_owned(),
            from_node_id: node.node_id(),
            to_node_id: leader,
            encoding: RaftEncoding::Bincode1.into(),
        }),
        payload: codec::encode("proposed command", command)?.into(),
    });
    request.set_timeout(
        deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(50)),
    );
    let response = match client.client_write(request).await {
        Ok(r) => r.into_inner(),
        Err(status) => {
            return Ok(Attempt::Retry(format!(
                "leader {leader} at {addr}: {:?}: {}",
                status.code(),
                status.message()
            )))
        }
    };
    match response.outcome {
        Some(Outcome::Ok(bytes)) => Ok(Attempt::Done(Box::new(codec::decode(
            "client write response",
            &bytes,
        )?))),
        Some(Outcome::Error(bytes)) => {
            let err: WriteError = codec::decode("client write error", &bytes)?;
            classify(Err(err))
        }
        None => Ok(Attempt::Retry("empty response".into())),
    }
}

/// Waits (until `deadline` at most) for this node to apply log `index`, so
/// a proposer reads its own write.
async fn wait_applied(node: &ClusterNode, index: u64, deadline: Instant) {
    let mut revision = node.shared().watch_revision();
    let wait = async {
        while *revision.borrow_and_update() < index {
            if revision.changed().await.is_err() {
                return;
            }
        }
    };
    if tokio::time::timeout_at(deadline, wait).await.is_err() {
        tracing::warn!(index, "committed, but not yet applied on this node");
    }
}
