//! The member table and server-ID allocation.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::command::{JoinRecord, MemberRecord, MemberRole, MemberState};
use crate::NodeId;

/// Every node that ever joined, by node ID, including those that left:
/// a left member's server ID stays reserved, so connection IDs minted by it
/// are never taken for another node's.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Members {
    by_id: BTreeMap<NodeId, MemberRecord>,
}

/// Why a join was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JoinRefused {
    /// Node ID 0 is reserved for "not set".
    #[error("node ID 0 is not a valid node ID")]
    ZeroNodeId,
    /// Another active member already advertises this gRPC address.
    #[error("gRPC address {addr} is already used by node {node_id}")]
    AddressInUse {
        /// The address.
        addr: String,
        /// Its holder.
        node_id: NodeId,
    },
    /// Every server ID of the configured length is taken.
    #[error("no free server ID of {len} octet(s) is left")]
    ServerIdsExhausted {
        /// Server ID length.
        len: u8,
    },
}

impl Members {
    /// The member with this node ID (active or left).
    pub fn get(&self, node_id: NodeId) -> Option<&MemberRecord> {
        self.by_id.get(&node_id)
    }

    /// Every member, by node ID.
    pub fn iter(&self) -> impl Iterator<Item = &MemberRecord> {
        self.by_id.values()
    }

    /// Members the leader sees alive (not suspect, down or left).
    pub fn alive(&self) -> impl Iterator<Item = &MemberRecord> {
        self.by_id
            .values()
            .filter(|m| m.state == MemberState::Alive)
    }

    /// Members that have not left (alive, suspect or down).
    pub fn current(&self) -> impl Iterator<Item = &MemberRecord> {
        self.by_id.values().filter(|m| m.state.is_member())
    }

    /// The member that holds a server ID.
    pub fn by_server_id(&self, server_id: &[u8]) -> Option<&MemberRecord> {
        self.by_id.values().find(|m| m.server_id == server_id)
    }

    /// Number of members, left ones included.
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// Admits `join`, allocating a server ID of `server_id_len` octets, or
    /// updates the addresses of a member that joins again (it keeps its
    /// server ID and becomes active again).
    pub fn join(
        &mut self,
        join: &JoinRecord,
        server_id_len: u8,
    ) -> Result<MemberRecord, JoinRefused> {
        if join.node_id == 0 {
            return Err(JoinRefused::ZeroNodeId);
        }
        if let Some(holder) = self.by_id.values().find(|m| {
            m.node_id != join.node_id && m.state.is_member() && m.grpc_addr == join.grpc_addr
        }) {
            return Err(JoinRefused::AddressInUse {
                addr: join.grpc_addr.clone(),
                node_id: holder.node_id,
            });
        }
        if let Some(member) = self.by_id.get_mut(&join.node_id) {
            member.grpc_addr.clone_from(&join.grpc_addr);
            member.routed_addr.clone_from(&join.routed_addr);
            member.public_addr.clone_from(&join.public_addr);
            member.zone.clone_from(&join.zone);
            member.state = MemberState::Alive;
            member.left_at_ms = None;
            return Ok(member.clone());
        }
        let server_id = self.free_server_id(join.node_id, server_id_len)?;
        let member = MemberRecord {
            node_id: join.node_id,
            server_id,
            grpc_addr: join.grpc_addr.clone(),
            routed_addr: join.routed_addr.clone(),
            public_addr: join.public_addr.clone(),
            zone: join.zone.clone(),
            role: MemberRole::Learner,
            state: MemberState::Alive,
            joined_at_ms: join.now_ms,
            left_at_ms: None,
        };
        self.by_id.insert(join.node_id, member.clone());
        Ok(member)
    }

    /// Sets a member's role; false if there is no such member.
    pub fn set_role(&mut self, node_id: NodeId, role: MemberRole) -> bool {
        match self.by_id.get_mut(&node_id) {
            Some(m) => {
                m.role = role;
                true
            }
            None => false,
        }
    }

    /// Sets the state of a member that has not left; false if there is no
    /// such member.
    pub fn set_state(&mut self, node_id: NodeId, state: MemberState) -> bool {
        match self.by_id.get_mut(&node_id) {
            Some(m) if m.state.is_member() => {
                m.state = state;
                true
            }
            _ => false,
        }
    }

