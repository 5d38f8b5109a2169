//! The server side of the `Raft` gRPC service: decodes openraft requests,
//! hands them to the local [`Raft`], encodes the outcome.
//!
//! Every request is checked first: its header must name this cluster and
//! this node and use an encoding we speak, and its payload must decode.
//! A peer that sends garbage gets `INVALID_ARGUMENT` (or
//! `FAILED_PRECONDITION`) for that one call; nothing reaches openraft.

use std::io::Cursor;

use openraft::raft::{AppendEntriesRequest, InstallSnapshotRequest, VoteRequest};
use openraft::{Snapshot, SnapshotMeta, Vote};
use quicmq_proto::cluster::v1::{
    raft_response::Outcome, raft_server, snapshot_chunk::Frame, PingRequest, PingResponse,
    RaftEncoding, RaftHeader, RaftRequest, RaftResponse, SnapshotChunk,
};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tonic::{Request, Response, Status, Streaming};

use crate::codec;
use crate::command::Command;
use crate::{MemberNode, NodeId, Raft, TypeConfig};

/// Longest a liveness probe may wait for its index.
const MAX_PING_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// Largest snapshot accepted over `StreamSnapshot` (1 GiB).
const MAX_STREAMED_SNAPSHOT: usize = 1 << 30;

/// The `Raft` service of one node.
#[derive(Clone)]
pub struct RaftService {
    raft: Raft,
    cluster_id: String,
    node_id: NodeId,
}

impl RaftService {
    /// Serves `raft` (node `node_id` of `cluster_id`).
    pub fn new(raft: Raft, cluster_id: &str, node_id: NodeId) -> Self {
        Self {
            raft,
            cluster_id: cluster_id.to_owned(),
            node_id,
        }
    }

    /// Checks that `header` is meant for this node of this cluster.
    fn check_header(&self, header: Option<&RaftHeader>) -> Result<(), Status> {
        let header = header.ok_or_else(|| Status::invalid_argument("missing Raft header"))?;
        if header.cluster_id != self.cluster_id {
            metrics::counter!("quicmq_raft_rejected_requests_total", "reason" => "cluster_id")
                .increment(1);
            return Err(Status::failed_precondition(format!(
                "cluster ID {:?} is not this node's cluster {:?}",
                header.cluster_id, self.cluster_id
            )));
        }
        if header.to_node_id != self.node_id {
            metrics::counter!("quicmq_raft_rejected_requests_total", "reason" => "node_id")
                .increment(1);
            return Err(Status::failed_precondition(format!(
                "message for node {} reached node {}",
                header.to_node_id, self.node_id
            )));
        }
        if header.encoding != i32::from(RaftEncoding::Bincode1) {
            return Err(Status::invalid_argument(format!(
                "unsupported Raft encoding {}",
                header.encoding
            )));
        }
        Ok(())
    }

    /// Checks the header and decodes the payload of a unary request.
    fn open<T: DeserializeOwned>(
        &self,
        request: Request<RaftRequest>,
        what: &'static str,
    ) -> Result<T, Status> {
        let request = request.into_inner();
        self.check_header(request.header.as_ref())?;
        codec::decode(what, &request.payload).map_err(|e| {
            metrics::counter!("quicmq_raft_rejected_requests_total", "reason" => "payload")
                .increment(1);
            Status::invalid_argument(e.to_string())
        })
    }
}

/// Encodes a handler's result as a `RaftResponse`.
fn reply<T: Serialize, E: Serialize>(
    result: Result<T, E>,
) -> Result<Response<RaftResponse>, Status> {
    let outcome = match result {
        Ok(v) => Outcome::Ok(encode(&v)?.into()),
        Err(e) => Outcome::Error(encode(&e)?.into()),
    };
    Ok(Response::new(RaftResponse {
        outcome: Some(outcome),
    }))
}

fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, Status> {
    codec::encode("raft response", value).map_err(|e| Status::internal(e.to_string()))
}

#[tonic::async_trait]
impl raft_server::Raft for RaftService {
    async fn append_entries(
        &self,
        request: Request<RaftRequest>,
    ) -> Result<Response<RaftResponse>, Status> {
        let req: AppendEntriesRequest<TypeConfig> = self.open(request, "append entries")?;
        reply(self.raft.append_entries(req).await)
    }

    async fn vote(&self, request: Request<RaftRequest>) -> Result<Response<RaftResponse>, Status> {
        let req: VoteRequest<NodeId> = self.open(request, "vote")?;
        reply(self.raft.vote(req).await)
    }

    async fn install_snapshot(
        &self,
        request: Request<RaftRequest>,
    ) -> Result<Response<RaftResponse>, Status> {
        let req: InstallSnapshotRequest<TypeConfig> = self.open(request, "install snapshot")?;
        reply(self.raft.install_snapshot(req).await)
    }

    async fn stream_snapshot(
        &self,
        request: Request<Streaming<SnapshotChunk>>,
    ) -> Result<Response<RaftResponse>, Status> {
        let mut stream = request.into_inner();
        let first = stream
            .message()
            .await?
            .ok_or_else(|| Status::invalid_argument("empty snapshot stream"))?;
        let Some(Frame::Header(header)) = first.frame else {
            return Err(Status::invalid_argument(
                "a snapshot stream starts with a header",
            ));
        };
        self.check_header(header.header.as_ref())?;
        let vote: Vote<NodeId> = codec::decode("snapshot vote", &header.vote)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let meta: SnapshotMeta<NodeId, MemberNode> =
            codec::decode("snapshot meta", &header.meta)
                .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let mut data = Vec::with_capacity((header.total_len as usize).min(64 << 20));
        loop {
            let Some(chunk) = stream.message().await? else {
                return Err(Status::invalid_argument(
                    "snapshot stream ended without trailer",
                ));
            };
            match chunk.frame {
                Some(Frame::Data(bytes)) => {
                    if data.len() + bytes.len() > MAX_STREAMED_SNAPSHOT {
                        return Err(Status::resource_exhausted("snapshot too large"));
                    }
                    data.extend_from_slice(&bytes);
                }
                Some(Frame::Trailer(_)) => break,
                _ => return Err(Status::invalid_argument("unexpected snapshot frame")),
            }
        }
        let snapshot = Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        };
        reply(self.raft.install_full_snapshot(vote, snapshot).await)
    }

    async fn client_write(
        &self,
        request: Request<RaftRequest>,
    ) -> Result<Response<RaftResponse>, Status> {
        let command: Command = self.open(request, "proposed command")?;
        reply(self.raft.client_write(command).await)
    }

    async fn ping(&self, request: Request<PingRequest>) -> Result<Response<PingResponse>, Status> {
        let request = request.into_inner();
        self.check_header(request.header.as_ref())?;
        let wait = std::time::Duration::from_millis(request.timeout_ms).min(MAX_PING_WAIT);
        // Not reaching the index in time is an answer too: the prober
        // learns how far this node is.
        let _ = self
            .raft
            .wait(Some(wait))
            .applied_index_at_least(Some(request.wait_index), "liveness probe")
            .await;
        let applied_index = self
            .raft
            .metrics()
            .borrow()
            .last_applied
            .map_or(0, |id| id.index);
        Ok(Response::new(PingResponse { applied_index }))
    }
}
