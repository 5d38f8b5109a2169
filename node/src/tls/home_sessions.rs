//! TLS sessions kept on this node for QUIC clients that come back to it:
//! the only kind with which rustls accepts 0-RTT.
//!
//! rustls allows early data only with stateful resumption (RFC 8446,
//! section 8.1: a server must be able to refuse a replayed ClientHello).
//! A client that presents a valid address-validation token was here
//! before, and routers steer it back to the node named in the token; such
//! a connection is served with a configuration whose session storage is a
//! [`HomeSessionStore`]. The tickets it hands out are random identifiers of
//! sessions stored here, with early data allowed; each is taken — and so
//! accepted with its 0-RTT data — at most once. On another node such a
//! ticket means nothing and the client does a full handshake.
//!
//! The same store also opens the cluster's tickets (a client returning with
//! a ticket from another node, or from a first connection): those resume
//! the TLS session without 0-RTT, as they are not single use.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use super::TicketKeyRing;
use crate::broker::now_ms;
use crate::metrics::{TLS_HOME_SESSIONS, TLS_HOME_SESSIONS_RESUMED, TLS_HOME_SESSIONS_STORED};

/// Sessions held at most, by default (each a few hundred octets).
pub const DEFAULT_HOME_SESSIONS: usize = 100_000;

#[derive(Default)]
struct Sessions {
    /// Ticket → (encoded session, stored at, ms).
    by_ticket: HashMap<Vec<u8>, (Vec<u8>, u64)>,
    /// Tickets in storing order: the oldest goes first when full.
    order: VecDeque<Vec<u8>>,
}

/// Node-local, single-use TLS sessions, bounded in count and age; falls
/// back to the cluster's ticket keys for tickets it does not hold.
///
/// ```
/// use quicmq_node::tls::{HomeSessionStore, TicketKeyRing};
/// use rustls::server::StoresServerSessions;
///
/// let store = HomeSessionStore::new(TicketKeyRing::new(), 10, 60_000);
/// assert!(store.put(b"ticket".to_vec(), b"session".to_vec()));
/// assert_eq!(store.take(b"ticket"), Some(b"session".to_vec()));
/// assert_eq!(store.take(b"ticket"), None, "single use");
/// ```
pub struct HomeSessionStore {
    sessions: Mutex<Sessions>,
    ring: Arc<TicketKeyRing>,
    capacity: usize,
    lifetime_ms: u64,
}

impl std::fmt::Debug for HomeSessionStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HomeSessionStore")
            .field("sessions", &self.lock().by_ticket.len())
            .field("capacity", &self.capacity)
            .finish()
    }
}

impl HomeSessionStore {
    /// At most `capacity` sessions, each kept `lifetime_ms`; tickets it
    /// does not hold are opened with `ring` (cluster tickets).
    pub fn new(ring: Arc<TicketKeyRing>, capacity: usize, lifetime_ms: u64) -> Arc<Self> {
        Arc::new(HomeSessionStore {
            sessions: Mutex::new(Sessions::default()),
            ring,
            capacity: capacity.max(1),
            lifetime_ms,
        })
    }

    fn lock(&self) -> MutexGuard<'_, Sessions> {
        self.sessions.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Removes and returns the session stored under `ticket` here, if it
    /// has not expired; cluster tickets are not looked at.
    pub fn take_local(&self, ticket: &[u8]) -> Option<Vec<u8>> {
        let mut sessions = self.lock();
        let (session, stored_at) = sessions.by_ticket.remove(ticket)?;
        metrics::gauge!(TLS_HOME_SESSIONS).set(sessions.by_ticket.len() as f64);
        drop(sessions);
        if now_ms().saturating_sub(stored_at) >= self.lifetime_ms {
            return None;
        }
        metrics::counter!(TLS_HOME_SESSIONS_RESUMED).increment(1);
        Some(session)
    }

    /// Sessions held.
    pub fn len(&self) -> usize {
        self.lock().by_ticket.len()
    }

    /// Whether no session is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl rustls::server::StoresServerSessions for HomeSessionStore {
    fn put(&self, ticket: Vec<u8>, session: Vec<u8>) -> bool {
        let now = now_ms();
        let mut sessions = self.lock();
        // Drop what expired or, if still full, the oldest. `order` may name
        // tickets already taken; those are skipped.
        while let Some(oldest) = sessions.order.front() {
            let expired = sessions
                .by_ticket
                .get(oldest)
                .is_none_or(|(_, at)| now.saturating_sub(*at) >= self.lifetime_ms);
            if !expired && sessions.by_ticket.len() < self.capacity {
                break;
            }
            if let Some(oldest) = sessions.order.pop_front() {
                sessions.by_ticket.remove(&oldest);
            }
        }
        sessions.order.push_back(ticket.clone());
        sessions.by_ticket.insert(ticket, (session, now));
        metrics::gauge!(TLS_HOME_SESSIONS).set(sessions.by_ticket.len() as f64);
        metrics::counter!(TLS_HOME_SESSIONS_STORED).increment(1);
        true
    }

    fn get(&self, ticket: &[u8]) -> Option<Vec<u8>> {
        // TLS 1.2 session IDs only; QUIC is TLS 1.3.
        let sessions = self.lock();
        let (session, stored_at) = sessions.by_ticket.get(ticket)?;
        (now_ms().saturating_sub(*stored_at) < self.lifetime_ms).then(|| session.clone())
    }

    fn take(&self, ticket: &[u8]) -> Option<Vec<u8>> {
        if let Some(session) = self.take_local(ticket) {
            return Some(session);
        }
        // A cluster ticket (from another node, or a first connection).
        super::tickets::open_cluster_ticket(&self.ring, ticket)
    }

    fn can_cache(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quicmq_raft::command::TicketKeyRecord;
    use rustls::server::StoresServerSessions;

    #[test]
    fn sessions_are_single_use_and_bounded() {
        let store = HomeSessionStore::new(TicketKeyRing::new(), 2, 60_000);
        store.put(b"a".to_vec(), b"1".to_vec());
        store.put(b"b".to_vec(), b"2".to_vec());
        store.put(b"c".to_vec(), b"3".to_vec());
        assert_eq!(store.len(), 2, "the oldest made room");
        assert_eq!(store.take(b"a"), None);
        assert_eq!(store.get(b"b"), Some(b"2".to_vec()), "get does not consume");
        assert_eq!(store.take(b"b"), Some(b"2".to_vec()));
        assert_eq!(store.take(b"b"), None, "a replay finds nothing");
        assert_eq!(store.take(b"c"), Some(b"3".to_vec()));
        assert!(store.is_empty());
    }

    #[test]
    fn expired_sessions_are_not_resumed() {
        let store = HomeSessionStore::new(TicketKeyRing::new(), 8, 0);
        store.put(b"a".to_vec(), b"1".to_vec());
        assert_eq!(store.take(b"a"), None);
        assert_eq!(store.get(b"a"), None);
    }

    #[test]
    fn cluster_tickets_open_through_the_ring() {
        let ring = TicketKeyRing::new();
        ring.set(&[TicketKeyRecord {
            id: 1,
            key: [3; 32],
            sealing_from_ms: 0,
            lifetime_ms: 60_000,
        }]);
        let ticket = ring.seal(b"cluster session").unwrap();
        let store = HomeSessionStore::new(ring, 8, 60_000);
        assert_eq!(store.take(&ticket), Some(b"cluster session".to_vec()));
        assert_eq!(store.take(b"garbage"), None);
    }
}
