//! Where everything lives in etcd, under one prefix per federation set:
//!
//! ```text
//! /palisade/federation/<set>/current                 "<n>"  (the revision members enforce)
//! /palisade/federation/<set>/revisions/<n:020>       revision document (JSON, immutable)
//! /palisade/federation/<set>/identities/<cluster>    that cluster's workloads (JSON, leased)
//! /palisade/federation/<set>/status/<cluster>        that cluster's status (JSON)
//! ```
//!
//! Members watch `[prefix, prefix + "s")`: the pointer, the revisions and the identities,
//! but not the status keys every member rewrites on each heartbeat (which would fan out to
//! every member: N² events).

/// Key names of one federation set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    set: String,
    prefix: String,
}

/// What a key under the prefix is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyKind {
    /// The current-revision pointer.
    Current,
    /// A revision document.
    Revision(u64),
    /// A member's published workloads.
    Identities(String),
    /// A member's status.
    Member(String),
    /// Anything else (reported, ignored).
    Unknown,
}

/// The default set name.
pub const DEFAULT_SET: &str = "default";

impl Layout {
    /// The layout of set `set`.
    pub fn new(set: &str) -> Layout {
        Layout {
            set: set.to_string(),
            prefix: format!("/palisade/federation/{set}/"),
        }
    }
    /// The set's name (part of what a revision signature covers).
    pub fn set(&self) -> &str {
        &self.set
    }
    /// The prefix every key of the set starts with.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }
    /// The current-revision pointer.
    pub fn current(&self) -> String {
        format!("{}current", self.prefix)
    }
    /// Prefix of the revision documents.
    pub fn revisions(&self) -> String {
        format!("{}revisions/", self.prefix)
    }
    /// One revision document (zero-padded so keys sort by number).
    pub fn revision(&self, n: u64) -> String {
        format!("{}revisions/{n:020}", self.prefix)
    }
    /// Prefix of the identity keys.
    pub fn identities(&self) -> String {
        format!("{}identities/", self.prefix)
    }
    /// A member's identity key.
    pub fn identity(&self, cluster: &str) -> String {
        format!("{}identities/{cluster}", self.prefix)
    }
    /// Prefix of the member status keys.
    pub fn members(&self) -> String {
        format!("{}status/", self.prefix)
    }
    /// A member's status key.
    pub fn member(&self, cluster: &str) -> String {
        format!("{}status/{cluster}", self.prefix)
    }
    /// End (exclusive) of the range members watch: everything before `status/`.
    pub fn watch_end(&self) -> String {
        format!("{}s", self.prefix)
    }

    /// Classifies a key read from etcd.
    pub fn classify(&self, key: &[u8]) -> KeyKind {
        let Some(rest) = std::str::from_utf8(key)
            .ok()
            .and_then(|k| k.strip_prefix(self.prefix.as_str()))
        else {
            return KeyKind::Unknown;
        };
        if rest == "current" {
            return KeyKind::Current;
        }
        // A cluster name as `--cluster-name` takes it: `identities/East`, `identities/..`,
        // `identities/east\u{202e}` or a name with a NUL are nobody's key (reported, ignored),
        // never a cluster whose workloads are merged.
        let name_after = |p: &str| {
            rest.strip_prefix(p)
                .filter(|n| check_name("cluster", n).is_ok())
                .map(str::to_string)
        };
        if let Some(n) = rest.strip_prefix("revisions/") {
            // Exactly the key `revision(n)` writes: `revisions/5` or `revisions/+5` would
            // name the same number twice, outside the range pruning deletes.
            return match n.parse::<u64>() {
                Ok(v) if v > 0 && n.len() == 20 && n.bytes().all(|b| b.is_ascii_digit()) => {
                    KeyKind::Revision(v)
                }
                _ => KeyKind::Unknown,
            };
        }
        if let Some(c) = name_after("identities/") {
            return KeyKind::Identities(c);
        }
        if let Some(c) = name_after("status/") {
            return KeyKind::Member(c);
        }
        KeyKind::Unknown
    }
}

/// Checks a set or cluster name: DNS-label-like, so it is safe inside a key.
pub fn check_name(what: &str, s: &str) -> Result<(), String> {
    let ok = !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{what} {s:?} must be 1-63 lower-case letters, digits or '-' (not at either end)"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_through_classify() {
        let l = Layout::new("prod");
        assert_eq!(l.classify(l.current().as_bytes()), KeyKind::Current);
        assert_eq!(l.classify(l.revision(42).as_bytes()), KeyKind::Revision(42));
        assert_eq!(
            l.classify(l.identity("east").as_bytes()),
            KeyKind::Identities("east".into())
        );
        assert_eq!(
            l.classify(l.member("west").as_bytes()),
            KeyKind::Member("west".into())
        );
        assert_eq!(
            l.classify(b"/palisade/federation/prod/junk"),
            KeyKind::Unknown
        );
        assert_eq!(
            l.classify(b"/palisade/federation/prod/revisions/abc"),
            KeyKind::Unknown
        );
        assert_eq!(l.classify(b"/other/current"), KeyKind::Unknown);
        // Only the zero-padded form is a revision key.
        for k in [
            "revisions/5",
            "revisions/+0000000000000000005",
            "revisions/000000000000000000005",
        ] {
            let key = format!("/palisade/federation/prod/{k}");
            assert_eq!(l.classify(key.as_bytes()), KeyKind::Unknown, "{k}");
        }
        // The watched range holds the pointer, revisions and identities, not the status.
        let (start, end) = (l.prefix().to_string(), l.watch_end());
        for k in [l.current(), l.revision(1), l.identity("a")] {
            assert!(k >= start && k < end, "{k}");
        }
        assert!(l.member("a") >= end);
    }

    /// On the old code any key segment without '/' was a cluster: `identities/..`,
    /// `identities/East` or one with control or bidi characters were merged as clusters
    /// (names no `--cluster-name` can have, shown as-is in health and saved state).
    #[test]
    fn only_valid_cluster_names_are_identity_or_status_keys() {
        let l = Layout::new("prod");
        for name in [
            "..",
            ".",
            "East",
            "east\u{202e}",
            "east\0",
            "-east",
            "a b",
            "é",
            &"a".repeat(64),
        ] {
            for kind in ["identities", "status"] {
                let key = format!("/palisade/federation/prod/{kind}/{name}");
                assert_eq!(l.classify(key.as_bytes()), KeyKind::Unknown, "{key:?}");
            }
        }
    }

    #[test]
    fn revision_keys_sort_by_number() {
        let l = Layout::new("s");
        assert!(l.revision(9) < l.revision(10));
    }

    #[test]
    fn names_are_checked() {
        assert!(check_name("cluster", "east-1").is_ok());
        assert!(check_name("cluster", "East").is_err());
        assert!(check_name("cluster", "a/b").is_err());
        assert!(check_name("cluster", "").is_err());
    }
}
