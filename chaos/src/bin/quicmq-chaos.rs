//! `quicmq-chaos`: runs one fault scenario against a fresh cluster of
//! quicmq processes on loopback and prints (and optionally writes) the
//! report. Exits 1 when an invariant failed.
//!
//! ```text
//! quicmq-chaos kill-owner --subscribers 1000 --publishers 50 --rate 20 --after 60
//! quicmq-chaos kill-forever --subscribers 300 --publishers 10 --rate 10 --after 60
//! quicmq-chaos storm --subscribers 10000 --publishers 4 --rate 10 --after 20
//! quicmq-chaos impair --loss 0.05 --delay-ms 20 --reorder 0.1 --report impair.json
//! quicmq-chaos handshake --rtt-ms 40 --connections 200
//! ```

use std::time::Duration;

use anyhow::Context;
use clap::{Parser, ValueEnum};
use quicmq_chaos::impairment::Impairment;
use quicmq_chaos::scenario::{run, Fault, Spec};

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Scenario {
    /// kill -9 of the node holding every subscriber's session.
    KillOwner,
    /// kill -9, never restarted, of the node holding every subscriber's
    /// session (half of them on wildcard filters), plain subscribers and
    /// --wills clients with wills: every will published once, on time.
    KillForever,
    /// Reconnect storm: kill -9 of the node holding every subscriber, all
    /// of them reconnect through the router at once; time until all
    /// resumed and all receive again, and the clients' memory.
    Storm,
    /// kill -9 of the Raft leader.
    KillLeader,
    /// kill -9 of one of two routers sharing the public address.
    KillRouter,
    /// SIGSTOP of the subscribers' node for --pause-ms, then SIGCONT.
    Pause,
    /// kill -9 of the subscribers' node, restarted from its data
    /// directory after --pause-ms.
    Restart,
    /// The Raft leader cut off from the other nodes (through each node's
    /// egress proxy) for --pause-ms, then healed.
    Partition,
    /// Loss, delay, reordering and duplication on the client path.
    Impair,
    /// Every client's address changes mid-session.
    NatRebind,
    /// No fault: connect → CONNACK time of full, resumed and 0-RTT QUIC
    /// handshakes over a path of --rtt-ms (one node).
    Handshake,
}

