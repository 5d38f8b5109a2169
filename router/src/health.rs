//! Node health from probe answers (sans-IO verdict, async prober).
//!
//! Every interval the router sends each node's routed port a PROXY v2
//! LOCAL datagram; a live node echoes it. A node that has not answered for
//! `dead_after` is dead: its short-header packets get Stateless Resets and
//! new connections hash to the others.

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

/// The verdict for a node that last answered at `last_ms` (milliseconds
/// since the router started, 0 = never), at `now_ms`.
pub fn alive_at(last_ms: u64, now_ms: u64, dead_after: Duration) -> bool {
    last_ms != 0 && now_ms.saturating_sub(last_ms) <= dead_after.as_millis() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alive_until_answers_stop_for_dead_after() {
        let window = Duration::from_millis(1000);
        assert!(!alive_at(0, 5, window), "never answered");
        assert!(alive_at(100, 1100, window));
        assert!(!alive_at(100, 1101, window));
        assert!(alive_at(100, 50, window), "clock before the answer");
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
