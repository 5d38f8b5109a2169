//! Following the cluster: the router's node table, QUIC-LB configuration
//! and reset key from the `ClusterWatch` stream of its seeds.
//!
//! Sans-IO core: [`ClusterView`] holds the watched state and applies each
//! [`WatchEvent`]; [`plan`] turns it into what the router needs
//! ([`ClusterPlan`]); [`ClusterPlan::node_specs`] makes the node table's
//! entries once host names are resolved. [`run`] is the thin async shell:
//! dial a seed with tonic, call `Watch`, install every new state, and on an
//! error or the end of the stream go on with the next seed after a backoff
//! (100 ms doubling to 2 s), asking for the changes after the revision it
//! holds.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use quicmq_proto::cluster::v1::cluster_watch_client::ClusterWatchClient;
use quicmq_proto::cluster::v1::{
    watch_event::Event, ClusterKeys, Member, MemberState, QuicLbConfig, QuicLbConfigState,
    WatchEvent, WatchRequest, WatchRole,
};
use quicmq_proto::cluster_tls::{self, ClusterTls};
use quicmq_proto::quic_lb::{LbConfig, ServerId};
use tokio::net::TcpStream;
use tonic::transport::Endpoint;

use crate::config::{ExplicitSettings, WatchConfig};
use crate::forward::{Router, Routing, RoutingOrigin};
use crate::node_table::{Admission, NodeSpec, NodeTable};

/// First wait before reconnecting after a stream failed or ended.
pub const INITIAL_BACKOFF: Duration = Duration::from_millis(100);
/// Longest wait between reconnections.
pub const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// How long a seed may take to connect and send its first event.
const FIRST_EVENT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long resolving one routed address may take.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(2);
/// How often the members' routed host names are resolved again while the
/// cluster is quiet: a node that comes back with another IP under the same
/// name (a restarted pod or container) is reached again without waiting
/// for the next cluster event.
const RERESOLVE_INTERVAL: Duration = Duration::from_secs(5);
/// Largest watch event accepted (a snapshot is one record per node).
const MAX_EVENT_SIZE: usize = 16 * 1024 * 1024;

/// An event the router cannot apply: the stream is dropped and the next
/// seed tried.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WatchError {
    /// A delta arrived while the router holds no state to apply it to.
    #[error("the seed sent an update before any snapshot")]
    UpdateWithoutSnapshot,
    /// An event without content.
    #[error("the seed sent an empty event")]
    EmptyEvent,
    /// The seed belongs to another cluster.
    #[error("the seed belongs to cluster {got:?}, not {want:?}")]
    WrongCluster {
        /// The cluster this router follows.
        want: String,
        /// The seed's.
        got: String,
    },
}

/// Why a watched state cannot be turned into a node table (yet): the router
/// keeps what it has and waits for the next event.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PlanError {
    /// No state yet.
    #[error("no cluster state received yet")]
    NoState,
    /// The seed has no members yet (not bootstrapped, or still catching up).
    #[error("the cluster state has no members yet")]
    NoMembers,
    /// The seed has no QUIC-LB configuration yet.
    #[error("the cluster state has no QUIC-LB configuration yet")]
    NoQuicLbConfig,
    /// The cluster's QUIC-LB configuration is unusable.
    #[error("the cluster's QUIC-LB configuration is invalid: {0}")]
    BadQuicLbConfig(String),
    /// Neither the cluster nor the configuration gives a reset key.
    #[error("the cluster sent no stateless reset key and none is configured (`reset_key`)")]
    NoResetKey,
    /// The cluster's reset key has the wrong length.
    #[error("the cluster's stateless reset key has {0} octets, not 32")]
    BadResetKey(usize),
}

/// The watched cluster state as the router holds it, across streams and
/// seeds.
#[derive(Clone, Debug, Default)]
pub struct ClusterView {
    expected_cluster_id: Option<String>,
    cluster_id: String,
    revision: u64,
    has_state: bool,
    members: BTreeMap<u64, Member>,
    quic_lb_configs: Vec<QuicLbConfig>,
    keys: Option<ClusterKeys>,
    leader_node_id: u64,
}

impl ClusterView {
    /// An empty view; `expected_cluster_id` is the configured cluster ID,
    /// if any (else the first snapshot's is kept).
    pub fn new(expected_cluster_id: Option<String>) -> ClusterView {
        ClusterView {
            expected_cluster_id,
            ..ClusterView::default()
        }
    }

    /// Revision of the state held (0: none).
    pub fn revision(&self) -> u64 {
        self.revision
    }

    /// Whether a snapshot has been applied.
    pub fn has_state(&self) -> bool {
        self.has_state
    }

    /// The cluster the router follows: the configured ID, or the one it
    /// learned from its first snapshot (empty: any).
    pub fn cluster_id(&self) -> &str {
        match &self.expected_cluster_id {
            Some(id) => id,
            None => &self.cluster_id,
        }
    }

    /// Raft leader as last reported (0: none).
    pub fn leader_node_id(&self) -> u64 {
        self.leader_node_id
    }

