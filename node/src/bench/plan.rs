//! Scheduling decisions of a benchmark run: when to send, when to stop,
//! which topic and client identifier each client uses. Plain functions of
//! their inputs (no clocks, no I/O).

use std::time::Duration;

/// Sends at a fixed rate: message `n` is due `n / rate` seconds after the
/// start. A client that falls behind sends at once until it is back on
/// schedule (the schedule does not slip, so a stall shows as latency
/// rather than as a lower rate).
///
/// ```
/// use std::time::Duration;
/// use quicmq_node::bench::Pacer;
/// let pacer = Pacer::new(1000.0);
/// assert_eq!(pacer.due(0), Duration::ZERO);
/// assert_eq!(pacer.due(1500), Duration::from_millis(1500));
/// assert_eq!(Pacer::new(0.0).due(1_000_000), Duration::ZERO);
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pacer {
    /// Messages per second; `None` = no pacing.
    rate: Option<f64>,
}

impl Pacer {
    /// A pacer for `rate` messages per second; 0 (or anything not
    /// positive and finite) means as fast as possible.
    pub fn new(rate: f64) -> Pacer {
        Pacer {
            rate: (rate.is_finite() && rate > 0.0).then_some(rate),
        }
    }

    /// Whether the pacer limits the rate.
    pub fn is_paced(&self) -> bool {
        self.rate.is_some()
    }

    /// Offset from the start at which message `n` (from 0) is due.
    pub fn due(&self, n: u64) -> Duration {
        match self.rate {
            Some(rate) => Duration::try_from_secs_f64(n as f64 / rate).unwrap_or(Duration::MAX),
            None => Duration::ZERO,
        }
    }
}

/// When a sender stops: after `count` messages, or once `duration` has
/// passed, whichever comes first.
///
/// ```
/// use std::time::Duration;
/// use quicmq_node::bench::Bound;
/// let bound = Bound { count: Some(10), duration: Duration::from_secs(5) };
/// assert!(bound.may_send(9, Duration::from_secs(1)));
/// assert!(!bound.may_send(10, Duration::from_secs(1)));
/// assert!(!bound.may_send(3, Duration::from_secs(5)));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bound {
    /// Messages per sender; `None` = until the duration is over.
    pub count: Option<u64>,
    /// Time limit from the start.
    pub duration: Duration,
}

impl Bound {
    /// Whether message number `sent` (from 0) may be sent `elapsed` after
    /// the start.
    pub fn may_send(&self, sent: u64, elapsed: Duration) -> bool {
        self.count.is_none_or(|count| sent < count) && elapsed < self.duration
    }

    /// Whether message `n`, due at `due` after the start, is inside the
    /// time limit (a paced sender stops instead of waiting past it).
    pub fn due_in_time(&self, due: Duration) -> bool {
        due < self.duration
    }
}

/// `template` with every `%i` replaced by `index`.
///
/// ```
/// use quicmq_node::bench::expand_template;
/// assert_eq!(expand_template("bench/%i", 7), "bench/7");
/// assert_eq!(expand_template("bench/#", 7), "bench/#");
/// ```
pub fn expand_template(template: &str, index: usize) -> String {
    template.replace("%i", &index.to_string())
}

/// `template` with every `%n` replaced by `sequence` (a publisher's
/// message number, from 0): one topic per message.
///
/// ```
/// use quicmq_node::bench::expand_sequence;
/// assert_eq!(expand_sequence("bench/0/%n", 42), "bench/0/42");
/// assert_eq!(expand_sequence("bench/0", 42), "bench/0");
/// ```
pub fn expand_sequence(template: &str, sequence: u64) -> String {
    template.replace("%n", &sequence.to_string())
}

/// The client identifier of client `index`: `PREFIX-INDEX`.
pub fn client_id(prefix: &str, index: usize) -> String {
    format!("{prefix}-{index}")
}

/// The subscription filter for `filter` in share group `share`, if any:
/// `$share/GROUP/FILTER`.
///
/// ```
/// use quicmq_node::bench::shared_filter;
/// assert_eq!(shared_filter("bench/#", Some("g")), "$share/g/bench/#");
/// assert_eq!(shared_filter("bench/#", None), "bench/#");
/// ```
pub fn shared_filter(filter: &str, share: Option<&str>) -> String {
    match share {
        Some(group) => format!("$share/{group}/{filter}"),
        None => filter.to_owned(),
    }
}

/// Why a subscriber run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// Every subscriber has its expected count.
    AllReceived,
    /// No message arrived for the idle time (after the first one).
    Idle,
    /// The hard time limit.
    Deadline,
    /// Every subscriber's connection is closed.
    AllClosed,
}

impl StopReason {
    /// Lower-case name for summaries.
    pub fn name(self) -> &'static str {
        match self {
            StopReason::AllReceived => "all-received",
            StopReason::Idle => "idle",
            StopReason::Deadline => "deadline",
            StopReason::AllClosed => "all-closed",
        }
    }
}

