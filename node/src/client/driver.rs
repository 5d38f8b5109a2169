//! The background tasks of a connection: per stream a reader and a writer,
//! per connection a keep-alive timer. They hold only the connection's
//! shared state and end when it (or their stream) closes.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use quicmq_proto::mqtt::{
    decode, Packet, ProtocolVersion, Publish, PublishResponse, QoS, ReasonCode,
};
use tokio::io::AsyncReadExt;
use tokio::sync::{mpsc, oneshot};

use super::closer::CloseWatch;
use super::conn::Conn;
use super::event::Event;
use super::inbound::InboundQos2;
use super::keepalive::KeepAliveAction;
use super::requests::AckOutcome;
use super::stream::{Outgoing, StreamReader, StreamShared, StreamWriter};

/// Bytes the writer gathers from its queue into one write.
const MAX_BATCH: usize = 256 * 1024;
/// Minimum free space before a read.
const READ_CHUNK: usize = 16 * 1024;
/// How long finishing a stream waits for the peer to acknowledge it.
pub(crate) const FINISH_LINGER: Duration = Duration::from_secs(2);

/// Starts the reader and writer tasks of a stream; returns the receiving
/// end of its events. `buf` holds bytes already read from the stream.
pub(crate) fn spawn_stream(
    conn: &Arc<Conn>,
    stream: Arc<StreamShared>,
    queue: mpsc::UnboundedReceiver<Outgoing>,
    reader: StreamReader,
    writer: StreamWriter,
    buf: BytesMut,
) -> mpsc::Receiver<Event> {
    let (events_tx, events_rx) = mpsc::channel(conn.event_capacity);
    tokio::spawn(run_writer(conn.clone(), stream.clone(), queue, writer));
    let reader_task = Reader {
        conn_closed: conn.closed.watch(),
        stream_closed: stream.closed.watch(),
        conn: conn.clone(),
        stream,
        events: events_tx,
        inbound: InboundQos2::default(),
    };
    tokio::spawn(reader_task.run(reader, buf));
    events_rx
}

/// Starts the keep-alive task of a connection.
pub(crate) fn spawn_keep_alive(conn: &Arc<Conn>) {
    tokio::spawn(run_keep_alive(conn.clone()));
}

async fn run_keep_alive(conn: Arc<Conn>) {
    let mut closed = conn.closed.watch();
    loop {
        let action = conn.lock().keep_alive.poll(Instant::now());
        match action {
            KeepAliveAction::Disabled => return,
            KeepAliveAction::WaitUntil(deadline) => {
                tokio::select! {
                    _ = tokio::time::sleep_until(deadline.into()) => {}
                    _ = closed.closed() => return,
                }
            }
            KeepAliveAction::SendPing => {
                if conn.send_ping(None).is_err() {
                    return;
                }
            }
            KeepAliveAction::TimedOut => {
                conn.close(Some(
                    "keep-alive timeout: no PINGRESP from the server".into(),
                ));
                return;
            }
        }
    }
}

async fn run_writer(
    conn: Arc<Conn>,
    stream: Arc<StreamShared>,
    mut queue: mpsc::UnboundedReceiver<Outgoing>,
    mut writer: StreamWriter,
) {
    let mut conn_closed = conn.closed.watch();
    let mut stream_closed = stream.closed.watch();
    let mut chunks: Vec<Bytes> = Vec::new();
    let mut done: Vec<oneshot::Sender<()>> = Vec::new();
    loop {
        let first = tokio::select! {
            msg = queue.recv() => msg,
            _ = conn_closed.closed() => None,
            _ = stream_closed.closed() => None,
        };
        let Some(mut msg) = first else { return };
        let mut finish = None;
        let mut size = 0;
        loop {
            match msg {
                Outgoing::Frame(bytes, tx) => {
                    size += bytes.len();
                    chunks.push(bytes);
                    done.extend(tx);
                }
                Outgoing::Finish(tx) => {
                    finish = Some(tx);
                    break;
                }
            }
            if size >= MAX_BATCH {
                break;
            }
            match queue.try_recv() {
                Ok(next) => msg = next,
                Err(_) => break,
            }
        }
        if !chunks.is_empty() {
            let result = tokio::select! {
                result = writer.write_chunks(&mut chunks) => result,
                _ = conn_closed.closed() => return,
                _ = stream_closed.closed() => return,
            };
            if let Err(e) = result {
                let reason = Some(format!("write failed: {e}"));
                if stream.is_control() {
                    conn.close(reason);
                } else {
                    conn.close_stream(&stream, reason);
                }
                return;
            }
            if stream.is_control() {
                conn.lock().keep_alive.on_sent(Instant::now());
            }
            for tx in done.drain(..) {
                let _ = tx.send(());
            }
        }
        if let Some(tx) = finish {
            writer.finish(FINISH_LINGER).await;
            if let Some(tx) = tx {
                let _ = tx.send(());
            }
            return;
        }
    }
}

