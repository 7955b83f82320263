//! Any body through every DLP detector, the redactor and the decoded readings (percent,
//! JSON escapes, base64): never a panic, never a reading longer than the body.
#![no_main]

use libfuzzer_sys::fuzz_target;
use palisade_egress::decoded::{hidden_hits, readings};
use palisade_egress::dlp::{redact, scan, ALL};

fuzz_target!(|data: &[u8]| {
    let hits = scan(data, &ALL);
    let _ = redact(data, &hits);
    for r in readings(data) {
        assert!(r.len() <= data.len() + 1);
    }
    let _ = hidden_hits(data, &ALL);
});
