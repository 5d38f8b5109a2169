//! QUIC handshakes in progress, and when to ask clients to prove their
//! address (Retry) before the node spends a handshake on them.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Counts QUIC handshakes in progress. While more than `retry_above` are,
/// a new client whose address is not validated yet is sent a Retry: a
/// stateless answer the size of a token, so a flood of Initials from
/// spoofed addresses costs the node no connection state and reflects
/// nothing larger than what came in.
///
/// ```
/// use std::sync::Arc;
/// use quicmq_node::limits::HandshakeLoad;
///
/// let load = Arc::new(HandshakeLoad::new(1));
/// assert!(!load.wants_retry());
/// let first = load.start();
/// assert!(load.wants_retry());
/// drop(first);
/// assert!(!load.wants_retry());
/// ```
#[derive(Debug)]
pub struct HandshakeLoad {
    retry_above: usize,
    in_progress: AtomicUsize,
}

impl HandshakeLoad {
    /// Retry unvalidated clients while `retry_above` handshakes are in
    /// progress (0: always).
    pub fn new(retry_above: usize) -> HandshakeLoad {
        HandshakeLoad {
            retry_above,
            in_progress: AtomicUsize::new(0),
        }
    }

    /// Whether a client whose address is not validated should get a Retry.
    pub fn wants_retry(&self) -> bool {
        self.in_progress.load(Ordering::Relaxed) >= self.retry_above
    }

    /// Handshakes in progress.
    pub fn in_progress(&self) -> usize {
        self.in_progress.load(Ordering::Relaxed)
    }

    /// A handshake starts; it counts until the guard is dropped.
    pub fn start(self: &Arc<Self>) -> HandshakeInProgress {
        self.in_progress.fetch_add(1, Ordering::Relaxed);
        HandshakeInProgress { load: self.clone() }
    }
}

/// One handshake in progress (see [`HandshakeLoad::start`]).
#[derive(Debug)]
pub struct HandshakeInProgress {
    load: Arc<HandshakeLoad>,
}

impl Drop for HandshakeInProgress {
    fn drop(&mut self) {
        self.load.in_progress.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_always_retries() {
        let load = Arc::new(HandshakeLoad::new(0));
        assert!(load.wants_retry());
    }

    #[test]
    fn counts_each_handshake_until_it_ends() {
        let load = Arc::new(HandshakeLoad::new(3));
        let guards: Vec<_> = (0..3).map(|_| load.start()).collect();
        assert_eq!(load.in_progress(), 3);
        assert!(load.wants_retry());
        drop(guards);
        assert_eq!(load.in_progress(), 0);
        assert!(!load.wants_retry());
    }
}
