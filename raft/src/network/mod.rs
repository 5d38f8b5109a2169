//! openraft's transport over tonic gRPC: the `Raft` service of
//! `cluster.proto`.
//!
//! - [`client`]: [`GrpcNetwork`] makes a [`PeerClient`] per target; calls
//!   carry a header (cluster ID, sender, receiver, encoding) and the
//!   bincode-encoded openraft request.
//! - [`connect_proxy`]: peers dialled through an HTTP `CONNECT` proxy
//!   when the node is configured with one.
//! - [`server`]: [`RaftService`] checks the header, decodes, and calls the
//!   local `Raft`.
//! - [`tls`]: cluster mutual TLS on both sides of every gRPC connection,
//!   and the role check in front of each service.

pub mod client;
pub mod connect_proxy;
pub mod server;
pub mod tls;

pub use client::{lazy_channel, GrpcNetwork, PeerChannels, PeerClient, MAX_MESSAGE_SIZE};
pub use server::RaftService;
