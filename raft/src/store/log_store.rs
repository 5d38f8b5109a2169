//! [`LogStore`]: the Raft log, the vote and the committed log id in sled.
//!
//! Layout (all values encoded with [`codec`](crate::codec)):
//!
//! - tree `raft_log`: key = the entry's index as a big-endian `u64` (so
//!   sled's key order is log order), value = the [`Entry`];
//! - tree `raft_meta`: keys `vote`, `committed` and `last_purged`.
//!
//! Appends, votes, truncations and purges are flushed to disk before they
//! are reported done. The committed log id is not flushed on its own: it is
//! only a hint for re-applying entries at start, any earlier value is
//! valid, and the next flush (of an append or a vote) makes it durable.

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};

use openraft::storage::{LogFlushed, LogState, RaftLogReader, RaftLogStorage};
use openraft::{AnyError, Entry, LogId, OptionalSend, StorageError, StorageIOError, Vote};

use crate::codec;
use crate::error::ClusterError;
use crate::{NodeId, TypeConfig};

/// Name of the tree holding the log entries.
const LOG_TREE: &str = "raft_log";
/// Name of the tree holding the vote, committed and last-purged log ids.
const META_TREE: &str = "raft_meta";

const KEY_VOTE: &[u8] = b"vote";
const KEY_COMMITTED: &[u8] = b"committed";
const KEY_LAST_PURGED: &[u8] = b"last_purged";

/// The Raft log and vote of this node, in two trees of a sled database.
///
/// Cloning is cheap (sled trees are shared handles); clones see the same
/// data, which is how the store serves as its own
/// [`RaftLogStorage::LogReader`].
#[derive(Debug, Clone)]
pub struct LogStore {
    log: sled::Tree,
    meta: sled::Tree,
}

impl LogStore {
    /// Opens (creating them if needed) the log trees of `db`.
    pub fn open(db: &sled::Db) -> Result<Self, ClusterError> {
        let open = |name: &str| {
            db.open_tree(name)
                .map_err(|e| ClusterError::Store(format!("open tree {name}: {e}")))
        };
        let store = Self {
            log: open(LOG_TREE)?,
            meta: open(META_TREE)?,
        };
        store.finish_purge()?;
        Ok(store)
    }

    /// Removes entries a purge recorded but did not remove (a crash between
    /// recording the purge point and removing the entries).
    fn finish_purge(&self) -> Result<(), ClusterError> {
        let purged = self
            .last_purged()
            .map_err(|e| ClusterError::Store(format!("read last purged log id: {e}")))?;
        if let Some(purged) = purged {
            self.remove_upto(purged.index)
                .map_err(|e| ClusterError::Store(format!("finish purge: {e}")))?;
        }
        Ok(())
    }

    /// Removes the entries at indices `..=index`, atomically.
    fn remove_upto(&self, index: u64) -> Result<(), sled::Error> {
        let mut batch = sled::Batch::default();
        for item in self.log.range(..=key(index)) {
            batch.remove(item?.0);
        }
        self.log.apply_batch(batch)
    }

    /// Reads and decodes a value of the meta tree; `None` if absent.
    fn read_meta<T: serde::de::DeserializeOwned>(
        &self,
        key: &[u8],
        what: &'static str,
    ) -> Result<Option<T>, AnyError> {
        match self.meta.get(key).map_err(|e| AnyError::new(&e))? {
            None => Ok(None),
            Some(bytes) => codec::decode(what, &bytes)
                .map(Some)
                .map_err(|e| AnyError::new(&e)),
        }
    }

    /// Encodes and writes a value of the meta tree (not flushed).
    fn write_meta<T: serde::Serialize>(
        &self,
        key: &[u8],
        what: &'static str,
        value: &T,
    ) -> Result<(), AnyError> {
        let bytes = codec::encode(what, value).map_err(|e| AnyError::new(&e))?;
        self.meta
            .insert(key, bytes)
            .map_err(|e| AnyError::new(&e))?;
        Ok(())
    }

    /// The last purged log id.
    fn last_purged(&self) -> Result<Option<LogId<NodeId>>, AnyError> {
        self.read_meta(KEY_LAST_PURGED, "last purged log id")
    }

