//! Backend SSE responses through the whole output filter (chat and Responses-API events,
//! secrets redacted, canary blocking): never a panic, and the split of the bytes into
//! network chunks never changes what the client gets nor where the stream is cut.
#![no_main]

use libfuzzer_sys::fuzz_target;
use palisade_egress::dlp::Detector;
use palisade_ingress::filter::{FilterAction, FilterSet};
use palisade_ingress::sse_filter::SseFilter;

fn filters() -> FilterSet {
    FilterSet {
        detectors: ["secrets", "pii"]
            .into_iter()
            .flat_map(|s| Detector::parse_set(s).unwrap_or_default())
            .map(|d| (d, FilterAction::Redact))
            .collect(),
        canary: Some(("pcn-0011223344556677".into(), FilterAction::Block)),
    }
}

fn run(parts: &[&[u8]]) -> (Vec<u8>, Option<String>) {
    let mut f = SseFilter::new(filters());
    let mut out = Vec::new();
    for p in parts {
        match f.push(p) {
            Ok(b) => out.extend(b),
            Err(e) => return (out, Some(e)),
        }
    }
    match f.finish() {
        Ok(b) => out.extend(b),
        Err(e) => return (out, Some(e)),
    }
    (out, None)
}

fuzz_target!(|data: &[u8]| {
    let (a, b) = (
        data.first().copied().unwrap_or(0) as usize,
        data.get(1).copied().unwrap_or(0) as usize,
    );
    let (x, y) = (a % (data.len() + 1), b % (data.len() + 1));
    let (x, y) = (x.min(y), x.max(y));
    let whole = run(&[data]);
    let split = run(&[&data[..x], &data[x..y], &data[y..]]);
    assert_eq!(whole.1, split.1);
    if whole.1.is_none() {
        assert_eq!(whole.0, split.0);
    }
});
