//! The nodes a router forwards to, their health, and rendezvous hashing
//! over the live ones (sans-IO apart from atomics).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};

use quicmq_proto::quic_lb::ServerId;

/// One node as the router knows it.
#[derive(Debug)]
pub struct NodeEntry {
    /// The node's QUIC-LB server ID.
    pub server_id: ServerId,
    /// Its routed port (PROXY v2 datagrams).
    pub routed_addr: SocketAddr,
    /// Label for metrics and logs (the server ID in hex).
    pub label: String,
    alive: AtomicBool,
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
    /// A table of `(server ID, routed address)`; every node starts dead
    /// until a health probe answers.
    pub fn new(nodes: Vec<(ServerId, SocketAddr)>) -> Result<NodeTable, DuplicateServerId> {
        let mut table = NodeTable::default();
        for (server_id, routed_addr) in nodes {
            if table.by_server_id.contains_key(&server_id) {
                return Err(DuplicateServerId(server_id));
            }
            table.by_server_id.insert(server_id, table.nodes.len());
            table.nodes.push(NodeEntry {
                label: server_id.to_string(),
                seed: stable_hash(&server_id, 0x9e37_79b9_7f4a_7c15),
                server_id,
                routed_addr,
                alive: AtomicBool::new(false),
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

    /// The node whose routed address is `addr`.
    pub fn by_routed_addr(&self, addr: SocketAddr) -> Option<&NodeEntry> {
        self.nodes.iter().find(|n| n.routed_addr == addr)
    }

    /// Rendezvous (highest random weight) choice among live nodes: every
    /// router picks the same node for the same key, and only keys of a node
    /// that dies move.
    pub fn rendezvous(&self, key: &[u8]) -> Option<usize> {
        self.nodes
            .iter()
            .enumerate()
            .filter(|(_, n)| n.is_alive())
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

    #[test]
    fn stable_hash_is_stable() {
        // Routers of every build must agree: pin a value.
        assert_eq!(stable_hash(b"quicmq", 0), stable_hash(b"quicmq", 0));
        assert_ne!(stable_hash(b"quicmq", 0), stable_hash(b"quicmq", 1));
        assert_eq!(stable_hash(b"quicmq", 7), 0xc2d2_81f2_7722_1636);
    }
}
