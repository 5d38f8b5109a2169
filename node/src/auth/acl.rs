//! The ACL file: which client may publish to which topics and subscribe to
//! which filters. Sans-IO: [`Acl::parse`] reads the text, [`Acl::check`]
//! decides.
//!
//! One rule per line, `#` comments and blank lines ignored:
//!
//! ```text
//! # allow|deny  publish|subscribe|both  all|user:NAME|client:ID  FILTER
//! allow both      all               devices/%c/#
//! allow subscribe user:dashboard    devices/#
//! deny  publish   all               $SYS/#
//! ```
//!
//! - `%u` in the filter is the client's user name, `%c` its client ID. A
//!   rule with `%u` does not apply to anonymous clients. A rule whose
//!   substituted value contains `/`, `+` or `#` does not apply either, so
//!   an ID cannot widen the rule.
//! - Rules are tried in file order and the **first** that applies decides.
//!   When none applies, the answer is **deny**, as soon as the file has any
//!   rule. An ACL without rules allows everything.
//! - For PUBLISH (wills and retained messages too), a rule applies when its
//!   filter matches the topic.
//! - A fifth word `session_takeover=any` on an `allow` rule lets the
//!   clients the rule names (its second column) take over the sessions of
//!   other identities: resume another user's session or replace it. By
//!   default (`session_takeover=owner`) a session belongs to the identity
//!   that created it, and a CONNECT of another identity with its client ID
//!   is refused (0x87). The rule's filter and accesses apply as usual.
//! - `subscribe` rules say what a client may **read**. Every message a
//!   subscription delivers (retained messages too) is checked on its
//!   topic ([`Access::Read`]): the first rule whose filter matches the
//!   topic decides, as for PUBLISH. A wildcard subscription that overlaps
//!   a deny rule is therefore granted and delivers only what the client may
//!   read, as Mosquitto does: with `deny subscribe all a/secret/#` before
//!   `allow both all a/#`, `a/#` is granted and never delivers
//!   `a/secret/x`.
//! - A SUBSCRIBE itself ([`Access::Subscribe`]) is granted when some
//!   `allow` rule shares a topic with the filter before any `deny` rule
//!   covers the whole filter; otherwise it is refused (0x87).
//! - A shared subscription (`$share/GROUP/FILTER`) is checked the same
//!   way on FILTER. A group hands each message to a member that may read
//!   it (the broker passes over members that may not), so a member with
//!   fewer rights cannot take a message away from the others.
//!
//! ```
//! use quicmq_node::auth::acl::{Access, Acl, Client};
//!
//! let acl = Acl::parse("allow both all devices/%c/#\n").unwrap();
//! let me = Client { username: None, client_id: "d1" };
//! assert!(acl.check(&me, Access::Publish, "devices/d1/temp"));
//! assert!(!acl.check(&me, Access::Publish, "devices/d2/temp"));
//! assert!(acl.check(&me, Access::Subscribe, "devices/d1/+"));
//! // `devices/#` is granted, but delivers only `devices/d1/...`.
//! assert!(acl.check(&me, Access::Subscribe, "devices/#"));
//! assert!(acl.check(&me, Access::Read, "devices/d1/temp"));
//! assert!(!acl.check(&me, Access::Read, "devices/d2/temp"));
//! assert!(acl.check(&me, Access::Subscribe, "$share/g/devices/#"));
//! assert!(!acl.check(&me, Access::Subscribe, "$share/g/other/#"));
//! ```

use std::borrow::Cow;

use quicmq_proto::mqtt::topic::{matches, parse_shared, validate_topic_filter};

use super::FileError;

/// What a client asks to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Publish to a topic (a will and a retained message too).
    Publish,
    /// Subscribe to a filter.
    Subscribe,
    /// Receive a message published to a topic through a subscription.
    Read,
}

/// Who asks.
#[derive(Debug, Clone, Copy)]
pub struct Client<'a> {
    /// The authenticated user name (`None`: anonymous).
    pub username: Option<&'a str>,
    /// The client ID.
    pub client_id: &'a str,
}

/// Allow or deny.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Allow,
    Deny,
}

