//! Any bytes as the start of a transparent connection: an answer, never a panic; a
//! parsed server name is a lower-case host name.
#![no_main]

use libfuzzer_sys::fuzz_target;
use palisade_egress::sni::{parse_client_hello, ClientHello};

fuzz_target!(|data: &[u8]| {
    if let ClientHello::Parsed {
        server_name: Some(name),
    } = parse_client_hello(data)
    {
        assert!(!name.is_empty() && name.len() <= 253);
        assert!(!name.bytes().any(|b| b.is_ascii_uppercase()));
    }
});
