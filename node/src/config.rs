//! Node configuration: one TOML file, every key also a command-line flag
//! (`--max-packet-size`) and an environment variable
//! (`QUICMQ_MAX_PACKET_SIZE`). Flags beat environment variables, which
//! beat the file, which beats the defaults. Everything is validated at
//! start-up; errors name the key and say how to fix it.
//!
//! ```
//! use quicmq_node::config::{NodeConfig, Overrides};
//!
//! let file: Overrides = toml::from_str("max_packet_size = 65536\ntcp_addr = \"off\"").unwrap();
//! let config = NodeConfig::resolve(Overrides::default(), file).unwrap();
//! assert_eq!(config.max_packet_size, 65536);
//! assert_eq!(config.tcp_addr, None);
//! ```

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use serde::{Deserialize, Deserializer};

use quicmq_proto::hex;
use quicmq_proto::quic_lb::LbConfig;

use crate::broker::{BrokerSettings, QueueDropPolicy, SessionLimits};

/// A listen address, or `off` to disable the listener.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ListenAddr(pub Option<SocketAddr>);

impl FromStr for ListenAddr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "off" | "" => Ok(ListenAddr(None)),
            other => other
                .parse()
                .map(|a| ListenAddr(Some(a)))
                .map_err(|_| format!("`{other}` is not IP:PORT or `off`")),
        }
    }
}

impl<'de> Deserialize<'de> for ListenAddr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// What to drop when a session's queue is full (flag form).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DropPolicyArg {
    /// Drop the oldest queued message.
    DropOldest,
    /// Drop the new message.
    DropNewest,
}

