//! PUBACK, PUBREC, PUBREL and PUBCOMP (§3.4 – §3.7): a packet identifier,
//! and in MQTT 5.0 a reason code and properties that may be left out.

use bytes::{BufMut, BytesMut};

use super::properties::{self, block_len, Context};
use super::{check_packet_id, read_packet_id, Layout};
use crate::mqtt::primitives::Reader;
use crate::mqtt::{
    DecodeError, EncodeError, Properties, ProtocolVersion, PublishResponse, ReasonCode,
};

/// Decodes the body of a PUBACK, PUBREC, PUBREL or PUBCOMP.
pub(super) fn decode(
    r: &mut Reader,
    version: ProtocolVersion,
) -> Result<PublishResponse, DecodeError> {
    let packet_id = read_packet_id(r)?;
    if version == ProtocolVersion::V311 || r.is_empty() {
        return Ok(PublishResponse::success(packet_id));
    }
    let reason_code = ReasonCode(r.u8()?);
    let properties = if r.is_empty() {
        Properties::default()
    } else {
        properties::read(r, Context::PubResponse)?
    };
    Ok(PublishResponse {
        packet_id,
        reason_code,
        properties,
    })
}

/// Measures a publish response, choosing the shortest form in MQTT 5.0.
pub(super) fn measure(
    p: &PublishResponse,
    version: ProtocolVersion,
) -> Result<Layout, EncodeError> {
    check_packet_id(p.packet_id)?;
    let mut layout = Layout {
        body: 2,
        ..Layout::default()
    };
    if version == ProtocolVersion::V5 {
        layout.props = properties::measure(&p.properties, Context::PubResponse)?;
        if layout.props > 0 {
            layout.body = 3 + block_len(layout.props);
        } else if p.reason_code != ReasonCode::SUCCESS {
            layout.body = 3;
        }
    }
    Ok(layout)
}

/// Writes a publish response measured by [`measure`].
pub(super) fn write(
    out: &mut BytesMut,
    p: &PublishResponse,
    version: ProtocolVersion,
    layout: &Layout,
) {
    out.put_u16(p.packet_id);
    if version == ProtocolVersion::V5 && layout.body > 2 {
        out.put_u8(p.reason_code.0);
        if layout.body > 3 {
            properties::write(out, &p.properties, layout.props);
        }
    }
}
