//! `quicmq`: the client and operator CLI of quicmq.
//!
//! ```text
//! quicmq pub -h HOST -p PORT -t TOPIC -m MSG [-q 0|1|2] [-r] [-i CLIENT_ID]
//!            [--transport quic|tcp|tls] [--cafile FILE | --insecure] [--cert FILE --key FILE]
//!            [-V 5|311] [-u USER -P PASS]
//! quicmq sub -h HOST -p PORT -t FILTER [-t FILTER ...] [-q N] [-C COUNT] [-c] [-i CLIENT_ID] [-v]
//!            [--transport ...] [--cafile FILE | --insecure] [-V 5|311]
//! quicmq bench pub  [-c CLIENTS] [-t TOPIC] [-q N] [-s SIZE] [-r RATE] [-n COUNT] [-d SECS]
//!                   [--retain] [--inflight N] [--json] [connection flags]
//! quicmq bench sub  [-c CLIENTS] [-t FILTER] [-q N] [--share GROUP] [-n COUNT] [--idle SECS] [--session-expiry SECS]
//!                   [-d SECS] [--receive-maximum N] [--json] [connection flags]
//! quicmq bench conn [-c CLIENTS] [--rate N] [--max-pending N] [-d SECS] [--session-expiry SECS]
//!                   [--endpoint-per-connection] [--json] [connection flags]
//! quicmq health [--admin HOST:PORT] [--live] [--timeout SECS]
//! ```
//!
//! `sub` prints each message as `TOPIC PAYLOAD` on its own line of stdout
//! and nothing else there; diagnostics go to stderr (`RUST_LOG` or
//! `QUICMQ_LOG` set the log filter).
//!
//! `bench` prints a progress bar on stderr (when it is a terminal), one
//! line on stderr once the clients are ready (`quicmq bench sub: N
//! subscribers ready`, `quicmq bench conn: N connections open; ...`, for
//! scripts to wait on), and the summary on stdout: a few lines, or one JSON
//! object with `--json`.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context as _};
use bytes::Bytes;
use clap::builder::FalseyValueParser;
use clap::{ArgAction, Args, Parser, Subcommand, ValueEnum};
use quicmq_node::bench::{
    Bound, ConnBench, ConnSettings, ProgressMode, PubBench, PubSettings, SubBench, SubSettings,
};
use quicmq_node::client::{
    Backoff, Client, ClientOptions, Event, Properties, ProtocolVersion, Publish, QoS, ReasonCode,
    ReconnectEvent, ReconnectingClient, SubscriptionOptions, TlsOptions, Transport,
};

#[derive(Parser, Debug)]
#[command(
    name = "quicmq",
    version,
    about = "quicmq client and operator CLI (MQTT 5.0 / 3.1.1 over QUIC, TCP or TLS)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Publish one message.
    #[command(disable_help_flag = true, disable_version_flag = true)]
    Pub(PubArgs),
    /// Subscribe and print each message as `TOPIC PAYLOAD` on its own line.
    #[command(disable_help_flag = true, disable_version_flag = true)]
    Sub(SubArgs),
    /// Load generator: publishers, subscribers or idle connections, with
    /// progress and a summary.
    #[command(subcommand)]
    Bench(BenchCommand),
    /// Cluster operations through a node's admin HTTP endpoint.
    Cluster(ClusterArgs),
    /// Health check of a node or router: exits 0 when its admin endpoint
    /// answers `/health/ready` (or `/health/live`) with HTTP 200, else 1.
    /// For container health checks (the image has no shell or curl).
    Health(HealthArgs),
    /// Add a user to a password file or change its password (argon2id),
    /// like `mosquitto_passwd`; `-D` deletes. The file is created when
    /// missing and rewritten atomically with mode 0600, comments kept.
    Passwd(PasswdArgs),
    /// A certificate authority for client (device) certificates and for
    /// the cluster's mutual TLS: `ca new` makes one, `ca issue` signs a
    /// certificate with it.
    #[command(subcommand)]
    Ca(CaCommand),
    /// Bearer tokens for a node's admin API (`admin_token_file`).
    #[command(subcommand)]
    Token(TokenCommand),
}

#[derive(Subcommand, Debug)]
enum TokenCommand {
    /// Write a new random token (32 random bytes in hex) to FILE, mode
    /// 0600. Refuses to overwrite an existing file.
    New {
        /// The token file.
        file: PathBuf,
        /// Keep a token FILE already holds and succeed (for an init step
        /// that runs at every start).
        #[arg(long)]
        if_missing: bool,
    },
}

