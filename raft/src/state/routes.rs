//! The route table: which nodes have local subscribers for which filter.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::NodeId;

/// Topic filter → nodes with at least one local subscription to exactly
/// that filter (shared subscriptions under their full `$share/G/F` form).
///
/// A node that publishes matches the filters here to find the peers it
/// must forward to; the data itself never goes through Raft.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Routes {
    by_filter: BTreeMap<String, BTreeSet<NodeId>>,
}

impl Routes {
    /// Adds and removes filters of one node. Returns whether anything
    /// changed.
    pub fn update(&mut self, node_id: NodeId, add: &[String], remove: &[String]) -> bool {
        let mut changed = false;
        for filter in remove {
            changed |= self.remove_one(node_id, filter);
        }
        for filter in add {
            changed |= self
                .by_filter
                .entry(filter.clone())
                .or_default()
                .insert(node_id);
        }
        changed
    }

    /// Replaces every filter of one node. Returns whether anything changed.
    pub fn replace(&mut self, node_id: NodeId, filters: &[String]) -> bool {
        let wanted: BTreeSet<&String> = filters.iter().collect();
        let stale: Vec<String> = self
            .by_filter
            .iter()
            .filter(|(f, nodes)| nodes.contains(&node_id) && !wanted.contains(f))
            .map(|(f, _)| f.clone())
            .collect();
        self.update(node_id, filters, &stale)
    }

    /// Drops every route of a node (it left). Returns whether it had any.
    pub fn remove_node(&mut self, node_id: NodeId) -> bool {
        self.replace(node_id, &[])
    }

    /// Every filter with its nodes.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &BTreeSet<NodeId>)> {
        self.by_filter.iter().map(|(f, n)| (f.as_str(), n))
    }

    /// The nodes routed for one filter.
    pub fn nodes(&self, filter: &str) -> Option<&BTreeSet<NodeId>> {
        self.by_filter.get(filter)
    }

    /// The filters routed to one node.
    pub fn filters_of(&self, node_id: NodeId) -> impl Iterator<Item = &str> {
        self.by_filter
            .iter()
            .filter(move |(_, nodes)| nodes.contains(&node_id))
            .map(|(f, _)| f.as_str())
    }

    /// Number of filters.
    pub fn len(&self) -> usize {
        self.by_filter.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.by_filter.is_empty()
    }

    fn remove_one(&mut self, node_id: NodeId, filter: &str) -> bool {
        let Some(nodes) = self.by_filter.get_mut(filter) else {
            return false;
        };
        let removed = nodes.remove(&node_id);
        if nodes.is_empty() {
            self.by_filter.remove(filter);
        }
        removed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn add_remove_and_replace() {
        let mut r = Routes::default();
        assert!(r.update(1, &s(&["a/#", "b"]), &[]));
        assert!(r.update(2, &s(&["a/#"]), &[]));
        assert!(
            !r.update(2, &s(&["a/#"]), &[]),
            "adding twice changes nothing"
        );
        assert_eq!(
            r.nodes("a/#").unwrap().iter().copied().collect::<Vec<_>>(),
            [1, 2]
        );
        assert!(r.replace(1, &s(&["c"])));
        assert_eq!(r.filters_of(1).collect::<Vec<_>>(), ["c"]);
        assert!(r.nodes("b").is_none(), "empty filters are dropped");
        assert!(r.remove_node(2));
        assert_eq!(r.len(), 1);
    }
}
