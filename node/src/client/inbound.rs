//! Exactly-once delivery of QoS 2 messages from the server (sans-IO).
//!
//! The client remembers the packet identifier of a QoS 2 PUBLISH from
//! receiving it (and sending PUBREC) until the server's PUBREL (answered
//! with PUBCOMP). A PUBLISH with an identifier still remembered is a
//! re-delivery and is not handed to the application again. One instance
//! per stream: acknowledgements travel on the stream of the PUBLISH.

use std::collections::HashSet;

/// Identifiers of QoS 2 messages received but not yet released.
#[derive(Debug, Default)]
pub(crate) struct InboundQos2 {
    received: HashSet<u16>,
}

impl InboundQos2 {
    /// Records a QoS 2 PUBLISH; returns whether it is new (deliver it) or a
    /// re-delivery (do not). Either way the client answers PUBREC.
    pub(crate) fn on_publish(&mut self, packet_id: u16) -> bool {
        self.received.insert(packet_id)
    }

    /// Applies a PUBREL; returns whether the identifier was known (else
    /// PUBCOMP carries "Packet Identifier not found").
    pub(crate) fn on_pubrel(&mut self, packet_id: u16) -> bool {
        self.received.remove(&packet_id)
    }

    /// Number of QoS 2 messages awaiting PUBREL.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.received.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delivers_once_until_released() {
        let mut inbound = InboundQos2::default();
        assert!(inbound.on_publish(5));
        assert!(!inbound.on_publish(5));
        assert!(inbound.on_publish(6));
        assert_eq!(inbound.len(), 2);
        assert!(inbound.on_pubrel(5));
        assert!(!inbound.on_pubrel(5));
        // After release the identifier may be reused for a new message.
        assert!(inbound.on_publish(5));
    }
}
