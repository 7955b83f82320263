//! Output filtering of response text as it streams: secrets and PII (the egress gateway's
//! DLP detectors) and canary tokens, with detections that span chunk boundaries.
//!
//! The scanner keeps the last [`HOLDBACK`] bytes of text back from the client until it has
//! seen what follows, so a secret split over two chunks is still found whole and can be
//! redacted before any of it leaves; it also keeps a little already-sent context so
//! patterns that need a key word before the secret still match.

use palisade_egress::dlp::{self, Detector};

/// Bytes held back from the client while more text may complete a match.
pub const HOLDBACK: usize = 256;
/// Bytes of already-sent text kept as context for the next scan.
const CONTEXT: usize = 64;
/// Pending text beyond which bytes are released even inside an unfinished match.
const MAX_PENDING: usize = 64 * 1024;

/// What to do about a finding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FilterAction {
    /// Stop the response.
    Block,
    /// Replace the match with `[REDACTED:<name>]`.
    Redact,
    /// Pass, mark in the event.
    Flag,
    /// Pass, record.
    Log,
}

/// The filters of one route for one response.
#[derive(Debug, Clone, Default)]
pub struct FilterSet {
    /// DLP detectors and what to do on each.
    pub detectors: Vec<(Detector, FilterAction)>,
    /// The canary injected into this request's system prompt, if any.
    pub canary: Option<(String, FilterAction)>,
}

impl FilterSet {
    /// Whether nothing is checked.
    pub fn is_empty(&self) -> bool {
        self.detectors.is_empty() && self.canary.is_none()
    }
}

/// One finding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilterHit {
    /// `canary` or the DLP detector's name.
    pub name: String,
    /// What was done.
    pub action: FilterAction,
}

/// What the scanner lets out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Release {
    /// Bytes to send now (possibly empty).
    Text(Vec<u8>),
    /// A blocking detection: send nothing more.
    Blocked(String),
}

/// Scans one stream of text.
#[derive(Debug)]
pub struct StreamScanner {
    filters: FilterSet,
    dlp: Vec<Detector>,
    /// Already released text kept as context (not sent again).
    context: Vec<u8>,
    pending: Vec<u8>,
    hits: Vec<FilterHit>,
    blocked: bool,
}

struct Found {
    name: String,
    action: FilterAction,
    start: usize,
    end: usize,
}

impl StreamScanner {
    /// A scanner for one response.
    pub fn new(filters: FilterSet) -> Self {
        let dlp = filters.detectors.iter().map(|(d, _)| *d).collect();
        StreamScanner {
            filters,
            dlp,
            context: Vec::new(),
            pending: Vec::new(),
            hits: Vec::new(),
            blocked: false,
        }
    }

    /// Findings so far.
    pub fn hits(&self) -> &[FilterHit] {
        &self.hits
    }

    /// Whether a blocking detection stopped the stream.
    pub fn blocked(&self) -> bool {
        self.blocked
    }

    /// Adds text; returns what can be sent now.
    pub fn push(&mut self, data: &[u8]) -> Release {
        self.pending.extend_from_slice(data);
        self.release(false)
    }

    /// End of the stream: everything still held back, filtered.
    pub fn finish(&mut self) -> Release {
        self.release(true)
    }

    fn find(&self, text: &[u8]) -> Vec<Found> {
        let mut found: Vec<Found> = dlp::scan(text, &self.dlp)
            .into_iter()
            .map(|h| Found {
                start: value_start(h.detector, text, h.start, h.end),
                name: h.detector.name().to_string(),
                action: self
                    .filters
                    .detectors
                    .iter()
                    .find(|(d, _)| *d == h.detector)
                    .map(|(_, a)| *a)
                    .unwrap_or(FilterAction::Log),
                end: h.end,
            })
            .collect();
        if let Some((canary, action)) = &self.filters.canary {
            let c = canary.as_bytes();
            let mut at = 0;
            while let Some(i) = find_bytes(&text[at..], c) {
                let (start, end) = (at + i, at + i + c.len());
                found.retain(|f| f.end <= start || f.start >= end);
                found.push(Found {
                    name: "canary".into(),
                    action: *action,
                    start,
                    end,
                });
                at = end;
            }
        }
        found.sort_by_key(|f| f.start);
        found
    }

