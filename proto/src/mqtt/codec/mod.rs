//! The sans-IO codec: [`decode`] one packet from the front of a buffer,
//! [`encode`] one packet onto the end of one.
//!
//! Encoding measures the packet first (validating every field), then
//! reserves the exact size and writes straight into the output buffer, so a
//! packet that cannot be encoded leaves the buffer untouched.

mod acks;
mod connect;
mod disconnect_auth;
mod header;
mod properties;
mod publish;
mod subscribe;

use bytes::{Buf, BufMut, BytesMut};

use super::primitives::{put_varint, varint_len, Reader, MAX_VARINT};
use super::{DecodeError, EncodeError, Packet, PacketType, ProtocolVersion};

/// Decode one packet from the front of `buf`.
///
/// `Ok(None)` means more bytes are needed; nothing is consumed. On
/// `Ok(Some(_))` the packet's bytes are removed from `buf`; a PUBLISH
/// payload (and any binary property) shares `buf`'s memory without copying.
///
/// A CONNECT is decoded with the protocol level it names, whatever
/// `version` says; every other packet is decoded as `version`.
///
/// If the fixed header announces a packet (fixed header included) larger
/// than `max_packet_size`, [`DecodeError::PacketTooLarge`] is returned as
/// soon as the header is readable, before the body arrives. A malformed
/// first byte is reported as soon as it arrives.
///
/// After an error the content of `buf` is unspecified: the connection is
/// expected to be closed (after sending [`DecodeError::reason_code`]).
///
/// ```
/// use bytes::BytesMut;
/// use quicmq_proto::mqtt::{decode, Packet, ProtocolVersion};
///
/// let mut buf = BytesMut::from(&[0xC0, 0x00, 0xD0][..]);
/// assert_eq!(decode(&mut buf, ProtocolVersion::V311, 1024), Ok(Some(Packet::PingReq)));
/// assert_eq!(decode(&mut buf, ProtocolVersion::V311, 1024), Ok(None));
/// assert_eq!(&buf[..], &[0xD0]);
/// ```
pub fn decode(
    buf: &mut BytesMut,
    version: ProtocolVersion,
    max_packet_size: u32,
) -> Result<Option<Packet>, DecodeError> {
    let Some(h) = header::parse(buf, version)? else {
        return Ok(None);
    };
    let size = h.header_len + h.remaining;
    if size > max_packet_size as usize {
        return Err(DecodeError::PacketTooLarge {
            size,
            max: max_packet_size,
        });
    }
    if buf.len() < size {
        return Ok(None);
    }
    let mut bytes = buf.split_to(size).freeze();
    bytes.advance(h.header_len);
    let mut r = Reader::new(bytes);
    let packet = match h.kind {
        PacketType::Connect => connect::decode_connect(&mut r)?,
        PacketType::ConnAck => connect::decode_connack(&mut r, version)?,
        PacketType::Publish => publish::decode(&mut r, h.flags, version)?,
        PacketType::PubAck => Packet::PubAck(acks::decode(&mut r, version)?),
        PacketType::PubRec => Packet::PubRec(acks::decode(&mut r, version)?),
        PacketType::PubRel => Packet::PubRel(acks::decode(&mut r, version)?),
        PacketType::PubComp => Packet::PubComp(acks::decode(&mut r, version)?),
        PacketType::Subscribe => subscribe::decode_subscribe(&mut r, version)?,
        PacketType::SubAck => subscribe::decode_suback(&mut r, version)?,
        PacketType::Unsubscribe => subscribe::decode_unsubscribe(&mut r, version)?,
        PacketType::UnsubAck => subscribe::decode_unsuback(&mut r, version)?,
        PacketType::PingReq => Packet::PingReq,
        PacketType::PingResp => Packet::PingResp,
        PacketType::Disconnect => disconnect_auth::decode_disconnect(&mut r, version)?,
        PacketType::Auth => disconnect_auth::decode_auth(&mut r)?,
    };
    r.finish()?;
    Ok(Some(packet))
}