    /// The request that opens (or resumes) a watch.
    pub fn request(&self, watcher: &str) -> WatchRequest {
        WatchRequest {
            cluster_id: self.cluster_id().to_string(),
            role: WatchRole::Router.into(),
            watcher: watcher.to_string(),
            after_revision: if self.has_state { self.revision } else { 0 },
        }
    }

    /// Apply one event of a stream. A snapshot replaces everything (even
    /// at a lower revision: it is the whole state as its node knows it); an
    /// update changes what it names.
    pub fn apply(&mut self, event: WatchEvent) -> Result<(), WatchError> {
        match event.event {
            None => Err(WatchError::EmptyEvent),
            Some(Event::Snapshot(snapshot)) => {
                let want = self.cluster_id();
                if !want.is_empty()
                    && !snapshot.cluster_id.is_empty()
                    && snapshot.cluster_id != want
                {
                    return Err(WatchError::WrongCluster {
                        want: want.to_string(),
                        got: snapshot.cluster_id,
                    });
                }
                if !snapshot.cluster_id.is_empty() {
                    self.cluster_id = snapshot.cluster_id;
                }
                self.revision = event.revision;
                self.has_state = true;
                self.members = snapshot
                    .members
                    .into_iter()
                    .map(|m| (m.node_id, m))
                    .collect();
                self.quic_lb_configs = snapshot.quic_lb_configs;
                self.keys = snapshot.keys;
                self.leader_node_id = snapshot.leader_node_id;
                Ok(())
            }
            Some(Event::Update(update)) => {
                if !self.has_state {
                    return Err(WatchError::UpdateWithoutSnapshot);
                }
                self.revision = self.revision.max(event.revision);
                for member in update.upserted_members {
                    self.members.insert(member.node_id, member);
                }
                for id in update.removed_node_ids {
                    self.members.remove(&id);
                }
                if let Some(configs) = update.quic_lb_configs {
                    self.quic_lb_configs = configs.configs;
                }
                if let Some(keys) = update.keys {
                    self.keys = Some(keys);
                }
                if let Some(leader) = update.leader_node_id {
                    self.leader_node_id = leader;
                }
                Ok(())
            }
        }
    }
}

/// A member's routed address as the plan has it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PlannedAddr {
    /// None: the member takes no routed traffic, or is gone.
    None,
    /// An `IP:PORT`.
    Ip(SocketAddr),
    /// A `HOST:PORT` to resolve.
    Host(String),
}

/// One member as the node table will hold it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlannedMember {
    /// Cluster node ID.
    pub node_id: u64,
    /// QUIC-LB server ID.
    pub server_id: ServerId,
    /// What it may be sent.
    pub admission: Admission,
    /// Where its routed port is.
    pub addr: PlannedAddr,
}

/// What the router needs from the watched state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterPlan {
    /// Cluster ID.
    pub cluster_id: String,
    /// Revision of the state.
    pub revision: u64,
    /// Raft leader (0: none known).
    pub leader_node_id: u64,
    /// The QUIC-LB configuration to decode connection IDs with.
    pub quic_lb: LbConfig,
    /// The reset key for dead nodes' connections.
    pub reset_key: [u8; 32],
    /// Every member with a usable server ID, by node ID.
    pub members: Vec<PlannedMember>,
    /// What to log: explicit settings that differ from the cluster's,
    /// members that had to be left out.
    pub warnings: Vec<String>,
}

