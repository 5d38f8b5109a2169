//! The broker's shared state: the session registry, the subscription tree
//! and retained messages, and the routing of published messages.
//!
//! Each connected session is owned by its connection task; the registry
//! holds a [`SessionCell`] per client ID whose slot says where the session
//! is: with a connection (deliveries go to its channel) or parked offline
//! (deliveries are queued into it directly). Session takeover hands the
//! session from the old connection task to the new one through the cell.

mod early_subscriptions;
mod flush_group;
mod message;
mod queue_budget;
mod retained;
mod session;
mod store;
mod topic_tree;
mod will;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::Duration;

use quicmq_proto::mqtt::topic::{parse_shared, validate_topic_filter};
use quicmq_proto::mqtt::{LastWill, QoS};
use tokio::sync::{mpsc, oneshot, watch};

pub use early_subscriptions::EarlySubscriptions;
pub use message::{now_ms, Message};
pub use queue_budget::{default_memory_budget, QueueBudget};
pub use retained::RetainedMessages;
pub use session::{
    AckError, Delivery, EnqueueOutcome, QueueDropPolicy, Session, SessionLimits, StoreOp,
    Subscription, Transmit,
};
pub use store::{DeliveryRecord, SessionRecord, SessionStore, StoreError};
pub use topic_tree::{ClientId, Match, Selection, SubscriptionTree};

use crate::cluster::ClusterLink;

/// Answers once a new subscription's filter is routed to this node in the
/// cluster (`Err` with the reason when that could not be committed).
pub type RouteCommit = tokio::sync::oneshot::Receiver<Result<(), String>>;
pub use will::PendingWill;

use crate::metrics as m;

/// Limits and defaults every connection and session of this broker uses.
#[derive(Clone, Debug)]
pub struct BrokerSettings {
    /// Per-session queue limit and drop policy.
    pub session_limits: SessionLimits,
    /// Largest packet accepted from clients, bytes.
    pub max_packet_size: u32,
    /// QoS 2 messages a client may have unreleased (our Receive Maximum).
    pub receive_maximum: u16,
    /// Topic aliases a client may use towards us.
    pub topic_alias_maximum: u16,
    /// Longest keep alive granted, seconds (0 = whatever the client asks).
    pub max_keep_alive: u16,
    /// Longest session expiry interval granted, seconds.
    pub max_session_expiry: u32,
    /// Time a new connection has to send CONNECT.
    pub connect_timeout: Duration,
    /// This node's name, sent to clients in CONNACK as the user property
    /// `quicmq-node` (the server ID in hex).
    pub node_name: Option<String>,
    /// Who may connect.
    pub auth: Arc<crate::auth::Authenticator>,
    /// Subscriptions per client and the size of topics.
    pub topic_limits: TopicLimits,
    /// Connections, handshakes and publish rate.
    pub limits: crate::limits::AbuseLimits,
    /// Client certificates: asked for on QUIC and TLS when set.
    pub client_certs: Option<crate::tls::ClientCertPolicy>,
}

/// Default `max_queued_bytes`: 16 MiB per session.
pub const DEFAULT_MAX_QUEUED_BYTES: usize = 16 << 20;

/// Default `max_subscriptions` per client.
pub const DEFAULT_MAX_SUBSCRIPTIONS: usize = 1000;

/// Limits on what one client may subscribe to and publish on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TopicLimits {
    /// Subscriptions one client may hold (0: no limit).
    pub max_subscriptions: usize,
    /// Levels in a topic name or filter.
    pub max_levels: usize,
    /// Bytes in a topic name or filter.
    pub max_length: usize,
}

impl TopicLimits {
    /// Whether a topic name or filter is within the size limits.
    ///
    /// ```
    /// use quicmq_node::broker::TopicLimits;
    ///
    /// let limits = TopicLimits { max_subscriptions: 0, max_levels: 3, max_length: 10 };
    /// assert!(limits.admits("a/b/c"));
    /// assert!(!limits.admits("a/b/c/d"));
    /// assert!(!limits.admits("abcdefghijk"));
    /// ```
    pub fn admits(&self, topic: &str) -> bool {
        topic.len() <= self.max_length && topic.split('/').count() <= self.max_levels
    }

    /// Whether a client holding `held` subscriptions may add one more.
    pub fn admits_another_subscription(&self, held: usize) -> bool {
        self.max_subscriptions == 0 || held < self.max_subscriptions
    }
}

impl Default for TopicLimits {
    fn default() -> Self {
        TopicLimits {
            max_subscriptions: DEFAULT_MAX_SUBSCRIPTIONS,
            max_levels: 128,
            max_length: 65_535,
        }
    }
}

impl Default for BrokerSettings {
    fn default() -> Self {
        BrokerSettings {
            session_limits: SessionLimits {
                max_queued: 10_000,
                max_queued_bytes: DEFAULT_MAX_QUEUED_BYTES,
                drop_policy: QueueDropPolicy::DropOldest,
                budget: Some(Arc::new(QueueBudget::new(default_memory_budget()))),
            },
            max_packet_size: 1024 * 1024,
            receive_maximum: 1024,
            topic_alias_maximum: 64,
            max_keep_alive: 0,
            max_session_expiry: u32::MAX,
            connect_timeout: Duration::from_secs(10),
            node_name: None,
            // An embedded broker without configuration is open.
            auth: Arc::new(crate::auth::Authenticator::new(None, true)),
            topic_limits: TopicLimits::default(),
            limits: crate::limits::AbuseLimits::default(),
            client_certs: None,
        }
    }
}

/// Resolves once `signal` (from [`Broker::shutdown_signal`]) says shutdown
/// has started.
pub async fn shutdown_started(signal: &mut watch::Receiver<bool>) {
    let _ = signal.wait_for(|s| *s).await;
}

/// Sent to the connection task that owns a session.
// Deliveries are the common variant: boxing them would cost an allocation each.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum SessionEvent {
    /// A message for the client.
    Deliver(Delivery),
    /// Another connection with the same client ID took the session: hand
    /// the session over and close with reason 0x8E.
    TakeOver(oneshot::Sender<Session>),
}

enum Slot {
    Online {
        conn_id: u64,
        tx: mpsc::UnboundedSender<SessionEvent>,
    },
    Offline {
        session: Box<Session>,
        since_ms: u64,
        will: Option<Box<PendingWill>>,
    },
}

/// The registry entry of one client ID.
pub struct SessionCell {
    client_id: ClientId,
    next_seq: AtomicU64,
    persistent: AtomicBool,
    /// The identity the session belongs to (`None`: an anonymous client).
    identity: Mutex<Option<String>>,
    slot: Mutex<Slot>,
    /// Read checks of topics its partly allowed subscriptions matched.
    read_cache: Mutex<ReadCache>,
}

/// A session's read decisions per topic under one ACL generation.
#[derive(Default)]
struct ReadCache {
    generation: u64,
    topics: HashMap<String, bool>,
}

/// Topics a session's [`ReadCache`] remembers before it starts over.
const READ_CACHE_TOPICS: usize = 256;

impl SessionCell {
    fn new(
        client_id: ClientId,
        next_seq: u64,
        identity: Option<String>,
        slot: Slot,
    ) -> SessionCell {
        SessionCell {
            client_id,
            next_seq: AtomicU64::new(next_seq),
            persistent: AtomicBool::new(false),
            identity: Mutex::new(identity),
            slot: Mutex::new(slot),
            read_cache: Mutex::default(),
        }
    }

    fn slot(&self) -> MutexGuard<'_, Slot> {
        self.slot.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn identity(&self) -> MutexGuard<'_, Option<String>> {
        self.identity.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The session now belongs to `identity`: what was decided for the
    /// previous one no longer holds.
    fn set_identity(&self, identity: Option<String>) {
        *self.identity() = identity;
        self.read_cache().topics.clear();
    }