#[derive(Subcommand, Debug)]
enum CaCommand {
    /// Generate a CA: DIR/ca.pem and DIR/ca-key.pem (mode 0600). Refuses
    /// to overwrite an existing CA.
    New {
        /// Directory for the CA files.
        dir: PathBuf,
        /// The CA's common name.
        #[arg(long, default_value = "quicmq CA")]
        name: String,
        /// Keep a CA DIR already holds and succeed (for an init step that
        /// runs at every start).
        #[arg(long)]
        if_missing: bool,
    },
    /// Issue a certificate signed by the CA in DIR: OUT.pem and
    /// OUT-key.pem (mode 0600).
    Issue {
        /// Directory of the CA (`ca new`).
        dir: PathBuf,
        /// Common name: the device's identity (`cert_identity = "cn"`), or
        /// the node's or router's name.
        #[arg(long)]
        name: String,
        /// Further subject alternative names (DNS names or IP addresses).
        #[arg(long = "san")]
        sans: Vec<String>,
        /// What the certificate is for: `client` (a device), `server`,
        /// `node` (a cluster node: `cluster_cert`, named quicmq-node),
        /// `router` (a router following the cluster, named quicmq-router)
        /// or `admin` (an operator of the nodes' admin API over TLS, named
        /// quicmq-admin).
        #[arg(long, value_enum, default_value_t = UsageArg::Client)]
        usage: UsageArg,
        /// Path prefix of the files to write [default: the name].
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum UsageArg {
    Client,
    Server,
    Node,
    Router,
    Admin,
}

#[derive(Args, Debug)]
struct PasswdArgs {
    /// The password file (`password_file` of the node).
    file: PathBuf,
    /// The user name.
    username: String,
    /// Delete the user instead of setting a password.
    #[arg(short = 'D', long)]
    delete: bool,
    /// Read the password from the first line of standard input instead of
    /// asking twice on the terminal (for scripts).
    #[arg(long)]
    stdin: bool,
}

#[derive(Args, Debug)]
struct HealthArgs {
    /// Admin HTTP address of the node or router (HOST:PORT).
    #[arg(long, default_value = "127.0.0.1:8080")]
    admin: String,
    /// Check liveness (`/health/live`) instead of readiness (`/health/ready`).
    #[arg(long)]
    live: bool,
    /// Seconds to wait for the answer.
    #[arg(long, default_value_t = 5)]
    timeout: u64,
}

#[derive(Args, Debug)]
struct ClusterArgs {
    /// Admin HTTP address of any node (HOST:PORT).
    #[arg(long, default_value = "127.0.0.1:8080", global = true)]
    admin: String,
    /// File holding the node's admin bearer token (its `admin_token_file`).
    #[arg(long, env = "QUICMQ_ADMIN_TOKEN_FILE", global = true)]
    token_file: Option<PathBuf>,
    /// Speak TLS to a node with `admin_mtls`: the cluster CA (PEM) its
    /// certificate chains to. With --cert and --key, an admin certificate
    /// (`quicmq ca issue DIR --name NAME --usage admin`).
    #[arg(long, env = "QUICMQ_ADMIN_CAFILE", global = true)]
    cafile: Option<PathBuf>,
    /// The admin certificate (PEM), with --cafile.
    #[arg(long, env = "QUICMQ_ADMIN_CERT", global = true, requires = "cafile")]
    cert: Option<PathBuf>,
    /// Its private key (PEM).
    #[arg(long, env = "QUICMQ_ADMIN_KEY", global = true, requires = "cert")]
    key: Option<PathBuf>,
    #[command(subcommand)]
    command: ClusterCommand,
}

#[derive(Subcommand, Debug)]
enum ClusterCommand {
    /// Print the cluster's status as the node sees it (JSON).
    Status,
    /// Make the node behind `--admin` leave the cluster.
    Leave,
    /// Remove another node (e.g. one that is gone for good).
    Remove {
        /// Node ID to remove.
        node_id: u64,
    },
}

#[derive(Subcommand, Debug)]
enum BenchCommand {
    /// N publishers sending timestamped messages; reports publishes/s and
    /// acknowledgement latency (QoS 1/2).
    #[command(disable_help_flag = true, disable_version_flag = true)]
    Pub(BenchPubArgs),
    /// M subscribers; reports messages/s (first to last message) and
    /// end-to-end latency from the send time in each payload.
    #[command(disable_help_flag = true, disable_version_flag = true)]
    Sub(BenchSubArgs),
    /// Open many connections at a bounded rate, hold them idle, close
    /// them; reports connect latency and failures.
    #[command(disable_help_flag = true, disable_version_flag = true)]
    Conn(BenchConnArgs),
    /// A flood of failed logins (unknown users) from parallel clients over
    /// several source addresses, while an honest client (-u/-P) keeps
    /// logging in; reports outcomes, the honest connect time and, with
    /// --admin, the node's memory.
    #[command(disable_help_flag = true, disable_version_flag = true)]
    Login(BenchLoginArgs),
}

#[derive(Args, Debug)]
struct BenchLoginArgs {
    #[command(flatten)]
    conn: ConnArgs,
    /// Failed logins to attempt.
    #[arg(short = 'n', long, default_value_t = 10_000)]
    count: usize,
    /// Guessing clients at once.
    #[arg(short = 'c', long, default_value_t = 32)]
    clients: usize,
    /// Local addresses the guessers connect from, in turn: `127.0.0.2+31`
    /// is 127.0.0.2 to 127.0.0.32; a comma-separated list also works.
    #[arg(long, value_parser = parse_sources)]
    sources: Option<Sources>,
    /// Milliseconds between the honest client's logins.
    #[arg(long, default_value_t = 100)]
    honest_interval_ms: u64,
    /// Time limit, seconds.
    #[arg(short = 'd', long, default_value = "300", value_parser = parse_secs)]
    duration: Duration,
    /// The node's admin endpoint (HOST:PORT), to sample its memory.
    #[arg(long)]
    admin: Option<String>,
    /// File holding the node's admin bearer token, if /metrics needs it.
    #[arg(long, env = "QUICMQ_ADMIN_TOKEN_FILE")]
    token_file: Option<PathBuf>,
    /// Print the summary as one JSON object.
    #[arg(long)]
    json: bool,
}

/// Local addresses to connect from (`--sources`).
#[derive(Clone, Debug)]
struct Sources(Vec<std::net::IpAddr>);

/// `A.B.C.D+N` (D to D+N) or a comma-separated list of addresses.
fn parse_sources(value: &str) -> Result<Sources, String> {
    if let Some((first, more)) = value.split_once('+') {
        let first: std::net::Ipv4Addr = first
            .parse()
            .map_err(|_| format!("`{first}` is not an IPv4 address"))?;
        let more: u8 = more
            .parse()
            .map_err(|_| format!("`{more}` is not a count of 0 to 255"))?;
        let [a, b, c, d] = first.octets();
        let last = d
            .checked_add(more)
            .ok_or_else(|| format!("{first}+{more} goes past {a}.{b}.{c}.255"))?;
        return Ok(Sources(
            (d..=last)
                .map(|d| std::net::IpAddr::from([a, b, c, d]))
                .collect(),
        ));
    }
    value
        .split(',')
        .map(|ip| {
            ip.trim()
                .parse()
                .map_err(|_| format!("`{ip}` is not an IP address"))
        })
        .collect::<Result<_, _>>()
        .map(Sources)
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum TransportArg {
    /// MQTT over QUIC (default port 14567/udp).
    Quic,
    /// MQTT over TCP (default port 1883).
    Tcp,
    /// MQTT over TLS (default port 8883).
    Tls,
}

impl From<TransportArg> for Transport {
    fn from(arg: TransportArg) -> Transport {
        match arg {
            TransportArg::Quic => Transport::Quic,
            TransportArg::Tcp => Transport::Tcp,
            TransportArg::Tls => Transport::Tls,
        }
    }
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum VersionArg {
    /// MQTT 5.0.
    #[value(name = "5", alias = "5.0")]
    V5,
    /// MQTT 3.1.1.
    #[value(name = "311", alias = "3.1.1")]
    V311,
}

impl From<VersionArg> for ProtocolVersion {
    fn from(arg: VersionArg) -> ProtocolVersion {
        match arg {
            VersionArg::V5 => ProtocolVersion::V5,
            VersionArg::V311 => ProtocolVersion::V311,
        }
    }
}

/// How to reach the broker; shared by every client subcommand.
#[derive(Args, Debug)]
struct ConnArgs {
    /// Broker host name or IP address.
    #[arg(short = 'h', long, env = "QUICMQ_HOST", default_value = "127.0.0.1")]
    host: String,
    /// Broker port [default: 14567 for quic, 1883 for tcp, 8883 for tls].
    #[arg(short = 'p', long, env = "QUICMQ_PORT")]
    port: Option<u16>,
    /// Transport.
    #[arg(long, env = "QUICMQ_TRANSPORT", value_enum, default_value_t = TransportArg::Quic)]
    transport: TransportArg,
    /// PEM file of the CA that signed the broker's certificate (quic, tls).
    #[arg(long, env = "QUICMQ_CAFILE", conflicts_with = "insecure")]
    cafile: Option<PathBuf>,
    /// Accept any broker certificate (quic, tls; testing only).
    #[arg(long, env = "QUICMQ_INSECURE", value_parser = FalseyValueParser::new())]
    insecure: bool,
    /// Name to verify the broker's certificate against [default: the host].
    #[arg(long, env = "QUICMQ_SERVER_NAME")]
    server_name: Option<String>,
    /// PEM client certificate chain, for brokers that ask for one (quic, tls).
    #[arg(long, env = "QUICMQ_CERT", requires = "key")]
    cert: Option<PathBuf>,
    /// PEM private key of `--cert`.
    #[arg(long, env = "QUICMQ_KEY", requires = "cert")]
    key: Option<PathBuf>,
    /// MQTT protocol version.
    #[arg(short = 'V', long = "protocol-version", env = "QUICMQ_PROTOCOL_VERSION", value_enum, default_value_t = VersionArg::V5)]
    protocol_version: VersionArg,
    /// Client identifier [default: a random one].
    #[arg(short = 'i', long = "id", env = "QUICMQ_ID")]
    client_id: Option<String>,
    /// User name.
    #[arg(short = 'u', long, env = "QUICMQ_USERNAME")]
    username: Option<String>,
    /// Password.
    #[arg(short = 'P', long, env = "QUICMQ_PASSWORD")]
    password: Option<String>,
    /// Keep alive in seconds (0 = off).
    #[arg(
        short = 'k',
        long = "keepalive",
        env = "QUICMQ_KEEPALIVE",
        default_value_t = 60
    )]
    keep_alive: u16,
    /// Seconds to wait for the connection (transport, TLS, CONNACK).
    #[arg(long, env = "QUICMQ_CONNECT_TIMEOUT", default_value_t = 10)]
    connect_timeout: u64,
    /// Print help.
    #[arg(long, action = ArgAction::Help)]
    help: Option<bool>,
}

impl ConnArgs {
    fn options(&self, role: &str) -> ClientOptions {
        let transport = Transport::from(self.transport);
        let port = self.port.unwrap_or(transport.default_port());
        let mut opts = ClientOptions::new(self.host.clone(), port, transport);
        opts.tls = TlsOptions {
            ca_file: self.cafile.clone(),
            insecure: self.insecure,
            server_name: self.server_name.clone(),
            client_cert: self.cert.clone().zip(self.key.clone()),
        };
        opts.protocol = self.protocol_version.into();
        opts.client_id = self
            .client_id
            .clone()
            .unwrap_or_else(|| format!("quicmq-{role}-{:08x}", rand::random::<u32>()));
        opts.keep_alive = self.keep_alive;
        opts.username = self.username.clone();
        opts.password = self.password.clone().map(Bytes::from);
        opts.connect_timeout = Duration::from_secs(self.connect_timeout.max(1));
        opts
    }
}

/// Seconds (fractions allowed) as a duration.
fn parse_secs(value: &str) -> Result<Duration, String> {
    value
        .parse::<f64>()
        .ok()
        .and_then(|secs| Duration::try_from_secs_f64(secs).ok())
        .ok_or_else(|| format!("{value:?} is not a number of seconds"))
}

/// A rate: a finite, non-negative number.
fn parse_rate(value: &str) -> Result<f64, String> {
    value
        .parse::<f64>()
        .ok()
        .filter(|rate| rate.is_finite() && *rate >= 0.0)
        .ok_or_else(|| format!("{value:?} is not a rate (a number >= 0)"))
}

fn parse_qos(value: &str) -> Result<QoS, String> {
    value
        .parse::<u8>()
        .ok()
        .and_then(QoS::from_u8)
        .ok_or_else(|| format!("{value:?} is not a QoS (0, 1 or 2)"))
}

#[derive(Args, Debug)]
struct PubArgs {
    #[command(flatten)]
    conn: ConnArgs,
    /// Topic to publish to.
    #[arg(short = 't', long, env = "QUICMQ_TOPIC")]
    topic: String,
    /// Message payload.
    #[arg(short = 'm', long, env = "QUICMQ_MESSAGE")]
    message: String,
    /// Quality of service: 0, 1 or 2.
    #[arg(short = 'q', long, env = "QUICMQ_QOS", default_value = "0", value_parser = parse_qos)]
    qos: QoS,
    /// Retain the message.
    #[arg(short = 'r', long, env = "QUICMQ_RETAIN", value_parser = FalseyValueParser::new())]
    retain: bool,
}

#[derive(Args, Debug)]
struct SubArgs {
    #[command(flatten)]
    conn: ConnArgs,
    /// Topic filter to subscribe to; repeat for several.
    #[arg(short = 't', long = "topic", env = "QUICMQ_TOPIC", required = true)]
    topics: Vec<String>,
    /// Maximum quality of service of the subscriptions: 0, 1 or 2.
    #[arg(short = 'q', long, env = "QUICMQ_QOS", default_value = "0", value_parser = parse_qos)]
    qos: QoS,
    /// Exit (status 0) after receiving this many messages.
    #[arg(short = 'C', long, env = "QUICMQ_COUNT")]
    count: Option<u64>,
    /// Persistent session: no clean start, session kept after disconnect
    /// (needs -i).
    #[arg(
        short = 'c',
        long = "persistent",
        env = "QUICMQ_PERSISTENT",
        requires = "client_id",
        value_parser = FalseyValueParser::new()
    )]
    persistent: bool,
    /// Session expiry interval in seconds [default: 4294967295 (never) with
    /// -c, else 0].
    #[arg(long, env = "QUICMQ_SESSION_EXPIRY")]
    session_expiry: Option<u32>,
    /// Print QoS, flags and properties after each message.
    #[arg(short = 'v', long, env = "QUICMQ_VERBOSE", value_parser = FalseyValueParser::new())]
    verbose: bool,
    /// Exit with an error if COUNT messages have not arrived after this
    /// many seconds (or, without -C, after this many seconds).
    #[arg(short = 'W', long = "timeout", env = "QUICMQ_TIMEOUT")]
    timeout: Option<u64>,
    /// Exit (status 1) when the connection is lost instead of connecting
    /// again with backoff.
    #[arg(long, env = "QUICMQ_NO_RECONNECT", value_parser = FalseyValueParser::new())]
    no_reconnect: bool,
}