/// Every configuration key, each optional: the same struct is read from
/// the command line / environment and from the TOML file, then merged.
#[derive(Clone, Debug, Default, Parser, Deserialize)]
#[command(
    name = "quicmq-node",
    version,
    about = "quicmq broker node: MQTT over QUIC, TCP and TLS"
)]
#[serde(deny_unknown_fields)]
pub struct Overrides {
    /// TOML configuration file.
    #[arg(long, env = "QUICMQ_CONFIG")]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// Data directory (sled store, development certificate). Default ./quicmq-data.
    #[arg(long, env = "QUICMQ_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// MQTT over QUIC listen address (UDP), or `off`. Default 0.0.0.0:14567.
    #[arg(long, env = "QUICMQ_QUIC_ADDR")]
    pub quic_addr: Option<ListenAddr>,
    /// Routed port: QUIC datagrams from routers in PROXY v2 envelopes (UDP),
    /// or `off`. Default 0.0.0.0:14568.
    #[arg(long, env = "QUICMQ_ROUTED_ADDR")]
    pub routed_addr: Option<ListenAddr>,
    /// This node's ID in the cluster (1 or more; unique per cluster, stable
    /// across restarts). It is also this node's QUIC-LB server ID when that
    /// fits and is free. Default 1.
    #[arg(long, env = "QUICMQ_NODE_ID")]
    pub node_id: Option<u64>,
    /// The cluster's ID; a node can only join a cluster with the same ID.
    /// Default `quicmq`.
    #[arg(long, env = "QUICMQ_CLUSTER_ID")]
    pub cluster_id: Option<String>,
    /// gRPC listen address (TCP: Raft, publish forwarding, cluster watch,
    /// admin). Default 0.0.0.0:7000.
    #[arg(long, env = "QUICMQ_GRPC_ADDR")]
    pub grpc_addr: Option<ListenAddr>,
    /// Host name or IP at which peers and routers reach this node (its gRPC
    /// and routed ports). Default: the IP of `grpc_addr`, or 127.0.0.1 when
    /// that is 0.0.0.0 (single-host only).
    #[arg(long, env = "QUICMQ_ADVERTISE_ADDR")]
    pub advertise_addr: Option<String>,
    /// gRPC addresses (HOST:PORT, comma-separated) of members of the cluster
    /// to join. Empty: bootstrap a new cluster. Ignored once this node's data
    /// directory holds cluster state.
    #[arg(long, env = "QUICMQ_JOIN", value_delimiter = ',')]
    #[serde(default, deserialize_with = "deserialize_join")]
    pub join: Option<Vec<String>>,
    /// How many members vote in Raft: 1, 3 or 5; later nodes are learners
    /// that serve clients the same way. Default 3.
    #[arg(long, env = "QUICMQ_VOTERS")]
    pub voters: Option<usize>,
    /// Failure domain (availability zone, rack) of this node. Default empty.
    #[arg(long, env = "QUICMQ_ZONE")]
    pub zone: Option<String>,
    /// HOST:PORT of an HTTP CONNECT proxy through which this node dials its
    /// peers (Raft, forwarding, joins), for networks where nodes reach
    /// each other only through an egress proxy. Default: dial directly.
    #[arg(long, env = "QUICMQ_PEER_PROXY")]
    pub peer_proxy: Option<String>,
    /// PEM file of the cluster CA certificate(s): every gRPC peer (node or
    /// router) must show a certificate chained to one of them (mutual TLS).
    /// Several certificates: several CAs, while the CA is rotated. Default:
    /// a node that bootstraps alone generates a CA in DATA_DIR/cluster-ca/;
    /// a node that joins must be given the cluster's.
    #[arg(long, env = "QUICMQ_CLUSTER_CA")]
    pub cluster_ca: Option<PathBuf>,
    /// PEM certificate (chain) this node shows its peers: issued by the
    /// cluster CA for `quicmq-node` (`quicmq ca issue DIR --name NAME
    /// --usage node`). Set with `cluster_key`.
    #[arg(long, env = "QUICMQ_CLUSTER_CERT")]
    pub cluster_cert: Option<PathBuf>,
    /// PEM private key of `cluster_cert`.
    #[arg(long, env = "QUICMQ_CLUSTER_KEY")]
    pub cluster_key: Option<PathBuf>,
    /// PEM private key of the cluster CA (the first certificate of
    /// `cluster_ca`): instead of `cluster_cert`, the node issues itself a
    /// node certificate at every start. Convenient for development fleets;
    /// production gives each node its own certificate and keeps the CA key
    /// off the nodes.
    #[arg(long, env = "QUICMQ_CLUSTER_CA_KEY")]
    pub cluster_ca_key: Option<PathBuf>,
    /// gRPC between cluster members without TLS, for a network that secures
    /// itself (a service mesh with mutual TLS). Then anyone who reaches the
    /// gRPC port can join, vote and forward. Default false.
    #[arg(long, env = "QUICMQ_CLUSTER_PLAINTEXT", num_args = 0..=1, default_missing_value = "true", value_parser = clap::builder::BoolishValueParser::new())]
    pub cluster_plaintext: Option<bool>,
    /// Raft log entries between snapshots (the log before a snapshot is
    /// purged; a lagging or new node then catches up from the snapshot).
    /// Default 10000.
    #[arg(long, env = "QUICMQ_RAFT_SNAPSHOT_LOGS")]
    pub raft_snapshot_logs: Option<u64>,
    /// Milliseconds a member may not answer the Raft leader before it is
    /// `down` (`suspect` after half): its routes are withdrawn, its
    /// persistent sessions adopted by live members, and publishes no
    /// longer wait on it. 500 to 600000. Default 3000.
    #[arg(long, env = "QUICMQ_MEMBER_DOWN_AFTER")]
    pub member_down_after: Option<u64>,
    /// Milliseconds a member may stay `down` before the Raft leader
    /// removes it from the cluster (its server ID stays reserved; if it
    /// comes back it joins again). 0 = never. Otherwise at least 1000 and
    /// at least `member_down_after`. Default 0.
    #[arg(long, env = "QUICMQ_MEMBER_REMOVE_AFTER")]
    pub member_remove_after: Option<u64>,
    /// Length of QUIC-LB server IDs in octets (1 to 15), fixed when the
    /// cluster is bootstrapped. Default 2.
    #[arg(long, env = "QUICMQ_SERVER_ID_LEN")]
    pub server_id_len: Option<usize>,
    /// QUIC-LB config rotation codepoint, 0 to 6. Default 0.
    #[arg(long, env = "QUICMQ_QUIC_LB_CONFIG_ID")]
    pub quic_lb_config_id: Option<u8>,
    /// QUIC-LB nonce length, octets (4 to 18; server ID + nonce at most 19). Default 8.
    #[arg(long, env = "QUICMQ_QUIC_LB_NONCE_LEN")]
    pub quic_lb_nonce_len: Option<usize>,
    /// QUIC-LB AES-128 key, 32 hex digits; without it connection IDs carry
    /// the server ID in clear.
    #[arg(long, env = "QUICMQ_QUIC_LB_KEY")]
    pub quic_lb_key: Option<String>,
    /// Stateless reset key shared with routers and other nodes, 64 hex
    /// digits. Default: generated once into the data directory (`reset-key`).
    #[arg(long, env = "QUICMQ_RESET_KEY")]
    pub reset_key: Option<String>,
    /// Key sealing address-validation tokens, shared by all nodes, 64 hex
    /// digits. Default: generated once into the data directory (`token-key`).
    #[arg(long, env = "QUICMQ_TOKEN_KEY")]
    pub token_key: Option<String>,
    /// MQTT over TCP listen address, or `off`. Default 0.0.0.0:1883.
    #[arg(long, env = "QUICMQ_TCP_ADDR")]
    pub tcp_addr: Option<ListenAddr>,
    /// MQTT over TLS listen address, or `off`. Default 0.0.0.0:8883.
    #[arg(long, env = "QUICMQ_TLS_ADDR")]
    pub tls_addr: Option<ListenAddr>,
    /// Admin HTTP listen address (/metrics, /health/*, /api/...), or
    /// `off`. Default 127.0.0.1:8080. Any other than a loopback address
    /// needs `admin_token_file`.
    #[arg(long, env = "QUICMQ_ADMIN_ADDR")]
    pub admin_addr: Option<ListenAddr>,
    /// File holding the bearer token the admin API requires (first line;
    /// `quicmq token new FILE` writes one). Every request but those to
    /// `admin_open_paths` must carry `Authorization: Bearer TOKEN`.
    /// Default: none (the admin API is open, and may bind only loopback).
    #[arg(long, env = "QUICMQ_ADMIN_TOKEN_FILE")]
    pub admin_token_file: Option<PathBuf>,
    /// Admin paths served without the token, comma-separated: any of
    /// /metrics, /health/live, /health/ready. Default: all three.
    #[arg(long, env = "QUICMQ_ADMIN_OPEN_PATHS", value_delimiter = ',')]
    #[serde(default, deserialize_with = "deserialize_join")]
    pub admin_open_paths: Option<Vec<String>>,
    /// Serve the admin API over TLS with the node's cluster certificate,
    /// and take admin certificates of the cluster CA (`quicmq ca issue DIR
    /// --name NAME --usage admin`) as a credential besides the token.
    /// Default false.
    #[arg(long, env = "QUICMQ_ADMIN_MTLS", num_args = 0..=1, default_missing_value = "true", value_parser = clap::builder::BoolishValueParser::new())]
    pub admin_mtls: Option<bool>,
    /// PEM certificate chain for QUIC and TLS (with `key`). Default: a
    /// self-signed development certificate in the data directory.
    #[arg(long, env = "QUICMQ_CERT")]
    pub cert: Option<PathBuf>,
    /// PEM private key of `cert`.
    #[arg(long, env = "QUICMQ_KEY")]
    pub key: Option<PathBuf>,
    /// Password file (`user:argon2id-hash` lines; `quicmq passwd` writes
    /// them). Clients that give a user name must match it. Default: none.
    #[arg(long, env = "QUICMQ_PASSWORD_FILE")]
    pub password_file: Option<PathBuf>,
    /// Whether clients without a user name may connect. Default: true only
    /// for the single-node development default (no `cert`, no `join`),
    /// false otherwise.
    #[arg(long, env = "QUICMQ_ALLOW_ANONYMOUS", value_parser = clap::builder::BoolishValueParser::new())]
    pub allow_anonymous: Option<bool>,
    /// ACL file (`allow|deny publish|subscribe|both all|user:NAME|client:ID
    /// FILTER` lines, first match wins, deny when no rule matches).
    /// Reloaded with the password file on SIGHUP. Default: none (every
    /// client may publish and subscribe to everything).
    #[arg(long, env = "QUICMQ_ACL_FILE")]
    pub acl_file: Option<PathBuf>,
    /// PEM file of the CAs that sign client certificates. When set, QUIC
    /// and TLS clients are asked for a certificate; one that verifies
    /// authenticates the client as its identity (`cert_identity`).
    #[arg(long, env = "QUICMQ_CLIENT_CA")]
    pub client_ca: Option<PathBuf>,
    /// Whether QUIC and TLS clients must present a certificate signed by
    /// `client_ca` (false: a client without one logs in with a password or
    /// anonymously). Default false.
    #[arg(long, env = "QUICMQ_REQUIRE_CLIENT_CERT")]
    pub require_client_cert: Option<bool>,
    /// The field of a client certificate that names the client: `cn`
    /// (subject common name) or `san` (first DNS, e-mail or URI subject
    /// alternative name). Default `cn`.
    #[arg(long, env = "QUICMQ_CERT_IDENTITY")]
    pub cert_identity: Option<String>,
    /// Largest MQTT packet accepted from clients, bytes. Default 1048576.
    #[arg(long, env = "QUICMQ_MAX_PACKET_SIZE")]
    pub max_packet_size: Option<u32>,
    /// Receive Maximum announced to clients (unreleased QoS 2 messages). Default 1024.
    #[arg(long, env = "QUICMQ_RECEIVE_MAXIMUM")]
    pub receive_maximum: Option<u16>,
    /// Topic Alias Maximum announced to clients. Default 64.
    #[arg(long, env = "QUICMQ_TOPIC_ALIAS_MAXIMUM")]
    pub topic_alias_maximum: Option<u16>,
    /// Most subscriptions one client may hold; 0 = no limit. Default 1000.
    #[arg(long, env = "QUICMQ_MAX_SUBSCRIPTIONS")]
    pub max_subscriptions: Option<usize>,
    /// Most levels in a topic name or filter. Default 128.
    #[arg(long, env = "QUICMQ_MAX_TOPIC_LEVELS")]
    pub max_topic_levels: Option<usize>,
    /// Longest topic name or filter, bytes. Default 65535 (MQTT's own
    /// limit).
    #[arg(long, env = "QUICMQ_MAX_TOPIC_LENGTH")]
    pub max_topic_length: Option<usize>,
    /// Most clients connected to this node; 0 = no limit. Default 0. One
    /// more gets CONNACK 0x97 Quota exceeded (3.1.1: 3).
    #[arg(long, env = "QUICMQ_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,
    /// Most clients connected from one IP address; 0 = no limit. Default 0.
    #[arg(long, env = "QUICMQ_MAX_CONNECTIONS_PER_IP")]
    pub max_connections_per_ip: Option<usize>,
    /// New connections a second from one IP address (QUIC Initials, TCP
    /// connections); 0 = no limit. Default 0. Over it, the Initial is
    /// ignored (the client's retransmission comes back later) and a TCP
    /// connection closed.
    #[arg(long, env = "QUICMQ_MAX_HANDSHAKE_RATE_PER_IP")]
    pub max_handshake_rate_per_ip: Option<u32>,
    /// New connections one IP address may open at once above the rate.
    /// Default: the rate (one second's worth).
    #[arg(long, env = "QUICMQ_HANDSHAKE_BURST")]
    pub handshake_burst: Option<u32>,
    /// PUBLISH packets a second one client may send; 0 = no limit. Default
    /// 0. Over it, MQTT 5 QoS 1/2 gets 0x96 Message rate too high, QoS 0 is
    /// dropped; 3.1.1 connections are slowed down instead (nothing lost).
    #[arg(long, env = "QUICMQ_MAX_PUBLISH_RATE")]
    pub max_publish_rate: Option<u32>,
    /// PUBLISH packets a client may send at once above the rate. Default:
    /// the rate (one second's worth).
    #[arg(long, env = "QUICMQ_PUBLISH_BURST")]
    pub publish_burst: Option<u32>,
    /// Password checks (argon2id, 19 MiB each) running at once; 0 = one
    /// per CPU core. Default 0.
    #[arg(long, env = "QUICMQ_MAX_CONCURRENT_AUTH")]
    pub max_concurrent_auth: Option<usize>,
    /// Password checks waiting for a free worker; one more CONNECT gets
    /// CONNACK 0x89 Server busy (3.1.1: 3) at once. Default 256.
    #[arg(long, env = "QUICMQ_AUTH_QUEUE")]
    pub auth_queue: Option<usize>,
    /// Failed logins an address may make before it backs off (each
    /// further attempt waits twice as long; 0 = no back-off). Default 5.
    #[arg(long, env = "QUICMQ_AUTH_BACKOFF_AFTER")]
    pub auth_backoff_after: Option<u32>,
    /// The first back-off wait after failed logins, milliseconds.
    /// Default 1000.
    #[arg(long, env = "QUICMQ_AUTH_BACKOFF_INITIAL_MS")]
    pub auth_backoff_initial_ms: Option<u64>,
    /// The longest back-off wait, milliseconds; failures are forgotten
    /// this long after the last one. Default 60000.
    #[arg(long, env = "QUICMQ_AUTH_BACKOFF_MAX_MS")]
    pub auth_backoff_max_ms: Option<u64>,
    /// QUIC handshakes in progress above which a new client must first
    /// prove its address with a Retry (one more round trip; 0 = always).
    /// Default 64.
    #[arg(long, env = "QUICMQ_QUIC_RETRY_ABOVE")]
    pub quic_retry_above: Option<usize>,
    /// Longest keep alive granted, seconds; 0 = no limit. Default 0.
    #[arg(long, env = "QUICMQ_MAX_KEEP_ALIVE")]
    pub max_keep_alive: Option<u16>,
    /// Longest session expiry interval granted, seconds. Default 4294967295 (never).
    #[arg(long, env = "QUICMQ_MAX_SESSION_EXPIRY")]
    pub max_session_expiry: Option<u32>,
    /// TLS session ticket lifetime, seconds (10 to 604800). The leader adds
    /// a new cluster ticket key every lifetime; tickets of the previous key
    /// stay valid for one more. Default 43200 (12 h).
    #[arg(long, env = "QUICMQ_TLS_TICKET_LIFETIME")]
    pub tls_ticket_lifetime: Option<u64>,
    /// Messages queued per session beyond those in flight. Default 10000.
    #[arg(long, env = "QUICMQ_MAX_QUEUED_MESSAGES")]
    pub max_queued_messages: Option<usize>,
    /// Bytes of messages queued per session beyond those in flight; 0 =
    /// no limit. The drop policy applies when full. Default 16777216
    /// (16 MiB).
    #[arg(long, env = "QUICMQ_MAX_QUEUED_BYTES")]
    pub max_queued_bytes: Option<usize>,
    /// Bytes of messages all sessions of this node may hold, queued and in
    /// flight; a delivery that does not fit is dropped. 0 = a quarter of
    /// the memory the process may use (cgroup limit, else the machine's).
    /// Default 0.
    #[arg(long, env = "QUICMQ_MAX_MEMORY_QUEUED")]
    pub max_memory_queued: Option<usize>,
    /// Which message goes when a session's queue is full. Default drop-oldest.
    #[arg(long, env = "QUICMQ_QUEUE_DROP_POLICY", value_enum)]
    pub queue_drop_policy: Option<DropPolicyArg>,
    /// Log filter (tracing EnvFilter syntax). Default `info`.
    #[arg(long, env = "QUICMQ_LOG")]
    pub log: Option<String>,
}

