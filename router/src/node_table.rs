//! The nodes a router forwards to, their health, and rendezvous hashing
//! over the live ones (sans-IO apart from atomics).
//!
//! A table is immutable once built, apart from each node's health; when the
//! cluster's membership changes the router builds a new table (carrying the
//! health of nodes that stay) and swaps it in whole.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use quicmq_proto::quic_lb::ServerId;

/// What a node may be sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admission {
    /// Takes new connections and keeps its own (an `ACTIVE` member, or a
    /// node of a static table).
    Active,
    /// Keeps its connections but takes no new ones (a member that is
    /// joining or leaving).
    Draining,
    /// Gone for good (a `LEFT` member): never probed, never alive, so
    /// packets for its connection IDs get Stateless Resets.
    Gone,
}

impl Admission {
    /// Label for the admin API.
    pub fn label(self) -> &'static str {
        match self {
            Admission::Active => "active",
            Admission::Draining => "draining",
            Admission::Gone => "gone",
        }
    }
}

/// A node to put in a table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeSpec {
    /// QUIC-LB server ID.
    pub server_id: ServerId,
    /// Cluster node ID (0: not known, in a static table).
    pub node_id: u64,
    /// Routed port; `None` when the node has none (or it is gone).
    pub routed_addr: Option<SocketAddr>,
    /// What the node may be sent.
    pub admission: Admission,
}

/// One node as the router knows it.
#[derive(Debug)]
pub struct NodeEntry {
    /// The node's QUIC-LB server ID.
    pub server_id: ServerId,
    /// Cluster node ID (0 in a static table).
    pub node_id: u64,
    /// Its routed port (PROXY v2 datagrams); `None`: never reachable.
    pub routed_addr: Option<SocketAddr>,
    /// What the node may be sent.
    pub admission: Admission,
    /// Label for metrics and logs (the server ID in hex).
    pub label: String,
    alive: AtomicBool,
    /// Last probe answer, milliseconds since the router started (0: never).
    last_answer_ms: AtomicU64,
    seed: u64,
}

impl NodeEntry {
    /// Whether health probes say the node is alive.
    pub fn is_alive(&self) -> bool {
        self.alive.load(Ordering::Relaxed)
    }

    /// Record the health verdict; returns whether it changed.
    pub fn set_alive(&self, alive: bool) -> bool {
        self.alive.swap(alive, Ordering::Relaxed) != alive
    }

    /// Alive, reachable and taking new connections: a candidate for new
    /// handshakes.
    pub fn takes_new_connections(&self) -> bool {
        self.admission == Admission::Active && self.routed_addr.is_some() && self.is_alive()
    }

    /// Whether the router probes this node (it has a routed port and is
    /// not gone).
    pub fn is_probed(&self) -> bool {
        self.routed_addr.is_some() && self.admission != Admission::Gone
    }

    /// The node answered a probe at `now_ms`.
    pub fn record_answer(&self, now_ms: u64) {
        self.last_answer_ms.store(now_ms.max(1), Ordering::Relaxed);
    }

    /// When the node last answered a probe (0: never).
    pub fn last_answer_ms(&self) -> u64 {
        self.last_answer_ms.load(Ordering::Relaxed)
    }
}

/// The node table: fixed membership, changing health.
#[derive(Debug, Default)]
pub struct NodeTable {
    nodes: Vec<NodeEntry>,
    by_server_id: HashMap<ServerId, usize>,
}

/// Two nodes with one server ID.
#[derive(Debug, thiserror::Error)]
#[error("server ID {0} is given to two nodes")]
pub struct DuplicateServerId(pub ServerId);

impl NodeTable {
    /// A static table of `(server ID, routed address)`, every node
    /// [`Admission::Active`]; every node starts dead until a health probe
    /// answers.
    pub fn new(nodes: Vec<(ServerId, SocketAddr)>) -> Result<NodeTable, DuplicateServerId> {
        let specs = nodes
            .into_iter()
            .map(|(server_id, routed_addr)| NodeSpec {
                server_id,
                node_id: 0,
                routed_addr: Some(routed_addr),
                admission: Admission::Active,
            })
            .collect();
        NodeTable::from_specs(specs, None)
    }

