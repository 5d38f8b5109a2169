//! Scenarios: a real cluster (node and router processes on loopback),
//! persistent QoS 1 subscribers and paced publishers through the routers,
//! one fault in the middle, and a [`Report`] of what was lost.
//!
//! [`run`] is the whole scenario; [`Spec::short`] is the bounded version
//! `cargo test` runs, the binary `quicmq-chaos` takes the sizes as flags.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use quicmq_node::client::{
    Backoff, Client, ClientOptions, Event, QoS, ReasonCode, ReconnectEvent, ReconnectingClient,
    Transport,
};
use quicmq_proto::mqtt::{Properties, SubscriptionOptions};
use quicmq_tests::{free_udp_port, ClusterProcesses, RouterProcess};

use crate::egress_proxy::EgressProxy;
use crate::endpoints::{peak_rss_bytes, EndpointPool};
use crate::impairment::Impairment;
use crate::report::{Deliveries, MessageId, Report};
use crate::timeline::Outcome;
use crate::udp_proxy::UdpProxy;
use crate::wills::{ExpectedWill, WillCheck};

/// The fault a scenario injects.
#[derive(Debug, Clone)]
pub enum Fault {
    /// `kill -9` of the node that holds every subscriber's session.
    KillOwner,
    /// `kill -9` of the node that holds every subscriber's session, never
    /// restarted. Half the persistent subscribers use a wildcard filter;
    /// plain subscribers and clients with wills (plain and persistent,
    /// with and without a Will Delay Interval) sit on that node too, and
    /// every will must be published once and on time.
    KillForever,
    /// Storms. First every subscriber connects and subscribes at once
    /// through the router, as plain sessions and then as persistent ones
    /// (time until all subscribed, claims per second). Then `kill -9` of the
    /// node holding most of them: all of its clients reconnect at once
    /// (time until all resumed and until all receive again).
    Storm,
    /// `kill -9` of the Raft leader.
    KillLeader,
    /// `kill -9` of one of two routers sharing the public address.
    KillRouter,
    /// `SIGSTOP` of the node holding the subscribers for a while, then
    /// `SIGCONT`.
    Pause(Duration),
    /// `kill -9` of the node holding the subscribers, restarted from its
    /// data directory after a while: it must rejoin and catch up.
    Restart(Duration),
    /// The Raft leader cut off from the other nodes (their links
    /// black-holed in each node's egress proxy) for a while, then healed.
    /// Clients keep their connections; what cannot be committed while the
    /// leader is cut off is refused, never acknowledged and lost.
    Partition(Duration),
    /// The client path (clients ↔ router) impaired from the start.
    Impair(Impairment),
    /// Every client's address changes (NAT rebinding) at the fault.
    NatRebind,
}

impl Fault {
    fn describe(&self) -> String {
        match self {
            Fault::KillOwner => "kill -9 of the node holding the subscribers".into(),
            Fault::KillForever => {
                "kill -9 of the node holding the subscribers and clients with wills, never restarted".into()
            }
            Fault::Storm => {
                "all connect at once, then kill -9 of the node holding most: its clients reconnect at once".into()
            }
            Fault::KillLeader => "kill -9 of the Raft leader".into(),
            Fault::KillRouter => "kill -9 of one of two routers".into(),
            Fault::Pause(d) => format!("SIGSTOP of the subscribers' node for {d:?}"),
            Fault::Restart(d) => {
                format!("kill -9 of the subscribers' node, restarted after {d:?}")
            }
            Fault::Partition(d) => {
                format!("the Raft leader cut off from the other nodes for {d:?}, then healed")
            }
            Fault::Impair(i) => format!(
                "client path: {:.0} % loss, {:?} delay, {:.0} % reordered, {:.0} % duplicated",
                i.loss * 100.0,
                i.delay,
                i.reorder * 100.0,
                i.duplicate * 100.0
            ),
            Fault::NatRebind => "NAT rebinding of every client".into(),
        }
    }

    /// Whether clients are expected to keep their connections. A
    /// partition longer than `member_down_after` is not such a fault: the
    /// majority marks the cut-off node down and adopts its sessions, whose
    /// clients it then closes (0x8E) once it hears of it, and they resume.
    fn keeps_connections(&self, member_down_after: Duration) -> bool {
        match self {
            Fault::KillRouter | Fault::Impair(_) | Fault::NatRebind => true,
            Fault::Partition(d) => *d < member_down_after,
            _ => false,
        }
    }

    /// Whether all subscribers must sit on one node (the one the fault
    /// hits).
    fn gathers_subscribers(&self) -> bool {
        matches!(
            self,
            Fault::KillOwner | Fault::KillForever | Fault::Pause(_) | Fault::Restart(_)
        )
    }
}

