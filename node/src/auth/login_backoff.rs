//! Back-off after failed logins, per source address and per user name
//! (sans-IO: the clock is an argument).
//!
//! - **Per source**: after `after` failed logins from one address, each
//!   further attempt from it must wait `initial × 2^(failures − after)`,
//!   capped at `max`, counted from its last failure. Attempts in that time
//!   are refused before any password work.
//! - **Per user name**: failures against one name, from any addresses,
//!   back off the same way, but only for addresses that have failed
//!   themselves. An address with no recent failure always gets its
//!   password checked, so an attacker guessing alice's password from
//!   elsewhere cannot lock alice out.
//! - A success clears the address's and the name's failures. Failures are
//!   forgotten once `max` has passed since the last one without another.
//! - At most [`MAX_TRACKED`] addresses and names each; a full table forgets
//!   what it may (at most one sweep a second), and past that new entries are
//!   not tracked (the worker limit still bounds the work).
//!
//! ```
//! use std::net::IpAddr;
//! use std::time::{Duration, Instant};
//! use quicmq_node::auth::login_backoff::{BackoffSettings, LoginBackoff};
//!
//! let backoff = LoginBackoff::new(BackoffSettings {
//!     after: 2,
//!     initial: Duration::from_secs(1),
//!     max: Duration::from_secs(8),
//! });
//! let guesser: IpAddr = "192.0.2.1".parse().unwrap();
//! let t0 = Instant::now();
//! for _ in 0..2 {
//!     assert!(backoff.admit(guesser, Some("alice"), t0).is_ok());
//!     backoff.failed(guesser, Some("alice"), t0);
//! }
//! // Two failures, the free ones: the next attempt waits 1 s, and after
//! // one more failure 2 s.
//! assert_eq!(backoff.admit(guesser, Some("alice"), t0), Err(Duration::from_secs(1)));
//! let t1 = t0 + Duration::from_secs(1);
//! backoff.failed(guesser, Some("alice"), t1);
//! assert_eq!(backoff.admit(guesser, Some("alice"), t1), Err(Duration::from_secs(2)));
//! // alice, from her own address, is not held back.
//! let alice: IpAddr = "198.51.100.7".parse().unwrap();
//! assert!(backoff.admit(alice, Some("alice"), t0).is_ok());
//! ```

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Addresses (and, apart, user names) tracked at once.
pub const MAX_TRACKED: usize = 65_536;

/// How often a full table is swept for forgotten entries.
const SWEEP_INTERVAL: Duration = Duration::from_secs(1);

/// When to back off, and how far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackoffSettings {
    /// Failed logins allowed before backing off (0: back-off is off).
    pub after: u32,
    /// The first wait.
    pub initial: Duration,
    /// The longest wait; failures are forgotten this long after the last.
    pub max: Duration,
}

