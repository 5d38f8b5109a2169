//! openraft's storage conformance suite against quicmq's sled stores
//! ([`LogStore`] and [`StateMachineStore`]), each test on a fresh database
//! in a temporary directory.

use openraft::testing::{StoreBuilder, Suite};
use openraft::{StorageError, StorageIOError};
use quicmq_raft::store::{LogStore, SharedState, StateMachineStore};
use quicmq_raft::{NodeId, TypeConfig};
use tempfile::TempDir;

/// Opens both stores on a new sled database; the guard removes its
/// directory when the test is done with it.
struct SledStoreBuilder;

impl StoreBuilder<TypeConfig, LogStore, StateMachineStore, TempDir> for SledStoreBuilder {
    async fn build(&self) -> Result<(TempDir, LogStore, StateMachineStore), StorageError<NodeId>> {
        let dir = tempfile::tempdir().map_err(|e| StorageIOError::<NodeId>::write(&e))?;
        let db = sled::open(dir.path()).map_err(|e| StorageIOError::<NodeId>::write(&e))?;
        let log = LogStore::open(&db).map_err(|e| StorageIOError::<NodeId>::write(&e))?;
        let sm = StateMachineStore::open(&db, SharedState::new())
            .map_err(|e| StorageIOError::<NodeId>::write(&e))?;
        Ok((dir, log, sm))
    }
}

#[test]
fn openraft_storage_suite() {
    // `Suite` runs every test in its own Tokio runtime: this test must not
    // run inside one.
    if let Err(e) = Suite::test_all(SledStoreBuilder) {
        panic!("storage suite: {e}");
    }
}
