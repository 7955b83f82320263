//! What to do with one packet from a client: forward it, answer it ourselves, or drop it.
//!
//! Pure and synchronous, so it can be fed arbitrary bytes in tests: nothing here panics on
//! any input.

use hickory_proto::op::{Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::RecordType;

/// Size of a DNS header.
const HEADER_LEN: usize = 12;

/// The question of a well-formed query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Question {
    /// Message id.
    pub id: u16,
    /// The name asked for: lowercase ASCII (punycode), no trailing dot, bytes other than
    /// letters, digits, '-' and '_' escaped ([`crate::names::name_text`]); empty for the
    /// root.
    pub name: String,
    /// Record type, e.g. `A`, `AAAA`, `TXT`.
    pub qtype: RecordType,
}

/// How a query for a name the policy does not allow is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DenyRcode {
    /// `REFUSED`: the resolver will not answer (default; clients do not cache it).
    #[default]
    Refused,
    /// `NXDOMAIN`: the name does not exist.
    NxDomain,
}

impl DenyRcode {
    /// The response code sent.
    pub fn rcode(self) -> ResponseCode {
        match self {
            DenyRcode::Refused => ResponseCode::Refused,
            DenyRcode::NxDomain => ResponseCode::NXDomain,
        }
    }
}

/// What to do with a packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Send the packet to the upstream unchanged and relay its answer.
    Forward(Question),
    /// Answer the client with `bytes` and do not ask the upstream.
    Reply {
        /// The question, when the packet had a readable one.
        question: Option<Question>,
        /// The response code in `bytes`.
        rcode: ResponseCode,
        /// The wire-format answer.
        bytes: Vec<u8>,
    },
    /// Not a DNS query (or a response sent to us): ignore it.
    Drop,
}

/// Why a packet is not a query we can forward.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Malformed {
    /// Answer with this response code (FORMERR, NOTIMP) and the given bytes.
    Reply(ResponseCode, Vec<u8>),
    /// Drop silently: too short, or a response rather than a query.
    Drop,
}

/// Reads the single question of a standard query.
pub fn parse_query(packet: &[u8]) -> Result<Question, Malformed> {
    if packet.len() < HEADER_LEN {
        return Err(Malformed::Drop);
    }
    let id = u16::from_be_bytes([packet[0], packet[1]]);
    let flags = packet[2];
    if flags & 0x80 != 0 {
        // A response: never answer one, or two servers could bounce packets forever.
        return Err(Malformed::Drop);
    }
    let op_code = OpCode::from_u8((flags >> 3) & 0x0f);
    let rd = flags & 0x01 != 0;
    let error = |rcode| {
        let mut m = Message::error_msg(id, op_code, rcode);
        m.metadata.recursion_desired = rd;
        m.metadata.recursion_available = true;
        match m.to_vec() {
            Ok(bytes) => Malformed::Reply(rcode, bytes),
            Err(_) => Malformed::Drop,
        }
    };
    if op_code != OpCode::Query {
        return Err(error(ResponseCode::NotImp));
    }
    if crate::wire::plain_question_end(packet).is_none() {
        // Cut short, or a compression pointer in the question: the proxy and the upstream
        // could read different names (the pointer may reach the id the proxy rewrites).
        return Err(error(ResponseCode::FormErr));
    }
    let Ok(msg) = Message::from_vec(packet) else {
        return Err(error(ResponseCode::FormErr));
    };
    let [query] = msg.queries.as_slice() else {
        return Err(error(ResponseCode::FormErr));
    };
    if msg.metadata.message_type != MessageType::Query {
        return Err(Malformed::Drop);
    }
    Ok(Question {
        id,
        name: crate::names::name_text(query.name.iter()),
        qtype: query.query_type,
    })
}

/// Lowercase, without the trailing dot.
pub fn normalise(name: &str) -> String {
    let lower = name.to_ascii_lowercase();
    match lower.strip_suffix('.') {
        Some(s) => s.to_string(),
        None => lower,
    }
}

