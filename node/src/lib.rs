//! The quicmq broker node: MQTT 3.1.1 and 5.0 over QUIC, TCP and TLS.
//!
//! - [`broker`]: sessions, the subscription tree, retained messages, routing
//!   and the sled store (sans-IO state machines under a thin shell).
//! - [`connection`]: the MQTT protocol of one client connection over one or
//!   more streams.
//! - [`transport`]: the QUIC, TCP and TLS listeners.
//! - [`auth`]: who may connect (password file with argon2id hashes,
//!   anonymous access).
//! - [`node`]: a running node wired from a [`config::NodeConfig`].
//! - [`client`]: the async MQTT client used by the `quicmq` CLI and tests.
//! - [`bench`]: the load generator behind `quicmq bench`.
#![warn(missing_docs)]

pub mod admin;
pub mod admin_access;
pub mod admin_client;
pub mod admin_tls;
pub mod auth;
pub mod bench;
pub mod broker;
pub mod client;
pub mod cluster;
pub mod config;
pub mod connection;
pub mod keys;
pub mod limits;
pub mod memory_trim;
pub mod metrics;
pub mod node;
pub mod tls;
pub mod transport;
