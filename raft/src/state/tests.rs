use bytes::Bytes;

use super::*;
use crate::command::{
    BootstrapRecord, HeldWill, JoinRecord, Liveness, MemberRole, MemberState, SubscriptionRecord,
    WillKey, WillRecord,
};

fn boot() -> Command {
    Command::Bootstrap(BootstrapRecord {
        cluster_id: "c1".into(),
        quic_lb: QuicLbRecord {
            config_id: 0,
            server_id_len: 2,
            nonce_len: 6,
            key: None,
        },
        keys: KeysRecord {
            stateless_reset_key: [1; 32],
            token_key: [2; 32],
        },
    })
}

fn join(node_id: NodeId) -> Command {
    Command::Join(JoinRecord {
        node_id,
        grpc_addr: format!("127.0.0.1:{}", 7000 + node_id),
        routed_addr: String::new(),
        public_addr: String::new(),
        zone: "z".into(),
        now_ms: 10,
    })
}

fn apply(state: &mut ClusterState, c: Command) -> (CommandResponse, Vec<StateChange>) {
    let mut changes = Vec::new();
    let r = state.apply(&c, &mut changes);
    (r, changes)
}

fn session(filters: &[&str]) -> SessionRecord {
    SessionRecord {
        owner: None,
        identity: None,
        protocol_level: 5,
        expiry_interval_s: 60,
        disconnected_at_ms: None,
        subscriptions: filters
            .iter()
            .map(|f| SubscriptionRecord {
                filter: f.to_string(),
                options: 1,
                identifier: None,
            })
            .collect(),
        will: None,
    }
}

#[test]
fn bootstrap_once() {
    let mut s = ClusterState::default();
    assert_eq!(apply(&mut s, boot()).0, CommandResponse::Done);
    assert_eq!(s.cluster_id(), Some("c1"));
    assert!(matches!(
        apply(&mut s, boot()).0,
        CommandResponse::Refused(_)
    ));
}

#[test]
fn join_allocates_server_ids_of_the_configured_length() {
    let mut s = ClusterState::default();
    apply(&mut s, boot());
    let (r, changes) = apply(&mut s, join(1));
    let CommandResponse::Member(m) = r else {
        panic!("{r:?}")
    };
    assert_eq!(m.server_id, vec![0, 1]);
    assert_eq!(changes, vec![StateChange::Member(1)]);
    apply(
        &mut s,
        Command::SetMemberRole {
            node_id: 1,
            role: MemberRole::Voter,
        },
    );
    assert_eq!(s.members().get(1).unwrap().role, MemberRole::Voter);
}

#[test]
fn leave_drops_routes_and_orphans_sessions() {
    let mut s = ClusterState::default();
    apply(&mut s, boot());
    apply(&mut s, join(1));
    apply(&mut s, join(2));
    apply(
        &mut s,
        Command::Routes {
            node_id: 1,
            add: vec!["a/#".into()],
            remove: vec![],
        },
    );
    apply(
        &mut s,
        Command::ClaimSession {
            client_id: "c".into(),
            node_id: 1,
            session: session(&["a/#"]),
            clean_start: true,
            may_take_over: false,
            now_ms: 0,
        },
    );
    let (r, changes) = apply(
        &mut s,
        Command::Leave {
            node_id: 1,
            now_ms: 99,
        },
    );
    assert_eq!(r, CommandResponse::Applied(true));
    assert!(changes.contains(&StateChange::Routes(1)));
    assert!(s.routes().is_empty());
    let stored = &s.sessions()["c"];
    assert_eq!(stored.owner, None);
    assert_eq!(stored.disconnected_at_ms, Some(99));
    assert_eq!(s.members().get(1).unwrap().state, MemberState::Left);
}

