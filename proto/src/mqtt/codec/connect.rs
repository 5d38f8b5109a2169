//! CONNECT (§3.1) and CONNACK (§3.2).

use bytes::{BufMut, BytesMut};

use super::properties::{self, block_len, Context};
use super::Layout;
use crate::mqtt::primitives::{binary_len, put_binary, put_string, string_len, Reader};
use crate::mqtt::topic::validate_topic_name;
use crate::mqtt::{
    ConnAck, Connect, DecodeError, EncodeError, LastWill, Packet, Properties, ProtocolVersion, QoS,
    ReasonCode,
};

const PROTOCOL_NAME: &str = "MQTT";

const RESERVED: u8 = 0x01;
const CLEAN_START: u8 = 0x02;
const WILL: u8 = 0x04;
const WILL_QOS_SHIFT: u8 = 3;
const WILL_RETAIN: u8 = 0x20;
const PASSWORD: u8 = 0x40;
const USERNAME: u8 = 0x80;

/// Decodes the body of a CONNECT, in the protocol level it names.
pub(super) fn decode_connect(r: &mut Reader) -> Result<Packet, DecodeError> {
    let name = r.binary()?;
    let level = r.u8()?;
    if &name[..] != PROTOCOL_NAME.as_bytes() {
        return Err(DecodeError::UnsupportedProtocolVersion(level));
    }
    let protocol = match level {
        4 => ProtocolVersion::V311,
        5 => ProtocolVersion::V5,
        other => return Err(DecodeError::UnsupportedProtocolVersion(other)),
    };
    let v5 = protocol == ProtocolVersion::V5;
    let flags = r.u8()?;
    if flags & RESERVED != 0 {
        return Err(DecodeError::Malformed("CONNECT reserved flag set"));
    }
    let will_flag = flags & WILL != 0;
    let will_qos = (flags >> WILL_QOS_SHIFT) & 0b11;
    let will_retain = flags & WILL_RETAIN != 0;
    if !will_flag && (will_qos != 0 || will_retain) {
        return Err(DecodeError::Malformed("will QoS or retain without a will"));
    }
    let will_qos = QoS::from_u8(will_qos).ok_or(DecodeError::Malformed("will QoS 3"))?;
    let username_flag = flags & USERNAME != 0;
    let password_flag = flags & PASSWORD != 0;
    if !v5 && password_flag && !username_flag {
        return Err(DecodeError::Malformed("password without user name"));
    }
    let keep_alive = r.u16()?;
    let properties = if v5 {
        properties::read(r, Context::Connect)?
    } else {
        Properties::default()
    };
    let client_id = r.string()?;
    let will = if will_flag {
        let properties = if v5 {
            properties::read(r, Context::Will)?
        } else {
            Properties::default()
        };
        let topic = r.string()?;
        validate_topic_name(&topic)?;
        let payload = r.binary()?;
        Some(LastWill {
            topic,
            payload,
            qos: will_qos,
            retain: will_retain,
            properties,
        })
    } else {
        None
    };
    let username = if username_flag {
        Some(r.string()?)
    } else {
        None
    };
    let password = if password_flag {
        Some(r.binary()?)
    } else {
        None
    };
    Ok(Packet::Connect(Box::new(Connect {
        protocol,
        clean_start: flags & CLEAN_START != 0,
        keep_alive,
        client_id,
        will,
        username,
        password,
        properties,
    })))
}

