//! Forwarding rate of a real `quicmq-router` process.
//!
//! ```sh
//! cargo bench -p quicmq-router --bench forwarding                 # 5 s, human summary
//! cargo bench -p quicmq-router --bench forwarding -- --help       # every knob
//! cargo bench -p quicmq-router --bench forwarding -- --initial-pct 10 --json
//! ```
//!
//! The generator starts the release `quicmq-router` binary as a child
//! process (or the one given with `--router`) in front of `--nodes` fake
//! nodes: plain UDP sockets of this process, bound on 127.0.0.1, that
//! answer the router's health probes and count what reaches them. Once
//! the router reports every node alive, `--senders` sockets (one thread
//! each) send QUIC-shaped datagrams to the router as fast as they can (or
//! at `--rate`) for `--duration` seconds or `--count` datagrams:
//!
//! - short-header 1-RTT packets: first octet `0x40` | random low bits,
//!   then a DCID minted with [`LbCodec::encode`] for one of the nodes'
//!   server IDs (a pool of `--cids` connection IDs per node), then payload;
//! - long-header v1 Initials (`--initial-pct` percent of the datagrams):
//!   a random 8-octet client-chosen DCID (the router hashes it to a node),
//!   random SCID, empty token, payload.
//!
//! Every datagram is `--size` octets. Each fake node checks the PROXY v2
//! envelope of every datagram (source = one of the senders, destination =
//! the router's public address), that the QUIC datagram is intact, and
//! that it is the node the datagram's DCID names (server ID for short
//! headers, the router's rendezvous hash for Initials).
//!
//! Reported: datagrams sent, forwarded (received by the nodes) and lost;
//! forwarded datagrams/s and Mbit/s (QUIC bytes, without the envelope)
//! from the first send to the last arrival; the router's CPU time
//! (utime + stime of `/proc/PID/stat`, every thread) over the run, and
//! forwarded datagrams per router CPU-second ("per core"); where the lost
//! datagrams went (the router's own counters from its `/metrics`); the
//! generator's CPU time and the whole machine's busy share. Everything
//! stays on 127.0.0.1 and every run is bounded.

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use clap::Parser;
use quicmq_proto::envelope;
use quicmq_proto::quic_lb::{LbCodec, LbConfig, RoutableCid, ServerId};
use quicmq_router::health::is_probe_answer;
use quicmq_router::node_table::NodeTable;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const RESET_KEY: &str = "5d1b0f1c2a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5";
const LB_KEY: [u8; 16] = [
    0x8f, 0x95, 0xf0, 0x92, 0x45, 0x76, 0x5f, 0x80, 0x25, 0x69, 0x34, 0xe5, 0x0c, 0x66, 0x20, 0x7f,
];
/// The router's default QUIC-LB nonce length (and config ID 0).
const NONCE_LEN: usize = 8;
/// Server IDs of two octets, like the README's `0001`, `0002`.
const SID_LEN: usize = 2;

/// Forwarding rate of a real quicmq-router process (see the file's doc comment).
#[derive(Parser, Debug)]
#[command(name = "forwarding")]
struct Args {
    /// The router binary [default: the release quicmq-router of this workspace].
    #[arg(long)]
    router: Option<PathBuf>,
    /// Fake nodes (UDP sinks, one thread each).
    #[arg(long, default_value_t = 2)]
    nodes: usize,
    /// Sender sockets (one thread each).
    #[arg(long, default_value_t = 2)]
    senders: usize,
    /// Seconds to send for.
    #[arg(long, default_value_t = 5.0)]
    duration: f64,
    /// Datagrams to send at most (all senders together).
    #[arg(long, default_value_t = 2_000_000)]
    count: u64,
    /// Datagrams per second, all senders together (0 = as fast as they can).
    #[arg(long, default_value_t = 0.0)]
    rate: f64,
    /// Size of every QUIC datagram, octets.
    #[arg(long, default_value_t = 1200)]
    size: usize,
    /// Percentage of long-header Initials with a client-chosen DCID (hash-steered).
    #[arg(long, default_value_t = 0)]
    initial_pct: u32,
    /// Connection IDs per node the short-header datagrams cycle through.
    #[arg(long, default_value_t = 64)]
    cids: usize,
    /// Print one JSON object on stdout instead of the human summary.
    #[arg(long)]
    json: bool,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(report) => {
            if args.json {
                println!("{}", report.json);
            } else {
                println!("{}", report.human);
            }
            if report.faults > 0 {
                eprintln!(
                    "forwarding: {} datagrams failed verification (see above)",
                    report.faults
                );
                return ExitCode::FAILURE;
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("forwarding: {e}");
            ExitCode::FAILURE
        }
    }
}

