//! The quicmq stateless UDP router.
//!
//! Steers every QUIC datagram to the node that owns its connection, by the
//! server ID the node wrote into its connection IDs (QUIC-LB), and keeps no
//! per-connection state: any router can forward any packet.
//!
//! Sans-IO core, unit-tested without sockets:
//! - [`header`]: the QUIC invariant header.
//! - [`steering`]: the routing decision for one datagram.
//! - [`node_table`]: nodes, their health, rendezvous hashing.
//! - [`reset`]: Stateless Resets on behalf of dead nodes.
//! - [`watch`]: the cluster's watch stream → node table ([`watch::plan`]).
//!
//! Async shell: [`forward`] (the sockets and loops), [`watch::run`] (the
//! cluster watch), [`admin`], [`config`], [`metrics`], [`health`] (probe
//! bookkeeping).
#![warn(missing_docs)]

pub mod admin;
pub mod affinity;
pub mod config;
pub mod forward;
pub mod header;
pub mod health;
pub mod metrics;
pub mod node_table;
pub mod reset;
pub mod steering;
pub mod watch;
