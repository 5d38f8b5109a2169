//! `quicmq-raft`: the cluster state of quicmq, replicated with Raft.
//!
//! - [`ClusterState`] (in [`state`]) is the replicated state machine:
//!   members with their QUIC-LB server IDs, routes, retained messages,
//!   persistent sessions and cluster keys. It is sans-IO: [`Command`]s go
//!   in, [`CommandResponse`]s and [`StateChange`]s come out.
//! - [`store`] keeps the Raft log, vote and snapshots in sled
//!   ([`store::LogStore`], [`store::StateMachineStore`]).
//! - [`network`] is openraft's transport over tonic gRPC (the `Raft`
//!   service of `cluster.proto`): a client per peer and the server side.
//! - [`ClusterNode`] ties them together for the broker: start (bootstrap,
//!   join or restart), propose commands from any node (followers pass them
//!   to the leader), read the state, follow its changes, and serve the
//!   `Admin` and `ClusterWatch` services.
//!
//! ```
//! use quicmq_raft::{ClusterState, Command, command::RetainOp};
//!
//! let mut state = ClusterState::default();
//! let mut changes = Vec::new();
//! state.apply(&Command::Retain(vec![RetainOp::Delete { topic: "a".into() }]), &mut changes);
//! assert!(state.retained().is_empty());
//! ```

use std::io::Cursor;

use serde::{Deserialize, Serialize};

pub mod cluster;
pub mod codec;
pub mod command;
pub mod error;
pub mod network;
pub mod state;
pub mod store;

pub use cluster::{ClusterConfig, ClusterNode, RaftTiming, StartMode};
pub use command::{Command, CommandResponse};
pub use error::ClusterError;
pub use state::{ClusterState, StateChange};

/// openraft node ID: chosen by the operator (`--node-id`), never 0.
pub type NodeId = u64;

/// What openraft keeps about each member: where to reach its gRPC
/// services. Everything else about a member lives in [`ClusterState`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberNode {
    /// `HOST:PORT` of the member's gRPC server.
    pub grpc_addr: String,
}

impl std::fmt::Display for MemberNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.grpc_addr)
    }
}

openraft::declare_raft_types!(
    /// The openraft type configuration of quicmq's one Raft group.
    pub TypeConfig:
        D = Command,
        R = CommandResponse,
        NodeId = NodeId,
        Node = MemberNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
        Responder = openraft::impls::OneshotResponder<TypeConfig>,
);

/// The openraft handle of this crate's type configuration.
pub type Raft = openraft::Raft<TypeConfig>;
