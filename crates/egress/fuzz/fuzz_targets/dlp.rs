//! Any body through every DLP detector and the redactor: never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use palisade_egress::dlp::{redact, scan, ALL};

fuzz_target!(|data: &[u8]| {
    let hits = scan(data, &ALL);
    let _ = redact(data, &hits);
});
