//! One client connection: the MQTT protocol between CONNECT and the end of
//! the connection, over one stream (TCP, TLS) or several (QUIC).
//!
//! The transport listeners start the stream tasks ([`stream`]) and hand a
//! [`Link`] to [`serve`]. The core here owns the session while the client
//! is connected: it reads packets, talks to the [`Broker`], and sends what
//! the session hands out, within the client's limits (Receive Maximum,
//! Maximum Packet Size, Topic Alias Maximum).

pub mod stream;

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use quicmq_proto::mqtt::topic::{parse_shared, validate_topic_filter, validate_topic_name};
use quicmq_proto::mqtt::{
    encode, ConnAck, Connect, DecodeError, Disconnect, LastWill, Packet, Properties,
    ProtocolVersion, Publish, PublishResponse, QoS, ReasonCode, RetainHandling, SubAck, Subscribe,
    SubscriptionOptions, UnsubAck, Unsubscribe,
};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::auth::{Access, AuthDecision};
use crate::broker::{
    now_ms, AttachError, Attached, Broker, ClientId, ConnectIdentity, Delivery, Detach, Message,
    RouteCommit, Session, SessionCell, SessionEvent, Subscription, Transmit,
};
use crate::metrics as m;
use stream::{Inbound, StreamContext, StreamWriter};

/// Deliveries stop being handed to writers while this many bytes wait to
/// be written; they stay in the session queue (bounded) meanwhile.
const WRITE_HIGH_WATER: usize = 1024 * 1024;
/// Data-stream events and packets held while waiting for CONNECT.
const MAX_EARLY_INBOUND: usize = 256;

/// A connected transport, ready for MQTT.
pub struct Link {
    /// Transport label (quic, tcp, tls).
    pub transport: &'static str,
    /// Client address.
    pub peer: SocketAddr,
    /// The shared context the stream tasks were started with.
    pub ctx: StreamContext,
    /// Decoded packets and stream events.
    pub inbound: mpsc::Receiver<Inbound>,
    /// Writer of the control stream (the only stream of TCP and TLS).
    pub control: StreamWriter,
    /// The QUIC connection, for statistics.
    pub quic: Option<quinn::Connection>,
    /// What the client's TLS certificate says about it.
    pub certificate: PeerCertificate,
}

/// The client certificate of a connection, as `client_ca` and
/// `cert_identity` read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerCertificate {
    /// No certificate (none asked for, none given, or plain TCP).
    None,
    /// A verified certificate naming the client.
    Identity(String),
    /// A verified certificate without the configured identity field.
    Unusable(String),
}

impl PeerCertificate {
    /// Read the verified chain (leaf first) of a connection.
    pub fn of(
        policy: Option<&crate::tls::ClientCertPolicy>,
        chain: Option<&[rustls_pki_types::CertificateDer<'_>]>,
    ) -> PeerCertificate {
        let Some(policy) = policy else {
            return PeerCertificate::None;
        };
        match policy.identity_of(chain) {
            Ok(None) => PeerCertificate::None,
            Ok(Some(identity)) => PeerCertificate::Identity(identity),
            Err(e) => PeerCertificate::Unusable(e.to_string()),
        }
    }
}

/// Why the connection ends.
enum Close {
    /// Say this reason to the client (5.0) and close.
    Reason(ReasonCode),
    /// Close without a word (the client left, or 3.1.1 has no way to say).
    Silently,
}

/// Serve one connection until it ends.
pub async fn serve(broker: Arc<Broker>, mut link: Link) {
    metrics::counter!(m::CONNECTIONS_TOTAL, "transport" => link.transport).increment(1);
    let open = metrics::gauge!(m::CONNECTIONS, "transport" => link.transport);
    open.increment(1.0);
    let deadline = Instant::now() + broker.settings().connect_timeout;
    // QUIC streams are not ordered against each other: a data stream may
    // open, and even carry packets, before the CONNECT on the control
    // stream is complete. Those wait (bounded) until CONNECT.
    let mut early = Vec::new();
    let first = loop {
        let next = tokio::time::timeout_at(deadline, link.inbound.recv()).await;
        match next {
            Ok(Some(Inbound::Packet { stream, packet })) if stream != 0 => {
                early.push(Inbound::Packet { stream, packet });
            }
            Ok(Some(
                event @ (Inbound::StreamOpened { .. } | Inbound::StreamClosed { stream: 1.. }),
            )) => {
                early.push(event);
            }
            other => break other,
        }
        if early.len() > MAX_EARLY_INBOUND {
            tracing::debug!(peer = %link.peer, "too much data-stream traffic before CONNECT; closing");
            metrics::counter!(m::PROTOCOL_ERRORS, "reason" => "no_connect").increment(1);
            open.decrement(1.0);
            return;
        }
    };
    match first {
        Ok(Some(Inbound::Packet { stream: 0, packet }))
            if matches!(*packet, Packet::Connect(_)) =>
        {
            metrics::counter!(m::PACKETS_RECEIVED, "type" => "connect").increment(1);
            if let Packet::Connect(connect) = *packet {
                Connection::start(broker, link, *connect, early).await;
            }
        }
        Ok(Some(Inbound::Invalid {
            stream: 0,
            error: DecodeError::UnsupportedProtocolVersion(level),
        })) => {
            tracing::debug!(peer = %link.peer, level, "unsupported protocol level");
            metrics::counter!(m::PROTOCOL_ERRORS, "reason" => "unsupported_protocol_version")
                .increment(1);
            // 3.1.1 §3.2.2.3: answer with return code 1 in 3.1.1 format.
            let mut out = BytesMut::new();
            let connack = Packet::ConnAck(ConnAck {
                session_present: false,
                reason_code: ReasonCode::UNSUPPORTED_PROTOCOL_VERSION,
                properties: Properties::default(),
            });
            if encode(&connack, ProtocolVersion::V311, &mut out).is_ok() {
                link.control.send(out.freeze(), &link.ctx.budget);
            }
        }
        Ok(Some(Inbound::Invalid { error, .. })) => {
            tracing::debug!(peer = %link.peer, %error, "invalid CONNECT");
            metrics::counter!(m::PROTOCOL_ERRORS, "reason" => "malformed_connect").increment(1);
        }
        Ok(Some(other)) => {
            tracing::debug!(peer = %link.peer, ?other, "first packet is not CONNECT; closing");
            metrics::counter!(m::PROTOCOL_ERRORS, "reason" => "no_connect").increment(1);
        }
        Ok(None) => {}
        Err(_) => {
            tracing::debug!(peer = %link.peer, "no CONNECT in time; closing");
        }
    }
    open.decrement(1.0);
}

struct ClientLimits {
    receive_maximum: u16,
    maximum_packet_size: u32,
    topic_alias_maximum: u16,
}

/// How long a publisher's acknowledgement may wait for the cluster to
/// commit the message to durable queues before it is refused (0x80).
const DURABLE_ACK_TIMEOUT: Duration = Duration::from_secs(10);

/// A PUBACK or PUBREC that waits for durable commits; sent in the order
/// the PUBLISHes came (MQTT requires it).
struct PendingAck {
    stream: u64,
    packet: Packet,
    committed: Pin<Box<dyn Future<Output = bool> + Send>>,
    /// Counts this acknowledgement in `quicmq_cluster_waiting` and records
    /// its wait when it is answered.
    wait: ClusterWait,
}

/// A SUBACK waiting for the cluster to route its new filters (and, for a
/// persistent session, for the store to hold them). The connection goes on
/// serving meanwhile: PINGREQ, acknowledgements, deliveries (the new
/// subscriptions already deliver on this node). SUBACKs go out in the
/// order their SUBSCRIBEs came.
struct PendingSubscribe {
    stream: u64,
    packet_id: u16,
    reason_codes: Vec<ReasonCode>,
    /// Granted filters that want retained messages once acknowledged: the
    /// index of their reason code, the filter, the options, the
    /// subscription identifier.
    retained: Vec<(usize, String, SubscriptionOptions, Option<u32>)>,
    /// The indices of `reason_codes` whose route commit is awaited, with
    /// the filter.
    routed: Vec<(usize, String)>,
    settled: Pin<Box<dyn Future<Output = SubscribeSettled> + Send>>,
    wait: ClusterWait,
}

/// What the cluster and the store answered a pending SUBSCRIBE.
struct SubscribeSettled {
    /// Per entry of `PendingSubscribe::routed`: whether the route committed
    /// in time.
    routed: Vec<bool>,
    /// Whether the store flushed (persistent sessions; `true` otherwise).
    flushed: bool,
}

/// One client operation waiting on the cluster, for
/// `quicmq_cluster_waiting` and `quicmq_cluster_waits`.
struct ClusterWait {
    op: &'static str,
    started: Instant,
    done: bool,
}

impl ClusterWait {
    fn start(op: &'static str) -> ClusterWait {
        metrics::gauge!(m::CLUSTER_WAITING, "op" => op).increment(1.0);
        ClusterWait {
            op,
            started: Instant::now(),
            done: false,
        }
    }

