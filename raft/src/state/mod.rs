//! [`ClusterState`]: the replicated state machine, sans-IO.
//!
//! Every node applies the same [`Command`]s in the same order, so every
//! node holds the same `ClusterState`. Applying is a plain function of the
//! state and the command (the proposer puts clock readings into the
//! command), which keeps replicas identical and makes the whole thing
//! testable without Raft.

mod members;
mod queues;
mod routes;
mod ticket_keys;
mod wills;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use self::members::{JoinRefused, Members};
pub use self::queues::DurableQueue;
pub use self::routes::Routes;
pub use self::ticket_keys::{next_ticket_key_due, ticket_key_accepted_until};
pub use self::wills::Wills;
use crate::codec::{self, CodecError};
use crate::command::{
    AuthRecord, Command, CommandResponse, KeysRecord, Liveness, MemberState, QueueOp, QuicLbRecord,
    RetainOp, RetainedRecord, SessionRecord, TicketKeyRecord, WillOp,
};
use crate::NodeId;

/// What applying a command changed, for the node to react to (drop a
/// taken-over connection, refresh its forwarding routes, ...).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StateChange {
    /// The cluster was bootstrapped (ID, QUIC-LB configuration, keys set).
    Bootstrapped,
    /// A member was added or changed.
    Member(NodeId),
    /// The routes of a node changed.
    Routes(NodeId),
    /// The retained message of a topic was set or deleted.
    Retained(String),
    /// A persistent session changed owner (`owner: None` after its owner
    /// left the cluster).
    SessionOwner {
        /// The client ID.
        client_id: String,
        /// The owner before.
        previous: Option<NodeId>,
        /// The owner now.
        owner: Option<NodeId>,
    },
    /// A persistent session was removed.
    SessionRemoved(String),
    /// The owner of a persistent session went down, and a live member
    /// adopted the session: it holds the session for the client until the
    /// client resumes somewhere, queues its messages, and publishes its
    /// will. The adopter's routes gained the session's filters in the
    /// same entry.
    SessionAdopted {
        /// The client ID.
        client_id: String,
        /// The member that went down.
        from: NodeId,
        /// The adopter (`None`: no member was alive; the session is left
        /// without owner and any node may resume it).
        by: Option<NodeId>,
    },
    /// The TLS session-ticket keys changed.
    TicketKeys,
    /// A durable queue exceeded its limit: its oldest messages were
    /// dropped.
    QueueOverflow {
        /// The session's client ID.
        client_id: String,
        /// Its owner (which counts the drop).
        owner: NodeId,
        /// How many messages were dropped.
        dropped: u64,
    },
    /// The cluster's password file and ACL changed.
    Auth,
    /// Wills were released (their connection or node is gone): some may
    /// be due for the leader to publish.
    WillsReleased,
    /// The whole state was replaced by a snapshot: anything may differ.
    Replaced,
}

/// The state every node of the cluster agrees on.
///
/// Snapshots encode it with [`ClusterState::encode_snapshot`]: the fields
/// of the first release, then what later releases added, so that a
/// snapshot written by an older node still decodes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterState {
    cluster_id: Option<String>,
    quic_lb: Option<QuicLbRecord>,
    keys: Option<KeysRecord>,
    members: Members,
    routes: Routes,
    retained: BTreeMap<String, RetainedRecord>,
    sessions: BTreeMap<String, SessionRecord>,
    ticket_keys: Vec<TicketKeyRecord>,
    queues: BTreeMap<String, DurableQueue>,
    auth: Option<AuthRecord>,
    /// Encoded after the fields above (see `encode_snapshot`).
    #[serde(skip)]
    wills: Wills,
}

impl ClusterState {
    /// The cluster ID, once bootstrapped.
    pub fn cluster_id(&self) -> Option<&str> {
        self.cluster_id.as_deref()
    }

    /// The QUIC-LB configuration, once bootstrapped.
    pub fn quic_lb(&self) -> Option<&QuicLbRecord> {
        self.quic_lb.as_ref()
    }

    /// The cluster keys, once bootstrapped.
    pub fn keys(&self) -> Option<&KeysRecord> {
        self.keys.as_ref()
    }

    /// The member table.
    pub fn members(&self) -> &Members {
        &self.members
    }

    /// The route table.
    pub fn routes(&self) -> &Routes {
        &self.routes
    }

    /// Retained messages by topic.
    pub fn retained(&self) -> &BTreeMap<String, RetainedRecord> {
        &self.retained
    }

    /// Persistent sessions by client ID.
    pub fn sessions(&self) -> &BTreeMap<String, SessionRecord> {
        &self.sessions
    }

    /// The durable queue of a persistent session, if it holds messages.
    pub fn queue(&self, client_id: &str) -> Option<&DurableQueue> {
        self.queues.get(client_id)
    }

