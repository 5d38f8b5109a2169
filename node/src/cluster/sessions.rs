//! Persistent sessions in `ClusterState`: the records the node writes
//! (subscriptions, expiry, disconnect time, owner) so that a client can
//! resume its session on any node, and the ordered queue that commits
//! them.

use std::sync::Weak;

use quicmq_proto::mqtt::{QoS, RetainHandling, SubscriptionOptions};
use quicmq_raft::command::{Command, SessionRecord, SubscriptionRecord};
use tokio::sync::mpsc;

use super::link::ClusterLink;
use crate::broker::{Session, Subscription};

/// One change to a persistent session, in the order the node made them.
pub(crate) enum SessionChange {
    /// The owner's current record.
    Update(String, SessionRecord),
    /// The session ended.
    Remove(String),
}

/// The options byte of MQTT 5 SUBSCRIBE for `options`.
pub fn options_byte(options: &SubscriptionOptions) -> u8 {
    (options.qos as u8)
        | (u8::from(options.no_local) << 2)
        | (u8::from(options.retain_as_published) << 3)
        | ((options.retain_handling as u8) << 4)
}

/// The options of an options byte (`None` for reserved values).
pub fn options_from_byte(byte: u8) -> Option<SubscriptionOptions> {
    Some(SubscriptionOptions {
        qos: QoS::from_u8(byte & 0b11)?,
        no_local: byte & 0b100 != 0,
        retain_as_published: byte & 0b1000 != 0,
        retain_handling: match (byte >> 4) & 0b11 {
            0 => RetainHandling::SendAtSubscribe,
            1 => RetainHandling::SendIfNew,
            2 => RetainHandling::DoNotSend,
            _ => return None,
        },
    })
}

/// The cluster record of a session as this node holds it.
pub fn session_record(session: &Session, disconnected_at_ms: Option<u64>) -> SessionRecord {
    SessionRecord {
        owner: None,
        // The cluster keeps the identity its claim recorded.
        identity: None,
        protocol_level: 0,
        expiry_interval_s: session.expiry_interval(),
        disconnected_at_ms,
        subscriptions: session
            .subscriptions()
            .iter()
            .map(|(filter, sub)| SubscriptionRecord {
                filter: filter.clone(),
                options: options_byte(&sub.options),
                identifier: sub.identifier,
            })
            .collect(),
        will: None,
    }
}

/// The subscriptions of a record, as a node resumes them (on the control
/// stream: data streams do not outlive a connection).
pub fn subscriptions_of(record: &SessionRecord) -> Vec<(String, Subscription)> {
    record
        .subscriptions
        .iter()
        .filter_map(|s| {
            Some((
                s.filter.clone(),
                Subscription {
                    options: options_from_byte(s.options)?,
                    identifier: s.identifier,
                    stream: 0,
                    reads_all_under: None,
                },
            ))
        })
        .collect()
}

/// Commits session changes in order, several per log entry when they
/// queue up.
pub(crate) async fn commit_changes(
    link: Weak<ClusterLink>,
    mut rx: mpsc::UnboundedReceiver<SessionChange>,
) {
    while let Some(first) = rx.recv().await {
        let mut changes = vec![first];
        while changes.len() < 256 {
            match rx.try_recv() {
                Ok(c) => changes.push(c),
                Err(_) => break,
            }
        }
        let Some(link) = link.upgrade() else { return };
        let node_id = link.node_id();
        let commands: Vec<Command> = changes
            .into_iter()
            .map(|c| match c {
                SessionChange::Update(client_id, session) => Command::UpdateSession {
                    client_id,
                    node_id,
                    session,
                },
                SessionChange::Remove(client_id) => Command::RemoveSession {
                    client_id,
                    node_id: Some(node_id),
                },
            })
            .collect();
        if let Err(e) = link.cluster().propose(Command::Batch(commands)).await {
            tracing::warn!("session changes not committed: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_byte_round_trips() {
        for byte in 0u8..64 {
            if let Some(options) = options_from_byte(byte) {
                assert_eq!(options_byte(&options), byte);
            }
        }
        assert!(options_from_byte(3).is_none(), "QoS 3");
        assert!(options_from_byte(0b11_0000).is_none(), "retain handling 3");
    }
}