/// When a subscriber run stops.
///
/// ```
/// use std::time::Duration;
/// use quicmq_node::bench::{SubProgress, SubStopRule, StopReason};
/// let rule = SubStopRule { idle: Duration::from_secs(3), deadline: Duration::from_secs(60) };
/// let waiting = SubProgress { elapsed: Duration::from_secs(10), clients: 2, done: 0, closed: 0, since_last_message: None };
/// assert_eq!(rule.decide(&waiting), None);
/// let quiet = SubProgress { since_last_message: Some(Duration::from_secs(3)), ..waiting };
/// assert_eq!(rule.decide(&quiet), Some(StopReason::Idle));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubStopRule {
    /// Stop once no message arrived for this long, counted from the last
    /// message (the wait for the first one is bounded only by `deadline`).
    pub idle: Duration,
    /// Hard limit from the start.
    pub deadline: Duration,
}

/// The state of a subscriber run, as the stop rule sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubProgress {
    /// Time since the subscribers were ready.
    pub elapsed: Duration,
    /// Subscribers in the run.
    pub clients: usize,
    /// Subscribers that have received their expected count.
    pub done: usize,
    /// Subscribers whose connection closed.
    pub closed: usize,
    /// Time since the last message of any subscriber; `None` before the
    /// first.
    pub since_last_message: Option<Duration>,
}

impl SubStopRule {
    /// Whether to stop now, and why.
    pub fn decide(&self, progress: &SubProgress) -> Option<StopReason> {
        if progress.clients > 0 && progress.done >= progress.clients {
            Some(StopReason::AllReceived)
        } else if progress.closed >= progress.clients {
            Some(StopReason::AllClosed)
        } else if progress.elapsed >= self.deadline {
            Some(StopReason::Deadline)
        } else if progress
            .since_last_message
            .is_some_and(|quiet| quiet >= self.idle)
        {
            Some(StopReason::Idle)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pacer_spreads_messages_evenly() {
        let pacer = Pacer::new(250.0);
        assert!(pacer.is_paced());
        assert_eq!(pacer.due(1), Duration::from_millis(4));
        assert_eq!(pacer.due(250), Duration::from_secs(1));
        for rate in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            let pacer = Pacer::new(rate);
            assert!(!pacer.is_paced());
            assert_eq!(pacer.due(u64::MAX), Duration::ZERO);
        }
        assert_eq!(Pacer::new(1e-300).due(u64::MAX), Duration::MAX);
    }

    #[test]
    fn bound_by_count_or_time() {
        let by_time = Bound {
            count: None,
            duration: Duration::from_secs(2),
        };
        assert!(by_time.may_send(u64::MAX - 1, Duration::from_millis(1999)));
        assert!(!by_time.may_send(0, Duration::from_secs(2)));
        assert!(by_time.due_in_time(Duration::from_millis(1999)));
        assert!(!by_time.due_in_time(Duration::from_secs(2)));
        let none = Bound {
            count: Some(0),
            duration: Duration::from_secs(2),
        };
        assert!(!none.may_send(0, Duration::ZERO));
    }

    #[test]
    fn templates_and_ids() {
        assert_eq!(expand_template("a/%i/b/%i", 3), "a/3/b/3");
        assert_eq!(expand_sequence(&expand_template("r/%i/%n", 2), 7), "r/2/7");
        assert_eq!(client_id("qb-pub-1f", 12), "qb-pub-1f-12");
    }

    #[test]
    fn stop_rule_priorities() {
        let rule = SubStopRule {
            idle: Duration::from_secs(3),
            deadline: Duration::from_secs(30),
        };
        let base = SubProgress {
            elapsed: Duration::from_secs(1),
            clients: 3,
            done: 0,
            closed: 0,
            since_last_message: Some(Duration::from_secs(1)),
        };
        assert_eq!(rule.decide(&base), None);
        assert_eq!(
            rule.decide(&SubProgress { done: 3, ..base }),
            Some(StopReason::AllReceived)
        );
        assert_eq!(
            rule.decide(&SubProgress { closed: 3, ..base }),
            Some(StopReason::AllClosed)
        );
        assert_eq!(
            rule.decide(&SubProgress {
                elapsed: Duration::from_secs(30),
                ..base
            }),
            Some(StopReason::Deadline)
        );
        assert_eq!(
            rule.decide(&SubProgress {
                since_last_message: Some(Duration::from_secs(3)),
                ..base
            }),
            Some(StopReason::Idle)
        );
        // No message yet: only the deadline ends the wait.
        assert_eq!(
            rule.decide(&SubProgress {
                elapsed: Duration::from_secs(29),
                since_last_message: None,
                ..base
            }),
            None
        );
    }
}