/// A scenario's sizes and timing.
#[derive(Debug, Clone)]
pub struct Spec {
    /// Scenario name for the report.
    pub name: String,
    /// The fault.
    pub fault: Fault,
    /// Nodes in the cluster (3 or more).
    pub nodes: usize,
    /// Persistent QoS 1 subscribers, one topic each.
    pub subscribers: usize,
    /// Publishers, each at `rate`.
    pub publishers: usize,
    /// Messages per second per publisher.
    pub rate: u32,
    /// Traffic before the fault.
    pub before: Duration,
    /// Traffic after the fault.
    pub after: Duration,
    /// Longest wait, after the traffic, for deliveries and resumptions.
    pub settle: Duration,
    /// The clients' QUIC keep-alive interval. An idle subscriber learns
    /// that its node died from the router's Stateless Reset to its next
    /// packet, so this bounds its failover time from below.
    pub keep_alive: Duration,
    /// QUIC connections per client endpoint (UDP socket); 1: a socket
    /// each. Endpoints spread over several loopback addresses.
    pub clients_per_endpoint: usize,
    /// The nodes' `member_down_after`.
    pub member_down_after: Duration,
    /// Longest recovery (from the fault until acknowledgements are back
    /// at 99 % of attempts) that passes.
    pub max_recovery: Duration,
    /// `kill-forever`: clients with wills on the killed node (as many
    /// plain subscribers again sit there).
    pub wills: usize,
}

impl Spec {
    /// The bounded version for `cargo test`: 3 nodes, 50 subscribers, 10
    /// publishers at 20 messages/s, seconds of traffic.
    pub fn short(name: &str, fault: Fault) -> Spec {
        let wills = if matches!(fault, Fault::KillForever) {
            8
        } else {
            0
        };
        Spec {
            name: name.into(),
            fault,
            nodes: 3,
            subscribers: 50,
            publishers: 10,
            rate: 20,
            before: Duration::from_secs(2),
            after: Duration::from_secs(4),
            settle: Duration::from_secs(20),
            keep_alive: Duration::from_secs(1),
            clients_per_endpoint: 1,
            member_down_after: Duration::from_secs(1),
            // The tool's default is 3 s (release builds); debug builds
            // sharing 2 cores with the rest of the test suite get more.
            max_recovery: Duration::from_secs(5),
            wills,
        }
    }

    /// The storm for `cargo test`: `subscribers` clients connecting at
    /// once (plain, then persistent), 25 per client endpoint, light
    /// publishing, then the kill.
    pub fn storm(subscribers: usize) -> Spec {
        Spec {
            subscribers,
            publishers: 4,
            rate: 10,
            settle: Duration::from_secs(60),
            clients_per_endpoint: 25,
            ..Spec::short("storm", Fault::Storm)
        }
    }
}

/// A scenario could not run (as opposed to ran and failed its invariants,
/// which the report says).
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    /// Setting up the fleet or the clients failed.
    #[error("set-up: {0}")]
    Setup(String),
}

fn setup(what: impl std::fmt::Display) -> ScenarioError {
    ScenarioError::Setup(what.to_string())
}

/// What one subscriber saw.
#[derive(Default)]
struct SubscriberLog {
    lost_at: Option<Instant>,
    resumed_at: Option<Instant>,
    /// When a probe (the storm's "receiving again") arrived after it
    /// resumed.
    probed_at: Option<Instant>,
    session_missing: bool,
    losses: u32,
}

