//! Backend streams: the SSE splitter and the streaming output filter never panic, and
//! whatever the split, a stream with no findings comes out unchanged.
#![no_main]

use libfuzzer_sys::fuzz_target;
use palisade_egress::dlp::Detector;
use palisade_ingress::filter::{FilterAction, FilterSet, Release, StreamScanner};
use palisade_ingress::sse::SseParser;

fuzz_target!(|data: &[u8]| {
    let cut = data.first().copied().unwrap_or(0) as usize % (data.len() + 1);
    let mut p = SseParser::new();
    let _ = p.push(&data[..cut]);
    let _ = p.push(&data[cut..]);

    let filters = FilterSet {
        detectors: Detector::parse_set("secrets")
            .unwrap_or_default()
            .into_iter()
            .map(|d| (d, FilterAction::Redact))
            .collect(),
        canary: Some(("pcn-0011223344556677".into(), FilterAction::Redact)),
    };
    let mut s = StreamScanner::new(filters);
    let mut out = Vec::new();
    for part in [&data[..cut], &data[cut..]] {
        if let Release::Text(t) = s.push(part) {
            out.extend(t);
        }
    }
    if let Release::Text(t) = s.finish() {
        out.extend(t);
    }
    if s.hits().is_empty() {
        assert_eq!(out, data);
    }
});