    /// Flushes everything written so far to disk.
    async fn flush(&self) -> Result<(), sled::Error> {
        super::flush_tree(&self.log).await
    }
}

/// The sled key of the log entry at `index`.
fn key(index: u64) -> [u8; 8] {
    index.to_be_bytes()
}

/// Decodes a log entry read at `key`, checking that it holds that index.
fn decode_entry(key: &[u8], value: &[u8]) -> Result<Entry<TypeConfig>, AnyError> {
    let index = <[u8; 8]>::try_from(key)
        .map(u64::from_be_bytes)
        .map_err(|_| AnyError::error(format!("log key of {} octets, not 8", key.len())))?;
    let entry: Entry<TypeConfig> = codec::decode("log entry", value)
        .map_err(|e| AnyError::error(format!("at index {index}: {e}")))?;
    if entry.log_id.index != index {
        return Err(AnyError::error(format!(
            "entry stored at index {index} holds log id {}",
            entry.log_id
        )));
    }
    Ok(entry)
}

/// `range` as half-open `[start, end)` indices; `end == None`: unbounded.
fn half_open<RB: RangeBounds<u64>>(range: &RB) -> Option<(u64, Option<u64>)> {
    let start = match range.start_bound() {
        Bound::Included(&s) => s,
        Bound::Excluded(&s) => s.checked_add(1)?,
        Bound::Unbounded => 0,
    };
    let end = match range.end_bound() {
        Bound::Included(&e) => e.checked_add(1),
        Bound::Excluded(&e) => Some(e),
        Bound::Unbounded => None,
    };
    match end {
        Some(e) if e <= start => None,
        _ => Some((start, end)),
    }
}

