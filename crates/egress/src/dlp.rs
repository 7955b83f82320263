//! Data-loss prevention on outbound bodies: secrets (cloud and SaaS tokens, private keys,
//! JWTs) and PII (emails, payment cards with a Luhn check, US SSNs, IBANs with their
//! checksum). Pure and synchronous, so the same detectors can be fuzzed and reused by the
//! ingress gateway's output filters.

use std::sync::OnceLock;

use regex::bytes::Regex;

/// One detector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Detector {
    /// AWS access key id (`AKIA…`/`ASIA…`) or a 40-character secret next to an AWS key word.
    AwsKey,
    /// GitHub tokens (`ghp_`, `gho_`, `ghu_`, `ghs_`, `ghr_`, `github_pat_`).
    GithubToken,
    /// GitLab personal access tokens (`glpat-`).
    GitlabToken,
    /// Slack tokens (`xoxb-`, `xoxp-`, …).
    SlackToken,
    /// OpenAI API keys (`sk-…`, `sk-proj-…`).
    OpenaiKey,
    /// Anthropic API keys (`sk-ant-…`).
    AnthropicKey,
    /// Hugging Face tokens (`hf_…`).
    HuggingfaceToken,
    /// PEM private keys.
    PrivateKey,
    /// JSON Web Tokens.
    Jwt,
    /// Email addresses.
    Email,
    /// Payment card numbers (13–19 digits passing the Luhn check, starting with an issuer
    /// prefix of a card network).
    Card,
    /// US social security numbers.
    Ssn,
    /// IBANs with a valid checksum.
    Iban,
    /// International phone numbers (`+` and 8–15 digits).
    Phone,
    /// A high-entropy value right after a key word (`secret`, `token`, `password`, …).
    HighEntropy,
}

/// Every detector, secrets first.
pub const ALL: [Detector; 15] = [
    Detector::AwsKey,
    Detector::GithubToken,
    Detector::GitlabToken,
    Detector::SlackToken,
    Detector::OpenaiKey,
    Detector::AnthropicKey,
    Detector::HuggingfaceToken,
    Detector::PrivateKey,
    Detector::Jwt,
    Detector::HighEntropy,
    Detector::Email,
    Detector::Card,
    Detector::Ssn,
    Detector::Iban,
    Detector::Phone,
];

