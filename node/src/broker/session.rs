//! The MQTT session state machine (sans-IO).
//!
//! A [`Session`] outlives connections: it holds the subscriptions, the
//! messages waiting for the client, the QoS 1/2 messages in flight and the
//! QoS 2 packet identifiers the client is still releasing. The async
//! connection shell feeds it events (a delivery, an acknowledgement, a
//! reconnect) and sends what [`Session::poll_transmit`] hands out; the
//! durable-storage shell applies what [`Session::take_store_ops`] hands out.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::Arc;

use quicmq_proto::mqtt::{Publish, QoS, SubscriptionOptions};
use serde::{Deserialize, Serialize};

use super::message::Message;
use super::queue_budget::QueueBudget;

/// What to do when a session's queue is full.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum QueueDropPolicy {
    /// Drop the oldest queued message to make room for the new one.
    DropOldest,
    /// Drop the new message.
    DropNewest,
}

/// Limits that apply to every session.
#[derive(Clone, Debug)]
pub struct SessionLimits {
    /// Messages (queued, not yet in flight) kept per session.
    pub max_queued: usize,
    /// Bytes of messages queued (not yet in flight) per session; 0: no
    /// limit.
    pub max_queued_bytes: usize,
    /// Which message goes when the queue is full.
    pub drop_policy: QueueDropPolicy,
    /// The node's budget for bytes held by sessions, queued and in flight
    /// (`None`: not counted).
    pub budget: Option<Arc<QueueBudget>>,
}

/// One subscription of a session.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subscription {
    /// Options from SUBSCRIBE.
    pub options: SubscriptionOptions,
    /// Subscription identifier (5.0), if given.
    pub identifier: Option<u32>,
    /// The stream the SUBSCRIBE came in on (QUIC); deliveries go there.
    pub stream: u64,
    /// The generation of the ACL under which the session may read every
    /// topic of the filter ([`Acl::reads_all`]): its deliveries need no
    /// read check while that ACL holds. Set by the broker as the filter
    /// enters the subscription tree; `None`: check each delivery.
    ///
    /// [`Acl::reads_all`]: crate::auth::acl::Acl::reads_all
    #[serde(skip)]
    pub reads_all_under: Option<u64>,
}

/// A message on its way to one session.
#[derive(Clone, Debug)]
pub struct Delivery {
    /// Session-local sequence number; the key in durable storage.
    pub seq: u64,
    /// The shared message.
    pub message: Arc<Message>,
    /// QoS of this delivery (the lower of message and subscription QoS).
    pub qos: QoS,
    /// RETAIN flag to send.
    pub retain: bool,
    /// Identifiers of the matching subscriptions.
    pub subscription_ids: Vec<u32>,
    /// Stream to deliver on.
    pub stream: u64,
    /// Packet identifier, once sent with QoS 1 or 2.
    pub packet_id: Option<u16>,
}

/// A packet the session wants sent to its client.
// PUBLISH is the common variant: boxing it would cost an allocation each.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Transmit {
    /// A PUBLISH on the given stream.
    Publish {
        /// Stream to send it on.
        stream: u64,
        /// The packet.
        publish: Publish,
    },
    /// A PUBREL for an outgoing QoS 2 message the client has received.
    PubRel {
        /// Stream to send it on.
        stream: u64,
        /// Packet identifier.
        packet_id: u16,
    },
}

/// A change durable storage must make for a persistent session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreOp {
    /// The delivery with this sequence number was sent with a packet ID.
    MarkSent {
        /// Sequence number.
        seq: u64,
        /// Packet identifier it was sent with.
        packet_id: u16,
    },
    /// The client received the QoS 2 delivery (PUBREC); only its PUBREL
    /// is outstanding now.
    MarkReleased {
        /// Sequence number.
        seq: u64,
        /// Packet identifier.
        packet_id: u16,
    },
    /// The delivery is finished (acknowledged, expired or dropped).
    Remove {
        /// Sequence number.
        seq: u64,
    },
    /// A QoS 2 PUBLISH from the client was routed; until its PUBREL, a
    /// resend of it must not be routed again.
    AddIncoming {
        /// Packet identifier.
        packet_id: u16,
    },
    /// The client released an incoming QoS 2 packet identifier (PUBREL).
    RemoveIncoming {
        /// Packet identifier.
        packet_id: u16,
    },
}

/// What happened to a delivery handed to [`Session::enqueue`].
#[derive(Debug, PartialEq, Eq)]
pub enum EnqueueOutcome {
    /// Queued for transmission.
    Queued,
    /// The queue was full (in messages or bytes); these deliveries (the new
    /// one, or the oldest queued ones, by policy) were dropped.
    DroppedQueueFull {
        /// Sequence numbers of the dropped deliveries.
        seqs: Vec<u64>,
    },
    /// The node's budget for queued bytes is spent: the new delivery was
    /// dropped.
    DroppedNodeBudget {
        /// Its sequence number.
        seq: u64,
    },
    /// QoS 0 while the client is offline: not kept.
    DroppedOffline,
}