struct Shared {
    deliveries: Mutex<Deliveries>,
    subscribers: Mutex<Vec<SubscriberLog>>,
    acknowledged: Mutex<BTreeSet<MessageId>>,
    published: Mutex<(u64, u64)>,
    /// Every publish: its publisher, when it was attempted and how it
    /// ended.
    attempts: Mutex<Vec<(u32, Instant, Outcome)>>,
    /// When each message arrived at a subscriber.
    arrivals: Mutex<Vec<Instant>>,
    publisher_losses: Mutex<u32>,
    /// kill-forever: which will arrived when.
    will_arrivals: Mutex<Vec<(usize, Instant)>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn client_options(addr: SocketAddr, client_id: &str, keep_alive: Duration) -> ClientOptions {
    let mut o = ClientOptions::new(addr.ip().to_string(), addr.port(), Transport::Quic);
    o.client_id = client_id.into();
    // Every node has its own development certificate.
    o.tls.insecure = true;
    o.tls.server_name = Some("localhost".into());
    o.connect_timeout = Duration::from_secs(5);
    o.quic_reuse_tokens = false;
    o.keep_alive = 10;
    o.quic_keep_alive_interval = Some(keep_alive);
    o
}

fn node_of(connack: &quicmq_proto::mqtt::ConnAck) -> String {
    quicmq_tests::connack_node(connack).unwrap_or_default()
}

fn backoff() -> Backoff {
    Backoff {
        initial: Duration::from_millis(50),
        max: Duration::from_secs(1),
        jitter: 0.5,
    }
}

/// Runs `spec` and reports.
///
/// # Errors
///
/// When the fleet or the clients cannot be set up.
pub async fn run(spec: &Spec) -> Result<Report, ScenarioError> {
    // For a partition, every node dials its peers through its own egress
    // proxy, which can cut its links.
    let mut egress = Vec::new();
    if matches!(spec.fault, Fault::Partition(_)) {
        for _ in 0..spec.nodes {
            egress.push(EgressProxy::start().await.map_err(setup)?);
        }
    }
    let down_after = spec.member_down_after.as_millis().to_string();
    let node_args = ["--member-down-after", down_after.as_str()];
    let mut cluster = tokio::task::block_in_place(|| {
        if egress.is_empty() {
            return ClusterProcesses::start(spec.nodes, &node_args);
        }
        let mut cluster = ClusterProcesses::start(0, &node_args);
        for proxy in &egress {
            cluster.add_node_with(&["--peer-proxy", &proxy.addr().to_string()]);
        }
        cluster
    });
    let seeds: Vec<SocketAddr> = cluster.nodes.iter().map(|n| n.grpc).collect();
    let listen: SocketAddr = ([127, 0, 0, 1], free_udp_port()).into();
    let router_count = if matches!(spec.fault, Fault::KillRouter) {
        2
    } else {
        1
    };
    let tls = cluster.router_args();
    let tls: Vec<&str> = tls.iter().map(String::as_str).collect();
    let mut routers: Vec<RouterProcess> = tokio::task::block_in_place(|| {
        (0..router_count)
            .map(|_| RouterProcess::spawn_with_seeds(listen, &seeds, &tls))
            .collect()
    });
    // Server ID (hex, as CONNACK names it) → node index.
    let by_server_id = cluster.indices_by_server_id(0).await;
    let proxy = match &spec.fault {
        Fault::Impair(_) | Fault::NatRebind => Some(UdpProxy::start(listen).await.map_err(setup)?),
        _ => None,
    };
    if let (Some(proxy), Fault::Impair(path)) = (&proxy, &spec.fault) {
        path.validate().map_err(setup)?;
        proxy.set_impairment(path.clone());
    }
    let entry = proxy.as_ref().map_or(listen, UdpProxy::addr);

    let shared = Arc::new(Shared {
        deliveries: Mutex::default(),
        subscribers: Mutex::new(
            (0..spec.subscribers)
                .map(|_| SubscriberLog::default())
                .collect(),
        ),
        acknowledged: Mutex::default(),
        published: Mutex::default(),
        attempts: Mutex::default(),
        arrivals: Mutex::default(),
        publisher_losses: Mutex::default(),
        will_arrivals: Mutex::default(),
    });

    // Subscribers, connected a batch at a time; for faults that hit their
    // node, all on one node.
    let run_id = std::process::id();
    let endpoints = EndpointPool::new(spec.clients_per_endpoint);
    let subscriber_options = |id: &str| -> Result<ClientOptions, ScenarioError> {
        let mut o = client_options(entry, id, spec.keep_alive);
        o.clean_start = true;
        o.session_expiry_interval = Some(600);
        o.quic_endpoint = endpoints.next().map_err(setup)?;
        Ok(o)
    };
    let mut subscribers: Vec<(ReconnectingClient, String)> = Vec::new();
    let mut gathered_on: Option<String> = None;
    let mut attempt = 0;
    let mut connect_storms = None;
    if matches!(spec.fault, Fault::Storm) {
        let plain = connect_storm(&subscriber_options, spec.subscribers, run_id, false).await?;
        let persistent = connect_storm(&subscriber_options, spec.subscribers, run_id, true).await?;
        connect_storms = Some((plain, persistent.1));
        subscribers = persistent.0;
    }
    while subscribers.len() < spec.subscribers {
        if attempt > spec.subscribers * 12 {
            return Err(setup("could not place the subscribers on one node"));
        }
        let missing = spec.subscribers - subscribers.len();
        let batch = if spec.fault.gathers_subscribers() && gathered_on.is_some() {
            (missing * 3).min(BATCH)
        } else if gathered_on.is_none() && spec.fault.gathers_subscribers() {
            1
        } else {
            missing.min(BATCH)
        };
        let mut connecting = tokio::task::JoinSet::new();
        for _ in 0..batch {
            attempt += 1;
            let o = subscriber_options(&format!("chaos-{run_id}-sub-{attempt}"))?;
            connecting.spawn(async move { ReconnectingClient::connect(o, backoff()).await });
        }
        while let Some(connected) = connecting.join_next().await {
            let (client, connack) = match connected.map_err(setup)? {
                Ok(connected) => connected,
                // A failed attempt (a reset while the router thinks a
                // loaded node is dead) is one more attempt.
                Err(e) => {
                    tracing::debug!("subscriber connect: {e}");
                    continue;
                }
            };
            let node = node_of(&connack);
            let wanted = gathered_on.get_or_insert_with(|| node.clone());
            let placed = !spec.fault.gathers_subscribers() || *wanted == node;
            if !placed || subscribers.len() >= spec.subscribers {
                let _ = client.disconnect().await;
                continue;
            }
            subscribers.push((client, node));
        }
    }
    let mut subscribing = tokio::task::JoinSet::new();
    let subscribed_already = connect_storms.is_some();
    for (index, (client, _)) in subscribers.iter().enumerate() {
        if subscribed_already {
            break;
        }
        let client = client
            .client()
            .ok_or_else(|| setup("subscriber lost at once"))?;
        // kill-forever: every other subscriber through a wildcard filter.
        let wildcard = matches!(spec.fault, Fault::KillForever) && index % 2 == 1;
        subscribing.spawn(async move { subscribe_own(&client, run_id, index, wildcard).await });
    }
    while let Some(subscribed) = subscribing.join_next().await {
        let ack = subscribed
            .map_err(setup)?
            .map_err(|e| setup(format!("SUBSCRIBE: {e}")))?;
        if ack.reason_codes.iter().any(|c| c.is_error()) {
            return Err(setup(format!("SUBSCRIBE refused: {:?}", ack.reason_codes)));
        }
    }
    let mut tasks = Vec::new();
    for (index, (client, _)) in subscribers.iter().enumerate() {
        tasks.push(tokio::spawn(follow_subscriber(
            client.clone(),
            index,
            shared.clone(),
        )));
    }

    // kill-forever: clients with wills (and plain subscribers) on the
    // subscribers' node, and a watcher of their wills on another node.
    let doomed = if spec.wills > 0 {
        let node = gathered_on.clone().unwrap_or_default();
        let owner = *by_server_id
            .get(&node)
            .ok_or_else(|| setup(format!("no member with server ID {node}")))?;
        Some(connect_will_holders(spec, &cluster, owner, run_id, shared.clone()).await?)
    } else {
        None
    };

    // Publishers.
    let stopped = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut publishers = Vec::new();
    for p in 0..spec.publishers {
        let o = client_options(entry, &format!("chaos-{run_id}-pub-{p}"), spec.keep_alive);
        let (client, _) = ReconnectingClient::connect(o, backoff())
            .await
            .map_err(|e| setup(format!("publisher connect: {e}")))?;
        publishers.push(tokio::spawn(publish_paced(
            client,
            p as u32,
            spec.clone(),
            run_id,
            shared.clone(),
            stopped.clone(),
        )));
    }

    tokio::time::sleep(spec.before).await;
    let fault_at = Instant::now();
    let mut survivors: Vec<usize> = (0..spec.nodes).collect();
    match &spec.fault {
        Fault::KillOwner
        | Fault::KillForever
        | Fault::Storm
        | Fault::Pause(_)
        | Fault::Restart(_) => {
            let node = if matches!(spec.fault, Fault::Storm) {
                most_held(&subscribers)
            } else {
                gathered_on.clone().unwrap_or_default()
            };
            let index = *by_server_id
                .get(&node)
                .ok_or_else(|| setup(format!("no member with server ID {node}")))?;
            match &spec.fault {
                Fault::Pause(d) => {
                    cluster.nodes[index].pause();
                    tokio::time::sleep(*d).await;
                    cluster.nodes[index].resume();
                }
                Fault::Restart(d) => {
                    // Back from its data directory; it counts among the
                    // nodes whose retained state must match.
                    tokio::task::block_in_place(|| cluster.nodes[index].kill9());
                    tokio::time::sleep(*d).await;
                    tokio::task::block_in_place(|| cluster.nodes[index].restart());
                }
                _ => {
                    tokio::task::block_in_place(|| cluster.nodes[index].kill9());
                    survivors.retain(|i| *i != index);
                }
            }
        }
        Fault::KillLeader => {
            let leader = cluster.status(0).await["leader_node_id"]
                .as_u64()
                .unwrap_or(1) as usize
                - 1;
            tokio::task::block_in_place(|| cluster.nodes[leader].kill9());
            survivors.retain(|i| *i != leader);
        }
        Fault::KillRouter => {
            tokio::task::block_in_place(|| routers[0].kill9());
        }
        Fault::Partition(d) => {
            let leader = cluster.status(0).await["leader_node_id"]
                .as_u64()
                .unwrap_or(1) as usize
                - 1;
            let grpc = |i: usize| cluster.nodes[i].grpc.to_string();
            let others: Vec<usize> = (0..spec.nodes).filter(|i| *i != leader).collect();
            egress[leader].block(others.iter().map(|i| grpc(*i)));
            for &i in &others {
                egress[i].block([grpc(leader)]);
            }
            tokio::time::sleep(*d).await;
            for proxy in &egress {
                proxy.heal();
            }
        }
        Fault::NatRebind => {
            if let Some(proxy) = &proxy {
                proxy.rebind();
            }
        }
        Fault::Impair(_) => {}
    }
    // kill-forever: when the survivors see the killed node down.
    let seen_down = doomed.as_ref().map(|d| {
        let admins: Vec<SocketAddr> = survivors.iter().map(|i| cluster.nodes[*i].admin).collect();
        tokio::spawn(seen_down(
            admins,
            d.owner as u64 + 1,
            Instant::now() + spec.after + spec.settle,
        ))
    });
    // The storm's second measure runs from the fault on.
    let affected = match &spec.fault {
        Fault::Storm => {
            let node = most_held(&subscribers);
            subscribers.iter().filter(|(_, n)| *n == node).count()
        }
        _ => spec.subscribers,
    };
    let prober = matches!(spec.fault, Fault::Storm).then(|| {
        tokio::spawn(probe_until_all_receive(
            entry,
            spec.keep_alive,
            run_id,
            shared.clone(),
            affected,
            Instant::now() + spec.after + spec.settle,
        ))
    });
    tokio::time::sleep(spec.after).await;
    let traffic_end = Instant::now();
    stopped.store(true, std::sync::atomic::Ordering::Relaxed);
    for p in publishers {
        let _ = p.await;
    }

    // Wait for every acknowledged message and every resumption.
    let deadline = Instant::now() + spec.settle;
    loop {
        let done = {
            let acked = lock(&shared.acknowledged);
            let deliveries = lock(&shared.deliveries);
            let subs = lock(&shared.subscribers);
            acked.iter().all(|id| deliveries.counts.contains_key(id))
                && subs
                    .iter()
                    .all(|s| s.lost_at.is_none() || s.resumed_at.is_some())
        };
        let wills_in = lock(&shared.will_arrivals).len() >= spec.wills;
        if (done && wills_in) || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    if let Some(prober) = prober {
        prober.await.map_err(setup)??;
    }
    // A moment for late duplicates, then stop.
    tokio::time::sleep(Duration::from_millis(300)).await;

    let mut report = Report {
        scenario: spec.name.clone(),
        fault: spec.fault.describe(),
        subscribers: spec.subscribers,
        publishers: spec.publishers,
        ..Report::default()
    };
    {
        let (published, refused) = *lock(&shared.published);
        report.published = published;
        report.unacknowledged = refused;
        report.reconcile(&lock(&shared.acknowledged), &lock(&shared.deliveries));
        // Seconds from the fault (negative before it).
        let offset = |t: Instant| {
            if t >= fault_at {
                t.duration_since(fault_at).as_secs_f64()
            } else {
                -fault_at.duration_since(t).as_secs_f64()
            }
        };
        let attempts = lock(&shared.attempts);
        for (_, at, outcome) in attempts.iter() {
            report.timeline.publish(offset(*at), *outcome);
        }
        // Seconds after the fault in which a publisher, paced to send,
        // sent nothing: stalled behind a publish that was still waiting.
        let end = offset(traffic_end).floor() as i64;
        for p in 0..spec.publishers as u32 {
            let seconds: BTreeSet<i64> = attempts
                .iter()
                .filter(|(q, _, _)| *q == p)
                .map(|(_, at, _)| offset(*at).floor() as i64)
                .collect();
            for second in 0..end {
                if !seconds.contains(&second) {
                    report.timeline.stalled(second, u64::from(spec.rate));
                }
            }
        }
        drop(attempts);
        for at in lock(&shared.arrivals).iter() {
            report.timeline.delivery(offset(*at));
        }
        report.max_recovery = Some(spec.max_recovery);
        let subs = lock(&shared.subscribers);
        for s in subs.iter() {
            if let Some(lost) = s.lost_at {
                report.disconnected += 1;
                if let Some(resumed) = s.resumed_at {
                    report.resumed += 1;
                    report
                        .failover
                        .push(resumed.saturating_duration_since(fault_at.min(lost)));
                }
            }
            if s.session_missing {
                report.sessions_lost += 1;
            }
        }
        if matches!(spec.fault, Fault::Storm) {
            // Over the clients of the killed node.
            let hit: Vec<&SubscriberLog> = subs.iter().filter(|s| s.lost_at.is_some()).collect();
            let last = |at: fn(&SubscriberLog) -> Option<Instant>| {
                hit.iter()
                    .map(|s| at(s).map(|t| t.saturating_duration_since(fault_at)))
                    .collect::<Option<Vec<_>>>()
                    .and_then(|all| all.into_iter().max())
            };
            report.all_resumed = last(|s| s.resumed_at);
            report.all_receiving = last(|s| s.probed_at);
            let waiting = hit.iter().filter(|s| s.probed_at.is_none()).count();
            if waiting > 0 || hit.is_empty() {
                report.violations.push(format!(
                    "{waiting} of {} reconnected subscribers received nothing after resuming",
                    hit.len()
                ));
            }
            if let Some(((_, plain), persistent)) = connect_storms {
                report.connect_plain = Some(plain);
                report.connect_persistent = Some(persistent);
            }
            report.storm_clients = affected;
            report.client_endpoints = Some(endpoints.created());
            report.client_peak_rss = peak_rss_bytes();
        }
        if spec.fault.keeps_connections(spec.member_down_after) {
            let losses: u32 =
                subs.iter().map(|s| s.losses).sum::<u32>() + *lock(&shared.publisher_losses);
            if losses > 0 {
                report.violations.push(format!(
                    "{losses} client connections were lost (expected none)"
                ));
            }
        } else if matches!(
            spec.fault,
            Fault::KillOwner | Fault::KillForever | Fault::Storm
        ) && report.disconnected < affected
        {
            report.violations.push(format!(
                "only {} of {} subscribers noticed their node die",
                report.disconnected, affected
            ));
        }
    }
    report.retained_equal = Some(retained_equal(&cluster, &survivors, run_id).await);
    if let (Some(doomed), Some(seen_down)) = (doomed, seen_down) {
        let down_at = seen_down.await.map_err(setup)?;
        let arrivals = lock(&shared.will_arrivals).clone();
        report.wills = Some(WillCheck {
            wills: doomed
                .delays
                .iter()
                .enumerate()
                .map(|(k, delay)| ExpectedWill {
                    delay: *delay,
                    arrivals: arrivals
                        .iter()
                        .filter(|(w, _)| *w == k)
                        .map(|(_, at)| at.saturating_duration_since(fault_at))
                        .collect(),
                })
                .collect(),
            down_after: down_at.map(|at| at.saturating_duration_since(fault_at)),
            tolerance: spec.max_recovery,
        });
        let _ = doomed.watcher.disconnect(ReasonCode::SUCCESS).await;
    }

    disconnect_all(&subscribers).await;
    for t in tasks {
        t.abort();
    }
    drop(routers);
    drop(cluster);
    Ok(report)
}
async fn follow_subscriber(client: ReconnectingClient, index: usize, shared: Arc<Shared>) {
    while let Some(event) = client.recv().await {
        match event {
            ReconnectEvent::Event(event) => {
                if let Event::Publish(p) = *event {
                    if let Some(id) = parse_payload(&p.payload) {
                        lock(&shared.deliveries).record(id);
                        lock(&shared.arrivals).push(Instant::now());
                    } else if &p.payload[..] == PROBE {
                        let mut subs = lock(&shared.subscribers);
                        let s = &mut subs[index];
                        if s.lost_at.is_some() && s.resumed_at.is_some() {
                            s.probed_at.get_or_insert_with(Instant::now);
                        }
                    }
                }
            }
            ReconnectEvent::Lost(_) => {
                let mut subs = lock(&shared.subscribers);
                let s = &mut subs[index];
                s.losses += 1;
                s.lost_at.get_or_insert_with(Instant::now);
                s.resumed_at = None;
                s.probed_at = None;
            }
            ReconnectEvent::Reconnected { connack, .. } => {
                let mut subs = lock(&shared.subscribers);
                let s = &mut subs[index];
                s.resumed_at = Some(Instant::now());
                if !connack.session_present {
                    s.session_missing = true;
                }
            }
            ReconnectEvent::GaveUp(_) => return,
        }
    }
}

/// Runs `step` until it succeeds, at most `CONNECT_ATTEMPTS` more times
/// after the first failure, with the scenario's backoff between attempts.
async fn with_retries<T, F, Fut>(what: &str, mut step: F) -> Result<T, ScenarioError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, quicmq_node::client::ClientError>>,
{
    let mut attempt = 0;
    loop {
        match step().await {
            Ok(done) => return Ok(done),
            Err(e) if attempt < CONNECT_ATTEMPTS => {
                tracing::debug!("{what}: attempt {attempt}: {e}");
                tokio::time::sleep(backoff().delay(attempt, rand::random())).await;
                attempt += 1;
            }
            Err(e) => return Err(setup(format!("{what}: {e}"))),
        }
    }
}

/// Subscriber `index` subscribes to its own topic, QoS 1: the topic
/// itself, or with `wildcard` a filter that matches it and what lies
/// below (`chaos/RUN/s/INDEX/#`).
async fn subscribe_own(
    client: &Client,
    run_id: u32,
    index: usize,
    wildcard: bool,
) -> Result<quicmq_proto::mqtt::SubAck, quicmq_node::client::ClientError> {
    let topic = format!("chaos/{run_id}/s/{index}");
    let filter = if wildcard {
        format!("{topic}/#")
    } else {
        topic
    };
    client
        .subscribe(
            vec![(filter, SubscriptionOptions::new(QoS::AtLeastOnce))],
            Properties::default(),
        )
        .await
}

/// Disconnects every client, all at once.
async fn disconnect_all(clients: &[(ReconnectingClient, String)]) {
    let mut leaving = tokio::task::JoinSet::new();
    for (client, _) in clients {
        let client = client.clone();
        leaving.spawn(async move { client.disconnect().await });
    }
    while leaving.join_next().await.is_some() {}
}

/// The node (server ID) holding most of `subscribers`.
fn most_held(subscribers: &[(ReconnectingClient, String)]) -> String {
    let mut count: BTreeMap<&str, usize> = BTreeMap::new();
    for (_, node) in subscribers {
        *count.entry(node.as_str()).or_default() += 1;
    }
    count
        .into_iter()
        .max_by_key(|(_, n)| *n)
        .map(|(node, _)| node.to_owned())
        .unwrap_or_default()
}

/// `count` clients connect at once through the router and each subscribes
/// to its own topic (QoS 1): plain sessions (clean start, no expiry) or
/// persistent ones. Returns them (with their nodes) and the time until
/// every SUBACK had arrived. Plain clients are disconnected at the end.
async fn connect_storm(
    options: &dyn Fn(&str) -> Result<ClientOptions, ScenarioError>,
    count: usize,
    run_id: u32,
    persistent: bool,
) -> Result<(Vec<(ReconnectingClient, String)>, Duration), ScenarioError> {
    let kind = if persistent { "sub" } else { "plain" };
    let mut connecting = tokio::task::JoinSet::new();
    let started = Instant::now();
    for index in 0..count {
        let mut o = options(&format!("chaos-{run_id}-{kind}-{index}"))?;
        // Ten thousand handshakes at once take a while.
        o.connect_timeout = Duration::from_secs(60);
        if !persistent {
            o.session_expiry_interval = None;
        }
        connecting.spawn(async move {
            // A device whose connection attempt fails (a handshake reset
            // while the router thinks a loaded node is dead, a timeout)
            // tries again after a backoff, as `ReconnectingClient` does.
            let (client, connack) = with_retries(&format!("{kind} storm: connect"), || {
                ReconnectingClient::connect(o.clone(), backoff())
            })
            .await?;
            // A connection lost before its SUBACK subscribes again on the
            // next one.
            let ack = with_retries(&format!("{kind} storm: SUBSCRIBE"), || async {
                let c = client.connected().await?;
                subscribe_own(&c, run_id, index, false).await
            })
            .await?;
            if ack.reason_codes.iter().any(|c| c.is_error()) {
                return Err(setup(format!(
                    "{kind} storm: SUBSCRIBE refused: {:?}",
                    ack.reason_codes
                )));
            }
            Ok((index, client, node_of(&connack)))
        });
    }
    let mut clients = Vec::with_capacity(count);
    while let Some(done) = connecting.join_next().await {
        clients.push(done.map_err(setup)??);
    }
    let elapsed = started.elapsed();
    clients.sort_by_key(|(index, _, _)| *index);
    let clients: Vec<(ReconnectingClient, String)> =
        clients.into_iter().map(|(_, c, node)| (c, node)).collect();
    if !persistent {
        disconnect_all(&clients).await;
        return Ok((Vec::new(), elapsed));
    }
    Ok((clients, elapsed))
}

/// Connection attempts a storm client makes before the scenario gives up.
const CONNECT_ATTEMPTS: u32 = 5;

/// The payload of the storm's probes (not a message ID: not counted).
const PROBE: &[u8] = b"probe";

/// Subscribers connected at once while placing them (a few: placing is
/// set-up, not the measurement).
const BATCH: usize = 16;

/// The storm's last measure: a probe client publishes to the topic of
/// every subscriber that has resumed and not received a probe since, round
/// after round, until the `affected` subscribers have or `deadline`.
async fn probe_until_all_receive(
    entry: SocketAddr,
    keep_alive: Duration,
    run_id: u32,
    shared: Arc<Shared>,
    affected: usize,
    deadline: Instant,
) -> Result<(), ScenarioError> {
    let o = client_options(entry, &format!("chaos-{run_id}-probe"), keep_alive);
    let (prober, _) = ReconnectingClient::connect(o, backoff())
        .await
        .map_err(|e| setup(format!("probe client connect: {e}")))?;
    while Instant::now() < deadline {
        let waiting: Vec<usize> = lock(&shared.subscribers)
            .iter()
            .enumerate()
            .filter(|(_, s)| s.resumed_at.is_some() && s.probed_at.is_none())
            .map(|(i, _)| i)
            .collect();
        let probed = lock(&shared.subscribers)
            .iter()
            .filter(|s| s.probed_at.is_some())
            .count();
        if probed >= affected {
            break;
        }
        for index in waiting {
            let topic = format!("chaos/{run_id}/s/{index}");
            let _ = prober.publish(&topic, PROBE, QoS::AtMostOnce, false).await;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let _ = prober.disconnect().await;
    Ok(())
}

fn parse_payload(payload: &[u8]) -> Option<MessageId> {
    let text = std::str::from_utf8(payload).ok()?;
    let (p, seq) = text.split_once(':')?;
    Some((p.parse().ok()?, seq.parse().ok()?))
}

async fn publish_paced(
    client: ReconnectingClient,
    p: u32,
    spec: Spec,
    run_id: u32,
    shared: Arc<Shared>,
    stopped: Arc<std::sync::atomic::AtomicBool>,
) {
    let period = Duration::from_secs_f64(1.0 / f64::from(spec.rate.max(1)));
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let watch_losses = {
        let client = client.clone();
        let shared = shared.clone();
        tokio::spawn(async move {
            while let Some(event) = client.recv().await {
                if matches!(event, ReconnectEvent::Lost(_)) {
                    *lock(&shared.publisher_losses) += 1;
                }
            }
        })
    };
    let mut seq: u64 = 0;
    while !stopped.load(std::sync::atomic::Ordering::Relaxed) {
        tick.tick().await;
        let target = (u64::from(p) * 7 + seq) % spec.subscribers.max(1) as u64;
        let topic = format!("chaos/{run_id}/s/{target}");
        lock(&shared.published).0 += 1;
        let attempted = Instant::now();
        let outcome = match client
            .publish(&topic, format!("{p}:{seq}"), QoS::AtLeastOnce, false)
            .await
        {
            Ok(ReasonCode::SUCCESS) => Outcome::Acknowledged,
            Ok(_) => Outcome::Refused,
            Err(_) => Outcome::TimedOut,
        };
        lock(&shared.attempts).push((p, attempted, outcome));
        let ok = outcome == Outcome::Acknowledged;
        if ok {
            lock(&shared.acknowledged).insert((p, seq));
        } else {
            lock(&shared.published).1 += 1;
        }
        if seq.is_multiple_of(20) {
            // A retained message through Raft now and then (checked for
            // equality on the survivors at the end).
            let _ = client
                .publish(
                    &format!("chaos/{run_id}/r/{p}"),
                    format!("{p}:{seq}"),
                    QoS::AtLeastOnce,
                    true,
                )
                .await;
        }
        seq += 1;
    }
    let _ = client.disconnect().await;
    watch_losses.abort();
}

/// Whether every surviving node serves the same retained messages under
/// this run's prefix (read over MQTT/TCP from each node).
async fn retained_equal(cluster: &ClusterProcesses, survivors: &[usize], run_id: u32) -> bool {
    let mut sets = Vec::new();
    for &i in survivors {
        let node = &cluster.nodes[i];
        let mut o = ClientOptions::new("127.0.0.1", node.tcp.port(), Transport::Tcp);
        o.client_id = format!("chaos-{run_id}-check-{i}");
        let Ok((client, _)) = Client::connect(o).await else {
            return false;
        };
        let _ = client
            .subscribe(
                vec![(
                    format!("chaos/{run_id}/r/#"),
                    SubscriptionOptions::new(QoS::AtMostOnce),
                )],
                Properties::default(),
            )
            .await;
        let mut set = BTreeMap::new();
        while let Ok(Some(Event::Publish(p))) =
            tokio::time::timeout(Duration::from_millis(500), client.recv()).await
        {
            set.insert(p.topic.clone(), p.payload.clone());
        }
        let _ = client.disconnect(ReasonCode::SUCCESS).await;
        sets.push(set);
    }
    sets.windows(2).all(|w| w[0] == w[1]) && sets.first().is_some_and(|s| !s.is_empty())
}

/// kill-forever's clients on the node to be killed, and the watcher of
/// their wills.
struct WillHolders {
    /// The node they are on (index in the cluster).
    owner: usize,
    /// Each will's delay as it counts (0 for plain sessions).
    delays: Vec<Duration>,
    /// The clients (they die with their node).
    _clients: Vec<Client>,
    /// The watcher, on another node.
    watcher: Client,
}

/// Connects `spec.wills` clients with wills straight to node `owner`
/// (TCP): by turns a plain session without and with a Will Delay Interval
/// (its session ends with the connection: due at once), and persistent
/// sessions with 2 s and 4 s of delay. Each also subscribes, plain ones to
/// a subscriber's topic, persistent ones through a wildcard. A watcher on
/// another node records the wills as they arrive.
async fn connect_will_holders(
    spec: &Spec,
    cluster: &ClusterProcesses,
    owner: usize,
    run_id: u32,
    shared: Arc<Shared>,
) -> Result<WillHolders, ScenarioError> {
    let tcp = |index: usize, client_id: String| {
        let port = cluster.nodes[index].tcp.port();
        let mut o = ClientOptions::new("127.0.0.1", port, Transport::Tcp);
        o.client_id = client_id;
        o.connect_timeout = Duration::from_secs(10);
        o
    };
    let watcher_node = (0..cluster.nodes.len())
        .find(|i| *i != owner)
        .ok_or_else(|| setup("no node for the will watcher"))?;
    let mut o = tcp(watcher_node, format!("chaos-{run_id}-will-watcher"));
    o.clean_start = true;
    o.session_expiry_interval = Some(600);
    let (watcher, _) = Client::connect(o)
        .await
        .map_err(|e| setup(format!("will watcher connect: {e}")))?;
    let ack = watcher
        .subscribe(
            vec![(
                format!("chaos/{run_id}/will/#"),
                SubscriptionOptions::new(QoS::AtLeastOnce),
            )],
            Properties::default(),
        )
        .await
        .map_err(|e| setup(format!("will watcher SUBSCRIBE: {e}")))?;
    if ack.reason_codes.iter().any(|c| c.is_error()) {
        return Err(setup(format!(
            "will watcher SUBSCRIBE refused: {:?}",
            ack.reason_codes
        )));
    }
    let events = watcher.clone();
    tokio::spawn(async move {
        while let Some(event) = events.recv().await {
            if let Event::Publish(p) = event {
                let k = p.topic.rsplit('/').next().and_then(|k| k.parse().ok());
                if let Some(k) = k {
                    lock(&shared.will_arrivals).push((k, Instant::now()));
                }
            }
        }
    });
    let mut clients = Vec::new();
    let mut delays = Vec::new();
    for k in 0..spec.wills {
        let (delay_s, persistent, counts) = match k % 4 {
            0 => (None, false, 0),
            1 => (Some(30), false, 0),
            2 => (Some(2), true, 2),
            _ => (Some(4), true, 4),
        };
        let mut o = tcp(owner, format!("chaos-{run_id}-will-{k}"));
        if persistent {
            o.session_expiry_interval = Some(600);
        }
        o.will = Some(quicmq_proto::mqtt::LastWill {
            topic: format!("chaos/{run_id}/will/{k}"),
            payload: format!("will {k}").into(),
            qos: QoS::AtLeastOnce,
            retain: false,
            properties: Properties {
                will_delay_interval: delay_s,
                ..Properties::default()
            },
        });
        let (client, _) = Client::connect(o)
            .await
            .map_err(|e| setup(format!("will holder {k} connect: {e}")))?;
        let index = k % spec.subscribers.max(1);
        subscribe_own(&client, run_id, index, persistent)
            .await
            .map_err(|e| setup(format!("will holder {k} SUBSCRIBE: {e}")))?;
        clients.push(client);
        delays.push(Duration::from_secs(counts));
    }
    Ok(WillHolders {
        owner,
        delays,
        _clients: clients,
        watcher,
    })
}

/// Polls the admin API of `admins` until one reports member `node_id`
/// down, or `deadline`: when it did.
async fn seen_down(admins: Vec<SocketAddr>, node_id: u64, deadline: Instant) -> Option<Instant> {
    while Instant::now() < deadline {
        for admin in &admins {
            let status = quicmq_tests::cluster_status(*admin).await;
            let down = status["members"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|m| m["node_id"] == node_id && m["state"] == "down");
            if down {
                return Some(Instant::now());
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    None
}
