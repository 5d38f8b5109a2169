//! [`Wills`]: the wills the cluster holds for connected clients, so that
//! a will is published once even when its client's node dies.
//!
//! A will is *held* while its connection lasts and *released* (with the
//! time it is due) when the connection ends without a normal DISCONNECT,
//! when its node goes down, or when its node starts again after a crash.
//! The leader publishes released wills that are due; a client that
//! resumes its session first cancels them. Whoever publishes one removes
//! it through Raft first and publishes only if that removal applied, so
//! each will is published once.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::command::{HeldWill, WillKey};
use crate::NodeId;

/// Held and released wills by connection.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Wills {
    held: BTreeMap<WillKey, HeldWill>,
    released: BTreeMap<WillKey, HeldWill>,
}

impl Wills {
    /// Holds `will` for the connection `key`.
    pub(crate) fn hold(&mut self, key: &WillKey, will: &HeldWill) {
        self.held.insert(
            key.clone(),
            HeldWill {
                due_at_ms: None,
                ..will.clone()
            },
        );
    }

    /// Releases the will of `key`, due at `due_at_ms`; `false` if it is
    /// not held (removed, or released already).
    pub(crate) fn release(&mut self, key: &WillKey, due_at_ms: u64) -> bool {
        match self.held.remove(key) {
            Some(mut will) => {
                will.due_at_ms = Some(due_at_ms);
                self.released.insert(key.clone(), will);
                true
            }
            None => false,
        }
    }

    /// Removes the will of `key`; `true` if it was there.
    pub(crate) fn remove(&mut self, key: &WillKey) -> bool {
        self.held.remove(key).is_some() || self.released.remove(key).is_some()
    }

    /// Releases, as of `now_ms`, every will `node_id` holds, but those of
    /// its run `keep_run` (its clients' connections died with it).
    /// Returns how many.
    pub(crate) fn release_node(
        &mut self,
        node_id: NodeId,
        keep_run: Option<u64>,
        now_ms: u64,
    ) -> usize {
        let keys: Vec<WillKey> = self
            .held
            .iter()
            .filter(|(key, will)| key.node_id == node_id && Some(will.run) != keep_run)
            .map(|(key, _)| key.clone())
            .collect();
        for key in &keys {
            if let Some(mut will) = self.held.remove(key) {
                will.due_at_ms = Some(will.due_after(now_ms));
                self.released.insert(key.clone(), will);
            }
        }
        keys.len()
    }

    /// Drops the wills `node_id` holds (it left the cluster gracefully:
    /// its clients were told to come back, so no will is due).
    pub(crate) fn drop_held_by(&mut self, node_id: NodeId) {
        self.held.retain(|key, _| key.node_id != node_id);
    }

    /// The client of `client_id` connected again before its released
    /// wills were published: with a clean start its old session ended, so
    /// they are due now; otherwise it resumed within the delay and they
    /// are cancelled.
    pub(crate) fn client_returned(&mut self, client_id: &str, clean_start: bool, now_ms: u64) {
        let keys: Vec<WillKey> = self
            .released
            .range(Self::first_key(client_id)..)
            .take_while(|(key, _)| key.client_id == client_id)
            .map(|(key, _)| key.clone())
            .collect();
        for key in keys {
            if clean_start {
                if let Some(will) = self.released.get_mut(&key) {
                    will.due_at_ms = Some(will.due_at_ms.map_or(now_ms, |due| due.min(now_ms)));
                }
            } else {
                self.released.remove(&key);
            }
        }
    }

    /// The released wills due by `now_ms`.
    pub fn due(&self, now_ms: u64) -> impl Iterator<Item = (&WillKey, &HeldWill)> {
        self.released
            .iter()
            .filter(move |(_, will)| will.due_at_ms.is_some_and(|due| due <= now_ms))
    }

    /// When the next released will is due, if any is released.
    pub fn next_due(&self) -> Option<u64> {
        self.released.values().filter_map(|w| w.due_at_ms).min()
    }

    /// Wills held for live connections.
    pub fn held(&self) -> usize {
        self.held.len()
    }

    /// Wills released and waiting for their time.
    pub fn released(&self) -> usize {
        self.released.len()
    }

    /// The will of `key`, held or released.
    pub fn get(&self, key: &WillKey) -> Option<&HeldWill> {
        self.held.get(key).or_else(|| self.released.get(key))
    }

    /// The smallest key of `client_id`.
    fn first_key(client_id: &str) -> WillKey {
        WillKey {
            client_id: client_id.to_owned(),
            node_id: 0,
            connection: 0,
        }
    }
}