/// Without `-n`, `bench pub` sends for this long.
const BENCH_PUB_DURATION: Duration = Duration::from_secs(10);
/// With `-n` and without `-d`, `bench pub` still stops after this long.
const BENCH_PUB_CAP: Duration = Duration::from_secs(300);

#[derive(Args, Debug)]
struct BenchPubArgs {
    #[command(flatten)]
    conn: ConnArgs,
    /// Publishers (connections).
    #[arg(short = 'c', long, default_value_t = 1)]
    clients: usize,
    /// Topic; `%i` is replaced by the publisher's index (0, 1, ...), `%n`
    /// by the message's number (0, 1, ... per publisher).
    #[arg(short = 't', long, default_value = "bench/%i")]
    topic: String,
    /// Quality of service: 0, 1 or 2.
    #[arg(short = 'q', long, default_value = "0", value_parser = parse_qos)]
    qos: QoS,
    /// Retain every message (with `%n` in the topic: one retained message
    /// per publish).
    #[arg(long)]
    retain: bool,
    /// Payload size in bytes (at least 16: send time, publisher, sequence).
    #[arg(short = 's', long, default_value_t = 64)]
    size: usize,
    /// Messages per second per publisher (0 = as fast as the in-flight
    /// window allows).
    #[arg(short = 'r', long, default_value = "0", value_parser = parse_rate)]
    rate: f64,
    /// Messages per publisher.
    #[arg(short = 'n', long)]
    count: Option<u64>,
    /// Seconds to send for [default: 10 without -n, else a 300 s cap].
    #[arg(short = 'd', long, value_parser = parse_secs)]
    duration: Option<Duration>,
    /// Publishes in flight per publisher [default: the server's Receive
    /// Maximum (at most 4096) for QoS 1/2, 64 for QoS 0].
    #[arg(long)]
    inflight: Option<usize>,
    /// Seconds to wait for outstanding acknowledgements after sending.
    #[arg(long, default_value = "10", value_parser = parse_secs)]
    drain: Duration,
    /// Print the summary as one JSON object.
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug)]
struct BenchSubArgs {
    #[command(flatten)]
    conn: ConnArgs,
    /// Subscribers (connections).
    #[arg(short = 'c', long, default_value_t = 1)]
    clients: usize,
    /// Topic filter; `%i` is replaced by the subscriber's index.
    #[arg(short = 't', long, default_value = "bench/#")]
    topic: String,
    /// Maximum QoS of the subscriptions: 0, 1 or 2.
    #[arg(short = 'q', long, default_value = "0", value_parser = parse_qos)]
    qos: QoS,
    /// Subscribe as members of this share group (`$share/GROUP/FILTER`).
    #[arg(long)]
    share: Option<String>,
    /// Messages each subscriber expects; stop when all have them.
    #[arg(short = 'n', long)]
    count: Option<u64>,
    /// Stop after this many seconds without a message (once one arrived).
    #[arg(long, default_value = "3", value_parser = parse_secs)]
    idle: Duration,
    /// Hard limit in seconds.
    #[arg(short = 'd', long, default_value = "60", value_parser = parse_secs)]
    duration: Duration,
    /// Receive Maximum each subscriber announces (MQTT 5.0): QoS 1/2
    /// messages the broker may have unacknowledged towards it [default:
    /// none announced, i.e. 65535].
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
    receive_maximum: Option<u16>,
    /// Session Expiry Interval of the subscribers, seconds: above 0 their
    /// sessions are persistent, so in a cluster every QoS 1/2 message to
    /// them is committed to a durable queue before PUBACK [default: 0].
    #[arg(long)]
    session_expiry: Option<u32>,
    /// Print the summary as one JSON object.
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug)]
struct BenchConnArgs {
    #[command(flatten)]
    conn: ConnArgs,
    /// Connections to open.
    #[arg(short = 'c', long, default_value_t = 1000)]
    clients: usize,
    /// Connections opened per second (0 = as fast as --max-pending allows).
    #[arg(long, default_value = "500", value_parser = parse_rate)]
    rate: f64,
    /// Handshakes in progress at once, at most.
    #[arg(long, default_value_t = 200)]
    max_pending: usize,
    /// Seconds to hold the connections idle once all were attempted.
    #[arg(short = 'd', long, default_value = "10", value_parser = parse_secs)]
    duration: Duration,
    /// QUIC: one UDP socket (endpoint) per connection instead of one
    /// shared by all.
    #[arg(long)]
    endpoint_per_connection: bool,
    /// Session Expiry Interval, seconds: above 0 every connection holds a
    /// persistent session (its own client ID, `-i PREFIX` + number) and
    /// resumes it (clean start 0), so a second run with the same `-i` is a
    /// reconnect storm of persistent sessions [default: 0, plain].
    #[arg(long)]
    session_expiry: Option<u32>,
    /// Print the summary as one JSON object.
    #[arg(long)]
    json: bool,
}

