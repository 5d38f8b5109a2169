//! [`SharedState`]: the applied [`ClusterState`] as the rest of the node
//! sees it.

use std::sync::{Arc, RwLock};

use tokio::sync::{broadcast, watch};

use crate::command::{Command, CommandResponse};
use crate::state::{ClusterState, StateChange};

/// Changes that one applied log entry (or an installed snapshot) made.
#[derive(Debug, Clone)]
pub struct ChangeBatch {
    /// Log index after which these changes hold (the state's revision).
    pub revision: u64,
    /// What changed.
    pub changes: Arc<[StateChange]>,
}

/// The state machine's current [`ClusterState`], readable from any task,
/// with its revision (the last applied log index) and a stream of
/// [`ChangeBatch`]es.
///
/// The state machine store writes it; everything else reads. Readers take a
/// short read lock through [`SharedState::read`] and never hold it across
/// an `.await`.
#[derive(Debug)]
pub struct SharedState {
    state: RwLock<ClusterState>,
    revision: watch::Sender<u64>,
    changes: broadcast::Sender<ChangeBatch>,
}

/// How many change batches a slow subscriber may fall behind before it
/// sees `Lagged` (and must re-read the whole state).
const CHANGE_BACKLOG: usize = 4096;

impl SharedState {
    /// An empty state at revision 0.
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            state: RwLock::new(ClusterState::default()),
            revision: watch::channel(0).0,
            changes: broadcast::channel(CHANGE_BACKLOG).0,
        })
    }

    /// Runs `f` on the current state.
    pub fn read<R>(&self, f: impl FnOnce(&ClusterState) -> R) -> R {
        let guard = self.state.read().unwrap_or_else(|p| p.into_inner());
        f(&guard)
    }

    /// A copy of the current state.
    pub fn snapshot(&self) -> ClusterState {
        self.read(Clone::clone)
    }

    /// The last applied log index.
    pub fn revision(&self) -> u64 {
        *self.revision.borrow()
    }

    /// Follows the revision (e.g. to wait until an index is applied).
    pub fn watch_revision(&self) -> watch::Receiver<u64> {
        self.revision.subscribe()
    }

    /// Follows the changes from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<ChangeBatch> {
        self.changes.subscribe()
    }

    /// Applies a committed command at log `index`.
    pub(crate) fn apply(&self, index: u64, command: &Command) -> CommandResponse {
        let mut changes = Vec::new();
        let response = {
            let mut guard = self.state.write().unwrap_or_else(|p| p.into_inner());
            let response = guard.apply(command, &mut changes);
            // Under the lock: whoever reads the state reads a revision at
            // least as new as it (and one read before is no newer).
            self.revision.send_replace(index);
            response
        };
        self.publish(index, changes);
        response
    }

    /// Records that log `index` was applied without changing the state
    /// (blank and membership entries).
    pub(crate) fn advance(&self, index: u64) {
        self.revision.send_replace(index);
    }

    /// Replaces the whole state (snapshot installed, or loaded at start).
    pub(crate) fn replace(&self, state: ClusterState, index: u64) {
        {
            let mut guard = self.state.write().unwrap_or_else(|p| p.into_inner());
            *guard = state;
            self.revision.send_replace(index);
        }
        self.publish(index, vec![StateChange::Replaced]);
    }

    fn publish(&self, index: u64, changes: Vec<StateChange>) {
        if !changes.is_empty() {
            // No subscriber is fine: nobody is interested yet.
            let _ = self.changes.send(ChangeBatch {
                revision: index,
                changes: changes.into(),
            });
        }
    }
}