/// Measures a CONNECT, encoded with its own protocol level.
pub(super) fn measure_connect(c: &Connect) -> Result<Layout, EncodeError> {
    let v5 = c.protocol == ProtocolVersion::V5;
    let mut layout = Layout::default();
    // Protocol name, level, flags, keep alive.
    let mut body = 2 + PROTOCOL_NAME.len() + 1 + 1 + 2;
    if v5 {
        layout.props = properties::measure(&c.properties, Context::Connect)?;
        body += block_len(layout.props);
    }
    body += string_len(&c.client_id, "client identifier")?;
    if let Some(will) = &c.will {
        if v5 {
            layout.will_props = properties::measure(&will.properties, Context::Will)?;
            body += block_len(layout.will_props);
        }
        body += string_len(&will.topic, "will topic")?;
        if validate_topic_name(&will.topic).is_err() {
            return Err(EncodeError::InvalidField(
                "will topic is not a valid topic name",
            ));
        }
        body += binary_len(&will.payload, "will payload")?;
    }
    if let Some(username) = &c.username {
        body += string_len(username, "user name")?;
    }
    if let Some(password) = &c.password {
        if !v5 && c.username.is_none() {
            return Err(EncodeError::InvalidField(
                "MQTT 3.1.1 password without user name",
            ));
        }
        body += binary_len(password, "password")?;
    }
    layout.body = body;
    Ok(layout)
}

/// Writes a CONNECT measured by [`measure_connect`].
pub(super) fn write_connect(out: &mut BytesMut, c: &Connect, layout: &Layout) {
    let v5 = c.protocol == ProtocolVersion::V5;
    put_string(out, PROTOCOL_NAME);
    out.put_u8(c.protocol.level());
    let mut flags = 0;
    if c.clean_start {
        flags |= CLEAN_START;
    }
    if let Some(will) = &c.will {
        flags |= WILL | ((will.qos as u8) << WILL_QOS_SHIFT);
        if will.retain {
            flags |= WILL_RETAIN;
        }
    }
    if c.username.is_some() {
        flags |= USERNAME;
    }
    if c.password.is_some() {
        flags |= PASSWORD;
    }
    out.put_u8(flags);
    out.put_u16(c.keep_alive);
    if v5 {
        properties::write(out, &c.properties, layout.props);
    }
    put_string(out, &c.client_id);
    if let Some(will) = &c.will {
        if v5 {
            properties::write(out, &will.properties, layout.will_props);
        }
        put_string(out, &will.topic);
        put_binary(out, &will.payload);
    }
    if let Some(username) = &c.username {
        put_string(out, username);
    }
    if let Some(password) = &c.password {
        put_binary(out, password);
    }
}

/// Decodes the body of a CONNACK.
pub(super) fn decode_connack(
    r: &mut Reader,
    version: ProtocolVersion,
) -> Result<Packet, DecodeError> {
    let flags = r.u8()?;
    if flags & 0xFE != 0 {
        return Err(DecodeError::Malformed("CONNACK reserved flags set"));
    }
    let code = r.u8()?;
    // 3.1.1 §3.2.2.3: return codes 6 to 255 are reserved. (Found by
    // fuzzing: one decoded as 0x80 and encoded back as 3.)
    if version == ProtocolVersion::V311 && code > 5 {
        return Err(DecodeError::Malformed(
            "CONNACK with a reserved 3.1.1 return code",
        ));
    }
    let (reason_code, properties) = match version {
        ProtocolVersion::V311 => (ReasonCode::from_v311_connack(code), Properties::default()),
        ProtocolVersion::V5 => (ReasonCode(code), properties::read(r, Context::ConnAck)?),
    };
    Ok(Packet::ConnAck(ConnAck {
        session_present: flags & 0x01 != 0,
        reason_code,
        properties,
    }))
}

/// Measures a CONNACK.
pub(super) fn measure_connack(
    c: &ConnAck,
    version: ProtocolVersion,
) -> Result<Layout, EncodeError> {
    let mut layout = Layout {
        body: 2,
        ..Layout::default()
    };
    if version == ProtocolVersion::V5 {
        layout.props = properties::measure(&c.properties, Context::ConnAck)?;
        layout.body += block_len(layout.props);
    }
    Ok(layout)
}

/// Writes a CONNACK measured by [`measure_connack`].
pub(super) fn write_connack(
    out: &mut BytesMut,
    c: &ConnAck,
    version: ProtocolVersion,
    layout: &Layout,
) {
    out.put_u8(u8::from(c.session_present));
    match version {
        ProtocolVersion::V311 => out.put_u8(c.reason_code.to_v311_connack()),
        ProtocolVersion::V5 => {
            out.put_u8(c.reason_code.0);
            properties::write(out, &c.properties, layout.props);
        }
    }
}
