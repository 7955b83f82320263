//! Any bytes as a request head: an answer, never a panic; a parsed head never claims more
//! bytes than it was given.
#![no_main]

use libfuzzer_sys::fuzz_target;
use palisade_egress::head::{framing, parse_head};

fuzz_target!(|data: &[u8]| {
    if let Ok((head, n)) = parse_head(data, 64 * 1024) {
        assert!(n <= data.len());
        let _ = framing(&head);
    }
});
