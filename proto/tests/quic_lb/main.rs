//! Tests of QUIC-LB connection IDs through the public API.

mod bad_input;
mod config;
mod cost;
mod roundtrip;
mod vectors;

use quicmq_proto::quic_lb::{LbCodec, LbConfig};

/// Octets of a hex string (test data only).
pub fn unhex(s: &str) -> Vec<u8> {
    assert!(s.len().is_multiple_of(2), "odd-length hex {s}");
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

/// A 16-octet key from hex.
pub fn key(s: &str) -> [u8; 16] {
    unhex(s).try_into().expect("16-octet key")
}

/// A codec for a configuration that must be valid.
pub fn codec(config_id: u8, sid_len: usize, nonce_len: usize, key: Option<[u8; 16]>) -> LbCodec {
    LbCodec::new(LbConfig::new(config_id, sid_len, nonce_len, key).expect("valid config"))
        .expect("codec")
}
