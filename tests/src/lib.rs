//! Shared harness of the end-to-end tests: real brokers on free loopback
//! ports (in-process or as child processes), real clients, and cleanup of
//! everything a test starts. [`fuzz`] holds the fuzz harnesses shared with
//! `fuzz/`.

pub mod fuzz;
pub mod initial_flood;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use quicmq_node::client::{Client, ClientOptions, Transport};
use quicmq_node::config::{NodeConfig, Overrides};
use quicmq_node::node::RunningNode;
use tempfile::TempDir;

/// The transports every broker feature is tested over.
pub const TRANSPORTS: [Transport; 3] = [Transport::Tcp, Transport::Tls, Transport::Quic];

/// A broker running inside the test process on free loopback ports.
pub struct TestNode {
    node: Option<RunningNode>,
    /// Its data directory (removed when the test ends).
    pub dir: TempDir,
}

/// A configuration with every listener on a free loopback port.
pub fn loopback_config(data_dir: &Path, extra_toml: &str) -> NodeConfig {
    let toml = format!(
        "data_dir = {:?}\nquic_addr = \"127.0.0.1:0\"\nrouted_addr = \"127.0.0.1:0\"\ntcp_addr = \"127.0.0.1:0\"\n\
         tls_addr = \"127.0.0.1:0\"\nadmin_addr = \"127.0.0.1:0\"\ngrpc_addr = \"127.0.0.1:0\"\n{extra_toml}",
        data_dir.display().to_string()
    );
    let file: Overrides = toml::from_str(&toml).expect("test config parses");
    NodeConfig::resolve(Overrides::default(), file).expect("test config is valid")
}

impl TestNode {
    /// Start a broker with the default settings plus `extra_toml`.
    pub async fn start_with(extra_toml: &str) -> TestNode {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = loopback_config(dir.path(), extra_toml);
        let node = RunningNode::start(&config).await.expect("node starts");
        TestNode {
            node: Some(node),
            dir,
        }
    }

    /// Start a broker with the default settings.
    pub async fn start() -> TestNode {
        TestNode::start_with("").await
    }

    /// Restart on the same data directory (new ports).
    pub async fn restart(&mut self) {
        if let Some(node) = self.node.take() {
            node.shutdown().await.expect("clean shutdown");
        }
        let config = loopback_config(self.dir.path(), "");
        self.node = Some(RunningNode::start(&config).await.expect("node restarts"));
    }

    fn running(&self) -> &RunningNode {
        self.node.as_ref().expect("node is running")
    }

    /// The address of a transport's listener.
    pub fn addr(&self, transport: Transport) -> SocketAddr {
        let addrs = self.running().addrs();
        match transport {
            Transport::Tcp => addrs.tcp,
            Transport::Tls => addrs.tls,
            Transport::Quic => addrs.quic,
        }
        .expect("listener is bound")
    }

    /// The admin HTTP address.
    pub fn admin(&self) -> SocketAddr {
        self.running().addrs().admin.expect("admin is bound")
    }

    /// Client options for this broker over `transport` (TLS and QUIC trust
    /// the node's development certificate).
    pub fn options(&self, transport: Transport, client_id: &str) -> ClientOptions {
        let addr = self.addr(transport);
        options_for(
            addr,
            transport,
            client_id,
            &self.dir.path().join("dev-cert.pem"),
        )
    }

    /// Connect a client; panics if the broker refuses.
    pub async fn connect(&self, transport: Transport, client_id: &str) -> Client {
        connect(self.options(transport, client_id)).await
    }

    /// Graceful shutdown.
    pub async fn stop(mut self) {
        if let Some(node) = self.node.take() {
            node.shutdown().await.expect("clean shutdown");
        }
    }
}

/// Client options for a broker at `addr`.
pub fn options_for(
    addr: SocketAddr,
    transport: Transport,
    client_id: &str,
    ca_file: &Path,
) -> ClientOptions {
    let mut options = ClientOptions::new(addr.ip().to_string(), addr.port(), transport);
    options.client_id = client_id.to_string();
    options.tls.ca_file = Some(ca_file.to_path_buf());
    options.tls.server_name = Some("localhost".to_string());
    options.connect_timeout = Duration::from_secs(5);
    options
}

