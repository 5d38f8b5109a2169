//! [`StateMachineStore`]: openraft's state machine over [`SharedState`],
//! with snapshots persisted in sled.
//!
//! The state machine itself lives in memory ([`SharedState`]). It is
//! durable through the log (the [`LogStore`](super::LogStore) keeps the
//! committed log id, and openraft re-applies the entries after the last
//! snapshot when the node starts) and through snapshots, which are written
//! to the sled tree `raft_snapshot`: key `meta` holds the
//! [`SnapshotMeta`] and key `data` the [`ClusterState`], both encoded with
//! [`codec`], written together in one atomic batch and flushed.

use std::io::Cursor;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use openraft::storage::{RaftStateMachine, Snapshot, SnapshotMeta};
use openraft::{
    AnyError, Entry, EntryPayload, LogId, OptionalSend, RaftSnapshotBuilder, StorageError,
    StorageIOError, StoredMembership,
};

use crate::codec::{self, CodecError};
use crate::command::CommandResponse;
use crate::error::ClusterError;
use crate::state::ClusterState;
use crate::store::SharedState;
use crate::{MemberNode, NodeId, TypeConfig};

/// Name of the tree holding the current snapshot.
const SNAPSHOT_TREE: &str = "raft_snapshot";
const KEY_META: &[u8] = b"meta";
const KEY_DATA: &[u8] = b"data";

/// Name of the snapshot counter metric; label `kind` is `built` or
/// `installed`.
const SNAPSHOTS_METRIC: &str = "quicmq_raft_snapshots_total";

type Meta = SnapshotMeta<NodeId, MemberNode>;
type Membership = StoredMembership<NodeId, MemberNode>;

/// openraft's state machine for quicmq: applies committed entries to the
/// node's [`SharedState`], and builds, installs and keeps snapshots of it.
#[derive(Debug)]
pub struct StateMachineStore {
    shared: Arc<SharedState>,
    snapshots: SnapshotTree,
    last_applied: Option<LogId<NodeId>>,
    last_membership: Membership,
}

impl StateMachineStore {
    /// Opens the snapshot tree of `db`. If it holds a snapshot, its state
    /// replaces the one in `shared`, and the store starts at its last log id
    /// and membership (openraft then re-applies the committed entries after
    /// it); otherwise it starts empty, before the first log entry.
    pub fn open(db: &sled::Db, shared: Arc<SharedState>) -> Result<Self, ClusterError> {
        let tree = db
            .open_tree(SNAPSHOT_TREE)
            .map_err(|e| ClusterError::Store(format!("open tree {SNAPSHOT_TREE}: {e}")))?;
        let snapshots = SnapshotTree::new(tree);
        let mut store = Self {
            shared,
            snapshots,
            last_applied: None,
            last_membership: Membership::default(),
        };
        let loaded = store
            .snapshots
            .load()
            .map_err(|e| ClusterError::Store(format!("read the snapshot: {e}")))?;
        if let Some((meta, data)) = loaded {
            let state = ClusterState::decode_snapshot(&data)?;
            store
                .shared
                .replace(state, meta.last_log_id.map_or(0, |id| id.index));
            store.snapshots.seed_counter(&meta.snapshot_id);
            store.last_applied = meta.last_log_id;
            store.last_membership = meta.last_membership;
        }
        Ok(store)
    }

    /// The state this store applies entries to.
    pub fn shared(&self) -> &Arc<SharedState> {
        &self.shared
    }
}

