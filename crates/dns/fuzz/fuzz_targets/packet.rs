//! Every client packet goes through the in-place reader and, when it declines, the full
//! parser; an upstream answer goes through the question check and the address extraction.
//! None of it may panic on any bytes.
//!
//! `cargo fuzz run packet -s none` (from crates/dns).
#![no_main]

use libfuzzer_sys::fuzz_target;
use palisade_dns::{addresses, decide, wire, DenyRcode};

fuzz_target!(|data: &[u8]| {
    if let Some(q) = wire::quick_query(data) {
        let question = wire::question_bytes(data, &q);
        let _ = wire::answers_question(data, question);
        let _ = wire::error_reply(q.id, [0, 0], question, 2);
        let _ = wire::name_features(&q.name);
    }
    let _ = wire::plain_question_end(data);
    let _ = palisade_dns::mixed_case::echoes_exactly(data, b"\x03cdn\x00\x00\x01\x00\x01");
    let mut copy = data.to_vec();
    palisade_dns::mixed_case::mix_case(&mut copy, || 0x5555_5555_5555_5555);
    if let Ok(q) = palisade_dns::parse_query(data) {
        let _ = palisade_dns::names::matchable(&q.name);
    }
    let _ = decide(data, |q| q.name.len() % 2 == 0, DenyRcode::Refused);
    let _ = (wire::rcode(data), wire::answer_count(data));
    let _ = palisade_dns::answers::quick_addresses(data, "cdn.models.test");
    if let Ok(m) = hickory_proto::op::Message::from_vec(data) {
        let _ = addresses(&m, "cdn.models.test");
    }
});
