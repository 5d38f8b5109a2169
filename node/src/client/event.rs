//! What a client handle receives from the server.

use quicmq_proto::mqtt::{Disconnect, Publish};

/// An event on a client handle, from [`Client::recv`](super::Client::recv).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// An application message. A topic alias set by the server is already
    /// resolved: `topic` is always the full topic name (the Topic Alias
    /// property is left as the server sent it). QoS 1 and 2 messages are
    /// acknowledged by the client once the event is queued for `recv`.
    Publish(Publish),
    /// The server sent DISCONNECT; the connection closes after it.
    Disconnect(Disconnect),
    /// The connection (or, for a handle from
    /// [`Client::open_stream`](super::Client::open_stream), its stream) is
    /// closed: `None` after a normal close by the client, else why. It is
    /// the last event; `recv` returns `None` afterwards.
    Closed(Option<String>),
}