impl Detector {
    /// The name used in configs and in events (`dlp.<name>`).
    pub fn name(self) -> &'static str {
        match self {
            Detector::AwsKey => "aws-key",
            Detector::GithubToken => "github-token",
            Detector::GitlabToken => "gitlab-token",
            Detector::SlackToken => "slack-token",
            Detector::OpenaiKey => "openai-key",
            Detector::AnthropicKey => "anthropic-key",
            Detector::HuggingfaceToken => "huggingface-token",
            Detector::PrivateKey => "private-key",
            Detector::Jwt => "jwt",
            Detector::Email => "email",
            Detector::Card => "card",
            Detector::Ssn => "ssn",
            Detector::Iban => "iban",
            Detector::Phone => "phone",
            Detector::HighEntropy => "high-entropy",
        }
    }

    /// Whether it finds secrets (else PII).
    pub fn is_secret(self) -> bool {
        !matches!(
            self,
            Detector::Email | Detector::Card | Detector::Ssn | Detector::Iban | Detector::Phone
        )
    }

    /// For a key that only one provider takes: the registrable domains of that provider's
    /// hosts (a host is one of them or under one). `Some(&[])`: no host takes it in a
    /// header (a private key). `None`: the shape says nothing about who takes it (an
    /// `sk-…` key is also the shape of many OpenAI-compatible providers' keys; a JWT or a
    /// PII value is no provider's credential).
    pub fn provider_domains(self) -> Option<&'static [&'static str]> {
        match self {
            Detector::AwsKey => Some(&["amazonaws.com", "amazonaws.com.cn", "api.aws"]),
            Detector::GithubToken => Some(&["github.com", "githubusercontent.com", "ghcr.io"]),
            Detector::GitlabToken => Some(&["gitlab.com"]),
            Detector::SlackToken => Some(&["slack.com"]),
            Detector::AnthropicKey => Some(&["anthropic.com"]),
            Detector::HuggingfaceToken => {
                Some(&["huggingface.co", "hf.co", "huggingface.cloud", "hf.space"])
            }
            Detector::PrivateKey => Some(&[]),
            _ => None,
        }
    }

    /// Whether `host` (a name, any case, a trailing dot allowed) is one of the provider's
    /// hosts ([`Detector::provider_domains`]); `false` for a detector with no provider.
    pub fn is_provider_host(self, host: &str) -> bool {
        let host = host.strip_suffix('.').unwrap_or(host).as_bytes();
        self.provider_domains().is_some_and(|domains| {
            domains.iter().any(|d| {
                let Some(cut) = host.len().checked_sub(d.len()) else {
                    return false;
                };
                host[cut..].eq_ignore_ascii_case(d.as_bytes())
                    && (cut == 0 || host[cut - 1] == b'.')
            })
        })
    }

    /// Detectors named by a config entry: one name, or `secrets` / `pii`.
    pub fn parse_set(name: &str) -> Option<Vec<Detector>> {
        match name {
            "secrets" => Some(ALL.into_iter().filter(|d| d.is_secret()).collect()),
            "pii" => Some(ALL.into_iter().filter(|d| !d.is_secret()).collect()),
            _ => ALL.into_iter().find(|d| d.name() == name).map(|d| vec![d]),
        }
    }

    fn pattern(self) -> &'static str {
        match self {
            Detector::AwsKey => {
                r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b|(?i:aws.{0,20}(?:secret|key).{0,5}[:=]\s*['\x22]?)[A-Za-z0-9/+]{40}\b"
            }
            Detector::GithubToken => {
                r"\b(?:gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{22,})"
            }
            Detector::GitlabToken => r"\bglpat-[A-Za-z0-9_-]{20,}",
            Detector::SlackToken => r"\bxox[abposr]-[A-Za-z0-9-]{10,}",
            Detector::OpenaiKey => r"\bsk-(?:proj-)?[A-Za-z0-9_-]{20,}",
            Detector::AnthropicKey => r"\bsk-ant-[A-Za-z0-9_-]{20,}",
            Detector::HuggingfaceToken => r"\bhf_[A-Za-z0-9]{30,}",
            Detector::PrivateKey => r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----",
            Detector::Jwt => r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}",
            Detector::Email => {
                r"\b[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9-]{1,63}(?:\.[A-Za-z0-9-]{1,63})*\.[A-Za-z]{2,24}\b"
            }
            Detector::Card => r"\b\d(?:[ -]?\d){12,18}\b",
            Detector::Ssn => r"\b\d{3}-\d{2}-\d{4}\b",
            Detector::Iban => r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,4})?\b",
            Detector::Phone => r"\+\d{1,3}(?:[ .-]?\(?\d{1,4}\)?){1,2}(?:[ .-]?\d{2,4}){2,4}\b",
            Detector::HighEntropy => {
                r"(?i:secret|token|api[_-]?key|passw(?:or)?d|credential)[a-z_-]{0,12}\x22?\s*[:=]\s*['\x22]?[A-Za-z0-9/+_=.-]{20,}"
            }
        }
    }

    /// Checks beyond the pattern (checksums, reserved numbers).
    fn valid(self, m: &[u8]) -> bool {
        match self {
            Detector::Card => luhn(m) && card_issuer(&digits(m)),
            Detector::Ssn => ssn(m),
            Detector::Iban => iban(m),
            Detector::OpenaiKey => !m.starts_with(b"sk-ant-"),
            Detector::Phone => (8..=15).contains(&digits(m).len()),
            Detector::HighEntropy => high_entropy(m),
            _ => true,
        }
    }
}

fn regexes() -> &'static [Regex] {
    static RE: OnceLock<Vec<Regex>> = OnceLock::new();
    RE.get_or_init(|| {
        ALL.iter()
            // The patterns are constants checked by the tests below.
            .map(|d| Regex::new(d.pattern()).unwrap_or_else(|_| Regex::new("$^").expect("trivial")))
            .collect()
    })
}

/// Whether any detector's pattern matches somewhere in `text`: one pass of one combined
/// automaton (a `RegexSet`), the cheap pre-filter before [`scan`] for text that is usually
/// clean (request heads). `false` means `scan` finds nothing, whichever detectors it runs.
pub fn maybe(text: &[u8]) -> bool {
    static SET: OnceLock<Option<regex::bytes::RegexSet>> = OnceLock::new();
    match SET.get_or_init(|| regex::bytes::RegexSet::new(ALL.iter().map(|d| d.pattern())).ok()) {
        Some(set) => set.is_match(text),
        // Never the case (the patterns are constants checked by the tests): scan everything.
        None => true,
    }
}

/// A finding: which detector, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hit {
    /// The detector.
    pub detector: Detector,
    /// Byte range in the scanned text.
    pub start: usize,
    /// End (exclusive).
    pub end: usize,
}

