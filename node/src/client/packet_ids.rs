//! Allocation of packet identifiers (sans-IO).
//!
//! MQTT packet identifiers are non-zero 16-bit numbers that must be unique
//! among the client's unacknowledged QoS 1/2 PUBLISH, SUBSCRIBE and
//! UNSUBSCRIBE packets of a connection (all QUIC streams share them).

/// Number of 64-bit words needed for one bit per identifier 0..=65535.
const WORDS: usize = 1 << 10;

/// A set of packet identifiers in use, handing out free ones round-robin so
/// that a just-released identifier is not reused at once.
pub(crate) struct PacketIds {
    used: Box<[u64; WORDS]>,
    next: u16,
    count: usize,
}

impl PacketIds {
    /// An allocator with every identifier free.
    pub(crate) fn new() -> PacketIds {
        PacketIds {
            used: Box::new([0; WORDS]),
            next: 1,
            count: 0,
        }
    }

    /// Whether `id` is currently allocated.
    pub(crate) fn is_used(&self, id: u16) -> bool {
        self.used[usize::from(id) >> 6] & (1 << (id & 63)) != 0
    }

    /// Number of identifiers in use.
    #[cfg(test)]
    pub(crate) fn in_use(&self) -> usize {
        self.count
    }

    /// A free non-zero identifier, now marked as used; `None` when all
    /// 65,535 are in use.
    pub(crate) fn allocate(&mut self) -> Option<u16> {
        if self.count >= usize::from(u16::MAX) {
            return None;
        }
        let mut id = self.next;
        loop {
            if id != 0 && !self.is_used(id) {
                self.used[usize::from(id) >> 6] |= 1 << (id & 63);
                self.count += 1;
                self.next = id.wrapping_add(1);
                return Some(id);
            }
            id = id.wrapping_add(1);
        }
    }

    /// Marks `id` as free again; returns whether it was in use.
    pub(crate) fn release(&mut self, id: u16) -> bool {
        if !self.is_used(id) {
            return false;
        }
        self.used[usize::from(id) >> 6] &= !(1 << (id & 63));
        self.count -= 1;
        true
    }
}

impl Default for PacketIds {
    fn default() -> Self {
        PacketIds::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocates_unique_non_zero_ids_in_order() {
        let mut ids = PacketIds::new();
        assert_eq!(ids.allocate(), Some(1));
        assert_eq!(ids.allocate(), Some(2));
        assert_eq!(ids.allocate(), Some(3));
        assert_eq!(ids.in_use(), 3);
        assert!(ids.is_used(2));
        assert!(ids.release(2));
        assert!(!ids.release(2));
        assert!(!ids.is_used(2));
        // Round-robin: the released id is not handed out again at once.
        assert_eq!(ids.allocate(), Some(4));
    }

    #[test]
    fn wraps_around_and_skips_zero_and_used_ids() {
        let mut ids = PacketIds::new();
        ids.next = u16::MAX;
        assert_eq!(ids.allocate(), Some(u16::MAX));
        assert_eq!(ids.allocate(), Some(1));
        ids.next = u16::MAX;
        assert_eq!(ids.allocate(), Some(2));
    }

    #[test]
    fn exhausts_after_65535_and_recovers_after_release() {
        let mut ids = PacketIds::new();
        for _ in 0..u16::MAX {
            assert!(ids.allocate().is_some());
        }
        assert_eq!(ids.in_use(), 65_535);
        assert_eq!(ids.allocate(), None);
        assert!(ids.release(1234));
        assert_eq!(ids.allocate(), Some(1234));
        assert_eq!(ids.allocate(), None);
        assert!(!ids.is_used(0));
    }
}
