//! [`Timeline`]: what a scenario's publishers and subscribers saw, second
//! by second, and the availability figures drawn from it (sans-IO: times
//! are given as offsets from the fault).
//!
//! Each publish counts in the second it was *attempted*, with how it
//! ended: acknowledged (PUBACK 0x00), refused (another reason code) or
//! timed out (no answer: the connection was lost or the wait ran out).
//! Deliveries count in the second they arrived. The **recovery time** is
//! measured from the fault to the end of the last second, from the fault
//! on, in which fewer than 99 % of the attempts were acknowledged (0 when
//! there is none). The second that follows may still hold the fault's last
//! failures (fewer than 1 %); from the one after it on, every attempt
//! must be acknowledged.

use std::fmt::Write as _;
use std::time::Duration;

/// Share of attempts that must be acknowledged in a second for it to count
/// as available.
pub const AVAILABLE: f64 = 0.99;

/// One second of a scenario.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Bucket {
    /// Seconds from the fault to the start of this second (negative:
    /// before it).
    pub second: i64,
    /// Publishes attempted.
    pub attempted: u64,
    /// Of those, acknowledged with success.
    pub acknowledged: u64,
    /// Refused with a reason code.
    pub refused: u64,
    /// Never answered (connection lost, or the wait ran out).
    pub timed_out: u64,
    /// Messages subscribers received.
    pub delivered: u64,
}

impl Bucket {
    /// Acknowledged share of the attempts (1 without attempts).
    pub fn availability(&self) -> f64 {
        if self.attempted == 0 {
            1.0
        } else {
            self.acknowledged as f64 / self.attempted as f64
        }
    }
}

/// How a publish ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// PUBACK 0x00.
    Acknowledged,
    /// PUBACK with another reason code.
    Refused,
    /// No PUBACK.
    TimedOut,
}

/// Per-second counts around a fault.
///
/// ```
/// use std::time::Duration;
/// use quicmq_chaos::timeline::{Outcome, Timeline};
///
/// let mut t = Timeline::default();
/// t.publish(-Duration::from_millis(500).as_secs_f64(), Outcome::Acknowledged);
/// t.publish(0.2, Outcome::Refused);
/// t.publish(1.5, Outcome::Acknowledged);
/// assert_eq!(t.recovery(), Some(Duration::from_secs(1)));
/// assert_eq!(t.failures_after_recovery(), 0);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Timeline {
    buckets: Vec<Bucket>,
}

impl Timeline {
    fn bucket(&mut self, offset_s: f64) -> &mut Bucket {
        let second = offset_s.floor() as i64;
        let at = match self.buckets.binary_search_by_key(&second, |b| b.second) {
            Ok(at) => at,
            Err(at) => {
                self.buckets.insert(
                    at,
                    Bucket {
                        second,
                        ..Bucket::default()
                    },
                );
                at
            }
        };
        &mut self.buckets[at]
    }

    /// A publish attempted `offset_s` seconds after the fault (negative:
    /// before) ended with `outcome`.
    pub fn publish(&mut self, offset_s: f64, outcome: Outcome) {
        let b = self.bucket(offset_s);
        b.attempted += 1;
        match outcome {
            Outcome::Acknowledged => b.acknowledged += 1,
            Outcome::Refused => b.refused += 1,
            Outcome::TimedOut => b.timed_out += 1,
        }
    }

    /// A publisher that was paced to send `count` publishes in second
    /// `second` attempted none (its previous publish was still waiting):
    /// they count as attempted and unanswered, so that a stall shows as
    /// an outage rather than as a second without traffic.
    pub fn stalled(&mut self, second: i64, count: u64) {
        let b = self.bucket(second as f64);
        b.attempted += count;
        b.timed_out += count;
    }

    /// A message arrived `offset_s` seconds after the fault.
    pub fn delivery(&mut self, offset_s: f64) {
        self.bucket(offset_s).delivered += 1;
    }

    /// The seconds, in order (seconds without any event are left out).
    pub fn buckets(&self) -> &[Bucket] {
        &self.buckets
    }

    /// Merges another timeline into this one.
    pub fn merge(&mut self, other: &Timeline) {
        for b in &other.buckets {
            let mine = self.bucket(b.second as f64);
            mine.attempted += b.attempted;
            mine.acknowledged += b.acknowledged;
            mine.refused += b.refused;
            mine.timed_out += b.timed_out;
            mine.delivered += b.delivered;
        }
    }

