//! Measuring and writing a property block.

use bytes::{BufMut, BytesMut};

use super::*;
use crate::mqtt::primitives::{
    binary_len, put_binary, put_string, put_varint, string_len, varint_len, MAX_VARINT,
};
use crate::mqtt::{EncodeError, Properties};

/// Sums the encoded size of the present properties, refusing the ones
/// `ctx` does not allow.
struct Measure {
    ctx: Context,
    len: usize,
}

impl Measure {
    fn add(&mut self, id: u8, value_len: Option<usize>) -> Result<(), EncodeError> {
        if let Some(value_len) = value_len {
            if !is_allowed(id, self.ctx) {
                return Err(EncodeError::InvalidField(
                    "property not allowed in this packet",
                ));
            }
            self.len += 1 + value_len;
        }
        Ok(())
    }
}

fn string_opt(s: &Option<String>, what: &'static str) -> Result<Option<usize>, EncodeError> {
    s.as_deref().map(|s| string_len(s, what)).transpose()
}

fn binary_opt(b: &Option<bytes::Bytes>, what: &'static str) -> Result<Option<usize>, EncodeError> {
    b.as_deref().map(|b| binary_len(b, what)).transpose()
}

/// The size of the properties of `p` (without the length prefix), checking
/// that every present property is allowed in `ctx` and fits the wire.
pub(crate) fn measure(p: &Properties, ctx: Context) -> Result<usize, EncodeError> {
    let mut m = Measure { ctx, len: 0 };
    m.add(
        PAYLOAD_FORMAT_INDICATOR,
        p.payload_format_indicator.map(|_| 1),
    )?;
    m.add(
        MESSAGE_EXPIRY_INTERVAL,
        p.message_expiry_interval.map(|_| 4),
    )?;
    m.add(CONTENT_TYPE, string_opt(&p.content_type, "content type")?)?;
    m.add(
        RESPONSE_TOPIC,
        string_opt(&p.response_topic, "response topic")?,
    )?;
    m.add(
        CORRELATION_DATA,
        binary_opt(&p.correlation_data, "correlation data")?,
    )?;
    if ctx != Context::Publish && p.subscription_identifiers.len() > 1 {
        return Err(EncodeError::InvalidField(
            "several subscription identifiers",
        ));
    }
    for &id in &p.subscription_identifiers {
        if id == 0 || id as usize > MAX_VARINT {
            return Err(EncodeError::InvalidField(
                "subscription identifier out of range",
            ));
        }
        m.add(SUBSCRIPTION_IDENTIFIER, Some(varint_len(id as usize)))?;
    }
    m.add(
        SESSION_EXPIRY_INTERVAL,
        p.session_expiry_interval.map(|_| 4),
    )?;
    m.add(
        ASSIGNED_CLIENT_IDENTIFIER,
        string_opt(&p.assigned_client_identifier, "assigned client identifier")?,
    )?;
    m.add(SERVER_KEEP_ALIVE, p.server_keep_alive.map(|_| 2))?;
    m.add(
        AUTHENTICATION_METHOD,
        string_opt(&p.authentication_method, "authentication method")?,
    )?;
    m.add(
        AUTHENTICATION_DATA,
        binary_opt(&p.authentication_data, "authentication data")?,
    )?;
    m.add(
        REQUEST_PROBLEM_INFORMATION,
        p.request_problem_information.map(|_| 1),
    )?;
    m.add(WILL_DELAY_INTERVAL, p.will_delay_interval.map(|_| 4))?;
    m.add(
        REQUEST_RESPONSE_INFORMATION,
        p.request_response_information.map(|_| 1),
    )?;
    m.add(
        RESPONSE_INFORMATION,
        string_opt(&p.response_information, "response information")?,
    )?;
    m.add(
        SERVER_REFERENCE,
        string_opt(&p.server_reference, "server reference")?,
    )?;
    m.add(
        REASON_STRING,
        string_opt(&p.reason_string, "reason string")?,
    )?;
    m.add(RECEIVE_MAXIMUM, p.receive_maximum.map(|_| 2))?;
    m.add(TOPIC_ALIAS_MAXIMUM, p.topic_alias_maximum.map(|_| 2))?;
    m.add(TOPIC_ALIAS, p.topic_alias.map(|_| 2))?;
    m.add(MAXIMUM_QOS, p.maximum_qos.map(|_| 1))?;
    m.add(RETAIN_AVAILABLE, p.retain_available.map(|_| 1))?;
    for (name, value) in &p.user_properties {
        let len = string_len(name, "user property")? + string_len(value, "user property")?;
        m.add(USER_PROPERTY, Some(len))?;
    }
    m.add(MAXIMUM_PACKET_SIZE, p.maximum_packet_size.map(|_| 4))?;
    m.add(
        WILDCARD_SUBSCRIPTION_AVAILABLE,
        p.wildcard_subscription_available.map(|_| 1),
    )?;
    m.add(
        SUBSCRIPTION_IDENTIFIER_AVAILABLE,
        p.subscription_identifier_available.map(|_| 1),
    )?;
    m.add(
        SHARED_SUBSCRIPTION_AVAILABLE,
        p.shared_subscription_available.map(|_| 1),
    )?;
    Ok(m.len)
}

