//! Topic names, topic filters and matching (MQTT 5.0 §4.7, §4.8.2).
//!
//! ```
//! use quicmq_proto::mqtt::topic::{matches, parse_shared, validate_topic_filter};
//!
//! assert!(matches("sport/tennis/+", "sport/tennis/player1"));
//! assert!(matches("sport/#", "sport"));
//! assert!(!matches("#", "$SYS/uptime"));
//! assert!(validate_topic_filter("sport/tennis#").is_err());
//! assert_eq!(parse_shared("$share/g1/sport/#"), Some(("g1", "sport/#")));
//! ```

use super::DecodeError;

const SHARE_PREFIX: &str = "$share/";
const MAX_LEN: usize = u16::MAX as usize;

/// Validates a topic name of a PUBLISH (or a will): non-empty, no `+` or
/// `#`, no U+0000, at most 65535 bytes.
///
/// Errors are [`DecodeError::TopicNameInvalid`].
pub fn validate_topic_name(topic: &str) -> Result<(), DecodeError> {
    if topic.is_empty() {
        return Err(DecodeError::TopicNameInvalid("empty topic name"));
    }
    validate_topic_name_chars(topic)
}

/// The checks of [`validate_topic_name`] except emptiness (an empty topic
/// is valid in a PUBLISH that carries a topic alias).
pub(crate) fn validate_topic_name_chars(topic: &str) -> Result<(), DecodeError> {
    if topic.len() > MAX_LEN {
        return Err(DecodeError::TopicNameInvalid(
            "topic name longer than 65535 bytes",
        ));
    }
    if topic.bytes().any(|b| b == b'+' || b == b'#') {
        return Err(DecodeError::TopicNameInvalid("wildcard in topic name"));
    }
    if topic.as_bytes().contains(&0) {
        return Err(DecodeError::TopicNameInvalid("U+0000 in topic name"));
    }
    Ok(())
}

/// Validates a topic filter of a SUBSCRIBE or UNSUBSCRIBE.
///
/// A filter is non-empty and has no U+0000; `+` occupies a whole level;
/// `#` occupies the whole last level. A shared subscription
/// `$share/{group}/{filter}` has a non-empty group without `+`, `#` or `/`
/// and a non-empty filter that is itself valid.
///
/// Errors are [`DecodeError::TopicFilterInvalid`].
pub fn validate_topic_filter(filter: &str) -> Result<(), DecodeError> {
    if filter.len() > MAX_LEN {
        return Err(DecodeError::TopicFilterInvalid(
            "topic filter longer than 65535 bytes",
        ));
    }
    if filter.as_bytes().contains(&0) {
        return Err(DecodeError::TopicFilterInvalid("U+0000 in topic filter"));
    }
    match filter.strip_prefix(SHARE_PREFIX) {
        Some(rest) => {
            let (group, inner) = rest.split_once('/').ok_or(DecodeError::TopicFilterInvalid(
                "shared subscription without a filter",
            ))?;
            if group.is_empty() {
                return Err(DecodeError::TopicFilterInvalid("empty share name"));
            }
            if group.contains(['+', '#']) {
                return Err(DecodeError::TopicFilterInvalid("wildcard in share name"));
            }
            validate_plain_filter(inner)
        }
        None => validate_plain_filter(filter),
    }
}

fn validate_plain_filter(filter: &str) -> Result<(), DecodeError> {
    if filter.is_empty() {
        return Err(DecodeError::TopicFilterInvalid("empty topic filter"));
    }
    let mut levels = filter.split('/').peekable();
    while let Some(level) = levels.next() {
        if level.contains('+') && level != "+" {
            return Err(DecodeError::TopicFilterInvalid(
                "'+' must occupy a whole level",
            ));
        }
        if level.contains('#') && (level != "#" || levels.peek().is_some()) {
            return Err(DecodeError::TopicFilterInvalid(
                "'#' must be the whole last level",
            ));
        }
    }
    Ok(())
}

/// Splits a shared subscription filter `$share/{group}/{filter}` into
/// `(group, filter)`.
///
/// `None` for ordinary filters, and for a `$share/` filter without a second
/// `/` (which [`validate_topic_filter`] rejects). Does not validate the
/// parts: validate the whole filter first.
pub fn parse_shared(filter: &str) -> Option<(&str, &str)> {
    filter.strip_prefix(SHARE_PREFIX)?.split_once('/')
}