    /// The wait ended with `committed` (or not).
    fn finish(mut self, committed: bool) {
        self.done = true;
        metrics::gauge!(m::CLUSTER_WAITING, "op" => self.op).decrement(1.0);
        let outcome = if committed { "committed" } else { "refused" };
        metrics::histogram!(m::CLUSTER_WAITS, "op" => self.op, "outcome" => outcome)
            .record(self.started.elapsed().as_secs_f64());
    }
}

impl Drop for ClusterWait {
    fn drop(&mut self) {
        // The connection ended while waiting.
        if !self.done {
            metrics::gauge!(m::CLUSTER_WAITING, "op" => self.op).decrement(1.0);
        }
    }
}

struct Connection {
    broker: Arc<Broker>,
    link: Link,
    version: ProtocolVersion,
    conn_id: u64,
    client_id: ClientId,
    cell: Arc<SessionCell>,
    session: Session,
    events: mpsc::UnboundedReceiver<SessionEvent>,
    writers: HashMap<u64, StreamWriter>,
    keep_alive: Option<Duration>,
    last_packet: Instant,
    limits: ClientLimits,
    inbound_aliases: HashMap<u16, String>,
    outbound_aliases: HashMap<String, u16>,
    will: Option<LastWill>,
    /// The cluster's record of the will ([`ClusterLink::hold_will`]).
    ///
    /// [`ClusterLink::hold_will`]: crate::cluster::ClusterLink::hold_will
    will_key: Option<quicmq_raft::command::WillKey>,
    takeover: Option<oneshot::Sender<Session>>,
    scratch: BytesMut,
    early: Vec<Inbound>,
    pending_acks: VecDeque<PendingAck>,
    pending_subscribes: VecDeque<PendingSubscribe>,
    /// The authenticated user name (`None`: anonymous), for the ACL.
    username: Option<String>,
    /// PUBLISHes allowed (`max_publish_rate`), if limited.
    publish_bucket: Option<crate::limits::TokenBucket>,
    /// This connection's place under `max_connections` (given back when
    /// the connection ends).
    _slot: crate::limits::ConnectionSlot,
}

/// Whether `connack` encoded for `version` is at most `maximum_packet_size`
/// octets.
fn fits(connack: &ConnAck, version: ProtocolVersion, maximum_packet_size: u32) -> bool {
    let mut out = BytesMut::new();
    encode(&Packet::ConnAck(connack.clone()), version, &mut out).is_ok()
        && out.len() <= maximum_packet_size as usize
}

impl Connection {
    async fn start(broker: Arc<Broker>, link: Link, connect: Connect, early: Vec<Inbound>) {
        let version = connect.protocol;
        let settings = broker.settings().clone();
        let v5 = version == ProtocolVersion::V5;
        let refuse_with = |code: ReasonCode, properties: Properties, link: &Link| {
            let mut out = BytesMut::new();
            let properties = if v5 {
                properties
            } else {
                Properties::default()
            };
            let connack = Packet::ConnAck(ConnAck {
                session_present: false,
                reason_code: code,
                properties,
            });
            if encode(&connack, version, &mut out).is_ok() {
                link.control.send(out.freeze(), &link.ctx.budget);
            }
            metrics::counter!(m::PROTOCOL_ERRORS, "reason" => code.name()).increment(1);
        };
        let refuse = |code: ReasonCode, link: &Link| {
            refuse_with(code, Properties::default(), link);
        };
        if v5 && connect.properties.authentication_method.is_some() {
            // No enhanced authentication method is configured.
            metrics::counter!(m::AUTH, "result" => "bad_method").increment(1);
            refuse(ReasonCode::BAD_AUTHENTICATION_METHOD, &link);
            return;
        }
        // Before any credential work: a node or address at its limit
        // spends nothing more on the client.
        let slot = match settings.limits.connections.acquire(link.peer.ip()) {
            Ok(slot) => slot,
            Err(limit) => {
                tracing::debug!(peer = %link.peer, "connection refused: {limit}");
                metrics::counter!(m::LIMITS_HIT, "limit" => limit.label()).increment(1);
                refuse(ReasonCode::QUOTA_EXCEEDED, &link);
                return;
            }
        };
        let decision = match &link.certificate {
            // A verified certificate is the credential: no password, and
            // the user name (for the ACL) is the certificate's identity.
            PeerCertificate::Identity(identity) => {
                if connect
                    .username
                    .as_ref()
                    .is_some_and(|user| user != identity)
                {
                    AuthDecision::BadCredentials
                } else {
                    metrics::counter!(m::AUTH, "result" => "certificate").increment(1);
                    AuthDecision::Allowed {
                        username: Some(identity.clone()),
                    }
                }
            }
            PeerCertificate::Unusable(reason) => {
                tracing::info!(peer = %link.peer, "client certificate refused: {reason}");
                AuthDecision::BadCredentials
            }
            PeerCertificate::None => {
                settings
                    .auth
                    .check(
                        link.peer.ip(),
                        connect.username.as_deref(),
                        connect.password.as_ref(),
                    )
                    .await
            }
        };
        let username = match &decision {
            AuthDecision::Allowed { username } => username.clone(),
            _ => None,
        };
        let code = match &decision {
            AuthDecision::Allowed { .. } => None,
            AuthDecision::BadCredentials => Some(ReasonCode::BAD_USER_NAME_OR_PASSWORD),
            AuthDecision::NotAuthorized => Some(ReasonCode::NOT_AUTHORIZED),
            AuthDecision::Busy => Some(ReasonCode::SERVER_BUSY),
        };
        if let Some(code) = code {
            settings.auth.log_failure(
                &link.peer.to_string(),
                connect.username.as_deref(),
                &decision,
            );
            let properties = if code == ReasonCode::SERVER_BUSY {
                Properties {
                    reason_string: Some("too many logins at once; connect again".into()),
                    server_reference: other_members(&broker, &link),
                    ..Properties::default()
                }
            } else {
                Properties::default()
            };
            refuse_with(code, properties, &link);
            return;
        }
        if let Some(will) = &connect.will {
            if validate_topic_name(&will.topic).is_err()
                || !settings.topic_limits.admits(&will.topic)
            {
                refuse(ReasonCode::TOPIC_NAME_INVALID, &link);
                return;
            }
        }
        // A will is a PUBLISH the client asks for now: one the ACL would
        // refuse is refused with the CONNECT (the client ID is checked
        // below, once assigned).
        let will_refused = |client_id: &str| {
            connect.will.as_ref().is_some_and(|will| {
                !settings.auth.authorize(
                    username.as_deref(),
                    client_id,
                    Access::Publish,
                    &will.topic,
                )
            })
        };
        let mut assigned = None;
        let client_id: ClientId = if connect.client_id.is_empty() {
            if !v5 && !connect.clean_start {
                // 3.1.1 §3.1.3-8: a zero-byte ID needs a clean session.
                refuse(ReasonCode::CLIENT_IDENTIFIER_NOT_VALID, &link);
                return;
            }
            let id = format!("auto-{:016x}", rand::random::<u64>());
            assigned = Some(id.clone());
            Arc::from(id)
        } else {
            Arc::from(connect.client_id.as_str())
        };
        if will_refused(&client_id) {
            tracing::debug!(client_id = %client_id, "will topic refused by the ACL");
            refuse(ReasonCode::NOT_AUTHORIZED, &link);
            return;
        }
        let requested_expiry = if v5 {
            connect.properties.session_expiry_interval.unwrap_or(0)
        } else if connect.clean_start {
            0
        } else {
            u32::MAX
        };
        let expiry = requested_expiry.min(settings.max_session_expiry);
        let mut keep_alive = connect.keep_alive;
        let mut server_keep_alive = None;
        if settings.max_keep_alive > 0
            && (keep_alive == 0 || keep_alive > settings.max_keep_alive)
            && v5
        {
            keep_alive = settings.max_keep_alive;
            server_keep_alive = Some(keep_alive);
        }
        let limits = ClientLimits {
            receive_maximum: connect.properties.receive_maximum.unwrap_or(u16::MAX),
            maximum_packet_size: connect
                .properties
                .maximum_packet_size
                .unwrap_or(quicmq_proto::mqtt::MAX_PACKET_SIZE),
            topic_alias_maximum: connect.properties.topic_alias_maximum.unwrap_or(0),
        };
        let mut properties = Properties::default();
        if v5 {
            properties.receive_maximum = Some(settings.receive_maximum);
            properties.topic_alias_maximum = Some(settings.topic_alias_maximum);
            properties.maximum_packet_size = Some(settings.max_packet_size);
            properties.assigned_client_identifier = assigned;
            properties.server_keep_alive = server_keep_alive;
            properties.retain_available = Some(1);
            properties.wildcard_subscription_available = Some(1);
            properties.subscription_identifier_available = Some(1);
            properties.shared_subscription_available = Some(1);
            if expiry != requested_expiry {
                properties.session_expiry_interval = Some(expiry);
            }
            if let Some(name) = &settings.node_name {
                properties
                    .user_properties
                    .push(("quicmq-node".to_string(), name.clone()));
            }
        }
        // The CONNACK must fit the client's Maximum Packet Size: without
        // the optional user property if need be, else the connection is
        // closed before any session is touched (MQTT 5.0 §3.1.2.11).
        let mut connack = ConnAck {
            session_present: false,
            reason_code: ReasonCode::SUCCESS,
            properties,
        };
        if !fits(&connack, version, limits.maximum_packet_size) {
            connack.properties.user_properties.clear();
        }
        if !fits(&connack, version, limits.maximum_packet_size) {
            tracing::debug!(
                client_id = %client_id, peer = %link.peer,
                maximum_packet_size = limits.maximum_packet_size,
                "CONNACK does not fit the client's Maximum Packet Size: connection closed"
            );
            metrics::counter!(m::PROTOCOL_ERRORS, "reason" => "connack_too_large").increment(1);
            return;
        }
        // The cluster could not commit what the CONNECT needs: 0x88 with
        // the reason, and (QUIC, whose addresses members publish) the
        // other members to try.
        let unavailable = |reason: String| {
            let properties = Properties {
                reason_string: Some(reason),
                server_reference: other_members(&broker, &link),
                ..Properties::default()
            };
            refuse_with(ReasonCode::SERVER_UNAVAILABLE, properties, &link);
        };
        // In a cluster the will is committed before the session is
        // touched: from then on it is published even if this node dies.
        let will_key = match (broker.cluster(), &connect.will) {
            (Some(cluster), Some(will)) => {
                match cluster.hold_will(&client_id, will, expiry).await {
                    Ok(key) => Some(key),
                    Err(e) => {
                        tracing::warn!(client_id = %client_id, "will not committed in the cluster: {e}");
                        unavailable(format!(
                            "the cluster could not commit this client's will ({e}); connect again"
                        ));
                        return;
                    }
                }
            }
            _ => None,
        };
        let drop_held_will = || {
            if let (Some(cluster), Some(key)) = (broker.cluster(), will_key.clone()) {
                cluster.remove_will(key);
            }
        };
        let conn_id = broker.next_conn_id();
        let who = ConnectIdentity {
            may_take_over: settings.auth.may_take_over(username.as_deref(), &client_id),
            identity: username.clone(),
        };
        let Attached {
            cell,
            session,
            session_present,
            events,
        } = match broker
            .attach(client_id.clone(), connect.clean_start, expiry, conn_id, who)
            .await
        {
            Ok(attached) => attached,
            Err(AttachError::NotOwner) => {
                drop_held_will();
                metrics::counter!(m::AUTH, "result" => "not_session_owner").increment(1);
                settings.auth.log_failure(
                    &link.peer.to_string(),
                    username.as_deref(),
                    &AuthDecision::NotAuthorized,
                );
                tracing::debug!(client_id = %client_id, "session belongs to another identity");
                refuse(ReasonCode::NOT_AUTHORIZED, &link);
                return;
            }
            Err(AttachError::Cluster(e)) => {
                drop_held_will();
                tracing::warn!(client_id = %client_id, "session not claimed in the cluster: {e}");
                unavailable(format!(
                    "the cluster could not commit this session's claim ({e}); connect again"
                ));
                return;
            }
        };
        tracing::debug!(
            client_id = %client_id, peer = %link.peer, transport = link.transport,
            session_present, expiry, "client connected"
        );
        let mut writers = HashMap::new();
        writers.insert(0, link.control.clone());
        let _ = link.ctx.announcer.set(stream::Announcer {
            broker: broker.clone(),
            client_id: client_id.clone(),
        });
        let mut conn = Connection {
            broker,
            link,
            version,
            conn_id,
            client_id,
            cell,
            session,
            events,
            writers,
            keep_alive: (keep_alive > 0)
                .then(|| Duration::from_millis(u64::from(keep_alive) * 1500)),
            last_packet: Instant::now(),
            limits,
            inbound_aliases: HashMap::new(),
            outbound_aliases: HashMap::new(),
            will: connect.will,
            will_key,
            takeover: None,
            scratch: BytesMut::new(),
            early,
            pending_acks: VecDeque::new(),
            pending_subscribes: VecDeque::new(),
            username,
            publish_bucket: settings.limits.publish_bucket(std::time::Instant::now()),
            _slot: slot,
        };
        let connack = Packet::ConnAck(ConnAck {
            session_present,
            ..connack
        });
        let close = match conn.send(0, connack) {
            Ok(()) => conn.run().await,
            Err(close) => close,
        };
        conn.finish(close).await;
    }

