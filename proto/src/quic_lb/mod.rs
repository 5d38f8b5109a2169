//! QUIC-LB routable connection IDs (draft-ietf-quic-load-balancers-21).
//!
//! Every connection ID a node issues carries its server ID, so that a
//! stateless router can steer each datagram to the node that owns the
//! connection, also after the client's address changes.
//!
//! ```text
//! QUIC-LB Connection ID {
//!   First Octet {
//!     Config Rotation (3),        0..=6; 0b111 marks an unroutable CID
//!     CID Length - 1 (5),         length self-description
//!   },
//!   Server ID (8..120),           in clear, or encrypted together
//!   Nonce (32..144),              with the nonce (server ID + nonce <= 19 octets)
//! }
//! ```
//!
//! Three algorithms, chosen by the [`LbConfig`]: plaintext (no key),
//! single-pass AES-128-ECB (a key, and server ID + nonce = 16 octets) and
//! four-pass, a four-round Feistel network with AES-128-ECB as round
//! function (a key and any other length). AES comes from aws-lc-rs.
//!
//! ```
//! use quicmq_proto::quic_lb::{config_id_of, LbCodec, LbConfig, QuicLbError};
//!
//! // Key and inputs of the draft's test vectors (Appendix B, cr_bits 0).
//! let key = [
//!     0x8f, 0x95, 0xf0, 0x92, 0x45, 0x76, 0x5f, 0x80,
//!     0x25, 0x69, 0x34, 0xe5, 0x0c, 0x66, 0x20, 0x7f,
//! ];
//! let codec = LbCodec::new(LbConfig::new(0, 3, 4, Some(key))?)?;
//! let cid = codec.encode(&[0xed, 0x79, 0x3a], &[0xee, 0x08, 0x0d, 0xbf])?;
//! assert_eq!(cid.to_string(), "0720b1d07b359d3c");
//!
//! assert_eq!(config_id_of(cid[0]), Some(0));
//! assert_eq!(codec.decode_server_id(&cid)?.as_bytes(), &[0xed, 0x79, 0x3a]);
//! # Ok::<(), QuicLbError>(())
//! ```

mod cipher;
mod codec;
mod config;
mod error;
mod ids;

pub use codec::LbCodec;
pub use config::{config_id_of, Algorithm, LbConfig, KEY_LEN, UNROUTABLE_CONFIG_ID};
pub use error::QuicLbError;
pub use ids::{Nonce, RoutableCid, ServerId};

/// Longest connection ID QUIC version 1 allows, and so the longest
/// QUIC-LB connection ID.
pub const MAX_CID_LEN: usize = 20;

/// Longest server ID, in octets.
pub const MAX_SERVER_ID_LEN: usize = 15;

/// Shortest nonce, in octets.
pub const MIN_NONCE_LEN: usize = 4;

/// Longest nonce, in octets (with a 1-octet server ID).
pub const MAX_NONCE_LEN: usize = MAX_PLAINTEXT_LEN - 1;

/// Longest server ID + nonce, in octets: a connection ID less its first
/// octet.
pub const MAX_PLAINTEXT_LEN: usize = MAX_CID_LEN - 1;
