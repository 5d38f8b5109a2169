//! Byte pumps between one transport stream and the connection core.
//!
//! A reader task decodes packets from a stream and sends them to the core;
//! a writer task writes the core's encoded packets. TCP and TLS have one
//! stream; a QUIC connection has its control stream and any data streams
//! the client opens.

use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use bytes::{Bytes, BytesMut};
use quicmq_proto::mqtt::{decode, DecodeError, Packet, ProtocolVersion};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, Notify};

use crate::broker::{Broker, ClientId};
use crate::metrics as m;

/// A read buffer above this size is released once empty.
const BIG_READ_BUFFER: usize = 64 * 1024;

/// What the stream tasks tell the connection core.
#[derive(Debug)]
pub enum Inbound {
    /// A decoded packet.
    Packet {
        /// Stream it came in on (0 = control stream).
        stream: u64,
        /// The packet, boxed: a packet is hundreds of bytes and the channel
        /// carrying these preallocates slots per connection.
        packet: Box<Packet>,
    },
    /// Bytes that are not a valid packet; the connection must close.
    Invalid {
        /// Stream they came in on.
        stream: u64,
        /// What is wrong.
        error: DecodeError,
    },
    /// The client opened a data stream (QUIC).
    StreamOpened {
        /// Its index.
        stream: u64,
        /// Where to send its outgoing bytes.
        writer: StreamWriter,
    },
    /// A stream ended (read side closed or failed).
    StreamClosed {
        /// Its index.
        stream: u64,
    },
}

/// The protocol version of a connection, shared by its stream tasks.
/// 0 until CONNECT is decoded.
#[derive(Clone, Default)]
pub struct SharedVersion(Arc<AtomicU8>);

impl SharedVersion {
    fn get(&self) -> ProtocolVersion {
        match self.0.load(Ordering::Acquire) {
            4 => ProtocolVersion::V311,
            _ => ProtocolVersion::V5,
        }
    }

    fn set(&self, version: ProtocolVersion) {
        self.0.store(version.level(), Ordering::Release);
    }
}

/// Bytes handed to writers and not yet written, for all streams of one
/// connection: the core stops sending deliveries above a high-water mark,
/// so a client that does not read cannot grow the broker's memory.
#[derive(Default)]
pub struct WriteBudget {
    pending: AtomicUsize,
    drained: Notify,
}

impl WriteBudget {
    /// Bytes waiting to be written.
    pub fn pending(&self) -> usize {
        self.pending.load(Ordering::Acquire)
    }

    /// Wait until a writer has written something.
    pub async fn drained(&self) {
        self.drained.notified().await
    }
}

/// The sending side of one stream's writer task.
#[derive(Clone, Debug)]
pub struct StreamWriter {
    tx: mpsc::UnboundedSender<Bytes>,
}

impl StreamWriter {
    /// Queue encoded bytes; `false` if the stream is gone.
    pub fn send(&self, bytes: Bytes, budget: &WriteBudget) -> bool {
        let len = bytes.len();
        budget.pending.fetch_add(len, Ordering::AcqRel);
        if self.tx.send(bytes).is_err() {
            budget.pending.fetch_sub(len, Ordering::AcqRel);
            return false;
        }
        true
    }
}

/// Everything the stream tasks of one connection share.
#[derive(Clone)]
pub struct StreamContext {
    /// Transport label for metrics.
    pub transport: &'static str,
    /// Largest packet accepted.
    pub max_packet_size: u32,
    /// Protocol version, set when CONNECT is decoded.
    pub version: SharedVersion,
    /// Outgoing byte accounting.
    pub budget: Arc<WriteBudget>,
    /// Where decoded packets go.
    pub inbound: mpsc::Sender<Inbound>,
    /// Set once the connection has its session: readers announce the
    /// filters of each SUBSCRIBE to the broker as they decode it.
    pub announcer: Arc<OnceLock<Announcer>>,
}

/// Announces SUBSCRIBE filters for one client
/// ([`Broker::announce_subscription`]).
pub struct Announcer {
    /// The broker the connection serves.
    pub broker: Arc<Broker>,
    /// The connection's client ID.
    pub client_id: ClientId,
}

