//! What the Raft log carries: the [`Command`]s that change [`ClusterState`]
//! and the [`CommandResponse`] each one yields when applied, plus the
//! records they hold.
//!
//! Everything here is plain data (serde, encoded with bincode in the log,
//! in snapshots and on the wire). MQTT-specific parts the cluster does not
//! interpret — a message's MQTT 5 property block, a subscription's options
//! byte — are kept as the node encoded them.
//!
//! [`ClusterState`]: crate::ClusterState

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::NodeId;

/// A change to the cluster state, proposed by a node and applied by every
/// node in log order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// Set up a new cluster: its ID, QUIC-LB configuration and keys.
    /// Applied once; later ones are refused ([`CommandResponse::Refused`]).
    Bootstrap(BootstrapRecord),
    /// Admit a node, or re-admit one with the same ID (its addresses are
    /// updated and it keeps its server ID). Allocates the server ID.
    Join(JoinRecord),
    /// Record a member's Raft role after a membership change.
    SetMemberRole {
        /// The member.
        node_id: NodeId,
        /// Its role now.
        role: MemberRole,
    },
    /// A member leaves (or is removed): it becomes [`MemberState::Left`],
    /// keeps its server ID reserved, loses its routes, and the persistent
    /// sessions it owned are left without owner (any node may resume them).
    Leave {
        /// The member.
        node_id: NodeId,
        /// When (Unix ms), as the proposer saw it.
        now_ms: u64,
    },
    /// Route-table changes for one node: filters it now has local
    /// subscribers for, and filters it no longer has.
    Routes {
        /// The node whose local subscriptions changed.
        node_id: NodeId,
        /// Filters to add for it.
        add: Vec<String>,
        /// Filters to remove for it.
        remove: Vec<String>,
    },
    /// The whole set of filters a node has local subscribers for (sent when
    /// a node starts, replacing whatever an earlier run left).
    ReplaceRoutes {
        /// The node.
        node_id: NodeId,
        /// All its filters.
        filters: Vec<String>,
    },
    /// Retained-message changes, in order.
    Retain(Vec<RetainOp>),
    /// A node takes ownership of a persistent session (a client connected
    /// to it). Returns the previous owner so that it drops the old
    /// connection.
    ///
    /// A session belongs to the identity that created it
    /// ([`SessionRecord::identity`]): a claim by another identity is
    /// refused ([`CommandResponse::ClaimRefused`], nothing changes) unless
    /// `may_take_over` says the claimer may take over others' sessions. A
    /// stored session that expired by `now_ms` counts as absent.
    ClaimSession {
        /// The client ID.
        client_id: String,
        /// The new owner.
        node_id: NodeId,
        /// The session as it is now (on clean start, a new one; otherwise
        /// the state the claimer resumed, as it read it), with the
        /// claimer's identity.
        session: SessionRecord,
        /// Discard any stored session (MQTT clean start) instead of
        /// keeping its subscriptions.
        clean_start: bool,
        /// The claimer may take over a session of another identity (ACL
        /// `session_takeover=any`).
        may_take_over: bool,
        /// When (Unix ms), as the proposer saw it.
        now_ms: u64,
    },
    /// The owner changes what it stores for a session (subscriptions,
    /// expiry, will, disconnect time). Ignored unless `node_id` owns it.
    UpdateSession {
        /// The client ID.
        client_id: String,
        /// The node that believes it owns the session.
        node_id: NodeId,
        /// The session's new record.
        session: SessionRecord,
    },
    /// A session ends (expired, or clean session on disconnect). Ignored
    /// unless `node_id` owns it, or `node_id` is `None` (expiry swept by
    /// any node for an ownerless session).
    RemoveSession {
        /// The client ID.
        client_id: String,
        /// The owner that removes it; `None` for an ownerless session.
        node_id: Option<NodeId>,
    },
    /// Several commands applied as one log entry (group commit).
    Batch(Vec<Command>),
    /// A new TLS session-ticket key starts sealing tickets (the leader
    /// rotates keys on a schedule). Applied only when `key.id` is the next
    /// ID, so two leaders rotating at once add one key. Keys whose tickets
    /// can no longer be valid at `now_ms` are dropped.
    AddTicketKey {
        /// The new key.
        key: TicketKeyRecord,
        /// When (Unix ms), as the proposer saw it.
        now_ms: u64,
    },
    /// Changes to the durable queues of persistent sessions, in order (one
    /// entry carries many: group commit). Answered with one
    /// [`CommandResponse::Applied`] per operation in a
    /// [`CommandResponse::Batch`].
    Queue(Vec<QueueOp>),
    /// The cluster's password file and ACL (their texts, validated by the
    /// proposer) replace the previous ones; every node enforces them.
    SetAuth(AuthRecord),
    /// The leader's verdict on whether a member answers
    /// ([`MemberState::Alive`], [`MemberState::Suspect`],
    /// [`MemberState::Down`]). Ignored for a member that left, or one
    /// already in that state. When a member goes down its routes are
    /// withdrawn, and the persistent sessions it owned are adopted by live
    /// members ([`crate::state::StateChange::SessionAdopted`]); while it
    /// is down, its route changes and session claims are refused.
    SetLiveness {
        /// The member.
        node_id: NodeId,
        /// What the leader decided.
        liveness: Liveness,
        /// When (Unix ms), as the leader saw it.
        now_ms: u64,
    },
    /// Changes to the wills the cluster holds for connected clients, in
    /// order. Answered with one [`CommandResponse::Applied`] per operation
    /// in a [`CommandResponse::Batch`].
    Wills(Vec<WillOp>),
}

