//! Admin HTTP: `/metrics` (Prometheus text), `/health/live`,
//! `/health/ready`, and the cluster API behind `quicmq cluster`:
//!
//! - `GET /api/cluster/status` — this node's view of the cluster (JSON);
//! - `POST /api/cluster/leave` — this node leaves the cluster and shuts
//!   down;
//! - `POST /api/cluster/remove/{node_id}` — removes another node.
//!
//! With `admin_token_file` or `admin_mtls`, every request but those to
//! `admin_open_paths` needs `Authorization: Bearer TOKEN` or, over TLS
//! (`admin_tls.rs`), an admin certificate of the cluster CA
//! ([`AdminAccess`]); others get 401.

use std::sync::Arc;

use axum::extract::{ConnectInfo, Path, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use metrics_exporter_prometheus::PrometheusHandle;
use quicmq_proto::cluster::v1::{MemberRole, MemberState, StatusResponse};
use quicmq_raft::ClusterNode;
use serde_json::json;
use tokio::net::TcpListener;

use crate::admin_access::AdminAccess;
use crate::admin_tls::{AdminPeer, AdminTlsListener};
use crate::broker::Broker;

#[derive(Clone)]
struct AdminState {
    broker: Arc<Broker>,
    cluster: ClusterNode,
    metrics: PrometheusHandle,
}

/// Where the admin endpoint listens.
pub enum AdminListener {
    /// Plain HTTP.
    Plain(TcpListener),
    /// HTTPS with optional client certificates (`admin_mtls`).
    Tls(AdminTlsListener),
}

/// Serve the admin endpoints. They stay up through a graceful shutdown
/// (`/health/ready` then answers 503) until the node stops its tasks.
pub async fn serve_admin(
    broker: Arc<Broker>,
    cluster: ClusterNode,
    metrics: PrometheusHandle,
    access: AdminAccess,
    listener: AdminListener,
) {
    let app = Router::new()
        .route("/metrics", get(render_metrics))
        .route("/health/live", get(|| async { "ok\n" }))
        .route("/health/ready", get(ready))
        .route("/api/cluster/status", get(cluster_status))
        .route("/api/cluster/leave", post(cluster_leave))
        .route("/api/cluster/remove/{node_id}", post(cluster_remove))
        .route("/api/auth/reload", post(auth_reload))
        .layer(axum::middleware::from_fn_with_state(
            Arc::new(access),
            require_token,
        ))
        .with_state(AdminState {
            broker,
            cluster,
            metrics,
        });
    let served = match listener {
        AdminListener::Plain(listener) => {
            axum::serve(
                listener,
                app.into_make_service_with_connect_info::<AdminPeer>(),
            )
            .await
        }
        AdminListener::Tls(listener) => {
            axum::serve(
                listener,
                app.into_make_service_with_connect_info::<AdminPeer>(),
            )
            .await
        }
    };
    if let Err(e) = served {
        tracing::error!(error = %e, "admin HTTP server failed");
    }
}

/// Refuses a request that [`AdminAccess`] does not allow: 401 with
/// `WWW-Authenticate: Bearer`, counted in `quicmq_admin_refused_total`.
async fn require_token(
    State(access): State<Arc<AdminAccess>>,
    request: Request,
    next: Next,
) -> Response {
    let authorization = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let admin_cert = request
        .extensions()
        .get::<ConnectInfo<AdminPeer>>()
        .is_some_and(|peer| peer.0.is_admin());
    if access.allows(request.uri().path(), authorization, admin_cert) {
        return next.run(request).await;
    }
    metrics::counter!(crate::metrics::ADMIN_REFUSED).increment(1);
    let body = json!({ "error": "this admin path needs `Authorization: Bearer TOKEN` (the node's admin_token_file) or, with admin_mtls, an admin certificate of the cluster CA" });
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, "Bearer")],
        body.to_string() + "\n",
    )
        .into_response()
}

async fn render_metrics(State(state): State<AdminState>) -> String {
    if let Some(bytes) = resident_memory_bytes() {
        metrics::gauge!(crate::metrics::RESIDENT_MEMORY).set(bytes as f64);
    }
    if let Some(budget) = state.broker.queue_budget() {
        metrics::gauge!(crate::metrics::QUEUED_BYTES).set(budget.used() as f64);
        metrics::gauge!(crate::metrics::QUEUED_BYTES_LIMIT).set(budget.limit() as f64);
    }
    state.metrics.run_upkeep();
    state.metrics.render()
}

/// The process's resident memory (Linux: `VmRSS` of `/proc/self/status`).
fn resident_memory_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

