//! Subscriptions announced by a connection's reader before its core has
//! processed them (sans-IO).
//!
//! A SUBSCRIBE crosses two tasks on its way into the subscription tree:
//! the stream reader that decodes it and the connection core that checks
//! and applies it. A PUBLISH from another client can take the same two
//! hops on other threads and be routed in between, and the subscriber
//! would miss a message the node read after its SUBSCRIBE. So the reader
//! announces each filter the moment it decodes it; routing holds a
//! message that matches an announced filter (and no subscription of the
//! same client already) until the core settles the filter: granted, the
//! held messages are delivered through the new subscription; refused,
//! they are dropped. The broker keeps routing and settling atomic by
//! doing both under its tree lock.
//!
//! ```
//! use std::sync::Arc;
//! use quicmq_node::broker::{EarlySubscriptions, Message};
//! use quicmq_proto::mqtt::{Properties, QoS};
//!
//! let mut early = EarlySubscriptions::default();
//! let client: Arc<str> = Arc::from("b");
//! assert!(early.announce(&client, "replies/+"));
//! let message = Arc::new(Message {
//!     topic: "replies/7".into(),
//!     payload: "hi".into(),
//!     qos: QoS::AtLeastOnce,
//!     retain: false,
//!     properties: Properties::default(),
//!     expires_at_ms: None,
//!     publisher: Some("a".into()),
//! });
//! assert_eq!(early.hold(&message, |_| false), 1);
//! let held = early.settle(&client, "replies/+");
//! assert_eq!(held.len(), 1);
//! assert!(early.is_empty());
//! ```

use std::sync::Arc;

use quicmq_proto::mqtt::topic::matches;

use super::message::Message;
use super::topic_tree::ClientId;

/// Announced filters held at once, node-wide; beyond this a SUBSCRIBE is
/// not announced and takes effect when its core processes it.
pub const MAX_ANNOUNCED: usize = 4096;

/// Messages one announced filter holds; later ones are not held.
pub const MAX_HELD: usize = 256;

struct Announced {
    client_id: ClientId,
    filter: Box<str>,
    held: Vec<Arc<Message>>,
}

/// Filters decoded from SUBSCRIBE packets and not yet settled, with the
/// messages routed meanwhile.
#[derive(Default)]
pub struct EarlySubscriptions {
    announced: Vec<Announced>,
}

impl EarlySubscriptions {
    /// Announce `filter` (a valid, non-shared filter) of `client_id`.
    /// `false` when the table is full and nothing was announced.
    pub fn announce(&mut self, client_id: &ClientId, filter: &str) -> bool {
        if self.announced.len() >= MAX_ANNOUNCED {
            return false;
        }
        self.announced.push(Announced {
            client_id: client_id.clone(),
            filter: filter.into(),
            held: Vec::new(),
        });
        true
    }

    /// Hold `message` for every announced filter it matches whose client
    /// `already_delivered` says nothing about (that client got it through
    /// a subscription it holds). Returns how many filters hold it.
    pub fn hold(
        &mut self,
        message: &Arc<Message>,
        already_delivered: impl Fn(&ClientId) -> bool,
    ) -> usize {
        let mut holding = 0;
        for entry in &mut self.announced {
            if entry.held.len() < MAX_HELD
                && matches(&entry.filter, &message.topic)
                && !already_delivered(&entry.client_id)
            {
                entry.held.push(message.clone());
                holding += 1;
            }
        }
        holding
    }

    /// Settle the oldest announcement of `filter` by `client_id`: it leaves
    /// the table, and the messages it held are returned in routing order.
    pub fn settle(&mut self, client_id: &str, filter: &str) -> Vec<Arc<Message>> {
        match self
            .announced
            .iter()
            .position(|e| &*e.client_id == client_id && &*e.filter == filter)
        {
            Some(index) => self.announced.remove(index).held,
            None => Vec::new(),
        }
    }

    /// Drop every announcement of `client_id` (its connection ended).
    pub fn forget(&mut self, client_id: &str) {
        self.announced.retain(|e| &*e.client_id != client_id);
    }

    /// Announcements not yet settled.
    pub fn len(&self) -> usize {
        self.announced.len()
    }

    /// Whether nothing is announced.
    pub fn is_empty(&self) -> bool {
        self.announced.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> ClientId {
        Arc::from(s)
    }

    fn message(topic: impl Into<String>) -> Arc<Message> {
        Arc::new(Message {
            topic: topic.into(),
            payload: Default::default(),
            qos: quicmq_proto::mqtt::QoS::AtMostOnce,
            retain: false,
            properties: Default::default(),
            expires_at_ms: None,
            publisher: None,
        })
    }

    #[test]
    fn holds_what_matches_until_settled_in_order() {
        let mut early = EarlySubscriptions::default();
        assert!(early.announce(&id("b"), "a/+"));
        assert!(early.announce(&id("c"), "#"));
        let one = message("a/1");
        let two = message("x/2");
        let three = message("a/3");
        assert_eq!(early.hold(&one, |_| false), 2);
        assert_eq!(early.hold(&two, |_| false), 1);
        assert_eq!(early.hold(&three, |c| &**c == "c"), 1, "c got it already");
        let b: Vec<_> = early
            .settle("b", "a/+")
            .iter()
            .map(|m| m.topic.clone())
            .collect();
        assert_eq!(b, ["a/1", "a/3"]);
        let c: Vec<_> = early
            .settle("c", "#")
            .iter()
            .map(|m| m.topic.clone())
            .collect();
        assert_eq!(c, ["a/1", "x/2"]);
        assert!(early.settle("c", "#").is_empty(), "settled once");
        assert!(early.is_empty());
    }

    #[test]
    fn dollar_topics_and_limits() {
        let mut early = EarlySubscriptions::default();
        early.announce(&id("b"), "#");
        assert_eq!(early.hold(&message("$SYS/x"), |_| false), 0);
        for i in 0..MAX_HELD + 10 {
            early.hold(&message(format!("t/{i}")), |_| false);
        }
        assert_eq!(early.settle("b", "#").len(), MAX_HELD);
        for i in 0..MAX_ANNOUNCED {
            assert!(early.announce(&id(&i.to_string()), "t"));
        }
        assert!(!early.announce(&id("late"), "t"), "full");
        early.forget("7");
        assert_eq!(early.len(), MAX_ANNOUNCED - 1);
    }
}