    fn read_cache(&self) -> MutexGuard<'_, ReadCache> {
        self.read_cache.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether the session is live (connected, or offline and not expired
    /// at `now_ms`) and belongs to an identity other than `identity`: then
    /// a CONNECT by `identity` must neither resume nor replace it.
    fn belongs_to_another(&self, identity: Option<&str>, now_ms: u64) -> bool {
        if self.identity().as_deref() == identity {
            return false;
        }
        match &*self.slot() {
            Slot::Online { conn_id, .. } => *conn_id != 0,
            Slot::Offline {
                session, since_ms, ..
            } => !session_expired(session, *since_ms, now_ms),
        }
    }

    /// The next sequence number for a delivery to this session.
    pub fn next_seq(&self) -> u64 {
        self.next_seq.fetch_add(1, Ordering::Relaxed)
    }

    /// The client ID.
    pub fn client_id(&self) -> &ClientId {
        &self.client_id
    }

    /// Whether the session's client may receive a message on `topic`
    /// ([`Access::Read`](crate::auth::Access::Read)).
    ///
    /// Decisions are remembered per topic (at most [`READ_CACHE_TOPICS`])
    /// while `acl` is the ACL in force; another ACL or identity starts
    /// over.
    pub fn may_read(&self, acl: &crate::auth::Acl, topic: &str) -> bool {
        {
            let cache = self.read_cache();
            if cache.generation == acl.generation() {
                if let Some(allowed) = cache.topics.get(topic) {
                    return *allowed;
                }
            }
        }
        let allowed = {
            let identity = self.identity();
            let client = crate::auth::acl::Client {
                username: identity.as_deref(),
                client_id: &self.client_id,
            };
            acl.check(&client, crate::auth::Access::Read, topic)
        };
        let mut cache = self.read_cache();
        if cache.generation != acl.generation() || cache.topics.len() >= READ_CACHE_TOPICS {
            cache.generation = acl.generation();
            cache.topics.clear();
        }
        cache.topics.insert(topic.to_owned(), allowed);
        allowed
    }

    /// Whether the session may read every topic of `filter` under `acl`
    /// ([`Acl::reads_all`](crate::auth::acl::Acl::reads_all)).
    fn reads_all(&self, acl: &crate::auth::Acl, filter: &str) -> bool {
        let identity = self.identity();
        let client = crate::auth::acl::Client {
            username: identity.as_deref(),
            client_id: &self.client_id,
        };
        acl.reads_all(&client, filter)
    }
}

/// Whether an offline `session`, disconnected since `since_ms`, has
/// expired by `now_ms`.
fn session_expired(session: &Session, since_ms: u64, now_ms: u64) -> bool {
    let expiry = session.expiry_interval();
    expiry != u32::MAX && since_ms.saturating_add(u64::from(expiry) * 1000) <= now_ms
}

/// Who connects, as [`Broker::attach`] checks it against the session's
/// owner.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConnectIdentity {
    /// The authenticated user name or certificate identity (`None`: an
    /// anonymous client).
    pub identity: Option<String>,
    /// Whether it may take over sessions of other identities (ACL
    /// `session_takeover=any`).
    pub may_take_over: bool,
}

/// Why [`Broker::attach`] refused a connection.
#[derive(Debug, thiserror::Error)]
pub enum AttachError {
    /// The client ID's session belongs to another identity: CONNACK 0x87
    /// (3.1.1: return code 5); the session and its connection are
    /// untouched.
    #[error("the session of this client ID belongs to another identity")]
    NotOwner,
    /// The cluster could not commit the claim (no leader): CONNACK 0x88.
    #[error(transparent)]
    Cluster(#[from] quicmq_raft::ClusterError),
}

/// A session handed to a new connection.
pub struct Attached {
    /// The registry entry.
    pub cell: Arc<SessionCell>,
    /// The session, now owned by the connection.
    pub session: Session,
    /// Whether a stored session was resumed (CONNACK Session Present).
    pub session_present: bool,
    /// Deliveries and takeover requests for this connection.
    pub events: mpsc::UnboundedReceiver<SessionEvent>,
}

/// How a connection ended, for [`Broker::detach`].
pub struct Detach {
    /// The connection's ID, as given to [`Broker::attach`].
    pub conn_id: u64,
    /// The session it owned.
    pub session: Session,
    /// Its event channel (drained into the session).
    pub events: mpsc::UnboundedReceiver<SessionEvent>,
    /// A takeover request the connection received and has not answered.
    pub takeover: Option<oneshot::Sender<Session>>,
    /// The will to publish (absent after a normal DISCONNECT).
    pub will: Option<LastWill>,
    /// The cluster's record of the connection's will
    /// ([`ClusterLink::hold_will`]): the cluster, not this node, then
    /// publishes the will, so that it is published once even if this node
    /// dies meanwhile.
    pub will_key: Option<quicmq_raft::command::WillKey>,
}

/// What routing one published message did.
#[derive(Debug, Default)]
pub struct RouteOutcome {
    /// Sessions the message was delivered or queued to.
    pub matched: usize,
    /// Whether durable storage was written (flush before acknowledging).
    pub persisted: bool,
    /// In a cluster, one completion per commit the publisher's
    /// acknowledgement waits for: durable queues of persistent sessions
    /// here, and peers that delivered (and durably queued) it.
    pub durable: Vec<oneshot::Receiver<bool>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// How long a session that moved away waits for its new owner's routes.
const HANDOVER_WAIT: Duration = Duration::from_secs(6);
/// How long its subscriptions stay after that, for peers behind.
const HANDOVER_GRACE: Duration = Duration::from_secs(3);

/// A session that moved to another node, until its subscriptions here go.
struct MovedSession {
    /// The log index from which the cluster routes all its filters to the
    /// new owner (`None`: not yet).
    handover: Option<u64>,
    /// Its filters, still in the tree.
    filters: Vec<String>,
    /// Which move this is (a session may leave, come back and leave again).
    generation: u64,
}

/// The broker: shared by every connection of every transport.
pub struct Broker {
    settings: BrokerSettings,
    tree: RwLock<SubscriptionTree>,
    /// SUBSCRIBE filters decoded and not yet applied; locked after `tree`.
    early: Mutex<EarlySubscriptions>,
    /// Sessions another node took over: their subscriptions stay in the
    /// tree until every node routes to the new owner, so that a message
    /// routed here meanwhile is refused (and sent again) instead of lost.
    /// Locked before `tree` when both are held.
    moved: Mutex<HashMap<ClientId, MovedSession>>,
    moved_generation: AtomicU64,
    /// Whether `early` holds anything (routing skips its lock when not).
    early_len: AtomicUsize,
    sessions: Mutex<HashMap<ClientId, Arc<SessionCell>>>,
    retained: RwLock<RetainedMessages>,
    store: SessionStore,
    next_conn_id: AtomicU64,
    shutdown: watch::Sender<bool>,
    /// The cluster, when this broker is a member of one: routes, forwarding
    /// and retained messages go through it.
    cluster: Option<Arc<ClusterLink>>,
}

fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(|e| e.into_inner())
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(|e| e.into_inner())
}

impl Broker {
    /// Open the broker over `store`, restoring persistent sessions and
    /// retained messages from it.
    ///
    /// With a `cluster`, retained messages are the cluster's (committed
    /// through Raft, mirrored here by the cluster link) and local
    /// subscriptions are announced as routes.
    pub fn open(
        settings: BrokerSettings,
        store: SessionStore,
        cluster: Option<Arc<ClusterLink>>,
    ) -> Result<Arc<Broker>, StoreError> {
        let broker = Broker {
            settings,
            tree: RwLock::new(SubscriptionTree::default()),
            early: Mutex::new(EarlySubscriptions::default()),
            moved: Mutex::new(HashMap::new()),
            moved_generation: AtomicU64::new(0),
            early_len: AtomicUsize::new(0),
            sessions: Mutex::new(HashMap::new()),
            retained: RwLock::new(RetainedMessages::default()),
            store,
            next_conn_id: AtomicU64::new(1),
            shutdown: watch::channel(false).0,
            cluster,
        };
        broker.restore()?;
        Ok(Arc::new(broker))
    }

