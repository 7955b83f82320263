//! `@rx`: the `regex` crate (linear time) first; patterns it cannot express (look-around,
//! backreferences, atomic groups) fall back to `fancy-regex` with a backtracking limit.

use super::Captures;

/// Backtracking steps a fallback regex may take on one value before giving up (no match).
const BACKTRACK_LIMIT: usize = 100_000;

#[derive(Debug)]
pub(crate) enum Rx {
    /// Byte-oriented, non-Unicode like PCRE without UTF mode.
    Bytes(regex::bytes::Regex),
    /// Fallback: only for patterns the `regex` crate rejects; input is read as UTF-8
    /// (invalid bytes replaced).
    Fancy(fancy_regex::Regex),
}

impl Rx {
    pub(crate) fn new(pattern: &str) -> Result<Rx, String> {
        let build = |p: String| {
            regex::bytes::RegexBuilder::new(&p)
                .size_limit(256 << 20)
                .dfa_size_limit(16 << 20)
                .build()
        };
        let first = match build(format!("(?s-u){}", byte_escapes(pattern))) {
            Ok(r) => return Ok(Rx::Bytes(r)),
            Err(e) => e,
        };
        if let Ok(r) = build(format!("(?s){pattern}")) {
            return Ok(Rx::Bytes(r));
        }
        fancy_regex::RegexBuilder::new(&format!("(?s){pattern}"))
            .backtrack_limit(BACKTRACK_LIMIT)
            .build()
            .map(Rx::Fancy)
            .map_err(|e| format!("invalid regex {pattern:?}: {first}; fallback: {e}"))
    }

    /// The pattern as compiled (flags included), for literal extraction; for the fallback
    /// engine, look-around, backreferences and atomic groups are first rewritten into
    /// what the `regex` crate parses and matches at least as much (see
    /// `ruleset::literals::relax`).
    pub(crate) fn pattern(&self) -> Option<std::borrow::Cow<'_, str>> {
        match self {
            Rx::Bytes(r) => Some(std::borrow::Cow::Borrowed(r.as_str())),
            Rx::Fancy(r) => {
                // Possessive quantifiers become greedy (a superset), as for the `regex` crate.
                crate::ruleset::literals::relax(&byte_escapes(r.as_str()))
                    .map(std::borrow::Cow::Owned)
            }
        }
    }

    pub(crate) fn is_fallback(&self) -> bool {
        matches!(self, Rx::Fancy(_))
    }

    pub(crate) fn matches(&self, input: &[u8], caps: Option<&mut Captures>) -> bool {
        match self {
            Rx::Bytes(r) => match caps {
                None => r.is_match(input),
                // Most values do not match: decide with the DFA before paying for captures.
                Some(_) if !r.is_match(input) => false,
                Some(out) => match r.captures(input) {
                    Some(c) => {
                        out.clear();
                        for g in c.iter().take(10) {
                            out.push(g.map(|m| m.as_bytes().to_vec()).unwrap_or_default());
                        }
                        true
                    }
                    None => false,
                },
            },
            Rx::Fancy(r) => {
                let s = String::from_utf8_lossy(input);
                match caps {
                    None => r.is_match(&s).unwrap_or(false),
                    Some(out) => match r.captures(&s) {
                        Ok(Some(c)) => {
                            out.clear();
                            for g in c.iter().take(10) {
                                out.push(
                                    g.map(|m| m.as_str().as_bytes().to_vec())
                                        .unwrap_or_default(),
                                );
                            }
                            true
                        }
                        _ => false,
                    },
                }
            }
        }
    }
}

