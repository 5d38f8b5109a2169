//! Connection limits: at most so many clients connected, in all and per
//! source address.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use super::canonical_ip;

/// Which limit a connection hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SlotRefused {
    /// `max_connections`.
    #[error("the node has max_connections clients")]
    Total,
    /// `max_connections_per_ip`.
    #[error("this address has max_connections_per_ip clients")]
    PerSource,
}

impl SlotRefused {
    /// Label for `quicmq_limits_hit_total{limit}`.
    pub fn label(self) -> &'static str {
        match self {
            SlotRefused::Total => "max_connections",
            SlotRefused::PerSource => "max_connections_per_ip",
        }
    }
}

/// Counts connected clients against `max_connections` and
/// `max_connections_per_ip` (0: no limit). A connection holds its
/// [`ConnectionSlot`] while it is connected.
///
/// ```
/// use std::net::IpAddr;
/// use std::sync::Arc;
/// use quicmq_node::limits::{ConnectionSlots, SlotRefused};
///
/// let slots = Arc::new(ConnectionSlots::new(3, 2));
/// let ip: IpAddr = "192.0.2.1".parse().unwrap();
/// let a = slots.acquire(ip).unwrap();
/// let _b = slots.acquire(ip).unwrap();
/// assert_eq!(slots.acquire(ip).unwrap_err(), SlotRefused::PerSource);
/// drop(a);
/// assert!(slots.acquire(ip).is_ok());
/// ```
#[derive(Debug)]
pub struct ConnectionSlots {
    max_total: usize,
    max_per_source: usize,
    state: Mutex<Held>,
}

#[derive(Debug, Default)]
struct Held {
    total: usize,
    per_source: HashMap<IpAddr, usize>,
}

impl ConnectionSlots {
    /// Limits of `max_total` connections and `max_per_source` per address
    /// (0: no limit).
    pub fn new(max_total: usize, max_per_source: usize) -> ConnectionSlots {
        ConnectionSlots {
            max_total,
            max_per_source,
            state: Mutex::new(Held::default()),
        }
    }

    /// A slot for one more connection from `ip`, if the limits allow.
    pub fn acquire(self: &Arc<Self>, ip: IpAddr) -> Result<ConnectionSlot, SlotRefused> {
        let ip = canonical_ip(ip);
        let mut held = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if self.max_total > 0 && held.total >= self.max_total {
            return Err(SlotRefused::Total);
        }
        if self.max_per_source > 0 {
            let count = held.per_source.entry(ip).or_insert(0);
            if *count >= self.max_per_source {
                return Err(SlotRefused::PerSource);
            }
            *count += 1;
        }
        held.total += 1;
        Ok(ConnectionSlot {
            slots: self.clone(),
            ip,
        })
    }

    /// Connections holding a slot.
    pub fn held(&self) -> usize {
        self.state.lock().map(|held| held.total).unwrap_or(0)
    }

    fn release(&self, ip: IpAddr) {
        let mut held = self.state.lock().unwrap_or_else(|e| e.into_inner());
        held.total = held.total.saturating_sub(1);
        if self.max_per_source > 0 {
            if let Some(count) = held.per_source.get_mut(&ip) {
                *count = count.saturating_sub(1);
                if *count == 0 {
                    held.per_source.remove(&ip);
                }
            }
        }
    }
}

/// One connection's place under the limits; given back when dropped.
#[derive(Debug)]
pub struct ConnectionSlot {
    slots: Arc<ConnectionSlots>,
    ip: IpAddr,
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        self.slots.release(self.ip);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, last])
    }

    #[test]
    fn total_limit_counts_every_source() {
        let slots = Arc::new(ConnectionSlots::new(2, 0));
        let a = slots.acquire(ip(1)).unwrap();
        let _b = slots.acquire(ip(2)).unwrap();
        assert_eq!(slots.acquire(ip(3)).unwrap_err(), SlotRefused::Total);
        assert_eq!(slots.held(), 2);
        drop(a);
        assert!(slots.acquire(ip(3)).is_ok());
    }

    #[test]
    fn per_source_limit_leaves_other_sources_alone() {
        let slots = Arc::new(ConnectionSlots::new(0, 1));
        let _a = slots.acquire(ip(1)).unwrap();
        assert_eq!(slots.acquire(ip(1)).unwrap_err(), SlotRefused::PerSource);
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        assert_eq!(slots.acquire(mapped).unwrap_err(), SlotRefused::PerSource);
        let _b = slots.acquire(ip(2)).unwrap();
        assert_eq!(slots.held(), 2);
    }

    #[test]
    fn released_sources_leave_no_entries() {
        let slots = Arc::new(ConnectionSlots::new(0, 5));
        let held: Vec<_> = (0..100).map(|i| slots.acquire(ip(i)).unwrap()).collect();
        drop(held);
        assert_eq!(slots.held(), 0);
        assert!(slots.state.lock().unwrap().per_source.is_empty());
    }

    #[test]
    fn no_limits_admit_everything() {
        let slots = Arc::new(ConnectionSlots::new(0, 0));
        let held: Vec<_> = (0..1000).map(|_| slots.acquire(ip(1)).unwrap()).collect();
        assert_eq!(slots.held(), 1000);
        drop(held);
        assert_eq!(slots.held(), 0);
    }
}
