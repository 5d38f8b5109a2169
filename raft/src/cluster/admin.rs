//! The `Admin` gRPC service: join, leave (remove), status. Any member
//! answers; membership changes are passed to the leader.

use quicmq_proto::cluster::v1::{
    admin_client::AdminClient, admin_server, JoinRequest, JoinResponse, KeyInfo, LeaveRequest,
    LeaveResponse, MemberState as PbState, MemberStatus, QuicLbConfig, QuicLbConfigState, Route,
    StatusRequest, StatusResponse,
};
use tonic::{Request, Response, Status};

use super::{member_to_pb, now_ms, ClusterNode};
use crate::command::JoinRecord;
use crate::error::ClusterError;

/// Serves `Admin` for one node.
pub(super) struct AdminService {
    node: ClusterNode,
}

impl AdminService {
    pub(super) fn new(node: ClusterNode) -> Self {
        Self { node }
    }

    fn check_cluster(&self, cluster_id: &str) -> Result<(), Status> {
        if cluster_id != self.node.cluster_id() {
            return Err(Status::failed_precondition(format!(
                "cluster ID {cluster_id:?} does not match this cluster's ID {:?}",
                self.node.cluster_id()
            )));
        }
        Ok(())
    }

    /// The leader's Admin client, when another node leads.
    fn leader_client(&self) -> Result<Option<AdminClient<tonic::transport::Channel>>, Status> {
        match self.node.current_leader() {
            Some(leader) if leader == self.node.node_id() => Ok(None),
            Some(leader) => {
                let addr = self.node.grpc_addr_of(leader).ok_or_else(|| {
                    Status::unavailable(format!("leader {leader} has no known address"))
                })?;
                let channel = self
                    .node
                    .channels()
                    .get(&addr)
                    .map_err(|e| Status::unavailable(format!("leader address {addr}: {e}")))?;
                Ok(Some(AdminClient::new(channel)))
            }
            None => Err(Status::unavailable("no Raft leader known; try again")),
        }
    }
}

fn to_status(e: ClusterError) -> Status {
    match e {
        ClusterError::JoinRefused(m) => Status::already_exists(m),
        ClusterError::NoLeader(_) => Status::unavailable(e.to_string()),
        ClusterError::Refused(m) => Status::failed_precondition(m),
        other => Status::internal(other.to_string()),
    }
}

#[tonic::async_trait]
impl admin_server::Admin for AdminService {
    async fn join(&self, request: Request<JoinRequest>) -> Result<Response<JoinResponse>, Status> {
        let req = request.into_inner();
        self.check_cluster(&req.cluster_id)?;
        if req.node_id == 0 {
            return Err(Status::invalid_argument("node ID 0 is not a valid node ID"));
        }
        if req.grpc_addr.is_empty() {
            return Err(Status::invalid_argument(
                "the joining node's gRPC address is empty",
            ));
        }
        if let Some(mut leader) = self.leader_client()? {
            return leader.join(req).await;
        }
        tracing::info!(node_id = req.node_id, addr = %req.grpc_addr, "admitting node");
        let member = self
            .node
            .admit(JoinRecord {
                node_id: req.node_id,
                grpc_addr: req.grpc_addr,
                routed_addr: req.routed_addr,
                public_addr: req.public_addr,
                zone: req.zone,
                now_ms: now_ms(),
            })
            .await
            .map_err(to_status)?;
        let members = self
            .node
            .shared()
            .read(|s| s.members().iter().map(member_to_pb).collect());
        Ok(Response::new(JoinResponse {
            cluster_id: self.node.cluster_id().to_owned(),
            member: Some(member_to_pb(&member)),
            leader_node_id: self.node.node_id(),
            members,
        }))
    }

    async fn leave(
        &self,
        request: Request<LeaveRequest>,
    ) -> Result<Response<LeaveResponse>, Status> {
        let mut req = request.into_inner();
        self.check_cluster(&req.cluster_id)?;
        let node_id = *req.node_id.get_or_insert(self.node.node_id());
        if self
            .node
            .shared()
            .read(|s| s.members().get(node_id).is_none())
        {
            return Err(Status::not_found(format!("node {node_id} is not a member")));
        }
        if let Some(mut leader) = self.leader_client()? {
            return leader.leave(req).await;
        }
        tracing::info!(node_id, force = req.force, "removing node");
        self.node.remove(node_id).await.map_err(to_status)?;
        Ok(Response::new(LeaveResponse {
            node_id,
            state: PbState::Left.into(),
        }))
    }

    async fn status(
        &self,
        request: Request<StatusRequest>,
    ) -> Result<Response<StatusResponse>, Status> {
        Ok(Response::new(status(
            &self.node,
            request.into_inner().include_routes,
        )))
    }
}

/// This node's view of the cluster.
pub(crate) fn status(node: &ClusterNode, include_routes: bool) -> StatusResponse {
    let metrics = node.raft().metrics().borrow().clone();
    let replication = metrics.replication.clone().unwrap_or_default();
    let state = node.shared();
    state.read(|s| {
        let members = s
            .members()
            .iter()
            .map(|m| MemberStatus {
                member: Some(member_to_pb(m)),
                matched_index: replication
                    .get(&m.node_id)
                    .and_then(|l| l.as_ref())
                    .map_or(0, |l| l.index),
                last_contact_ms: None,
            })
            .collect();
        let quic_lb_configs = s
            .quic_lb()
            .map(|c| QuicLbConfig {
                config_id: u32::from(c.config_id),
                server_id_len: u32::from(c.server_id_len),
                nonce_len: u32::from(c.nonce_len),
                key: None,
                state: QuicLbConfigState::Active.into(),
            })
            .into_iter()
            .collect();
        let keys = s
            .keys()
            .map(|k| {
                vec![
                    key_info("stateless_reset", &k.stateless_reset_key),
                    key_info("token", &k.token_key),
                ]
            })
            .unwrap_or_default();
        let routes = if include_routes {
            s.routes()
                .iter()
                .map(|(filter, nodes)| Route {
                    filter: filter.to_owned(),
                    node_ids: nodes.iter().copied().collect(),
                })
                .collect()
        } else {
            Vec::new()
        };
        StatusResponse {
            cluster_id: node.cluster_id().to_owned(),
            node_id: node.node_id(),
            leader_node_id: metrics.current_leader.unwrap_or(0),
            term: metrics.current_term,
            committed_index: metrics.last_applied.map_or(0, |l| l.index),
            applied_index: state.revision(),
            members,
            quic_lb_configs,
            keys,
            routes,
            retained_messages: s.retained().len() as u64,
            persistent_sessions: s.sessions().len() as u64,
            queued_messages: s.queued_messages() as u64,
            wills_held: s.wills().held() as u64,
            wills_released: s.wills().released() as u64,
        }
    })
}

fn key_info(kind: &str, key: &[u8]) -> KeyInfo {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, key);
    KeyInfo {
        kind: kind.to_owned(),
        fingerprint: digest.as_ref()[..8].to_vec().into(),
        not_before_ms: 0,
        not_after_ms: 0,
    }
}
