//! Outbound requests waiting for the server's acknowledgement (sans-IO):
//! QoS 1 and 2 PUBLISH, SUBSCRIBE and UNSUBSCRIBE.
//!
//! Each request holds a packet identifier (unique on the connection) and a
//! caller-chosen token `T` (the async shell uses a oneshot sender) that is
//! handed back when the exchange completes or fails. QoS > 0 publishes also
//! hold a slot of the send quota (the server's Receive Maximum).

use std::collections::HashMap;

use quicmq_proto::mqtt::{Packet, PublishResponse, ReasonCode, SubAck, UnsubAck};

use super::packet_ids::PacketIds;
use super::quota::SendQuota;

/// What a request is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RequestKind {
    /// PUBLISH with QoS 1.
    PublishQos1,
    /// PUBLISH with QoS 2.
    PublishQos2,
    /// SUBSCRIBE.
    Subscribe,
    /// UNSUBSCRIBE.
    Unsubscribe,
}

/// The packet a pending request waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Awaiting {
    PubAck,
    PubRec,
    PubComp,
    SubAck,
    UnsubAck,
}

impl Awaiting {
    fn name(self) -> &'static str {
        match self {
            Awaiting::PubAck => "PUBACK",
            Awaiting::PubRec => "PUBREC",
            Awaiting::PubComp => "PUBCOMP",
            Awaiting::SubAck => "SUBACK",
            Awaiting::UnsubAck => "UNSUBACK",
        }
    }
}

/// The server's final answer to a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Response {
    /// Reason code of the PUBACK, PUBCOMP or failed PUBREC.
    Publish(ReasonCode),
    /// The SUBACK.
    SubAck(Box<SubAck>),
    /// The UNSUBACK.
    UnsubAck(Box<UnsubAck>),
}

/// What the client must do after an acknowledgement from the server.
#[derive(Debug)]
pub(crate) enum AckOutcome<T> {
    /// The exchange is over: hand `response` to the owner of `token`.
    Completed {
        /// The token given to [`Requests::begin`].
        token: T,
        /// The answer.
        response: Response,
    },
    /// A PUBREC arrived for a QoS 2 publish: send PUBREL (on the stream the
    /// PUBREC came in on).
    SendPubRel(u16),
    /// PUBREC for an identifier the client does not know: answer with a
    /// PUBREL carrying "Packet Identifier not found".
    UnknownPubRec(u16),
    /// An acknowledgement for an identifier that is not in use (a late or
    /// duplicated ack); nothing to do.
    Ignored(u16),
    /// The server broke the protocol (an acknowledgement of the wrong
    /// kind for the identifier); close the connection.
    Violation(String),
}

struct Entry<T> {
    awaiting: Awaiting,
    stream: u64,
    token: T,
    holds_quota: bool,
}

/// The requests in flight on one connection.
pub(crate) struct Requests<T> {
    ids: PacketIds,
    quota: SendQuota,
    pending: HashMap<u16, Entry<T>>,
}

impl<T> Requests<T> {
    /// No request in flight; QoS > 0 publishes limited to `receive_maximum`.
    pub(crate) fn new(receive_maximum: u16) -> Requests<T> {
        Requests {
            ids: PacketIds::new(),
            quota: SendQuota::new(receive_maximum),
            pending: HashMap::new(),
        }
    }

