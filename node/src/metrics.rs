//! Metric names of the node and the Prometheus recorder.
//!
//! Every metric is recorded with the `metrics` facade; the admin endpoint
//! renders them in the Prometheus text format.

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// CONNECT credential checks, by `result` (allowed, bad_credentials,
/// not_authorized, bad_method, certificate, not_session_owner, busy,
/// backoff).
pub const AUTH: &str = "quicmq_auth_total";
/// Admin HTTP requests refused for a missing or wrong bearer token.
pub const ADMIN_REFUSED: &str = "quicmq_admin_refused_total";
/// Password checks queued or running on the hash workers.
pub const AUTH_PENDING: &str = "quicmq_auth_checks_pending";
/// Bytes of messages sessions hold, queued and in flight (read at each
/// scrape).
pub const QUEUED_BYTES: &str = "quicmq_queued_bytes";
/// The node's budget for them (`max_memory_queued`).
pub const QUEUED_BYTES_LIMIT: &str = "quicmq_queued_bytes_limit";
/// The node process's resident memory, bytes (read at each scrape).
pub const RESIDENT_MEMORY: &str = "quicmq_process_resident_memory_bytes";
/// PUBLISH (wills included) and SUBSCRIBE filters the ACL refused, by
/// `access` (publish, subscribe).
pub const ACL_DENIED: &str = "quicmq_acl_denied_total";
/// Requests refused by a configured limit, by `limit` (topic_size,
/// subscriptions, max_connections, max_connections_per_ip, handshake_rate,
/// publish_rate).
pub const LIMITS_HIT: &str = "quicmq_limits_hit_total";
/// QUIC Retry packets sent (address validation while many handshakes are
/// in progress).
pub const QUIC_RETRIES: &str = "quicmq_quic_retries_total";
/// QUIC handshakes in progress.
pub const QUIC_HANDSHAKES: &str = "quicmq_quic_handshakes_in_progress";
/// Open connections, by `transport` (quic, tcp, tls).
pub const CONNECTIONS: &str = "quicmq_connections";
/// Connections accepted, by `transport`.
pub const CONNECTIONS_TOTAL: &str = "quicmq_connections_total";
/// Packets received, by `type`.
pub const PACKETS_RECEIVED: &str = "quicmq_packets_received_total";
/// Packets sent, by `type`.
pub const PACKETS_SENT: &str = "quicmq_packets_sent_total";
/// Bytes received, by `transport`.
pub const BYTES_RECEIVED: &str = "quicmq_bytes_received_total";
/// Bytes sent, by `transport`.
pub const BYTES_SENT: &str = "quicmq_bytes_sent_total";
/// Messages published by clients.
pub const MESSAGES_PUBLISHED: &str = "quicmq_messages_published_total";
/// Messages dropped, by `reason` (queue_full, qos0_offline, expired,
/// packet_too_large, no_subscribers, session_closed, slow_consumer).
pub const MESSAGES_DROPPED: &str = "quicmq_messages_dropped_total";
/// Sessions held (connected or not).
pub const SESSIONS: &str = "quicmq_sessions";
/// Sessions ended by their expiry interval.
pub const SESSIONS_EXPIRED: &str = "quicmq_sessions_expired_total";
/// Session takeovers (same client ID connected again).
pub const TAKEOVERS: &str = "quicmq_session_takeovers_total";
/// Subscriptions.
pub const SUBSCRIPTIONS: &str = "quicmq_subscriptions";
/// Messages routed to a SUBSCRIBE filter its reader had announced and its
/// connection had not yet applied, by outcome (held, delivered, dropped).
pub const EARLY_SUBSCRIPTION_MESSAGES: &str = "quicmq_early_subscription_messages_total";
/// Retained messages.
pub const RETAINED: &str = "quicmq_retained_messages";
/// Will messages published.
pub const WILLS_PUBLISHED: &str = "quicmq_wills_published_total";
/// Connections closed because of bad input, by `reason` code name.
pub const PROTOCOL_ERRORS: &str = "quicmq_protocol_errors_total";
/// Datagrams on the routed port without a valid PROXY v2 header.
pub const ROUTED_DATAGRAMS_DROPPED: &str = "quicmq_routed_datagrams_dropped_total";
/// QUIC round-trip time of open connections, seconds.
pub const QUIC_RTT: &str = "quicmq_quic_rtt_seconds";
/// QUIC packets lost.
pub const QUIC_LOST_PACKETS: &str = "quicmq_quic_lost_packets_total";
/// QUIC packets sent.
pub const QUIC_SENT_PACKETS: &str = "quicmq_quic_sent_packets_total";
/// Messages committed to durable queues of persistent sessions.
pub const DURABLE_QUEUED: &str = "quicmq_durable_queued_total";
/// Durable queue proposals (one Raft entry each, many messages).
pub const DURABLE_BATCHES: &str = "quicmq_durable_batches_total";
/// Durable queue operations that did not commit, by `reason` (no_leader,
/// not_owner).
pub const DURABLE_FAILED: &str = "quicmq_durable_failed_total";
/// Oldest messages dropped from full durable queues (`max_queued_messages`
/// plus `receive_maximum` per session).
pub const DURABLE_DROPPED: &str = "quicmq_durable_dropped_total";
/// Messages replayed from a durable queue to a session resumed on this node.
pub const DURABLE_REPLAYED: &str = "quicmq_durable_replayed_total";

