//! The node's UDP socket for quinn: the direct public port and the routed
//! port behind one `AsyncUdpSocket`.
//!
//! Datagrams from routers arrive on the routed port wrapped in a PROXY v2
//! header (source = client, destination = the public address the client
//! used). The socket strips the header so quinn sees the real client
//! address — path validation and migration work unchanged — and remembers
//! which router the client's datagrams come through. Replies to such a
//! client are wrapped the same way (source = public address, destination =
//! client) and sent to that router, which strips the header and sends from
//! the public address. Clients that talk to the public port directly are
//! answered directly.
//!
//! A PROXY v2 LOCAL datagram on the routed port is a router's health probe:
//! it is echoed back at once and never reaches quinn.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::io::{self, IoSliceMut};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use quicmq_proto::envelope::{self, ProxyHeader, MAX_HEADER_LEN};
use quinn::udp::{RecvMeta, Transmit, UdpSocketState};
use quinn::{AsyncUdpSocket, UdpPoller};
use tokio::io::Interest;

use crate::metrics as m;

/// How long a client → router mapping lives without datagrams.
const ROUTE_IDLE: Duration = Duration::from_secs(600);
/// Routed datagrams between two sweeps of idle mappings.
const SWEEP_EVERY: u64 = 16_384;
/// Kernel buffer asked for each UDP socket, each way. A reconnect storm
/// sends thousands of 1200-octet Initials at once; the default (~200 KiB,
/// under 200 of them) drops the rest, and each lost Initial costs its
/// client a retransmission timeout that doubles every time (a client whose
/// Retry token outlives those waits fails). The kernel caps this at
/// `net.core.rmem_max` / `wmem_max`.
const SOCKET_BUFFER: usize = 8 * 1024 * 1024;

struct Route {
    router: SocketAddr,
    public: SocketAddr,
    last_seen_ms: AtomicU64,
}

struct Socket {
    io: tokio::net::UdpSocket,
    state: UdpSocketState,
}

impl Socket {
    fn bind(addr: SocketAddr) -> io::Result<Socket> {
        let std = std::net::UdpSocket::bind(addr)?;
        let buffers = socket2::SockRef::from(&std);
        let _ = buffers.set_recv_buffer_size(SOCKET_BUFFER);
        let _ = buffers.set_send_buffer_size(SOCKET_BUFFER);
        let state = UdpSocketState::new((&std).into())?;
        std.set_nonblocking(true)?;
        Ok(Socket {
            io: tokio::net::UdpSocket::from_std(std)?,
            state,
        })
    }
}

/// The public and routed sockets of a node as one quinn socket.
pub struct RoutedSocket {
    public: Option<Socket>,
    routed: Option<Socket>,
    routes: RwLock<HashMap<SocketAddr, Route>>,
    started: Instant,
    routed_count: AtomicU64,
    public_first: AtomicBool,
    send_buf: Mutex<Vec<u8>>,
    answer_probes: AtomicBool,
}

impl fmt::Debug for RoutedSocket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RoutedSocket")
            .field(
                "public",
                &self.public.as_ref().and_then(|s| s.io.local_addr().ok()),
            )
            .field(
                "routed",
                &self.routed.as_ref().and_then(|s| s.io.local_addr().ok()),
            )
            .finish_non_exhaustive()
    }
}

