//! The readings of a request body that its receiver may decode, for DLP: a secret sent
//! percent-encoded (`application/x-www-form-urlencoded`, a query string in JSON), behind JSON
//! string escapes (`"ghp\u005f…"`) or in base64 (a multipart part, a JSON field) is the same
//! secret to the server, so the detectors look at those readings too.
//!
//! One level of each encoding is undone (base64 also inside a percent-decoded reading); a
//! body encoded in some other way (compressed without saying so, encrypted, XOR-ed) is out
//! of reach of any byte scanner, which is why DLP is a safeguard against leaks by mistake
//! and the upload budget and the method rules are what hold a pod that means to exfiltrate.
//! Pure, bounded (each reading is at most as long as the body), never panics.

use crate::dlp::{scan, Detector};

/// Shortest run of base64 characters decoded (a 15-byte secret is 20 characters).
const MIN_BASE64_RUN: usize = 20;

/// Detectors that find something in a decoded reading of `body` (each once, in order).
pub fn hidden_hits(body: &[u8], detectors: &[Detector]) -> Vec<Detector> {
    let mut found: Vec<Detector> = Vec::new();
    for reading in readings(body) {
        for h in scan(&reading, detectors) {
            if !found.contains(&h.detector) {
                found.push(h.detector);
            }
        }
    }
    found
}