/// Runs a fault scenario against a real quicmq cluster (node and router
/// processes found next to this binary, or in QUICMQ_BIN_DIR).
#[derive(Debug, Parser)]
#[command(name = "quicmq-chaos", version)]
struct Args {
    /// The scenario.
    scenario: Scenario,
    /// Nodes in the cluster.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u16).range(3..=9))]
    nodes: u16,
    /// Persistent QoS 1 subscribers (one topic each).
    #[arg(long, default_value_t = 500)]
    subscribers: usize,
    /// Publishers.
    #[arg(long, default_value_t = 20)]
    publishers: usize,
    /// Messages per second per publisher.
    #[arg(long, default_value_t = 20)]
    rate: u32,
    /// Seconds of traffic before the fault.
    #[arg(long, default_value_t = 10)]
    before: u64,
    /// Seconds of traffic after the fault.
    #[arg(long, default_value_t = 30)]
    after: u64,
    /// Longest wait, seconds, for deliveries and resumptions at the end.
    #[arg(long, default_value_t = 60)]
    settle: u64,
    /// `pause`, `restart`, `partition`: how long the node stays stopped,
    /// dead or cut off, milliseconds.
    #[arg(long, default_value_t = 3000)]
    pause_ms: u64,
    /// `impair`: loss probability.
    #[arg(long, default_value_t = 0.05)]
    loss: f64,
    /// `impair`: delay, milliseconds.
    #[arg(long, default_value_t = 20)]
    delay_ms: u64,
    /// `impair`: jitter, milliseconds.
    #[arg(long, default_value_t = 0)]
    jitter_ms: u64,
    /// `impair`: probability that a datagram is held back (reordered).
    #[arg(long, default_value_t = 0.1)]
    reorder: f64,
    /// `impair`: duplication probability.
    #[arg(long, default_value_t = 0.0)]
    duplicate: f64,
    /// The clients' QUIC keep-alive interval, milliseconds (an idle
    /// subscriber notices a dead node at its next keep-alive).
    #[arg(long, default_value_t = 1000)]
    keep_alive_ms: u64,
    /// QUIC connections per client endpoint (UDP socket), endpoints spread
    /// over 127.0.0.1-8 [default: 25 for storm, else 1].
    #[arg(long)]
    clients_per_endpoint: Option<usize>,
    /// `handshake`: connections per handshake kind.
    #[arg(long, default_value_t = 200)]
    connections: usize,
    /// `handshake`: round-trip time of the path, milliseconds.
    #[arg(long, default_value_t = 40)]
    rtt_ms: u64,
    /// Write the report as JSON to this file.
    #[arg(long)]
    report: Option<std::path::PathBuf>,
    /// Draw the per-second timeline (publishes acknowledged, refused and
    /// unanswered, deliveries) as SVG into this file.
    #[arg(long)]
    chart: Option<std::path::PathBuf>,
    /// Longest recovery that passes: from the fault until 99 % of
    /// publishes are acknowledged again, milliseconds.
    #[arg(long, default_value_t = 3000)]
    max_recovery_ms: u64,
    /// The nodes' `member_down_after`, milliseconds.
    #[arg(long, default_value_t = 3000)]
    member_down_after_ms: u64,
    /// `kill-forever`: clients with wills on the killed node (plain and
    /// persistent, with Will Delay Intervals of 0, 30, 2 and 4 s by turns).
    #[arg(long, default_value_t = 20)]
    wills: usize,
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            // Non-ASCII text can panic the filter parser: the default
            // instead.
            std::env::var("QUICMQ_LOG")
                .ok()
                .filter(|f| f.is_ascii())
                .and_then(|f| tracing_subscriber::EnvFilter::try_new(f).ok())
                .unwrap_or_else(|| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("tokio runtime")?;
    let fault = match args.scenario {
        Scenario::Handshake => {
            let dir = tempfile::tempdir().context("data directory")?;
            let report = runtime.block_on(quicmq_chaos::handshake::measure(
                dir.path(),
                Duration::from_millis(args.rtt_ms),
                args.connections.max(1),
            ))?;
            print!("{report}");
            return Ok(());
        }
        Scenario::KillOwner => Fault::KillOwner,
        Scenario::KillForever => Fault::KillForever,
        Scenario::Storm => Fault::Storm,
        Scenario::KillLeader => Fault::KillLeader,
        Scenario::KillRouter => Fault::KillRouter,
        Scenario::Pause => Fault::Pause(Duration::from_millis(args.pause_ms)),
        Scenario::Restart => Fault::Restart(Duration::from_millis(args.pause_ms)),
        Scenario::Partition => Fault::Partition(Duration::from_millis(args.pause_ms)),
        Scenario::NatRebind => Fault::NatRebind,
        Scenario::Impair => {
            let path = Impairment {
                loss: args.loss,
                delay: Duration::from_millis(args.delay_ms),
                jitter: Duration::from_millis(args.jitter_ms),
                reorder: args.reorder,
                reorder_by: Duration::from_millis(args.delay_ms.max(1)),
                duplicate: args.duplicate,
            };
            path.validate().context("--loss, --reorder, --duplicate")?;
            Fault::Impair(path)
        }
    };
    let name = args.scenario.to_possible_value().map_or_else(
        || format!("{:?}", args.scenario),
        |v| v.get_name().to_owned(),
    );
    let spec = Spec {
        name,
        fault,
        nodes: usize::from(args.nodes),
        subscribers: args.subscribers.max(1),
        publishers: args.publishers.max(1),
        rate: args.rate.max(1),
        before: Duration::from_secs(args.before),
        after: Duration::from_secs(args.after),
        settle: Duration::from_secs(args.settle),
        keep_alive: Duration::from_millis(args.keep_alive_ms.max(100)),
        clients_per_endpoint: args.clients_per_endpoint.unwrap_or(
            if matches!(args.scenario, Scenario::Storm) {
                25
            } else {
                1
            },
        ),
        member_down_after: Duration::from_millis(args.member_down_after_ms),
        max_recovery: Duration::from_millis(args.max_recovery_ms),
        wills: if matches!(args.scenario, Scenario::KillForever) {
            args.wills
        } else {
            0
        },
    };
    let report = runtime.block_on(run(&spec))?;
    println!("{report}");
    if let Some(path) = &args.report {
        std::fs::write(path, serde_json::to_string_pretty(&report.to_json())?)
            .with_context(|| format!("--report {}", path.display()))?;
    }
    if let Some(path) = &args.chart {
        let title = format!("{}: {}", report.scenario, report.fault);
        std::fs::write(path, report.timeline.svg(&title))
            .with_context(|| format!("--chart {}", path.display()))?;
    }
    if report.failures().is_empty() {
        Ok(())
    } else {
        std::process::exit(1)
    }
}
