//! The text of a queried name, as policy sees it and events show it.
//!
//! DNS labels are byte strings: one may hold a '.', a '*', a space or raw UTF-8. Policy
//! patterns are text split on '.', so such a label must never be read as several labels
//! (`evil.models` under `test` is not `evil` under `models.test`), nor match a wildcard.
//! Plain labels (letters, digits, '-', '_') are written lowercase as they are; any other
//! label is written with escapes (`\.`, `\*`, `\DDD` in decimal, as in zone files), and such
//! a name is not [`matchable`]: no Allow pattern may match it (Cilium's matchPattern, whose
//! `*` is `[-a-zA-Z0-9_]*`, does not either), no address is recorded for it, and a pod
//! governed by names gets it refused (the proxy's `odd_name_decision`: Deny patterns must
//! still hold, and no reading of it is right for every pattern).

/// Whether a label byte is plain: a letter, digit, '-' or '_'.
pub fn plain_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_'
}

/// The text of a name given by its labels (root excluded): lowercase, labels joined by '.',
/// no trailing dot; bytes other than plain ones escaped. Empty for the root.
pub fn name_text<'a>(labels: impl IntoIterator<Item = &'a [u8]>) -> String {
    let mut out = String::new();
    for (i, label) in labels.into_iter().enumerate() {
        if i > 0 {
            out.push('.');
        }
        for &b in label {
            if plain_byte(b) {
                out.push(b.to_ascii_lowercase() as char);
            } else if b.is_ascii_graphic() {
                out.push('\\');
                out.push(b as char);
            } else {
                out.push_str(&format!("\\{b:03}"));
            }
        }
    }
    out
}

/// Whether an FQDN pattern may match the name text `name` (from [`name_text`], or any
/// lowercase dotted name): only lowercase letters, digits, '-', '_' and the dots between
/// labels.
pub fn matchable(name: &str) -> bool {
    name.bytes().all(|b| {
        b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_' || b == b'.'
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_names_are_lowercased_as_they_are() {
        let n = name_text([&b"CDN"[..], b"-x_y", b"Test"]);
        assert_eq!(n, "cdn.-x_y.test");
        assert!(matchable(&n));
        assert_eq!(name_text(std::iter::empty::<&[u8]>()), "");
        assert!(matchable(""));
    }

    #[test]
    fn odd_labels_are_escaped_and_unmatchable() {
        for (labels, text) in [
            (vec![&b"evil.models"[..], b"test"], "evil\\.models.test"),
            (vec![b"*", b"test"], "\\*.test"),
            (vec![b"a b", b"test"], "a\\032b.test"),
            (vec!["b\u{fc}".as_bytes(), b"test"], "b\\195\\188.test"),
            (vec![b"a\\", b"test"], "a\\\\.test"),
        ] {
            let n = name_text(labels.iter().copied());
            assert_eq!(n, text);
            assert!(!matchable(&n), "{n}");
        }
        assert!(!matchable("Upper.test"));
    }
}