/// Why an acknowledgement from the client was not accepted.
#[derive(Debug, PartialEq, Eq)]
pub enum AckError {
    /// No message in flight has this packet identifier (or it waits for
    /// another kind of acknowledgement).
    UnknownPacketId(u16),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum InflightState {
    AwaitingPubAck,
    AwaitingPubRec,
}

#[derive(Debug)]
struct Inflight {
    delivery: Delivery,
    state: InflightState,
}

/// An MQTT session: state that survives the connection (if the session
/// expiry interval allows).
#[derive(Debug)]
pub struct Session {
    client_id: Arc<str>,
    expiry_interval: u32,
    subscriptions: BTreeMap<String, Subscription>,
    queue: VecDeque<Delivery>,
    inflight: HashMap<u16, Inflight>,
    /// Packet ID → (stream, sequence number) of QoS 2 deliveries in the
    /// PUBREL phase.
    releasing: BTreeMap<u16, (u64, u64)>,
    incoming_qos2: HashSet<u16>,
    next_packet_id: u16,
    send_quota: usize,
    connected: bool,
    limits: SessionLimits,
    store_ops: Vec<StoreOp>,
    /// Bytes of the messages in `queue`.
    queued_bytes: usize,
    /// Bytes of the messages in `queue` and `inflight`, reserved from
    /// `limits.budget`.
    held_bytes: usize,
}

impl Drop for Session {
    /// An ended session gives its bytes back to the node's budget.
    fn drop(&mut self) {
        if let Some(budget) = &self.limits.budget {
            budget.release(self.held_bytes);
        }
    }
}

impl Session {
    /// A new, empty, disconnected session.
    pub fn new(client_id: Arc<str>, expiry_interval: u32, limits: SessionLimits) -> Session {
        Session {
            client_id,
            expiry_interval,
            subscriptions: BTreeMap::new(),
            queue: VecDeque::new(),
            inflight: HashMap::new(),
            releasing: BTreeMap::new(),
            incoming_qos2: HashSet::new(),
            next_packet_id: 1,
            send_quota: usize::from(u16::MAX),
            connected: false,
            limits,
            store_ops: Vec::new(),
            queued_bytes: 0,
            held_bytes: 0,
        }
    }

    /// Bytes of the messages queued (not yet in flight).
    pub fn queued_bytes(&self) -> usize {
        self.queued_bytes
    }

    /// Bytes of the messages queued and in flight.
    pub fn held_bytes(&self) -> usize {
        self.held_bytes
    }

    /// Takes the oldest queued delivery off the queue (its bytes stay held).
    fn pop_queued(&mut self) -> Option<Delivery> {
        let delivery = self.queue.pop_front()?;
        self.queued_bytes = self
            .queued_bytes
            .saturating_sub(delivery.message.held_bytes());
        Some(delivery)
    }

    /// Puts a delivery back at the head of the queue (its bytes are held).
    fn push_queued_front(&mut self, delivery: Delivery) {
        self.queued_bytes += delivery.message.held_bytes();
        self.queue.push_front(delivery);
    }

    /// A delivery has left the session for good: its bytes go back.
    fn release(&mut self, delivery: &Delivery) {
        let bytes = delivery.message.held_bytes();
        self.held_bytes = self.held_bytes.saturating_sub(bytes);
        if let Some(budget) = &self.limits.budget {
            budget.release(bytes);
        }
    }

    /// Whether one more message of `bytes` would overfill the queue.
    fn queue_full_for(&self, bytes: usize) -> bool {
        self.queue.len() >= self.limits.max_queued
            || (self.limits.max_queued_bytes > 0
                && self.queued_bytes + bytes > self.limits.max_queued_bytes)
    }

    /// The client identifier.
    pub fn client_id(&self) -> &Arc<str> {
        &self.client_id
    }

    /// Session expiry interval in seconds (0 = ends with the connection,
    /// `u32::MAX` = never expires).
    pub fn expiry_interval(&self) -> u32 {
        self.expiry_interval
    }

    /// Change the session expiry interval (CONNECT or DISCONNECT).
    pub fn set_expiry_interval(&mut self, secs: u32) {
        self.expiry_interval = secs;
    }

    /// Whether the session outlives its connection.
    pub fn is_persistent(&self) -> bool {
        self.expiry_interval > 0
    }

    /// The subscriptions, by topic filter.
    pub fn subscriptions(&self) -> &BTreeMap<String, Subscription> {
        &self.subscriptions
    }

