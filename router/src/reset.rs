//! Stateless Reset packets (RFC 9000 §10.3) sent on behalf of dead nodes.
//!
//! The token is what the node's quinn endpoint would have put in its
//! NEW_CONNECTION_ID frames: the first 16 octets of HMAC-SHA256 of the
//! connection ID under the cluster-wide reset key.

use aws_lc_rs::hmac;

/// Shortest datagram a reset is sent for: a reset must be smaller than the
/// packet that triggers it (no reset loops) and at least 21 octets long.
pub const MIN_TRIGGER_LEN: usize = 22;
/// Length of the resets we send (when the trigger is long enough).
pub const RESET_LEN: usize = 43;

/// The cluster's stateless reset key.
pub struct ResetKey(hmac::Key);

impl ResetKey {
    /// The key from its 32 octets.
    pub fn new(key: &[u8; 32]) -> ResetKey {
        ResetKey(hmac::Key::new(hmac::HMAC_SHA256, key))
    }

    /// The reset token of a connection ID.
    pub fn token(&self, cid: &[u8]) -> [u8; 16] {
        let tag = hmac::sign(&self.0, cid);
        let mut token = [0u8; 16];
        token.copy_from_slice(&tag.as_ref()[..16]);
        token
    }

    /// Write a Stateless Reset for `cid`, triggered by a datagram of
    /// `trigger_len` octets, into `out`; returns its length, or `None` when
    /// the trigger is too short to answer.
    pub fn write_reset(
        &self,
        cid: &[u8],
        trigger_len: usize,
        out: &mut [u8; RESET_LEN],
    ) -> Option<usize> {
        if trigger_len < MIN_TRIGGER_LEN {
            return None;
        }
        let len = RESET_LEN.min(trigger_len - 1);
        rand::Rng::fill(&mut rand::thread_rng(), &mut out[..len - 16]);
        // Short header form, fixed bit set, the rest random.
        out[0] = 0b0100_0000 | (out[0] & 0b0011_1111);
        out[len - 16..len].copy_from_slice(&self.token(cid));
        Some(len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reset_is_shorter_than_its_trigger_and_ends_with_the_token() {
        let key = ResetKey::new(&[1; 32]);
        let mut out = [0u8; RESET_LEN];
        assert_eq!(key.write_reset(b"cid", 21, &mut out), None);
        let len = key.write_reset(b"cid", 30, &mut out).unwrap();
        assert_eq!(len, 29);
        assert_eq!(out[0] & 0xc0, 0x40);
        assert_eq!(out[len - 16..len], key.token(b"cid"));
        assert_eq!(key.write_reset(b"cid", 1200, &mut out), Some(RESET_LEN));
        assert_ne!(key.token(b"cid"), key.token(b"cie"));
    }
}
