//! prost encode → decode round trips of the main messages.

use bytes::Bytes;
use prost::Message;
use quicmq_proto::cluster::v1::{
    forward_request, forward_response, raft_response, snapshot_chunk, watch_event, ClusterKeys,
    ClusterSnapshot, ClusterUpdate, ForwardAck, ForwardBatch, ForwardHello, ForwardRequest,
    ForwardResponse, ForwardWelcome, ForwardedPublish, JoinRequest, JoinResponse, KeyInfo,
    LeaveRequest, LeaveResponse, Member, MemberRole, MemberState, MemberStatus, Qos, QuicLbConfig,
    QuicLbConfigState, QuicLbConfigs, RaftEncoding, RaftHeader, RaftRequest, RaftResponse, Route,
    SnapshotChunk, SnapshotHeader, SnapshotTrailer, StatusRequest, StatusResponse, TicketKey,
    UserProperty, WatchEvent, WatchRequest, WatchRole,
};

/// Encodes, decodes (from `Bytes`, as tonic does) and compares.
fn roundtrip<M: Message + Default + PartialEq + std::fmt::Debug>(message: &M) -> Bytes {
    let encoded = Bytes::from(message.encode_to_vec());
    assert_eq!(encoded.len(), message.encoded_len());
    let decoded = M::decode(encoded.clone()).expect("decodes");
    assert_eq!(&decoded, message);
    encoded
}

fn member(node_id: u64) -> Member {
    Member {
        node_id,
        server_id: Bytes::from(vec![0, node_id as u8]),
        grpc_addr: format!("node{node_id}.quicmq:7000"),
        routed_addr: format!("10.0.0.{node_id}:14568"),
        public_addr: format!("node{node_id}.example:14567"),
        zone: "eu-west-1a".into(),
        role: MemberRole::Voter.into(),
        state: MemberState::Active.into(),
        joined_at_ms: 1_700_000_000_000 + node_id,
        state_since_ms: 0,
    }
}

fn lb_config(key: Option<[u8; 16]>) -> QuicLbConfig {
    QuicLbConfig {
        config_id: 1,
        server_id_len: 2,
        nonce_len: 6,
        key: key.map(|k| Bytes::copy_from_slice(&k)),
        state: QuicLbConfigState::Active.into(),
    }
}

fn keys() -> ClusterKeys {
    ClusterKeys {
        stateless_reset_key: Bytes::from(vec![0x11; 32]),
        token_key: Bytes::from(vec![0x22; 32]),
        ticket_keys: vec![
            TicketKey {
                key_id: Bytes::from_static(&[0, 0, 0, 2]),
                key: Bytes::from(vec![0x33; 32]),
                not_before_ms: 2_000,
                not_after_ms: 9_000,
            },
            TicketKey {
                key_id: Bytes::from_static(&[0, 0, 0, 1]),
                key: Bytes::from(vec![0x44; 32]),
                not_before_ms: 1_000,
                not_after_ms: 5_000,
            },
        ],
    }
}

fn publish(n: u8) -> ForwardedPublish {
    ForwardedPublish {
        topic: format!("sensors/{n}/temp"),
        payload: Bytes::from(vec![n; 100]),
        qos: Qos::ExactlyOnce.into(),
        retain: n.is_multiple_of(2),
        origin_node_id: 3,
        publisher_client_id: "pub-1".into(),
        payload_is_utf8: false,
        message_expiry_interval_s: Some(30),
        content_type: Some("application/octet-stream".into()),
        response_topic: Some("replies/pub-1".into()),
        correlation_data: Some(Bytes::from_static(b"\x00\x01corr")),
        user_properties: vec![
            UserProperty {
                key: "k".into(),
                value: "1".into(),
            },
            UserProperty {
                key: "k".into(),
                value: "2".into(),
            },
        ],
        ordinary: true,
        shared_groups: vec!["$share/g/sensors/+/temp".into()],
        routed_index: 1_000 + u64::from(n),
        wait_index: 1_002 + u64::from(n),
    }
}

fn raft_header() -> RaftHeader {
    RaftHeader {
        cluster_id: "c-1".into(),
        from_node_id: 1,
        to_node_id: 2,
        encoding: RaftEncoding::Bincode1.into(),
    }
}

#[test]
fn default_messages_encode_to_nothing() {
    assert!(Member::default().encode_to_vec().is_empty());
    assert!(ForwardBatch::default().encode_to_vec().is_empty());
    assert_eq!(
        Member::decode(&[][..]).expect("empty decodes"),
        Member::default()
    );
}