    fn restore(&self) -> Result<(), StoreError> {
        let now = now_ms();
        if self.cluster.is_none() {
            let mut retained = write(&self.retained);
            for message in self.store.load_retained()? {
                retained.set(Arc::new(message));
            }
            metrics::gauge!(m::RETAINED).set(retained.len() as f64);
        }
        let mut sessions = self.sessions_map();
        let mut tree = write(&self.tree);
        for loaded in self.store.load_sessions()? {
            let record = loaded.record;
            let client_id: ClientId = Arc::from(record.client_id.as_str());
            let mut session = Session::new(
                client_id.clone(),
                record.expiry_interval,
                self.settings.session_limits.clone(),
            );
            for (filter, sub) in record.subscriptions {
                if !tree.insert(&filter, client_id.clone(), sub) {
                    if let Some(link) = &self.cluster {
                        // Announced by the link's first reconciliation.
                        drop(link.subscribed(&filter));
                    }
                }
                session.subscribe(filter, sub);
            }
            let mut next_seq = 0;
            for loaded in loaded.deliveries {
                let d = loaded.record;
                next_seq = next_seq.max(loaded.seq + 1);
                session.restore(
                    Delivery {
                        seq: loaded.seq,
                        message: Arc::new(d.message),
                        qos: d.qos,
                        retain: d.retain,
                        subscription_ids: d.subscription_ids,
                        stream: d.stream,
                        packet_id: loaded.packet_id,
                    },
                    loaded.released,
                );
            }
            for packet_id in loaded.incoming_qos2 {
                session.restore_incoming_qos2(packet_id);
            }
            let cell = SessionCell::new(
                client_id.clone(),
                next_seq,
                record.identity,
                Slot::Offline {
                    session: Box::new(session),
                    since_ms: record.disconnected_at_ms.unwrap_or(now),
                    will: None,
                },
            );
            cell.persistent.store(true, Ordering::Relaxed);
            sessions.insert(client_id, Arc::new(cell));
        }
        metrics::gauge!(m::SESSIONS).set(sessions.len() as f64);
        metrics::gauge!(m::SUBSCRIPTIONS).set(tree.len() as f64);
        tracing::info!(
            sessions = sessions.len(),
            subscriptions = tree.len(),
            retained = read(&self.retained).len(),
            "restored state from the data directory"
        );
        Ok(())
    }

    fn sessions_map(&self) -> MutexGuard<'_, HashMap<ClientId, Arc<SessionCell>>> {
        self.sessions.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The broker's settings.
    pub fn settings(&self) -> &BrokerSettings {
        &self.settings
    }

    /// The node's budget for bytes held by sessions, if counted.
    pub fn queue_budget(&self) -> Option<&Arc<QueueBudget>> {
        self.settings.session_limits.budget.as_ref()
    }

    /// A fresh connection ID.
    pub fn next_conn_id(&self) -> u64 {
        self.next_conn_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Resolves when shutdown starts; connections then send DISCONNECT 0x8B.
    pub fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.shutdown.subscribe()
    }

    /// Start a graceful shutdown.
    pub fn begin_shutdown(&self) {
        self.shutdown.send_replace(true);
    }

    /// Whether shutdown has started.
    pub fn is_shutting_down(&self) -> bool {
        *self.shutdown.borrow()
    }

    /// Number of sessions (connected or not).
    pub fn session_count(&self) -> usize {
        self.sessions_map().len()
    }

    /// Make durable everything written so far.
    pub async fn flush(&self) -> Result<(), StoreError> {
        self.store.flush().await
    }

    /// Learns when everything written so far is durable, sharing one flush
    /// with every other caller meanwhile (group commit); `false` if the
    /// flush failed.
    pub fn flushed(&self) -> tokio::sync::oneshot::Receiver<bool> {
        self.store.flushed()
    }

    /// Attach connection `conn_id` to the session of `client_id`, taking it
    /// over from another connection if one holds it.
    ///
    /// In a cluster, a session that is or may become persistent is claimed
    /// through Raft first: its previous owner (another node) drops its
    /// connection, and a session stored by another node is resumed here
    /// with its subscriptions.
    ///
    /// A session belongs to the identity that created it: a client of
    /// another identity ([`ConnectIdentity`]) neither resumes nor replaces
    /// it, and its connection is not disturbed, unless the new client may
    /// take over others' sessions. The cluster's record decides for
    /// persistent sessions (on every node); this node's registry for
    /// plain ones.
    ///
    /// # Errors
    ///
    /// [`AttachError::NotOwner`] when the session belongs to another
    /// identity (CONNACK 0x87); [`AttachError::Cluster`] when the cluster
    /// cannot commit the claim (no leader; CONNACK 0x88).
    pub async fn attach(
        &self,
        client_id: ClientId,
        clean_start: bool,
        expiry_interval: u32,
        conn_id: u64,
        who: ConnectIdentity,
    ) -> Result<Attached, AttachError> {
        let identity = who.identity.as_deref();
        let refused_here = |cell: Option<&Arc<SessionCell>>| {
            !who.may_take_over && cell.is_some_and(|c| c.belongs_to_another(identity, now_ms()))
        };
        if refused_here(self.sessions_map().get(&client_id)) {
            return Err(AttachError::NotOwner);
        }
        let mut resumed_elsewhere = None;
        let mut claimed_new = false;
        if let Some(link) = &self.cluster {
            if expiry_interval > 0 || !clean_start || link.has_session(&client_id) {
                let record = quicmq_raft::command::SessionRecord {
                    expiry_interval_s: expiry_interval,
                    identity: who.identity.clone(),
                    ..Default::default()
                };
                match link
                    .claim_session(&client_id, record, clean_start, who.may_take_over)
                    .await?
                {
                    crate::cluster::Claim::Granted { resumed, existed } => {
                        claimed_new = !existed;
                        resumed_elsewhere = resumed;
                    }
                    crate::cluster::Claim::NotOwner => return Err(AttachError::NotOwner),
                }
            }
        }
        self.take_back(&client_id);
        let (tx, events) = mpsc::unbounded_channel();
        let (cell, previous) = {
            let mut sessions = self.sessions_map();
            // Again under the lock: a client of another identity may have
            // connected with this ID meanwhile.
            if refused_here(sessions.get(&client_id)) {
                drop(sessions);
                if claimed_new {
                    // The cluster record this claim made is not ours to keep.
                    self.end_cluster_session(&client_id);
                }
                return Err(AttachError::NotOwner);
            }
            let cell = sessions
                .entry(client_id.clone())
                .or_insert_with(|| {
                    Arc::new(SessionCell::new(
                        client_id.clone(),
                        0,
                        who.identity.clone(),
                        Slot::Online {
                            conn_id: 0,
                            tx: mpsc::unbounded_channel().0,
                        },
                    ))
                })
                .clone();
            metrics::gauge!(m::SESSIONS).set(sessions.len() as f64);
            if clean_start {
                // A new session is the connecting identity's (the same one,
                // or one that may take over).
                cell.set_identity(who.identity.clone());
            } else if let Some(record) = &resumed_elsewhere {
                // Resumed from the cluster: the owner it records.
                cell.set_identity(record.record.identity.clone());
            }
            let previous = std::mem::replace(&mut *cell.slot(), Slot::Online { conn_id, tx });
            (cell, previous)
        };
        let old = match previous {
            Slot::Online { conn_id: 0, .. } => None,
            Slot::Online { tx, .. } => {
                let (reply, handed) = oneshot::channel();
                if tx.send(SessionEvent::TakeOver(reply)).is_ok() {
                    metrics::counter!(m::TAKEOVERS).increment(1);
                    tokio::time::timeout(Duration::from_secs(10), handed)
                        .await
                        .ok()
                        .and_then(Result::ok)
                } else {
                    None
                }
            }
            Slot::Offline { session, .. } => Some(*session),
        };
        // A local copy of a session another node owned since (this node
        // died and came back, or lost it in a takeover it did not see
        // yet) is stale: what the other node delivered and queued is in
        // the cluster's record and durable queue, not here.
        let old = match old {
            Some(stale) if resumed_elsewhere.as_ref().is_some_and(|c| c.moved) => {
                tracing::debug!(client_id = %client_id, "local copy of a session another node owned dropped");
                self.discard_subscriptions(&stale);
                if let Err(e) = self.store.remove_session(&client_id) {
                    tracing::error!(client_id = %client_id, error = %e, "could not remove a stale session from the store");
                }
                None
            }
            old => old,
        };
        let resumed_elsewhere = resumed_elsewhere.map(|c| c.record);
        let (mut session, session_present) = match old {
            Some(session) if !clean_start => (session, true),
            None if resumed_elsewhere.is_some() => {
                // Stored by another node: resume its subscriptions here.
                let mut session = Session::new(
                    client_id.clone(),
                    expiry_interval,
                    self.settings.session_limits.clone(),
                );
                let mut commits = Vec::new();
                if let Some(record) = &resumed_elsewhere {
                    for (filter, sub) in crate::cluster::sessions::subscriptions_of(record) {
                        commits.extend(self.add_subscription(&filter, &client_id, sub));
                        session.subscribe(filter, sub);
                    }
                }
                for commit in commits {
                    if !matches!(
                        tokio::time::timeout(Duration::from_secs(6), commit).await,
                        Ok(Ok(Ok(())))
                    ) {
                        tracing::warn!(client_id = %client_id, "a resumed subscription's route was not committed yet");
                    }
                }
                self.replay_durable_queue(&cell, &mut session);
                metrics::counter!("quicmq_cluster_sessions_resumed_total").increment(1);
                (session, true)
            }
            old => {
                if let Some(old) = old {
                    self.discard_subscriptions(&old);
                }
                if let Err(e) = self.store.remove_session(&client_id) {
                    tracing::error!(client_id = %client_id, error = %e, "could not remove a session from the store");
                }
                let session = Session::new(
                    client_id.clone(),
                    expiry_interval,
                    self.settings.session_limits.clone(),
                );
                (session, false)
            }
        };
        session.set_expiry_interval(expiry_interval);
        let was_persistent = cell.persistent.swap(expiry_interval > 0, Ordering::Relaxed);
        if expiry_interval > 0 {
            self.persist_session(&cell, &session, None);
        } else if was_persistent {
            // Resumed with expiry 0: the session now ends with this
            // connection, so its stored copy must not outlive a restart.
            if let Err(e) = self.store.remove_session(&client_id) {
                tracing::error!(client_id = %client_id, error = %e, "could not remove a session from the store");
            }
        }
        Ok(Attached {
            cell,
            session,
            session_present,
            events,
        })
    }

