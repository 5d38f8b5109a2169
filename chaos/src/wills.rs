//! [`WillCheck`]: whether every will of the killed node's clients was
//! published once and on time (sans-IO: built from what the scenario saw,
//! unit-tested here).

use std::time::Duration;

use crate::report::quantile;

/// One will a client of the killed node left: when it was due and when
/// (how often) it arrived, all measured from the kill.
#[derive(Debug, Clone, Default)]
pub struct ExpectedWill {
    /// Its Will Delay Interval as it counts: 0 for a plain session (its
    /// session ends with the connection), else the delay.
    pub delay: Duration,
    /// Arrivals at the watcher, from the kill.
    pub arrivals: Vec<Duration>,
}

/// What the scenario saw of the wills.
#[derive(Debug, Clone, Default)]
pub struct WillCheck {
    /// The wills, one per client.
    pub wills: Vec<ExpectedWill>,
    /// From the kill until a survivor reported the node down.
    pub down_after: Option<Duration>,
    /// How late after its due time a will may come and still be on time.
    pub tolerance: Duration,
}

impl WillCheck {
    /// Wills that arrived exactly once.
    pub fn once(&self) -> usize {
        self.wills.iter().filter(|w| w.arrivals.len() == 1).count()
    }

    /// Wills that never arrived.
    pub fn missing(&self) -> usize {
        self.wills.iter().filter(|w| w.arrivals.is_empty()).count()
    }

    /// Extra copies.
    pub fn duplicated(&self) -> usize {
        self.wills
            .iter()
            .map(|w| w.arrivals.len().saturating_sub(1))
            .sum()
    }

    /// Wills that came before their delay was over (counted from the
    /// kill: the node is declared down after it, so this is a lower bound).
    pub fn early(&self) -> usize {
        self.wills
            .iter()
            .filter(|w| w.arrivals.iter().any(|at| *at < w.delay))
            .count()
    }

    /// Wills that came later than `tolerance` after their due time (the
    /// moment the node was seen down, plus the delay).
    pub fn late(&self) -> usize {
        let Some(down) = self.down_after else {
            return 0;
        };
        self.wills
            .iter()
            .filter(|w| {
                w.arrivals
                    .iter()
                    .any(|at| *at > down + w.delay + self.tolerance)
            })
            .count()
    }

    /// How long after the node was seen down (plus its delay) each will
    /// arrived (0 when before).
    pub fn lateness(&self) -> Vec<Duration> {
        let Some(down) = self.down_after else {
            return Vec::new();
        };
        self.wills
            .iter()
            .filter_map(|w| {
                w.arrivals
                    .first()
                    .map(|at| at.saturating_sub(down + w.delay))
            })
            .collect()
    }

    /// The `q`-quantile of [`WillCheck::lateness`].
    pub fn lateness_quantile(&self, q: f64) -> Option<Duration> {
        quantile(&self.lateness(), q)
    }

    /// What failed, in words (empty: every will once and on time).
    pub fn failures(&self) -> Vec<String> {
        let mut failures = Vec::new();
        let n = self.wills.len();
        for (count, what) in [
            (self.missing(), "never published"),
            (self.duplicated(), "published more than once (extra copies)"),
            (self.early(), "published before their delay"),
            (self.late(), "published late"),
        ] {
            if count > 0 {
                failures.push(format!("wills: {count} of {n} {what}"));
            }
        }
        if self.down_after.is_none() && n > 0 {
            failures.push("wills: the killed node was never reported down".into());
        }
        failures
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn will(delay_s: u64, arrivals_ms: &[u64]) -> ExpectedWill {
        ExpectedWill {
            delay: Duration::from_secs(delay_s),
            arrivals: arrivals_ms
                .iter()
                .map(|ms| Duration::from_millis(*ms))
                .collect(),
        }
    }

    #[test]
    fn every_will_once_and_on_time_passes() {
        let check = WillCheck {
            wills: vec![will(0, &[1_100]), will(2, &[3_050])],
            down_after: Some(Duration::from_millis(1_000)),
            tolerance: Duration::from_secs(1),
        };
        assert!(check.failures().is_empty(), "{:?}", check.failures());
        assert_eq!(check.once(), 2);
        assert_eq!(
            check.lateness_quantile(1.0),
            Some(Duration::from_millis(100))
        );
    }

    #[test]
    fn missing_duplicated_early_and_late_wills_fail() {
        let check = WillCheck {
            wills: vec![
                will(0, &[]),
                will(0, &[1_100, 1_200]),
                will(5, &[2_000]),
                will(0, &[9_000]),
            ],
            down_after: Some(Duration::from_millis(1_000)),
            tolerance: Duration::from_secs(1),
        };
        assert_eq!(
            check.failures(),
            [
                "wills: 1 of 4 never published",
                "wills: 1 of 4 published more than once (extra copies)",
                "wills: 1 of 4 published before their delay",
                "wills: 1 of 4 published late",
            ]
        );
        let never_down = WillCheck {
            down_after: None,
            ..check
        };
        assert!(never_down
            .failures()
            .contains(&"wills: the killed node was never reported down".to_string()));
    }
}
