//! Connection IDs that carry this node's server ID (QUIC-LB), so stateless
//! routers can steer every datagram of a connection to this node.

use std::sync::Arc;
use std::time::Duration;

use quicmq_proto::quic_lb::{LbCodec, ServerId, MAX_NONCE_LEN};
use quinn::{ConnectionId, ConnectionIdGenerator};
use quinn_proto::InvalidCid;

/// Mints every connection ID the node issues (handshake SCID,
/// NEW_CONNECTION_ID) with its server ID and a random nonce, and rejects
/// CIDs of other server IDs, so a misrouted packet is dropped, not reset.
///
/// ```
/// use std::sync::Arc;
/// use quicmq_node::transport::RoutableCidGenerator;
/// use quicmq_proto::quic_lb::{LbCodec, LbConfig, ServerId};
/// use quinn::ConnectionIdGenerator;
///
/// let codec = Arc::new(LbCodec::new(LbConfig::new(0, 2, 8, None).unwrap()).unwrap());
/// let mut generator = RoutableCidGenerator::new(codec.clone(), ServerId::new(&[0, 7]).unwrap()).unwrap();
/// let cid = generator.generate_cid();
/// assert_eq!(codec.decode_server_id(&cid).unwrap().as_bytes(), &[0, 7]);
/// assert!(generator.validate(&cid).is_ok());
/// ```
#[derive(Clone, Debug)]
pub struct RoutableCidGenerator {
    codec: Arc<LbCodec>,
    server_id: ServerId,
}

/// The server ID does not fit the QUIC-LB configuration.
#[derive(Debug, thiserror::Error)]
#[error("server_id {server_id} does not fit the QUIC-LB configuration: {reason}")]
pub struct ServerIdMismatch {
    server_id: ServerId,
    reason: quicmq_proto::quic_lb::QuicLbError,
}

impl RoutableCidGenerator {
    /// A generator for `server_id` under `codec`'s configuration.
    pub fn new(codec: Arc<LbCodec>, server_id: ServerId) -> Result<Self, ServerIdMismatch> {
        let nonce = [0u8; MAX_NONCE_LEN];
        let nonce_len = codec.config().nonce_len();
        codec
            .encode(&server_id, &nonce[..nonce_len])
            .map_err(|reason| ServerIdMismatch { server_id, reason })?;
        Ok(RoutableCidGenerator { codec, server_id })
    }
}

impl ConnectionIdGenerator for RoutableCidGenerator {
    fn generate_cid(&mut self) -> ConnectionId {
        let mut nonce = [0u8; MAX_NONCE_LEN];
        let nonce_len = self.codec.config().nonce_len();
        rand::Rng::fill(&mut rand::thread_rng(), &mut nonce[..nonce_len]);
        match self.codec.encode(&self.server_id, &nonce[..nonce_len]) {
            Ok(cid) => ConnectionId::new(&cid),
            Err(e) => {
                // Checked in `new`; kept total anyway: an unroutable CID of the
                // right length (first octet 0b111) still works, unrouted.
                tracing::error!(error = %e, "could not mint a routable connection ID");
                let mut random = [0u8; 20];
                let len = self.cid_len();
                rand::Rng::fill(&mut rand::thread_rng(), &mut random[..len]);
                random[0] = 0b1110_0000 | (random[0] & 0x1f);
                ConnectionId::new(&random[..len])
            }
        }
    }

    fn validate(&self, cid: &ConnectionId) -> Result<(), InvalidCid> {
        match self.codec.decode_server_id(cid) {
            Ok(id) if id == self.server_id => Ok(()),
            _ => Err(InvalidCid),
        }
    }

    fn cid_len(&self) -> usize {
        self.codec.config().cid_len()
    }

    fn cid_lifetime(&self) -> Option<Duration> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quicmq_proto::quic_lb::LbConfig;

    #[test]
    fn every_cid_decodes_to_our_server_id_and_others_are_rejected() {
        let key = Some([7u8; 16]);
        for (sid_len, nonce_len) in [(1, 4), (2, 8), (8, 8), (3, 12)] {
            let codec =
                Arc::new(LbCodec::new(LbConfig::new(2, sid_len, nonce_len, key).unwrap()).unwrap());
            let ours = ServerId::new(&vec![5u8; sid_len]).unwrap();
            let theirs = ServerId::new(&vec![6u8; sid_len]).unwrap();
            let mut mine = RoutableCidGenerator::new(codec.clone(), ours).unwrap();
            let mut other = RoutableCidGenerator::new(codec.clone(), theirs).unwrap();
            let mut seen = std::collections::HashSet::new();
            for _ in 0..200 {
                let cid = mine.generate_cid();
                assert_eq!(cid.len(), mine.cid_len());
                assert_eq!(codec.decode_server_id(&cid).unwrap(), ours);
                assert!(mine.validate(&cid).is_ok());
                assert!(other.validate(&cid).is_err());
                assert!(seen.insert(cid.to_vec()), "nonces are random");
                assert!(mine.validate(&other.generate_cid()).is_err());
            }
        }
    }

    #[test]
    fn a_server_id_of_the_wrong_length_is_refused() {
        let codec = Arc::new(LbCodec::new(LbConfig::new(0, 2, 6, None).unwrap()).unwrap());
        let err = RoutableCidGenerator::new(codec, ServerId::new(&[1, 2, 3]).unwrap()).unwrap_err();
        assert!(err.to_string().contains("server_id"), "{err}");
    }
}
