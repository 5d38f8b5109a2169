//! Session claims in batches (group commit): the claims of many connecting
//! clients go through Raft as one `Command::Batch` log entry, so a storm of
//! reconnecting persistent sessions costs a few commits instead of one per
//! client queued behind each other.
//!
//! Up to [`IN_FLIGHT`] batches are proposed at once; while they commit,
//! new claims gather into the next batch, so batches grow with the load.
//! Applied one after another in the state machine, the claims of a batch
//! decide exactly as they would have one by one.

use std::sync::{Arc, Weak};

use quicmq_raft::command::{Command, CommandResponse};
use quicmq_raft::{ClusterError, ClusterNode};
use tokio::sync::{mpsc, oneshot, Semaphore};

use super::link::ClusterLink;

/// Most claims in one log entry.
const MAX_BATCH: usize = 512;
/// Batches proposed at once.
const IN_FLIGHT: usize = 4;

type Reply = oneshot::Sender<Result<CommandResponse, ClusterError>>;

/// The claims waiting for the batcher task.
pub(crate) type ClaimQueue = mpsc::UnboundedReceiver<(Command, Reply)>;

/// Where claims are handed to the batcher.
#[derive(Clone)]
pub(crate) struct ClaimBatcher {
    tx: mpsc::UnboundedSender<(Command, Reply)>,
}

impl ClaimBatcher {
    /// A batcher and the queue its task ([`run`]) serves.
    pub(crate) fn new() -> (ClaimBatcher, ClaimQueue) {
        let (tx, rx) = mpsc::unbounded_channel();
        (ClaimBatcher { tx }, rx)
    }

    /// Proposes `claim` with the others waiting now; the answer is the
    /// claim's own response.
    pub(crate) async fn propose(&self, claim: Command) -> Result<CommandResponse, ClusterError> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send((claim, reply))
            .map_err(|_| ClusterError::Refused("the claim batcher stopped".into()))?;
        answer
            .await
            .map_err(|_| ClusterError::Refused("the claim batcher stopped".into()))?
    }
}

/// Proposes the claims of `rx` in batches through `link`'s Raft node, until
/// the link is gone (the task holds it only while a batch is proposed, so
/// a node that shuts down lets go of its Raft store).
pub(crate) async fn run(link: Weak<ClusterLink>, mut rx: ClaimQueue) {
    let permits = Arc::new(Semaphore::new(IN_FLIGHT));
    loop {
        // Wait for a free slot first: claims arriving meanwhile join the
        // next batch.
        let Ok(permit) = permits.clone().acquire_owned().await else {
            return;
        };
        let Some(first) = rx.recv().await else { return };
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(claim) => batch.push(claim),
                Err(_) => break,
            }
        }
        let Some(node) = link.upgrade().map(|l| l.cluster().clone()) else {
            return;
        };
        tokio::spawn(async move {
            propose_batch(&node, batch).await;
            drop(permit);
        });
    }
}

async fn propose_batch(node: &ClusterNode, batch: Vec<(Command, Reply)>) {
    metrics::histogram!(crate::metrics::CLAIM_BATCH_SIZE).record(batch.len() as f64);
    let (mut commands, replies): (Vec<Command>, Vec<Reply>) = batch.into_iter().unzip();
    let answers = match commands.len() {
        // One claim alone is proposed as itself.
        1 => vec![node.propose(commands.remove(0)).await],
        n => match node.propose(Command::Batch(commands)).await {
            Ok(CommandResponse::Batch(responses)) if responses.len() == n => {
                responses.into_iter().map(Ok).collect()
            }
            Ok(other) => (0..n)
                .map(|_| {
                    Err(ClusterError::Refused(format!(
                        "unexpected batch response {other:?}"
                    )))
                })
                .collect(),
            Err(e) => (0..n).map(|_| Err(same_error(&e))).collect(),
        },
    };
    for (reply, answer) in replies.into_iter().zip(answers) {
        let _ = reply.send(answer);
    }
}

/// The error of a failed batch, for each of its claims.
fn same_error(e: &ClusterError) -> ClusterError {
    match e {
        ClusterError::NoLeader(wait) => ClusterError::NoLeader(*wait),
        other => ClusterError::Refused(other.to_string()),
    }
}
