//! DISCONNECT (§3.14) and AUTH (§3.15): a reason code and properties, both
//! of which may be left out in MQTT 5.0. MQTT 3.1.1 has an empty
//! DISCONNECT and no AUTH.

use bytes::{BufMut, BytesMut};

use super::properties::{self, block_len, Context};
use super::Layout;
use crate::mqtt::primitives::Reader;
use crate::mqtt::{
    Auth, DecodeError, Disconnect, EncodeError, Packet, Properties, ProtocolVersion, ReasonCode,
};

/// Reads the optional reason code and properties.
fn read_body(r: &mut Reader, ctx: Context) -> Result<(ReasonCode, Properties), DecodeError> {
    if r.is_empty() {
        return Ok((ReasonCode::SUCCESS, Properties::default()));
    }
    let reason_code = ReasonCode(r.u8()?);
    let properties = if r.is_empty() {
        Properties::default()
    } else {
        properties::read(r, ctx)?
    };
    Ok((reason_code, properties))
}

/// Decodes the body of a DISCONNECT.
pub(super) fn decode_disconnect(
    r: &mut Reader,
    version: ProtocolVersion,
) -> Result<Packet, DecodeError> {
    let (reason_code, properties) = match version {
        ProtocolVersion::V311 => (ReasonCode::NORMAL_DISCONNECTION, Properties::default()),
        ProtocolVersion::V5 => read_body(r, Context::Disconnect)?,
    };
    Ok(Packet::Disconnect(Disconnect {
        reason_code,
        properties,
    }))
}

/// Decodes the body of an AUTH (MQTT 5.0 only; the fixed header check has
/// already refused it in 3.1.1).
pub(super) fn decode_auth(r: &mut Reader) -> Result<Packet, DecodeError> {
    let (reason_code, properties) = read_body(r, Context::Auth)?;
    Ok(Packet::Auth(Auth {
        reason_code,
        properties,
    }))
}

/// Measures the shortest MQTT 5.0 form of a reason code and properties.
fn measure_body(
    reason_code: ReasonCode,
    p: &Properties,
    ctx: Context,
) -> Result<Layout, EncodeError> {
    let props = properties::measure(p, ctx)?;
    let body = if props > 0 {
        1 + block_len(props)
    } else if reason_code != ReasonCode::SUCCESS {
        1
    } else {
        0
    };
    Ok(Layout {
        body,
        props,
        ..Layout::default()
    })
}

/// Measures a DISCONNECT; empty in MQTT 3.1.1.
pub(super) fn measure_disconnect(
    p: &Disconnect,
    version: ProtocolVersion,
) -> Result<Layout, EncodeError> {
    match version {
        ProtocolVersion::V311 => Ok(Layout::default()),
        ProtocolVersion::V5 => measure_body(p.reason_code, &p.properties, Context::Disconnect),
    }
}

/// Measures an AUTH, which MQTT 3.1.1 does not have.
pub(super) fn measure_auth(p: &Auth, version: ProtocolVersion) -> Result<Layout, EncodeError> {
    match version {
        ProtocolVersion::V311 => Err(EncodeError::NotInVersion("AUTH")),
        ProtocolVersion::V5 => measure_body(p.reason_code, &p.properties, Context::Auth),
    }
}

/// Writes a DISCONNECT or AUTH body measured by [`measure_disconnect`] or
/// [`measure_auth`].
pub(super) fn write(
    out: &mut BytesMut,
    reason_code: ReasonCode,
    p: &Properties,
    version: ProtocolVersion,
    layout: &Layout,
) {
    if version == ProtocolVersion::V311 || layout.body == 0 {
        return;
    }
    out.put_u8(reason_code.0);
    if layout.body > 1 {
        properties::write(out, p, layout.props);
    }
}