/// The node a CONNACK names (user property `quicmq-node`: its server ID
/// in hex), if any.
pub fn connack_node(connack: &quicmq_proto::mqtt::ConnAck) -> Option<String> {
    connack
        .properties
        .user_properties
        .iter()
        .find(|(k, _)| k == "quicmq-node")
        .map(|(_, v)| v.clone())
}

/// `options` for a persistent session: clean start 0, expiry 600 s.
pub fn persistent(mut options: ClientOptions) -> ClientOptions {
    options.clean_start = false;
    options.session_expiry_interval = Some(600);
    options
}

/// Connect a client; panics if the broker refuses.
pub async fn connect(options: ClientOptions) -> Client {
    let (client, _) = Client::connect(options).await.expect("client connects");
    client
}

/// Path of a binary of the workspace: in `QUICMQ_BIN_DIR` when set, else
/// next to the running executable (a binary such as `quicmq-chaos`) or
/// one level up (a test executable in `target/*/deps`).
pub fn binary(name: &str) -> PathBuf {
    if let Some(dir) = std::env::var_os("QUICMQ_BIN_DIR") {
        let path = PathBuf::from(dir).join(name);
        assert!(
            path.exists(),
            "{} does not exist (QUICMQ_BIN_DIR)",
            path.display()
        );
        return path;
    }
    let exe = std::env::current_exe().expect("test executable path");
    let candidates: Vec<PathBuf> = exe
        .ancestors()
        .skip(1)
        .take(2)
        .map(|dir| dir.join(name))
        .collect();
    match candidates.iter().find(|p| p.exists()) {
        Some(path) => path.clone(),
        None => panic!(
            "{name} is not built (looked in {candidates:?}); run the tests with `cargo test --workspace`"
        ),
    }
}

/// Ports handed out below the kernel's ephemeral range (32768 and up on
/// Linux): outgoing connections never take them, so a port found free
/// stays free until the process under test binds it. Each test process
/// starts at a point of its own (from its PID) and walks on; a port is
/// only handed out after binding it succeeded.
const PORT_LOW: u16 = 10_000;
const PORT_HIGH: u16 = 32_000;

fn next_candidate() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let span = u32::from(PORT_HIGH - PORT_LOW);
    let start = (std::process::id().wrapping_mul(7919)) % span;
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    PORT_LOW + u16::try_from((start + n.wrapping_mul(13)) % span).unwrap_or(0)
}

fn free_port(bind: impl Fn(u16) -> bool) -> u16 {
    for _ in 0..10_000 {
        let port = next_candidate();
        if bind(port) {
            return port;
        }
    }
    panic!("no free port between {PORT_LOW} and {PORT_HIGH}");
}

/// A free TCP port on 127.0.0.1 (bound then released), outside the
/// ephemeral range. Its UDP twin is free too, so the port may serve both.
pub fn free_tcp_port() -> u16 {
    free_port(|port| {
        std::net::TcpListener::bind(("127.0.0.1", port)).is_ok()
            && std::net::UdpSocket::bind(("127.0.0.1", port)).is_ok()
    })
}

/// A free UDP port on 127.0.0.1 (bound then released), outside the
/// ephemeral range.
pub fn free_udp_port() -> u16 {
    free_port(|port| {
        std::net::UdpSocket::bind(("127.0.0.1", port)).is_ok()
            && std::net::TcpListener::bind(("127.0.0.1", port)).is_ok()
    })
}

/// A `quicmq-node` child process; killed when dropped.
pub struct NodeProcess {
    child: Option<Child>,
    /// Data directory.
    pub data_dir: PathBuf,
    /// MQTT over TCP address.
    pub tcp: SocketAddr,
    /// MQTT over QUIC address.
    pub quic: SocketAddr,
    /// Routed port (PROXY v2 from routers).
    pub routed: SocketAddr,
    /// Admin HTTP address.
    pub admin: SocketAddr,
    /// gRPC address (Raft, forwarding, cluster watch, admin).
    pub grpc: SocketAddr,
    extra: Vec<String>,
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

impl NodeProcess {
    /// Start `quicmq-node` on free ports with `data_dir`, and wait until it
    /// accepts TCP connections.
    pub fn spawn(data_dir: &Path) -> NodeProcess {
        NodeProcess::spawn_with(data_dir, &[])
    }