    async fn run(&mut self) -> Close {
        let resend = self.session.resume(self.limits.receive_maximum, now_ms());
        for transmit in resend {
            if let Err(close) = self.send_transmit(transmit) {
                return close;
            }
        }
        if let Err(close) = self.flush_session() {
            return close;
        }
        for inbound in std::mem::take(&mut self.early) {
            if let Err(close) = self.on_inbound(inbound).await {
                return close;
            }
        }
        let mut shutdown = self.broker.shutdown_signal();
        let mut stats = tokio::time::interval(Duration::from_secs(5));
        let mut quic_seen = (0u64, 0u64);
        loop {
            let deadline = self.keep_alive.map(|ka| self.last_packet + ka);
            let backlog = self.session.queued_len() > 0;
            let budget = self.link.ctx.budget.clone();
            let result = tokio::select! {
                inbound = self.link.inbound.recv() => match inbound {
                    Some(inbound) => {
                        if self.link.inbound.is_empty() && is_publish(&inbound) {
                            // The scheduler runs the task it woke last first,
                            // so this publisher's reader and core can overtake
                            // readers woken before it, on packets the node
                            // read earlier (a SUBSCRIBE this PUBLISH must
                            // reach). Let them run before routing. Under load
                            // the queue is not empty and nobody yields.
                            tokio::task::yield_now().await;
                        }
                        self.on_inbound(inbound).await
                    }
                    None => Err(Close::Silently),
                },
                event = self.events.recv() => match event {
                    Some(SessionEvent::Deliver(delivery)) => self.on_delivery(delivery),
                    Some(SessionEvent::TakeOver(reply)) => {
                        self.takeover = Some(reply);
                        Err(Close::Reason(ReasonCode::SESSION_TAKEN_OVER))
                    }
                    None => Err(Close::Silently),
                },
                _ = budget.drained(), if backlog => self.flush_session(),
                committed = next_commit(&mut self.pending_acks), if !self.pending_acks.is_empty() => {
                    self.on_committed(committed)
                }
                settled = next_subscribe(&mut self.pending_subscribes), if !self.pending_subscribes.is_empty() => {
                    self.on_subscribe_settled(settled)
                }
                _ = sleep_until(deadline) => {
                    tracing::debug!(client_id = %self.client_id, "keep alive expired");
                    Err(Close::Reason(ReasonCode::KEEP_ALIVE_TIMEOUT))
                }
                _ = crate::broker::shutdown_started(&mut shutdown) => Err(Close::Reason(ReasonCode::SERVER_SHUTTING_DOWN)),
                _ = stats.tick(), if self.link.quic.is_some() => {
                    self.record_quic_stats(&mut quic_seen);
                    Ok(())
                }
            };
            if let Err(close) = result {
                return close;
            }
        }
    }

