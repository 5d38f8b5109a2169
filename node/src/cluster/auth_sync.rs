//! The cluster's password file and ACL on this node: every node enforces
//! the texts in `ClusterState` (`Command::SetAuth`), whichever node read
//! them from its files.
//!
//! - [`follow`]: applies the cluster's texts now and on every change.
//! - [`push`]: a reload (SIGHUP, `POST /api/auth/reload`) reads this node's
//!   files, checks them and commits them through Raft; every node then
//!   applies them.
//! - [`adopt_or_seed`]: at start, a node applies the cluster's texts when
//!   the cluster has some (its own files are then only read again on a
//!   reload), or seeds the cluster with its files when it has none, so a
//!   restarted node with stale files does not overwrite newer rules.

use std::sync::Arc;

use quicmq_raft::command::{AuthRecord, Command, CommandResponse};
use quicmq_raft::state::StateChange;
use quicmq_raft::ClusterNode;
use tokio::sync::broadcast::error::RecvError;

use crate::auth::{AuthTexts, Authenticator, Reloaded};
use crate::broker::now_ms;

fn cluster_texts(cluster: &ClusterNode) -> Option<(u64, AuthTexts)> {
    cluster.shared().read(|s| {
        s.auth().map(|a| {
            (
                a.version,
                AuthTexts {
                    passwords: a.passwords.clone(),
                    acl: a.acl.clone(),
                },
            )
        })
    })
}

/// Applies the cluster's texts, if any; `true` if some were applied.
fn apply_cluster(cluster: &ClusterNode, auth: &Authenticator) -> bool {
    let Some((version, texts)) = cluster_texts(cluster) else {
        return false;
    };
    match auth.apply(&texts) {
        Ok(r) => {
            tracing::info!(
                version,
                users = r.users,
                acl_rules = r.rules,
                "applied the cluster's password file and ACL"
            );
            true
        }
        // Checked by the proposer, so only a newer format than this
        // node's could fail here.
        Err(e) => {
            tracing::error!(
                version,
                "the cluster's password file or ACL is unusable here, the previous rules stay: {e}"
            );
            false
        }
    }
}

/// At start: the cluster's texts when it has some, else this node's files
/// (committed for every node).
pub async fn adopt_or_seed(cluster: &ClusterNode, auth: &Authenticator) {
    if let Some((_, texts)) = cluster_texts(cluster) {
        if auth.has_files() && auth.read_files().ok().as_ref() != Some(&texts) {
            tracing::warn!(
                "this node's password_file or acl_file differs from the cluster's; the cluster's are in force (reload this node, SIGHUP or POST /api/auth/reload, to make its files the cluster's)"
            );
        }
        apply_cluster(cluster, auth);
        return;
    }
    if auth.has_files() {
        if let Err(e) = push(cluster, auth).await {
            tracing::warn!("could not give the cluster this node's password file and ACL: {e}");
        }
    }
}

/// Reads this node's files, checks them and commits them as the cluster's;
/// every node applies them as the entry arrives.
///
/// # Errors
///
/// A file is unusable (the rules in force stay), or the cluster did not
/// commit the change.
pub async fn push(cluster: &ClusterNode, auth: &Authenticator) -> Result<Reloaded, String> {
    let texts = auth.read_files()?;
    let record = AuthRecord {
        passwords: texts.passwords.clone(),
        acl: texts.acl.clone(),
        from_node: cluster.node_id(),
        at_ms: now_ms(),
        version: 0,
    };
    match cluster.propose(Command::SetAuth(record)).await {
        Ok(CommandResponse::Applied(true)) => {}
        Ok(other) => return Err(format!("the cluster refused the change: {other:?}")),
        Err(e) => return Err(format!("the cluster did not commit the change: {e}")),
    }
    // Proposing waits until the entry is applied here; apply it now so
    // the answer reflects what is in force.
    auth.apply(&texts)
}

/// Keeps `auth` in step with the cluster's texts until the cluster shuts
/// down.
pub async fn follow(cluster: ClusterNode, auth: Arc<Authenticator>) {
    let mut changes = cluster.shared().subscribe();
    // What changed before the subscription.
    apply_cluster(&cluster, &auth);
    loop {
        match changes.recv().await {
            Ok(batch) => {
                if batch
                    .changes
                    .iter()
                    .any(|c| matches!(c, StateChange::Auth | StateChange::Replaced))
                {
                    apply_cluster(&cluster, &auth);
                }
            }
            Err(RecvError::Lagged(_)) => {
                apply_cluster(&cluster, &auth);
            }
            Err(RecvError::Closed) => return,
        }
    }
}
