//! Typed MQTT control packets (MQTT 3.1.1 §3, MQTT 5.0 §3).
//!
//! One type serves both protocol versions: fields that MQTT 3.1.1 lacks
//! (properties, most reason codes) are simply left at their defaults when
//! talking 3.1.1, and the codec maps what has a 3.1.1 equivalent.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::{Properties, ReasonCode};

/// The protocol level a connection speaks, fixed by its CONNECT.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ProtocolVersion {
    /// MQTT 3.1.1 (protocol level 4).
    V311,
    /// MQTT 5.0 (protocol level 5).
    V5,
}

impl ProtocolVersion {
    /// The protocol level byte of CONNECT.
    pub fn level(self) -> u8 {
        match self {
            ProtocolVersion::V311 => 4,
            ProtocolVersion::V5 => 5,
        }
    }
}

/// Quality of service of a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum QoS {
    /// QoS 0: delivered at most once, no acknowledgement.
    AtMostOnce = 0,
    /// QoS 1: delivered at least once, PUBACK.
    AtLeastOnce = 1,
    /// QoS 2: delivered exactly once, PUBREC/PUBREL/PUBCOMP.
    ExactlyOnce = 2,
}

impl QoS {
    /// The QoS for a 2-bit value; `None` for 3, which is malformed.
    pub fn from_u8(value: u8) -> Option<QoS> {
        match value {
            0 => Some(QoS::AtMostOnce),
            1 => Some(QoS::AtLeastOnce),
            2 => Some(QoS::ExactlyOnce),
            _ => None,
        }
    }
}

/// What a server does with retained messages when a subscription is made
/// (MQTT 5.0 §3.8.3.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub enum RetainHandling {
    /// Send retained messages at the time of the subscribe.
    #[default]
    SendAtSubscribe = 0,
    /// Send retained messages only if the subscription did not exist.
    SendIfNew = 1,
    /// Do not send retained messages.
    DoNotSend = 2,
}

/// Options of one topic filter in a SUBSCRIBE.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SubscriptionOptions {
    /// Maximum QoS of messages sent to this subscription.
    pub qos: QoS,
    /// Do not send messages published by this same client (5.0).
    pub no_local: bool,
    /// Keep the RETAIN flag of forwarded messages (5.0).
    pub retain_as_published: bool,
    /// When retained messages are sent (5.0).
    pub retain_handling: RetainHandling,
}

impl SubscriptionOptions {
    /// Options with the given QoS and the defaults of MQTT 3.1.1 for the rest.
    pub fn new(qos: QoS) -> SubscriptionOptions {
        SubscriptionOptions {
            qos,
            no_local: false,
            retain_as_published: false,
            retain_handling: RetainHandling::SendAtSubscribe,
        }
    }
}

/// The will message of a CONNECT.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastWill {
    /// Topic the will is published to.
    pub topic: String,
    /// Will payload.
    pub payload: Bytes,
    /// QoS of the will.
    pub qos: QoS,
    /// Whether the will is retained.
    pub retain: bool,
    /// Will properties (5.0): delay interval, expiry, content type, ...
    pub properties: Properties,
}

/// CONNECT (client → server).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Connect {
    /// Protocol level requested by the client.
    pub protocol: ProtocolVersion,
    /// Clean Start (5.0) / Clean Session (3.1.1).
    pub clean_start: bool,
    /// Keep alive in seconds; 0 disables it.
    pub keep_alive: u16,
    /// Client identifier; may be empty.
    pub client_id: String,
    /// Will message, if any.
    pub will: Option<LastWill>,
    /// User name, if present.
    pub username: Option<String>,
    /// Password, if present.
    pub password: Option<Bytes>,
    /// CONNECT properties (5.0).
    pub properties: Properties,
}

/// CONNACK (server → client).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnAck {
    /// Whether the server resumed a stored session.
    pub session_present: bool,
    /// Result of the connect; for 3.1.1 mapped to a return code.
    pub reason_code: ReasonCode,
    /// CONNACK properties (5.0).
    pub properties: Properties,
}

/// PUBLISH (both directions).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Publish {
    /// Re-delivery flag.
    pub dup: bool,
    /// QoS of this transmission.
    pub qos: QoS,
    /// Retain flag.
    pub retain: bool,
    /// Topic name; empty when a 5.0 topic alias stands for it.
    pub topic: String,
    /// Packet identifier; present exactly when `qos` is 1 or 2.
    pub packet_id: Option<u16>,
    /// PUBLISH properties (5.0).
    pub properties: Properties,
    /// Application payload, shared without copying.
    pub payload: Bytes,
}

/// PUBACK, PUBREC, PUBREL or PUBCOMP: a packet identifier with a reason code.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublishResponse {
    /// Packet identifier of the PUBLISH this answers.
    pub packet_id: u16,
    /// Reason code (5.0); always success for 3.1.1.
    pub reason_code: ReasonCode,
    /// Properties (5.0).
    pub properties: Properties,
}

impl PublishResponse {
    /// A successful response without properties.
    pub fn success(packet_id: u16) -> PublishResponse {
        PublishResponse {
            packet_id,
            reason_code: ReasonCode::SUCCESS,
            properties: Properties::default(),
        }
    }
}