/// An `io::Error` for reporting through [`LogFlushed`].
fn io_error(e: &dyn std::fmt::Display) -> std::io::Error {
    std::io::Error::other(e.to_string())
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<TypeConfig>>, StorageError<NodeId>> {
        let Some((start, end)) = half_open(&range) else {
            return Ok(Vec::new());
        };
        let iter = match end {
            Some(end) => self.log.range(key(start)..key(end)),
            None => self.log.range(key(start)..),
        };
        let mut entries = Vec::new();
        for item in iter {
            let (k, v) = item.map_err(|e| StorageIOError::<NodeId>::read_logs(&e))?;
            entries.push(decode_entry(&k, &v).map_err(StorageIOError::read_logs)?);
        }
        Ok(entries)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError<NodeId>> {
        let last_purged_log_id = self.last_purged().map_err(StorageIOError::read_logs)?;
        let last = self
            .log
            .last()
            .map_err(|e| StorageIOError::<NodeId>::read_logs(&e))?;
        let last_entry = match last {
            Some((k, v)) => Some(
                decode_entry(&k, &v)
                    .map_err(StorageIOError::read_logs)?
                    .log_id,
            ),
            None => None,
        };
        // Purging past the last entry leaves no entry: the log then ends at
        // the purge point.
        let last_log_id = last_entry.max(last_purged_log_id);
        Ok(LogState {
            last_purged_log_id,
            last_log_id,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), StorageError<NodeId>> {
        self.write_meta(KEY_VOTE, "vote", vote)
            .map_err(StorageIOError::write_vote)?;
        self.flush()
            .await
            .map_err(|e| StorageIOError::<NodeId>::write_vote(&e))?;
        Ok(())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError<NodeId>> {
        self.read_meta(KEY_VOTE, "vote")
            .map_err(|e| StorageIOError::read_vote(e).into())
    }

    async fn save_committed(
        &mut self,
        committed: Option<LogId<NodeId>>,
    ) -> Result<(), StorageError<NodeId>> {
        // Not flushed here: see the module documentation.
        self.write_meta(KEY_COMMITTED, "committed log id", &committed)
            .map_err(|e| StorageIOError::write(e).into())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<NodeId>>, StorageError<NodeId>> {
        self.read_meta::<Option<LogId<NodeId>>>(KEY_COMMITTED, "committed log id")
            .map(Option::flatten)
            .map_err(|e| StorageIOError::read(e).into())
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut batch = sled::Batch::default();
        for entry in entries {
            let bytes = codec::encode("log entry", &entry)
                .map_err(|e| StorageIOError::<NodeId>::write_log_entry(entry.log_id, &e))?;
            batch.insert(&key(entry.log_id.index), bytes);
        }
        if let Err(e) = self.log.apply_batch(batch) {
            callback.log_io_completed(Err(io_error(&e)));
            return Err(StorageIOError::<NodeId>::write_logs(&e).into());
        }
        match self.flush().await {
            Ok(()) => {
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                callback.log_io_completed(Err(io_error(&e)));
                Err(StorageIOError::<NodeId>::write_logs(&e).into())
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        // One atomic batch: no hole is left even if we crash half-way.
        let mut batch = sled::Batch::default();
        for item in self.log.range(key(log_id.index)..) {
            let (k, _) = item.map_err(|e| StorageIOError::<NodeId>::read_logs(&e))?;
            batch.remove(k);
        }
        self.log
            .apply_batch(batch)
            .map_err(|e| StorageIOError::<NodeId>::write_logs(&e))?;
        self.flush()
            .await
            .map_err(|e| StorageIOError::<NodeId>::write_logs(&e))?;
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        // Never move the purge point backwards.
        if self
            .last_purged()
            .map_err(StorageIOError::read_logs)?
            .is_some_and(|p| p.index >= log_id.index)
        {
            return Ok(());
        }
        // Record the purge point first: if we crash before the entries are
        // removed, the log still starts right after the purge point (no
        // hole), and `open` removes the leftovers.
        self.write_meta(KEY_LAST_PURGED, "last purged log id", &log_id)
            .map_err(StorageIOError::write_logs)?;
        self.remove_upto(log_id.index)
            .map_err(|e| StorageIOError::<NodeId>::write_logs(&e))?;
        self.flush()
            .await
            .map_err(|e| StorageIOError::<NodeId>::write_logs(&e))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use openraft::storage::RaftLogStorageExt;
    use openraft::testing::{blank_ent, log_id, membership_ent};
    use openraft::EntryPayload;

    use super::*;
    use crate::command::{Command, RetainOp};

    fn open(dir: &std::path::Path) -> (sled::Db, LogStore) {
        let db = super::super::reopen_db(dir);
        let store = LogStore::open(&db).unwrap();
        (db, store)
    }

    fn normal(term: u64, index: u64, topic: &str) -> Entry<TypeConfig> {
        Entry {
            log_id: log_id(term, 1, index),
            payload: EntryPayload::Normal(Command::Retain(vec![RetainOp::Delete {
                topic: topic.into(),
            }])),
        }
    }

    /// Entries 0..=10: a membership entry, blanks and commands.
    fn ten_entries() -> Vec<Entry<TypeConfig>> {
        let mut entries = vec![membership_ent::<TypeConfig>(
            0,
            1,
            0,
            vec![[1, 2, 3].into()],
        )];
        for i in 1..=10 {
            if i % 2 == 0 {
                entries.push(normal(1, i, &format!("t/{i}")));
            } else {
                entries.push(blank_ent::<TypeConfig>(1, 1, i));
            }
        }
        entries
    }

    fn indices(entries: &[Entry<TypeConfig>]) -> Vec<u64> {
        entries.iter().map(|e| e.log_id.index).collect()
    }

    #[tokio::test]
    async fn restart_keeps_log_vote_and_committed() {
        let dir = tempfile::tempdir().unwrap();
        let vote = Vote::new_committed(3, 2);
        let (entries, state) = {
            let (_db, mut store) = open(dir.path());
            store.blocking_append(ten_entries()).await.unwrap();
            store.save_committed(Some(log_id(1, 1, 8))).await.unwrap();
            store.save_vote(&vote).await.unwrap();
            let entries = store.try_get_log_entries(..).await.unwrap();
            (entries, store.get_log_state().await.unwrap())
        };
        let (_db, mut store) = open(dir.path());
        assert_eq!(store.read_vote().await.unwrap(), Some(vote));
        assert_eq!(store.read_committed().await.unwrap(), Some(log_id(1, 1, 8)));
        assert_eq!(store.get_log_state().await.unwrap(), state);
        assert_eq!(state.last_log_id, Some(log_id(1, 1, 10)));
        assert_eq!(store.try_get_log_entries(..).await.unwrap(), entries);
        assert_eq!(indices(&entries), (0..=10).collect::<Vec<_>>());
        assert_eq!(entries, ten_entries());
    }

    #[tokio::test]
    async fn empty_store_has_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let (_db, mut store) = open(dir.path());
        assert_eq!(store.read_vote().await.unwrap(), None);
        assert_eq!(store.read_committed().await.unwrap(), None);
        assert_eq!(store.get_log_state().await.unwrap(), LogState::default());
        assert!(store.try_get_log_entries(..).await.unwrap().is_empty());
        // `save_committed(None)` reads back as `None`.
        store.save_committed(None).await.unwrap();
        assert_eq!(store.read_committed().await.unwrap(), None);
    }

    #[tokio::test]
    async fn ranges() {
        let dir = tempfile::tempdir().unwrap();
        let (_db, mut store) = open(dir.path());
        store.blocking_append(ten_entries()).await.unwrap();
        let got = |entries: Vec<Entry<TypeConfig>>| indices(&entries);
        assert_eq!(
            got(store.try_get_log_entries(3..6).await.unwrap()),
            [3, 4, 5]
        );
        assert_eq!(
            got(store.try_get_log_entries(3..=6).await.unwrap()),
            [3, 4, 5, 6]
        );
        assert_eq!(got(store.try_get_log_entries(9..).await.unwrap()), [9, 10]);
        assert_eq!(got(store.try_get_log_entries(..2).await.unwrap()), [0, 1]);
        assert!(store.try_get_log_entries(5..5).await.unwrap().is_empty());
        #[allow(clippy::reversed_empty_ranges)]
        let reversed = store.try_get_log_entries(7..3).await.unwrap();
        assert!(reversed.is_empty());
        assert_eq!(
            got(store.try_get_log_entries(8..=u64::MAX).await.unwrap()),
            [8, 9, 10]
        );
        let excluded = (Bound::Excluded(8), Bound::Unbounded);
        assert_eq!(
            got(store.try_get_log_entries(excluded).await.unwrap()),
            [9, 10]
        );
        let none = (Bound::Excluded(u64::MAX), Bound::Unbounded);
        assert!(store.try_get_log_entries(none).await.unwrap().is_empty());
        assert_eq!(
            got(store.limited_get_log_entries(4, 6).await.unwrap()),
            [4, 5]
        );
    }

    #[tokio::test]
    async fn truncate_removes_the_suffix() {
        let dir = tempfile::tempdir().unwrap();
        let (_db, mut store) = open(dir.path());
        store.blocking_append(ten_entries()).await.unwrap();
        store.truncate(log_id(1, 1, 6)).await.unwrap();
        let entries = store.try_get_log_entries(..).await.unwrap();
        assert_eq!(indices(&entries), [0, 1, 2, 3, 4, 5]);
        let state = store.get_log_state().await.unwrap();
        assert_eq!(state.last_log_id, Some(log_id(1, 1, 5)));
        assert_eq!(state.last_purged_log_id, None);

        // A new leader's entries replace the truncated ones.
        store
            .blocking_append([normal(2, 6, "x"), blank_ent::<TypeConfig>(2, 1, 7)])
            .await
            .unwrap();
        let state = store.get_log_state().await.unwrap();
        assert_eq!(state.last_log_id, Some(log_id(2, 1, 7)));
        assert_eq!(
            store.try_get_log_entries(6..).await.unwrap()[0],
            normal(2, 6, "x")
        );

        // Truncating past the end changes nothing; from 0 empties the log.
        store.truncate(log_id(2, 1, 50)).await.unwrap();
        assert_eq!(store.try_get_log_entries(..).await.unwrap().len(), 8);
        store.truncate(log_id(0, 1, 0)).await.unwrap();
        assert!(store.try_get_log_entries(..).await.unwrap().is_empty());
        assert_eq!(store.get_log_state().await.unwrap(), LogState::default());
    }

    #[tokio::test]
    async fn purge_removes_the_prefix_and_survives_restart() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (_db, mut store) = open(dir.path());
            store.blocking_append(ten_entries()).await.unwrap();
            store.purge(log_id(1, 1, 4)).await.unwrap();
            let entries = store.try_get_log_entries(..).await.unwrap();
            assert_eq!(indices(&entries), [5, 6, 7, 8, 9, 10]);
            let state = store.get_log_state().await.unwrap();
            assert_eq!(state.last_purged_log_id, Some(log_id(1, 1, 4)));
            assert_eq!(state.last_log_id, Some(log_id(1, 1, 10)));

            // The purge point never moves back.
            store.purge(log_id(1, 1, 2)).await.unwrap();
            let state = store.get_log_state().await.unwrap();
            assert_eq!(state.last_purged_log_id, Some(log_id(1, 1, 4)));
        }
        let (_db, mut store) = open(dir.path());
        let state = store.get_log_state().await.unwrap();
        assert_eq!(state.last_purged_log_id, Some(log_id(1, 1, 4)));
        assert_eq!(state.last_log_id, Some(log_id(1, 1, 10)));

        // Purging past the last entry (a snapshot installed from the leader)
        // leaves the log ending at the purge point.
        store.purge(log_id(3, 2, 20)).await.unwrap();
        assert!(store.try_get_log_entries(..).await.unwrap().is_empty());
        let state = store.get_log_state().await.unwrap();
        assert_eq!(state.last_purged_log_id, Some(log_id(3, 2, 20)));
        assert_eq!(state.last_log_id, Some(log_id(3, 2, 20)));
        store
            .blocking_append([blank_ent::<TypeConfig>(3, 2, 21)])
            .await
            .unwrap();
        let state = store.get_log_state().await.unwrap();
        assert_eq!(state.last_log_id, Some(log_id(3, 2, 21)));
    }

    #[tokio::test]
    async fn interrupted_purge_is_finished_on_open() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (_db, mut store) = open(dir.path());
            store.blocking_append(ten_entries()).await.unwrap();
            // A crash after recording the purge point, before removing.
            store
                .write_meta(
                    KEY_LAST_PURGED,
                    "last purged log id",
                    &log_id::<NodeId>(1, 1, 3),
                )
                .unwrap();
            store.flush().await.unwrap();
        }
        let (_db, mut store) = open(dir.path());
        let entries = store.try_get_log_entries(..).await.unwrap();
        assert_eq!(indices(&entries), [4, 5, 6, 7, 8, 9, 10]);
    }

    #[tokio::test]
    async fn corrupt_data_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let (db, mut store) = open(dir.path());
        store.blocking_append(ten_entries()).await.unwrap();
        let log = db.open_tree(LOG_TREE).unwrap();
        let meta = db.open_tree(META_TREE).unwrap();

        // Garbage in the middle of the log.
        log.insert(key(5), &[0xff; 3][..]).unwrap();
        assert!(store.try_get_log_entries(..).await.is_err());
        assert!(store.try_get_log_entries(5..6).await.is_err());
        assert_eq!(store.try_get_log_entries(..5).await.unwrap().len(), 5);

        // An entry stored under another index.
        let moved = codec::encode("test", &normal(1, 3, "x")).unwrap();
        log.insert(key(10), moved).unwrap();
        assert!(store.get_log_state().await.is_err());

        // A key that is not 8 octets.
        log.insert(b"bad", &b""[..]).unwrap();
        assert!(store.try_get_log_entries(..).await.is_err());

        // Garbage vote, committed and purge point.
        meta.insert(KEY_VOTE, &[1u8][..]).unwrap();
        meta.insert(KEY_COMMITTED, &[7u8; 2][..]).unwrap();
        meta.insert(KEY_LAST_PURGED, &[9u8][..]).unwrap();
        assert!(store.read_vote().await.is_err());
        assert!(store.read_committed().await.is_err());
        assert!(store.get_log_state().await.is_err());
        assert!(store.purge(log_id(1, 1, 2)).await.is_err());
        drop(store);
        assert!(matches!(LogStore::open(&db), Err(ClusterError::Store(_))));
    }
}