// ------------------------------------------------------------------ router

/// The router child process; killed when dropped.
struct RouterChild {
    child: Child,
    admin: SocketAddr,
}

impl Drop for RouterChild {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port(udp: bool) -> io::Result<u16> {
    if udp {
        UdpSocket::bind("127.0.0.1:0")?
            .local_addr()
            .map(|a| a.port())
    } else {
        TcpListener::bind("127.0.0.1:0")?
            .local_addr()
            .map(|a| a.port())
    }
}

fn spawn_router(
    binary: &PathBuf,
    listen: SocketAddr,
    nodes: &[(ServerId, SocketAddr)],
) -> Result<RouterChild, String> {
    let admin: SocketAddr = ([127, 0, 0, 1], free_port(false).map_err(|e| e.to_string())?).into();
    let mut command = Command::new(binary);
    command
        .args(["--listen", &listen.to_string()])
        .args(["--internal-addr", "127.0.0.1:0"])
        .args(["--admin-addr", &admin.to_string()])
        .args(["--reset-key", RESET_KEY])
        .args(["--quic-lb-key", &hex(&LB_KEY)])
        .args(["--quic-lb-nonce-len", &NONCE_LEN.to_string()])
        // Probes every 200 ms as by default, but a node must miss 5 s of
        // them to be declared dead: a sink busy with the flood is not dead.
        .args(["--probe-interval-ms", "200"])
        .args(["--dead-after-ms", "5000"])
        .args(["--log", "warn"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    for (sid, addr) in nodes {
        command.arg("--node").arg(format!("{}={addr}", hex(sid)));
    }
    let child = command
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", binary.display()))?;
    Ok(RouterChild { child, admin })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// GET `path` from the router's admin port: the body, or `None`.
fn http_get(admin: SocketAddr, path: &str) -> Option<String> {
    let mut s = TcpStream::connect_timeout(&admin, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: router\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut response = String::new();
    s.read_to_string(&mut response).ok()?;
    if !response.starts_with("HTTP/1.1 200") {
        return None;
    }
    response.split_once("\r\n\r\n").map(|(_, b)| b.to_string())
}

/// Every sample of the router's Prometheus text: `name{labels}` → value.
fn metrics(admin: SocketAddr) -> Option<BTreeMap<String, f64>> {
    let body = http_get(admin, "/metrics")?;
    Some(
        body.lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| {
                let (key, value) = l.rsplit_once(' ')?;
                Some((key.to_string(), value.parse().ok()?))
            })
            .collect(),
    )
}

/// Sum of every series of `name`.
fn metric_sum(m: &BTreeMap<String, f64>, name: &str) -> f64 {
    m.iter()
        .filter(|(k, _)| k.as_str() == name || k.starts_with(&format!("{name}{{")))
        .map(|(_, v)| v)
        .sum()
}

// ------------------------------------------------------------------ CPU time

fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

/// utime + stime of a process (every thread), in clock ticks.
fn process_ticks(pid: &str) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses: state is
    // field 3, utime 14, stime 15.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// (busy, total) ticks of all CPUs of the machine.
fn machine_ticks() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal (guest is in user).
    let total: u64 = v.iter().take(8).sum();
    let idle = v.get(3)? + v.get(4).copied().unwrap_or(0);
    Some((total - idle, total))
}

// ------------------------------------------------------------------ fake nodes

#[derive(Default)]
struct SinkCounters {
    datagrams: AtomicU64,
    bytes: AtomicU64,
    probes: AtomicU64,
    /// Not a PROXY v2 PROXY envelope, or wrong addresses in it.
    bad_envelope: AtomicU64,
    /// The datagram's DCID names another node.
    misrouted: AtomicU64,
    /// The QUIC datagram is not one the senders sent (length, marker).
    mangled: AtomicU64,
    /// Nanoseconds since the start of the generator of the last datagram.
    last_ns: AtomicU64,
}

struct SinkContext {
    index: usize,
    socket: UdpSocket,
    codec: LbCodec,
    table: Arc<NodeTable>,
    router_public: SocketAddr,
    senders: Arc<Vec<SocketAddr>>,
    size: usize,
    epoch: Instant,
    stop: Arc<AtomicBool>,
    counters: Arc<SinkCounters>,
}

/// Marker the senders write after the QUIC header, checked by the sinks.
const MARK: &[u8; 8] = b"qmqbench";

fn sink(cx: SinkContext) {
    let mut buf = vec![0u8; 65_536];
    while !cx.stop.load(Ordering::Relaxed) {
        let (len, from) = match cx.socket.recv_from(&mut buf) {
            Ok(r) => r,
            Err(_) => continue, // read timeout: look at `stop`
        };
        let datagram = &buf[..len];
        if is_probe_answer(datagram) {
            // A probe: echo it.
            let _ = cx.socket.send_to(datagram, from);
            cx.counters.probes.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        let c = &cx.counters;
        c.last_ns
            .store(cx.epoch.elapsed().as_nanos() as u64, Ordering::Relaxed);
        let (header, offset) = match envelope::parse(datagram) {
            Ok((Some(header), offset)) => (header, offset),
            _ => {
                c.bad_envelope.fetch_add(1, Ordering::Relaxed);
                continue;
            }
        };
        if header.destination != cx.router_public || !cx.senders.contains(&header.source) {
            c.bad_envelope.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        let quic = &datagram[offset..];
        c.datagrams.fetch_add(1, Ordering::Relaxed);
        c.bytes.fetch_add(quic.len() as u64, Ordering::Relaxed);
        match owner(quic, &cx.codec, &cx.table) {
            Some((node, mark_at)) => {
                if quic.len() != cx.size || quic.get(mark_at..mark_at + MARK.len()) != Some(MARK) {
                    c.mangled.fetch_add(1, Ordering::Relaxed);
                } else if node != cx.index {
                    c.misrouted.fetch_add(1, Ordering::Relaxed);
                }
            }
            None => {
                c.mangled.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// The node a QUIC datagram of the generator belongs to, and where its
/// marker is.
fn owner(quic: &[u8], codec: &LbCodec, table: &NodeTable) -> Option<(usize, usize)> {
    let first = *quic.first()?;
    if first & 0x80 == 0 {
        let cid_len = codec.config().cid_len();
        let sid = codec.decode_server_id(quic.get(1..1 + cid_len)?).ok()?;
        Some((table.by_server_id(&sid)?.0, 1 + cid_len))
    } else {
        let dcid_len = usize::from(*quic.get(5)?);
        let dcid = quic.get(6..6 + dcid_len)?;
        // DCID, SCID length + SCID, token length 0, 2-octet length.
        let scid_len = usize::from(*quic.get(6 + dcid_len)?);
        Some((table.rendezvous(dcid)?, 6 + dcid_len + 1 + scid_len + 1 + 2))
    }
}

// ------------------------------------------------------------------ senders

#[derive(Default)]
struct SenderTotals {
    sent: u64,
    initials: u64,
    bytes: u64,
    errors: u64,
}

struct SenderContext {
    socket: UdpSocket,
    seed: u64,
    cids: Arc<Vec<RoutableCid>>,
    quota: u64,
    deadline: Duration,
    rate: f64,
    size: usize,
    initial_pct: u32,
    start: Arc<Barrier>,
}

fn sender(cx: SenderContext) -> SenderTotals {
    let mut rng = StdRng::seed_from_u64(cx.seed);
    let mut short = vec![0u8; cx.size];
    let mut initial = vec![0u8; cx.size];
    let cid_len = cx.cids[0].len();
    short[1 + cid_len..1 + cid_len + MARK.len()].copy_from_slice(MARK);
    // Initial: 0xc0 | low bits, version 1, DCID 8, SCID 8, token length 0,
    // 2-octet Length, then the (unencrypted, for the router: opaque) rest.
    initial[1..5].copy_from_slice(&1u32.to_be_bytes());
    initial[5] = 8;
    initial[14] = 8;
    initial[23] = 0;
    let rest = (cx.size - 26) as u16;
    initial[24..26].copy_from_slice(&(0x4000 | rest).to_be_bytes());
    initial[26..26 + MARK.len()].copy_from_slice(MARK);

    let mut totals = SenderTotals::default();
    cx.start.wait();
    let began = Instant::now();
    let per_us = cx.rate / 1e6;
    // Look at the clock every `chunk` datagrams: paced senders send
    // bursts of 16 at most.
    let chunk = if per_us > 0.0 { 16 } else { 256 };
    while totals.sent < cx.quota {
        if totals.sent % chunk == 0 {
            let elapsed = began.elapsed();
            if elapsed >= cx.deadline {
                break;
            }
            if per_us > 0.0 {
                // Ahead of the schedule: wait for it.
                let due = Duration::from_micros((totals.sent as f64 / per_us) as u64);
                if due > elapsed {
                    thread::sleep(due - elapsed);
                }
            }
        }
        let is_initial = (totals.sent % 100) < u64::from(cx.initial_pct);
        let datagram: &[u8] = if is_initial {
            initial[0] = 0xc0 | rng.gen_range(0..16u8);
            rng.fill(&mut initial[6..14]);
            rng.fill(&mut initial[15..23]);
            totals.initials += 1;
            &initial
        } else {
            short[0] = 0x40 | rng.gen_range(0..64u8);
            let cid = &cx.cids[rng.gen_range(0..cx.cids.len())];
            short[1..1 + cid_len].copy_from_slice(cid);
            &short
        };
        match cx.socket.send(datagram) {
            Ok(n) => totals.bytes += n as u64,
            Err(_) => totals.errors += 1,
        }
        totals.sent += 1;
    }
    totals
}

// ------------------------------------------------------------------ the run

struct Report {
    human: String,
    json: String,
    faults: u64,
}

fn run(args: &Args) -> Result<Report, String> {
    if args.nodes == 0 || args.senders == 0 || args.nodes > 255 {
        return Err("--nodes must be 1 to 255 and --senders at least 1".into());
    }
    if !(args.duration > 0.0 && args.duration <= 600.0) || args.rate < 0.0 {
        return Err("--duration must be more than 0 and at most 600 s, --rate at least 0".into());
    }
    if !(64..=65_000).contains(&args.size) || args.initial_pct > 100 || args.cids == 0 {
        return Err("--size must be 64 to 65000, --initial-pct 0 to 100, --cids > 0".into());
    }
    let router_bin = args
        .router
        .clone()
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_quicmq-router")));
    let epoch = Instant::now();
    let err = |e: io::Error| e.to_string();
    let config = LbConfig::new(0, SID_LEN, NONCE_LEN, Some(LB_KEY)).map_err(|e| e.to_string())?;
    let codec = || LbCodec::new(config).map_err(|e| e.to_string());

    // Sinks first: their addresses go on the router's command line.
    let mut sinks = Vec::new();
    for _ in 0..args.nodes {
        let socket = socket2::Socket::new(
            socket2::Domain::IPV4,
            socket2::Type::DGRAM,
            Some(socket2::Protocol::UDP),
        )
        .map_err(err)?;
        // As large as net.core.rmem_max allows: drops should be the router's.
        let _ = socket.set_recv_buffer_size(16 << 20);
        socket
            .bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into())
            .map_err(err)?;
        let socket: UdpSocket = socket.into();
        socket
            .set_read_timeout(Some(Duration::from_millis(50)))
            .map_err(err)?;
        sinks.push(socket);
    }
    let nodes: Vec<(ServerId, SocketAddr)> = sinks
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let sid = ServerId::new(&((i + 1) as u16).to_be_bytes()).expect("2-octet server ID");
            (sid, s.local_addr().expect("bound"))
        })
        .collect();
    let table = Arc::new(NodeTable::new(nodes.clone()).map_err(|e| e.to_string())?);
    for n in table.nodes() {
        n.set_alive(true);
    }
    let mut senders = Vec::new();
    for _ in 0..args.senders {
        let s = UdpSocket::bind("127.0.0.1:0").map_err(err)?;
        senders.push(s);
    }
    let sender_addrs = Arc::new(
        senders
            .iter()
            .map(|s| s.local_addr())
            .collect::<io::Result<Vec<_>>>()
            .map_err(err)?,
    );

    let public: SocketAddr = ([127, 0, 0, 1], free_port(true).map_err(err)?).into();
    let stop = Arc::new(AtomicBool::new(false));
    let counters: Vec<Arc<SinkCounters>> = (0..args.nodes).map(|_| Arc::default()).collect();
    let mut sink_threads = Vec::new();
    for (index, socket) in sinks.into_iter().enumerate() {
        let cx = SinkContext {
            index,
            socket,
            codec: codec()?,
            table: table.clone(),
            router_public: public,
            senders: sender_addrs.clone(),
            size: args.size,
            epoch,
            stop: stop.clone(),
            counters: counters[index].clone(),
        };
        sink_threads.push(thread::spawn(move || sink(cx)));
    }
    // Stop the sinks however this function ends.
    struct StopOnDrop(Arc<AtomicBool>);
    impl Drop for StopOnDrop {
        fn drop(&mut self) {
            self.0.store(true, Ordering::Relaxed);
        }
    }
    let _stop_sinks = StopOnDrop(stop.clone());

    let mut router = spawn_router(&router_bin, public, &nodes)?;
    let router_pid = router.child.id().to_string();
    // Wait until the router reports every node alive.
    let alive_by = Instant::now() + Duration::from_secs(15);
    loop {
        if let Ok(Some(status)) = router.child.try_wait() {
            return Err(format!("the router exited: {status}"));
        }
        if let Some(m) = metrics(router.admin) {
            if metric_sum(&m, "quicmq_router_node_alive") as usize == args.nodes {
                break;
            }
        }
        if Instant::now() > alive_by {
            return Err("the router did not report every node alive within 15 s".into());
        }
        thread::sleep(Duration::from_millis(50));
    }

    // Connection IDs: `cids` per node.
    let lb = codec()?;
    let mut rng = StdRng::seed_from_u64(0x5eed);
    let mut cids = Vec::new();
    for (sid, _) in &nodes {
        for _ in 0..args.cids {
            let mut nonce = [0u8; NONCE_LEN];
            rng.fill(&mut nonce);
            cids.push(lb.encode(sid, &nonce).map_err(|e| e.to_string())?);
        }
    }
    let cids = Arc::new(cids);

    let before_metrics = metrics(router.admin).ok_or("cannot read the router's /metrics")?;
    let before_router = process_ticks(&router_pid).ok_or("cannot read the router's CPU time")?;
    let before_self = process_ticks("self").unwrap_or(0);
    let before_machine = machine_ticks().unwrap_or((0, 0));
    let before_udp = udp_rcvbuf_errors();

    let barrier = Arc::new(Barrier::new(args.senders + 1));
    let deadline = Duration::from_secs_f64(args.duration);
    let mut sender_threads = Vec::new();
    for (i, socket) in senders.into_iter().enumerate() {
        socket.connect(public).map_err(err)?;
        let quota = args.count / args.senders as u64
            + u64::from((i as u64) < args.count % args.senders as u64);
        let cx = SenderContext {
            socket,
            seed: 1 + i as u64,
            cids: cids.clone(),
            quota,
            deadline,
            rate: args.rate / args.senders as f64,
            size: args.size,
            initial_pct: args.initial_pct,
            start: barrier.clone(),
        };
        sender_threads.push(thread::spawn(move || sender(cx)));
    }
    barrier.wait();
    let t0 = epoch.elapsed();
    let mut totals = SenderTotals::default();
    for t in sender_threads {
        let s = t.join().map_err(|_| "a sender panicked")?;
        totals.sent += s.sent;
        totals.initials += s.initials;
        totals.bytes += s.bytes;
        totals.errors += s.errors;
    }
    let sending = epoch.elapsed() - t0;
    // Drain: until nothing arrived for 300 ms (at most 3 s).
    let received = || -> u64 {
        counters
            .iter()
            .map(|c| c.datagrams.load(Ordering::Relaxed))
            .sum()
    };
    let drain_by = Instant::now() + Duration::from_secs(3);
    let mut last = received();
    let mut quiet_since = Instant::now();
    while Instant::now() < drain_by && quiet_since.elapsed() < Duration::from_millis(300) {
        thread::sleep(Duration::from_millis(20));
        let now = received();
        if now != last {
            last = now;
            quiet_since = Instant::now();
        }
    }
    let after_router = process_ticks(&router_pid).ok_or("the router is gone")?;
    let after_self = process_ticks("self").unwrap_or(0);
    let after_machine = machine_ticks().unwrap_or((0, 0));
    let after_udp = udp_rcvbuf_errors();
    let after_metrics = metrics(router.admin).ok_or("cannot read the router's /metrics")?;
    drop(router);
    stop.store(true, Ordering::Relaxed);
    for t in sink_threads {
        let _ = t.join();
    }

    // ---------------------------------------------------------- results
    let ticks = clock_ticks();
    let sum = |f: fn(&SinkCounters) -> &AtomicU64| -> u64 {
        counters.iter().map(|c| f(c).load(Ordering::Relaxed)).sum()
    };
    let forwarded = sum(|c| &c.datagrams);
    let bytes = sum(|c| &c.bytes);
    let bad_envelope = sum(|c| &c.bad_envelope);
    let misrouted = sum(|c| &c.misrouted);
    let mangled = sum(|c| &c.mangled);
    let last_ns = counters
        .iter()
        .map(|c| c.last_ns.load(Ordering::Relaxed))
        .max()
        .unwrap_or(0);
    let window = (Duration::from_nanos(last_ns).saturating_sub(t0))
        .max(sending)
        .as_secs_f64();
    let delta = |name: &str| metric_sum(&after_metrics, name) - metric_sum(&before_metrics, name);
    let router_forwarded = delta("quicmq_router_forwarded_packets_total") as u64;
    let router_hashed = delta("quicmq_router_fallback_hashed_total") as u64;
    let router_resets = delta("quicmq_router_stateless_resets_total") as u64;
    let mut drops = BTreeMap::new();
    for (k, v) in &after_metrics {
        if k.starts_with("quicmq_router_dropped_packets_total{") {
            let d = v - before_metrics.get(k).copied().unwrap_or(0.0);
            if d > 0.0 {
                let reason = k
                    .split("reason=\"")
                    .nth(1)
                    .and_then(|r| r.split('"').next())
                    .unwrap_or(k);
                drops.insert(reason.to_string(), d as u64);
            }
        }
    }
    let router_cpu = (after_router - before_router) as f64 / ticks;
    let self_cpu = after_self.saturating_sub(before_self) as f64 / ticks;
    let machine_busy = {
        let busy = after_machine.0.saturating_sub(before_machine.0) as f64;
        let total = after_machine.1.saturating_sub(before_machine.1) as f64;
        if total > 0.0 {
            100.0 * busy / total
        } else {
            0.0
        }
    };
    let lost = totals.sent.saturating_sub(forwarded);
    let loss_pct = if totals.sent > 0 {
        100.0 * lost as f64 / totals.sent as f64
    } else {
        0.0
    };
    let rate = forwarded as f64 / window;
    let mbit = bytes as f64 * 8.0 / window / 1e6;
    let per_core = if router_cpu > 0.0 {
        forwarded as f64 / router_cpu
    } else {
        0.0
    };
    // Lost before the router read them (its socket buffer), and after it
    // sent them (the sinks' buffers).
    let dropped_by_router: u64 = drops.values().sum();
    let lost_before_router = totals
        .sent
        .saturating_sub(router_forwarded + dropped_by_router + router_resets);
    let lost_after_router = router_forwarded.saturating_sub(forwarded);
    let faults = bad_envelope + misrouted + mangled;
    let drops_text = if drops.is_empty() {
        "none".to_string()
    } else {
        drops
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let target = if args.rate > 0.0 {
        format!("{} datagrams/s", args.rate)
    } else {
        "full speed".to_string()
    };

    let human = format!(
        "router forwarding: {nodes} nodes, {senders} senders, {size}-octet datagrams, \
         {pct}% Initials, {target}, {dur:.2} s of sending\n\
         \x20 sent       {sent} ({initials} Initials, {errors} send errors)\n\
         \x20 forwarded  {forwarded} ({loss_pct:.2} % lost: {lost_before_router} before the router read them, \
         {lost_after_router} after it sent them; router drops: {drops_text}; resets {router_resets})\n\
         \x20 rate       {rate:.0} datagrams/s, {mbit:.1} Mbit/s over {window:.3} s\n\
         \x20 router CPU {router_cpu:.2} s ({router_pct:.0} % of one core) → {per_core:.0} datagrams/s per core\n\
         \x20 generator CPU {self_cpu:.2} s; machine busy {machine_busy:.0} % of {cores} cores\n\
         \x20 verified   {misrouted} misrouted, {bad_envelope} bad envelopes, {mangled} mangled; \
         {router_hashed} hash-steered by the router; UDP receive buffer errors (whole machine) {rcvbuf}",
        nodes = args.nodes,
        senders = args.senders,
        size = args.size,
        pct = args.initial_pct,
        dur = sending.as_secs_f64(),
        sent = totals.sent,
        initials = totals.initials,
        errors = totals.errors,
        router_pct = 100.0 * router_cpu / window,
        cores = thread::available_parallelism().map_or(0, |n| n.get()),
        rcvbuf = after_udp.saturating_sub(before_udp),
    );
    let json = format!(
        "{{\"nodes\":{},\"senders\":{},\"size\":{},\"initial_pct\":{},\"rate_target\":{},\
         \"sending_s\":{:.3},\"window_s\":{:.3},\"sent\":{},\"initials\":{},\"send_errors\":{},\
         \"forwarded\":{},\"router_forwarded\":{},\"lost\":{},\"loss_pct\":{:.3},\
         \"lost_before_router\":{},\"lost_after_router\":{},\"router_drops\":{},\"router_resets\":{},\
         \"router_hashed\":{},\"rate\":{:.1},\"mbit_s\":{:.1},\"router_cpu_s\":{:.3},\
         \"router_cpu_pct\":{:.1},\"per_core\":{:.1},\"generator_cpu_s\":{:.3},\
         \"machine_busy_pct\":{:.1},\"udp_rcvbuf_errors\":{},\"misrouted\":{},\"bad_envelope\":{},\
         \"mangled\":{}}}",
        args.nodes,
        args.senders,
        args.size,
        args.initial_pct,
        args.rate,
        sending.as_secs_f64(),
        window,
        totals.sent,
        totals.initials,
        totals.errors,
        forwarded,
        router_forwarded,
        lost,
        loss_pct,
        lost_before_router,
        lost_after_router,
        dropped_by_router,
        router_resets,
        router_hashed,
        rate,
        mbit,
        router_cpu,
        100.0 * router_cpu / window,
        per_core,
        self_cpu,
        machine_busy,
        after_udp.saturating_sub(before_udp),
        misrouted,
        bad_envelope,
        mangled,
    );
    if faults > 0 {
        eprintln!(
            "forwarding: verification failed: {misrouted} misrouted, {bad_envelope} bad envelopes, {mangled} mangled"
        );
    }
    Ok(Report {
        human,
        json,
        faults,
    })
}

/// `RcvbufErrors` of /proc/net/snmp's Udp line (whole machine).
fn udp_rcvbuf_errors() -> u64 {
    let Ok(snmp) = std::fs::read_to_string("/proc/net/snmp") else {
        return 0;
    };
    let mut lines = snmp.lines().filter(|l| l.starts_with("Udp: "));
    let (Some(names), Some(values)) = (lines.next(), lines.next()) else {
        return 0;
    };
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .find(|(n, _)| *n == "RcvbufErrors")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0)
}
