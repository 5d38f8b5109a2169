//! Router admin HTTP: `/metrics`, `/health/live`, `/health/ready` (ready
//! once the router has a node table — with seeds, after the cluster's
//! first snapshot — and while at least one node is alive), `/api/nodes`
//! (the node table as JSON).

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::routing::get;
use axum::Router as Routes;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;

use crate::forward::Router;

#[derive(Clone)]
struct AdminState {
    router: Arc<Router>,
    metrics: PrometheusHandle,
}

/// Serve the admin endpoints.
pub async fn serve_admin(
    router: Arc<Router>,
    metrics: PrometheusHandle,
    listener: TcpListener,
) -> std::io::Result<()> {
    let app = Routes::new()
        .route(
            "/metrics",
            get(|State(s): State<AdminState>| async move { s.metrics.render() }),
        )
        .route("/health/live", get(|| async { "ok\n" }))
        .route("/health/ready", get(ready))
        .route("/api/nodes", get(nodes))
        .with_state(AdminState { router, metrics });
    axum::serve(listener, app).await
}

async fn ready(State(state): State<AdminState>) -> (StatusCode, String) {
    let Some(routing) = state.router.routing() else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "no cluster state yet (waiting for the first snapshot from a seed)\n".into(),
        );
    };
    let alive: Vec<&str> = routing
        .table()
        .nodes()
        .iter()
        .filter(|n| n.is_alive())
        .map(|n| n.label.as_str())
        .collect();
    if alive.is_empty() {
        (StatusCode::SERVICE_UNAVAILABLE, "no live node\n".into())
    } else {
        (StatusCode::OK, format!("live nodes: {}\n", alive.join(" ")))
    }
}

/// The node table: `{"cluster_id", "revision", "leader_node_id", "seed",
/// "quic_lb": {...}, "nodes": [{"server_id", "node_id", "addr", "admission",
/// "live"}]}`; `503` with `"nodes": null` before the first snapshot.
async fn nodes(
    State(state): State<AdminState>,
) -> (StatusCode, [(header::HeaderName, &'static str); 1], String) {
    let json = [(header::CONTENT_TYPE, "application/json")];
    let Some(routing) = state.router.routing() else {
        let body = serde_json::json!({ "nodes": null, "error": "no cluster state yet" });
        return (StatusCode::SERVICE_UNAVAILABLE, json, body.to_string());
    };
    let origin = &routing.origin;
    let lb = routing.quic_lb();
    let nodes: Vec<serde_json::Value> = routing
        .table()
        .nodes()
        .iter()
        .map(|n| {
            serde_json::json!({
                "server_id": n.label,
                "node_id": n.node_id,
                "addr": n.routed_addr.map(|a| a.to_string()),
                "admission": n.admission.label(),
                "live": n.is_alive(),
            })
        })
        .collect();
    let body = serde_json::json!({
        "cluster_id": origin.cluster_id,
        "revision": origin.revision,
        "leader_node_id": origin.leader_node_id,
        "seed": origin.seed,
        "quic_lb": {
            "config_id": lb.config_id(),
            "server_id_len": lb.server_id_len(),
            "nonce_len": lb.nonce_len(),
            "encrypted": lb.key().is_some(),
        },
        "nodes": nodes,
    });
    (StatusCode::OK, json, body.to_string())
}