/// A configuration error: which key, what is wrong, how to fix it.
#[derive(Debug, thiserror::Error)]
pub struct ConfigError {
    /// The key (or file) at fault.
    pub key: String,
    /// What is wrong and how to fix it.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "configuration key `{}`: {}", self.key, self.message)
    }
}

fn invalid(key: &str, message: impl Into<String>) -> ConfigError {
    ConfigError {
        key: key.to_string(),
        message: message.into(),
    }
}

/// How a node takes part in the cluster.
#[derive(Clone, Debug)]
pub struct ClusterSettings {
    /// This node's ID.
    pub node_id: u64,
    /// The cluster's ID.
    pub cluster_id: String,
    /// gRPC listen address.
    pub grpc_addr: SocketAddr,
    /// Host name or IP peers reach this node at.
    pub advertise_addr: String,
    /// Members to join through (empty: bootstrap).
    pub join: Vec<String>,
    /// Voter count.
    pub voters: usize,
    /// Failure domain.
    pub zone: String,
    /// HTTP `CONNECT` proxy for dialling peers.
    pub peer_proxy: Option<String>,
    /// Where the cluster mutual TLS material comes from.
    pub tls: ClusterTlsSource,
    /// Raft log entries between snapshots.
    pub raft_snapshot_logs: u64,
    /// How long a member may not answer before it is down.
    pub member_down_after: Duration,
    /// How long a member may be down before it is removed (`None`: never).
    pub member_remove_after: Option<Duration>,
}

/// Where a node's cluster mutual TLS comes from (see
/// [`crate::cluster::tls`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClusterTlsSource {
    /// The CA file and this node's certificate and key files.
    Files {
        /// `cluster_ca`.
        ca: PathBuf,
        /// `cluster_cert`.
        cert: PathBuf,
        /// `cluster_key`.
        key: PathBuf,
    },
    /// The CA file and its key: the node issues its own certificate.
    CaKey {
        /// `cluster_ca`.
        ca: PathBuf,
        /// `cluster_ca_key`.
        ca_key: PathBuf,
    },
    /// A CA in the data directory (`cluster-ca/`), made on first start: a
    /// node that bootstraps with nothing configured.
    Generated,
    /// No TLS (`cluster_plaintext`).
    Plaintext,
}