    /// Like [`NodeProcess::spawn`] with extra command-line arguments.
    pub fn spawn_with(data_dir: &Path, extra: &[&str]) -> NodeProcess {
        let mut process = NodeProcess::launch(data_dir, extra);
        process.wait_listening();
        process
    }

    /// Starts the process on free ports without waiting for it (a node
    /// that joins a cluster listens only once it is a member).
    pub fn launch(data_dir: &Path, extra: &[&str]) -> NodeProcess {
        let mut process = NodeProcess {
            child: None,
            data_dir: data_dir.to_path_buf(),
            tcp: loopback(free_tcp_port()),
            quic: loopback(free_udp_port()),
            routed: loopback(free_udp_port()),
            admin: loopback(free_tcp_port()),
            grpc: loopback(free_tcp_port()),
            extra: extra.iter().map(|s| s.to_string()).collect(),
        };
        process.run();
        process
    }

    fn run(&mut self) {
        let child = Command::new(binary("quicmq-node"))
            .arg("--data-dir")
            .arg(&self.data_dir)
            .args(["--tcp-addr", &self.tcp.to_string()])
            .args(["--quic-addr", &self.quic.to_string()])
            .args(if self.extra.iter().any(|a| a == "--admin-addr") {
                Vec::new()
            } else {
                vec!["--admin-addr".to_string(), self.admin.to_string()]
            })
            .args(if self.extra.iter().any(|a| a == "--tls-addr") {
                &[][..]
            } else {
                &["--tls-addr", "off"][..]
            })
            .args(["--routed-addr", &self.routed.to_string()])
            .args(["--grpc-addr", &self.grpc.to_string()])
            // Test clusters are open unless a test sets up authentication
            // (joined nodes refuse anonymous clients by default).
            .args(
                if self
                    .extra
                    .iter()
                    .any(|a| a == "--allow-anonymous" || a == "--password-file")
                {
                    &[][..]
                } else {
                    &["--allow-anonymous", "true"][..]
                },
            )
            .args(&self.extra)
            .env(
                "QUICMQ_LOG",
                std::env::var("QUICMQ_TEST_LOG").unwrap_or_else(|_| "warn".into()),
            )
            // The node logs to stdout; shown when QUICMQ_TEST_LOG asks for it.
            .stdout(if std::env::var_os("QUICMQ_TEST_LOG").is_some() {
                Stdio::inherit()
            } else {
                Stdio::null()
            })
            .stderr(Stdio::inherit())
            .spawn()
            .expect("quicmq-node starts");
        self.child = Some(child);
    }

    /// Waits until the node accepts MQTT over TCP (it is a cluster member
    /// and serving) and, unless a flag moved it, admin HTTP.
    pub fn wait_listening(&mut self) {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        let admin_moved = self.extra.iter().any(|a| a == "--admin-addr");
        let listening = |p: &NodeProcess| {
            std::net::TcpStream::connect(p.tcp).is_ok()
                && (admin_moved || std::net::TcpStream::connect(p.admin).is_ok())
        };
        while !listening(self) {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    panic!("quicmq-node exited before listening: {status}");
                }
            }
            assert!(
                std::time::Instant::now() < deadline,
                "quicmq-node did not start listening"
            );
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// Starts the node again after [`NodeProcess::kill9`] or
    /// [`NodeProcess::terminate`]: same data directory, ports and flags.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "the node is still running");
        self.run();
        self.wait_listening();
    }

