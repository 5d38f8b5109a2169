//! Session claims in batches (group commit): the claims of many connecting
//! clients go through Raft as one `Command::Batch` log entry, so a storm of
//! reconnecting persistent sessions costs a few commits instead of one per
//! client queued behind each other.
//!
//! Up to [`IN_FLIGHT`] batches are proposed at once; while they commit,
//! new claims gather into the next batch, so batches grow with the load.
//! Applied one after another in the state machine, the claims of a batch
//! decide exactly as they would have one by one.

use std::sync::Arc;

use quicmq_raft::command::{Command, CommandResponse};
use quicmq_raft::{ClusterError, ClusterNode};
use tokio::sync::{mpsc, oneshot, Semaphore};

/// Most claims in one log entry.
const MAX_BATCH: usize = 512;
/// Batches proposed at once.
const IN_FLIGHT: usize = 4;

type Reply = oneshot::Sender<Result<CommandResponse, ClusterError>>;

/// Where claims are handed to the batcher.
#[derive(Clone)]
pub(crate) struct ClaimBatcher {
    tx: mpsc::UnboundedSender<(Command, Reply)>,
}

impl ClaimBatcher {
    /// Starts the batcher for `node`. Call from within the runtime.
    pub(crate) fn start(node: ClusterNode) -> ClaimBatcher {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(node, rx));
        ClaimBatcher { tx }
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

async fn run(node: ClusterNode, mut rx: mpsc::UnboundedReceiver<(Command, Reply)>) {
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
        let node = node.clone();
        tokio::spawn(async move {
            propose_batch(&node, batch).await;
            drop(permit);
        });
    }
}

async fn propose_batch(node: &ClusterNode, batch: Vec<(Command, Reply)>) {
    metrics::histogram!(crate::metrics::CLAIM_BATCH_SIZE).record(batch.len() as f64);
    let (commands, replies): (Vec<Command>, Vec<Reply>) = batch.into_iter().unzip();
    let answers = match commands.len() {
        1 => {
            let result = node
                .propose(
                    commands
                        .into_iter()
                        .next()
                        .unwrap_or(Command::Batch(Vec::new())),
                )
                .await;
            vec![result]
        }
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