impl Default for BackoffSettings {
    /// 5 failures free, then 1 s doubling up to 60 s.
    fn default() -> Self {
        BackoffSettings {
            after: 5,
            initial: Duration::from_secs(1),
            max: Duration::from_secs(60),
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    last: Instant,
}

impl Failures {
    /// Until when attempts wait, if they do.
    fn blocked_until(&self, s: &BackoffSettings) -> Option<Instant> {
        let over = self.count.checked_sub(s.after)?;
        let wait = s.initial.saturating_mul(1u32 << over.min(20)).min(s.max);
        Some(self.last + wait)
    }

    fn forgotten(&self, s: &BackoffSettings, now: Instant) -> bool {
        now.saturating_duration_since(self.last) >= s.max
    }
}

#[derive(Debug)]
struct Table<K> {
    entries: HashMap<K, Failures>,
    swept: Option<Instant>,
}

impl<K: Hash + Eq> Table<K> {
    fn new() -> Table<K> {
        Table {
            entries: HashMap::new(),
            swept: None,
        }
    }

    /// The live failures of `key` (forgotten ones are removed).
    fn get(&mut self, key: &K, s: &BackoffSettings, now: Instant) -> Option<Failures> {
        let failures = *self.entries.get(key)?;
        if failures.forgotten(s, now) {
            self.entries.remove(key);
            return None;
        }
        Some(failures)
    }

    fn fail(&mut self, key: K, s: &BackoffSettings, now: Instant, max_entries: usize) {
        if !self.entries.contains_key(&key) && self.entries.len() >= max_entries {
            if self
                .swept
                .is_none_or(|at| now.saturating_duration_since(at) >= SWEEP_INTERVAL)
            {
                self.entries.retain(|_, f| !f.forgotten(s, now));
                self.swept = Some(now);
            }
            if self.entries.len() >= max_entries {
                return;
            }
        }
        let entry = self.entries.entry(key).or_insert(Failures {
            count: 0,
            last: now,
        });
        if entry.forgotten(s, now) {
            entry.count = 0;
        }
        entry.count = entry.count.saturating_add(1);
        entry.last = now;
    }
}

#[derive(Debug)]
struct Tables {
    sources: Table<IpAddr>,
    users: Table<String>,
}

/// Failed logins per address and per user name, and the waits they cost.
#[derive(Debug)]
pub struct LoginBackoff {
    settings: BackoffSettings,
    max_entries: usize,
    tables: Mutex<Tables>,
}

impl LoginBackoff {
    /// Back-off as `settings` say.
    pub fn new(settings: BackoffSettings) -> LoginBackoff {
        Self::with_capacity(settings, MAX_TRACKED)
    }

    fn with_capacity(settings: BackoffSettings, max_entries: usize) -> LoginBackoff {
        LoginBackoff {
            settings,
            max_entries,
            tables: Mutex::new(Tables {
                sources: Table::new(),
                users: Table::new(),
            }),
        }
    }

    /// The settings in force.
    pub fn settings(&self) -> BackoffSettings {
        self.settings
    }

    fn tables(&self) -> std::sync::MutexGuard<'_, Tables> {
        self.tables.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether a login from `ip` as `username` may be checked now; else
    /// how long it must wait.
    ///
    /// # Errors
    ///
    /// The time left to wait.
    pub fn admit(&self, ip: IpAddr, username: Option<&str>, now: Instant) -> Result<(), Duration> {
        if self.settings.after == 0 {
            return Ok(());
        }
        let s = &self.settings;
        let ip = crate::limits::canonical_ip(ip);
        let mut tables = self.tables();
        let Some(source) = tables.sources.get(&ip, s, now) else {
            // No recent failure from here: always checked.
            return Ok(());
        };
        let mut until = source.blocked_until(s);
        if let Some(name) = username {
            if let Some(user) = tables.users.get(&name.to_owned(), s, now) {
                until = until.max(user.blocked_until(s));
            }
        }
        match until {
            Some(until) if until > now => Err(until - now),
            _ => Ok(()),
        }
    }

    /// Whether `ip` has failed logins not yet forgotten (its checks wait
    /// behind those of clean addresses; failures are counted with
    /// back-off off too).
    pub fn has_failed(&self, ip: IpAddr, now: Instant) -> bool {
        let ip = crate::limits::canonical_ip(ip);
        let s = self.settings;
        self.tables().sources.get(&ip, &s, now).is_some()
    }

    /// A login from `ip` as `username` failed (wrong password or unknown
    /// user).
    pub fn failed(&self, ip: IpAddr, username: Option<&str>, now: Instant) {
        let ip = crate::limits::canonical_ip(ip);
        let (s, max) = (self.settings, self.max_entries);
        let mut tables = self.tables();
        tables.sources.fail(ip, &s, now, max);
        if let Some(name) = username {
            tables.users.fail(name.to_owned(), &s, now, max);
        }
    }

    /// A login from `ip` as `username` succeeded: both start afresh.
    pub fn succeeded(&self, ip: IpAddr, username: Option<&str>) {
        let ip = crate::limits::canonical_ip(ip);
        let mut tables = self.tables();
        tables.sources.entries.remove(&ip);
        if let Some(name) = username {
            tables.users.entries.remove(name);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([192, 0, 2, last])
    }

    fn settings() -> BackoffSettings {
        BackoffSettings {
            after: 3,
            initial: Duration::from_secs(1),
            max: Duration::from_secs(10),
        }
    }

    #[test]
    fn a_source_waits_twice_as_long_after_each_failure_up_to_the_cap() {
        let b = LoginBackoff::new(settings());
        let mut now = Instant::now();
        let mut waits = Vec::new();
        for _ in 0..8 {
            match b.admit(ip(1), None, now) {
                Ok(()) => {}
                Err(wait) => {
                    waits.push(wait.as_secs());
                    now += wait;
                }
            }
            b.failed(ip(1), None, now);
        }
        assert_eq!(waits, [1, 2, 4, 8, 10]);
        // Another address is not held back.
        assert!(b.admit(ip(2), None, now).is_ok());
        // Forgotten after `max` without a failure.
        assert!(b.admit(ip(1), None, now + Duration::from_secs(10)).is_ok());
        b.failed(ip(1), None, now + Duration::from_secs(10));
        assert!(b.admit(ip(1), None, now + Duration::from_secs(10)).is_ok());
    }

    #[test]
    fn guesses_on_a_name_from_many_addresses_hold_back_only_those_addresses() {
        let b = LoginBackoff::new(settings());
        let now = Instant::now();
        // One guess each from 10 addresses: no address over its own limit.
        for last in 10..20 {
            assert!(b.admit(ip(last), Some("alice"), now).is_ok());
            b.failed(ip(last), Some("alice"), now);
        }
        // Each of them now waits on alice's name…
        assert!(b.admit(ip(10), Some("alice"), now).is_err());
        // …but not on another name,
        assert!(b.admit(ip(10), Some("bob"), now).is_ok());
        // and alice from an address without failures is checked.
        assert!(b.admit(ip(99), Some("alice"), now).is_ok());
        // Her success clears the name.
        b.succeeded(ip(99), Some("alice"));
        assert!(b.admit(ip(10), Some("alice"), now).is_ok());
    }

    #[test]
    fn a_success_clears_the_source() {
        let b = LoginBackoff::new(settings());
        let now = Instant::now();
        for _ in 0..5 {
            b.failed(ip(1), Some("alice"), now);
        }
        assert!(b.admit(ip(1), Some("alice"), now).is_err());
        b.succeeded(ip(1), Some("alice"));
        assert!(b.admit(ip(1), Some("alice"), now).is_ok());
    }

    #[test]
    fn off_means_never_held_back_but_failures_still_count() {
        let b = LoginBackoff::new(BackoffSettings {
            after: 0,
            ..settings()
        });
        let now = Instant::now();
        for _ in 0..100 {
            b.failed(ip(1), Some("a"), now);
        }
        assert!(b.admit(ip(1), Some("a"), now).is_ok());
        assert!(
            b.has_failed(ip(1), now),
            "its checks still wait behind clean ones"
        );
        assert!(!b.has_failed(ip(2), now));
    }

    #[test]
    fn a_full_table_forgets_old_entries_then_stops_tracking() {
        let b = LoginBackoff::with_capacity(settings(), 2);
        let t0 = Instant::now();
        for last in 1..=2 {
            for _ in 0..4 {
                b.failed(ip(last), None, t0);
            }
        }
        // Full: a third address is not tracked, the first two are.
        for _ in 0..4 {
            b.failed(ip(3), None, t0);
        }
        assert!(b.admit(ip(3), None, t0).is_ok());
        assert!(b.admit(ip(1), None, t0).is_err());
        // Once the others are forgotten there is room again.
        let t1 = t0 + Duration::from_secs(10);
        for _ in 0..4 {
            b.failed(ip(3), None, t1);
        }
        assert!(b.admit(ip(3), None, t1).is_err());
    }
}
