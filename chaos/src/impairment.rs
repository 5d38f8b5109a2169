//! [`Impairment`]: what a path does to datagrams (loss, delay, jitter,
//! reordering, duplication), and [`Impairer`], the sans-IO decision for
//! each datagram: when to deliver it, if at all, and how many times.
//!
//! The kernel of the machines we test on has no `netem`, so the UDP proxy
//! ([`crate::udp_proxy`]) applies these decisions itself.
//!
//! ```
//! use std::time::{Duration, Instant};
//! use quicmq_chaos::impairment::{Impairer, Impairment};
//!
//! let path = Impairment { delay: Duration::from_millis(20), ..Impairment::default() };
//! let mut impairer = Impairer::new(path, 7);
//! let now = Instant::now();
//! assert_eq!(impairer.decide(now), vec![now + Duration::from_millis(20)]);
//! ```

use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// What a path does to each datagram. Probabilities are in `[0, 1]`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Impairment {
    /// Probability that a datagram is dropped.
    pub loss: f64,
    /// Delay every datagram gets.
    pub delay: Duration,
    /// Extra random delay, uniform in `[0, jitter]`.
    pub jitter: Duration,
    /// Probability that a datagram is held back by `reorder_by` on top of
    /// its delay, so later datagrams overtake it.
    pub reorder: f64,
    /// How long a reordered datagram is held back.
    pub reorder_by: Duration,
    /// Probability that a datagram is delivered twice.
    pub duplicate: f64,
}

/// A value of [`Impairment`] is out of range.
#[derive(Debug, thiserror::Error, PartialEq)]
#[error("impairment `{field}` must be a probability from 0 to 1, not {value}")]
pub struct InvalidImpairment {
    /// The field.
    pub field: &'static str,
    /// Its value.
    pub value: f64,
}

impl Impairment {
    /// A path that loses `loss` of the datagrams, delays each by `delay`
    /// and holds `reorder` of them back by another `delay`.
    pub fn lossy(loss: f64, delay: Duration, reorder: f64) -> Impairment {
        Impairment {
            loss,
            delay,
            reorder,
            reorder_by: delay,
            ..Impairment::default()
        }
    }

    /// Checks that the probabilities are probabilities.
    ///
    /// # Errors
    ///
    /// The first field out of range.
    pub fn validate(&self) -> Result<(), InvalidImpairment> {
        for (field, value) in [
            ("loss", self.loss),
            ("reorder", self.reorder),
            ("duplicate", self.duplicate),
        ] {
            if !(0.0..=1.0).contains(&value) {
                return Err(InvalidImpairment { field, value });
            }
        }
        Ok(())
    }

    /// Whether the path changes nothing.
    pub fn is_clear(&self) -> bool {
        self == &Impairment::default()
    }
}

/// Decides the fate of each datagram on an impaired path; deterministic
/// for a given seed.
#[derive(Debug)]
pub struct Impairer {
    path: Impairment,
    rng: StdRng,
}

impl Impairer {
    /// An impairer for `path`, seeded with `seed`.
    pub fn new(path: Impairment, seed: u64) -> Impairer {
        Impairer {
            path,
            rng: StdRng::seed_from_u64(seed),
        }
    }

    /// The path it applies.
    pub fn path(&self) -> &Impairment {
        &self.path
    }

    /// Applies `path` to datagrams decided from now on.
    pub fn set_path(&mut self, path: Impairment) {
        self.path = path;
    }

    /// When a datagram that arrives `now` is to be delivered: no instant
    /// when it is lost, two when it is duplicated.
    pub fn decide(&mut self, now: Instant) -> Vec<Instant> {
        if self.path.is_clear() {
            return vec![now];
        }
        if self.path.loss > 0.0 && self.rng.gen_bool(self.path.loss.clamp(0.0, 1.0)) {
            return Vec::new();
        }
        let copies = if self.path.duplicate > 0.0
            && self.rng.gen_bool(self.path.duplicate.clamp(0.0, 1.0))
        {
            2
        } else {
            1
        };
        (0..copies).map(|_| now + self.delay()).collect()
    }

    fn delay(&mut self) -> Duration {
        let mut delay = self.path.delay;
        if !self.path.jitter.is_zero() {
            delay += self.path.jitter.mul_f64(self.rng.gen::<f64>());
        }
        if self.path.reorder > 0.0 && self.rng.gen_bool(self.path.reorder.clamp(0.0, 1.0)) {
            delay += self.path.reorder_by;
        }
        delay
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_clear_path_delivers_everything_at_once() {
        let mut impairer = Impairer::new(Impairment::default(), 1);
        let now = Instant::now();
        for _ in 0..100 {
            assert_eq!(impairer.decide(now), vec![now]);
        }
    }

    #[test]
    fn total_loss_delivers_nothing() {
        let path = Impairment {
            loss: 1.0,
            ..Impairment::default()
        };
        let mut impairer = Impairer::new(path, 1);
        assert!((0..100).all(|_| impairer.decide(Instant::now()).is_empty()));
    }

    #[test]
    fn loss_duplication_and_reordering_happen_at_their_rates() {
        let path = Impairment {
            loss: 0.05,
            delay: Duration::from_millis(20),
            reorder: 0.1,
            reorder_by: Duration::from_millis(20),
            duplicate: 0.02,
            ..Impairment::default()
        };
        let mut impairer = Impairer::new(path, 42);
        let now = Instant::now();
        let (mut lost, mut doubled, mut held) = (0, 0, 0);
        let n = 20_000;
        for _ in 0..n {
            let times = impairer.decide(now);
            match times.len() {
                0 => lost += 1,
                2 => doubled += 1,
                _ => {}
            }
            for t in &times {
                assert!(*t >= now + Duration::from_millis(20), "never early");
                if *t >= now + Duration::from_millis(40) {
                    held += 1;
                }
            }
        }
        let rate = |k: i32| f64::from(k) / f64::from(n);
        assert!((0.04..0.06).contains(&rate(lost)), "loss {}", rate(lost));
        assert!(
            (0.01..0.03).contains(&rate(doubled)),
            "duplicates {}",
            rate(doubled)
        );
        assert!(
            (0.08..0.12).contains(&rate(held)),
            "reordered {}",
            rate(held)
        );
    }

    #[test]
    fn the_same_seed_makes_the_same_decisions() {
        let path = Impairment::lossy(0.3, Duration::from_millis(5), 0.3);
        let now = Instant::now();
        let mut a = Impairer::new(path.clone(), 9);
        let mut b = Impairer::new(path, 9);
        for _ in 0..1000 {
            assert_eq!(a.decide(now), b.decide(now));
        }
    }

    #[test]
    fn probabilities_out_of_range_are_refused() {
        let path = Impairment {
            loss: 1.5,
            ..Impairment::default()
        };
        assert_eq!(
            path.validate(),
            Err(InvalidImpairment {
                field: "loss",
                value: 1.5
            })
        );
        assert!(Impairment::lossy(0.05, Duration::ZERO, 0.1)
            .validate()
            .is_ok());
    }
}