    /// Messages in all durable queues.
    pub fn queued_messages(&self) -> usize {
        self.queues.values().map(DurableQueue::len).sum()
    }

    /// The TLS session-ticket keys, oldest first; the last one seals new
    /// tickets.
    pub fn ticket_keys(&self) -> &[TicketKeyRecord] {
        &self.ticket_keys
    }

    /// The cluster's password file and ACL, once a node set them.
    pub fn auth(&self) -> Option<&AuthRecord> {
        self.auth.as_ref()
    }

    /// The wills held for connected clients and released ones not yet
    /// published.
    pub fn wills(&self) -> &Wills {
        &self.wills
    }

    /// The state as a snapshot stores it.
    ///
    /// # Errors
    ///
    /// When it cannot be encoded (it always can).
    pub fn encode_snapshot(&self) -> Result<Vec<u8>, CodecError> {
        let mut bytes = codec::encode("snapshot cluster state", self)?;
        bytes.extend(codec::encode("snapshot wills", &self.wills)?);
        Ok(bytes)
    }

    /// The state of a snapshot [`ClusterState::encode_snapshot`] wrote,
    /// or an older node (which wrote no wills).
    ///
    /// # Errors
    ///
    /// When `bytes` is not such a snapshot.
    ///
    /// ```
    /// use quicmq_raft::ClusterState;
    ///
    /// let state = ClusterState::default();
    /// let bytes = state.encode_snapshot().unwrap();
    /// assert_eq!(ClusterState::decode_snapshot(&bytes).unwrap(), state);
    /// assert!(ClusterState::decode_snapshot(&[0xff; 3]).is_err());
    /// ```
    pub fn decode_snapshot(bytes: &[u8]) -> Result<ClusterState, CodecError> {
        let (mut state, used): (ClusterState, usize) =
            codec::decode_prefix("snapshot cluster state", bytes)?;
        let rest = bytes.get(used..).unwrap_or_default();
        if !rest.is_empty() {
            state.wills = codec::decode("snapshot wills", rest)?;
        }
        Ok(state)
    }