/// Every hit of `detectors` in `text`, in order, non-overlapping. Where valid matches of
/// several detectors overlap, one hit spans them all and names the earliest detector in
/// [`ALL`], so that redacting the hits leaves no part of any match in place.
pub fn scan(text: &[u8], detectors: &[Detector]) -> Vec<Hit> {
    let res = regexes();
    let mut found: Vec<(usize, Hit)> = Vec::new();
    for (i, d) in ALL.iter().enumerate() {
        if !detectors.contains(d) {
            continue;
        }
        for m in res[i].find_iter(text) {
            if d.valid(m.as_bytes()) {
                let hit = Hit {
                    detector: *d,
                    start: m.start(),
                    end: m.end(),
                };
                found.push((i, hit));
            }
        }
    }
    found.sort_by_key(|(rank, h)| (h.start, *rank));
    let mut hits: Vec<Hit> = Vec::with_capacity(found.len());
    let mut rank_of_last = usize::MAX;
    for (rank, h) in found {
        match hits.last_mut() {
            Some(last) if h.start < last.end => {
                last.end = last.end.max(h.end);
                if rank < rank_of_last {
                    last.detector = h.detector;
                    rank_of_last = rank;
                }
            }
            _ => {
                hits.push(h);
                rank_of_last = rank;
            }
        }
    }
    hits
}

/// `text` with every hit replaced by `[REDACTED:<name>]`.
pub fn redact(text: &[u8], hits: &[Hit]) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    let mut at = 0;
    for h in hits {
        if h.start < at || h.end > text.len() {
            continue;
        }
        out.extend_from_slice(&text[at..h.start]);
        out.extend_from_slice(b"[REDACTED:");
        out.extend_from_slice(h.detector.name().as_bytes());
        out.push(b']');
        at = h.end;
    }
    out.extend_from_slice(&text[at..]);
    out
}

fn digits(m: &[u8]) -> Vec<u32> {
    m.iter()
        .filter(|b| b.is_ascii_digit())
        .map(|b| u32::from(b - b'0'))
        .collect()
}

/// The Luhn check of a card number (separators ignored).
pub fn luhn(m: &[u8]) -> bool {
    let d = digits(m);
    if !(13..=19).contains(&d.len()) {
        return false;
    }
    let sum: u32 = d
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &x)| {
            if i % 2 == 1 {
                let y = x * 2;
                if y > 9 {
                    y - 9
                } else {
                    y
                }
            } else {
                x
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

/// Whether `d` (the number's digits) starts like a card of a payment network: Visa 4;
/// Mastercard 51–55 and 2221–2720; Mir 2200–2204; American Express 34, 37; Diners / Discover
/// / JCB / RuPay 30, 35, 36, 38, 39; Maestro, Discover, UnionPay, RuPay and others 50, 56–69;
/// UnionPay and RuPay 81, 82; Troy 9792; UATP 1, at 15 digits only. Other numbers that pass
/// the Luhn check are not cards: millisecond, microsecond and nanosecond Unix times (13, 16
/// and 19 digits starting with 1) and `yyyymmdd…` dates (starting with 20) among them.
fn card_issuer(d: &[u32]) -> bool {
    let prefix = |n: usize| d.iter().take(n).fold(0, |acc, &x| acc * 10 + x);
    match d.first() {
        Some(1) => d.len() == 15,
        Some(2) => matches!(prefix(4), 2200..=2204 | 2221..=2720),
        Some(3) => matches!(prefix(2), 30 | 34..=39),
        Some(4) => true,
        Some(5) => matches!(prefix(2), 50..=59),
        Some(6) => true,
        Some(8) => matches!(prefix(2), 81 | 82),
        Some(9) => prefix(4) == 9792,
        _ => false,
    }
}

/// The value after the key word has at least 3.5 bits of entropy per character.
fn high_entropy(m: &[u8]) -> bool {
    let start = m
        .iter()
        .rposition(|b| matches!(b, b':' | b'=' | b'\'' | b'"' | b' '))
        .map_or(0, |i| i + 1);
    let v = &m[start..];
    if v.len() < 20 {
        return false;
    }
    let mut counts = [0u32; 256];
    for &b in v {
        counts[usize::from(b)] += 1;
    }
    let n = v.len() as f64;
    let bits: f64 = counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = f64::from(c) / n;
            -p * p.log2()
        })
        .sum();
    bits >= 3.5
}

fn ssn(m: &[u8]) -> bool {
    let d = digits(m);
    if d.len() != 9 {
        return false;
    }
    let area = d[0] * 100 + d[1] * 10 + d[2];
    let group = d[3] * 10 + d[4];
    let serial = d[5] * 1000 + d[6] * 100 + d[7] * 10 + d[8];
    area != 0 && area != 666 && area < 900 && group != 0 && serial != 0
}

