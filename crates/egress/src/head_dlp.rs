//! DLP on request heads: the request target (path and query) and the header fields (names
//! and values) go upstream as surely as a body does, so the body's detectors look at them
//! too — raw, and in the readings [`crate::decoded`] gives (percent-decoded, JSON
//! escapes, base64 runs).
//!
//! Left out: the fields that carry the pod's credential for the API it calls
//! (`Authorization`, `X-Api-Key`, … [`crate::config::CREDENTIAL_HEADERS`]) and the
//! credential parameters of presigned URLs (`X-Amz-Credential`, …), each list set per `dlp`
//! block; `Proxy-Authorization` (never forwarded) always. Those fields carry the pod's key
//! *for the destination*, so they are still read for one thing: a key that only one
//! provider takes ([`Detector::provider_domains`]: AWS, GitHub, GitLab, Slack, Anthropic,
//! Hugging Face; a private key, which no API takes in a header) sent to a host that is not
//! that provider's is a finding, unless the `dlp` block's `forwardedCredentials` names it
//! (an AI gateway that forwards an Anthropic key, a self-hosted GitLab).
//!
//! Cheap for the usual clean head: the parts scanned are joined into one buffer (NUL
//! between them, which no pattern or base64 run crosses into a false negative) and one
//! pass of the detectors' combined automaton ([`crate::dlp::maybe`]) over it and its
//! decoded readings decides whether the per-detector scan runs at all. Pure, never panics.

use std::borrow::Cow;

use crate::config::DlpSettings;
use crate::decoded;
use crate::dlp::{self, Detector, Hit};

/// What the head scan found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeadFindings {
    /// Each detector that found something, once, in order.
    pub detectors: Vec<Detector>,
    /// When every finding lies in a header value as sent (none in the request target, in a
    /// field name, or only in a decoded reading): each such field's index (in the order
    /// given) with its value redacted. `None`: something found cannot be cut out.
    pub redacted: Option<Vec<(usize, Vec<u8>)>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part {
    Target,
    Name,
    Value(usize),
}

#[derive(Debug)]
struct Segment {
    start: usize,
    end: usize,
    part: Part,
}

