//! The subscription tree: topic filters by level, matched against topic
//! names (sans-IO).
//!
//! `+` and `#` are children like any other level; matching walks the exact
//! level, `+` and `#` at each step. Wildcards at the first level do not
//! match topics that start with `$`. Shared subscriptions
//! (`$share/{group}/{filter}`) are stored at their filter's node, grouped;
//! each match picks one member of each group, round robin.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use quicmq_proto::mqtt::topic::parse_shared;

use super::session::Subscription;

/// A client identifier, shared between the tree, sessions and deliveries.
pub type ClientId = Arc<str>;

#[derive(Default)]
struct SharedGroup {
    /// The full `$share/{group}/{filter}` this group subscribed with.
    key: Box<str>,
    members: Vec<(ClientId, Subscription)>,
    next: AtomicUsize,
}

#[derive(Default)]
struct Node {
    children: HashMap<Box<str>, Node>,
    subscribers: HashMap<ClientId, Subscription>,
    shared: BTreeMap<Box<str>, SharedGroup>,
}

impl Node {
    fn is_empty(&self) -> bool {
        self.children.is_empty() && self.subscribers.is_empty() && self.shared.is_empty()
    }
}

/// One subscription that matched a topic.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Match {
    /// The subscribing session.
    pub client_id: ClientId,
    /// Its subscription.
    pub subscription: Subscription,
    /// Whether the match came through a shared subscription.
    pub shared: bool,
}

/// Which subscriptions a match may yield.
pub struct Selection<'a> {
    /// Ordinary (non-shared) subscriptions.
    pub ordinary: bool,
    /// Whether the shared group with this `$share/G/F` key may deliver.
    pub shared: &'a dyn Fn(&str) -> bool,
    /// Whether a shared group may hand the message to this member (the
    /// ACL lets it read the topic); the group's turn passes to the next
    /// member that may, and a group without one is skipped.
    pub member: &'a dyn Fn(&ClientId) -> bool,
}

impl Selection<'static> {
    /// Every subscription.
    pub const ALL: Selection<'static> = Selection {
        ordinary: true,
        shared: &|_| true,
        member: &|_| true,
    };
}

/// All subscriptions of the broker, indexed by topic filter level.
///
/// ```
/// use std::sync::Arc;
/// use quicmq_node::broker::{Subscription, SubscriptionTree};
/// use quicmq_proto::mqtt::{QoS, SubscriptionOptions};
///
/// let mut tree = SubscriptionTree::default();
/// let sub = Subscription { options: SubscriptionOptions::new(QoS::AtLeastOnce), identifier: None, stream: 0, reads_all_under: None };
/// tree.insert("sensors/+/temp", Arc::from("c1"), sub);
/// let mut out = Vec::new();
/// tree.matches("sensors/7/temp", &mut out);
/// assert_eq!(&*out[0].client_id, "c1");
/// ```
#[derive(Default)]
pub struct SubscriptionTree {
    root: Node,
    count: usize,
}

impl SubscriptionTree {
    /// Add or replace `client_id`'s subscription to `filter` (a valid
    /// filter, possibly `$share/...`). Returns whether it existed.
    pub fn insert(
        &mut self,
        filter: &str,
        client_id: ClientId,
        subscription: Subscription,
    ) -> bool {
        let full_filter = filter;
        let (group, filter) = match parse_shared(filter) {
            Some((group, filter)) => (Some(group), filter),
            None => (None, filter),
        };
        let mut node = &mut self.root;
        for level in filter.split('/') {
            node = node.children.entry(Box::from(level)).or_default();
        }
        let existed = match group {
            None => node.subscribers.insert(client_id, subscription).is_some(),
            Some(group) => {
                let group = node
                    .shared
                    .entry(Box::from(group))
                    .or_insert_with(|| SharedGroup {
                        key: Box::from(full_filter),
                        ..SharedGroup::default()
                    });
                match group.members.iter_mut().find(|(c, _)| *c == client_id) {
                    Some(member) => {
                        member.1 = subscription;
                        true
                    }
                    None => {
                        group.members.push((client_id, subscription));
                        false
                    }
                }
            }
        };
        if !existed {
            self.count += 1;
        }
        existed
    }

    /// Remove `client_id`'s subscription to `filter`; returns whether it
    /// existed.
    pub fn remove(&mut self, filter: &str, client_id: &str) -> bool {
        let (group, filter) = match parse_shared(filter) {
            Some((group, filter)) => (Some(group), filter),
            None => (None, filter),
        };
        let levels: Vec<&str> = filter.split('/').collect();
        let removed = remove_at(&mut self.root, &levels, group, client_id);
        if removed {
            self.count -= 1;
        }
        removed
    }