#[test]
fn claim_reports_previous_owner_and_keeps_subscriptions_on_resume() {
    let mut s = ClusterState::default();
    apply(
        &mut s,
        Command::ClaimSession {
            client_id: "c".into(),
            node_id: 1,
            session: session(&["x", "y/+"]),
            clean_start: true,
            may_take_over: false,
            now_ms: 0,
        },
    );
    let (r, _) = apply(
        &mut s,
        Command::ClaimSession {
            client_id: "c".into(),
            node_id: 2,
            session: session(&[]),
            clean_start: false,
            may_take_over: false,
            now_ms: 0,
        },
    );
    let CommandResponse::Claimed { previous_owner, .. } = r else {
        panic!("{r:?}")
    };
    assert_eq!(previous_owner, Some(1));
    let stored = &s.sessions()["c"];
    assert_eq!(stored.owner, Some(2));
    assert_eq!(stored.subscriptions.len(), 2);

    // Only the owner may update or remove it.
    let stale = Command::UpdateSession {
        client_id: "c".into(),
        node_id: 1,
        session: session(&[]),
    };
    assert_eq!(apply(&mut s, stale).0, CommandResponse::Applied(false));
    let remove = Command::RemoveSession {
        client_id: "c".into(),
        node_id: Some(2),
    };
    assert_eq!(apply(&mut s, remove).0, CommandResponse::Applied(true));
    assert!(s.sessions().is_empty());
}

#[test]
fn retained_set_and_delete_in_one_batch() {
    let mut s = ClusterState::default();
    let msg = RetainedRecord {
        qos: 1,
        payload: Bytes::from_static(b"v"),
        properties: Bytes::new(),
        expires_at_ms: None,
        origin_node_id: 1,
    };
    let (r, changes) = apply(
        &mut s,
        Command::Batch(vec![
            Command::Retain(vec![
                RetainOp::Set {
                    topic: "a".into(),
                    message: msg.clone(),
                },
                RetainOp::Set {
                    topic: "b".into(),
                    message: msg,
                },
            ]),
            Command::Retain(vec![RetainOp::Delete { topic: "a".into() }]),
        ]),
    );
    assert_eq!(
        r,
        CommandResponse::Batch(vec![CommandResponse::Done, CommandResponse::Done])
    );
    assert_eq!(s.retained().keys().collect::<Vec<_>>(), ["b"]);
    assert_eq!(changes.len(), 3);
}

#[test]
fn state_round_trips_through_bincode() {
    let mut s = ClusterState::default();
    apply(&mut s, boot());
    apply(&mut s, join(4));
    apply(
        &mut s,
        Command::ClaimSession {
            client_id: "c".into(),
            node_id: 4,
            session: session(&["t"]),
            clean_start: true,
            may_take_over: false,
            now_ms: 0,
        },
    );
    let bytes = bincode::serialize(&s).unwrap();
    let back: ClusterState = bincode::deserialize(&bytes).unwrap();
    assert_eq!(back, s);
}

fn push(client_id: &str, owner: NodeId, id: u64) -> QueueOp {
    QueueOp::Push {
        client_id: client_id.into(),
        owner,
        id,
        record: vec![id as u8],
        limit: 2,
    }
}

