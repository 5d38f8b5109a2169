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
