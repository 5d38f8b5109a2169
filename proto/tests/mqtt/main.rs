//! Tests of the MQTT codec through the public API.

mod bad_input;
mod encode_errors;
mod incremental;
mod known_bytes;
mod roundtrip;
mod strategies;

use bytes::BytesMut;
use quicmq_proto::mqtt::{decode, encode, DecodeError, Packet, ProtocolVersion};

/// Encodes `packet` into a fresh buffer.
pub fn encoded(packet: &Packet, version: ProtocolVersion) -> BytesMut {
    let mut out = BytesMut::new();
    let n = encode(packet, version, &mut out).expect("encode");
    assert_eq!(n, out.len());
    out
}

/// Decodes exactly one packet from `bytes` with a generous size limit,
/// asserting that it uses all of them.
pub fn decoded(bytes: &[u8], version: ProtocolVersion) -> Result<Packet, DecodeError> {
    let mut buf = BytesMut::from(bytes);
    let packet = decode(&mut buf, version, 1 << 20)?.expect("a whole packet");
    assert!(buf.is_empty(), "{} bytes left over", buf.len());
    Ok(packet)
}