#[test]
fn durable_queues_follow_the_session_owner() {
    let mut s = ClusterState::default();
    let claim = |node_id, clean_start| Command::ClaimSession {
        client_id: "c".into(),
        node_id,
        session: session(&["q"]),
        clean_start,
        may_take_over: false,
        now_ms: 0,
    };
    apply(&mut s, claim(1, true));
    let (r, _) = apply(
        &mut s,
        Command::Queue(vec![push("c", 1, 1), push("c", 2, 2), push("nobody", 1, 1)]),
    );
    assert_eq!(
        r,
        CommandResponse::Batch(vec![
            CommandResponse::Applied(true),
            CommandResponse::Applied(false),
            CommandResponse::Applied(false),
        ]),
        "only the owner queues, only for a session"
    );
    // Past the limit the oldest goes, and the owner hears of it.
    let (_, changes) = apply(
        &mut s,
        Command::Queue(vec![push("c", 1, 2), push("c", 1, 3)]),
    );
    assert_eq!(
        changes,
        vec![StateChange::QueueOverflow {
            client_id: "c".into(),
            owner: 1,
            dropped: 1
        }]
    );
    // Resumed on node 2: the queue stays for it to replay; node 1 can no
    // longer change it.
    apply(&mut s, claim(2, false));
    let ids = |s: &ClusterState| {
        s.queue("c")
            .map(|q| q.iter().map(|(id, _)| id).collect::<Vec<_>>())
            .unwrap_or_default()
    };
    assert_eq!(ids(&s), [2, 3]);
    let ack = |owner| {
        Command::Queue(vec![QueueOp::Ack {
            client_id: "c".into(),
            owner,
            ids: vec![2],
        }])
    };
    // The old owner's late acknowledgement is dropped (it may name IDs it
    // handed out but never committed, which the new owner reused), and it
    // can no longer queue; the new owner's IDs go on after the highest one
    // used.
    let (r, _) = apply(&mut s, ack(1));
    assert_eq!(
        r,
        CommandResponse::Batch(vec![CommandResponse::Applied(false)])
    );
    assert_eq!(ids(&s), [2, 3]);
    apply(&mut s, ack(2));
    assert_eq!(ids(&s), [3]);
    let (r, _) = apply(
        &mut s,
        Command::Queue(vec![push("c", 1, 4), push("c", 2, 3)]),
    );
    assert_eq!(
        r,
        CommandResponse::Batch(vec![
            CommandResponse::Applied(false),
            CommandResponse::Applied(false),
        ]),
        "not the owner; an ID already used"
    );
    assert_eq!(s.queue("c").map(|q| q.next_id()), Some(4));
    assert_eq!(s.queued_messages(), 1);
    // A clean start empties it; so does the session's removal.
    apply(&mut s, claim(2, true));
    assert!(s.queue("c").is_none());
    apply(&mut s, Command::Queue(vec![push("c", 2, 9)]));
    apply(
        &mut s,
        Command::RemoveSession {
            client_id: "c".into(),
            node_id: Some(2),
        },
    );
    assert!(s.queue("c").is_none());
}

#[test]
fn auth_records_replace_each_other_with_rising_versions() {
    let mut state = ClusterState::default();
    assert!(state.auth().is_none());
    let record = |acl: &str| {
        Command::SetAuth(crate::command::AuthRecord {
            passwords: Some("alice:$argon2id$x".into()),
            acl: Some(acl.into()),
            from_node: 2,
            at_ms: 5,
            version: 99,
        })
    };
    let (r, changes) = apply(&mut state, record("allow both all #\n"));
    assert_eq!(r, CommandResponse::Applied(true));
    assert_eq!(changes, vec![StateChange::Auth]);
    assert_eq!(
        state.auth().map(|a| a.version),
        Some(1),
        "the proposer's version is ignored"
    );
    apply(&mut state, record("deny both all #\n"));
    let auth = state.auth().unwrap();
    assert_eq!(auth.version, 2);
    assert_eq!(auth.acl.as_deref(), Some("deny both all #\n"));
    assert_eq!(auth.from_node, 2);
}

fn claim_by(
    identity: Option<&str>,
    node_id: NodeId,
    clean_start: bool,
    may_take_over: bool,
) -> Command {
    Command::ClaimSession {
        client_id: "dev".into(),
        node_id,
        session: SessionRecord {
            identity: identity.map(str::to_owned),
            expiry_interval_s: 60,
            ..session(&[])
        },
        clean_start,
        may_take_over,
        now_ms: 1_000,
    }
}