/// Scans a request head to `host` (the destination's name or IP literal): `target` as sent
/// (origin or absolute form) and `fields` (name, value) in order. `None`: nothing found
/// (or heads are not scanned under `dlp`).
pub fn scan_head<'a>(
    host: &str,
    target: &[u8],
    fields: impl IntoIterator<Item = (&'a [u8], &'a [u8])>,
    dlp: &DlpSettings,
) -> Option<HeadFindings> {
    if !dlp.scan_heads || dlp.detectors.is_empty() {
        return None;
    }
    let mut buf: Vec<u8> = Vec::with_capacity(target.len() + 512);
    let mut segments: Vec<Segment> = Vec::with_capacity(16);
    // The credential fields' and parameters' values, read only for foreign keys.
    let mut credentials: Vec<&[u8]> = Vec::new();
    target_text(
        target,
        &dlp.credential_query_parameters,
        &mut buf,
        &mut credentials,
    );
    // Path segments one by one too: `/` is a base64 character, so a base64 segment read
    // with the path before it would decode misaligned.
    let end = buf.len();
    if buf.iter().filter(|b| **b == b'/').nth(1).is_some() {
        buf.push(0);
        buf.extend_from_within(..end);
        for b in &mut buf[end + 1..] {
            if *b == b'/' {
                *b = 0;
            }
        }
    }
    segments.push(Segment {
        start: 0,
        end: buf.len(),
        part: Part::Target,
    });
    for (i, (name, value)) in fields.into_iter().enumerate() {
        if is_credential(name, &dlp.credential_headers) {
            if !name.eq_ignore_ascii_case(b"proxy-authorization") {
                credentials.push(value);
            }
            continue;
        }
        for (part, bytes) in [(Part::Name, name), (Part::Value(i), value)] {
            buf.push(0);
            let start = buf.len();
            buf.extend_from_slice(bytes);
            segments.push(Segment {
                start,
                end: buf.len(),
                part,
            });
        }
    }
    let foreign = foreign_credentials(host, &credentials, dlp);
    // The pre-filter: no pattern anywhere in the head or its readings, nothing to find.
    if !dlp::maybe(&buf) && !decoded::readings(&buf).iter().any(|r| dlp::maybe(r)) {
        return (!foreign.is_empty()).then_some(HeadFindings {
            detectors: foreign,
            redacted: None,
        });
    }
    let hits = dlp::scan(&buf, &dlp.detectors);
    let cut = (!hits.is_empty()).then(|| dlp::redact(&buf, &hits));
    let hidden = decoded::hidden_hits(cut.as_deref().unwrap_or(&buf), &dlp.detectors);
    if hits.is_empty() && hidden.is_empty() && foreign.is_empty() {
        return None;
    }
    let mut detectors: Vec<Detector> = Vec::new();
    for d in hits
        .iter()
        .map(|h| h.detector)
        .chain(hidden.iter().copied())
        .chain(foreign.iter().copied())
    {
        if !detectors.contains(&d) {
            detectors.push(d);
        }
    }
    // Each raw hit in the value it lies in, at offsets within that value.
    let mut per_field: Vec<(usize, Vec<Hit>)> = Vec::new();
    // A credential field is the destination's to read: a foreign key in it is refused,
    // never cut out (what is left would be no credential either).
    let mut redactable = hidden.is_empty() && foreign.is_empty();
    for h in &hits {
        let seg = segments
            .iter()
            .find(|s| s.start <= h.start && h.start < s.end.max(s.start + 1));
        match seg {
            Some(&Segment {
                start,
                end,
                part: Part::Value(i),
            }) if h.end <= end => {
                let rel = Hit {
                    detector: h.detector,
                    start: h.start - start,
                    end: h.end - start,
                };
                match per_field.iter_mut().find(|(j, _)| *j == i) {
                    Some((_, v)) => v.push(rel),
                    None => per_field.push((i, vec![rel])),
                }
            }
            _ => redactable = false,
        }
    }
    let redacted = redactable.then(|| {
        per_field
            .into_iter()
            .filter_map(|(i, hs)| {
                let s = segments.iter().find(|s| s.part == Part::Value(i))?;
                Some((i, dlp::redact(&buf[s.start..s.end], &hs)))
            })
            .collect()
    });
    Some(HeadFindings {
        detectors,
        redacted,
    })
}