/// Append the encoded packet to `out`; return the number of bytes written.
///
/// Packets are encoded as `version`, except CONNECT, which is encoded with
/// its own [`Connect::protocol`](super::Connect::protocol). For MQTT 3.1.1
/// properties are dropped, CONNACK reason codes are mapped with
/// [`ReasonCode::to_v311_connack`](super::ReasonCode::to_v311_connack),
/// SUBACK failure codes become 0x80, UNSUBACK reason codes and DISCONNECT
/// reason codes are dropped, and AUTH is [`EncodeError::NotInVersion`].
/// In MQTT 5.0 PUBACK, PUBREC, PUBREL, PUBCOMP, DISCONNECT and AUTH use the
/// short forms when the reason is success and there are no properties.
///
/// On error nothing is appended.
///
/// ```
/// use bytes::BytesMut;
/// use quicmq_proto::mqtt::{encode, Packet, ProtocolVersion};
///
/// let mut out = BytesMut::new();
/// assert_eq!(encode(&Packet::PingReq, ProtocolVersion::V5, &mut out), Ok(2));
/// assert_eq!(&out[..], &[0xC0, 0x00]);
/// ```
pub fn encode(
    packet: &Packet,
    version: ProtocolVersion,
    out: &mut BytesMut,
) -> Result<usize, EncodeError> {
    let (first_byte, layout) = match packet {
        Packet::Connect(p) => (0x10, connect::measure_connect(p)?),
        Packet::ConnAck(p) => (0x20, connect::measure_connack(p, version)?),
        Packet::Publish(p) => (publish::first_byte(p), publish::measure(p, version)?),
        Packet::PubAck(p) => (0x40, acks::measure(p, version)?),
        Packet::PubRec(p) => (0x50, acks::measure(p, version)?),
        Packet::PubRel(p) => (0x62, acks::measure(p, version)?),
        Packet::PubComp(p) => (0x70, acks::measure(p, version)?),
        Packet::Subscribe(p) => (0x82, subscribe::measure_subscribe(p, version)?),
        Packet::SubAck(p) => (0x90, subscribe::measure_suback(p, version)?),
        Packet::Unsubscribe(p) => (0xA2, subscribe::measure_unsubscribe(p, version)?),
        Packet::UnsubAck(p) => (0xB0, subscribe::measure_unsuback(p, version)?),
        Packet::PingReq => (0xC0, Layout::default()),
        Packet::PingResp => (0xD0, Layout::default()),
        Packet::Disconnect(p) => (0xE0, disconnect_auth::measure_disconnect(p, version)?),
        Packet::Auth(p) => (0xF0, disconnect_auth::measure_auth(p, version)?),
    };
    if layout.body > MAX_VARINT {
        return Err(EncodeError::TooLong("packet"));
    }
    let total = 1 + varint_len(layout.body) + layout.body;
    out.reserve(total);
    let start = out.len();
    out.put_u8(first_byte);
    put_varint(out, layout.body);
    match packet {
        Packet::Connect(p) => connect::write_connect(out, p, &layout),
        Packet::ConnAck(p) => connect::write_connack(out, p, version, &layout),
        Packet::Publish(p) => publish::write(out, p, version, &layout),
        Packet::PubAck(p) | Packet::PubRec(p) | Packet::PubRel(p) | Packet::PubComp(p) => {
            acks::write(out, p, version, &layout)
        }
        Packet::Subscribe(p) => subscribe::write_subscribe(out, p, version, &layout),
        Packet::SubAck(p) => subscribe::write_suback(out, p, version, &layout),
        Packet::Unsubscribe(p) => subscribe::write_unsubscribe(out, p, version, &layout),
        Packet::UnsubAck(p) => subscribe::write_unsuback(out, p, version, &layout),
        Packet::PingReq | Packet::PingResp => {}
        Packet::Disconnect(p) => {
            disconnect_auth::write(out, p.reason_code, &p.properties, version, &layout)
        }
        Packet::Auth(p) => {
            disconnect_auth::write(out, p.reason_code, &p.properties, version, &layout)
        }
    }
    debug_assert_eq!(out.len() - start, total);
    Ok(total)
}

/// Sizes measured by the first pass of [`encode`].
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Layout {
    /// The remaining length.
    body: usize,
    /// Content length of the packet's properties (5.0).
    props: usize,
    /// Content length of the will properties of a CONNECT (5.0).
    will_props: usize,
}

/// Reads a packet identifier, which must not be 0.
fn read_packet_id(r: &mut Reader) -> Result<u16, DecodeError> {
    match r.u16()? {
        0 => Err(DecodeError::Protocol("packet identifier 0")),
        id => Ok(id),
    }
}

/// Refuses packet identifier 0 on encode.
fn check_packet_id(id: u16) -> Result<(), EncodeError> {
    if id == 0 {
        Err(EncodeError::InvalidField("packet identifier 0"))
    } else {
        Ok(())
    }
}