/// The connection a will belongs to: its client ID, the node it is
/// connected to, and a number that node gives each connection.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct WillKey {
    /// The client ID.
    pub client_id: String,
    /// The node the client is connected to.
    pub node_id: NodeId,
    /// The connection on that node (unique per process run of it).
    pub connection: u64,
}

/// A will the cluster holds for a connection, so that it is published
/// even when the connection's node dies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeldWill {
    /// The process run of the node that holds the connection (a random
    /// number per start): wills of earlier runs are released when the
    /// node starts again ([`WillOp::Restarted`]).
    pub run: u64,
    /// The will message.
    pub will: WillRecord,
    /// Its Will Delay Interval (s).
    pub delay_s: u32,
    /// The session's expiry interval (s; 0: a plain session, which ends
    /// with its connection). The will is published when the delay is over
    /// or the session ends, whichever comes first.
    pub session_expiry_s: u32,
    /// When it is due (Unix ms), once released: its connection ended
    /// without a normal DISCONNECT, or its node went down. `None` while
    /// the connection lasts.
    pub due_at_ms: Option<u64>,
}

impl HeldWill {
    /// When a will released at `released_ms` is due: after its Will Delay
    /// Interval, or when its session ends if that comes first.
    ///
    /// ```
    /// use quicmq_raft::command::{HeldWill, WillRecord};
    ///
    /// let will = |delay_s, session_expiry_s| HeldWill {
    ///     run: 1,
    ///     will: WillRecord {
    ///         topic: "t".into(),
    ///         payload: Default::default(),
    ///         qos: 1,
    ///         retain: false,
    ///         properties: Default::default(),
    ///     },
    ///     delay_s,
    ///     session_expiry_s,
    ///     due_at_ms: None,
    /// };
    /// assert_eq!(will(10, 60).due_after(1_000), 11_000);
    /// assert_eq!(will(10, 5).due_after(1_000), 6_000, "the session ends first");
    /// assert_eq!(will(10, 0).due_after(1_000), 1_000, "a plain session ends at once");
    /// ```
    pub fn due_after(&self, released_ms: u64) -> u64 {
        let wait_s = self.delay_s.min(self.session_expiry_s);
        released_ms.saturating_add(u64::from(wait_s) * 1000)
    }
}

