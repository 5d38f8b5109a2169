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
