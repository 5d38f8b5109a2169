//! [`ClusterLink`]: what the broker uses of the cluster while it serves
//! clients — the route table (mirrored from `ClusterState`), this node's
//! own routes (kept in step with its local subscriptions), publish
//! forwarding to peers, and retained messages committed through Raft.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock, Weak};
use std::time::Duration;

use quicmq_raft::command::{
    Command, CommandResponse, MemberState, RetainOp, RetainedRecord, SessionRecord, WillKey, WillOp,
};
use quicmq_raft::state::StateChange;
use quicmq_raft::{ClusterError, ClusterNode, NodeId};
use tokio::sync::{broadcast, mpsc, oneshot, watch};

use super::durable::DurableQueues;
use super::forward::Forwarder;
use super::route_table::RouteTable;
use super::sessions::{self, SessionChange};
use super::wills::WillChanges;
use crate::broker::{Broker, Message};
use quicmq_proto::mqtt::{LastWill, QoS};

/// How long route changes gather before one proposal carries them all.
const ROUTE_BATCH_WINDOW: Duration = Duration::from_millis(2);
/// How often this node's routes are compared with its subscriptions.
const ROUTE_RECONCILE_INTERVAL: Duration = Duration::from_secs(5);

/// Where the broker sends a published message, besides its own sessions.
#[derive(Debug, Default)]
pub struct ForwardPlan {
    /// Peers to forward to, each with whether it delivers to ordinary
    /// subscribers and which shared groups it was picked for.
    pub peers: Vec<(NodeId, bool, Vec<String>)>,
    /// Shared groups (`$share/G/F`) picked for another node: this node
    /// must not deliver to them.
    pub remote_groups: HashSet<String>,
    /// The log index of the route table the plan was made with (at
    /// least).
    pub routed_by: u64,
    /// The newest log index the route table may reflect: a receiver
    /// delivers once it has processed that much (a session the table
    /// routes to it must be in place there, not only its route).
    pub wait_for: u64,
}

/// A change of this node's local subscriptions, for the route batcher.
enum RouteRequest {
    /// A filter gained a local subscriber; answer once the route is
    /// committed.
    Changed(String, Option<oneshot::Sender<Result<(), String>>>),
    /// Compare this node's routes with its subscriptions now.
    Reconcile,
}

/// The cluster's record of a session this node just claimed.
#[derive(Debug, Clone)]
pub struct ClaimedSession {
    /// The session as the cluster knows it.
    pub record: SessionRecord,
    /// Whether another node owned it until now: a copy this node still
    /// holds from before is stale (the other node may have queued and
    /// delivered since), and the session resumes from the cluster's
    /// record and durable queue instead.
    pub moved: bool,
}

/// What the cluster answered a session claim.
#[derive(Debug, Clone)]
pub enum Claim {
    /// This node owns the session now.
    Granted {
        /// The stored session this node may resume (`None` on clean start
        /// or when there was none).
        resumed: Option<ClaimedSession>,
        /// Whether the cluster held an unexpired session for the client ID
        /// before the claim.
        existed: bool,
    },
    /// The session belongs to another identity; nothing changed.
    NotOwner,
}

/// The broker's handle on the cluster.
pub struct ClusterLink {
    node: ClusterNode,
    routes: RwLock<RouteTable>,
    /// Local subscribers per exact filter string.
    local_filters: Mutex<HashMap<String, usize>>,
    route_tx: mpsc::UnboundedSender<RouteRequest>,
    session_tx: mpsc::UnboundedSender<SessionChange>,
    /// Session claims (and wills of connecting clients), proposed in
    /// batches.
    claims: super::claims::ClaimBatcher,
    /// Releases and removals of this node's wills, in order.
    wills: WillChanges,
    /// This process run, in the wills it holds (a random number).
    run: u64,
    forwarder: Forwarder,
    durable: DurableQueues,
    broker: OnceLock<Weak<Broker>>,
    /// The log index up to which this node has processed the applied
    /// state (route table rebuilt, adopted and released sessions in
    /// place); barriers and forwarded messages wait on this.
    routed: watch::Sender<u64>,
    /// The newest log index `routes` may reflect (it is rebuilt from the
    /// live state, which may be ahead of what was processed).
    table_revision: AtomicU64,
}

