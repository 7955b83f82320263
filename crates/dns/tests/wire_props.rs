//! Property tests for the packet readers (the fuzz target in `fuzz/` runs the same calls
//! under libFuzzer): no input panics, and on well-formed queries the in-place reader and
//! the full parser agree.

use hickory_proto::op::{Message, MessageType, OpCode, Query};
use hickory_proto::rr::{Name, RecordType};
use palisade_dns::names::{matchable, name_text};
use palisade_dns::{decide, parse_query, wire, DenyRcode};
use palisade_policy::fqdn::FqdnPattern;
use proptest::prelude::*;

/// A query whose one question has the raw `labels`.
fn raw_query(labels: &[Vec<u8>], qtype: u16) -> Vec<u8> {
    let mut p = vec![0, 7, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0];
    for l in labels {
        p.push(l.len() as u8);
        p.extend_from_slice(l);
    }
    p.push(0);
    p.extend_from_slice(&qtype.to_be_bytes());
    p.extend_from_slice(&1u16.to_be_bytes());
    p
}

/// Labels of 1 to 12 bytes drawn mostly from bytes that matter to patterns: letters of
/// `models` and `test`, '.', '*', '-', '\\', a space, a UTF-8 lead byte.
fn tricky_labels() -> impl Strategy<Value = Vec<Vec<u8>>> {
    let byte = prop_oneof![
        8 => proptest::sample::select(b"modelstMT".to_vec()),
        2 => proptest::sample::select(b".*-_\\ \xc3".to_vec()),
        1 => any::<u8>(),
    ];
    proptest::collection::vec(proptest::collection::vec(byte, 1..12), 1..6)
}

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
        let _ = palisade_dns::mixed_case::echoes_exactly(&data, b"\x01a\x00\x00\x01\x00\x01");
        let mut copy = data.clone();
        palisade_dns::mixed_case::mix_case(&mut copy, || 0x5555);
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

    /// The bypass property: a name text that patterns may match splits back into exactly
    /// the wire labels, so a pattern that matches it matches the name the upstream resolves;
    /// and the full parser, the in-place reader and `name_text` give the same text.
    #[test]
    fn name_texts_split_back_into_the_wire_labels(
        mut labels in tricky_labels(),
        suffix in any::<bool>(),
    ) {
        if suffix {
            labels.push(b"models".to_vec());
            labels.push(b"test".to_vec());
        }
        let p = raw_query(&labels, 1);
        let text = name_text(labels.iter().map(|l| l.as_slice()));
        let plain = labels.iter().all(|l| l.iter().all(|&b| palisade_dns::names::plain_byte(b)));
        prop_assert_eq!(matchable(&text), plain, "{}", text);
        if let Ok(q) = parse_query(&p) {
            prop_assert_eq!(&q.name, &text);
        }
        if let Some(q) = wire::quick_query(&p) {
            prop_assert!(plain);
            prop_assert_eq!(&q.name, &text);
        }
        if matchable(&text) {
            let lower: Vec<String> = labels
                .iter()
                .map(|l| String::from_utf8_lossy(l).to_ascii_lowercase())
                .collect();
            prop_assert_eq!(text.split('.').map(String::from).collect::<Vec<_>>(), lower.clone());
            for pat in ["**.models.test", "*.models.test", "m*.test"] {
                if FqdnPattern::parse(pat).unwrap().matches(&text) {
                    let n = lower.len();
                    prop_assert!(n >= 2 && lower[n - 1] == "test", "{} ~ {}", pat, text);
                }
            }
        } else {
            // Decided as the root: no pattern can match it.
            for pat in ["**.models.test", "*.models.test", "m*.test", "*.test"] {
                let hit = FqdnPattern::parse(pat).unwrap().matches("");
                prop_assert!(!hit);
            }
        }
    }

    /// A compression pointer (or reserved label type) anywhere in the question makes the
    /// query FORMERR, never forwarded.
    #[test]
    fn pointers_in_the_question_are_formerr(
        labels in proptest::collection::vec("[a-z]{1,8}", 0..4),
        at in 0usize..5,
        kind in prop_oneof![Just(0xc0u8), Just(0x40), Just(0x80)],
        low in any::<u8>(),
    ) {
        let mut p = vec![0, 9, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0];
        let at = at.min(labels.len());
        for (i, l) in labels.iter().enumerate() {
            if i == at {
                break;
            }
            p.push(l.len() as u8);
            p.extend_from_slice(l.as_bytes());
        }
        p.extend_from_slice(&[kind | (low & 0x3f), low, 0, 0, 1, 0, 1]);
        prop_assert!(wire::plain_question_end(&p).is_none());
        prop_assert!(wire::quick_query(&p).is_none());
        let d = decide(&p, |_| true, DenyRcode::Refused);
        let formerr = matches!(
            d,
            palisade_dns::Decision::Reply {
                rcode: hickory_proto::op::ResponseCode::FormErr,
                ..
            }
        );
        prop_assert!(formerr, "{:?}", d);
    }

    /// 0x20 mixing changes only the case of the name's letters: the in-place reader reads
    /// the same name, the type and class stay, and the result echoes itself exactly.
    #[test]
    fn mixed_case_questions_read_the_same(
        labels in proptest::collection::vec("[a-zA-Z0-9_-]{1,20}", 1..6),
        qtype in any::<u16>(),
        seed in any::<u64>(),
    ) {
        let labels: Vec<Vec<u8>> = labels.into_iter().map(String::into_bytes).collect();
        let p = raw_query(&labels, qtype);
        let mut mixed = p.clone();
        let mut x = seed | 1;
        palisade_dns::mixed_case::mix_case(&mut mixed[wire::HEADER_LEN..], || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        });
        prop_assert!(mixed.eq_ignore_ascii_case(&p));
        prop_assert_eq!(&mixed[mixed.len() - 4..], &p[p.len() - 4..]);
        let (a, b) = (wire::quick_query(&p), wire::quick_query(&mixed));
        prop_assert_eq!(a.map(|q| q.name), b.map(|q| q.name));
        let mut resp = mixed.clone();
        resp[2] |= 0x80;
        prop_assert!(palisade_dns::mixed_case::echoes_exactly(&resp, &mixed[wire::HEADER_LEN..]));
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