/// Rewrites PCRE-isms the `regex` crate reads differently: `\\x{HH}` is a byte in PCRE
/// without UTF mode (the `regex` crate would read U+00HH), and possessive quantifiers
/// (`*+`, `++`, `?+`, `{n,m}+`) become greedy ones: without backtracking there is nothing
/// to give up, so the only difference is that a few inputs a possessive quantifier would
/// reject can match. Escapes and character classes are copied as they are.
fn byte_escapes(p: &str) -> String {
    let b = p.as_bytes();
    let mut out = String::with_capacity(p.len());
    let mut i = 0;
    let mut in_class = false;
    let mut class_start = 0usize;
    let mut after_quant = false;
    while i < b.len() {
        let c = b[i];
        if c == b'\\' && i + 1 < b.len() {
            if b[i + 1] == b'x' && b.get(i + 2) == Some(&b'{') {
                let digits = b[i + 3..]
                    .iter()
                    .take_while(|c| c.is_ascii_hexdigit())
                    .count();
                if (1..=2).contains(&digits) && b.get(i + 3 + digits) == Some(&b'}') {
                    out.push_str("\\x");
                    if digits == 1 {
                        out.push('0');
                    }
                    out.push_str(&p[i + 3..i + 3 + digits]);
                    i += 4 + digits;
                    after_quant = false;
                    continue;
                }
            }
            let ch = p[i + 1..].chars().next().unwrap_or('\\');
            // `\<` and `\>` are literal in PCRE, word boundaries in the `regex` crate.
            if ch != '<' && ch != '>' {
                out.push('\\');
            }
            out.push(ch);
            i += 1 + ch.len_utf8();
            after_quant = false;
            continue;
        }
        if in_class {
            // `]` right after `[` or `[^` is a literal.
            if c == b']' && i > class_start {
                in_class = false;
            } else if c == b'[' && b.get(i + 1) == Some(&b':') {
                // POSIX class such as `[:alpha:]`: copy through its closing `:]`.
                let end = p[i..].find(":]").map_or(b.len(), |e| i + e + 2);
                out.push_str(&p[i..end]);
                i = end;
                continue;
            } else if matches!(c, b'[' | b'&' | b'~') {
                // Literal in PCRE; nesting or set operations in the `regex` crate.
                out.push('\\');
                out.push(c as char);
                i += 1;
                continue;
            }
        } else if c == b'[' {
            in_class = true;
            class_start = i + 1;
            if b.get(i + 1) == Some(&b'^') {
                class_start += 1;
            }
        } else if c == b'+' && after_quant {
            i += 1;
            after_quant = false;
            continue;
        }
        // `}` is a quantifier only when it closes `{n}`, `{n,}` or `{n,m}`.
        let closes_counted = c == b'}' && {
            let before = &b[..i];
            let open = before.iter().rposition(|&x| x == b'{');
            open.is_some_and(|o| {
                let inner = &before[o + 1..];
                !inner.is_empty()
                    && inner[0].is_ascii_digit()
                    && inner.iter().all(|x| x.is_ascii_digit() || *x == b',')
            })
        };
        // PCRE reads `{` as a literal unless it opens `{n}`, `{n,}` or `{n,m}` (and `}` as
        // a literal unless it closes one); the `regex` crate wants them escaped.
        if !in_class && c == b'{' && !opens_counted(&b[i..])
            || !in_class && c == b'}' && !closes_counted
        {
            out.push('\\');
            out.push(c as char);
            i += 1;
            after_quant = false;
            continue;
        }
        let quant = !in_class && (matches!(c, b'*' | b'+' | b'?') || closes_counted);
        let ch = p[i..].chars().next().unwrap_or(' ');
        out.push(ch);
        i += ch.len_utf8();
        after_quant = quant;
    }
    out
}

/// Whether `b` starts with a PCRE counted repetition: `{n}`, `{n,}` or `{n,m}`.
fn opens_counted(b: &[u8]) -> bool {
    let digits = |from: usize| b[from..].iter().take_while(|c| c.is_ascii_digit()).count();
    let n = digits(1);
    if n == 0 {
        return false;
    }
    match b.get(1 + n) {
        Some(b'}') => true,
        Some(b',') => {
            let m = digits(2 + n);
            b.get(2 + n + m) == Some(&b'}')
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fallback_and_bytes() {
        let r = Rx::new(r"(?i)a(?=b)").unwrap();
        assert!(r.is_fallback());
        assert!(r.matches(b"xAb", None));
        assert!(!r.matches(b"xAc", None));
        let r = Rx::new(r"[\x80-\xff]").unwrap();
        assert!(!r.is_fallback());
        assert!(r.matches(&[0x41, 0xff], None));
        let mut c = Vec::new();
        assert!(Rx::new("(a)(b)?").unwrap().matches(b"xa", Some(&mut c)));
        assert_eq!(c, vec![b"a".to_vec(), b"a".to_vec(), Vec::new()]);
        assert!(Rx::new("(").is_err());
        // PCRE literals the `regex` crate needs escaped, without the fallback engine.
        for (pat, yes, no) in [
            (r"^\(\s*\)\s+{", &b"() {"[..], &b"()"[..]),
            (r"{{.*?}}", b"{{x}}", b"{x}"),
            (r"a{2}b{,3}", b"aab{,3}", b"ab"),
            (r"[^\<\>]\<", b"x<", b"<<"),
        ] {
            let r = Rx::new(pat).unwrap();
            assert!(!r.is_fallback(), "{pat}");
            assert!(r.matches(yes, None), "{pat}");
            assert!(!r.matches(no, None), "{pat}");
        }
        assert_eq!(
            byte_escapes(r"a\x{e2}\\x{e2}\x{2019}\x{9}"),
            r"a\xe2\\x\{e2\}\x{2019}\x09"
        );
        assert!(Rx::new(r"\x{e2}\x80[\x98\x99]")
            .unwrap()
            .matches("’".as_bytes(), None));
    }
}
