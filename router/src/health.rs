//! Node health from probe answers (sans-IO verdict, async prober).
//!
//! Every interval the router sends each node's routed port a PROXY v2
//! LOCAL datagram; a live node echoes it. A node that has not answered for
//! `dead_after` is dead: its short-header packets get Stateless Resets and
//! new connections hash to the others.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use quicmq_proto::envelope::LOCAL_HEADER;

/// Payload marker of a probe (after the LOCAL header).
pub const PROBE_MAGIC: &[u8; 8] = b"qmqprobe";

/// The probe datagram.
pub fn probe_datagram() -> [u8; LOCAL_HEADER.len() + 8] {
    let mut probe = [0u8; LOCAL_HEADER.len() + 8];
    probe[..LOCAL_HEADER.len()].copy_from_slice(&LOCAL_HEADER);
    probe[LOCAL_HEADER.len()..].copy_from_slice(PROBE_MAGIC);
    probe
}

/// Whether a datagram from a node is an answer to our probe.
pub fn is_probe_answer(datagram: &[u8]) -> bool {
    datagram == probe_datagram()
}

/// Last answer time of every node, milliseconds since the router started
/// (0 = never).
#[derive(Debug)]
pub struct Answers {
    last_ms: Vec<AtomicU64>,
}

impl Answers {
    /// For `nodes` nodes.
    pub fn new(nodes: usize) -> Answers {
        Answers {
            last_ms: (0..nodes).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    /// Node `i` answered at `now_ms`.
    pub fn record(&self, i: usize, now_ms: u64) {
        if let Some(slot) = self.last_ms.get(i) {
            slot.store(now_ms.max(1), Ordering::Relaxed);
        }
    }

    /// The verdict for node `i` at `now_ms`.
    pub fn alive(&self, i: usize, now_ms: u64, dead_after: Duration) -> bool {
        let last = self.last_ms.get(i).map_or(0, |s| s.load(Ordering::Relaxed));
        last != 0 && now_ms.saturating_sub(last) <= dead_after.as_millis() as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alive_until_answers_stop_for_dead_after() {
        let a = Answers::new(2);
        let window = Duration::from_millis(1000);
        assert!(!a.alive(0, 5, window), "never answered");
        a.record(0, 100);
        assert!(a.alive(0, 1100, window));
        assert!(!a.alive(0, 1101, window));
        assert!(!a.alive(1, 1100, window));
        assert!(!a.alive(7, 1100, window), "unknown index");
    }

    #[test]
    fn probes_are_local_commands_and_answers_match_exactly() {
        let probe = probe_datagram();
        let (header, offset) = quicmq_proto::envelope::parse(&probe).unwrap();
        assert_eq!(header, None, "LOCAL command");
        assert_eq!(&probe[offset..], PROBE_MAGIC);
        assert!(is_probe_answer(&probe));
        assert!(!is_probe_answer(&probe[..probe.len() - 1]));
    }
}