    fn record_quic_stats(&self, seen: &mut (u64, u64)) {
        let Some(quic) = &self.link.quic else { return };
        let stats = quic.stats();
        metrics::histogram!(m::QUIC_RTT).record(stats.path.rtt.as_secs_f64());
        let lost = stats.path.lost_packets;
        let sent = stats.path.sent_packets;
        metrics::counter!(m::QUIC_LOST_PACKETS).increment(lost.saturating_sub(seen.0));
        metrics::counter!(m::QUIC_SENT_PACKETS).increment(sent.saturating_sub(seen.1));
        *seen = (lost, sent);
    }

    async fn finish(mut self, close: Close) {
        if let (Close::Reason(code), ProtocolVersion::V5) = (&close, self.version) {
            let _ = self.send(0, Packet::Disconnect(Disconnect::new(*code)));
        }
        if matches!(close, Close::Reason(ReasonCode::SERVER_SHUTTING_DOWN)) {
            // The node is going away, the client will come back: no will.
            self.will = None;
        }
        // Dropping the writers lets their tasks finish the streams.
        self.writers.clear();
        self.broker.forget_announced(&self.client_id);
        if let Some(quic) = &self.link.quic {
            let code = match close {
                Close::Reason(code) => code.0,
                Close::Silently => 0,
            };
            // Give the DISCONNECT a moment to leave before the close frame.
            let quic = quic.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(100)).await;
                quic.close(quinn::VarInt::from_u32(u32::from(code)), b"");
            });
        }
        let session = std::mem::replace(
            &mut self.session,
            Session::new(
                self.client_id.clone(),
                0,
                self.broker.settings().session_limits.clone(),
            ),
        );
        let (_, events) = mpsc::unbounded_channel();
        let events = std::mem::replace(&mut self.events, events);
        self.broker.detach(
            &self.cell,
            Detach {
                conn_id: self.conn_id,
                session,
                events,
                takeover: self.takeover.take(),
                will: self.will.take(),
                will_key: self.will_key.take(),
            },
        );
        tracing::debug!(client_id = %self.client_id, "client disconnected");
    }

    /// Encode a packet into the scratch buffer; `None` (counted) if it
    /// cannot be encoded.
    fn encode(&mut self, packet: &Packet) -> Option<usize> {
        self.scratch.clear();
        match encode(packet, self.version, &mut self.scratch) {
            Ok(len) => Some(len),
            Err(e) => {
                tracing::warn!(client_id = %self.client_id, error = %e, "could not encode a packet");
                metrics::counter!(m::MESSAGES_DROPPED, "reason" => "encode_error").increment(1);
                None
            }
        }
    }

    /// Encode and queue a packet on a stream (falling back to the control
    /// stream if that stream is gone). Packets over the client's Maximum
    /// Packet Size are not sent.
    fn send(&mut self, stream: u64, packet: Packet) -> Result<(), Close> {
        let Some(len) = self.encode(&packet) else {
            return Ok(());
        };
        if len > self.limits.maximum_packet_size as usize {
            metrics::counter!(m::MESSAGES_DROPPED, "reason" => "packet_too_large").increment(1);
            return Ok(());
        }
        self.write_scratch(stream, packet.packet_type().name())
    }

    /// Queue the encoded packet in the scratch buffer on a stream.
    fn write_scratch(&mut self, stream: u64, kind: &'static str) -> Result<(), Close> {
        let bytes = self.scratch.split().freeze();
        let mut stream = stream;
        loop {
            let Some(writer) = self.writers.get(&stream) else {
                if stream == 0 {
                    return Err(Close::Silently);
                }
                stream = 0;
                continue;
            };
            if writer.send(bytes.clone(), &self.link.ctx.budget) {
                metrics::counter!(m::PACKETS_SENT, "type" => kind).increment(1);
                return Ok(());
            }
            if stream == 0 {
                return Err(Close::Silently);
            }
            // The data stream is gone: its deliveries go to the control stream.
            self.writers.remove(&stream);
            stream = 0;
        }
    }

    fn send_transmit(&mut self, transmit: Transmit) -> Result<(), Close> {
        match transmit {
            Transmit::Publish { stream, publish } => self.send_publish(stream, publish),
            Transmit::PubRel { stream, packet_id } => {
                self.send(stream, Packet::PubRel(PublishResponse::success(packet_id)))
            }
        }
    }

    fn send_publish(&mut self, stream: u64, mut publish: Publish) -> Result<(), Close> {
        if self.version == ProtocolVersion::V311 {
            publish.properties = Properties::default();
        }
        // Outgoing topic aliases only on the control stream: streams are
        // not ordered against each other.
        let mut new_alias = None;
        if stream == 0 && self.limits.topic_alias_maximum > 0 {
            if let Some(&alias) = self.outbound_aliases.get(&publish.topic) {
                publish.properties.topic_alias = Some(alias);
                publish.topic.clear();
            } else if self.outbound_aliases.len() < usize::from(self.limits.topic_alias_maximum) {
                let alias = self.outbound_aliases.len() as u16 + 1;
                new_alias = Some((publish.topic.clone(), alias));
                publish.properties.topic_alias = Some(alias);
            }
        }
        let packet_id = publish.packet_id;
        let qos = publish.qos;
        let fits = self
            .encode(&Packet::Publish(publish))
            .is_some_and(|len| len <= self.limits.maximum_packet_size as usize);
        if !fits {
            // Discarded as if delivered (MQTT 5.0 §3.1.2.25); an alias it
            // would have set is not recorded.
            metrics::counter!(m::MESSAGES_DROPPED, "reason" => "packet_too_large").increment(1);
            if let Some(id) = packet_id {
                let _ = match qos {
                    QoS::AtLeastOnce => self.session.on_puback(id),
                    _ => self.session.on_pubrec(id, true).map(|_| ()),
                };
                self.apply_store_ops();
            }
            return Ok(());
        }
        if let Some((topic, alias)) = new_alias {
            self.outbound_aliases.insert(topic, alias);
        }
        self.write_scratch(stream, "publish")
    }

    /// Send what the session has for the client, while the write budget
    /// allows.
    fn flush_session(&mut self) -> Result<(), Close> {
        let now = now_ms();
        let mut expired = 0;
        while self.link.ctx.budget.pending() < WRITE_HIGH_WATER {
            let Some(transmit) = self.session.poll_transmit(now, &mut expired) else {
                break;
            };
            self.send_transmit(transmit)?;
        }
        if expired > 0 {
            metrics::counter!(m::MESSAGES_DROPPED, "reason" => "expired").increment(expired);
        }
        self.apply_store_ops();
        Ok(())
    }

    fn apply_store_ops(&mut self) {
        let ops = self.session.take_store_ops();
        self.broker.apply_store_ops(&self.cell, ops);
    }

    fn on_delivery(&mut self, delivery: Delivery) -> Result<(), Close> {
        self.broker
            .enqueue_into(&self.cell, &mut self.session, delivery);
        self.flush_session()
    }

    fn protocol_error(&self, why: &str, code: ReasonCode) -> Close {
        tracing::debug!(client_id = %self.client_id, why, %code, "closing connection");
        metrics::counter!(m::PROTOCOL_ERRORS, "reason" => code.name()).increment(1);
        match self.version {
            ProtocolVersion::V5 => Close::Reason(code),
            ProtocolVersion::V311 => Close::Silently,
        }
    }

    async fn on_inbound(&mut self, inbound: Inbound) -> Result<(), Close> {
        match inbound {
            Inbound::Packet { stream, packet } => {
                self.last_packet = Instant::now();
                metrics::counter!(m::PACKETS_RECEIVED, "type" => packet.packet_type().name())
                    .increment(1);
                self.on_packet(stream, *packet).await
            }
            Inbound::Invalid { error, .. } => {
                Err(self.protocol_error(&error.to_string(), error.reason_code()))
            }
            Inbound::StreamOpened { stream, writer } => {
                self.writers.insert(stream, writer);
                Ok(())
            }
            Inbound::StreamClosed { stream: 0 } => Err(Close::Silently),
            Inbound::StreamClosed { stream } => {
                self.writers.remove(&stream);
                Ok(())
            }
        }
    }

    async fn on_packet(&mut self, stream: u64, packet: Packet) -> Result<(), Close> {
        match packet {
            Packet::Publish(publish) => self.on_publish(stream, publish).await,
            Packet::PubAck(ack) => {
                if self.session.on_puback(ack.packet_id).is_err() {
                    tracing::debug!(client_id = %self.client_id, id = ack.packet_id, "PUBACK for an unknown packet id");
                }
                self.flush_session()
            }
            Packet::PubRec(rec) => {
                let refused = rec.reason_code.is_error();
                match self.session.on_pubrec(rec.packet_id, refused) {
                    Ok(Some(rel)) => self.send_transmit(rel)?,
                    Ok(None) => {}
                    Err(_) => self.send(
                        stream,
                        Packet::PubRel(PublishResponse {
                            packet_id: rec.packet_id,
                            reason_code: ReasonCode::PACKET_IDENTIFIER_NOT_FOUND,
                            properties: Properties::default(),
                        }),
                    )?,
                }
                self.flush_session()
            }
            Packet::PubComp(comp) => {
                let _ = self.session.on_pubcomp(comp.packet_id);
                self.flush_session()
            }
            Packet::PubRel(rel) => {
                let reason_code = if self.session.on_pubrel(rel.packet_id) {
                    ReasonCode::SUCCESS
                } else {
                    ReasonCode::PACKET_IDENTIFIER_NOT_FOUND
                };
                self.apply_store_ops();
                self.send(
                    stream,
                    Packet::PubComp(PublishResponse {
                        packet_id: rel.packet_id,
                        reason_code,
                        properties: Properties::default(),
                    }),
                )
            }
            Packet::Subscribe(subscribe) => self.on_subscribe(stream, subscribe),
            Packet::Unsubscribe(unsubscribe) => self.on_unsubscribe(stream, unsubscribe),
            Packet::PingReq => self.send(stream, Packet::PingResp),
            Packet::Disconnect(disconnect) => Err(self.on_disconnect(disconnect)),
            Packet::Connect(_) => {
                Err(self.protocol_error("second CONNECT", ReasonCode::PROTOCOL_ERROR))
            }
            Packet::Auth(_) => Err(self.protocol_error(
                "AUTH without an authentication method",
                ReasonCode::PROTOCOL_ERROR,
            )),
            Packet::ConnAck(_) | Packet::SubAck(_) | Packet::UnsubAck(_) | Packet::PingResp => {
                Err(self.protocol_error(
                    "server-to-client packet sent by the client",
                    ReasonCode::PROTOCOL_ERROR,
                ))
            }
        }
    }

    async fn on_publish(&mut self, stream: u64, mut publish: Publish) -> Result<(), Close> {
        let settings = self.broker.settings();
        if let Some(alias) = publish.properties.topic_alias {
            if alias == 0 || alias > settings.topic_alias_maximum {
                return Err(self
                    .protocol_error("topic alias out of range", ReasonCode::TOPIC_ALIAS_INVALID));
            }
            if publish.topic.is_empty() {
                match self.inbound_aliases.get(&alias) {
                    Some(topic) => publish.topic = topic.clone(),
                    None => {
                        return Err(
                            self.protocol_error("unknown topic alias", ReasonCode::PROTOCOL_ERROR)
                        )
                    }
                }
            } else {
                self.inbound_aliases.insert(alias, publish.topic.clone());
            }
        }
        if validate_topic_name(&publish.topic).is_err() {
            return Err(self.protocol_error("invalid topic name", ReasonCode::TOPIC_NAME_INVALID));
        }
        let qos = publish.qos;
        let packet_id = publish.packet_id;
        if !self.take_publish_token().await {
            metrics::counter!(m::MESSAGES_DROPPED, "reason" => "rate_limited").increment(1);
            return self.refuse_publish(stream, qos, packet_id, ReasonCode::MESSAGE_RATE_TOO_HIGH);
        }
        let settings = self.broker.settings();
        if !settings.topic_limits.admits(&publish.topic) {
            metrics::counter!(m::LIMITS_HIT, "limit" => "topic_size").increment(1);
            return self.refuse_publish(stream, qos, packet_id, ReasonCode::TOPIC_NAME_INVALID);
        }
        if !settings.auth.authorize(
            self.username.as_deref(),
            &self.client_id,
            Access::Publish,
            &publish.topic,
        ) {
            metrics::counter!(m::MESSAGES_DROPPED, "reason" => "not_authorized").increment(1);
            return self.refuse_publish(stream, qos, packet_id, ReasonCode::NOT_AUTHORIZED);
        }
        if qos == QoS::ExactlyOnce {
            let id = packet_id.unwrap_or(0);
            let fresh = self.session.on_incoming_qos2(id);
            self.apply_store_ops();
            let receive_maximum = usize::from(self.broker.settings().receive_maximum);
            if fresh && self.session.incoming_qos2_len() > receive_maximum {
                return Err(self.protocol_error(
                    "more unreleased QoS 2 messages than Receive Maximum",
                    ReasonCode::RECEIVE_MAXIMUM_EXCEEDED,
                ));
            }
            if !fresh {
                return self.send(stream, Packet::PubRec(PublishResponse::success(id)));
            }
        }
        metrics::counter!(m::MESSAGES_PUBLISHED).increment(1);
        let message = Message::from_publish(publish, Some(self.client_id.to_string()), now_ms());
        let mut outcome = match self.broker.publish_from_client(Arc::new(message)).await {
            Ok(outcome) => outcome,
            Err(e) => {
                // The retained message could not be committed (this node
                // is cut off from the cluster's majority): refuse the
                // PUBLISH rather than acknowledge what no other node has.
                tracing::warn!(client_id = %self.client_id, "retained PUBLISH refused: {e}");
                metrics::counter!(m::MESSAGES_DROPPED, "reason" => "cluster_unavailable")
                    .increment(1);
                let Some(packet_id) = packet_id else {
                    return Ok(());
                };
                if self.version == ProtocolVersion::V311 {
                    // 3.1.1 has no negative PUBACK: closing is the only way
                    // not to acknowledge.
                    return Err(
                        self.protocol_error("cluster unavailable", ReasonCode::UNSPECIFIED_ERROR)
                    );
                }
                let response = PublishResponse {
                    packet_id,
                    reason_code: ReasonCode::UNSPECIFIED_ERROR,
                    properties: Properties {
                        reason_string: Some(format!("cluster unavailable: {e}")),
                        ..Properties::default()
                    },
                };
                let packet = match qos {
                    QoS::AtLeastOnce => Packet::PubAck(response),
                    _ => Packet::PubRec(response),
                };
                return self.send(stream, packet);
            }
        };
        let Some(packet_id) = packet_id else {
            return Ok(());
        };
        // A persistent session's unreleased QoS 2 packet ID must be durable
        // before PUBREC, or a resend after a restart would be routed twice.
        // The acknowledgement waits for a flush shared with every other
        // write meanwhile (in order with the earlier acknowledgements), not
        // for a flush of its own before the next packet is read.
        let qos2_state = qos == QoS::ExactlyOnce && self.session.is_persistent();
        if outcome.persisted || qos2_state {
            outcome.durable.push(self.broker.flushed());
        }
        let reason_code = if outcome.matched == 0 {
            ReasonCode::NO_MATCHING_SUBSCRIBERS
        } else {
            ReasonCode::SUCCESS
        };
        let response = PublishResponse {
            packet_id,
            reason_code,
            properties: Properties::default(),
        };
        let packet = match qos {
            QoS::AtLeastOnce => Packet::PubAck(response),
            _ => Packet::PubRec(response),
        };
        let durable = std::mem::take(&mut outcome.durable);
        if durable.is_empty() && self.pending_acks.is_empty() {
            return self.send(stream, packet);
        }
        // Acknowledged once the cluster committed the message to the
        // durable queues it reached (and after every earlier one).
        self.pending_acks.push_back(PendingAck {
            stream,
            packet,
            committed: Box::pin(crate::cluster::durable::all_committed(
                durable,
                DURABLE_ACK_TIMEOUT,
            )),
            wait: ClusterWait::start("publish"),
        });
        Ok(())
    }

    /// Whether this PUBLISH is within `max_publish_rate`. Over it, MQTT 5
    /// clients are told (0x96, or QoS 0 dropped); a 3.1.1 client has no
    /// way to hear it, so its connection waits for the next token instead
    /// (the client slows down, nothing is lost).
    async fn take_publish_token(&mut self) -> bool {
        let Some(bucket) = &mut self.publish_bucket else {
            return true;
        };
        let now = std::time::Instant::now();
        if bucket.try_take(now) {
            return true;
        }
        metrics::counter!(m::LIMITS_HIT, "limit" => "publish_rate").increment(1);
        if self.version == ProtocolVersion::V5 {
            return false;
        }
        tokio::time::sleep(bucket.wait(now)).await;
        // The wait found the token; a clock that says otherwise admits it
        // anyway rather than refuse what 3.1.1 cannot hear refused.
        let _ = bucket.try_take(std::time::Instant::now());
        true
    }

    /// Drops a PUBLISH the broker does not take: QoS 0 is told nothing,
    /// 5.0 gets `code` in PUBACK/PUBREC, 3.1.1 (which has no negative
    /// acknowledgement) a positive one (§3.3.5). Nothing is stored, so a
    /// 3.1.1 PUBREL that follows gets its PUBCOMP all the same.
    fn refuse_publish(
        &mut self,
        stream: u64,
        qos: QoS,
        packet_id: Option<u16>,
        code: ReasonCode,
    ) -> Result<(), Close> {
        let Some(packet_id) = packet_id else {
            return Ok(());
        };
        let response = if self.version == ProtocolVersion::V5 {
            PublishResponse {
                packet_id,
                reason_code: code,
                properties: Properties::default(),
            }
        } else {
            PublishResponse::success(packet_id)
        };
        let packet = match qos {
            QoS::AtLeastOnce => Packet::PubAck(response),
            _ => Packet::PubRec(response),
        };
        self.send(stream, packet)
    }

    /// The oldest pending acknowledgement's commits are done: send it (or,
    /// if they failed, refuse the PUBLISH: 0x80 for 5.0, closing for
    /// 3.1.1, which has no negative acknowledgement), then every following
    /// one that is ready too.
    fn on_committed(&mut self, committed: bool) -> Result<(), Close> {
        if let Some(pending) = self.pending_acks.pop_front() {
            self.send_acknowledgement(pending, committed)?;
        }
        while let Some((pending, committed)) =
            pop_settled(&mut self.pending_acks, |p| &mut p.committed)
        {
            self.send_acknowledgement(pending, committed)?;
        }
        Ok(())
    }

    fn send_acknowledgement(&mut self, pending: PendingAck, committed: bool) -> Result<(), Close> {
        let PendingAck {
            stream,
            packet,
            wait,
            ..
        } = pending;
        wait.finish(committed);
        if committed {
            return self.send(stream, packet);
        }
        metrics::counter!(m::MESSAGES_DROPPED, "reason" => "not_durable").increment(1);
        if self.version == ProtocolVersion::V311 {
            return Err(
                self.protocol_error("message not durably queued", ReasonCode::UNSPECIFIED_ERROR)
            );
        }
        let packet = match packet {
            Packet::PubAck(r) => Packet::PubAck(refused(r.packet_id)),
            Packet::PubRec(r) => Packet::PubRec(refused(r.packet_id)),
            other => other,
        };
        self.send(stream, packet)
    }

    fn on_subscribe(&mut self, stream: u64, subscribe: Subscribe) -> Result<(), Close> {
        let identifier = match subscribe.properties.subscription_identifiers.as_slice() {
            [] => None,
            [id] => Some(*id),
            _ => {
                return Err(self.protocol_error(
                    "several subscription identifiers",
                    ReasonCode::PROTOCOL_ERROR,
                ))
            }
        };
        let mut reason_codes = Vec::with_capacity(subscribe.filters.len());
        let mut retained = Vec::new();
        let mut commits = Vec::new();
        let filters: Vec<String> = subscribe.filters.iter().map(|(f, _)| f.clone()).collect();
        for (filter, options) in subscribe.filters {
            if validate_topic_filter(&filter).is_err() {
                reason_codes.push(ReasonCode::TOPIC_FILTER_INVALID);
                continue;
            }
            let limits = self.broker.settings().topic_limits;
            if !limits.admits(&filter) {
                metrics::counter!(m::LIMITS_HIT, "limit" => "topic_size").increment(1);
                reason_codes.push(ReasonCode::TOPIC_FILTER_INVALID);
                continue;
            }
            if !self.broker.settings().auth.authorize(
                self.username.as_deref(),
                &self.client_id,
                Access::Subscribe,
                &filter,
            ) {
                // 0x87 (3.1.1: 0x80, failure) for this filter alone.
                reason_codes.push(ReasonCode::NOT_AUTHORIZED);
                continue;
            }
            let held = self.session.subscriptions().len();
            if !self.session.subscriptions().contains_key(&filter)
                && !limits.admits_another_subscription(held)
            {
                metrics::counter!(m::LIMITS_HIT, "limit" => "subscriptions").increment(1);
                reason_codes.push(ReasonCode::QUOTA_EXCEEDED);
                continue;
            }
            let shared = parse_shared(&filter).is_some();
            if shared && options.no_local {
                return Err(self.protocol_error(
                    "No Local on a shared subscription",
                    ReasonCode::PROTOCOL_ERROR,
                ));
            }
            let subscription = Subscription {
                options,
                identifier,
                stream,
                reads_all_under: None,
            };
            let existed = self.session.subscribe(filter.clone(), subscription);
            if let Some(commit) =
                self.broker
                    .add_subscription(&filter, &self.client_id, subscription)
            {
                commits.push((reason_codes.len(), filter.clone(), commit));
            }
            reason_codes.push(ReasonCode(options.qos as u8));
            let send_retained = !shared
                && match options.retain_handling {
                    RetainHandling::SendAtSubscribe => true,
                    RetainHandling::SendIfNew => !existed,
                    RetainHandling::DoNotSend => false,
                };
            if send_retained {
                retained.push((reason_codes.len() - 1, filter, options, identifier));
            }
        }
        // The reader announced these filters; a refused one's announcement
        // goes with what it held.
        for (filter, code) in filters.iter().zip(&reason_codes) {
            if code.is_error() {
                self.broker.discard_announced(&self.client_id, filter);
            }
        }
        // The new subscriptions deliver on this node already. In a cluster,
        // SUBACK waits until each new filter is routed to this node, so that
        // a publish on any node after the SUBACK reaches it; a persistent
        // session's subscriptions must also be on disk before SUBACK. The
        // connection serves on while it waits.
        let flushed = if self.session.is_persistent() {
            self.broker.persist_session(&self.cell, &self.session, None);
            Some(self.broker.flushed())
        } else {
            None
        };
        let routed: Vec<(usize, String)> = commits
            .iter()
            .map(|(index, filter, _)| (*index, filter.clone()))
            .collect();
        let pending = PendingSubscribe {
            stream,
            packet_id: subscribe.packet_id,
            reason_codes,
            retained,
            routed,
            settled: Box::pin(subscribe_settled(
                commits.into_iter().map(|(_, _, commit)| commit).collect(),
                flushed,
            )),
            wait: ClusterWait::start("subscribe"),
        };
        self.pending_subscribes.push_back(pending);
        // Answered at once when there is nothing to wait for.
        self.answer_settled_subscribes()
    }

    /// The oldest pending SUBSCRIBE settled: answer it, and every later one
    /// that has settled too.
    fn on_subscribe_settled(&mut self, settled: SubscribeSettled) -> Result<(), Close> {
        if let Some(pending) = self.pending_subscribes.pop_front() {
            self.finish_subscribe(pending, settled)?;
        }
        self.answer_settled_subscribes()
    }

    /// Answers the pending SUBSCRIBEs at the front that have settled.
    fn answer_settled_subscribes(&mut self) -> Result<(), Close> {
        while let Some((pending, settled)) =
            pop_settled(&mut self.pending_subscribes, |p| &mut p.settled)
        {
            self.finish_subscribe(pending, settled)?;
        }
        Ok(())
    }

    /// Sends the SUBACK of a settled SUBSCRIBE: a filter the cluster could
    /// not route in time is refused (0x80, with a reason string) and
    /// removed again; then the retained messages of the granted filters, as
    /// they are now.
    fn finish_subscribe(
        &mut self,
        pending: PendingSubscribe,
        settled: SubscribeSettled,
    ) -> Result<(), Close> {
        let PendingSubscribe {
            stream,
            packet_id,
            mut reason_codes,
            mut retained,
            routed,
            wait,
            ..
        } = pending;
        let all_routed = settled.routed.iter().all(|ok| *ok);
        wait.finish(all_routed && settled.flushed);
        if !settled.flushed {
            tracing::error!(client_id = %self.client_id, "could not flush the data store");
            return Err(self.protocol_error("data store failure", ReasonCode::UNSPECIFIED_ERROR));
        }
        let mut properties = Properties::default();
        if !all_routed {
            for ((index, filter), ok) in routed.iter().zip(&settled.routed) {
                if *ok {
                    continue;
                }
                tracing::warn!(client_id = %self.client_id, %filter, "subscription refused: the cluster did not commit its route");
                self.session.unsubscribe(filter);
                self.broker.remove_subscription(filter, &self.client_id);
                reason_codes[*index] = ReasonCode::UNSPECIFIED_ERROR;
                retained.retain(|(i, ..)| i != index);
            }
            if self.session.is_persistent() {
                self.broker.persist_session(&self.cell, &self.session, None);
            }
            if self.version == ProtocolVersion::V5 {
                properties.reason_string = Some(
                    "the cluster did not route the subscription in time; subscribe again".into(),
                );
            }
        }
        self.send(
            stream,
            Packet::SubAck(SubAck {
                packet_id,
                reason_codes,
                properties,
            }),
        )?;
        let now = now_ms();
        let acl = self.broker.settings().auth.acl();
        for (_, filter, options, identifier) in retained {
            for message in self.broker.retained_matching(&filter, now) {
                if !acl.is_empty() && !self.cell.may_read(&acl, &message.topic) {
                    metrics::counter!(m::ACL_DENIED, "access" => "read").increment(1);
                    continue;
                }
                let delivery = Delivery {
                    seq: self.cell.next_seq(),
                    qos: message.qos.min(options.qos),
                    message,
                    retain: true,
                    subscription_ids: identifier.into_iter().collect(),
                    stream,
                    packet_id: None,
                };
                self.broker.persist_delivery(&self.cell, &delivery);
                self.broker
                    .enqueue_into(&self.cell, &mut self.session, delivery);
            }
        }
        self.flush_session()
    }

    fn on_unsubscribe(&mut self, stream: u64, unsubscribe: Unsubscribe) -> Result<(), Close> {
        let mut reason_codes = Vec::with_capacity(unsubscribe.filters.len());
        for filter in &unsubscribe.filters {
            if self.session.unsubscribe(filter) {
                self.broker.remove_subscription(filter, &self.client_id);
                reason_codes.push(ReasonCode::SUCCESS);
            } else {
                reason_codes.push(ReasonCode::NO_SUBSCRIPTION_EXISTED);
            }
        }
        if self.session.is_persistent() {
            self.broker.persist_session(&self.cell, &self.session, None);
        }
        self.send(
            stream,
            Packet::UnsubAck(UnsubAck {
                packet_id: unsubscribe.packet_id,
                reason_codes,
                properties: Properties::default(),
            }),
        )
    }

    fn on_disconnect(&mut self, disconnect: Disconnect) -> Close {
        if let Some(expiry) = disconnect.properties.session_expiry_interval {
            if self.session.expiry_interval() == 0 && expiry > 0 {
                return self.protocol_error(
                    "session expiry set on DISCONNECT after 0 on CONNECT",
                    ReasonCode::PROTOCOL_ERROR,
                );
            }
            self.session
                .set_expiry_interval(expiry.min(self.broker.settings().max_session_expiry));
        }
        if disconnect.reason_code != ReasonCode::DISCONNECT_WITH_WILL_MESSAGE {
            self.will = None;
        }
        Close::Silently
    }
}