    fn release(&mut self, last: bool) -> Release {
        if self.blocked {
            return Release::Blocked(String::new());
        }
        let ctx = self.context.len();
        let mut text = std::mem::take(&mut self.context);
        text.extend_from_slice(&self.pending);
        let found = self.find(&text);
        let mut boundary = if last || self.pending.len() > MAX_PENDING {
            text.len()
        } else {
            char_floor(&text, text.len().saturating_sub(HOLDBACK).max(ctx))
        };
        if !last && self.pending.len() <= MAX_PENDING {
            if let Some(f) = found
                .iter()
                .find(|f| f.end > boundary && f.start < boundary)
            {
                boundary = f.start.max(ctx);
            }
        }
        let mut out = Vec::with_capacity(boundary.saturating_sub(ctx));
        let mut at = ctx;
        for f in found.iter().filter(|f| f.end <= boundary && f.end > ctx) {
            self.hits.push(FilterHit {
                name: f.name.clone(),
                action: f.action,
            });
            match f.action {
                FilterAction::Block => {
                    self.blocked = true;
                    return Release::Blocked(f.name.clone());
                }
                FilterAction::Redact => {
                    let start = f.start.max(at);
                    out.extend_from_slice(&text[at..start]);
                    out.extend_from_slice(format!("[REDACTED:{}]", f.name).as_bytes());
                    at = f.end;
                }
                FilterAction::Flag | FilterAction::Log => {}
            }
        }
        if at < boundary {
            out.extend_from_slice(&text[at..boundary]);
        }
        self.pending = text.split_off(boundary.max(ctx));
        let keep = text.len().saturating_sub(CONTEXT);
        self.context = text.split_off(char_ceil(&text, keep));
        Release::Text(out)
    }
}

/// Where the secret of a hit starts. Detectors that need a key word before the secret
/// (`aws_secret_access_key = …`, `"password": "…"`) match the key word too; only the value
/// after it is redacted, so the key word stays readable and JSON text (tool-call
/// arguments) keeps its quotes and colons and stays JSON.
fn value_start(d: Detector, text: &[u8], start: usize, end: usize) -> usize {
    let m = &text[start..end];
    let sep = |b: &u8| matches!(b, b':' | b'=' | b'\'' | b'"') || b.is_ascii_whitespace();
    let at = match d {
        // The secret's characters are never separators: it starts after the last one.
        Detector::AwsKey if !(m.starts_with(b"AKIA") || m.starts_with(b"ASIA")) => {
            m.iter().rposition(sep).map(|i| i + 1)
        }
        // The value may hold `=`: it starts after the first `:`/`=` and the spaces and
        // quote after it.
        Detector::HighEntropy => m.iter().position(|b| matches!(b, b':' | b'=')).map(|i| {
            i + 1
                + m[i + 1..]
                    .iter()
                    .take_while(|b| sep(b) && !matches!(b, b':' | b'='))
                    .count()
        }),
        _ => None,
    };
    start + at.filter(|a| *a < m.len()).unwrap_or(0)
}

/// `text` filtered as one complete text (not a stream): the filtered text (or the name of
/// the blocking finding) and the findings.
pub fn scan_whole(filters: &FilterSet, text: &str) -> (Result<String, String>, Vec<FilterHit>) {
    let mut s = StreamScanner::new(filters.clone());
    let r = match (s.push(text.as_bytes()), s.finish()) {
        (Release::Blocked(n), _) | (_, Release::Blocked(n)) => Err(n),
        (Release::Text(mut a), Release::Text(b)) => {
            a.extend(b);
            Ok(String::from_utf8_lossy(&a).into_owned())
        }
    };
    (r, s.hits)
}

