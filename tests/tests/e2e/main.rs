//! The end-to-end suite: real node, router and CLI processes over real
//! sockets, one module per area.
//!
//! It is one test binary, not one per file: every test executable links
//! the whole dependency tree (QUIC, TLS, Raft, gRPC), and forty of them
//! took minutes to link and gigabytes of disk. Run one area with
//! `cargo test -p quicmq-tests -- liveness::` and one test with its path,
//! e.g. `cargo test -p quicmq-tests -- liveness::a_dead_node_is_marked_down`.

mod abuse;
mod acl;
mod admin;
mod admin_auth;
mod auth;
mod bad_input;
mod broker_features;
mod cli_reconnect;
mod client_certs;
mod cluster;
mod cluster_auth;
mod cluster_durable;
mod cluster_mtls;
mod cluster_pubsub;
mod cluster_sessions;
mod cluster_tls;
mod fuzz_corpus;
mod interop_rumqttc;
mod interop_s2n_quic;
mod limits;
mod liveness;
mod memory_budgets;
mod process;
mod qos2_state;
mod quic_streams;
mod reconnect_storm;
mod router;
mod router_watch;
mod session_owner;
mod sessions;
mod shutdown;
mod slow_consumer;
mod subscribe_then_publish;
mod unsubscribe;
mod v311;
mod zero_rtt;
