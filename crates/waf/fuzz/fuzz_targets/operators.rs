//! Operators whose argument is parsed (`@rx`, `@pm`, `@ipMatch`, `@validateByteRange`, the
//! string and numeric comparisons): a fuzzed argument and a fuzzed value, through a real
//! `SecRule` on a request header. The argument either loads or gives a `file:line` error,
//! never a panic; when it loads, the rule matches exactly when a plain reference
//! implementation of the operator says so.
//!
//! Input layout: byte 0 picks the operator; the argument and the value follow, separated
//! by the first `\n` (the argument is one line of a rules file).
#![no_main]

use libfuzzer_sys::fuzz_target;
use palisade_waf::{LoadError, Request, Ruleset, Transaction};
use std::net::IpAddr;

const OPS: [&str; 10] = [
    "rx",
    "pm",
    "ipMatch",
    "validateByteRange",
    "streq",
    "beginsWith",
    "endsWith",
    "contains",
    "within",
    "validateUrlEncoding",
];

/// What the operator should say, when a simple reference exists.
fn reference(op: &str, arg: &str, v: &[u8]) -> Option<bool> {
    let (a, lv) = (arg.as_bytes(), v.to_ascii_lowercase());
    let has = |h: &[u8], n: &[u8]| n.is_empty() || h.windows(n.len()).any(|w| w == n);
    Some(match op {
        "pm" => arg
            .split_ascii_whitespace()
            .any(|p| has(&lv, p.to_ascii_lowercase().as_bytes())),
        "streq" => v == a,
        "beginsWith" => v.starts_with(a),
        "endsWith" => v.ends_with(a),
        "contains" => has(v, a),
        "within" => v.is_empty() || has(a, v),
        "ipMatch" => {
            let ip: IpAddr = std::str::from_utf8(v).ok()?.trim().parse().ok()?;
            arg.split([',', ' '])
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .any(|item| {
                    let (addr, prefix) = item.split_once('/').unwrap_or((item, "128"));
                    let Ok(net) = addr.parse::<IpAddr>() else {
                        return false;
                    };
                    let (a, b, width) = match (net, ip) {
                        (IpAddr::V4(n), IpAddr::V4(i)) => {
                            (u128::from(u32::from(n)), u128::from(u32::from(i)), 32)
                        }
                        (IpAddr::V6(n), IpAddr::V6(i)) => (u128::from(n), u128::from(i), 128),
                        _ => return false,
                    };
                    let p: u32 = prefix.parse::<u32>().unwrap_or(0).min(width);
                    p == 0 || a >> (width - p) == b >> (width - p)
                })
        }
        "validateByteRange" => {
            let mut ok = [false; 256];
            for part in arg.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                let (lo, hi) = part.split_once('-').unwrap_or((part, part));
                let (lo, hi): (u8, u8) = (lo.trim().parse().ok()?, hi.trim().parse().ok()?);
                for b in lo..=hi {
                    ok[usize::from(b)] = true;
                }
            }
            v.iter().any(|&b| !ok[usize::from(b)])
        }
        "rx" => {
            // Only patterns the engine passes to the regex crate unchanged.
            if arg.contains(['{', '}', '\\']) {
                return None;
            }
            let re = regex::bytes::Regex::new(&format!("(?s-u){arg}")).ok()?;
            re.is_match(v)
        }
        _ => return None,
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&k, rest)) = data.split_first() else {
        return;
    };
    let op = OPS[usize::from(k) % OPS.len()];
    let (arg, value) = match rest.iter().position(|&c| c == b'\n') {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (rest, &b""[..]),
    };
    let Ok(arg) = std::str::from_utf8(arg) else {
        return;
    };
    // One double-quoted word: `\"` is the only escape, so a trailing `\` cannot be written,
    // and `%{` would be a macro.
    if arg.contains('\r') || arg.ends_with('\\') || arg.contains("%{") || arg.len() > 300 {
        return;
    }
    let quoted = arg.replace('"', "\\\"");
    let text =
        format!("SecRule REQUEST_HEADERS:x-v \"@{op} {quoted}\" \"id:1,phase:1,pass,log\"\n");
    let rules = match Ruleset::from_str("fuzz.conf", &text) {
        Ok(r) => r,
        Err(LoadError::Directive { line, message, .. }) => {
            assert_eq!(line, 1, "{message}");
            return;
        }
        Err(e) => panic!("{e}"),
    };
    let headers: [(&[u8], &[u8]); 1] = [(b"x-v", value)];
    let mut tx = Transaction::new(&rules);
    tx.process_request(&Request {
        method: "GET",
        uri: b"/",
        protocol: "HTTP/1.1",
        headers: &headers,
        body: b"",
        remote_addr: "10.0.0.1",
    });
    let matched = tx.matched_rules().iter().any(|m| m.id == 1);
    if let Some(want) = reference(op, arg.trim_start(), value) {
        assert_eq!(
            matched,
            want,
            "@{op} {arg:?} on {:?}",
            String::from_utf8_lossy(value)
        );
    }
});