impl RaftStateMachine<TypeConfig> for StateMachineStore {
    type SnapshotBuilder = StateMachineSnapshotBuilder;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId<NodeId>>, Membership), StorageError<NodeId>> {
        Ok((self.last_applied, self.last_membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<CommandResponse>, StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries = entries.into_iter();
        let mut responses = Vec::with_capacity(entries.size_hint().0);
        for entry in entries {
            let log_id = entry.log_id;
            let response = match entry.payload {
                EntryPayload::Blank => {
                    self.shared.advance(log_id.index);
                    CommandResponse::Done
                }
                EntryPayload::Normal(command) => self.shared.apply(log_id.index, &command),
                EntryPayload::Membership(membership) => {
                    self.last_membership = Membership::new(Some(log_id), membership);
                    self.shared.advance(log_id.index);
                    CommandResponse::Done
                }
            };
            self.last_applied = Some(log_id);
            responses.push(response);
        }
        Ok(responses)
    }

    /// Encodes the state as it is now, with the last applied log id and
    /// membership that go with it; building the snapshot (persisting it)
    /// happens later, possibly while more entries are applied.
    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        let data = self.shared.read(ClusterState::encode_snapshot);
        StateMachineSnapshotBuilder {
            snapshots: self.snapshots.clone(),
            data: Some(data),
            last_applied: self.last_applied,
            last_membership: self.last_membership.clone(),
        }
    }

    async fn begin_receiving_snapshot(
        &mut self,
    ) -> Result<Box<Cursor<Vec<u8>>>, StorageError<NodeId>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &Meta,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError<NodeId>> {
        let data = snapshot.into_inner();
        let state = ClusterState::decode_snapshot(&data)
            .map_err(|e| StorageIOError::<NodeId>::read_snapshot(Some(meta.signature()), &e))?;
        self.snapshots
            .store(meta, &data, Replace::Always)
            .map_err(|e| StorageIOError::write_snapshot(Some(meta.signature()), e))?;
        self.snapshots
            .flush()
            .await
            .map_err(|e| StorageIOError::<NodeId>::write_snapshot(Some(meta.signature()), &e))?;
        self.shared
            .replace(state, meta.last_log_id.map_or(0, |id| id.index));
        self.last_applied = meta.last_log_id;
        self.last_membership = meta.last_membership.clone();
        metrics::counter!(SNAPSHOTS_METRIC, "kind" => "installed").increment(1);
        tracing::info!(snapshot = %meta, "installed a snapshot");
        Ok(())
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<Snapshot<TypeConfig>>, StorageError<NodeId>> {
        let loaded = self
            .snapshots
            .load()
            .map_err(|e| StorageIOError::read_snapshot(None, e))?;
        Ok(loaded.map(|(meta, data)| Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        }))
    }
}

/// Builds a snapshot of the state a [`StateMachineStore`] had when
/// [`RaftStateMachine::get_snapshot_builder`] was called, and makes it the
/// current snapshot unless a newer one was installed meanwhile.
#[derive(Debug)]
pub struct StateMachineSnapshotBuilder {
    snapshots: SnapshotTree,
    /// The encoded state; taken by the first `build_snapshot`.
    data: Option<Result<Vec<u8>, CodecError>>,
    last_applied: Option<LogId<NodeId>>,
    last_membership: Membership,
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachineSnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError<NodeId>> {
        let data = match self.data.take() {
            Some(Ok(data)) => data,
            Some(Err(e)) => return Err(StorageIOError::<NodeId>::write_snapshot(None, &e).into()),
            None => {
                return Err(StorageIOError::<NodeId>::write_snapshot(
                    None,
                    AnyError::error("snapshot builder used twice"),
                )
                .into())
            }
        };
        let meta = Meta {
            last_log_id: self.last_applied,
            last_membership: self.last_membership.clone(),
            snapshot_id: self.snapshots.next_id(self.last_applied),
        };
        self.snapshots
            .store(&meta, &data, Replace::IfNotOlder)
            .map_err(|e| StorageIOError::write_snapshot(Some(meta.signature()), e))?;
        self.snapshots
            .flush()
            .await
            .map_err(|e| StorageIOError::<NodeId>::write_snapshot(Some(meta.signature()), &e))?;
        metrics::counter!(SNAPSHOTS_METRIC, "kind" => "built").increment(1);
        tracing::info!(snapshot = %meta, size = data.len(), "built a snapshot");
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        })
    }
}

/// When [`SnapshotTree::store`] replaces the current snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Replace {
    /// Always (a snapshot from the leader).
    Always,
    /// Unless the current one covers more of the log (a snapshot built
    /// while a newer one was installed).
    IfNotOlder,
}

/// The `raft_snapshot` tree, shared by a store and its builders.
#[derive(Debug, Clone)]
struct SnapshotTree {
    tree: sled::Tree,
    /// Serializes compare-and-replace of the current snapshot.
    write_lock: Arc<Mutex<()>>,
    /// Last counter used in a snapshot ID.
    counter: Arc<AtomicU64>,
}

