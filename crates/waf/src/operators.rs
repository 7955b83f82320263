//! Operators (`@rx`, `@pm`, `@eq`, `@detectSQLi`, …): compiled once, evaluated per value.

mod ip;
mod rx;

pub(crate) use rx::Rx;

use crate::detect::InjectionDetector;
use crate::macros::Macro;
use aho_corasick::AhoCorasick;
use std::path::Path;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StrOp {
    StrEq,
    Contains,
    ContainsWord,
    BeginsWith,
    EndsWith,
    Within,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NumOp {
    Eq,
    Ge,
    Gt,
    Le,
    Lt,
}

#[derive(Debug)]
pub(crate) enum OpKind {
    Rx(Rx),
    Pm(AhoCorasick),
    Str(StrOp, Macro),
    Num(NumOp, Macro),
    DetectSqli,
    DetectXss,
    ValidateByteRange(Box<[bool; 256]>),
    ValidateUrlEncoding,
    ValidateUtf8,
    IpMatch(Vec<ip::IpNet>),
    Unconditional,
    NoMatch,
}

/// A compiled operator.
#[derive(Debug)]
pub(crate) struct Operator {
    pub(crate) negated: bool,
    pub(crate) kind: OpKind,
    pub(crate) name: &'static str,
}

/// What a successful match captured (`TX:0` … `TX:9`).
pub(crate) type Captures = Vec<Vec<u8>>;

impl Operator {
    /// Parses `@name param`, `!@name param` or a bare regex. `dir` resolves data files.
    pub(crate) fn compile(text: &str, dir: &Path) -> Result<(Operator, Vec<String>), String> {
        let mut warnings = Vec::new();
        let (negated, rest) = match text.strip_prefix('!') {
            Some(r) => (true, r),
            None => (false, text),
        };
        let (name, param) = match rest.strip_prefix('@') {
            Some(r) => match r.find(|c: char| c.is_ascii_whitespace()) {
                Some(i) => (r[..i].to_string(), r[i..].trim_start().to_string()),
                None => (r.to_string(), String::new()),
            },
            None => ("rx".to_string(), rest.to_string()),
        };
        let lname = name.to_ascii_lowercase();
        let (kind, static_name) = match lname.as_str() {
            "rx" => (OpKind::Rx(Rx::new(&param)?), "rx"),
            "pm" => (OpKind::Pm(pm(param.split_ascii_whitespace())?), "pm"),
            "pmf" | "pmfromfile" => {
                let mut phrases = Vec::new();
                for f in param.split_ascii_whitespace() {
                    let p = dir.join(f);
                    let text = std::fs::read(&p).map_err(|e| format!("{}: {e}", p.display()))?;
                    let text = String::from_utf8_lossy(&text).into_owned();
                    for line in text.lines() {
                        let l = line.trim();
                        if !l.is_empty() && !l.starts_with('#') {
                            phrases.push(l.to_string());
                        }
                    }
                }
                (
                    OpKind::Pm(pm(phrases.iter().map(String::as_str))?),
                    "pmFromFile",
                )
            }
            "streq" => (OpKind::Str(StrOp::StrEq, Macro::parse(&param)), "streq"),
            "contains" | "strmatch" => (
                OpKind::Str(StrOp::Contains, Macro::parse(&param)),
                "contains",
            ),
            "containsword" => (
                OpKind::Str(StrOp::ContainsWord, Macro::parse(&param)),
                "containsWord",
            ),
            "beginswith" => (
                OpKind::Str(StrOp::BeginsWith, Macro::parse(&param)),
                "beginsWith",
            ),
            "endswith" => (
                OpKind::Str(StrOp::EndsWith, Macro::parse(&param)),
                "endsWith",
            ),
            "within" => (OpKind::Str(StrOp::Within, Macro::parse(&param)), "within"),
            "eq" => (OpKind::Num(NumOp::Eq, Macro::parse(&param)), "eq"),
            "ge" => (OpKind::Num(NumOp::Ge, Macro::parse(&param)), "ge"),
            "gt" => (OpKind::Num(NumOp::Gt, Macro::parse(&param)), "gt"),
            "le" => (OpKind::Num(NumOp::Le, Macro::parse(&param)), "le"),
            "lt" => (OpKind::Num(NumOp::Lt, Macro::parse(&param)), "lt"),
            "detectsqli" => (OpKind::DetectSqli, "detectSQLi"),
            "detectxss" => (OpKind::DetectXss, "detectXSS"),
            "validatebyterange" => (
                OpKind::ValidateByteRange(byte_ranges(&param)?),
                "validateByteRange",
            ),
            "validateurlencoding" => (OpKind::ValidateUrlEncoding, "validateUrlEncoding"),
            "validateutf8encoding" => (OpKind::ValidateUtf8, "validateUtf8Encoding"),
            "ipmatch" => (OpKind::IpMatch(ip::parse_list(&param)?), "ipMatch"),
            "ipmatchf" | "ipmatchfromfile" => {
                let p = dir.join(param.trim());
                let text =
                    std::fs::read_to_string(&p).map_err(|e| format!("{}: {e}", p.display()))?;
                let list: Vec<&str> = text
                    .lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty() && !l.starts_with('#'))
                    .collect();
                (
                    OpKind::IpMatch(ip::parse_list(&list.join(","))?),
                    "ipMatchFromFile",
                )
            }
            "unconditionalmatch" => (OpKind::Unconditional, "unconditionalMatch"),
            "nomatch" => (OpKind::NoMatch, "noMatch"),
            "rbl" | "geolookup" | "gsblookup" | "inspectfile" | "verifycc" | "verifycpf"
            | "verifyssn" | "validatedtd" | "validateschema" | "fuzzyhash" | "validatehash" => {
                warnings.push(format!(
                    "operator @{name} is not supported; it never matches"
                ));
                (OpKind::NoMatch, "noMatch")
            }
            _ => return Err(format!("unknown operator @{name}")),
        };
        Ok((
            Operator {
                negated,
                kind,
                name: static_name,
            },
            warnings,
        ))
    }

    /// The operator's parameter, if it has macros to expand per transaction.
    pub(crate) fn param_macro(&self) -> Option<&Macro> {
        match &self.kind {
            OpKind::Str(_, m) | OpKind::Num(_, m) => Some(m),
            _ => None,
        }
    }

    /// Evaluates the operator (before negation). `param` is the expanded parameter of
    /// string and numeric operators. On a match with `caps` given, fills captures.
    pub(crate) fn eval(
        &self,
        input: &[u8],
        param: &[u8],
        detector: &dyn InjectionDetector,
        caps: Option<&mut Captures>,
    ) -> bool {
        match &self.kind {
            OpKind::Rx(r) => r.matches(input, caps),
            OpKind::Pm(ac) => match ac.find(input) {
                Some(m) => {
                    if let Some(c) = caps {
                        c.clear();
                        c.push(input[m.start()..m.end()].to_vec());
                    }
                    true
                }
                None => false,
            },
            OpKind::Str(op, _) => {
                let ok = match op {
                    StrOp::StrEq => input == param,
                    StrOp::Contains => find(input, param).is_some(),
                    StrOp::ContainsWord => contains_word(input, param),
                    StrOp::BeginsWith => input.starts_with(param),
                    StrOp::EndsWith => input.ends_with(param),
                    StrOp::Within => input.is_empty() || find(param, input).is_some(),
                };
                if ok {
                    if let Some(c) = caps {
                        c.clear();
                        c.push(if *op == StrOp::Within {
                            input.to_vec()
                        } else {
                            param.to_vec()
                        });
                    }
                }
                ok
            }
            OpKind::Num(op, _) => {
                let a = parse_int(input);
                let b = parse_int(param);
                match op {
                    NumOp::Eq => a == b,
                    NumOp::Ge => a >= b,
                    NumOp::Gt => a > b,
                    NumOp::Le => a <= b,
                    NumOp::Lt => a < b,
                }
            }
            OpKind::DetectSqli => match detector.sqli(input) {
                Some(fp) => {
                    if let Some(c) = caps {
                        c.clear();
                        c.push(fp.into_bytes());
                    }
                    true
                }
                None => false,
            },
            OpKind::DetectXss => detector.xss(input),
            OpKind::ValidateByteRange(ok) => input.iter().any(|&b| !ok[usize::from(b)]),
            OpKind::ValidateUrlEncoding => !valid_url_encoding(input),
            OpKind::ValidateUtf8 => std::str::from_utf8(input).is_err(),
            OpKind::IpMatch(nets) => ip::matches(nets, input),
            OpKind::Unconditional => true,
            OpKind::NoMatch => false,
        }
    }
}

