//! The schedule of TLS session-ticket keys: which keys are kept, when the
//! next one is due. Pure functions of the key list and a clock reading.

use crate::command::TicketKeyRecord;

/// Adds `key` if its ID follows the newest key's (1 for the first), then
/// drops keys no ticket sealed with can still be valid at `now_ms`.
/// Returns whether `key` was added.
pub(super) fn add(keys: &mut Vec<TicketKeyRecord>, key: &TicketKeyRecord, now_ms: u64) -> bool {
    let next_id = keys.last().map_or(1, |k| k.id.wrapping_add(1).max(1));
    if key.id != next_id || key.lifetime_ms == 0 {
        return false;
    }
    keys.push(key.clone());
    // Key i is accepted until its successor started sealing plus one
    // lifetime; the newest is always kept.
    let mut kept = Vec::with_capacity(keys.len());
    for (i, k) in keys.iter().enumerate() {
        if ticket_key_accepted_until(keys, i).is_none_or(|until| until > now_ms) {
            kept.push(k.clone());
        }
    }
    *keys = kept;
    true
}

/// Until when (Unix ms) tickets sealed with `keys[index]` are accepted:
/// one lifetime after the next key started sealing. `None` for the newest
/// key (accepted while it is the newest) or an index out of range.
///
/// ```
/// use quicmq_raft::command::TicketKeyRecord;
/// use quicmq_raft::state::ticket_key_accepted_until;
/// let key = |id, from| TicketKeyRecord { id, key: [0; 32], sealing_from_ms: from, lifetime_ms: 100 };
/// let keys = [key(1, 0), key(2, 90)];
/// assert_eq!(ticket_key_accepted_until(&keys, 0), Some(190));
/// assert_eq!(ticket_key_accepted_until(&keys, 1), None);
/// ```
pub fn ticket_key_accepted_until(keys: &[TicketKeyRecord], index: usize) -> Option<u64> {
    let key = keys.get(index)?;
    let next = keys.get(index + 1)?;
    Some(next.sealing_from_ms.saturating_add(key.lifetime_ms))
}

/// When (Unix ms) the leader should add the next key: at once when there
/// is none or the newest key's lifetime differs from the configured
/// `lifetime_ms`, else when the newest key has sealed for one lifetime.
///
/// ```
/// use quicmq_raft::command::TicketKeyRecord;
/// use quicmq_raft::state::next_ticket_key_due;
/// assert_eq!(next_ticket_key_due(&[], 100), 0);
/// let key = TicketKeyRecord { id: 1, key: [0; 32], sealing_from_ms: 1_000, lifetime_ms: 100 };
/// assert_eq!(next_ticket_key_due(&[key.clone()], 100), 1_100);
/// assert_eq!(next_ticket_key_due(&[key], 500), 0);
/// ```
pub fn next_ticket_key_due(keys: &[TicketKeyRecord], lifetime_ms: u64) -> u64 {
    match keys.last() {
        Some(newest) if newest.lifetime_ms == lifetime_ms => {
            newest.sealing_from_ms.saturating_add(newest.lifetime_ms)
        }
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(id: u32, from: u64) -> TicketKeyRecord {
        TicketKeyRecord {
            id,
            key: [id as u8; 32],
            sealing_from_ms: from,
            lifetime_ms: 1_000,
        }
    }

    #[test]
    fn keys_are_added_in_order_and_each_id_once() {
        let mut keys = Vec::new();
        assert!(!add(&mut keys, &key(2, 0), 0), "the first key has ID 1");
        assert!(add(&mut keys, &key(1, 0), 0));
        assert!(!add(&mut keys, &key(1, 5), 5), "a second leader's rotation");
        assert!(add(&mut keys, &key(2, 1_000), 1_000));
        assert_eq!(keys.iter().map(|k| k.id).collect::<Vec<_>>(), [1, 2]);
        let zero = TicketKeyRecord {
            lifetime_ms: 0,
            ..key(3, 2_000)
        };
        assert!(!add(&mut keys, &zero, 2_000), "a key needs a lifetime");
    }

    #[test]
    fn the_previous_key_is_accepted_for_one_lifetime_then_dropped() {
        let mut keys = vec![key(1, 0)];
        assert!(add(&mut keys, &key(2, 1_000), 1_000));
        assert_eq!(ticket_key_accepted_until(&keys, 0), Some(2_000));
        // Key 1 is still accepted when key 3 arrives at 1 999...
        assert!(add(&mut keys, &key(3, 1_999), 1_999));
        assert_eq!(keys.iter().map(|k| k.id).collect::<Vec<_>>(), [1, 2, 3]);
        // ...and dropped by the next change after 2 000.
        assert!(add(&mut keys, &key(4, 3_000), 3_000));
        assert_eq!(keys.iter().map(|k| k.id).collect::<Vec<_>>(), [3, 4]);
    }

    #[test]
    fn rotation_is_due_one_lifetime_after_the_newest_key() {
        assert_eq!(next_ticket_key_due(&[], 1_000), 0);
        assert_eq!(next_ticket_key_due(&[key(1, 500)], 1_000), 1_500);
        assert_eq!(
            next_ticket_key_due(&[key(1, 500)], 2_000),
            0,
            "lifetime changed"
        );
    }
}