/// TLS session tickets issued (sealed with the cluster's ticket key).
pub const TLS_TICKETS_ISSUED: &str = "quicmq_tls_tickets_issued_total";
/// TLS session tickets opened (a client resuming; the ticket may come from
/// another node).
pub const TLS_TICKETS_OPENED: &str = "quicmq_tls_tickets_opened_total";
/// TLS session tickets refused, by `reason` (malformed, unknown_key,
/// expired, forged): the client falls back to a full handshake.
pub const TLS_TICKETS_REFUSED: &str = "quicmq_tls_tickets_refused_total";
/// Node-local TLS sessions stored for returning QUIC clients (their tickets
/// allow 0-RTT, on this node only).
pub const TLS_HOME_SESSIONS_STORED: &str = "quicmq_tls_home_sessions_stored_total";
/// Node-local TLS sessions resumed (each at most once: replay protection).
pub const TLS_HOME_SESSIONS_RESUMED: &str = "quicmq_tls_home_sessions_resumed_total";
/// Node-local TLS sessions held now.
pub const TLS_HOME_SESSIONS: &str = "quicmq_tls_home_sessions";
/// Acknowledgements served by one flush of the data store (group commit).
pub const STORE_FLUSH_GROUP: &str = "quicmq_store_flush_group_size";
/// Client operations waiting on the cluster now, by operation
/// (`subscribe`: SUBACK waits for routes; `publish`: PUBACK/PUBREC waits
/// for durable queues).
pub const CLUSTER_WAITING: &str = "quicmq_cluster_waiting";
/// How long client operations waited on the cluster, by operation and
/// outcome (`committed`, `refused`), seconds.
pub const CLUSTER_WAITS: &str = "quicmq_cluster_waits";
/// Session claims per Raft log entry (claims are proposed in batches).
pub const CLAIM_BATCH_SIZE: &str = "quicmq_cluster_claim_batch_size";
/// MQTT connections over QUIC whose CONNECT arrived as 0-RTT early data.
pub const QUIC_ZERO_RTT_CONNECTS: &str = "quicmq_quic_zero_rtt_connects_total";

/// Install the process-wide Prometheus recorder and return the handle
/// that renders it.
pub fn install() -> Result<PrometheusHandle, metrics_exporter_prometheus::BuildError> {
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Full(QUIC_RTT.to_string()),
            &[
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
            ],
        )?
        .set_buckets_for_metric(
            Matcher::Full(CLUSTER_WAITS.to_string()),
            &[
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ],
        )?
        .install_recorder()?;
    describe();
    Ok(handle)
}

fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_gauge!(CONNECTIONS, "Open client connections by transport");
    describe_gauge!(
        CLUSTER_WAITING,
        "Client operations waiting on the cluster now, by operation (subscribe: SUBACK waits for routes; publish: acknowledgement waits for durable queues)"
    );
    describe_histogram!(
        CLAIM_BATCH_SIZE,
        "Session claims per Raft log entry (claims of connecting clients are proposed in batches)"
    );
    describe_histogram!(
        CLUSTER_WAITS,
        Unit::Seconds,
        "How long client operations waited on the cluster, by operation and outcome (committed, refused)"
    );
    describe_counter!(
        CONNECTIONS_TOTAL,
        "Client connections accepted by transport"
    );
    describe_counter!(PACKETS_RECEIVED, "MQTT packets received by type");
    describe_counter!(
        AUTH,
        "CONNECT credential checks by result (allowed, bad_credentials, not_authorized, bad_method, certificate, not_session_owner, busy, backoff)"
    );
    describe_counter!(
        ADMIN_REFUSED,
        "Admin HTTP requests refused for a missing or wrong bearer token"
    );
    describe_gauge!(
        AUTH_PENDING,
        "Password checks queued or running on the hash workers"
    );
    describe_gauge!(
        QUEUED_BYTES,
        Unit::Bytes,
        "Bytes of messages sessions hold, queued and in flight; a message queued for N sessions counts N times"
    );
    describe_gauge!(
        QUEUED_BYTES_LIMIT,
        Unit::Bytes,
        "The node's budget for queued and in-flight message bytes (max_memory_queued)"
    );
    describe_gauge!(
        RESIDENT_MEMORY,
        Unit::Bytes,
        "Resident memory of the node process, read at each scrape"
    );
    describe_counter!(
        LIMITS_HIT,
        "Requests refused by a configured limit, by limit (topic_size, subscriptions, max_connections, max_connections_per_ip, handshake_rate, publish_rate)"
    );
    describe_counter!(
        QUIC_RETRIES,
        "QUIC Retry packets sent: address validation under handshake load"
    );
    describe_gauge!(QUIC_HANDSHAKES, "QUIC handshakes in progress");
    describe_counter!(
        ACL_DENIED,
        "PUBLISH topics (wills included), SUBSCRIBE filters and deliveries (read: a message withheld from a subscriber that may not read its topic) the ACL refused, by access"
    );
    describe_counter!(PACKETS_SENT, "MQTT packets sent by type");
    describe_counter!(BYTES_RECEIVED, Unit::Bytes, "Bytes received by transport");
    describe_counter!(BYTES_SENT, Unit::Bytes, "Bytes sent by transport");
    describe_counter!(
        MESSAGES_PUBLISHED,
        "Application messages published by clients"
    );
    describe_counter!(MESSAGES_DROPPED, "Messages dropped by reason");
    describe_gauge!(SESSIONS, "Sessions held, connected or not");
    describe_counter!(SESSIONS_EXPIRED, "Sessions ended by their expiry interval");
    describe_counter!(TAKEOVERS, "Session takeovers");
    describe_counter!(
        DURABLE_QUEUED,
        "Messages committed to durable queues of persistent sessions"
    );
    describe_counter!(
        DURABLE_BATCHES,
        "Durable queue proposals (one Raft entry carries many operations)"
    );
    describe_counter!(
        DURABLE_FAILED,
        "Durable queue operations not committed, by reason"
    );
    describe_counter!(
        DURABLE_DROPPED,
        "Oldest messages dropped from full durable queues"
    );
    describe_counter!(
        DURABLE_REPLAYED,
        "Messages replayed from durable queues to sessions resumed here"
    );
    describe_counter!(
        TLS_TICKETS_ISSUED,
        "TLS session tickets issued (cluster ticket key)"
    );
    describe_counter!(
        TLS_TICKETS_OPENED,
        "TLS session tickets opened for resumption (issued by any node)"
    );
    describe_counter!(
        TLS_TICKETS_REFUSED,
        "TLS session tickets refused by reason; the client does a full handshake"
    );
    describe_counter!(
        TLS_HOME_SESSIONS_STORED,
        "Node-local TLS sessions stored for returning QUIC clients (0-RTT capable)"
    );
    describe_counter!(
        TLS_HOME_SESSIONS_RESUMED,
        "Node-local TLS sessions resumed (each at most once)"
    );
    describe_gauge!(TLS_HOME_SESSIONS, "Node-local TLS sessions held");
    describe_histogram!(
        STORE_FLUSH_GROUP,
        "Acknowledgements served by one flush of the data store"
    );
    describe_counter!(
        QUIC_ZERO_RTT_CONNECTS,
        "MQTT over QUIC connections whose CONNECT came as 0-RTT early data"
    );
    describe_gauge!(SUBSCRIPTIONS, "Subscriptions");
    describe_counter!(
        EARLY_SUBSCRIPTION_MESSAGES,
        "Messages routed to a SUBSCRIBE the node had read and not yet applied: held, then delivered once it applied or dropped if refused, by outcome"
    );
    describe_gauge!(RETAINED, "Retained messages");
    describe_counter!(WILLS_PUBLISHED, "Will messages published");
    describe_counter!(
        PROTOCOL_ERRORS,
        "Connections closed for bad input, by reason"
    );
    describe_counter!(
        ROUTED_DATAGRAMS_DROPPED,
        "Routed datagrams dropped for a bad PROXY v2 header"
    );
    describe_histogram!(QUIC_RTT, Unit::Seconds, "QUIC round-trip time samples");
    describe_counter!(QUIC_LOST_PACKETS, "QUIC packets lost");
    describe_counter!(QUIC_SENT_PACKETS, "QUIC packets sent");
}