    /// Waits for the process to exit by itself and returns its status.
    pub fn wait_exit(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("process is running");
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return status;
            }
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                panic!("quicmq-node did not exit within {timeout:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Process ID.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    /// `SIGSTOP`: the process stops answering anything (a hung or
    /// partitioned node) until [`NodeProcess::resume`]; `kill9` still works.
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// `SIGCONT` after [`NodeProcess::pause`].
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    /// `SIGHUP`: the node reloads its password file and ACL.
    pub fn hangup(&self) {
        self.signal("-HUP");
    }

    /// Options of an MQTT-over-TCP client of this node.
    pub fn tcp_options(&self, client_id: &str) -> ClientOptions {
        options_for(
            self.tcp,
            Transport::Tcp,
            client_id,
            &self.data_dir.join("dev-cert.pem"),
        )
    }

    fn signal(&self, signal: &str) {
        if let Some(child) = &self.child {
            let _ = Command::new("kill")
                .args([signal, &child.id().to_string()])
                .status();
        }
    }

    /// `kill -9`.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Send SIGTERM and wait for the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("process is running");
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return status;
            }
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                panic!("quicmq-node did not exit after SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// A packet-level MQTT client over plain TCP, for tests that need to
/// misbehave (never acknowledge, vanish without DISCONNECT, use aliases).
pub struct RawClient {
    socket: tokio::net::TcpStream,
    buf: bytes::BytesMut,
    version: quicmq_proto::mqtt::ProtocolVersion,
}

impl RawClient {
    /// Connect and send `connect`; returns the client and the CONNACK.
    pub async fn connect(
        addr: SocketAddr,
        connect: quicmq_proto::mqtt::Connect,
    ) -> (RawClient, quicmq_proto::mqtt::ConnAck) {
        let socket = tokio::net::TcpStream::connect(addr)
            .await
            .expect("TCP connect");
        let mut client = RawClient {
            socket,
            buf: bytes::BytesMut::new(),
            version: connect.protocol,
        };
        client
            .send(quicmq_proto::mqtt::Packet::Connect(Box::new(connect)))
            .await;
        match client.recv().await {
            Some(quicmq_proto::mqtt::Packet::ConnAck(connack)) => (client, connack),
            other => panic!("expected CONNACK, got {other:?}"),
        }
    }

    /// A v5 CONNECT with the given client ID and clean start.
    pub fn connect_packet(client_id: &str, clean_start: bool) -> quicmq_proto::mqtt::Connect {
        quicmq_proto::mqtt::Connect {
            protocol: quicmq_proto::mqtt::ProtocolVersion::V5,
            clean_start,
            keep_alive: 60,
            client_id: client_id.to_string(),
            will: None,
            username: None,
            password: None,
            properties: Default::default(),
        }
    }

    /// Send one packet.
    pub async fn send(&mut self, packet: quicmq_proto::mqtt::Packet) {
        use tokio::io::AsyncWriteExt;
        let mut out = bytes::BytesMut::new();
        quicmq_proto::mqtt::encode(&packet, self.version, &mut out).expect("encodes");
        self.socket.write_all(&out).await.expect("write");
    }

    /// The next packet within 5 s; `None` if the server closed.
    pub async fn recv(&mut self) -> Option<quicmq_proto::mqtt::Packet> {
        self.recv_within(Duration::from_secs(5))
            .await
            .expect("a packet or close within the time")
    }

    /// The next packet within `wait`: `Err` on timeout, `Ok(None)` if the
    /// server closed.
    pub async fn recv_within(
        &mut self,
        wait: Duration,
    ) -> Result<Option<quicmq_proto::mqtt::Packet>, tokio::time::error::Elapsed> {
        use tokio::io::AsyncReadExt;
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if let Ok(Some(packet)) =
                quicmq_proto::mqtt::decode(&mut self.buf, self.version, u32::MAX)
            {
                return Ok(Some(packet));
            }
            match tokio::time::timeout_at(deadline, self.socket.read_buf(&mut self.buf)).await? {
                Ok(0) | Err(_) => return Ok(None),
                Ok(_) => {}
            }
        }
    }

    /// Close the socket without DISCONNECT (an abnormal disconnect).
    pub async fn vanish(self) {
        drop(self.socket);
    }
}

/// A packet-level MQTT client over any byte stream (a QUIC stream of
/// another QUIC implementation, a TLS stream, ...): encodes and decodes
/// with `quicmq_proto` and nothing else.
pub struct PacketStream<S> {
    io: S,
    buf: bytes::BytesMut,
    /// Protocol version used to encode and decode.
    pub version: quicmq_proto::mqtt::ProtocolVersion,
}

impl<S> PacketStream<S>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    /// Wrap a connected stream.
    pub fn new(io: S, version: quicmq_proto::mqtt::ProtocolVersion) -> PacketStream<S> {
        PacketStream {
            io,
            buf: bytes::BytesMut::new(),
            version,
        }
    }

