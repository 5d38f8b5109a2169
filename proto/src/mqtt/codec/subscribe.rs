//! SUBSCRIBE (§3.8), SUBACK (§3.9), UNSUBSCRIBE (§3.10) and UNSUBACK
//! (§3.11).
//!
//! Topic filters are not validated here: a server answers an invalid filter
//! in its SUBACK / UNSUBACK, filter by filter.

use bytes::{BufMut, BytesMut};

use super::properties::{self, block_len, Context};
use super::{check_packet_id, read_packet_id, Layout};
use crate::mqtt::primitives::{put_string, string_len, Reader};
use crate::mqtt::{
    DecodeError, EncodeError, Packet, Properties, ProtocolVersion, QoS, ReasonCode, RetainHandling,
    SubAck, Subscribe, SubscriptionOptions, UnsubAck, Unsubscribe,
};

const NO_LOCAL: u8 = 0x04;
const RETAIN_AS_PUBLISHED: u8 = 0x08;
const RETAIN_HANDLING_SHIFT: u8 = 4;

fn read_props(
    r: &mut Reader,
    version: ProtocolVersion,
    ctx: Context,
) -> Result<Properties, DecodeError> {
    match version {
        ProtocolVersion::V311 => Ok(Properties::default()),
        ProtocolVersion::V5 => properties::read(r, ctx),
    }
}

/// Measures the property block of a packet; 0 and no block in MQTT 3.1.1.
fn measure_props(
    p: &Properties,
    version: ProtocolVersion,
    ctx: Context,
    layout: &mut Layout,
) -> Result<(), EncodeError> {
    if version == ProtocolVersion::V5 {
        layout.props = properties::measure(p, ctx)?;
        layout.body += block_len(layout.props);
    }
    Ok(())
}

fn write_props(out: &mut BytesMut, p: &Properties, version: ProtocolVersion, layout: &Layout) {
    if version == ProtocolVersion::V5 {
        properties::write(out, p, layout.props);
    }
}

/// Decodes a subscription options byte (§3.8.3.1).
fn decode_options(byte: u8, version: ProtocolVersion) -> Result<SubscriptionOptions, DecodeError> {
    let reserved = match version {
        ProtocolVersion::V311 => 0xFC,
        ProtocolVersion::V5 => 0xC0,
    };
    if byte & reserved != 0 {
        return Err(DecodeError::Malformed(
            "reserved subscription option bits set",
        ));
    }
    let qos = QoS::from_u8(byte & 0b11).ok_or(DecodeError::Malformed("subscription with QoS 3"))?;
    let retain_handling = match (byte >> RETAIN_HANDLING_SHIFT) & 0b11 {
        0 => RetainHandling::SendAtSubscribe,
        1 => RetainHandling::SendIfNew,
        2 => RetainHandling::DoNotSend,
        _ => return Err(DecodeError::Protocol("retain handling 3")),
    };
    Ok(SubscriptionOptions {
        qos,
        no_local: byte & NO_LOCAL != 0,
        retain_as_published: byte & RETAIN_AS_PUBLISHED != 0,
        retain_handling,
    })
}

/// Encodes a subscription options byte; MQTT 3.1.1 keeps only the QoS.
fn encode_options(o: &SubscriptionOptions, version: ProtocolVersion) -> u8 {
    let mut byte = o.qos as u8;
    if version == ProtocolVersion::V5 {
        byte |= (o.retain_handling as u8) << RETAIN_HANDLING_SHIFT;
        if o.no_local {
            byte |= NO_LOCAL;
        }
        if o.retain_as_published {
            byte |= RETAIN_AS_PUBLISHED;
        }
    }
    byte
}

/// Decodes the body of a SUBSCRIBE.
pub(super) fn decode_subscribe(
    r: &mut Reader,
    version: ProtocolVersion,
) -> Result<Packet, DecodeError> {
    let packet_id = read_packet_id(r)?;
    let properties = read_props(r, version, Context::Subscribe)?;
    let mut filters = Vec::new();
    while !r.is_empty() {
        let filter = r.string()?;
        let options = decode_options(r.u8()?, version)?;
        filters.push((filter, options));
    }
    if filters.is_empty() {
        return Err(DecodeError::Protocol("SUBSCRIBE without topic filters"));
    }
    Ok(Packet::Subscribe(Subscribe {
        packet_id,
        filters,
        properties,
    }))
}

/// Measures a SUBSCRIBE.
pub(super) fn measure_subscribe(
    p: &Subscribe,
    version: ProtocolVersion,
) -> Result<Layout, EncodeError> {
    check_packet_id(p.packet_id)?;
    if p.filters.is_empty() {
        return Err(EncodeError::InvalidField("SUBSCRIBE without topic filters"));
    }
    let mut layout = Layout {
        body: 2,
        ..Layout::default()
    };
    measure_props(&p.properties, version, Context::Subscribe, &mut layout)?;
    for (filter, _) in &p.filters {
        layout.body += string_len(filter, "topic filter")? + 1;
    }
    Ok(layout)
}

/// Writes a SUBSCRIBE measured by [`measure_subscribe`].
pub(super) fn write_subscribe(
    out: &mut BytesMut,
    p: &Subscribe,
    version: ProtocolVersion,
    layout: &Layout,
) {
    out.put_u16(p.packet_id);
    write_props(out, &p.properties, version, layout);
    for (filter, options) in &p.filters {
        put_string(out, filter);
        out.put_u8(encode_options(options, version));
    }
}

/// Reads the reason codes that fill the rest of a SUBACK or UNSUBACK.
fn read_codes(r: &mut Reader, packet: &'static str) -> Result<Vec<ReasonCode>, DecodeError> {
    if r.is_empty() {
        return Err(DecodeError::Protocol(packet));
    }
    Ok(r.rest().iter().map(|&b| ReasonCode(b)).collect())
}