/// One change to the cluster's wills ([`Command::Wills`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum WillOp {
    /// A client connected with a will: the cluster holds it while the
    /// connection lasts. Not applied for a node that is down.
    Hold {
        /// Its connection.
        key: WillKey,
        /// The will.
        will: HeldWill,
    },
    /// The connection ended without a normal DISCONNECT: the will is due
    /// at `due_at_ms`, unless the client comes back first (a session
    /// claim cancels it). Applied to a held will not released yet.
    Release {
        /// Its connection.
        key: WillKey,
        /// When it is due (Unix ms).
        due_at_ms: u64,
    },
    /// The will leaves the cluster: its connection ended normally, or it
    /// is being published. Applied when it was there: only the proposer
    /// whose `Remove` applied publishes it, so it is published once.
    Remove {
        /// Its connection.
        key: WillKey,
    },
    /// A node started again as `run`: the wills its earlier runs held for
    /// connections that died with them are released as of `now_ms`.
    Restarted {
        /// The node.
        node_id: NodeId,
        /// Its new run.
        run: u64,
        /// When (Unix ms), as the node saw it.
        now_ms: u64,
    },
}

/// Whether a member answers the leader, as the leader decides it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Liveness {
    /// Answers and has caught up with the log.
    Alive,
    /// Has not answered for a while; still routed to.
    Suspect,
    /// Has not answered for `member_down_after`: nothing waits on it.
    Down,
}

/// The authentication data every node enforces: the texts of a password
/// file and an ACL file as a node read them (`None`: none).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthRecord {
    /// The password file (`user:argon2id-hash` lines).
    pub passwords: Option<String>,
    /// The ACL file.
    pub acl: Option<String>,
    /// The node that read the files.
    pub from_node: NodeId,
    /// When (Unix ms), as that node saw it.
    pub at_ms: u64,
    /// Increases with every change (set when applied).
    pub version: u64,
}

/// One change to a persistent session's durable queue: the QoS 1/2
/// messages routed to it that its client has not acknowledged yet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum QueueOp {
    /// Append a message. Applied only while `owner` owns the session; when
    /// the queue then holds more than `limit` messages, the oldest go
    /// ([`crate::state::StateChange::QueueOverflow`]).
    Push {
        /// The session's client ID.
        client_id: String,
        /// The node that queued it (the session's owner).
        owner: NodeId,
        /// The message's ID in the queue, increasing per session.
        id: u64,
        /// The message as the owner encodes it (opaque here).
        record: Vec<u8>,
        /// Most messages the queue keeps.
        limit: u32,
    },
    /// The client acknowledged these messages (PUBACK, or PUBCOMP for QoS
    /// 2): they leave the queue. Applied only while `owner` owns the
    /// session (an acknowledgement that arrives after the session moved
    /// is dropped: its message is replayed once more).
    Ack {
        /// The session's client ID.
        client_id: String,
        /// The node whose client acknowledged them.
        owner: NodeId,
        /// The acknowledged IDs.
        ids: Vec<u64>,
    },
}

/// What applying a [`Command`] yields.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum CommandResponse {
    /// Applied; nothing to report.
    #[default]
    Done,
    /// Not applied, and why (e.g. a second bootstrap, a full server ID
    /// space). The state is unchanged.
    Refused(String),
    /// The member record after a [`Command::Join`].
    Member(MemberRecord),
    /// After a [`Command::ClaimSession`]: who owned the session before
    /// (`None`: nobody, or a new session) and the stored session the claim
    /// replaced, if any.
    Claimed {
        /// The previous owner, if another node.
        previous_owner: Option<NodeId>,
        /// The stored session before the claim.
        previous: Option<SessionRecord>,
    },
    /// A [`Command::ClaimSession`] by an identity that does not own the
    /// session; nothing changed.
    ClaimRefused,
    /// Whether a conditional update or removal applied.
    Applied(bool),
    /// One response per command of a [`Command::Batch`].
    Batch(Vec<CommandResponse>),
}

/// The first entry of a cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BootstrapRecord {
    /// The cluster's ID; joins must name it.
    pub cluster_id: String,
    /// How connection IDs are minted and decoded.
    pub quic_lb: QuicLbRecord,
    /// The cluster-wide secrets.
    pub keys: KeysRecord,
}

/// A QUIC-LB configuration (draft-ietf-quic-load-balancers-21).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuicLbRecord {
    /// Config rotation codepoint, 0..=6.
    pub config_id: u8,
    /// Server ID length in octets (1..=15).
    pub server_id_len: u8,
    /// Nonce length in octets.
    pub nonce_len: u8,
    /// AES-128 key; `None`: server ID and nonce in clear.
    pub key: Option<[u8; 16]>,
}