/// The router's view of the cluster: QUIC-LB configuration (the `ACTIVE`
/// one), reset key and members — `ACTIVE` members with a routed address are
/// candidates for new connections (once probes answer), `LEFT` members stay
/// known but dead so their connection IDs get Stateless Resets, joining or
/// leaving members keep their connections but get no new ones. Explicitly
/// configured settings that differ from the cluster's produce a warning and
/// lose; a reset key is taken from the configuration only when the cluster
/// sends none.
pub fn plan(view: &ClusterView, explicit: &ExplicitSettings) -> Result<ClusterPlan, PlanError> {
    if !view.has_state {
        return Err(PlanError::NoState);
    }
    if view.members.is_empty() {
        return Err(PlanError::NoMembers);
    }
    let mut warnings = Vec::new();
    let config = view
        .quic_lb_configs
        .iter()
        .find(|c| c.state == i32::from(QuicLbConfigState::Active))
        .or_else(|| view.quic_lb_configs.first())
        .ok_or(PlanError::NoQuicLbConfig)?;
    if view.quic_lb_configs.len() > 1 {
        warnings.push(format!(
            "the cluster lists {} QUIC-LB configurations; routing by config ID {} only",
            view.quic_lb_configs.len(),
            config.config_id
        ));
    }
    let quic_lb = lb_config(config)?;
    if let Some(id) = explicit.quic_lb_config_id {
        if id != quic_lb.config_id() {
            warnings.push(format!(
                "quic_lb_config_id: configured {id}, the cluster uses {}; using the cluster's",
                quic_lb.config_id()
            ));
        }
    }
    if let Some(len) = explicit.quic_lb_nonce_len {
        if len != quic_lb.nonce_len() {
            warnings.push(format!(
                "quic_lb_nonce_len: configured {len}, the cluster uses {}; using the cluster's",
                quic_lb.nonce_len()
            ));
        }
    }
    if let Some(key) = &explicit.quic_lb_key {
        if key.as_ref() != quic_lb.key() {
            warnings.push(
                "quic_lb_key: the configured key differs from the cluster's; using the cluster's"
                    .to_string(),
            );
        }
    }
    let cluster_reset = view
        .keys
        .as_ref()
        .map(|k| &k.stateless_reset_key[..])
        .filter(|k| !k.is_empty());
    let reset_key = match (cluster_reset, explicit.reset_key) {
        (Some(key), configured) => {
            let key: [u8; 32] = key
                .try_into()
                .map_err(|_| PlanError::BadResetKey(key.len()))?;
            if configured.is_some_and(|c| c != key) {
                warnings.push(
                    "reset_key: the configured key differs from the cluster's; using the cluster's"
                        .to_string(),
                );
            }
            key
        }
        (None, Some(configured)) => configured,
        (None, None) => return Err(PlanError::NoResetKey),
    };
    let mut members: Vec<PlannedMember> = Vec::new();
    let mut by_server_id: HashMap<ServerId, usize> = HashMap::new();
    for m in view.members.values() {
        let server_id = match ServerId::new(&m.server_id) {
            Ok(sid) if sid.len() == quic_lb.server_id_len() => sid,
            _ => {
                warnings.push(format!(
                    "node {}: server ID {} does not fit the QUIC-LB configuration ({} octets); left out",
                    m.node_id,
                    quicmq_proto::hex::encode(&m.server_id),
                    quic_lb.server_id_len()
                ));
                continue;
            }
        };
        // A suspect member may only be slow: it keeps taking handshakes.
        // A down one is treated as gone, even before this router's own
        // probes see it: the cluster has adopted its sessions, so its
        // clients get Stateless Resets and reconnect elsewhere at once
        // (it is admitted again when it is alive).
        let admission = match MemberState::try_from(m.state) {
            Ok(MemberState::Active | MemberState::Suspect) => Admission::Active,
            Ok(MemberState::Left | MemberState::Down) => Admission::Gone,
            _ => Admission::Draining,
        };
        let addr = match (admission, m.routed_addr.trim()) {
            (Admission::Gone, _) | (_, "") => PlannedAddr::None,
            (_, text) => match text.parse::<SocketAddr>() {
                Ok(addr) => PlannedAddr::Ip(addr),
                Err(_) if is_host_port(text) => PlannedAddr::Host(text.to_string()),
                Err(_) => {
                    warnings.push(format!(
                        "node {}: routed address {text:?} is not HOST:PORT; unreachable",
                        m.node_id
                    ));
                    PlannedAddr::None
                }
            },
        };
        let member = PlannedMember {
            node_id: m.node_id,
            server_id,
            admission,
            addr,
        };
        match by_server_id.get(&server_id) {
            // Server IDs are never reused while reserved; should two
            // members name one anyway, the one that is not gone wins.
            Some(&i) => {
                warnings.push(format!(
                    "nodes {} and {} both hold server ID {server_id}",
                    members[i].node_id, m.node_id
                ));
                if members[i].admission == Admission::Gone && admission != Admission::Gone {
                    members[i] = member;
                }
            }
            None => {
                by_server_id.insert(server_id, members.len());
                members.push(member);
            }
        }
    }
    Ok(ClusterPlan {
        cluster_id: view.cluster_id.clone(),
        revision: view.revision,
        leader_node_id: view.leader_node_id,
        quic_lb,
        reset_key,
        members,
        warnings,
    })
}

fn lb_config(config: &QuicLbConfig) -> Result<LbConfig, PlanError> {
    let bad = |e: String| PlanError::BadQuicLbConfig(e);
    let key = match config.key.as_deref() {
        None | Some([]) => None,
        Some(key) => Some(
            <[u8; 16]>::try_from(key)
                .map_err(|_| bad(format!("key of {} octets, not 16", key.len())))?,
        ),
    };
    let config_id = u8::try_from(config.config_id).map_err(|e| bad(e.to_string()))?;
    LbConfig::new(
        config_id,
        config.server_id_len as usize,
        config.nonce_len as usize,
        key,
    )
    .map_err(|e| bad(e.to_string()))
}

/// `HOST:PORT` with a host name (not an IP literal) and a non-zero port.
fn is_host_port(text: &str) -> bool {
    text.rsplit_once(':').is_some_and(|(host, port)| {
        !host.is_empty()
            && !host.contains(':')
            && !host.contains(char::is_whitespace)
            && port.parse::<u16>().is_ok_and(|p| p != 0)
    })
}