/// Start the reader and writer tasks of one stream; returns its writer.
pub fn spawn_stream<R, W>(ctx: &StreamContext, stream: u64, reader: R, writer: W) -> StreamWriter
where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let writer = spawn_writer(ctx, writer);
    tokio::spawn(read_packets(ctx.clone(), stream, reader));
    writer
}

/// Start a data stream: its writer is announced to the core
/// ([`Inbound::StreamOpened`]) before its reader starts, so the core knows
/// where to answer before the stream's first packet arrives. Returns
/// `false` if the connection is gone.
pub async fn open_data_stream<R, W>(ctx: &StreamContext, stream: u64, reader: R, writer: W) -> bool
where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let writer = spawn_writer(ctx, writer);
    if ctx
        .inbound
        .send(Inbound::StreamOpened { stream, writer })
        .await
        .is_err()
    {
        return false;
    }
    tokio::spawn(read_packets(ctx.clone(), stream, reader));
    true
}

fn spawn_writer<W>(ctx: &StreamContext, writer: W) -> StreamWriter
where
    W: AsyncWrite + Unpin + Send + 'static,
{
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(write_bytes(ctx.clone(), writer, rx));
    StreamWriter { tx }
}

async fn read_packets<R: AsyncRead + Unpin>(ctx: StreamContext, stream: u64, mut reader: R) {
    // Small to start (an idle connection holds it), grown by large packets
    // and given back once they are through.
    let mut buf = BytesMut::new();
    let received = metrics::counter!(m::BYTES_RECEIVED, "transport" => ctx.transport);
    loop {
        loop {
            match decode(&mut buf, ctx.version.get(), ctx.max_packet_size) {
                Ok(Some(packet)) => {
                    match &packet {
                        Packet::Connect(connect) => ctx.version.set(connect.protocol),
                        Packet::Subscribe(subscribe) => {
                            if let Some(announcer) = ctx.announcer.get() {
                                for (filter, _) in &subscribe.filters {
                                    announcer
                                        .broker
                                        .announce_subscription(&announcer.client_id, filter);
                                }
                            }
                        }
                        _ => {}
                    }
                    if ctx
                        .inbound
                        .send(Inbound::Packet {
                            stream,
                            packet: Box::new(packet),
                        })
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
                Ok(None) => break,
                Err(error) => {
                    let _ = ctx.inbound.send(Inbound::Invalid { stream, error }).await;
                    return;
                }
            }
        }
        if buf.is_empty() && buf.capacity() > BIG_READ_BUFFER {
            buf = BytesMut::new();
        }
        if buf.capacity() - buf.len() < 1024 {
            buf.reserve(2048);
        }
        match reader.read_buf(&mut buf).await {
            Ok(0) | Err(_) => {
                let _ = ctx.inbound.send(Inbound::StreamClosed { stream }).await;
                return;
            }
            Ok(n) => received.increment(n as u64),
        }
    }
}

async fn write_bytes<W: AsyncWrite + Unpin>(
    ctx: StreamContext,
    mut writer: W,
    mut rx: mpsc::UnboundedReceiver<Bytes>,
) {
    let sent = metrics::counter!(m::BYTES_SENT, "transport" => ctx.transport);
    let mut batch = BytesMut::new();
    while let Some(first) = rx.recv().await {
        let mut total = first.len();
        let result = if rx.is_empty() {
            writer.write_all(&first).await
        } else {
            batch.clear();
            batch.extend_from_slice(&first);
            while batch.len() < 64 * 1024 {
                match rx.try_recv() {
                    Ok(more) => {
                        total += more.len();
                        batch.extend_from_slice(&more);
                    }
                    Err(_) => break,
                }
            }
            writer.write_all(&batch).await
        };
        let flushed = match result {
            Ok(()) => writer.flush().await,
            Err(e) => Err(e),
        };
        ctx.budget.pending.fetch_sub(total, Ordering::AcqRel);
        ctx.budget.drained.notify_one();
        if flushed.is_err() {
            break;
        }
        sent.increment(total as u64);
    }
    let _ = writer.shutdown().await;
    // Anything still queued will never be written.
    while let Ok(bytes) = rx.try_recv() {
        ctx.budget.pending.fetch_sub(bytes.len(), Ordering::AcqRel);
    }
}
