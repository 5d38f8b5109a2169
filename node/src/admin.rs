//! Admin HTTP: `/metrics` (Prometheus text), `/health/live`,
//! `/health/ready`.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;

use crate::broker::Broker;

#[derive(Clone)]
struct AdminState {
    broker: Arc<Broker>,
    metrics: PrometheusHandle,
}

/// Serve the admin endpoints. They stay up through a graceful shutdown
/// (`/health/ready` then answers 503) until the node stops its tasks.
pub async fn serve_admin(broker: Arc<Broker>, metrics: PrometheusHandle, listener: TcpListener) {
    let app = Router::new()
        .route("/metrics", get(render_metrics))
        .route("/health/live", get(|| async { "ok\n" }))
        .route("/health/ready", get(ready))
        .with_state(AdminState { broker, metrics });
    if let Err(e) = axum::serve(listener, app).await {
        tracing::error!(error = %e, "admin HTTP server failed");
    }
}

async fn render_metrics(State(state): State<AdminState>) -> String {
    state.metrics.run_upkeep();
    state.metrics.render()
}

async fn ready(State(state): State<AdminState>) -> (StatusCode, &'static str) {
    if state.broker.is_shutting_down() {
        (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n")
    } else {
        (StatusCode::OK, "ready\n")
    }
}