impl ClusterPlan {
    /// The node table's entries: `resolved` maps each [`PlannedAddr::Host`]
    /// that resolved to its address. A host that did not resolve keeps the
    /// address `previous` has for that server ID (a passing DNS failure
    /// must not reset a live node's connections), else has none.
    pub fn node_specs(
        &self,
        resolved: &HashMap<String, SocketAddr>,
        previous: Option<&NodeTable>,
    ) -> Vec<NodeSpec> {
        self.members
            .iter()
            .map(|m| NodeSpec {
                server_id: m.server_id,
                node_id: m.node_id,
                admission: m.admission,
                routed_addr: match &m.addr {
                    PlannedAddr::None => None,
                    PlannedAddr::Ip(addr) => Some(*addr),
                    PlannedAddr::Host(host) => resolved.get(host).copied().or_else(|| {
                        previous
                            .and_then(|t| t.by_server_id(&m.server_id))
                            .and_then(|(_, n)| n.routed_addr)
                    }),
                },
            })
            .collect()
    }

    /// The host names to resolve.
    pub fn hosts(&self) -> impl Iterator<Item = &str> {
        self.members.iter().filter_map(|m| match &m.addr {
            PlannedAddr::Host(host) => Some(host.as_str()),
            _ => None,
        })
    }
}

// ------------------------------------------------------------------ shell

