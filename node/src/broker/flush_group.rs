//! Group flushing of the node's sled store: everyone who needs what they
//! wrote to be on disk waits for one flush that started after their write,
//! and one flush serves every waiter that arrived while the previous one
//! ran (group commit), instead of one `fsync` per acknowledged message.
//!
//! Every flush of the node's store goes through here: one flush at a time,
//! never several `flush_async` calls at once (those can hang in sled 0.34).

use std::sync::{Mutex, OnceLock};

use tokio::sync::{mpsc, oneshot};

/// Flushes `db` for whoever asks, many askers per flush.
pub struct FlushGroup {
    db: sled::Db,
    /// Started with the first request (which comes from within the
    /// runtime).
    tx: OnceLock<mpsc::UnboundedSender<oneshot::Sender<bool>>>,
    start: Mutex<()>,
}

impl FlushGroup {
    /// A group over `db`; its task starts with the first request.
    pub fn new(db: sled::Db) -> FlushGroup {
        FlushGroup {
            db,
            tx: OnceLock::new(),
            start: Mutex::new(()),
        }
    }

    /// A receiver that learns, once a flush started after this call is
    /// done, whether it succeeded. Call from within the tokio runtime.
    pub fn flushed(&self) -> oneshot::Receiver<bool> {
        let (done, rx) = oneshot::channel();
        if let Err(e) = self.sender().send(done) {
            let _ = e.0.send(false);
        }
        rx
    }

    fn sender(&self) -> &mpsc::UnboundedSender<oneshot::Sender<bool>> {
        if let Some(tx) = self.tx.get() {
            return tx;
        }
        let _guard = self.start.lock().unwrap_or_else(|p| p.into_inner());
        self.tx.get_or_init(|| {
            let (tx, rx) = mpsc::unbounded_channel();
            tokio::spawn(run(self.db.clone(), rx));
            tx
        })
    }
}

async fn run(db: sled::Db, mut requests: mpsc::UnboundedReceiver<oneshot::Sender<bool>>) {
    let mut waiters = Vec::new();
    while let Some(first) = requests.recv().await {
        waiters.push(first);
        // Everyone who asked before this flush starts is served by it.
        while let Ok(more) = requests.try_recv() {
            waiters.push(more);
        }
        // Blocking `flush` on a blocking thread: sled 0.34's `flush_async`
        // can lose its wake-up when several are polled at once
        // (spacejam/sled#1241, #1308).
        let flushing = db.clone();
        let ok = match tokio::task::spawn_blocking(move || flushing.flush()).await {
            Ok(Ok(_)) => true,
            Ok(Err(e)) => {
                tracing::error!(error = %e, "could not flush the data store");
                false
            }
            Err(e) => {
                tracing::error!(error = %e, "the data store's flush thread ended early");
                false
            }
        };
        metrics::histogram!(crate::metrics::STORE_FLUSH_GROUP).record(waiters.len() as f64);
        for waiter in waiters.drain(..) {
            let _ = waiter.send(ok);
        }
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
