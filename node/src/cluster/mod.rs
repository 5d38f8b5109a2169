//! The node's side of the cluster: builds the Raft settings from the node
//! configuration, serves gRPC, and starts (bootstrap, join or resume).
//!
//! Every node runs Raft, the single-node default included (it bootstraps a
//! one-node cluster). What the node learns from the cluster before it
//! serves clients: its QUIC-LB server ID, the QUIC-LB configuration and the
//! cluster keys — so every node of a cluster mints routable CIDs under one
//! configuration and shares the reset and token keys.

pub mod auth_sync;
mod claims;
pub mod durable;
pub mod forward;
pub mod link;
pub mod retained_mirror;
pub mod route_table;
pub mod sessions;
pub mod ticket_keys;
pub mod tls;
pub mod wills;

pub use forward::{ForwardService, Forwarder};
pub use link::{Claim, ClusterLink};
pub use route_table::RouteTable;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use quicmq_proto::cluster_tls::ClusterTls;
use quicmq_proto::quic_lb::{LbConfig, ServerId};
use quicmq_raft::command::{BootstrapRecord, KeysRecord, MemberRecord, QuicLbRecord};
use quicmq_raft::{ClusterConfig, ClusterNode, RaftTiming};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::config::NodeConfig;
use crate::node::StartError;

/// What a node needs from the cluster to serve clients.
#[derive(Debug, Clone)]
pub struct ClusterIdentity {
    /// This node's member record.
    pub member: MemberRecord,
    /// Its QUIC-LB server ID.
    pub server_id: ServerId,
    /// The cluster's QUIC-LB configuration.
    pub quic_lb: LbConfig,
    /// The cluster's stateless reset key.
    pub reset_key: [u8; 32],
    /// The cluster's token key.
    pub token_key: [u8; 32],
}

/// `HOST:PORT`, bracketing IPv6 literals.
pub fn host_port(host: &str, port: u16) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// Binds the gRPC listener.
pub async fn bind_grpc(addr: SocketAddr) -> Result<TcpListener, StartError> {
    TcpListener::bind(addr).await.map_err(|e| StartError::Bind {
        key: "grpc_addr",
        addr: addr.to_string(),
        reason: e.to_string(),
    })
}

/// The Raft settings of this node. `grpc_port` is the bound gRPC port;
/// the routed and public addresses are refined once the QUIC endpoint is
/// bound.
pub fn cluster_config(
    config: &NodeConfig,
    grpc_port: u16,
    reset_key: [u8; 32],
    token_key: [u8; 32],
    tls: Option<ClusterTls>,
) -> ClusterConfig {
    let c = &config.cluster;
    let advertise = |port: Option<u16>| {
        port.filter(|p| *p != 0)
            .map(|p| host_port(&c.advertise_addr, p))
            .unwrap_or_default()
    };
    ClusterConfig {
        node_id: c.node_id,
        cluster_id: c.cluster_id.clone(),
        raft_dir: config.data_dir.join("raft"),
        advertise_grpc: host_port(&c.advertise_addr, grpc_port),
        routed_addr: advertise(config.routed_addr.map(|a| a.port())),
        public_addr: advertise(config.quic_addr.map(|a| a.port())),
        zone: c.zone.clone(),
        peer_proxy: c.peer_proxy.clone(),
        tls,
        join: c.join.clone(),
        voters: c.voters,
        bootstrap: BootstrapRecord {
            cluster_id: c.cluster_id.clone(),
            quic_lb: QuicLbRecord {
                config_id: config.quic_lb.config_id(),
                server_id_len: config.quic_lb.server_id_len() as u8,
                nonce_len: config.quic_lb.nonce_len() as u8,
                key: config.quic_lb.key().copied(),
            },
            keys: KeysRecord {
                stateless_reset_key: reset_key,
                token_key,
            },
        },
        timing: RaftTiming {
            snapshot_after_logs: c.raft_snapshot_logs,
            member_down_after: c.member_down_after,
            member_remove_after: c.member_remove_after,
            ..RaftTiming::default()
        },
    }
}

/// Serves the cluster's gRPC services on `listener` until `shutdown`
/// turns true: with `tls`, only to peers that complete the cluster's
/// mutual TLS handshake.
pub fn spawn_grpc_server(
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    routes: tonic::service::Routes,
    mut shutdown: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let incoming = quicmq_raft::network::tls::incoming(listener, tls);
        let signal = async move {
            while !*shutdown.borrow_and_update() {
                if shutdown.changed().await.is_err() {
                    return;
                }
            }
        };
        let result = tonic::transport::Server::builder()
            .tcp_nodelay(true)
            .http2_keepalive_interval(Some(std::time::Duration::from_secs(10)))
            .add_routes(routes)
            .serve_with_incoming_shutdown(incoming, signal)
            .await;
        if let Err(e) = result {
            tracing::error!("gRPC server stopped: {e}");
        }
    })
}

/// Starts the cluster membership and reads what the node needs from the
/// applied state.
pub async fn join_cluster(cluster: &ClusterNode) -> Result<ClusterIdentity, StartError> {
    let member = cluster
        .start()
        .await
        .map_err(|e| StartError::Cluster(e.to_string()))?;
    let (quic_lb, keys) = cluster
        .shared()
        .read(|s| (s.quic_lb().cloned(), s.keys().cloned()));
    let (Some(lb), Some(keys)) = (quic_lb, keys) else {
        return Err(StartError::Cluster(
            "the cluster state has no QUIC-LB configuration or keys".into(),
        ));
    };
    let quic_lb = LbConfig::new(
        lb.config_id,
        usize::from(lb.server_id_len),
        usize::from(lb.nonce_len),
        lb.key,
    )
    .map_err(|e| StartError::Cluster(format!("the cluster's QUIC-LB configuration: {e}")))?;
    let server_id = ServerId::new(&member.server_id)
        .map_err(|e| StartError::Cluster(format!("server ID from the cluster: {e}")))?;
    Ok(ClusterIdentity {
        member,
        server_id,
        quic_lb,
        reset_key: keys.stateless_reset_key,
        token_key: keys.token_key,
    })
}

/// The reset and token keys this node offers when it bootstraps a cluster:
/// from the configuration, else from (or created in) the data directory.
pub fn bootstrap_keys(
    config: &NodeConfig,
    data_dir: &Path,
) -> Result<([u8; 32], [u8; 32]), StartError> {
    let reset_key = match config.reset_key {
        Some(key) => key,
        None => crate::keys::load_or_create(data_dir, "reset-key", "reset_key")?,
    };
    let token_key = match config.token_key {
        Some(key) => key,
        None => crate::keys::load_or_create(data_dir, "token-key", "token_key")?,
    };
    Ok((reset_key, token_key))
}
