//! Any bytes as a request head: an answer, never a panic; a parsed head never claims more
//! bytes than it was given. The head DLP scanner runs on every parsed head (credential
//! fields included, and left out but read for foreign keys) and on the raw bytes as a request target: never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use palisade_egress::head::{framing, parse_head};
use palisade_egress::head_dlp::scan_head;
use palisade_egress::DlpSettings;

fuzz_target!(|data: &[u8]| {
    let dlp = DlpSettings::all(Default::default());
    if let Ok((head, n)) = parse_head(data, 64 * 1024) {
        assert!(n <= data.len());
        let _ = framing(&head);
        let mut every_field = dlp.clone();
        every_field.credential_headers.clear();
        every_field.credential_query_parameters.clear();
        let fields = head.headers.iter().map(|(n, v)| (n.as_bytes(), *v));
        let _ = scan_head("example.test", head.target.as_bytes(), fields, &every_field);
        // Credential fields left out, read for foreign keys; the host from the input.
        let host = String::from_utf8_lossy(&data[..data.len().min(16)]);
        let fields = head.headers.iter().map(|(n, v)| (n.as_bytes(), *v));
        let _ = scan_head(&host, head.target.as_bytes(), fields, &dlp);
    }
    let _ = scan_head("example.test", data, [], &dlp);
});