#[test]
fn member_record() {
    roundtrip(&member(7));
}

#[test]
fn quic_lb_config_keeps_key_presence() {
    roundtrip(&lb_config(None));
    roundtrip(&lb_config(Some([0x42; 16])));
    // An explicitly empty key is not the same as no key.
    let empty = QuicLbConfig {
        key: Some(Bytes::new()),
        ..lb_config(None)
    };
    let decoded = QuicLbConfig::decode(roundtrip(&empty)).expect("decodes");
    assert_eq!(decoded.key, Some(Bytes::new()));
}

#[test]
fn cluster_keys() {
    roundtrip(&keys());
}

#[test]
fn route() {
    roundtrip(&Route {
        filter: "$share/g/sensors/+/temp".into(),
        node_ids: vec![1, 2, 5],
    });
}

#[test]
fn forward_stream_frames() {
    roundtrip(&ForwardRequest {
        frame: Some(forward_request::Frame::Hello(ForwardHello {
            cluster_id: "c-1".into(),
            from_node_id: 3,
            to_node_id: 1,
            incarnation: 1_700_000_000_123,
        })),
    });
    let batch = ForwardRequest {
        frame: Some(forward_request::Frame::Batch(ForwardBatch {
            seq: 42,
            publishes: (0..16).map(publish).collect(),
        })),
    };
    roundtrip(&batch);
    roundtrip(&ForwardResponse {
        frame: Some(forward_response::Frame::Welcome(ForwardWelcome {
            node_id: 1,
            last_seq: 41,
            incarnation: 7,
        })),
    });
    roundtrip(&ForwardResponse {
        frame: Some(forward_response::Frame::Ack(ForwardAck {
            seq: 42,
            incomplete: false,
        })),
    });
}

#[test]
fn forwarded_publish_minimal_and_full() {
    roundtrip(&publish(1));
    let minimal = ForwardedPublish {
        topic: "t".into(),
        qos: Qos::AtMostOnce.into(),
        origin_node_id: 1,
        ..Default::default()
    };
    let decoded = ForwardedPublish::decode(roundtrip(&minimal)).expect("decodes");
    assert_eq!(decoded.qos(), Qos::AtMostOnce);
    assert_eq!(decoded.message_expiry_interval_s, None);
    assert!(decoded.payload.is_empty());
}

#[test]
fn payload_decodes_without_copy() {
    let encoded = roundtrip(&publish(9));
    let decoded = ForwardedPublish::decode(encoded.clone()).expect("decodes");
    let range = encoded.as_ptr() as usize..encoded.as_ptr() as usize + encoded.len();
    assert!(
        range.contains(&(decoded.payload.as_ptr() as usize)),
        "payload should be a slice of the received buffer"
    );
}

#[test]
fn unknown_enum_values_survive() {
    // A newer peer's QoS or state value is kept as the raw number, and the
    // typed accessor falls back to the default.
    let message = ForwardedPublish {
        qos: 7,
        ..publish(2)
    };
    let decoded = ForwardedPublish::decode(roundtrip(&message)).expect("decodes");
    assert_eq!(decoded.qos, 7);
    assert!(Qos::try_from(decoded.qos).is_err());
    assert_eq!(decoded.qos(), Qos::AtMostOnce);
}

#[test]
fn raft_messages() {
    roundtrip(&RaftRequest {
        header: Some(raft_header()),
        payload: Bytes::from_static(b"\x01\x02serialized AppendEntriesRequest"),
    });
    roundtrip(&RaftResponse {
        outcome: Some(raft_response::Outcome::Ok(Bytes::from_static(b"resp"))),
    });
    roundtrip(&RaftResponse {
        outcome: Some(raft_response::Outcome::Error(Bytes::from_static(b"err"))),
    });
    // An empty `ok` is still an `ok`, not a missing outcome.
    let empty_ok = RaftResponse {
        outcome: Some(raft_response::Outcome::Ok(Bytes::new())),
    };
    let decoded = RaftResponse::decode(roundtrip(&empty_ok)).expect("decodes");
    assert_eq!(
        decoded.outcome,
        Some(raft_response::Outcome::Ok(Bytes::new()))
    );
}

#[test]
fn snapshot_frames() {
    for frame in [
        snapshot_chunk::Frame::Header(SnapshotHeader {
            header: Some(raft_header()),
            vote: Bytes::from_static(b"vote"),
            meta: Bytes::from_static(b"meta"),
            total_len: 1 << 20,
        }),
        snapshot_chunk::Frame::Data(Bytes::from(vec![0xab; 64 * 1024])),
        snapshot_chunk::Frame::Trailer(SnapshotTrailer {
            crc32c: 0xdead_beef,
        }),
    ] {
        roundtrip(&SnapshotChunk { frame: Some(frame) });
    }
}