/// The validated configuration of a node.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    /// Data directory.
    pub data_dir: PathBuf,
    /// QUIC listen address.
    pub quic_addr: Option<SocketAddr>,
    /// Routed port (PROXY v2 from routers).
    pub routed_addr: Option<SocketAddr>,
    /// QUIC-LB configuration of the connection IDs this node issues.
    pub quic_lb: LbConfig,
    /// Cluster membership settings.
    pub cluster: ClusterSettings,
    /// Stateless reset key, if configured (else the data directory's).
    pub reset_key: Option<[u8; 32]>,
    /// Token key, if configured (else the data directory's).
    pub token_key: Option<[u8; 32]>,
    /// TCP listen address.
    pub tcp_addr: Option<SocketAddr>,
    /// TLS listen address.
    pub tls_addr: Option<SocketAddr>,
    /// Admin HTTP listen address.
    pub admin_addr: Option<SocketAddr>,
    /// The admin API's bearer token file, if one is required.
    pub admin_token_file: Option<PathBuf>,
    /// Admin paths served without the token.
    pub admin_open_paths: Vec<String>,
    /// Whether the admin API serves TLS and takes admin certificates.
    pub admin_mtls: bool,
    /// Certificate and key files, if configured.
    pub cert_and_key: Option<(PathBuf, PathBuf)>,
    /// Password file, if configured.
    pub password_file: Option<PathBuf>,
    /// Whether clients without a user name may connect.
    pub allow_anonymous: bool,
    /// ACL file, if configured.
    pub acl_file: Option<PathBuf>,
    /// Whether `allow_anonymous` is on only because this is the
    /// single-node development default (said loudly at start-up).
    pub anonymous_by_default: bool,
    /// Largest packet accepted.
    pub max_packet_size: u32,
    /// Receive Maximum announced.
    pub receive_maximum: u16,
    /// Topic Alias Maximum announced.
    pub topic_alias_maximum: u16,
    /// Subscriptions per client (0 = no limit).
    pub max_subscriptions: usize,
    /// Levels per topic name or filter.
    pub max_topic_levels: usize,
    /// Bytes per topic name or filter.
    pub max_topic_length: usize,
    /// CAs of client certificates (`None`: not asked for).
    pub client_ca: Option<PathBuf>,
    /// Whether a client certificate is required.
    pub require_client_cert: bool,
    /// The field of a client certificate that names the client.
    pub cert_identity: crate::tls::CertIdentityField,
    /// Connected clients (0 = no limit).
    pub max_connections: usize,
    /// Connected clients per IP address (0 = no limit).
    pub max_connections_per_ip: usize,
    /// New connections a second per IP address (0 = no limit).
    pub max_handshake_rate_per_ip: u32,
    /// Burst of new connections per IP address.
    pub handshake_burst: u32,
    /// PUBLISHes a second per client (0 = no limit).
    pub max_publish_rate: u32,
    /// Burst of PUBLISHes per client.
    pub publish_burst: u32,
    /// Password work at once, its queue, and the back-off after failed
    /// logins.
    pub auth_limits: crate::auth::AuthLimits,
    /// QUIC handshakes in progress above which unvalidated clients get a
    /// Retry.
    pub quic_retry_above: usize,
    /// Keep alive cap (0 = none).
    pub max_keep_alive: u16,
    /// Session expiry cap.
    pub max_session_expiry: u32,
    /// TLS session ticket lifetime (and ticket key rotation interval).
    pub tls_ticket_lifetime: Duration,
    /// Queue limit per session.
    pub max_queued_messages: usize,
    /// Queued bytes per session (0 = no limit).
    pub max_queued_bytes: usize,
    /// Bytes all sessions may hold (resolved: never 0).
    pub max_memory_queued: usize,
    /// Drop policy.
    pub queue_drop_policy: QueueDropPolicy,
    /// Log filter.
    pub log: String,
}

impl NodeConfig {
    /// Read the command line and environment, then the file it names.
    pub fn load() -> Result<NodeConfig, ConfigError> {
        let cli = Overrides::parse();
        let file = match &cli.config {
            Some(path) => read_file(path)?,
            None => Overrides::default(),
        };
        NodeConfig::resolve(cli, file)
    }

