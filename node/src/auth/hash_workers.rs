//! The node's password checks: at most `max_concurrent_auth` argon2id
//! hashes at once, each worker a thread of its own that keeps its hash
//! memory ([`HashMemory`], 19 MiB) from one check to the next, and a
//! bounded queue of checks waiting for a worker (`auth_queue`). A check
//! that finds the queue full is refused at once ([`WorkersBusy`]): the
//! client gets Server busy and the node spends nothing on it.
//!
//! So the memory password checks take is fixed at start-up (workers ×
//! hash memory), whatever the rate of logins, instead of one hash memory
//! per blocking-pool thread, allocated and freed per check and kept by the
//! allocator's per-thread arenas.
//!
//! ```
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! use std::sync::Arc;
//! use quicmq_node::auth::{hash_password, HashWorkers, PasswordFile};
//!
//! let mut file = PasswordFile::default();
//! file.set("alice", &hash_password(b"pw").unwrap()).unwrap();
//! let file = Arc::new(file);
//! let workers = HashWorkers::new(1, 8);
//! assert_eq!(workers.verify(file.clone(), "alice", b"pw".to_vec()).await, Ok(true));
//! assert_eq!(workers.verify(file, "alice", b"no".to_vec()).await, Ok(false));
//! # });
//! ```

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

use super::password_file::{HashMemory, PasswordFile};
use crate::metrics as m;

/// Every worker is busy and the queue is full: the check was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("every password check worker is busy and the queue is full")]
pub struct WorkersBusy;

struct Check {
    file: Arc<PasswordFile>,
    name: String,
    password: Vec<u8>,
    reply: oneshot::Sender<bool>,
}

/// A fixed set of password-check threads behind a bounded queue.
pub struct HashWorkers {
    queue: SyncSender<Check>,
    /// Checks queued or running.
    pending: Arc<AtomicUsize>,
    workers: usize,
}

impl std::fmt::Debug for HashWorkers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HashWorkers")
            .field("workers", &self.workers)
            .field("pending", &self.pending.load(Ordering::Relaxed))
            .finish()
    }
}

impl HashWorkers {
    /// Starts `workers` threads (at least 1) with a queue of `queue`
    /// checks waiting for them. The threads end once the `HashWorkers` is
    /// dropped and the queue is drained.
    pub fn new(workers: usize, queue: usize) -> HashWorkers {
        let workers = workers.max(1);
        let (tx, rx) = mpsc::sync_channel(queue);
        let rx = Arc::new(Mutex::new(rx));
        let pending = Arc::new(AtomicUsize::new(0));
        for index in 0..workers {
            let rx = rx.clone();
            let pending = pending.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("quicmq-auth-{index}"))
                .spawn(move || work(&rx, &pending));
            if let Err(e) = spawned {
                tracing::error!("could not start password check worker {index}: {e}");
            }
        }
        HashWorkers {
            queue: tx,
            pending,
            workers,
        }
    }

    /// Number of worker threads.
    pub fn workers(&self) -> usize {
        self.workers
    }

    /// Whether `password` is `name`'s in `file`, checked on a worker.
    ///
    /// # Errors
    ///
    /// [`WorkersBusy`] at once when every worker is busy and the queue is
    /// full.
    pub async fn verify(
        &self,
        file: Arc<PasswordFile>,
        name: &str,
        password: Vec<u8>,
    ) -> Result<bool, WorkersBusy> {
        let (reply, answer) = oneshot::channel();
        let check = Check {
            file,
            name: name.to_owned(),
            password,
            reply,
        };
        let before = self.pending.fetch_add(1, Ordering::Relaxed);
        match self.queue.try_send(check) {
            Ok(()) => {
                metrics::gauge!(m::AUTH_PENDING).set((before + 1) as f64);
                // A worker that is gone (it never started) answers no.
                Ok(answer.await.unwrap_or(false))
            }
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.pending.fetch_sub(1, Ordering::Relaxed);
                Err(WorkersBusy)
            }
        }
    }
}

fn work(queue: &Mutex<Receiver<Check>>, pending: &AtomicUsize) {
    let mut memory = HashMemory::default();
    loop {
        let next = match queue.lock() {
            Ok(rx) => rx.recv(),
            Err(poisoned) => poisoned.into_inner().recv(),
        };
        let Ok(check) = next else { return };
        let matches = check
            .file
            .verify_in(&check.name, &check.password, &mut memory);
        let left = pending.fetch_sub(1, Ordering::Relaxed).saturating_sub(1);
        metrics::gauge!(m::AUTH_PENDING).set(left as f64);
        // The client may have gone meanwhile.
        let _ = check.reply.send(matches);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::hash_password;

    fn alice() -> Arc<PasswordFile> {
        let mut file = PasswordFile::default();
        file.set("alice", &hash_password(b"pw").unwrap()).unwrap();
        Arc::new(file)
    }

    #[tokio::test]
    async fn a_full_queue_refuses_at_once_and_no_check_is_lost() {
        let file = alice();
        let workers = Arc::new(HashWorkers::new(1, 2));
        // Two queued (and one running once the worker has started); the
        // rest find the queue full.
        let checks: Vec<_> = (0..12)
            .map(|_| {
                let workers = workers.clone();
                let file = file.clone();
                tokio::spawn(async move { workers.verify(file, "alice", b"pw".to_vec()).await })
            })
            .collect();
        let mut answered = 0;
        let mut busy = 0;
        for check in checks {
            match check.await.unwrap() {
                Ok(true) => answered += 1,
                Ok(false) => panic!("the right password was refused"),
                Err(WorkersBusy) => busy += 1,
            }
        }
        assert!(busy > 0, "some found the queue full");
        assert!(answered >= 2, "the queued ones were answered");
        assert_eq!(answered + busy, 12);
        // Once drained, checks are taken again.
        assert_eq!(
            workers.verify(file, "alice", b"pw".to_vec()).await,
            Ok(true)
        );
    }
}
