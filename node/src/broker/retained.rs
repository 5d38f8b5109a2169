//! Retained messages by topic (sans-IO).

use std::collections::HashMap;
use std::sync::Arc;

use quicmq_proto::mqtt::topic::matches;

use super::message::Message;

/// The last retained message of every topic that has one.
///
/// Lookups by filter scan all retained topics; that is linear in their
/// number, done once per SUBSCRIBE, never per PUBLISH.
#[derive(Default)]
pub struct RetainedMessages {
    by_topic: HashMap<String, Arc<Message>>,
}

impl RetainedMessages {
    /// Set (or replace) the retained message of its topic.
    pub fn set(&mut self, message: Arc<Message>) {
        self.by_topic.insert(message.topic.clone(), message);
    }

    /// Remove the retained message of `topic`.
    pub fn remove(&mut self, topic: &str) {
        self.by_topic.remove(topic);
    }

    /// Number of retained messages.
    pub fn len(&self) -> usize {
        self.by_topic.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.by_topic.is_empty()
    }

    /// Retained messages whose topic matches `filter`, oldest topic first
    /// is not guaranteed; expired ones are left out.
    pub fn matching(&self, filter: &str, now_ms: u64) -> Vec<Arc<Message>> {
        if !filter.contains(['+', '#']) {
            return self
                .by_topic
                .get(filter)
                .filter(|m| !m.is_expired(now_ms))
                .cloned()
                .into_iter()
                .collect();
        }
        self.by_topic
            .values()
            .filter(|m| !m.is_expired(now_ms) && matches(filter, &m.topic))
            .cloned()
            .collect()
    }

    /// Drop messages whose expiry has passed.
    pub fn remove_expired(&mut self, now_ms: u64) {
        self.by_topic.retain(|_, m| !m.is_expired(now_ms));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use quicmq_proto::mqtt::{Properties, QoS};

    fn retained(topic: &str, expires_at_ms: Option<u64>) -> Arc<Message> {
        Arc::new(Message {
            topic: topic.into(),
            payload: Bytes::from_static(b"v"),
            qos: QoS::AtMostOnce,
            retain: true,
            properties: Properties::default(),
            expires_at_ms,
            publisher: None,
        })
    }

    #[test]
    fn set_replace_match_and_expire() {
        let mut r = RetainedMessages::default();
        r.set(retained("a/b", None));
        r.set(retained("a/c", Some(100)));
        r.set(retained("$SYS/x", None));
        r.set(retained("a/b", None));
        assert_eq!(r.len(), 3);
        assert_eq!(r.matching("a/+", 0).len(), 2);
        assert_eq!(
            r.matching("a/+", 100).len(),
            1,
            "expired ones are not delivered"
        );
        assert_eq!(r.matching("#", 0).len(), 2, "# does not match $ topics");
        assert_eq!(r.matching("a/b", 0).len(), 1);
        r.remove("a/b");
        r.remove_expired(100);
        assert_eq!(r.len(), 1);
    }
}