/// An answer to `packet` (a parsed query) with `rcode`, echoing its question and no records.
pub fn reply_with(packet: &[u8], rcode: ResponseCode) -> Option<Vec<u8>> {
    let query = Message::from_vec(packet).ok()?;
    let mut m = Message::error_msg(query.metadata.id, query.metadata.op_code, rcode);
    m.metadata.recursion_desired = query.metadata.recursion_desired;
    m.metadata.recursion_available = true;
    m.metadata.checking_disabled = query.metadata.checking_disabled;
    m.queries = query.queries;
    m.to_vec().ok()
}

/// Decides what to do with a packet; `allowed` says whether the asking client may resolve a
/// (normalised) name.
pub fn decide(packet: &[u8], allowed: impl FnOnce(&Question) -> bool, deny: DenyRcode) -> Decision {
    let question = match parse_query(packet) {
        Ok(q) => q,
        Err(Malformed::Drop) => return Decision::Drop,
        Err(Malformed::Reply(rcode, bytes)) => {
            return Decision::Reply {
                question: None,
                rcode,
                bytes,
            }
        }
    };
    if crate::wire::is_zone_transfer(u16::from(question.qtype)) {
        // A zone transfer lists every name of a zone, not just the one asked: never passed
        // on, whatever the policy.
        return match reply_with(packet, ResponseCode::Refused) {
            Some(bytes) => Decision::Reply {
                question: Some(question),
                rcode: ResponseCode::Refused,
                bytes,
            },
            None => Decision::Drop,
        };
    }
    if allowed(&question) {
        return Decision::Forward(question);
    }
    let rcode = deny.rcode();
    match reply_with(packet, rcode) {
        Some(bytes) => Decision::Reply {
            question: Some(question),
            rcode,
            bytes,
        },
        None => Decision::Drop,
    }
}

