//! The fixed header (MQTT 5.0 §2.1): packet type, flags and remaining
//! length, read without consuming anything.

use crate::mqtt::primitives::peek_varint;
use crate::mqtt::{DecodeError, PacketType, ProtocolVersion};

/// A fixed header that has been fully received.
#[derive(Clone, Copy, Debug)]
pub(crate) struct FixedHeader {
    /// The packet type.
    pub(crate) kind: PacketType,
    /// The low nibble of the first byte.
    pub(crate) flags: u8,
    /// Length of the fixed header itself (2..=5).
    pub(crate) header_len: usize,
    /// The remaining length: the size of the body.
    pub(crate) remaining: usize,
}

fn packet_type(nibble: u8) -> Option<PacketType> {
    Some(match nibble {
        1 => PacketType::Connect,
        2 => PacketType::ConnAck,
        3 => PacketType::Publish,
        4 => PacketType::PubAck,
        5 => PacketType::PubRec,
        6 => PacketType::PubRel,
        7 => PacketType::PubComp,
        8 => PacketType::Subscribe,
        9 => PacketType::SubAck,
        10 => PacketType::Unsubscribe,
        11 => PacketType::UnsubAck,
        12 => PacketType::PingReq,
        13 => PacketType::PingResp,
        14 => PacketType::Disconnect,
        15 => PacketType::Auth,
        _ => return None,
    })
}

/// Checks the first byte of a packet: a known type, allowed in `version`,
/// with the flags that type requires.
fn first_byte(byte: u8, version: ProtocolVersion) -> Result<(PacketType, u8), DecodeError> {
    let flags = byte & 0x0F;
    let kind = packet_type(byte >> 4).ok_or(DecodeError::Malformed("packet type 0"))?;
    if kind == PacketType::Auth && version == ProtocolVersion::V311 {
        return Err(DecodeError::Malformed("AUTH in MQTT 3.1.1"));
    }
    match kind {
        PacketType::Publish => {
            let qos = (flags >> 1) & 0b11;
            if qos == 3 {
                return Err(DecodeError::Malformed("PUBLISH with QoS 3"));
            }
            if qos == 0 && flags & 0b1000 != 0 {
                return Err(DecodeError::Malformed("PUBLISH with QoS 0 and DUP set"));
            }
        }
        PacketType::PubRel | PacketType::Subscribe | PacketType::Unsubscribe => {
            if flags != 0b0010 {
                return Err(DecodeError::Malformed("fixed header flags must be 0010"));
            }
        }
        _ => {
            if flags != 0 {
                return Err(DecodeError::Malformed("fixed header flags must be 0000"));
            }
        }
    }
    Ok((kind, flags))
}

/// Parses the fixed header at the start of `buf`; `Ok(None)` until it is
/// all there. The first byte is checked as soon as it arrives.
pub(crate) fn parse(
    buf: &[u8],
    version: ProtocolVersion,
) -> Result<Option<FixedHeader>, DecodeError> {
    let Some(&byte) = buf.first() else {
        return Ok(None);
    };
    let (kind, flags) = first_byte(byte, version)?;
    let Some((remaining, len)) = peek_varint(&buf[1..])? else {
        return Ok(None);
    };
    Ok(Some(FixedHeader {
        kind,
        flags,
        header_len: 1 + len,
        remaining: remaining as usize,
    }))
}