    /// Add or replace a subscription; returns whether it existed.
    pub fn subscribe(&mut self, filter: String, subscription: Subscription) -> bool {
        self.subscriptions.insert(filter, subscription).is_some()
    }

    /// Remove a subscription; returns whether it existed.
    pub fn unsubscribe(&mut self, filter: &str) -> bool {
        self.subscriptions.remove(filter).is_some()
    }

    /// Messages queued and not yet sent.
    pub fn queued_len(&self) -> usize {
        self.queue.len()
    }

    /// QoS 1/2 messages sent and not yet acknowledged (PUBREL phase included).
    pub fn inflight_len(&self) -> usize {
        self.inflight.len() + self.releasing.len()
    }

    /// Whether a client is attached.
    pub fn is_connected(&self) -> bool {
        self.connected
    }

    /// A client attached. `receive_maximum` is the client's (how many
    /// QoS 1/2 messages it accepts unacknowledged). Returns what must be
    /// sent again first: unacknowledged PUBLISHes with DUP set (in the
    /// order they were first sent), then pending PUBRELs.
    pub fn resume(&mut self, receive_maximum: u16, now_ms: u64) -> Vec<Transmit> {
        self.connected = true;
        self.send_quota = usize::from(receive_maximum.max(1));
        let mut inflight: Vec<Inflight> = self.inflight.drain().map(|(_, i)| i).collect();
        inflight.sort_by_key(|i| i.delivery.seq);
        // Messages in the PUBREL phase count against the client's Receive
        // Maximum; what does not fit waits at the head of the queue and goes
        // out (with its packet ID and DUP) as acknowledgements free room.
        let room = self.send_quota.saturating_sub(self.releasing.len());
        let waiting = inflight.split_off(room.min(inflight.len()));
        for i in waiting.into_iter().rev() {
            self.push_queued_front(i.delivery);
        }
        let mut out = Vec::with_capacity(inflight.len() + self.releasing.len());
        for i in inflight {
            out.push(Transmit::Publish {
                stream: i.delivery.stream,
                publish: i.delivery.message.to_publish(
                    i.delivery.qos,
                    i.delivery.retain,
                    i.delivery.packet_id,
                    true,
                    &i.delivery.subscription_ids,
                    now_ms,
                ),
            });
            if let Some(id) = i.delivery.packet_id {
                self.inflight.insert(id, i);
            }
        }
        out.extend(self.releasing.keys().map(|&packet_id| Transmit::PubRel {
            stream: 0,
            packet_id,
        }));
        out
    }

    /// The client detached. Queued and in-flight messages stay; QoS 2 packet identifiers the client has not released yet are kept,
    /// so a PUBLISH it sends again after reconnecting is not routed twice.
    pub fn detach(&mut self) {
        self.connected = false;
    }

    /// Queue a delivery for the client, within the session's limits (in
    /// messages and bytes; the drop policy says what goes when full) and
    /// the node's budget (a delivery that does not fit is dropped).
    pub fn enqueue(&mut self, delivery: Delivery) -> EnqueueOutcome {
        if delivery.qos == QoS::AtMostOnce && !self.connected {
            return EnqueueOutcome::DroppedOffline;
        }
        let bytes = delivery.message.held_bytes();
        let mut dropped = Vec::new();
        if self.queue_full_for(bytes) {
            if self.limits.drop_policy == QueueDropPolicy::DropOldest {
                while self.queue_full_for(bytes) {
                    let Some(old) = self.pop_queued() else { break };
                    self.release(&old);
                    self.store_ops.push(StoreOp::Remove { seq: old.seq });
                    dropped.push(old.seq);
                }
            }
            // Drop newest, or a message larger than the whole queue.
            if self.queue_full_for(bytes) {
                self.store_ops.push(StoreOp::Remove { seq: delivery.seq });
                dropped.push(delivery.seq);
                return EnqueueOutcome::DroppedQueueFull { seqs: dropped };
            }
        }
        if let Some(budget) = &self.limits.budget {
            if !budget.try_reserve(bytes) {
                self.store_ops.push(StoreOp::Remove { seq: delivery.seq });
                return EnqueueOutcome::DroppedNodeBudget { seq: delivery.seq };
            }
        }
        self.held_bytes += bytes;
        self.queued_bytes += bytes;
        self.queue.push_back(delivery);
        if dropped.is_empty() {
            EnqueueOutcome::Queued
        } else {
            EnqueueOutcome::DroppedQueueFull { seqs: dropped }
        }
    }

