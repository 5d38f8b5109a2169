//! A rate limit per source address: one [`TokenBucket`] per IP.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::{canonical_ip, TokenBucket};

/// Sources tracked at once. Past this, buckets that have filled up again
/// are forgotten (at most one sweep a second); if that is not enough,
/// untracked sources share one
/// bucket (a flood from very many addresses is then limited as a whole).
pub const MAX_TRACKED_SOURCES: usize = 65_536;

/// Admits events (new connections) from each source address at `rate` a
/// second, with bursts of `burst`. A rate of 0 admits everything.
///
/// ```
/// use std::net::IpAddr;
/// use std::time::Instant;
/// use quicmq_node::limits::SourceRate;
///
/// let limit = SourceRate::new(1, 2);
/// let now = Instant::now();
/// let a: IpAddr = "192.0.2.1".parse().unwrap();
/// let b: IpAddr = "192.0.2.2".parse().unwrap();
/// assert!(limit.admit(a, now) && limit.admit(a, now));
/// assert!(!limit.admit(a, now));
/// assert!(limit.admit(b, now));
/// ```
#[derive(Debug)]
pub struct SourceRate {
    rate: u32,
    burst: u32,
    max_sources: usize,
    state: Mutex<Sources>,
}

/// How often a full table is swept for refilled buckets: a sweep walks
/// the whole table, so a flood of new sources must not cause one each.
const PRUNE_INTERVAL: Duration = Duration::from_secs(1);

#[derive(Debug, Default)]
struct Sources {
    buckets: HashMap<IpAddr, TokenBucket>,
    /// Shared by sources that found the table full.
    overflow: Option<TokenBucket>,
    /// When the table was last swept.
    pruned: Option<Instant>,
}

impl SourceRate {
    /// `rate` events a second per source (0: no limit), bursts of `burst`.
    pub fn new(rate: u32, burst: u32) -> SourceRate {
        Self::with_capacity(rate, burst, MAX_TRACKED_SOURCES)
    }

    fn with_capacity(rate: u32, burst: u32, max_sources: usize) -> SourceRate {
        SourceRate {
            rate,
            burst,
            max_sources,
            state: Mutex::new(Sources::default()),
        }
    }

    /// Whether the limit is on.
    pub fn is_limited(&self) -> bool {
        self.rate > 0
    }

    /// Whether one more event from `ip` is admitted now.
    pub fn admit(&self, ip: IpAddr, now: Instant) -> bool {
        if self.rate == 0 {
            return true;
        }
        let ip = canonical_ip(ip);
        let Ok(mut state) = self.state.lock() else {
            return true;
        };
        let Sources {
            buckets,
            overflow,
            pruned,
        } = &mut *state;
        if !buckets.contains_key(&ip)
            && buckets.len() >= self.max_sources
            && pruned.is_none_or(|at| now.saturating_duration_since(at) >= PRUNE_INTERVAL)
        {
            buckets.retain(|_, bucket| !bucket.is_full(now));
            *pruned = Some(now);
        }
        if buckets.contains_key(&ip) || buckets.len() < self.max_sources {
            return buckets
                .entry(ip)
                .or_insert_with(|| TokenBucket::new(self.rate, self.burst, now))
                .try_take(now);
        }
        overflow
            .get_or_insert_with(|| TokenBucket::new(self.rate, self.burst, now))
            .try_take(now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, last])
    }

    #[test]
    fn zero_rate_admits_everything() {
        let limit = SourceRate::new(0, 0);
        let now = Instant::now();
        assert!(!limit.is_limited());
        assert!((0..10_000).all(|_| limit.admit(ip(1), now)));
    }

    #[test]
    fn each_source_has_its_own_bucket() {
        let limit = SourceRate::new(2, 3);
        let t0 = Instant::now();
        assert_eq!((0..10).filter(|_| limit.admit(ip(1), t0)).count(), 3);
        assert_eq!((0..10).filter(|_| limit.admit(ip(2), t0)).count(), 3);
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!((0..10).filter(|_| limit.admit(ip(1), t1)).count(), 2);
    }

    #[test]
    fn ipv4_mapped_ipv6_is_the_ipv4_source() {
        let limit = SourceRate::new(1, 1);
        let now = Instant::now();
        assert!(limit.admit(ip(1), now));
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        assert!(!limit.admit(mapped, now));
    }

    #[test]
    fn a_full_table_forgets_idle_sources_then_shares_one_bucket() {
        let limit = SourceRate::with_capacity(1, 1, 2);
        let t0 = Instant::now();
        assert!(limit.admit(ip(1), t0));
        assert!(limit.admit(ip(2), t0));
        // Table full, nobody idle: sources 3 and 4 share the overflow.
        assert!(limit.admit(ip(3), t0));
        assert!(!limit.admit(ip(4), t0));
        // Both tracked sources have refilled: forgotten, room again.
        let t1 = t0 + Duration::from_secs(2);
        assert!(limit.admit(ip(4), t1));
        assert!(!limit.admit(ip(4), t1));
        assert!(limit.admit(ip(5), t1));
    }
}
