//! The addresses an upstream answer gives for the question's name.
//!
//! Only records reachable from the question name count: the name itself, then the targets
//! of CNAME records found in the same answer, link by link. Records for unrelated names an
//! upstream may add are ignored, so a response cannot open addresses for a name the client
//! did not ask about. Only A and AAAA records of class IN count, the authority and
//! additional sections never do, and a question name no pattern can match
//! ([`crate::names::matchable`]) gets no addresses at all. TTLs are read as RFC 2181 §8
//! says (a value with the top bit set is 0) and capped at [`MAX_TTL`].

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};
use std::hash::Hash;
use std::net::IpAddr;

use hickory_proto::op::Message;
use hickory_proto::rr::{DNSClass, RData};

use crate::decide::normalise;
use crate::names::{matchable, name_text};

/// Longest CNAME chain followed.
const MAX_CHAIN: usize = 16;

/// Answer records an event lists (then one `+N more` line): whoever answers for an allowed
/// domain may send thousands (a 64 KiB TCP answer holds about 4,000 A records), and the
/// event queue holds 65,536 events.
pub const MAX_EVENT_RECORDS: usize = 64;

/// The event's text of the records `texts` gives, at most [`MAX_EVENT_RECORDS`] of `total`.
fn event_records(total: usize, texts: impl Iterator<Item = String>) -> Vec<String> {
    let mut out: Vec<String> = texts.take(MAX_EVENT_RECORDS).collect();
    if total > out.len() {
        out.push(format!("+{} more", total - out.len()));
    }
    out
}

/// Longest TTL an address is kept open for, in seconds (one day, as hickory's and
/// Unbound's caches cap it): an upstream cannot open an address for decades.
pub const MAX_TTL: u32 = 86_400;

/// A record's TTL as an address is kept: top bit set means 0 (RFC 2181 §8), at most
/// [`MAX_TTL`].
pub fn effective_ttl(ttl: u32) -> u32 {
    if ttl >= 1 << 31 {
        0
    } else {
        ttl.min(MAX_TTL)
    }
}

/// Whether an address from an answer may be opened for a pod: not one inside the node or
/// the cluster, which whoever answers for an allowed domain must not be able to reach
/// through it: those [`palisade_policy::cidr::is_node_internal`] names (loopback,
/// link-local and the metadata service, multicast, ...), and addresses `is_pod` says belong to a pod (reached by
/// pod rules, never by name, as Cilium's toFQDNs never selects endpoints). Private ranges
/// stay openable: services outside the cluster often live there.
pub fn may_open(ip: IpAddr, is_pod: impl Fn(IpAddr) -> bool) -> bool {
    let ip = palisade_policy::cidr::reached_address(ip);
    !palisade_policy::cidr::is_node_internal(ip) && !is_pod(ip)
}

/// One address from an answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// The name the client asked for (normalised), not the CNAME target.
    pub name: String,
    /// The address.
    pub ip: IpAddr,
    /// Seconds it may be used: the smallest TTL along the chain that led to it.
    pub ttl: u32,
}

/// What an upstream response says.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AnswerSummary {
    /// Addresses for the question name, in answer order, without duplicates.
    pub addresses: Vec<Resolved>,
    /// Every answer record as text (`name TTL TYPE data`), for the event.
    pub records: Vec<String>,
    /// The smallest TTL among the answer records.
    pub min_ttl: Option<u32>,
}

/// An answer record reduced to what the chain logic needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimpleRecord {
    /// Owner name as it appeared (with the trailing dot).
    pub owner: String,
    /// TTL.
    pub ttl: u32,
    /// What the record says.
    pub data: SimpleData,
}

/// Record data the proxy acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SimpleData {
    /// An address (A or AAAA).
    Addr(IpAddr),
    /// A CNAME target (with the trailing dot).
    Alias(String),
    /// Anything else (kept only as text).
    Other,
}

