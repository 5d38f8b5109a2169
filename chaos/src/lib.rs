//! Fault injection against a real quicmq cluster.
//!
//! - [`impairment`]: the sans-IO model of an impaired path (loss, delay,
//!   jitter, reordering, duplication).
//! - [`udp_proxy`]: `UdpProxy`, our own impaired UDP path (the kernel has
//!   no netem), with NAT rebinding.
//! - [`egress_proxy`]: `EgressProxy`, the HTTP `CONNECT` proxy each node
//!   dials its peers through in the partition scenario; it black-holes
//!   chosen node-to-node links.
//! - [`scenario`]: a cluster of node processes behind routers, persistent
//!   QoS 1 subscribers and paced publishers through the routers, one fault
//!   mid-session (kill -9 of the owner node, the leader or a router, a
//!   reconnect storm of every client of a killed node,
//!   SIGSTOP, a restart, a partition between nodes, an impaired client
//!   path, NAT rebinding).
//! - [`endpoints`]: `EndpointPool`, client endpoints shared by many
//!   connections over several loopback addresses (the storm holds ten
//!   thousand), and the process's peak memory.
//! - [`handshake`]: connect → CONNACK of full, resumed and 0-RTT QUIC
//!   handshakes over a path with a set round-trip time.
//! - [`report`]: what was published, acknowledged, delivered, lost and
//!   duplicated, failover times, retained-state equality, availability;
//!   the invariants.
//! - [`timeline`]: publishes attempted, acknowledged, refused and
//!   unanswered, and deliveries, per second around the fault; the
//!   recovery time; a terminal chart and an SVG.
//!
//! `cargo test -p quicmq-chaos` runs short versions; the `quicmq-chaos`
//! binary runs any scenario at any size and writes the report.

pub mod egress_proxy;
pub mod endpoints;
pub mod handshake;
pub mod impairment;
pub mod report;
pub mod scenario;
pub mod timeline;
pub mod udp_proxy;
pub mod wills;