/// Whether a field is left out: `Proxy-Authorization` (never forwarded) or one of the
/// credential fields.
fn is_credential(name: &[u8], credential_headers: &[Cow<'static, str>]) -> bool {
    name.eq_ignore_ascii_case(b"proxy-authorization")
        || credential_headers
            .iter()
            .any(|c| name.eq_ignore_ascii_case(c.as_bytes()))
}

/// Keys in credential fields or parameters (`values`) that only a provider other than
/// `host`'s takes, found raw or in a decoded reading (`Basic` credentials are base64),
/// each detector once; those the `dlp` block forwards are left out.
fn foreign_credentials(host: &str, values: &[&[u8]], dlp: &DlpSettings) -> Vec<Detector> {
    let mut found: Vec<Detector> = Vec::new();
    if values.is_empty() {
        return found;
    }
    let bound: Vec<Detector> = dlp
        .detectors
        .iter()
        .copied()
        .filter(|d| {
            d.provider_domains().is_some()
                && !dlp.forwarded_credentials.contains(d)
                && !d.is_provider_host(host)
        })
        .collect();
    if bound.is_empty() {
        return found;
    }
    for value in values {
        let readings = decoded::readings(value);
        for reading in std::iter::once(*value).chain(readings.iter().map(Vec::as_slice)) {
            if !dlp::maybe(reading) {
                continue;
            }
            for h in dlp::scan(reading, &bound) {
                if !found.contains(&h.detector) {
                    found.push(h.detector);
                }
            }
        }
    }
    found
}

/// `target` into `out`, without the query parameters named in `skip` (compared
/// case-insensitively after percent-decoding the name), whose values go to `skipped`.
fn target_text<'t>(
    target: &'t [u8],
    skip: &[Cow<'static, str>],
    out: &mut Vec<u8>,
    skipped: &mut Vec<&'t [u8]>,
) {
    let Some(q) = target.iter().position(|b| *b == b'?') else {
        out.extend_from_slice(target);
        return;
    };
    let (path, query) = target.split_at(q);
    out.extend_from_slice(path);
    out.push(b'?');
    if skip.is_empty() {
        out.extend_from_slice(&query[1..]);
        return;
    }
    let mut first = true;
    for pair in query[1..].split(|b| *b == b'&') {
        let name = pair.split(|b| *b == b'=').next().unwrap_or(pair);
        let decoded = decoded::percent_decoded(name);
        let name = decoded.as_deref().unwrap_or(name);
        if skip.iter().any(|s| name.eq_ignore_ascii_case(s.as_bytes())) {
            skipped.push(pair);
            continue;
        }
        if !first {
            out.push(b'&');
        }
        out.extend_from_slice(pair);
        first = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use palisade_policy::model::DlpAction;
    use proptest::prelude::*;

    const TOKEN: &str = "ghp_0123456789abcdefghijABCDEFGHIJ012345";
    const OPENAI: &str = "sk-proj-abcdefghijklmnopqrstuvwx0123";

    fn settings() -> DlpSettings {
        DlpSettings::all(DlpAction::Block)
    }

    fn names(f: &Option<HeadFindings>) -> Vec<&'static str> {
        f.as_ref()
            .map(|f| f.detectors.iter().map(|d| d.name()).collect())
            .unwrap_or_default()
    }

    fn scan(target: &str, fields: &[(&str, &str)]) -> Option<HeadFindings> {
        scan_to("api.example.test", target, fields, &settings())
    }

    fn scan_to(
        host: &str,
        target: &str,
        fields: &[(&str, &str)],
        dlp: &DlpSettings,
    ) -> Option<HeadFindings> {
        scan_head(
            host,
            target.as_bytes(),
            fields.iter().map(|(n, v)| (n.as_bytes(), v.as_bytes())),
            dlp,
        )
    }

    #[test]
    fn a_clean_head_finds_nothing() {
        let f = scan(
            "/v1/models?limit=20&order=desc",
            &[
                ("host", "api.openai.test:443"),
                ("user-agent", "OpenAI/Python 1.40.0"),
                ("accept", "application/json"),
                ("x-stainless-os", "Linux"),
                ("cookie", "theme=dark; lang=en"),
            ],
        );
        assert_eq!(f, None);
    }

    #[test]
    fn secrets_in_the_target_are_found_raw_and_percent_decoded() {
        let f = scan("/upload?k=AKIAIOSFODNN7EXAMPLE", &[]);
        assert_eq!(names(&f), ["aws-key"]);
        assert_eq!(f.unwrap().redacted, None, "a URL is not rewritten");
        let enc = format!("/x?t={}", TOKEN.replace('_', "%5F"));
        assert_eq!(names(&scan(&enc, &[])), ["github-token"]);
        let email = "http://allowed.test/p?to=bob%40example.com";
        assert_eq!(names(&scan(email, &[])), ["email"]);
        // base64 in the path.
        let b64 = "/d/Z2hwXzAxMjM0NTY3ODlhYmNkZWZnaGlqQUJDREVGR0hJSjAxMjM0NQ";
        assert_eq!(names(&scan(b64, &[])), ["github-token"]);
    }

    #[test]
    fn header_values_and_names_are_scanned_and_values_can_be_redacted() {
        let f = scan(
            "/",
            &[
                ("user-agent", "curl/8"),
                ("x-leak", &format!("k {OPENAI} end")),
                ("cookie", "sid=1; mail=bob@example.com"),
            ],
        )
        .unwrap();
        assert_eq!(f.detectors, [Detector::OpenaiKey, Detector::Email]);
        assert_eq!(
            f.redacted,
            Some(vec![
                (1, b"k [REDACTED:openai-key] end".to_vec()),
                (2, b"sid=1; mail=[REDACTED:email]".to_vec())
            ])
        );
        // In a field name: found, not redactable.
        let name = format!("x-{TOKEN}");
        let f = scan("/", &[(name.as_str(), "1")]).unwrap();
        assert_eq!(
            (names(&Some(f.clone())), f.redacted),
            (vec!["github-token"], None)
        );
        // Only in a decoded reading of a value: found, not redactable.
        let f = scan("/", &[("x-t", &TOKEN.replace('_', "%5F"))]).unwrap();
        assert_eq!(
            (names(&Some(f.clone())), f.redacted),
            (vec!["github-token"], None)
        );
    }

    #[test]
    fn cookies_are_read_as_values() {
        let jwt = "session=eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.abcdefghijk";
        assert_eq!(names(&scan("/", &[("cookie", jwt)])), ["jwt"]);
        let pair = "a=1; token=Zx8qL2vR9tY4mK7pW3nB6cF1";
        assert_eq!(names(&scan("/", &[("cookie", pair)])), ["high-entropy"]);
        // A random value is no finding by itself, whatever the field is called.
        assert_eq!(
            scan("/", &[("x-auth-token", "Zx8qL2vR9tY4mK7pW3nB6cF1")]),
            None
        );
    }

    #[test]
    fn credentials_for_the_destination_are_left_alone() {
        let bearer = format!("Bearer {OPENAI}");
        let fields = [
            ("Authorization", bearer.as_str()),
            ("x-api-key", "sk-ant-api03-abcdefghijklmnopqrstuvwx"),
            ("proxy-authorization", "Basic Ym9iQGV4YW1wbGUuY29tOnB3"),
        ];
        let to_anthropic = |t: &str| scan_to("api.anthropic.com", t, &fields, &settings());
        assert_eq!(to_anthropic("/v1/messages"), None);
        // A presigned S3 URL.
        let presigned = "/bucket/w.bin?X-Amz-Algorithm=AWS4-HMAC-SHA256\
            &X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20261128%2Fus-east-1%2Fs3%2Faws4_request\
            &X-Amz-Date=20261128T000000Z&X-Amz-Expires=3600&X-Amz-SignedHeaders=host\
            &X-Amz-Security-Token=IQoJb3JpZ2luX2VjEJr%2F%2F%2F%2FtokenWJalrXUtnFEMIK7MDENG\
            &X-Amz-Signature=0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
        assert_eq!(
            scan_to("b.s3.amazonaws.com", presigned, &[], &settings()),
            None
        );
        // Lists set to `[]`: scanned.
        let mut strict = settings();
        strict.credential_headers.clear();
        strict.credential_query_parameters.clear();
        let f = scan_to("api.anthropic.com", presigned, &fields, &strict);
        let found = names(&f);
        assert!(
            found.contains(&"aws-key") && found.contains(&"openai-key"),
            "{found:?}"
        );
        // `scanHeads: false`: nothing.
        let mut off = settings();
        off.scan_heads = false;
        assert_eq!(
            scan_head("x.test", b"/?k=AKIAIOSFODNN7EXAMPLE", [], &off),
            None
        );
    }

    #[test]
    fn a_providers_key_in_a_credential_field_goes_only_to_that_provider() {
        let anthropic = [("x-api-key", "sk-ant-api03-abcdefghijklmnopqrstuvwx")];
        let s = settings();
        for host in ["api.anthropic.com", "API.Anthropic.COM.", "anthropic.com"] {
            assert_eq!(
                scan_to(host, "/v1/messages", &anthropic, &s),
                None,
                "{host}"
            );
        }
        // Anywhere else, a lookalike suffix and an IP literal included: refused, never cut.
        for host in [
            "gateway.ai.example",
            "notanthropic.com",
            "anthropic.com.evil.test",
            "192.0.2.7",
        ] {
            let f = scan_to(host, "/v1/messages", &anthropic, &s);
            assert_eq!(names(&f), ["anthropic-key"], "{host}");
            assert_eq!(f.unwrap().redacted, None, "{host}");
        }
        // GitHub's token to another hub, as a bearer and inside `Basic` (base64).
        let bearer = format!("Bearer {TOKEN}");
        let f = [("authorization", bearer.as_str())];
        assert_eq!(scan_to("api.github.com", "/user", &f, &s), None);
        assert_eq!(scan_to("ghcr.io", "/v2/", &f, &s), None);
        assert_eq!(
            names(&scan_to("huggingface.co", "/", &f, &s)),
            ["github-token"]
        );
        let basic = format!(
            "Basic {}",
            crate::config::base64(format!("x-access-token:{TOKEN}").as_bytes())
        );
        let f = [("authorization", basic.as_str())];
        assert_eq!(scan_to("github.com", "/o/r.git/info/refs", &f, &s), None);
        assert_eq!(
            names(&scan_to("git.evil.test", "/", &f, &s)),
            ["github-token"]
        );
        // An `sk-` key is the shape of many OpenAI-compatible providers' keys: left alone.
        let bearer = format!("Bearer {OPENAI}");
        let f = [("authorization", bearer.as_str())];
        assert_eq!(
            scan_to("api.deepseek.test", "/v1/chat/completions", &f, &s),
            None
        );
        // A private key goes to no host in a header.
        let pem = "-----BEGIN OPENSSH PRIVATE KEY----- b3BlbnNzaC1rZXktdjEAAAAA";
        let f = [("authorization", pem)];
        assert_eq!(names(&scan_to("github.com", "/", &f, &s)), ["private-key"]);
        // A presigned URL's credential to a host that is not AWS's.
        let presigned = "/w.bin?X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20261128%2Fus-east-1%2Fs3%2Faws4_request";
        assert_eq!(
            names(&scan_to("files.example", presigned, &[], &s)),
            ["aws-key"]
        );
        assert_eq!(
            scan_to("s3.us-east-1.amazonaws.com", presigned, &[], &s),
            None
        );
        // What the block forwards, and detectors it does not run, are not looked for.
        let mut gateway = settings();
        gateway.forwarded_credentials = vec![Detector::AnthropicKey];
        assert_eq!(
            scan_to("gateway.ai.example", "/", &anthropic, &gateway),
            None
        );
        let mut pii = settings();
        pii.detectors = Detector::parse_set("pii").unwrap();
        assert_eq!(scan_to("gateway.ai.example", "/", &anthropic, &pii), None);
        // Found with another finding elsewhere in the head: both named, not redactable.
        let both = [anthropic[0], ("x-note", "pay 4111 1111 1111 1111")];
        let f = scan_to("gateway.ai.example", "/", &both, &s);
        assert_eq!(names(&f), ["card", "anthropic-key"]);
        assert_eq!(f.unwrap().redacted, None);
    }

    #[test]
    fn only_the_configured_detectors_report() {
        let mut only_cards = settings();
        only_cards.detectors = vec![Detector::Card];
        let f = scan_head(
            "x.test",
            b"/?k=AKIAIOSFODNN7EXAMPLE&c=4111111111111111",
            [],
            &only_cards,
        );
        assert_eq!(names(&f), ["card"]);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1000))]

        /// Arbitrary bytes anywhere in a head: never a panic, and redacted values only for
        /// fields that exist.
        #[test]
        fn never_panics(
            target in proptest::collection::vec(any::<u8>(), 0..200),
            fields in proptest::collection::vec(
                (proptest::collection::vec(any::<u8>(), 0..20),
                 proptest::collection::vec(any::<u8>(), 0..120)),
                0..8,
            ),
            redact_only_values in any::<bool>(),
        ) {
            let mut s = settings();
            if redact_only_values {
                s.credential_headers.clear();
                s.credential_query_parameters.clear();
            }
            let f = scan_head("x.test", &target, fields.iter().map(|(n, v)| (&n[..], &v[..])), &s);
            if let Some(HeadFindings { detectors, redacted: Some(r) }) = f {
                prop_assert!(!detectors.is_empty());
                for (i, _) in r {
                    prop_assert!(i < fields.len());
                }
            }
        }

        /// A key in any ordinary field value is found wherever it sits, and redacted.
        #[test]
        fn a_key_in_a_value_is_found(
            before in "[a-z =;]{0,20}",
            after in "[ ;,][a-z =;]{0,20}",
            name in "x-[a-z]{1,10}",
        ) {
            let value = format!("{before} {TOKEN}{after}");
            let f = scan_head("x.test", b"/", [(name.as_bytes(), value.as_bytes())], &settings());
            let f = f.expect("found");
            prop_assert!(f.detectors.contains(&Detector::GithubToken));
            let r = f.redacted.expect("redactable");
            prop_assert!(!String::from_utf8_lossy(&r[0].1).contains(TOKEN));
        }
    }
}
