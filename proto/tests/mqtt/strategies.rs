//! proptest strategies for packets that are valid in a given version.

use bytes::Bytes;
use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;
use quicmq_proto::mqtt::*;

/// Where a property block appears.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ctx {
    Connect,
    ConnAck,
    Publish,
    PubResponse,
    Subscribe,
    SubAck,
    Unsubscribe,
    UnsubAck,
    Disconnect,
    Auth,
    Will,
}

/// Short strings without U+0000, with some multi-byte characters.
pub fn string() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9 /+#$é€😀]{0,10}"
}

/// Valid non-empty topic names.
pub fn topic_name() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9 /$é😀]{1,12}"
}

/// Short binary data.
pub fn binary() -> impl Strategy<Value = Bytes> {
    vec(any::<u8>(), 0..16).prop_map(Bytes::from)
}

fn flag() -> impl Strategy<Value = Option<u8>> {
    option::of(0u8..=1)
}

/// Any properties, each with a valid value, whatever the packet.
pub fn any_properties() -> impl Strategy<Value = Properties> {
    let a = (
        flag(),
        option::of(any::<u32>()),
        option::of(string()),
        option::of(topic_name()),
        option::of(binary()),
        vec(1u32..=268_435_455, 0..3),
        option::of(any::<u32>()),
        option::of(string()),
        option::of(any::<u16>()),
        option::of(string()),
        option::of(binary()),
    );
    let b = (
        flag(),
        option::of(any::<u32>()),
        flag(),
        option::of(string()),
        option::of(string()),
        option::of(string()),
        option::of(1u16..),
        option::of(any::<u16>()),
        option::of(1u16..),
        flag(),
        flag(),
    );
    let c = (
        vec((string(), string()), 0..3),
        option::of(1u32..),
        flag(),
        flag(),
        flag(),
    );
    (a, b, c).prop_map(|(a, b, c)| Properties {
        payload_format_indicator: a.0,
        message_expiry_interval: a.1,
        content_type: a.2,
        response_topic: a.3,
        correlation_data: a.4,
        subscription_identifiers: a.5,
        session_expiry_interval: a.6,
        assigned_client_identifier: a.7,
        server_keep_alive: a.8,
        authentication_method: a.9,
        authentication_data: a.10,
        request_problem_information: b.0,
        will_delay_interval: b.1,
        request_response_information: b.2,
        response_information: b.3,
        server_reference: b.4,
        reason_string: b.5,
        receive_maximum: b.6,
        topic_alias_maximum: b.7,
        topic_alias: b.8,
        maximum_qos: b.9,
        retain_available: b.10,
        user_properties: c.0,
        maximum_packet_size: c.1,
        wildcard_subscription_available: c.2,
        subscription_identifier_available: c.3,
        shared_subscription_available: c.4,
    })
}

/// Clears the properties MQTT 5.0 §2.2.2.2 does not allow in `ctx`.
pub fn restrict(mut p: Properties, ctx: Ctx) -> Properties {
    use Ctx::*;
    let in_ = |list: &[Ctx]| list.contains(&ctx);
    if !in_(&[Publish, Will]) {
        p.payload_format_indicator = None;
        p.message_expiry_interval = None;
        p.content_type = None;
        p.response_topic = None;
        p.correlation_data = None;
    }
    if !in_(&[Publish, Subscribe]) {
        p.subscription_identifiers.clear();
    }
    if ctx == Subscribe {
        p.subscription_identifiers.truncate(1);
    }
    if !in_(&[Connect, ConnAck, Disconnect]) {
        p.session_expiry_interval = None;
    }
    if !in_(&[ConnAck]) {
        p.assigned_client_identifier = None;
        p.server_keep_alive = None;
        p.response_information = None;
        p.maximum_qos = None;
        p.retain_available = None;
        p.wildcard_subscription_available = None;
        p.subscription_identifier_available = None;
        p.shared_subscription_available = None;
    }
    if !in_(&[Connect, ConnAck, Auth]) {
        p.authentication_method = None;
        p.authentication_data = None;
    }
    if !in_(&[Connect]) {
        p.request_problem_information = None;
        p.request_response_information = None;
    }
    if !in_(&[Will]) {
        p.will_delay_interval = None;
    }
    if !in_(&[ConnAck, Disconnect]) {
        p.server_reference = None;
    }
    if !in_(&[ConnAck, PubResponse, SubAck, UnsubAck, Disconnect, Auth]) {
        p.reason_string = None;
    }
    if !in_(&[Connect, ConnAck]) {
        p.receive_maximum = None;
        p.topic_alias_maximum = None;
        p.maximum_packet_size = None;
    }
    if !in_(&[Publish]) {
        p.topic_alias = None;
    }
    p
}

