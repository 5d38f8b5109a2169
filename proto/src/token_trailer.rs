//! The server ID trailer of address-validation tokens.
//!
//! Tokens (NEW_TOKEN and Retry) are sealed by the issuing node; a stateless
//! router cannot open them. So nodes append their QUIC-LB server ID in clear
//! to the sealed part (and bind it to the seal as associated data), just
//! before the 16-octet nonce quinn puts at the very end:
//!
//! ```text
//! Token {
//!   Sealed (..),
//!   Server ID (8..120),
//!   Server ID Length (8),
//!   Magic (8) = 0x51,
//!   Nonce (128),          quinn's
//! }
//! ```
//!
//! An Initial carrying such a token is steered back to the node that issued
//! it: the one that holds the client's resumption state (0-RTT).

use crate::quic_lb::{ServerId, MAX_SERVER_ID_LEN};

/// Marks a token that carries a server ID.
pub const MAGIC: u8 = 0x51;
/// Octets quinn appends after the sealed token (its nonce).
pub const NONCE_LEN: usize = 16;

/// Append the trailer (server ID, its length, magic) to `sealed`.
///
/// ```
/// use quicmq_proto::quic_lb::ServerId;
/// use quicmq_proto::token_trailer::{append, server_id_of, split};
///
/// let sid = ServerId::new(&[0, 7]).unwrap();
/// let mut token = b"sealed".to_vec();
/// append(&mut token, &sid);
/// assert_eq!(split(&token), Some((&b"sealed"[..], sid)));
/// token.extend_from_slice(&[0u8; 16]); // quinn's nonce
/// assert_eq!(server_id_of(&token), Some(sid));
/// ```
pub fn append(sealed: &mut Vec<u8>, server_id: &ServerId) {
    sealed.extend_from_slice(server_id);
    sealed.push(server_id.len() as u8);
    sealed.push(MAGIC);
}

/// Split `sealed ‖ trailer` (no nonce) into the sealed part and the server ID.
pub fn split(with_trailer: &[u8]) -> Option<(&[u8], ServerId)> {
    let (&magic, rest) = with_trailer.split_last()?;
    if magic != MAGIC {
        return None;
    }
    let (&len, rest) = rest.split_last()?;
    let len = usize::from(len);
    if len == 0 || len > MAX_SERVER_ID_LEN {
        return None;
    }
    let start = rest.len().checked_sub(len)?;
    let server_id = ServerId::new(rest.get(start..)?).ok()?;
    Some((&rest[..start], server_id))
}

/// The server ID of a whole token as a client sends it (trailer and
/// quinn's nonce included), if it has one.
pub fn server_id_of(token: &[u8]) -> Option<ServerId> {
    let end = token.len().checked_sub(NONCE_LEN)?;
    split(token.get(..end)?).map(|(_, sid)| sid)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn tokens_without_trailer_have_no_server_id() {
        assert_eq!(server_id_of(&[]), None);
        assert_eq!(server_id_of(&[0u8; 40]), None);
        let mut bad_len = vec![1, 2, 3, 16, MAGIC];
        bad_len.extend_from_slice(&[0; NONCE_LEN]);
        assert_eq!(server_id_of(&bad_len), None);
        let mut too_short = vec![1, 5, MAGIC];
        too_short.extend_from_slice(&[0; NONCE_LEN]);
        assert_eq!(server_id_of(&too_short), None);
    }

    proptest! {
        #[test]
        fn round_trip(sealed in proptest::collection::vec(any::<u8>(), 0..80),
                      sid in proptest::collection::vec(any::<u8>(), 1..=15)) {
            let sid = ServerId::new(&sid).unwrap();
            let mut token = sealed.clone();
            append(&mut token, &sid);
            let (rest, got) = split(&token).unwrap();
            prop_assert_eq!(rest, &sealed[..]);
            prop_assert_eq!(got, sid);
        }

        #[test]
        fn arbitrary_tokens_never_panic(token in proptest::collection::vec(any::<u8>(), 0..80)) {
            let _ = server_id_of(&token);
            let _ = split(&token);
        }
    }
}