/// The largest index ≤ `i` that starts a UTF-8 character.
fn char_floor(b: &[u8], mut i: usize) -> usize {
    while i > 0 && i < b.len() && (b[i] & 0xC0) == 0x80 {
        i -= 1;
    }
    i
}

/// The smallest index ≥ `i` that starts a UTF-8 character.
fn char_ceil(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && (b[i] & 0xC0) == 0x80 {
        i += 1;
    }
    i
}

/// First position of `needle` in `hay`.
pub fn find_bytes(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || hay.len() < needle.len() {
        return None;
    }
    hay.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn secrets(action: FilterAction) -> FilterSet {
        FilterSet {
            detectors: Detector::parse_set("secrets")
                .unwrap()
                .into_iter()
                .map(|d| (d, action))
                .collect(),
            canary: Some(("pcn-7f3a9c1e5b2d4a60".into(), action)),
        }
    }

    fn run(s: &mut StreamScanner, parts: &[&str]) -> Result<String, String> {
        let mut out = Vec::new();
        for p in parts {
            match s.push(p.as_bytes()) {
                Release::Text(t) => out.extend(t),
                Release::Blocked(n) => return Err(n),
            }
        }
        match s.finish() {
            Release::Text(t) => out.extend(t),
            Release::Blocked(n) => return Err(n),
        }
        Ok(String::from_utf8(out).unwrap())
    }

    const KEY: &str = "sk-proj-Abcdefghijklmnopqrstuvwxyz0123456789";

    #[test]
    fn a_key_split_over_chunks_is_redacted_whole() {
        let mut s = StreamScanner::new(secrets(FilterAction::Redact));
        let parts = [
            "Here is the key: sk-pr",
            "oj-Abcdefghijklm",
            "nopqrstuvwxyz0123456789 ok",
        ];
        let out = run(&mut s, &parts).unwrap();
        assert_eq!(out, "Here is the key: [REDACTED:openai-key] ok");
        assert_eq!(s.hits()[0].name, "openai-key");
        assert!(!out.contains("sk-"));
    }

    #[test]
    fn a_canary_split_over_chunks_blocks() {
        let mut s = StreamScanner::new(secrets(FilterAction::Block));
        let r = run(
            &mut s,
            &["My instructions mention pcn-7f3a", "9c1e5b2d4a60 so"],
        );
        assert_eq!(r, Err("canary".into()));
        assert!(s.blocked());
    }

    #[test]
    fn text_is_released_once_past_the_holdback() {
        let mut s = StreamScanner::new(secrets(FilterAction::Redact));
        let long = "a".repeat(HOLDBACK + 100);
        match s.push(long.as_bytes()) {
            Release::Text(t) => assert_eq!(t.len(), 100),
            Release::Blocked(_) => panic!(),
        }
    }

    proptest! {
        #[test]
        fn any_split_gives_the_same_output(text in "[a-z :]{0,300}", cuts in proptest::collection::vec(0usize..400, 0..6)) {
            let full = format!("{text} {KEY} {text} pcn-7f3a9c1e5b2d4a60 end");
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(full.len())).collect();
            cuts.sort();
            let mut parts = Vec::new();
            let mut at = 0;
            for c in cuts { parts.push(&full[at..c]); at = c; }
            parts.push(&full[at..]);
            let mut s = StreamScanner::new(secrets(FilterAction::Redact));
            let out = run(&mut s, &parts).unwrap();
            prop_assert_eq!(out, format!("{text} [REDACTED:openai-key] {text} [REDACTED:canary] end"));
        }

        #[test]
        fn arbitrary_bytes_never_panic(chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..200), 0..8)) {
            let mut s = StreamScanner::new(secrets(FilterAction::Redact));
            let mut out = Vec::new();
            for c in &chunks {
                if let Release::Text(t) = s.push(c) { out.extend(t); }
            }
            if let Release::Text(t) = s.finish() { out.extend(t); }
            if s.hits().is_empty() {
                prop_assert_eq!(out, chunks.concat());
            }
        }
    }
}