/// The decoded readings of `body` that differ from it: percent-decoded, JSON-unescaped, and
/// the base64 runs of the body and of its percent-decoded reading, decoded.
pub fn readings(body: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let pct = percent_decoded(body);
    if let Some(json) = json_unescaped(body) {
        out.push(json);
    }
    let b64 = base64_runs(body);
    if !b64.is_empty() {
        out.push(b64);
    }
    if let Some(p) = pct {
        let b64 = base64_runs(&p);
        if !b64.is_empty() {
            out.push(b64);
        }
        out.push(p);
    }
    out
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// `%XX` decoded and `+` read as a space; `None` when there is neither.
pub fn percent_decoded(body: &[u8]) -> Option<Vec<u8>> {
    if !body.iter().any(|b| *b == b'%' || *b == b'+') {
        return None;
    }
    let mut out = Vec::with_capacity(body.len());
    let mut i = 0;
    while i < body.len() {
        match body[i] {
            b'%' => match (
                body.get(i + 1).and_then(|b| hex(*b)),
                body.get(i + 2).and_then(|b| hex(*b)),
            ) {
                (Some(h), Some(l)) => {
                    out.push((h << 4) | l);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    Some(out)
}

/// JSON string escapes undone (`\uXXXX`, `\/`, `\n`, …); `None` when there are none.
pub fn json_unescaped(body: &[u8]) -> Option<Vec<u8>> {
    if !body.contains(&b'\\') {
        return None;
    }
    let mut out = Vec::with_capacity(body.len());
    let mut i = 0;
    while i < body.len() {
        if body[i] != b'\\' || i + 1 >= body.len() {
            out.push(body[i]);
            i += 1;
            continue;
        }
        let esc = body[i + 1];
        let simple = match esc {
            b'/' => Some(b'/'),
            b'\\' => Some(b'\\'),
            b'"' => Some(b'"'),
            b'n' => Some(b'\n'),
            b'r' => Some(b'\r'),
            b't' => Some(b'\t'),
            b'b' | b'f' => Some(b' '),
            _ => None,
        };
        if let Some(c) = simple {
            out.push(c);
            i += 2;
            continue;
        }
        let code = (esc == b'u')
            .then(|| body.get(i + 2..i + 6))
            .flatten()
            .and_then(|h| {
                h.iter()
                    .try_fold(0u32, |acc, b| Some((acc << 4) | u32::from(hex(*b)?)))
            });
        match code.map(|c| char::from_u32(c).unwrap_or(char::REPLACEMENT_CHARACTER)) {
            Some(c) => {
                let mut buf = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                i += 6;
            }
            None => {
                out.push(b'\\');
                i += 1;
            }
        }
    }
    Some(out)
}

fn base64_value(b: u8) -> Option<u8> {
    match b {
        b'A'..=b'Z' => Some(b - b'A'),
        b'a'..=b'z' => Some(b - b'a' + 26),
        b'0'..=b'9' => Some(b - b'0' + 52),
        b'+' | b'-' => Some(62),
        b'/' | b'_' => Some(63),
        _ => None,
    }
}

/// Every run of at least [`MIN_BASE64_RUN`] base64 characters (standard or URL-safe
/// alphabet), decoded, one per line. A line break after a whole number of 4-character
/// groups is skipped (MIME wraps at 76), so a wrapped block decodes whole.
pub fn base64_runs(body: &[u8]) -> Vec<u8> {
    fn flush(run: &mut Vec<u8>, out: &mut Vec<u8>) {
        if run.len() >= MIN_BASE64_RUN {
            let mut acc: u32 = 0;
            let mut bits = 0;
            for v in run.iter() {
                acc = (acc << 6) | u32::from(*v);
                bits += 6;
                if bits >= 8 {
                    bits -= 8;
                    out.push((acc >> bits) as u8);
                    acc &= (1 << bits) - 1;
                }
            }
            out.push(b'\n');
        }
        run.clear();
    }
    let mut out = Vec::new();
    let mut run: Vec<u8> = Vec::new();
    let mut i = 0;
    while i < body.len() {
        let b = body[i];
        match base64_value(b) {
            Some(v) => run.push(v),
            // A wrapped line (MIME: 76 characters) goes on; anything else ends the run.
            None if (b == b'\r' || b == b'\n')
                && run.len() >= 16
                && run.len().is_multiple_of(4) => {}
            None => flush(&mut run, &mut out),
        }
        i += 1;
    }
    flush(&mut run, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dlp::ALL;
    use proptest::prelude::*;

    const TOKEN: &str = "ghp_0123456789abcdefghijABCDEFGHIJ012345";

    fn b64(data: &[u8]) -> String {
        const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut s = String::new();
        for c in data.chunks(3) {
            let n = c
                .iter()
                .enumerate()
                .fold(0u32, |a, (i, b)| a | (u32::from(*b) << (16 - 8 * i)));
            for i in 0..=c.len() {
                s.push(A[((n >> (18 - 6 * i)) & 63) as usize] as char);
            }
        }
        while !s.len().is_multiple_of(4) {
            s.push('=');
        }
        s
    }

    fn names(body: &str) -> Vec<&'static str> {
        hidden_hits(body.as_bytes(), &ALL)
            .into_iter()
            .map(Detector::name)
            .collect()
    }

    #[test]
    fn secrets_behind_one_encoding_are_found() {
        let pem =
            "-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA\n-----END RSA PRIVATE KEY-----";
        let form = format!("key={}", pem.replace(' ', "+").replace('\n', "%0A"));
        assert_eq!(names(&form), ["private-key"]);
        let json = format!("{{\"t\":\"{}\"}}", TOKEN.replace('_', "\\u005f"));
        assert_eq!(names(&json), ["github-token"]);
        let multipart = format!(
            "--b\r\nContent-Transfer-Encoding: base64\r\n\r\n{}\r\n--b--",
            b64(format!("token: {TOKEN}").as_bytes())
        );
        assert_eq!(names(&multipart), ["github-token"]);
        // base64 inside a form field (`+`, `/`, `=` percent-encoded).
        let field = b64(format!(
            "aws_secret_access_key={}",
            "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
        )
        .as_bytes())
        .replace('+', "%2B")
        .replace('/', "%2F")
        .replace('=', "%3D");
        assert_eq!(names(&format!("f={field}")), ["aws-key"]);
    }

    #[test]
    fn plain_and_clean_bodies_add_nothing() {
        assert!(readings(b"weights=v2").is_empty());
        assert!(names(
            "{\"model\":\"gpt-test\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\\n\"}]}"
        )
        .is_empty());
        // A base64 image: decoded, nothing found.
        let png: Vec<u8> = (0..3000u32).map(|i| (i * 7919 % 251) as u8).collect();
        assert!(names(&format!("{{\"image\":\"{}\"}}", b64(&png))).is_empty());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1000))]

        #[test]
        fn never_panics_and_stays_bounded(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            for r in readings(&bytes) {
                prop_assert!(r.len() <= bytes.len() + 1);
            }
        }

        #[test]
        fn percent_encoding_round_trips(text in "[ -~]{0,60}") {
            let enc: String = text.bytes().map(|b| format!("%{b:02X}")).collect();
            prop_assert_eq!(percent_decoded(enc.as_bytes()).unwrap_or_default(), if enc.is_empty() { vec![] } else { text.into_bytes() });
        }
    }
}
