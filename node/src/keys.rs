//! Cluster-wide secrets of a node, each 32 octets:
//!
//! - the stateless reset key: nodes and routers derive every stateless
//!   reset token from it (HMAC-SHA256 of the connection ID, first 16
//!   octets, as quinn does), so a router can reset the connections of a
//!   dead node;
//! - the token key: seals address-validation tokens (Retry, NEW_TOKEN), so
//!   any node accepts a token another issued.
//!
//! Each comes from configuration or, by default, from a file of 64 hex
//! digits in the data directory, created on first start.

use std::path::Path;

use aws_lc_rs::{hkdf, hmac};

/// Length of every key, octets.
pub const KEY_LEN: usize = 32;
/// Kept for the reset key's users.
pub const RESET_KEY_LEN: usize = KEY_LEN;

/// Why a key could not be loaded or created.
#[derive(Debug, thiserror::Error)]
#[error("{key}: {path}: {reason}")]
pub struct KeyFileError {
    key: &'static str,
    path: String,
    reason: String,
}

/// Load `file` (64 hex digits) from `data_dir`, creating it with a random
/// key if it does not exist. `key` names the config key in errors.
pub fn load_or_create(
    data_dir: &Path,
    file: &str,
    key: &'static str,
) -> Result<[u8; KEY_LEN], KeyFileError> {
    let path = data_dir.join(file);
    let error = |reason: String| KeyFileError {
        key,
        path: path.display().to_string(),
        reason,
    };
    if let Ok(text) = std::fs::read_to_string(&path) {
        return quicmq_proto::hex::decode_array(&text).map_err(|e| error(e.to_string()));
    }
    let mut out = [0u8; KEY_LEN];
    rand::Rng::fill(&mut rand::thread_rng(), &mut out[..]);
    std::fs::write(&path, quicmq_proto::hex::encode(&out) + "\n")
        .map_err(|e| error(e.to_string()))?;
    Ok(out)
}

/// quinn's handshake token key from the cluster's token key.
pub fn token_prk(key: &[u8; KEY_LEN]) -> hkdf::Prk {
    hkdf::Salt::new(hkdf::HKDF_SHA256, b"quicmq token key").extract(key)
}

/// The stateless reset token of `cid` under `key`, as quinn computes it.
///
/// ```
/// let token = quicmq_node::keys::reset_token(&[1u8; 32], &[9, 9, 9, 9]);
/// assert_eq!(token.len(), 16);
/// ```
pub fn reset_token(key: &[u8; KEY_LEN], cid: &[u8]) -> [u8; 16] {
    let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), cid);
    let mut token = [0u8; 16];
    token.copy_from_slice(&tag.as_ref()[..16]);
    token
}

/// quinn's HMAC key for the endpoint's stateless reset tokens.
pub fn quinn_reset_key(key: &[u8; KEY_LEN]) -> hmac::Key {
    hmac::Key::new(hmac::HMAC_SHA256, key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_once_then_reused() {
        let dir = tempfile::tempdir().unwrap();
        let a = load_or_create(dir.path(), "reset-key", "reset_key").unwrap();
        let b = load_or_create(dir.path(), "reset-key", "reset_key").unwrap();
        assert_eq!(a, b);
        let t = load_or_create(dir.path(), "token-key", "token_key").unwrap();
        assert_ne!(a, t);
        std::fs::write(dir.path().join("reset-key"), "zz").unwrap();
        let err = load_or_create(dir.path(), "reset-key", "reset_key").unwrap_err();
        assert!(err.to_string().starts_with("reset_key: "), "{err}");
    }

    #[test]
    fn token_matches_quinn() {
        use quinn_proto::crypto::HmacKey;
        let key = [3u8; 32];
        let cid = [1u8, 2, 3, 4, 5, 6, 7, 8];
        let quinn_key = quinn_reset_key(&key);
        let mut signature = vec![0u8; quinn_key.signature_len()];
        quinn_key.sign(&cid, &mut signature);
        assert_eq!(reset_token(&key, &cid), signature[..16]);
    }
}
