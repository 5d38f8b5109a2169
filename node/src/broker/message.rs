//! An application message as the broker holds it between a publisher and
//! its subscribers.

use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use quicmq_proto::mqtt::{Properties, Publish, QoS};
use serde::{Deserialize, Serialize};

/// Milliseconds since the Unix epoch, the broker's wall clock for expiry.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// A published message, shared (behind an `Arc`) by every delivery of it.
///
/// The properties kept are the ones forwarded to subscribers (payload
/// format, content type, response topic, correlation data, user
/// properties). The expiry interval is kept as an absolute deadline so the
/// remaining interval can be forwarded.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// Topic name (never an alias).
    pub topic: String,
    /// Payload.
    pub payload: Bytes,
    /// QoS the publisher sent it with.
    pub qos: QoS,
    /// Retain flag as published.
    pub retain: bool,
    /// Properties forwarded to subscribers.
    pub properties: Properties,
    /// Expiry deadline, ms since the epoch; `None` = never expires.
    pub expires_at_ms: Option<u64>,
    /// Client ID of the publisher (for No Local); `None` for the broker's own.
    pub publisher: Option<String>,
}

impl Message {
    /// Bytes this message holds in memory, as the session and node budgets
    /// count them: topic, payload and forwarded properties, plus a fixed
    /// overhead for the structures around them.
    pub fn held_bytes(&self) -> usize {
        const OVERHEAD: usize = 128;
        let p = &self.properties;
        let strings: usize = p
            .user_properties
            .iter()
            .map(|(k, v)| k.len() + v.len())
            .sum::<usize>()
            + p.content_type.as_ref().map_or(0, String::len)
            + p.response_topic.as_ref().map_or(0, String::len)
            + p.correlation_data.as_ref().map_or(0, |d| d.len());
        OVERHEAD + self.topic.len() + self.payload.len() + strings
    }

    /// Build a message from an incoming PUBLISH whose topic is resolved.
    pub fn from_publish(publish: Publish, publisher: Option<String>, now_ms: u64) -> Message {
        let p = publish.properties;
        let expires_at_ms = p
            .message_expiry_interval
            .map(|secs| now_ms.saturating_add(u64::from(secs) * 1000));
        // Only what a PUBLISH to a subscriber may carry is forwarded (a
        // will's delay interval, a topic alias or subscription IDs are not).
        let properties = Properties {
            payload_format_indicator: p.payload_format_indicator,
            content_type: p.content_type,
            response_topic: p.response_topic,
            correlation_data: p.correlation_data,
            user_properties: p.user_properties,
            ..Properties::default()
        };
        Message {
            topic: publish.topic,
            payload: publish.payload,
            qos: publish.qos,
            retain: publish.retain,
            properties,
            expires_at_ms,
            publisher,
        }
    }

    /// Whether the message has expired at `now_ms`.
    pub fn is_expired(&self, now_ms: u64) -> bool {
        self.expires_at_ms.is_some_and(|at| at <= now_ms)
    }

    /// The message expiry interval to forward at `now_ms`: the time left,
    /// rounded up to whole seconds.
    pub fn remaining_expiry_secs(&self, now_ms: u64) -> Option<u32> {
        self.expires_at_ms.map(|at| {
            let left = at.saturating_sub(now_ms);
            u32::try_from(left.div_ceil(1000)).unwrap_or(u32::MAX)
        })
    }

    /// The PUBLISH that carries this message to a subscriber.
    pub fn to_publish(
        &self,
        qos: QoS,
        retain: bool,
        packet_id: Option<u16>,
        dup: bool,
        subscription_ids: &[u32],
        now_ms: u64,
    ) -> Publish {
        let mut properties = self.properties.clone();
        properties.message_expiry_interval = self.remaining_expiry_secs(now_ms);
        properties.subscription_identifiers = subscription_ids.to_vec();
        Publish {
            dup,
            qos,
            retain,
            topic: self.topic.clone(),
            packet_id,
            properties,
            payload: self.payload.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn publish(expiry: Option<u32>) -> Publish {
        Publish {
            dup: false,
            qos: QoS::AtLeastOnce,
            retain: false,
            topic: "a/b".into(),
            packet_id: Some(3),
            properties: Properties {
                message_expiry_interval: expiry,
                topic_alias: Some(4),
                will_delay_interval: Some(9),
                content_type: Some("text/plain".into()),
                ..Properties::default()
            },
            payload: Bytes::from_static(b"x"),
        }
    }

    #[test]
    fn expiry_is_forwarded_as_remaining_interval() {
        let m = Message::from_publish(publish(Some(10)), None, 1_000);
        assert_eq!(m.expires_at_ms, Some(11_000));
        assert!(!m.is_expired(10_999));
        assert!(m.is_expired(11_000));
        assert_eq!(m.remaining_expiry_secs(4_500), Some(7));
        let p = m.to_publish(QoS::AtMostOnce, false, None, false, &[5], 4_500);
        assert_eq!(p.properties.message_expiry_interval, Some(7));
        assert_eq!(p.properties.topic_alias, None);
        assert_eq!(p.properties.will_delay_interval, None);
        assert_eq!(p.properties.content_type.as_deref(), Some("text/plain"));
        assert_eq!(p.properties.subscription_identifiers, vec![5]);
    }

    #[test]
    fn no_expiry_never_expires() {
        let m = Message::from_publish(publish(None), Some("c".into()), 0);
        assert!(!m.is_expired(u64::MAX));
        assert_eq!(m.remaining_expiry_secs(5), None);
    }
}
