//! A running node: the broker, its listeners and background tasks, wired
//! from a [`NodeConfig`].

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

use quicmq_raft::command::{Command, JoinRecord};
use quicmq_raft::ClusterNode;

use crate::admin_access::AdminAccess;
use crate::auth::Authenticator;
use crate::broker::{now_ms, Broker, SessionStore, StoreError};
use crate::cluster;
use crate::config::NodeConfig;
use crate::tls::{self, Identity, TlsError};
use crate::transport::{
    bind_quic, serve_quic, serve_tcp, serve_tls, BoundAddrs, QuicSetup, RoutedSocket,
};
use quicmq_proto::quic_lb::LbCodec;

/// Why a node could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The data directory could not be created or opened.
    #[error("data_dir {path}: {reason}")]
    DataDir {
        /// The directory.
        path: String,
        /// What went wrong.
        reason: String,
    },
    /// The data store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Certificates or TLS configuration failed.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// A configuration value is unusable.
    #[error("{0}")]
    Config(String),
    /// The stateless reset key could not be loaded or created.
    #[error(transparent)]
    Key(#[from] crate::keys::KeyFileError),
    /// The cluster could not be started or joined.
    #[error("cluster: {0}")]
    Cluster(String),
    /// A listener could not bind.
    #[error("{key}: cannot listen on {addr}: {reason}")]
    Bind {
        /// The config key of the listener.
        key: &'static str,
        /// The address.
        addr: String,
        /// What went wrong.
        reason: String,
    },
}

static METRICS: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// The process-wide Prometheus handle (installed on first use).
pub fn metrics_handle() -> Option<PrometheusHandle> {
    METRICS
        .get_or_init(|| match crate::metrics::install() {
            Ok(handle) => Some(handle),
            Err(e) => {
                tracing::warn!(error = %e, "metrics recorder not installed");
                None
            }
        })
        .clone()
}

/// A node that is serving clients.
pub struct RunningNode {
    broker: Arc<Broker>,
    cluster: ClusterNode,
    grpc_shutdown: watch::Sender<bool>,
    grpc_server: tokio::task::JoinHandle<()>,
    addrs: BoundAddrs,
    tasks: JoinSet<()>,
    quic: Option<(quinn::Endpoint, Arc<RoutedSocket>)>,
}

async fn bind_tcp(
    key: &'static str,
    addr: std::net::SocketAddr,
) -> Result<TcpListener, StartError> {
    TcpListener::bind(addr).await.map_err(|e| StartError::Bind {
        key,
        addr: addr.to_string(),
        reason: e.to_string(),
    })
}