    /// Applies one command, appending what changed to `changes`.
    pub fn apply(&mut self, command: &Command, changes: &mut Vec<StateChange>) -> CommandResponse {
        match command {
            Command::Bootstrap(boot) => {
                if self.cluster_id.is_some() {
                    return CommandResponse::Refused("the cluster is already bootstrapped".into());
                }
                self.cluster_id = Some(boot.cluster_id.clone());
                self.quic_lb = Some(boot.quic_lb.clone());
                self.keys = Some(boot.keys.clone());
                changes.push(StateChange::Bootstrapped);
                CommandResponse::Done
            }
            Command::Join(join) => {
                let len = self.quic_lb.as_ref().map_or(1, |c| c.server_id_len);
                match self.members.join(join, len) {
                    Ok(member) => {
                        changes.push(StateChange::Member(member.node_id));
                        CommandResponse::Member(member)
                    }
                    Err(e) => CommandResponse::Refused(e.to_string()),
                }
            }
            Command::SetMemberRole { node_id, role } => {
                let ok = self.members.set_role(*node_id, *role);
                if ok {
                    changes.push(StateChange::Member(*node_id));
                }
                CommandResponse::Applied(ok)
            }
            Command::Leave { node_id, now_ms } => {
                if !self.members.leave(*node_id, *now_ms) {
                    return CommandResponse::Applied(false);
                }
                changes.push(StateChange::Member(*node_id));
                if self.routes.remove_node(*node_id) {
                    changes.push(StateChange::Routes(*node_id));
                }
                self.wills.drop_held_by(*node_id);
                for (client_id, session) in &mut self.sessions {
                    if session.owner == Some(*node_id) {
                        session.owner = None;
                        session.disconnected_at_ms.get_or_insert(*now_ms);
                        session.will = None;
                        changes.push(StateChange::SessionOwner {
                            client_id: client_id.clone(),
                            previous: Some(*node_id),
                            owner: None,
                        });
                    }
                }
                CommandResponse::Applied(true)
            }
            Command::Routes { node_id, .. } | Command::ReplaceRoutes { node_id, .. }
                if self.is_down(*node_id) =>
            {
                CommandResponse::Refused(format!(
                    "node {node_id} is down: its routes are withdrawn until it is alive again"
                ))
            }
            Command::ClaimSession { node_id, .. } if self.is_down(*node_id) => {
                CommandResponse::Refused(format!(
                    "node {node_id} is down: it cannot take sessions until it is alive again"
                ))
            }
            Command::Routes {
                node_id,
                add,
                remove,
            } => {
                if self.routes.update(*node_id, add, remove) {
                    changes.push(StateChange::Routes(*node_id));
                }
                CommandResponse::Done
            }
            Command::ReplaceRoutes { node_id, filters } => {
                if self.routes.replace(*node_id, filters) {
                    changes.push(StateChange::Routes(*node_id));
                }
                CommandResponse::Done
            }
            Command::Retain(ops) => {
                for op in ops {
                    match op {
                        RetainOp::Set { topic, message } => {
                            self.retained.insert(topic.clone(), message.clone());
                            changes.push(StateChange::Retained(topic.clone()));
                        }
                        RetainOp::Delete { topic } => {
                            if self.retained.remove(topic).is_some() {
                                changes.push(StateChange::Retained(topic.clone()));
                            }
                        }
                    }
                }
                CommandResponse::Done
            }
            Command::ClaimSession {
                client_id,
                node_id,
                session,
                clean_start,
                may_take_over,
                now_ms,
            } => {
                let stored = self.sessions.get(client_id).cloned();
                let stored_owner = stored.as_ref().and_then(|p| p.owner);
                let previous = stored.filter(|p| !p.expired_at(*now_ms));
                let other_identity = previous
                    .as_ref()
                    .is_some_and(|p| p.identity != session.identity);
                if other_identity && !*may_take_over {
                    return CommandResponse::ClaimRefused;
                }
                if *clean_start || previous.is_none() {
                    // A clean start, or an expired session not swept yet:
                    // nothing of the old session is kept.
                    self.queues.remove(client_id);
                }
                let mut record = session.clone();
                record.owner = Some(*node_id);
                if !*clean_start {
                    if let Some(prev) = &previous {
                        if record.subscriptions.is_empty() {
                            record.subscriptions.clone_from(&prev.subscriptions);
                        }
                        // Resumed by an identity allowed to take over: the
                        // session still belongs to the one that made it.
                        record.identity.clone_from(&prev.identity);
                    }
                }
                self.sessions.insert(client_id.clone(), record);
                if self.wills.released() > 0 {
                    self.wills.client_returned(client_id, *clean_start, *now_ms);
                    changes.push(StateChange::WillsReleased);
                }
                let previous_owner = stored_owner.filter(|owner| owner != node_id);
                changes.push(StateChange::SessionOwner {
                    client_id: client_id.clone(),
                    previous: stored_owner,
                    owner: Some(*node_id),
                });
                CommandResponse::Claimed {
                    previous_owner,
                    previous,
                }
            }
            Command::UpdateSession {
                client_id,
                node_id,
                session,
            } => match self.sessions.get_mut(client_id) {
                Some(stored) if stored.owner == Some(*node_id) => {
                    *stored = SessionRecord {
                        owner: Some(*node_id),
                        identity: stored.identity.take(),
                        ..session.clone()
                    };
                    CommandResponse::Applied(true)
                }
                _ => CommandResponse::Applied(false),
            },
            Command::RemoveSession { client_id, node_id } => match self.sessions.get(client_id) {
                Some(stored) if stored.owner == *node_id => {
                    self.sessions.remove(client_id);
                    self.queues.remove(client_id);
                    changes.push(StateChange::SessionRemoved(client_id.clone()));
                    CommandResponse::Applied(true)
                }
                _ => CommandResponse::Applied(false),
            },
            Command::Batch(commands) => {
                CommandResponse::Batch(commands.iter().map(|c| self.apply(c, changes)).collect())
            }
            Command::Queue(ops) => CommandResponse::Batch(
                ops.iter()
                    .map(|op| CommandResponse::Applied(self.apply_queue_op(op, changes)))
                    .collect(),
            ),
            Command::SetAuth(record) => {
                let version = self.auth.as_ref().map_or(0, |a| a.version) + 1;
                self.auth = Some(AuthRecord {
                    version,
                    ..record.clone()
                });
                changes.push(StateChange::Auth);
                CommandResponse::Applied(true)
            }
            Command::SetLiveness {
                node_id,
                liveness,
                now_ms,
            } => CommandResponse::Applied(self.set_liveness(*node_id, *liveness, *now_ms, changes)),
            Command::Wills(ops) => CommandResponse::Batch(
                ops.iter()
                    .map(|op| CommandResponse::Applied(self.apply_will_op(op, changes)))
                    .collect(),
            ),
            Command::AddTicketKey { key, now_ms } => {
                let added = ticket_keys::add(&mut self.ticket_keys, key, *now_ms);
                if added {
                    changes.push(StateChange::TicketKeys);
                }
                CommandResponse::Applied(added)
            }
        }
    }

    /// Whether a member is down.
    fn is_down(&self, node_id: NodeId) -> bool {
        self.members.get(node_id).is_some_and(|m| m.state.is_down())
    }