    /// Restore a delivery loaded from durable storage: one with a packet ID
    /// goes back in flight (resent with DUP on resume), one the client
    /// already received (QoS 2, `released`) waits for its PUBCOMP, others
    /// are queued.
    pub fn restore(&mut self, delivery: Delivery, released: bool) {
        if !(released && delivery.packet_id.is_some()) {
            // Held in memory from now on, whatever the budget says.
            let bytes = delivery.message.held_bytes();
            self.held_bytes += bytes;
            if let Some(budget) = &self.limits.budget {
                budget.force_reserve(bytes);
            }
        }
        match delivery.packet_id {
            Some(packet_id) if released => {
                self.next_packet_id = packet_id.wrapping_add(1).max(1);
                self.releasing
                    .insert(packet_id, (delivery.stream, delivery.seq));
            }
            Some(packet_id) if delivery.qos != QoS::AtMostOnce => {
                let state = if delivery.qos == QoS::AtLeastOnce {
                    InflightState::AwaitingPubAck
                } else {
                    InflightState::AwaitingPubRec
                };
                self.next_packet_id = packet_id.wrapping_add(1).max(1);
                self.inflight
                    .insert(packet_id, Inflight { delivery, state });
            }
            _ => {
                self.queued_bytes += delivery.message.held_bytes();
                self.queue.push_back(delivery);
            }
        }
    }

    /// Restore an incoming QoS 2 packet identifier not yet released.
    pub fn restore_incoming_qos2(&mut self, packet_id: u16) {
        self.incoming_qos2.insert(packet_id);
    }

    /// The next packet to send, if the client is connected and the send
    /// window (the client's Receive Maximum) allows. Expired messages are
    /// dropped here; the count of them is added to `expired`.
    pub fn poll_transmit(&mut self, now_ms: u64, expired: &mut u64) -> Option<Transmit> {
        if !self.connected {
            return None;
        }
        loop {
            let front = self.queue.front()?;
            if front.message.is_expired(now_ms) {
                if let Some(d) = self.pop_queued() {
                    *expired += 1;
                    self.release(&d);
                    self.store_ops.push(StoreOp::Remove { seq: d.seq });
                }
                continue;
            }
            if front.qos != QoS::AtMostOnce
                && self.inflight.len() + self.releasing.len() >= self.send_quota
            {
                return None;
            }
            let mut delivery = self.pop_queued()?;
            if delivery.qos == QoS::AtMostOnce {
                self.release(&delivery);
                let publish = delivery.message.to_publish(
                    QoS::AtMostOnce,
                    delivery.retain,
                    None,
                    false,
                    &delivery.subscription_ids,
                    now_ms,
                );
                self.store_ops.push(StoreOp::Remove { seq: delivery.seq });
                return Some(Transmit::Publish {
                    stream: delivery.stream,
                    publish,
                });
            }
            // Sent before (it waited after a resume): same packet ID, DUP.
            let resent = delivery.packet_id.is_some();
            let packet_id = match delivery.packet_id {
                Some(id) => id,
                None => self.allocate_packet_id()?,
            };
            delivery.packet_id = Some(packet_id);
            let publish = delivery.message.to_publish(
                delivery.qos,
                delivery.retain,
                Some(packet_id),
                resent,
                &delivery.subscription_ids,
                now_ms,
            );
            let state = if delivery.qos == QoS::AtLeastOnce {
                InflightState::AwaitingPubAck
            } else {
                InflightState::AwaitingPubRec
            };
            if !resent {
                self.store_ops.push(StoreOp::MarkSent {
                    seq: delivery.seq,
                    packet_id,
                });
            }
            let stream = delivery.stream;
            self.inflight
                .insert(packet_id, Inflight { delivery, state });
            return Some(Transmit::Publish { stream, publish });
        }
    }

    fn allocate_packet_id(&mut self) -> Option<u16> {
        for _ in 0..=u16::MAX {
            let id = self.next_packet_id;
            self.next_packet_id = self.next_packet_id.wrapping_add(1).max(1);
            let waiting = self.queue.iter().any(|d| d.packet_id == Some(id));
            if !self.inflight.contains_key(&id) && !self.releasing.contains_key(&id) && !waiting {
                return Some(id);
            }
        }
        None
    }

    /// PUBACK from the client: the QoS 1 message is delivered.
    pub fn on_puback(&mut self, packet_id: u16) -> Result<(), AckError> {
        match self.inflight.get(&packet_id) {
            Some(i) if i.state == InflightState::AwaitingPubAck => {
                if let Some(i) = self.inflight.remove(&packet_id) {
                    self.release(&i.delivery);
                    self.store_ops.push(StoreOp::Remove {
                        seq: i.delivery.seq,
                    });
                }
                Ok(())
            }
            _ => Err(AckError::UnknownPacketId(packet_id)),
        }
    }

