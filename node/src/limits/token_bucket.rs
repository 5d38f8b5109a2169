//! A token bucket: `rate` tokens a second, at most `burst` saved up.

use std::time::{Duration, Instant};

/// A token bucket over a clock the caller passes in (sans-IO).
///
/// ```
/// use std::time::{Duration, Instant};
/// use quicmq_node::limits::TokenBucket;
///
/// let start = Instant::now();
/// let mut bucket = TokenBucket::new(10, 2, start);
/// assert!(bucket.try_take(start));
/// assert!(bucket.try_take(start));
/// assert!(!bucket.try_take(start));
/// assert_eq!(bucket.wait(start), Duration::from_millis(100));
/// assert!(bucket.try_take(start + Duration::from_millis(100)));
/// ```
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    updated: Instant,
}

impl TokenBucket {
    /// A full bucket refilled with `rate` tokens a second, holding at most
    /// `burst` (at least one).
    pub fn new(rate: u32, burst: u32, now: Instant) -> TokenBucket {
        let burst = f64::from(burst.max(1));
        TokenBucket {
            rate: f64::from(rate),
            burst,
            tokens: burst,
            updated: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        self.updated = self.updated.max(now);
    }

    /// Take a token if there is one.
    pub fn try_take(&mut self, now: Instant) -> bool {
        self.refill(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// How long until a token is there (zero if one is).
    pub fn wait(&self, now: Instant) -> Duration {
        let mut bucket = self.clone();
        bucket.refill(now);
        if bucket.tokens >= 1.0 || self.rate <= 0.0 {
            return Duration::ZERO;
        }
        // Rounded to the microsecond so that waiting this long always
        // finds the token.
        let secs = (1.0 - bucket.tokens) / self.rate;
        Duration::from_micros((secs * 1e6).ceil() as u64)
    }

    /// Whether the bucket has filled up again: it holds nothing a fresh
    /// bucket would not, so it can be forgotten.
    pub fn is_full(&self, now: Instant) -> bool {
        let mut bucket = self.clone();
        bucket.refill(now);
        bucket.tokens >= bucket.burst
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refills_at_the_rate_up_to_the_burst() {
        let t0 = Instant::now();
        let mut bucket = TokenBucket::new(4, 8, t0);
        for _ in 0..8 {
            assert!(bucket.try_take(t0));
        }
        assert!(!bucket.try_take(t0));
        assert!(!bucket.is_full(t0));
        // 1 s later: 4 tokens.
        let t1 = t0 + Duration::from_secs(1);
        for _ in 0..4 {
            assert!(bucket.try_take(t1));
        }
        assert!(!bucket.try_take(t1));
        // An hour later: only the burst.
        let t2 = t1 + Duration::from_secs(3600);
        assert!(bucket.is_full(t2));
        for _ in 0..8 {
            assert!(bucket.try_take(t2));
        }
        assert!(!bucket.try_take(t2));
    }

    #[test]
    fn wait_finds_the_token() {
        let t0 = Instant::now();
        let mut bucket = TokenBucket::new(3, 1, t0);
        assert!(bucket.try_take(t0));
        let wait = bucket.wait(t0);
        assert!(wait > Duration::from_millis(330) && wait < Duration::from_millis(340));
        let mut early = bucket.clone();
        assert!(!early.try_take(t0 + wait - Duration::from_millis(1)));
        assert!(bucket.try_take(t0 + wait));
    }

    #[test]
    fn a_clock_going_back_takes_nothing_away() {
        let t0 = Instant::now() + Duration::from_secs(10);
        let mut bucket = TokenBucket::new(1, 1, t0);
        assert!(bucket.try_take(t0));
        assert!(!bucket.try_take(t0 - Duration::from_secs(5)));
        assert!(bucket.try_take(t0 + Duration::from_secs(1)));
    }

    #[test]
    fn zero_burst_means_one() {
        let t0 = Instant::now();
        let mut bucket = TokenBucket::new(1, 0, t0);
        assert!(bucket.try_take(t0));
        assert!(!bucket.try_take(t0));
    }
}
