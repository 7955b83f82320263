//! Required literals of a regex: a set of byte strings such that every match of the regex
//! contains at least one of them (compared ASCII case-insensitively). The literal
//! prefilter runs one Aho-Corasick pass over a value and skips every `@rx` whose set has
//! no hit: the regex could not have matched.
//!
//! The analysis walks the regex's HIR (as `regex-syntax` parses the very pattern the
//! engine compiles). It over-approximates what a sub-expression can match, so a skipped
//! regex is one that cannot match, never one that might:
//!
//! * `exact(h)`: the finite set of strings `h` can match, when it is small (literals,
//!   small classes, bounded alternations and concatenations of those); look-around is the
//!   empty string.
//! * `required(h)`: for a concatenation, the best set among the products of runs of
//!   consecutive exact parts and the required sets of the other parts; for an alternation,
//!   the union of its branches' sets (every branch must have one); a repetition with at
//!   least one iteration requires what its body requires.
//!
//! Letters are lower-cased: the prefilter folds ASCII case, a superset of what a
//! case-sensitive regex matches.

use regex_syntax::hir::{Class, Hir, HirKind};

/// Most strings an exact set or a required set may hold.
const MAX_SET: usize = 64;
/// Most bytes a literal of an exact set may have (longer ones stop growing).
const MAX_LEN: usize = 32;
/// Most members of a class enumerated as single characters.
const MAX_CLASS: usize = 8;

type Set = Vec<Vec<u8>>;

/// The required literals of `pattern` (as compiled, flags included), or `None` when the
/// regex has no useful set (it may match without any particular literal).
pub(crate) fn required_literals(pattern: &str) -> Option<Set> {
    let hir = regex_syntax::ParserBuilder::new()
        .utf8(false)
        .build()
        .parse(pattern)
        .ok()?;
    let set = required(&hir)?;
    // U+FFFD: the fallback engine matches a lossy UTF-8 copy of the value, where it may
    // stand for invalid bytes that are not in the value itself.
    if set
        .iter()
        .any(|l| l.is_empty() || l.windows(3).any(|w| w == "\u{FFFD}".as_bytes()))
    {
        return None;
    }
    Some(set)
}

/// A pattern for the `regex` crate that matches wherever `pattern` (a fallback-engine
/// pattern) matches, for literal extraction only: look-around becomes an empty group
/// (it only restricts where a match may be), an atomic group a plain group, and a
/// backreference `(?s:.*)` (the repeated text, whatever it is). `None` when the pattern
/// has a construct this does not rewrite.
pub(crate) fn relax(pattern: &str) -> Option<String> {
    let b = pattern.as_bytes();
    let mut out = String::with_capacity(pattern.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'\\' => {
                let next = *b.get(i + 1)?;
                if next.is_ascii_digit() && next != b'0' || matches!(next, b'k' | b'g') {
                    if next == b'k' || next == b'g' {
                        // \k<name>, \k{name}, \g{n}: skip to the closing bracket.
                        let close = match b.get(i + 2)? {
                            b'<' => b'>',
                            b'{' => b'}',
                            b'\'' => b'\'',
                            _ => return None,
                        };
                        let end = b[i + 3..].iter().position(|&c| c == close)? + i + 3;
                        i = end + 1;
                    } else {
                        i += 2;
                        while i < b.len() && b[i].is_ascii_digit() {
                            i += 1;
                        }
                    }
                    out.push_str("(?s:.*)");
                    continue;
                }
                let ch = pattern[i + 1..].chars().next()?;
                out.push('\\');
                out.push(ch);
                i += 1 + ch.len_utf8();
            }
            b'[' => {
                let end = class_end(b, i)?;
                out.push_str(&pattern[i..end]);
                i = end;
            }
            b'(' if b.get(i + 1) == Some(&b'?') => {
                let rest = &b[i + 2..];
                if rest.starts_with(b"=")
                    || rest.starts_with(b"!")
                    || rest.starts_with(b"<=")
                    || rest.starts_with(b"<!")
                {
                    out.push_str("(?:)");
                    i = group_end(b, i)?;
                } else if rest.starts_with(b">") {
                    out.push_str("(?:");
                    i += 3;
                } else {
                    out.push_str("(?");
                    i += 2;
                }
            }
            _ => {
                let ch = pattern[i..].chars().next()?;
                out.push(ch);
                i += ch.len_utf8();
            }
        }
    }
    Some(out)
}

