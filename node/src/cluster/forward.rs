//! Publish forwarding between nodes (the `Forward` service of
//! `cluster.proto`).
//!
//! - [`Forwarder`]: per peer, a bounded queue and a task that keeps one
//!   long-lived bidirectional stream open to the peer, sends the queue in
//!   batches, and keeps each batch until the peer acknowledges it (resent
//!   after a reconnection; the peer skips batches it already handled). A
//!   QoS 1/2 message can carry a completion: told `true` once the peer
//!   acknowledged its batch as complete, `false` otherwise.
//! - [`ForwardService`]: the receiving side; delivers each forwarded
//!   message to the local sessions the origin picked this node for, waits
//!   until deliveries to persistent sessions are committed to their
//!   durable queues, then acknowledges the batch (`incomplete` when one
//!   could not be).

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use quicmq_proto::cluster::v1::{
    forward_client::ForwardClient, forward_request, forward_response, forward_server,
    BarrierRequest, BarrierResponse, ForwardAck, ForwardBatch, ForwardHello, ForwardRequest,
    ForwardResponse, ForwardWelcome, ForwardedPublish, Qos, UserProperty,
};
use quicmq_proto::mqtt::{Properties, QoS};
use quicmq_raft::{ClusterNode, NodeId};
use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::Stream;
use tonic::{Request, Response, Status, Streaming};

use crate::broker::{now_ms, Broker, Message};

/// A boxed completion (whether a forwarded batch is durably queued).
type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// The longest a route barrier waits on this node, milliseconds.
const BARRIER_MAX_WAIT_MS: u64 = 5_000;

/// Messages waiting for one peer before new ones are dropped.
const PEER_QUEUE: usize = 65_536;
/// Publishes per batch at most.
const BATCH_MAX: usize = 512;
/// Batches sent and not yet acknowledged, per peer, at most.
const UNACKED_MAX: usize = 64;
/// A peer unreachable for this long is taken for dead: what waits for it
/// fails (the publishers get PUBACK 0x80 now, not at the durable timeout)
/// and is not sent again. Its sessions resume on other nodes, and new
/// routes send their messages there.
const PEER_DOWN_AFTER: Duration = Duration::from_secs(1);

/// Sends published messages to peers.
pub struct Forwarder {
    node: ClusterNode,
    incarnation: u64,
    peers: Mutex<HashMap<NodeId, PeerQueue>>,
}

/// A message for a peer and who waits for its acknowledgement.
type Outgoing = (ForwardedPublish, Option<oneshot::Sender<bool>>);

/// A batch sent and not yet acknowledged, with the completions of its
/// messages.
struct Unacked {
    batch: ForwardBatch,
    done: Vec<oneshot::Sender<bool>>,
}

impl Unacked {
    fn complete(self, ok: bool) {
        for done in self.done {
            let _ = done.send(ok);
        }
    }
}

/// How long a durable commit of forwarded deliveries may take before the
/// batch is acknowledged as incomplete.
const DURABLE_TIMEOUT: Duration = Duration::from_secs(8);

/// Longest a received batch waits for this node to apply the entry its
/// sender routed it by.
const ROUTED_WAIT: Duration = Duration::from_secs(1);

