//! Gives freed memory back to the operating system. glibc's allocator
//! keeps freed memory in its arenas (one per thread that allocated), so a
//! node whose sessions held hundreds of MiB keeps that RSS after they end.
//! [`MemoryTrim`] decides when to ask it to return free pages
//! (`malloc_trim`): once the bytes sessions hold fell by
//! [`TRIM_AFTER_RELEASED`] since the last trim, and at least every
//! [`TRIM_EVERY`] anyway. Elsewhere (musl, other systems) trimming is a
//! no-op: those allocators return memory themselves.
//!
//! ```
//! use std::time::{Duration, Instant};
//! use quicmq_node::memory_trim::MemoryTrim;
//!
//! let t0 = Instant::now();
//! let mut trim = MemoryTrim::new(t0);
//! assert!(!trim.due(100 << 20, t0), "holding, nothing freed yet");
//! assert!(trim.due(10 << 20, t0 + Duration::from_secs(1)), "90 MiB freed");
//! assert!(!trim.due(10 << 20, t0 + Duration::from_secs(2)));
//! assert!(trim.due(10 << 20, t0 + Duration::from_secs(62)), "a minute passed");
//! ```

use std::time::{Duration, Instant};

/// Bytes the sessions must have freed since the last trim to trim now.
pub const TRIM_AFTER_RELEASED: usize = 8 << 20;

/// The longest time between two trims.
pub const TRIM_EVERY: Duration = Duration::from_secs(60);

/// When to trim (sans-IO: the caller passes the held bytes and the clock).
#[derive(Debug, Clone)]
pub struct MemoryTrim {
    /// The most bytes held since the last trim.
    peak: usize,
    last: Instant,
}

impl MemoryTrim {
    /// Starts counting at `now`.
    pub fn new(now: Instant) -> MemoryTrim {
        MemoryTrim { peak: 0, last: now }
    }

    /// Whether to trim now, with sessions holding `held` bytes; when it
    /// says yes, the next trim counts from here.
    pub fn due(&mut self, held: usize, now: Instant) -> bool {
        self.peak = self.peak.max(held);
        let freed = self.peak.saturating_sub(held);
        if freed >= TRIM_AFTER_RELEASED || now.saturating_duration_since(self.last) >= TRIM_EVERY {
            self.peak = held;
            self.last = now;
            return true;
        }
        false
    }
}

/// Asks the allocator to return free memory to the system (glibc:
/// `malloc_trim(0)`, which releases free pages of every arena).
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: malloc_trim only walks the allocator's own free lists;
        // it takes no pointers from us and is safe to call at any time.
        unsafe {
            libc::malloc_trim(0);
        }
    }
}