/// How long a peer may take to answer a route barrier.
const BARRIER_TIMEOUT: Duration = Duration::from_millis(800);

impl ClusterLink {
    /// Links a broker to `node`: mirrors the route table, starts the route
    /// batcher, the forwarder and the durable queue writer (queues of at
    /// most `durable_limit` messages per session). Call from within the
    /// runtime.
    pub fn start(node: ClusterNode, durable_limit: u32) -> Arc<ClusterLink> {
        let (route_tx, route_rx) = mpsc::unbounded_channel();
        let (session_tx, session_rx) = mpsc::unbounded_channel();
        let (claims, claim_rx) = super::claims::ClaimBatcher::new();
        let (wills, will_rx) = WillChanges::new();
        let link = Arc::new(ClusterLink {
            forwarder: Forwarder::new(node.clone()),
            durable: DurableQueues::start(node.clone(), durable_limit),
            claims,
            wills,
            run: rand::random(),
            node,
            routes: RwLock::new(RouteTable::default()),
            local_filters: Mutex::new(HashMap::new()),
            route_tx,
            session_tx,
            broker: OnceLock::new(),
            routed: watch::channel(0).0,
            table_revision: AtomicU64::new(0),
        });
        // Nothing to process yet: the table is the state.
        let revision = link.rebuild_routes();
        link.routed_up_to(revision);
        tokio::spawn(follow_state(
            Arc::downgrade(&link),
            link.node.shared().subscribe(),
        ));
        tokio::spawn(batch_routes(Arc::downgrade(&link), route_rx));
        tokio::spawn(sessions::commit_changes(Arc::downgrade(&link), session_rx));
        tokio::spawn(super::claims::run(Arc::downgrade(&link), claim_rx));
        tokio::spawn(super::wills::publish_due(
            Arc::downgrade(&link),
            link.node.shared().subscribe(),
        ));
        tokio::spawn(super::wills::commit(Arc::downgrade(&link), will_rx));
        tokio::spawn(release_wills_of_earlier_runs(
            Arc::downgrade(&link),
            link.run,
        ));
        link
    }

    /// The broker this link serves, while it runs.
    pub(crate) fn broker(&self) -> Option<Arc<Broker>> {
        self.broker.get().and_then(Weak::upgrade)
    }

    /// Commits the will of a client connecting with it, before its
    /// CONNACK: from then on the cluster publishes it if this node dies.
    /// `session_expiry_s` is the session's expiry interval (0: a plain
    /// session). Returns the key later releases and removals name.
    ///
    /// # Errors
    ///
    /// When it cannot be committed (no leader, or this node is down).
    pub async fn hold_will(
        &self,
        client_id: &str,
        will: &LastWill,
        session_expiry_s: u32,
    ) -> Result<WillKey, ClusterError> {
        let key = WillKey {
            client_id: client_id.to_owned(),
            node_id: self.node_id(),
            connection: rand::random(),
        };
        let op = WillOp::Hold {
            key: key.clone(),
            will: super::wills::held_will(will, self.run, session_expiry_s),
        };
        match self.claims.propose(Command::Wills(vec![op])).await? {
            CommandResponse::Batch(answers) if answers == [CommandResponse::Applied(true)] => {
                Ok(key)
            }
            _ => Err(ClusterError::Refused(
                "this node is down in the cluster: it cannot hold wills".into(),
            )),
        }
    }

    /// The connection of `key` ended without a normal DISCONNECT: its
    /// will is due at `due_at_ms` (the leader publishes it) unless the
    /// client resumes its session first.
    pub fn release_will(&self, key: WillKey, due_at_ms: u64) {
        self.wills.release(key, due_at_ms);
    }

