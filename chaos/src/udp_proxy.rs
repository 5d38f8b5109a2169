//! [`UdpProxy`]: an impaired UDP path between clients and one upstream
//! address (a router's public port), on loopback.
//!
//! Each client address gets its own upstream socket, as behind a NAT; the
//! proxy applies an [`Impairment`] both ways, and [`UdpProxy::rebind`]
//! moves every client to a new upstream port at once (NAT rebinding: the
//! server sees the client's address change mid-connection).
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use std::time::Duration;
//! use quicmq_chaos::impairment::Impairment;
//! use quicmq_chaos::udp_proxy::UdpProxy;
//!
//! let proxy = UdpProxy::start("127.0.0.1:14567".parse().unwrap()).await?;
//! proxy.set_impairment(Impairment::lossy(0.05, Duration::from_millis(20), 0.1));
//! // Clients connect to proxy.addr() instead of the router.
//! proxy.rebind();
//! # Ok(()) }
//! ```

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::impairment::{Impairer, Impairment};

/// Largest datagram relayed.
const MAX_DATAGRAM: usize = 65_535;

/// Datagram counts of a proxy.
#[derive(Debug, Default)]
pub struct ProxyCounters {
    /// Datagrams relayed (each copy of a duplicate counts).
    pub relayed: AtomicU64,
    /// Datagrams the impairment dropped.
    pub dropped: AtomicU64,
    /// Times every client was moved to a new upstream port.
    pub rebinds: AtomicU64,
}

struct Flow {
    upstream: Arc<UdpSocket>,
    reader: JoinHandle<()>,
}

impl Drop for Flow {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

struct Inner {
    public: Arc<UdpSocket>,
    upstream: SocketAddr,
    impairer: Mutex<Impairer>,
    flows: Mutex<HashMap<SocketAddr, Flow>>,
    counters: ProxyCounters,
    delay_line: mpsc::UnboundedSender<Delayed>,
    /// Order of arrival of delayed datagrams.
    sequence: AtomicU64,
}

/// A send due at `at`; `seq` keeps datagrams due at the same instant in
/// the order they came.
struct Delayed {
    at: Instant,
    seq: u64,
    send: Pin<Box<dyn Future<Output = std::io::Result<()>> + Send>>,
}

impl PartialEq for Delayed {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}

impl Eq for Delayed {}

impl PartialOrd for Delayed {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Delayed {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

/// Sends delayed datagrams in order of due time, then arrival: a path that
/// only delays keeps the order (a timer per datagram would not: timers of
/// one tick fire in any order), while a held-back datagram (reordering)
/// is overtaken as it should be.
async fn run_delay_line(mut incoming: mpsc::UnboundedReceiver<Delayed>) {
    let mut due: BinaryHeap<Reverse<Delayed>> = BinaryHeap::new();
    loop {
        let next = due.peek().map(|Reverse(d)| d.at);
        tokio::select! {
            item = incoming.recv() => match item {
                Some(item) => due.push(Reverse(item)),
                None => return,
            },
            _ = async {
                match next {
                    Some(at) => tokio::time::sleep_until(at.into()).await,
                    None => std::future::pending().await,
                }
            } => {
                let now = Instant::now();
                while due.peek().is_some_and(|Reverse(d)| d.at <= now) {
                    if let Some(Reverse(d)) = due.pop() {
                        let _ = d.send.await;
                    }
                }
            }
        }
    }
}

/// An impaired UDP path to one upstream address; stops when dropped.
pub struct UdpProxy {
    inner: Arc<Inner>,
    addr: SocketAddr,
    task: JoinHandle<()>,
    delay_task: JoinHandle<()>,
}

impl UdpProxy {
    /// Listens on a free loopback port and relays to `upstream`, with no
    /// impairment until [`UdpProxy::set_impairment`].
    ///
    /// # Errors
    ///
    /// When the listening socket cannot be bound.
    pub async fn start(upstream: SocketAddr) -> std::io::Result<UdpProxy> {
        let public = Arc::new(UdpSocket::bind("127.0.0.1:0").await?);
        let addr = public.local_addr()?;
        let (delay_line, delayed) = mpsc::unbounded_channel();
        let inner = Arc::new(Inner {
            public,
            upstream,
            impairer: Mutex::new(Impairer::new(Impairment::default(), u64::from(addr.port()))),
            flows: Mutex::new(HashMap::new()),
            counters: ProxyCounters::default(),
            delay_line,
            sequence: AtomicU64::new(0),
        });
        let task = tokio::spawn(relay_from_clients(inner.clone()));
        let delay_task = tokio::spawn(run_delay_line(delayed));
        Ok(UdpProxy {
            inner,
            addr,
            task,
            delay_task,
        })
    }

    /// The address clients send to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Applies `path` to datagrams in both directions from now on.
    pub fn set_impairment(&self, path: Impairment) {
        lock(&self.inner.impairer).set_path(path);
    }

    /// Moves every client to a new upstream port (NAT rebinding).
    pub fn rebind(&self) {
        let mut flows = lock(&self.inner.flows);
        for (client, flow) in flows.iter_mut() {
            match new_flow(&self.inner, *client) {
                Ok(new) => *flow = new,
                Err(e) => tracing::warn!(%client, "rebind: {e}"),
            }
        }
        self.inner.counters.rebinds.fetch_add(1, Ordering::Relaxed);
    }

