//! Where a client's token-steered handshake went, so the packets that
//! follow its Initial under the same client-chosen connection ID go there
//! too (sans-IO).
//!
//! A returning client's Initial carries a token naming the node that holds
//! its resumption state, and [`Steering`](crate::steering::Steering) sends
//! it there. The 0-RTT packets the client sends next carry no token, only
//! the same client-chosen DCID, which rendezvous hashing would send to any
//! node: that node cannot decrypt them and the client's early data (its
//! CONNECT) would wait for a retransmission in 1-RTT. This table remembers
//! (client address, DCID) → server ID for a few seconds, just for the
//! handshake's first round trip; once the node answers, the client uses the
//! node's routable connection IDs and this table no longer matters.
//!
//! It is bounded: when full, expired entries are dropped first and, if none
//! is, nothing new is remembered (those clients' 0-RTT packets are hashed
//! and recovered by QUIC). It is the router's only per-client state, and
//! losing it (a router restart) costs at most one 0-RTT flight.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;

use quicmq_proto::quic_lb::ServerId;

/// The key: the client's address and its chosen DCID (both, so a
/// third party that learned a DCID cannot steer another address).
type Key = (SocketAddr, Vec<u8>);

/// Recent token-steered handshakes, bounded in count and age.
///
/// ```
/// use quicmq_proto::quic_lb::ServerId;
/// use quicmq_router::affinity::HandshakeAffinity;
///
/// let mut affinity = HandshakeAffinity::new(1024, 5_000);
/// let client = "192.0.2.7:40000".parse().unwrap();
/// let node = ServerId::new(&[0, 2]).unwrap();
/// affinity.record(client, &[1; 8], node, 0);
/// assert_eq!(affinity.lookup(client, &[1; 8], 4_999), Some(node));
/// assert_eq!(affinity.lookup(client, &[1; 8], 5_000), None, "expired");
/// ```
#[derive(Debug)]
pub struct HandshakeAffinity {
    entries: HashMap<Key, (ServerId, u64)>,
    /// Insertion order with each insertion's time: expiry walks it from
    /// the front.
    order: VecDeque<(Key, u64)>,
    capacity: usize,
    ttl_ms: u64,
}

impl HandshakeAffinity {
    /// At most `capacity` handshakes, each remembered for `ttl_ms`.
    pub fn new(capacity: usize, ttl_ms: u64) -> HandshakeAffinity {
        HandshakeAffinity {
            entries: HashMap::new(),
            order: VecDeque::new(),
            capacity,
            ttl_ms,
        }
    }

    /// Handshakes remembered (expired ones included until the next
    /// [`record`](Self::record)).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Remembers that `client`'s handshake under `dcid` went to
    /// `server_id` at `now_ms`. Returns `false` when the table is full of
    /// live entries and nothing was remembered.
    pub fn record(
        &mut self,
        client: SocketAddr,
        dcid: &[u8],
        server_id: ServerId,
        now_ms: u64,
    ) -> bool {
        self.expire(now_ms);
        let key = (client, dcid.to_vec());
        if !self.entries.contains_key(&key) && self.entries.len() >= self.capacity {
            return false;
        }
        self.entries.insert(key.clone(), (server_id, now_ms));
        self.order.push_back((key, now_ms));
        true
    }

    /// The node `client`'s handshake under `dcid` went to, if that was
    /// less than the TTL ago.
    pub fn lookup(&self, client: SocketAddr, dcid: &[u8], now_ms: u64) -> Option<ServerId> {
        let (server_id, at) = self.entries.get(&(client, dcid.to_vec()))?;
        (now_ms.saturating_sub(*at) < self.ttl_ms).then_some(*server_id)
    }

    /// Drops entries older than the TTL.
    fn expire(&mut self, now_ms: u64) {
        while let Some((_, at)) = self.order.front() {
            if now_ms.saturating_sub(*at) < self.ttl_ms {
                break;
            }
            let Some((key, at)) = self.order.pop_front() else {
                break;
            };
            // A later record of the same key keeps it alive.
            if self.entries.get(&key).is_some_and(|(_, t)| *t == at) {
                self.entries.remove(&key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sid(n: u8) -> ServerId {
        ServerId::new(&[0, n]).unwrap()
    }

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([192, 0, 2, 1], port))
    }

    #[test]
    fn the_address_and_the_dcid_must_both_match() {
        let mut a = HandshakeAffinity::new(8, 1_000);
        assert!(a.record(addr(1), &[7; 8], sid(2), 10));
        assert_eq!(a.lookup(addr(1), &[7; 8], 20), Some(sid(2)));
        assert_eq!(a.lookup(addr(2), &[7; 8], 20), None);
        assert_eq!(a.lookup(addr(1), &[8; 8], 20), None);
    }

    #[test]
    fn a_full_table_drops_expired_entries_first_and_then_refuses() {
        let mut a = HandshakeAffinity::new(2, 100);
        assert!(a.record(addr(1), &[1], sid(1), 0));
        assert!(a.record(addr(2), &[2], sid(1), 50));
        assert!(!a.record(addr(3), &[3], sid(1), 60), "full of live entries");
        assert_eq!(a.lookup(addr(3), &[3], 60), None);
        // At 100 the first has expired and makes room.
        assert!(a.record(addr(3), &[3], sid(3), 100));
        assert_eq!(a.len(), 2);
        assert_eq!(a.lookup(addr(1), &[1], 100), None);
        assert_eq!(a.lookup(addr(3), &[3], 100), Some(sid(3)));
    }

    #[test]
    fn recording_again_renews_and_repoints() {
        let mut a = HandshakeAffinity::new(4, 100);
        a.record(addr(1), &[1], sid(1), 0);
        a.record(addr(1), &[1], sid(2), 90);
        // The first insertion's expiry must not drop the renewed entry.
        a.record(addr(9), &[9], sid(9), 150);
        assert_eq!(a.lookup(addr(1), &[1], 150), Some(sid(2)));
        a.record(addr(9), &[9], sid(9), 190);
        assert_eq!(a.lookup(addr(1), &[1], 190), None);
        assert!(a.len() <= 2);
    }
}
