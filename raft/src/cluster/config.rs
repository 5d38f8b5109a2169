//! What a node needs to know to take part in the cluster.

use std::path::PathBuf;
use std::time::Duration;

use quicmq_proto::cluster_tls::{ClusterTls, PeerRole};

use crate::command::BootstrapRecord;
use crate::error::ClusterError;
use crate::NodeId;

/// This node's cluster settings (the node's config file fills them in).
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// This node's ID (not 0).
    pub node_id: NodeId,
    /// The cluster's ID: every Raft message, join and watch names it.
    pub cluster_id: String,
    /// Directory of the Raft store (a sled database).
    pub raft_dir: PathBuf,
    /// `HOST:PORT` where peers and routers reach this node's gRPC server.
    pub advertise_grpc: String,
    /// This node's routed UDP address, as routers should send to it.
    pub routed_addr: String,
    /// This node's public QUIC address.
    pub public_addr: String,
    /// Failure domain.
    pub zone: String,
    /// `HOST:PORT` of an HTTP `CONNECT` proxy through which this node dials
    /// its peers' gRPC addresses (`None`: directly).
    pub peer_proxy: Option<String>,
    /// Cluster mutual TLS for every gRPC connection this node serves or
    /// dials (a node certificate of the cluster CA); `None`: plaintext, for
    /// a network that secures itself.
    pub tls: Option<ClusterTls>,
    /// gRPC addresses of existing members to join through; empty:
    /// bootstrap a new cluster.
    pub join: Vec<String>,
    /// How many members vote (1, 3 or 5); later nodes are learners.
    pub voters: usize,
    /// The cluster ID, QUIC-LB configuration and keys to commit when this
    /// node bootstraps a new cluster (ignored when it joins).
    pub bootstrap: BootstrapRecord,
    /// Raft timing.
    pub timing: RaftTiming,
}

/// How a node becomes a member when its store is empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartMode {
    /// Start a new one-node cluster.
    Bootstrap,
    /// Ask these members to admit this node.
    Join(Vec<String>),
}

/// Raft timing and limits.
#[derive(Debug, Clone)]
pub struct RaftTiming {
    /// Leader heartbeat interval.
    pub heartbeat: Duration,
    /// Election timeout, lower bound (randomised up to twice this).
    pub election_timeout: Duration,
    /// Build a snapshot after this many log entries since the last one.
    pub snapshot_after_logs: u64,
    /// How long a proposal waits for a leader before failing.
    pub propose_timeout: Duration,
    /// How long a joining node keeps asking its seeds.
    pub join_timeout: Duration,
    /// How long `start` waits for this node's membership to be applied.
    pub ready_timeout: Duration,
    /// How long a member may not answer the leader before it is `down`
    /// (`suspect` after half of it).
    pub member_down_after: Duration,
    /// How long a member may stay `down` before the leader removes it
    /// (`None`: never).
    pub member_remove_after: Option<Duration>,
}

impl Default for RaftTiming {
    fn default() -> Self {
        Self {
            heartbeat: Duration::from_millis(100),
            election_timeout: Duration::from_millis(500),
            snapshot_after_logs: 10_000,
            propose_timeout: Duration::from_secs(5),
            join_timeout: Duration::from_secs(120),
            ready_timeout: Duration::from_secs(120),
            member_down_after: Duration::from_secs(3),
            member_remove_after: None,
        }
    }
}

impl RaftTiming {
    /// The openraft configuration for these settings.
    pub(crate) fn openraft_config(
        &self,
        cluster_id: &str,
    ) -> Result<openraft::Config, ClusterError> {
        let election_min = self.election_timeout.as_millis() as u64;
        openraft::Config {
            cluster_name: cluster_id.to_owned(),
            heartbeat_interval: self.heartbeat.as_millis() as u64,
            election_timeout_min: election_min,
            election_timeout_max: election_min * 2,
            snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(self.snapshot_after_logs),
            // Keep at most one snapshot interval of log behind a snapshot:
            // a node further behind catches up from the snapshot.
            max_in_snapshot_log_to_keep: self.snapshot_after_logs.min(1_000),
            install_snapshot_timeout: 10_000,
            ..Default::default()
        }
        .validate()
        .map_err(|e| ClusterError::Config(format!("raft timing: {e}")))
    }
}