    /// Merge flags/environment over the file over the defaults, and validate.
    pub fn resolve(cli: Overrides, file: Overrides) -> Result<NodeConfig, ConfigError> {
        let o = merge(cli, file);
        // Read before the fields move out; reported after the join and
        // address checks, whose errors say more.
        let cluster_tls = cluster_tls_source(&o);
        let auth_limits = auth_limits(&o);
        let addr = |value: Option<ListenAddr>, default: &str| {
            value.map(|a| a.0).unwrap_or_else(|| default.parse().ok())
        };
        let cert_and_key = match (o.cert, o.key) {
            (Some(c), Some(k)) => Some((c, k)),
            (None, None) => None,
            (Some(_), None) => {
                return Err(invalid(
                    "key",
                    "`cert` is set but `key` is not; set both or neither",
                ))
            }
            (None, Some(_)) => {
                return Err(invalid(
                    "cert",
                    "`key` is set but `cert` is not; set both or neither",
                ))
            }
        };
        let max_packet_size = o.max_packet_size.unwrap_or(1024 * 1024);
        if !(64..=quicmq_proto::mqtt::MAX_PACKET_SIZE).contains(&max_packet_size) {
            return Err(invalid(
                "max_packet_size",
                format!(
                    "{max_packet_size} is out of range; use 64 to {}",
                    quicmq_proto::mqtt::MAX_PACKET_SIZE
                ),
            ));
        }
        let receive_maximum = o.receive_maximum.unwrap_or(1024);
        if receive_maximum == 0 {
            return Err(invalid(
                "receive_maximum",
                "0 is not allowed by MQTT; use 1 to 65535",
            ));
        }
        let max_queued_messages = o.max_queued_messages.unwrap_or(10_000);
        if max_queued_messages == 0 {
            return Err(invalid("max_queued_messages", "must be at least 1"));
        }
        let log = o.log.unwrap_or_else(|| "info".to_string());
        // Non-ASCII text can panic the filter parser (found by fuzzing);
        // filters are ASCII, so it is refused before parsing.
        if !log.is_ascii() || tracing_subscriber::EnvFilter::try_new(&log).is_err() {
            return Err(invalid(
                "log",
                format!("`{log}` is not a valid log filter; try `info` or `quicmq_node=debug`"),
            ));
        }
        let node_id = o.node_id.unwrap_or(1);
        if node_id == 0 {
            return Err(invalid("node_id", "0 is reserved; use 1 or more"));
        }
        let cluster_id = o.cluster_id.unwrap_or_else(|| "quicmq".to_string());
        if cluster_id.is_empty() || cluster_id.len() > 128 {
            return Err(invalid("cluster_id", "must be 1 to 128 characters"));
        }
        let voters = o.voters.unwrap_or(3);
        if !matches!(voters, 1 | 3 | 5) {
            return Err(invalid(
                "voters",
                format!("{voters} is not allowed; use 1, 3 or 5"),
            ));
        }
        let Some(grpc_addr) = addr(o.grpc_addr, "0.0.0.0:7000") else {
            return Err(invalid(
                "grpc_addr",
                "cannot be `off`: the node keeps its cluster state with Raft over gRPC; give an IP:PORT (127.0.0.1:0 for a private single node)",
            ));
        };
        let join: Vec<String> = o
            .join
            .unwrap_or_default()
            .into_iter()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect();
        for seed in &join {
            if seed
                .rsplit_once(':')
                .and_then(|(_, p)| p.parse::<u16>().ok())
                .is_none()
            {
                return Err(invalid("join", format!("`{seed}` is not HOST:PORT")));
            }
        }
        let advertise_addr = match o.advertise_addr.filter(|a| !a.is_empty()) {
            Some(host) => host,
            None if grpc_addr.ip().is_unspecified() => {
                if !join.is_empty() {
                    return Err(invalid(
                        "advertise_addr",
                        "must be set when joining a cluster while grpc_addr listens on all interfaces: give the host name or IP other nodes reach this one at",
                    ));
                }
                "127.0.0.1".to_string()
            }
            None => grpc_addr.ip().to_string(),
        };
        let cluster_tls = cluster_tls?;
        let peer_proxy = o.peer_proxy.filter(|p| !p.is_empty());
        if let Some(proxy) = &peer_proxy {
            if proxy
                .rsplit_once(':')
                .and_then(|(host, p)| p.parse::<u16>().ok().filter(|_| !host.is_empty()))
                .is_none()
            {
                return Err(invalid(
                    "peer_proxy",
                    format!("`{proxy}` is not HOST:PORT of an HTTP CONNECT proxy"),
                ));
            }
        }
        let max_topic_levels = o.max_topic_levels.unwrap_or(128);
        if max_topic_levels == 0 {
            return Err(invalid("max_topic_levels", "must be at least 1"));
        }
        let max_topic_length = o.max_topic_length.unwrap_or(65_535);
        if !(1..=65_535).contains(&max_topic_length) {
            return Err(invalid(
                "max_topic_length",
                format!("{max_topic_length} is out of range; use 1 to 65535"),
            ));
        }
        let client_ca = o.client_ca.filter(|p| !p.as_os_str().is_empty());
        let require_client_cert = o.require_client_cert.unwrap_or(false);
        if require_client_cert && client_ca.is_none() {
            return Err(invalid(
                "require_client_cert",
                "needs `client_ca`, the CAs that sign client certificates",
            ));
        }
        let cert_identity = match o.cert_identity.as_deref() {
            None | Some("") => crate::tls::CertIdentityField::default(),
            Some(text) => text
                .parse()
                .map_err(|e: String| invalid("cert_identity", e))?,
        };
        let max_handshake_rate_per_ip = o.max_handshake_rate_per_ip.unwrap_or(0);
        let max_publish_rate = o.max_publish_rate.unwrap_or(0);
        for (key, burst, rate) in [
            (
                "handshake_burst",
                o.handshake_burst,
                max_handshake_rate_per_ip,
            ),
            ("publish_burst", o.publish_burst, max_publish_rate),
        ] {
            if burst == Some(0) && rate > 0 {
                return Err(invalid(
                    key,
                    "must be at least 1 while its rate is limited; leave it out to allow one second's worth",
                ));
            }
        }
        let auth_limits = auth_limits?;
        let admin_mtls = o.admin_mtls.unwrap_or(false);
        if admin_mtls && o.cluster_plaintext == Some(true) {
            return Err(invalid(
                "admin_mtls",
                "needs the cluster CA, and cluster_plaintext turns cluster TLS off; use admin_token_file instead",
            ));
        }
        let (admin_addr, admin_token_file, admin_open_paths) = admin_settings(
            addr(o.admin_addr, "127.0.0.1:8080"),
            o.admin_token_file.clone(),
            o.admin_open_paths.clone(),
            admin_mtls,
        )?;
        let password_file = o.password_file.filter(|p| !p.as_os_str().is_empty());
        let acl_file = o.acl_file.filter(|p| !p.as_os_str().is_empty());
        let dev_default = cert_and_key.is_none()
            && join.is_empty()
            && password_file.is_none()
            && client_ca.is_none();
        let allow_anonymous = o.allow_anonymous.unwrap_or(dev_default);
        let anonymous_by_default = allow_anonymous && o.allow_anonymous.is_none();
        let raft_snapshot_logs = o.raft_snapshot_logs.unwrap_or(10_000);
        if raft_snapshot_logs < 10 {
            return Err(invalid("raft_snapshot_logs", "must be at least 10"));
        }
        let member_down_after = o.member_down_after.unwrap_or(3_000);
        if !(500..=600_000).contains(&member_down_after) {
            return Err(invalid(
                "member_down_after",
                format!("{member_down_after} is out of range; use 500 to 600000 milliseconds"),
            ));
        }
        let member_remove_after = match o.member_remove_after.unwrap_or(0) {
            0 => None,
            ms if ms >= 1_000 && ms >= member_down_after => Some(Duration::from_millis(ms)),
            ms => {
                return Err(invalid(
                    "member_remove_after",
                    format!("{ms} is too short; use 0 (never) or at least 1000 milliseconds and at least member_down_after ({member_down_after})"),
                ))
            }
        };
        let member_down_after = Duration::from_millis(member_down_after);
        let server_id_len = o.server_id_len.unwrap_or(2);
        if !(1..=15).contains(&server_id_len) {
            return Err(invalid(
                "server_id_len",
                format!("{server_id_len} is out of range; use 1 to 15"),
            ));
        }
        let quic_lb_key = optional_key("quic_lb_key", o.quic_lb_key.as_deref())?;
        let quic_lb = LbConfig::new(
            o.quic_lb_config_id.unwrap_or(0),
            server_id_len,
            o.quic_lb_nonce_len.unwrap_or(8),
            quic_lb_key,
        )
        .map_err(|e| {
            invalid(
                "quic_lb_nonce_len",
                format!(
                    "{e}; config ID 0 to 6, nonce 4 to 18 octets, server ID + nonce at most 19"
                ),
            )
        })?;
        let tls_ticket_lifetime = o.tls_ticket_lifetime.unwrap_or(43_200);
        if !(10..=604_800).contains(&tls_ticket_lifetime) {
            return Err(invalid(
                "tls_ticket_lifetime",
                format!("{tls_ticket_lifetime} is out of range; use 10 to 604800 seconds (TLS 1.3 allows at most 7 days)"),
            ));
        }
        let tls_ticket_lifetime = Duration::from_secs(tls_ticket_lifetime);
        let reset_key = optional_key("reset_key", o.reset_key.as_deref())?;
        let token_key = optional_key("token_key", o.token_key.as_deref())?;
        let config = NodeConfig {
            data_dir: o.data_dir.unwrap_or_else(|| PathBuf::from("quicmq-data")),
            quic_addr: addr(o.quic_addr, "0.0.0.0:14567"),
            routed_addr: addr(o.routed_addr, "0.0.0.0:14568"),
            quic_lb,
            cluster: ClusterSettings {
                node_id,
                cluster_id,
                grpc_addr,
                advertise_addr,
                join,
                voters,
                zone: o.zone.unwrap_or_default(),
                peer_proxy,
                tls: cluster_tls,
                raft_snapshot_logs,
                member_down_after,
                member_remove_after,
            },
            reset_key,
            token_key,
            tcp_addr: addr(o.tcp_addr, "0.0.0.0:1883"),
            tls_addr: addr(o.tls_addr, "0.0.0.0:8883"),
            admin_addr,
            admin_token_file,
            admin_open_paths,
            admin_mtls,
            cert_and_key,
            password_file,
            allow_anonymous,
            acl_file,
            anonymous_by_default,
            max_packet_size,
            receive_maximum,
            topic_alias_maximum: o.topic_alias_maximum.unwrap_or(64),
            max_subscriptions: o
                .max_subscriptions
                .unwrap_or(crate::broker::DEFAULT_MAX_SUBSCRIPTIONS),
            max_topic_levels,
            max_topic_length,
            client_ca,
            require_client_cert,
            cert_identity,
            max_connections: o.max_connections.unwrap_or(0),
            max_connections_per_ip: o.max_connections_per_ip.unwrap_or(0),
            max_handshake_rate_per_ip,
            handshake_burst: o.handshake_burst.unwrap_or(max_handshake_rate_per_ip),
            max_publish_rate,
            publish_burst: o.publish_burst.unwrap_or(max_publish_rate),
            auth_limits,
            quic_retry_above: o
                .quic_retry_above
                .unwrap_or(crate::limits::DEFAULT_RETRY_ABOVE),
            max_keep_alive: o.max_keep_alive.unwrap_or(0),
            max_session_expiry: o.max_session_expiry.unwrap_or(u32::MAX),
            tls_ticket_lifetime,
            max_queued_messages,
            max_queued_bytes: o
                .max_queued_bytes
                .unwrap_or(crate::broker::DEFAULT_MAX_QUEUED_BYTES),
            max_memory_queued: match o.max_memory_queued.unwrap_or(0) {
                0 => crate::broker::default_memory_budget(),
                n => n,
            },
            queue_drop_policy: match o.queue_drop_policy.unwrap_or(DropPolicyArg::DropOldest) {
                DropPolicyArg::DropOldest => QueueDropPolicy::DropOldest,
                DropPolicyArg::DropNewest => QueueDropPolicy::DropNewest,
            },
            log,
        };
        if config.quic_addr.is_none()
            && config.routed_addr.is_none()
            && config.tcp_addr.is_none()
            && config.tls_addr.is_none()
        {
            return Err(invalid("quic_addr", "every MQTT listener is `off`; enable at least one of quic_addr, routed_addr, tcp_addr, tls_addr"));
        }
        Ok(config)
    }