#[test]
fn a_session_belongs_to_the_identity_that_made_it() {
    let mut s = ClusterState::default();
    apply(&mut s, claim_by(Some("alice"), 1, true, false));
    apply(
        &mut s,
        Command::Queue(vec![QueueOp::Push {
            client_id: "dev".into(),
            owner: 1,
            id: 1,
            record: vec![1],
            limit: 10,
        }]),
    );
    let before = s.clone();
    // Another user, an anonymous client: refused on resume and on clean
    // start alike, and nothing changes (owner, queue, identity).
    for claim in [
        claim_by(Some("bob"), 2, false, false),
        claim_by(Some("bob"), 2, true, false),
        claim_by(None, 1, false, false),
        claim_by(Some("Alice"), 1, true, false),
    ] {
        let (r, changes) = apply(&mut s, claim);
        assert_eq!(r, CommandResponse::ClaimRefused);
        assert!(changes.is_empty());
        assert_eq!(s, before);
    }
    // The owner resumes from another node.
    let (r, _) = apply(&mut s, claim_by(Some("alice"), 2, false, false));
    assert!(
        matches!(
            r,
            CommandResponse::Claimed {
                previous_owner: Some(1),
                ..
            }
        ),
        "{r:?}"
    );
    assert_eq!(s.queue("dev").map(|q| q.len()), Some(1));
    // An update carries no identity of its own: the stored one stays.
    apply(
        &mut s,
        Command::UpdateSession {
            client_id: "dev".into(),
            node_id: 2,
            session: SessionRecord::default(),
        },
    );
    assert_eq!(s.sessions()["dev"].identity.as_deref(), Some("alice"));
}

#[test]
fn an_identity_allowed_to_take_over_resumes_without_becoming_the_owner() {
    let mut s = ClusterState::default();
    apply(&mut s, claim_by(None, 1, true, false));
    let (r, _) = apply(&mut s, claim_by(Some("ops"), 2, false, true));
    assert!(matches!(r, CommandResponse::Claimed { .. }), "{r:?}");
    assert_eq!(
        s.sessions()["dev"].identity,
        None,
        "still the anonymous client's"
    );
    // A clean start by it makes a new session, which is its own.
    apply(&mut s, claim_by(Some("ops"), 2, true, true));
    assert_eq!(s.sessions()["dev"].identity.as_deref(), Some("ops"));
}

#[test]
fn an_expired_session_binds_nobody() {
    let mut s = ClusterState::default();
    apply(&mut s, claim_by(Some("alice"), 1, true, false));
    apply(
        &mut s,
        Command::UpdateSession {
            client_id: "dev".into(),
            node_id: 1,
            session: SessionRecord {
                expiry_interval_s: 60,
                disconnected_at_ms: Some(0),
                ..session(&["x"])
            },
        },
    );
    // At 1 s it is still alice's.
    assert_eq!(
        apply(&mut s, claim_by(Some("bob"), 2, false, false)).0,
        CommandResponse::ClaimRefused
    );
    let mut late = claim_by(Some("bob"), 2, false, false);
    if let Command::ClaimSession { now_ms, .. } = &mut late {
        *now_ms = 61_000;
    }
    let (r, _) = apply(&mut s, late);
    let CommandResponse::Claimed {
        previous,
        previous_owner,
    } = r
    else {
        panic!("{r:?}")
    };
    assert_eq!(
        previous, None,
        "nothing of alice's session is handed to bob"
    );
    assert_eq!(
        previous_owner,
        Some(1),
        "its old holder still drops its copy"
    );
    assert_eq!(s.sessions()["dev"].identity.as_deref(), Some("bob"));
    assert!(s.sessions()["dev"].subscriptions.is_empty());
}

fn claim(s: &mut ClusterState, client_id: &str, node_id: NodeId, filters: &[&str]) {
    let (r, _) = apply(
        s,
        Command::ClaimSession {
            client_id: client_id.into(),
            node_id,
            session: session(filters),
            clean_start: true,
            may_take_over: false,
            now_ms: 1,
        },
    );
    assert!(matches!(r, CommandResponse::Claimed { .. }), "{r:?}");
}

fn liveness(node_id: NodeId, liveness: Liveness, now_ms: u64) -> Command {
    Command::SetLiveness {
        node_id,
        liveness,
        now_ms,
    }
}