/// Cluster-wide secrets.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeysRecord {
    /// The stateless reset key (quinn's reset-token HMAC key).
    pub stateless_reset_key: [u8; 32],
    /// The address-validation token key.
    pub token_key: [u8; 32],
}

impl std::fmt::Debug for KeysRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeysRecord { .. }")
    }
}

/// A TLS session-ticket key shared by every node, so that a ticket one
/// node issued resumes a session on any other.
///
/// A key seals new tickets from `sealing_from_ms` until the next key
/// starts; tickets it sealed are accepted for one `lifetime_ms` beyond
/// that.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TicketKeyRecord {
    /// Identifier written in clear into each ticket (1, 2, ...).
    pub id: u32,
    /// AES-256-GCM key.
    pub key: [u8; 32],
    /// Unix time (ms) from which the key seals new tickets.
    pub sealing_from_ms: u64,
    /// Ticket lifetime (ms): how long a ticket stays valid, and how long
    /// a key seals before the leader replaces it.
    pub lifetime_ms: u64,
}

impl std::fmt::Debug for TicketKeyRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TicketKeyRecord")
            .field("id", &self.id)
            .field("sealing_from_ms", &self.sealing_from_ms)
            .field("lifetime_ms", &self.lifetime_ms)
            .finish_non_exhaustive()
    }
}

/// A node asking to be a member.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoinRecord {
    /// Its node ID (not 0).
    pub node_id: NodeId,
    /// Where peers reach its gRPC services.
    pub grpc_addr: String,
    /// Its routed UDP address (empty: none).
    pub routed_addr: String,
    /// Its public QUIC address.
    pub public_addr: String,
    /// Its failure domain.
    pub zone: String,
    /// When (Unix ms), as the proposer saw it.
    pub now_ms: u64,
}

/// The part a member plays in Raft.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum MemberRole {
    /// Votes.
    Voter,
    /// Follows the log without voting.
    Learner,
}

/// Where a member is in its life cycle, and whether it answers.
///
/// The variants' order is the stored format (bincode writes the index):
/// new ones go at the end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum MemberState {
    /// Serving clients and answering the leader.
    Alive,
    /// Gone; its server ID stays reserved.
    Left,
    /// Has not answered the leader since `since_ms` (Unix ms); still
    /// routed to.
    Suspect {
        /// When the leader marked it.
        since_ms: u64,
    },
    /// Has not answered for `member_down_after`, since `since_ms` (Unix
    /// ms): its routes are withdrawn and its persistent sessions adopted.
    Down {
        /// When the leader marked it.
        since_ms: u64,
    },
}

impl MemberState {
    /// Whether the member is part of the cluster (alive, suspect or down:
    /// not left).
    pub fn is_member(self) -> bool {
        self != MemberState::Left
    }

    /// Whether other nodes may send to it (alive or suspect).
    pub fn is_reachable(self) -> bool {
        matches!(self, MemberState::Alive | MemberState::Suspect { .. })
    }

    /// Whether it is down.
    pub fn is_down(self) -> bool {
        matches!(self, MemberState::Down { .. })
    }

    /// Its liveness (`None` once it left).
    pub fn liveness(self) -> Option<Liveness> {
        match self {
            MemberState::Alive => Some(Liveness::Alive),
            MemberState::Suspect { .. } => Some(Liveness::Suspect),
            MemberState::Down { .. } => Some(Liveness::Down),
            MemberState::Left => None,
        }
    }

    /// The label operators see: `alive`, `suspect`, `down` or `left`.
    ///
    /// ```
    /// use quicmq_raft::command::MemberState;
    ///
    /// assert_eq!(MemberState::Down { since_ms: 1 }.label(), "down");
    /// assert_eq!(MemberState::Alive.label(), "alive");
    /// ```
    pub fn label(self) -> &'static str {
        match self {
            MemberState::Alive => "alive",
            MemberState::Suspect { .. } => "suspect",
            MemberState::Down { .. } => "down",
            MemberState::Left => "left",
        }
    }
}