/// SUBSCRIBE (client → server).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subscribe {
    /// Packet identifier.
    pub packet_id: u16,
    /// Topic filters with their options; at least one.
    pub filters: Vec<(String, SubscriptionOptions)>,
    /// Properties (5.0): subscription identifier, user properties.
    pub properties: Properties,
}

/// SUBACK (server → client).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubAck {
    /// Packet identifier of the SUBSCRIBE.
    pub packet_id: u16,
    /// One code per filter: granted QoS or failure (3.1.1: 0x80 only).
    pub reason_codes: Vec<ReasonCode>,
    /// Properties (5.0).
    pub properties: Properties,
}

/// UNSUBSCRIBE (client → server).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unsubscribe {
    /// Packet identifier.
    pub packet_id: u16,
    /// Topic filters; at least one.
    pub filters: Vec<String>,
    /// Properties (5.0).
    pub properties: Properties,
}

/// UNSUBACK (server → client).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnsubAck {
    /// Packet identifier of the UNSUBSCRIBE.
    pub packet_id: u16,
    /// One code per filter (5.0); empty for 3.1.1.
    pub reason_codes: Vec<ReasonCode>,
    /// Properties (5.0).
    pub properties: Properties,
}

/// DISCONNECT (both directions in 5.0; client → server in 3.1.1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Disconnect {
    /// Why the connection ends.
    pub reason_code: ReasonCode,
    /// Properties (5.0): session expiry, reason string, server reference.
    pub properties: Properties,
}

impl Disconnect {
    /// A DISCONNECT with the given reason and no properties.
    pub fn new(reason_code: ReasonCode) -> Disconnect {
        Disconnect {
            reason_code,
            properties: Properties::default(),
        }
    }
}

/// AUTH (5.0 only, both directions).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Auth {
    /// Continue authentication, re-authenticate or success.
    pub reason_code: ReasonCode,
    /// Properties: authentication method and data.
    pub properties: Properties,
}

/// Any MQTT control packet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Packet {
    /// CONNECT.
    Connect(Box<Connect>),
    /// CONNACK.
    ConnAck(ConnAck),
    /// PUBLISH.
    Publish(Publish),
    /// PUBACK.
    PubAck(PublishResponse),
    /// PUBREC.
    PubRec(PublishResponse),
    /// PUBREL.
    PubRel(PublishResponse),
    /// PUBCOMP.
    PubComp(PublishResponse),
    /// SUBSCRIBE.
    Subscribe(Subscribe),
    /// SUBACK.
    SubAck(SubAck),
    /// UNSUBSCRIBE.
    Unsubscribe(Unsubscribe),
    /// UNSUBACK.
    UnsubAck(UnsubAck),
    /// PINGREQ.
    PingReq,
    /// PINGRESP.
    PingResp,
    /// DISCONNECT.
    Disconnect(Disconnect),
    /// AUTH.
    Auth(Auth),
}

/// The control packet type of the fixed header (high nibble of byte 1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PacketType {
    /// 1
    Connect = 1,
    /// 2
    ConnAck = 2,
    /// 3
    Publish = 3,
    /// 4
    PubAck = 4,
    /// 5
    PubRec = 5,
    /// 6
    PubRel = 6,
    /// 7
    PubComp = 7,
    /// 8
    Subscribe = 8,
    /// 9
    SubAck = 9,
    /// 10
    Unsubscribe = 10,
    /// 11
    UnsubAck = 11,
    /// 12
    PingReq = 12,
    /// 13
    PingResp = 13,
    /// 14
    Disconnect = 14,
    /// 15
    Auth = 15,
}

impl PacketType {
    /// Lower-case name, used in logs and metric labels.
    pub fn name(self) -> &'static str {
        match self {
            PacketType::Connect => "connect",
            PacketType::ConnAck => "connack",
            PacketType::Publish => "publish",
            PacketType::PubAck => "puback",
            PacketType::PubRec => "pubrec",
            PacketType::PubRel => "pubrel",
            PacketType::PubComp => "pubcomp",
            PacketType::Subscribe => "subscribe",
            PacketType::SubAck => "suback",
            PacketType::Unsubscribe => "unsubscribe",
            PacketType::UnsubAck => "unsuback",
            PacketType::PingReq => "pingreq",
            PacketType::PingResp => "pingresp",
            PacketType::Disconnect => "disconnect",
            PacketType::Auth => "auth",
        }
    }
}

impl Packet {
    /// The fixed-header type of this packet.
    pub fn packet_type(&self) -> PacketType {
        match self {
            Packet::Connect(_) => PacketType::Connect,
            Packet::ConnAck(_) => PacketType::ConnAck,
            Packet::Publish(_) => PacketType::Publish,
            Packet::PubAck(_) => PacketType::PubAck,
            Packet::PubRec(_) => PacketType::PubRec,
            Packet::PubRel(_) => PacketType::PubRel,
            Packet::PubComp(_) => PacketType::PubComp,
            Packet::Subscribe(_) => PacketType::Subscribe,
            Packet::SubAck(_) => PacketType::SubAck,
            Packet::Unsubscribe(_) => PacketType::Unsubscribe,
            Packet::UnsubAck(_) => PacketType::UnsubAck,
            Packet::PingReq => PacketType::PingReq,
            Packet::PingResp => PacketType::PingResp,
            Packet::Disconnect(_) => PacketType::Disconnect,
            Packet::Auth(_) => PacketType::Auth,
        }
    }
}