    /// From the fault to the end of the last second after it that was
    /// below [`AVAILABLE`]: `Some(0)` when none was; `None` without any
    /// attempt after the fault (nothing to judge by).
    pub fn recovery(&self) -> Option<Duration> {
        let after: Vec<&Bucket> = self.buckets.iter().filter(|b| b.second >= 0).collect();
        if after.iter().all(|b| b.attempted == 0) {
            return None;
        }
        let last_bad = after
            .iter()
            .filter(|b| b.availability() < AVAILABLE)
            .map(|b| b.second + 1)
            .max()
            .unwrap_or(0);
        Some(Duration::from_secs(last_bad.max(0) as u64))
    }

    /// Publishes refused or unanswered after recovery (from the second
    /// after the one recovery ends in: that one may hold the fault's
    /// last failures).
    pub fn failures_after_recovery(&self) -> u64 {
        let Some(recovery) = self.recovery() else {
            return 0;
        };
        let from = recovery.as_secs() as i64 + 1;
        self.buckets
            .iter()
            .filter(|b| b.second >= from)
            .map(|b| b.refused + b.timed_out)
            .sum()
    }

    /// The seconds as JSON: `[{second, attempted, acknowledged, refused,
    /// timed_out, delivered}, ...]`.
    pub fn to_json(&self) -> serde_json::Value {
        self.buckets
            .iter()
            .map(|b| {
                serde_json::json!({
                    "second": b.second,
                    "attempted": b.attempted,
                    "acknowledged": b.acknowledged,
                    "refused": b.refused,
                    "timed_out": b.timed_out,
                    "delivered": b.delivered,
                })
            })
            .collect()
    }

    /// Acknowledged share of the attempts after recovery (counted as
    /// [`Timeline::failures_after_recovery`] does).
    pub fn availability_after_recovery(&self) -> Option<f64> {
        let from = self.recovery()?.as_secs() as i64 + 1;
        let (acked, attempted) = self
            .buckets
            .iter()
            .filter(|b| b.second >= from)
            .fold((0, 0), |(a, n), b| (a + b.acknowledged, n + b.attempted));
        (attempted > 0).then(|| acked as f64 / attempted as f64)
    }

