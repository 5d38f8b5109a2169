//! [`Report`]: what a scenario measured, and the invariants it checks
//! (sans-IO: built from counts and message IDs, unit-tested here).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::Duration;

use crate::timeline::Timeline;
use crate::wills::WillCheck;

/// A message's identity: publisher index and sequence number.
pub type MessageId = (u32, u64);

/// Deliveries as the subscribers saw them.
#[derive(Debug, Default, Clone)]
pub struct Deliveries {
    /// How often each message arrived (at its subscriber).
    pub counts: BTreeMap<MessageId, u32>,
}

impl Deliveries {
    /// Records one arrival of `id`.
    pub fn record(&mut self, id: MessageId) {
        *self.counts.entry(id).or_default() += 1;
    }
}

/// What a scenario measured.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Scenario name.
    pub scenario: String,
    /// The fault injected, in words.
    pub fault: String,
    /// Subscribers (persistent sessions, QoS 1).
    pub subscribers: usize,
    /// Publishers.
    pub publishers: usize,
    /// PUBLISH packets sent (QoS 1), including ones never acknowledged.
    pub published: u64,
    /// Of those, acknowledged with success (PUBACK 0x00).
    pub acknowledged: u64,
    /// Messages refused with a PUBACK error or never acknowledged.
    pub unacknowledged: u64,
    /// Acknowledged messages that reached their subscriber.
    pub delivered: u64,
    /// Acknowledged messages that never reached their subscriber (must be
    /// 0).
    pub lost: u64,
    /// The first few of those (publisher, sequence number), to look for
    /// in the nodes' logs.
    pub lost_ids: Vec<MessageId>,
    /// Extra copies received (QoS 1 may duplicate around a failover).
    pub duplicated: u64,
    /// Subscribers whose connection was lost.
    pub disconnected: usize,
    /// Of those, resumed (CONNACK with session present) before the end.
    pub resumed: usize,
    /// Subscribers that had to resume and found no session (must be 0).
    pub sessions_lost: usize,
    /// Time from the fault to each affected subscriber's resumption.
    pub failover: Vec<Duration>,
    /// Whether the retained messages are the same on every surviving node
    /// (`None`: not checked).
    pub retained_equal: Option<bool>,
    /// Storm: every subscriber connecting and subscribing at once as a
    /// plain session: until the last SUBACK.
    pub connect_plain: Option<Duration>,
    /// The same as persistent sessions (each a claim through Raft).
    pub connect_persistent: Option<Duration>,
    /// Storm: the clients of the killed node.
    pub storm_clients: usize,
    /// Storm: from the fault until the last subscriber resumed.
    pub all_resumed: Option<Duration>,
    /// Storm: from the fault until the last subscriber received again (a
    /// probe published after it resumed).
    pub all_receiving: Option<Duration>,
    /// Client endpoints (UDP sockets) the scenario's clients shared.
    pub client_endpoints: Option<usize>,
    /// Peak resident memory of the process running the clients, bytes.
    pub client_peak_rss: Option<u64>,
    /// Publishes and deliveries per second around the fault.
    pub timeline: Timeline,
    /// Longest recovery that passes (`None`: not judged).
    pub max_recovery: Option<Duration>,
    /// `kill-forever`: the wills of the killed node's clients.
    pub wills: Option<WillCheck>,
    /// Scenario-specific invariants that failed, in words.
    pub violations: Vec<String>,
}

impl Report {
    /// Compares what was acknowledged with what was delivered and fills in
    /// `delivered`, `lost` and `duplicated`.
    pub fn reconcile(&mut self, acknowledged: &BTreeSet<MessageId>, deliveries: &Deliveries) {
        self.acknowledged = acknowledged.len() as u64;
        self.delivered = acknowledged
            .iter()
            .filter(|id| deliveries.counts.contains_key(id))
            .count() as u64;
        self.lost = self.acknowledged - self.delivered;
        self.lost_ids = acknowledged
            .iter()
            .filter(|id| !deliveries.counts.contains_key(id))
            .take(10)
            .copied()
            .collect();
        self.duplicated = deliveries
            .counts
            .values()
            .map(|n| u64::from(n.saturating_sub(1)))
            .sum();
    }

