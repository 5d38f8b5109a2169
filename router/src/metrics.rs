//! Router metric names and pre-registered handles (no label lookups per
//! datagram).

use metrics::{Counter, Gauge};

use crate::node_table::NodeTable;
use crate::steering::DropReason;

/// Datagrams forwarded to a node, by `node`.
pub const FORWARDED_PACKETS: &str = "quicmq_router_forwarded_packets_total";
/// Bytes forwarded to a node (without envelope), by `node`.
pub const FORWARDED_BYTES: &str = "quicmq_router_forwarded_bytes_total";
/// Datagrams from nodes sent on to clients.
pub const RETURNED_PACKETS: &str = "quicmq_router_returned_packets_total";
/// Datagrams dropped, by `reason`.
pub const DROPPED: &str = "quicmq_router_dropped_packets_total";
/// Stateless resets sent for dead nodes.
pub const RESETS: &str = "quicmq_router_stateless_resets_total";
/// Datagrams whose node was chosen by rendezvous hashing.
pub const HASHED: &str = "quicmq_router_fallback_hashed_total";
/// Initials steered by the server ID in their token.
pub const TOKEN_STEERED: &str = "quicmq_router_token_steered_total";
/// 1 if the node answers health probes, by `node`.
pub const NODE_ALIVE: &str = "quicmq_router_node_alive";

const REASONS: [DropReason; 7] = [
    DropReason::Unparseable,
    DropReason::CidTooLong,
    DropReason::VersionNegotiation,
    DropReason::UnknownServerId,
    DropReason::DeadNode,
    DropReason::NoLiveNode,
    DropReason::Oversize,
];

/// Counters of one node.
pub struct NodeCounters {
    /// Datagrams forwarded.
    pub packets: Counter,
    /// Bytes forwarded.
    pub bytes: Counter,
    /// Alive gauge.
    pub alive: Gauge,
}

/// Every handle the hot path uses.
pub struct RouterMetrics {
    /// Per node, by table index.
    pub nodes: Vec<NodeCounters>,
    dropped: Vec<Counter>,
    /// Resets sent.
    pub resets: Counter,
    /// Hash-steered datagrams.
    pub hashed: Counter,
    /// Token-steered Initials.
    pub token_steered: Counter,
    /// Datagrams returned to clients.
    pub returned: Counter,
    /// Datagrams from nodes that could not be unwrapped.
    pub bad_returns: Counter,
}

impl RouterMetrics {
    /// Register the handles for `table`.
    pub fn new(table: &NodeTable) -> RouterMetrics {
        RouterMetrics {
            nodes: table
                .nodes()
                .iter()
                .map(|n| NodeCounters {
                    packets: metrics::counter!(FORWARDED_PACKETS, "node" => n.label.clone()),
                    bytes: metrics::counter!(FORWARDED_BYTES, "node" => n.label.clone()),
                    alive: metrics::gauge!(NODE_ALIVE, "node" => n.label.clone()),
                })
                .collect(),
            dropped: REASONS
                .iter()
                .map(|r| metrics::counter!(DROPPED, "reason" => r.label()))
                .collect(),
            resets: metrics::counter!(RESETS),
            hashed: metrics::counter!(HASHED),
            token_steered: metrics::counter!(TOKEN_STEERED),
            returned: metrics::counter!(RETURNED_PACKETS),
            bad_returns: metrics::counter!(DROPPED, "reason" => "bad_envelope"),
        }
    }

    /// Count a dropped datagram.
    pub fn dropped(&self, reason: DropReason) {
        if let Some(i) = REASONS.iter().position(|r| *r == reason) {
            self.dropped[i].increment(1);
        }
    }
}