    /// A chart for the terminal: one column per second, its height the
    /// acknowledged share (`█` all, `_` none, `·` nothing attempted), the
    /// fault marked with `|` below.
    pub fn text_chart(&self) -> String {
        const LEVELS: [char; 9] = ['_', '▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
        let (Some(first), Some(last)) = (self.buckets.first(), self.buckets.last()) else {
            return String::new();
        };
        let mut bars = String::new();
        let mut marks = String::new();
        for second in first.second..=last.second {
            let bucket = self.buckets.iter().find(|b| b.second == second);
            bars.push(match bucket {
                Some(b) if b.attempted > 0 => {
                    let level = (b.availability() * 8.0).floor() as usize;
                    LEVELS[level.min(8)]
                }
                _ => '·',
            });
            marks.push(if second == 0 { '|' } else { ' ' });
        }
        let mut out = String::new();
        let _ = writeln!(
            out,
            "           acknowledged share per second, {}s..{}s around the fault",
            first.second,
            last.second + 1
        );
        let _ = writeln!(out, "           {bars}");
        let _ = write!(out, "           {}", marks.trim_end());
        out
    }

    /// An SVG chart: per second, attempts (grey bars), acknowledged
    /// (green), refused and unanswered (red), deliveries (blue line); a
    /// dashed line at the fault and one at recovery.
    pub fn svg(&self, title: &str) -> String {
        const W: f64 = 720.0;
        const H: f64 = 240.0;
        const PAD: f64 = 30.0;
        let mut out = String::new();
        let _ = writeln!(
            out,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="11">"#
        );
        let _ = writeln!(out, r#"<rect width="{W}" height="{H}" fill="white"/>"#);
        let _ = writeln!(out, r#"<text x="{PAD}" y="16">{}</text>"#, escape(title));
        let (Some(first), Some(last)) = (self.buckets.first(), self.buckets.last()) else {
            out.push_str("</svg>\n");
            return out;
        };
        let seconds = (last.second - first.second + 1).max(1) as f64;
        let top = self
            .buckets
            .iter()
            .map(|b| b.attempted.max(b.delivered))
            .max()
            .unwrap_or(1)
            .max(1) as f64;
        let plot_w = W - 2.0 * PAD;
        let plot_h = H - 2.0 * PAD;
        let x = |second: i64| PAD + (second - first.second) as f64 / seconds * plot_w;
        let y = |v: u64| H - PAD - v as f64 / top * plot_h;
        let bar = plot_w / seconds;
        for b in &self.buckets {
            let x0 = x(b.second);
            let failed = b.refused + b.timed_out;
            let _ = writeln!(
                out,
                r##"<rect x="{x0:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="#4caf50"/>"##,
                y(b.acknowledged),
                bar * 0.9,
                H - PAD - y(b.acknowledged)
            );
            if failed > 0 {
                let _ = writeln!(
                    out,
                    r##"<rect x="{x0:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="#e53935"/>"##,
                    y(b.acknowledged + failed),
                    bar * 0.9,
                    y(b.acknowledged) - y(b.acknowledged + failed)
                );
            }
        }
        let points: Vec<String> = self
            .buckets
            .iter()
            .map(|b| format!("{:.1},{:.1}", x(b.second) + bar / 2.0, y(b.delivered)))
            .collect();
        let _ = writeln!(
            out,
            r##"<polyline points="{}" fill="none" stroke="#1e88e5" stroke-width="1.5"/>"##,
            points.join(" ")
        );
        let mut marker = |second: i64, label: &str, colour: &str| {
            let at = x(second);
            let _ = writeln!(
                out,
                r#"<line x1="{at:.1}" y1="{PAD}" x2="{at:.1}" y2="{:.1}" stroke="{colour}" stroke-dasharray="4 3"/>"#,
                H - PAD
            );
            let _ = writeln!(
                out,
                r#"<text x="{:.1}" y="{:.1}" fill="{colour}">{label}</text>"#,
                at + 3.0,
                PAD + 10.0
            );
        };
        marker(0, "fault", "black");
        if let Some(recovery) = self.recovery().filter(|r| !r.is_zero()) {
            marker(recovery.as_secs() as i64, "recovered", "#2e7d32");
        }
        let _ = writeln!(
            out,
            r#"<text x="{PAD}" y="{:.1}">{}s</text><text x="{:.1}" y="{:.1}" text-anchor="end">{}s</text>"#,
            H - 10.0,
            first.second,
            W - PAD,
            H - 10.0,
            last.second + 1
        );
        let _ = writeln!(
            out,
            r##"<text x="{:.1}" y="16" text-anchor="end"><tspan fill="#4caf50">acknowledged</tspan> <tspan fill="#e53935">refused/unanswered</tspan> <tspan fill="#1e88e5">delivered</tspan> (max {top} per second)</text>"##,
            W - PAD
        );
        out.push_str("</svg>\n");
        out
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(t: &mut Timeline, second: f64, acked: u64, failed: u64) {
        for _ in 0..acked {
            t.publish(second, Outcome::Acknowledged);
        }
        for _ in 0..failed {
            t.publish(second, Outcome::Refused);
        }
    }

    #[test]
    fn recovery_ends_with_the_last_second_below_99_percent() {
        let mut t = Timeline::default();
        at(&mut t, -2.5, 100, 0);
        at(&mut t, 0.1, 40, 60);
        at(&mut t, 1.1, 90, 10);
        at(&mut t, 2.1, 995, 5); // 99.5 %: available, the fault's tail
        at(&mut t, 3.1, 995, 5); // 99.5 %: available, but a failure
        at(&mut t, 4.1, 100, 0);
        assert_eq!(t.recovery(), Some(Duration::from_secs(2)));
        assert_eq!(t.failures_after_recovery(), 5);
        let after = t.availability_after_recovery().unwrap();
        assert!((after - 1095.0 / 1100.0).abs() < 1e-9);
    }

    #[test]
    fn no_fault_effect_is_zero_recovery_and_nothing_after_the_fault_is_none() {
        let mut t = Timeline::default();
        at(&mut t, -1.0, 10, 0);
        assert_eq!(t.recovery(), None);
        at(&mut t, 0.5, 10, 0);
        assert_eq!(t.recovery(), Some(Duration::ZERO));
        assert_eq!(t.failures_after_recovery(), 0);
        // Failures before the fault do not count for recovery.
        at(&mut t, -1.0, 0, 10);
        assert_eq!(t.recovery(), Some(Duration::ZERO));
    }

    #[test]
    fn timelines_merge_and_draw() {
        let mut a = Timeline::default();
        at(&mut a, -1.0, 5, 0);
        a.delivery(-0.5);
        let mut b = Timeline::default();
        at(&mut b, -1.0, 5, 0);
        at(&mut b, 1.0, 0, 3);
        b.publish(2.0, Outcome::TimedOut);
        b.stalled(2, 4);
        a.merge(&b);
        assert_eq!(a.buckets().len(), 3);
        assert_eq!(a.buckets()[0].attempted, 10);
        assert_eq!(a.buckets()[0].delivered, 1);
        assert_eq!(a.buckets()[2].timed_out, 5);
        assert_eq!(a.buckets()[2].attempted, 5);
        let chart = a.text_chart();
        assert!(chart.contains("█·__"), "{chart}");
        let svg = a.svg("kill <owner>");
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert!(svg.contains("kill &lt;owner&gt;"));
        assert!(svg.contains("recovered"));
    }
}