    /// A session resumed here from another node: its durable queue (what
    /// the previous owner queued and the client did not acknowledge) goes
    /// back in flight, resent with DUP in queue order, and into this
    /// node's store.
    fn replay_durable_queue(&self, cell: &SessionCell, session: &mut Session) {
        let Some(link) = &self.cluster else { return };
        let (next_id, queued): (u64, Vec<(u64, Vec<u8>)>) = link.cluster().shared().read(|s| {
            s.queue(&cell.client_id)
                .map(|q| {
                    (
                        q.next_id(),
                        q.iter().map(|(id, r)| (id, r.to_vec())).collect(),
                    )
                })
                .unwrap_or_default()
        });
        // This node's IDs for the session go on after every one used.
        cell.next_seq.fetch_max(next_id, Ordering::Relaxed);
        let mut packet_id: u16 = 0;
        let mut replayed = 0u64;
        for (id, bytes) in queued {
            let Some(record) = crate::cluster::durable::decode(&bytes) else {
                tracing::warn!(client_id = %cell.client_id, id, "undecodable durable queue entry skipped");
                continue;
            };
            if let Err(e) = self.store.put_delivery(&cell.client_id, id, &record) {
                tracing::error!(client_id = %cell.client_id, error = %e, "could not store a replayed delivery");
            }
            // In flight (with a packet ID, so resent with DUP) while packet
            // IDs last; the rest waits in the queue.
            packet_id = packet_id.saturating_add(1);
            let delivery = Delivery {
                seq: id,
                message: Arc::new(record.message),
                qos: record.qos,
                retain: record.retain,
                subscription_ids: record.subscription_ids,
                stream: record.stream,
                packet_id: (packet_id < u16::MAX).then_some(packet_id),
            };
            session.restore(delivery, false);
            replayed += 1;
        }
        if replayed > 0 {
            metrics::counter!(m::DURABLE_REPLAYED).increment(replayed);
            tracing::info!(client_id = %cell.client_id, replayed, "replayed the durable queue of a resumed session");
        }
    }

    /// Another node took `client_id`'s session (or this node left the
    /// cluster): close the local connection with 0x8E and forget the local
    /// copy. Its will is published only if the connection's own rules say
    /// so (a takeover publishes a will without delay).
    pub fn release_session(self: &Arc<Self>, client_id: &str) {
        let Some(cell) = self.sessions_map().remove(client_id) else {
            return;
        };
        metrics::gauge!(m::SESSIONS).set(self.session_count() as f64);
        let previous = std::mem::replace(
            &mut *cell.slot(),
            Slot::Online {
                conn_id: 0,
                tx: mpsc::unbounded_channel().0,
            },
        );
        cell.persistent.store(false, Ordering::Relaxed);
        if let Err(e) = self.store.remove_session(client_id) {
            tracing::error!(client_id, error = %e, "could not remove a session from the store");
        }
        match previous {
            Slot::Online { tx, .. } => {
                let (reply, handed) = oneshot::channel();
                if tx.send(SessionEvent::TakeOver(reply)).is_ok() {
                    metrics::counter!(m::TAKEOVERS).increment(1);
                    // The connection hands its session back as it closes;
                    // its subscriptions go with it.
                    let broker = self.clone();
                    let generation = self.moving(&cell.client_id);
                    let client_id = cell.client_id.clone();
                    tokio::spawn(async move {
                        match tokio::time::timeout(Duration::from_secs(10), handed).await {
                            Ok(Ok(session)) => broker.retire(session, generation).await,
                            // Never handed back: nothing to keep refusing for.
                            _ => broker.forget_moved(&client_id, generation),
                        }
                    });
                }
            }
            Slot::Offline { session, .. } => {
                let generation = self.moving(&cell.client_id);
                tokio::spawn(self.clone().retire(*session, generation));
            }
        }
    }

    /// `client_id`'s session is leaving for another node; returns the
    /// generation its [`Broker::retire`] goes by.
    fn moving(&self, client_id: &ClientId) -> u64 {
        let generation = self.moved_generation.fetch_add(1, Ordering::Relaxed);
        lock(&self.moved).insert(
            client_id.clone(),
            MovedSession {
                handover: None,
                filters: Vec::new(),
                generation,
            },
        );
        generation
    }

    /// Whether a message routed by log index `routed_by` matched sessions
    /// among `gone` (matched in the tree, no longer here) that moved to
    /// another node which that route table may not have known.
    fn missed_moved(&self, gone: &[ClientId], routed_by: u64) -> bool {
        let moved = lock(&self.moved);
        gone.iter().any(|client_id| {
            moved
                .get(client_id)
                .is_some_and(|m| m.handover.is_none_or(|at| routed_by < at))
        })
    }

