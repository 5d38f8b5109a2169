//! State shared by every stream and handle of one client connection.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use quicmq_proto::mqtt::{
    encode, ConnAck, Disconnect, Packet, ProtocolVersion, ReasonCode, MAX_PACKET_SIZE,
};
use tokio::sync::{oneshot, Notify};

use super::alias::InboundAliases;
use super::closer::Closer;
use super::error::ClientError;
use super::keepalive::KeepAlive;
use super::options::{ClientOptions, Transport};
use super::requests::{RequestKind, Requests, Response};
use super::stream::StreamShared;

/// Completes a request with the server's answer or an error.
pub(crate) type Waiter = oneshot::Sender<Result<Response, ClientError>>;
/// Receives the round trip of a PINGREQ.
pub(crate) type PingWaiter = oneshot::Sender<Duration>;

/// How long to wait for a DISCONNECT sent because the server misbehaved to
/// be written before the connection is closed.
const FAIL_LINGER: Duration = Duration::from_millis(500);

/// The protocol state of the connection (sans-IO parts), behind one lock.
pub(crate) struct ConnState {
    /// Requests waiting for acknowledgement, packet ids, send quota.
    pub(crate) requests: Requests<Waiter>,
    /// Topic aliases set by the server.
    pub(crate) aliases: InboundAliases,
    /// Keep-alive timer and pings in flight.
    pub(crate) keep_alive: KeepAlive<PingWaiter>,
}

/// The transport under the MQTT connection.
pub(crate) enum Link {
    /// QUIC: the endpoint (for rebinding) and the connection.
    Quic {
        endpoint: quinn::Endpoint,
        connection: quinn::Connection,
    },
    /// TCP or TLS: one byte stream, owned by the stream tasks.
    Stream,
}

/// One MQTT connection.
pub(crate) struct Conn {
    /// Protocol version of the connection.
    pub(crate) version: ProtocolVersion,
    /// Transport.
    pub(crate) transport: Transport,
    /// The server's CONNACK.
    pub(crate) connack: ConnAck,
    /// Largest packet the server accepts.
    pub(crate) max_send_packet: u32,
    /// Largest packet the client accepts.
    pub(crate) max_recv_packet: u32,
    /// Highest topic alias the server accepts from the client.
    pub(crate) server_topic_alias_maximum: u16,
    /// Capacity of each handle's event queue.
    pub(crate) event_capacity: usize,
    /// QUIC connection or byte stream.
    pub(crate) link: Link,
    /// Set when the connection is closed.
    pub(crate) closed: Closer,
    /// The client sent DISCONNECT: the server closing is expected.
    pub(crate) disconnecting: AtomicBool,
    /// The control stream (the only stream for TCP/TLS).
    pub(crate) control: Arc<StreamShared>,
    state: Mutex<ConnState>,
    ack_order: Mutex<()>,
    quota: Notify,
    next_stream: AtomicU64,
}

impl Conn {
    /// A connection that has received `connack` for `opts`.
    pub(crate) fn new(
        opts: &ClientOptions,
        connack: ConnAck,
        link: Link,
        control: Arc<StreamShared>,
    ) -> Conn {
        let props = &connack.properties;
        let keep_alive = props.server_keep_alive.unwrap_or(opts.keep_alive);
        let receive_maximum = props.receive_maximum.unwrap_or(u16::MAX);
        let max_send_packet = props.maximum_packet_size.unwrap_or(MAX_PACKET_SIZE);
        let server_topic_alias_maximum = props.topic_alias_maximum.unwrap_or(0);
        let alias_maximum = match opts.protocol {
            ProtocolVersion::V5 => opts.topic_alias_maximum.unwrap_or(0),
            ProtocolVersion::V311 => 0,
        };
        Conn {
            version: opts.protocol,
            transport: opts.transport,
            max_send_packet,
            max_recv_packet: opts.maximum_packet_size.unwrap_or(MAX_PACKET_SIZE),
            server_topic_alias_maximum,
            event_capacity: opts.event_capacity.max(1),
            link,
            closed: Closer::new(),
            disconnecting: AtomicBool::new(false),
            control,
            state: Mutex::new(ConnState {
                requests: Requests::new(receive_maximum),
                aliases: InboundAliases::new(alias_maximum),
                keep_alive: KeepAlive::new(
                    Duration::from_secs(u64::from(keep_alive)),
                    Instant::now(),
                ),
            }),
            ack_order: Mutex::new(()),
            quota: Notify::new(),
            next_stream: AtomicU64::new(1),
            connack,
        }
    }

    /// The protocol state.
    pub(crate) fn lock(&self) -> MutexGuard<'_, ConnState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Held while a delivered message's acknowledgement is queued, and
    /// while DISCONNECT is queued: a message the application has seen is
    /// acknowledged before the client disconnects.
    pub(crate) fn ack_order(&self) -> MutexGuard<'_, ()> {
        self.ack_order
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The index for a new data stream (the control stream is 0).
    pub(crate) fn next_stream_index(&self) -> u64 {
        self.next_stream.fetch_add(1, Ordering::Relaxed)
    }

