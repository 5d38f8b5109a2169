//! Errors of the cluster layer.

use crate::codec::CodecError;
use crate::NodeId;

/// Why a cluster operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// The Raft store could not be opened, read or written.
    #[error("raft store: {0}")]
    Store(String),
    /// A value could not be encoded or decoded.
    #[error(transparent)]
    Codec(#[from] CodecError),
    /// No leader could be reached within the deadline: this node is cut off
    /// from the majority, or an election is going on.
    #[error("no Raft leader reachable within {0:?} (partitioned from the majority?)")]
    NoLeader(std::time::Duration),
    /// The leader (or this node) refused the request.
    #[error("{0}")]
    Refused(String),
    /// A peer could not be reached or answered with a gRPC error.
    #[error("peer {addr}: {message}")]
    Peer {
        /// The peer's address.
        addr: String,
        /// What went wrong.
        message: String,
    },
    /// Joining was refused: wrong cluster ID, address in use, ...
    #[error("join refused: {0}")]
    JoinRefused(String),
    /// The configuration is not usable.
    #[error("invalid cluster configuration: {0}")]
    Config(String),
    /// openraft stopped with a fatal error.
    #[error("raft stopped: {0}")]
    Fatal(String),
    /// This node is not (or no longer) a member.
    #[error("node {0} is not a member of the cluster")]
    NotMember(NodeId),
    /// Binding the gRPC listener failed.
    #[error("gRPC listener on {addr}: {source}")]
    Bind {
        /// The address.
        addr: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}
