//! The node-wide budget for message bytes that sessions hold, queued or in
//! flight (`max_memory_queued`). Each session reserves a delivery's bytes
//! when it queues it and gives them back when the client acknowledges it,
//! the message expires or is dropped, or the session ends. A delivery that
//! does not fit is dropped (`quicmq_messages_dropped_total{reason="node_memory"}`),
//! so no mix of slow readers and offline sessions drives the node into
//! swap. A message queued for N sessions counts N times: the budget bounds
//! memory from above.
//!
//! ```
//! use quicmq_node::broker::QueueBudget;
//!
//! let budget = QueueBudget::new(100);
//! assert!(budget.try_reserve(60));
//! assert!(!budget.try_reserve(60), "over the budget");
//! budget.release(60);
//! assert!(budget.try_reserve(60));
//! assert_eq!(budget.used(), 60);
//! ```

use std::sync::atomic::{AtomicUsize, Ordering};

/// Bytes held by every session of a node, against a limit.
#[derive(Debug)]
pub struct QueueBudget {
    limit: usize,
    used: AtomicUsize,
}

impl QueueBudget {
    /// A budget of `limit` bytes (0: no limit, only counted).
    pub fn new(limit: usize) -> QueueBudget {
        QueueBudget {
            limit,
            used: AtomicUsize::new(0),
        }
    }

    /// The limit in bytes (0: none).
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Bytes held now.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    /// Takes `bytes` if they fit under the limit.
    pub fn try_reserve(&self, bytes: usize) -> bool {
        if self.limit == 0 {
            self.used.fetch_add(bytes, Ordering::Relaxed);
            return true;
        }
        self.used
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |used| {
                used.checked_add(bytes).filter(|&total| total <= self.limit)
            })
            .is_ok()
    }

    /// Takes `bytes` even over the limit: what a node restores from its
    /// store or a session resumes is held already, in memory or on disk,
    /// and must be counted.
    pub fn force_reserve(&self, bytes: usize) {
        self.used.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Gives `bytes` back.
    pub fn release(&self, bytes: usize) {
        let _ = self
            .used
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |used| {
                Some(used.saturating_sub(bytes))
            });
    }
}

/// The budget `max_memory_queued = 0` stands for: a quarter of the memory
/// the process may use (its cgroup's `memory.max`, else the machine's
/// memory), or 1 GiB where neither can be read.
pub fn default_memory_budget() -> usize {
    const FALLBACK: usize = 1 << 30;
    let cgroup = std::fs::read_to_string("/sys/fs/cgroup/memory.max")
        .ok()
        .and_then(|text| text.trim().parse::<u64>().ok());
    let total = cgroup.or_else(|| {
        let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
        let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
        let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kib * 1024)
    });
    total
        .and_then(|bytes| usize::try_from(bytes / 4).ok())
        .filter(|&quarter| quarter > 0)
        .unwrap_or(FALLBACK)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unlimited_counts_and_release_never_underflows() {
        let budget = QueueBudget::new(0);
        assert!(budget.try_reserve(usize::MAX / 2));
        budget.release(usize::MAX);
        assert_eq!(budget.used(), 0);
    }

    #[test]
    fn forced_reservations_count_against_later_ones() {
        let budget = QueueBudget::new(10);
        budget.force_reserve(25);
        assert!(!budget.try_reserve(1));
        budget.release(20);
        assert!(budget.try_reserve(5));
        assert!(!budget.try_reserve(1));
    }

    #[test]
    fn the_default_is_a_quarter_of_some_memory() {
        let budget = default_memory_budget();
        assert!(budget >= 1 << 20, "{budget}");
    }
}
