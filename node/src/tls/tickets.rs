//! TLS session tickets sealed with the cluster's ticket keys, so that a
//! ticket issued by one node resumes the session on any node.
//!
//! The keys live in `ClusterState` (the leader adds one per ticket
//! lifetime, see [`quicmq_raft::state::next_ticket_key_due`]); every node
//! keeps a [`TicketKeyRing`] in step with them and hands rustls a
//! [`ClusterTicketer`]. A ticket is
//!
//! ```text
//! version (1) = 1 | key ID (4, big endian) | nonce (12) | AES-256-GCM(session) + tag (16)
//! ```
//!
//! with the first five octets as associated data, so the opener picks the
//! key by ID and a ticket cannot be moved to another key.

use std::sync::{Arc, RwLock};

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use quicmq_raft::command::TicketKeyRecord;
use quicmq_raft::state::ticket_key_accepted_until;

use super::HomeSessionStore;
use crate::broker::now_ms;
use crate::metrics::{TLS_TICKETS_ISSUED, TLS_TICKETS_OPENED, TLS_TICKETS_REFUSED};

/// Ticket format version.
const VERSION: u8 = 1;
/// Octets before the nonce: version and key ID.
const HEADER_LEN: usize = 5;
/// AES-GCM tag length.
const TAG_LEN: usize = 16;
/// Lifetime announced before the cluster has any key (no ticket is issued
/// then anyway).
const DEFAULT_LIFETIME_SECS: u32 = 12 * 60 * 60;

struct RingKey {
    id: u32,
    key: LessSafeKey,
    /// `None`: the newest key, accepted while it is.
    accepted_until_ms: Option<u64>,
    lifetime_ms: u64,
}

/// The ticket keys a node holds, newest last; replaced as a whole when the
/// cluster's keys change.
///
/// ```
/// use quicmq_node::tls::TicketKeyRing;
/// use quicmq_raft::command::TicketKeyRecord;
/// let ring = TicketKeyRing::new();
/// assert!(ring.seal(b"session").is_none(), "no key yet");
/// ring.set(&[TicketKeyRecord { id: 1, key: [7; 32], sealing_from_ms: 0, lifetime_ms: 60_000 }]);
/// let ticket = ring.seal(b"session").unwrap();
/// assert_eq!(ring.open(&ticket, 1).unwrap(), b"session");
/// ```
#[derive(Default)]
pub struct TicketKeyRing {
    keys: RwLock<Vec<RingKey>>,
}

impl std::fmt::Debug for TicketKeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ids: Vec<u32> = self.read().iter().map(|k| k.id).collect();
        f.debug_struct("TicketKeyRing")
            .field("key_ids", &ids)
            .finish()
    }
}