/// Which accesses a rule covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Actions {
    Publish,
    Subscribe,
    Both,
}

impl Actions {
    fn covers(self, access: Access) -> bool {
        matches!(
            (self, access),
            (Actions::Both, _)
                | (Actions::Publish, Access::Publish)
                | (Actions::Subscribe, Access::Subscribe | Access::Read)
        )
    }
}

/// Whom a rule applies to.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Who {
    All,
    User(String),
    ClientId(String),
}

#[derive(Debug, Clone)]
struct Rule {
    verdict: Verdict,
    actions: Actions,
    who: Who,
    filter: String,
    /// `session_takeover=any`: whom the rule names may take over the
    /// sessions of other identities.
    takeover_any: bool,
}

/// A parsed ACL.
#[derive(Debug, Clone, Default)]
pub struct Acl {
    rules: Vec<Rule>,
    /// Distinct for every parsed ACL (0: the empty default), so that what
    /// was decided under one ACL is never taken for another's.
    generation: u64,
}

/// The generation of the next parsed ACL.
static NEXT_GENERATION: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

impl Acl {
    /// Parses an ACL file.
    ///
    /// # Errors
    ///
    /// The first line that is not a comment, a blank line or a rule.
    pub fn parse(text: &str) -> Result<Acl, FileError> {
        let mut rules = Vec::new();
        for (index, raw) in text.lines().enumerate() {
            let line = index + 1;
            let trimmed = raw.trim();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            }
            let err = |reason: String| FileError { line, reason };
            let words: Vec<&str> = trimmed.split_whitespace().collect();
            let (verdict, actions, who, filter, option) = match words[..] {
                [verdict, actions, who, filter] => (verdict, actions, who, filter, None),
                [verdict, actions, who, filter, option] => {
                    (verdict, actions, who, filter, Some(option))
                }
                _ => {
                    return Err(err(format!(
                        "expected `allow|deny publish|subscribe|both all|user:NAME|client:ID FILTER [session_takeover=owner|any]`, found {} words",
                        words.len()
                    )))
                }
            };
            let takeover_any = match option {
                None | Some("session_takeover=owner") => false,
                Some("session_takeover=any") if verdict == "allow" => true,
                Some("session_takeover=any") => {
                    return Err(err(
                        "session_takeover=any grants a right: write it on an allow rule".into(),
                    ))
                }
                Some(other) => {
                    return Err(err(format!(
                        "`{other}`: expected session_takeover=owner or session_takeover=any"
                    )))
                }
            };
            let verdict = match verdict {
                "allow" => Verdict::Allow,
                "deny" => Verdict::Deny,
                other => return Err(err(format!("`{other}`: expected allow or deny"))),
            };
            let actions = match actions {
                "publish" => Actions::Publish,
                "subscribe" => Actions::Subscribe,
                "both" => Actions::Both,
                other => {
                    return Err(err(format!(
                        "`{other}`: expected publish, subscribe or both"
                    )))
                }
            };
            let who = match who.split_once(':') {
                None if who == "all" => Who::All,
                Some(("user", name)) if !name.is_empty() => Who::User(name.to_owned()),
                Some(("client", id)) if !id.is_empty() => Who::ClientId(id.to_owned()),
                _ => {
                    return Err(err(format!(
                        "`{who}`: expected all, user:NAME or client:ID"
                    )))
                }
            };
            // Validate with placeholders filled in as a level each.
            let sample = filter.replace("%u", "u").replace("%c", "c");
            if parse_shared(filter).is_some() {
                return Err(err(
                    "write the filter without `$share/GROUP/`: shared subscriptions are checked on their filter".into(),
                ));
            }
            validate_topic_filter(&sample)
                .map_err(|e| err(format!("`{filter}` is not a topic filter: {e}")))?;
            rules.push(Rule {
                verdict,
                actions,
                who,
                filter: filter.to_owned(),
                takeover_any,
            });
        }
        Ok(Acl {
            rules,
            generation: NEXT_GENERATION.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        })
    }

    /// This ACL's generation: every parsed ACL has its own (a reload makes
    /// a new one), the empty default has 0. Caches of decisions key on it.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Whether `client` may read every topic that `filter` (optionally
    /// `$share/GROUP/`-prefixed) matches: an allow rule covers the filter
    /// before any deny rule shares a topic with it. Deliveries through a
    /// subscription to such a filter need no check of their own.
    ///
    /// ```
    /// use quicmq_node::auth::acl::{Acl, Client};
    ///
    /// let acl = Acl::parse("deny subscribe all test/nosubscribe\nallow both all #\n").unwrap();
    /// let c = Client { username: None, client_id: "c" };
    /// assert!(acl.reads_all(&c, "test/open/#"));
    /// assert!(acl.reads_all(&c, "$share/g/other/+"));
    /// assert!(!acl.reads_all(&c, "#"), "overlaps the denied topic");
    /// assert!(!acl.reads_all(&c, "test/+"));
    /// ```
    pub fn reads_all(&self, client: &Client<'_>, filter: &str) -> bool {
        if self.rules.is_empty() {
            return true;
        }
        let filter = parse_shared(filter).map_or(filter, |(_, filter)| filter);
        for (verdict, rule) in self.applicable(client, Access::Read) {
            match verdict {
                Verdict::Deny if intersects(&rule, filter) => return false,
                Verdict::Allow if covers(&rule, filter) => return true,
                _ => {}
            }
        }
        false
    }

    /// Reads and parses the file at `path`.
    ///
    /// # Errors
    ///
    /// When it cannot be read (line 0) or does not parse.
    pub fn load(path: &std::path::Path) -> Result<Acl, FileError> {
        Acl::parse(&super::read_file(path)?)
    }

    /// Number of rules.
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// Whether there are no rules (everything is allowed).
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Whether `client` may take over sessions of other identities: some
    /// `allow` rule that names it carries `session_takeover=any`.
    ///
    /// ```
    /// use quicmq_node::auth::acl::{Acl, Client};
    ///
    /// let acl = Acl::parse("allow both user:ops # session_takeover=any\nallow both all devices/%c/#\n").unwrap();
    /// assert!(acl.may_take_over(&Client { username: Some("ops"), client_id: "x" }));
    /// assert!(!acl.may_take_over(&Client { username: Some("d1"), client_id: "d1" }));
    /// ```
    pub fn may_take_over(&self, client: &Client<'_>) -> bool {
        self.rules
            .iter()
            .any(|rule| rule.takeover_any && applies_to(&rule.who, client))
    }

    /// Whether `client` may publish to topic `target` ([`Access::Publish`]),
    /// subscribe to filter `target` ([`Access::Subscribe`]) or receive a
    /// message published to topic `target` ([`Access::Read`]).
    pub fn check(&self, client: &Client<'_>, access: Access, target: &str) -> bool {
        if self.rules.is_empty() {
            return true;
        }
        match access {
            Access::Publish | Access::Read => self.first_match(client, access, target),
            Access::Subscribe => {
                let filter = parse_shared(target).map_or(target, |(_, filter)| filter);
                self.covers_some(client, filter)
            }
        }
    }

    /// The rules that apply to `client` for `access`, with `%u` and `%c`
    /// filled in.
    fn applicable<'s>(
        &'s self,
        client: &'s Client<'_>,
        access: Access,
    ) -> impl Iterator<Item = (Verdict, Cow<'s, str>)> + 's {
        self.rules
            .iter()
            .filter(move |rule| rule.actions.covers(access) && applies_to(&rule.who, client))
            .filter_map(move |rule| Some((rule.verdict, substitute(&rule.filter, client)?)))
    }

    /// A topic: the first rule whose filter matches it decides.
    fn first_match(&self, client: &Client<'_>, access: Access, topic: &str) -> bool {
        self.applicable(client, access)
            .find(|(_, filter)| matches(filter, topic))
            .is_some_and(|(verdict, _)| verdict == Verdict::Allow)
    }

    /// A filter some of whose topics the client may read: an allow rule
    /// shares a topic with it before a deny rule covers it.
    fn covers_some(&self, client: &Client<'_>, filter: &str) -> bool {
        for (verdict, rule) in self.applicable(client, Access::Subscribe) {
            match verdict {
                Verdict::Allow if intersects(&rule, filter) => return true,
                Verdict::Deny if covers(&rule, filter) => return false,
                _ => {}
            }
        }
        false
    }
}