    /// Send one packet (written and flushed).
    pub async fn send(&mut self, packet: quicmq_proto::mqtt::Packet) {
        use tokio::io::AsyncWriteExt;
        let mut out = bytes::BytesMut::new();
        quicmq_proto::mqtt::encode(&packet, self.version, &mut out).expect("encodes");
        self.io.write_all(&out).await.expect("write");
        self.io.flush().await.expect("flush");
    }

    /// The next packet within 5 s; `None` if the peer closed the stream.
    /// Panics on a timeout or undecodable bytes.
    pub async fn recv(&mut self) -> Option<quicmq_proto::mqtt::Packet> {
        self.recv_within(Duration::from_secs(5))
            .await
            .expect("a packet or close within the time")
    }

    /// The next packet within `wait`: `Err` on timeout, `Ok(None)` if the
    /// peer closed the stream.
    pub async fn recv_within(
        &mut self,
        wait: Duration,
    ) -> Result<Option<quicmq_proto::mqtt::Packet>, tokio::time::error::Elapsed> {
        use tokio::io::AsyncReadExt;
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            match quicmq_proto::mqtt::decode(&mut self.buf, self.version, u32::MAX) {
                Ok(Some(packet)) => return Ok(Some(packet)),
                Ok(None) => {}
                Err(e) => panic!("undecodable bytes from the broker: {e}"),
            }
            match tokio::time::timeout_at(deadline, self.io.read_buf(&mut self.buf)).await? {
                Ok(0) | Err(_) => return Ok(None),
                Ok(_) => {}
            }
        }
    }

    /// The underlying stream.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.io
    }
}

/// Subscribes `client` to `filter` at QoS 1 and checks that QoS 1 was
/// granted.
pub async fn subscribe_qos1(client: &quicmq_node::client::Client, filter: &str) {
    use quicmq_proto::mqtt::{Properties, QoS, ReasonCode, SubscriptionOptions};
    let ack = client
        .subscribe(
            vec![(filter.into(), SubscriptionOptions::new(QoS::AtLeastOnce))],
            Properties::default(),
        )
        .await
        .expect("SUBACK");
    assert_eq!(ack.reason_codes, vec![ReasonCode(1)], "{filter}");
}

/// Subscribes `client` to `topic` (QoS 1), publishes `payload` there and
/// gets it back within 5 s: every packet of the connection reached the
/// node that owns it.
pub async fn echo(client: &quicmq_node::client::Client, topic: &str, payload: &str) {
    use quicmq_node::client::{Event, QoS, ReasonCode, SubscriptionOptions};
    client
        .subscribe(
            vec![(topic.into(), SubscriptionOptions::new(QoS::AtLeastOnce))],
            quicmq_proto::mqtt::Properties::default(),
        )
        .await
        .expect("SUBACK");
    let r = client
        .publish(topic, payload.to_string(), QoS::AtLeastOnce, false)
        .await
        .expect("PUBACK");
    assert_eq!(r, ReasonCode::SUCCESS);
    match tokio::time::timeout(Duration::from_secs(5), client.recv()).await {
        Ok(Some(Event::Publish(p))) => assert_eq!(&p.payload[..], payload.as_bytes()),
        other => panic!("{topic}: {other:?}"),
    }
}

/// The sum of every series of metric `name` on the `/metrics` of the
/// admin endpoint at `admin` (0 when there is none).
pub async fn metric_sum(admin: SocketAddr, name: &str) -> f64 {
    let (status, body) = http_get(admin, "/metrics").await;
    assert_eq!(status, 200, "GET /metrics of {admin}");
    body.lines()
        .filter(|l| l.starts_with(name))
        .filter_map(|l| l.rsplit_once(' ').and_then(|(_, v)| v.parse::<f64>().ok()))
        .sum()
}

/// A plain HTTP/1.1 GET to the admin endpoint; returns the status code and
/// the body. Bounded by 5 s.
pub async fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    http_request(addr, "GET", path).await
}

/// A plain HTTP/1.1 POST without a body to the admin endpoint; returns the
/// status code and the body. Bounded by 5 s.
pub async fn http_post(addr: SocketAddr, path: &str) -> (u16, String) {
    http_request(addr, "POST", path).await
}