/// The index after the `]` closing the class that opens at `start`.
fn class_end(b: &[u8], start: usize) -> Option<usize> {
    let mut i = start + 1;
    if b.get(i) == Some(&b'^') {
        i += 1;
    }
    if b.get(i) == Some(&b']') {
        i += 1;
    }
    while i < b.len() {
        match b[i] {
            b'\\' => i += 2,
            b'[' if b.get(i + 1) == Some(&b':') => {
                let e = b[i..].windows(2).position(|w| w == b":]")?;
                i += e + 2;
            }
            b'[' => i = class_end(b, i)?,
            b']' => return Some(i + 1),
            _ => i += 1,
        }
    }
    None
}

/// The index after the `)` closing the group that opens at `start`.
fn group_end(b: &[u8], start: usize) -> Option<usize> {
    let mut depth = 0usize;
    let mut i = start;
    while i < b.len() {
        match b[i] {
            b'\\' => i += 2,
            b'[' => i = class_end(b, i)?,
            b'(' => {
                depth += 1;
                i += 1;
            }
            b')' => {
                depth -= 1;
                i += 1;
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => i += 1,
        }
    }
    None
}

fn lower(b: &[u8]) -> Vec<u8> {
    b.to_ascii_lowercase()
}

fn dedup(mut s: Set) -> Set {
    s.sort();
    s.dedup();
    s
}

/// The strings of a class, when it has few members.
fn class_strings(c: &Class) -> Option<Set> {
    let mut out = Vec::new();
    match c {
        Class::Bytes(b) => {
            for r in b.ranges() {
                let n = usize::from(r.end() - r.start()) + 1;
                if out.len() + n > MAX_CLASS * 2 {
                    return None;
                }
                for x in r.start()..=r.end() {
                    out.push(vec![x.to_ascii_lowercase()]);
                }
            }
        }
        Class::Unicode(u) => {
            for r in u.ranges() {
                let n = (r.end() as usize).saturating_sub(r.start() as usize) + 1;
                if out.len() + n > MAX_CLASS * 2 {
                    return None;
                }
                for ch in r.start()..=r.end() {
                    let mut buf = [0u8; 4];
                    out.push(lower(ch.encode_utf8(&mut buf).as_bytes()));
                }
            }
        }
    }
    let out = dedup(out);
    (out.len() <= MAX_CLASS).then_some(out)
}

fn product(a: &Set, b: &Set) -> Option<Set> {
    if a.len() * b.len() > MAX_SET {
        return None;
    }
    let mut out = Vec::with_capacity(a.len() * b.len());
    for x in a {
        for y in b {
            let mut s = x.clone();
            s.extend_from_slice(y);
            if s.len() > MAX_LEN {
                return None;
            }
            out.push(s);
        }
    }
    Some(dedup(out))
}

/// The finite set of strings `h` matches, if small.
fn exact(h: &Hir) -> Option<Set> {
    match h.kind() {
        HirKind::Empty | HirKind::Look(_) => Some(vec![Vec::new()]),
        HirKind::Literal(l) => (l.0.len() <= MAX_LEN).then(|| vec![lower(&l.0)]),
        HirKind::Class(c) => class_strings(c),
        HirKind::Capture(c) => exact(&c.sub),
        HirKind::Repetition(r) => match (r.min, r.max) {
            (1, Some(1)) => exact(&r.sub),
            (0, Some(1)) => {
                let mut s = exact(&r.sub)?;
                s.push(Vec::new());
                Some(dedup(s))
            }
            _ => None,
        },
        HirKind::Concat(parts) => {
            let mut acc: Set = vec![Vec::new()];
            for p in parts {
                acc = product(&acc, &exact(p)?)?;
            }
            Some(acc)
        }
        HirKind::Alternation(alts) => {
            let mut out = Vec::new();
            for a in alts {
                out.extend(exact(a)?);
                if out.len() > MAX_SET {
                    return None;
                }
            }
            Some(dedup(out))
        }
    }
}

/// How good a required set is: longer shortest literal first, then fewer literals.
fn score(s: &Set) -> (usize, std::cmp::Reverse<usize>) {
    let shortest = s.iter().map(Vec::len).min().unwrap_or(usize::MAX);
    (shortest, std::cmp::Reverse(s.len()))
}

fn better(best: &mut Option<Set>, cand: Set) {
    if cand.iter().any(Vec::is_empty) {
        return;
    }
    if best.as_ref().is_none_or(|b| score(&cand) > score(b)) {
        *best = Some(cand);
    }
}

/// A set of which every match of `h` contains a member, if there is a useful one.
fn required(h: &Hir) -> Option<Set> {
    if let Some(s) = exact(h) {
        if !s.iter().any(Vec::is_empty) {
            return Some(s);
        }
    }
    match h.kind() {
        HirKind::Capture(c) => required(&c.sub),
        HirKind::Repetition(r) if r.min >= 1 => required(&r.sub),
        HirKind::Concat(parts) => {
            let mut best = None;
            // Runs of consecutive exact parts: the product of any run is required.
            let mut run: Set = vec![Vec::new()];
            for p in parts {
                match exact(p) {
                    Some(e) => match product(&run, &e) {
                        Some(next) => run = next,
                        None => {
                            better(&mut best, std::mem::take(&mut run));
                            run = e;
                        }
                    },
                    None => {
                        better(&mut best, std::mem::replace(&mut run, vec![Vec::new()]));
                        if let Some(r) = required(p) {
                            better(&mut best, r);
                        }
                    }
                }
            }
            better(&mut best, run);
            best
        }
        HirKind::Alternation(alts) => {
            let mut out = Vec::new();
            for a in alts {
                out.extend(required(a)?);
                if out.len() > MAX_SET * 4 {
                    return None;
                }
            }
            Some(dedup(out))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lits(p: &str) -> Option<Vec<String>> {
        required_literals(p).map(|s| {
            s.into_iter()
                .map(|l| String::from_utf8_lossy(&l).into_owned())
                .collect()
        })
    }

    #[test]
    fn extracts() {
        assert_eq!(lits("(?s-u)abc"), Some(vec!["abc".into()]));
        assert_eq!(
            lits("(?s-u)(?i)union[\\s]+select"),
            Some(vec!["select".into()])
        );
        assert_eq!(
            lits("(?s-u)(?:foo|bar)\\d+"),
            Some(vec!["bar".into(), "foo".into()])
        );
        assert_eq!(lits("(?s-u)a|.*"), None);
        assert_eq!(lits("(?s-u)^.*$"), None);
        assert_eq!(lits("(?s-u)x?"), None);
        assert_eq!(
            lits("(?s-u)\\bon(?:load|error)="),
            Some(vec!["onerror=".into(), "onload=".into()])
        );
        assert_eq!(
            relax(r"(?i)a(?=b)c(?<!x\))(?>d)\1[(?=]").as_deref(),
            Some(r"(?i)a(?:)c(?:)(?:d)(?s:.*)[(?=]")
        );
        let sel = lits(&format!(
            "(?s){}",
            relax(r"(?i)select(?=\s)\s+from").unwrap()
        ))
        .unwrap();
        assert!(sel.contains(&"select".to_string()), "{sel:?}");
        // Case-insensitive Unicode: the Kelvin sign is a `k`.
        let k = lits("(?s)(?i)kx").unwrap();
        assert!(k.contains(&"kx".to_string()), "{k:?}");
    }

    proptest::proptest! {
        /// Whenever a fallback regex matches, the relaxed pattern's literals occur.
        #[test]
        fn relaxed_sound(
            parts in proptest::collection::vec(proptest::sample::select(vec![
                "a", "b", "c", "(?=a)", "(?!b)", "(?<=c)", "(?>ab)", "(a|b)\\1", "|", "*", "+", "?",
            ]), 1..10),
            input in "[abcABC ]{0,16}",
        ) {
            let pat = parts.concat();
            let Ok(re) = fancy_regex::Regex::new(&format!("(?s){pat}")) else { return Ok(()) };
            let Some(relaxed) = relax(&pat) else { return Ok(()) };
            if let Some(set) = required_literals(&format!("(?s){relaxed}")) {
                if re.is_match(&input).unwrap_or(false) {
                    let low = input.to_ascii_lowercase();
                    proptest::prop_assert!(
                        set.iter().any(|l| crate::operators::find(low.as_bytes(), l).is_some()),
                        "{pat} matched {input:?} without any of {set:?}"
                    );
                }
            }
        }

        /// Whenever a regex matches, its value contains one of the required literals.
        #[test]
        fn sound(
            pat in "(?:[abc]|\\(\\?i\\)|\\||\\(|\\)|\\*|\\+|\\?|\\\\b|\\[ab\\]|\\{1,2\\}){1,12}",
            input in "[abcABC ]{0,16}",
        ) {
            let full = format!("(?s-u){pat}");
            let Ok(re) = regex::bytes::Regex::new(&full) else { return Ok(()) };
            if let Some(set) = required_literals(&full) {
                if re.is_match(input.as_bytes()) {
                    let low = input.to_ascii_lowercase();
                    proptest::prop_assert!(
                        set.iter().any(|l| crate::operators::find(low.as_bytes(), l).is_some()),
                        "{full} matched {input:?} without any of {set:?}"
                    );
                }
            }
        }
    }
}
