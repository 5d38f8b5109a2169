//! The table of topic aliases the server sets on PUBLISH packets it sends
//! (MQTT 5.0 §3.3.2.3.4), sans-IO. One table per network connection.

use std::collections::HashMap;

use quicmq_proto::mqtt::{Publish, ReasonCode};

/// Why a PUBLISH from the server could not be resolved to a topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AliasError {
    /// The reason code of the DISCONNECT the client sends.
    pub(crate) reason_code: ReasonCode,
    /// What went wrong.
    pub(crate) message: String,
}

/// Inbound topic aliases: alias → topic name.
#[derive(Debug, Default)]
pub(crate) struct InboundAliases {
    maximum: u16,
    topics: HashMap<u16, String>,
}

impl InboundAliases {
    /// A table accepting aliases `1..=maximum` (the Topic Alias Maximum the
    /// client sent in CONNECT; 0 = the server may not use aliases).
    pub(crate) fn new(maximum: u16) -> InboundAliases {
        InboundAliases {
            maximum,
            topics: HashMap::new(),
        }
    }

    /// Number of aliases the server has set.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.topics.len()
    }

    /// Resolves the topic of `publish`: a PUBLISH with an alias and a topic
    /// sets the mapping, one with an alias and an empty topic takes the
    /// topic from it. The Topic Alias property is left as it came.
    pub(crate) fn resolve(&mut self, publish: &mut Publish) -> Result<(), AliasError> {
        let Some(alias) = publish.properties.topic_alias else {
            if publish.topic.is_empty() {
                return Err(AliasError {
                    reason_code: ReasonCode::PROTOCOL_ERROR,
                    message: "PUBLISH with an empty topic and no topic alias".into(),
                });
            }
            return Ok(());
        };
        if alias == 0 || alias > self.maximum {
            return Err(AliasError {
                reason_code: ReasonCode::TOPIC_ALIAS_INVALID,
                message: format!(
                    "topic alias {alias} outside the allowed range 1..={}",
                    self.maximum
                ),
            });
        }
        if publish.topic.is_empty() {
            match self.topics.get(&alias) {
                Some(topic) => publish.topic.clone_from(topic),
                None => {
                    return Err(AliasError {
                        reason_code: ReasonCode::PROTOCOL_ERROR,
                        message: format!("topic alias {alias} used before it was set"),
                    })
                }
            }
        } else {
            self.topics.insert(alias, publish.topic.clone());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use quicmq_proto::mqtt::{Properties, QoS};

    use super::*;

    fn publish(topic: &str, alias: Option<u16>) -> Publish {
        Publish {
            dup: false,
            qos: QoS::AtMostOnce,
            retain: false,
            topic: topic.into(),
            packet_id: None,
            properties: Properties {
                topic_alias: alias,
                ..Properties::default()
            },
            payload: Bytes::from_static(b"x"),
        }
    }

    #[test]
    fn sets_then_uses_and_replaces_an_alias() {
        let mut table = InboundAliases::new(10);
        let mut p = publish("a/b", Some(3));
        table.resolve(&mut p).unwrap();
        assert_eq!(p.topic, "a/b");
        assert_eq!(table.len(), 1);

        let mut p = publish("", Some(3));
        table.resolve(&mut p).unwrap();
        assert_eq!(p.topic, "a/b");
        assert_eq!(p.properties.topic_alias, Some(3));

        let mut p = publish("c", Some(3));
        table.resolve(&mut p).unwrap();
        let mut p = publish("", Some(3));
        table.resolve(&mut p).unwrap();
        assert_eq!(p.topic, "c");
    }

    #[test]
    fn plain_topics_pass_through() {
        let mut table = InboundAliases::new(0);
        let mut p = publish("x/y", None);
        table.resolve(&mut p).unwrap();
        assert_eq!(p.topic, "x/y");
    }

    #[test]
    fn rejects_zero_and_too_large_aliases() {
        let mut table = InboundAliases::new(5);
        let err = table.resolve(&mut publish("a", Some(0))).unwrap_err();
        assert_eq!(err.reason_code, ReasonCode::TOPIC_ALIAS_INVALID);
        let err = table.resolve(&mut publish("a", Some(6))).unwrap_err();
        assert_eq!(err.reason_code, ReasonCode::TOPIC_ALIAS_INVALID);
        let mut none = InboundAliases::new(0);
        let err = none.resolve(&mut publish("a", Some(1))).unwrap_err();
        assert_eq!(err.reason_code, ReasonCode::TOPIC_ALIAS_INVALID);
    }

    #[test]
    fn rejects_unknown_alias_and_empty_topic() {
        let mut table = InboundAliases::new(5);
        let err = table.resolve(&mut publish("", Some(2))).unwrap_err();
        assert_eq!(err.reason_code, ReasonCode::PROTOCOL_ERROR);
        let err = table.resolve(&mut publish("", None)).unwrap_err();
        assert_eq!(err.reason_code, ReasonCode::PROTOCOL_ERROR);
    }
}
