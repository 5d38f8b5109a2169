//! Router metric names and pre-registered handles (no label lookups per
//! datagram).

use metrics::{Counter, Gauge};

use crate::node_table::{Admission, NodeTable};
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
/// 0-RTT (and other long-header) packets sent after their client's
/// token-steered Initial.
pub const AFFINITY_STEERED: &str = "quicmq_router_affinity_steered_total";
/// 1 if the node answers health probes, by `node`.
pub const NODE_ALIVE: &str = "quicmq_router_node_alive";
/// Events received on the cluster watch stream.
pub const WATCH_EVENTS: &str = "quicmq_router_watch_events_total";
/// Times the router (re)connected its cluster watch after a failure or the
/// end of a stream.
pub const WATCH_RECONNECTS: &str = "quicmq_router_watch_reconnects_total";
/// Revision (the cluster's applied Raft log index) of the node table the
/// router uses.
pub const CLUSTER_REVISION: &str = "quicmq_router_cluster_revision";
/// Nodes in the router's table, by `admission` (active, draining, gone).
pub const TABLE_NODES: &str = "quicmq_router_table_nodes";

const REASONS: [DropReason; 8] = [
    DropReason::Unparseable,
    DropReason::CidTooLong,
    DropReason::VersionNegotiation,
    DropReason::UnknownServerId,
    DropReason::DeadNode,
    DropReason::NoLiveNode,
    DropReason::Oversize,
    DropReason::NoClusterState,
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
    dropped: Vec<Counter>,
    /// Resets sent.
    pub resets: Counter,
    /// Hash-steered datagrams.
    pub hashed: Counter,
    /// Token-steered Initials.
    pub token_steered: Counter,
    /// Packets steered after their token-steered Initial.
    pub affinity_steered: Counter,
    /// Datagrams returned to clients.
    pub returned: Counter,
    /// Datagrams from nodes that could not be unwrapped.
    pub bad_returns: Counter,
    /// Watch events received.
    pub watch_events: Counter,
    /// Watch reconnections.
    pub watch_reconnects: Counter,
    /// Revision of the table in use.
    pub cluster_revision: Gauge,
}

impl Default for RouterMetrics {
    fn default() -> Self {
        RouterMetrics::new()
    }
}

impl RouterMetrics {
    /// Register the handles.
    pub fn new() -> RouterMetrics {
        RouterMetrics {
            dropped: REASONS
                .iter()
                .map(|r| metrics::counter!(DROPPED, "reason" => r.label()))
                .collect(),
            resets: metrics::counter!(RESETS),
            hashed: metrics::counter!(HASHED),
            token_steered: metrics::counter!(TOKEN_STEERED),
            affinity_steered: metrics::counter!(AFFINITY_STEERED),
            returned: metrics::counter!(RETURNED_PACKETS),
            bad_returns: metrics::counter!(DROPPED, "reason" => "bad_envelope"),
            watch_events: metrics::counter!(WATCH_EVENTS),
            watch_reconnects: metrics::counter!(WATCH_RECONNECTS),
            cluster_revision: metrics::gauge!(CLUSTER_REVISION),
        }
    }

    /// The per-node handles of `table`, by table index (registered once
    /// per table, not per datagram).
    pub fn node_counters(table: &NodeTable) -> Vec<NodeCounters> {
        table
            .nodes()
            .iter()
            .map(|n| NodeCounters {
                packets: metrics::counter!(FORWARDED_PACKETS, "node" => n.label.clone()),
                bytes: metrics::counter!(FORWARDED_BYTES, "node" => n.label.clone()),
                alive: metrics::gauge!(NODE_ALIVE, "node" => n.label.clone()),
            })
            .collect()
    }

    /// Publish the admission counts of a newly installed table.
    pub fn table_installed(table: &NodeTable) {
        for admission in [Admission::Active, Admission::Draining, Admission::Gone] {
            let count = table
                .nodes()
                .iter()
                .filter(|n| n.admission == admission)
                .count();
            metrics::gauge!(TABLE_NODES, "admission" => admission.label()).set(count as f64);
        }
    }

    /// Count a dropped datagram.
    pub fn dropped(&self, reason: DropReason) {
        if let Some(i) = REASONS.iter().position(|r| *r == reason) {
            self.dropped[i].increment(1);
        }
    }
}