/// Why one watch stream stopped.
#[derive(Debug, thiserror::Error)]
enum StreamError {
    #[error("{0}")]
    Transport(#[from] tonic::transport::Error),
    #[error("{}: {}", .0.code(), .0.message())]
    Status(#[from] tonic::Status),
    #[error("no event within {0:?}")]
    Timeout(Duration),
    #[error("{0}")]
    Protocol(#[from] WatchError),
}

/// Follows the cluster from `config.seeds` for as long as the router runs,
/// installing each new state into `router`; with `tls` (what
/// `config.tls` loads to), over the cluster's mutual TLS.
pub async fn run(router: Arc<Router>, config: WatchConfig, tls: Option<ClusterTls>) {
    let watcher = watcher_name(router.public_addr());
    let mut follower = Follower {
        router,
        tls: tls.map(|t| t.client_config()),
        explicit: config.explicit,
        view: ClusterView::new(config.cluster_id),
        last_warnings: Vec::new(),
        last_error: None,
    };
    let seeds = config.seeds;
    if seeds.is_empty() {
        tracing::error!("no seeds to watch the cluster from");
        return;
    }
    // Routers spread over the seeds rather than all watching the first.
    let mut next = rand::random::<usize>() % seeds.len();
    let mut backoff = INITIAL_BACKOFF;
    loop {
        let seed = &seeds[next % seeds.len()];
        let mut delivered = false;
        match follower.follow(seed, &watcher, &mut delivered).await {
            Ok(()) => tracing::info!(%seed, "cluster watch stream ended; reconnecting"),
            Err(e) if follower.view.has_state() => {
                tracing::warn!(%seed, "cluster watch failed: {e}; reconnecting")
            }
            Err(e) => tracing::warn!(%seed, "cannot watch the cluster: {e}; trying the next seed"),
        }
        if delivered {
            backoff = INITIAL_BACKOFF;
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
        next = next.wrapping_add(1);
        follower.router.metrics().watch_reconnects.increment(1);
    }
}

/// A TLS connection to the seed at `target`, under the name every node's
/// certificate carries.
async fn dial_tls(
    target: Arc<str>,
    tls: Arc<rustls::ClientConfig>,
) -> std::io::Result<hyper_util::rt::TokioIo<tokio_rustls::client::TlsStream<TcpStream>>> {
    let tcp = TcpStream::connect(&*target).await?;
    let _ = tcp.set_nodelay(true);
    let stream = tokio_rustls::TlsConnector::from(tls)
        .connect(cluster_tls::server_name(), tcp)
        .await
        .map_err(|e| std::io::Error::new(e.kind(), format!("cluster TLS with {target}: {e}")))?;
    Ok(hyper_util::rt::TokioIo::new(stream))
}

fn watcher_name(public: SocketAddr) -> String {
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "quicmq-router".into());
    format!("{host} {public}")
}

struct Follower {
    router: Arc<Router>,
    /// Cluster TLS (`None`: plaintext).
    tls: Option<Arc<rustls::ClientConfig>>,
    explicit: ExplicitSettings,
    view: ClusterView,
    last_warnings: Vec<String>,
    last_error: Option<PlanError>,
}

impl Follower {
    /// One stream from `seed`, until it fails or ends.
    async fn follow(
        &mut self,
        seed: &str,
        watcher: &str,
        delivered: &mut bool,
    ) -> Result<(), StreamError> {
        let endpoint = Endpoint::from_shared(format!("http://{seed}"))?
            .connect_timeout(Duration::from_secs(1))
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(5))
            .keep_alive_timeout(Duration::from_secs(5))
            .keep_alive_while_idle(true);
        let opened = async {
            let channel = match self.tls.clone() {
                None => endpoint.connect().await?,
                Some(tls) => {
                    let target: Arc<str> = seed.into();
                    let connector = tower::service_fn(move |_: tonic::transport::Uri| {
                        dial_tls(target.clone(), tls.clone())
                    });
                    endpoint.connect_with_connector(connector).await?
                }
            };
            let mut client =
                ClusterWatchClient::new(channel).max_decoding_message_size(MAX_EVENT_SIZE);
            let stream = client.watch(self.view.request(watcher)).await?;
            Ok::<_, StreamError>(stream.into_inner())
        };
        let mut stream = tokio::time::timeout(FIRST_EVENT_TIMEOUT, opened)
            .await
            .map_err(|_| StreamError::Timeout(FIRST_EVENT_TIMEOUT))??;
        let mut reresolve = tokio::time::interval_at(
            tokio::time::Instant::now() + RERESOLVE_INTERVAL,
            RERESOLVE_INTERVAL,
        );
        reresolve.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let next = if *delivered {
                tokio::select! {
                    next = stream.message() => next?,
                    _ = reresolve.tick() => {
                        self.install(seed, Install::IfAddressesChanged).await;
                        continue;
                    }
                }
            } else {
                tokio::time::timeout(FIRST_EVENT_TIMEOUT, stream.message())
                    .await
                    .map_err(|_| StreamError::Timeout(FIRST_EVENT_TIMEOUT))??
            };
            let Some(event) = next else {
                return Ok(());
            };
            *delivered = true;
            self.router.metrics().watch_events.increment(1);
            self.view.apply(event)?;
            self.install(seed, Install::Always).await;
        }
    }

    /// Build a table from the view and swap it in (with
    /// [`Install::IfAddressesChanged`], only when a member or its resolved
    /// address differs from the table in use).
    async fn install(&mut self, seed: &str, when: Install) {
        let plan = match plan(&self.view, &self.explicit) {
            Ok(plan) => plan,
            Err(_) if when == Install::IfAddressesChanged => return,
            Err(e) => {
                if self.last_error.as_ref() != Some(&e) {
                    tracing::warn!(%seed, revision = self.view.revision(), "cluster state not usable yet: {e}");
                    self.last_error = Some(e);
                }
                return;
            }
        };
        self.last_error = None;
        if plan.warnings != self.last_warnings {
            for w in &plan.warnings {
                tracing::warn!("{w}");
            }
            self.last_warnings = plan.warnings.clone();
        }
        let previous = self.router.routing();
        let previous_table = previous.as_deref().map(Routing::table);
        let prefer_v4 = self.router.internal_addr().map_or(true, |a| a.is_ipv4());
        let mut resolved = HashMap::new();
        for host in plan.hosts() {
            if resolved.contains_key(host) {
                continue;
            }
            match resolve(host, prefer_v4).await {
                Some(addr) => {
                    resolved.insert(host.to_string(), addr);
                }
                // Every 5 s while a node is away would be noise: the periodic
                // re-resolution only tells at debug level.
                None if when == Install::IfAddressesChanged => {
                    tracing::debug!(%host, "cannot resolve a node's routed address")
                }
                None => tracing::warn!(%host, "cannot resolve a node's routed address"),
            }
        }
        let specs = plan.node_specs(&resolved, previous_table);
        let changed = previous_table.is_none_or(|t| !same_members(t, &specs));
        if when == Install::IfAddressesChanged && !changed {
            return;
        }
        let table = match NodeTable::from_specs(specs, previous_table) {
            Ok(table) => table,
            Err(e) => {
                tracing::warn!("cluster state not usable: {e}");
                return;
            }
        };
        let origin = RoutingOrigin {
            cluster_id: plan.cluster_id.clone(),
            revision: plan.revision,
            leader_node_id: plan.leader_node_id,
            seed: seed.to_string(),
        };
        let routing = match Routing::new(table, plan.quic_lb, &plan.reset_key, origin) {
            Ok(routing) => routing,
            Err(e) => {
                tracing::warn!("cluster QUIC-LB configuration not usable: {e}");
                return;
            }
        };
        if changed || previous.is_none() {
            let nodes: Vec<String> = routing
                .table()
                .nodes()
                .iter()
                .map(|n| match n.routed_addr {
                    Some(addr) => format!("{}={addr}({})", n.label, n.admission.label()),
                    None => format!("{}({})", n.label, n.admission.label()),
                })
                .collect();
            tracing::info!(
                cluster = %plan.cluster_id,
                revision = plan.revision,
                leader = plan.leader_node_id,
                %seed,
                nodes = %nodes.join(" "),
                "node table from the cluster"
            );
        }
        self.router
            .metrics()
            .cluster_revision
            .set(plan.revision as f64);
        self.router.install(routing);
    }
}

/// When [`Follower::install`] swaps in a new table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Install {
    /// After every cluster event.
    Always,
    /// On the periodic re-resolution of host names: only when an address
    /// (or a member) changed.
    IfAddressesChanged,
}