/// The ISO 13616 mod-97 check of an IBAN (spaces ignored).
pub fn iban(m: &[u8]) -> bool {
    let s: Vec<u8> = m.iter().copied().filter(|b| *b != b' ').collect();
    if !(15..=34).contains(&s.len()) {
        return false;
    }
    let (head, tail) = s.split_at(4);
    let mut rem: u32 = 0;
    for &b in tail.iter().chain(head) {
        let v = match b {
            b'0'..=b'9' => u32::from(b - b'0'),
            b'A'..=b'Z' => u32::from(b - b'A') + 10,
            _ => return false,
        };
        rem = if v >= 10 {
            (rem * 100 + v) % 97
        } else {
            (rem * 10 + v) % 97
        };
    }
    rem == 1
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn found(text: &str) -> Vec<&'static str> {
        scan(text.as_bytes(), &ALL)
            .into_iter()
            .map(|h| h.detector.name())
            .collect()
    }

    #[test]
    fn provider_hosts_are_the_domains_and_what_is_under_them() {
        let d = Detector::HuggingfaceToken;
        for host in [
            "huggingface.co",
            "HF.co.",
            "cdn-lfs.huggingface.co",
            "x.endpoints.huggingface.cloud",
        ] {
            assert!(d.is_provider_host(host), "{host}");
        }
        for host in [
            "evilhuggingface.co",
            "huggingface.co.evil.test",
            "co",
            "",
            ".",
            "hü.co",
            "ä",
        ] {
            assert!(!d.is_provider_host(host), "{host}");
        }
        assert!(!Detector::PrivateKey.is_provider_host("github.com"));
        assert!(!Detector::OpenaiKey.is_provider_host("api.openai.com"));
        assert_eq!(Detector::OpenaiKey.provider_domains(), None);
        assert_eq!(Detector::Card.provider_domains(), None);
    }

    #[test]
    fn every_pattern_compiles() {
        for d in ALL {
            assert!(Regex::new(d.pattern()).is_ok(), "{}", d.name());
        }
        assert!(regex::bytes::RegexSet::new(ALL.iter().map(|d| d.pattern())).is_ok());
    }

    #[test]
    fn secrets() {
        assert_eq!(found("id=AKIAIOSFODNN7EXAMPLE&x=1"), ["aws-key"]);
        assert_eq!(
            found("aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"),
            ["aws-key"]
        );
        assert_eq!(
            found("token ghp_0123456789abcdefghijABCDEFGHIJ012345"),
            ["github-token"]
        );
        assert_eq!(found("glpat-abcdefghij0123456789"), ["gitlab-token"]);
        assert_eq!(found("xoxb-1234567890-abcdefghij"), ["slack-token"]);
        assert_eq!(found("sk-proj-abcdefghijklmnopqrstuvwx"), ["openai-key"]);
        assert_eq!(
            found("sk-ant-api03-abcdefghijklmnopqrstuvwx"),
            ["anthropic-key"]
        );
        assert_eq!(
            found("hf_abcdefghijklmnopqrstuvwxyzABCDEF"),
            ["huggingface-token"]
        );
        assert_eq!(
            found("-----BEGIN RSA PRIVATE KEY-----\nMII"),
            ["private-key"]
        );
        assert_eq!(
            found("Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.abcdefghijk"),
            ["jwt"]
        );
        assert_eq!(
            found(r#"{"db_password": "Zx8#qL2vR9tY4mK7pW3nB6cF"}"#.replace('#', "Q").as_str()),
            ["high-entropy"]
        );
        assert!(
            found("token = aaaaaaaaaaaaaaaaaaaaaaaaaaaa").is_empty(),
            "low entropy"
        );
    }

    #[test]
    fn pii_with_checksums() {
        assert_eq!(found("mail bob@example.com now"), ["email"]);
        assert_eq!(found("card 4111 1111 1111 1111"), ["card"]);
        assert!(found("card 4111 1111 1111 1112").is_empty(), "Luhn fails");
        // Test numbers of other networks.
        for card in [
            "5555 5555 5555 4444",
            "2223 0031 2200 3222",
            "3782 822463 10005",
            "6011 1111 1111 1117",
            "3530 1113 3330 0000",
            "3056 9309 0259 04",
            "6200 0000 0000 0005",
        ] {
            assert_eq!(found(&format!("pay {card}")), ["card"], "{card}");
        }
        // Numbers that pass the Luhn check but no network issues: Unix times in
        // milliseconds, microseconds and nanoseconds, and a yyyymmddhhmmss date.
        for n in [
            "1764301851002",
            "1764301851000006",
            "1764301851000000002",
            "20261128035106",
            "7000000000000000003",
        ] {
            assert!(
                luhn(n.as_bytes()),
                "{n} must pass Luhn for this test to mean anything"
            );
            assert!(found(&format!("t={n}")).is_empty(), "{n}");
        }
        assert_eq!(found("ssn 123-45-6789"), ["ssn"]);
        assert!(found("ssn 000-45-6789").is_empty());
        assert_eq!(found("iban GB82 WEST 1234 5698 7654 32"), ["iban"]);
        assert!(
            found("iban GB83 WEST 1234 5698 7654 32").is_empty(),
            "checksum fails"
        );
        assert!(found("nothing to see, order 12345").is_empty());
        assert_eq!(found("call +44 20 7946 0958 today"), ["phone"]);
        assert!(found("version +1.2").is_empty());
    }

    #[test]
    fn redaction_replaces_each_hit() {
        let t = b"key AKIAIOSFODNN7EXAMPLE and bob@example.com.";
        let hits = scan(t, &ALL);
        assert_eq!(
            String::from_utf8(redact(t, &hits)).unwrap(),
            "key [REDACTED:aws-key] and [REDACTED:email]."
        );
    }

    #[test]
    fn overlapping_matches_are_redacted_whole() {
        // The key id alone is an `aws-key` match, and the whole value after `token=` a
        // `high-entropy` one: redacting only the first would leave the secret after the dot.
        let t = b"token=AKIAIOSFODNN7EXAMPLE.wJalrXUtnFEMI/K7MDENG/bPxRfiCY and more";
        let hits = scan(t, &ALL);
        assert_eq!(
            String::from_utf8(redact(t, &hits)).unwrap(),
            "[REDACTED:aws-key] and more"
        );
    }

    #[test]
    fn sets_by_name() {
        assert_eq!(Detector::parse_set("card"), Some(vec![Detector::Card]));
        assert_eq!(Detector::parse_set("pii").unwrap().len(), 5);
        assert_eq!(Detector::parse_set("secrets").unwrap().len(), 10);
        assert_eq!(Detector::parse_set("nope"), None);
    }

    /// Every valid match of every detector, as byte ranges.
    fn every_valid_match(text: &[u8]) -> Vec<(Detector, usize, usize)> {
        let res = regexes();
        let mut all = Vec::new();
        for (i, d) in ALL.iter().enumerate() {
            for m in res[i].find_iter(text) {
                if d.valid(m.as_bytes()) {
                    all.push((*d, m.start(), m.end()));
                }
            }
        }
        all
    }

    const PIECES: &[&str] = &[
        "AKIAIOSFODNN7EXAMPLE",
        "ghp_0123456789abcdefghijABCDEFGHIJ012345",
        "glpat-0123456789abcdefghij",
        "xoxb-0123456789-abcdef",
        "sk-proj-0123456789abcdefghij",
        "hf_0123456789abcdefghijABCDEFGHIJ",
        "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJlLXZhbHVl",
        "bob",
        "@example.com",
        "4111 1111 1111 1111",
        "4111111111111111",
        "078-05-1120",
        "GB82 WEST 1234 5698 7654 32",
        "+44 20 7946 0958",
        "token=",
        "api_key: ",
        "Zx8qL2vR9tY4mK7pW3nB6cF1aa",
        "aws secret key=",
        "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        " ",
        "-",
        "_",
        ".",
        "=",
        "0",
        "x",
    ];

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(3000))]
        /// Redaction leaves no part of any valid match in place: where matches of two
        /// detectors overlap, the one reported covers both.
        #[test]
        fn redaction_covers_every_valid_match(
            picks in proptest::collection::vec(0..PIECES.len(), 1..8)
        ) {
            let text: String = picks.iter().map(|&i| PIECES[i]).collect();
            let t = text.as_bytes();
            let hits = scan(t, &ALL);
            for w in hits.windows(2) {
                prop_assert!(w[0].end <= w[1].start, "{text:?}: overlapping hits {hits:?}");
            }
            for (d, start, end) in every_valid_match(t) {
                let covered = (start..end).all(|b| hits.iter().any(|h| h.start <= b && b < h.end));
                prop_assert!(covered, "{text:?}: {d:?} {start}..{end} left in place by {hits:?}");
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(500))]
        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let hits = scan(&bytes, &ALL);
            let _ = redact(&bytes, &hits);
            // The pre-filter never rules out text that has a hit.
            prop_assert!(hits.is_empty() || maybe(&bytes));
        }
    }
}