    /// A table of `specs`. A node that is in `previous` with the same
    /// routed address keeps its health (so a membership change resets no
    /// live connection); every other node starts dead until a probe
    /// answers.
    pub fn from_specs(
        specs: Vec<NodeSpec>,
        previous: Option<&NodeTable>,
    ) -> Result<NodeTable, DuplicateServerId> {
        let mut table = NodeTable::default();
        for spec in specs {
            if table.by_server_id.contains_key(&spec.server_id) {
                return Err(DuplicateServerId(spec.server_id));
            }
            let (alive, last) = previous
                .and_then(|p| p.by_server_id(&spec.server_id))
                .filter(|(_, old)| {
                    old.routed_addr == spec.routed_addr && spec.admission != Admission::Gone
                })
                .map_or((false, 0), |(_, old)| {
                    (old.is_alive(), old.last_answer_ms())
                });
            table.by_server_id.insert(spec.server_id, table.nodes.len());
            table.nodes.push(NodeEntry {
                label: spec.server_id.to_string(),
                seed: stable_hash(&spec.server_id, 0x9e37_79b9_7f4a_7c15),
                server_id: spec.server_id,
                node_id: spec.node_id,
                routed_addr: spec.routed_addr,
                admission: spec.admission,
                alive: AtomicBool::new(alive),
                last_answer_ms: AtomicU64::new(last),
            });
        }
        Ok(table)
    }

    /// All nodes, in index order.
    pub fn nodes(&self) -> &[NodeEntry] {
        &self.nodes
    }

    /// The node with this server ID.
    pub fn by_server_id(&self, server_id: &ServerId) -> Option<(usize, &NodeEntry)> {
        let i = *self.by_server_id.get(server_id)?;
        Some((i, &self.nodes[i]))
    }

    /// The probed node whose routed address is `addr`.
    pub fn by_routed_addr(&self, addr: SocketAddr) -> Option<&NodeEntry> {
        self.nodes
            .iter()
            .find(|n| n.is_probed() && n.routed_addr == Some(addr))
    }

    /// Rendezvous (highest random weight) choice among the nodes that take
    /// new connections: every router picks the same node for the same key,
    /// and only keys of a node that dies move.
    pub fn rendezvous(&self, key: &[u8]) -> Option<usize> {
        self.nodes
            .iter()
            .enumerate()
            .filter(|(_, n)| n.takes_new_connections())
            .max_by_key(|(_, n)| stable_hash(key, n.seed))
            .map(|(i, _)| i)
    }
}

