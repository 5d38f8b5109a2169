//! `quicmq-router`: the stateless QUIC-LB router.

use anyhow::Context;
use metrics_exporter_prometheus::PrometheusBuilder;
use quicmq_proto::cluster_tls::ClusterTls;
use quicmq_router::admin::serve_admin;
use quicmq_router::config::{ClusterSource, RouterConfig};
use quicmq_router::forward::Router;
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let config = match RouterConfig::load() {
        Ok(config) => config,
        Err(e) => {
            eprintln!("quicmq-router: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::new(&config.log))
        .init();
    // Unusable cluster TLS files are configuration errors, before anything
    // binds.
    let tls = match &config.cluster {
        ClusterSource::Watch(w) => match w.tls.load() {
            Ok(tls) => tls,
            Err(e) => {
                eprintln!("quicmq-router: {e}");
                return std::process::ExitCode::from(2);
            }
        },
        ClusterSource::Static(_) => None,
    };
    match run(config, tls).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("quicmq-router: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(config: RouterConfig, tls: Option<ClusterTls>) -> anyhow::Result<()> {
    let metrics = PrometheusBuilder::new()
        .install_recorder()
        .context("installing the metrics recorder")?;
    let router = Router::bind(&config)?;
    let mut tasks = tokio::task::JoinSet::new();
    if let Some(addr) = config.admin_addr {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("admin_addr: cannot listen on {addr}"))?;
        tasks.spawn(serve_admin(router.clone(), metrics, listener));
    }
    tasks.spawn(router.clone().run_public());
    tasks.spawn(router.clone().run_internal());
    let health = router.clone();
    tasks.spawn(async move {
        health.run_health().await;
        Ok(())
    });
    match &config.cluster {
        ClusterSource::Static(c) => {
            tracing::info!(listen = %router.public_addr(), nodes = c.nodes.len(), "quicmq router forwarding (static node table)");
        }
        ClusterSource::Watch(w) => {
            if tls.is_none() {
                tracing::warn!("cluster_plaintext: watching the cluster without TLS");
            }
            tracing::info!(listen = %router.public_addr(), seeds = %w.seeds.join(","), "quicmq router following the cluster; forwarding once its state arrives");
            let watched = router.clone();
            let watch = w.clone();
            tasks.spawn(async move {
                quicmq_router::watch::run(watched, watch, tls).await;
                Ok(())
            });
        }
    }
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: stopping"),
        _ = tokio::signal::ctrl_c() => tracing::info!("interrupted: stopping"),
        done = tasks.join_next() => {
            if let Some(Ok(Err(e))) = done {
                return Err(e).context("a router loop failed");
            }
        }
    }
    Ok(())
}