impl TicketKeyRing {
    /// An empty ring: no tickets are issued until [`TicketKeyRing::set`].
    pub fn new() -> Arc<TicketKeyRing> {
        Arc::new(TicketKeyRing::default())
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Vec<RingKey>> {
        self.keys.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Replaces the keys with the cluster's (oldest first).
    pub fn set(&self, records: &[TicketKeyRecord]) {
        let keys = records
            .iter()
            .enumerate()
            .filter_map(|(i, r)| {
                let key = UnboundKey::new(&AES_256_GCM, &r.key).ok()?;
                Some(RingKey {
                    id: r.id,
                    key: LessSafeKey::new(key),
                    accepted_until_ms: ticket_key_accepted_until(records, i),
                    lifetime_ms: r.lifetime_ms,
                })
            })
            .collect();
        *self.keys.write().unwrap_or_else(|p| p.into_inner()) = keys;
    }

    /// IDs of the keys held, oldest first.
    pub fn key_ids(&self) -> Vec<u32> {
        self.read().iter().map(|k| k.id).collect()
    }

    /// Ticket lifetime of the newest key, seconds.
    pub fn lifetime_secs(&self) -> u32 {
        self.read().last().map_or(DEFAULT_LIFETIME_SECS, |k| {
            u32::try_from(k.lifetime_ms / 1000).unwrap_or(u32::MAX)
        })
    }

    /// Seals `plain` with the newest key; `None` without keys.
    pub fn seal(&self, plain: &[u8]) -> Option<Vec<u8>> {
        let keys = self.read();
        let newest = keys.last()?;
        let mut nonce = [0u8; NONCE_LEN];
        SystemRandom::new().fill(&mut nonce).ok()?;
        let mut ticket = Vec::with_capacity(HEADER_LEN + NONCE_LEN + plain.len() + TAG_LEN);
        ticket.push(VERSION);
        ticket.extend_from_slice(&newest.id.to_be_bytes());
        ticket.extend_from_slice(&nonce);
        let mut body = plain.to_vec();
        newest
            .key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(&ticket[..HEADER_LEN]),
                &mut body,
            )
            .ok()?;
        ticket.extend_from_slice(&body);
        Some(ticket)
    }

    /// Opens a ticket sealed by any node with a key still accepted at
    /// `now_ms`.
    ///
    /// # Errors
    ///
    /// Why the ticket was refused (a metric label).
    pub fn open(&self, ticket: &[u8], now_ms: u64) -> Result<Vec<u8>, TicketRefused> {
        if ticket.len() < HEADER_LEN + NONCE_LEN + TAG_LEN || ticket[0] != VERSION {
            return Err(TicketRefused::Malformed);
        }
        let id = u32::from_be_bytes([ticket[1], ticket[2], ticket[3], ticket[4]]);
        let keys = self.read();
        let key = keys
            .iter()
            .find(|k| k.id == id)
            .ok_or(TicketRefused::UnknownKey)?;
        if key.accepted_until_ms.is_some_and(|until| until <= now_ms) {
            return Err(TicketRefused::Expired);
        }
        let (header, rest) = ticket.split_at(HEADER_LEN);
        let (nonce, sealed) = rest.split_at(NONCE_LEN);
        let nonce =
            Nonce::try_assume_unique_for_key(nonce).map_err(|_| TicketRefused::Malformed)?;
        let mut body = sealed.to_vec();
        let plain = key
            .key
            .open_in_place(nonce, Aad::from(header), &mut body)
            .map_err(|_| TicketRefused::Forged)?;
        let len = plain.len();
        body.truncate(len);
        Ok(body)
    }
}

/// Why a ticket was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TicketRefused {
    /// Too short or an unknown format version.
    #[error("malformed ticket")]
    Malformed,
    /// Sealed with a key this node does not hold (dropped, or from another
    /// cluster).
    #[error("unknown ticket key")]
    UnknownKey,
    /// Its key is no longer accepted.
    #[error("ticket key expired")]
    Expired,
    /// Authentication failed.
    #[error("ticket does not authenticate")]
    Forged,
}

impl TicketRefused {
    fn label(self) -> &'static str {
        match self {
            TicketRefused::Malformed => "malformed",
            TicketRefused::UnknownKey => "unknown_key",
            TicketRefused::Expired => "expired",
            TicketRefused::Forged => "forged",
        }
    }
}

/// Opens a cluster ticket with `ring`, counting the outcome.
pub(super) fn open_cluster_ticket(ring: &TicketKeyRing, ticket: &[u8]) -> Option<Vec<u8>> {
    match ring.open(ticket, now_ms()) {
        Ok(plain) => {
            metrics::counter!(TLS_TICKETS_OPENED).increment(1);
            Some(plain)
        }
        Err(e) => {
            metrics::counter!(TLS_TICKETS_REFUSED, "reason" => e.label()).increment(1);
            tracing::debug!("TLS session ticket refused: {e}");
            None
        }
    }
}

/// rustls' ticket producer over a [`TicketKeyRing`]: what one node seals,
/// every node of the cluster opens. With a [`HomeSessionStore`], it also
/// resumes the node-local sessions of that store (without their 0-RTT: a
/// connection served with this ticketer never accepts early data).
#[derive(Debug, Clone)]
pub struct ClusterTicketer {
    ring: Arc<TicketKeyRing>,
    home: Option<Arc<HomeSessionStore>>,
}

