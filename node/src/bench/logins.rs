//! `quicmq bench login`: a flood of failed logins (unknown user names,
//! wrong passwords) from many parallel clients spread over several source
//! addresses, while an honest client keeps logging in with good
//! credentials from its own address; with `--admin`, the node's resident
//! memory (`quicmq_process_resident_memory_bytes`) is sampled throughout.
//!
//! It answers: does the node's memory stay bounded under a password
//! guesser, do honest clients still get in (and how fast), and how many
//! attempts per source reach a password check.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::task::JoinSet;

use crate::admin_client::{metric, request, AdminRequest};
use crate::client::{Client, ClientError, ClientOptions, ReasonCode};

use super::error::BenchError;
use super::stats::{LatencyHistogram, LatencySummary};

/// What `quicmq bench login` does.
#[derive(Debug, Clone)]
pub struct LoginSettings {
    /// The node; `username`/`password` are the honest client's (no
    /// honest client without a user name).
    pub options: ClientOptions,
    /// Failed logins to attempt.
    pub attempts: usize,
    /// Guessing clients at once.
    pub clients: usize,
    /// Local addresses the guessers connect from, in turn (empty: the
    /// system's choice).
    pub sources: Vec<IpAddr>,
    /// Pause between the honest client's logins.
    pub honest_interval: Duration,
    /// Hard time limit.
    pub duration: Duration,
    /// Admin endpoint of the node (`HOST:PORT`), for its memory.
    pub admin: Option<String>,
    /// Bearer token of the admin endpoint.
    pub admin_token: Option<String>,
}

/// The outcome of a login flood.
#[derive(Debug, Clone, Default)]
pub struct LoginSummary {
    /// Failed logins attempted.
    pub attempts: usize,
    /// Their outcomes: the CONNACK reason code's name, `connected`, or
    /// `error` (the connection failed without a CONNACK).
    pub outcomes: BTreeMap<String, usize>,
    /// The first error without a CONNACK, if any.
    pub first_error: Option<String>,
    /// Wall time of the flood.
    pub elapsed: Duration,
    /// Attempts per source address that reached a password check (0x86),
    /// per second: the highest of any source.
    pub checked_per_source_per_s: f64,
    /// Honest logins that succeeded and that failed.
    pub honest_ok: usize,
    /// Honest logins refused or failed.
    pub honest_failed: usize,
    /// The honest client's connect time.
    pub honest_latency: LatencySummary,
    /// Node resident memory at the start, highest, and at the end, bytes
    /// (`None` without `--admin`).
    pub rss: Option<(u64, u64, u64)>,
}

/// What the guessers saw.
#[derive(Debug, Default)]
struct Tally {
    /// Attempts by outcome.
    outcomes: BTreeMap<String, usize>,
    /// The first failure without a CONNACK.
    first_error: Option<String>,
    /// Attempts that reached a password check (0x86), by source.
    checked: BTreeMap<Option<IpAddr>, usize>,
}

fn outcome_name(result: &Result<(Client, crate::client::ConnAck), ClientError>) -> String {
    match result {
        Ok(_) => "connected".into(),
        Err(ClientError::Refused(connack)) => reason_name(connack.reason_code),
        Err(_) => "error".into(),
    }
}

fn reason_name(code: ReasonCode) -> String {
    format!("0x{:02X}", code.0)
}

/// Runs the flood.
///
/// # Errors
///
/// Invalid settings (no attempts or no clients).
pub async fn run_logins(settings: LoginSettings) -> Result<LoginSummary, BenchError> {
    if settings.attempts == 0 || settings.clients == 0 {
        return Err(BenchError::InvalidSetting(
            "no attempts or no clients".into(),
        ));
    }
    let deadline = Instant::now() + settings.duration;
    let done = Arc::new(AtomicBool::new(false));
    let rss = settings.admin.clone().map(|addr| {
        let token = settings.admin_token.clone();
        let done = done.clone();
        tokio::spawn(sample_rss(addr, token, done))
    });
    // Let the sampler take the starting value first.
    if rss.is_some() {
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let honest = settings.options.username.clone().map(|_| {
        let options = settings.options.clone();
        let done = done.clone();
        let interval = settings.honest_interval;
        tokio::spawn(honest_logins(options, interval, done, deadline))
    });

    let begun = Instant::now();
    let next = Arc::new(AtomicUsize::new(0));
    let tally: Arc<Mutex<Tally>> = Arc::default();
    let sources = Arc::new(settings.sources.clone());
    let mut guessers = JoinSet::new();
    for _ in 0..settings.clients {
        let (next, tally, sources) = (next.clone(), tally.clone(), sources.clone());
        let mut options = settings.options.clone();
        let attempts = settings.attempts;
        guessers.spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= attempts || Instant::now() >= deadline {
                    return;
                }
                let source = (!sources.is_empty()).then(|| sources[i % sources.len()]);
                options.local_ip = source;
                options.client_id = format!("guess-{i}");
                options.username = Some(format!("nobody-{i}"));
                options.password = Some(Bytes::from_static(b"guess"));
                let result = Client::connect(options.clone()).await;
                let name = outcome_name(&result);
                let client = {
                    let mut t = tally.lock().unwrap_or_else(|p| p.into_inner());
                    *t.outcomes.entry(name).or_default() += 1;
                    match result {
                        Ok((client, _)) => Some(client),
                        Err(ClientError::Refused(c))
                            if c.reason_code == ReasonCode::BAD_USER_NAME_OR_PASSWORD =>
                        {
                            *t.checked.entry(source).or_default() += 1;
                            None
                        }
                        Err(ClientError::Refused(_)) => None,
                        Err(e) => {
                            t.first_error.get_or_insert_with(|| e.to_string());
                            None
                        }
                    }
                };
                if let Some(client) = client {
                    let _ = client.disconnect(ReasonCode::SUCCESS).await;
                }
            }
        });
    }
    while guessers.join_next().await.is_some() {}
    let elapsed = begun.elapsed();
    done.store(true, Ordering::Relaxed);
    let (honest_ok, honest_failed, latency) = match honest {
        Some(task) => task.await.unwrap_or_default(),
        None => (0, 0, LatencyHistogram::new()),
    };
    let rss = match rss {
        Some(task) => task.await.ok().flatten(),
        None => None,
    };
    let Tally {
        outcomes,
        first_error,
        checked,
    } = std::mem::take(&mut *tally.lock().unwrap_or_else(|p| p.into_inner()));
    let attempts = outcomes.values().sum();
    let most_checked = checked.values().copied().max().unwrap_or(0);
    Ok(LoginSummary {
        attempts,
        outcomes,
        first_error,
        elapsed,
        checked_per_source_per_s: most_checked as f64 / elapsed.as_secs_f64().max(1e-9),
        honest_ok,
        honest_failed,
        honest_latency: latency.summary(),
        rss,
    })
}