/// Why a reader stopped.
enum Exit {
    /// The connection or stream was closed (reason already recorded).
    Closed,
    /// The server ended the stream.
    Eof,
    /// Reading failed.
    Error(String),
}

struct Reader {
    conn: Arc<Conn>,
    stream: Arc<StreamShared>,
    events: mpsc::Sender<Event>,
    inbound: InboundQos2,
    conn_closed: CloseWatch,
    stream_closed: CloseWatch,
}

impl Reader {
    async fn run(mut self, mut reader: StreamReader, mut buf: BytesMut) {
        let exit = self.read_loop(&mut reader, &mut buf).await;
        let conn = &self.conn;
        let stream = &self.stream;
        let expected = conn.disconnecting.load(Ordering::SeqCst);
        let what = if stream.is_control() {
            "connection"
        } else {
            "stream"
        };
        let reason = match exit {
            Exit::Closed => conn
                .closed
                .reason()
                .or_else(|| stream.closed.reason())
                .flatten(),
            Exit::Eof if expected => None,
            Exit::Eof => Some(format!("{what} closed by the server")),
            Exit::Error(_) if expected => None,
            Exit::Error(e) => Some(quic_reason(conn).unwrap_or(format!("read failed: {e}"))),
        };
        if stream.is_control() {
            conn.close(reason);
            stream.closed.close(conn.closed.reason().flatten());
        } else {
            conn.close_stream(stream, reason);
        }
        // Dropping the sender (with `self`) ends the handle's event queue;
        // `recv` then reports the stream's close reason.
    }

    async fn read_loop(&mut self, reader: &mut StreamReader, buf: &mut BytesMut) -> Exit {
        let version = self.conn.version;
        let max = self.conn.max_recv_packet;
        loop {
            loop {
                match decode(buf, version, max) {
                    Ok(Some(packet)) => {
                        if let Err(exit) = self.handle(packet).await {
                            return exit;
                        }
                    }
                    Ok(None) => break,
                    Err(e) => {
                        self.conn
                            .fail(e.reason_code(), format!("invalid packet: {e}"))
                            .await;
                        return Exit::Closed;
                    }
                }
            }
            if buf.capacity() - buf.len() < READ_CHUNK {
                buf.reserve(READ_CHUNK);
            }
            tokio::select! {
                read = reader.read_buf(buf) => match read {
                    Ok(0) => return Exit::Eof,
                    Ok(_) => {}
                    Err(e) => return Exit::Error(e.to_string()),
                },
                _ = self.conn_closed.closed() => return Exit::Closed,
                _ = self.stream_closed.closed() => return Exit::Closed,
            }
        }
    }

    fn encode(&self, packet: &Packet) -> Result<Bytes, Exit> {
        self.conn.encode(packet).map_err(|e| {
            tracing::warn!(error = %e, "cannot encode an acknowledgement");
            Exit::Error(e.to_string())
        })
    }

    /// Queues a packet on this stream.
    fn send(&self, packet: &Packet) -> Result<(), Exit> {
        let bytes = self.encode(packet)?;
        self.stream.send(bytes, None).map_err(|_| Exit::Closed)
    }

    /// Hands an event to the handle (waiting while its queue is full), then
    /// queues `ack` on this stream. Both happen under the connection's
    /// ack-order lock, so an application that has seen the event and then
    /// disconnects has its DISCONNECT written after the acknowledgement.
    async fn deliver(&mut self, event: Event, ack: Option<Packet>) -> Result<(), Exit> {
        let permit = if self.events.is_closed() {
            // Nobody listens on this stream any more; drop the event.
            None
        } else {
            tokio::select! {
                permit = self.events.reserve() => permit.ok(),
                _ = self.conn_closed.closed() => return Err(Exit::Closed),
                _ = self.stream_closed.closed() => return Err(Exit::Closed),
            }
        };
        let ack = match ack {
            Some(packet) => Some(self.encode(&packet)?),
            None => None,
        };
        let _order = self.conn.ack_order();
        if let Some(permit) = permit {
            permit.send(event);
        }
        if let Some(bytes) = ack {
            self.stream.send(bytes, None).map_err(|_| Exit::Closed)?;
        }
        Ok(())
    }

    async fn violation(&self, reason_code: ReasonCode, message: String) -> Exit {
        self.conn.fail(reason_code, message).await;
        Exit::Closed
    }

