//! The router's I/O: client datagrams to nodes, node datagrams to clients,
//! health probes. A thin async shell over [`Steering`], [`NodeTable`] and
//! [`ResetKey`]; no per-connection state. The routing state ([`Routing`])
//! is swapped whole when the cluster changes.

use std::io::{self, IoSliceMut};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use quicmq_proto::envelope::{self, ProxyHeader, MAX_HEADER_LEN};
use quicmq_proto::quic_lb::{LbCodec, LbConfig};
use quinn_udp::{RecvMeta, Transmit, UdpSocketState};
use tokio::io::Interest;
use tokio::sync::Notify;

use crate::affinity::HandshakeAffinity;
use crate::config::{ClusterSource, RouterConfig};
use crate::health::{alive_at, is_probe_answer, probe_datagram};
use crate::metrics::{NodeCounters, RouterMetrics};
use crate::node_table::NodeTable;
use crate::reset::{ResetKey, RESET_LEN};
use crate::steering::{DropReason, Steer, Steering, Via};

/// Datagrams received per system call (recvmmsg) on the public socket.
const BATCH: usize = 32;
/// Token-steered handshakes remembered at once (a few MiB at most).
const HANDSHAKE_AFFINITY_CAPACITY: usize = 65_536;
/// How long a handshake's 0-RTT packets follow its Initial.
const HANDSHAKE_AFFINITY_TTL_MS: u64 = 5_000;
/// Kernel socket buffers requested for the router's sockets.
const SOCKET_BUFFER: usize = 8 * 1024 * 1024;
/// Receive buffer per batch slot: room for a GRO-coalesced train.
const SLOT: usize = 64 * 1024;

/// A UDP socket with quinn-udp's batched, GSO/GRO-aware I/O.
pub struct UdpIo {
    io: tokio::net::UdpSocket,
    state: UdpSocketState,
}

impl UdpIo {
    /// Bind, with SO_REUSEPORT when `reuse_port` (several routers on one
    /// public address).
    pub fn bind(addr: SocketAddr, reuse_port: bool) -> io::Result<UdpIo> {
        let domain = socket2::Domain::for_address(addr);
        let socket =
            socket2::Socket::new(domain, socket2::Type::DGRAM, Some(socket2::Protocol::UDP))?;
        if reuse_port {
            socket.set_reuse_port(true)?;
        }
        if addr.is_ipv6() {
            socket.set_only_v6(false)?;
        }
        // Bursts from many clients must not overflow the kernel's queue
        // before a batch is read (the default is ~200 KiB, ~90 datagrams).
        // The kernel caps these at net.core.rmem_max / wmem_max.
        let _ = socket.set_recv_buffer_size(SOCKET_BUFFER);
        let _ = socket.set_send_buffer_size(SOCKET_BUFFER);
        socket.bind(&addr.into())?;
        socket.set_nonblocking(true)?;
        let std: std::net::UdpSocket = socket.into();
        let state = UdpSocketState::new((&std).into())?;
        Ok(UdpIo {
            io: tokio::net::UdpSocket::from_std(std)?,
            state,
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.io.local_addr()
    }

    /// Wait for datagrams and read a batch of them (recvmmsg, GRO) into
    /// `storage`, `SLOT` octets per slot; returns how many `meta` entries
    /// are filled.
    async fn recv_batch(
        &self,
        storage: &mut [u8],
        meta: &mut [RecvMeta; BATCH],
    ) -> io::Result<usize> {
        loop {
            self.io.readable().await?;
            let mut bufs: [IoSliceMut<'_>; BATCH] = {
                let mut chunks = storage.chunks_mut(SLOT);
                std::array::from_fn(|_| IoSliceMut::new(chunks.next().unwrap_or_default()))
            };
            match self.io.try_io(Interest::READABLE, || {
                self.state.recv((&self.io).into(), &mut bufs, meta)
            }) {
                Ok(count) => return Ok(count),
                // WouldBlock, or an error a UDP socket reports for an
                // earlier send (ICMP): wait for the next datagrams.
                Err(_) => continue,
            }
        }
    }

    async fn send(&self, destination: SocketAddr, contents: &[u8], src_ip: Option<IpAddr>) {
        let transmit = Transmit {
            destination,
            ecn: None,
            contents,
            segment_size: None,
            src_ip,
        };
        loop {
            match self.io.try_io(Interest::WRITABLE, || {
                self.state.send((&self.io).into(), &transmit)
            }) {
                Ok(()) => return,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if self.io.writable().await.is_err() {
                        return;
                    }
                }
                // UDP: a failed send is a lost datagram; QUIC recovers.
                Err(_) => return,
            }
        }
    }
}

/// Everything a datagram's routing depends on that the cluster can change:
/// the node table, the QUIC-LB configuration, the reset key. Built whole and
/// swapped in whole ([`Router::install`]).
pub struct Routing {
    steering: Steering,
    table: NodeTable,
    reset_key: ResetKey,
    counters: Vec<NodeCounters>,
    /// Where it came from.
    pub origin: RoutingOrigin,
}

/// Where a [`Routing`] came from (for the admin API).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RoutingOrigin {
    /// Cluster ID (empty for a static table).
    pub cluster_id: String,
    /// Revision of the cluster state it was built from (0 for a static
    /// table).
    pub revision: u64,
    /// Raft leader's node ID as the serving node knew it (0: none).
    pub leader_node_id: u64,
    /// The seed it came from (empty for a static table).
    pub seed: String,
}