    /// The connection of `key` ended normally: its will is dropped.
    pub fn remove_will(&self, key: WillKey) {
        self.wills.remove(key);
    }

    /// Waits (at most `timeout`) until this node's will releases and
    /// removals are committed (before a graceful shutdown).
    pub async fn flush_wills(&self, timeout: Duration) {
        self.wills.flush(timeout).await;
    }

    /// Tells the link which broker it serves (for sessions taken over by
    /// other nodes).
    pub fn set_broker(&self, broker: &Arc<Broker>) {
        let _ = self.broker.set(Arc::downgrade(broker));
    }

    /// Takes ownership of `client_id`'s persistent session through Raft,
    /// as the identity in `record` ([`SessionRecord::identity`]). The
    /// previous owner, if another live node, drops its connection
    /// (takeover, 0x8E) when it applies the claim. A session of another
    /// identity is refused ([`Claim::NotOwner`]) unless `may_take_over`.
    ///
    /// # Errors
    ///
    /// When the claim cannot be committed (no leader).
    pub async fn claim_session(
        &self,
        client_id: &str,
        record: SessionRecord,
        clean_start: bool,
        may_take_over: bool,
    ) -> Result<Claim, ClusterError> {
        let response = self
            .claims
            .propose(Command::ClaimSession {
                client_id: client_id.to_owned(),
                node_id: self.node_id(),
                session: record,
                clean_start,
                may_take_over,
                now_ms: crate::broker::now_ms(),
            })
            .await?;
        match response {
            CommandResponse::Claimed {
                previous_owner,
                previous,
            } => {
                if let Some(owner) = previous_owner {
                    metrics::counter!("quicmq_cluster_session_takeovers_total").increment(1);
                    tracing::debug!(
                        client_id,
                        from = owner,
                        "session taken over from another node"
                    );
                }
                let existed = previous.is_some();
                let resumed = previous
                    .filter(|_| !clean_start)
                    .map(|record| ClaimedSession {
                        record,
                        moved: previous_owner.is_some_and(|owner| owner != self.node_id()),
                    });
                Ok(Claim::Granted { resumed, existed })
            }
            CommandResponse::ClaimRefused => Ok(Claim::NotOwner),
            other => Err(ClusterError::Refused(format!(
                "unexpected claim response {other:?}"
            ))),
        }
    }

    /// Whether the cluster holds a session for `client_id`.
    pub fn has_session(&self, client_id: &str) -> bool {
        self.node
            .shared()
            .read(|s| s.sessions().contains_key(client_id))
    }

    /// The owner of `client_id`'s session in the cluster state.
    pub fn session_owner(&self, client_id: &str) -> Option<NodeId> {
        self.node
            .shared()
            .read(|s| s.sessions().get(client_id).and_then(|r| r.owner))
    }

    /// Records a persistent session's current state (in order with the
    /// node's other session changes).
    pub fn session_changed(&self, client_id: &str, record: SessionRecord) {
        let _ = self
            .session_tx
            .send(SessionChange::Update(client_id.to_owned(), record));
    }

    /// A persistent session ended on this node.
    pub fn session_ended(&self, client_id: &str) {
        let _ = self
            .session_tx
            .send(SessionChange::Remove(client_id.to_owned()));
    }

    /// This node's ID.
    pub fn node_id(&self) -> NodeId {
        self.node.node_id()
    }

    /// The cluster node.
    pub fn cluster(&self) -> &ClusterNode {
        &self.node
    }

    /// The forwarder (peer streams).
    pub fn forwarder(&self) -> &Forwarder {
        &self.forwarder
    }

    /// A local subscription to `filter` was added. The returned receiver
    /// answers once the cluster routes `filter` to this node (at once when
    /// it already does).
    pub fn subscribed(&self, filter: &str) -> oneshot::Receiver<Result<(), String>> {
        {
            let mut local = lock(&self.local_filters);
            *local.entry(filter.to_owned()).or_default() += 1;
        }
        let (tx, rx) = oneshot::channel();
        if self
            .route_tx
            .send(RouteRequest::Changed(filter.to_owned(), Some(tx)))
            .is_err()
        {
            tracing::warn!("route batcher stopped");
        }
        rx
    }

