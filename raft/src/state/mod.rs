//! [`ClusterState`]: the replicated state machine, sans-IO.
//!
//! Every node applies the same [`Command`]s in the same order, so every
//! node holds the same `ClusterState`. Applying is a plain function of the
//! state and the command (the proposer puts clock readings into the
//! command), which keeps replicas identical and makes the whole thing
//! testable without Raft.

mod members;
mod routes;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use self::members::{JoinRefused, Members};
pub use self::routes::Routes;
use crate::command::{
    Command, CommandResponse, KeysRecord, QuicLbRecord, RetainOp, RetainedRecord, SessionRecord,
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
    /// The whole state was replaced by a snapshot: anything may differ.
    Replaced,
}

/// The state every node of the cluster agrees on.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterState {
    cluster_id: Option<String>,
    quic_lb: Option<QuicLbRecord>,
    keys: Option<KeysRecord>,
    members: Members,
    routes: Routes,
    retained: BTreeMap<String, RetainedRecord>,
    sessions: BTreeMap<String, SessionRecord>,
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
            } => {
                let previous = self.sessions.get(client_id).cloned();
                let mut record = session.clone();
                record.owner = Some(*node_id);
                if !*clean_start && record.subscriptions.is_empty() {
                    if let Some(prev) = &previous {
                        record.subscriptions.clone_from(&prev.subscriptions);
                    }
                }
                self.sessions.insert(client_id.clone(), record);
                let previous_owner = previous
                    .as_ref()
                    .and_then(|p| p.owner)
                    .filter(|owner| owner != node_id);
                changes.push(StateChange::SessionOwner {
                    client_id: client_id.clone(),
                    previous: previous.as_ref().and_then(|p| p.owner),
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
                        ..session.clone()
                    };
                    CommandResponse::Applied(true)
                }
                _ => CommandResponse::Applied(false),
            },
            Command::RemoveSession { client_id, node_id } => match self.sessions.get(client_id) {
                Some(stored) if stored.owner == *node_id => {
                    self.sessions.remove(client_id);
                    changes.push(StateChange::SessionRemoved(client_id.clone()));
                    CommandResponse::Applied(true)
                }
                _ => CommandResponse::Applied(false),
            },
            Command::Batch(commands) => {
                CommandResponse::Batch(commands.iter().map(|c| self.apply(c, changes)).collect())
            }
        }
    }
}

#[cfg(test)]
mod tests;
