//! Property tests for the packet readers (the fuzz target in `fuzz/` runs the same calls
//! under libFuzzer): no input panics, and on well-formed queries the in-place reader and
//! the full parser agree.

use hickory_proto::op::{Message, MessageType, OpCode, Query};
use hickory_proto::rr::{Name, RecordType};
use palisade_dns::{decide, parse_query, wire, DenyRcode};
use proptest::prelude::*;

fn query(name: &str, qtype: u16) -> Option<Vec<u8>> {
    let mut m = Message::new(7, MessageType::Query, OpCode::Query);
    m.add_query(Query::query(
        Name::from_ascii(name).ok()?,
        RecordType::from(qtype),
    ));
    m.to_vec().ok()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn no_bytes_make_a_reader_panic(data in proptest::collection::vec(any::<u8>(), 0..600)) {
        if let Some(q) = wire::quick_query(&data) {
            let question = wire::question_bytes(&data, &q);
            let _ = wire::answers_question(&data, question);
            let _ = wire::name_features(&q.name);
        }
        let _ = decide(&data, |_| true, DenyRcode::NxDomain);
        let _ = (wire::rcode(&data), wire::answer_count(&data));
        let _ = wire::simple_answers(&data);
        let _ = palisade_dns::answers::quick_addresses(&data, "a.test");
    }

    #[test]
    fn quick_and_full_readers_agree(
        labels in proptest::collection::vec("[a-zA-Z0-9_-]{1,20}", 1..6),
        qtype in prop_oneof![Just(1u16), Just(28), Just(16), Just(65)],
    ) {
        let name = labels.join(".");
        if let Some(p) = query(&name, qtype) {
            let quick = wire::quick_query(&p).expect("an ordinary query");
            let full = parse_query(&p).expect("a valid query");
            prop_assert_eq!(&quick.name, &full.name);
            prop_assert_eq!(quick.qtype, u16::from(full.qtype));
            prop_assert_eq!(quick.question_end, p.len());
        }
    }

    #[test]
    fn mutated_queries_never_panic(pos in 0usize..64, byte in any::<u8>()) {
        let mut p = query("cdn.models.test", 1).unwrap();
        if pos < p.len() {
            p[pos] = byte;
        }
        let _ = wire::quick_query(&p);
        let _ = decide(&p, |_| true, DenyRcode::Refused);
    }
}