fn pm<'a>(phrases: impl Iterator<Item = &'a str>) -> Result<AhoCorasick, String> {
    let list: Vec<&str> = phrases.filter(|p| !p.is_empty()).collect();
    AhoCorasick::builder()
        .ascii_case_insensitive(true)
        .build(list)
        .map_err(|e| e.to_string())
}

pub(crate) fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return Some(0);
    }
    if needle.len() > hay.len() {
        return None;
    }
    hay.windows(needle.len()).position(|w| w == needle)
}

fn contains_word(hay: &[u8], word: &[u8]) -> bool {
    if word.is_empty() {
        return true;
    }
    let mut start = 0;
    while let Some(p) = find(&hay[start..], word) {
        let s = start + p;
        let e = s + word.len();
        let before = s == 0 || !hay[s - 1].is_ascii_alphanumeric() && hay[s - 1] != b'_';
        let after = e == hay.len() || !hay[e].is_ascii_alphanumeric() && hay[e] != b'_';
        if before && after {
            return true;
        }
        start = s + 1;
    }
    false
}

/// Leading integer, like C's `atoi` (0 when there is none).
pub(crate) fn parse_int(v: &[u8]) -> i64 {
    let s = v.trim_ascii();
    let (neg, digits) = match s.first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let mut n: i64 = 0;
    for &c in digits.iter().take_while(|c| c.is_ascii_digit()) {
        n = n.saturating_mul(10).saturating_add(i64::from(c - b'0'));
    }
    if neg {
        -n
    } else {
        n
    }
}