impl ClusterConfig {
    /// How this node becomes a member when its store is empty: it
    /// bootstraps when `join` is empty or names this node first (so one
    /// list of seeds, e.g. every pod of a StatefulSet with pod 1 first,
    /// serves every node), else it joins through the other entries.
    pub fn start_mode(&self) -> StartMode {
        if self
            .join
            .first()
            .is_some_and(|first| *first == self.advertise_grpc)
        {
            return StartMode::Bootstrap;
        }
        let seeds: Vec<String> = self
            .join
            .iter()
            .filter(|s| !s.is_empty() && **s != self.advertise_grpc)
            .cloned()
            .collect();
        if seeds.is_empty() {
            StartMode::Bootstrap
        } else {
            StartMode::Join(seeds)
        }
    }

    /// Checks the settings; errors name the setting.
    ///
    /// # Errors
    ///
    /// [`ClusterError::Config`] naming the bad key.
    pub fn validate(&self) -> Result<(), ClusterError> {
        if self.node_id == 0 {
            return Err(ClusterError::Config(
                "node_id: must be at least 1 (0 means \"not set\")".into(),
            ));
        }
        if self.cluster_id.is_empty() {
            return Err(ClusterError::Config("cluster_id: must not be empty".into()));
        }
        if !matches!(self.voters, 1 | 3 | 5) {
            return Err(ClusterError::Config(format!(
                "voters: must be 1, 3 or 5 (got {})",
                self.voters
            )));
        }
        if self.advertise_grpc.is_empty() {
            return Err(ClusterError::Config(
                "advertise_addr: the address peers reach this node's gRPC port at is empty".into(),
            ));
        }
        if let Some(tls) = &self.tls {
            if tls.role() != PeerRole::Node {
                return Err(ClusterError::Config(format!(
                    "cluster_cert: a node needs a {} certificate, not a {} one (`quicmq ca \
                     issue DIR --name NAME --usage node`)",
                    PeerRole::Node,
                    tls.role()
                )));
            }
        }
        if self.timing.heartbeat * 3 > self.timing.election_timeout {
            return Err(ClusterError::Config(
                "raft timing: the election timeout must be at least 3 heartbeats".into(),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::{KeysRecord, QuicLbRecord};

    fn config(join: &[&str]) -> ClusterConfig {
        ClusterConfig {
            node_id: 1,
            cluster_id: "c".into(),
            raft_dir: PathBuf::from("x"),
            advertise_grpc: "n1:7000".into(),
            routed_addr: String::new(),
            public_addr: String::new(),
            zone: String::new(),
            peer_proxy: None,
            tls: None,
            join: join.iter().map(|s| s.to_string()).collect(),
            voters: 3,
            bootstrap: BootstrapRecord {
                cluster_id: "c".into(),
                quic_lb: QuicLbRecord {
                    config_id: 0,
                    server_id_len: 2,
                    nonce_len: 8,
                    key: None,
                },
                keys: KeysRecord {
                    stateless_reset_key: [0; 32],
                    token_key: [0; 32],
                },
            },
            timing: RaftTiming::default(),
        }
    }

    #[test]
    fn the_first_seed_bootstraps_and_the_others_join() {
        assert_eq!(config(&[]).start_mode(), StartMode::Bootstrap);
        assert_eq!(
            config(&["n1:7000", "n2:7000"]).start_mode(),
            StartMode::Bootstrap
        );
        assert_eq!(
            config(&["n2:7000", "n1:7000", "n3:7000"]).start_mode(),
            StartMode::Join(vec!["n2:7000".into(), "n3:7000".into()])
        );
        assert!(config(&[]).validate().is_ok());
        let mut bad = config(&[]);
        bad.voters = 2;
        assert!(bad.validate().is_err());
    }
}