    /// PUBREC from the client: the QoS 2 message is received; returns the
    /// PUBREL to send, or nothing when the client refused the message
    /// (`refused`: reason code ≥ 0x80), which ends it.
    pub fn on_pubrec(
        &mut self,
        packet_id: u16,
        refused: bool,
    ) -> Result<Option<Transmit>, AckError> {
        match self.inflight.get(&packet_id) {
            Some(i) if i.state == InflightState::AwaitingPubRec => {}
            _ => return Err(AckError::UnknownPacketId(packet_id)),
        }
        let Some(inflight) = self.inflight.remove(&packet_id) else {
            return Err(AckError::UnknownPacketId(packet_id));
        };
        // The message itself is no longer needed: only its packet ID waits
        // for PUBCOMP.
        self.release(&inflight.delivery);
        let seq = inflight.delivery.seq;
        if refused {
            self.store_ops.push(StoreOp::Remove { seq });
            return Ok(None);
        }
        self.store_ops
            .push(StoreOp::MarkReleased { seq, packet_id });
        let stream = inflight.delivery.stream;
        self.releasing.insert(packet_id, (stream, seq));
        Ok(Some(Transmit::PubRel { stream, packet_id }))
    }

    /// PUBCOMP from the client: the QoS 2 exchange is complete.
    pub fn on_pubcomp(&mut self, packet_id: u16) -> Result<(), AckError> {
        let (_, seq) = self
            .releasing
            .remove(&packet_id)
            .ok_or(AckError::UnknownPacketId(packet_id))?;
        self.store_ops.push(StoreOp::Remove { seq });
        Ok(())
    }

    /// An incoming QoS 2 PUBLISH: returns `true` the first time a packet
    /// identifier is seen (route the message), `false` for a duplicate
    /// (acknowledge again, do not route again).
    pub fn on_incoming_qos2(&mut self, packet_id: u16) -> bool {
        let fresh = self.incoming_qos2.insert(packet_id);
        if fresh {
            self.store_ops.push(StoreOp::AddIncoming { packet_id });
        }
        fresh
    }

    /// QoS 2 PUBLISHes received and not yet released by PUBREL.
    pub fn incoming_qos2_len(&self) -> usize {
        self.incoming_qos2.len()
    }

    /// PUBREL from the client: returns whether the packet identifier was
    /// known.
    pub fn on_pubrel(&mut self, packet_id: u16) -> bool {
        let known = self.incoming_qos2.remove(&packet_id);
        if known {
            self.store_ops.push(StoreOp::RemoveIncoming { packet_id });
        }
        known
    }

    /// Changes durable storage must apply, oldest first.
    pub fn take_store_ops(&mut self) -> Vec<StoreOp> {
        std::mem::take(&mut self.store_ops)
    }

    /// Sequence numbers of every delivery the session still holds.
    pub fn held_sequence_numbers(&self) -> impl Iterator<Item = u64> + '_ {
        self.queue
            .iter()
            .map(|d| d.seq)
            .chain(self.inflight.values().map(|i| i.delivery.seq))
            .chain(self.releasing.values().map(|(_, seq)| *seq))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use quicmq_proto::mqtt::Properties;

    fn limits(max_queued: usize, drop_policy: QueueDropPolicy) -> SessionLimits {
        SessionLimits {
            max_queued,
            max_queued_bytes: 0,
            drop_policy,
            budget: None,
        }
    }

    /// A delivery with a payload of `payload` bytes.
    fn sized(seq: u64, payload: usize) -> Delivery {
        let mut d = delivery(seq, QoS::AtLeastOnce);
        d.message = Arc::new(Message {
            payload: Bytes::from(vec![0u8; payload]),
            ..(*d.message).clone()
        });
        d
    }

    fn delivery(seq: u64, qos: QoS) -> Delivery {
        Delivery {
            seq,
            message: Arc::new(Message {
                topic: format!("t/{seq}"),
                payload: Bytes::from(seq.to_string()),
                qos,
                retain: false,
                properties: Properties::default(),
                expires_at_ms: None,
                publisher: None,
            }),
            qos,
            retain: false,
            subscription_ids: vec![],
            stream: 0,
            packet_id: None,
        }
    }

    fn session() -> Session {
        Session::new(Arc::from("c"), 60, limits(100, QueueDropPolicy::DropNewest))
    }

    fn publish_of(t: Transmit) -> Publish {
        match t {
            Transmit::Publish { publish, .. } => publish,
            other => panic!("expected publish, got {other:?}"),
        }
    }

    #[test]
    fn nothing_is_sent_while_disconnected() {
        let mut s = session();
        assert_eq!(
            s.enqueue(delivery(1, QoS::AtLeastOnce)),
            EnqueueOutcome::Queued
        );
        assert_eq!(s.poll_transmit(0, &mut 0), None);
        assert_eq!(
            s.enqueue(delivery(2, QoS::AtMostOnce)),
            EnqueueOutcome::DroppedOffline
        );
        s.resume(10, 0);
        let p = publish_of(s.poll_transmit(0, &mut 0).unwrap());
        assert_eq!(p.topic, "t/1");
        assert_eq!(p.packet_id, Some(1));
        assert!(!p.dup);
        assert_eq!(s.poll_transmit(0, &mut 0), None);
    }