impl BenchConnArgs {
    /// The options of the connections.
    fn options(&self) -> ClientOptions {
        let mut options = self.conn.bench_options();
        if let Some(expiry) = self.session_expiry.filter(|e| *e > 0) {
            options.session_expiry_interval = Some(expiry);
            options.clean_start = false;
        }
        options
    }
}

impl ConnArgs {
    /// Options for the clients of a benchmark: the client identifier is
    /// empty (the runner numbers its own) unless `-i` gave a prefix.
    fn bench_options(&self) -> ClientOptions {
        let mut opts = self.options("bench");
        if self.client_id.is_none() {
            opts.client_id.clear();
        }
        opts
    }
}

fn main() -> ExitCode {
    init_tracing();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("quicmq: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Pub(args) => publish(args).await,
            Command::Sub(args) => subscribe(args).await,
            Command::Bench(command) => bench(command).await,
            Command::Cluster(args) => cluster(args).await,
            Command::Health(args) => health(args).await,
            Command::Passwd(args) => passwd(&args),
            Command::Ca(command) => ca(command),
            Command::Token(command) => token(command),
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("quicmq: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_tracing() {
    let filter = std::env::var("RUST_LOG")
        .or_else(|_| std::env::var("QUICMQ_LOG"))
        .unwrap_or_else(|_| "warn".into());
    // Non-ASCII text can panic the filter parser: the default instead.
    let filter = Some(filter)
        .filter(|f| f.is_ascii())
        .and_then(|f| tracing_subscriber::EnvFilter::try_new(f).ok())
        .unwrap_or_else(|| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

async fn connect(opts: ClientOptions) -> anyhow::Result<Client> {
    let target = format!("{}:{} over {}", opts.host, opts.port, opts.transport);
    let (client, connack) = Client::connect(opts)
        .await
        .with_context(|| format!("cannot connect to {target}"))?;
    tracing::debug!(
        session_present = connack.session_present,
        "connected to {target}"
    );
    Ok(client)
}

async fn publish(args: PubArgs) -> anyhow::Result<ExitCode> {
    let opts = args.conn.options("pub");
    let client = connect(opts.clone()).await?;
    let publish = Publish {
        dup: false,
        qos: args.qos,
        retain: args.retain,
        topic: args.topic.clone(),
        packet_id: None,
        properties: Properties::default(),
        payload: Bytes::from(args.message.clone()),
    };
    let (client, result) = match client.publish_packet(publish.clone()).await {
        // QoS 1/2: the broker may have it; send it once more, marked DUP.
        Err(e) if args.qos != QoS::AtMostOnce && e.is_connection_loss() => {
            eprintln!(
                "connection lost before the acknowledgement ({e}); publishing again with DUP"
            );
            let client = connect(opts).await?;
            let again = Publish {
                dup: true,
                ..publish
            };
            let result = client.publish_packet(again).await;
            (client, result)
        }
        result => (client, result),
    };
    let reason = result.context("publish failed")?;
    if let Err(e) = client.disconnect(ReasonCode::NORMAL_DISCONNECTION).await {
        tracing::warn!(error = %e, "disconnect failed");
    }
    if reason.is_error() {
        bail!("the broker refused the message: {reason}");
    }
    Ok(ExitCode::SUCCESS)
}

/// SUBSCRIBE to every filter of `args`; an error names the first refused.
async fn subscribe_all(client: &Client, args: &SubArgs) -> anyhow::Result<()> {
    let options = SubscriptionOptions::new(args.qos);
    let filters = args
        .topics
        .iter()
        .map(|topic| (topic.clone(), options))
        .collect();
    let suback = client
        .subscribe(filters, Properties::default())
        .await
        .context("subscribe failed")?;
    for (topic, code) in args.topics.iter().zip(&suback.reason_codes) {
        if code.is_error() {
            let _ = client.disconnect(ReasonCode::NORMAL_DISCONNECTION).await;
            bail!("the broker refused the subscription to {topic}: {code}");
        }
        tracing::debug!(%topic, granted = %code, "subscribed");
    }
    Ok(())
}

async fn subscribe(args: SubArgs) -> anyhow::Result<ExitCode> {
    let mut opts = args.conn.options("sub");
    if args.persistent {
        opts.clean_start = false;
        opts.session_expiry_interval = Some(args.session_expiry.unwrap_or(u32::MAX));
    } else {
        opts.session_expiry_interval = args.session_expiry;
    }
    let target = format!("{}:{} over {}", opts.host, opts.port, opts.transport);
    let (client, _) = ReconnectingClient::connect(opts, Backoff::default())
        .await
        .with_context(|| format!("cannot connect to {target}"))?;
    let first = client.connected().await.context("connection lost")?;
    subscribe_all(&first, &args).await?;

    let deadline = args
        .timeout
        .map(|secs| tokio::time::Instant::now() + Duration::from_secs(secs));
    let timeout = async move {
        match deadline {
            Some(deadline) => tokio::time::sleep_until(deadline).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(timeout);
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);

    let mut received: u64 = 0;
    if args.count == Some(0) {
        let _ = client.disconnect().await;
        return Ok(ExitCode::SUCCESS);
    }
    loop {
        let event = tokio::select! {
            event = client.recv() => event,
            _ = &mut ctrl_c => {
                let _ = client.disconnect().await;
                return Ok(ExitCode::SUCCESS);
            }
            _ = &mut timeout => {
                let _ = client.disconnect().await;
                match args.count {
                    Some(count) => bail!("timed out after {received} of {count} messages"),
                    None => return Ok(ExitCode::SUCCESS),
                }
            }
        };
        let event = match event {
            Some(ReconnectEvent::Event(event)) => *event,
            Some(ReconnectEvent::Lost(why)) if args.no_reconnect => {
                bail!("connection lost: {why}")
            }
            Some(ReconnectEvent::Lost(why)) => {
                eprintln!("connection lost: {why}; reconnecting");
                continue;
            }
            Some(ReconnectEvent::Reconnected {
                connack,
                attempts,
                down,
            }) => {
                let session = if connack.session_present {
                    "session resumed"
                } else {
                    "new session, subscribing again"
                };
                eprintln!(
                    "reconnected after {:.1} s ({attempts} attempt{}): {session}",
                    down.as_secs_f64(),
                    if attempts == 1 { "" } else { "s" }
                );
                if !connack.session_present {
                    let current = client.connected().await.context("connection lost")?;
                    subscribe_all(&current, &args).await?;
                }
                continue;
            }
            Some(ReconnectEvent::GaveUp(e)) => bail!("cannot reconnect: {e}"),
            None => bail!("connection closed"),
        };
        match event {
            Event::Publish(message) => {
                print_message(&message, args.verbose)?;
                received += 1;
                if args.count.is_some_and(|count| received >= count) {
                    let _ = client.disconnect().await;
                    return Ok(ExitCode::SUCCESS);
                }
            }
            Event::Disconnect(disconnect) => {
                let mut text = format!("the broker disconnected: {}", disconnect.reason_code);
                if let Some(reason) = &disconnect.properties.reason_string {
                    let _ = write!(text, " ({reason})");
                }
                // Another client took the session: coming back would take it
                // from that one in turn.
                let taken = disconnect.reason_code == ReasonCode::SESSION_TAKEN_OVER;
                if args.no_reconnect || taken {
                    let _ = client.disconnect().await;
                    bail!(text);
                }
                eprintln!("{text}");
            }
            Event::Closed(Some(reason)) if args.no_reconnect => {
                bail!("connection closed: {reason}")
            }
            Event::Closed(_) => {}
        }
    }
}

async fn bench(command: BenchCommand) -> anyhow::Result<ExitCode> {
    let progress = ProgressMode::stderr(false);
    let (summary, json) = match command {
        BenchCommand::Pub(args) => {
            let duration = args.duration.unwrap_or(if args.count.is_some() {
                BENCH_PUB_CAP
            } else {
                BENCH_PUB_DURATION
            });
            let settings = PubSettings {
                options: args.conn.bench_options(),
                clients: args.clients,
                topic: args.topic,
                qos: args.qos,
                retain: args.retain,
                payload_size: args.size,
                rate: args.rate,
                bound: Bound {
                    count: args.count,
                    duration,
                },
                inflight: args.inflight,
                drain_timeout: args.drain,
            };
            let bench = PubBench::connect(settings, progress)
                .await
                .context("bench pub")?;
            eprintln!(
                "quicmq bench pub: {} publishers connected",
                bench.connected()
            );
            (bench.run().await, args.json)
        }
        BenchCommand::Sub(args) => {
            let mut options = args.conn.bench_options();
            options.receive_maximum = args.receive_maximum;
            options.session_expiry_interval = args.session_expiry;
            let settings = SubSettings {
                options,
                clients: args.clients,
                filter: args.topic,
                qos: args.qos,
                share: args.share,
                count: args.count,
                idle: args.idle,
                deadline: args.duration,
            };
            let bench = SubBench::connect(settings, progress)
                .await
                .context("bench sub")?;
            eprintln!("quicmq bench sub: {} subscribers ready", bench.ready());
            (bench.run().await, args.json)
        }
        BenchCommand::Conn(args) => {
            let settings = ConnSettings {
                options: args.options(),
                clients: args.clients,
                rate: args.rate,
                max_pending: args.max_pending,
                hold: args.duration,
                shared_endpoint: !args.endpoint_per_connection,
            };
            let bench = ConnBench::open(settings, progress)
                .await
                .context("bench conn")?;
            eprintln!(
                "quicmq bench conn: {} connections open; holding for {} s",
                bench.open_count(),
                args.duration.as_secs_f64()
            );
            (bench.hold_and_close().await, args.json)
        }
        BenchCommand::Login(args) => {
            let settings = quicmq_node::bench::LoginSettings {
                options: args.conn.bench_options(),
                attempts: args.count,
                clients: args.clients,
                sources: args.sources.map(|s| s.0).unwrap_or_default(),
                honest_interval: Duration::from_millis(args.honest_interval_ms),
                duration: args.duration,
                admin: args.admin,
                admin_token: admin_token(args.token_file.as_deref())?,
            };
            let summary = quicmq_node::bench::run_logins(settings)
                .await
                .context("bench login")?;
            return print_line(if args.json {
                summary.to_json()
            } else {
                summary.to_string()
            });
        }
    };
    print_line(if json {
        summary.to_json()
    } else {
        summary.to_string()
    })
}

/// Prints a benchmark's summary as one block on stdout.
fn print_line(text: String) -> anyhow::Result<ExitCode> {
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{text}")
        .and_then(|()| stdout.flush())
        .context("cannot write to stdout")?;
    Ok(ExitCode::SUCCESS)
}

/// The admin token in the file `--token-file` names, if any.
fn admin_token(file: Option<&std::path::Path>) -> anyhow::Result<Option<String>> {
    file.map(quicmq_node::admin_access::read_token_file)
        .transpose()
        .map_err(|e| anyhow::anyhow!("--token-file: {e}"))
}

/// Prints `TOPIC PAYLOAD` (and with `verbose` the QoS, flags and
/// properties) as one line and flushes it.
fn print_message(message: &Publish, verbose: bool) -> anyhow::Result<()> {
    let mut line = format!(
        "{} {}",
        message.topic,
        String::from_utf8_lossy(&message.payload)
    );
    if verbose {
        line.push_str(&describe(message));
    }
    line.push('\n');
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(line.as_bytes())
        .and_then(|()| stdout.flush())
        .context("cannot write to stdout")
}

/// ` [qos=1 retain=0 dup=0 ...properties]`.
fn describe(message: &Publish) -> String {
    let mut out = format!(
        " [qos={} retain={} dup={}",
        message.qos as u8,
        u8::from(message.retain),
        u8::from(message.dup)
    );
    let p = &message.properties;
    if let Some(v) = p.payload_format_indicator {
        let _ = write!(out, " payload_format={v}");
    }
    if let Some(v) = p.message_expiry_interval {
        let _ = write!(out, " message_expiry={v}");
    }
    if let Some(v) = &p.content_type {
        let _ = write!(out, " content_type={v:?}");
    }
    if let Some(v) = &p.response_topic {
        let _ = write!(out, " response_topic={v:?}");
    }
    if let Some(v) = &p.correlation_data {
        let _ = write!(out, " correlation_data=0x");
        for byte in v.iter() {
            let _ = write!(out, "{byte:02x}");
        }
    }
    for id in &p.subscription_identifiers {
        let _ = write!(out, " subscription_id={id}");
    }
    if let Some(v) = p.topic_alias {
        let _ = write!(out, " topic_alias={v}");
    }
    for (key, value) in &p.user_properties {
        let _ = write!(out, " user:{key:?}={value:?}");
    }
    out.push(']');
    out
}

/// `quicmq cluster ...`: one HTTP request to the node's admin endpoint;
/// prints the JSON answer, exits 1 when the node refused.
async fn cluster(args: ClusterArgs) -> anyhow::Result<ExitCode> {
    let (method, path) = match args.command {
        ClusterCommand::Status => ("GET", "/api/cluster/status".to_string()),
        ClusterCommand::Leave => ("POST", "/api/cluster/leave".to_string()),
        ClusterCommand::Remove { node_id } => ("POST", format!("/api/cluster/remove/{node_id}")),
    };
    let token = admin_token(args.token_file.as_deref())?;
    let tls = match &args.cafile {
        None => None,
        Some(ca) => {
            let read = |path: &std::path::Path| {
                std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
            };
            let identity = match (&args.cert, &args.key) {
                (Some(cert), Some(key)) => Some((read(cert)?, read(key)?)),
                _ => None,
            };
            Some(quicmq_node::admin_client::tls_config(
                &read(ca)?,
                identity.as_ref().map(|(c, k)| (c.as_slice(), k.as_slice())),
            )?)
        }
    };
    let reply = quicmq_node::admin_client::request(&quicmq_node::admin_client::AdminRequest {
        addr: &args.admin,
        method,
        path: &path,
        token: token.as_deref(),
        tls,
        timeout: Duration::from_secs(30),
    })
    .await?;
    let (status, body) = (reply.status, reply.body);
    print!("{body}");
    if (200..300).contains(&status) {
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!("quicmq: {} answered HTTP {status}", args.admin);
        if status == 401 {
            eprintln!("quicmq: the node requires its admin token or an admin certificate: pass --token-file (or QUICMQ_ADMIN_TOKEN_FILE), or --cafile, --cert and --key");
        }
        Ok(ExitCode::FAILURE)
    }
}

/// `quicmq token new FILE`.
fn token(command: TokenCommand) -> anyhow::Result<ExitCode> {
    let TokenCommand::New { file, if_missing } = command;
    if file.exists() {
        if if_missing {
            quicmq_node::admin_access::read_token_file(&file)
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            println!("{}", file.display());
            return Ok(ExitCode::SUCCESS);
        }
        bail!(
            "{} exists; remove it first, or pass --if-missing to keep it",
            file.display()
        );
    }
    let token = quicmq_node::admin_access::new_token();
    write_private(&file, format!("{token}\n").as_bytes())
        .with_context(|| format!("cannot write {}", file.display()))?;
    println!("{}", file.display());
    Ok(ExitCode::SUCCESS)
}

/// `quicmq ca new|issue`.
fn ca(command: CaCommand) -> anyhow::Result<ExitCode> {
    use quicmq_node::tls::{CertUsage, CertificateAuthority};
    match command {
        CaCommand::New {
            dir,
            name,
            if_missing,
        } => {
            let (cert, key) = (dir.join("ca.pem"), dir.join("ca-key.pem"));
            if if_missing && cert.exists() && key.exists() {
                println!("{}\n{}", cert.display(), key.display());
                return Ok(ExitCode::SUCCESS);
            }
            if cert.exists() || key.exists() {
                bail!(
                    "{} already holds a CA; remove it first to make a new one",
                    dir.display()
                );
            }
            CertificateAuthority::generate(&name)?.save(&cert, &key)?;
            println!("{}\n{}", cert.display(), key.display());
        }
        CaCommand::Issue {
            dir,
            name,
            sans,
            usage,
            out,
        } => {
            let ca = CertificateAuthority::load(
                &dir.join("ca.pem"),
                &dir.join("ca-key.pem"),
                "ca",
                "ca_key",
            )?;
            let usage = match usage {
                UsageArg::Client => CertUsage::Client,
                UsageArg::Server => CertUsage::Server,
                UsageArg::Node => CertUsage::Node,
                UsageArg::Router => CertUsage::Router,
                UsageArg::Admin => CertUsage::Admin,
            };
            let issued = ca.issue(&name, &sans, usage)?;
            let prefix = out.unwrap_or_else(|| PathBuf::from(&name));
            let cert = PathBuf::from(format!("{}.pem", prefix.display()));
            let key = PathBuf::from(format!("{}-key.pem", prefix.display()));
            issued.save(&cert, &key)?;
            println!("{}\n{}", cert.display(), key.display());
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn passwd(args: &PasswdArgs) -> anyhow::Result<ExitCode> {
    use quicmq_node::auth::{hash_password, PasswordFile};
    let mut file = match std::fs::read_to_string(&args.file) {
        Ok(text) => PasswordFile::parse(&text)
            .with_context(|| format!("{} is not a usable password file", args.file.display()))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !args.delete => {
            PasswordFile::default()
        }
        Err(e) => bail!("cannot read {}: {e}", args.file.display()),
    };
    if args.delete {
        if !file.remove(&args.username) {
            bail!("user {:?} is not in {}", args.username, args.file.display());
        }
    } else {
        let password = if args.stdin {
            let mut line = String::new();
            std::io::stdin()
                .read_line(&mut line)
                .context("reading the password from standard input")?;
            line.trim_end_matches(['\r', '\n']).to_owned()
        } else {
            let first = rpassword::prompt_password("Password: ")
                .context("reading the password from the terminal (use --stdin in scripts)")?;
            let again = rpassword::prompt_password("Reenter password: ")
                .context("reading the password from the terminal")?;
            if first != again {
                bail!("the passwords do not match; nothing changed");
            }
            first
        };
        if password.is_empty() {
            bail!("the password is empty; nothing changed");
        }
        let hash = hash_password(password.as_bytes())?;
        file.set(&args.username, &hash)
            .map_err(|e| anyhow::anyhow!("{}", e.reason))?;
    }
    write_private(&args.file, file.to_text().as_bytes())?;
    Ok(ExitCode::SUCCESS)
}

/// Writes `bytes` to `path` through a temporary file in the same
/// directory (mode 0600), renamed over it: a crash leaves the old file or
/// the new one, never half of one.
fn write_private(path: &std::path::Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        path.file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("passwd"),
        std::process::id()
    ));
    let mut out = options
        .open(&tmp)
        .with_context(|| format!("cannot create {}", tmp.display()))?;
    let written = out.write_all(bytes).and_then(|()| out.sync_all());
    if let Err(e) = written.and_then(|()| std::fs::rename(&tmp, path)) {
        let _ = std::fs::remove_file(&tmp);
        bail!("cannot write {}: {e}", path.display());
    }
    Ok(())
}

/// `quicmq health`: one GET of `/health/ready` (or `/health/live`); exit 0
/// on HTTP 200, 1 on anything else, no answer or no connection.
async fn health(args: HealthArgs) -> anyhow::Result<ExitCode> {
    let path = if args.live {
        "/health/live"
    } else {
        "/health/ready"
    };
    let limit = Duration::from_secs(args.timeout.max(1));
    let Ok(answer) = tokio::time::timeout(limit, admin_request(&args.admin, "GET", path)).await
    else {
        bail!(
            "{}{path} did not answer within {} s",
            args.admin,
            limit.as_secs()
        );
    };
    let (status, body) = answer?;
    if status == 200 {
        println!("{}{path}: {}", args.admin, body.trim());
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!(
            "quicmq: {}{path} answered HTTP {status}: {}",
            args.admin,
            body.trim()
        );
        Ok(ExitCode::FAILURE)
    }
}

/// One request to an admin endpoint (30 s at most); returns the status
/// code and the body.
async fn admin_request(addr: &str, method: &str, path: &str) -> anyhow::Result<(u16, String)> {
    let reply = quicmq_node::admin_client::request(&quicmq_node::admin_client::AdminRequest {
        addr,
        method,
        path,
        token: None,
        tls: None,
        timeout: Duration::from_secs(30),
    })
    .await?;
    Ok((reply.status, reply.body))
}

#[cfg(test)]
mod cli_client {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn bench_login_takes_a_range_of_sources() {
        let cli = Cli::try_parse_from([
            "quicmq",
            "bench",
            "login",
            "--sources",
            "127.0.0.2+3",
            "-n",
            "10",
        ])
        .unwrap();
        let Command::Bench(BenchCommand::Login(args)) = cli.command else {
            panic!("not bench login")
        };
        let sources: Vec<String> = args
            .sources
            .unwrap()
            .0
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(
            sources,
            ["127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"]
        );
        assert_eq!(args.count, 10);
        assert!(parse_sources("127.0.0.250+10").is_err());
        assert_eq!(parse_sources("::1,127.0.0.1").unwrap().0.len(), 2);
    }

    #[test]
    fn pub_parses_mosquitto_style_flags() {
        let cli = Cli::try_parse_from([
            "quicmq",
            "pub",
            "-h",
            "example",
            "-p",
            "1884",
            "-t",
            "a/b",
            "-m",
            "hi",
            "-q",
            "2",
            "-r",
            "-V",
            "311",
            "--transport",
            "tcp",
            "-u",
            "user",
            "-P",
            "pw",
        ])
        .unwrap();
        let Command::Pub(args) = cli.command else {
            panic!("not pub")
        };
        assert_eq!(args.qos, QoS::ExactlyOnce);
        assert!(args.retain);
        let opts = args.conn.options("pub");
        assert_eq!(opts.host, "example");
        assert_eq!(opts.port, 1884);
        assert_eq!(opts.transport, Transport::Tcp);
        assert_eq!(opts.protocol, ProtocolVersion::V311);
        assert_eq!(opts.username.as_deref(), Some("user"));
        assert!(opts.client_id.starts_with("quicmq-pub-"));
    }

    #[test]
    fn default_port_follows_the_transport() {
        for (transport, port) in [("quic", 14567), ("tcp", 1883), ("tls", 8883)] {
            let cli = Cli::try_parse_from([
                "quicmq",
                "pub",
                "--transport",
                transport,
                "-t",
                "t",
                "-m",
                "m",
            ])
            .unwrap();
            let Command::Pub(args) = cli.command else {
                panic!("not pub")
            };
            assert_eq!(args.conn.options("pub").port, port);
        }
    }

    #[test]
    fn sub_takes_several_filters_and_persistent_needs_an_id() {
        let cli = Cli::try_parse_from([
            "quicmq", "sub", "-t", "a/#", "-t", "b/+", "-q", "1", "-C", "3", "-v",
        ])
        .unwrap();
        let Command::Sub(args) = cli.command else {
            panic!("not sub")
        };
        assert_eq!(args.topics, vec!["a/#", "b/+"]);
        assert_eq!(args.count, Some(3));
        assert!(args.verbose);
        assert!(Cli::try_parse_from(["quicmq", "sub", "-t", "a", "-c"]).is_err());
        assert!(Cli::try_parse_from(["quicmq", "sub", "-t", "a", "-c", "-i", "me"]).is_ok());
        assert!(Cli::try_parse_from(["quicmq", "sub", "-t", "a", "-q", "3"]).is_err());
        assert!(Cli::try_parse_from(["quicmq", "sub"]).is_err());
    }

    #[test]
    fn cafile_and_insecure_conflict() {
        assert!(Cli::try_parse_from([
            "quicmq",
            "pub",
            "-t",
            "t",
            "-m",
            "m",
            "--cafile",
            "ca.pem",
            "--insecure",
        ])
        .is_err());
    }

    #[test]
    fn bench_pub_parses_its_flags() {
        let cli = Cli::try_parse_from([
            "quicmq",
            "bench",
            "pub",
            "-c",
            "20",
            "-q",
            "1",
            "-s",
            "128",
            "-r",
            "1000",
            "-n",
            "5000",
            "--transport",
            "tcp",
            "-p",
            "1884",
            "--json",
        ])
        .unwrap();
        let Command::Bench(BenchCommand::Pub(args)) = cli.command else {
            panic!("not bench pub")
        };
        assert_eq!(args.clients, 20);
        assert_eq!(args.qos, QoS::AtLeastOnce);
        assert_eq!(args.size, 128);
        assert_eq!(args.rate, 1000.0);
        assert_eq!(args.count, Some(5000));
        assert_eq!(args.duration, None);
        assert_eq!(args.topic, "bench/%i");
        assert!(!args.retain);
        assert!(args.json);
        let opts = args.conn.bench_options();
        assert_eq!(opts.port, 1884);
        assert_eq!(opts.client_id, "", "the runner numbers the clients");
        let cli =
            Cli::try_parse_from(["quicmq", "bench", "pub", "--retain", "-t", "r/%i/%n"]).unwrap();
        let Command::Bench(BenchCommand::Pub(args)) = cli.command else {
            panic!("not bench pub")
        };
        assert!(args.retain);
        assert_eq!(args.topic, "r/%i/%n");
    }

    #[test]
    fn bench_sub_and_conn_defaults() {
        let cli =
            Cli::try_parse_from(["quicmq", "bench", "sub", "--share", "g", "-d", "2.5"]).unwrap();
        let Command::Bench(BenchCommand::Sub(args)) = cli.command else {
            panic!("not bench sub")
        };
        assert_eq!(args.topic, "bench/#");
        assert_eq!(args.idle, Duration::from_secs(3));
        assert_eq!(args.duration, Duration::from_millis(2500));
        assert_eq!(args.share.as_deref(), Some("g"));
        let cli = Cli::try_parse_from([
            "quicmq", "bench", "conn", "-c", "10000", "--rate", "500", "-i", "idle",
        ])
        .unwrap();
        let Command::Bench(BenchCommand::Conn(args)) = cli.command else {
            panic!("not bench conn")
        };
        assert_eq!(args.clients, 10000);
        assert_eq!(args.duration, Duration::from_secs(10));
        assert!(!args.endpoint_per_connection);
        assert_eq!(args.conn.bench_options().client_id, "idle");
        assert!(args.options().clean_start, "plain sessions by default");
        assert_eq!(args.options().session_expiry_interval, None);
        let cli = Cli::try_parse_from([
            "quicmq",
            "bench",
            "conn",
            "-i",
            "dev",
            "--session-expiry",
            "3600",
        ])
        .unwrap();
        let Command::Bench(BenchCommand::Conn(args)) = cli.command else {
            panic!("not bench conn")
        };
        let options = args.options();
        assert_eq!(options.session_expiry_interval, Some(3600));
        assert!(!options.clean_start, "persistent sessions resume");
        assert!(Cli::try_parse_from(["quicmq", "bench", "pub", "-r", "-1"]).is_err());
        assert!(Cli::try_parse_from(["quicmq", "bench", "sub", "--idle", "x"]).is_err());
        assert!(Cli::try_parse_from(["quicmq", "bench", "sub", "--receive-maximum", "0"]).is_err());
    }

    #[test]
    fn help_is_long_only() {
        let err = Cli::try_parse_from(["quicmq", "pub", "--help"]).unwrap_err();
        assert_eq!(err.kind(), clap::error::ErrorKind::DisplayHelp);
    }

    #[test]
    fn verbose_description_lists_properties() {
        let message = Publish {
            dup: false,
            qos: QoS::AtLeastOnce,
            retain: true,
            topic: "t".into(),
            packet_id: Some(1),
            properties: Properties {
                content_type: Some("text/plain".into()),
                correlation_data: Some(Bytes::from_static(&[0xab, 0x01])),
                user_properties: vec![("k".into(), "v".into())],
                ..Properties::default()
            },
            payload: Bytes::from_static(b"x"),
        };
        assert_eq!(
            describe(&message),
            " [qos=1 retain=1 dup=0 content_type=\"text/plain\" correlation_data=0xab01 user:\"k\"=\"v\"]"
        );
    }
}