fn byte_ranges(param: &str) -> Result<Box<[bool; 256]>, String> {
    let mut ok = Box::new([false; 256]);
    for part in param.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (a, b) = part.split_once('-').unwrap_or((part, part));
        let a: u8 = a
            .trim()
            .parse()
            .map_err(|_| format!("invalid byte range {part:?}"))?;
        let b: u8 = b
            .trim()
            .parse()
            .map_err(|_| format!("invalid byte range {part:?}"))?;
        if a > b {
            return Err(format!("invalid byte range {part:?}"));
        }
        for i in a..=b {
            ok[usize::from(i)] = true;
        }
    }
    Ok(ok)
}

fn valid_url_encoding(v: &[u8]) -> bool {
    let mut i = 0;
    while i < v.len() {
        if v[i] == b'%' {
            if i + 2 >= v.len() || !v[i + 1].is_ascii_hexdigit() || !v[i + 2].is_ascii_hexdigit() {
                return false;
            }
            i += 3;
        } else {
            i += 1;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::LibInjection;

    fn run(op: &str, input: &str, param: &str) -> bool {
        let (o, _) = Operator::compile(op, Path::new(".")).unwrap();
        o.eval(input.as_bytes(), param.as_bytes(), &LibInjection, None) != o.negated
    }

    #[test]
    fn operators() {
        assert!(run("@rx ^a+b$", "aab", ""));
        assert!(run("foo", "xfoox", ""));
        assert!(!run("!@rx foo", "xfoox", ""));
        assert!(run("@pm select union", "xUNIONx", ""));
        assert!(run("@streq x", "abc", "abc"));
        assert!(run("@within x", "GET", "GET POST"));
        assert!(!run("@within x", "PUT", "GET POST"));
        assert!(run("@ge 5", "7", "5"));
        assert!(run("@lt 5", "abc", "5"));
        assert!(run("@validateByteRange 32-126", "a\x01", ""));
        assert!(!run("@validateByteRange 32-126", "ab", ""));
        assert!(run("@validateUrlEncoding", "a%zz", ""));
        assert!(run("@validateUrlEncoding", "a%2", ""));
        assert!(!run("@validateUrlEncoding", "a%20", ""));
        assert!(run("@ipMatch 10.0.0.0/8,::1", "10.1.2.3", ""));
        assert!(!run("@ipMatch 10.0.0.0/8", "11.1.2.3", ""));
        assert!(run("@detectSQLi", "1' or '1'='1", ""));
        assert!(run("@containsWord x", "a bc d", "bc"));
        assert!(!run("@containsWord x", "abcd", "bc"));
        assert!(Operator::compile("@nope", Path::new(".")).is_err());
        assert_eq!(parse_int(b" -12x"), -12);
    }
}
