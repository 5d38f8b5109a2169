//! Keep-alive and PINGREQ/PINGRESP bookkeeping (sans-IO).
//!
//! The client sends PINGREQ when it has sent nothing on the control stream
//! for the keep-alive interval, and gives up on the connection when a
//! PINGREQ goes unanswered for another interval. PINGRESP carries no
//! identifier, so the pings in flight form a queue answered in order; each
//! may carry a waiter `T` (the async shell's `ping()` caller).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// What the keep-alive timer should do now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KeepAliveAction {
    /// Keep-alive is off (interval 0): nothing to do, ever.
    Disabled,
    /// Sleep until then and ask again.
    WaitUntil(Instant),
    /// Send a PINGREQ now.
    SendPing,
    /// A PINGREQ went unanswered: the connection is dead.
    TimedOut,
}

/// Keep-alive state of one connection.
pub(crate) struct KeepAlive<T> {
    interval: Duration,
    last_sent: Instant,
    pings: VecDeque<(Instant, Option<T>)>,
}

impl<T> KeepAlive<T> {
    /// Keep-alive with `interval` (zero = disabled), counting from `now`.
    pub(crate) fn new(interval: Duration, now: Instant) -> KeepAlive<T> {
        KeepAlive {
            interval,
            last_sent: now,
            pings: VecDeque::new(),
        }
    }

    /// The interval in force.
    #[cfg(test)]
    pub(crate) fn interval(&self) -> Duration {
        self.interval
    }

    /// A packet was sent at `now`.
    pub(crate) fn on_sent(&mut self, now: Instant) {
        if now > self.last_sent {
            self.last_sent = now;
        }
    }

    /// A PINGREQ is being sent at `now`; `waiter` gets the round trip.
    pub(crate) fn on_ping(&mut self, now: Instant, waiter: Option<T>) {
        self.on_sent(now);
        self.pings.push_back((now, waiter));
    }

    /// Pings sent and not yet answered.
    #[cfg(test)]
    pub(crate) fn pings_in_flight(&self) -> usize {
        self.pings.len()
    }

    /// A PINGRESP arrived at `now`: the round trip of the oldest ping and
    /// its waiter, or `None` for an unsolicited PINGRESP.
    pub(crate) fn on_pingresp(&mut self, now: Instant) -> Option<(Duration, Option<T>)> {
        let (sent, waiter) = self.pings.pop_front()?;
        Some((now.saturating_duration_since(sent), waiter))
    }

    /// Forgets every ping in flight (the connection is gone) and returns the
    /// waiters.
    pub(crate) fn drain(&mut self) -> Vec<T> {
        self.pings
            .drain(..)
            .filter_map(|(_, waiter)| waiter)
            .collect()
    }

    /// What to do at `now`.
    pub(crate) fn poll(&self, now: Instant) -> KeepAliveAction {
        if self.interval.is_zero() {
            return KeepAliveAction::Disabled;
        }
        if let Some((sent, _)) = self.pings.front() {
            let deadline = *sent + self.interval;
            return if now >= deadline {
                KeepAliveAction::TimedOut
            } else {
                KeepAliveAction::WaitUntil(deadline)
            };
        }
        let deadline = self.last_sent + self.interval;
        if now >= deadline {
            KeepAliveAction::SendPing
        } else {
            KeepAliveAction::WaitUntil(deadline)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: Duration = Duration::from_secs(1);

    #[test]
    fn pings_after_an_idle_interval() {
        let t0 = Instant::now();
        let mut ka: KeepAlive<()> = KeepAlive::new(10 * SEC, t0);
        assert_eq!(ka.poll(t0), KeepAliveAction::WaitUntil(t0 + 10 * SEC));
        ka.on_sent(t0 + 4 * SEC);
        assert_eq!(
            ka.poll(t0 + 10 * SEC),
            KeepAliveAction::WaitUntil(t0 + 14 * SEC)
        );
        assert_eq!(ka.poll(t0 + 14 * SEC), KeepAliveAction::SendPing);
    }

    #[test]
    fn times_out_when_pingresp_does_not_come() {
        let t0 = Instant::now();
        let mut ka: KeepAlive<()> = KeepAlive::new(10 * SEC, t0);
        ka.on_ping(t0 + 10 * SEC, None);
        assert_eq!(ka.pings_in_flight(), 1);
        assert_eq!(
            ka.poll(t0 + 15 * SEC),
            KeepAliveAction::WaitUntil(t0 + 20 * SEC)
        );
        assert_eq!(ka.poll(t0 + 20 * SEC), KeepAliveAction::TimedOut);
        let (rtt, _) = ka.on_pingresp(t0 + 12 * SEC).unwrap();
        assert_eq!(rtt, 2 * SEC);
        assert_eq!(
            ka.poll(t0 + 12 * SEC),
            KeepAliveAction::WaitUntil(t0 + 20 * SEC)
        );
        assert_eq!(ka.poll(t0 + 20 * SEC), KeepAliveAction::SendPing);
    }

    #[test]
    fn pingresps_answer_pings_in_order() {
        let t0 = Instant::now();
        let mut ka = KeepAlive::new(10 * SEC, t0);
        ka.on_ping(t0, Some("first"));
        ka.on_ping(t0 + SEC, Some("second"));
        assert_eq!(ka.on_pingresp(t0 + 3 * SEC), Some((3 * SEC, Some("first"))));
        assert_eq!(
            ka.on_pingresp(t0 + 3 * SEC),
            Some((2 * SEC, Some("second")))
        );
        assert_eq!(ka.on_pingresp(t0 + 3 * SEC), None);
    }

    #[test]
    fn disabled_with_zero_interval_but_still_tracks_pings() {
        let t0 = Instant::now();
        let mut ka = KeepAlive::new(Duration::ZERO, t0);
        assert_eq!(ka.interval(), Duration::ZERO);
        assert_eq!(ka.poll(t0 + 1000 * SEC), KeepAliveAction::Disabled);
        ka.on_ping(t0, Some(1));
        ka.on_ping(t0, None);
        ka.on_ping(t0, Some(3));
        assert_eq!(ka.drain(), vec![1, 3]);
        assert_eq!(ka.pings_in_flight(), 0);
    }
}