/// Whether `topic` matches `filter` (a filter without the `$share/` prefix).
///
/// `+` matches exactly one level (possibly empty); `#` matches the parent
/// level and any number of levels below it ("sport/#" matches "sport").
/// A filter starting with a wildcard does not match a topic starting with
/// `$`.
pub fn matches(filter: &str, topic: &str) -> bool {
    if topic.starts_with('$') && filter.starts_with(['+', '#']) {
        return false;
    }
    let mut filter_levels = filter.split('/');
    let mut topic_levels = topic.split('/');
    loop {
        match (filter_levels.next(), topic_levels.next()) {
            (Some("#"), _) => return true,
            (Some("+"), Some(_)) => {}
            (Some(f), Some(t)) if f == t => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_names() {
        assert!(validate_topic_name("a/b/c").is_ok());
        assert!(validate_topic_name("/").is_ok());
        assert!(validate_topic_name("$SYS/x").is_ok());
        for bad in ["", "a/+", "a/#", "a+b", "a\0b"] {
            let err = validate_topic_name(bad).unwrap_err();
            assert!(matches!(err, DecodeError::TopicNameInvalid(_)), "{bad:?}");
        }
        assert!(validate_topic_name(&"a".repeat(65_535)).is_ok());
        assert!(validate_topic_name(&"a".repeat(65_536)).is_err());
    }

    #[test]
    fn topic_filters() {
        for ok in [
            "a",
            "#",
            "+",
            "a/+/b",
            "a/#",
            "+/+",
            "/",
            "a//b",
            "+/#",
            "$share/g/a/#",
            "$share/g/#",
            "$share/g//",
            "$sharex/+",
            "$SYS/#",
        ] {
            assert_eq!(validate_topic_filter(ok), Ok(()), "{ok:?}");
        }
        for bad in [
            "",
            "a#",
            "a/#/b",
            "a/b#",
            "a+",
            "a/+b/c",
            "##",
            "a\0",
            "$share/",
            "$share/g",
            "$share//a",
            "$share/g/",
            "$share/g+/a",
            "$share/g#/a",
            "$share/g/a#",
        ] {
            let err = validate_topic_filter(bad).unwrap_err();
            assert!(matches!(err, DecodeError::TopicFilterInvalid(_)), "{bad:?}");
            assert_eq!(err.reason_code().0, 0x8F);
        }
    }

    #[test]
    fn shared() {
        assert_eq!(parse_shared("$share/g/a/b"), Some(("g", "a/b")));
        assert_eq!(parse_shared("$share/g/#"), Some(("g", "#")));
        assert_eq!(parse_shared("a/b"), None);
        assert_eq!(parse_shared("$share/g"), None);
        assert_eq!(parse_shared("$sharex/g/a"), None);
    }

    #[test]
    fn matching() {
        let yes = [
            ("a/b", "a/b"),
            ("a/+", "a/b"),
            ("a/+", "a/"),
            ("+", ""),
            ("+/+", "/"),
            ("#", "a/b/c"),
            ("#", "/"),
            ("sport/#", "sport"),
            ("sport/#", "sport/"),
            ("sport/#", "sport/tennis/player1"),
            ("sport/tennis/+", "sport/tennis/player1"),
            ("+/tennis/#", "sport/tennis"),
            ("/+", "/finance"),
            ("$SYS/#", "$SYS/a"),
            ("$SYS/+", "$SYS/a"),
        ];
        for (f, t) in yes {
            assert!(matches(f, t), "{f} should match {t}");
        }
        let no = [
            ("a/b", "a/c"),
            ("a/b", "a/b/c"),
            ("a/b/c", "a/b"),
            ("sport/+", "sport"),
            ("sport/tennis/+", "sport/tennis/player1/ranking"),
            ("+", "/finance"),
            ("+", "a/b"),
            ("#", "$SYS/a"),
            ("+/a", "$SYS/a"),
            ("#", "$"),
            ("a", "A"),
        ];
        for (f, t) in no {
            assert!(!matches(f, t), "{f} should not match {t}");
        }
    }
}
