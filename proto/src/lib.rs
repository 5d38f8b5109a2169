//! Every format of quicmq that crosses a wire.
//!
//! This crate is sans-IO: it never touches sockets, clocks or global state.
//! It turns bytes into typed values and back, and says precisely what is
//! wrong with bytes that are not valid.
//!
//! - [`mqtt`]: MQTT 3.1.1 and 5.0 control packets, properties, reason codes,
//!   topic names and filters.
//! - [`quic_lb`]: QUIC-LB routable connection IDs that carry a node's server
//!   ID (draft-ietf-quic-load-balancers-21).
//! - [`envelope`]: the PROXY protocol v2 header that router and node put in
//!   front of each datagram they pass to each other.
//! - [`cluster`]: the gRPC messages and services between nodes and from
//!   routers to nodes (`cluster.proto`: Raft, publish forwarding, cluster
//!   watch, admin), generated at build time.
//! - [`cluster_tls`]: the cluster's mutual TLS profile: role names in
//!   certificates, and the rustls configurations members dial and serve
//!   gRPC with.
//!
//! ```
//! use bytes::BytesMut;
//! use quicmq_proto::mqtt::{decode, encode, Packet, ProtocolVersion};
//!
//! let mut buf = BytesMut::new();
//! encode(&Packet::PingReq, ProtocolVersion::V5, &mut buf).unwrap();
//! let packet = decode(&mut buf, ProtocolVersion::V5, 1024).unwrap();
//! assert_eq!(packet, Some(Packet::PingReq));
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod cluster;
pub mod cluster_tls;
pub mod envelope;
pub mod hex;
pub mod mqtt;
pub mod quic_lb;
pub mod token_trailer;