    #[test]
    fn receive_maximum_limits_inflight() {
        let mut s = session();
        s.resume(2, 0);
        for seq in 1..=4 {
            s.enqueue(delivery(seq, QoS::AtLeastOnce));
        }
        assert!(s.poll_transmit(0, &mut 0).is_some());
        assert!(s.poll_transmit(0, &mut 0).is_some());
        assert_eq!(s.poll_transmit(0, &mut 0), None, "window of 2 is full");
        assert_eq!(s.inflight_len(), 2);
        s.on_puback(1).unwrap();
        let p = publish_of(s.poll_transmit(0, &mut 0).unwrap());
        assert_eq!(p.topic, "t/3");
        assert_eq!(s.on_puback(1), Err(AckError::UnknownPacketId(1)));
    }

    #[test]
    fn qos0_is_not_limited_by_the_window() {
        let mut s = session();
        s.resume(1, 0);
        s.enqueue(delivery(1, QoS::AtLeastOnce));
        s.enqueue(delivery(2, QoS::AtMostOnce));
        s.enqueue(delivery(3, QoS::AtLeastOnce));
        assert_eq!(
            publish_of(s.poll_transmit(0, &mut 0).unwrap()).packet_id,
            Some(1)
        );
        // The window of 1 is full, but QoS 0 does not count against it.
        let p = publish_of(s.poll_transmit(0, &mut 0).unwrap());
        assert_eq!((p.qos, p.packet_id), (QoS::AtMostOnce, None));
        assert_eq!(s.poll_transmit(0, &mut 0), None, "the next QoS 1 waits");
        s.on_puback(1).unwrap();
        assert_eq!(publish_of(s.poll_transmit(0, &mut 0).unwrap()).topic, "t/3");
    }

    #[test]
    fn resume_resends_unacknowledged_with_dup_in_order() {
        let mut s = session();
        s.resume(10, 0);
        for seq in 1..=3 {
            s.enqueue(delivery(seq, QoS::AtLeastOnce));
            s.poll_transmit(0, &mut 0).unwrap();
        }
        s.on_puback(2).unwrap();
        s.detach();
        let again = s.resume(10, 0);
        let topics: Vec<(String, bool, Option<u16>)> = again
            .into_iter()
            .map(publish_of)
            .map(|p| (p.topic, p.dup, p.packet_id))
            .collect();
        assert_eq!(
            topics,
            vec![("t/1".into(), true, Some(1)), ("t/3".into(), true, Some(3))]
        );
    }

    #[test]
    fn qos2_outgoing_flow() {
        let mut s = session();
        s.resume(10, 0);
        s.enqueue(delivery(7, QoS::ExactlyOnce));
        let p = publish_of(s.poll_transmit(0, &mut 0).unwrap());
        let id = p.packet_id.unwrap();
        assert_eq!(s.on_puback(id), Err(AckError::UnknownPacketId(id)));
        let rel = s.on_pubrec(id, false).unwrap();
        assert_eq!(
            rel,
            Some(Transmit::PubRel {
                stream: 0,
                packet_id: id
            })
        );
        // Released messages are not published again on resume; the PUBREL is.
        s.detach();
        assert_eq!(
            s.resume(10, 0),
            vec![Transmit::PubRel {
                stream: 0,
                packet_id: id
            }]
        );
        s.on_pubcomp(id).unwrap();
        assert_eq!(s.inflight_len(), 0);
        assert_eq!(s.on_pubcomp(id), Err(AckError::UnknownPacketId(id)));
    }

    #[test]
    fn refused_pubrec_ends_the_message() {
        let mut s = session();
        s.resume(10, 0);
        s.enqueue(delivery(1, QoS::ExactlyOnce));
        s.poll_transmit(0, &mut 0).unwrap();
        assert_eq!(s.on_pubrec(1, true), Ok(None));
        assert_eq!(s.inflight_len(), 0);
    }

    #[test]
    fn full_queue_drops_by_policy() {
        let mut newest = Session::new(Arc::from("a"), 60, limits(2, QueueDropPolicy::DropNewest));
        let mut oldest = Session::new(Arc::from("b"), 60, limits(2, QueueDropPolicy::DropOldest));
        for s in [&mut newest, &mut oldest] {
            s.enqueue(delivery(1, QoS::AtLeastOnce));
            s.enqueue(delivery(2, QoS::AtLeastOnce));
        }
        assert_eq!(
            newest.enqueue(delivery(3, QoS::AtLeastOnce)),
            EnqueueOutcome::DroppedQueueFull { seqs: vec![3] }
        );
        assert_eq!(
            oldest.enqueue(delivery(3, QoS::AtLeastOnce)),
            EnqueueOutcome::DroppedQueueFull { seqs: vec![1] }
        );
        assert_eq!(
            oldest.held_sequence_numbers().collect::<Vec<_>>(),
            vec![2, 3]
        );
        assert_eq!(oldest.take_store_ops(), vec![StoreOp::Remove { seq: 1 }]);
    }