async fn ready(State(state): State<AdminState>) -> (StatusCode, &'static str) {
    if state.broker.is_shutting_down() {
        (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n")
    } else {
        (StatusCode::OK, "ready\n")
    }
}

type JsonReply = (StatusCode, String);

/// Re-reads the password file and the ACL (as SIGHUP does); connected
/// clients stay. 422 with the reason when a file is unusable (the rules in
/// force stay).
async fn auth_reload(State(state): State<AdminState>) -> JsonReply {
    match crate::cluster::auth_sync::push(&state.cluster, &state.broker.settings().auth).await {
        Ok(r) => {
            tracing::info!(
                users = r.users,
                acl_rules = r.rules,
                "reloaded the password file and the ACL"
            );
            (
                StatusCode::OK,
                json!({ "users": r.users, "acl_rules": r.rules }).to_string() + "\n",
            )
        }
        Err(e) => {
            tracing::error!("reload refused, the previous rules stay: {e}");
            (
                StatusCode::UNPROCESSABLE_ENTITY,
                json!({ "error": e }).to_string() + "\n",
            )
        }
    }
}

async fn cluster_status(State(state): State<AdminState>) -> JsonReply {
    let status = state.cluster.status(true);
    (StatusCode::OK, status_json(&status).to_string() + "\n")
}

/// This node leaves the cluster, then shuts down (its clients get
/// DISCONNECT 0x8B and reconnect elsewhere; the process exits).
async fn cluster_leave(State(state): State<AdminState>) -> JsonReply {
    let reply = leave(&state, None).await;
    if reply.0 == StatusCode::OK {
        tracing::info!("left the cluster: shutting down");
        state.broker.begin_shutdown();
    }
    reply
}

async fn cluster_remove(State(state): State<AdminState>, Path(node_id): Path<String>) -> JsonReply {
    match node_id.parse::<u64>() {
        Ok(id) if id != 0 => leave(&state, Some(id)).await,
        _ => error_reply(
            StatusCode::BAD_REQUEST,
            &format!("`{node_id}` is not a node ID (a positive integer)"),
        ),
    }
}

async fn leave(state: &AdminState, node_id: Option<u64>) -> JsonReply {
    match state.cluster.leave(node_id).await {
        Ok(r) => (
            StatusCode::OK,
            json!({ "node_id": r.node_id, "state": "left" }).to_string() + "\n",
        ),
        Err(status) => {
            let code = match status.code() {
                tonic::Code::NotFound => StatusCode::NOT_FOUND,
                tonic::Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
                tonic::Code::FailedPrecondition | tonic::Code::InvalidArgument => {
                    StatusCode::CONFLICT
                }
                _ => StatusCode::INTERNAL_SERVER_ERROR,
            };
            error_reply(code, status.message())
        }
    }
}

fn error_reply(code: StatusCode, message: &str) -> JsonReply {
    (code, json!({ "error": message }).to_string() + "\n")
}

/// The cluster status as JSON (what `quicmq cluster status` prints).
fn status_json(s: &StatusResponse) -> serde_json::Value {
    let members: Vec<serde_json::Value> = s
        .members
        .iter()
        .filter_map(|m| {
            let member = m.member.as_ref()?;
            let role = match MemberRole::try_from(member.role) {
                Ok(MemberRole::Voter) => "voter",
                Ok(MemberRole::Learner) => "learner",
                _ => "unknown",
            };
            let state = match MemberState::try_from(member.state) {
                Ok(MemberState::Active) => "alive",
                Ok(MemberState::Suspect) => "suspect",
                Ok(MemberState::Down) => "down",
                Ok(MemberState::Left) => "left",
                Ok(MemberState::Joining) => "joining",
                Ok(MemberState::Leaving) => "leaving",
                _ => "unknown",
            };
            Some(json!({
                "node_id": member.node_id,
                "server_id": quicmq_proto::hex::encode(&member.server_id),
                "grpc_addr": member.grpc_addr,
                "routed_addr": member.routed_addr,
                "public_addr": member.public_addr,
                "zone": member.zone,
                "role": role,
                "state": state,
                "state_since_ms": member.state_since_ms,
                "matched_index": m.matched_index,
            }))
        })
        .collect();
    let routes: Vec<serde_json::Value> = s
        .routes
        .iter()
        .map(|r| json!({ "filter": r.filter, "node_ids": r.node_ids }))
        .collect();
    json!({
        "cluster_id": s.cluster_id,
        "node_id": s.node_id,
        "leader_node_id": s.leader_node_id,
        "term": s.term,
        "applied_index": s.applied_index,
        "members": members,
        "routes": routes,
        "retained_messages": s.retained_messages,
        "persistent_sessions": s.persistent_sessions,
        "queued_messages": s.queued_messages,
        "wills": { "held": s.wills_held, "released": s.wills_released },
    })
}