    fn set_liveness(
        &mut self,
        node_id: NodeId,
        liveness: Liveness,
        now_ms: u64,
        changes: &mut Vec<StateChange>,
    ) -> bool {
        let current = self.members.get(node_id).and_then(|m| m.state.liveness());
        if current.is_none() || current == Some(liveness) {
            return false;
        }
        let state = match liveness {
            Liveness::Alive => MemberState::Alive,
            Liveness::Suspect => MemberState::Suspect { since_ms: now_ms },
            Liveness::Down => MemberState::Down { since_ms: now_ms },
        };
        self.members.set_state(node_id, state);
        changes.push(StateChange::Member(node_id));
        if liveness == Liveness::Down {
            if self.routes.remove_node(node_id) {
                changes.push(StateChange::Routes(node_id));
            }
            self.adopt_sessions_of(node_id, now_ms, changes);
            if self.wills.release_node(node_id, None, now_ms) > 0 {
                changes.push(StateChange::WillsReleased);
            }
        }
        true
    }

    fn apply_will_op(&mut self, op: &WillOp, changes: &mut Vec<StateChange>) -> bool {
        match op {
            WillOp::Hold { key, will } => {
                if self.is_down(key.node_id) {
                    return false;
                }
                self.wills.hold(key, will);
                true
            }
            WillOp::Release { key, due_at_ms } => {
                let released = self.wills.release(key, *due_at_ms);
                if released {
                    changes.push(StateChange::WillsReleased);
                }
                released
            }
            WillOp::Remove { key } => self.wills.remove(key),
            WillOp::Restarted {
                node_id,
                run,
                now_ms,
            } => {
                let released = self.wills.release_node(*node_id, Some(*run), *now_ms) > 0;
                if released {
                    changes.push(StateChange::WillsReleased);
                }
                released
            }
        }
    }

    /// Hands every persistent session `from` owns to a live member (the
    /// same one on every replica: highest rendezvous weight of client ID
    /// and node ID), with routes for its filters, so that its messages are
    /// queued while its client is away.
    fn adopt_sessions_of(&mut self, from: NodeId, now_ms: u64, changes: &mut Vec<StateChange>) {
        let adopters: Vec<NodeId> = self
            .members
            .alive()
            .map(|m| m.node_id)
            .filter(|id| *id != from)
            .collect();
        let mut routes: BTreeMap<NodeId, Vec<String>> = BTreeMap::new();
        for (client_id, session) in &mut self.sessions {
            if session.owner != Some(from) {
                continue;
            }
            let by = adopters
                .iter()
                .copied()
                .max_by_key(|node| rendezvous_weight(client_id, *node));
            session.owner = by;
            session.disconnected_at_ms.get_or_insert(now_ms);
            if let Some(by) = by {
                routes
                    .entry(by)
                    .or_default()
                    .extend(session.subscriptions.iter().map(|s| s.filter.clone()));
            }
            changes.push(StateChange::SessionAdopted {
                client_id: client_id.clone(),
                from,
                by,
            });
        }
        for (node, filters) in routes {
            if self.routes.update(node, &filters, &[]) {
                changes.push(StateChange::Routes(node));
            }
        }
    }

    fn apply_queue_op(&mut self, op: &QueueOp, changes: &mut Vec<StateChange>) -> bool {
        match op {
            QueueOp::Push {
                client_id,
                owner,
                id,
                record,
                limit,
            } => {
                let owned = self
                    .sessions
                    .get(client_id)
                    .is_some_and(|s| s.owner == Some(*owner));
                if !owned {
                    return false;
                }
                let queue = self.queues.entry(client_id.clone()).or_default();
                match queue.push(*id, record.clone(), *limit) {
                    None => false,
                    Some(0) => true,
                    Some(dropped) => {
                        changes.push(StateChange::QueueOverflow {
                            client_id: client_id.clone(),
                            owner: *owner,
                            dropped,
                        });
                        true
                    }
                }
            }
            // Only from the owner: a previous owner may have handed out
            // IDs it never committed (it was cut off), which the next owner
            // then used for other messages; its late acknowledgements
            // would remove those. Dropping them costs a duplicate at most.
            QueueOp::Ack {
                client_id,
                owner,
                ids,
            } => {
                let owned = self
                    .sessions
                    .get(client_id)
                    .is_some_and(|s| s.owner == Some(*owner));
                match self.queues.get_mut(client_id) {
                    Some(queue) if owned => {
                        queue.ack(ids);
                        true
                    }
                    _ => false,
                }
            }
        }
    }
}

/// A weight of (key, node) that every replica and version computes alike
/// (64-bit FNV-1a, then the SplitMix64 finaliser so that the node's
/// octets reach every bit): the node of highest weight gets the key, and
/// losing a node moves only its own keys.
fn rendezvous_weight(key: &str, node: NodeId) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in key.as_bytes().iter().chain(&node.to_be_bytes()) {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash = (hash ^ (hash >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    hash = (hash ^ (hash >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    hash ^ (hash >> 31)
}

#[cfg(test)]
mod tests;
