//! Tests of the PROXY v2 datagram envelope through the public API.

mod bad_input;
mod known_bytes;
mod roundtrip;

/// The PROXY v2 signature, spelled out as in the spec (§2.2).
pub const SIG: [u8; 12] = [
    0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A,
];

/// Signature, then `rest`.
pub fn with_sig(rest: &[u8]) -> Vec<u8> {
    let mut v = SIG.to_vec();
    v.extend_from_slice(rest);
    v
}