/// Decodes the body of a SUBACK.
pub(super) fn decode_suback(
    r: &mut Reader,
    version: ProtocolVersion,
) -> Result<Packet, DecodeError> {
    let packet_id = read_packet_id(r)?;
    let properties = read_props(r, version, Context::SubAck)?;
    let reason_codes = read_codes(r, "SUBACK without reason codes")?;
    // 3.1.1 §3.9.3: 0x00, 0x01, 0x02 and 0x80 only; the others are
    // reserved. (Found by fuzzing: a reserved code was accepted, then
    // encoded back as 0x80.) 5.0 codes pass through as they are.
    if version == ProtocolVersion::V311
        && reason_codes
            .iter()
            .any(|c| !matches!(c.0, 0x00..=0x02 | 0x80))
    {
        return Err(DecodeError::Malformed(
            "SUBACK with a reserved 3.1.1 return code",
        ));
    }
    Ok(Packet::SubAck(SubAck {
        packet_id,
        reason_codes,
        properties,
    }))
}

/// Measures a SUBACK.
pub(super) fn measure_suback(p: &SubAck, version: ProtocolVersion) -> Result<Layout, EncodeError> {
    check_packet_id(p.packet_id)?;
    if p.reason_codes.is_empty() {
        return Err(EncodeError::InvalidField("SUBACK without reason codes"));
    }
    let mut layout = Layout {
        body: 2 + p.reason_codes.len(),
        ..Layout::default()
    };
    measure_props(&p.properties, version, Context::SubAck, &mut layout)?;
    Ok(layout)
}

/// Writes a SUBACK measured by [`measure_suback`]; MQTT 3.1.1 has only
/// one failure code, 0x80.
pub(super) fn write_suback(
    out: &mut BytesMut,
    p: &SubAck,
    version: ProtocolVersion,
    layout: &Layout,
) {
    out.put_u16(p.packet_id);
    write_props(out, &p.properties, version, layout);
    for code in &p.reason_codes {
        let byte = match version {
            ProtocolVersion::V311 if code.is_error() => 0x80,
            _ => code.0,
        };
        out.put_u8(byte);
    }
}

/// Decodes the body of an UNSUBSCRIBE.
pub(super) fn decode_unsubscribe(
    r: &mut Reader,
    version: ProtocolVersion,
) -> Result<Packet, DecodeError> {
    let packet_id = read_packet_id(r)?;
    let properties = read_props(r, version, Context::Unsubscribe)?;
    let mut filters = Vec::new();
    while !r.is_empty() {
        filters.push(r.string()?);
    }
    if filters.is_empty() {
        return Err(DecodeError::Protocol("UNSUBSCRIBE without topic filters"));
    }
    Ok(Packet::Unsubscribe(Unsubscribe {
        packet_id,
        filters,
        properties,
    }))
}

/// Measures an UNSUBSCRIBE.
pub(super) fn measure_unsubscribe(
    p: &Unsubscribe,
    version: ProtocolVersion,
) -> Result<Layout, EncodeError> {
    check_packet_id(p.packet_id)?;
    if p.filters.is_empty() {
        return Err(EncodeError::InvalidField(
            "UNSUBSCRIBE without topic filters",
        ));
    }
    let mut layout = Layout {
        body: 2,
        ..Layout::default()
    };
    measure_props(&p.properties, version, Context::Unsubscribe, &mut layout)?;
    for filter in &p.filters {
        layout.body += string_len(filter, "topic filter")?;
    }
    Ok(layout)
}

/// Writes an UNSUBSCRIBE measured by [`measure_unsubscribe`].
pub(super) fn write_unsubscribe(
    out: &mut BytesMut,
    p: &Unsubscribe,
    version: ProtocolVersion,
    layout: &Layout,
) {
    out.put_u16(p.packet_id);
    write_props(out, &p.properties, version, layout);
    for filter in &p.filters {
        put_string(out, filter);
    }
}

/// Decodes the body of an UNSUBACK; MQTT 3.1.1 has no reason codes.
pub(super) fn decode_unsuback(
    r: &mut Reader,
    version: ProtocolVersion,
) -> Result<Packet, DecodeError> {
    let packet_id = read_packet_id(r)?;
    let properties = read_props(r, version, Context::UnsubAck)?;
    let reason_codes = match version {
        ProtocolVersion::V311 => Vec::new(),
        ProtocolVersion::V5 => read_codes(r, "UNSUBACK without reason codes")?,
    };
    Ok(Packet::UnsubAck(UnsubAck {
        packet_id,
        reason_codes,
        properties,
    }))
}

/// Measures an UNSUBACK.
pub(super) fn measure_unsuback(
    p: &UnsubAck,
    version: ProtocolVersion,
) -> Result<Layout, EncodeError> {
    check_packet_id(p.packet_id)?;
    let mut layout = Layout {
        body: 2,
        ..Layout::default()
    };
    if version == ProtocolVersion::V5 {
        if p.reason_codes.is_empty() {
            return Err(EncodeError::InvalidField("UNSUBACK without reason codes"));
        }
        layout.body += p.reason_codes.len();
    }
    measure_props(&p.properties, version, Context::UnsubAck, &mut layout)?;
    Ok(layout)
}

/// Writes an UNSUBACK measured by [`measure_unsuback`].
pub(super) fn write_unsuback(
    out: &mut BytesMut,
    p: &UnsubAck,
    version: ProtocolVersion,
    layout: &Layout,
) {
    out.put_u16(p.packet_id);
    if version == ProtocolVersion::V5 {
        properties::write(out, &p.properties, layout.props);
        for code in &p.reason_codes {
            out.put_u8(code.0);
        }
    }
}