    /// The broker settings this configuration asks for.
    pub fn broker_settings(&self) -> BrokerSettings {
        BrokerSettings {
            session_limits: SessionLimits {
                max_queued: self.max_queued_messages,
                max_queued_bytes: self.max_queued_bytes,
                drop_policy: self.queue_drop_policy,
                budget: Some(Arc::new(crate::broker::QueueBudget::new(
                    self.max_memory_queued,
                ))),
            },
            max_packet_size: self.max_packet_size,
            receive_maximum: self.receive_maximum,
            topic_alias_maximum: self.topic_alias_maximum,
            topic_limits: crate::broker::TopicLimits {
                max_subscriptions: self.max_subscriptions,
                max_levels: self.max_topic_levels,
                max_length: self.max_topic_length,
            },
            max_keep_alive: self.max_keep_alive,
            max_session_expiry: self.max_session_expiry,
            limits: crate::limits::AbuseLimits {
                connections: Arc::new(crate::limits::ConnectionSlots::new(
                    self.max_connections,
                    self.max_connections_per_ip,
                )),
                handshakes: Arc::new(crate::limits::SourceRate::new(
                    self.max_handshake_rate_per_ip,
                    self.handshake_burst,
                )),
                handshake_load: Arc::new(crate::limits::HandshakeLoad::new(self.quic_retry_above)),
                publish_rate: self.max_publish_rate,
                publish_burst: self.publish_burst,
            },
            ..BrokerSettings::default()
        }
    }
}

/// The admin endpoint: a bind other than loopback needs a token file;
/// open paths only from [`crate::admin_access::OPENABLE_PATHS`].
type AdminSettings = (Option<SocketAddr>, Option<PathBuf>, Vec<String>);

fn admin_settings(
    addr: Option<SocketAddr>,
    token_file: Option<PathBuf>,
    open_paths: Option<Vec<String>>,
    mtls: bool,
) -> Result<AdminSettings, ConfigError> {
    let token_file = token_file.filter(|p| !p.as_os_str().is_empty());
    if let Some(addr) = addr {
        if !addr.ip().is_loopback() && token_file.is_none() && !mtls {
            return Err(invalid(
                "admin_addr",
                format!("{addr} is not a loopback address, and the admin API can remove members and shut the node down: set admin_token_file (a bearer token every request must carry; `quicmq token new FILE` writes one) or admin_mtls (admin certificates of the cluster CA), or bind 127.0.0.1"),
            ));
        }
    }
    let open_paths = match open_paths {
        None => crate::admin_access::default_open_paths(),
        Some(paths) => {
            let paths: Vec<String> = paths
                .into_iter()
                .map(|p| p.trim().to_owned())
                .filter(|p| !p.is_empty())
                .collect();
            if let Some(bad) = paths
                .iter()
                .find(|p| !crate::admin_access::OPENABLE_PATHS.contains(&p.as_str()))
            {
                return Err(invalid(
                    "admin_open_paths",
                    format!("`{bad}` cannot be served without the token; choose among /metrics, /health/live, /health/ready"),
                ));
            }
            paths
        }
    };
    Ok((addr, token_file, open_paths))
}

/// `max_concurrent_auth`, `auth_queue` and the `auth_backoff_*` keys.
fn auth_limits(o: &Overrides) -> Result<crate::auth::AuthLimits, ConfigError> {
    let defaults = crate::auth::AuthLimits::default();
    let max_concurrent = match o.max_concurrent_auth.unwrap_or(0) {
        0 => defaults.max_concurrent,
        n if n > 1024 => {
            return Err(invalid(
                "max_concurrent_auth",
                format!(
                "{n} is out of range; use 0 (one per CPU core) to 1024 (each check takes 19 MiB)"
            ),
            ))
        }
        n => n,
    };
    let queue = o.auth_queue.unwrap_or(defaults.queue);
    if queue > 1_000_000 {
        return Err(invalid(
            "auth_queue",
            format!("{queue} is out of range; use 0 to 1000000"),
        ));
    }
    let initial = o
        .auth_backoff_initial_ms
        .map_or(defaults.backoff.initial, Duration::from_millis);
    let max = o
        .auth_backoff_max_ms
        .map_or(defaults.backoff.max, Duration::from_millis);
    if initial.is_zero() {
        return Err(invalid(
            "auth_backoff_initial_ms",
            "must be at least 1; set auth_backoff_after = 0 to turn back-off off",
        ));
    }
    if max < initial {
        return Err(invalid(
            "auth_backoff_max_ms",
            format!(
                "{} ms is below auth_backoff_initial_ms ({} ms); the cap must be at least the first wait",
                max.as_millis(),
                initial.as_millis()
            ),
        ));
    }
    Ok(crate::auth::AuthLimits {
        max_concurrent,
        queue,
        backoff: crate::auth::BackoffSettings {
            after: o.auth_backoff_after.unwrap_or(defaults.backoff.after),
            initial,
            max,
        },
    })
}

/// An optional key given as hex (`""` = none), `N` octets.
/// Which cluster TLS the keys ask for; errors name the key to fix.
fn cluster_tls_source(o: &Overrides) -> Result<ClusterTlsSource, ConfigError> {
    let joins = o.join.iter().flatten().any(|seed| !seed.trim().is_empty());
    let path = |p: &Option<PathBuf>| p.clone().filter(|p| !p.as_os_str().is_empty());
    let (ca, cert, key, ca_key) = (
        path(&o.cluster_ca),
        path(&o.cluster_cert),
        path(&o.cluster_key),
        path(&o.cluster_ca_key),
    );
    if o.cluster_plaintext == Some(true) {
        if ca.is_some() || cert.is_some() || key.is_some() || ca_key.is_some() {
            return Err(invalid(
                "cluster_plaintext",
                "cannot be combined with cluster_ca, cluster_cert, cluster_key or cluster_ca_key; choose TLS or plaintext",
            ));
        }
        return Ok(ClusterTlsSource::Plaintext);
    }
    match (ca, cert, key, ca_key) {
        (Some(ca), Some(cert), Some(key), None) => Ok(ClusterTlsSource::Files { ca, cert, key }),
        (Some(ca), None, None, Some(ca_key)) => Ok(ClusterTlsSource::CaKey { ca, ca_key }),
        (None, None, None, None) if !joins => Ok(ClusterTlsSource::Generated),
        (None, None, None, None) => Err(invalid(
            "cluster_ca",
            "a node that joins a cluster needs the cluster's CA: set cluster_ca with cluster_cert and cluster_key (`quicmq ca issue DIR --name NAME --usage node`), or with cluster_ca_key (the first node generated DATA_DIR/cluster-ca/ca.pem and ca-key.pem); or cluster_plaintext = true where the network secures the cluster",
        )),
        (_, Some(_), None, _) => Err(invalid("cluster_key", "`cluster_cert` is set but `cluster_key` is not; set both")),
        (_, None, Some(_), _) => Err(invalid("cluster_cert", "`cluster_key` is set but `cluster_cert` is not; set both")),
        (None, _, _, _) => Err(invalid(
            "cluster_ca",
            "the CA certificate(s) peers are checked against is missing; set cluster_ca",
        )),
        (Some(_), Some(_), Some(_), Some(_)) => Err(invalid(
            "cluster_ca_key",
            "not used with cluster_cert and cluster_key; leave it out (keep the CA key off nodes that have their own certificate)",
        )),
        (Some(_), None, None, None) => Err(invalid(
            "cluster_cert",
            "this node's certificate is missing: set cluster_cert and cluster_key (`quicmq ca issue DIR --name NAME --usage node`), or cluster_ca_key to issue one at start",
        )),
    }
}