/// Properties valid in `ctx` for `version` (none at all in 3.1.1).
pub fn properties(version: ProtocolVersion, ctx: Ctx) -> BoxedStrategy<Properties> {
    match version {
        ProtocolVersion::V311 => Just(Properties::default()).boxed(),
        ProtocolVersion::V5 => any_properties().prop_map(move |p| restrict(p, ctx)).boxed(),
    }
}

fn qos() -> impl Strategy<Value = QoS> {
    prop_oneof![
        Just(QoS::AtMostOnce),
        Just(QoS::AtLeastOnce),
        Just(QoS::ExactlyOnce)
    ]
}

fn packet_id() -> impl Strategy<Value = u16> {
    1u16..
}

fn will(version: ProtocolVersion) -> impl Strategy<Value = LastWill> {
    (
        topic_name(),
        binary(),
        qos(),
        any::<bool>(),
        properties(version, Ctx::Will),
    )
        .prop_map(|(topic, payload, qos, retain, properties)| LastWill {
            topic,
            payload,
            qos,
            retain,
            properties,
        })
}

fn connect(version: ProtocolVersion) -> impl Strategy<Value = Packet> {
    (
        any::<bool>(),
        any::<u16>(),
        string(),
        option::of(will(version)),
        option::of(string()),
        option::of(binary()),
        properties(version, Ctx::Connect),
    )
        .prop_map(
            move |(clean_start, keep_alive, client_id, will, username, password, properties)| {
                let password = match version {
                    ProtocolVersion::V311 if username.is_none() => None,
                    _ => password,
                };
                Packet::Connect(Box::new(Connect {
                    protocol: version,
                    clean_start,
                    keep_alive,
                    client_id,
                    will,
                    username,
                    password,
                    properties,
                }))
            },
        )
}

fn connack(version: ProtocolVersion) -> impl Strategy<Value = Packet> {
    let code = match version {
        ProtocolVersion::V311 => {
            prop::sample::select(vec![0u8, 0x84, 0x85, 0x88, 0x86, 0x87]).boxed()
        }
        ProtocolVersion::V5 => any::<u8>().boxed(),
    };
    (any::<bool>(), code, properties(version, Ctx::ConnAck)).prop_map(
        |(session_present, code, properties)| {
            Packet::ConnAck(ConnAck {
                session_present,
                reason_code: ReasonCode(code),
                properties,
            })
        },
    )
}

fn publish(version: ProtocolVersion) -> impl Strategy<Value = Packet> {
    (
        qos(),
        any::<bool>(),
        any::<bool>(),
        topic_name(),
        any::<bool>(),
        packet_id(),
        properties(version, Ctx::Publish),
        vec(any::<u8>(), 0..64),
    )
        .prop_map(
            |(qos, dup, retain, topic, drop_topic, id, properties, payload)| {
                let topic = if drop_topic && properties.topic_alias.is_some() {
                    String::new()
                } else {
                    topic
                };
                let packet_id = (qos != QoS::AtMostOnce).then_some(id);
                Packet::Publish(Publish {
                    dup: dup && qos != QoS::AtMostOnce,
                    qos,
                    retain,
                    topic,
                    packet_id,
                    properties,
                    payload: Bytes::from(payload),
                })
            },
        )
}

fn publish_response(version: ProtocolVersion) -> impl Strategy<Value = PublishResponse> {
    let code = match version {
        ProtocolVersion::V311 => Just(0u8).boxed(),
        ProtocolVersion::V5 => any::<u8>().boxed(),
    };
    (packet_id(), code, properties(version, Ctx::PubResponse)).prop_map(
        |(packet_id, code, properties)| PublishResponse {
            packet_id,
            reason_code: ReasonCode(code),
            properties,
        },
    )
}