    /// Marks a member as left; false if there is no such member (or it
    /// left already).
    pub fn leave(&mut self, node_id: NodeId, now_ms: u64) -> bool {
        match self.by_id.get_mut(&node_id) {
            Some(m) if m.state.is_member() => {
                m.state = MemberState::Left;
                m.role = MemberRole::Learner;
                m.left_at_ms = Some(now_ms);
                true
            }
            _ => false,
        }
    }

    /// The server ID for a new member: the node ID itself when it fits and
    /// is free (so IDs are easy to read in captures), else the lowest free
    /// value. Server IDs of left members are never handed out.
    fn free_server_id(&self, node_id: NodeId, len: u8) -> Result<Vec<u8>, JoinRefused> {
        let len = usize::from(len).clamp(1, 15);
        let encode = |value: u64| -> Vec<u8> {
            let bytes = value.to_be_bytes();
            let mut id = vec![0u8; len];
            let take = len.min(8);
            id[len - take..].copy_from_slice(&bytes[8 - take..]);
            id
        };
        let max = if len >= 8 {
            u64::MAX
        } else {
            (1u64 << (8 * len)) - 1
        };
        if node_id <= max {
            let id = encode(node_id);
            if self.by_server_id(&id).is_none() {
                return Ok(id);
            }
        }
        // Lowest free value; at most `len()` values are taken, so the scan
        // ends within `len() + 1` steps.
        let limit = max.min(self.by_id.len() as u64 + 1);
        for value in 1..=limit {
            let id = encode(value);
            if self.by_server_id(&id).is_none() {
                return Ok(id);
            }
        }
        Err(JoinRefused::ServerIdsExhausted { len: len as u8 })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn join(node_id: NodeId, addr: &str) -> JoinRecord {
        JoinRecord {
            node_id,
            grpc_addr: addr.into(),
            routed_addr: String::new(),
            public_addr: String::new(),
            zone: String::new(),
            now_ms: 1,
        }
    }

    #[test]
    fn server_id_is_the_node_id_when_free() {
        let mut members = Members::default();
        let m = members.join(&join(7, "a:1"), 2).unwrap();
        assert_eq!(m.server_id, vec![0, 7]);
        assert_eq!(m.role, MemberRole::Learner);
    }

    #[test]
    fn rejoin_keeps_server_id_and_updates_addresses() {
        let mut members = Members::default();
        let first = members.join(&join(3, "a:1"), 1).unwrap();
        assert!(members.leave(3, 5));
        let again = members.join(&join(3, "b:2"), 1).unwrap();
        assert_eq!(again.server_id, first.server_id);
        assert_eq!(again.grpc_addr, "b:2");
        assert_eq!(again.state, MemberState::Alive);
    }

    #[test]
    fn left_members_keep_their_server_id_reserved() {
        let mut members = Members::default();
        // Node 300 does not fit one octet: it gets the lowest free value.
        members.join(&join(1, "a:1"), 1).unwrap();
        assert!(members.leave(1, 9));
        let m = members.join(&join(300, "b:1"), 1).unwrap();
        assert_eq!(m.server_id, vec![2], "1 is reserved for the left node 1");
    }

    #[test]
    fn duplicate_address_and_zero_id_are_refused() {
        let mut members = Members::default();
        members.join(&join(1, "a:1"), 1).unwrap();
        assert_eq!(
            members.join(&join(2, "a:1"), 1),
            Err(JoinRefused::AddressInUse {
                addr: "a:1".into(),
                node_id: 1
            })
        );
        assert_eq!(
            members.join(&join(0, "z:1"), 1),
            Err(JoinRefused::ZeroNodeId)
        );
    }

    #[test]
    fn exhausted_server_ids_are_refused() {
        let mut members = Members::default();
        for id in 1..=255u64 {
            members.join(&join(id, &format!("h:{id}")), 1).unwrap();
        }
        assert_eq!(
            members.join(&join(1000, "x:1"), 1),
            Err(JoinRefused::ServerIdsExhausted { len: 1 })
        );
    }
}