/// How long SUBACK waits for the cluster to route a new filter (a little
/// over the cluster's propose timeout).
const ROUTE_COMMIT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(6);

/// A Server Reference for a client refused with 0x88 or 0x89: in a
/// cluster, over QUIC (the addresses members publish), the other members.
fn other_members(broker: &Broker, link: &Link) -> Option<String> {
    match (broker.cluster(), link.transport) {
        (Some(cluster), "quic") => cluster.server_reference(),
        _ => None,
    }
}

fn is_publish(inbound: &Inbound) -> bool {
    matches!(inbound, Inbound::Packet { packet, .. } if matches!(**packet, Packet::Publish(_)))
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// Waits for the route commits of a SUBSCRIBE (each until one deadline)
/// and for the store flush that makes it durable.
async fn subscribe_settled(
    commits: Vec<RouteCommit>,
    flushed: Option<oneshot::Receiver<bool>>,
) -> SubscribeSettled {
    let deadline = Instant::now() + ROUTE_COMMIT_TIMEOUT;
    let mut routed = Vec::with_capacity(commits.len());
    for commit in commits {
        routed.push(matches!(
            tokio::time::timeout_at(deadline, commit).await,
            Ok(Ok(Ok(())))
        ));
    }
    let flushed = match flushed {
        Some(rx) => matches!(rx.await, Ok(true)),
        None => true,
    };
    SubscribeSettled { routed, flushed }
}

/// The front of `queue` with its outcome, if its wait has ended. Polled
/// with a no-op waker (the select loop polls the front with the real one);
/// a settled entry is taken out at once, so its future is never polled
/// again.
fn pop_settled<T, O>(
    queue: &mut VecDeque<T>,
    wait: fn(&mut T) -> &mut Pin<Box<dyn Future<Output = O> + Send>>,
) -> Option<(T, O)> {
    let front = queue.front_mut()?;
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    let std::task::Poll::Ready(outcome) = wait(front).as_mut().poll(&mut cx) else {
        return None;
    };
    queue.pop_front().map(|entry| (entry, outcome))
}

/// Waits for the oldest pending SUBSCRIBE to settle.
async fn next_subscribe(pending: &mut VecDeque<PendingSubscribe>) -> SubscribeSettled {
    match pending.front_mut() {
        Some(front) => front.settled.as_mut().await,
        None => std::future::pending().await,
    }
}

/// Waits for the oldest pending acknowledgement's commits.
async fn next_commit(pending: &mut VecDeque<PendingAck>) -> bool {
    match pending.front_mut() {
        Some(front) => front.committed.as_mut().await,
        None => std::future::pending().await,
    }
}

/// A PUBACK/PUBREC refusing a message the cluster could not queue
/// durably.
fn refused(packet_id: u16) -> PublishResponse {
    PublishResponse {
        packet_id,
        reason_code: ReasonCode::UNSPECIFIED_ERROR,
        properties: Properties {
            reason_string: Some(
                "not durably queued: the cluster could not commit it; publish again".into(),
            ),
            ..Properties::default()
        },
    }
}