/// The honest client: logs in, disconnects, waits, until `done`.
async fn honest_logins(
    options: ClientOptions,
    interval: Duration,
    done: Arc<AtomicBool>,
    deadline: Instant,
) -> (usize, usize, LatencyHistogram) {
    let (mut ok, mut failed) = (0, 0);
    let mut latency = LatencyHistogram::new();
    while !done.load(Ordering::Relaxed) && Instant::now() < deadline {
        let begun = Instant::now();
        match Client::connect(options.clone()).await {
            Ok((client, _)) => {
                latency.record(begun.elapsed());
                ok += 1;
                let _ = client.disconnect(ReasonCode::SUCCESS).await;
            }
            Err(e) => {
                failed += 1;
                tracing::warn!("honest login failed: {e}");
            }
        }
        tokio::time::sleep(interval).await;
    }
    (ok, failed, latency)
}

/// Samples the node's resident memory every 250 ms until `done`; returns
/// (first, highest, last).
async fn sample_rss(
    addr: String,
    token: Option<String>,
    done: Arc<AtomicBool>,
) -> Option<(u64, u64, u64)> {
    let mut seen: Option<(u64, u64, u64)> = None;
    loop {
        let finished = done.load(Ordering::Relaxed);
        let reply = request(&AdminRequest {
            addr: &addr,
            method: "GET",
            path: "/metrics",
            token: token.as_deref(),
            tls: None,
            timeout: Duration::from_secs(5),
        })
        .await;
        if let Some(bytes) = reply
            .ok()
            .filter(|r| r.status == 200)
            .and_then(|r| metric(&r.body, crate::metrics::RESIDENT_MEMORY))
        {
            let bytes = bytes as u64;
            seen = Some(match seen {
                None => (bytes, bytes, bytes),
                Some((first, high, _)) => (first, high.max(bytes), bytes),
            });
        }
        if finished {
            return seen;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

impl LoginSummary {
    /// One JSON object on one line.
    pub fn to_json(&self) -> String {
        let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
        serde_json::json!({
            "mode": "login",
            "attempts": self.attempts,
            "outcomes": self.outcomes,
            "first_error": self.first_error,
            "elapsed_s": self.elapsed.as_secs_f64(),
            "attempts_per_s": self.attempts as f64 / self.elapsed.as_secs_f64().max(1e-9),
            "checked_per_source_per_s": self.checked_per_source_per_s,
            "honest_ok": self.honest_ok,
            "honest_failed": self.honest_failed,
            "honest_connect_p50_ms": self.honest_latency.p50_ms,
            "honest_connect_p99_ms": self.honest_latency.p99_ms,
            "honest_connect_max_ms": self.honest_latency.max_ms,
            "rss_start_mib": self.rss.map(|r| mib(r.0)),
            "rss_peak_mib": self.rss.map(|r| mib(r.1)),
            "rss_end_mib": self.rss.map(|r| mib(r.2)),
        })
        .to_string()
    }
}

impl fmt::Display for LoginSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.elapsed.as_secs_f64().max(1e-9);
        writeln!(
            f,
            "login flood: {} attempts in {:.1} s ({:.0}/s)",
            self.attempts,
            secs,
            self.attempts as f64 / secs
        )?;
        let outcomes: Vec<String> = self
            .outcomes
            .iter()
            .map(|(name, n)| format!("{name}: {n}"))
            .collect();
        writeln!(f, "  outcomes: {}", outcomes.join(", "))?;
        if let Some(e) = &self.first_error {
            writeln!(f, "  first error: {e}")?;
        }
        writeln!(
            f,
            "  password checks per source: at most {:.1}/s",
            self.checked_per_source_per_s
        )?;
        let l = &self.honest_latency;
        writeln!(
            f,
            "  honest logins: {} ok, {} failed; connect p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            self.honest_ok, self.honest_failed, l.p50_ms, l.p99_ms, l.max_ms
        )?;
        if let Some((start, peak, end)) = self.rss {
            let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
            writeln!(
                f,
                "  node RSS: start {:.1} MiB, peak {:.1} MiB, end {:.1} MiB",
                mib(start),
                mib(peak),
                mib(end)
            )?;
        }
        Ok(())
    }
}