impl SnapshotTree {
    fn new(tree: sled::Tree) -> Self {
        Self {
            tree,
            write_lock: Arc::new(Mutex::new(())),
            counter: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Continues the counter of a persisted snapshot ID, so that IDs stay
    /// unique across restarts.
    fn seed_counter(&self, snapshot_id: &str) {
        if let Some(n) = snapshot_id
            .rsplit('-')
            .next()
            .and_then(|n| n.parse::<u64>().ok())
        {
            self.counter.fetch_max(n, Ordering::Relaxed);
        }
    }

    /// A new snapshot ID: `{term}-{index}-{counter}` (`0-0-{counter}`
    /// before the first entry).
    fn next_id(&self, last: Option<LogId<NodeId>>) -> String {
        let n = self.counter.fetch_add(1, Ordering::Relaxed) + 1;
        let (term, index) = last.map_or((0, 0), |id| (id.leader_id.term, id.index));
        format!("{term}-{index}-{n}")
    }

    /// The current snapshot's meta and data, if any.
    fn load(&self) -> Result<Option<(Meta, Vec<u8>)>, AnyError> {
        let Some(meta) = self.tree.get(KEY_META).map_err(|e| AnyError::new(&e))? else {
            return Ok(None);
        };
        let meta: Meta = codec::decode("snapshot meta", &meta).map_err(|e| AnyError::new(&e))?;
        let data = self
            .tree
            .get(KEY_DATA)
            .map_err(|e| AnyError::new(&e))?
            .ok_or_else(|| AnyError::error("snapshot meta without data"))?;
        Ok(Some((meta, data.to_vec())))
    }

    /// Writes `meta` and `data` as the current snapshot (not flushed).
    fn store(&self, meta: &Meta, data: &[u8], replace: Replace) -> Result<(), AnyError> {
        let encoded = codec::encode("snapshot meta", meta).map_err(|e| AnyError::new(&e))?;
        let _guard = self.write_lock.lock().unwrap_or_else(|p| p.into_inner());
        if replace == Replace::IfNotOlder {
            if let Some(current) = self.tree.get(KEY_META).map_err(|e| AnyError::new(&e))? {
                // An unreadable current snapshot is replaced.
                let current: Result<Meta, _> = codec::decode("snapshot meta", &current);
                if current.is_ok_and(|c| c.last_log_id > meta.last_log_id) {
                    return Ok(());
                }
            }
        }
        let mut batch = sled::Batch::default();
        batch.insert(KEY_META, encoded);
        batch.insert(KEY_DATA, data);
        self.tree.apply_batch(batch).map_err(|e| AnyError::new(&e))
    }

    async fn flush(&self) -> Result<(), sled::Error> {
        super::flush_tree(&self.tree).await
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use openraft::testing::{blank_ent, log_id, membership_ent};
    use openraft::Membership as RaftMembership;

    use super::*;
    use crate::command::{
        BootstrapRecord, Command, JoinRecord, KeysRecord, QuicLbRecord, RetainOp, RetainedRecord,
    };

    fn open(dir: &std::path::Path) -> (sled::Db, StateMachineStore) {
        let db = super::super::reopen_db(dir);
        let store = StateMachineStore::open(&db, SharedState::new()).unwrap();
        (db, store)
    }

    fn normal(index: u64, command: Command) -> Entry<TypeConfig> {
        Entry {
            log_id: log_id(1, 1, index),
            payload: EntryPayload::Normal(command),
        }
    }

    fn bootstrap() -> Command {
        Command::Bootstrap(BootstrapRecord {
            cluster_id: "c1".into(),
            quic_lb: QuicLbRecord {
                config_id: 0,
                server_id_len: 2,
                nonce_len: 8,
                key: None,
            },
            keys: KeysRecord {
                stateless_reset_key: [1; 32],
                token_key: [2; 32],
            },
        })
    }

    fn join(node_id: NodeId) -> Command {
        Command::Join(JoinRecord {
            node_id,
            grpc_addr: format!("10.0.0.{node_id}:7000"),
            routed_addr: String::new(),
            public_addr: format!("10.0.0.{node_id}:1883"),
            zone: "z".into(),
            now_ms: 1,
        })
    }

    fn retain(topic: &str) -> Command {
        Command::Retain(vec![RetainOp::Set {
            topic: topic.into(),
            message: RetainedRecord {
                qos: 1,
                payload: Bytes::from_static(b"payload"),
                properties: Bytes::new(),
                expires_at_ms: None,
                origin_node_id: 1,
            },
        }])
    }

    /// Entries 0..=5: membership, blank, bootstrap, join, retain, and a
    /// second (refused) bootstrap.
    fn entries() -> Vec<Entry<TypeConfig>> {
        vec![
            membership_ent::<TypeConfig>(0, 1, 0, vec![[1].into()]),
            blank_ent::<TypeConfig>(1, 1, 1),
            normal(2, bootstrap()),
            normal(3, join(1)),
            normal(4, retain("a/b")),
            normal(5, bootstrap()),
        ]
    }

    fn membership_at_0() -> Membership {
        Membership::new(
            Some(log_id(0, 1, 0)),
            RaftMembership::new(vec![[1].into()], None),
        )
    }

    async fn build(store: &mut StateMachineStore) -> Snapshot<TypeConfig> {
        let mut builder = store.get_snapshot_builder().await;
        builder.build_snapshot().await.unwrap()
    }

    #[tokio::test]
    async fn apply_yields_one_response_per_entry() {
        let dir = tempfile::tempdir().unwrap();
        let (_db, mut store) = open(dir.path());
        assert_eq!(
            store.applied_state().await.unwrap(),
            (None, Membership::default())
        );
        let responses = store.apply(entries()).await.unwrap();
        assert_eq!(responses.len(), 6);
        assert_eq!(responses[0], CommandResponse::Done);
        assert_eq!(responses[1], CommandResponse::Done);
        assert_eq!(responses[2], CommandResponse::Done);
        assert!(matches!(responses[3], CommandResponse::Member(ref m) if m.node_id == 1));
        assert_eq!(responses[4], CommandResponse::Done);
        assert!(matches!(responses[5], CommandResponse::Refused(_)));
        assert_eq!(
            store.applied_state().await.unwrap(),
            (Some(log_id(1, 1, 5)), membership_at_0())
        );
        let shared = store.shared().clone();
        assert_eq!(shared.revision(), 5);
        shared.read(|s| {
            assert_eq!(s.cluster_id(), Some("c1"));
            assert!(s.retained().contains_key("a/b"));
        });

        // Blank and membership entries advance the revision too.
        store
            .apply([
                blank_ent::<TypeConfig>(2, 1, 6),
                membership_ent::<TypeConfig>(2, 1, 7, vec![[1, 2].into()]),
            ])
            .await
            .unwrap();
        assert_eq!(shared.revision(), 7);
        let (applied, membership) = store.applied_state().await.unwrap();
        assert_eq!(applied, Some(log_id(2, 1, 7)));
        assert_eq!(membership.log_id(), &Some(log_id(2, 1, 7)));
    }

    #[tokio::test]
    async fn snapshot_build_then_install_into_a_fresh_store() {
        let dir_a = tempfile::tempdir().unwrap();
        let dir_b = tempfile::tempdir().unwrap();
        let (_db_a, mut a) = open(dir_a.path());
        let (_db_b, mut b) = open(dir_b.path());
        assert!(a.get_current_snapshot().await.unwrap().is_none());

        a.apply(entries()).await.unwrap();
        let built = build(&mut a).await;
        assert_eq!(built.meta.last_log_id, Some(log_id(1, 1, 5)));
        assert_eq!(built.meta.last_membership, membership_at_0());
        assert_eq!(built.meta.snapshot_id, "1-5-1");
        let current = a.get_current_snapshot().await.unwrap().unwrap();
        assert_eq!(current.meta, built.meta);
        assert_eq!(current.snapshot.get_ref(), built.snapshot.get_ref());

        let mut receiving = b.begin_receiving_snapshot().await.unwrap();
        assert!(receiving.get_ref().is_empty());
        *receiving = *current.snapshot;
        let mut changes = b.shared().subscribe();
        b.install_snapshot(&current.meta, receiving).await.unwrap();

        assert_eq!(b.shared().snapshot(), a.shared().snapshot());
        assert_eq!(b.shared().revision(), 5);
        assert_eq!(b.shared().revision(), a.shared().revision());
        assert_eq!(
            b.applied_state().await.unwrap(),
            a.applied_state().await.unwrap()
        );
        let installed = b.get_current_snapshot().await.unwrap().unwrap();
        assert_eq!(installed.meta, built.meta);
        let batch = changes.try_recv().unwrap();
        assert_eq!(batch.revision, 5);
        assert_eq!(&*batch.changes, &[crate::StateChange::Replaced]);

        // B goes on applying after the snapshot.
        b.apply([normal(6, retain("c"))]).await.unwrap();
        assert_eq!(b.shared().revision(), 6);
        assert!(b.shared().read(|s| s.retained().contains_key("c")));
    }

    #[tokio::test]
    async fn restart_loads_the_persisted_snapshot() {
        let dir = tempfile::tempdir().unwrap();
        let (state, meta) = {
            let (_db, mut store) = open(dir.path());
            store.apply(entries()).await.unwrap();
            let snapshot = build(&mut store).await;
            // Entries applied after the snapshot are re-applied from the log
            // by openraft, not kept here.
            store.apply([normal(6, retain("later"))]).await.unwrap();
            (snapshot_state(&snapshot), snapshot.meta)
        };
        let (_db, mut store) = open(dir.path());
        assert_eq!(store.shared().snapshot(), state);
        assert_eq!(store.shared().revision(), 5);
        assert_eq!(
            store.applied_state().await.unwrap(),
            (meta.last_log_id, meta.last_membership.clone())
        );
        assert_eq!(
            store.get_current_snapshot().await.unwrap().unwrap().meta,
            meta
        );
        // Snapshot IDs stay unique across the restart.
        let next = build(&mut store).await;
        assert_eq!(next.meta.snapshot_id, "1-5-2");
    }

    fn snapshot_state(snapshot: &Snapshot<TypeConfig>) -> ClusterState {
        ClusterState::decode_snapshot(snapshot.snapshot.get_ref()).unwrap()
    }

    #[tokio::test]
    async fn snapshot_of_an_empty_state_machine() {
        let dir = tempfile::tempdir().unwrap();
        let (_db, mut store) = open(dir.path());
        let snapshot = build(&mut store).await;
        assert_eq!(snapshot.meta.last_log_id, None);
        assert_eq!(snapshot.meta.snapshot_id, "0-0-1");
        assert_eq!(snapshot_state(&snapshot), ClusterState::default());
        drop(store);
        let store = StateMachineStore::open(&_db, SharedState::new()).unwrap();
        assert_eq!(store.shared().revision(), 0);
        assert_eq!(store.last_applied, None);
    }

    #[tokio::test]
    async fn corrupt_snapshot_data_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let (db, mut store) = open(dir.path());
        store.apply(entries()).await.unwrap();
        let before = store.shared().snapshot();
        let meta = Meta {
            last_log_id: Some(log_id(3, 2, 40)),
            last_membership: membership_at_0(),
            snapshot_id: "3-40-1".into(),
        };

        // Garbage from the leader: refused, nothing changes.
        for garbage in [vec![], vec![0xff; 64], vec![1, 0, 0, 0, 0, 0, 0, 0, 0xff]] {
            let data = Box::new(Cursor::new(garbage));
            assert!(store.install_snapshot(&meta, data).await.is_err());
        }
        assert_eq!(store.shared().snapshot(), before);
        assert_eq!(store.shared().revision(), 5);
        assert_eq!(
            store.applied_state().await.unwrap().0,
            Some(log_id(1, 1, 5))
        );
        assert!(store.get_current_snapshot().await.unwrap().is_none());

        // Garbage on disk: an error when reading or opening.
        build(&mut store).await;
        let tree = db.open_tree(SNAPSHOT_TREE).unwrap();
        tree.insert(KEY_DATA, &[0xffu8; 16][..]).unwrap();
        assert!(matches!(
            StateMachineStore::open(&db, SharedState::new()),
            Err(ClusterError::Codec(_))
        ));
        tree.insert(KEY_META, &[0xffu8; 3][..]).unwrap();
        assert!(store.get_current_snapshot().await.is_err());
        assert!(matches!(
            StateMachineStore::open(&db, SharedState::new()),
            Err(ClusterError::Store(_))
        ));
        tree.remove(KEY_DATA).unwrap();
        tree.insert(KEY_META, codec::encode("test", &meta).unwrap())
            .unwrap();
        assert!(store.get_current_snapshot().await.is_err());
    }

    #[tokio::test]
    async fn a_built_snapshot_never_replaces_a_newer_installed_one() {
        let dir_a = tempfile::tempdir().unwrap();
        let dir_b = tempfile::tempdir().unwrap();
        let (_db_a, mut a) = open(dir_a.path());
        let (_db_b, mut b) = open(dir_b.path());
        a.apply(entries()).await.unwrap();
        a.apply([normal(6, retain("x"))]).await.unwrap();
        let newer = build(&mut a).await;

        b.apply(entries()).await.unwrap();
        // B starts building at index 5, and installs A's snapshot at 6
        // before its build finishes.
        let mut builder = b.get_snapshot_builder().await;
        b.install_snapshot(&newer.meta, newer.snapshot)
            .await
            .unwrap();
        let older = builder.build_snapshot().await.unwrap();
        assert_eq!(older.meta.last_log_id, Some(log_id(1, 1, 5)));

        let current = b.get_current_snapshot().await.unwrap().unwrap();
        assert_eq!(current.meta.last_log_id, Some(log_id(1, 1, 6)));
        assert_eq!(current.meta, newer.meta);

        // A builder is used once.
        assert!(builder.build_snapshot().await.is_err());
    }
}
