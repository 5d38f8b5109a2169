//! Durable state of one node in sled: persistent sessions, their queued
//! and in-flight messages, and retained messages.
//!
//! Trees and keys:
//! - `sessions`: client ID → [`SessionRecord`]
//! - `deliveries`: client ID, `0xFF`, sequence number (u64 BE) → [`DeliveryRecord`]
//! - `sent`: same key → packet ID (u16 BE) once the delivery was sent,
//!   followed by `1` once the client received it (QoS 2, PUBREL phase)
//! - `incoming`: client ID, `0xFF`, packet ID (u16 BE) → nothing: QoS 2
//!   PUBLISHes from the client routed and not yet released
//! - `retained`: topic → [`Message`]
//!
//! `0xFF` never occurs in UTF-8, so a client ID followed by it is a prefix
//! no other client ID's keys share.

use std::path::Path;

use quicmq_proto::mqtt::QoS;
use serde::{Deserialize, Serialize};

use super::message::Message;
use super::session::Subscription;

/// Why the store failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// sled reported an error (I/O, corruption).
    #[error("data store: {0}")]
    Sled(#[from] sled::Error),
    /// A record could not be encoded or decoded.
    #[error("data store record: {0}")]
    Codec(#[from] bincode::Error),
    /// Flushing to disk failed (the cause is logged where it happened).
    #[error("data store: flushing to disk failed")]
    Flush,
}

/// What is kept of a persistent session besides its messages.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionRecord {
    /// Client identifier.
    pub client_id: String,
    /// Session expiry interval, seconds.
    pub expiry_interval: u32,
    /// Subscriptions by filter.
    pub subscriptions: Vec<(String, Subscription)>,
    /// When the client disconnected (ms since the epoch); `None` while
    /// connected.
    pub disconnected_at_ms: Option<u64>,
    /// The identity that created the session (`None`: an anonymous
    /// client); only it may resume or replace the session.
    pub identity: Option<String>,
}

/// A message waiting for (or in flight to) one persistent session.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryRecord {
    /// The message.
    pub message: Message,
    /// Delivery QoS.
    pub qos: QoS,
    /// RETAIN flag to send.
    pub retain: bool,
    /// Matching subscription identifiers.
    pub subscription_ids: Vec<u32>,
    /// Stream to deliver on.
    pub stream: u64,
}

/// A persistent session as loaded at start-up.
#[derive(Debug)]
pub struct LoadedSession {
    /// The session record.
    pub record: SessionRecord,
    /// Its deliveries by sequence number, with the packet ID of those
    /// already sent.
    pub deliveries: Vec<LoadedDelivery>,
    /// Incoming QoS 2 packet IDs not yet released by the client.
    pub incoming_qos2: Vec<u16>,
}

/// A stored delivery as loaded at start-up.
#[derive(Debug)]
pub struct LoadedDelivery {
    /// Sequence number.
    pub seq: u64,
    /// The delivery.
    pub record: DeliveryRecord,
    /// Packet ID it was sent with, if it was sent.
    pub packet_id: Option<u16>,
    /// Whether the client received it (QoS 2: only PUBREL/PUBCOMP remain).
    pub released: bool,
}

/// The node's sled database.
#[derive(Clone)]
pub struct SessionStore {
    flushes: std::sync::Arc<super::flush_group::FlushGroup>,
    sessions: sled::Tree,
    deliveries: sled::Tree,
    sent: sled::Tree,
    incoming: sled::Tree,
    retained: sled::Tree,
}

fn delivery_key(client_id: &str, seq: u64) -> Vec<u8> {
    let mut key = Vec::with_capacity(client_id.len() + 9);
    key.extend_from_slice(client_id.as_bytes());
    key.push(0xFF);
    key.extend_from_slice(&seq.to_be_bytes());
    key
}

fn client_prefix(client_id: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(client_id.len() + 1);
    key.extend_from_slice(client_id.as_bytes());
    key.push(0xFF);
    key
}

fn seq_of(key: &[u8]) -> Option<u64> {
    let tail: [u8; 8] = key.get(key.len().checked_sub(8)?..)?.try_into().ok()?;
    Some(u64::from_be_bytes(tail))
}

impl SessionStore {
    /// Open (or create) the store in `dir`.
    pub fn open(dir: &Path) -> Result<SessionStore, StoreError> {
        let db = sled::Config::new()
            .path(dir)
            .flush_every_ms(Some(200))
            .open()?;
        Ok(SessionStore {
            flushes: std::sync::Arc::new(super::flush_group::FlushGroup::new(db.clone())),
            sessions: db.open_tree("sessions")?,
            deliveries: db.open_tree("deliveries")?,
            sent: db.open_tree("sent")?,
            incoming: db.open_tree("incoming")?,
            retained: db.open_tree("retained")?,
        })
    }