    /// Number of subscriptions (shared ones count once per member).
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether there are no subscriptions.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Append every subscription matching `topic` to `out`: all ordinary
    /// subscribers, and one member of each shared group.
    pub fn matches(&self, topic: &str, out: &mut Vec<Match>) {
        self.matches_selected(topic, &Selection::ALL, out);
    }

    /// Like [`SubscriptionTree::matches`], limited to what `selection`
    /// names: in a cluster, the node that accepted a PUBLISH delivers to
    /// the shared groups it was picked for, and a peer it forwards to
    /// delivers to those it was picked for.
    pub fn matches_selected(&self, topic: &str, selection: &Selection<'_>, out: &mut Vec<Match>) {
        let levels: Vec<&str> = topic.split('/').collect();
        let dollar = topic.starts_with('$');
        collect(&self.root, &levels, 0, dollar, selection, out);
    }
}

fn remove_at(node: &mut Node, levels: &[&str], group: Option<&str>, client_id: &str) -> bool {
    let Some((first, rest)) = levels.split_first() else {
        return match group {
            None => node.subscribers.remove(client_id).is_some(),
            Some(group) => {
                let Some(g) = node.shared.get_mut(group) else {
                    return false;
                };
                let before = g.members.len();
                g.members.retain(|(c, _)| &**c != client_id);
                let removed = g.members.len() != before;
                if g.members.is_empty() {
                    node.shared.remove(group);
                }
                removed
            }
        };
    };
    let Some(child) = node.children.get_mut(*first) else {
        return false;
    };
    let removed = remove_at(child, rest, group, client_id);
    if child.is_empty() {
        node.children.remove(*first);
    }
    removed
}

fn emit(node: &Node, selection: &Selection<'_>, out: &mut Vec<Match>) {
    if selection.ordinary {
        out.extend(node.subscribers.iter().map(|(c, s)| Match {
            client_id: c.clone(),
            subscription: *s,
            shared: false,
        }));
    }
    for group in node.shared.values() {
        if group.members.is_empty() || !(selection.shared)(&group.key) {
            continue;
        }
        let count = group.members.len();
        let start = group.next.fetch_add(1, Ordering::Relaxed) % count;
        let Some((client_id, subscription)) = (0..count)
            .map(|k| &group.members[(start + k) % count])
            .find(|(client_id, _)| (selection.member)(client_id))
        else {
            continue;
        };
        out.push(Match {
            client_id: client_id.clone(),
            subscription: *subscription,
            shared: true,
        });
    }
}