/// Whether `table` holds exactly `specs` (same IDs, addresses, admission).
fn same_members(table: &NodeTable, specs: &[NodeSpec]) -> bool {
    table.nodes().len() == specs.len()
        && table.nodes().iter().zip(specs).all(|(n, s)| {
            n.server_id == s.server_id
                && n.node_id == s.node_id
                && n.routed_addr == s.routed_addr
                && n.admission == s.admission
        })
}

/// Resolve `host` (`HOST:PORT`), preferring the internal socket's family.
async fn resolve(host: &str, prefer_v4: bool) -> Option<SocketAddr> {
    let addrs: Vec<SocketAddr> =
        tokio::time::timeout(RESOLVE_TIMEOUT, tokio::net::lookup_host(host))
            .await
            .ok()?
            .ok()?
            .collect();
    addrs
        .iter()
        .find(|a| a.is_ipv4() == prefer_v4)
        .or_else(|| addrs.first())
        .copied()
}

#[cfg(test)]
mod tests {
    use super::*;
    use quicmq_proto::cluster::v1::{ClusterSnapshot, ClusterUpdate, QuicLbConfigs};

    const RESET: [u8; 32] = [7; 32];
    const LB_KEY: [u8; 16] = [9; 16];

    fn member(node_id: u64, state: MemberState, routed: &str) -> Member {
        Member {
            node_id,
            server_id: (node_id as u16).to_be_bytes().to_vec().into(),
            grpc_addr: format!("127.0.0.1:{}", 7000 + node_id),
            routed_addr: routed.to_string(),
            state: state.into(),
            ..Member::default()
        }
    }

    fn lb(config_id: u32, state: QuicLbConfigState) -> QuicLbConfig {
        QuicLbConfig {
            config_id,
            server_id_len: 2,
            nonce_len: 8,
            key: Some(LB_KEY.to_vec().into()),
            state: state.into(),
        }
    }

    fn snapshot(revision: u64, members: Vec<Member>) -> WatchEvent {
        WatchEvent {
            revision,
            event: Some(Event::Snapshot(ClusterSnapshot {
                cluster_id: "c1".into(),
                members,
                quic_lb_configs: vec![lb(1, QuicLbConfigState::Active)],
                keys: Some(ClusterKeys {
                    stateless_reset_key: RESET.to_vec().into(),
                    ..ClusterKeys::default()
                }),
                leader_node_id: 1,
            })),
        }
    }

    fn three() -> Vec<Member> {
        vec![
            member(1, MemberState::Active, "127.0.0.1:14568"),
            member(2, MemberState::Active, "node-2.example:14568"),
            member(3, MemberState::Left, "127.0.0.1:34568"),
        ]
    }

    fn view_of(event: WatchEvent) -> ClusterView {
        let mut view = ClusterView::new(None);
        assert_eq!(view.apply(event), Ok(()));
        view
    }

    #[test]
    fn a_down_member_is_gone_and_a_suspect_still_takes_connections() {
        let members = vec![
            member(1, MemberState::Active, "127.0.0.1:14568"),
            member(2, MemberState::Suspect, "127.0.0.1:24568"),
            member(3, MemberState::Down, "127.0.0.1:34568"),
        ];
        let plan = plan(&view_of(snapshot(7, members)), &ExplicitSettings::default()).unwrap();
        let admissions: Vec<(u64, Admission)> = plan
            .members
            .iter()
            .map(|m| (m.node_id, m.admission))
            .collect();
        assert_eq!(
            admissions,
            [
                (1, Admission::Active),
                (2, Admission::Active),
                (3, Admission::Gone)
            ]
        );
        let down = plan.members.iter().find(|m| m.node_id == 3).unwrap();
        assert_eq!(
            down.addr,
            PlannedAddr::None,
            "its clients' packets get Stateless Resets"
        );
    }