#[test]
fn a_down_member_loses_its_routes_and_live_members_adopt_its_sessions() {
    let mut s = ClusterState::default();
    for c in [boot(), join(1), join(2), join(3)] {
        apply(&mut s, c);
    }
    apply(
        &mut s,
        Command::Routes {
            node_id: 1,
            add: vec!["a/#".into(), "plain/x".into()],
            remove: vec![],
        },
    );
    for i in 0..40 {
        claim(&mut s, &format!("c{i}"), 1, &["a/#", &format!("own/{i}")]);
    }
    claim(&mut s, "elsewhere", 2, &["b"]);

    let (r, changes) = apply(&mut s, liveness(1, Liveness::Suspect, 50));
    assert_eq!(r, CommandResponse::Applied(true));
    assert_eq!(changes, vec![StateChange::Member(1)]);
    assert_eq!(
        s.members().get(1).unwrap().state,
        MemberState::Suspect { since_ms: 50 }
    );
    assert!(
        s.routes().nodes("plain/x").is_some(),
        "a suspect keeps its routes"
    );
    let (r, _) = apply(&mut s, liveness(1, Liveness::Suspect, 60));
    assert_eq!(r, CommandResponse::Applied(false), "no change, no new time");

    let (r, changes) = apply(&mut s, liveness(1, Liveness::Down, 100));
    assert_eq!(r, CommandResponse::Applied(true));
    assert!(changes.contains(&StateChange::Routes(1)));
    assert_eq!(
        s.members().get(1).unwrap().state,
        MemberState::Down { since_ms: 100 }
    );
    assert!(
        s.routes().nodes("plain/x").is_none(),
        "plain routes withdrawn"
    );
    let mut by_node = BTreeMap::new();
    for i in 0..40 {
        let stored = &s.sessions()[&format!("c{i}")];
        let owner = stored.owner.expect("adopted");
        assert!(owner == 2 || owner == 3, "adopted by a live member");
        assert_eq!(stored.disconnected_at_ms, Some(100));
        assert!(
            s.routes()
                .nodes(&format!("own/{i}"))
                .is_some_and(|n| n.contains(&owner) && !n.contains(&1)),
            "the session's filters are routed to its adopter"
        );
        *by_node.entry(owner).or_insert(0) += 1;
        assert!(changes.contains(&StateChange::SessionAdopted {
            client_id: format!("c{i}"),
            from: 1,
            by: Some(owner),
        }));
    }
    assert_eq!(by_node.len(), 2, "adoption spreads over the live members");
    assert_eq!(s.sessions()["elsewhere"].owner, Some(2));

    // While down, it can neither route nor claim.
    let (r, _) = apply(
        &mut s,
        Command::ReplaceRoutes {
            node_id: 1,
            filters: vec!["z".into()],
        },
    );
    assert!(matches!(r, CommandResponse::Refused(_)));
    assert!(s.routes().nodes("z").is_none());
    let (r, _) = apply(
        &mut s,
        Command::ClaimSession {
            client_id: "new".into(),
            node_id: 1,
            session: session(&["q"]),
            clean_start: true,
            may_take_over: false,
            now_ms: 101,
        },
    );
    assert!(matches!(r, CommandResponse::Refused(_)));
    assert!(!s.sessions().contains_key("new"));

    // Back: alive, and it routes again.
    let (r, _) = apply(&mut s, liveness(1, Liveness::Alive, 200));
    assert_eq!(r, CommandResponse::Applied(true));
    assert_eq!(s.members().get(1).unwrap().state, MemberState::Alive);
    apply(
        &mut s,
        Command::ReplaceRoutes {
            node_id: 1,
            filters: vec!["z".into()],
        },
    );
    assert!(s.routes().nodes("z").is_some());
}

