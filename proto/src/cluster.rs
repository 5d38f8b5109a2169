//! The cluster's gRPC surface, generated from `cluster.proto` at build time
//! (protox + tonic-prost-build; no `protoc`).
//!
//! [`v1`] holds the prost messages and, per service, a client
//! (`raft_client::RaftClient`, ...) and a server trait with its tower
//! service (`raft_server::Raft`, `raft_server::RaftServer`, ...). The
//! generated code is generic over the transport; this crate enables none —
//! the crates that serve or dial (raft, node, router) bring tonic's
//! `transport` and build channels and servers there.
//!
//! Raft RPCs carry openraft's own request and response types as opaque
//! serialized bytes (see the comment above `RaftEncoding` in
//! `cluster.proto` for why).
//!
//! ```
//! use prost::Message;
//! use quicmq_proto::cluster::v1::{ForwardBatch, ForwardedPublish, Qos};
//!
//! let batch = ForwardBatch {
//!     seq: 1,
//!     publishes: vec![ForwardedPublish {
//!         topic: "a/b".into(),
//!         payload: "hi".into(),
//!         qos: Qos::AtLeastOnce.into(),
//!         origin_node_id: 1,
//!         ..Default::default()
//!     }],
//! };
//! let bytes = batch.encode_to_vec();
//! assert_eq!(ForwardBatch::decode(bytes.as_slice()).unwrap(), batch);
//! ```

/// `quicmq.cluster.v1`: messages, clients and server traits.
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod v1 {
    tonic::include_proto!("quicmq.cluster.v1");
}

/// The encoded `FileDescriptorSet` of `cluster.proto` (with source info),
/// for gRPC server reflection and for tests.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/cluster_descriptor.bin"));