    #[test]
    fn expired_messages_are_dropped_not_sent() {
        let mut s = session();
        s.resume(10, 0);
        let mut d = delivery(1, QoS::AtLeastOnce);
        Arc::make_mut(&mut d.message).expires_at_ms = Some(100);
        s.enqueue(d);
        s.enqueue(delivery(2, QoS::AtLeastOnce));
        let mut expired = 0;
        let p = publish_of(s.poll_transmit(100, &mut expired).unwrap());
        assert_eq!(expired, 1);
        assert_eq!(p.topic, "t/2");
        assert_eq!(
            s.take_store_ops(),
            vec![
                StoreOp::Remove { seq: 1 },
                StoreOp::MarkSent {
                    seq: 2,
                    packet_id: 1
                }
            ]
        );
    }

    #[test]
    fn packet_ids_skip_ids_in_use_and_zero() {
        let mut s = session();
        s.resume(u16::MAX, 0);
        s.next_packet_id = u16::MAX;
        s.enqueue(delivery(1, QoS::AtLeastOnce));
        s.enqueue(delivery(2, QoS::AtLeastOnce));
        let a = publish_of(s.poll_transmit(0, &mut 0).unwrap()).packet_id;
        let b = publish_of(s.poll_transmit(0, &mut 0).unwrap()).packet_id;
        assert_eq!((a, b), (Some(u16::MAX), Some(1)));
    }

    #[test]
    fn restored_deliveries_resume_in_flight() {
        let mut s = session();
        let mut sent = delivery(4, QoS::AtLeastOnce);
        sent.packet_id = Some(9);
        s.restore(sent, false);
        s.restore(delivery(5, QoS::AtLeastOnce), false);
        let again = s.resume(10, 0);
        assert_eq!(again.len(), 1);
        let p = publish_of(again.into_iter().next().unwrap());
        assert_eq!((p.packet_id, p.dup), (Some(9), true));
        let next = publish_of(s.poll_transmit(0, &mut 0).unwrap());
        assert_eq!(next.packet_id, Some(10));
    }

    #[test]
    fn incoming_qos2_dedups_until_pubrel() {
        let mut s = session();
        assert!(s.on_incoming_qos2(5));
        assert!(!s.on_incoming_qos2(5));
        assert!(s.on_pubrel(5));
        assert!(!s.on_pubrel(5));
        assert!(s.on_incoming_qos2(5));
    }

    #[test]
    fn qos2_in_the_pubrel_phase_counts_against_receive_maximum() {
        let mut s = session();
        s.resume(1, 0);
        s.enqueue(delivery(1, QoS::ExactlyOnce));
        s.enqueue(delivery(2, QoS::ExactlyOnce));
        let id = publish_of(s.poll_transmit(0, &mut 0).unwrap())
            .packet_id
            .unwrap();
        s.on_pubrec(id, false).unwrap();
        assert_eq!(s.poll_transmit(0, &mut 0), None, "PUBCOMP not yet received");
        s.on_pubcomp(id).unwrap();
        assert!(s.poll_transmit(0, &mut 0).is_some());
        let ops = s.take_store_ops();
        assert!(
            ops.contains(&StoreOp::MarkReleased {
                seq: 1,
                packet_id: id
            }),
            "{ops:?}"
        );
        assert!(
            ops.contains(&StoreOp::Remove { seq: 1 }),
            "removed at PUBCOMP: {ops:?}"
        );
    }

    #[test]
    fn resume_resends_only_what_the_new_receive_maximum_allows() {
        let mut s = session();
        s.resume(10, 0);
        for seq in 1..=4 {
            s.enqueue(delivery(seq, QoS::AtLeastOnce));
            s.poll_transmit(0, &mut 0).unwrap();
        }
        s.detach();
        let again = s.resume(1, 0);
        assert_eq!(again.len(), 1);
        assert_eq!(
            publish_of(again.into_iter().next().unwrap()).packet_id,
            Some(1)
        );
        assert_eq!(s.poll_transmit(0, &mut 0), None);
        s.on_puback(1).unwrap();
        let p = publish_of(s.poll_transmit(0, &mut 0).unwrap());
        assert_eq!(
            (p.packet_id, p.dup),
            (Some(2), true),
            "same id, DUP, in order"
        );
        s.take_store_ops();
        s.on_puback(2).unwrap();
        let p = publish_of(s.poll_transmit(0, &mut 0).unwrap());
        assert_eq!((p.packet_id, p.dup), (Some(3), true));
        assert!(
            !s.take_store_ops()
                .iter()
                .any(|op| matches!(op, StoreOp::MarkSent { .. })),
            "a resent delivery keeps its stored packet ID"
        );
    }