fn collect(
    node: &Node,
    levels: &[&str],
    depth: usize,
    dollar: bool,
    selection: &Selection<'_>,
    out: &mut Vec<Match>,
) {
    let wildcards = !(depth == 0 && dollar);
    if wildcards {
        if let Some(hash) = node.children.get("#") {
            emit(hash, selection, out);
        }
    }
    let Some(level) = levels.get(depth) else {
        emit(node, selection, out);
        return;
    };
    if let Some(child) = node.children.get(*level) {
        collect(child, levels, depth + 1, dollar, selection, out);
    }
    if wildcards {
        if let Some(plus) = node.children.get("+") {
            collect(plus, levels, depth + 1, dollar, selection, out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quicmq_proto::mqtt::{QoS, SubscriptionOptions};

    fn sub(qos: QoS) -> Subscription {
        Subscription {
            options: SubscriptionOptions::new(qos),
            identifier: None,
            stream: 0,
            reads_all_under: None,
        }
    }

    fn matching(tree: &SubscriptionTree, topic: &str) -> Vec<String> {
        let mut out = Vec::new();
        tree.matches(topic, &mut out);
        let mut ids: Vec<String> = out.into_iter().map(|m| m.client_id.to_string()).collect();
        ids.sort();
        ids
    }

    #[test]
    fn selection_limits_ordinary_and_shared_matches() {
        let mut t = SubscriptionTree::default();
        t.insert("a/+", Arc::from("plain"), sub(QoS::AtMostOnce));
        t.insert("$share/g/a/#", Arc::from("g1"), sub(QoS::AtMostOnce));
        t.insert("$share/h/a/b", Arc::from("h1"), sub(QoS::AtMostOnce));
        let only_g = |key: &str| key == "$share/g/a/#";
        let selection = Selection {
            ordinary: false,
            shared: &only_g,
            member: &|_| true,
        };
        let mut out = Vec::new();
        t.matches_selected("a/b", &selection, &mut out);
        let ids: Vec<&str> = out.iter().map(|m| &*m.client_id).collect();
        assert_eq!(ids, ["g1"]);
        out.clear();
        t.matches("a/b", &mut out);
        assert_eq!(out.len(), 3);
    }

    #[test]
    fn a_group_passes_over_members_that_may_not_take_the_message() {
        let mut t = SubscriptionTree::default();
        for id in ["m1", "m2", "m3"] {
            t.insert("$share/g/a/#", Arc::from(id), sub(QoS::AtMostOnce));
        }
        let not_m2 = |c: &ClientId| &**c != "m2";
        let selection = Selection {
            ordinary: true,
            shared: &|_| true,
            member: &not_m2,
        };
        let mut picked = Vec::new();
        for _ in 0..6 {
            let mut out = Vec::new();
            t.matches_selected("a/b", &selection, &mut out);
            assert_eq!(out.len(), 1);
            picked.push(out[0].client_id.to_string());
        }
        assert!(!picked.contains(&"m2".to_string()), "{picked:?}");
        assert!(picked.contains(&"m1".to_string()) && picked.contains(&"m3".to_string()));
        let nobody = Selection {
            member: &|_| false,
            ..selection
        };
        let mut out = Vec::new();
        t.matches_selected("a/b", &nobody, &mut out);
        assert!(out.is_empty(), "no member may: the group is skipped");
    }

    #[test]
    fn wildcards_match_like_the_spec_says() {
        let mut t = SubscriptionTree::default();
        for (i, f) in [
            "sport/#",
            "sport/+",
            "+/+",
            "#",
            "sport/tennis/+",
            "+",
            "/+",
        ]
        .iter()
        .enumerate()
        {
            t.insert(f, Arc::from(format!("c{i}")), sub(QoS::AtMostOnce));
        }
        assert_eq!(matching(&t, "sport"), vec!["c0", "c3", "c5"]);
        assert_eq!(matching(&t, "sport/tennis"), vec!["c0", "c1", "c2", "c3"]);
        assert_eq!(matching(&t, "sport/tennis/player1"), vec!["c0", "c3", "c4"]);
        assert_eq!(matching(&t, "sport/"), vec!["c0", "c1", "c2", "c3"]);
        assert_eq!(matching(&t, "/finance"), vec!["c2", "c3", "c6"]);
    }

    #[test]
    fn dollar_topics_are_not_matched_by_first_level_wildcards() {
        let mut t = SubscriptionTree::default();
        t.insert("#", Arc::from("all"), sub(QoS::AtMostOnce));
        t.insert("+/monitor/Clients", Arc::from("plus"), sub(QoS::AtMostOnce));
        t.insert("$SYS/#", Arc::from("sys"), sub(QoS::AtMostOnce));
        t.insert("$SYS/monitor/+", Arc::from("sys2"), sub(QoS::AtMostOnce));
        assert_eq!(matching(&t, "$SYS/monitor/Clients"), vec!["sys", "sys2"]);
        assert_eq!(matching(&t, "x/monitor/Clients"), vec!["all", "plus"]);
    }

    #[test]
    fn insert_replaces_and_remove_prunes() {
        let mut t = SubscriptionTree::default();
        assert!(!t.insert("a/b", Arc::from("c"), sub(QoS::AtMostOnce)));
        assert!(t.insert("a/b", Arc::from("c"), sub(QoS::ExactlyOnce)));
        assert_eq!(t.len(), 1);
        let mut out = Vec::new();
        t.matches("a/b", &mut out);
        assert_eq!(out[0].subscription.options.qos, QoS::ExactlyOnce);
        assert!(t.remove("a/b", "c"));
        assert!(!t.remove("a/b", "c"));
        assert!(t.is_empty());
        assert!(t.root.is_empty(), "empty branches are pruned");
    }

    #[test]
    fn shared_subscriptions_round_robin_within_a_group() {
        let mut t = SubscriptionTree::default();
        t.insert("$share/g/job/+", Arc::from("w1"), sub(QoS::AtLeastOnce));
        t.insert("$share/g/job/+", Arc::from("w2"), sub(QoS::AtLeastOnce));
        t.insert("$share/h/job/+", Arc::from("h1"), sub(QoS::AtLeastOnce));
        t.insert("job/+", Arc::from("plain"), sub(QoS::AtLeastOnce));
        let mut seen_g = Vec::new();
        for _ in 0..4 {
            let mut out = Vec::new();
            t.matches("job/1", &mut out);
            assert_eq!(out.len(), 3, "one per group plus the plain subscriber");
            let g: Vec<_> = out
                .iter()
                .filter(|m| m.shared && m.client_id.starts_with('w'))
                .map(|m| m.client_id.to_string())
                .collect();
            seen_g.extend(g);
        }
        assert_eq!(seen_g, vec!["w1", "w2", "w1", "w2"]);
        assert!(t.remove("$share/g/job/+", "w1"));
        let mut out = Vec::new();
        t.matches("job/1", &mut out);
        assert!(out.iter().any(|m| &*m.client_id == "w2"));
        assert_eq!(t.len(), 3);
    }
}
