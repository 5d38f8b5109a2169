//! The router's I/O: client datagrams to nodes, node datagrams to clients,
//! health probes. A thin async shell over [`Steering`], [`NodeTable`] and
//! [`ResetKey`]; no per-connection state.

use std::io::{self, IoSliceMut};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use quicmq_proto::envelope::{self, ProxyHeader, MAX_HEADER_LEN};
use quicmq_proto::quic_lb::LbCodec;
use quinn_udp::{RecvMeta, Transmit, UdpSocketState};
use tokio::io::Interest;

use crate::config::RouterConfig;
use crate::health::{is_probe_answer, probe_datagram, Answers};
use crate::metrics::RouterMetrics;
use crate::node_table::NodeTable;
use crate::reset::{ResetKey, RESET_LEN};
use crate::steering::{Steer, Steering, Via};

/// Datagrams received per system call (recvmmsg) on the public socket.
const BATCH: usize = 32;
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

/// A running router.
pub struct Router {
    steering: Steering,
    table: NodeTable,
    reset_key: ResetKey,
    public: UdpIo,
    internal: UdpIo,
    public_addr: SocketAddr,
    answers: Answers,
    metrics: RouterMetrics,
    started: Instant,
    probe_interval: Duration,
    dead_after: Duration,
}

impl Router {
    /// Bind the public (SO_REUSEPORT) and internal sockets.
    pub fn bind(config: &RouterConfig) -> anyhow::Result<Arc<Router>> {
        let table = NodeTable::new(config.nodes.clone())?;
        let public = UdpIo::bind(config.listen, true)
            .map_err(|e| anyhow::anyhow!("listen: cannot bind {}: {e}", config.listen))?;
        let internal = UdpIo::bind(config.internal_addr, false).map_err(|e| {
            anyhow::anyhow!("internal_addr: cannot bind {}: {e}", config.internal_addr)
        })?;
        let public_addr = public.local_addr()?;
        Ok(Arc::new(Router {
            steering: Steering::new(LbCodec::new(config.quic_lb)?),
            answers: Answers::new(table.nodes().len()),
            metrics: RouterMetrics::new(&table),
            table,
            reset_key: ResetKey::new(&config.reset_key),
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

    /// The node table (health included).
    pub fn table(&self) -> &NodeTable {
        &self.table
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
            for (slot, m) in storage.chunks(SLOT).zip(&meta).take(count) {
                if m.len == 0 {
                    self.metrics
                        .dropped(crate::steering::DropReason::Unparseable);
                    continue;
                }
                let stride = m.stride.max(1);
                for datagram in slot[..m.len.min(SLOT)].chunks(stride) {
                    self.forward_client_datagram(datagram, m.addr, m.dst_ip, &mut envelope_buf)
                        .await;
                }
            }
        }
    }

    async fn forward_client_datagram(
        &self,
        datagram: &[u8],
        client: SocketAddr,
        dst_ip: Option<IpAddr>,
        buf: &mut [u8],
    ) {
        match self.steering.steer(datagram, &self.table) {
            Steer::Forward { node, via } => {
                let Some(entry) = self.table.nodes().get(node) else {
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
                self.internal
                    .send(entry.routed_addr, &buf[..end], None)
                    .await;
                if let Some(c) = self.metrics.nodes.get(node) {
                    c.packets.increment(1);
                    c.bytes.increment(datagram.len() as u64);
                }
                match via {
                    Via::Hash => self.metrics.hashed.increment(1),
                    Via::Token => self.metrics.token_steered.increment(1),
                    Via::ServerId => {}
                }
            }
            Steer::Reset => {
                let cid_len = self.steering.cid_len();
                let Some(cid) = datagram.get(1..1 + cid_len) else {
                    return;
                };
                let mut reset = [0u8; RESET_LEN];
                if let Some(len) = self.reset_key.write_reset(cid, datagram.len(), &mut reset) {
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
            if let Some(i) = self
                .table
                .nodes()
                .iter()
                .position(|n| n.routed_addr == from)
            {
                self.answers.record(i, self.now_ms());
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

    /// Probe every node each interval and update their health.
    pub async fn run_health(self: Arc<Self>) {
        let probe = probe_datagram();
        let mut tick = tokio::time::interval(self.probe_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let now = self.now_ms();
            for (i, node) in self.table.nodes().iter().enumerate() {
                let alive = self.answers.alive(i, now, self.dead_after);
                if node.set_alive(alive) {
                    if alive {
                        tracing::info!(node = %node.label, addr = %node.routed_addr, "node is alive");
                    } else {
                        tracing::warn!(node = %node.label, addr = %node.routed_addr, "node stopped answering probes: dead");
                    }
                }
                if let Some(c) = self.metrics.nodes.get(i) {
                    c.alive.set(if alive { 1.0 } else { 0.0 });
                }
                let _ = self.internal.io.send_to(&probe, node.routed_addr).await;
            }
        }
    }
}