/// The response code as DNS tools print it: `NOERROR`, `NXDOMAIN`, `REFUSED`, …
pub fn rcode_name(rcode: ResponseCode) -> String {
    match rcode {
        ResponseCode::NoError => "NOERROR".into(),
        ResponseCode::FormErr => "FORMERR".into(),
        ResponseCode::ServFail => "SERVFAIL".into(),
        ResponseCode::NXDomain => "NXDOMAIN".into(),
        ResponseCode::NotImp => "NOTIMP".into(),
        ResponseCode::Refused => "REFUSED".into(),
        // 16 is BADSIG only in TSIG records, which the proxy never handles; in a
        // response's header and OPT record it is BADVERS (RFC 6891).
        ResponseCode::BADSIG => "BADVERS".into(),
        ResponseCode::BADCOOKIE => "BADCOOKIE".into(),
        other => format!("RCODE{}", u16::from(other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::op::Query;
    use hickory_proto::rr::Name;

    fn query(name: &str, qtype: RecordType) -> Vec<u8> {
        let mut m = Message::new(0x1234, MessageType::Query, OpCode::Query);
        m.metadata.recursion_desired = true;
        m.add_query(Query::query(Name::from_ascii(name).unwrap(), qtype));
        m.to_vec().unwrap()
    }

    #[test]
    fn allowed_queries_are_forwarded_with_a_normalised_name() {
        let p = query("CDN.Models.Test.", RecordType::AAAA);
        let mut seen = None;
        let d = decide(
            &p,
            |q| {
                seen = Some(q.name.clone());
                true
            },
            DenyRcode::Refused,
        );
        let want = Question {
            id: 0x1234,
            name: "cdn.models.test".into(),
            qtype: RecordType::AAAA,
        };
        assert_eq!(d, Decision::Forward(want));
        assert_eq!(seen.as_deref(), Some("cdn.models.test"));
    }

    #[test]
    fn denied_queries_get_refused_or_nxdomain_with_the_question() {
        let p = query("evil.test", RecordType::A);
        for (mode, rcode) in [
            (DenyRcode::Refused, ResponseCode::Refused),
            (DenyRcode::NxDomain, ResponseCode::NXDomain),
        ] {
            let Decision::Reply {
                bytes,
                rcode: got,
                question,
            } = decide(&p, |_| false, mode)
            else {
                panic!("expected a reply");
            };
            assert_eq!(got, rcode);
            assert_eq!(question.unwrap().name, "evil.test");
            let m = Message::from_vec(&bytes).unwrap();
            assert_eq!(m.metadata.id, 0x1234);
            assert_eq!(m.metadata.message_type, MessageType::Response);
            assert_eq!(m.metadata.response_code, rcode);
            assert!(m.metadata.recursion_desired);
            assert!(m.answers.is_empty());
            assert_eq!(m.queries.len(), 1);
            assert_eq!(m.queries[0].name.to_ascii(), "evil.test.");
        }
    }

    #[test]
    fn bad_bodies_get_formerr_and_garbage_is_dropped() {
        // Header says one question, body is cut short.
        let mut p = query("cdn.models.test", RecordType::A);
        p.truncate(HEADER_LEN + 4);
        let Decision::Reply { rcode, bytes, .. } = decide(&p, |_| true, DenyRcode::Refused) else {
            panic!("expected FORMERR");
        };
        assert_eq!(rcode, ResponseCode::FormErr);
        let m = Message::from_vec(&bytes).unwrap();
        assert_eq!(
            (m.metadata.id, m.metadata.response_code),
            (0x1234, ResponseCode::FormErr)
        );

        // No question at all.
        let empty = Message::new(7, MessageType::Query, OpCode::Query)
            .to_vec()
            .unwrap();
        assert!(matches!(
            decide(&empty, |_| true, DenyRcode::Refused),
            Decision::Reply {
                rcode: ResponseCode::FormErr,
                ..
            }
        ));
        // Too short for a header, and responses, are dropped.
        assert_eq!(
            decide(b"hello", |_| true, DenyRcode::Refused),
            Decision::Drop
        );
        let mut resp = query("cdn.models.test", RecordType::A);
        resp[2] |= 0x80;
        assert_eq!(decide(&resp, |_| true, DenyRcode::Refused), Decision::Drop);
    }

    #[test]
    fn other_opcodes_are_not_implemented() {
        let mut p = query("cdn.models.test", RecordType::A);
        p[2] = (p[2] & !0x78) | (u8::from(OpCode::Update) << 3);
        assert!(matches!(
            decide(&p, |_| true, DenyRcode::Refused),
            Decision::Reply {
                rcode: ResponseCode::NotImp,
                ..
            }
        ));
    }

    #[test]
    fn rcode_names() {
        assert_eq!(rcode_name(ResponseCode::Refused), "REFUSED");
        assert_eq!(rcode_name(ResponseCode::NXDomain), "NXDOMAIN");
        assert_eq!(rcode_name(ResponseCode::NoError), "NOERROR");
        assert_eq!(rcode_name(ResponseCode::NotZone), "RCODE10");
    }

    /// Random and mutated packets never panic, and every reply we produce is itself a
    /// readable DNS response.
    #[test]
    fn no_panic_on_random_or_mutated_packets() {
        let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let seeds = [
            query("cdn.models.test", RecordType::A),
            query("a.b.c.d.e.example", RecordType::TXT),
            query(".", RecordType::NS),
        ];
        let mut replies = 0;
        for i in 0..20_000 {
            let packet: Vec<u8> = if i % 2 == 0 {
                let len = (next() % 80) as usize;
                (0..len).map(|_| next() as u8).collect()
            } else {
                let mut p = seeds[i % seeds.len()].clone();
                for _ in 0..(1 + next() % 4) {
                    let at = (next() as usize) % p.len();
                    p[at] = next() as u8;
                }
                if next() % 4 == 0 {
                    p.truncate((next() as usize) % (p.len() + 1));
                }
                p
            };
            let allow = next() % 2 == 0;
            if let Decision::Reply { bytes, .. } = decide(&packet, |_| allow, DenyRcode::Refused) {
                let m = Message::from_vec(&bytes).expect("our replies parse");
                assert_eq!(m.metadata.message_type, MessageType::Response);
                replies += 1;
            }
        }
        assert!(
            replies > 100,
            "the mutations reached the reply paths ({replies})"
        );
    }
}
