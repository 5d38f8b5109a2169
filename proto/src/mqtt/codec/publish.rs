//! PUBLISH (§3.3).

use bytes::{BufMut, BytesMut};

use super::properties::{self, block_len, Context};
use super::{check_packet_id, read_packet_id, Layout};
use crate::mqtt::primitives::{put_string, string_len, Reader};
use crate::mqtt::topic::validate_topic_name_chars;
use crate::mqtt::{DecodeError, EncodeError, Packet, Properties, ProtocolVersion, Publish, QoS};

const DUP: u8 = 0b1000;
const RETAIN: u8 = 0b0001;

/// Decodes the body of a PUBLISH whose fixed header flags are `flags`.
pub(super) fn decode(
    r: &mut Reader,
    flags: u8,
    version: ProtocolVersion,
) -> Result<Packet, DecodeError> {
    let qos =
        QoS::from_u8((flags >> 1) & 0b11).ok_or(DecodeError::Malformed("PUBLISH with QoS 3"))?;
    let topic = r.str()?;
    validate_topic_name_chars(topic)?;
    let topic = topic.to_owned();
    let packet_id = match qos {
        QoS::AtMostOnce => None,
        QoS::AtLeastOnce | QoS::ExactlyOnce => Some(read_packet_id(r)?),
    };
    let properties = match version {
        ProtocolVersion::V311 => Properties::default(),
        ProtocolVersion::V5 => properties::read(r, Context::Publish)?,
    };
    if topic.is_empty() && properties.topic_alias.is_none() {
        return Err(DecodeError::TopicNameInvalid(
            "empty topic name without a topic alias",
        ));
    }
    Ok(Packet::Publish(Publish {
        dup: flags & DUP != 0,
        qos,
        retain: flags & RETAIN != 0,
        topic,
        packet_id,
        properties,
        payload: r.rest(),
    }))
}

/// The first byte of the fixed header of `p`.
pub(super) fn first_byte(p: &Publish) -> u8 {
    let mut byte = 0x30 | ((p.qos as u8) << 1);
    if p.dup {
        byte |= DUP;
    }
    if p.retain {
        byte |= RETAIN;
    }
    byte
}

/// Measures a PUBLISH, checking the fields the fixed header depends on.
pub(super) fn measure(p: &Publish, version: ProtocolVersion) -> Result<Layout, EncodeError> {
    let mut layout = Layout::default();
    let mut body = string_len(&p.topic, "topic name")?;
    if validate_topic_name_chars(&p.topic).is_err() {
        return Err(EncodeError::InvalidField(
            "topic name with a wildcard or U+0000",
        ));
    }
    if p.topic.is_empty()
        && (version == ProtocolVersion::V311 || p.properties.topic_alias.is_none())
    {
        return Err(EncodeError::InvalidField(
            "empty topic name without a topic alias",
        ));
    }
    match (p.qos, p.packet_id) {
        (QoS::AtMostOnce, None) => {
            if p.dup {
                return Err(EncodeError::InvalidField("DUP set on a QoS 0 PUBLISH"));
            }
        }
        (QoS::AtMostOnce, Some(_)) => {
            return Err(EncodeError::InvalidField(
                "packet identifier on a QoS 0 PUBLISH",
            ))
        }
        (_, None) => {
            return Err(EncodeError::InvalidField(
                "QoS 1 or 2 PUBLISH without a packet identifier",
            ))
        }
        (_, Some(id)) => {
            check_packet_id(id)?;
            body += 2;
        }
    }
    if version == ProtocolVersion::V5 {
        layout.props = properties::measure(&p.properties, Context::Publish)?;
        body += block_len(layout.props);
    }
    layout.body = body + p.payload.len();
    Ok(layout)
}

/// Writes a PUBLISH measured by [`measure`].
pub(super) fn write(out: &mut BytesMut, p: &Publish, version: ProtocolVersion, layout: &Layout) {
    put_string(out, &p.topic);
    if let Some(id) = p.packet_id {
        out.put_u16(id);
    }
    if version == ProtocolVersion::V5 {
        properties::write(out, &p.properties, layout.props);
    }
    out.put_slice(&p.payload);
}
