//! Member liveness: the Raft leader probes every member and commits its
//! verdict (`alive`, `suspect`, `down`) so that every node and router acts
//! on the same view.
//!
//! [`LivenessTracker`] is the decision, sans-IO: it is told who answered
//! when (and whether the answer showed the member caught up with the log)
//! and says which members change state. [`run`] is the shell: on the
//! leader, every probe interval it sends each member a `Raft.Ping`, feeds
//! the answers to the tracker and proposes the verdicts in one entry.
//!
//! A member that has not answered for half of `member_down_after` is
//! `suspect` (still routed to: a pause is not a death), and `down` after
//! all of it. A new leader gives every member a full `member_down_after`
//! before judging it, so an election never marks anyone down by itself,
//! except the previous leader: a majority stopped hearing from it at least
//! an election timeout before this node took office.
//! A member is `alive` again once it answers having applied what the
//! leader had committed when it asked.
//!
//! A member whose gRPC port refuses connections (TCP reset: the host is
//! up, the process is not) is not paused or cut off but dead: it is
//! `down` once two probes a probe interval apart found its port closed
//! (half a second with the default `member_down_after`), without waiting
//! for the full period that silence needs; the previous leader at the
//! first such probe (the election already took an election timeout of
//! silence).

use std::collections::HashMap;
use std::sync::Weak;
use std::time::{Duration, Instant};

use quicmq_proto::cluster::v1::{PingRequest, RaftEncoding, RaftHeader};

use crate::command::{Command, Liveness, MemberState};
use crate::NodeId;

/// What the leader knows of each member's answers.
#[derive(Debug)]
pub struct LivenessTracker {
    down_after: Duration,
    /// When this node became leader: silence is counted from here at most.
    since: Instant,
    /// Per member: when it last answered, and whether it had caught up.
    answers: HashMap<NodeId, (Instant, bool)>,
    /// The previous leader, and since when the cluster has not heard it.
    previous_leader: Option<(NodeId, Instant)>,
    /// Per member: since when its port has refused every probe.
    refusing: HashMap<NodeId, Instant>,
    /// How long refusals must last to prove a member dead.
    refused_for: Duration,
}

impl LivenessTracker {
    /// A tracker for a leader that took office at `now`.
    pub fn new(down_after: Duration, now: Instant) -> Self {
        Self {
            down_after,
            since: now,
            answers: HashMap::new(),
            previous_leader: None,
            refusing: HashMap::new(),
            refused_for: probe_interval(down_after),
        }
    }

    /// This node (again) became leader at `now`: what it heard before
    /// does not count, every member gets a full `down_after`, except
    /// `previous_leader`, silent since the given instant (an election
    /// timeout before `now`: that is why there was an election).
    pub fn took_office(&mut self, now: Instant, previous_leader: Option<(NodeId, Instant)>) {
        self.since = now;
        self.answers.clear();
        self.refusing.clear();
        self.previous_leader = previous_leader;
    }

    /// `node`'s port refused the probe at `now` (nothing listens there).
    pub fn refused(&mut self, node: NodeId, now: Instant) {
        self.refusing.entry(node).or_insert(now);
    }

    /// `node` answered at `now`; `caught_up`: it had applied what the
    /// leader had committed when the probe left.
    pub fn answered(&mut self, node: NodeId, now: Instant, caught_up: bool) {
        self.answers.insert(node, (now, caught_up));
        self.refusing.remove(&node);
    }

    /// The state changes to commit at `now`, for `members` (node ID and
    /// state; left members and `me` are skipped).
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    /// use quicmq_raft::cluster::LivenessTracker;
    /// use quicmq_raft::command::{Liveness, MemberState};
    ///
    /// let start = Instant::now();
    /// let mut tracker = LivenessTracker::new(Duration::from_secs(3), start);
    /// let members = [(1, MemberState::Alive), (2, MemberState::Alive)];
    /// tracker.answered(2, start + Duration::from_secs(2), true);
    /// let later = start + Duration::from_secs(3);
    /// assert_eq!(tracker.verdicts(members, 1, later), vec![]);
    /// let much_later = start + Duration::from_secs(5);
    /// assert_eq!(tracker.verdicts(members, 1, much_later), vec![(2, Liveness::Down)]);
    /// ```
    pub fn verdicts(
        &self,
        members: impl IntoIterator<Item = (NodeId, MemberState)>,
        me: NodeId,
        now: Instant,
    ) -> Vec<(NodeId, Liveness)> {
        let mut out = Vec::new();
        for (node, state) in members {
            let Some(current) = state.liveness() else {
                continue;
            };
            if node == me {
                continue;
            }
            let since = match self.previous_leader {
                Some((leader, silent_since)) if leader == node => silent_since,
                _ => self.since,
            };
            let (last, caught_up) = self
                .answers
                .get(&node)
                .copied()
                .map_or((since, false), |(at, c)| (at.max(since), c));
            let silent = now.saturating_duration_since(last);
            let heard = self.answers.contains_key(&node);
            // The previous leader has been silent for an election timeout
            // already (that is why there was an election).
            let previous_leader = matches!(self.previous_leader, Some((l, _)) if l == node);
            let refused_long = self.refusing.get(&node).is_some_and(|since| {
                previous_leader || now.saturating_duration_since(*since) >= self.refused_for
            });
            let next = if silent >= self.down_after || refused_long {
                Liveness::Down
            } else if silent >= self.down_after / 2 {
                match current {
                    Liveness::Alive => Liveness::Suspect,
                    other => other,
                }
            } else if heard && caught_up {
                Liveness::Alive
            } else {
                current
            };
            if next != current {
                out.push((node, next));
            }
        }
        out
    }
}