/// Extracts the addresses for `question` (normalised) from a parsed response.
pub fn addresses(msg: &Message, question: &str) -> AnswerSummary {
    let records = event_records(
        msg.answers.len(),
        msg.answers
            .iter()
            .map(|r| format!("{} {} {} {}", r.name, r.ttl, r.record_type(), r.data)),
    );
    let simple: Vec<SimpleRecord> = msg
        .answers
        .iter()
        .map(|r| SimpleRecord {
            owner: name_text(r.name.iter()),
            ttl: r.ttl,
            data: match &r.data {
                // Only class IN records say where a name is on the Internet.
                _ if r.dns_class != DNSClass::IN => SimpleData::Other,
                RData::A(a) => SimpleData::Addr(IpAddr::V4(a.0)),
                RData::AAAA(a) => SimpleData::Addr(IpAddr::V6(a.0)),
                RData::CNAME(t) => SimpleData::Alias(name_text(t.0.iter())),
                _ => SimpleData::Other,
            },
        })
        .collect();
    summarise(&simple, records, question)
}

/// Like [`addresses`], straight from the wire, for responses whose answers are only A,
/// AAAA and CNAME records with plain names (the common case); `None` for anything else, which
/// the caller hands to the full parser. Both give the same summary.
pub fn quick_addresses(resp: &[u8], question: &str) -> Option<AnswerSummary> {
    let simple = crate::wire::simple_answers(resp)?;
    let records = event_records(
        simple.len(),
        simple.iter().map(|r| match &r.data {
            SimpleData::Addr(IpAddr::V4(ip)) => format!("{} {} A {ip}", r.owner, r.ttl),
            SimpleData::Addr(IpAddr::V6(ip)) => format!("{} {} AAAA {ip}", r.owner, r.ttl),
            SimpleData::Alias(t) => format!("{} {} CNAME {t}", r.owner, r.ttl),
            SimpleData::Other => String::new(),
        }),
    );
    Some(summarise(&simple, records, question))
}

/// Keys looked up by scanning before a map is built: most answers hold a few addresses.
const SCAN_BELOW: usize = 8;

/// `(key, ttl)` pairs without duplicate keys, in the order each key first appears, with the
/// largest TTL given for it. Linear: a short list is scanned, a longer one indexed by a
/// hash map (one lookup per pair), so an answer with thousands of addresses costs
/// thousands of steps, not millions.
fn merge_by_key<K: Hash + Eq + Copy>(pairs: impl IntoIterator<Item = (K, u32)>) -> Vec<(K, u32)> {
    let mut out: Vec<(K, u32)> = Vec::new();
    let mut index: Option<HashMap<K, usize>> = None;
    for (key, ttl) in pairs {
        let at = match &mut index {
            Some(map) => match map.entry(key) {
                Entry::Occupied(e) => Some(*e.get()),
                Entry::Vacant(v) => {
                    v.insert(out.len());
                    None
                }
            },
            None => out.iter().position(|(k, _)| *k == key),
        };
        match at {
            Some(i) => out[i].1 = out[i].1.max(ttl),
            None => out.push((key, ttl)),
        }
        if index.is_none() && out.len() >= SCAN_BELOW {
            index = Some(out.iter().enumerate().map(|(i, (k, _))| (*k, i)).collect());
        }
    }
    out
}