    /// A local subscription to `filter` was removed.
    pub fn unsubscribed(&self, filter: &str) {
        {
            let mut local = lock(&self.local_filters);
            if let Some(count) = local.get_mut(filter) {
                *count -= 1;
                if *count == 0 {
                    local.remove(filter);
                }
            }
        }
        let _ = self
            .route_tx
            .send(RouteRequest::Changed(filter.to_owned(), None));
    }

    /// Where a message on `topic` must go besides this node's sessions.
    pub fn plan(&self, topic: &str) -> ForwardPlan {
        let me = self.node_id();
        // Read before matching: the table is at least this new.
        let routed_by = self.routed_revision();
        let matched = read(&self.routes).matches(topic);
        // After matching: the table matched is no newer than this.
        let wait_for = self.table_revision.load(Ordering::Acquire);
        let mut peers: HashMap<NodeId, (bool, Vec<String>)> = HashMap::new();
        for node in matched.nodes {
            if node != me {
                peers.entry(node).or_default().0 = true;
            }
        }
        let mut remote_groups = HashSet::new();
        for (key, node) in matched.shared {
            if node != me {
                peers.entry(node).or_default().1.push(key.clone());
                remote_groups.insert(key);
            }
        }
        ForwardPlan {
            peers: peers
                .into_iter()
                .map(|(node, (ordinary, groups))| (node, ordinary, groups))
                .collect(),
            remote_groups,
            routed_by,
            wait_for,
        }
    }

    /// Sends `message` to the peers of `plan`. For a QoS 1/2 message,
    /// returns one completion per peer: `true` once the peer delivered it
    /// and committed it to the durable queues of the persistent sessions
    /// it reached.
    pub fn forward(&self, message: &Message, plan: ForwardPlan) -> Vec<oneshot::Receiver<bool>> {
        let mut completions = Vec::new();
        for (node, ordinary, groups) in plan.peers {
            let done = if message.qos == QoS::AtMostOnce {
                None
            } else {
                let (tx, rx) = oneshot::channel();
                completions.push(rx);
                Some(tx)
            };
            self.forwarder.send(
                node,
                super::forward::to_forwarded(
                    message,
                    self.node_id(),
                    ordinary,
                    groups,
                    plan.routed_by,
                    plan.wait_for,
                ),
                done,
            );
        }
        completions
    }

    /// The durable queues of persistent sessions.
    pub fn durable(&self) -> &DurableQueues {
        &self.durable
    }

    /// Commits a retained message (or its deletion, for an empty payload)
    /// through Raft; every node's broker picks it up when applied.
    ///
    /// # Errors
    ///
    /// When the cluster cannot commit (no leader within the propose
    /// timeout).
    pub async fn store_retained(&self, message: &Message) -> Result<(), ClusterError> {
        let op = if message.payload.is_empty() {
            RetainOp::Delete {
                topic: message.topic.clone(),
            }
        } else {
            RetainOp::Set {
                topic: message.topic.clone(),
                message: retained_record(message, self.node_id()),
            }
        };
        self.node
            .propose(Command::Retain(vec![op]))
            .await
            .map(|_| ())
    }

    /// Rebuilds the route table from the applied state (after any route
    /// change: routes change at subscription rate, far less often than
    /// messages are matched, and a rebuild is linear in the routes).
    /// Returns the revision the table is at least as new as; it does not
    /// advance what this node has processed (`routed`): the state may be
    /// ahead of the change batches handled so far, whose adopted sessions
    /// are not in place yet.
    fn rebuild_routes(&self) -> u64 {
        // Read first: the table is at least as new as this revision.
        let revision = self.node.shared().revision();
        let (table, newest) = self.node.shared().read(|s| {
            let mut table = RouteTable::default();
            for (filter, nodes) in s.routes().iter() {
                for node in nodes {
                    table.add(filter, *node);
                }
            }
            (table, self.node.shared().revision())
        });
        *write(&self.routes) = table;
        self.table_revision.fetch_max(newest, Ordering::AcqRel);
        revision
    }