    /// Storm: persistent sessions claimed per second while all connected
    /// at once.
    pub fn claims_per_second(&self) -> Option<f64> {
        let d = self.connect_persistent?.as_secs_f64();
        (d > 0.0).then(|| self.subscribers as f64 / d)
    }

    /// The `q`-quantile (0 to 1) of the failover times.
    pub fn failover_quantile(&self, q: f64) -> Option<Duration> {
        quantile(&self.failover, q)
    }

    /// The invariants every scenario holds to, plus its own violations:
    /// empty when the run passed.
    pub fn failures(&self) -> Vec<String> {
        let mut failures = self.violations.clone();
        if self.lost > 0 {
            let ids: Vec<String> = self
                .lost_ids
                .iter()
                .map(|(p, seq)| format!("{p}:{seq}"))
                .collect();
            failures.push(format!(
                "{} acknowledged messages lost (publisher:sequence {})",
                self.lost,
                ids.join(", ")
            ));
        }
        if self.sessions_lost > 0 {
            failures.push(format!(
                "{} sessions not found on resume",
                self.sessions_lost
            ));
        }
        if self.resumed < self.disconnected {
            failures.push(format!(
                "{} of {} disconnected subscribers did not resume",
                self.disconnected - self.resumed,
                self.disconnected
            ));
        }
        if self.retained_equal == Some(false) {
            failures.push("retained messages differ between survivors".into());
        }
        if self.acknowledged == 0 {
            failures.push("nothing was acknowledged".into());
        }
        if let Some(wills) = &self.wills {
            failures.extend(wills.failures());
        }
        if let (Some(limit), Some(recovery)) = (self.max_recovery, self.timeline.recovery()) {
            if recovery > limit {
                failures.push(format!(
                    "recovery took {} ms (at most {} ms)",
                    recovery.as_millis(),
                    limit.as_millis()
                ));
            }
            let after = self.timeline.failures_after_recovery();
            if after > 0 {
                failures.push(format!(
                    "{after} publishes refused or unanswered after recovery"
                ));
            }
        }
        failures
    }

    /// The report as JSON.
    pub fn to_json(&self) -> serde_json::Value {
        let ms = |d: Option<Duration>| d.map(|d| d.as_secs_f64() * 1000.0);
        serde_json::json!({
            "scenario": self.scenario,
            "fault": self.fault,
            "subscribers": self.subscribers,
            "publishers": self.publishers,
            "published": self.published,
            "acknowledged": self.acknowledged,
            "unacknowledged": self.unacknowledged,
            "delivered": self.delivered,
            "lost": self.lost,
            "lost_ids": self.lost_ids,
            "duplicated": self.duplicated,
            "disconnected": self.disconnected,
            "resumed": self.resumed,
            "sessions_lost": self.sessions_lost,
            "failover_ms": {
                "p50": ms(self.failover_quantile(0.5)),
                "p99": ms(self.failover_quantile(0.99)),
                "max": ms(self.failover_quantile(1.0)),
            },
            "retained_equal": self.retained_equal,
            "availability": {
                "recovery_ms": ms(self.timeline.recovery()),
                "max_recovery_ms": ms(self.max_recovery),
                "after_recovery": self.timeline.availability_after_recovery(),
                "failures_after_recovery": self.timeline.failures_after_recovery(),
                "timeline": self.timeline.to_json(),
            },
            "storm": {
                "connect_plain_ms": ms(self.connect_plain),
                "connect_persistent_ms": ms(self.connect_persistent),
                "claims_per_s": self.claims_per_second(),
                "reconnecting_clients": self.storm_clients,
                "all_resumed_ms": ms(self.all_resumed),
                "all_receiving_ms": ms(self.all_receiving),
                "client_endpoints": self.client_endpoints,
                "client_peak_rss_bytes": self.client_peak_rss,
            },
            "wills": self.wills.as_ref().map(|w| serde_json::json!({
                "expected": w.wills.len(),
                "once": w.once(),
                "missing": w.missing(),
                "duplicated": w.duplicated(),
                "early": w.early(),
                "late": w.late(),
                "node_down_ms": ms(w.down_after),
                "after_due_ms": {
                    "p50": ms(w.lateness_quantile(0.5)),
                    "p99": ms(w.lateness_quantile(0.99)),
                    "max": ms(w.lateness_quantile(1.0)),
                },
            })),
            "failures": self.failures(),
        })
    }
}

