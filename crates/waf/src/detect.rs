//! SQL injection and XSS detection for `@detectSQLi` / `@detectXSS`.
//!
//! The engine only sees the [`InjectionDetector`] trait; [`LibInjection`] implements it
//! with `libinjectionrs`, a pure-Rust port of libinjection (the reference ModSecurity
//! and Coraza use).

/// Decides whether a value is SQL injection or XSS, libinjection style.
pub trait InjectionDetector: Send + Sync + std::fmt::Debug {
    /// `Some(fingerprint)` if `input` is SQL injection.
    fn sqli(&self, input: &[u8]) -> Option<String>;
    /// Whether `input` is cross-site scripting.
    fn xss(&self, input: &[u8]) -> bool;
}

use libinjectionrs::sqli::{sqli_data, TokenType};
use libinjectionrs::{SqliFlags, SqliState};

/// libinjection's algorithms through `libinjectionrs`.
#[derive(Debug, Default, Clone, Copy)]
pub struct LibInjection;

impl InjectionDetector for LibInjection {
    fn sqli(&self, input: &[u8]) -> Option<String> {
        if single_token(input) {
            return None;
        }
        // `detect_sqli` computes the fingerprint a second time after deciding; the state
        // already holds the fingerprint that matched.
        let mut s = SqliState::new(input, SqliFlags::FLAG_NONE);
        s.detect().then(|| s.fingerprint_string())
    }

    fn xss(&self, input: &[u8]) -> bool {
        libinjectionrs::detect_xss(input).is_injection()
    }
}

/// Whether libinjection's SQL tokenizer reads `v` as (at most) one token without quotes or
/// comments: empty input, a plain number (`42`, `11.99`), or one word (`gold`,
/// `json.items.0.sku`). libinjection then has a one-character fingerprint (or none), and
/// its blacklist holds no such fingerprint except `X` (evil input, which needs quotes or
/// comments), so the value is not SQL injection. Deciding that here costs a byte scan
/// instead of libinjection's several tokenize/fold passes; `tests::single_token_agrees`
/// checks the claim against the library.
fn single_token(v: &[u8]) -> bool {
    let Some(&first) = v.first() else {
        return true;
    };
    if first.is_ascii_digit() {
        // Digits, optionally one `.` and more digits: one number token.
        let int = v.iter().take_while(|c| c.is_ascii_digit()).count();
        return match &v[int..] {
            [] => true,
            [b'.', frac @ ..] => !frac.is_empty() && frac.iter().all(u8::is_ascii_digit),
            _ => false,
        };
    }
    // A word: not a string prefix letter (b'…', e'…', n'…', q'…', u&'…', x'…'), then word
    // characters; a `.` ends the word early only when what precedes it is a keyword.
    if !first.is_ascii_alphabetic() || b"bBeEnNqQuUxX".contains(&first) {
        return false;
    }
    if !v
        .iter()
        .all(|&c| c.is_ascii_alphanumeric() || c == b'_' || c == b'.')
    {
        return false;
    }
    v.iter().enumerate().all(|(i, &c)| {
        c != b'.' || {
            // ASCII checked above, so the prefix is valid UTF-8.
            let prefix = std::str::from_utf8(&v[..i]).unwrap_or("");
            matches!(
                sqli_data::lookup_word(prefix),
                TokenType::Bareword | TokenType::None
            )
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects() {
        let d = LibInjection;
        assert!(d.sqli(b"1' OR '1'='1").is_some());
        assert!(d.sqli(b"blue widget").is_none());
        assert!(d.xss(b"<script>alert(1)</script>"));
        assert!(!d.xss(b"hello world"));
        assert_eq!(d.sqli(b"1' OR '1'='1").as_deref(), Some("s&sos"));
    }

    /// The library's own answer, as `detect_sqli` gives it.
    fn reference(v: &[u8]) -> Option<String> {
        let r = libinjectionrs::detect_sqli(v);
        r.is_injection()
            .then(|| r.fingerprint.map(|f| f.to_string()).unwrap_or_default())
    }

    #[test]
    fn single_token_agrees() {
        for v in [
            &b""[..],
            b"0",
            b"48213",
            b"11.99",
            b"gold",
            b"json.items.3.sku",
            b"select",
            b"having",
            b"widget.select",
            b"or",
            b"a_b.c.",
            b"version",
        ] {
            assert!(single_token(v), "{v:?}");
            assert_eq!(reference(v), None, "{v:?}");
        }
        for v in [
            &b"1 or 1"[..],
            b"0x1",
            b"1e5",
            b"1.",
            b"xor",
            b"b",
            b"a b",
            b"a-1",
            b"a`b",
            b"union.select",
            b"select.1",
            b"sleep.x",
            b"select.from",
            b"a:b",
        ] {
            assert!(!single_token(v), "{v:?}");
        }
    }

    proptest::proptest! {
        /// Words, numbers and dotted names (what the shortcut accepts, and near misses)
        /// get the library's answer and fingerprint.
        #[test]
        fn same_as_library(v in "[a-zA-Z0-9_.`' -]{0,24}|(select|union|or|and|user|version|[a-z]{1,6})(\\.[a-z0-9_]{0,8}){0,3}") {
            proptest::prop_assert_eq!(LibInjection.sqli(v.as_bytes()), reference(v.as_bytes()));
        }
    }
}