    /// The subscriptions of a session that moved away, kept in the tree
    /// until the cluster routes each of its filters to the new owner (at
    /// most [`HANDOVER_WAIT`]) and for [`HANDOVER_GRACE`] more, for
    /// peers that route by an older state; then dropped, unless the
    /// session came back meanwhile ([`Broker::take_back`]).
    async fn retire(self: Arc<Self>, session: Session, generation: u64) {
        let client_id: ClientId = session.client_id().clone();
        let filters: Vec<String> = session.subscriptions().keys().cloned().collect();
        match lock(&self.moved)
            .get_mut(&client_id)
            .filter(|m| m.generation == generation)
        {
            Some(m) => m.filters.clone_from(&filters),
            // Back here already (its leftovers went then).
            None => return,
        }
        if let Some(link) = &self.cluster {
            let started = tokio::time::Instant::now();
            let mut revision = link.cluster().shared().watch_revision();
            let handover = loop {
                let (at, routed) = link.cluster().shared().read(|s| {
                    let owner = s.sessions().get(&*client_id).and_then(|r| r.owner);
                    let routed = match owner {
                        Some(owner) if owner != link.node_id() => filters.iter().all(|f| {
                            s.routes()
                                .nodes(f)
                                .is_some_and(|nodes| nodes.contains(&owner))
                        }),
                        // Gone, or back here: nothing to hand over.
                        _ => true,
                    };
                    (link.cluster().shared().revision(), routed)
                });
                if routed || started.elapsed() >= HANDOVER_WAIT {
                    break at;
                }
                let _ = tokio::time::timeout_at(started + HANDOVER_WAIT, revision.changed()).await;
            };
            {
                let mut moved = lock(&self.moved);
                if let Some(m) = moved
                    .get_mut(&client_id)
                    .filter(|m| m.generation == generation)
                {
                    m.handover = Some(handover);
                }
            }
            tokio::time::sleep(HANDOVER_GRACE).await;
        }
        // Under the lock, so that a client attaching again meanwhile
        // (`take_back`) finds either the leftovers or none, never its own
        // new subscriptions removed. Lock order: `moved`, then the tree.
        let mut moved = lock(&self.moved);
        if moved
            .get(&client_id)
            .is_some_and(|m| m.generation == generation)
        {
            moved.remove(&client_id);
            self.discard_filters(&client_id, &filters);
        }
    }

    /// Drops the record of move `generation` of `client_id` (unless the
    /// session came back or moved again since).
    fn forget_moved(&self, client_id: &ClientId, generation: u64) {
        let mut moved = lock(&self.moved);
        if moved
            .get(client_id)
            .is_some_and(|m| m.generation == generation)
        {
            moved.remove(client_id);
        }
    }

    /// `client_id` attaches here again: the subscriptions its session left
    /// behind when it moved away go now, so that the new ones are routed
    /// (and waited for) like any other.
    fn take_back(&self, client_id: &ClientId) {
        let mut moved = lock(&self.moved);
        if let Some(left) = moved.remove(client_id) {
            self.discard_filters(client_id, &left.filters);
        }
    }

    /// The member that owned `client_id`'s persistent session went down
    /// and the cluster gave the session to this node: hold it offline
    /// here, as if its client had disconnected when the member went down.
    /// Its subscriptions go into the local tree (the cluster already
    /// routes them here), its durable queue becomes its queued
    /// deliveries, and its expiry runs here. When the client comes back,
    /// here or on another node, it resumes as from any other owner.
    pub fn adopt_session(self: &Arc<Self>, client_id: &str, from: quicmq_raft::NodeId) {
        let Some(link) = &self.cluster else { return };
        let me = link.node_id();
        let Some(record) = link
            .cluster()
            .shared()
            .read(|s| s.sessions().get(client_id).cloned())
            .filter(|r| r.owner == Some(me))
        else {
            // Resumed or removed since.
            return;
        };
        if self.sessions_map().contains_key(client_id) {
            // A client of this ID is here already; it holds the session.
            return;
        }
        let id: ClientId = Arc::from(client_id);
        self.take_back(&id);
        let since_ms = record.disconnected_at_ms.unwrap_or_else(now_ms);
        let cell = Arc::new(SessionCell::new(
            id.clone(),
            0,
            record.identity.clone(),
            Slot::Online {
                conn_id: 0,
                tx: mpsc::unbounded_channel().0,
            },
        ));
        cell.persistent.store(true, Ordering::Relaxed);
        let mut session = Session::new(
            id.clone(),
            record.expiry_interval_s,
            self.settings.session_limits.clone(),
        );
        let subscriptions = crate::cluster::sessions::subscriptions_of(&record);
        for (filter, sub) in &subscriptions {
            session.subscribe(filter.clone(), *sub);
        }
        self.replay_durable_queue(&cell, &mut session);
        self.persist_session(&cell, &session, Some(since_ms));
        *cell.slot() = Slot::Offline {
            session: Box::new(session),
            since_ms,
            will: None,
        };
        {
            let mut sessions = self.sessions_map();
            if sessions.contains_key(client_id) {
                return;
            }
            sessions.insert(id.clone(), cell);
            metrics::gauge!(m::SESSIONS).set(sessions.len() as f64);
        }
        // Matched only once the session is in place. The routes are in the
        // cluster already (adopted with the session): nothing to wait for.
        for (filter, sub) in subscriptions {
            drop(self.add_subscription(&filter, &id, sub));
        }
        metrics::counter!("quicmq_cluster_sessions_adopted_total").increment(1);
        tracing::info!(
            client_id,
            from,
            "adopted the session of a member that went down"
        );
    }

    /// Drops local persistent sessions that the cluster says another node
    /// owns now (taken over while this node was down).
    pub fn release_sessions_owned_elsewhere(self: &Arc<Self>) {
        let Some(link) = &self.cluster else { return };
        let me = link.node_id();
        let stale: Vec<ClientId> = self
            .sessions_map()
            .keys()
            .filter(|id| link.session_owner(id).is_some_and(|owner| owner != me))
            .cloned()
            .collect();
        for client_id in stale {
            tracing::info!(client_id = %client_id, "session moved to another node while this one was down");
            self.release_session(&client_id);
        }
    }

    fn discard_subscriptions(&self, session: &Session) {
        self.discard_filters(session.client_id(), session.subscriptions().keys());
    }

    /// Removes `client_id`'s subscriptions to `filters` from the tree (and
    /// this node's routes for filters nobody else here wants).
    fn discard_filters<'a>(
        &self,
        client_id: &ClientId,
        filters: impl IntoIterator<Item = &'a String>,
    ) {
        let mut tree = write(&self.tree);
        for filter in filters {
            if tree.remove(filter, client_id) {
                if let Some(link) = &self.cluster {
                    link.unsubscribed(filter);
                }
            }
        }
        metrics::gauge!(m::SUBSCRIPTIONS).set(tree.len() as f64);
    }

    /// Write a persistent session's record.
    pub fn persist_session(
        &self,
        cell: &SessionCell,
        session: &Session,
        disconnected_at_ms: Option<u64>,
    ) {
        let record = SessionRecord {
            client_id: session.client_id().to_string(),
            expiry_interval: session.expiry_interval(),
            subscriptions: session
                .subscriptions()
                .iter()
                .map(|(f, s)| (f.clone(), *s))
                .collect(),
            disconnected_at_ms,
            identity: cell.identity().clone(),
        };
        if let Err(e) = self.store.put_session(&record) {
            tracing::error!(client_id = %record.client_id, error = %e, "could not store a session");
        }
        if let Some(link) = &self.cluster {
            link.session_changed(
                session.client_id(),
                crate::cluster::sessions::session_record(session, disconnected_at_ms),
            );
        }
    }

    /// In a cluster, removes this node's record of a session that ended.
    fn end_cluster_session(&self, client_id: &str) {
        if let Some(link) = &self.cluster {
            if link.session_owner(client_id) == Some(link.node_id()) {
                link.session_ended(client_id);
            }
        }
    }

    /// Apply a session's storage changes (persistent sessions only).
    pub fn apply_store_ops(&self, cell: &SessionCell, ops: Vec<StoreOp>) {
        if ops.is_empty() || !cell.persistent.load(Ordering::Relaxed) {
            return;
        }
        for op in ops {
            let result = match op {
                StoreOp::MarkSent { seq, packet_id } => {
                    self.store.mark_sent(&cell.client_id, seq, packet_id)
                }
                StoreOp::MarkReleased { seq, packet_id } => {
                    self.store.mark_released(&cell.client_id, seq, packet_id)
                }
                StoreOp::Remove { seq } => {
                    if let Some(link) = &self.cluster {
                        link.durable().ack(&cell.client_id, seq);
                    }
                    self.store.remove_delivery(&cell.client_id, seq)
                }
                StoreOp::AddIncoming { packet_id } => {
                    self.store.set_incoming(&cell.client_id, packet_id, true)
                }
                StoreOp::RemoveIncoming { packet_id } => {
                    self.store.set_incoming(&cell.client_id, packet_id, false)
                }
            };
            if let Err(e) = result {
                tracing::error!(client_id = %cell.client_id, error = %e, "could not update a stored delivery");
            }
        }
    }