#[test]
fn watch_messages() {
    roundtrip(&WatchRequest {
        cluster_id: String::new(),
        role: WatchRole::Router.into(),
        watcher: "router-a".into(),
        after_revision: 17,
    });
    roundtrip(&WatchEvent {
        revision: 18,
        event: Some(watch_event::Event::Snapshot(ClusterSnapshot {
            cluster_id: "c-1".into(),
            members: (1..=5).map(member).collect(),
            quic_lb_configs: vec![lb_config(Some([1; 16])), {
                let mut next = lb_config(Some([2; 16]));
                next.config_id = 2;
                next.state = QuicLbConfigState::Pending.into();
                next
            }],
            keys: Some(ClusterKeys {
                stateless_reset_key: Bytes::from(vec![0x11; 32]),
                ..Default::default()
            }),
            leader_node_id: 1,
        })),
    });
    roundtrip(&WatchEvent {
        revision: 19,
        event: Some(watch_event::Event::Update(ClusterUpdate {
            upserted_members: vec![Member {
                state: MemberState::Leaving.into(),
                ..member(4)
            }],
            removed_node_ids: vec![5],
            quic_lb_configs: None,
            keys: None,
            leader_node_id: Some(2),
        })),
    });
}

#[test]
fn watch_update_distinguishes_no_change_from_none() {
    let unchanged = ClusterUpdate::default();
    let cleared = ClusterUpdate {
        quic_lb_configs: Some(QuicLbConfigs { configs: vec![] }),
        leader_node_id: Some(0),
        ..Default::default()
    };
    let unchanged = ClusterUpdate::decode(roundtrip(&unchanged)).expect("decodes");
    let cleared = ClusterUpdate::decode(roundtrip(&cleared)).expect("decodes");
    assert_eq!(unchanged.quic_lb_configs, None);
    assert_eq!(unchanged.leader_node_id, None);
    assert_eq!(cleared.quic_lb_configs, Some(QuicLbConfigs::default()));
    assert_eq!(cleared.leader_node_id, Some(0));
}

#[test]
fn admin_messages() {
    roundtrip(&JoinRequest {
        cluster_id: "c-1".into(),
        node_id: 4,
        grpc_addr: "node4:7000".into(),
        routed_addr: "10.0.0.4:14568".into(),
        public_addr: "node4.example:14567".into(),
        zone: "b".into(),
    });
    roundtrip(&JoinResponse {
        cluster_id: "c-1".into(),
        member: Some(Member {
            role: MemberRole::Learner.into(),
            state: MemberState::Joining.into(),
            ..member(4)
        }),
        leader_node_id: 1,
        members: (1..=4).map(member).collect(),
    });
    // Leave self (no node ID) and remove another node differ on the wire.
    let leave_self = LeaveRequest {
        cluster_id: "c-1".into(),
        node_id: None,
        force: false,
    };
    let remove = LeaveRequest {
        node_id: Some(3),
        force: true,
        ..leave_self.clone()
    };
    assert_eq!(
        LeaveRequest::decode(roundtrip(&leave_self))
            .expect("decodes")
            .node_id,
        None
    );
    roundtrip(&remove);
    roundtrip(&LeaveResponse {
        node_id: 3,
        state: MemberState::Left.into(),
    });
    roundtrip(&StatusRequest {
        include_routes: true,
    });
    roundtrip(&StatusResponse {
        cluster_id: "c-1".into(),
        node_id: 1,
        leader_node_id: 1,
        term: 9,
        committed_index: 1234,
        applied_index: 1230,
        members: (1..=3)
            .map(|id| MemberStatus {
                member: Some(member(id)),
                matched_index: 1230 + id,
                last_contact_ms: (id != 1).then_some(12),
            })
            .collect(),
        quic_lb_configs: vec![lb_config(None)],
        keys: vec![KeyInfo {
            kind: "ticket".into(),
            fingerprint: Bytes::from_static(&[0, 0, 0, 2]),
            not_before_ms: 2_000,
            not_after_ms: 9_000,
        }],
        routes: vec![Route {
            filter: "a/#".into(),
            node_ids: vec![1, 3],
        }],
        retained_messages: 10,
        persistent_sessions: 20,
        queued_messages: 30,
        wills_held: 12,
        wills_released: 2,
    });
}