/// Owner and target names of the generated answers: the question, names under it and
/// beside it, in any case.
const NAMES: [&str; 5] = [
    "a.models.test.",
    "A.Models.TEST.",
    "edge.cdn.test.",
    "x.edge.cdn.test.",
    "bank.test.",
];

/// One generated answer record: owner index, then an address or a CNAME target index.
#[derive(Debug, Clone)]
enum Gen {
    A(usize, [u8; 4], u32),
    Cname(usize, usize, u32),
    Txt(usize),
}

fn gen_records() -> impl Strategy<Value = Vec<Gen>> {
    let one = prop_oneof![
        4 => (0..NAMES.len(), any::<[u8; 4]>(), any::<u32>()).prop_map(|(o, ip, t)| Gen::A(o, ip, t)),
        3 => (0..NAMES.len(), 0..NAMES.len(), 0u32..1000).prop_map(|(o, t, ttl)| Gen::Cname(o, t, ttl)),
        1 => (0..NAMES.len()).prop_map(Gen::Txt),
    ];
    proptest::collection::vec(one, 0..10)
}

/// A response to `a.models.test A` with `records` in the answer section (hickory compresses
/// the names).
fn answer_wire(records: &[Gen]) -> Vec<u8> {
    use hickory_proto::rr::rdata::{A, CNAME, TXT};
    use hickory_proto::rr::{RData, Record};
    let n = |i: usize| Name::from_ascii(NAMES[i]).unwrap();
    let mut m = Message::new(9, MessageType::Response, OpCode::Query);
    m.add_query(Query::query(n(0), RecordType::A));
    for r in records {
        m.add_answer(match r {
            Gen::A(o, ip, ttl) => Record::from_rdata(
                n(*o),
                *ttl,
                RData::A(A::from(std::net::Ipv4Addr::from(*ip))),
            ),
            Gen::Cname(o, t, ttl) => Record::from_rdata(n(*o), *ttl, RData::CNAME(CNAME(n(*t)))),
            Gen::Txt(o) => Record::from_rdata(n(*o), 5, RData::TXT(TXT::new(vec!["x".into()]))),
        });
    }
    m.to_vec().unwrap()
}

/// Names reachable from the question through the generated CNAMEs (by lowercase index).
fn reachable(records: &[Gen]) -> Vec<String> {
    let low = |i: usize| NAMES[i].to_ascii_lowercase();
    let mut reach = vec![low(0)];
    let mut i = 0;
    while i < reach.len() {
        for r in records {
            if let Gen::Cname(o, t, _) = r {
                if low(*o) == reach[i] && !reach.contains(&low(*t)) {
                    reach.push(low(*t));
                }
            }
        }
        i += 1;
    }
    reach
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    /// The in-place answer reader and hickory give the same addresses, and every address
    /// opened is one an A record of a name reachable from the question gave.
    #[test]
    fn answer_readers_agree_and_open_only_reachable_names(records in gen_records()) {
        let wire = answer_wire(&records);
        let full = palisade_dns::addresses(&Message::from_vec(&wire).unwrap(), "a.models.test");
        if let Some(quick) = palisade_dns::answers::quick_addresses(&wire, "a.models.test") {
            prop_assert_eq!(&quick, &full);
        }
        let reach = reachable(&records);
        for got in &full.addresses {
            prop_assert_eq!(got.name.as_str(), "a.models.test");
            let from_reachable = records.iter().any(|r| matches!(r,
                Gen::A(o, ip, _) if std::net::IpAddr::from(*ip) == got.ip
                    && reach.contains(&NAMES[*o].to_ascii_lowercase())));
            prop_assert!(from_reachable, "{} opened from {:?}", got.ip, records);
        }
        for r in &records {
            if let Gen::A(o, ip, _) = r {
                if reach.contains(&NAMES[*o].to_ascii_lowercase()) {
                    prop_assert!(full.addresses.iter().any(|g| g.ip == std::net::IpAddr::from(*ip)));
                }
            }
        }
    }

    /// On a mutated or cut response the in-place reader never panics, and it never opens
    /// an address the full parser would not (when it reads anything, hickory agrees).
    #[test]
    fn mutated_answers_open_nothing_the_full_parser_would_not(
        records in gen_records(),
        edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..4),
        cut in proptest::option::of(any::<usize>()),
    ) {
        let mut wire = answer_wire(&records);
        for (at, b) in edits {
            let at = at % wire.len();
            wire[at] = b;
        }
        if let Some(c) = cut {
            wire.truncate(c % (wire.len() + 1));
        }
        if let Some(quick) = palisade_dns::answers::quick_addresses(&wire, "a.models.test") {
            if quick.addresses.is_empty() {
                return Ok(());
            }
            let full = Message::from_vec(&wire)
                .map(|m| palisade_dns::addresses(&m, "a.models.test").addresses);
            prop_assert_eq!(Ok(quick.addresses), full.map_err(|e| e.to_string()));
        }
    }
}
