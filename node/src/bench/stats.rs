//! Latency histograms and the final summary (human text or one JSON line).

use std::fmt::{self, Write as _};
use std::time::Duration;

use hdrhistogram::Histogram;

use crate::client::{QoS, Transport};

/// Highest latency the histogram tells apart: one hour, in microseconds.
/// Longer samples are recorded as one hour.
const MAX_MICROS: u64 = 3_600_000_000;

/// A latency histogram with microsecond resolution and three significant
/// digits (HDR histogram).
///
/// ```
/// use std::time::Duration;
/// use quicmq_node::bench::LatencyHistogram;
/// let mut h = LatencyHistogram::new();
/// for ms in 1..=100 {
///     h.record(Duration::from_millis(ms));
/// }
/// let s = h.summary();
/// assert_eq!(s.samples, 100);
/// assert!((s.p50_ms - 50.0).abs() < 0.1);
/// assert!((s.max_ms - 100.0).abs() < 0.1);
/// ```
#[derive(Clone)]
pub struct LatencyHistogram {
    histogram: Histogram<u64>,
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        LatencyHistogram::new()
    }
}

impl fmt::Debug for LatencyHistogram {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LatencyHistogram")
            .field("summary", &self.summary())
            .finish()
    }
}

impl LatencyHistogram {
    /// An empty histogram.
    pub fn new() -> LatencyHistogram {
        // The bounds are constants that hdrhistogram accepts (low >= 1,
        // high >= 2 * low, 3 significant digits); the fallback is never
        // taken.
        let histogram = Histogram::new_with_bounds(1, MAX_MICROS, 3)
            .or_else(|_| Histogram::new(3))
            .unwrap_or_else(|_| unreachable!("3 significant digits are valid"));
        LatencyHistogram { histogram }
    }

    /// Records one sample (saturating at one hour).
    pub fn record(&mut self, latency: Duration) {
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        self.histogram.saturating_record(micros.min(MAX_MICROS));
    }

    /// Adds every sample of `other`.
    pub fn merge(&mut self, other: &LatencyHistogram) {
        // Same bounds on both sides, so adding cannot fail; saturate if it
        // ever did.
        if self.histogram.add(&other.histogram).is_err() {
            for value in other.histogram.iter_recorded() {
                self.histogram
                    .saturating_record_n(value.value_iterated_to(), value.count_at_value());
            }
        }
    }

    /// Samples recorded.
    pub fn len(&self) -> u64 {
        self.histogram.len()
    }

    /// Whether no sample was recorded.
    pub fn is_empty(&self) -> bool {
        self.histogram.is_empty()
    }

    /// Percentiles in milliseconds (all zero without samples).
    pub fn summary(&self) -> LatencySummary {
        let h = &self.histogram;
        if h.is_empty() {
            return LatencySummary::default();
        }
        let ms = |micros: u64| micros as f64 / 1000.0;
        LatencySummary {
            samples: h.len(),
            mean_ms: h.mean() / 1000.0,
            p50_ms: ms(h.value_at_quantile(0.50)),
            p90_ms: ms(h.value_at_quantile(0.90)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            max_ms: ms(h.max()),
        }
    }
}

/// Latency percentiles, in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct LatencySummary {
    /// Samples behind the numbers; 0 = no latency was measured.
    pub samples: u64,
    /// Mean.
    pub mean_ms: f64,
    /// Median.
    pub p50_ms: f64,
    /// 90th percentile.
    pub p90_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Maximum.
    pub max_ms: f64,
}

/// Which benchmark produced a summary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Publishers (`quicmq bench pub`).
    Pub,
    /// Subscribers (`quicmq bench sub`).
    Sub,
    /// Idle connections (`quicmq bench conn`).
    Conn,
}

impl Mode {
    /// `pub`, `sub` or `conn`.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Pub => "pub",
            Mode::Sub => "sub",
            Mode::Conn => "conn",
        }
    }

    /// What `messages` counts in this mode.
    fn unit(self) -> &'static str {
        match self {
            Mode::Pub | Mode::Sub => "msgs",
            Mode::Conn => "conns",
        }
    }

    /// What the latency measures in this mode.
    fn latency_kind(self) -> &'static str {
        match self {
            Mode::Pub => "ack",
            Mode::Sub => "end-to-end",
            Mode::Conn => "connect",
        }
    }
}