    /// The QUIC connection, if any.
    pub(crate) fn quic(&self) -> Option<&quinn::Connection> {
        match &self.link {
            Link::Quic { connection, .. } => Some(connection),
            Link::Stream => None,
        }
    }

    /// Encodes `packet`, refusing packets above the server's maximum size.
    pub(crate) fn encode(&self, packet: &Packet) -> Result<Bytes, ClientError> {
        let mut buf = BytesMut::new();
        encode(packet, self.version, &mut buf)?;
        if buf.len() > self.max_send_packet as usize {
            return Err(ClientError::PacketTooLarge {
                size: buf.len(),
                max: self.max_send_packet,
            });
        }
        Ok(buf.freeze())
    }

    /// The error for operations on a closed connection.
    pub(crate) fn closed_error(&self) -> ClientError {
        ClientError::Closed(self.closed.reason().flatten())
    }

    /// Starts a request on `stream`, waiting while the server's Receive
    /// Maximum (or the packet identifier space) is exhausted.
    pub(crate) async fn begin(
        &self,
        kind: RequestKind,
        stream: &StreamShared,
        mut waiter: Waiter,
    ) -> Result<u16, ClientError> {
        loop {
            let notified = self.quota.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                // Closing takes the same lock, so a request begun here is
                // either refused or failed by the close.
                let mut state = self.lock();
                if self.closed.is_closed() {
                    return Err(self.closed_error());
                }
                if stream.closed.is_closed() {
                    return Err(ClientError::Closed(stream.closed.reason().flatten()));
                }
                match state.requests.begin(kind, stream.index, waiter) {
                    Ok(id) => return Ok(id),
                    Err(back) => waiter = back,
                }
            }
            notified.await;
        }
    }

    /// Abandons a request that could not be sent.
    pub(crate) fn cancel(&self, packet_id: u16) {
        let cancelled = self.lock().requests.cancel(packet_id);
        if cancelled.is_some() {
            self.quota.notify_waiters();
        }
    }

    /// Completes a request (called by the stream reader).
    pub(crate) fn complete(&self, waiter: Waiter, response: Response) {
        let _ = waiter.send(Ok(response));
        self.quota.notify_waiters();
    }

    /// Sends a PINGREQ on the control stream; `waiter` gets the round trip.
    pub(crate) fn send_ping(&self, waiter: Option<PingWaiter>) -> Result<(), ClientError> {
        let bytes = self.encode(&Packet::PingReq)?;
        let mut state = self.lock();
        if self.closed.is_closed() {
            return Err(self.closed_error());
        }
        // Queue the waiter and the PINGREQ under one lock so that pings are
        // answered in the order they are written.
        state.keep_alive.on_ping(Instant::now(), waiter);
        self.control.send(bytes, None)
    }

    /// Closes the connection: fails every request and ping in flight and,
    /// for QUIC, closes the QUIC connection. Idempotent; the first reason
    /// is kept.
    pub(crate) fn close(&self, reason: Option<String>) {
        let (waiters, pings) = {
            let mut state = self.lock();
            if !self.closed.close(reason.clone()) {
                return;
            }
            (state.requests.drain(), state.keep_alive.drain())
        };
        match &reason {
            Some(reason) => tracing::debug!(%reason, "MQTT connection closed"),
            None => tracing::debug!("MQTT connection closed"),
        }
        for waiter in waiters {
            let _ = waiter.send(Err(ClientError::Closed(reason.clone())));
        }
        drop(pings);
        self.quota.notify_waiters();
        if let Link::Quic { connection, .. } = &self.link {
            let code = if reason.is_some() { 1u32 } else { 0u32 };
            let text = reason.as_deref().unwrap_or("disconnect");
            connection.close(code.into(), text.as_bytes());
        }
    }

    /// Closes one data stream (not the control stream): fails its requests.
    pub(crate) fn close_stream(&self, stream: &StreamShared, reason: Option<String>) {
        let waiters = {
            let mut state = self.lock();
            if !stream.closed.close(reason.clone()) {
                return;
            }
            state.requests.fail_stream(stream.index)
        };
        for waiter in waiters {
            let _ = waiter.send(Err(ClientError::Closed(reason.clone())));
        }
        self.quota.notify_waiters();
    }

    /// The server broke the protocol: tell it with DISCONNECT (MQTT 5.0)
    /// and close the connection.
    pub(crate) async fn fail(&self, reason_code: ReasonCode, message: String) {
        if self.closed.is_closed() {
            return;
        }
        tracing::warn!(%message, "closing the MQTT connection");
        if self.version == ProtocolVersion::V5 {
            if let Ok(bytes) = self.encode(&Packet::Disconnect(Disconnect::new(reason_code))) {
                let (tx, rx) = oneshot::channel();
                if self.control.send(bytes, Some(tx)).is_ok() {
                    let _ = tokio::time::timeout(FAIL_LINGER, rx).await;
                }
            }
        }
        self.close(Some(format!("protocol violation by the server: {message}")));
    }
}

/// Owned by the handles of a connection: when the last one is dropped the
/// connection closes.
pub(crate) struct ConnGuard(pub(crate) Arc<Conn>);

impl Drop for ConnGuard {
    fn drop(&mut self) {
        self.0.close(None);
    }
}