#[test]
fn adoption_is_the_same_on_every_replica_and_moves_only_the_dead_members_sessions() {
    let build = || {
        let mut s = ClusterState::default();
        for c in [boot(), join(1), join(2), join(3), join(4)] {
            apply(&mut s, c);
        }
        for i in 0..30 {
            claim(&mut s, &format!("c{i}"), 1 + (i % 4), &["t"]);
        }
        s
    };
    let mut a = build();
    let mut b = build();
    apply(&mut a, liveness(4, Liveness::Down, 10));
    apply(&mut b, liveness(4, Liveness::Down, 10));
    assert_eq!(a, b);
    for i in 0..30u64 {
        let owner = a.sessions()[&format!("c{i}")].owner;
        if i % 4 == 3 {
            assert_ne!(owner, Some(4));
        } else {
            assert_eq!(owner, Some(1 + i % 4), "sessions of live members stay");
        }
    }
    // With nobody alive, a down member's sessions are left without owner.
    let mut s = build();
    for n in [2, 3, 4] {
        apply(&mut s, liveness(n, Liveness::Down, 10));
    }
    apply(&mut s, liveness(1, Liveness::Down, 20));
    assert!(s.sessions().values().all(|r| r.owner.is_none()));
    // A member that left takes no liveness verdicts.
    apply(
        &mut s,
        Command::Leave {
            node_id: 1,
            now_ms: 30,
        },
    );
    let (r, _) = apply(&mut s, liveness(1, Liveness::Alive, 40));
    assert_eq!(r, CommandResponse::Applied(false));
    assert_eq!(s.members().get(1).unwrap().state, MemberState::Left);
}

fn will_key(client_id: &str, node_id: NodeId, connection: u64) -> WillKey {
    WillKey {
        client_id: client_id.into(),
        node_id,
        connection,
    }
}

fn held_will(run: u64, delay_s: u32, session_expiry_s: u32) -> HeldWill {
    HeldWill {
        run,
        will: WillRecord {
            topic: "w".into(),
            payload: Bytes::from_static(b"bye"),
            qos: 1,
            retain: false,
            properties: Bytes::new(),
        },
        delay_s,
        session_expiry_s,
        due_at_ms: None,
    }
}

fn wills(state: &mut ClusterState, ops: Vec<WillOp>) -> Vec<bool> {
    let (r, _) = apply(state, Command::Wills(ops));
    let CommandResponse::Batch(answers) = r else {
        panic!("{r:?}")
    };
    answers
        .into_iter()
        .map(|a| a == CommandResponse::Applied(true))
        .collect()
}

fn due(state: &ClusterState, now_ms: u64) -> Vec<String> {
    state
        .wills()
        .due(now_ms)
        .map(|(key, _)| key.client_id.clone())
        .collect()
}

fn three_members() -> ClusterState {
    let mut s = ClusterState::default();
    apply(&mut s, boot());
    for id in 1..=3 {
        apply(&mut s, join(id));
    }
    s
}

#[test]
fn a_will_is_removed_once_so_it_is_published_once() {
    let mut s = three_members();
    let key = will_key("dev", 1, 7);
    assert_eq!(
        wills(
            &mut s,
            vec![WillOp::Hold {
                key: key.clone(),
                will: held_will(1, 0, 0)
            }]
        ),
        vec![true]
    );
    assert_eq!(s.wills().held(), 1);
    assert!(due(&s, u64::MAX).is_empty(), "held wills are never due");
    assert_eq!(
        wills(
            &mut s,
            vec![
                WillOp::Release {
                    key: key.clone(),
                    due_at_ms: 500
                },
                WillOp::Release {
                    key: key.clone(),
                    due_at_ms: 900
                },
            ]
        ),
        vec![true, false],
        "released once"
    );
    assert!(due(&s, 499).is_empty());
    assert_eq!(due(&s, 500), vec!["dev"]);
    // Two nodes racing to publish it: only the first removal applies.
    assert_eq!(
        wills(
            &mut s,
            vec![WillOp::Remove { key: key.clone() }, WillOp::Remove { key }]
        ),
        vec![true, false]
    );
    assert!(due(&s, u64::MAX).is_empty());
}

