//! `quicmq-node`: run one broker node.

use anyhow::Context;
use quicmq_node::config::NodeConfig;
use quicmq_node::node::RunningNode;
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let config = match NodeConfig::load() {
        Ok(config) => config,
        Err(e) => {
            eprintln!("quicmq-node: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::new(&config.log))
        .init();
    match run(config).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("quicmq-node: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(config: NodeConfig) -> anyhow::Result<()> {
    // Before starting: a SIGTERM that arrives while the node starts (its
    // ports may already accept) shuts it down cleanly once it runs.
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("cannot listen for SIGTERM")?;
    let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .context("cannot listen for SIGHUP")?;
    let node = RunningNode::start(&config).await.context("cannot start")?;
    let mut left = node.broker().shutdown_signal();
    loop {
        tokio::select! {
            _ = term.recv() => {
                tracing::info!("SIGTERM: shutting down");
                break;
            }
            _ = tokio::signal::ctrl_c() => {
                tracing::info!("interrupted: shutting down");
                break;
            }
            _ = quicmq_node::broker::shutdown_started(&mut left) => break,
            _ = hangup.recv() => {
                // The password file and the ACL again; connections stay.
                match node.reload_auth().await {
                    Ok(r) => tracing::info!(users = r.users, acl_rules = r.rules, "SIGHUP: reloaded the password file and the ACL"),
                    Err(e) => tracing::error!("SIGHUP: reload refused, the previous rules stay: {e}"),
                }
            }
        }
    }
    node.shutdown().await.context("flushing the data store")?;
    tracing::info!("stopped");
    Ok(())
}