/// The `q`-quantile (nearest rank) of `values`.
pub fn quantile(values: &[Duration], q: f64) -> Option<Duration> {
    if values.is_empty() {
        return None;
    }
    let mut sorted = values.to_vec();
    sorted.sort();
    let rank = (q.clamp(0.0, 1.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = |d: Option<Duration>| {
            d.map_or_else(
                || "-".to_string(),
                |d| format!("{:.0} ms", d.as_secs_f64() * 1000.0),
            )
        };
        writeln!(f, "scenario   {} ({})", self.scenario, self.fault)?;
        writeln!(
            f,
            "clients    {} persistent QoS 1 subscribers, {} publishers",
            self.subscribers, self.publishers
        )?;
        writeln!(
            f,
            "messages   published {}, acknowledged {}, unacknowledged {}, delivered {}, lost {}, duplicated {}",
            self.published, self.acknowledged, self.unacknowledged, self.delivered, self.lost, self.duplicated
        )?;
        writeln!(
            f,
            "sessions   disconnected {}, resumed {}, not found {}",
            self.disconnected, self.resumed, self.sessions_lost
        )?;
        writeln!(
            f,
            "failover   p50 {}, p99 {}, max {}",
            ms(self.failover_quantile(0.5)),
            ms(self.failover_quantile(0.99)),
            ms(self.failover_quantile(1.0))
        )?;
        if !self.timeline.buckets().is_empty() {
            writeln!(
                f,
                "recovery   {} (acknowledged >= 99 % again), after it {} refused or unanswered, {:.2} % acknowledged",
                ms(self.timeline.recovery()),
                self.timeline.failures_after_recovery(),
                self.timeline.availability_after_recovery().unwrap_or(1.0) * 100.0
            )?;
            writeln!(f, "{}", self.timeline.text_chart())?;
        }
        if let (Some(plain), Some(persistent)) = (self.connect_plain, self.connect_persistent) {
            writeln!(
                f,
                "connect    all {} subscribed: plain {}, persistent {} ({:.0} claims/s)",
                self.subscribers,
                ms(Some(plain)),
                ms(Some(persistent)),
                self.claims_per_second().unwrap_or(0.0)
            )?;
        }
        if self.all_resumed.is_some() || self.all_receiving.is_some() {
            writeln!(
                f,
                "storm      {} clients of the killed node: all resumed {}, all receiving again {}",
                self.storm_clients,
                ms(self.all_resumed),
                ms(self.all_receiving)
            )?;
        }
        if let Some(rss) = self.client_peak_rss {
            writeln!(
                f,
                "clients    {} endpoints, peak memory {:.0} MiB",
                self.client_endpoints.unwrap_or(0),
                rss as f64 / (1024.0 * 1024.0)
            )?;
        }
        if let Some(wills) = &self.wills {
            writeln!(
                f,
                "wills      {} expected: {} once, {} missing, {} duplicated, {} early, {} late; node seen down {}, after due p50 {}, max {}",
                wills.wills.len(),
                wills.once(),
                wills.missing(),
                wills.duplicated(),
                wills.early(),
                wills.late(),
                ms(wills.down_after),
                ms(wills.lateness_quantile(0.5)),
                ms(wills.lateness_quantile(1.0)),
            )?;
        }
        if let Some(equal) = self.retained_equal {
            writeln!(
                f,
                "retained   {}",
                if equal {
                    "equal on survivors"
                } else {
                    "DIFFERENT"
                }
            )?;
        }
        let failures = self.failures();
        if failures.is_empty() {
            write!(f, "result     PASS")
        } else {
            write!(f, "result     FAIL: {}", failures.join("; "))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::timeline::Outcome;

    #[test]
    fn reconcile_counts_lost_and_duplicated() {
        let acknowledged: BTreeSet<MessageId> = [(0, 1), (0, 2), (1, 1)].into();
        let mut deliveries = Deliveries::default();
        deliveries.record((0, 1));
        deliveries.record((0, 1));
        deliveries.record((1, 1));
        // Delivered but never acknowledged (the publisher gave up): fine.
        deliveries.record((1, 2));
        let mut report = Report::default();
        report.reconcile(&acknowledged, &deliveries);
        assert_eq!(report.acknowledged, 3);
        assert_eq!(report.delivered, 2);
        assert_eq!(report.lost, 1);
        assert_eq!(report.duplicated, 1);
        assert_eq!(
            report.failures(),
            vec!["1 acknowledged messages lost (publisher:sequence 0:2)"]
        );
    }

    #[test]
    fn a_clean_run_passes_and_unresumed_sessions_fail() {
        let mut report = Report {
            acknowledged: 10,
            disconnected: 3,
            resumed: 3,
            failover: vec![Duration::from_millis(300); 3],
            ..Report::default()
        };
        assert!(report.failures().is_empty());
        assert!(report.to_string().ends_with("PASS"));
        report.resumed = 2;
        assert_eq!(
            report.failures(),
            vec!["1 of 3 disconnected subscribers did not resume"]
        );
    }

    #[test]
    fn a_slow_recovery_or_a_refusal_after_it_fails_the_run() {
        let mut report = Report {
            acknowledged: 10,
            max_recovery: Some(Duration::from_secs(3)),
            ..Report::default()
        };
        for second in [-1.0, 0.5, 1.5, 2.5, 3.5, 4.5] {
            let outcome = if (0.0..4.0).contains(&second) {
                Outcome::Refused
            } else {
                Outcome::Acknowledged
            };
            report.timeline.publish(second, outcome);
        }
        assert_eq!(
            report.failures(),
            vec!["recovery took 4000 ms (at most 3000 ms)"]
        );
        report.max_recovery = Some(Duration::from_secs(5));
        assert!(report.failures().is_empty());
        report.timeline.publish(5.5, Outcome::TimedOut);
        report.timeline.publish(5.6, Outcome::Acknowledged);
        report.timeline.publish(5.7, Outcome::Acknowledged);
        // 5.x is below 99 % now: recovery moves to 6 s, past the limit.
        assert_eq!(
            report.failures(),
            vec!["recovery took 6000 ms (at most 5000 ms)"]
        );
        let text = report.to_string();
        assert!(text.contains("recovery   6000 ms"), "{text}");
        let json = report.to_json();
        assert_eq!(json["availability"]["recovery_ms"], 6000.0);
        assert_eq!(json["availability"]["timeline"][0]["second"], -1);
    }

    #[test]
    fn quantiles_use_the_nearest_rank() {
        let values: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(quantile(&values, 0.5), Some(Duration::from_millis(50)));
        assert_eq!(quantile(&values, 0.99), Some(Duration::from_millis(99)));
        assert_eq!(quantile(&values, 1.0), Some(Duration::from_millis(100)));
        assert_eq!(quantile(&[], 0.5), None);
    }
}
