//! The load generator behind `quicmq bench pub|sub|conn`.
//!
//! - [`PubBench`]: N publishers send timestamped messages (see
//!   [`PayloadHeader`]) at a rate or as fast as their in-flight window
//!   (the server's Receive Maximum for QoS 1/2) allows, until a count or a
//!   time limit; the latency is the time to PUBACK/PUBCOMP.
//! - [`SubBench`]: M subscribers count messages and measure the
//!   end-to-end latency (receive time minus the send time in the payload,
//!   same machine clock) until they have their count, the traffic goes
//!   idle, or a hard time limit.
//! - [`ConnBench`]: many idle connections opened at a bounded rate (over
//!   QUIC on one shared client endpoint), held, then closed; the latency
//!   is the connect time.
//! - [`run_logins`]: a flood of failed logins over several source
//!   addresses beside an honest client, with the node's memory sampled.
//!
//! Each ends in a [`Summary`] (human text via `Display`, or one JSON line
//! via [`Summary::to_json`]). The decisions (pacing, bounds, the stop rule,
//! the payload format, statistics) are plain functions and structs; the
//! async runners only drive clients with them.
//!
//! ```no_run
//! use std::time::Duration;
//! use quicmq_node::bench::{Bound, ProgressMode, PubBench, PubSettings};
//! use quicmq_node::client::{ClientOptions, QoS, Transport};
//!
//! # async fn demo() -> Result<(), quicmq_node::bench::BenchError> {
//! let settings = PubSettings {
//!     options: ClientOptions::new("127.0.0.1", 1883, Transport::Tcp),
//!     clients: 4,
//!     topic: "bench/%i".into(),
//!     qos: QoS::AtLeastOnce,
//!     retain: false,
//!     payload_size: 64,
//!     rate: 0.0,
//!     bound: Bound { count: Some(1000), duration: Duration::from_secs(10) },
//!     inflight: None,
//!     drain_timeout: Duration::from_secs(10),
//! };
//! let summary = PubBench::connect(settings, ProgressMode::hidden()).await?.run().await;
//! println!("{summary}");
//! # Ok(()) }
//! ```

mod connect;
mod connections;
mod error;
mod logins;
mod payload;
mod plan;
mod progress;
mod publisher;
mod stats;
mod subscriber;
#[cfg(test)]
mod tests;

pub use connections::{ConnBench, ConnSettings};
pub use error::BenchError;
pub use logins::{run_logins, LoginSettings, LoginSummary};
pub use payload::{unix_nanos, PayloadHeader, HEADER_LEN};
pub use plan::{
    client_id, expand_sequence, expand_template, shared_filter, Bound, Pacer, StopReason,
    SubProgress, SubStopRule,
};
pub use progress::{Counters, ProgressMode};
pub use publisher::{window, PubBench, PubSettings, MAX_WINDOW, QOS0_WINDOW};
pub use stats::{LatencyHistogram, LatencySummary, Mode, Summary};
pub use subscriber::{SubBench, SubSettings};