    /// The route table now reflects the state at `revision`.
    fn routed_up_to(&self, revision: u64) {
        self.routed.send_if_modified(|r| {
            let newer = revision > *r;
            if newer {
                *r = revision;
            }
            newer
        });
    }

    /// The log index of the state this node routes by.
    pub fn routed_revision(&self) -> u64 {
        *self.routed.borrow()
    }

    /// Waits until this node routes by the state at log index `index` or
    /// later, at most `timeout`. Returns the index it routes by and
    /// whether that reached `index`.
    pub async fn wait_routed(&self, index: u64, timeout: Duration) -> (u64, bool) {
        // Every forwarded batch asks; nearly always it is there already.
        let now = self.routed_revision();
        if now >= index {
            return (now, true);
        }
        let mut routed = self.routed.subscribe();
        let reached = tokio::time::timeout(timeout, routed.wait_for(|r| *r >= index))
            .await
            .is_ok_and(|r| r.is_ok());
        let now = *routed.borrow();
        (now, reached)
    }

    /// The public QUIC addresses of the other alive members, as an MQTT 5
    /// Server Reference (space separated), for a client this node cannot
    /// serve now; `None` without other members.
    pub fn server_reference(&self) -> Option<String> {
        let me = self.node_id();
        let others: Vec<String> = self.node.shared().read(|s| {
            s.members()
                .iter()
                .filter(|m| m.node_id != me && m.state == MemberState::Alive)
                .filter(|m| !m.public_addr.is_empty())
                .map(|m| m.public_addr.clone())
                .collect()
        });
        (!others.is_empty()).then(|| others.join(" "))
    }

    /// Waits until every other reachable member routes by this node's current
    /// state (each at most [`BARRIER_TIMEOUT`]; a member that does not
    /// answer — dead, cut off — is not waited for longer). After a route
    /// of this node is committed, this makes a PUBLISH on any live node
    /// reach the new subscriber.
    async fn barrier(&self) {
        use quicmq_proto::cluster::v1::{forward_client::ForwardClient, BarrierRequest};
        let index = self.node.shared().revision();
        let me = self.node_id();
        let peers: Vec<(NodeId, String)> = self.node.shared().read(|s| {
            s.members()
                .iter()
                .filter(|m| m.node_id != me && m.state.is_reachable())
                .map(|m| (m.node_id, m.grpc_addr.clone()))
                .collect()
        });
        if peers.is_empty() {
            return;
        }
        let started = std::time::Instant::now();
        let mut calls = tokio::task::JoinSet::new();
        for (peer, addr) in peers {
            let channels = self.node.channels().clone();
            let cluster_id = self.node.cluster_id().to_owned();
            calls.spawn(async move {
                let call = async {
                    let channel = channels.get(&addr).map_err(|e| e.to_string())?;
                    let mut request = tonic::Request::new(BarrierRequest {
                        cluster_id,
                        index,
                        timeout_ms: BARRIER_TIMEOUT.as_millis() as u64,
                    });
                    request.set_timeout(BARRIER_TIMEOUT);
                    ForwardClient::new(channel)
                        .barrier(request)
                        .await
                        .map(|r| r.into_inner())
                        .map_err(|e| e.message().to_owned())
                };
                match tokio::time::timeout(BARRIER_TIMEOUT, call).await {
                    Ok(Ok(r)) if r.reached => {}
                    Ok(Ok(r)) => tracing::debug!(
                        peer,
                        index,
                        routed = r.routed_index,
                        "peer did not reach the route barrier in time"
                    ),
                    Ok(Err(e)) => tracing::debug!(peer, "route barrier: {e}"),
                    Err(_) => tracing::debug!(peer, "route barrier timed out"),
                }
            });
        }
        while calls.join_next().await.is_some() {}
        metrics::histogram!("quicmq_route_barrier_seconds").record(started.elapsed().as_secs_f64());
    }

