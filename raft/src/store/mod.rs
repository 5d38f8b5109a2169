//! Raft storage in sled: the log and vote ([`LogStore`]), the state machine
//! and its snapshots ([`StateMachineStore`]), and the applied state shared
//! with the node ([`SharedState`]).
//!
//! Both stores live in one sled database (its own directory, e.g.
//! `DATA_DIR/raft`), in separate trees.

mod log_store;
mod shared;
mod state_machine;

pub use log_store::LogStore;
pub use shared::{ChangeBatch, SharedState};
pub use state_machine::{StateMachineSnapshotBuilder, StateMachineStore};

/// One sled `flush_async` at a time in this process.
static FLUSHING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Makes everything written to `tree`'s database durable.
///
/// sled 0.34's `flush_async` can lose its wake-up when several are polled
/// at once (spacejam/sled#1241, #1308), leaving its caller waiting for
/// ever; the log store and the state machine share one database and may
/// flush at the same time. So flushes take turns. (Not the blocking
/// `flush` on a blocking thread: a flush abandoned when Raft shuts down
/// would hold the database open after the node has stopped.)
pub(crate) async fn flush_tree(tree: &sled::Tree) -> Result<(), sled::Error> {
    let _turn = FLUSHING.lock().await;
    tree.flush_async().await.map(|_| ())
}

/// Opens the sled database in `dir` for a test that reopens it in the same
/// process: a `Db` dropped just before may hold the directory's lock for a
/// moment (sled's flusher thread lets go of it asynchronously), so this
/// retries for up to 5 s.
#[cfg(test)]
pub(crate) fn reopen_db(dir: &std::path::Path) -> sled::Db {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        match sled::open(dir) {
            Ok(db) => return db,
            Err(_) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Err(e) => panic!("sled::open {}: {e}", dir.display()),
        }
    }
}