/// A hash that is the same in every router process and version: FNV-1a
/// over the bytes, seeded, then the splitmix64 finaliser.
pub fn stable_hash(bytes: &[u8], seed: u64) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64 ^ seed;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(n: u8) -> NodeTable {
        let nodes = (1..=n)
            .map(|i| {
                (
                    ServerId::new(&[0, i]).unwrap(),
                    format!("127.0.0.1:{}", 10_000 + u16::from(i))
                        .parse()
                        .unwrap(),
                )
            })
            .collect();
        NodeTable::new(nodes).unwrap()
    }

    #[test]
    fn rendezvous_spreads_and_moves_only_the_dead_nodes_keys() {
        let t = table(3);
        assert_eq!(t.rendezvous(b"x"), None, "no live node yet");
        for n in t.nodes() {
            n.set_alive(true);
        }
        let keys: Vec<[u8; 8]> = (0u64..3000).map(|k| k.to_be_bytes()).collect();
        let before: Vec<usize> = keys.iter().map(|k| t.rendezvous(k).unwrap()).collect();
        let mut counts = [0; 3];
        for i in &before {
            counts[*i] += 1;
        }
        assert!(
            counts.iter().all(|c| *c > 800),
            "spread over all nodes: {counts:?}"
        );
        t.nodes()[1].set_alive(false);
        for (k, was) in keys.iter().zip(&before) {
            let now = t.rendezvous(k).unwrap();
            if *was != 1 {
                assert_eq!(now, *was, "keys of live nodes stay");
            } else {
                assert_ne!(now, 1);
            }
        }
    }

    #[test]
    fn lookups_and_duplicates() {
        let t = table(2);
        let sid = ServerId::new(&[0, 2]).unwrap();
        assert_eq!(t.by_server_id(&sid).unwrap().0, 1);
        assert!(t
            .by_routed_addr("127.0.0.1:10001".parse().unwrap())
            .is_some());
        let dup = NodeTable::new(vec![
            (sid, "127.0.0.1:1".parse().unwrap()),
            (sid, "127.0.0.1:2".parse().unwrap()),
        ]);
        assert!(dup.is_err());
        assert!(t.nodes()[0].set_alive(true));
        assert!(!t.nodes()[0].set_alive(true));
    }

    fn spec(sid: u8, port: Option<u16>, admission: Admission) -> NodeSpec {
        NodeSpec {
            server_id: ServerId::new(&[0, sid]).unwrap(),
            node_id: u64::from(sid),
            routed_addr: port.map(|p| SocketAddr::from(([127, 0, 0, 1], p))),
            admission,
        }
    }

    #[test]
    fn a_new_table_keeps_the_health_of_nodes_that_stay() {
        let old = NodeTable::from_specs(
            vec![
                spec(1, Some(1), Admission::Active),
                spec(2, Some(2), Admission::Active),
                spec(3, Some(3), Admission::Active),
            ],
            None,
        )
        .unwrap();
        for n in old.nodes() {
            n.record_answer(50);
            n.set_alive(true);
        }
        let new = NodeTable::from_specs(
            vec![
                spec(1, Some(1), Admission::Active),
                spec(2, Some(20), Admission::Active), // moved: probed anew
                spec(3, Some(3), Admission::Gone),    // left
                spec(4, Some(4), Admission::Active),  // joined
            ],
            Some(&old),
        )
        .unwrap();
        let alive: Vec<bool> = new.nodes().iter().map(NodeEntry::is_alive).collect();
        assert_eq!(alive, [true, false, false, false]);
        assert_eq!(new.nodes()[0].last_answer_ms(), 50);
        assert_eq!(new.nodes()[1].last_answer_ms(), 0);
        assert!(!new.nodes()[2].is_probed(), "gone nodes are not probed");
        assert!(new.by_routed_addr("127.0.0.1:3".parse().unwrap()).is_none());
        assert!(new
            .by_routed_addr("127.0.0.1:20".parse().unwrap())
            .is_some());
    }

    #[test]
    fn only_active_live_nodes_take_new_connections() {
        let t = NodeTable::from_specs(
            vec![
                spec(1, Some(1), Admission::Draining),
                spec(2, Some(2), Admission::Active),
                spec(3, None, Admission::Active),
            ],
            None,
        )
        .unwrap();
        for n in t.nodes() {
            n.set_alive(true);
        }
        assert!(!t.nodes()[0].takes_new_connections());
        for k in 0..100u32 {
            assert_ne!(t.rendezvous(&k.to_be_bytes()), Some(0), "draining");
        }
        assert!(!t.nodes()[2].takes_new_connections(), "no routed port");
        assert!(!t.nodes()[2].is_probed());
        t.nodes()[1].set_alive(false);
        assert_eq!(t.rendezvous(b"k"), None);
    }

    #[test]
    fn stable_hash_is_stable() {
        // Routers of every build must agree: pin a value.
        assert_eq!(stable_hash(b"quicmq", 0), stable_hash(b"quicmq", 0));
        assert_ne!(stable_hash(b"quicmq", 0), stable_hash(b"quicmq", 1));
        assert_eq!(stable_hash(b"quicmq", 7), 0xc2d2_81f2_7722_1636);
    }
}