impl RoutedSocket {
    /// Bind the public port (direct clients) and/or the routed port
    /// (datagrams from routers). At least one must be given.
    pub fn bind(
        public: Option<SocketAddr>,
        routed: Option<SocketAddr>,
    ) -> io::Result<RoutedSocket> {
        if public.is_none() && routed.is_none() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "no UDP address to bind",
            ));
        }
        Ok(RoutedSocket {
            public: public.map(Socket::bind).transpose()?,
            routed: routed.map(Socket::bind).transpose()?,
            routes: RwLock::new(HashMap::new()),
            started: Instant::now(),
            routed_count: AtomicU64::new(0),
            public_first: AtomicBool::new(true),
            send_buf: Mutex::new(Vec::with_capacity(MAX_HEADER_LEN + 65_536)),
            answer_probes: AtomicBool::new(true),
        })
    }

    /// Address of the direct public port.
    pub fn public_addr(&self) -> Option<SocketAddr> {
        self.public.as_ref().and_then(|s| s.io.local_addr().ok())
    }

    /// Address of the routed port.
    pub fn routed_addr(&self) -> Option<SocketAddr> {
        self.routed.as_ref().and_then(|s| s.io.local_addr().ok())
    }

    /// Stop answering routers' health probes (shutdown: routers then mark
    /// this node dead and reset its clients, who reconnect elsewhere).
    pub fn stop_answering_probes(&self) {
        self.answer_probes.store(false, Ordering::Relaxed);
    }

    /// Number of clients currently reached through routers.
    pub fn routed_clients(&self) -> usize {
        self.routes.read().map(|r| r.len()).unwrap_or(0)
    }

    fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    fn remember(&self, client: SocketAddr, router: SocketAddr, public: SocketAddr) {
        let now = self.now_ms();
        let known = self.routes.read().ok().and_then(|routes| {
            routes.get(&client).map(|r| {
                r.last_seen_ms.store(now, Ordering::Relaxed);
                r.router == router && r.public == public
            })
        });
        if known != Some(true) {
            if let Ok(mut routes) = self.routes.write() {
                routes.insert(
                    client,
                    Route {
                        router,
                        public,
                        last_seen_ms: AtomicU64::new(now),
                    },
                );
            }
        }
        if self.routed_count.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY == SWEEP_EVERY - 1 {
            let idle = ROUTE_IDLE.as_millis() as u64;
            if let Ok(mut routes) = self.routes.write() {
                routes.retain(|_, r| {
                    now.saturating_sub(r.last_seen_ms.load(Ordering::Relaxed)) < idle
                });
            }
        }
    }

    fn poll_public(
        socket: &Socket,
        cx: &mut Context,
        bufs: &mut [IoSliceMut<'_>],
        meta: &mut [RecvMeta],
    ) -> Poll<io::Result<usize>> {
        loop {
            match socket.io.poll_recv_ready(cx) {
                Poll::Ready(Ok(())) => {}
                other => return other.map(|r| r.map(|()| 0)),
            }
            if let Ok(n) = socket.io.try_io(Interest::READABLE, || {
                socket.state.recv((&socket.io).into(), bufs, meta)
            }) {
                return Poll::Ready(Ok(n));
            }
        }
    }

    /// Receive one routed datagram into `buf`, unwrapped. Health probes are
    /// answered here and not returned.
    fn poll_routed(
        &self,
        socket: &Socket,
        cx: &mut Context,
        buf: &mut [u8],
        meta: &mut RecvMeta,
    ) -> Poll<io::Result<usize>> {
        loop {
            match socket.io.poll_recv_ready(cx) {
                Poll::Ready(Ok(())) => {}
                other => return other.map(|r| r.map(|()| 0)),
            }
            let (len, router) = match socket.io.try_recv_from(buf) {
                Ok(received) => received,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                // ICMP errors and the like: not fatal for a UDP server.
                Err(_) => continue,
            };
            match envelope::parse(&buf[..len]) {
                Ok((Some(header), offset)) => {
                    let payload = len - offset;
                    buf.copy_within(offset..len, 0);
                    self.remember(header.source, router, header.destination);
                    meta.addr = header.source;
                    meta.len = payload;
                    meta.stride = payload;
                    meta.ecn = None;
                    meta.dst_ip = Some(header.destination.ip());
                    return Poll::Ready(Ok(1));
                }
                Ok((None, _)) => {
                    if self.answer_probes.load(Ordering::Relaxed) {
                        let _ = socket.io.try_send_to(&buf[..len], router);
                    }
                }
                Err(e) => {
                    tracing::debug!(%router, error = %e, "dropped a routed datagram without a valid PROXY v2 header");
                    metrics::counter!(m::ROUTED_DATAGRAMS_DROPPED).increment(1);
                }
            }
        }
    }

    fn send_routed(
        &self,
        socket: &Socket,
        transmit: &Transmit,
        route: (SocketAddr, SocketAddr),
    ) -> io::Result<()> {
        let (router, public) = route;
        let header = ProxyHeader {
            source: public,
            destination: transmit.destination,
        }
        .encode()
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
        let segment = transmit
            .segment_size
            .unwrap_or(transmit.contents.len())
            .max(1);
        let mut buf = self.send_buf.lock().unwrap_or_else(|e| e.into_inner());
        for datagram in transmit.contents.chunks(segment) {
            buf.clear();
            buf.extend_from_slice(&header);
            buf.extend_from_slice(datagram);
            match socket
                .io
                .try_io(Interest::WRITABLE, || socket.io.try_send_to(&buf, router))
            {
                Ok(_) => {}
                // Too large for the path to the router once the envelope is
                // added: one of quinn's path MTU probes (up to 1452 octets of
                // QUIC plus the header exceed a 1500-octet link). Dropped, as
                // quinn-udp drops it on the direct socket, so quinn counts the
                // probe as lost; returning the error would close the
                // connection.
                Err(e) if e.raw_os_error() == Some(libc::EMSGSIZE) => {
                    tracing::trace!(%router, len = buf.len(), "routed datagram too large for the path; dropped");
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

impl AsyncUdpSocket for RoutedSocket {
    fn create_io_poller(self: Arc<Self>) -> Pin<Box<dyn UdpPoller>> {
        Box::pin(WritablePoller {
            socket: self,
            waiting: None,
        })
    }

    fn try_send(&self, transmit: &Transmit) -> io::Result<()> {
        let route = self.routes.read().ok().and_then(|routes| {
            routes
                .get(&transmit.destination)
                .map(|r| (r.router, r.public))
        });
        match (route, &self.routed, &self.public) {
            (Some(route), Some(routed), _) => self.send_routed(routed, transmit, route),
            (_, _, Some(public)) => public.io.try_io(Interest::WRITABLE, || {
                public.state.send((&public.io).into(), transmit)
            }),
            (None, Some(routed), None) => {
                // Only a routed port and no route: nowhere to send it.
                let _ = routed;
                Ok(())
            }
            (_, None, None) => Ok(()),
        }
    }

    fn poll_recv(
        &self,
        cx: &mut Context,
        bufs: &mut [IoSliceMut<'_>],
        meta: &mut [RecvMeta],
    ) -> Poll<io::Result<usize>> {
        let public_first = self.public_first.fetch_xor(true, Ordering::Relaxed);
        let mut order = [true, false];
        if !public_first {
            order.reverse();
        }
        for public in order {
            let polled = match (public, &self.public, &self.routed) {
                (true, Some(socket), _) => Self::poll_public(socket, cx, bufs, meta),
                (false, _, Some(socket)) => match (bufs.first_mut(), meta.first_mut()) {
                    (Some(buf), Some(meta)) => self.poll_routed(socket, cx, buf, meta),
                    _ => Poll::Ready(Ok(0)),
                },
                _ => Poll::Pending,
            };
            if let Poll::Ready(result) = polled {
                return Poll::Ready(result);
            }
        }
        Poll::Pending
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        match (&self.public, &self.routed) {
            (Some(s), _) | (None, Some(s)) => s.io.local_addr(),
            (None, None) => Err(io::Error::new(io::ErrorKind::NotConnected, "no socket")),
        }
    }

    fn max_transmit_segments(&self) -> usize {
        self.public
            .as_ref()
            .map_or(1, |s| s.state.max_gso_segments())
    }

    fn max_receive_segments(&self) -> usize {
        self.public.as_ref().map_or(1, |s| s.state.gro_segments())
    }

    fn may_fragment(&self) -> bool {
        self.public.as_ref().is_none_or(|s| s.state.may_fragment())
    }
}

type WritableFuture = Pin<Box<dyn Future<Output = io::Result<()>> + Send + Sync>>;

/// Wakes a sender when both sockets can take datagrams again.
struct WritablePoller {
    socket: Arc<RoutedSocket>,
    waiting: Option<WritableFuture>,
}

impl fmt::Debug for WritablePoller {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WritablePoller").finish_non_exhaustive()
    }
}

impl UdpPoller for WritablePoller {
    fn poll_writable(mut self: Pin<&mut Self>, cx: &mut Context) -> Poll<io::Result<()>> {
        if self.waiting.is_none() {
            let socket = self.socket.clone();
            self.waiting = Some(Box::pin(async move {
                if let Some(public) = &socket.public {
                    public.io.writable().await?;
                }
                if let Some(routed) = &socket.routed {
                    routed.io.writable().await?;
                }
                Ok(())
            }));
        }
        let Some(waiting) = self.waiting.as_mut() else {
            return Poll::Ready(Ok(()));
        };
        let result = waiting.as_mut().poll(cx);
        if result.is_ready() {
            self.waiting = None;
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A datagram the path to the router cannot carry (here: over the
    /// 65507-octet limit of UDP over IPv4 once the header is added; in a
    /// container network, an MTU probe over 1500 octets) is dropped without
    /// an error, and the socket keeps sending.
    #[tokio::test]
    async fn oversized_routed_datagram_is_dropped_not_an_error() {
        let socket = RoutedSocket::bind(None, Some("127.0.0.1:0".parse().unwrap())).unwrap();
        let router = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        router
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let client: SocketAddr = "192.0.2.7:40000".parse().unwrap();
        let public: SocketAddr = "127.0.0.1:14567".parse().unwrap();
        socket.remember(client, router.local_addr().unwrap(), public);
        // quinn waits for writability before sending; so does the test.
        let routed = socket.routed.as_ref().unwrap();
        routed.io.writable().await.unwrap();

        let big = vec![0x40; 65_500];
        let transmit = |contents: &[u8]| {
            let t = Transmit {
                destination: client,
                ecn: None,
                contents,
                segment_size: None,
                src_ip: None,
            };
            socket.try_send(&t)
        };
        transmit(&big).expect("an oversized datagram is not an error");
        transmit(b"\x40small").expect("a small datagram is sent");

        let mut buf = [0u8; 2048];
        let (len, _) = router.recv_from(&mut buf).unwrap();
        let (header, offset) = envelope::parse(&buf[..len]).unwrap();
        let header = header.expect("a PROXY v2 PROXY header");
        assert_eq!(header.destination, client);
        assert_eq!(&buf[offset..len], b"\x40small");
    }
}