    /// The filters this node has local subscribers for.
    fn local_filter_set(&self) -> BTreeSet<String> {
        lock(&self.local_filters).keys().cloned().collect()
    }
}

/// The record of a retained message in `ClusterState`.
pub fn retained_record(message: &Message, origin: NodeId) -> RetainedRecord {
    RetainedRecord {
        qos: message.qos as u8,
        payload: message.payload.clone(),
        properties: properties_block(&message.properties),
        expires_at_ms: message.expires_at_ms,
        origin_node_id: origin,
    }
}

/// The broker's message for a retained record (`None` if it does not
/// decode, which a record written by this code never does).
pub fn retained_message(topic: &str, record: &RetainedRecord) -> Option<Message> {
    let properties = properties_of_block(&record.properties)?;
    Some(Message {
        topic: topic.to_owned(),
        payload: record.payload.clone(),
        qos: quicmq_proto::mqtt::QoS::from_u8(record.qos)?,
        retain: true,
        properties,
        expires_at_ms: record.expires_at_ms,
        publisher: None,
    })
}

/// A message's or will's MQTT 5 properties as the cluster stores them
/// (opaque to it).
pub(crate) fn properties_block(properties: &quicmq_proto::mqtt::Properties) -> bytes::Bytes {
    bincode::serialize(properties).unwrap_or_default().into()
}

/// The properties of a block [`properties_block`] wrote (empty: none;
/// `None` if it does not decode, which such a block always does).
pub(crate) fn properties_of_block(block: &[u8]) -> Option<quicmq_proto::mqtt::Properties> {
    if block.is_empty() {
        return Some(Default::default());
    }
    bincode::deserialize(block).ok()
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn read<T>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|p| p.into_inner())
}

fn write<T>(l: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|p| p.into_inner())
}