fn optional_key<const N: usize>(
    key: &str,
    text: Option<&str>,
) -> Result<Option<[u8; N]>, ConfigError> {
    match text {
        None | Some("") => Ok(None),
        Some(text) => hex::decode_array(text)
            .map(Some)
            .map_err(|e| invalid(key, e.to_string())),
    }
}

/// `join` (and `admin_open_paths`) in TOML: a list of strings, or one
/// comma-separated string (as in the flag and environment variable).
fn deserialize_join<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<String>>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Join {
        One(String),
        Many(Vec<String>),
    }
    Ok(Some(match Join::deserialize(d)? {
        Join::One(s) => s.split(',').map(str::to_string).collect(),
        Join::Many(v) => v,
    }))
}

/// Read and parse a TOML configuration file.
pub fn read_file(path: &Path) -> Result<Overrides, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| invalid("config", format!("cannot read {}: {e}", path.display())))?;
    toml::from_str(&text).map_err(|e| {
        invalid(
            "config",
            format!("{}: {}", path.display(), e.to_string().trim()),
        )
    })
}

macro_rules! merge_fields {
    ($first:ident, $second:ident; $($field:ident),* $(,)?) => {
        Overrides {
            config: $first.config,
            $($field: $first.$field.or($second.$field),)*
        }
    };
}

