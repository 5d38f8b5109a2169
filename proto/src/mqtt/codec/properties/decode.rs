//! Reading a property block, with the rules on repetition and values.

use super::*;
use crate::mqtt::primitives::Reader;
use crate::mqtt::{DecodeError, Properties};
const TWICE: DecodeError = DecodeError::Protocol("property included more than once");

fn set_once<T>(slot: &mut Option<T>, value: T) -> Result<(), DecodeError> {
    if slot.is_some() {
        return Err(TWICE);
    }
    *slot = Some(value);
    Ok(())
}

fn zero_or_one(value: u8) -> Result<u8, DecodeError> {
    if value > 1 {
        Err(DecodeError::Protocol("property value must be 0 or 1"))
    } else {
        Ok(value)
    }
}

/// Reads a property block (length + properties) valid for `ctx`.
pub(crate) fn read(r: &mut Reader, ctx: Context) -> Result<Properties, DecodeError> {
    let len = r.varint()?;
    let mut p = Properties::default();
    if len == 0 {
        return Ok(p);
    }
    let mut r = r.sub(len as usize)?;
    while !r.is_empty() {
        let id = r.varint()?;
        let id = u8::try_from(id).map_err(|_| DecodeError::Malformed("unknown property"))?;
        if !is_allowed(id, ctx) {
            return Err(if allowed_in(id) == 0 {
                DecodeError::Malformed("unknown property")
            } else {
                DecodeError::Malformed("property not allowed in this packet")
            });
        }
        read_one(&mut r, id, ctx, &mut p)?;
    }
    Ok(p)
}

fn read_one(r: &mut Reader, id: u8, ctx: Context, p: &mut Properties) -> Result<(), DecodeError> {
    match id {
        PAYLOAD_FORMAT_INDICATOR => {
            set_once(&mut p.payload_format_indicator, zero_or_one(r.u8()?)?)
        }
        MESSAGE_EXPIRY_INTERVAL => set_once(&mut p.message_expiry_interval, r.u32()?),
        CONTENT_TYPE => set_once(&mut p.content_type, r.string()?),
        RESPONSE_TOPIC => set_once(&mut p.response_topic, r.string()?),
        CORRELATION_DATA => set_once(&mut p.correlation_data, r.binary()?),
        SUBSCRIPTION_IDENTIFIER => {
            let value = r.varint()?;
            if value == 0 {
                return Err(DecodeError::Protocol("subscription identifier 0"));
            }
            if ctx != Context::Publish && !p.subscription_identifiers.is_empty() {
                return Err(TWICE);
            }
            p.subscription_identifiers.push(value);
            Ok(())
        }
        SESSION_EXPIRY_INTERVAL => set_once(&mut p.session_expiry_interval, r.u32()?),
        ASSIGNED_CLIENT_IDENTIFIER => set_once(&mut p.assigned_client_identifier, r.string()?),
        SERVER_KEEP_ALIVE => set_once(&mut p.server_keep_alive, r.u16()?),
        AUTHENTICATION_METHOD => set_once(&mut p.authentication_method, r.string()?),
        AUTHENTICATION_DATA => set_once(&mut p.authentication_data, r.binary()?),
        REQUEST_PROBLEM_INFORMATION => {
            set_once(&mut p.request_problem_information, zero_or_one(r.u8()?)?)
        }
        WILL_DELAY_INTERVAL => set_once(&mut p.will_delay_interval, r.u32()?),
        REQUEST_RESPONSE_INFORMATION => {
            set_once(&mut p.request_response_information, zero_or_one(r.u8()?)?)
        }
        RESPONSE_INFORMATION => set_once(&mut p.response_information, r.string()?),
        SERVER_REFERENCE => set_once(&mut p.server_reference, r.string()?),
        REASON_STRING => set_once(&mut p.reason_string, r.string()?),
        RECEIVE_MAXIMUM => {
            let value = r.u16()?;
            if value == 0 {
                return Err(DecodeError::Protocol("receive maximum 0"));
            }
            set_once(&mut p.receive_maximum, value)
        }
        TOPIC_ALIAS_MAXIMUM => set_once(&mut p.topic_alias_maximum, r.u16()?),
        TOPIC_ALIAS => {
            let value = r.u16()?;
            if value == 0 {
                return Err(DecodeError::TopicAliasInvalid("topic alias 0"));
            }
            set_once(&mut p.topic_alias, value)
        }
        MAXIMUM_QOS => set_once(&mut p.maximum_qos, zero_or_one(r.u8()?)?),
        RETAIN_AVAILABLE => set_once(&mut p.retain_available, zero_or_one(r.u8()?)?),
        USER_PROPERTY => {
            p.user_properties.push(r.string_pair()?);
            Ok(())
        }
        MAXIMUM_PACKET_SIZE => {
            let value = r.u32()?;
            if value == 0 {
                return Err(DecodeError::Protocol("maximum packet size 0"));
            }
            set_once(&mut p.maximum_packet_size, value)
        }
        WILDCARD_SUBSCRIPTION_AVAILABLE => set_once(
            &mut p.wildcard_subscription_available,
            zero_or_one(r.u8()?)?,
        ),
        SUBSCRIPTION_IDENTIFIER_AVAILABLE => set_once(
            &mut p.subscription_identifier_available,
            zero_or_one(r.u8()?)?,
        ),
        SHARED_SUBSCRIPTION_AVAILABLE => {
            set_once(&mut p.shared_subscription_available, zero_or_one(r.u8()?)?)
        }
        _ => Err(DecodeError::Malformed("unknown property")),
    }
}