    /// Write a session record.
    pub fn put_session(&self, record: &SessionRecord) -> Result<(), StoreError> {
        self.sessions
            .insert(record.client_id.as_bytes(), bincode::serialize(record)?)?;
        Ok(())
    }

    /// Remove a session and all its deliveries.
    pub fn remove_session(&self, client_id: &str) -> Result<(), StoreError> {
        self.sessions.remove(client_id.as_bytes())?;
        let prefix = client_prefix(client_id);
        for tree in [&self.deliveries, &self.sent, &self.incoming] {
            let keys: Vec<sled::IVec> =
                tree.scan_prefix(&prefix).keys().collect::<Result<_, _>>()?;
            for key in keys {
                tree.remove(key)?;
            }
        }
        Ok(())
    }

    /// Store a delivery for a persistent session.
    pub fn put_delivery(
        &self,
        client_id: &str,
        seq: u64,
        record: &DeliveryRecord,
    ) -> Result<(), StoreError> {
        self.deliveries
            .insert(delivery_key(client_id, seq), bincode::serialize(record)?)?;
        Ok(())
    }

    /// Note the packet ID a delivery was sent with.
    pub fn mark_sent(&self, client_id: &str, seq: u64, packet_id: u16) -> Result<(), StoreError> {
        self.sent
            .insert(delivery_key(client_id, seq), &packet_id.to_be_bytes())?;
        Ok(())
    }

    /// Note that the client received a QoS 2 delivery (PUBREL phase).
    pub fn mark_released(
        &self,
        client_id: &str,
        seq: u64,
        packet_id: u16,
    ) -> Result<(), StoreError> {
        let [hi, lo] = packet_id.to_be_bytes();
        self.sent
            .insert(delivery_key(client_id, seq), &[hi, lo, 1])?;
        Ok(())
    }

    /// Record or forget an incoming QoS 2 packet ID of a client.
    pub fn set_incoming(
        &self,
        client_id: &str,
        packet_id: u16,
        present: bool,
    ) -> Result<(), StoreError> {
        let mut key = client_prefix(client_id);
        key.extend_from_slice(&packet_id.to_be_bytes());
        if present {
            self.incoming.insert(key, &[])?;
        } else {
            self.incoming.remove(key)?;
        }
        Ok(())
    }

    /// Forget a finished delivery.
    pub fn remove_delivery(&self, client_id: &str, seq: u64) -> Result<(), StoreError> {
        let key = delivery_key(client_id, seq);
        self.deliveries.remove(&key)?;
        self.sent.remove(&key)?;
        Ok(())
    }

    /// Set a retained message (an empty payload is stored as a removal).
    pub fn put_retained(&self, message: &Message) -> Result<(), StoreError> {
        if message.payload.is_empty() {
            self.retained.remove(message.topic.as_bytes())?;
        } else {
            self.retained
                .insert(message.topic.as_bytes(), bincode::serialize(message)?)?;
        }
        Ok(())
    }

    /// Load every persistent session with its deliveries.
    pub fn load_sessions(&self) -> Result<Vec<LoadedSession>, StoreError> {
        let mut out = Vec::new();
        for item in self.sessions.iter() {
            let (_, value) = item?;
            let record: SessionRecord = bincode::deserialize(&value)?;
            let mut deliveries = Vec::new();
            for item in self
                .deliveries
                .scan_prefix(client_prefix(&record.client_id))
            {
                let (key, value) = item?;
                let Some(seq) = seq_of(&key) else { continue };
                let delivery: DeliveryRecord = bincode::deserialize(&value)?;
                let sent = self.sent.get(&key)?;
                let packet_id = sent
                    .as_ref()
                    .and_then(|v| v.get(..2))
                    .and_then(|v| <[u8; 2]>::try_from(v).ok())
                    .map(u16::from_be_bytes);
                let released = sent.as_ref().and_then(|v| v.get(2)) == Some(&1);
                deliveries.push(LoadedDelivery {
                    seq,
                    record: delivery,
                    packet_id,
                    released,
                });
            }
            let mut incoming_qos2 = Vec::new();
            for item in self.incoming.scan_prefix(client_prefix(&record.client_id)) {
                let (key, _) = item?;
                let tail = key.len().checked_sub(2).and_then(|at| key.get(at..));
                if let Some(id) = tail.and_then(|t| <[u8; 2]>::try_from(t).ok()) {
                    incoming_qos2.push(u16::from_be_bytes(id));
                }
            }
            out.push(LoadedSession {
                record,
                deliveries,
                incoming_qos2,
            });
        }
        Ok(out)
    }