/// The size of a property block: length prefix + `len` bytes.
pub(crate) fn block_len(len: usize) -> usize {
    varint_len(len) + len
}

fn put_u8_prop(out: &mut BytesMut, id: u8, value: Option<u8>) {
    if let Some(v) = value {
        out.put_u8(id);
        out.put_u8(v);
    }
}

fn put_u16_prop(out: &mut BytesMut, id: u8, value: Option<u16>) {
    if let Some(v) = value {
        out.put_u8(id);
        out.put_u16(v);
    }
}

fn put_u32_prop(out: &mut BytesMut, id: u8, value: Option<u32>) {
    if let Some(v) = value {
        out.put_u8(id);
        out.put_u32(v);
    }
}

fn put_string_prop(out: &mut BytesMut, id: u8, value: &Option<String>) {
    if let Some(v) = value {
        out.put_u8(id);
        put_string(out, v);
    }
}

fn put_binary_prop(out: &mut BytesMut, id: u8, value: &Option<bytes::Bytes>) {
    if let Some(v) = value {
        out.put_u8(id);
        put_binary(out, v);
    }
}

/// Writes a property block whose content was measured as `len` bytes.
pub(crate) fn write(out: &mut BytesMut, p: &Properties, len: usize) {
    put_varint(out, len);
    if len == 0 {
        return;
    }
    put_u8_prop(out, PAYLOAD_FORMAT_INDICATOR, p.payload_format_indicator);
    put_u32_prop(out, MESSAGE_EXPIRY_INTERVAL, p.message_expiry_interval);
    put_string_prop(out, CONTENT_TYPE, &p.content_type);
    put_string_prop(out, RESPONSE_TOPIC, &p.response_topic);
    put_binary_prop(out, CORRELATION_DATA, &p.correlation_data);
    for &id in &p.subscription_identifiers {
        out.put_u8(SUBSCRIPTION_IDENTIFIER);
        put_varint(out, id as usize);
    }
    put_u32_prop(out, SESSION_EXPIRY_INTERVAL, p.session_expiry_interval);
    put_string_prop(
        out,
        ASSIGNED_CLIENT_IDENTIFIER,
        &p.assigned_client_identifier,
    );
    put_u16_prop(out, SERVER_KEEP_ALIVE, p.server_keep_alive);
    put_string_prop(out, AUTHENTICATION_METHOD, &p.authentication_method);
    put_binary_prop(out, AUTHENTICATION_DATA, &p.authentication_data);
    put_u8_prop(
        out,
        REQUEST_PROBLEM_INFORMATION,
        p.request_problem_information,
    );
    put_u32_prop(out, WILL_DELAY_INTERVAL, p.will_delay_interval);
    put_u8_prop(
        out,
        REQUEST_RESPONSE_INFORMATION,
        p.request_response_information,
    );
    put_string_prop(out, RESPONSE_INFORMATION, &p.response_information);
    put_string_prop(out, SERVER_REFERENCE, &p.server_reference);
    put_string_prop(out, REASON_STRING, &p.reason_string);
    put_u16_prop(out, RECEIVE_MAXIMUM, p.receive_maximum);
    put_u16_prop(out, TOPIC_ALIAS_MAXIMUM, p.topic_alias_maximum);
    put_u16_prop(out, TOPIC_ALIAS, p.topic_alias);
    put_u8_prop(out, MAXIMUM_QOS, p.maximum_qos);
    put_u8_prop(out, RETAIN_AVAILABLE, p.retain_available);
    for (name, value) in &p.user_properties {
        out.put_u8(USER_PROPERTY);
        put_string(out, name);
        put_string(out, value);
    }
    put_u32_prop(out, MAXIMUM_PACKET_SIZE, p.maximum_packet_size);
    put_u8_prop(
        out,
        WILDCARD_SUBSCRIPTION_AVAILABLE,
        p.wildcard_subscription_available,
    );
    put_u8_prop(
        out,
        SUBSCRIPTION_IDENTIFIER_AVAILABLE,
        p.subscription_identifier_available,
    );
    put_u8_prop(
        out,
        SHARED_SUBSCRIPTION_AVAILABLE,
        p.shared_subscription_available,
    );
}
