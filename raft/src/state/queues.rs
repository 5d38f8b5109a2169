//! [`DurableQueue`]: the QoS 1/2 messages routed to a persistent session
//! that its client has not acknowledged, replicated so that the node
//! resuming the session after its owner died replays them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// One session's unacknowledged messages by queue ID (oldest first). The
/// messages are opaque: the owner node encodes them. Committed IDs are
/// never reused within a session, even across owners
/// ([`DurableQueue::next_id`]); IDs an owner handed out without committing
/// them may be, which is why only the owner's acknowledgements apply.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DurableQueue {
    messages: BTreeMap<u64, Vec<u8>>,
    next_id: u64,
}

impl DurableQueue {
    /// Appends message `id`; then drops the oldest while more than `limit`
    /// are queued. Returns how many were dropped. An ID below
    /// [`DurableQueue::next_id`] (already used) is refused: `None`.
    pub(super) fn push(&mut self, id: u64, record: Vec<u8>, limit: u32) -> Option<u64> {
        if id < self.next_id {
            return None;
        }
        self.next_id = id + 1;
        self.messages.insert(id, record);
        let mut dropped = 0;
        while self.messages.len() > limit.max(1) as usize {
            self.messages.pop_first();
            dropped += 1;
        }
        Some(dropped)
    }

    /// One past the highest ID ever queued: where a new owner's IDs start.
    pub fn next_id(&self) -> u64 {
        self.next_id
    }

    /// Removes the acknowledged messages.
    pub(super) fn ack(&mut self, ids: &[u64]) {
        for id in ids {
            self.messages.remove(id);
        }
    }

    /// Messages queued.
    pub fn len(&self) -> usize {
        self.messages.len()
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.messages.is_empty()
    }

    /// The highest ID queued.
    pub fn last_id(&self) -> Option<u64> {
        self.messages.last_key_value().map(|(id, _)| *id)
    }

    /// The messages, oldest first.
    pub fn iter(&self) -> impl Iterator<Item = (u64, &[u8])> {
        self.messages.iter().map(|(id, m)| (*id, m.as_slice()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acknowledged_messages_leave_and_the_oldest_go_past_the_limit() {
        let mut q = DurableQueue::default();
        for id in 1..=3 {
            assert_eq!(q.push(id, vec![id as u8], 3), Some(0));
        }
        assert_eq!(q.push(4, vec![4], 3), Some(1), "message 1 dropped");
        assert_eq!(q.push(2, vec![2], 3), None, "IDs are not reused");
        assert_eq!(q.iter().map(|(id, _)| id).collect::<Vec<_>>(), [2, 3, 4]);
        q.ack(&[3, 99]);
        assert_eq!(q.iter().map(|(id, _)| id).collect::<Vec<_>>(), [2, 4]);
        assert_eq!(q.last_id(), Some(4));
        q.ack(&[2, 4]);
        assert!(q.is_empty());
        assert_eq!(q.next_id(), 5, "kept while empty");
    }
}
