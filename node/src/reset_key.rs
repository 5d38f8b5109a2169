//! The stateless reset key: nodes and routers derive every stateless reset
//! token from it (HMAC-SHA256 of the connection ID, first 16 octets, as
//! quinn does), so a router can reset the connections of a dead node.

use std::path::Path;

use aws_lc_rs::hmac;

/// Length of the key, octets.
pub const RESET_KEY_LEN: usize = 32;

/// Why the key could not be loaded or created.
#[derive(Debug, thiserror::Error)]
#[error("reset_key: {path}: {reason}")]
pub struct ResetKeyError {
    path: String,
    reason: String,
}

/// Load `reset-key` (64 hex digits) from `data_dir`, creating it with a
/// random key if it does not exist.
pub fn load_or_create(data_dir: &Path) -> Result<[u8; RESET_KEY_LEN], ResetKeyError> {
    let path = data_dir.join("reset-key");
    let error = |reason: String| ResetKeyError {
        path: path.display().to_string(),
        reason,
    };
    if let Ok(text) = std::fs::read_to_string(&path) {
        let text = text.trim();
        let mut key = [0u8; RESET_KEY_LEN];
        if text.len() != RESET_KEY_LEN * 2 {
            return Err(error(format!("expected {} hex digits", RESET_KEY_LEN * 2)));
        }
        for (i, out) in key.iter_mut().enumerate() {
            *out = text
                .get(i * 2..i * 2 + 2)
                .and_then(|pair| u8::from_str_radix(pair, 16).ok())
                .ok_or_else(|| error("not hex".into()))?;
        }
        return Ok(key);
    }
    let mut key = [0u8; RESET_KEY_LEN];
    rand::Rng::fill(&mut rand::thread_rng(), &mut key[..]);
    let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
    std::fs::write(&path, hex + "\n").map_err(|e| error(e.to_string()))?;
    Ok(key)
}

/// The stateless reset token of `cid` under `key`, as quinn computes it.
///
/// ```
/// let token = quicmq_node::reset_key::reset_token(&[1u8; 32], &[9, 9, 9, 9]);
/// assert_eq!(token.len(), 16);
/// ```
pub fn reset_token(key: &[u8; RESET_KEY_LEN], cid: &[u8]) -> [u8; 16] {
    let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), cid);
    let mut token = [0u8; 16];
    token.copy_from_slice(&tag.as_ref()[..16]);
    token
}

/// quinn's HMAC key for the endpoint's stateless reset tokens.
pub fn quinn_reset_key(key: &[u8; RESET_KEY_LEN]) -> hmac::Key {
    hmac::Key::new(hmac::HMAC_SHA256, key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_once_then_reused() {
        let dir = tempfile::tempdir().unwrap();
        let a = load_or_create(dir.path()).unwrap();
        let b = load_or_create(dir.path()).unwrap();
        assert_eq!(a, b);
        std::fs::write(dir.path().join("reset-key"), "zz").unwrap();
        assert!(load_or_create(dir.path()).is_err());
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
