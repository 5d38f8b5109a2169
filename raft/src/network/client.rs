//! openraft's `RaftNetwork` over tonic: one [`PeerClient`] per target node,
//! made by [`GrpcNetwork`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use quicmq_proto::cluster::v1::{
    raft_client::RaftClient, raft_response::Outcome, RaftEncoding, RaftHeader, RaftRequest,
};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tonic::transport::{Channel, Endpoint};

use crate::codec;
use crate::{MemberNode, NodeId, TypeConfig};

/// Largest gRPC message a node sends or accepts (snapshot chunks and
/// append-entries batches stay well below it).
pub const MAX_MESSAGE_SIZE: usize = 64 * 1024 * 1024;

/// A lazily connected channel to `addr` (`HOST:PORT`): nothing is dialled
/// until the first call, and tonic reconnects by itself after failures.
/// With `proxy` (`HOST:PORT` of an HTTP `CONNECT` proxy), every connection
/// is a tunnel through it; with `tls` (the cluster's client configuration),
/// every connection is cluster TLS ([`super::tls::dial`]).
///
/// # Errors
///
/// When `addr` does not form a valid URI.
pub fn lazy_channel(
    addr: &str,
    proxy: Option<&str>,
    tls: Option<Arc<rustls::ClientConfig>>,
) -> Result<Channel, tonic::transport::Error> {
    // The scheme stays `http`: TLS, where there is any, is ours.
    let endpoint = Endpoint::from_shared(format!("http://{addr}"))?
        .connect_timeout(Duration::from_millis(500))
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(5))
        .keep_alive_timeout(Duration::from_secs(5))
        .keep_alive_while_idle(true);
    if proxy.is_none() && tls.is_none() {
        return Ok(endpoint.connect_lazy());
    }
    let proxy: Option<Arc<str>> = proxy.map(Into::into);
    let target: Arc<str> = addr.into();
    let connector = tower::service_fn(move |_: tonic::transport::Uri| {
        let (proxy, target, tls) = (proxy.clone(), target.clone(), tls.clone());
        async move {
            let stream = super::tls::dial(&target, proxy.as_deref(), tls).await?;
            Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(stream))
        }
    });
    Ok(endpoint.connect_with_connector_lazy(connector))
}

/// Channels to peers, shared by everything in a node that dials them (Raft
/// replication, proposals passed to the leader, joins).
#[derive(Debug, Clone, Default)]
pub struct PeerChannels {
    by_addr: Arc<Mutex<HashMap<String, Channel>>>,
    /// The `CONNECT` proxy peers are dialled through, if any.
    proxy: Option<Arc<str>>,
    /// Cluster TLS (`None`: a plaintext cluster).
    tls: Option<Arc<rustls::ClientConfig>>,
}

impl PeerChannels {
    /// Channels dialled directly (`proxy` `None`) or through the HTTP
    /// `CONNECT` proxy at `proxy` (`HOST:PORT`), with cluster TLS when
    /// `tls` is the cluster's client configuration.
    pub fn new(proxy: Option<&str>, tls: Option<Arc<rustls::ClientConfig>>) -> PeerChannels {
        PeerChannels {
            by_addr: Arc::default(),
            proxy: proxy.map(Into::into),
            tls,
        }
    }

    /// The channel to `addr`, made on first use.
    ///
    /// # Errors
    ///
    /// When `addr` is not a valid `HOST:PORT`.
    pub fn get(&self, addr: &str) -> Result<Channel, tonic::transport::Error> {
        let mut map = self.by_addr.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(ch) = map.get(addr) {
            return Ok(ch.clone());
        }
        let ch = lazy_channel(addr, self.proxy.as_deref(), self.tls.clone())?;
        map.insert(addr.to_owned(), ch.clone());
        Ok(ch)
    }

    /// A Raft client to `addr` with the message size limits set.
    ///
    /// # Errors
    ///
    /// When `addr` is not a valid `HOST:PORT`.
    pub fn raft_client(&self, addr: &str) -> Result<RaftClient<Channel>, tonic::transport::Error> {
        Ok(RaftClient::new(self.get(addr)?)
            .max_decoding_message_size(MAX_MESSAGE_SIZE)
            .max_encoding_message_size(MAX_MESSAGE_SIZE))
    }
}

/// Makes a [`PeerClient`] for each target openraft replicates to.
#[derive(Debug, Clone)]
pub struct GrpcNetwork {
    cluster_id: Arc<str>,
    node_id: NodeId,
    channels: PeerChannels,
}

