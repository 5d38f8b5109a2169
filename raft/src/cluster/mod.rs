//! [`ClusterNode`]: this node's membership of the cluster, as the broker
//! uses it.
//!
//! Life cycle:
//!
//! 1. [`ClusterNode::open`] opens the sled store and creates the openraft
//!    instance (nothing is sent yet).
//! 2. The caller serves [`ClusterNode::grpc_routes`] (the `Raft`, `Admin`
//!    and `ClusterWatch` services, plus its own) on its gRPC listener —
//!    peers must be able to reach this node before it joins.
//! 3. [`ClusterNode::start`] bootstraps a new cluster (no `join` seeds),
//!    joins an existing one through a seed, or resumes after a restart from
//!    the log in the data directory; it returns once this node's member
//!    record (with its server ID) and the cluster keys are applied locally.
//!
//! Then [`ClusterNode::propose`] changes the state from any node (a
//! follower passes the command to the leader), [`ClusterNode::shared`]
//! reads it and follows its changes.

mod admin;
mod config;
mod liveness;
mod metrics;
mod propose;
mod watch;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use openraft::{ChangeMembers, ServerState};
use quicmq_proto::cluster::v1::{
    admin_client::AdminClient, admin_server::AdminServer, cluster_watch_server::ClusterWatchServer,
    raft_server::RaftServer, JoinRequest, Member, MemberRole as PbRole, MemberState as PbState,
};
use quicmq_proto::cluster_tls::ClusterTls;
use tokio::sync::Mutex;
use tonic::service::interceptor::InterceptedService;

pub use self::config::{ClusterConfig, RaftTiming, StartMode};
pub use self::liveness::LivenessTracker;
use crate::command::{Command, CommandResponse, JoinRecord, MemberRecord, MemberRole, MemberState};
use crate::error::ClusterError;
use crate::network::tls::{Admits, RoleCheck};
use crate::network::{GrpcNetwork, PeerChannels, RaftService, MAX_MESSAGE_SIZE};
use crate::store::{LogStore, SharedState, StateMachineStore};
use crate::{MemberNode, NodeId, Raft};

/// This node's handle on the cluster. Cheap to clone.
#[derive(Clone)]
pub struct ClusterNode {
    inner: Arc<Inner>,
}

struct Inner {
    config: ClusterConfig,
    raft: Raft,
    shared: Arc<SharedState>,
    channels: PeerChannels,
    /// Serializes membership changes on the leader.
    membership_lock: Mutex<()>,
    metrics_task: tokio::task::JoinHandle<()>,
    /// The leader's liveness probing, once started.
    liveness_task: std::sync::OnceLock<tokio::task::JoinHandle<()>>,
    _db: sled::Db,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.metrics_task.abort();
        if let Some(task) = self.liveness_task.get() {
            task.abort();
        }
    }
}

