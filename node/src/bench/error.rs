//! Errors of the load generator.

use crate::client::ReasonCode;

use super::payload::HEADER_LEN;

/// Why a benchmark could not run (problems of single clients during a run
/// are counted in the [`Summary`](super::Summary) instead).
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// The payload cannot hold the timestamp header.
    #[error("payload size {size} is too small: the timestamp header needs {HEADER_LEN} bytes")]
    PayloadTooSmall {
        /// The requested size.
        size: usize,
    },
    /// A setting is out of range (no clients, a negative rate, ...).
    #[error("invalid benchmark setting: {0}")]
    InvalidSetting(String),
    /// Not a single client could connect (or subscribe); the first error.
    #[error("no client could connect: {}", .0.as_deref().unwrap_or("no error recorded"))]
    NoClient(Option<String>),
    /// The broker refused a subscription.
    #[error("the broker refused the subscription to {filter}: {reason}")]
    SubscriptionRefused {
        /// The topic filter.
        filter: String,
        /// The SUBACK reason code.
        reason: ReasonCode,
    },
    /// Name resolution or the shared QUIC endpoint failed.
    #[error("cannot prepare the connections: {0}")]
    Io(#[from] std::io::Error),
}