    /// Detach a connection from its session. A session with expiry 0 ends
    /// here; others are parked offline until they expire.
    pub fn detach(&self, cell: &Arc<SessionCell>, detach: Detach) {
        let Detach {
            conn_id,
            mut session,
            mut events,
            mut takeover,
            will,
            will_key,
        } = detach;
        // Locks are released before the will is published: publishing
        // takes them again.
        let mut publish_will = None;
        // A delayed will the cluster holds: when it is due.
        let mut release_later = None;
        let cluster_will = will_key.is_some() && self.cluster.is_some();
        let mut ended = None;
        {
            let mut sessions = self.sessions_map();
            let mut slot = cell.slot();
            let ours = matches!(&*slot, Slot::Online { conn_id: c, .. } if *c == conn_id);
            while let Ok(event) = events.try_recv() {
                match event {
                    SessionEvent::Deliver(d) => self.enqueue_into(cell, &mut session, d),
                    SessionEvent::TakeOver(reply) => takeover = Some(reply),
                }
            }
            session.detach();
            let will_now = will.as_ref().is_some_and(|w| {
                w.properties.will_delay_interval.unwrap_or(0) == 0 || !session.is_persistent()
            });
            if !ours {
                // Taken over: the new connection waits for the session.
                if let Some(reply) = takeover {
                    let _ = reply.send(session);
                }
                if will_now {
                    publish_will = will;
                }
            } else if !session.is_persistent() {
                sessions.remove(&cell.client_id);
                metrics::gauge!(m::SESSIONS).set(sessions.len() as f64);
                *slot = Slot::Offline {
                    session: Box::new(Session::new(
                        cell.client_id.clone(),
                        0,
                        self.settings.session_limits.clone(),
                    )),
                    since_ms: 0,
                    will: None,
                };
                ended = Some(session);
                publish_will = will;
            } else {
                let now = now_ms();
                self.persist_session(cell, &session, Some(now));
                let pending = match will {
                    Some(w) if !will_now && cluster_will => {
                        let pending = PendingWill::new(w, now, session.expiry_interval());
                        release_later = Some(pending.due_ms());
                        None
                    }
                    Some(w) if !will_now => Some(Box::new(PendingWill::new(
                        w,
                        now,
                        session.expiry_interval(),
                    ))),
                    Some(w) => {
                        publish_will = Some(w);
                        None
                    }
                    None => None,
                };
                *slot = Slot::Offline {
                    session: Box::new(session),
                    since_ms: now,
                    will: pending,
                };
            }
        }
        if let Some(session) = ended {
            self.discard_subscriptions(&session);
            self.end_cluster_session(&cell.client_id);
            if cell.persistent.swap(false, Ordering::Relaxed) {
                // Expiry set to 0 on DISCONNECT: the stored session ends too.
                if let Err(e) = self.store.remove_session(&cell.client_id) {
                    tracing::error!(client_id = %cell.client_id, error = %e, "could not remove a session from the store");
                }
            }
        }
        match (will_key, &self.cluster) {
            (Some(key), Some(link)) => {
                // The cluster holds the will: release it (the leader
                // publishes it when due, unless the client resumes first)
                // or drop it. Nothing is kept or published here.
                if let Some(due) = release_later {
                    link.release_will(key, due);
                } else if publish_will.is_some() {
                    link.release_will(key, now_ms());
                } else {
                    link.remove_will(key);
                }
            }
            _ => {
                if let Some(will) = publish_will {
                    self.publish_will(&cell.client_id, will);
                }
            }
        }
    }

    /// Publishes a client's will as if the client had published it.
    pub(crate) fn publish_will(&self, client_id: &str, will: LastWill) {
        metrics::counter!(m::WILLS_PUBLISHED).increment(1);
        let message = Message::from_publish(
            quicmq_proto::mqtt::Publish {
                dup: false,
                qos: will.qos,
                retain: will.retain,
                topic: will.topic,
                packet_id: None,
                properties: will.properties,
                payload: will.payload,
            },
            Some(client_id.to_string()),
            now_ms(),
        );
        self.publish(Arc::new(message));
    }

    /// Add a subscription to the tree (the session keeps its own copy).
    ///
    /// In a cluster, a new subscription also needs its filter routed to this
    /// node: the returned receiver answers once that is committed (wait for
    /// it before SUBACK, so a publish on any node that follows the SUBACK
    /// reaches the subscriber).
    ///
    /// Messages routed since the connection's reader announced `filter`
    /// ([`Broker::announce_subscription`]) are delivered through the new
    /// subscription now.
    pub fn add_subscription(
        &self,
        filter: &str,
        client_id: &ClientId,
        mut sub: Subscription,
    ) -> Option<RouteCommit> {
        // A filter the ACL lets the session read entirely costs its
        // deliveries no check (unknown session: every delivery checked).
        // Without an ACL nothing is checked: no lookup either.
        let acl = self.settings.auth.acl();
        if !acl.is_empty() {
            let cell = self.sessions_map().get(client_id).cloned();
            sub.reads_all_under = cell
                .filter(|cell| cell.reads_all(&acl, filter))
                .map(|_| acl.generation());
        }
        let mut tree = write(&self.tree);
        let existed = tree.insert(filter, client_id.clone(), sub);
        metrics::gauge!(m::SUBSCRIPTIONS).set(tree.len() as f64);
        let held = self.settle_announced(client_id, filter);
        drop(tree);
        if !held.is_empty() {
            self.deliver_held(client_id, sub, held);
        }
        match (&self.cluster, existed) {
            (Some(link), false) => Some(link.subscribed(filter)),
            _ => None,
        }
    }

    /// A connection's reader decoded a SUBSCRIBE with `filter`: until the
    /// connection applies or refuses it ([`Broker::add_subscription`],
    /// [`Broker::discard_announced`]), messages routed to the filter are
    /// held for the client. Shared and invalid filters are not announced.
    pub fn announce_subscription(&self, client_id: &ClientId, filter: &str) {
        if parse_shared(filter).is_some()
            || validate_topic_filter(filter).is_err()
            || !self.settings.topic_limits.admits(filter)
        {
            return;
        }
        let mut early = self.early();
        early.announce(client_id, filter);
        self.early_len.store(early.len(), Ordering::Release);
    }

    /// The connection refused `filter`: what was held for it is dropped.
    pub fn discard_announced(&self, client_id: &str, filter: &str) {
        let dropped = self.settle_announced(client_id, filter).len();
        if dropped > 0 {
            metrics::counter!(m::EARLY_SUBSCRIPTION_MESSAGES, "outcome" => "dropped")
                .increment(dropped as u64);
        }
    }

    /// The connection of `client_id` ended: its announcements go.
    pub fn forget_announced(&self, client_id: &str) {
        if self.early_len.load(Ordering::Acquire) == 0 {
            return;
        }
        let mut early = self.early();
        early.forget(client_id);
        self.early_len.store(early.len(), Ordering::Release);
    }

    /// Applying a filter: call with the tree write-locked.
    fn settle_announced(&self, client_id: &str, filter: &str) -> Vec<Arc<Message>> {
        if self.early_len.load(Ordering::Acquire) == 0 {
            return Vec::new();
        }
        let mut early = self.early();
        let held = early.settle(client_id, filter);
        self.early_len.store(early.len(), Ordering::Release);
        held
    }