async fn http_request(addr: SocketAddr, method: &str, path: &str) -> (u16, String) {
    let addr = addr.to_string();
    let reply = quicmq_node::admin_client::request(&quicmq_node::admin_client::AdminRequest {
        addr: &addr,
        method,
        path,
        token: None,
        tls: None,
        timeout: Duration::from_secs(5),
    })
    .await
    .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
    (reply.status, reply.body)
}

pub use quicmq_node::admin_client::metric;

/// A counter of the node's `/metrics` (0 when not yet rendered: counters
/// appear on first increment). Metrics are process-global: compare values
/// before and after, never against zero.
pub async fn counter(node: &TestNode, series: &str) -> f64 {
    let (status, body) = http_get(node.admin(), "/metrics").await;
    assert_eq!(status, 200, "/metrics: {body}");
    metric(&body, series).unwrap_or(0.0)
}

/// A `quicmq-router` child process; killed when dropped.
pub struct RouterProcess {
    child: Option<Child>,
    /// Public UDP address (may be shared with other routers).
    pub listen: SocketAddr,
    /// Admin HTTP address.
    pub admin: SocketAddr,
}

impl RouterProcess {
    /// Start `quicmq-router` on `listen` for `nodes` (`(server ID hex,
    /// routed address)`), and wait until it reports a live node.
    pub fn spawn(
        listen: SocketAddr,
        nodes: &[(&str, SocketAddr)],
        reset_key: &str,
        extra: &[&str],
    ) -> RouterProcess {
        let admin: SocketAddr = format!("127.0.0.1:{}", free_tcp_port())
            .parse()
            .expect("addr");
        let mut command = Command::new(binary("quicmq-router"));
        command
            .args(["--listen", &listen.to_string()])
            .args(["--internal-addr", "127.0.0.1:0"])
            .args(["--admin-addr", &admin.to_string()])
            .args(["--reset-key", reset_key])
            .args(["--probe-interval-ms", "100"])
            .args(["--dead-after-ms", "500"])
            .args(extra)
            .env("QUICMQ_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        for (sid, addr) in nodes {
            command.arg("--node").arg(format!("{sid}={addr}"));
        }
        let child = command.spawn().expect("quicmq-router starts");
        let router = RouterProcess {
            child: Some(child),
            listen,
            admin,
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(mut s) = std::net::TcpStream::connect(admin) {
                use std::io::{Read, Write};
                let _ = s.write_all(
                    b"GET /health/ready HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                );
                let mut response = String::new();
                let _ = s.read_to_string(&mut response);
                if response.starts_with("HTTP/1.1 200") {
                    return router;
                }
            }
            assert!(
                std::time::Instant::now() < deadline,
                "quicmq-router saw no live node"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Start `quicmq-router` on `listen` following the cluster from `seeds`
    /// (gRPC addresses; no node table, no keys given), without waiting for
    /// it.
    pub fn launch_with_seeds(
        listen: SocketAddr,
        seeds: &[SocketAddr],
        extra: &[&str],
    ) -> RouterProcess {
        let admin: SocketAddr = format!("127.0.0.1:{}", free_tcp_port())
            .parse()
            .expect("addr");
        let seeds: Vec<String> = seeds.iter().map(SocketAddr::to_string).collect();
        let child = Command::new(binary("quicmq-router"))
            .args(["--listen", &listen.to_string()])
            .args(["--internal-addr", "127.0.0.1:0"])
            .args(["--admin-addr", &admin.to_string()])
            .args(["--seeds", &seeds.join(",")])
            .args(["--probe-interval-ms", "100"])
            .args(["--dead-after-ms", "500"])
            .args(extra)
            .env(
                "QUICMQ_LOG",
                std::env::var("QUICMQ_TEST_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdout(if std::env::var_os("QUICMQ_TEST_LOG").is_some() {
                Stdio::inherit()
            } else {
                Stdio::null()
            })
            .stderr(Stdio::inherit())
            .spawn()
            .expect("quicmq-router starts");
        RouterProcess {
            child: Some(child),
            listen,
            admin,
        }
    }

    /// [`RouterProcess::launch_with_seeds`], then wait until the router has
    /// the cluster's state and a live node (`/health/ready`).
    pub fn spawn_with_seeds(
        listen: SocketAddr,
        seeds: &[SocketAddr],
        extra: &[&str],
    ) -> RouterProcess {
        let router = RouterProcess::launch_with_seeds(listen, seeds, extra);
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(mut s) = std::net::TcpStream::connect(router.admin) {
                use std::io::{Read, Write};
                let _ = s.write_all(
                    b"GET /health/ready HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                );
                let mut response = String::new();
                let _ = s.read_to_string(&mut response);
                if response.starts_with("HTTP/1.1 200") {
                    return router;
                }
            }
            assert!(
                std::time::Instant::now() < deadline,
                "quicmq-router got no cluster state or saw no live node"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `kill -9`.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for RouterProcess {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// A cluster CA in a temporary directory, with a router certificate:
/// what a test cluster's nodes and routers show each other on gRPC.
pub struct ClusterPki {
    dir: TempDir,
    authority: quicmq_node::tls::CertificateAuthority,
}

impl ClusterPki {
    /// A new CA (`ca.pem`, `ca-key.pem`) and router certificate
    /// (`router.pem`, `router-key.pem`).
    pub fn generate() -> ClusterPki {
        use quicmq_node::tls::{CertUsage, CertificateAuthority};
        let dir = tempfile::tempdir().expect("temp dir");
        let authority = CertificateAuthority::generate("test cluster CA").expect("CA");
        authority
            .save(&dir.path().join("ca.pem"), &dir.path().join("ca-key.pem"))
            .expect("CA saved");
        authority
            .issue("router", &[], CertUsage::Router)
            .expect("router certificate")
            .save(
                &dir.path().join("router.pem"),
                &dir.path().join("router-key.pem"),
            )
            .expect("router certificate saved");
        ClusterPki { dir, authority }
    }

    /// A file of the PKI's directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Node flags: the CA and its key (each node issues its own
    /// certificate).
    pub fn node_args(&self) -> Vec<String> {
        vec![
            "--cluster-ca".into(),
            self.path("ca.pem").display().to_string(),
            "--cluster-ca-key".into(),
            self.path("ca-key.pem").display().to_string(),
        ]
    }

    /// Router flags: the CA and the router certificate.
    pub fn router_args(&self) -> Vec<String> {
        vec![
            "--cluster-ca".into(),
            self.path("ca.pem").display().to_string(),
            "--cluster-cert".into(),
            self.path("router.pem").display().to_string(),
            "--cluster-key".into(),
            self.path("router-key.pem").display().to_string(),
        ]
    }

    /// The cluster TLS of a member with a certificate for `usage`
    /// (`Node` or `Router`), issued now.
    pub fn member_tls(
        &self,
        usage: quicmq_node::tls::CertUsage,
    ) -> quicmq_proto::cluster_tls::ClusterTls {
        member_tls(self.authority.cert_pem(), &self.authority, usage)
    }

    /// A gRPC channel to `addr` over cluster TLS with a fresh certificate
    /// for `usage`.
    pub fn channel(
        &self,
        addr: SocketAddr,
        usage: quicmq_node::tls::CertUsage,
    ) -> tonic::transport::Channel {
        let tls = self.member_tls(usage);
        quicmq_raft::network::lazy_channel(&addr.to_string(), None, Some(tls.client_config()))
            .expect("channel")
    }
}

/// The cluster TLS of a member that trusts the CAs in `ca_pem` and shows
/// a fresh certificate for `usage` from `issuer` (which need not be one of
/// them: an impostor's).
pub fn member_tls(
    ca_pem: &str,
    issuer: &quicmq_node::tls::CertificateAuthority,
    usage: quicmq_node::tls::CertUsage,
) -> quicmq_proto::cluster_tls::ClusterTls {
    let issued = issuer.issue("test", &[], usage).expect("issued");
    quicmq_proto::cluster_tls::ClusterTls::new(
        ca_pem.as_bytes(),
        issued.cert_pem.as_bytes(),
        issued.key_pem.as_bytes(),
        Arc::new(rustls::crypto::aws_lc_rs::default_provider()),
        rustls::pki_types::UnixTime::now(),
    )
    .expect("cluster TLS")
}

/// A cluster of `quicmq-node` processes on loopback: node 1 bootstraps,
/// the others join through it. Every process is killed when dropped.
/// The nodes and [`ClusterProcesses::router_args`] routers use the
/// cluster's own CA ([`ClusterProcesses::pki`]) for gRPC.
pub struct ClusterProcesses {
    /// The nodes; `nodes[i]` has node ID `i + 1`.
    pub nodes: Vec<NodeProcess>,
    /// The cluster CA.
    pub pki: ClusterPki,
    extra: Vec<String>,
    dirs: Vec<TempDir>,
}

impl ClusterProcesses {
    /// Starts `count` nodes (with `extra` flags each) and waits until all
    /// serve clients.
    pub fn start(count: usize, extra: &[&str]) -> ClusterProcesses {
        let mut cluster = ClusterProcesses {
            nodes: Vec::new(),
            pki: ClusterPki::generate(),
            extra: extra.iter().map(|s| s.to_string()).collect(),
            dirs: Vec::new(),
        };
        for _ in 0..count {
            cluster.add_node();
        }
        cluster
    }

    /// Starts one more node that joins through the earlier ones (or
    /// bootstraps, for the first) and waits until it serves clients.
    pub fn add_node(&mut self) -> &NodeProcess {
        self.add_node_with(&[])
    }

    /// [`ClusterProcesses::add_node`] with flags for this node only (e.g.
    /// `--tls-addr`, which is off by default).
    pub fn add_node_with(&mut self, own: &[&str]) -> &NodeProcess {
        let dir = tempfile::tempdir().expect("temp dir");
        let node_id = (self.nodes.len() + 1).to_string();
        let mut args: Vec<String> = vec!["--node-id".into(), node_id];
        if !self.nodes.is_empty() {
            // Every earlier node is a seed: any live one admits the joiner.
            let seeds: Vec<String> = self.nodes.iter().map(|n| n.grpc.to_string()).collect();
            args.push("--join".into());
            args.push(seeds.join(","));
        }
        args.extend(self.extra.iter().cloned());
        args.extend(own.iter().map(|s| s.to_string()));
        if !args
            .iter()
            .any(|a| a == "--cluster-ca" || a == "--cluster-plaintext")
        {
            args.extend(self.pki.node_args());
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let process = NodeProcess::spawn_with(dir.path(), &args);
        self.dirs.push(dir);
        self.nodes.push(process);
        self.nodes.last().expect("just pushed")
    }

    /// Flags of a router that follows this cluster (its CA and a router
    /// certificate).
    pub fn router_args(&self) -> Vec<String> {
        self.pki.router_args()
    }

    /// Options of an MQTT-over-TCP client of node `index` (0-based) that
    /// trusts that node's development certificate.
    pub fn tcp_options(&self, index: usize, client_id: &str) -> ClientOptions {
        let node = &self.nodes[index];
        options_for(
            node.tcp,
            Transport::Tcp,
            client_id,
            &node.data_dir.join("dev-cert.pem"),
        )
    }

    /// `GET /api/cluster/status` of node `index` (0-based).
    pub async fn status(&self, index: usize) -> serde_json::Value {
        cluster_status(self.nodes[index].admin).await
    }

    /// Server ID (hex, as CONNACK names the node) → index in `nodes`, from
    /// node `asked`'s view of the members.
    pub async fn indices_by_server_id(
        &self,
        asked: usize,
    ) -> std::collections::BTreeMap<String, usize> {
        let status = self.status(asked).await;
        let mut by_server_id = std::collections::BTreeMap::new();
        for m in status["members"].as_array().into_iter().flatten() {
            if let (Some(sid), Some(id)) = (m["server_id"].as_str(), m["node_id"].as_u64()) {
                if let Some(index) = usize::try_from(id).ok().and_then(|id| id.checked_sub(1)) {
                    by_server_id.insert(sid.to_string(), index);
                }
            }
        }
        by_server_id
    }

    /// Polls node `index`'s status until `check` holds, for up to
    /// `timeout`; returns the last status.
    pub async fn wait_status(
        &self,
        index: usize,
        timeout: Duration,
        check: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let status = self.status(index).await;
            if check(&status) {
                return status;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "node {} status never satisfied the check: {status:#}",
                index + 1
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// `GET /api/cluster/status` of the node whose admin endpoint is `admin`.
pub async fn cluster_status(admin: SocketAddr) -> serde_json::Value {
    let (code, body) = http_get(admin, "/api/cluster/status").await;
    assert_eq!(code, 200, "{body}");
    serde_json::from_str(&body).expect("status is JSON")
}