fn merge(cli: Overrides, file: Overrides) -> Overrides {
    merge_fields!(cli, file;
        data_dir, quic_addr, routed_addr, node_id, cluster_id, grpc_addr, advertise_addr, join,
        voters, zone, peer_proxy, cluster_ca, cluster_cert, cluster_key, cluster_ca_key,
        cluster_plaintext, raft_snapshot_logs, member_down_after, member_remove_after, server_id_len, quic_lb_config_id, quic_lb_nonce_len,
        quic_lb_key, reset_key, token_key, tcp_addr, tls_addr, admin_addr, admin_token_file,
        admin_open_paths, admin_mtls, cert, key,
        max_packet_size, receive_maximum, topic_alias_maximum, max_keep_alive,
        max_subscriptions, max_topic_levels, max_topic_length,
        max_connections, max_connections_per_ip, max_handshake_rate_per_ip, handshake_burst,
        max_publish_rate, publish_burst, quic_retry_above,
        max_concurrent_auth, auth_queue, auth_backoff_after, auth_backoff_initial_ms,
        auth_backoff_max_ms,
        client_ca, require_client_cert, cert_identity,
        max_session_expiry, tls_ticket_lifetime, max_queued_messages, max_queued_bytes,
        max_memory_queued, queue_drop_policy, log,
        password_file, allow_anonymous, acl_file,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(text: &str) -> Overrides {
        toml::from_str(text).unwrap()
    }

    #[test]
    fn defaults_are_the_documented_ports() {
        let c = NodeConfig::resolve(Overrides::default(), Overrides::default()).unwrap();
        assert_eq!(c.quic_addr, Some("0.0.0.0:14567".parse().unwrap()));
        assert_eq!(c.tcp_addr, Some("0.0.0.0:1883".parse().unwrap()));
        assert_eq!(c.tls_addr, Some("0.0.0.0:8883".parse().unwrap()));
        assert_eq!(c.admin_addr, Some("127.0.0.1:8080".parse().unwrap()));
        assert_eq!(c.data_dir, PathBuf::from("quicmq-data"));
        assert_eq!(c.routed_addr, Some("0.0.0.0:14568".parse().unwrap()));
        assert_eq!(c.cluster.node_id, 1);
        assert_eq!(c.cluster.grpc_addr, "0.0.0.0:7000".parse().unwrap());
        assert_eq!(c.cluster.advertise_addr, "127.0.0.1");
        assert!(c.cluster.join.is_empty());
        assert_eq!(c.cluster.voters, 3);
        assert_eq!(c.quic_lb.cid_len(), 11);
    }

    #[test]
    fn flags_beat_the_file() {
        let cli = Overrides::try_parse_from(["quicmq-node", "--max-packet-size", "2048"]).unwrap();
        let c =
            NodeConfig::resolve(cli, file("max_packet_size = 4096\nreceive_maximum = 7")).unwrap();
        assert_eq!(c.max_packet_size, 2048);
        assert_eq!(c.receive_maximum, 7);
    }

    #[test]
    fn abuse_limits_default_off_and_bursts_default_to_the_rate() {
        let c = NodeConfig::resolve(Overrides::default(), file("")).unwrap();
        assert_eq!((c.max_connections, c.max_publish_rate), (0, 0));
        assert_eq!(c.quic_retry_above, crate::limits::DEFAULT_RETRY_ABOVE);
        let c = NodeConfig::resolve(
            Overrides::default(),
            file("max_publish_rate = 7\nmax_handshake_rate_per_ip = 3\nhandshake_burst = 9"),
        )
        .unwrap();
        assert_eq!((c.max_publish_rate, c.publish_burst), (7, 7));
        assert_eq!((c.max_handshake_rate_per_ip, c.handshake_burst), (3, 9));
        let err = NodeConfig::resolve(
            Overrides::default(),
            file("max_publish_rate = 7\npublish_burst = 0"),
        )
        .unwrap_err();
        assert_eq!(err.key, "publish_burst");
        let cli =
            Overrides::try_parse_from(["quicmq-node", "--max-connections-per-ip", "5"]).unwrap();
        let c = NodeConfig::resolve(cli, file("max_connections_per_ip = 9")).unwrap();
        assert_eq!(c.max_connections_per_ip, 5);
    }

    #[test]
    fn member_liveness_timings_are_checked() {
        let resolve = |text: &str| NodeConfig::resolve(Overrides::default(), file(text));
        let c = resolve("").unwrap();
        assert_eq!(c.cluster.member_down_after, Duration::from_secs(3));
        assert_eq!(c.cluster.member_remove_after, None);
        let c = resolve("member_down_after = 1000\nmember_remove_after = 600000").unwrap();
        assert_eq!(c.cluster.member_down_after, Duration::from_secs(1));
        assert_eq!(
            c.cluster.member_remove_after,
            Some(Duration::from_secs(600))
        );
        assert_eq!(
            resolve("member_down_after = 3").unwrap_err().key,
            "member_down_after"
        );
        let err = resolve("member_remove_after = 2000").unwrap_err();
        assert_eq!(err.key, "member_remove_after");
        assert!(err.message.contains("member_down_after"), "{err}");
        let cli = Overrides::try_parse_from(["quicmq-node", "--member-down-after", "700"]).unwrap();
        let c = NodeConfig::resolve(cli, file("member_down_after = 9000")).unwrap();
        assert_eq!(c.cluster.member_down_after, Duration::from_millis(700));
    }

    #[test]
    fn memory_limits_are_finite_by_default() {
        let resolve = |text: &str| NodeConfig::resolve(Overrides::default(), file(text));
        let c = resolve("").unwrap();
        assert_eq!(c.max_subscriptions, 1000);
        assert_eq!(c.max_queued_bytes, 16 << 20);
        assert!(c.max_memory_queued > 0, "a quarter of some memory");
        let c = resolve("max_queued_bytes = 0\nmax_memory_queued = 4096\nmax_subscriptions = 0")
            .unwrap();
        assert_eq!(
            (c.max_queued_bytes, c.max_memory_queued, c.max_subscriptions),
            (0, 4096, 0)
        );
        let limits = c.broker_settings().session_limits;
        assert_eq!(limits.budget.map(|b| b.limit()), Some(4096));
    }

    #[test]
    fn the_admin_api_binds_loopback_unless_a_token_guards_it() {
        let resolve = |text: &str| NodeConfig::resolve(Overrides::default(), file(text));
        let c = resolve("").unwrap();
        assert_eq!(c.admin_addr, Some("127.0.0.1:8080".parse().unwrap()));
        assert_eq!(c.admin_token_file, None);
        assert_eq!(
            c.admin_open_paths,
            ["/metrics", "/health/live", "/health/ready"]
        );
        let err = resolve("admin_addr = \"0.0.0.0:8080\"").unwrap_err();
        assert_eq!(err.key, "admin_addr");
        assert!(err.message.contains("admin_token_file"), "{err}");
        let c = resolve("admin_addr = \"0.0.0.0:8080\"\nadmin_token_file = \"/t\"").unwrap();
        assert_eq!(c.admin_token_file, Some(PathBuf::from("/t")));
        let c = resolve("admin_addr = \"0.0.0.0:8080\"\nadmin_mtls = true").unwrap();
        assert!(c.admin_mtls && c.admin_token_file.is_none());
        let err = resolve("admin_mtls = true\ncluster_plaintext = true").unwrap_err();
        assert_eq!(err.key, "admin_mtls");
        assert!(resolve("admin_addr = \"[::1]:8080\"").is_ok());
        let c = resolve("admin_open_paths = \"/health/live,/health/ready\"").unwrap();
        assert_eq!(c.admin_open_paths, ["/health/live", "/health/ready"]);
        let c = resolve("admin_open_paths = []").unwrap();
        assert!(c.admin_open_paths.is_empty());
        let err = resolve("admin_open_paths = [\"/api/cluster/status\"]").unwrap_err();
        assert_eq!(err.key, "admin_open_paths");
        let cli =
            Overrides::try_parse_from(["quicmq-node", "--admin-open-paths", "/metrics"]).unwrap();
        let c = NodeConfig::resolve(cli, file("")).unwrap();
        assert_eq!(c.admin_open_paths, ["/metrics"]);
    }

    #[test]
    fn cluster_tls_is_generated_alone_and_required_to_join() {
        let resolve = |text: &str| NodeConfig::resolve(Overrides::default(), file(text));
        assert_eq!(
            resolve("").unwrap().cluster.tls,
            ClusterTlsSource::Generated
        );
        let err = resolve("join = \"n1:7000\"\nadvertise_addr = \"n2\"").unwrap_err();
        assert_eq!(err.key, "cluster_ca");
        assert!(err.message.contains("cluster_plaintext"), "{err}");
        assert_eq!(
            resolve("join = \"n1:7000\"\nadvertise_addr = \"n2\"\ncluster_plaintext = true")
                .unwrap()
                .cluster
                .tls,
            ClusterTlsSource::Plaintext
        );
        assert_eq!(
            resolve("cluster_ca = \"ca.pem\"\ncluster_ca_key = \"ca-key.pem\"")
                .unwrap()
                .cluster
                .tls,
            ClusterTlsSource::CaKey {
                ca: "ca.pem".into(),
                ca_key: "ca-key.pem".into()
            }
        );
        assert_eq!(
            resolve("cluster_ca = \"c\"\ncluster_cert = \"n\"\ncluster_key = \"k\"")
                .unwrap()
                .cluster
                .tls,
            ClusterTlsSource::Files {
                ca: "c".into(),
                cert: "n".into(),
                key: "k".into()
            }
        );
        for (text, key) in [
            ("cluster_ca = \"c\"", "cluster_cert"),
            ("cluster_ca = \"c\"\ncluster_cert = \"n\"", "cluster_key"),
            ("cluster_cert = \"n\"\ncluster_key = \"k\"", "cluster_ca"),
            ("cluster_ca_key = \"k\"", "cluster_ca"),
            (
                "cluster_ca = \"c\"\ncluster_cert = \"n\"\ncluster_key = \"k\"\ncluster_ca_key = \"x\"",
                "cluster_ca_key",
            ),
            ("cluster_plaintext = true\ncluster_ca = \"c\"", "cluster_plaintext"),
        ] {
            assert_eq!(resolve(text).unwrap_err().key, key, "{text}");
        }
    }

    #[test]
    fn errors_name_the_key() {
        let err =
            NodeConfig::resolve(Overrides::default(), file("max_packet_size = 3")).unwrap_err();
        assert_eq!(err.key, "max_packet_size");
        let err = NodeConfig::resolve(Overrides::default(), file("node_id = 0")).unwrap_err();
        assert_eq!(err.key, "node_id");
        let err = NodeConfig::resolve(Overrides::default(), file("voters = 2")).unwrap_err();
        assert_eq!(err.key, "voters");
        let err = NodeConfig::resolve(Overrides::default(), file("join = \"a:1,b\"")).unwrap_err();
        assert_eq!(err.key, "join");
        let err = NodeConfig::resolve(Overrides::default(), file("join = [\"a:1\"]")).unwrap_err();
        assert_eq!(
            err.key, "advertise_addr",
            "joining from 0.0.0.0 needs an address"
        );
        let err =
            NodeConfig::resolve(Overrides::default(), file("grpc_addr = \"off\"")).unwrap_err();
        assert_eq!(err.key, "grpc_addr");
        let c = NodeConfig::resolve(
            Overrides::default(),
            file("join = \"n1:7000, n2:7000\"\nadvertise_addr = \"n3\"\ncluster_plaintext = true"),
        )
        .unwrap();
        assert_eq!(c.cluster.join, ["n1:7000", "n2:7000"]);
        let err =
            NodeConfig::resolve(Overrides::default(), file("quic_lb_key = \"00\"")).unwrap_err();
        assert_eq!(err.key, "quic_lb_key");
        let err =
            NodeConfig::resolve(Overrides::default(), file("quic_lb_nonce_len = 30")).unwrap_err();
        assert_eq!(err.key, "quic_lb_nonce_len");
        let err =
            NodeConfig::resolve(Overrides::default(), file("reset_key = \"abc\"")).unwrap_err();
        assert_eq!(err.key, "reset_key");
        let err =
            NodeConfig::resolve(Overrides::default(), file("max_topic_levels = 0")).unwrap_err();
        assert_eq!(err.key, "max_topic_levels");
        let err = NodeConfig::resolve(Overrides::default(), file("max_topic_length = 70000"))
            .unwrap_err();
        assert_eq!(err.key, "max_topic_length");
        let err = NodeConfig::resolve(Overrides::default(), file("log = \"a,\t0.\u{f018}=\""))
            .unwrap_err();
        assert_eq!(err.key, "log", "non-ASCII filters are refused, not parsed");
        let err =
            NodeConfig::resolve(Overrides::default(), file("peer_proxy = \"proxy\"")).unwrap_err();
        assert_eq!(err.key, "peer_proxy");
        let c = NodeConfig::resolve(Overrides::default(), file("peer_proxy = \"egress:3128\""))
            .unwrap();
        assert_eq!(c.cluster.peer_proxy.as_deref(), Some("egress:3128"));
        let err = NodeConfig::resolve(Overrides::default(), file("cert = \"c.pem\"")).unwrap_err();
        assert_eq!(err.key, "key");
        let err = toml::from_str::<Overrides>("max_pakcet_size = 3").unwrap_err();
        assert!(err.to_string().contains("max_pakcet_size"), "{err}");
        let err = toml::from_str::<Overrides>("tcp_addr = \"nonsense\"").unwrap_err();
        assert!(err.to_string().contains("nonsense"), "{err}");
        let err = NodeConfig::resolve(
            Overrides::default(),
            file("quic_addr = \"off\"\nrouted_addr = \"off\"\ntcp_addr = \"off\"\ntls_addr = \"off\""),
        )
        .unwrap_err();
        assert_eq!(err.key, "quic_addr");
    }
}
