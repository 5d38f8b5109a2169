//! Group flushing of the node's sled store: everyone who needs what they
//! wrote to be on disk waits for one flush that started after their write,
//! and one flush serves every waiter that arrived while the previous one
//! ran (group commit), instead of one `fsync` per acknowledged message.
//!
//! Every flush of the node's store goes through here: one flush at a time,
//! never several `flush_async` calls at once (those can hang in sled 0.34).

use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

/// Flushes `db` for whoever asks, many askers per flush.
///
/// No task outlives the flushing: a blocking thread flushes while anyone
/// waits and lets go of the database when nobody does (a node shut down
/// and reopened in the same process finds its directory unlocked).
pub struct FlushGroup {
    db: sled::Db,
    state: Arc<Mutex<FlushState>>,
}

#[derive(Default)]
struct FlushState {
    /// A blocking thread is flushing (and will serve `waiting`).
    running: bool,
    /// Who asked since the current flush started.
    waiting: Vec<oneshot::Sender<bool>>,
}

impl FlushGroup {
    /// A group over `db`.
    pub fn new(db: sled::Db) -> FlushGroup {
        FlushGroup {
            db,
            state: Arc::new(Mutex::new(FlushState::default())),
        }
    }

    /// A receiver that learns, once a flush started after this call is
    /// done, whether it succeeded. Call from within the tokio runtime.
    pub fn flushed(&self) -> oneshot::Receiver<bool> {
        let (done, rx) = oneshot::channel();
        let start = {
            let mut state = lock(&self.state);
            state.waiting.push(done);
            !std::mem::replace(&mut state.running, true)
        };
        if start {
            let db = self.db.clone();
            let state = self.state.clone();
            tokio::task::spawn_blocking(move || flush_while_asked(db, state));
        }
        rx
    }
}

fn lock(state: &Mutex<FlushState>) -> std::sync::MutexGuard<'_, FlushState> {
    state.lock().unwrap_or_else(|p| p.into_inner())
}

/// Flushes until nobody waits: everyone who asked before a flush starts
/// is served by it. sled's blocking `flush` (on this blocking thread), not
/// `flush_async`: the latter can lose its wake-up when several run at once
/// (spacejam/sled#1241, #1308).
fn flush_while_asked(db: sled::Db, state: Arc<Mutex<FlushState>>) {
    let _unwinding = ResetOnPanic(&state);
    let mut waiters = std::mem::take(&mut lock(&state).waiting);
    loop {
        let ok = match db.flush() {
            Ok(_) => true,
            Err(e) => {
                tracing::error!(error = %e, "could not flush the data store");
                false
            }
        };
        metrics::histogram!(crate::metrics::STORE_FLUSH_GROUP).record(waiters.len() as f64);
        let next = {
            let mut state = lock(&state);
            let next = std::mem::take(&mut state.waiting);
            state.running = !next.is_empty();
            next
        };
        if next.is_empty() {
            // Let go of the database before anyone learns the flush is
            // done.
            drop(db);
            answer(waiters, ok);
            return;
        }
        answer(std::mem::replace(&mut waiters, next), ok);
    }
}

/// Should the flush thread panic, the next caller starts a new one, and
/// those waiting learn of the failure (their senders are dropped).
struct ResetOnPanic<'a>(&'a Mutex<FlushState>);

impl Drop for ResetOnPanic<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let mut state = lock(self.0);
            state.running = false;
            state.waiting.clear();
        }
    }
}

fn answer(waiters: Vec<oneshot::Sender<bool>>, ok: bool) {
    for waiter in waiters {
        let _ = waiter.send(ok);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn every_waiter_learns_of_a_flush_after_its_request() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path()).unwrap();
        let group = FlushGroup::new(db.clone());
        let mut receivers = Vec::new();
        for i in 0..100u32 {
            db.insert(i.to_be_bytes(), &[1u8][..]).unwrap();
            receivers.push(group.flushed());
        }
        for rx in receivers {
            assert_eq!(rx.await, Ok(true));
        }
    }
}
