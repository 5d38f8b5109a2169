//! Router admin HTTP: `/metrics`, `/health/live`, `/health/ready` (ready
//! while at least one node is alive).

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
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
        .with_state(AdminState { router, metrics });
    axum::serve(listener, app).await
}

async fn ready(State(state): State<AdminState>) -> (StatusCode, String) {
    let alive: Vec<&str> = state
        .router
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