    /// Load every retained message.
    pub fn load_retained(&self) -> Result<Vec<Message>, StoreError> {
        self.retained
            .iter()
            .map(|item| {
                let (_, value) = item?;
                Ok(bincode::deserialize(&value)?)
            })
            .collect()
    }

    /// Make everything written so far durable.
    pub async fn flush(&self) -> Result<(), StoreError> {
        match self.flushes.flushed().await {
            Ok(true) => Ok(()),
            _ => Err(StoreError::Flush),
        }
    }

    /// Learns, without waiting here, when everything written so far is
    /// durable (`false`: the flush failed); one flush serves many callers.
    /// Call from within the tokio runtime.
    pub fn flushed(&self) -> tokio::sync::oneshot::Receiver<bool> {
        self.flushes.flushed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use quicmq_proto::mqtt::{Properties, SubscriptionOptions};

    fn message(topic: &str, payload: &'static [u8]) -> Message {
        Message {
            topic: topic.into(),
            payload: Bytes::from_static(payload),
            qos: QoS::AtLeastOnce,
            retain: true,
            properties: Properties::default(),
            expires_at_ms: None,
            publisher: Some("p".into()),
        }
    }

    #[test]
    fn sessions_and_deliveries_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = SessionStore::open(dir.path()).unwrap();
            let record = SessionRecord {
                client_id: "c1".into(),
                expiry_interval: 60,
                subscriptions: vec![(
                    "a/#".into(),
                    Subscription {
                        options: SubscriptionOptions::new(QoS::AtLeastOnce),
                        identifier: Some(3),
                        stream: 0,
                        reads_all_under: None,
                    },
                )],
                disconnected_at_ms: Some(5),
                identity: Some("alice".into()),
            };
            store.put_session(&record).unwrap();
            // A client ID that is a prefix of another must not see its keys.
            store
                .put_session(&SessionRecord {
                    client_id: "c".into(),
                    ..record
                })
                .unwrap();
            let d = DeliveryRecord {
                message: message("a/b", b"1"),
                qos: QoS::AtLeastOnce,
                retain: false,
                subscription_ids: vec![3],
                stream: 0,
            };
            store.put_delivery("c1", 1, &d).unwrap();
            store.put_delivery("c1", 2, &d).unwrap();
            store.put_delivery("c1", 3, &d).unwrap();
            store.mark_sent("c1", 1, 77).unwrap();
            store.put_delivery("c1", 4, &d).unwrap();
            store.mark_released("c1", 4, 78).unwrap();
            store.set_incoming("c1", 5, true).unwrap();
            store.set_incoming("c1", 6, true).unwrap();
            store.set_incoming("c1", 6, false).unwrap();
            store.remove_delivery("c1", 2).unwrap();
            store.put_retained(&message("r/1", b"x")).unwrap();
            store.put_retained(&message("r/2", b"y")).unwrap();
            store.put_retained(&message("r/2", b"")).unwrap();
            store.sessions.flush().unwrap();
        }
        // The dropped store's sled lock is let go of asynchronously.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let store = loop {
            match SessionStore::open(dir.path()) {
                Ok(store) => break store,
                Err(_) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                Err(e) => panic!("reopen: {e}"),
            }
        };
        let mut sessions = store.load_sessions().unwrap();
        sessions.sort_by(|a, b| a.record.client_id.cmp(&b.record.client_id));
        assert_eq!(sessions.len(), 2);
        assert!(sessions[0].deliveries.is_empty());
        let seqs: Vec<(u64, Option<u16>, bool)> = sessions[1]
            .deliveries
            .iter()
            .map(|d| (d.seq, d.packet_id, d.released))
            .collect();
        assert_eq!(
            seqs,
            vec![(1, Some(77), false), (3, None, false), (4, Some(78), true)]
        );
        assert_eq!(sessions[1].incoming_qos2, vec![5]);
        let retained = store.load_retained().unwrap();
        assert_eq!(retained.len(), 1);
        assert_eq!(retained[0].topic, "r/1");
        store.remove_session("c1").unwrap();
        let sessions = store.load_sessions().unwrap();
        assert_eq!(sessions.len(), 1);
        assert!(store.deliveries.is_empty());
        assert!(store.incoming.is_empty());
    }
}