struct PeerQueue {
    tx: mpsc::Sender<Outgoing>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for PeerQueue {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Forwarder {
    /// A forwarder for this node.
    pub fn new(node: ClusterNode) -> Forwarder {
        Forwarder {
            node,
            incarnation: now_ms(),
            peers: Mutex::new(HashMap::new()),
        }
    }

    /// Queues `publish` for `peer` (dropped, and counted, when the peer's
    /// queue is full). `done`, if given, learns whether the peer
    /// acknowledged the message as delivered and durably queued (`false`
    /// when dropped, incomplete, or the peer left).
    pub fn send(
        &self,
        peer: NodeId,
        publish: ForwardedPublish,
        done: Option<oneshot::Sender<bool>>,
    ) {
        let mut peers = self.peers.lock().unwrap_or_else(|p| p.into_inner());
        let queue = peers.entry(peer).or_insert_with(|| {
            let (tx, rx) = mpsc::channel(PEER_QUEUE);
            let task = tokio::spawn(run_peer(self.node.clone(), peer, self.incarnation, rx));
            PeerQueue { tx, task }
        });
        match queue.tx.try_send((publish, done)) {
            Ok(()) => metrics::counter!("quicmq_forwarded_messages_total").increment(1),
            Err(e) => {
                if let (_, Some(done)) = e.into_inner() {
                    let _ = done.send(false);
                }
                metrics::counter!("quicmq_messages_dropped_total", "reason" => "forward_queue_full")
                    .increment(1);
            }
        }
    }

    /// A member changed: forget the stream of one that left or is down
    /// (what waits on it fails now instead of at its timeout; a member
    /// that comes back gets a new stream with the next message).
    pub fn member_changed(&self, node: NodeId) {
        let gone = self.node.shared().read(|s| {
            s.members()
                .get(node)
                .is_none_or(|m| !m.state.is_reachable())
        });
        if gone {
            let mut peers = self.peers.lock().unwrap_or_else(|p| p.into_inner());
            peers.remove(&node);
        }
    }
}

/// The forwarding stream to one peer, reconnected until the forwarder
/// drops it.
async fn run_peer(
    node: ClusterNode,
    peer: NodeId,
    incarnation: u64,
    mut queue: mpsc::Receiver<Outgoing>,
) {
    let mut state = PeerState {
        unacked: VecDeque::new(),
        next_seq: 1,
        down_since: None,
        peer_incarnation: None,
    };
    let mut backoff = Duration::from_millis(50);
    loop {
        let addr = node
            .shared()
            .read(|s| s.members().get(peer).map(|m| m.grpc_addr.clone()));
        let Some(addr) = addr.or_else(|| node.grpc_addr_of(peer)) else {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        match stream_to(&node, peer, &addr, incarnation, &mut queue, &mut state).await {
            Ok(()) => return,
            Err(e) => {
                metrics::counter!("quicmq_forward_reconnects_total").increment(1);
                tracing::debug!(peer, %addr, "forwarding stream ended: {e}");
            }
        }
        let since = *state
            .down_since
            .get_or_insert_with(tokio::time::Instant::now);
        if since.elapsed() >= PEER_DOWN_AFTER {
            fail_waiting(
                peer,
                FailReason::Unreachable,
                &mut state.unacked,
                &mut queue,
            );
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(1));
    }
}

/// Why what waits for a peer fails.
#[derive(Debug, Clone, Copy)]
enum FailReason {
    /// No stream to the peer for [`PEER_DOWN_AFTER`].
    Unreachable,
    /// The peer came back as a new process: what was routed to it before
    /// was routed to sessions it may no longer hold.
    Restarted,
}

impl FailReason {
    fn label(self) -> &'static str {
        match self {
            FailReason::Unreachable => "peer_unreachable",
            FailReason::Restarted => "peer_restarted",
        }
    }
}

/// Fails everything sent to or queued for a peer.
fn fail_waiting(
    peer: NodeId,
    reason: FailReason,
    unacked: &mut VecDeque<Unacked>,
    queue: &mut mpsc::Receiver<Outgoing>,
) {
    let mut failed = 0u64;
    for batch in unacked.drain(..) {
        failed += batch.batch.publishes.len() as u64;
        batch.complete(false);
    }
    while let Ok((_, done)) = queue.try_recv() {
        failed += 1;
        if let Some(done) = done {
            let _ = done.send(false);
        }
    }
    if failed > 0 {
        tracing::warn!(
            peer,
            failed,
            reason = reason.label(),
            "forwarded messages not acknowledged: the peer was unreachable or restarted"
        );
        metrics::counter!("quicmq_messages_dropped_total", "reason" => reason.label())
            .increment(failed);
    }
}

/// What the stream to one peer keeps across reconnections.
struct PeerState {
    /// Sent, not acknowledged (resent on the next stream).
    unacked: VecDeque<Unacked>,
    next_seq: u64,
    /// Since when no stream to the peer has been up (`None`: one is).
    down_since: Option<tokio::time::Instant>,
    /// The peer process's incarnation as its last welcome named it.
    peer_incarnation: Option<u64>,
}

/// One forwarding stream: hello, resend what the peer has not handled,
/// then batches out and acknowledgements in. `Ok` when the queue closed.
async fn stream_to(
    node: &ClusterNode,
    peer: NodeId,
    addr: &str,
    incarnation: u64,
    queue: &mut mpsc::Receiver<Outgoing>,
    state: &mut PeerState,
) -> Result<(), String> {
    let PeerState {
        unacked,
        next_seq,
        down_since,
        peer_incarnation,
    } = state;
    let channel = node.channels().get(addr).map_err(|e| e.to_string())?;
    let mut client = ForwardClient::new(channel)
        .max_decoding_message_size(quicmq_raft::network::MAX_MESSAGE_SIZE)
        .max_encoding_message_size(quicmq_raft::network::MAX_MESSAGE_SIZE);
    let (out_tx, out_rx) = mpsc::channel::<ForwardRequest>(UNACKED_MAX + 2);
    let hello = ForwardRequest {
        frame: Some(forward_request::Frame::Hello(ForwardHello {
            cluster_id: node.cluster_id().to_owned(),
            from_node_id: node.node_id(),
            to_node_id: peer,
            incarnation,
        })),
    };
    out_tx.send(hello).await.map_err(|e| e.to_string())?;
    let mut inbound = client
        .open(ReceiverStream::new(out_rx))
        .await
        .map_err(|s| format!("{:?}: {}", s.code(), s.message()))?
        .into_inner();
    let welcome = match inbound.message().await.map_err(|s| s.to_string())? {
        Some(ForwardResponse {
            frame: Some(forward_response::Frame::Welcome(w)),
        }) => w,
        _ => return Err("no welcome".into()),
    };
    *down_since = None;
    // A peer that restarted lost its view of what it was sent, and the
    // sessions these messages were routed to may have moved while it was
    // down (its copies are dropped when it comes back): delivering them
    // there would acknowledge messages no session received.
    if welcome.incarnation != 0 {
        if peer_incarnation.is_some_and(|known| known != welcome.incarnation) {
            fail_waiting(peer, FailReason::Restarted, unacked, queue);
        }
        *peer_incarnation = Some(welcome.incarnation);
    }
    // Handled before the stream broke, but whether completely is unknown:
    // not acknowledged as complete.
    while unacked
        .front()
        .is_some_and(|b| b.batch.seq <= welcome.last_seq)
    {
        if let Some(b) = unacked.pop_front() {
            b.complete(false);
        }
    }
    for b in unacked.iter() {
        send_batch(&out_tx, b.batch.clone()).await?;
    }
    loop {
        tokio::select! {
            ack = inbound.message() => match ack.map_err(|s| s.to_string())? {
                Some(ForwardResponse { frame: Some(forward_response::Frame::Ack(ForwardAck { seq, incomplete })) }) => {
                    while unacked.front().is_some_and(|b| b.batch.seq <= seq) {
                        if let Some(b) = unacked.pop_front() {
                            // Earlier batches were acknowledged one by one;
                            // one skipped here got no answer of its own.
                            let ok = b.batch.seq == seq && !incomplete;
                            b.complete(ok);
                        }
                    }
                }
                Some(_) => return Err("unexpected frame".into()),
                None => return Err("peer closed the stream".into()),
            },
            first = queue.recv(), if unacked.len() < UNACKED_MAX => {
                let Some((first, done)) = first else { return Ok(()) };
                let mut publishes = vec![first];
                let mut waiting: Vec<oneshot::Sender<bool>> = done.into_iter().collect();
                while publishes.len() < BATCH_MAX {
                    match queue.try_recv() {
                        Ok((p, done)) => {
                            publishes.push(p);
                            waiting.extend(done);
                        }
                        Err(_) => break,
                    }
                }
                let batch = ForwardBatch { seq: *next_seq, publishes };
                *next_seq += 1;
                unacked.push_back(Unacked { batch: batch.clone(), done: waiting });
                send_batch(&out_tx, batch).await?;
            }
        }
    }
}

async fn send_batch(tx: &mpsc::Sender<ForwardRequest>, batch: ForwardBatch) -> Result<(), String> {
    metrics::counter!("quicmq_forward_batches_total").increment(1);
    tx.send(ForwardRequest {
        frame: Some(forward_request::Frame::Batch(batch)),
    })
    .await
    .map_err(|_| "stream closed".to_string())
}

/// The receiving side of forwarding.
#[derive(Clone)]
pub struct ForwardService {
    broker: Arc<OnceLock<Arc<Broker>>>,
    cluster_id: String,
    node_id: NodeId,
    /// Last batch handled per (sender, incarnation).
    handled: Arc<Mutex<HashMap<(NodeId, u64), u64>>>,
    /// This process's incarnation, named in every welcome.
    incarnation: u64,
}

impl ForwardService {
    /// A service for node `node_id` of `cluster_id`; it answers
    /// `UNAVAILABLE` until `broker` is set.
    pub fn new(cluster_id: &str, node_id: NodeId, broker: Arc<OnceLock<Arc<Broker>>>) -> Self {
        ForwardService {
            broker,
            cluster_id: cluster_id.to_owned(),
            node_id,
            handled: Arc::default(),
            incarnation: rand::random::<u64>().max(1),
        }
    }
}

type ResponseStream = Pin<Box<dyn Stream<Item = Result<ForwardResponse, Status>> + Send>>;

#[tonic::async_trait]
impl forward_server::Forward for ForwardService {
    type OpenStream = ResponseStream;

    async fn barrier(
        &self,
        request: Request<BarrierRequest>,
    ) -> Result<Response<BarrierResponse>, Status> {
        let request = request.into_inner();
        if request.cluster_id != self.cluster_id {
            return Err(Status::permission_denied(format!(
                "cluster ID {:?} is not this node's ({:?})",
                request.cluster_id, self.cluster_id
            )));
        }
        let Some(link) = self.broker.get().and_then(|b| b.cluster().cloned()) else {
            return Err(Status::unavailable("this node is not serving yet"));
        };
        let timeout = Duration::from_millis(request.timeout_ms.min(BARRIER_MAX_WAIT_MS));
        let (routed_index, reached) = link.wait_routed(request.index, timeout).await;
        Ok(Response::new(BarrierResponse {
            routed_index,
            reached,
        }))
    }

    async fn open(
        &self,
        request: Request<Streaming<ForwardRequest>>,
    ) -> Result<Response<ResponseStream>, Status> {
        let Some(broker) = self.broker.get().cloned() else {
            return Err(Status::unavailable("this node is not serving yet"));
        };
        let mut inbound = request.into_inner();
        let hello = match inbound.message().await? {
            Some(ForwardRequest {
                frame: Some(forward_request::Frame::Hello(h)),
            }) => h,
            _ => {
                return Err(Status::invalid_argument(
                    "a forwarding stream starts with a hello",
                ))
            }
        };
        if hello.cluster_id != self.cluster_id {
            return Err(Status::failed_precondition(format!(
                "cluster ID {:?} is not this node's cluster {:?}",
                hello.cluster_id, self.cluster_id
            )));
        }
        if hello.to_node_id != self.node_id {
            return Err(Status::failed_precondition(format!(
                "stream for node {} reached node {}",
                hello.to_node_id, self.node_id
            )));
        }
        let key = (hello.from_node_id, hello.incarnation);
        let last_seq = *self
            .handled
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
            .unwrap_or(&0);
        let (tx, rx) = mpsc::channel(UNACKED_MAX + 2);
        let welcome = ForwardResponse {
            frame: Some(forward_response::Frame::Welcome(ForwardWelcome {
                node_id: self.node_id,
                last_seq,
                incarnation: self.incarnation,
            })),
        };
        tx.send(Ok(welcome))
            .await
            .map_err(|_| Status::internal("stream closed"))?;
        let handled = self.handled.clone();
        // Batches are delivered as they come; their acknowledgements wait
        // (in order, in the acker) for the commits and the flush they need,
        // so a batch's durable queueing overlaps the next batches'.
        let (pending_tx, mut pending_rx) = mpsc::channel::<(u64, BoxFuture<bool>)>(UNACKED_MAX + 2);
        let ack_tx = tx.clone();
        tokio::spawn(async move {
            while let Some((seq, completion)) = pending_rx.recv().await {
                let incomplete = !completion.await;
                let ack = ForwardResponse {
                    frame: Some(forward_response::Frame::Ack(ForwardAck { seq, incomplete })),
                };
                if ack_tx.send(Ok(ack)).await.is_err() {
                    return;
                }
            }
        });
        tokio::spawn(async move {
            let mut last = last_seq;
            loop {
                let batch = match inbound.message().await {
                    Ok(Some(ForwardRequest {
                        frame: Some(forward_request::Frame::Batch(b)),
                    })) => b,
                    Ok(None) => return,
                    Ok(Some(_)) => {
                        let _ = tx
                            .send(Err(Status::invalid_argument("expected a batch")))
                            .await;
                        return;
                    }
                    Err(status) => {
                        tracing::debug!("forwarding stream from node {}: {status}", key.0);
                        return;
                    }
                };
                let completion: BoxFuture<bool> = if batch.seq > last {
                    if let Some(link) = broker.cluster() {
                        // Usually there already; bounded for a node that is
                        // far behind.
                        let newest = batch
                            .publishes
                            .iter()
                            .map(|p| p.routed_index.max(p.wait_index))
                            .max();
                        link.wait_routed(newest.unwrap_or(0), ROUTED_WAIT).await;
                    }
                    let completion = deliver_batch(&broker, &batch);
                    last = batch.seq;
                    handled
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .insert(key, last);
                    Box::pin(completion)
                } else {
                    // Delivered before (a resend after a reconnect).
                    Box::pin(std::future::ready(true))
                };
                if pending_tx.send((batch.seq, completion)).await.is_err() {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

/// Delivers a batch now; the returned future tells whether every delivery
/// to a persistent session was durably queued (flushed here and committed
/// to its durable queue).
fn deliver_batch(broker: &Broker, batch: &ForwardBatch) -> impl Future<Output = bool> + Send {
    let now = now_ms();
    let mut persisted = false;
    let mut durable = Vec::new();
    for publish in &batch.publishes {
        let Some(message) = from_forwarded(publish, now) else {
            metrics::counter!("quicmq_forward_rejected_total").increment(1);
            continue;
        };
        let outcome = broker.deliver_forwarded(
            Arc::new(message),
            publish.ordinary,
            &publish.shared_groups,
            publish.routed_index,
        );
        persisted |= outcome.persisted;
        durable.extend(outcome.durable);
    }
    metrics::counter!("quicmq_forward_received_total").increment(batch.publishes.len() as u64);
    if persisted {
        durable.push(broker.flushed());
    }
    crate::cluster::durable::all_committed(durable, DURABLE_TIMEOUT)
}

/// The forwarding form of a message.
pub fn to_forwarded(
    message: &Message,
    origin: NodeId,
    ordinary: bool,
    shared_groups: Vec<String>,
    routed_index: u64,
    wait_index: u64,
) -> ForwardedPublish {
    let p = &message.properties;
    ForwardedPublish {
        topic: message.topic.clone(),
        payload: message.payload.clone(),
        qos: match message.qos {
            QoS::AtMostOnce => Qos::AtMostOnce,
            QoS::AtLeastOnce => Qos::AtLeastOnce,
            QoS::ExactlyOnce => Qos::ExactlyOnce,
        }
        .into(),
        retain: message.retain,
        origin_node_id: origin,
        publisher_client_id: message.publisher.clone().unwrap_or_default(),
        payload_is_utf8: p.payload_format_indicator == Some(1),
        message_expiry_interval_s: message.remaining_expiry_secs(now_ms()),
        content_type: p.content_type.clone(),
        response_topic: p.response_topic.clone(),
        correlation_data: p.correlation_data.clone(),
        user_properties: p
            .user_properties
            .iter()
            .map(|(key, value)| UserProperty {
                key: key.clone(),
                value: value.clone(),
            })
            .collect(),
        ordinary,
        shared_groups,
        routed_index,
        wait_index,
    }
}

/// The broker's message for a forwarded one (`None` for an invalid
/// topic or QoS, which a correct peer never sends).
pub fn from_forwarded(p: &ForwardedPublish, now_ms: u64) -> Option<Message> {
    if quicmq_proto::mqtt::topic::validate_topic_name(&p.topic).is_err() {
        return None;
    }
    let qos = QoS::from_u8(u8::try_from(p.qos).ok()?)?;
    Some(Message {
        topic: p.topic.clone(),
        payload: p.payload.clone(),
        qos,
        retain: p.retain,
        properties: Properties {
            payload_format_indicator: p.payload_is_utf8.then_some(1),
            content_type: p.content_type.clone(),
            response_topic: p.response_topic.clone(),
            correlation_data: p.correlation_data.clone(),
            user_properties: p
                .user_properties
                .iter()
                .map(|u| (u.key.clone(), u.value.clone()))
                .collect(),
            ..Properties::default()
        },
        expires_at_ms: p
            .message_expiry_interval_s
            .map(|s| now_ms.saturating_add(u64::from(s) * 1000)),
        publisher: (!p.publisher_client_id.is_empty()).then(|| p.publisher_client_id.clone()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarded_form_round_trips() {
        let message = Message {
            topic: "a/b".into(),
            payload: "x".into(),
            qos: QoS::AtLeastOnce,
            retain: true,
            properties: Properties {
                payload_format_indicator: Some(1),
                content_type: Some("text/plain".into()),
                response_topic: Some("r".into()),
                correlation_data: Some("c".into()),
                user_properties: vec![("k".into(), "v".into()), ("k".into(), "w".into())],
                ..Properties::default()
            },
            expires_at_ms: None,
            publisher: Some("pub".into()),
        };
        let f = to_forwarded(&message, 3, true, vec!["$share/g/a/+".into()], 12, 14);
        assert_eq!(f.shared_groups, ["$share/g/a/+"]);
        assert_eq!((f.routed_index, f.wait_index), (12, 14));
        let back = from_forwarded(&f, 0).unwrap();
        assert_eq!(back, message);
    }

    #[test]
    fn invalid_forwarded_messages_are_refused() {
        let mut f = to_forwarded(
            &Message {
                topic: "a/+".into(),
                payload: Default::default(),
                qos: QoS::AtMostOnce,
                retain: false,
                properties: Properties::default(),
                expires_at_ms: None,
                publisher: None,
            },
            1,
            true,
            vec![],
            0,
            0,
        );
        assert!(
            from_forwarded(&f, 0).is_none(),
            "wildcards are not topic names"
        );
        f.topic = "ok".into();
        f.qos = 7;
        assert!(from_forwarded(&f, 0).is_none());
    }
}