impl RunningNode {
    /// Open the data directory and start every configured listener.
    pub async fn start(config: &NodeConfig) -> Result<RunningNode, StartError> {
        // The recorder before anything counts: Raft may install a snapshot
        // (and count it) as soon as the cluster opens.
        let _ = metrics_handle();
        std::fs::create_dir_all(&config.data_dir).map_err(|e| StartError::DataDir {
            path: config.data_dir.display().to_string(),
            reason: e.to_string(),
        })?;
        let identity = match &config.cert_and_key {
            Some((cert, key)) => Identity::load(cert, key)?,
            None => Identity::development(&config.data_dir)?,
        };
        let auth = Arc::new(authenticator(config)?);
        // Read now: a bad token file stops the start before the cluster.
        let admin_token = config
            .admin_token_file
            .as_deref()
            .map(crate::admin_access::read_token_file)
            .transpose()
            .map_err(|e| StartError::Config(format!("admin_token_file: {e}")))?;
        let access = AdminAccess::new(admin_token, config.admin_open_paths.clone())
            .with_mtls(config.admin_mtls);
        let client_certs = match &config.client_ca {
            Some(ca) => Some(tls::ClientCertPolicy::load(
                ca,
                config.require_client_cert,
                config.cert_identity,
            )?),
            None => None,
        };

        // The cluster first: it assigns this node's server ID and holds the
        // QUIC-LB configuration and keys every node must share.
        let grpc_listener = cluster::bind_grpc(config.cluster.grpc_addr).await?;
        let grpc_port = grpc_listener
            .local_addr()
            .map(|a| a.port())
            .unwrap_or(config.cluster.grpc_addr.port());
        let (reset_key, token_key) = cluster::bootstrap_keys(config, &config.data_dir)?;
        let cluster_tls = cluster::tls::load(config)?;
        let admin_tls = match (config.admin_mtls, &cluster_tls) {
            (false, _) => None,
            (true, Some(tls)) => Some(tls.admin_server_config().ok_or_else(|| {
                StartError::Config(
                    "admin_mtls: this node's cluster certificate cannot serve TLS".into(),
                )
            })?),
            (true, None) => {
                return Err(StartError::Config(
                    "admin_mtls needs cluster TLS; cluster_plaintext turns it off".into(),
                ))
            }
        };
        let cluster_config =
            cluster::cluster_config(config, grpc_port, reset_key, token_key, cluster_tls);
        let cluster = ClusterNode::open(cluster_config)
            .await
            .map_err(|e| StartError::Cluster(e.to_string()))?;
        let (grpc_shutdown, grpc_shutdown_rx) = watch::channel(false);
        // The forwarding service answers once the broker exists.
        let broker_cell: Arc<OnceLock<Arc<Broker>>> = Arc::default();
        let forward = quicmq_proto::cluster::v1::forward_server::ForwardServer::new(
            cluster::ForwardService::new(
                &config.cluster.cluster_id,
                config.cluster.node_id,
                broker_cell.clone(),
            ),
        )
        .max_decoding_message_size(quicmq_raft::network::MAX_MESSAGE_SIZE);
        // Only nodes forward: a router's certificate is refused here.
        let forward = tonic::service::interceptor::InterceptedService::new(
            forward,
            quicmq_raft::network::tls::RoleCheck(quicmq_raft::network::tls::Admits::Nodes),
        );
        let routes = cluster.grpc_routes().add_service(forward);
        let grpc_server = cluster::spawn_grpc_server(
            grpc_listener,
            cluster.server_tls(),
            routes,
            grpc_shutdown_rx,
        );
        let joined = match cluster::join_cluster(&cluster).await {
            Ok(joined) => joined,
            Err(e) => {
                let _ = grpc_shutdown.send(true);
                cluster.shutdown().await;
                return Err(e);
            }
        };

        let store = SessionStore::open(&config.data_dir.join("store"))?;
        let mut settings = config.broker_settings();
        settings.auth = auth;
        settings.client_certs = client_certs.clone();
        settings.node_name = Some(joined.server_id.to_string());
        // Durable queues hold what a session may have queued and in flight.
        let durable_limit = u32::try_from(
            config
                .max_queued_messages
                .saturating_add(usize::from(config.receive_maximum)),
        )
        .unwrap_or(u32::MAX);
        let link = cluster::ClusterLink::start(cluster.clone(), durable_limit);
        let broker = Broker::open(settings, store, Some(link.clone()))?;
        link.set_broker(&broker);
        broker.release_sessions_owned_elsewhere();
        let _ = broker_cell.set(broker.clone());
        let mut tasks = JoinSet::new();
        // Every node enforces the cluster's password file and ACL; before
        // clients are served, this node has them (or gave its own).
        let auth = broker.settings().auth.clone();
        cluster::auth_sync::adopt_or_seed(&cluster, &auth).await;
        tasks.spawn(cluster::auth_sync::follow(cluster.clone(), auth));
        // TLS session tickets sealed with the cluster's keys resume on any
        // node.
        let tickets = tls::TicketKeyRing::new();
        tasks.spawn(cluster::ticket_keys::follow(
            cluster.clone(),
            tickets.clone(),
            config.tls_ticket_lifetime,
        ));
        let mut addrs = BoundAddrs {
            grpc: Some(std::net::SocketAddr::new(
                config.cluster.grpc_addr.ip(),
                grpc_port,
            )),
            ..BoundAddrs::default()
        };
        let mut quic = None;
        if config.quic_addr.is_some() || config.routed_addr.is_some() {
            let lb = LbCodec::new(joined.quic_lb)
                .map_err(|e| StartError::Config(format!("quic_lb: {e}")))?;
            // Returning QUIC clients get node-local sessions (0-RTT here).
            let home_sessions = tls::HomeSessionStore::new(
                tickets.clone(),
                tls::DEFAULT_HOME_SESSIONS,
                u64::try_from(config.tls_ticket_lifetime.as_millis()).unwrap_or(u64::MAX),
            );
            let bound = bind_quic(QuicSetup {
                public: config.quic_addr,
                routed: config.routed_addr,
                tls: tls::quic_server_configs(
                    &identity,
                    &tickets,
                    &home_sessions,
                    client_certs.as_ref(),
                )?,
                lb: Arc::new(lb),
                server_id: joined.server_id,
                reset_key: joined.reset_key,
                token_key: joined.token_key,
            })?;
            addrs.quic = bound.socket.public_addr();
            addrs.routed = bound.socket.routed_addr();
            tasks.spawn(serve_quic(
                broker.clone(),
                bound.endpoint.clone(),
                bound.returning,
            ));
            quic = Some((bound.endpoint, bound.socket));
        }
        // Ports chosen by the OS (port 0) are known now: advertise them.
        let advertised = |a: Option<std::net::SocketAddr>| {
            a.map(|a| cluster::host_port(&config.cluster.advertise_addr, a.port()))
                .unwrap_or_default()
        };
        let (routed_addr, public_addr) = (advertised(addrs.routed), advertised(addrs.quic));
        if joined.member.routed_addr != routed_addr || joined.member.public_addr != public_addr {
            let update = Command::Join(JoinRecord {
                node_id: joined.member.node_id,
                grpc_addr: joined.member.grpc_addr.clone(),
                routed_addr,
                public_addr,
                zone: joined.member.zone.clone(),
                now_ms: now_ms(),
            });
            if let Err(e) = cluster.propose(update).await {
                tracing::warn!("could not record this node's addresses in the cluster: {e}");
            }
        }
        if let Some(addr) = config.tcp_addr {
            let listener = bind_tcp("tcp_addr", addr).await?;
            addrs.tcp = listener.local_addr().ok();
            tasks.spawn(serve_tcp(broker.clone(), listener));
        }
        if let Some(addr) = config.tls_addr {
            let listener = bind_tcp("tls_addr", addr).await?;
            addrs.tls = listener.local_addr().ok();
            tasks.spawn(serve_tls(
                broker.clone(),
                listener,
                tls::tcp_server_config(&identity, &tickets, client_certs.as_ref())?,
            ));
        }
        if let Some(addr) = config.admin_addr {
            let listener = bind_tcp("admin_addr", addr).await?;
            addrs.admin = listener.local_addr().ok();
            let listener = match admin_tls {
                None => crate::admin::AdminListener::Plain(listener),
                Some(tls) => crate::admin::AdminListener::Tls(
                    crate::admin_tls::AdminTlsListener::new(listener, tls)
                        .map_err(|e| StartError::Config(format!("admin_addr: {e}")))?,
                ),
            };
            if let Some(handle) = metrics_handle() {
                tasks.spawn(crate::admin::serve_admin(
                    broker.clone(),
                    cluster.clone(),
                    handle,
                    access,
                    listener,
                ));
            }
        }
        tasks.spawn({
            let mirror = cluster::retained_mirror::spawn(broker.clone(), cluster.clone());
            async move {
                let _ = mirror.await;
            }
        });
        let sweeper = broker.clone();
        tasks.spawn(async move {
            let mut shutdown = sweeper.shutdown_signal();
            let mut tick = tokio::time::interval(Duration::from_millis(500));
            let mut trim = crate::memory_trim::MemoryTrim::new(std::time::Instant::now());
            loop {
                tokio::select! {
                    _ = tick.tick() => {
                        sweeper.sweep(now_ms());
                        let held = sweeper.queue_budget().map_or(0, |b| b.used());
                        if trim.due(held, std::time::Instant::now()) {
                            // Freed session memory goes back to the system.
                            tokio::task::spawn_blocking(crate::memory_trim::release_free_memory);
                        }
                    }
                    _ = crate::broker::shutdown_started(&mut shutdown) => return,
                }
            }
        });
        tracing::info!(
            quic = ?addrs.quic, routed = ?addrs.routed, tcp = ?addrs.tcp, tls = ?addrs.tls, admin = ?addrs.admin,
            data_dir = %config.data_dir.display(), cert = %identity.cert_path.display(),
            "quicmq node serving"
        );
        Ok(RunningNode {
            broker,
            cluster,
            grpc_shutdown,
            grpc_server,
            addrs,
            tasks,
            quic,
        })
    }

