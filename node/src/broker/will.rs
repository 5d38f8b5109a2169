//! A will message waiting for its delay interval (MQTT 5.0 §3.1.3.2).

use quicmq_proto::mqtt::LastWill;

/// A will to publish when its delay is over or the session ends,
/// whichever comes first, unless the client reconnects before.
#[derive(Debug)]
pub struct PendingWill {
    will: LastWill,
    due_ms: u64,
}

impl PendingWill {
    /// A will whose connection closed at `closed_ms`, for a session with
    /// the given expiry interval.
    pub fn new(will: LastWill, closed_ms: u64, session_expiry: u32) -> PendingWill {
        let delay = will
            .properties
            .will_delay_interval
            .unwrap_or(0)
            .min(session_expiry);
        PendingWill {
            will,
            due_ms: closed_ms.saturating_add(u64::from(delay) * 1000),
        }
    }

    /// Whether it must be published at `now_ms`.
    pub fn is_due(&self, now_ms: u64) -> bool {
        now_ms >= self.due_ms
    }

    /// When it is due (Unix ms).
    pub fn due_ms(&self) -> u64 {
        self.due_ms
    }

    /// The will message.
    pub fn into_will(self) -> LastWill {
        self.will
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use quicmq_proto::mqtt::{Properties, QoS};

    fn will(delay: Option<u32>) -> LastWill {
        LastWill {
            topic: "w".into(),
            payload: Bytes::new(),
            qos: QoS::AtMostOnce,
            retain: false,
            properties: Properties {
                will_delay_interval: delay,
                ..Properties::default()
            },
        }
    }

    #[test]
    fn delay_is_capped_by_session_expiry() {
        assert!(!PendingWill::new(will(Some(10)), 1000, 60).is_due(10_999));
        assert!(PendingWill::new(will(Some(10)), 1000, 60).is_due(11_000));
        assert!(PendingWill::new(will(Some(100)), 0, 5).is_due(5_000));
        assert!(PendingWill::new(will(None), 0, 5).is_due(0));
    }
}