/// The result of one benchmark run.
///
/// - `pub`: `messages` = publishes completed (QoS 0: written; QoS 1/2:
///   acknowledged with a success code), latency = time to the
///   acknowledgement (QoS 1/2 only), `elapsed` = start of sending to the
///   last completion.
/// - `sub`: `messages` = messages received, latency = receive time minus
///   the send time in the payload, `elapsed` = first to last message.
/// - `conn`: `messages` = connections established, latency = connect time
///   (transport, TLS, CONNACK), `elapsed` = the connecting phase.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    /// The benchmark.
    pub mode: Mode,
    /// Transport used.
    pub transport: Transport,
    /// Clients requested.
    pub clients: u64,
    /// Clients that connected (and, for `sub`, subscribed).
    pub connected: u64,
    /// QoS of the messages (not for `conn`).
    pub qos: Option<QoS>,
    /// Payload size in bytes (`pub` only).
    pub payload_size: Option<usize>,
    /// Messages (or connections) counted; see the type's documentation.
    pub messages: u64,
    /// Messages expected (`sub` with a count: count × subscribers).
    pub expected: Option<u64>,
    /// Failed connections, publishes, subscriptions, dropped connections.
    pub errors: u64,
    /// The first error, for the report.
    pub first_error: Option<String>,
    /// Why a `sub` run stopped.
    pub stop: Option<&'static str>,
    /// `conn`: connections still open at the end of the hold.
    pub held: Option<u64>,
    /// Time the rate is computed over.
    pub elapsed: Duration,
    /// Latency percentiles.
    pub latency: LatencySummary,
}

impl Summary {
    /// Messages (or connections) per second over `elapsed`; 0 when nothing
    /// was timed.
    pub fn rate(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            self.messages as f64 / secs
        } else {
            0.0
        }
    }

    /// The summary as one JSON object (no trailing newline).
    ///
    /// ```
    /// use std::time::Duration;
    /// use quicmq_node::bench::{LatencySummary, Mode, Summary};
    /// use quicmq_node::client::Transport;
    /// let s = Summary {
    ///     mode: Mode::Conn, transport: Transport::Quic, clients: 2, connected: 2,
    ///     qos: None, payload_size: None, messages: 2, expected: None, errors: 0,
    ///     first_error: None, stop: None, held: Some(2),
    ///     elapsed: Duration::from_secs(1), latency: LatencySummary::default(),
    /// };
    /// assert!(s.to_json().starts_with(r#"{"mode":"conn","transport":"quic","clients":2,"#));
    /// ```
    pub fn to_json(&self) -> String {
        let mut out = JsonObject::default();
        out.str("mode", self.mode.name());
        out.str("transport", self.transport.name());
        out.int("clients", self.clients);
        out.int("connected", self.connected);
        if let Some(qos) = self.qos {
            out.int("qos", u64::from(qos as u8));
        }
        if let Some(size) = self.payload_size {
            out.int("payload", size as u64);
        }
        out.int("messages", self.messages);
        if let Some(expected) = self.expected {
            out.int("expected", expected);
        }
        out.int("errors", self.errors);
        if let Some(error) = &self.first_error {
            out.str("first_error", error);
        }
        if let Some(stop) = self.stop {
            out.str("stop", stop);
        }
        if let Some(held) = self.held {
            out.int("held", held);
        }
        out.num("elapsed_s", self.elapsed.as_secs_f64());
        out.num("rate", self.rate());
        out.str("latency", self.mode.latency_kind());
        let l = &self.latency;
        out.int("samples", l.samples);
        out.num("mean_ms", l.mean_ms);
        out.num("p50_ms", l.p50_ms);
        out.num("p90_ms", l.p90_ms);
        out.num("p99_ms", l.p99_ms);
        out.num("max_ms", l.max_ms);
        out.finish()
    }
}

impl fmt::Display for Summary {
    /// A few lines for people.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "bench {}: {}/{} clients over {}",
            self.mode.name(),
            self.connected,
            self.clients,
            self.transport
        )?;
        if let Some(qos) = self.qos {
            write!(f, ", QoS {}", qos as u8)?;
        }
        if let Some(size) = self.payload_size {
            write!(f, ", {size}-byte payload")?;
        }
        writeln!(f)?;
        let unit = self.mode.unit();
        write!(f, "  {:<9} {}", unit, self.messages)?;
        if let Some(expected) = self.expected {
            write!(f, " of {expected} expected")?;
        }
        if let Some(held) = self.held {
            write!(f, " ({held} still open after the hold)")?;
        }
        writeln!(f)?;
        write!(f, "  elapsed   {:.3} s", self.elapsed.as_secs_f64())?;
        if let Some(stop) = self.stop {
            write!(f, " (stopped: {stop})")?;
        }
        writeln!(f)?;
        writeln!(f, "  rate      {:.1} {unit}/s", self.rate())?;
        let l = &self.latency;
        if l.samples > 0 {
            writeln!(
                f,
                "  latency   p50 {:.3} ms  p90 {:.3} ms  p99 {:.3} ms  max {:.3} ms  ({}, {} samples)",
                l.p50_ms,
                l.p90_ms,
                l.p99_ms,
                l.max_ms,
                self.mode.latency_kind(),
                l.samples
            )?;
        } else {
            writeln!(f, "  latency   not measured")?;
        }
        write!(f, "  errors    {}", self.errors)?;
        if let Some(error) = &self.first_error {
            write!(f, " (first: {error})")?;
        }
        Ok(())
    }
}