/// Unix time in milliseconds.
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl ClusterNode {
    /// Opens the Raft store under `config.raft_dir` and creates this node's
    /// openraft instance.
    ///
    /// # Errors
    ///
    /// When the configuration is invalid or the store cannot be opened.
    pub async fn open(config: ClusterConfig) -> Result<Self, ClusterError> {
        config.validate()?;
        let db = sled::Config::new()
            .path(&config.raft_dir)
            .mode(sled::Mode::HighThroughput)
            .open()
            .map_err(|e| ClusterError::Store(format!("open {}: {e}", config.raft_dir.display())))?;
        let shared = SharedState::new();
        let log_store = LogStore::open(&db)?;
        let state_machine = StateMachineStore::open(&db, shared.clone())?;
        let channels = PeerChannels::new(
            config.peer_proxy.as_deref(),
            config.tls.as_ref().map(ClusterTls::client_config),
        );
        let network = GrpcNetwork::new(&config.cluster_id, config.node_id, channels.clone());
        let raft_config = config.timing.openraft_config(&config.cluster_id)?;
        let raft = Raft::new(
            config.node_id,
            Arc::new(raft_config),
            network,
            log_store,
            state_machine,
        )
        .await
        .map_err(|e| ClusterError::Fatal(e.to_string()))?;
        let metrics_task = tokio::spawn(metrics::export(raft.metrics(), shared.clone()));
        Ok(Self {
            inner: Arc::new(Inner {
                config,
                raft,
                shared,
                channels,
                membership_lock: Mutex::new(()),
                metrics_task,
                liveness_task: std::sync::OnceLock::new(),
                _db: db,
            }),
        })
    }

    /// The gRPC services this crate serves: `Raft`, `Admin` and
    /// `ClusterWatch`, each behind its [`RoleCheck`]. Add the node's own
    /// (`Forward`, behind `RoleCheck(Admits::Nodes)`) and serve them on
    /// the gRPC listener with [`crate::network::tls::incoming`] and
    /// [`ClusterNode::server_tls`].
    pub fn grpc_routes(&self) -> tonic::service::Routes {
        let raft = RaftServer::new(RaftService::new(
            self.inner.raft.clone(),
            &self.inner.config.cluster_id,
            self.inner.config.node_id,
        ))
        .max_decoding_message_size(MAX_MESSAGE_SIZE)
        .max_encoding_message_size(MAX_MESSAGE_SIZE);
        let admin = AdminServer::new(admin::AdminService::new(self.clone()));
        let watch = ClusterWatchServer::new(watch::WatchService::new(self.clone()));
        let nodes = RoleCheck(Admits::Nodes);
        tonic::service::Routes::new(InterceptedService::new(raft, nodes))
            .add_service(InterceptedService::new(admin, nodes))
            .add_service(InterceptedService::new(watch, RoleCheck(Admits::Watchers)))
    }

    /// The rustls configuration the gRPC listener serves peers with
    /// (`None`: a plaintext cluster).
    pub fn server_tls(&self) -> Option<Arc<rustls::ServerConfig>> {
        self.inner
            .config
            .tls
            .as_ref()
            .and_then(ClusterTls::server_config)
    }

    /// Joins the cluster (or bootstraps it, or resumes after a restart) and
    /// waits until this node's member record is applied locally.
    ///
    /// # Errors
    ///
    /// When joining is refused (wrong cluster ID, address in use), no seed
    /// answers within the join timeout, or the state does not arrive in
    /// time.
    pub async fn start(&self) -> Result<MemberRecord, ClusterError> {
        let config = &self.inner.config;
        let initialized = self
            .inner
            .raft
            .is_initialized()
            .await
            .map_err(|e| ClusterError::Fatal(e.to_string()))?;
        match (initialized, config.start_mode()) {
            (false, StartMode::Bootstrap) => self.bootstrap().await?,
            (false, StartMode::Join(seeds)) => self.join(&seeds).await?,
            (true, StartMode::Bootstrap) => {
                // Restarted. If the first start died between initialising
                // Raft and committing the bootstrap entry, finish it.
                if self.shared().read(|s| s.cluster_id().is_none()) {
                    self.wait_for_leader(config.timing.ready_timeout).await?;
                    self.commit_bootstrap().await?;
                }
            }
            (true, StartMode::Join(seeds)) => {
                tracing::info!(
                    node_id = config.node_id,
                    "resuming cluster membership from the data directory"
                );
                if self.removed_while_away(&seeds).await {
                    tracing::warn!(
                        node_id = config.node_id,
                        "this node was removed from the cluster while it was away; joining again"
                    );
                    self.join(&seeds).await?;
                }
            }
        }
        // Probing starts before this node is ready: a restarted node that
        // was marked down is alive again only once a leader hears it.
        self.inner.liveness_task.get_or_init(|| {
            tokio::spawn(liveness::run(
                Arc::downgrade(&self.inner),
                config.timing.member_down_after,
                config.timing.member_remove_after,
            ))
        });
        let me = self.wait_ready(config.timing.ready_timeout).await?;
        if initialized {
            self.catch_up().await;
        }
        Ok(me)
    }

    /// Waits until this node has applied everything the cluster committed
    /// before the call: a restarted node's own log ends where it died, and
    /// what other nodes did meanwhile (sessions they took over, routes
    /// they added) must be known here before it serves clients. An empty
    /// entry goes through the leader; proposing waits until it is applied
    /// here. Without a leader within the propose timeout, this node serves
    /// what it has and says so (its proposals fail until a leader exists).
    pub async fn catch_up(&self) {
        match self.propose(Command::Batch(Vec::new())).await {
            Ok(_) => tracing::debug!("caught up with the cluster"),
            Err(e) => tracing::warn!(
                "could not catch up with the cluster before serving ({e}); serving the state this node has"
            ),
        }
    }

    /// This node's ID.
    pub fn node_id(&self) -> NodeId {
        self.inner.config.node_id
    }

    /// The cluster ID this node belongs to.
    pub fn cluster_id(&self) -> &str {
        &self.inner.config.cluster_id
    }

    /// The configuration this node was opened with.
    pub fn config(&self) -> &ClusterConfig {
        &self.inner.config
    }

    /// The applied cluster state, its revision and its changes.
    pub fn shared(&self) -> &Arc<SharedState> {
        &self.inner.shared
    }

    /// The openraft handle.
    pub fn raft(&self) -> &Raft {
        &self.inner.raft
    }

    /// Channels to peers (shared with the node's own services).
    pub fn channels(&self) -> &PeerChannels {
        &self.inner.channels
    }

    /// The leader as this node knows it.
    pub fn current_leader(&self) -> Option<NodeId> {
        self.inner.raft.metrics().borrow().current_leader
    }

    /// Whether this node is the leader.
    pub fn is_leader(&self) -> bool {
        self.inner.raft.metrics().borrow().state == ServerState::Leader
    }

    /// The gRPC address of a node, from the Raft membership (which knows
    /// members before `ClusterState` does).
    pub fn grpc_addr_of(&self, node_id: NodeId) -> Option<String> {
        let metrics = self.inner.raft.metrics();
        let m = metrics.borrow();
        m.membership_config
            .membership()
            .get_node(&node_id)
            .map(|n| n.grpc_addr.clone())
    }

    /// Changes the cluster state: commits `command` through the leader and
    /// waits until this node has applied it.
    ///
    /// # Errors
    ///
    /// [`ClusterError::NoLeader`] when no leader answers within the propose
    /// timeout (this node is cut off from the majority, or an election
    /// takes longer), or the leader's refusal.
    pub async fn propose(&self, command: Command) -> Result<CommandResponse, ClusterError> {
        propose::propose(self, command).await
    }

    /// This node's view of the cluster (the `Admin.Status` answer).
    pub fn status(&self, include_routes: bool) -> quicmq_proto::cluster::v1::StatusResponse {
        admin::status(self, include_routes)
    }

    /// Removes `node_id` from the cluster (this node when `None`), through
    /// the leader.
    ///
    /// # Errors
    ///
    /// The gRPC status of the refusal: not a member, no leader, ...
    pub async fn leave(
        &self,
        node_id: Option<NodeId>,
    ) -> Result<quicmq_proto::cluster::v1::LeaveResponse, tonic::Status> {
        use quicmq_proto::cluster::v1::admin_server::Admin as _;
        let service = admin::AdminService::new(self.clone());
        let request = quicmq_proto::cluster::v1::LeaveRequest {
            cluster_id: self.cluster_id().to_owned(),
            node_id,
            force: false,
        };
        Ok(service
            .leave(tonic::Request::new(request))
            .await?
            .into_inner())
    }

    /// Stops Raft. The store stays on disk; a later `open` resumes.
    pub async fn shutdown(&self) {
        if let Err(e) = self.inner.raft.shutdown().await {
            tracing::warn!("raft shutdown: {e}");
        }
    }

    async fn bootstrap(&self) -> Result<(), ClusterError> {
        let config = &self.inner.config;
        tracing::info!(node_id = config.node_id, cluster_id = %config.cluster_id, "bootstrapping a new cluster");
        let mut members = BTreeMap::new();
        members.insert(
            config.node_id,
            MemberNode {
                grpc_addr: config.advertise_grpc.clone(),
            },
        );
        if let Err(e) = self.inner.raft.initialize(members).await {
            return Err(ClusterError::Fatal(format!("initialize: {e}")));
        }
        self.wait_for_leader(config.timing.ready_timeout).await?;
        self.commit_bootstrap().await
    }

    async fn commit_bootstrap(&self) -> Result<(), ClusterError> {
        let config = &self.inner.config;
        let batch = Command::Batch(vec![
            Command::Bootstrap(config.bootstrap.clone()),
            Command::Join(self.join_record()),
            Command::SetMemberRole {
                node_id: config.node_id,
                role: MemberRole::Voter,
            },
        ]);
        match self.propose(batch).await? {
            CommandResponse::Batch(r) => match r.first() {
                Some(CommandResponse::Refused(why)) => Err(ClusterError::Refused(why.clone())),
                _ => Ok(()),
            },
            other => Err(ClusterError::Refused(format!(
                "unexpected bootstrap response {other:?}"
            ))),
        }
    }

    fn join_record(&self) -> JoinRecord {
        let config = &self.inner.config;
        JoinRecord {
            node_id: config.node_id,
            grpc_addr: config.advertise_grpc.clone(),
            routed_addr: config.routed_addr.clone(),
            public_addr: config.public_addr.clone(),
            zone: config.zone.clone(),
            now_ms: now_ms(),
        }
    }

    /// Asks the seeds, in turn, to admit this node, until one does, one
    /// refuses for good, or the join timeout passes.
    async fn join(&self, seeds: &[String]) -> Result<(), ClusterError> {
        let config = &self.inner.config;
        let deadline = tokio::time::Instant::now() + config.timing.join_timeout;
        let record = self.join_record();
        let request = JoinRequest {
            cluster_id: config.cluster_id.clone(),
            node_id: record.node_id,
            grpc_addr: record.grpc_addr,
            routed_addr: record.routed_addr,
            public_addr: record.public_addr,
            zone: record.zone,
        };
        let mut backoff = Duration::from_millis(100);
        let mut last_error = String::from("no seed tried");
        loop {
            for seed in seeds {
                if seed == &config.advertise_grpc {
                    continue;
                }
                let channel = match self.inner.channels.get(seed) {
                    Ok(c) => c,
                    Err(e) => {
                        return Err(ClusterError::Config(format!(
                            "join: seed {seed:?} is not a valid HOST:PORT: {e}"
                        )))
                    }
                };
                let mut client = AdminClient::new(channel);
                let mut req = tonic::Request::new(request.clone());
                req.set_timeout(config.timing.join_timeout.min(Duration::from_secs(60)));
                match client.join(req).await {
                    Ok(resp) => {
                        let resp = resp.into_inner();
                        tracing::info!(
                            node_id = config.node_id,
                            seed = %seed,
                            leader = resp.leader_node_id,
                            "joined cluster {}", resp.cluster_id
                        );
                        return Ok(());
                    }
                    Err(status)
                        if matches!(
                            status.code(),
                            tonic::Code::FailedPrecondition
                                | tonic::Code::AlreadyExists
                                | tonic::Code::InvalidArgument
                                | tonic::Code::PermissionDenied
                        ) =>
                    {
                        return Err(ClusterError::JoinRefused(format!(
                            "seed {seed}: {}",
                            status.message()
                        )));
                    }
                    Err(status) => {
                        last_error =
                            format!("seed {seed}: {:?}: {}", status.code(), status.message());
                        tracing::info!("join not yet possible: {last_error}; retrying");
                    }
                }
            }
            if tokio::time::Instant::now() + backoff > deadline {
                return Err(ClusterError::Peer {
                    addr: seeds.join(","),
                    message: format!(
                        "no seed admitted this node within {:?}; last error: {last_error}",
                        config.timing.join_timeout
                    ),
                });
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(2));
        }
    }

    /// Whether a seed says this node has left (it was removed while it
    /// was down, e.g. by `member_remove_after`): its own log cannot know.
    /// `false` when no seed answers: then it resumes as it was.
    async fn removed_while_away(&self, seeds: &[String]) -> bool {
        use quicmq_proto::cluster::v1::StatusRequest;
        let me = self.node_id();
        for seed in seeds {
            if *seed == self.inner.config.advertise_grpc {
                continue;
            }
            let Ok(channel) = self.inner.channels.get(seed) else {
                continue;
            };
            let mut request = tonic::Request::new(StatusRequest {
                include_routes: false,
            });
            request.set_timeout(Duration::from_secs(3));
            let Ok(status) = AdminClient::new(channel).status(request).await else {
                continue;
            };
            return status
                .into_inner()
                .members
                .iter()
                .filter_map(|m| m.member.as_ref())
                .any(|m| m.node_id == me && m.state == i32::from(PbState::Left));
        }
        false
    }

    async fn wait_for_leader(&self, timeout: Duration) -> Result<NodeId, ClusterError> {
        let mut metrics = self.inner.raft.metrics();
        let wait = async {
            loop {
                if let Some(leader) = metrics.borrow_and_update().current_leader {
                    return Ok(leader);
                }
                if metrics.changed().await.is_err() {
                    return Err(ClusterError::Fatal("raft stopped".into()));
                }
            }
        };
        tokio::time::timeout(timeout, wait)
            .await
            .map_err(|_| ClusterError::NoLeader(timeout))?
    }

    /// Waits until this node's member record and the cluster keys are in
    /// the applied state.
    async fn wait_ready(&self, timeout: Duration) -> Result<MemberRecord, ClusterError> {
        let node_id = self.node_id();
        let mut revision = self.shared().watch_revision();
        let wait = async {
            loop {
                let me = self.shared().read(|s| {
                    s.keys()?;
                    s.members()
                        .get(node_id)
                        .filter(|m| m.state.is_reachable())
                        .cloned()
                });
                if let Some(me) = me {
                    return Ok(me);
                }
                if revision.changed().await.is_err() {
                    return Err(ClusterError::Fatal("state machine stopped".into()));
                }
            }
        };
        tokio::time::timeout(timeout, wait).await.map_err(|_| {
            ClusterError::Refused(format!(
                "this node's membership was not applied within {timeout:?}; is node {node_id} a member (or was it removed)?"
            ))
        })?
    }

    /// Adds (or re-adds) a node on the leader: commits its member record,
    /// makes it a Raft learner and waits until it caught up, then promotes it
    /// to voter while there are fewer voters than configured.
    pub(crate) async fn admit(&self, join: JoinRecord) -> Result<MemberRecord, ClusterError> {
        let _guard = self.inner.membership_lock.lock().await;
        let member = match self.propose(Command::Join(join.clone())).await? {
            CommandResponse::Member(m) => m,
            CommandResponse::Refused(why) => return Err(ClusterError::JoinRefused(why)),
            other => {
                return Err(ClusterError::Refused(format!(
                    "unexpected join response {other:?}"
                )))
            }
        };
        let node = MemberNode {
            grpc_addr: join.grpc_addr.clone(),
        };
        let known = self.grpc_addr_of(join.node_id);
        let raft = &self.inner.raft;
        match known {
            Some(addr) if addr == join.grpc_addr => {}
            Some(_) => {
                let mut nodes = BTreeMap::new();
                nodes.insert(join.node_id, node);
                raft.change_membership(ChangeMembers::SetNodes(nodes), true)
                    .await
                    .map_err(|e| ClusterError::Refused(format!("update address: {e}")))?;
            }
            None => {
                raft.add_learner(join.node_id, node, true)
                    .await
                    .map_err(|e| ClusterError::Refused(format!("add learner: {e}")))?;
            }
        }
        self.promote_voters().await?;
        Ok(self
            .shared()
            .read(|s| s.members().get(join.node_id).cloned())
            .unwrap_or(member))
    }

    /// Promotes learners (oldest first) until there are as many voters as
    /// configured, recording each role change in the state.
    async fn promote_voters(&self) -> Result<(), ClusterError> {
        let wanted = self.inner.config.voters;
        let (voters, learners): (Vec<NodeId>, Vec<NodeId>) = {
            let metrics = self.inner.raft.metrics();
            let m = metrics.borrow();
            let membership = m.membership_config.membership();
            (
                membership.voter_ids().collect(),
                membership.learner_ids().collect(),
            )
        };
        if voters.len() >= wanted {
            return Ok(());
        }
        let active: Vec<NodeId> = self.shared().read(|s| {
            let mut active: Vec<&MemberRecord> = s
                .members()
                .alive()
                .filter(|m| learners.contains(&m.node_id))
                .collect();
            active.sort_by_key(|m| (m.joined_at_ms, m.node_id));
            active.iter().map(|m| m.node_id).collect()
        });
        let promote: Vec<NodeId> = active.into_iter().take(wanted - voters.len()).collect();
        if promote.is_empty() {
            return Ok(());
        }
        self.inner
            .raft
            .change_membership(
                ChangeMembers::AddVoterIds(promote.iter().copied().collect()),
                true,
            )
            .await
            .map_err(|e| ClusterError::Refused(format!("promote to voter: {e}")))?;
        let roles = promote
            .iter()
            .map(|&node_id| Command::SetMemberRole {
                node_id,
                role: MemberRole::Voter,
            })
            .collect();
        self.propose(Command::Batch(roles)).await?;
        Ok(())
    }

    /// Removes a node on the leader: out of the Raft membership, marked
    /// left in the state (its routes dropped, its sessions ownerless), and a
    /// learner promoted if voters are now missing.
    pub(crate) async fn remove(&self, node_id: NodeId) -> Result<(), ClusterError> {
        let _guard = self.inner.membership_lock.lock().await;
        let (is_voter, is_member) = {
            let metrics = self.inner.raft.metrics();
            let m = metrics.borrow();
            let membership = m.membership_config.membership();
            (
                membership.voter_ids().any(|id| id == node_id),
                membership.get_node(&node_id).is_some(),
            )
        };
        let raft = &self.inner.raft;
        if is_voter {
            raft.change_membership(
                ChangeMembers::RemoveVoters([node_id].into_iter().collect()),
                true,
            )
            .await
            .map_err(|e| ClusterError::Refused(format!("remove voter: {e}")))?;
        }
        if is_member {
            raft.change_membership(
                ChangeMembers::RemoveNodes([node_id].into_iter().collect()),
                true,
            )
            .await
            .map_err(|e| ClusterError::Refused(format!("remove node: {e}")))?;
        }
        self.propose(Command::Leave {
            node_id,
            now_ms: now_ms(),
        })
        .await?;
        if node_id != self.node_id() {
            self.promote_voters().await?;
        }
        Ok(())
    }
}

/// A member record as `cluster.proto` has it.
pub(crate) fn member_to_pb(m: &MemberRecord) -> Member {
    Member {
        node_id: m.node_id,
        server_id: m.server_id.clone().into(),
        grpc_addr: m.grpc_addr.clone(),
        routed_addr: m.routed_addr.clone(),
        public_addr: m.public_addr.clone(),
        zone: m.zone.clone(),
        role: match m.role {
            MemberRole::Voter => PbRole::Voter,
            MemberRole::Learner => PbRole::Learner,
        }
        .into(),
        state: match m.state {
            MemberState::Alive => PbState::Active,
            MemberState::Suspect { .. } => PbState::Suspect,
            MemberState::Down { .. } => PbState::Down,
            MemberState::Left => PbState::Left,
        }
        .into(),
        joined_at_ms: m.joined_at_ms,
        state_since_ms: match m.state {
            MemberState::Suspect { since_ms } | MemberState::Down { since_ms } => since_ms,
            MemberState::Alive | MemberState::Left => 0,
        },
    }
}
