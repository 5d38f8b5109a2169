//! [`RouteTable`]: the cluster's route table as a trie, for matching a
//! topic to the nodes that have subscribers for it (sans-IO).
//!
//! It mirrors `ClusterState`'s routes (filter → nodes), so a node that
//! accepts a PUBLISH finds in one walk which peers to forward it to:
//! every node with an ordinary subscription that matches, and for each
//! matching shared subscription group the nodes with a member of it, of
//! which one is picked (round robin) to receive the message.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};

use quicmq_proto::mqtt::topic::parse_shared;
use quicmq_raft::NodeId;

#[derive(Default)]
struct Level {
    children: HashMap<Box<str>, Level>,
    /// Nodes with an ordinary subscription to the filter ending here.
    nodes: BTreeSet<NodeId>,
    /// Shared groups on the filter ending here: full `$share/G/F` key →
    /// nodes with a member.
    shared: HashMap<Box<str>, SharedRoute>,
}

#[derive(Default)]
struct SharedRoute {
    nodes: Vec<NodeId>,
    next: AtomicUsize,
}

impl Level {
    fn is_empty(&self) -> bool {
        self.children.is_empty() && self.nodes.is_empty() && self.shared.is_empty()
    }
}

/// What a topic matched in the route table.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct RouteMatch {
    /// Nodes with ordinary subscribers for the topic.
    pub nodes: BTreeSet<NodeId>,
    /// Per matching shared group (`$share/G/F`), the node picked to deliver
    /// to one of its members.
    pub shared: Vec<(String, NodeId)>,
}

/// The route table as a trie by topic level.
///
/// ```
/// use quicmq_node::cluster::RouteTable;
///
/// let mut table = RouteTable::default();
/// table.add("sensors/+/temp", 2);
/// table.add("$share/g/sensors/#", 3);
/// let m = table.matches("sensors/7/temp");
/// assert!(m.nodes.contains(&2));
/// assert_eq!(m.shared, vec![("$share/g/sensors/#".to_string(), 3)]);
/// ```
#[derive(Default)]
pub struct RouteTable {
    root: Level,
    routes: usize,
}

impl RouteTable {
    /// Routes `filter` (possibly `$share/G/F`) to `node`.
    pub fn add(&mut self, filter: &str, node: NodeId) {
        let (group, plain) = split(filter);
        let mut level = &mut self.root;
        for part in plain.split('/') {
            level = level.children.entry(Box::from(part)).or_default();
        }
        let added = match group {
            None => level.nodes.insert(node),
            Some(_) => {
                let route = level.shared.entry(Box::from(filter)).or_default();
                if route.nodes.contains(&node) {
                    false
                } else {
                    route.nodes.push(node);
                    route.nodes.sort_unstable();
                    true
                }
            }
        };
        if added {
            self.routes += 1;
        }
    }

    /// Removes the route of `filter` to `node`.
    pub fn remove(&mut self, filter: &str, node: NodeId) {
        let (group, plain) = split(filter);
        let levels: Vec<&str> = plain.split('/').collect();
        if remove_at(&mut self.root, &levels, group.map(|_| filter), node) {
            self.routes -= 1;
        }
    }

    /// Number of (filter, node) routes.
    pub fn len(&self) -> usize {
        self.routes
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.routes == 0
    }

    /// The nodes to reach for `topic`.
    pub fn matches(&self, topic: &str) -> RouteMatch {
        let levels: Vec<&str> = topic.split('/').collect();
        let mut out = RouteMatch::default();
        collect(&self.root, &levels, 0, topic.starts_with('$'), &mut out);
        out
    }
}

fn split(filter: &str) -> (Option<&str>, &str) {
    match parse_shared(filter) {
        Some((group, plain)) => (Some(group), plain),
        None => (None, filter),
    }
}

fn remove_at(level: &mut Level, levels: &[&str], shared_key: Option<&str>, node: NodeId) -> bool {
    let Some((first, rest)) = levels.split_first() else {
        return match shared_key {
            None => level.nodes.remove(&node),
            Some(key) => {
                let Some(route) = level.shared.get_mut(key) else {
                    return false;
                };
                let before = route.nodes.len();
                route.nodes.retain(|n| *n != node);
                let removed = route.nodes.len() != before;
                if route.nodes.is_empty() {
                    level.shared.remove(key);
                }
                removed
            }
        };
    };
    let Some(child) = level.children.get_mut(*first) else {
        return false;
    };
    let removed = remove_at(child, rest, shared_key, node);
    if child.is_empty() {
        level.children.remove(*first);
    }
    removed
}

fn emit(level: &Level, out: &mut RouteMatch) {
    out.nodes.extend(level.nodes.iter().copied());
    for (key, route) in &level.shared {
        if route.nodes.is_empty() {
            continue;
        }
        let i = route.next.fetch_add(1, Ordering::Relaxed) % route.nodes.len();
        out.shared.push((key.to_string(), route.nodes[i]));
    }
}

fn collect(level: &Level, levels: &[&str], depth: usize, dollar: bool, out: &mut RouteMatch) {
    let wildcards = !(depth == 0 && dollar);
    if wildcards {
        if let Some(hash) = level.children.get("#") {
            emit(hash, out);
        }
    }
    let Some(part) = levels.get(depth) else {
        emit(level, out);
        return;
    };
    if let Some(child) = level.children.get(*part) {
        collect(child, levels, depth + 1, dollar, out);
    }
    if wildcards {
        if let Some(plus) = level.children.get("+") {
            collect(plus, levels, depth + 1, dollar, out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_and_dollar_topics() {
        let mut t = RouteTable::default();
        t.add("a/#", 1);
        t.add("a/+/c", 2);
        t.add("#", 3);
        t.add("$SYS/#", 4);
        assert_eq!(t.matches("a/b/c").nodes, [1, 2, 3].into());
        assert_eq!(
            t.matches("a").nodes,
            [1, 3].into(),
            "a/# matches its parent"
        );
        assert_eq!(t.matches("$SYS/x").nodes, [4].into(), "# skips $ topics");
        t.remove("a/#", 1);
        t.remove("a/#", 1);
        assert_eq!(t.matches("a/b/c").nodes, [2, 3].into());
        assert_eq!(t.len(), 3);
    }

    #[test]
    fn shared_groups_rotate_over_their_nodes() {
        let mut t = RouteTable::default();
        t.add("$share/g/x/+", 1);
        t.add("$share/g/x/+", 2);
        t.add("$share/h/x/y", 3);
        let mut picks = Vec::new();
        for _ in 0..4 {
            let m = t.matches("x/y");
            assert!(m.nodes.is_empty());
            assert_eq!(m.shared.len(), 2, "one pick per group");
            let g = m.shared.iter().find(|(k, _)| k == "$share/g/x/+").unwrap();
            picks.push(g.1);
            assert!(m.shared.contains(&("$share/h/x/y".to_string(), 3)));
        }
        assert_eq!(picks, [1, 2, 1, 2]);
        t.remove("$share/g/x/+", 1);
        assert_eq!(t.matches("x/y").shared.len(), 2);
        t.remove("$share/g/x/+", 2);
        assert_eq!(
            t.matches("x/y").shared,
            vec![("$share/h/x/y".to_string(), 3)]
        );
    }
}