    async fn handle(&mut self, packet: Packet) -> Result<(), Exit> {
        match packet {
            Packet::Publish(publish) => self.on_publish(publish).await,
            Packet::PubRel(pubrel) => {
                let id = pubrel.packet_id;
                let known = self.inbound.on_pubrel(id);
                let reason_code = if known || self.conn.version == ProtocolVersion::V311 {
                    ReasonCode::SUCCESS
                } else {
                    ReasonCode::PACKET_IDENTIFIER_NOT_FOUND
                };
                self.send(&Packet::PubComp(response(id, reason_code)))
            }
            Packet::PingResp => {
                let answered = self.conn.lock().keep_alive.on_pingresp(Instant::now());
                if let Some((rtt, Some(waiter))) = answered {
                    let _ = waiter.send(rtt);
                }
                Ok(())
            }
            Packet::Disconnect(disconnect) => {
                let mut reason = format!("server sent DISCONNECT: {}", disconnect.reason_code);
                if let Some(text) = &disconnect.properties.reason_string {
                    reason.push_str(&format!(" ({text})"));
                }
                tracing::info!(%reason, "server closes the MQTT connection");
                // Never wait for room here: the connection is ending.
                let _ = self.events.try_send(Event::Disconnect(disconnect));
                self.conn.close(Some(reason));
                Err(Exit::Closed)
            }
            ack @ (Packet::PubAck(_)
            | Packet::PubRec(_)
            | Packet::PubComp(_)
            | Packet::SubAck(_)
            | Packet::UnsubAck(_)) => self.on_ack(&ack).await,
            Packet::Auth(_) => Err(self
                .violation(
                    ReasonCode::PROTOCOL_ERROR,
                    "AUTH from the server (enhanced authentication is not supported)".into(),
                )
                .await),
            other => {
                let name = other.packet_type().name().to_ascii_uppercase();
                Err(self
                    .violation(
                        ReasonCode::PROTOCOL_ERROR,
                        format!("unexpected {name} from the server"),
                    )
                    .await)
            }
        }
    }

    async fn on_ack(&mut self, ack: &Packet) -> Result<(), Exit> {
        let outcome = self.conn.lock().requests.on_ack(ack);
        match outcome {
            Some(AckOutcome::Completed { token, response }) => {
                self.conn.complete(token, response);
                Ok(())
            }
            Some(AckOutcome::SendPubRel(id)) => {
                self.send(&Packet::PubRel(response(id, ReasonCode::SUCCESS)))
            }
            Some(AckOutcome::UnknownPubRec(id)) => {
                tracing::debug!(packet_id = id, "PUBREC for an unknown packet identifier");
                let reason_code = match self.conn.version {
                    ProtocolVersion::V5 => ReasonCode::PACKET_IDENTIFIER_NOT_FOUND,
                    ProtocolVersion::V311 => ReasonCode::SUCCESS,
                };
                self.send(&Packet::PubRel(response(id, reason_code)))
            }
            Some(AckOutcome::Ignored(id)) => {
                tracing::debug!(
                    packet_id = id,
                    "acknowledgement for an unknown packet identifier"
                );
                Ok(())
            }
            Some(AckOutcome::Violation(message)) => {
                Err(self.violation(ReasonCode::PROTOCOL_ERROR, message).await)
            }
            None => Ok(()),
        }
    }

    async fn on_publish(&mut self, mut publish: Publish) -> Result<(), Exit> {
        if self.conn.version == ProtocolVersion::V5 {
            let resolved = self.conn.lock().aliases.resolve(&mut publish);
            if let Err(e) = resolved {
                return Err(self.violation(e.reason_code, e.message).await);
            }
        }
        match (publish.qos, publish.packet_id) {
            (QoS::AtMostOnce, _) => self.deliver(Event::Publish(publish), None).await,
            (QoS::AtLeastOnce, Some(id)) => {
                let puback = Packet::PubAck(response(id, ReasonCode::SUCCESS));
                self.deliver(Event::Publish(publish), Some(puback)).await
            }
            (QoS::ExactlyOnce, Some(id)) => {
                let pubrec = Packet::PubRec(response(id, ReasonCode::SUCCESS));
                if self.inbound.on_publish(id) {
                    self.deliver(Event::Publish(publish), Some(pubrec)).await
                } else {
                    // A re-delivery: acknowledge again, do not deliver.
                    self.send(&pubrec)
                }
            }
            (_, None) => Err(self
                .violation(
                    ReasonCode::PROTOCOL_ERROR,
                    "QoS > 0 PUBLISH without a packet identifier".into(),
                )
                .await),
        }
    }
}

fn response(packet_id: u16, reason_code: ReasonCode) -> PublishResponse {
    PublishResponse {
        packet_id,
        reason_code,
        properties: Default::default(),
    }
}

/// Why the QUIC connection ended, when it has.
fn quic_reason(conn: &Conn) -> Option<String> {
    conn.quic()
        .and_then(quinn::Connection::close_reason)
        .map(|e| format!("QUIC connection lost: {e}"))
}