#[test]
fn a_down_member_releases_its_wills_after_their_delay() {
    let mut s = three_members();
    wills(
        &mut s,
        vec![
            WillOp::Hold {
                key: will_key("plain", 1, 1),
                will: held_will(9, 30, 0),
            },
            WillOp::Hold {
                key: will_key("delayed", 1, 2),
                will: held_will(9, 10, 3600),
            },
            WillOp::Hold {
                key: will_key("short-session", 1, 3),
                will: held_will(9, 60, 5),
            },
            WillOp::Hold {
                key: will_key("elsewhere", 2, 1),
                will: held_will(4, 0, 0),
            },
        ],
    );
    let (_, changes) = apply(&mut s, liveness(1, Liveness::Down, 1_000));
    assert!(changes.contains(&StateChange::WillsReleased));
    assert_eq!(s.wills().released(), 3);
    assert_eq!(s.wills().held(), 1, "other members' wills stay held");
    assert_eq!(
        due(&s, 1_000),
        vec!["plain"],
        "a plain session ends at once"
    );
    assert_eq!(due(&s, 6_000), vec!["plain", "short-session"]);
    assert_eq!(due(&s, 11_000).len(), 3);
    // A down member holds no new wills.
    assert_eq!(
        wills(
            &mut s,
            vec![WillOp::Hold {
                key: will_key("late", 1, 4),
                will: held_will(9, 0, 0)
            }]
        ),
        vec![false]
    );
}

#[test]
fn a_client_that_resumes_first_cancels_its_will_and_a_clean_start_publishes_it() {
    let mut s = three_members();
    wills(
        &mut s,
        vec![
            WillOp::Hold {
                key: will_key("back", 1, 1),
                will: held_will(9, 60, 3600),
            },
            WillOp::Hold {
                key: will_key("fresh", 1, 2),
                will: held_will(9, 60, 3600),
            },
        ],
    );
    for id in ["back", "fresh"] {
        apply(
            &mut s,
            Command::ClaimSession {
                client_id: id.into(),
                node_id: 1,
                session: session(&["a"]),
                clean_start: true,
                may_take_over: false,
                now_ms: 0,
            },
        );
    }
    apply(&mut s, liveness(1, Liveness::Down, 1_000));
    assert!(due(&s, 60_999).is_empty());
    for (id, clean_start) in [("back", false), ("fresh", true)] {
        apply(
            &mut s,
            Command::ClaimSession {
                client_id: id.into(),
                node_id: 2,
                session: session(&[]),
                clean_start,
                may_take_over: false,
                now_ms: 5_000,
            },
        );
    }
    assert_eq!(
        due(&s, 5_000),
        vec!["fresh"],
        "the old session ended: its will is due now; the resumed one's is cancelled"
    );
    assert_eq!(s.wills().released(), 1);
}

#[test]
fn a_restarted_node_releases_the_wills_of_its_previous_run() {
    let mut s = three_members();
    wills(
        &mut s,
        vec![
            WillOp::Hold {
                key: will_key("old", 1, 1),
                will: held_will(1, 0, 0),
            },
            WillOp::Hold {
                key: will_key("new", 1, 1),
                will: held_will(2, 0, 0),
            },
        ],
    );
    let answers = wills(
        &mut s,
        vec![WillOp::Restarted {
            node_id: 1,
            run: 2,
            now_ms: 300,
        }],
    );
    assert_eq!(answers, vec![true]);
    assert_eq!(due(&s, 300), vec!["old"]);
    assert_eq!(s.wills().held(), 1, "the new run's will stays held");
}

#[test]
fn a_member_that_leaves_drops_its_held_wills() {
    let mut s = three_members();
    wills(
        &mut s,
        vec![WillOp::Hold {
            key: will_key("c", 1, 1),
            will: held_will(1, 0, 0),
        }],
    );
    apply(
        &mut s,
        Command::Leave {
            node_id: 1,
            now_ms: 5,
        },
    );
    assert_eq!(s.wills().held(), 0);
    assert!(due(&s, u64::MAX).is_empty());
}

#[test]
fn snapshots_keep_wills_and_older_snapshots_decode() {
    let mut s = three_members();
    wills(
        &mut s,
        vec![WillOp::Hold {
            key: will_key("c", 1, 1),
            will: held_will(1, 0, 0),
        }],
    );
    let bytes = s.encode_snapshot().unwrap();
    assert_eq!(ClusterState::decode_snapshot(&bytes).unwrap(), s);
    // A snapshot of a release without wills: the state's fields only.
    let older = crate::codec::encode("test", &s).unwrap();
    let decoded = ClusterState::decode_snapshot(&older).unwrap();
    assert_eq!(decoded.wills().held(), 0);
    assert_eq!(decoded.members(), s.members());
}