    fn early(&self) -> MutexGuard<'_, EarlySubscriptions> {
        self.early.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Deliver messages held for an announced filter through the
    /// subscription it became.
    fn deliver_held(&self, client_id: &ClientId, sub: Subscription, held: Vec<Arc<Message>>) {
        let Some(cell) = self.sessions_map().get(client_id).cloned() else {
            return;
        };
        let acl = self.settings.auth.acl();
        let now = now_ms();
        for message in held {
            if message.expires_at_ms.is_some_and(|at| at <= now)
                || (!acl.is_empty() && !cell.may_read(&acl, &message.topic))
            {
                continue;
            }
            let only = Match {
                client_id: client_id.clone(),
                subscription: sub,
                shared: false,
            };
            for target in merge_matches(vec![only], &message, acl.generation()) {
                self.deliver(&cell, target.delivery(&cell, &message));
                metrics::counter!(m::EARLY_SUBSCRIPTION_MESSAGES, "outcome" => "delivered")
                    .increment(1);
            }
        }
    }

    /// Remove a subscription from the tree.
    pub fn remove_subscription(&self, filter: &str, client_id: &str) {
        let mut tree = write(&self.tree);
        let removed = tree.remove(filter, client_id);
        metrics::gauge!(m::SUBSCRIPTIONS).set(tree.len() as f64);
        drop(tree);
        if let (Some(link), true) = (&self.cluster, removed) {
            link.unsubscribed(filter);
        }
    }

    /// The cluster link, when this broker is a member of a cluster.
    pub fn cluster(&self) -> Option<&Arc<ClusterLink>> {
        self.cluster.as_ref()
    }

    /// Replaces every retained message (the cluster's state was loaded or
    /// replaced by a snapshot).
    pub fn replace_retained(&self, messages: Vec<Message>) {
        let mut retained = write(&self.retained);
        *retained = RetainedMessages::default();
        for message in messages {
            retained.set(Arc::new(message));
        }
        metrics::gauge!(m::RETAINED).set(retained.len() as f64);
    }

    /// Sets (`Some`) or deletes (`None`) the retained message of `topic`
    /// as the cluster committed it.
    pub fn mirror_retained(&self, topic: &str, message: Option<Message>) {
        let mut retained = write(&self.retained);
        match message {
            Some(message) => retained.set(Arc::new(message)),
            None => retained.remove(topic),
        }
        metrics::gauge!(m::RETAINED).set(retained.len() as f64);
    }

    /// Retained messages matching `filter` (not expired at `now_ms`).
    pub fn retained_matching(&self, filter: &str, now_ms: u64) -> Vec<Arc<Message>> {
        read(&self.retained).matching(filter, now_ms)
    }

    /// Number of retained messages.
    pub fn retained_count(&self) -> usize {
        read(&self.retained).len()
    }

    /// Route a published message to every matching session and update the
    /// retained messages (in a cluster, the retained update is proposed in
    /// the background: for wills and other messages of the broker's own).
    pub fn publish(&self, message: Arc<Message>) -> RouteOutcome {
        if message.retain {
            match &self.cluster {
                Some(link) => {
                    let link = link.clone();
                    let retained = message.clone();
                    tokio::spawn(async move {
                        if let Err(e) = link.store_retained(&retained).await {
                            tracing::warn!(topic = %retained.topic, "retained message not committed: {e}");
                        }
                    });
                }
                None => self.retain_locally(&message),
            }
        }
        self.route(message)
    }

    /// A client's PUBLISH: the retained update first (in a cluster,
    /// committed through Raft before this returns), then routing.
    ///
    /// # Errors
    ///
    /// When the cluster could not commit the retained message; nothing was
    /// routed then.
    pub async fn publish_from_client(
        &self,
        message: Arc<Message>,
    ) -> Result<RouteOutcome, quicmq_raft::ClusterError> {
        if message.retain {
            match &self.cluster {
                Some(link) => link.store_retained(&message).await?,
                None => self.retain_locally(&message),
            }
        }
        Ok(self.route(message))
    }

    fn retain_locally(&self, message: &Arc<Message>) {
        let mut retained = write(&self.retained);
        if message.payload.is_empty() {
            retained.remove(&message.topic);
        } else {
            retained.set(message.clone());
        }
        metrics::gauge!(m::RETAINED).set(retained.len() as f64);
        drop(retained);
        if let Err(e) = self.store.put_retained(message) {
            tracing::error!(topic = %message.topic, error = %e, "could not store a retained message");
        }
    }

    /// Deliver to local sessions and, in a cluster, forward to the peers
    /// with matching routes.
    fn route(&self, message: Arc<Message>) -> RouteOutcome {
        let Some(link) = &self.cluster else {
            return self.deliver_local(message, &Selection::ALL, u64::MAX);
        };
        let mut plan = link.plan(&message.topic);
        let routed_by = plan.routed_by;
        let forwarded = plan.peers.len();
        let remote_groups = std::mem::take(&mut plan.remote_groups);
        let local_only = |key: &str| !remote_groups.contains(key);
        let selection = Selection {
            ordinary: true,
            shared: &local_only,
            member: &|_| true,
        };
        let mut outcome = self.deliver_local(message.clone(), &selection, routed_by);
        if forwarded > 0 {
            outcome.durable.extend(link.forward(&message, plan));
            outcome.matched += forwarded;
        }
        outcome
    }

    /// A message another node forwarded: delivered to this node's
    /// ordinary subscribers (when `ordinary`) and to one member of each of
    /// `shared_groups`; never forwarded again, never retained here.
    /// `routed_by`: the log index its sender routed it by.
    pub fn deliver_forwarded(
        &self,
        message: Arc<Message>,
        ordinary: bool,
        shared_groups: &[String],
        routed_by: u64,
    ) -> RouteOutcome {
        let listed = |key: &str| shared_groups.iter().any(|g| g == key);
        let selection = Selection {
            ordinary,
            shared: &listed,
            member: &|_| true,
        };
        self.deliver_local(message, &selection, routed_by)
    }

    /// Delivers to the local sessions `selection` picks. `routed_by`: the
    /// log index by which the message was routed here (a subscription of
    /// a session that moved away reached it only if that is older than
    /// the new owner's routes).
    fn deliver_local(
        &self,
        message: Arc<Message>,
        selection: &Selection<'_>,
        routed_by: u64,
    ) -> RouteOutcome {
        let acl = self.settings.auth.acl();
        // A shared group's turn passes over members that may not read the
        // topic (the sessions lock is taken inside the tree's read lock;
        // nothing takes the tree's lock while holding the sessions lock,
        // except `restore` before the broker is shared).
        let may_read = |client_id: &ClientId| {
            acl.is_empty()
                || self
                    .sessions_map()
                    .get(client_id)
                    .is_none_or(|cell| cell.may_read(&acl, &message.topic))
        };
        let selection = Selection {
            ordinary: selection.ordinary,
            shared: selection.shared,
            member: &may_read,
        };
        let mut matches = Vec::new();
        let mut held = 0;
        {
            let tree = read(&self.tree);
            tree.matches_selected(&message.topic, &selection, &mut matches);
            // Under the tree lock, so that a filter is either in the tree
            // or still announced, never neither.
            if selection.ordinary && self.early_len.load(Ordering::Acquire) > 0 {
                held = self
                    .early()
                    .hold(&message, |c| matches.iter().any(|m| m.client_id == *c));
                if held > 0 {
                    metrics::counter!(m::EARLY_SUBSCRIPTION_MESSAGES, "outcome" => "held")
                        .increment(held as u64);
                }
            }
        }
        let targets = merge_matches(matches, &message, acl.generation());
        if targets.is_empty() {
            return RouteOutcome {
                matched: held,
                ..RouteOutcome::default()
            };
        }
        let mut gone = Vec::new();
        let cells: Vec<(Arc<SessionCell>, Target)> = {
            let sessions = self.sessions_map();
            targets
                .into_iter()
                .filter_map(|t| match sessions.get(&t.client_id) {
                    Some(c) => Some((c.clone(), t)),
                    None => {
                        gone.push(t.client_id);
                        None
                    }
                })
                .collect()
        };
        let mut outcome = RouteOutcome {
            matched: held,
            ..RouteOutcome::default()
        };
        if message.qos != QoS::AtMostOnce && !gone.is_empty() && self.missed_moved(&gone, routed_by)
        {
            // Routed here for a session that moved, by a route table that
            // may not know its new owner: refused, so that it is sent
            // again by the new routes.
            metrics::counter!(m::MESSAGES_DROPPED, "reason" => "session_moved").increment(1);
            let (refused, completion) = oneshot::channel();
            let _ = refused.send(false);
            outcome.durable.push(completion);
        }
        for (cell, target) in cells {
            if !acl.is_empty() && !target.reads_all && !cell.may_read(&acl, &message.topic) {
                // Its subscription overlaps topics it may not read.
                metrics::counter!(m::ACL_DENIED, "access" => "read").increment(1);
                continue;
            }
            let delivery = target.delivery(&cell, &message);
            outcome.matched += 1;
            let (persisted, durable) = self.deliver(&cell, delivery);
            outcome.persisted |= persisted;
            outcome.durable.extend(durable);
        }
        outcome
    }

