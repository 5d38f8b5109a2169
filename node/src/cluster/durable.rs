//! Durable queues of persistent sessions: every QoS 1/2 delivery to a
//! persistent session is committed to the session's queue in
//! `ClusterState` before its publisher is acknowledged, and leaves it when
//! the subscriber acknowledges it. When the owner dies, the node that
//! resumes the session replays what is left.
//!
//! [`DurableQueues`] is the writer: one task per node takes every
//! operation waiting and proposes them as one `Command::Queue` entry
//! (group commit: while one entry is in flight, the next one fills), in
//! the order they were asked for, so an acknowledgement never overtakes
//! the push it removes.

use std::sync::Mutex;
use std::time::Duration;

use quicmq_raft::command::{Command, CommandResponse, QueueOp};
use quicmq_raft::ClusterNode;
use tokio::sync::{mpsc, oneshot};

use crate::broker::DeliveryRecord;
use crate::metrics::{DURABLE_BATCHES, DURABLE_FAILED, DURABLE_QUEUED};

/// Operations in one proposal at most.
const BATCH_MAX: usize = 4096;

struct Job {
    op: QueueOp,
    done: Option<oneshot::Sender<bool>>,
}

/// This node's writer of durable queue operations.
pub struct DurableQueues {
    node_id: quicmq_raft::NodeId,
    limit: u32,
    tx: Mutex<Option<mpsc::UnboundedSender<Job>>>,
    writer: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl DurableQueues {
    /// Starts the writer for `node`; queues keep at most `limit` messages
    /// (the oldest go first). Call from within the runtime.
    pub fn start(node: ClusterNode, limit: u32) -> DurableQueues {
        let (tx, rx) = mpsc::unbounded_channel();
        let node_id = node.node_id();
        let writer = tokio::spawn(write(node, rx));
        DurableQueues {
            node_id,
            limit,
            tx: Mutex::new(Some(tx)),
            writer: Mutex::new(Some(writer)),
        }
    }

    fn send(&self, job: Job) {
        let tx = self.tx.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let refused = match tx {
            Some(tx) => tx.send(job).err().map(|e| e.0),
            None => Some(job),
        };
        if let Some(Job {
            done: Some(done), ..
        }) = refused
        {
            let _ = done.send(false);
        }
    }

    /// Stops the writer after what it was given (at shutdown, before the
    /// cluster node closes its store).
    pub async fn close(&self) {
        drop(self.tx.lock().unwrap_or_else(|p| p.into_inner()).take());
        let writer = self.writer.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(writer) = writer {
            let _ = tokio::time::timeout(Duration::from_secs(6), writer).await;
        }
    }

    /// Queues delivery `id` of `client_id`'s session; the receiver learns
    /// whether it was committed (`false`: no leader, or this node no longer
    /// owns the session).
    pub fn push(
        &self,
        client_id: &str,
        id: u64,
        record: &DeliveryRecord,
    ) -> oneshot::Receiver<bool> {
        let (done, rx) = oneshot::channel();
        let record = match bincode::serialize(record) {
            Ok(record) => record,
            Err(e) => {
                tracing::error!(client_id, "cannot encode a durable delivery: {e}");
                let _ = done.send(false);
                return rx;
            }
        };
        self.send(Job {
            op: QueueOp::Push {
                client_id: client_id.to_owned(),
                owner: self.node_id,
                id,
                record,
                limit: self.limit,
            },
            done: Some(done),
        });
        rx
    }

    /// The subscriber acknowledged delivery `id` (or it was dropped): it
    /// leaves the queue with the next proposal.
    pub fn ack(&self, client_id: &str, id: u64) {
        self.send(Job {
            op: QueueOp::Ack {
                client_id: client_id.to_owned(),
                owner: self.node_id,
                ids: vec![id],
            },
            done: None,
        });
    }
}

/// Decodes a queued message of [`DurableQueues::push`].
pub fn decode(record: &[u8]) -> Option<DeliveryRecord> {
    bincode::deserialize(record).ok()
}

/// Waits for every completion; `false` if one failed or `limit` passed.
pub async fn all_committed(completions: Vec<oneshot::Receiver<bool>>, limit: Duration) -> bool {
    if completions.is_empty() {
        return true;
    }
    let all = async {
        for completion in completions {
            if completion.await != Ok(true) {
                return false;
            }
        }
        true
    };
    tokio::time::timeout(limit, all).await.unwrap_or(false)
}

/// Adjacent acknowledgements of one session become one operation.
fn coalesce(ops: &mut Vec<QueueOp>, op: QueueOp) {
    if let (
        Some(QueueOp::Ack {
            client_id: last,
            ids,
            ..
        }),
        QueueOp::Ack {
            client_id,
            ids: more,
            ..
        },
    ) = (ops.last_mut(), &op)
    {
        if *last == *client_id {
            ids.extend_from_slice(more);
            return;
        }
    }
    ops.push(op);
}

async fn write(node: ClusterNode, mut rx: mpsc::UnboundedReceiver<Job>) {
    while let Some(first) = rx.recv().await {
        let mut jobs = vec![first];
        while jobs.len() < BATCH_MAX {
            match rx.try_recv() {
                Ok(job) => jobs.push(job),
                Err(_) => break,
            }
        }
        // Completions by position in `ops`; acknowledgements merge into
        // the previous operation and have none.
        let mut ops = Vec::with_capacity(jobs.len());
        let mut waiting: Vec<(usize, oneshot::Sender<bool>)> = Vec::new();
        for job in jobs {
            let before = ops.len();
            coalesce(&mut ops, job.op);
            if let Some(done) = job.done {
                waiting.push((before, done));
            }
        }
        let pushes = waiting.len() as u64;
        metrics::counter!(DURABLE_BATCHES).increment(1);
        match node.propose(Command::Queue(ops)).await {
            Ok(CommandResponse::Batch(results)) => {
                let mut committed = 0;
                for (index, done) in waiting {
                    let ok = results.get(index) == Some(&CommandResponse::Applied(true));
                    committed += u64::from(ok);
                    let _ = done.send(ok);
                }
                metrics::counter!(DURABLE_QUEUED).increment(committed);
                if committed < pushes {
                    metrics::counter!(DURABLE_FAILED, "reason" => "not_owner")
                        .increment(pushes - committed);
                }
            }
            other => {
                if let Err(e) = other {
                    tracing::warn!("durable queue operations not committed: {e}");
                }
                metrics::counter!(DURABLE_FAILED, "reason" => "no_leader").increment(pushes);
                for (_, done) in waiting {
                    let _ = done.send(false);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ack(client_id: &str, id: u64) -> QueueOp {
        QueueOp::Ack {
            client_id: client_id.into(),
            owner: 1,
            ids: vec![id],
        }
    }

    #[test]
    fn adjacent_acknowledgements_of_a_session_merge() {
        let mut ops = Vec::new();
        for op in [ack("a", 1), ack("a", 2), ack("b", 1), ack("a", 3)] {
            coalesce(&mut ops, op);
        }
        assert_eq!(
            ops,
            vec![
                QueueOp::Ack {
                    client_id: "a".into(),
                    owner: 1,
                    ids: vec![1, 2]
                },
                ack("b", 1),
                ack("a", 3)
            ]
        );
    }

    #[tokio::test]
    async fn completions_fail_on_false_drop_or_timeout() {
        assert!(all_committed(Vec::new(), Duration::from_millis(1)).await);
        let (tx, rx) = oneshot::channel();
        tx.send(true).unwrap();
        assert!(all_committed(vec![rx], Duration::from_secs(1)).await);
        let (tx, rx) = oneshot::channel::<bool>();
        drop(tx);
        assert!(!all_committed(vec![rx], Duration::from_secs(1)).await);
        let (_tx, rx) = oneshot::channel::<bool>();
        assert!(!all_committed(vec![rx], Duration::from_millis(10)).await);
    }
}