/// Writes a flat JSON object.
#[derive(Default)]
struct JsonObject {
    out: String,
}

impl JsonObject {
    fn key(&mut self, key: &str) {
        self.out.push(if self.out.is_empty() { '{' } else { ',' });
        push_json_string(&mut self.out, key);
        self.out.push(':');
    }

    fn str(&mut self, key: &str, value: &str) {
        self.key(key);
        push_json_string(&mut self.out, value);
    }

    fn int(&mut self, key: &str, value: u64) {
        self.key(key);
        let _ = write!(self.out, "{value}");
    }

    fn num(&mut self, key: &str, value: f64) {
        self.key(key);
        if value.is_finite() {
            let _ = write!(self.out, "{:.3}", value);
        } else {
            self.out.push_str("null");
        }
    }

    fn finish(mut self) -> String {
        if self.out.is_empty() {
            self.out.push('{');
        }
        self.out.push('}');
        self.out
    }
}

/// Appends `value` as a JSON string literal.
fn push_json_string(out: &mut String, value: &str) {
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary() -> Summary {
        Summary {
            mode: Mode::Sub,
            transport: Transport::Tcp,
            clients: 2,
            connected: 2,
            qos: Some(QoS::AtLeastOnce),
            payload_size: None,
            messages: 500,
            expected: Some(600),
            errors: 1,
            first_error: Some("said \"no\"\n".into()),
            stop: Some("idle"),
            held: None,
            elapsed: Duration::from_millis(250),
            latency: LatencySummary {
                samples: 500,
                mean_ms: 1.5,
                p50_ms: 1.25,
                p90_ms: 2.0,
                p99_ms: 3.0,
                max_ms: 4.0,
            },
        }
    }

    #[test]
    fn rate_is_messages_over_elapsed() {
        let s = summary();
        assert!((s.rate() - 2000.0).abs() < 1e-9);
        let untimed = Summary {
            elapsed: Duration::ZERO,
            ..s
        };
        assert_eq!(untimed.rate(), 0.0);
    }

    #[test]
    fn json_is_one_flat_object_with_escaped_strings() {
        assert_eq!(
            summary().to_json(),
            concat!(
                r#"{"mode":"sub","transport":"tcp","clients":2,"connected":2,"qos":1,"#,
                r#""messages":500,"expected":600,"errors":1,"first_error":"said \"no\"\n","#,
                r#""stop":"idle","elapsed_s":0.250,"rate":2000.000,"latency":"end-to-end","#,
                r#""samples":500,"mean_ms":1.500,"p50_ms":1.250,"p90_ms":2.000,"#,
                r#""p99_ms":3.000,"max_ms":4.000}"#
            )
        );
        let mut s = String::new();
        push_json_string(&mut s, "a\u{1}\\\tb");
        assert_eq!(s, r#""a\u0001\\\tb""#);
    }

    #[test]
    fn text_names_the_numbers() {
        let text = summary().to_string();
        assert!(text.starts_with("bench sub: 2/2 clients over tcp, QoS 1\n"));
        assert!(text.contains("msgs      500 of 600 expected"));
        assert!(text.contains("rate      2000.0 msgs/s"));
        assert!(text.contains("p50 1.250 ms"));
        assert!(text.contains("p99 3.000 ms"));
        assert!(text.contains("(stopped: idle)"));
        assert!(text.ends_with("errors    1 (first: said \"no\"\n)"));
    }

    #[test]
    fn histogram_merges_and_saturates() {
        let mut a = LatencyHistogram::new();
        let mut b = LatencyHistogram::new();
        assert!(a.is_empty());
        assert_eq!(a.summary(), LatencySummary::default());
        a.record(Duration::from_micros(500));
        b.record(Duration::from_millis(2));
        b.record(Duration::from_secs(10 * 3600));
        a.merge(&b);
        assert_eq!(a.len(), 3);
        let s = a.summary();
        assert!((s.p50_ms - 2.0).abs() < 0.01, "{s:?}");
        // Clamped to one hour (within the histogram's precision).
        assert!((s.max_ms / 3_600_000.0 - 1.0).abs() < 0.001, "{s:?}");
        a.record(Duration::ZERO);
        assert_eq!(a.len(), 4);
    }
}