    #[test]
    fn a_snapshot_becomes_a_table_with_left_members_known_but_dead() {
        let mut members = three();
        members.push(member(4, MemberState::Active, "")); // no routed port
        members.push(member(5, MemberState::Leaving, "127.0.0.1:54568"));
        let view = view_of(snapshot(42, members));
        let plan = plan(&view, &ExplicitSettings::default()).unwrap();
        assert_eq!(plan.cluster_id, "c1");
        assert_eq!(plan.revision, 42);
        assert_eq!(plan.leader_node_id, 1);
        assert_eq!(plan.reset_key, RESET);
        assert_eq!(plan.quic_lb, LbConfig::new(1, 2, 8, Some(LB_KEY)).unwrap());
        assert!(plan.warnings.is_empty(), "{:?}", plan.warnings);
        let addrs: Vec<(u64, Admission, PlannedAddr)> = plan
            .members
            .iter()
            .map(|m| (m.node_id, m.admission, m.addr.clone()))
            .collect();
        assert_eq!(
            addrs,
            [
                (
                    1,
                    Admission::Active,
                    PlannedAddr::Ip("127.0.0.1:14568".parse().unwrap())
                ),
                (
                    2,
                    Admission::Active,
                    PlannedAddr::Host("node-2.example:14568".into())
                ),
                (3, Admission::Gone, PlannedAddr::None),
                (4, Admission::Active, PlannedAddr::None),
                (
                    5,
                    Admission::Draining,
                    PlannedAddr::Ip("127.0.0.1:54568".parse().unwrap())
                ),
            ]
        );
        assert_eq!(plan.hosts().collect::<Vec<_>>(), ["node-2.example:14568"]);
        let resolved = HashMap::from([(
            "node-2.example:14568".to_string(),
            "10.0.0.2:14568".parse().unwrap(),
        )]);
        let table = NodeTable::from_specs(plan.node_specs(&resolved, None), None).unwrap();
        for n in table.nodes() {
            if n.is_probed() {
                n.set_alive(true);
            }
        }
        let live: Vec<&str> = table
            .nodes()
            .iter()
            .filter(|n| n.takes_new_connections())
            .map(|n| n.label.as_str())
            .collect();
        assert_eq!(live, ["0001", "0002"]);
        let sid3 = ServerId::new(&[0, 3]).unwrap();
        let (_, left) = table.by_server_id(&sid3).unwrap();
        assert!(!left.is_alive() && !left.is_probed(), "LEFT: known, dead");
        assert_eq!(
            table.nodes()[1].routed_addr,
            Some("10.0.0.2:14568".parse().unwrap())
        );
    }

    #[test]
    fn an_unresolved_host_keeps_its_previous_address() {
        let view = view_of(snapshot(1, three()));
        let plan = plan(&view, &ExplicitSettings::default()).unwrap();
        let resolved = HashMap::from([(
            "node-2.example:14568".to_string(),
            "10.0.0.2:14568".parse().unwrap(),
        )]);
        let before = NodeTable::from_specs(plan.node_specs(&resolved, None), None).unwrap();
        let specs = plan.node_specs(&HashMap::new(), Some(&before));
        assert_eq!(
            specs[1].routed_addr,
            Some("10.0.0.2:14568".parse().unwrap())
        );
        let specs = plan.node_specs(&HashMap::new(), None);
        assert_eq!(specs[1].routed_addr, None);
    }

    #[test]
    fn a_host_resolving_to_a_new_address_changes_the_table() {
        let view = view_of(snapshot(1, three()));
        let plan = plan(&view, &ExplicitSettings::default()).unwrap();
        let resolved = |ip: &str| {
            HashMap::from([(
                "node-2.example:14568".to_string(),
                format!("{ip}:14568").parse().unwrap(),
            )])
        };
        let before =
            NodeTable::from_specs(plan.node_specs(&resolved("10.0.0.2"), None), None).unwrap();
        // Same answer, or no answer at all (the name is gone while the
        // node restarts): nothing to install.
        assert!(same_members(
            &before,
            &plan.node_specs(&resolved("10.0.0.2"), Some(&before))
        ));
        assert!(same_members(
            &before,
            &plan.node_specs(&HashMap::new(), Some(&before))
        ));
        // The name now points elsewhere: a new table, with that address.
        let specs = plan.node_specs(&resolved("10.0.0.9"), Some(&before));
        assert!(!same_members(&before, &specs));
        assert_eq!(
            specs[1].routed_addr,
            Some("10.0.0.9:14568".parse().unwrap())
        );
    }

    #[test]
    fn explicit_settings_that_differ_warn_and_lose() {
        let view = view_of(snapshot(1, three()));
        let explicit = ExplicitSettings {
            quic_lb_config_id: Some(0),
            quic_lb_nonce_len: Some(6),
            quic_lb_key: Some(None),
            reset_key: Some([1; 32]),
        };
        let plan = plan(&view, &explicit).unwrap();
        assert_eq!(plan.reset_key, RESET);
        assert_eq!(plan.quic_lb, LbConfig::new(1, 2, 8, Some(LB_KEY)).unwrap());
        assert_eq!(plan.warnings.len(), 4, "{:?}", plan.warnings);
        for (w, key) in plan.warnings.iter().zip([
            "quic_lb_config_id",
            "quic_lb_nonce_len",
            "quic_lb_key",
            "reset_key",
        ]) {
            assert!(w.starts_with(key), "{w}");
        }
        let same = ExplicitSettings {
            quic_lb_config_id: Some(1),
            quic_lb_nonce_len: Some(8),
            quic_lb_key: Some(Some(LB_KEY)),
            reset_key: Some(RESET),
        };
        assert!(super::plan(&view, &same).unwrap().warnings.is_empty());
    }