impl Routing {
    /// A routing state from its parts.
    pub fn new(
        table: NodeTable,
        quic_lb: LbConfig,
        reset_key: &[u8; 32],
        origin: RoutingOrigin,
    ) -> Result<Routing, quicmq_proto::quic_lb::QuicLbError> {
        Ok(Routing {
            steering: Steering::new(LbCodec::new(quic_lb)?),
            counters: RouterMetrics::node_counters(&table),
            table,
            reset_key: ResetKey::new(reset_key),
            origin,
        })
    }

    /// The node table (health included).
    pub fn table(&self) -> &NodeTable {
        &self.table
    }

    /// The QUIC-LB configuration in use.
    pub fn quic_lb(&self) -> &LbConfig {
        self.steering.config()
    }
}

/// A running router.
pub struct Router {
    routing: RwLock<Option<Arc<Routing>>>,
    /// Recent token-steered handshakes (their 0-RTT packets follow them).
    affinity: Mutex<HandshakeAffinity>,
    table_changed: Notify,
    public: UdpIo,
    internal: UdpIo,
    public_addr: SocketAddr,
    metrics: RouterMetrics,
    started: Instant,
    probe_interval: Duration,
    dead_after: Duration,
}

impl Router {
    /// Bind the public (SO_REUSEPORT) and internal sockets. A static node
    /// table is in use at once; with seeds, the router drops every datagram
    /// until the watch installs the cluster's ([`Router::install`]).
    pub fn bind(config: &RouterConfig) -> anyhow::Result<Arc<Router>> {
        let routing = match &config.cluster {
            ClusterSource::Static(c) => Some(Arc::new(Routing::new(
                NodeTable::new(c.nodes.clone())?,
                c.quic_lb,
                &c.reset_key,
                RoutingOrigin::default(),
            )?)),
            ClusterSource::Watch(_) => None,
        };
        let public = UdpIo::bind(config.listen, true)
            .map_err(|e| anyhow::anyhow!("listen: cannot bind {}: {e}", config.listen))?;
        let internal = UdpIo::bind(config.internal_addr, false).map_err(|e| {
            anyhow::anyhow!("internal_addr: cannot bind {}: {e}", config.internal_addr)
        })?;
        let public_addr = public.local_addr()?;
        if let Some(r) = &routing {
            RouterMetrics::table_installed(&r.table);
        }
        Ok(Arc::new(Router {
            routing: RwLock::new(routing),
            affinity: Mutex::new(HandshakeAffinity::new(
                HANDSHAKE_AFFINITY_CAPACITY,
                HANDSHAKE_AFFINITY_TTL_MS,
            )),
            table_changed: Notify::new(),
            metrics: RouterMetrics::new(),
            public,
            internal,
            public_addr,
            started: Instant::now(),
            probe_interval: config.probe_interval,
            dead_after: config.dead_after,
        }))
    }

