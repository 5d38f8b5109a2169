//! The node's password checks: at most `max_concurrent_auth` argon2id
//! hashes at once, each worker a thread of its own that keeps its hash
//! memory ([`HashMemory`], 19 MiB) from one check to the next, and two
//! bounded queues of checks waiting for a worker (`auth_queue` each):
//! checks from addresses without recent failed logins go first, those
//! from addresses that failed wait until no clean one does. A check that
//! finds its queue full is refused at once ([`WorkersBusy`]): the client
//! gets Server busy and the node spends nothing on it.
//!
//! So the memory password checks take is fixed at start-up (workers ×
//! hash memory), whatever the rate of logins, instead of one hash memory
//! per blocking-pool thread, allocated and freed per check and kept by the
//! allocator's per-thread arenas.
//!
//! ```
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! use std::sync::Arc;
//! use quicmq_node::auth::{hash_password, CheckPriority, HashWorkers, PasswordFile};
//!
//! let mut file = PasswordFile::default();
//! file.set("alice", &hash_password(b"pw").unwrap()).unwrap();
//! let file = Arc::new(file);
//! let workers = HashWorkers::new(1, 8);
//! let clean = CheckPriority::Clean;
//! assert_eq!(workers.verify(file.clone(), "alice", b"pw".to_vec(), clean).await, Ok(true));
//! assert_eq!(workers.verify(file, "alice", b"no".to_vec(), clean).await, Ok(false));
//! # });
//! ```

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use tokio::sync::oneshot;

use super::password_file::{HashMemory, PasswordFile};
use crate::metrics as m;

/// Every worker is busy and the queue is full: the check was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("every password check worker is busy and the queue is full")]
pub struct WorkersBusy;

/// Which queue a check waits in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckPriority {
    /// From an address without recent failed logins: served first.
    Clean,
    /// From an address that failed recently: served when no clean check
    /// waits.
    Suspect,
}

struct Check {
    file: Arc<PasswordFile>,
    name: String,
    password: Vec<u8>,
    reply: oneshot::Sender<bool>,
}

#[derive(Default)]
struct Queues {
    clean: VecDeque<Check>,
    suspect: VecDeque<Check>,
    /// Checks being hashed now.
    running: usize,
    closed: bool,
}

impl Queues {
    fn pending(&self) -> usize {
        self.clean.len() + self.suspect.len() + self.running
    }
}

struct Shared {
    queues: Mutex<Queues>,
    ready: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Queues> {
        self.queues.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A fixed set of password-check threads behind two bounded queues:
/// checks from addresses without recent failures go first, so a flood of
/// guesses neither delays nor crowds out honest logins.
pub struct HashWorkers {
    shared: Arc<Shared>,
    capacity: usize,
    workers: usize,
}

impl std::fmt::Debug for HashWorkers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HashWorkers")
            .field("workers", &self.workers)
            .field("pending", &self.shared.lock().pending())
            .finish()
    }
}

impl HashWorkers {
    /// Starts `workers` threads (at least 1), each queue holding up to
    /// `queue` checks waiting for them. The threads end once the
    /// `HashWorkers` is dropped and the queues are drained.
    pub fn new(workers: usize, queue: usize) -> HashWorkers {
        let workers = workers.max(1);
        let shared = Arc::new(Shared {
            queues: Mutex::new(Queues::default()),
            ready: Condvar::new(),
        });
        for index in 0..workers {
            let shared = shared.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("quicmq-auth-{index}"))
                .spawn(move || work(&shared));
            if let Err(e) = spawned {
                tracing::error!("could not start password check worker {index}: {e}");
            }
        }
        HashWorkers {
            shared,
            capacity: queue,
            workers,
        }
    }

    /// Number of worker threads.
    pub fn workers(&self) -> usize {
        self.workers
    }

    /// Whether `password` is `name`'s in `file`, checked on a worker; the
    /// check waits in the queue of `priority`.
    ///
    /// # Errors
    ///
    /// [`WorkersBusy`] at once when that queue is full.
    pub async fn verify(
        &self,
        file: Arc<PasswordFile>,
        name: &str,
        password: Vec<u8>,
        priority: CheckPriority,
    ) -> Result<bool, WorkersBusy> {
        let (reply, answer) = oneshot::channel();
        {
            let mut queues = self.shared.lock();
            let queue = match priority {
                CheckPriority::Clean => &mut queues.clean,
                CheckPriority::Suspect => &mut queues.suspect,
            };
            if queue.len() >= self.capacity {
                return Err(WorkersBusy);
            }
            queue.push_back(Check {
                file,
                name: name.to_owned(),
                password,
                reply,
            });
            metrics::gauge!(m::AUTH_PENDING).set(queues.pending() as f64);
        }
        self.shared.ready.notify_one();
        // A worker that is gone (it never started) answers no.
        Ok(answer.await.unwrap_or(false))
    }
}

impl Drop for HashWorkers {
    fn drop(&mut self) {
        self.shared.lock().closed = true;
        self.shared.ready.notify_all();
    }
}

fn work(shared: &Shared) {
    let mut memory = HashMemory::default();
    loop {
        let check = {
            let mut queues = shared.lock();
            loop {
                if let Some(check) = queues
                    .clean
                    .pop_front()
                    .or_else(|| queues.suspect.pop_front())
                {
                    queues.running += 1;
                    break check;
                }
                if queues.closed {
                    return;
                }
                queues = shared.ready.wait(queues).unwrap_or_else(|p| p.into_inner());
            }
        };
        let matches = check
            .file
            .verify_in(&check.name, &check.password, &mut memory);
        {
            let mut queues = shared.lock();
            queues.running -= 1;
            metrics::gauge!(m::AUTH_PENDING).set(queues.pending() as f64);
        }
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
                tokio::spawn(async move {
                    workers
                        .verify(file, "alice", b"pw".to_vec(), CheckPriority::Suspect)
                        .await
                })
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
            workers
                .verify(file, "alice", b"pw".to_vec(), CheckPriority::Suspect)
                .await,
            Ok(true)
        );
    }

    #[tokio::test]
    async fn clean_checks_go_before_suspect_ones_and_have_room_of_their_own() {
        let file = alice();
        let workers = Arc::new(HashWorkers::new(1, 8));
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        // Suspect checks fill their queue (and one runs)...
        for i in 0..9 {
            let (workers, file, order) = (workers.clone(), file.clone(), order.clone());
            tasks.push(tokio::spawn(async move {
                let r = workers
                    .verify(file, "alice", b"pw".to_vec(), CheckPriority::Suspect)
                    .await;
                order.lock().unwrap().push(format!("s{i}"));
                r
            }));
            tokio::task::yield_now().await;
        }
        // ...a clean one still gets in, and is answered before the
        // suspects that waited.
        let clean = workers
            .verify(file.clone(), "alice", b"pw".to_vec(), CheckPriority::Clean)
            .await;
        order.lock().unwrap().push("clean".into());
        assert_eq!(clean, Ok(true));
        for task in tasks {
            let _ = task.await.unwrap();
        }
        let order = order.lock().unwrap().clone();
        let clean_at = order.iter().position(|o| o == "clean").unwrap();
        assert!(
            clean_at <= 2,
            "the clean check overtook the queue: {order:?}"
        );
    }
}