    /// Number of requests in flight.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.pending.len()
    }

    /// QoS > 0 publishes in flight.
    pub(crate) fn publishes_in_flight(&self) -> u16 {
        self.quota.in_flight()
    }

    /// Starts a request sent on `stream`: takes a packet identifier (and a
    /// quota slot for publishes). Gives `token` back when the request must
    /// wait (no quota slot or no free identifier).
    pub(crate) fn begin(&mut self, kind: RequestKind, stream: u64, token: T) -> Result<u16, T> {
        let is_publish = matches!(kind, RequestKind::PublishQos1 | RequestKind::PublishQos2);
        if is_publish && !self.quota.try_acquire() {
            return Err(token);
        }
        let Some(id) = self.ids.allocate() else {
            if is_publish {
                self.quota.release();
            }
            return Err(token);
        };
        let awaiting = match kind {
            RequestKind::PublishQos1 => Awaiting::PubAck,
            RequestKind::PublishQos2 => Awaiting::PubRec,
            RequestKind::Subscribe => Awaiting::SubAck,
            RequestKind::Unsubscribe => Awaiting::UnsubAck,
        };
        self.pending.insert(
            id,
            Entry {
                awaiting,
                stream,
                token,
                holds_quota: is_publish,
            },
        );
        Ok(id)
    }

    /// Abandons a request that was never sent; gives its token back.
    pub(crate) fn cancel(&mut self, id: u16) -> Option<T> {
        self.remove(id).map(|entry| entry.token)
    }

    fn remove(&mut self, id: u16) -> Option<Entry<T>> {
        let entry = self.pending.remove(&id)?;
        self.ids.release(id);
        if entry.holds_quota {
            self.quota.release();
        }
        Some(entry)
    }

    /// Ends every request sent on `stream` (the stream is gone); returns
    /// their tokens.
    pub(crate) fn fail_stream(&mut self, stream: u64) -> Vec<T> {
        let ids: Vec<u16> = self
            .pending
            .iter()
            .filter(|(_, entry)| entry.stream == stream)
            .map(|(id, _)| *id)
            .collect();
        ids.into_iter()
            .filter_map(|id| self.remove(id).map(|entry| entry.token))
            .collect()
    }

    /// Ends every request (the connection is gone); returns their tokens.
    pub(crate) fn drain(&mut self) -> Vec<T> {
        let ids: Vec<u16> = self.pending.keys().copied().collect();
        ids.into_iter()
            .filter_map(|id| self.remove(id).map(|entry| entry.token))
            .collect()
    }

    fn expect(
        &mut self,
        id: u16,
        awaiting: Awaiting,
        got: &'static str,
    ) -> Result<Entry<T>, AckOutcome<T>> {
        match self.pending.get(&id) {
            None => Err(AckOutcome::Ignored(id)),
            Some(entry) if entry.awaiting == awaiting => match self.remove(id) {
                Some(entry) => Ok(entry),
                None => Err(AckOutcome::Ignored(id)),
            },
            Some(entry) => Err(AckOutcome::Violation(format!(
                "{got} for packet identifier {id}, which waits for {}",
                entry.awaiting.name()
            ))),
        }
    }

    fn publish_done(
        &mut self,
        ack: &PublishResponse,
        awaiting: Awaiting,
        got: &'static str,
    ) -> AckOutcome<T> {
        match self.expect(ack.packet_id, awaiting, got) {
            Ok(entry) => AckOutcome::Completed {
                token: entry.token,
                response: Response::Publish(ack.reason_code),
            },
            Err(outcome) => outcome,
        }
    }

    /// Applies an acknowledgement from the server. Packets that are not
    /// acknowledgements of client requests yield `None`.
    pub(crate) fn on_ack(&mut self, packet: &Packet) -> Option<AckOutcome<T>> {
        Some(match packet {
            Packet::PubAck(ack) => self.publish_done(ack, Awaiting::PubAck, "PUBACK"),
            Packet::PubComp(ack) => self.publish_done(ack, Awaiting::PubComp, "PUBCOMP"),
            Packet::PubRec(ack) => self.on_pubrec(ack),
            Packet::SubAck(ack) => match self.expect(ack.packet_id, Awaiting::SubAck, "SUBACK") {
                Ok(entry) => AckOutcome::Completed {
                    token: entry.token,
                    response: Response::SubAck(Box::new(ack.clone())),
                },
                Err(outcome) => outcome,
            },
            Packet::UnsubAck(ack) => {
                match self.expect(ack.packet_id, Awaiting::UnsubAck, "UNSUBACK") {
                    Ok(entry) => AckOutcome::Completed {
                        token: entry.token,
                        response: Response::UnsubAck(Box::new(ack.clone())),
                    },
                    Err(outcome) => outcome,
                }
            }
            _ => return None,
        })
    }

    fn on_pubrec(&mut self, ack: &PublishResponse) -> AckOutcome<T> {
        let id = ack.packet_id;
        let Some(entry) = self.pending.get_mut(&id) else {
            return AckOutcome::UnknownPubRec(id);
        };
        match entry.awaiting {
            Awaiting::PubRec if ack.reason_code.is_error() => match self.remove(id) {
                Some(entry) => AckOutcome::Completed {
                    token: entry.token,
                    response: Response::Publish(ack.reason_code),
                },
                None => AckOutcome::Ignored(id),
            },
            Awaiting::PubRec => {
                entry.awaiting = Awaiting::PubComp;
                AckOutcome::SendPubRel(id)
            }
            // A repeated PUBREC: send PUBREL again.
            Awaiting::PubComp => AckOutcome::SendPubRel(id),
            other => AckOutcome::Violation(format!(
                "PUBREC for packet identifier {id}, which waits for {}",
                other.name()
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use quicmq_proto::mqtt::Properties;

    use super::*;

    fn ack(id: u16, code: ReasonCode) -> PublishResponse {
        PublishResponse {
            packet_id: id,
            reason_code: code,
            properties: Properties::default(),
        }
    }

    fn completed<T>(outcome: Option<AckOutcome<T>>) -> (T, Response) {
        match outcome {
            Some(AckOutcome::Completed { token, response }) => (token, response),
            other => panic!("expected completion, got {:?}", other.map(|_| ())),
        }
    }

    #[test]
    fn qos1_publish_completes_on_puback() {
        let mut reqs = Requests::new(10);
        let id = reqs.begin(RequestKind::PublishQos1, 0, "a").unwrap();
        assert_eq!(reqs.publishes_in_flight(), 1);
        let (token, response) = completed(reqs.on_ack(&Packet::PubAck(ack(
            id,
            ReasonCode::NO_MATCHING_SUBSCRIBERS,
        ))));
        assert_eq!(token, "a");
        assert_eq!(
            response,
            Response::Publish(ReasonCode::NO_MATCHING_SUBSCRIBERS)
        );
        assert_eq!(reqs.len(), 0);
        assert_eq!(reqs.publishes_in_flight(), 0);
    }

    #[test]
    fn qos2_publish_goes_through_pubrec_pubrel_pubcomp() {
        let mut reqs = Requests::new(10);
        let id = reqs.begin(RequestKind::PublishQos2, 3, 7u32).unwrap();
        match reqs.on_ack(&Packet::PubRec(ack(id, ReasonCode::SUCCESS))) {
            Some(AckOutcome::SendPubRel(got)) => assert_eq!(got, id),
            other => panic!("{:?}", other.map(|_| ())),
        }
        // Quota is held until PUBCOMP.
        assert_eq!(reqs.publishes_in_flight(), 1);
        // A duplicated PUBREC asks for PUBREL again.
        assert!(matches!(
            reqs.on_ack(&Packet::PubRec(ack(id, ReasonCode::SUCCESS))),
            Some(AckOutcome::SendPubRel(_))
        ));
        let (token, response) =
            completed(reqs.on_ack(&Packet::PubComp(ack(id, ReasonCode::SUCCESS))));
        assert_eq!(token, 7);
        assert_eq!(response, Response::Publish(ReasonCode::SUCCESS));
        assert_eq!(reqs.publishes_in_flight(), 0);
    }

    #[test]
    fn qos2_publish_ends_on_failed_pubrec() {
        let mut reqs = Requests::new(10);
        let id = reqs.begin(RequestKind::PublishQos2, 0, ()).unwrap();
        let (_, response) =
            completed(reqs.on_ack(&Packet::PubRec(ack(id, ReasonCode::NOT_AUTHORIZED))));
        assert_eq!(response, Response::Publish(ReasonCode::NOT_AUTHORIZED));
        assert_eq!(reqs.len(), 0);
        assert_eq!(reqs.publishes_in_flight(), 0);
    }

    #[test]
    fn receive_maximum_limits_publishes_but_not_subscribes() {
        let mut reqs = Requests::new(2);
        assert!(reqs.begin(RequestKind::PublishQos1, 0, 1).is_ok());
        let second = reqs.begin(RequestKind::PublishQos2, 0, 2).unwrap();
        assert_eq!(reqs.begin(RequestKind::PublishQos1, 0, 3), Err(3));
        assert!(reqs.begin(RequestKind::Subscribe, 0, 4).is_ok());
        assert!(reqs.begin(RequestKind::Unsubscribe, 0, 5).is_ok());
        assert_eq!(reqs.cancel(second), Some(2));
        assert!(reqs.begin(RequestKind::PublishQos1, 0, 6).is_ok());
    }

    #[test]
    fn subscribe_and_unsubscribe_complete_with_their_acks() {
        let mut reqs = Requests::new(10);
        let sub = reqs.begin(RequestKind::Subscribe, 0, "s").unwrap();
        let unsub = reqs.begin(RequestKind::Unsubscribe, 0, "u").unwrap();
        assert_ne!(sub, unsub);
        let suback = SubAck {
            packet_id: sub,
            reason_codes: vec![ReasonCode::GRANTED_QOS_1],
            properties: Properties::default(),
        };
        let (token, response) = completed(reqs.on_ack(&Packet::SubAck(suback.clone())));
        assert_eq!(token, "s");
        assert_eq!(response, Response::SubAck(Box::new(suback)));
        let unsuback = UnsubAck {
            packet_id: unsub,
            reason_codes: vec![],
            properties: Properties::default(),
        };
        let (token, response) = completed(reqs.on_ack(&Packet::UnsubAck(unsuback.clone())));
        assert_eq!(token, "u");
        assert_eq!(response, Response::UnsubAck(Box::new(unsuback)));
    }

    #[test]
    fn wrong_ack_kind_is_a_violation_and_unknown_ids_are_ignored() {
        let mut reqs = Requests::new(10);
        let id = reqs.begin(RequestKind::PublishQos2, 0, ()).unwrap();
        assert!(matches!(
            reqs.on_ack(&Packet::PubAck(ack(id, ReasonCode::SUCCESS))),
            Some(AckOutcome::Violation(_))
        ));
        assert!(matches!(
            reqs.on_ack(&Packet::PubComp(ack(id, ReasonCode::SUCCESS))),
            Some(AckOutcome::Violation(_))
        ));
        assert!(matches!(
            reqs.on_ack(&Packet::PubAck(ack(999, ReasonCode::SUCCESS))),
            Some(AckOutcome::Ignored(999))
        ));
        assert!(matches!(
            reqs.on_ack(&Packet::PubRec(ack(999, ReasonCode::SUCCESS))),
            Some(AckOutcome::UnknownPubRec(999))
        ));
        let sub = reqs.begin(RequestKind::Subscribe, 0, ()).unwrap();
        assert!(matches!(
            reqs.on_ack(&Packet::PubRec(ack(sub, ReasonCode::SUCCESS))),
            Some(AckOutcome::Violation(_))
        ));
        assert!(reqs.on_ack(&Packet::PingResp).is_none());
    }

    #[test]
    fn failing_a_stream_ends_only_its_requests() {
        let mut reqs = Requests::new(10);
        reqs.begin(RequestKind::PublishQos1, 0, "c1").unwrap();
        reqs.begin(RequestKind::PublishQos1, 1, "d1").unwrap();
        reqs.begin(RequestKind::Subscribe, 1, "d2").unwrap();
        let mut failed = reqs.fail_stream(1);
        failed.sort();
        assert_eq!(failed, vec!["d1", "d2"]);
        assert_eq!(reqs.len(), 1);
        assert_eq!(reqs.publishes_in_flight(), 1);
        assert_eq!(reqs.drain(), vec!["c1"]);
        assert_eq!(reqs.len(), 0);
        assert_eq!(reqs.publishes_in_flight(), 0);
    }
}