impl ClusterTicketer {
    /// A ticketer sealing with `ring`'s keys.
    pub fn new(ring: Arc<TicketKeyRing>) -> ClusterTicketer {
        ClusterTicketer { ring, home: None }
    }

    /// A ticketer sealing with `ring`'s keys that also opens the tickets of
    /// `home`'s sessions.
    pub fn with_home(ring: Arc<TicketKeyRing>, home: Arc<HomeSessionStore>) -> ClusterTicketer {
        ClusterTicketer {
            ring,
            home: Some(home),
        }
    }
}

impl rustls::server::ProducesTickets for ClusterTicketer {
    fn enabled(&self) -> bool {
        true
    }

    fn lifetime(&self) -> u32 {
        self.ring.lifetime_secs()
    }

    fn encrypt(&self, plain: &[u8]) -> Option<Vec<u8>> {
        let ticket = self.ring.seal(plain);
        if ticket.is_some() {
            metrics::counter!(TLS_TICKETS_ISSUED).increment(1);
        }
        ticket
    }

    fn decrypt(&self, cipher: &[u8]) -> Option<Vec<u8>> {
        if let Some(session) = self.home.as_ref().and_then(|h| h.take_local(cipher)) {
            return Some(session);
        }
        open_cluster_ticket(&self.ring, cipher)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: u32, from: u64) -> TicketKeyRecord {
        TicketKeyRecord {
            id,
            key: [id as u8; 32],
            sealing_from_ms: from,
            lifetime_ms: 1_000,
        }
    }

    #[test]
    fn a_ticket_sealed_on_one_node_opens_on_another() {
        let a = TicketKeyRing::new();
        let b = TicketKeyRing::new();
        a.set(&[record(1, 0)]);
        b.set(&[record(1, 0)]);
        let ticket = a.seal(b"resumption secret").unwrap();
        assert_eq!(&ticket[1..5], &1u32.to_be_bytes(), "key ID in clear");
        assert_eq!(b.open(&ticket, 20).unwrap(), b"resumption secret");
        assert_ne!(
            a.seal(b"resumption secret").unwrap(),
            ticket,
            "fresh nonce per ticket"
        );
    }

    #[test]
    fn after_rotation_old_tickets_open_for_one_lifetime() {
        let ring = TicketKeyRing::new();
        ring.set(&[record(1, 0)]);
        let old = ring.seal(b"s").unwrap();
        ring.set(&[record(1, 0), record(2, 1_000)]);
        let new = ring.seal(b"s").unwrap();
        assert_eq!(&new[1..5], &2u32.to_be_bytes(), "the newest key seals");
        assert_eq!(ring.open(&old, 1_999).unwrap(), b"s");
        assert_eq!(ring.open(&old, 2_000), Err(TicketRefused::Expired));
        assert_eq!(ring.open(&new, 50_000).unwrap(), b"s", "newest: no end");
        ring.set(&[record(2, 1_000)]);
        assert_eq!(ring.open(&old, 1_500), Err(TicketRefused::UnknownKey));
    }

    #[test]
    fn garbage_and_tampered_tickets_are_refused() {
        let ring = TicketKeyRing::new();
        ring.set(&[record(1, 0)]);
        assert_eq!(ring.open(b"", 0), Err(TicketRefused::Malformed));
        assert_eq!(ring.open(&[2; 64], 0), Err(TicketRefused::Malformed));
        let ticket = ring.seal(b"secret").unwrap();
        for i in 0..ticket.len() {
            let mut t = ticket.clone();
            t[i] ^= 1;
            assert!(ring.open(&t, 0).is_err(), "flipped octet {i}");
        }
        let other = TicketKeyRing::new();
        other.set(&[TicketKeyRecord {
            key: [9; 32],
            ..record(1, 0)
        }]);
        assert_eq!(other.open(&ticket, 0), Err(TicketRefused::Forged));
    }
}