fn options(version: ProtocolVersion) -> BoxedStrategy<SubscriptionOptions> {
    match version {
        ProtocolVersion::V311 => qos().prop_map(SubscriptionOptions::new).boxed(),
        ProtocolVersion::V5 => (
            qos(),
            any::<bool>(),
            any::<bool>(),
            prop_oneof![
                Just(RetainHandling::SendAtSubscribe),
                Just(RetainHandling::SendIfNew),
                Just(RetainHandling::DoNotSend)
            ],
        )
            .prop_map(
                |(qos, no_local, retain_as_published, retain_handling)| SubscriptionOptions {
                    qos,
                    no_local,
                    retain_as_published,
                    retain_handling,
                },
            )
            .boxed(),
    }
}

fn subscribe(version: ProtocolVersion) -> impl Strategy<Value = Packet> {
    (
        packet_id(),
        vec((string(), options(version)), 1..4),
        properties(version, Ctx::Subscribe),
    )
        .prop_map(|(packet_id, filters, properties)| {
            Packet::Subscribe(Subscribe {
                packet_id,
                filters,
                properties,
            })
        })
}

fn suback(version: ProtocolVersion) -> impl Strategy<Value = Packet> {
    let code = match version {
        ProtocolVersion::V311 => prop::sample::select(vec![0u8, 1, 2, 0x80]).boxed(),
        ProtocolVersion::V5 => any::<u8>().boxed(),
    };
    (
        packet_id(),
        vec(code, 1..5),
        properties(version, Ctx::SubAck),
    )
        .prop_map(|(packet_id, codes, properties)| {
            Packet::SubAck(SubAck {
                packet_id,
                reason_codes: codes.into_iter().map(ReasonCode).collect(),
                properties,
            })
        })
}

fn unsubscribe(version: ProtocolVersion) -> impl Strategy<Value = Packet> {
    (
        packet_id(),
        vec(string(), 1..4),
        properties(version, Ctx::Unsubscribe),
    )
        .prop_map(|(packet_id, filters, properties)| {
            Packet::Unsubscribe(Unsubscribe {
                packet_id,
                filters,
                properties,
            })
        })
}

fn unsuback(version: ProtocolVersion) -> impl Strategy<Value = Packet> {
    let codes = match version {
        ProtocolVersion::V311 => Just(Vec::new()).boxed(),
        ProtocolVersion::V5 => vec(any::<u8>(), 1..5).boxed(),
    };
    (packet_id(), codes, properties(version, Ctx::UnsubAck)).prop_map(
        |(packet_id, codes, properties)| {
            Packet::UnsubAck(UnsubAck {
                packet_id,
                reason_codes: codes.into_iter().map(ReasonCode).collect(),
                properties,
            })
        },
    )
}

fn disconnect(version: ProtocolVersion) -> impl Strategy<Value = Packet> {
    let code = match version {
        ProtocolVersion::V311 => Just(0u8).boxed(),
        ProtocolVersion::V5 => any::<u8>().boxed(),
    };
    (code, properties(version, Ctx::Disconnect)).prop_map(|(code, properties)| {
        Packet::Disconnect(Disconnect {
            reason_code: ReasonCode(code),
            properties,
        })
    })
}

fn auth() -> impl Strategy<Value = Packet> {
    (any::<u8>(), properties(ProtocolVersion::V5, Ctx::Auth)).prop_map(|(code, properties)| {
        Packet::Auth(Auth {
            reason_code: ReasonCode(code),
            properties,
        })
    })
}

/// Any packet valid in `version`, in both directions.
pub fn packet(version: ProtocolVersion) -> BoxedStrategy<Packet> {
    let common = prop_oneof![
        connect(version),
        connack(version),
        publish(version),
        publish_response(version).prop_map(Packet::PubAck),
        publish_response(version).prop_map(Packet::PubRec),
        publish_response(version).prop_map(Packet::PubRel),
        publish_response(version).prop_map(Packet::PubComp),
        subscribe(version),
        suback(version),
        unsubscribe(version),
        unsuback(version),
        Just(Packet::PingReq),
        Just(Packet::PingResp),
        disconnect(version),
    ];
    match version {
        ProtocolVersion::V311 => common.boxed(),
        ProtocolVersion::V5 => prop_oneof![14 => common, 1 => auth()].boxed(),
    }
}

/// Either version.
pub fn version() -> impl Strategy<Value = ProtocolVersion> {
    prop_oneof![Just(ProtocolVersion::V311), Just(ProtocolVersion::V5)]
}