    #[test]
    fn incoming_qos2_ids_are_stored_until_released() {
        let mut s = session();
        s.on_incoming_qos2(9);
        s.on_incoming_qos2(9);
        s.on_pubrel(9);
        assert_eq!(
            s.take_store_ops(),
            vec![
                StoreOp::AddIncoming { packet_id: 9 },
                StoreOp::RemoveIncoming { packet_id: 9 }
            ]
        );
    }

    #[test]
    fn the_queue_is_bounded_in_bytes_too() {
        let size = sized(0, 1000).message.held_bytes();
        let bytes_limits = |policy| SessionLimits {
            max_queued_bytes: 3 * size,
            ..limits(100, policy)
        };
        let mut oldest = Session::new(
            Arc::from("o"),
            60,
            bytes_limits(QueueDropPolicy::DropOldest),
        );
        let mut newest = Session::new(
            Arc::from("n"),
            60,
            bytes_limits(QueueDropPolicy::DropNewest),
        );
        for s in [&mut oldest, &mut newest] {
            for seq in 1..=3 {
                assert_eq!(s.enqueue(sized(seq, 1000)), EnqueueOutcome::Queued);
            }
            assert_eq!(s.queued_bytes(), 3 * size);
        }
        // One about twice as large: the two oldest go, or the new one.
        assert_eq!(
            oldest.enqueue(sized(4, 2000)),
            EnqueueOutcome::DroppedQueueFull { seqs: vec![1, 2] }
        );
        assert_eq!(oldest.held_sequence_numbers().collect::<Vec<_>>(), [3, 4]);
        assert_eq!(
            newest.enqueue(sized(4, 2000)),
            EnqueueOutcome::DroppedQueueFull { seqs: vec![4] }
        );
        // A message larger than the whole queue never fits.
        assert_eq!(
            oldest.enqueue(sized(5, 10 * size)),
            EnqueueOutcome::DroppedQueueFull {
                seqs: vec![3, 4, 5]
            }
        );
        assert_eq!(oldest.queued_bytes(), 0);
        assert_eq!(oldest.held_bytes(), 0);
    }

    #[test]
    fn the_node_budget_is_held_until_acknowledged_or_ended() {
        let budget = Arc::new(QueueBudget::new(0));
        let with_budget = SessionLimits {
            budget: Some(budget.clone()),
            ..limits(100, QueueDropPolicy::DropOldest)
        };
        let size = sized(0, 500).message.held_bytes();
        let mut s = Session::new(Arc::from("b"), 60, with_budget.clone());
        s.resume(1, 0);
        s.enqueue(sized(1, 500));
        s.enqueue(sized(2, 500));
        assert_eq!(budget.used(), 2 * size);
        // In flight still holds; the queue does not count it any more.
        let sent = publish_of(s.poll_transmit(0, &mut 0).unwrap());
        assert_eq!((budget.used(), s.queued_bytes()), (2 * size, size));
        s.on_puback(sent.packet_id.unwrap()).unwrap();
        assert_eq!(budget.used(), size);
        // QoS 0 is released once sent.
        let mut q0 = sized(3, 500);
        q0.qos = QoS::AtMostOnce;
        s.enqueue(q0);
        assert_eq!(budget.used(), 2 * size);
        s.poll_transmit(0, &mut 0).unwrap();
        let sent = publish_of(s.poll_transmit(0, &mut 0).unwrap());
        assert_eq!(sent.qos, QoS::AtMostOnce);
        assert_eq!(budget.used(), size, "seq 2 is in flight");
        // An ended session gives everything back.
        drop(s);
        assert_eq!(budget.used(), 0);
        // Restored deliveries count even over the limit; new ones then wait.
        let tight = Arc::new(QueueBudget::new(size));
        let mut r = Session::new(
            Arc::from("r"),
            60,
            SessionLimits {
                budget: Some(tight.clone()),
                ..with_budget
            },
        );
        r.restore(sized(1, 500), false);
        r.restore(sized(2, 500), false);
        assert_eq!(tight.used(), 2 * size);
        assert_eq!(
            r.enqueue(sized(3, 500)),
            EnqueueOutcome::DroppedNodeBudget { seq: 3 }
        );
        assert!(r.take_store_ops().contains(&StoreOp::Remove { seq: 3 }));
    }
}
