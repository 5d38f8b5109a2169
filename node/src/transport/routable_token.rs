//! Address-validation tokens (Retry, NEW_TOKEN) that name the issuing node.
//!
//! quinn seals tokens with the [`HandshakeTokenKey`] it is given; this one
//! wraps the real key and appends the node's server ID in clear behind the
//! sealed bytes (bound to them as associated data) — see
//! `quicmq_proto::token_trailer`. A router reads it from an Initial's token
//! and steers a returning client to the node that holds its resumption
//! state, where its 0-RTT data can be accepted. Tokens of any node open, as
//! all nodes share the token key.

use quicmq_proto::quic_lb::ServerId;
use quicmq_proto::token_trailer;
use quinn_proto::crypto::{AeadKey, CryptoError, HandshakeTokenKey};

/// A token key whose tokens carry the server ID.
///
/// ```
/// use quicmq_node::transport::RoutableTokenKey;
/// use quicmq_proto::quic_lb::ServerId;
/// use quinn_proto::crypto::HandshakeTokenKey;
///
/// let key = RoutableTokenKey::new(quicmq_node::keys::token_prk(&[7; 32]), ServerId::new(&[0, 2]).unwrap());
/// let aead = key.aead_from_hkdf(&[1; 16]);
/// let mut token = b"payload".to_vec();
/// aead.seal(&mut token, &[]).unwrap();
/// assert_eq!(quicmq_proto::token_trailer::split(&token).unwrap().1.as_bytes(), &[0, 2]);
/// assert_eq!(aead.open(&mut token, &[]).unwrap(), b"payload");
/// ```
pub struct RoutableTokenKey<K> {
    inner: K,
    server_id: ServerId,
}

impl<K: HandshakeTokenKey> RoutableTokenKey<K> {
    /// Wrap `inner` for this node's `server_id`.
    pub fn new(inner: K, server_id: ServerId) -> Self {
        RoutableTokenKey { inner, server_id }
    }
}

impl<K: HandshakeTokenKey> HandshakeTokenKey for RoutableTokenKey<K> {
    fn aead_from_hkdf(&self, random_bytes: &[u8]) -> Box<dyn AeadKey> {
        Box::new(TrailerAead {
            inner: self.inner.aead_from_hkdf(random_bytes),
            server_id: self.server_id,
        })
    }
}

struct TrailerAead {
    inner: Box<dyn AeadKey>,
    server_id: ServerId,
}

fn bound(additional_data: &[u8], server_id: &ServerId) -> Vec<u8> {
    let mut ad = Vec::with_capacity(additional_data.len() + server_id.len());
    ad.extend_from_slice(additional_data);
    ad.extend_from_slice(server_id);
    ad
}

impl AeadKey for TrailerAead {
    fn seal(&self, data: &mut Vec<u8>, additional_data: &[u8]) -> Result<(), CryptoError> {
        self.inner
            .seal(data, &bound(additional_data, &self.server_id))?;
        token_trailer::append(data, &self.server_id);
        Ok(())
    }

    fn open<'a>(
        &self,
        data: &'a mut [u8],
        additional_data: &[u8],
    ) -> Result<&'a mut [u8], CryptoError> {
        let (sealed_len, server_id) = {
            let (sealed, server_id) = token_trailer::split(data).ok_or(CryptoError)?;
            (sealed.len(), server_id)
        };
        let ad = bound(additional_data, &server_id);
        self.inner.open(&mut data[..sealed_len], &ad)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::token_prk;

    fn key(sid: &[u8]) -> RoutableTokenKey<aws_lc_rs::hkdf::Prk> {
        RoutableTokenKey::new(token_prk(&[9; 32]), ServerId::new(sid).unwrap())
    }

    #[test]
    fn any_node_opens_another_nodes_token_but_not_a_tampered_one() {
        let mut token = b"validation".to_vec();
        key(&[0, 1])
            .aead_from_hkdf(&[3; 16])
            .seal(&mut token, &[])
            .unwrap();
        let mut copy = token.clone();
        let opened = key(&[0, 2])
            .aead_from_hkdf(&[3; 16])
            .open(&mut copy, &[])
            .unwrap()
            .to_vec();
        assert_eq!(opened, b"validation");
        // Changing the server ID in the trailer breaks the seal.
        let mut forged = token.clone();
        let at = forged.len() - 3;
        forged[at] ^= 1;
        assert!(key(&[0, 2])
            .aead_from_hkdf(&[3; 16])
            .open(&mut forged, &[])
            .is_err());
        // Another token key does not open it.
        let other = RoutableTokenKey::new(token_prk(&[8; 32]), ServerId::new(&[0, 1]).unwrap());
        assert!(other
            .aead_from_hkdf(&[3; 16])
            .open(&mut token, &[])
            .is_err());
        assert!(key(&[0, 1])
            .aead_from_hkdf(&[3; 16])
            .open(&mut [0u8; 3], &[])
            .is_err());
    }
}