/// How often the leader probes, for a `down_after`.
fn probe_interval(down_after: Duration) -> Duration {
    (down_after / 6).clamp(Duration::from_millis(50), Duration::from_millis(500))
}

/// Probes members and commits their liveness while this node leads,
/// until the node is dropped.
pub(super) async fn run(
    node: Weak<super::Inner>,
    down_after: Duration,
    remove_after: Option<Duration>,
) {
    let interval = probe_interval(down_after);
    // A busy member may answer late; it is silent only past this.
    let answer_within = (down_after / 3).max(interval);
    let mut tracker = LivenessTracker::new(down_after, Instant::now());
    let mut leading = false;
    let mut last_leader = None;
    loop {
        tokio::time::sleep(interval).await;
        let Some(inner) = node.upgrade() else { return };
        let cluster = super::ClusterNode { inner };
        let me = cluster.node_id();
        if !cluster.is_leader() {
            leading = false;
            last_leader = cluster.current_leader().filter(|l| *l != me);
            continue;
        }
        if !leading {
            let now = Instant::now();
            let election = cluster.config().timing.election_timeout;
            let previous = last_leader.map(|l| (l, now.checked_sub(election).unwrap_or(now)));
            tracker.took_office(now, previous);
            leading = true;
        }
        let committed = cluster.shared().revision();
        // Every current member: its state, and where to probe it.
        let members: Vec<(NodeId, MemberState, String)> = cluster.shared().read(|s| {
            s.members()
                .current()
                .map(|m| (m.node_id, m.state, m.grpc_addr.clone()))
                .collect()
        });
        let direct = cluster.config().peer_proxy.is_none();
        let mut probes = tokio::task::JoinSet::new();
        for (peer, _, addr) in members.iter().filter(|(id, _, _)| *id != me) {
            let (peer, addr) = (*peer, addr.clone());
            let channels = cluster.channels().clone();
            let header = RaftHeader {
                cluster_id: cluster.cluster_id().to_owned(),
                from_node_id: me,
                to_node_id: peer,
                encoding: RaftEncoding::Bincode1.into(),
            };
            probes.spawn(async move {
                let mut client = channels.raft_client(&addr).ok()?;
                let mut request = tonic::Request::new(PingRequest {
                    header: Some(header),
                    wait_index: committed,
                    timeout_ms: (interval / 2).as_millis() as u64,
                });
                request.set_timeout(answer_within);
                let answer = tokio::time::timeout(answer_within, client.ping(request)).await;
                match answer {
                    Ok(Ok(answer)) => Some((
                        peer,
                        Probe::Answered {
                            caught_up: answer.into_inner().applied_index >= committed,
                        },
                    )),
                    // Through a proxy, only the proxy's answer is known.
                    _ if !direct => None,
                    _ if port_refuses(&addr, interval / 2).await => Some((peer, Probe::Refused)),
                    _ => None,
                }
            });
        }
        while let Some(probe) = probes.join_next().await {
            match probe {
                Ok(Some((peer, Probe::Answered { caught_up }))) => {
                    tracker.answered(peer, Instant::now(), caught_up);
                }
                Ok(Some((peer, Probe::Refused))) => tracker.refused(peer, Instant::now()),
                _ => {}
            }
        }
        let states = members.iter().map(|(id, state, _)| (*id, *state));
        let mut verdicts = tracker.verdicts(states, me, Instant::now());
        // A leader that an earlier leader's verdict marked (it was cut
        // off from that one) is alive: it leads.
        if members
            .iter()
            .any(|(id, state, _)| *id == me && *state != MemberState::Alive)
        {
            verdicts.push((me, Liveness::Alive));
        }
        if !verdicts.is_empty() {
            commit(&cluster, verdicts, down_after).await;
        }
        if let Some(after) = remove_after {
            let states = members.iter().map(|(id, state, _)| (*id, *state));
            for node_id in due_for_removal(states, super::now_ms(), after) {
                tracing::warn!(
                    node_id,
                    "member down for longer than member_remove_after: removing it"
                );
                if let Err(e) = cluster.remove(node_id).await {
                    tracing::warn!(node_id, "member not removed: {e}");
                }
            }
        }
    }
}