    #[test]
    fn incomplete_state_is_not_used() {
        assert_eq!(
            plan(&ClusterView::new(None), &ExplicitSettings::default()),
            Err(PlanError::NoState)
        );
        let empty = view_of(snapshot(0, vec![]));
        assert_eq!(
            plan(&empty, &ExplicitSettings::default()),
            Err(PlanError::NoMembers)
        );
        let mut event = snapshot(5, three());
        if let Some(Event::Snapshot(s)) = &mut event.event {
            s.keys = None;
            s.quic_lb_configs.clear();
        }
        let view = view_of(event.clone());
        assert_eq!(
            plan(&view, &ExplicitSettings::default()),
            Err(PlanError::NoQuicLbConfig)
        );
        if let Some(Event::Snapshot(s)) = &mut event.event {
            s.quic_lb_configs = vec![lb(1, QuicLbConfigState::Active)];
        }
        let view = view_of(event.clone());
        assert_eq!(
            plan(&view, &ExplicitSettings::default()),
            Err(PlanError::NoResetKey)
        );
        let configured = ExplicitSettings {
            reset_key: Some([3; 32]),
            ..ExplicitSettings::default()
        };
        assert_eq!(plan(&view, &configured).unwrap().reset_key, [3; 32]);
        if let Some(Event::Snapshot(s)) = &mut event.event {
            s.keys = Some(ClusterKeys {
                stateless_reset_key: vec![1; 16].into(),
                ..ClusterKeys::default()
            });
            s.quic_lb_configs[0].nonce_len = 2;
        }
        let view = view_of(event.clone());
        assert!(matches!(
            plan(&view, &ExplicitSettings::default()),
            Err(PlanError::BadQuicLbConfig(_))
        ));
        if let Some(Event::Snapshot(s)) = &mut event.event {
            s.quic_lb_configs[0].nonce_len = 8;
        }
        let view = view_of(event);
        assert_eq!(
            plan(&view, &ExplicitSettings::default()),
            Err(PlanError::BadResetKey(16))
        );
    }

    #[test]
    fn the_active_config_wins_and_mismatched_server_ids_are_left_out() {
        let mut members = three();
        members.push(Member {
            server_id: vec![0, 0, 9].into(),
            ..member(9, MemberState::Active, "127.0.0.1:9")
        });
        let mut event = snapshot(1, members);
        if let Some(Event::Snapshot(s)) = &mut event.event {
            s.quic_lb_configs = vec![
                lb(2, QuicLbConfigState::Pending),
                lb(1, QuicLbConfigState::Active),
            ];
        }
        let plan = plan(&view_of(event), &ExplicitSettings::default()).unwrap();
        assert_eq!(plan.quic_lb.config_id(), 1);
        assert_eq!(plan.members.len(), 3);
        assert_eq!(plan.warnings.len(), 2, "{:?}", plan.warnings);
    }

    #[test]
    fn updates_apply_over_the_snapshot_and_requests_resume_after_it() {
        let mut view = ClusterView::new(None);
        assert_eq!(view.request("r").after_revision, 0);
        assert_eq!(view.request("r").cluster_id, "");
        assert_eq!(view.request("r").role, i32::from(WatchRole::Router));
        let update = WatchEvent {
            revision: 11,
            event: Some(Event::Update(ClusterUpdate {
                upserted_members: vec![member(4, MemberState::Active, "127.0.0.1:44568")],
                removed_node_ids: vec![3],
                quic_lb_configs: Some(QuicLbConfigs {
                    configs: vec![lb(3, QuicLbConfigState::Active)],
                }),
                keys: None,
                leader_node_id: Some(2),
            })),
        };
        assert_eq!(
            view.apply(update.clone()),
            Err(WatchError::UpdateWithoutSnapshot)
        );
        view.apply(snapshot(10, three())).unwrap();
        assert_eq!(view.apply(update), Ok(()));
        let plan = plan(&view, &ExplicitSettings::default()).unwrap();
        let ids: Vec<u64> = plan.members.iter().map(|m| m.node_id).collect();
        assert_eq!(ids, [1, 2, 4]);
        assert_eq!(plan.quic_lb.config_id(), 3);
        assert_eq!(plan.reset_key, RESET, "keys kept");
        assert_eq!(plan.leader_node_id, 2);
        let request = view.request("r");
        assert_eq!(request.after_revision, 11);
        assert_eq!(request.cluster_id, "c1", "learned from the first snapshot");
        assert_eq!(
            view.apply(WatchEvent {
                revision: 12,
                event: None
            }),
            Err(WatchError::EmptyEvent)
        );
    }

    #[test]
    fn another_clusters_snapshot_is_refused() {
        let mut view = ClusterView::new(Some("prod".into()));
        assert_eq!(view.request("r").cluster_id, "prod");
        assert!(matches!(
            view.apply(snapshot(1, three())),
            Err(WatchError::WrongCluster { .. })
        ));
        let mut learned = view_of(snapshot(1, three()));
        let mut other = snapshot(2, three());
        if let Some(Event::Snapshot(s)) = &mut other.event {
            s.cluster_id = "c2".into();
        }
        assert!(matches!(
            learned.apply(other),
            Err(WatchError::WrongCluster { .. })
        ));
        // A lower revision from a lagging seed is still the whole truth there.
        assert_eq!(learned.apply(snapshot(0, three())), Ok(()));
        assert_eq!(learned.revision(), 0);
    }
}