    /// Datagram counts.
    pub fn counters(&self) -> &ProxyCounters {
        &self.inner.counters
    }
}

impl Drop for UdpProxy {
    fn drop(&mut self) {
        self.task.abort();
        self.delay_task.abort();
        lock(&self.inner.flows).clear();
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A flow for `client`: a fresh upstream socket and its reader.
fn new_flow(inner: &Arc<Inner>, client: SocketAddr) -> std::io::Result<Flow> {
    let socket = std::net::UdpSocket::bind("127.0.0.1:0")?;
    socket.set_nonblocking(true)?;
    let upstream = Arc::new(UdpSocket::from_std(socket)?);
    let reader = tokio::spawn(relay_to_client(
        Arc::downgrade(inner),
        upstream.clone(),
        client,
    ));
    Ok(Flow { upstream, reader })
}

async fn relay_from_clients(inner: Arc<Inner>) {
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        let (len, client) = match inner.public.recv_from(&mut buf).await {
            Ok(r) => r,
            Err(e) => {
                tracing::debug!("udp proxy: {e}");
                continue;
            }
        };
        let upstream = {
            let mut flows = lock(&inner.flows);
            match flows.entry(client) {
                std::collections::hash_map::Entry::Occupied(flow) => flow.get().upstream.clone(),
                std::collections::hash_map::Entry::Vacant(slot) => match new_flow(&inner, client) {
                    Ok(flow) => slot.insert(flow).upstream.clone(),
                    Err(e) => {
                        tracing::warn!(%client, "udp proxy: {e}");
                        continue;
                    }
                },
            }
        };
        let datagram = buf[..len].to_vec();
        let to = inner.upstream;
        send_impaired(&inner, datagram, move |d| {
            let upstream = upstream.clone();
            async move { upstream.send_to(&d, to).await.map(|_| ()) }
        })
        .await;
    }
}

async fn relay_to_client(
    inner: std::sync::Weak<Inner>,
    upstream: Arc<UdpSocket>,
    client: SocketAddr,
) {
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        let Ok((len, _)) = upstream.recv_from(&mut buf).await else {
            continue;
        };
        let Some(inner) = inner.upgrade() else { return };
        let public = inner.public.clone();
        send_impaired(&inner, buf[..len].to_vec(), move |d| {
            let public = public.clone();
            async move { public.send_to(&d, client).await.map(|_| ()) }
        })
        .await;
    }
}

/// Sends `datagram` with `send` at the instants the impairer picks: at
/// once (in order, on the relaying task) when undelayed, through the delay
/// line when delayed.
async fn send_impaired<F, Fut>(inner: &Inner, datagram: Vec<u8>, send: F)
where
    F: Fn(Vec<u8>) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = std::io::Result<()>> + Send + 'static,
{
    let now = Instant::now();
    let times = lock(&inner.impairer).decide(now);
    if times.is_empty() {
        inner.counters.dropped.fetch_add(1, Ordering::Relaxed);
        return;
    }
    inner
        .counters
        .relayed
        .fetch_add(times.len() as u64, Ordering::Relaxed);
    if times.iter().all(|t| *t <= now) {
        for _ in times {
            let _ = send(datagram.clone()).await;
        }
        return;
    }
    for at in times {
        let seq = inner.sequence.fetch_add(1, Ordering::Relaxed);
        let _ = inner.delay_line.send(Delayed {
            at,
            seq,
            send: Box::pin(send(datagram.clone())),
        });
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    async fn echo_server() -> (SocketAddr, JoinHandle<()>) {
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = socket.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let mut buf = [0u8; 2048];
            while let Ok((len, from)) = socket.recv_from(&mut buf).await {
                // Echo the payload and say where it came from.
                let mut reply = buf[..len].to_vec();
                reply.extend_from_slice(format!("|{from}").as_bytes());
                let _ = socket.send_to(&reply, from).await;
            }
        });
        (addr, task)
    }

    async fn ask(client: &UdpSocket, proxy: SocketAddr, msg: &str) -> Option<String> {
        client.send_to(msg.as_bytes(), proxy).await.unwrap();
        let mut buf = [0u8; 2048];
        match tokio::time::timeout(Duration::from_millis(500), client.recv_from(&mut buf)).await {
            Ok(Ok((len, _))) => Some(String::from_utf8_lossy(&buf[..len]).into_owned()),
            _ => None,
        }
    }

    #[tokio::test]
    async fn relays_both_ways_and_rebinding_changes_the_source_port() {
        let (server, _task) = echo_server().await;
        let proxy = UdpProxy::start(server).await.unwrap();
        let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let first = ask(&client, proxy.addr(), "a").await.expect("echo");
        let again = ask(&client, proxy.addr(), "b").await.expect("echo");
        let source = |reply: &str| reply.split('|').nth(1).unwrap().to_string();
        assert!(first.starts_with("a|"));
        assert_eq!(
            source(&first),
            source(&again),
            "one flow, one upstream port"
        );
        proxy.rebind();
        let moved = ask(&client, proxy.addr(), "c")
            .await
            .expect("echo after rebind");
        assert_ne!(source(&first), source(&moved), "a new upstream port");
        assert_eq!(proxy.counters().rebinds.load(Ordering::Relaxed), 1);
    }

    #[tokio::test]
    async fn total_loss_drops_and_delay_delays() {
        let (server, _task) = echo_server().await;
        let proxy = UdpProxy::start(server).await.unwrap();
        let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        proxy.set_impairment(Impairment {
            loss: 1.0,
            ..Impairment::default()
        });
        assert_eq!(ask(&client, proxy.addr(), "x").await, None);
        assert!(proxy.counters().dropped.load(Ordering::Relaxed) >= 1);
        proxy.set_impairment(Impairment {
            delay: Duration::from_millis(60),
            ..Impairment::default()
        });
        let started = Instant::now();
        assert!(ask(&client, proxy.addr(), "y").await.is_some());
        // Delayed on the way there and on the way back.
        assert!(
            started.elapsed() >= Duration::from_millis(120),
            "{:?}",
            started.elapsed()
        );
    }
}