/// A member of the cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberRecord {
    /// Node ID.
    pub node_id: NodeId,
    /// QUIC-LB server ID (the configuration's length).
    pub server_id: Vec<u8>,
    /// gRPC address.
    pub grpc_addr: String,
    /// Routed UDP address (empty: none).
    pub routed_addr: String,
    /// Public QUIC address.
    pub public_addr: String,
    /// Failure domain.
    pub zone: String,
    /// Voter or learner.
    pub role: MemberRole,
    /// Alive, suspect, down or left.
    pub state: MemberState,
    /// When it first joined (Unix ms).
    pub joined_at_ms: u64,
    /// When it left (Unix ms), if it did.
    pub left_at_ms: Option<u64>,
}

/// One retained-message change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RetainOp {
    /// Store (or replace) the retained message of a topic.
    Set {
        /// Topic name.
        topic: String,
        /// The message.
        message: RetainedRecord,
    },
    /// Delete the retained message of a topic (a retained PUBLISH with an
    /// empty payload, or expiry).
    Delete {
        /// Topic name.
        topic: String,
    },
}

/// A retained message as the cluster stores it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetainedRecord {
    /// QoS it was published with.
    pub qos: u8,
    /// Payload.
    pub payload: Bytes,
    /// The MQTT 5 property block (encoded by the node; empty: none).
    pub properties: Bytes,
    /// When it expires (Unix ms), from its Message Expiry Interval.
    pub expires_at_ms: Option<u64>,
    /// The node that stored it.
    pub origin_node_id: NodeId,
}

/// A persistent session as the cluster stores it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionRecord {
    /// The node whose client holds it now (`None`: no node; any may resume
    /// it). Set by [`Command::ClaimSession`], not by the record's sender.
    pub owner: Option<NodeId>,
    /// The identity that created the session: the authenticated user name
    /// or certificate identity (`None`: an anonymous client). Only this
    /// identity may resume or replace it; kept by
    /// [`Command::UpdateSession`], whatever the update carries.
    pub identity: Option<String>,
    /// MQTT protocol level the client last connected with (4 or 5; 0: not
    /// recorded).
    pub protocol_level: u8,
    /// Session Expiry Interval in seconds (`u32::MAX`: never).
    pub expiry_interval_s: u32,
    /// When its client disconnected (Unix ms); `None` while connected.
    pub disconnected_at_ms: Option<u64>,
    /// Its subscriptions.
    pub subscriptions: Vec<SubscriptionRecord>,
    /// Not used: the cluster holds wills of all connections, plain and
    /// persistent, as [`HeldWill`]s ([`Command::Wills`]). Kept so that
    /// stored records still decode.
    pub will: Option<WillRecord>,
}

impl SessionRecord {
    /// Whether the session has expired by `now_ms`: its client is
    /// disconnected and its Session Expiry Interval has passed since.
    ///
    /// ```
    /// use quicmq_raft::command::SessionRecord;
    ///
    /// let record = SessionRecord {
    ///     expiry_interval_s: 10,
    ///     disconnected_at_ms: Some(1_000),
    ///     ..Default::default()
    /// };
    /// assert!(!record.expired_at(10_999));
    /// assert!(record.expired_at(11_000));
    /// let connected = SessionRecord { expiry_interval_s: 10, ..Default::default() };
    /// assert!(!connected.expired_at(u64::MAX));
    /// ```
    pub fn expired_at(&self, now_ms: u64) -> bool {
        match self.disconnected_at_ms {
            Some(_) if self.expiry_interval_s == u32::MAX => false,
            Some(since) => now_ms >= since.saturating_add(u64::from(self.expiry_interval_s) * 1000),
            None => false,
        }
    }
}

/// One subscription of a persistent session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubscriptionRecord {
    /// Topic filter (with its `$share/GROUP/` prefix if shared).
    pub filter: String,
    /// The MQTT 5 subscription options byte (max QoS, No Local, Retain As
    /// Published, Retain Handling).
    pub options: u8,
    /// Subscription identifier, if any.
    pub identifier: Option<u32>,
}

/// A will message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WillRecord {
    /// Topic.
    pub topic: String,
    /// Payload.
    pub payload: Bytes,
    /// QoS.
    pub qos: u8,
    /// Retain flag.
    pub retain: bool,
    /// The MQTT 5 will property block (encoded by the node).
    pub properties: Bytes,
}