fn applies_to(who: &Who, client: &Client<'_>) -> bool {
    match who {
        Who::All => true,
        Who::User(name) => client.username == Some(name.as_str()),
        Who::ClientId(id) => client.client_id == id,
    }
}

/// The rule's filter with `%u` and `%c` filled in; `None` when the rule
/// cannot apply (no user name, or a value that would change the levels).
fn substitute<'f>(filter: &'f str, client: &Client<'_>) -> Option<Cow<'f, str>> {
    if !filter.contains('%') {
        return Some(Cow::Borrowed(filter));
    }
    let safe = |value: &str| !value.is_empty() && !value.contains(['/', '+', '#']);
    let mut out = filter.to_owned();
    if out.contains("%u") {
        let name = client.username.filter(|n| safe(n))?;
        out = out.replace("%u", name);
    }
    if out.contains("%c") {
        if !safe(client.client_id) {
            return None;
        }
        out = out.replace("%c", client.client_id);
    }
    Some(Cow::Owned(out))
}

/// Whether every topic `inner` matches is matched by `outer`.
pub fn covers(outer: &str, inner: &str) -> bool {
    // A wildcard-first rule never matches `$` topics.
    if outer.starts_with(['+', '#']) && inner.starts_with('$') {
        return false;
    }
    let mut o = outer.split('/');
    let mut i = inner.split('/');
    loop {
        match (o.next(), i.next()) {
            (Some("#"), _) => return true,
            (Some(_), Some("#")) => return false,
            (Some("+"), Some(_)) => {}
            (Some(a), Some(b)) if a == b && b != "+" => {}
            // (`outer` = `a/#` covering `inner` = `a` took the first arm.)
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// Whether some topic is matched by both `a` and `b`.
pub fn intersects(a: &str, b: &str) -> bool {
    let dollar = |f: &str| f.starts_with('$');
    let wild_first = |f: &str| f.starts_with(['+', '#']);
    if (wild_first(a) && dollar(b)) || (wild_first(b) && dollar(a)) {
        return false;
    }
    let mut x = a.split('/');
    let mut y = b.split('/');
    loop {
        match (x.next(), y.next()) {
            (Some("#"), _) | (_, Some("#")) => return true,
            (Some("+"), Some(_)) | (Some(_), Some("+")) => {}
            (Some(p), Some(q)) if p == q => {}
            // (`a/#` meeting `a` took the first arm.)
            (None, None) => return true,
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALICE: Client<'static> = Client {
        username: Some("alice"),
        client_id: "a1",
    };
    const ANON: Client<'static> = Client {
        username: None,
        client_id: "x9",
    };

    #[test]
    fn coverage_of_filters() {
        for (outer, inner, want) in [
            ("a/#", "a/b/c", true),
            ("a/#", "a", true),
            ("a/#", "a/#", true),
            ("a/+", "a/b", true),
            ("a/+", "a/+", true),
            ("a/+", "a/#", false),
            ("a/b", "a/+", false),
            ("a/+/c", "a/b/c", true),
            ("a/+/c", "a/b/d", false),
            ("#", "a/b", true),
            ("#", "$SYS/x", false),
            ("$SYS/#", "$SYS/x", true),
            ("a", "a/b", false),
            ("a/b", "a", false),
        ] {
            assert_eq!(covers(outer, inner), want, "{outer} ⊇ {inner}");
        }
    }

    #[test]
    fn intersection_of_filters() {
        for (a, b, want) in [
            ("a/#", "a/secret/#", true),
            ("a/secret/#", "a/+", true),
            ("a/secret/#", "a/public/#", false),
            ("a/+/c", "a/b/+", true),
            ("a/b", "a/c", false),
            ("a/#", "a", true),
            ("a", "a/#", true),
            ("#", "$SYS/#", false),
            ("a/b/c", "a/b", false),
        ] {
            assert_eq!(intersects(a, b), want, "{a} ∩ {b}");
            assert_eq!(intersects(b, a), want, "{b} ∩ {a}");
        }
    }

    #[test]
    fn without_rules_everything_is_allowed_with_any_rule_the_rest_is_denied() {
        let open = Acl::parse("# nothing\n\n").unwrap();
        assert!(open.is_empty());
        assert!(open.check(&ANON, Access::Publish, "any/topic"));
        let acl = Acl::parse("allow publish all public/#\n").unwrap();
        assert!(acl.check(&ANON, Access::Publish, "public/x"));
        assert!(!acl.check(&ANON, Access::Publish, "private/x"));
        assert!(
            !acl.check(&ANON, Access::Subscribe, "public/x"),
            "publish only"
        );
    }

    #[test]
    fn the_first_rule_that_applies_decides() {
        let acl = Acl::parse(
            "deny subscribe all a/secret/#\n\
             allow both all a/#\n",
        )
        .unwrap();
        assert!(
            acl.check(&ANON, Access::Subscribe, "a/#"),
            "overlaps the deny: granted, read checked per message"
        );
        assert!(acl.check(&ANON, Access::Read, "a/public/x"));
        assert!(!acl.check(&ANON, Access::Read, "a/secret/x"));
        assert!(acl.check(&ANON, Access::Subscribe, "a/public/#"));
        assert!(!acl.check(&ANON, Access::Subscribe, "a/secret/x"));
        assert!(!acl.check(&ANON, Access::Subscribe, "a/secret/#"));
        assert!(
            acl.check(&ANON, Access::Subscribe, "$share/g/a/#"),
            "a shared subscription is checked on its filter"
        );
        assert!(!acl.check(&ANON, Access::Subscribe, "$share/g/a/secret/#"));
        assert!(
            acl.check(&ANON, Access::Publish, "a/secret/x"),
            "deny is subscribe only"
        );
        let reversed = Acl::parse("allow both all a/#\ndeny subscribe all a/secret/#\n").unwrap();
        assert!(reversed.check(&ANON, Access::Subscribe, "a/secret/x"));
    }

    #[test]
    fn a_broad_subscription_over_a_deny_rule_reads_the_rest() {
        let acl = Acl::parse(
            "deny subscribe all test/nosubscribe\n\
             allow both all #\n",
        )
        .unwrap();
        for filter in ["#", "test/#", "test/+", "+/nosubscribe"] {
            assert!(acl.check(&ANON, Access::Subscribe, filter), "{filter}");
        }
        assert!(!acl.check(&ANON, Access::Subscribe, "test/nosubscribe"));
        assert!(!acl.check(&ANON, Access::Read, "test/nosubscribe"));
        assert!(acl.check(&ANON, Access::Read, "test/other"));
        assert!(acl.check(&ANON, Access::Read, "test/nosubscribe/below"));
        assert!(acl.check(&ANON, Access::Subscribe, "$share/g/#"));
        assert!(!acl.check(&ANON, Access::Subscribe, "$share/g/test/nosubscribe"));
        let narrow = Acl::parse("allow subscribe all public/#\n").unwrap();
        assert!(narrow.check(&ANON, Access::Subscribe, "#"));
        assert!(!narrow.check(&ANON, Access::Read, "private/x"));
        assert!(!narrow.check(&ANON, Access::Subscribe, "private/#"));
        assert!(
            !narrow.check(&ANON, Access::Read, "$SYS/x"),
            "`#` rules never match `$` topics"
        );
    }

    #[test]
    fn a_filter_reads_all_only_when_no_deny_rule_can_withhold_a_topic_of_it() {
        let acl = Acl::parse(
            "deny subscribe all test/nosubscribe\n\
             allow both user:alice devices/%c/#\n\
             deny both all devices/#\n\
             allow both all #\n",
        )
        .unwrap();
        for (client, filter, want) in [
            (ALICE, "other/#", true),
            (ALICE, "devices/a1/#", true),
            (ALICE, "devices/a1/+/t", true),
            (ALICE, "devices/+/t", false),
            (ALICE, "#", false),
            (ALICE, "test/+", false),
            (ANON, "devices/x9/#", false),
            (ANON, "other/x", true),
            (ANON, "$share/g/other/#", true),
            (ANON, "$share/g/#", false),
        ] {
            assert_eq!(
                acl.reads_all(&client, filter),
                want,
                "{:?} {filter}",
                client.username
            );
        }
        // Consistent with the per-topic check: what reads_all grants, each
        // topic of it allows.
        for topic in ["devices/a1/x", "devices/a1/y/t", "other/1"] {
            assert!(acl.check(&ALICE, Access::Read, topic), "{topic}");
        }
        let nothing = Acl::parse("allow both all a/#\n").unwrap();
        assert!(!nothing.reads_all(&ANON, "b/#"), "no rule: denied");
        assert!(Acl::default().reads_all(&ANON, "#"), "no ACL");
        assert_ne!(acl.generation(), nothing.generation());
        assert_eq!(Acl::default().generation(), 0);
    }

    #[test]
    fn rules_per_user_and_client_with_substitution() {
        let acl = Acl::parse(
            "allow both user:alice admin/#\n\
             allow both client:x9 legacy/x9\n\
             allow publish all users/%u/out\n\
             allow subscribe all clients/%c/in\n",
        )
        .unwrap();
        assert!(acl.check(&ALICE, Access::Publish, "admin/reboot"));
        assert!(!acl.check(&ANON, Access::Publish, "admin/reboot"));
        assert!(acl.check(&ANON, Access::Publish, "legacy/x9"));
        assert!(!acl.check(&ALICE, Access::Publish, "legacy/x9"));
        assert!(acl.check(&ALICE, Access::Publish, "users/alice/out"));
        assert!(!acl.check(&ALICE, Access::Publish, "users/bob/out"));
        assert!(
            !acl.check(&ANON, Access::Publish, "users//out"),
            "%u needs a user"
        );
        assert!(acl.check(&ALICE, Access::Subscribe, "clients/a1/in"));
        assert!(!acl.check(&ALICE, Access::Subscribe, "clients/x9/in"));
        assert!(
            acl.check(&ALICE, Access::Subscribe, "$share/g/clients/a1/in"),
            "shared subscriptions are checked on their filter"
        );
        let sneaky = Client {
            username: Some("+"),
            client_id: "#",
        };
        assert!(!acl.check(&sneaky, Access::Publish, "users/+/out"));
        assert!(!acl.check(&sneaky, Access::Subscribe, "clients/#/in"));
    }

    #[test]
    fn bad_lines_name_their_number() {
        for (text, line, words) in [
            ("allow publish all\n", 1, "found 3 words"),
            ("# c\npermit publish all a\n", 2, "allow or deny"),
            ("allow read all a\n", 1, "publish, subscribe or both"),
            ("allow both bob a\n", 1, "user:NAME"),
            ("allow both user: a\n", 1, "user:NAME"),
            ("allow both all a/#/b\n", 1, "not a topic filter"),
            ("allow both all $share/g/a\n", 1, "$share"),
            (
                "allow both all a session_takeover=all\n",
                1,
                "session_takeover=owner or",
            ),
            ("deny both all a session_takeover=any\n", 1, "allow rule"),
            ("allow both all a b c\n", 1, "found 6 words"),
        ] {
            let err = Acl::parse(text).unwrap_err();
            assert_eq!(err.line, line, "{text:?}: {err}");
            assert!(err.to_string().contains(words), "{text:?}: {err}");
        }
    }

    #[test]
    fn takeover_rights_come_from_allow_rules_that_name_the_client() {
        let acl = Acl::parse(
            "allow both user:alice admin/# session_takeover=any\n\
             allow both client:x9 legacy/x9 session_takeover=owner\n\
             allow both all # \n",
        )
        .unwrap();
        assert!(acl.may_take_over(&ALICE));
        assert!(!acl.may_take_over(&ANON));
        assert!(!acl.may_take_over(&Client {
            username: None,
            client_id: "x9"
        }));
        assert!(
            acl.check(&ALICE, Access::Publish, "admin/x"),
            "the rule's own access is unchanged"
        );
        assert!(
            !Acl::default().may_take_over(&ALICE),
            "no rules: owners only"
        );
    }
}