    /// The bound addresses (port 0 in the config becomes the real port).
    pub fn addrs(&self) -> &BoundAddrs {
        &self.addrs
    }

    /// This node's cluster membership.
    pub fn cluster(&self) -> &ClusterNode {
        &self.cluster
    }

    /// The broker.
    pub fn broker(&self) -> &Arc<Broker> {
        &self.broker
    }

    /// Reads this node's password file and ACL and makes them the
    /// cluster's (SIGHUP): every node enforces them once committed.
    ///
    /// # Errors
    ///
    /// A file is unusable (the rules in force stay), or the cluster did
    /// not commit the change.
    pub async fn reload_auth(&self) -> Result<crate::auth::Reloaded, String> {
        cluster::auth_sync::push(&self.cluster, &self.broker.settings().auth).await
    }

    /// Graceful shutdown: DISCONNECT 0x8B to every client, park every
    /// session, flush the store.
    pub async fn shutdown(mut self) -> Result<(), StoreError> {
        self.broker.begin_shutdown();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while !self.broker.all_detached() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if let Some(link) = self.broker.cluster() {
            // The clients were told to come back: their wills leave the
            // cluster before this node does (else they would be released
            // when it starts again).
            link.flush_wills(Duration::from_secs(2)).await;
        }
        if let Some((endpoint, socket)) = &self.quic {
            // Routers stop sending new connections here.
            socket.stop_answering_probes();
            // Let the DISCONNECTs and close frames go out.
            tokio::time::sleep(Duration::from_millis(150)).await;
            endpoint.close(0u32.into(), b"shutting down");
            let _ = tokio::time::timeout(Duration::from_secs(1), endpoint.wait_idle()).await;
        }
        self.tasks.abort_all();
        while self.tasks.join_next().await.is_some() {}
        if let Some(link) = self.broker.cluster() {
            link.durable().close().await;
        }
        let _ = self.grpc_shutdown.send(true);
        self.cluster.shutdown().await;
        let _ = tokio::time::timeout(Duration::from_secs(2), &mut self.grpc_server).await;
        self.grpc_server.abort();
        self.broker.flush().await
    }
}

/// The authentication rules of `config`: the password file and the ACL
/// read and checked now (an unusable file stops the start), and a loud
/// warning when anyone may connect.
fn authenticator(config: &NodeConfig) -> Result<Authenticator, StartError> {
    let auth = Authenticator::from_files(
        config.password_file.clone(),
        config.acl_file.clone(),
        config.allow_anonymous,
    )
    .map_err(StartError::Config)?
    .with_limits(config.auth_limits);
    if config.password_file.is_some() || config.acl_file.is_some() {
        tracing::info!(
            users = auth.user_count(),
            acl_rules = auth.acl_rules(),
            "authentication and ACL loaded"
        );
    }
    if config.anonymous_by_default {
        tracing::warn!(
            "THIS BROKER IS OPEN: anyone who reaches it may connect without a user name \
             (the single-node development default). Set `password_file` and \
             `allow_anonymous = false` before exposing it."
        );
    } else if config.allow_anonymous {
        tracing::warn!("allow_anonymous is on: clients without a user name may connect");
    }
    Ok(auth)
}