impl GrpcNetwork {
    /// A network for node `node_id` of cluster `cluster_id`.
    pub fn new(cluster_id: &str, node_id: NodeId, channels: PeerChannels) -> Self {
        Self {
            cluster_id: cluster_id.into(),
            node_id,
            channels,
        }
    }
}

impl RaftNetworkFactory<TypeConfig> for GrpcNetwork {
    type Network = PeerClient;

    async fn new_client(&mut self, target: NodeId, node: &MemberNode) -> PeerClient {
        let client = self
            .channels
            .raft_client(&node.grpc_addr)
            .map_err(|e| format!("invalid address {:?}: {e}", node.grpc_addr));
        PeerClient {
            header: RaftHeader {
                cluster_id: self.cluster_id.to_string(),
                from_node_id: self.node_id,
                to_node_id: target,
                encoding: RaftEncoding::Bincode1.into(),
            },
            target,
            client,
        }
    }
}

/// openraft's connection to one peer.
#[derive(Debug)]
pub struct PeerClient {
    header: RaftHeader,
    target: NodeId,
    client: Result<RaftClient<Channel>, String>,
}

/// An error as a `std::error::Error`, for openraft's error wrappers.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Failure(String);

/// Which unary Raft RPC to call.
#[derive(Clone, Copy)]
enum Rpc {
    AppendEntries,
    Vote,
    InstallSnapshot,
}

impl PeerClient {
    /// Sends `request` as `rpc` and decodes the outcome: `Ok` the response,
    /// `Err(Ok(e))` the remote openraft error, `Err(Err(..))` a transport
    /// failure.
    async fn call<Req, Resp, E>(
        &mut self,
        rpc: Rpc,
        request: &Req,
        ttl: Duration,
    ) -> Result<Resp, RPCError<NodeId, MemberNode, E>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let client = match &mut self.client {
            Ok(c) => c,
            Err(e) => return Err(RPCError::Unreachable(Unreachable::new(&Failure(e.clone())))),
        };
        let payload = codec::encode("raft request", request)
            .map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        let mut req = tonic::Request::new(RaftRequest {
            header: Some(self.header.clone()),
            payload: payload.into(),
        });
        req.set_timeout(ttl);
        let result = match rpc {
            Rpc::AppendEntries => client.append_entries(req).await,
            Rpc::Vote => client.vote(req).await,
            Rpc::InstallSnapshot => client.install_snapshot(req).await,
        };
        let response = match result {
            Ok(r) => r.into_inner(),
            Err(status) => return Err(status_to_rpc_error(&status)),
        };
        match response.outcome {
            Some(Outcome::Ok(bytes)) => codec::decode("raft response", &bytes)
                .map_err(|e| RPCError::Network(NetworkError::new(&e))),
            Some(Outcome::Error(bytes)) => {
                let err: E = codec::decode("raft error", &bytes)
                    .map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
                Err(RPCError::RemoteError(RemoteError::new(self.target, err)))
            }
            None => Err(RPCError::Network(NetworkError::new(&Failure(
                "empty Raft response".into(),
            )))),
        }
    }
}

/// Maps a gRPC status to openraft's retry classes: a peer that is down or
/// refuses us (wrong cluster, wrong node) is `Unreachable` (openraft backs
/// off), anything else a `Network` error (retried at once).
fn status_to_rpc_error<E: std::error::Error>(
    status: &tonic::Status,
) -> RPCError<NodeId, MemberNode, E> {
    let failure = Failure(format!("{:?}: {}", status.code(), status.message()));
    match status.code() {
        tonic::Code::Unavailable
        | tonic::Code::FailedPrecondition
        | tonic::Code::Unimplemented
        | tonic::Code::PermissionDenied
        | tonic::Code::Unauthenticated => RPCError::Unreachable(Unreachable::new(&failure)),
        _ => RPCError::Network(NetworkError::new(&failure)),
    }
}

impl RaftNetwork<TypeConfig> for PeerClient {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, MemberNode, RaftError<NodeId>>>
    {
        self.call(Rpc::AppendEntries, &rpc, option.hard_ttl()).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, MemberNode, RaftError<NodeId, InstallSnapshotError>>,
    > {
        self.call(Rpc::InstallSnapshot, &rpc, option.hard_ttl())
            .await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, MemberNode, RaftError<NodeId>>> {
        self.call(Rpc::Vote, &rpc, option.hard_ttl()).await
    }
}
