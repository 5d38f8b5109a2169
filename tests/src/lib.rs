//! Shared harness of the end-to-end tests: real brokers on free loopback
//! ports (in-process or as child processes), real clients, and cleanup of
//! everything a test starts.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
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
        "data_dir = {:?}\nquic_addr = \"127.0.0.1:0\"\ntcp_addr = \"127.0.0.1:0\"\n\
         tls_addr = \"127.0.0.1:0\"\nadmin_addr = \"127.0.0.1:0\"\n{extra_toml}",
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

/// Connect a client; panics if the broker refuses.
pub async fn connect(options: ClientOptions) -> Client {
    let (client, _) = Client::connect(options).await.expect("client connects");
    client
}

/// Path of a binary of the workspace, built next to the test executable.
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target directory");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is not built; run the tests with `cargo test --workspace`",
        path.display()
    );
    path
}

/// A free TCP port on 127.0.0.1 (bound then released).
pub fn free_tcp_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free TCP port")
}

/// A free UDP port on 127.0.0.1 (bound then released).
pub fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .expect("free UDP port")
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
    /// Admin HTTP address.
    pub admin: SocketAddr,
}

impl NodeProcess {
    /// Start `quicmq-node` on free ports with `data_dir`, and wait until it
    /// accepts TCP connections.
    pub fn spawn(data_dir: &Path) -> NodeProcess {
        let tcp: SocketAddr = format!("127.0.0.1:{}", free_tcp_port())
            .parse()
            .expect("addr");
        let quic: SocketAddr = format!("127.0.0.1:{}", free_udp_port())
            .parse()
            .expect("addr");
        let admin: SocketAddr = format!("127.0.0.1:{}", free_tcp_port())
            .parse()
            .expect("addr");
        let child = Command::new(binary("quicmq-node"))
            .arg("--data-dir")
            .arg(data_dir)
            .args(["--tcp-addr", &tcp.to_string()])
            .args(["--quic-addr", &quic.to_string()])
            .args(["--admin-addr", &admin.to_string()])
            .args(["--tls-addr", "off"])
            .env("QUICMQ_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("quicmq-node starts");
        let process = NodeProcess {
            child: Some(child),
            data_dir: data_dir.to_path_buf(),
            tcp,
            quic,
            admin,
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(tcp).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "quicmq-node did not start listening"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        process
    }

    /// Process ID.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
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