/// Releases the wills this node held in earlier runs (their connections
/// died with the process), retrying until it commits.
async fn release_wills_of_earlier_runs(link: Weak<ClusterLink>, run: u64) {
    let mut backoff = Duration::from_millis(200);
    loop {
        let Some(node) = link.upgrade().map(|l| l.node.clone()) else {
            return;
        };
        let command = Command::Wills(vec![WillOp::Restarted {
            node_id: node.node_id(),
            run,
            now_ms: crate::broker::now_ms(),
        }]);
        let answer = node.propose(command).await;
        drop(node);
        match answer {
            Ok(_) => return,
            Err(e) => {
                tracing::debug!("wills of earlier runs not released yet (retrying): {e}");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// Keeps the route table in step with the applied state.
async fn follow_state(
    link: Weak<ClusterLink>,
    mut changes: broadcast::Receiver<quicmq_raft::store::ChangeBatch>,
) {
    loop {
        let batch = changes.recv().await;
        let Some(link) = link.upgrade() else { return };
        match batch {
            Ok(batch) => {
                let mut rebuilt = false;
                for change in batch.changes.iter() {
                    match change {
                        StateChange::Routes(_) | StateChange::Replaced if !rebuilt => {
                            link.rebuild_routes();
                            rebuilt = true;
                        }
                        StateChange::Member(node) => {
                            link.forwarder.member_changed(*node);
                            if *node == link.node_id() {
                                // Back from down: announce the routes the
                                // leader withdrew without waiting for the
                                // next reconciliation.
                                let _ = link.route_tx.send(RouteRequest::Reconcile);
                            }
                        }
                        StateChange::SessionAdopted {
                            client_id,
                            from,
                            by,
                        } => {
                            if let Some(broker) = link.broker.get().and_then(Weak::upgrade) {
                                if *by == Some(link.node_id()) {
                                    broker.adopt_session(client_id, *from);
                                } else if *from == link.node_id() {
                                    broker.release_session(client_id);
                                }
                            }
                        }
                        StateChange::QueueOverflow { owner, dropped, .. }
                            if *owner == link.node_id() =>
                        {
                            metrics::counter!(crate::metrics::DURABLE_DROPPED).increment(*dropped);
                        }
                        StateChange::SessionOwner {
                            client_id,
                            previous: Some(previous),
                            owner,
                        } if *previous == link.node_id() && *owner != Some(*previous) => {
                            if let Some(broker) = link.broker.get().and_then(Weak::upgrade) {
                                broker.release_session(client_id);
                            }
                        }
                        _ => {}
                    }
                }
                link.routed_up_to(batch.revision);
            }
            Err(broadcast::error::RecvError::Lagged(_)) => {
                // Changes were missed: the table is all there is.
                let revision = link.rebuild_routes();
                link.routed_up_to(revision);
            }
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}

/// Turns local subscription changes into batched `Routes` proposals, and
/// every few seconds compares this node's routes with its subscriptions
/// (after a failed proposal, or at start: `ReplaceRoutes`).
async fn batch_routes(link: Weak<ClusterLink>, mut rx: mpsc::UnboundedReceiver<RouteRequest>) {
    let mut reconcile = tokio::time::interval(ROUTE_RECONCILE_INTERVAL);
    let mut first = true;
    loop {
        let mut dirty: BTreeSet<String> = BTreeSet::new();
        let mut waiters: Vec<oneshot::Sender<Result<(), String>>> = Vec::new();
        tokio::select! {
            request = rx.recv() => {
                match request {
                    None => return,
                    Some(RouteRequest::Reconcile) => {}
                    Some(RouteRequest::Changed(filter, waiter)) => {
                        dirty.insert(filter);
                        waiters.extend(waiter);
                        tokio::time::sleep(ROUTE_BATCH_WINDOW).await;
                        while let Ok(RouteRequest::Changed(filter, waiter)) = rx.try_recv() {
                            dirty.insert(filter);
                            waiters.extend(waiter);
                        }
                    }
                }
            }
            _ = reconcile.tick() => {}
        }
        let Some(link) = link.upgrade() else { return };
        let me = link.node_id();
        let result = if dirty.is_empty() {
            // Reconcile: the whole set, replaced if it differs.
            let local = link.local_filter_set();
            let routed: BTreeSet<String> = link
                .node
                .shared()
                .read(|s| s.routes().filters_of(me).map(str::to_owned).collect());
            if local == routed && !first {
                Ok(())
            } else {
                link.node
                    .propose(Command::ReplaceRoutes {
                        node_id: me,
                        filters: local.into_iter().collect(),
                    })
                    .await
                    .map(|_| ())
            }
        } else {
            let local = lock(&link.local_filters).clone();
            let (add, remove): (Vec<String>, Vec<String>) = link.node.shared().read(|s| {
                let mut add = Vec::new();
                let mut remove = Vec::new();
                for filter in &dirty {
                    let routed = s.routes().nodes(filter).is_some_and(|n| n.contains(&me));
                    let wanted = local.contains_key(filter);
                    if wanted && !routed {
                        add.push(filter.clone());
                    } else if !wanted && routed {
                        remove.push(filter.clone());
                    }
                }
                (add, remove)
            });
            if add.is_empty() && remove.is_empty() {
                Ok(())
            } else {
                metrics::counter!("quicmq_route_proposals_total").increment(1);
                let adds = !add.is_empty();
                let result = link
                    .node
                    .propose(Command::Routes {
                        node_id: me,
                        add,
                        remove,
                    })
                    .await
                    .map(|_| ());
                if result.is_ok() && adds && !waiters.is_empty() {
                    link.barrier().await;
                }
                result
            }
        };
        match &result {
            Ok(()) => first = false,
            Err(e) => tracing::warn!("route update not committed (retrying): {e}"),
        }
        for waiter in waiters {
            let _ = waiter.send(result.as_ref().map(|_| ()).map_err(|e| e.to_string()));
        }
    }
}