/// What a probe learnt of a member.
enum Probe {
    /// It answered; `caught_up`: it had applied what the leader had
    /// committed.
    Answered { caught_up: bool },
    /// Its port refused the connection: its process is not running.
    Refused,
}

/// Whether a TCP connection to `addr` is refused (a reset: the host is
/// there, nothing listens), as opposed to accepted or unanswered.
async fn port_refuses(addr: &str, within: Duration) -> bool {
    matches!(
        tokio::time::timeout(within, tokio::net::TcpStream::connect(addr)).await,
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused
    )
}

/// Members that have been down for `after` or longer at `now_ms`.
fn due_for_removal(
    members: impl IntoIterator<Item = (NodeId, MemberState)>,
    now_ms: u64,
    after: Duration,
) -> Vec<NodeId> {
    let after_ms = u64::try_from(after.as_millis()).unwrap_or(u64::MAX);
    members
        .into_iter()
        .filter_map(|(id, state)| match state {
            MemberState::Down { since_ms } if now_ms.saturating_sub(since_ms) >= after_ms => {
                Some(id)
            }
            _ => None,
        })
        .collect()
}

/// Commits `verdicts` as this node's own entry, only while it leads with a
/// quorum behind it: a leader cut off from the others hears from nobody
/// and must not mark them down, and its verdict must not reach a later
/// leader (it is not passed on like other proposals).
async fn commit(cluster: &super::ClusterNode, verdicts: Vec<(NodeId, Liveness)>, wait: Duration) {
    let raft = cluster.raft();
    if !matches!(
        tokio::time::timeout(wait, raft.ensure_linearizable()).await,
        Ok(Ok(_))
    ) {
        tracing::debug!("not leading a quorum: member liveness left to the leader that does");
        return;
    }
    let now_ms = super::now_ms();
    for (node_id, liveness) in &verdicts {
        tracing::warn!(node_id, ?liveness, "member liveness changes");
    }
    let commands = verdicts
        .into_iter()
        .map(|(node_id, liveness)| Command::SetLiveness {
            node_id,
            liveness,
            now_ms,
        })
        .collect();
    match tokio::time::timeout(wait, raft.client_write(Command::Batch(commands))).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => tracing::warn!("member liveness not committed: {e}"),
        Err(_) => tracing::warn!("member liveness not committed within {wait:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOWN: Duration = Duration::from_secs(3);

    fn secs(start: Instant, s: f64) -> Instant {
        start + Duration::from_secs_f64(s)
    }

    #[test]
    fn silence_makes_suspect_then_down_and_a_caught_up_answer_alive() {
        let t0 = Instant::now();
        let mut t = LivenessTracker::new(DOWN, t0);
        let alive = [(1, MemberState::Alive), (2, MemberState::Alive)];
        t.answered(2, secs(t0, 1.0), true);
        assert!(t.verdicts(alive, 1, secs(t0, 2.0)).is_empty());
        assert_eq!(
            t.verdicts(alive, 1, secs(t0, 2.5)),
            vec![(2, Liveness::Suspect)]
        );
        let suspect = [
            (1, MemberState::Alive),
            (2, MemberState::Suspect { since_ms: 1 }),
        ];
        assert!(t.verdicts(suspect, 1, secs(t0, 3.9)).is_empty());
        assert_eq!(
            t.verdicts(suspect, 1, secs(t0, 4.0)),
            vec![(2, Liveness::Down)]
        );
        let down = [
            (1, MemberState::Alive),
            (2, MemberState::Down { since_ms: 1 }),
        ];
        assert!(t.verdicts(down, 1, secs(t0, 9.0)).is_empty());
        // Answers, but behind: stays down until it has caught up.
        t.answered(2, secs(t0, 9.0), false);
        assert!(t.verdicts(down, 1, secs(t0, 9.1)).is_empty());
        t.answered(2, secs(t0, 9.5), true);
        assert_eq!(
            t.verdicts(down, 1, secs(t0, 9.6)),
            vec![(2, Liveness::Alive)]
        );
        // A suspect that answers again is alive without passing down.
        t.answered(2, secs(t0, 10.0), true);
        assert_eq!(
            t.verdicts(suspect, 1, secs(t0, 10.1)),
            vec![(2, Liveness::Alive)]
        );
    }

    #[test]
    fn a_new_leader_waits_a_full_period_and_never_judges_itself_or_the_left() {
        let t0 = Instant::now();
        let mut t = LivenessTracker::new(DOWN, t0);
        t.answered(2, t0, true);
        t.took_office(secs(t0, 100.0), None);
        let members = [
            (1, MemberState::Alive),
            (2, MemberState::Alive),
            (3, MemberState::Left),
        ];
        assert!(t.verdicts(members, 1, secs(t0, 101.0)).is_empty());
        assert_eq!(
            t.verdicts(members, 1, secs(t0, 103.0)),
            vec![(2, Liveness::Down)],
            "never heard since taking office"
        );
        // A down member is not made alive by the grace period alone.
        let down = [(2, MemberState::Down { since_ms: 1 })];
        t.took_office(secs(t0, 200.0), None);
        assert!(t.verdicts(down, 1, secs(t0, 200.1)).is_empty());
        // The previous leader has been silent since before the election.
        let members = [(2, MemberState::Alive), (3, MemberState::Alive)];
        t.took_office(secs(t0, 300.0), Some((2, secs(t0, 299.5))));
        assert_eq!(
            t.verdicts(members, 1, secs(t0, 302.5)),
            vec![(2, Liveness::Down), (3, Liveness::Suspect)],
            "the previous leader: a full period after it fell silent; the others after the election"
        );
    }

    #[test]
    fn a_member_whose_port_refuses_twice_in_a_row_is_down() {
        let t0 = Instant::now();
        let mut t = LivenessTracker::new(DOWN, t0);
        let alive = [(1, MemberState::Alive), (2, MemberState::Alive)];
        t.answered(2, secs(t0, 0.5), true);
        t.refused(2, secs(t0, 1.0));
        assert!(t.verdicts(alive, 1, secs(t0, 1.4)).is_empty(), "once");
        t.refused(2, secs(t0, 1.5));
        assert_eq!(
            t.verdicts(alive, 1, secs(t0, 1.5)),
            vec![(2, Liveness::Down)],
            "refused a probe interval (500 ms) apart"
        );
        // An answer ends the streak: a process that restarted is not down.
        t.answered(2, secs(t0, 1.8), true);
        t.refused(2, secs(t0, 1.9));
        assert!(t.verdicts(alive, 1, secs(t0, 2.2)).is_empty());
        // A new leader starts over, but for the previous leader: silent
        // for an election timeout already, its first refusal proves it dead.
        t.took_office(secs(t0, 10.0), Some((2, secs(t0, 9.0))));
        let members = [(2, MemberState::Alive), (3, MemberState::Alive)];
        t.refused(3, secs(t0, 10.2));
        t.refused(2, secs(t0, 10.2));
        assert_eq!(
            t.verdicts(members, 1, secs(t0, 10.3)),
            vec![(2, Liveness::Down)]
        );
    }

    #[tokio::test]
    async fn a_closed_port_refuses_and_a_listening_one_does_not() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let open = listener.local_addr().unwrap().to_string();
        assert!(!port_refuses(&open, Duration::from_secs(1)).await);
        drop(listener);
        assert!(port_refuses(&open, Duration::from_secs(1)).await);
    }

    #[test]
    fn only_members_down_long_enough_are_removed() {
        let members = [
            (1, MemberState::Alive),
            (2, MemberState::Down { since_ms: 1_000 }),
            (3, MemberState::Down { since_ms: 5_000 }),
            (4, MemberState::Suspect { since_ms: 0 }),
            (5, MemberState::Left),
        ];
        let after = Duration::from_secs(10);
        assert_eq!(
            due_for_removal(members, 10_999, after),
            Vec::<NodeId>::new()
        );
        assert_eq!(due_for_removal(members, 11_000, after), vec![2]);
        assert_eq!(due_for_removal(members, 15_000, after), vec![2, 3]);
    }

    #[test]
    fn probes_are_frequent_enough_and_bounded() {
        assert_eq!(probe_interval(DOWN), Duration::from_millis(500));
        assert_eq!(
            probe_interval(Duration::from_millis(600)),
            Duration::from_millis(100)
        );
        assert_eq!(
            probe_interval(Duration::from_millis(100)),
            Duration::from_millis(50)
        );
    }
}