fn summarise(answers: &[SimpleRecord], records: Vec<String>, question: &str) -> AnswerSummary {
    let min_ttl = answers.iter().map(|r| r.ttl).min();
    if !matchable(question) {
        // No FQDN set may be opened by a name no pattern can mean.
        return AnswerSummary {
            addresses: Vec::new(),
            records,
            min_ttl,
        };
    }
    // Names reachable from the question, with the smallest TTL on the way to each.
    let mut reach: Vec<(String, u32)> = vec![(question.to_string(), u32::MAX)];
    let mut seen: HashSet<String> = reach.iter().map(|(n, _)| n.clone()).collect();
    let mut i = 0;
    while i < reach.len() && reach.len() <= MAX_CHAIN {
        let (name, ttl) = reach[i].clone();
        for r in answers {
            if let SimpleData::Alias(target) = &r.data {
                if normalise(&r.owner) == name {
                    let t = normalise(target);
                    if seen.insert(t.clone()) {
                        reach.push((t, ttl.min(effective_ttl(r.ttl))));
                    }
                }
            }
        }
        i += 1;
    }

    let found = answers.iter().filter_map(|r| {
        let SimpleData::Addr(ip) = r.data else {
            return None;
        };
        let owner = normalise(&r.owner);
        let (_, chain_ttl) = reach.iter().find(|(n, _)| *n == owner)?;
        Some((ip, effective_ttl(r.ttl).min(*chain_ttl)))
    });
    let addresses = merge_by_key(found)
        .into_iter()
        .map(|(ip, ttl)| Resolved {
            name: question.to_string(),
            ip,
            ttl,
        })
        .collect();
    AnswerSummary {
        addresses,
        records,
        min_ttl,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::op::{MessageType, OpCode, Query};
    use hickory_proto::rr::rdata::{A, AAAA, CNAME, TXT};
    use hickory_proto::rr::{Name, Record, RecordType};

    fn name(s: &str) -> Name {
        Name::from_ascii(s).unwrap()
    }

    fn response(q: &str, answers: Vec<Record>) -> Message {
        let mut m = Message::new(1, MessageType::Response, OpCode::Query);
        m.add_query(Query::query(name(q), RecordType::A));
        m.add_answers(answers);
        // Through the wire and back, as the proxy sees it.
        Message::from_vec(&m.to_vec().unwrap()).unwrap()
    }

    fn a(owner: &str, ttl: u32, ip: [u8; 4]) -> Record {
        Record::from_rdata(
            name(owner),
            ttl,
            RData::A(A::new(ip[0], ip[1], ip[2], ip[3])),
        )
    }

    fn cname(owner: &str, ttl: u32, target: &str) -> Record {
        Record::from_rdata(name(owner), ttl, RData::CNAME(CNAME(name(target))))
    }

    fn ips(s: &AnswerSummary) -> Vec<(String, u32)> {
        s.addresses
            .iter()
            .map(|r| (r.ip.to_string(), r.ttl))
            .collect()
    }

    #[test]
    fn direct_a_and_aaaa() {
        let six = Record::from_rdata(
            name("cdn.models.test."),
            60,
            RData::AAAA(AAAA("2001:db8::1".parse().unwrap())),
        );
        let m = response(
            "cdn.models.test.",
            vec![a("CDN.models.test.", 300, [192, 0, 2, 1]), six],
        );
        let s = addresses(&m, "cdn.models.test");
        assert_eq!(
            ips(&s),
            vec![("192.0.2.1".into(), 300), ("2001:db8::1".into(), 60)]
        );
        assert!(s.addresses.iter().all(|r| r.name == "cdn.models.test"));
        assert_eq!(s.min_ttl, Some(60));
        assert_eq!(s.records.len(), 2);
        assert!(s.records[0].contains("192.0.2.1"), "{:?}", s.records);
    }

    #[test]
    fn follows_cname_chains_with_the_smallest_ttl() {
        let m = response(
            "cdn.models.test.",
            vec![
                cname("cdn.models.test.", 100, "edge.cdn.example."),
                cname("edge.cdn.example.", 30, "node7.cdn.example."),
                a("node7.cdn.example.", 300, [198, 51, 100, 7]),
            ],
        );
        let s = addresses(&m, "cdn.models.test");
        assert_eq!(ips(&s), vec![("198.51.100.7".into(), 30)]);
        assert_eq!(s.addresses[0].name, "cdn.models.test");
    }

    #[test]
    fn unrelated_records_are_ignored() {
        let m = response(
            "cdn.models.test.",
            vec![
                a("cdn.models.test.", 60, [192, 0, 2, 1]),
                a("bank.example.", 60, [203, 0, 113, 9]),
                cname("other.example.", 60, "cdn.models.test."),
                Record::from_rdata(
                    name("cdn.models.test."),
                    60,
                    RData::TXT(TXT::new(vec!["hi".into()])),
                ),
            ],
        );
        let s = addresses(&m, "cdn.models.test");
        assert_eq!(ips(&s), vec![("192.0.2.1".into(), 60)]);
        assert_eq!(s.records.len(), 4);
    }

    #[test]
    fn cname_loops_terminate() {
        let m = response(
            "a.test.",
            vec![
                cname("a.test.", 60, "b.test."),
                cname("b.test.", 60, "a.test."),
                a("b.test.", 60, [192, 0, 2, 2]),
            ],
        );
        let s = addresses(&m, "a.test");
        assert_eq!(ips(&s), vec![("192.0.2.2".into(), 60)]);
    }

    #[test]
    fn the_wire_reader_agrees_with_the_full_parser() {
        let six = Record::from_rdata(
            name("CDN.models.test."),
            60,
            RData::AAAA(AAAA("2001:db8::1".parse().unwrap())),
        );
        let mut m = Message::new(1, MessageType::Response, OpCode::Query);
        m.add_query(Query::query(name("cdn.models.test."), RecordType::A));
        m.add_answers(vec![
            cname("cdn.models.test.", 100, "edge.cdn.example."),
            a("edge.cdn.example.", 30, [198, 51, 100, 7]),
            six,
        ]);
        let wire = m.to_vec().unwrap();
        let full = addresses(&Message::from_vec(&wire).unwrap(), "cdn.models.test");
        let quick = quick_addresses(&wire, "cdn.models.test").expect("simple answers");
        assert_eq!(quick, full);
        // A TXT answer is left to the full parser.
        let mut t = Message::new(1, MessageType::Response, OpCode::Query);
        t.add_query(Query::query(name("a.test."), RecordType::TXT));
        t.add_answer(Record::from_rdata(
            name("a.test."),
            60,
            RData::TXT(TXT::new(vec!["hi".into()])),
        ));
        assert!(quick_addresses(&t.to_vec().unwrap(), "a.test").is_none());
    }

    #[test]
    fn ttls_are_read_as_rfc_2181_says_and_capped() {
        let m = response(
            "a.test.",
            vec![
                a("a.test.", u32::MAX, [192, 0, 2, 1]),
                a("a.test.", 10_000_000, [192, 0, 2, 2]),
                a("a.test.", 0, [192, 0, 2, 3]),
            ],
        );
        let s = addresses(&m, "a.test");
        assert_eq!(
            ips(&s),
            vec![
                ("192.0.2.1".into(), 0),
                ("192.0.2.2".into(), MAX_TTL),
                ("192.0.2.3".into(), 0)
            ]
        );
        assert_eq!(
            quick_addresses(&m.to_vec().unwrap(), "a.test").unwrap(),
            s,
            "both readers agree"
        );
    }

    #[test]
    fn other_classes_and_unmatchable_questions_give_no_addresses() {
        let mut chaos = a("a.test.", 60, [192, 0, 2, 1]);
        chaos.dns_class = DNSClass::CH;
        let m = response("a.test.", vec![chaos, a("a.test.", 60, [192, 0, 2, 2])]);
        assert_eq!(
            ips(&addresses(&m, "a.test")),
            vec![("192.0.2.2".into(), 60)]
        );
        assert!(quick_addresses(&m.to_vec().unwrap(), "a.test").is_none());
        let m = response("a.test.", vec![a("a.test.", 60, [192, 0, 2, 2])]);
        let s = addresses(&m, "evil\\.a.test");
        assert!(s.addresses.is_empty());
        assert_eq!(s.records.len(), 1, "still logged");
    }

    #[test]
    fn addresses_inside_are_never_opened() {
        let pod: IpAddr = "10.0.0.7".parse().unwrap();
        let is_pod = |ip: IpAddr| ip == pod;
        for inside in [
            "0.0.0.0",
            "0.1.2.3",
            "127.0.0.53",
            "169.254.169.254",
            "224.0.0.1",
            "255.255.255.255",
            "10.0.0.7",
            "::",
            "::1",
            "fe80::1",
            "febf::1",
            "ff02::1",
            "::ffff:169.254.169.254",
            "::ffff:10.0.0.7",
            "64:ff9b::a9fe:a9fe",
            // The local-use NAT64 prefix (RFC 8215) in the /48 format, and as a /96.
            "64:ff9b:1:a00:0:700::",
            "64:ff9b:1:a9fe:a9:fe00::",
            "64:ff9b:1::a00:7",
        ] {
            assert!(!may_open(inside.parse().unwrap(), is_pod), "{inside}");
        }
        for outside in [
            "10.0.0.8",
            "192.0.2.10",
            "100.64.0.1",
            "64:ff9b::c000:20a",
            "64:ff9b:1:c000:2:a00::",
            "2001:db8::1",
            "fec0::1",
        ] {
            assert!(may_open(outside.parse().unwrap(), is_pod), "{outside}");
        }
    }

    /// An answer with thousands of records made an event holding every one of them as text
    /// (about 280 KiB for a 64 KiB TCP answer; the event queue holds 65,536 events): on the
    /// old code `records` had all 300 here. Events now list the first 64 and a count.
    #[test]
    fn events_list_a_bounded_number_of_records() {
        let many: Vec<Record> = (0..300u32)
            .map(|i| {
                a(
                    "a.test.",
                    60,
                    [192, 0, (i / 256) as u8 + 2, (i % 256) as u8],
                )
            })
            .collect();
        let m = response("a.test.", many);
        let s = addresses(&m, "a.test");
        assert_eq!(s.records.len(), MAX_EVENT_RECORDS + 1);
        assert_eq!(s.records.last().map(String::as_str), Some("+236 more"));
        assert_eq!(s.addresses.len(), 300, "every address is still read");
        assert_eq!(quick_addresses(&m.to_vec().unwrap(), "a.test").unwrap(), s);
    }

    /// A key that counts its comparisons.
    #[derive(Debug, Clone, Copy)]
    struct Counted(u32);

    impl std::hash::Hash for Counted {
        fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
            self.0.hash(state);
        }
    }

    thread_local! {
        static COMPARED: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
    }

    impl PartialEq for Counted {
        fn eq(&self, other: &Self) -> bool {
            COMPARED.with(|c| c.set(c.get() + 1));
            self.0 == other.0
        }
    }
    impl Eq for Counted {}

    /// Deduplicating the addresses of a huge answer compared each with every one kept
    /// before it: 3,000 addresses (a 64 KiB TCP answer holds about 4,000) took ~4.5
    /// million comparisons (~3.6 ms). The merge now makes about one per address: the
    /// bound below is 10 per pair, where the old scan made about 1,500 on average here.
    #[test]
    fn merging_addresses_is_linear() {
        let n = 3_000u32;
        // Every address twice, the second time with a larger TTL, then once more.
        let pairs = (0..n)
            .map(|i| (Counted(i), 10))
            .chain((0..n).map(|i| (Counted(i), 20)))
            .chain((0..n).rev().map(|i| (Counted(i), 5)));
        COMPARED.with(|c| c.set(0));
        let merged = merge_by_key(pairs);
        let compared = COMPARED.with(|c| c.get());
        assert!(
            compared <= 10 * 3 * u64::from(n),
            "{compared} comparisons for {} pairs",
            3 * n
        );
        assert_eq!(merged.len(), n as usize);
        assert!(merged
            .iter()
            .enumerate()
            .all(|(i, (k, ttl))| k.0 == i as u32 && *ttl == 20));
        // Short lists keep order and the largest TTL too.
        let small = merge_by_key([(Counted(2), 5), (Counted(1), 7), (Counted(2), 9)]);
        assert_eq!(
            small.iter().map(|(k, t)| (k.0, *t)).collect::<Vec<_>>(),
            vec![(2, 9), (1, 7)]
        );
    }

    #[test]
    fn empty_answer() {
        let s = addresses(&response("a.test.", vec![]), "a.test");
        assert_eq!(s, AnswerSummary::default());
    }
}