    /// Hand a delivery to a session. Returns whether it was written to
    /// durable storage and, in a cluster, the commit of the session's
    /// durable queue to wait for.
    pub fn deliver(
        &self,
        cell: &SessionCell,
        delivery: Delivery,
    ) -> (bool, Option<oneshot::Receiver<bool>>) {
        let (persisted, durable) = self.persist_delivery(cell, &delivery);
        let mut slot = cell.slot();
        match &mut *slot {
            Slot::Online { tx, .. } => {
                if let Err(mpsc::error::SendError(SessionEvent::Deliver(d))) =
                    tx.send(SessionEvent::Deliver(delivery))
                {
                    // The connection is gone and its session with it.
                    self.drop_delivery(cell, d.seq, "session_closed");
                }
            }
            Slot::Offline { session, .. } => {
                self.enqueue_into(cell, session, delivery);
            }
        }
        (persisted, durable)
    }

    /// Write a QoS 1/2 delivery to a persistent session to durable storage:
    /// this node's store and, in a cluster, the session's replicated
    /// durable queue (the receiver says when that committed).
    pub fn persist_delivery(
        &self,
        cell: &SessionCell,
        delivery: &Delivery,
    ) -> (bool, Option<oneshot::Receiver<bool>>) {
        if delivery.qos == QoS::AtMostOnce || !cell.persistent.load(Ordering::Relaxed) {
            return (false, None);
        }
        let record = DeliveryRecord {
            message: (*delivery.message).clone(),
            qos: delivery.qos,
            retain: delivery.retain,
            subscription_ids: delivery.subscription_ids.clone(),
            stream: delivery.stream,
        };
        let durable = self
            .cluster
            .as_ref()
            .map(|link| link.durable().push(&cell.client_id, delivery.seq, &record));
        match self
            .store
            .put_delivery(&cell.client_id, delivery.seq, &record)
        {
            Ok(()) => (true, durable),
            Err(e) => {
                tracing::error!(client_id = %cell.client_id, error = %e, "could not store a delivery");
                (false, durable)
            }
        }
    }

    /// Queue a delivery into a session the caller holds, counting drops.
    pub fn enqueue_into(&self, cell: &SessionCell, session: &mut Session, delivery: Delivery) {
        match session.enqueue(delivery) {
            EnqueueOutcome::Queued => {}
            EnqueueOutcome::DroppedQueueFull { seqs } => {
                metrics::counter!(m::MESSAGES_DROPPED, "reason" => "queue_full")
                    .increment(seqs.len() as u64);
            }
            EnqueueOutcome::DroppedNodeBudget { .. } => {
                metrics::counter!(m::MESSAGES_DROPPED, "reason" => "node_memory").increment(1);
            }
            EnqueueOutcome::DroppedOffline => {
                metrics::counter!(m::MESSAGES_DROPPED, "reason" => "qos0_offline").increment(1);
            }
        }
        self.apply_store_ops(cell, session.take_store_ops());
    }

    fn drop_delivery(&self, cell: &SessionCell, seq: u64, reason: &'static str) {
        metrics::counter!(m::MESSAGES_DROPPED, "reason" => reason).increment(1);
        self.apply_store_ops(cell, vec![StoreOp::Remove { seq }]);
    }

    /// End expired offline sessions and publish wills whose delay is over.
    /// Call periodically.
    pub fn sweep(&self, now_ms: u64) {
        let mut wills = Vec::new();
        let mut ended = Vec::new();
        {
            let mut sessions = self.sessions_map();
            sessions.retain(|client_id, cell| {
                let mut slot = cell.slot();
                let Slot::Offline {
                    session,
                    since_ms,
                    will,
                } = &mut *slot
                else {
                    return true;
                };
                if will.as_ref().is_some_and(|w| w.is_due(now_ms)) {
                    if let Some(w) = will.take() {
                        wills.push((client_id.clone(), w.into_will()));
                    }
                }
                let expired = session_expired(session, *since_ms, now_ms);
                if expired {
                    if let Some(w) = will.take() {
                        wills.push((client_id.clone(), w.into_will()));
                    }
                    let session = std::mem::replace(
                        &mut **session,
                        Session::new(client_id.clone(), 0, self.settings.session_limits.clone()),
                    );
                    ended.push(session);
                }
                !expired
            });
            metrics::gauge!(m::SESSIONS).set(sessions.len() as f64);
        }
        for session in ended {
            tracing::debug!(client_id = %session.client_id(), "session expired");
            metrics::counter!(m::SESSIONS_EXPIRED).increment(1);
            self.discard_subscriptions(&session);
            self.end_cluster_session(session.client_id());
            if let Err(e) = self.store.remove_session(session.client_id()) {
                tracing::error!(error = %e, "could not remove an expired session");
            }
        }
        for (client_id, will) in wills {
            self.publish_will(&client_id, will);
        }
        write(&self.retained).remove_expired(now_ms);
    }

    /// Tell every connection to close with DISCONNECT 0x8B and park every
    /// session; `true` once no connection holds a session any more.
    pub fn all_detached(&self) -> bool {
        self.sessions_map()
            .values()
            .all(|cell| !matches!(&*cell.slot(), Slot::Online { conn_id, .. } if *conn_id != 0))
    }
}

struct Target {
    client_id: ClientId,
    qos: QoS,
    retain: bool,
    subscription_ids: Vec<u32>,
    stream: u64,
    /// A subscription it matched through lets it read every topic of its
    /// filter under the ACL in force: no read check needed.
    reads_all: bool,
}

impl Target {
    /// The delivery of `message` to this target's session `cell`.
    fn delivery(self, cell: &SessionCell, message: &Arc<Message>) -> Delivery {
        Delivery {
            seq: cell.next_seq(),
            message: message.clone(),
            qos: self.qos,
            retain: self.retain,
            subscription_ids: self.subscription_ids,
            stream: self.stream,
            packet_id: None,
        }
    }
}

/// One delivery per session: the highest QoS of its matching
/// subscriptions and all their identifiers (MQTT 5.0 §3.3.4).
fn merge_matches(matches: Vec<Match>, message: &Message, acl_generation: u64) -> Vec<Target> {
    let mut targets: Vec<Target> = Vec::with_capacity(matches.len());
    // Only a topic with several matches can match one session twice.
    let mut index: HashMap<ClientId, usize> = HashMap::new();
    let merging = matches.len() > 1;
    for m in matches {
        let options = m.subscription.options;
        if options.no_local && message.publisher.as_deref() == Some(&*m.client_id) {
            continue;
        }
        let qos = options.qos.min(message.qos);
        let retain = options.retain_as_published && message.retain;
        let reads_all = m.subscription.reads_all_under == Some(acl_generation);
        let slot = if merging {
            index.get(&m.client_id).copied()
        } else {
            None
        };
        match slot {
            Some(i) => {
                let t = &mut targets[i];
                t.qos = t.qos.max(qos);
                t.retain |= retain;
                t.reads_all |= reads_all;
                t.subscription_ids.extend(m.subscription.identifier);
            }
            None => {
                if merging {
                    index.insert(m.client_id.clone(), targets.len());
                }
                targets.push(Target {
                    client_id: m.client_id,
                    qos,
                    retain,
                    subscription_ids: m.subscription.identifier.into_iter().collect(),
                    stream: m.subscription.stream,
                    reads_all,
                });
            }
        }
    }
    targets
}