    /// The public address.
    pub fn public_addr(&self) -> SocketAddr {
        self.public_addr
    }

    /// The address towards the nodes (its IP family decides which of a
    /// host name's addresses to use).
    pub fn internal_addr(&self) -> io::Result<SocketAddr> {
        self.internal.local_addr()
    }

    /// The routing state in use; `None` until the cluster's first snapshot
    /// arrived (seeds only).
    pub fn routing(&self) -> Option<Arc<Routing>> {
        match self.routing.read() {
            Ok(guard) => guard.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// The router's metric handles.
    pub fn metrics(&self) -> &RouterMetrics {
        &self.metrics
    }

    /// Replace the routing state: from now on every datagram is steered by
    /// `routing`. New nodes are probed at once.
    pub fn install(&self, routing: Routing) {
        let routing = Arc::new(routing);
        let old = {
            let mut guard = match self.routing.write() {
                Ok(guard) => guard,
                Err(poisoned) => poisoned.into_inner(),
            };
            guard.replace(routing.clone())
        };
        // Nodes that left the table altogether are no longer alive here.
        if let Some(old) = old {
            for n in old.table.nodes() {
                if routing.table.by_server_id(&n.server_id).is_none() {
                    metrics::gauge!(crate::metrics::NODE_ALIVE, "node" => n.label.clone()).set(0.0);
                }
            }
        }
        for (n, c) in routing.table.nodes().iter().zip(&routing.counters) {
            c.alive.set(if n.is_alive() { 1.0 } else { 0.0 });
        }
        RouterMetrics::table_installed(&routing.table);
        self.table_changed.notify_one();
    }

    fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    /// Clients → nodes, until the socket fails.
    pub async fn run_public(self: Arc<Self>) -> io::Result<()> {
        let mut storage = vec![0u8; BATCH * SLOT];
        let mut meta = [RecvMeta::default(); BATCH];
        let mut envelope_buf = vec![0u8; MAX_HEADER_LEN + SLOT];
        loop {
            let count = self.public.recv_batch(&mut storage, &mut meta).await?;
            // One routing state per batch: a table swap takes effect at the
            // next batch.
            let routing = self.routing();
            for (slot, m) in storage.chunks(SLOT).zip(&meta).take(count) {
                if m.len == 0 {
                    self.metrics
                        .dropped(crate::steering::DropReason::Unparseable);
                    continue;
                }
                let stride = m.stride.max(1);
                for datagram in slot[..m.len.min(SLOT)].chunks(stride) {
                    match &routing {
                        Some(routing) => {
                            self.forward_client_datagram(
                                routing,
                                datagram,
                                m.addr,
                                m.dst_ip,
                                &mut envelope_buf,
                            )
                            .await
                        }
                        None => self.metrics.dropped(DropReason::NoClusterState),
                    }
                }
            }
        }
    }

    async fn forward_client_datagram(
        &self,
        routing: &Routing,
        datagram: &[u8],
        client: SocketAddr,
        dst_ip: Option<IpAddr>,
        buf: &mut [u8],
    ) {
        // Only long headers (handshakes) look at the affinity table.
        let long_header = datagram.first().is_some_and(|b| b & 0x80 != 0);
        let steer = if !long_header {
            routing.steering.steer(datagram, &routing.table)
        } else {
            let mut affinity = match self.affinity.lock() {
                Ok(guard) => guard,
                Err(poisoned) => poisoned.into_inner(),
            };
            routing.steering.steer_handshake(
                datagram,
                &routing.table,
                client,
                self.now_ms(),
                &mut affinity,
            )
        };
        match steer {
            Steer::Forward { node, via } => {
                let Some(routed_addr) = routing
                    .table
                    .nodes()
                    .get(node)
                    .and_then(|entry| entry.routed_addr)
                else {
                    return;
                };
                let destination = match dst_ip {
                    Some(ip) if self.public_addr.ip().is_unspecified() => {
                        SocketAddr::new(ip, self.public_addr.port())
                    }
                    _ => self.public_addr,
                };
                let header = ProxyHeader {
                    source: client,
                    destination,
                };
                let Ok(len) = envelope::write_header(&header, buf) else {
                    self.metrics.bad_returns.increment(1);
                    return;
                };
                let end = len + datagram.len();
                let Some(out) = buf.get_mut(len..end) else {
                    return;
                };
                out.copy_from_slice(datagram);
                self.internal.send(routed_addr, &buf[..end], None).await;
                if let Some(c) = routing.counters.get(node) {
                    c.packets.increment(1);
                    c.bytes.increment(datagram.len() as u64);
                }
                match via {
                    Via::Hash => self.metrics.hashed.increment(1),
                    Via::Token => self.metrics.token_steered.increment(1),
                    Via::Affinity => self.metrics.affinity_steered.increment(1),
                    Via::ServerId => {}
                }
            }
            Steer::Reset => {
                let cid_len = routing.steering.cid_len();
                let Some(cid) = datagram.get(1..1 + cid_len) else {
                    return;
                };
                let mut reset = [0u8; RESET_LEN];
                if let Some(len) = routing
                    .reset_key
                    .write_reset(cid, datagram.len(), &mut reset)
                {
                    self.public.send(client, &reset[..len], dst_ip).await;
                    self.metrics.resets.increment(1);
                }
            }
            Steer::Drop(reason) => self.metrics.dropped(reason),
        }
    }

    /// Nodes → clients, and probe answers, until the socket fails.
    pub async fn run_internal(self: Arc<Self>) -> io::Result<()> {
        let mut storage = vec![0u8; BATCH * SLOT];
        let mut meta = [RecvMeta::default(); BATCH];
        loop {
            let count = self.internal.recv_batch(&mut storage, &mut meta).await?;
            for (slot, m) in storage.chunks(SLOT).zip(&meta).take(count) {
                let stride = m.stride.max(1);
                for datagram in slot[..m.len.min(SLOT)].chunks(stride) {
                    self.return_node_datagram(datagram, m.addr).await;
                }
            }
        }
    }

    /// A datagram from a node: a probe answer, or an enveloped datagram for
    /// a client, sent on from the public address.
    async fn return_node_datagram(&self, datagram: &[u8], from: SocketAddr) {
        if is_probe_answer(datagram) {
            if let Some(routing) = self.routing() {
                if let Some(node) = routing.table.by_routed_addr(from) {
                    node.record_answer(self.now_ms());
                }
            }
            return;
        }
        match envelope::parse(datagram) {
            Ok((Some(header), offset)) => {
                let src_ip = (!header.source.ip().is_unspecified()).then(|| header.source.ip());
                let src_ip = src_ip.filter(|_| self.public_addr.ip().is_unspecified());
                self.public
                    .send(header.destination, &datagram[offset..], src_ip)
                    .await;
                self.metrics.returned.increment(1);
            }
            _ => self.metrics.bad_returns.increment(1),
        }
    }

    /// Probe every node each interval (and at once when the table changes)
    /// and update their health.
    pub async fn run_health(self: Arc<Self>) {
        let probe = probe_datagram();
        let mut tick = tokio::time::interval(self.probe_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                () = self.table_changed.notified() => {}
            }
            let Some(routing) = self.routing() else {
                continue;
            };
            let now = self.now_ms();
            for (i, node) in routing.table.nodes().iter().enumerate() {
                let Some(addr) = node.routed_addr.filter(|_| node.is_probed()) else {
                    continue;
                };
                let alive = alive_at(node.last_answer_ms(), now, self.dead_after);
                if node.set_alive(alive) {
                    if alive {
                        tracing::info!(node = %node.label, %addr, "node is alive");
                    } else {
                        tracing::warn!(node = %node.label, %addr, "node stopped answering probes: dead");
                    }
                }
                if let Some(c) = routing.counters.get(i) {
                    c.alive.set(if alive { 1.0 } else { 0.0 });
                }
                let _ = self.internal.io.send_to(&probe, addr).await;
            }
        }
    }
}
