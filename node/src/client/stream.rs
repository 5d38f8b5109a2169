//! One MQTT byte stream of a connection: the control stream, a QUIC data
//! stream, or the single TCP/TLS stream. Handles talk to its writer task
//! through a queue of encoded packets.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};

use super::closer::Closer;
use super::error::ClientError;

/// Something for a stream's writer task.
pub(crate) enum Outgoing {
    /// An encoded packet; `done` fires once it is written.
    Frame(Bytes, Option<oneshot::Sender<()>>),
    /// Write what is queued before, then end the stream (QUIC FIN / TCP
    /// shutdown); `done` fires once the peer has it (or after a linger).
    Finish(Option<oneshot::Sender<()>>),
}

/// The shared side of a stream.
pub(crate) struct StreamShared {
    /// 0 for the control stream, then 1, 2, ... for data streams.
    pub(crate) index: u64,
    /// Set when the stream (or the whole connection) is closed.
    pub(crate) closed: Closer,
    writer: mpsc::UnboundedSender<Outgoing>,
}

impl StreamShared {
    /// A stream with index `index` and the receiving end of its write queue.
    pub(crate) fn new(index: u64) -> (Arc<StreamShared>, mpsc::UnboundedReceiver<Outgoing>) {
        let (writer, rx) = mpsc::unbounded_channel();
        (
            Arc::new(StreamShared {
                index,
                closed: Closer::new(),
                writer,
            }),
            rx,
        )
    }

    /// Whether this is the control stream.
    pub(crate) fn is_control(&self) -> bool {
        self.index == 0
    }

    fn closed_error(&self) -> ClientError {
        ClientError::Closed(self.closed.reason().flatten())
    }

    /// Queues an encoded packet.
    pub(crate) fn send(
        &self,
        bytes: Bytes,
        done: Option<oneshot::Sender<()>>,
    ) -> Result<(), ClientError> {
        self.writer
            .send(Outgoing::Frame(bytes, done))
            .map_err(|_| self.closed_error())
    }

    /// Queues an encoded packet and waits until it is written.
    pub(crate) async fn write(&self, bytes: Bytes) -> Result<(), ClientError> {
        let (tx, rx) = oneshot::channel();
        self.send(bytes, Some(tx))?;
        rx.await.map_err(|_| self.closed_error())
    }

    /// Queues the end of the stream.
    pub(crate) fn finish(&self, done: Option<oneshot::Sender<()>>) -> Result<(), ClientError> {
        self.writer
            .send(Outgoing::Finish(done))
            .map_err(|_| self.closed_error())
    }
}

/// The read half of a stream.
pub(crate) type StreamReader = Box<dyn AsyncRead + Send + Unpin>;

/// The write half of a stream.
pub(crate) enum StreamWriter {
    /// A QUIC send stream (written without copying, finished with FIN).
    Quic(quinn::SendStream),
    /// A TCP or TLS write half.
    Io(Box<dyn AsyncWrite + Send + Unpin>),
}

impl StreamWriter {
    /// Writes all `chunks` and flushes.
    pub(crate) async fn write_chunks(&mut self, chunks: &mut Vec<Bytes>) -> std::io::Result<()> {
        match self {
            StreamWriter::Quic(send) => {
                send.write_all_chunks(chunks.as_mut_slice())
                    .await
                    .map_err(std::io::Error::from)?;
            }
            StreamWriter::Io(io) => {
                if chunks.len() == 1 {
                    io.write_all(&chunks[0]).await?;
                } else {
                    let total = chunks.iter().map(Bytes::len).sum();
                    let mut joined = Vec::with_capacity(total);
                    for chunk in chunks.iter() {
                        joined.extend_from_slice(chunk);
                    }
                    io.write_all(&joined).await?;
                }
                io.flush().await?;
            }
        }
        chunks.clear();
        Ok(())
    }

    /// Ends the stream and waits (at most `linger`) until the peer has
    /// everything.
    pub(crate) async fn finish(&mut self, linger: Duration) {
        match self {
            StreamWriter::Quic(send) => {
                let _ = send.finish();
                let _ = tokio::time::timeout(linger, send.stopped()).await;
            }
            StreamWriter::Io(io) => {
                let _ = tokio::time::timeout(linger, io.shutdown()).await;
            }
        }
    }
}
