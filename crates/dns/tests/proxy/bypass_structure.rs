//! Bypass attempts through the message and the transport: compression pointers in the
//! question, zone transfers, missing or extra questions, other opcodes, responses sent as
//! queries, cut and over-long messages, TCP framing, and IPv4 clients of a dual-stack
//! listener.

use super::*;
use crate::crafted::*;

/// A compression pointer in the question (here into the header) lets the proxy read one
/// name and, once it has rewritten the id, the upstream another. On the old code the proxy
/// read `cdn.models.test` (allowed) and the upstream got whatever the new random id spelt.
/// A question has nothing earlier to point to: FORMERR, nothing forwarded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compressed_question_names_are_formerr() {
    let (upstream, seen) = crafted_upstream(answer_everything()).await;
    let (proxy, answers, _events) = proxy_before(upstream, Posture::Allow).await;
    // id 0x00 0x07: at offset 0 the proxy reads the root name.
    let mut p = vec![0x00, 0x07, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    p.extend_from_slice(b"\x03cdn\x06models\x04test\xc0\x00\x00\x01\x00\x01");
    for tcp in [false, true] {
        let reply = if tcp {
            ask_tcp(proxy, &p).await
        } else {
            ask_udp("127.0.0.1", proxy, &p).await
        };
        let reply = reply.expect("an answer");
        assert_eq!(
            (reply.metadata.id, reply.metadata.response_code),
            (7, ResponseCode::FormErr),
            "tcp={tcp}"
        );
    }
    // A pointer into the question itself (a loop) and a forward pointer: FORMERR too.
    for name in [&b"\x01a\xc0\x0c"[..], b"\xc0\x12\x00\x01\x00\x01\x01a\x00"] {
        let mut p = vec![0x00, 0x08, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        p.extend_from_slice(name);
        p.extend_from_slice(b"\x00\x01\x00\x01");
        let reply = ask_udp("127.0.0.1", proxy, &p).await.expect("an answer");
        assert_eq!(reply.metadata.response_code, ResponseCode::FormErr);
    }
    assert!(
        seen.lock().unwrap().names.is_empty(),
        "{:?}",
        seen.lock().unwrap().names
    );
    assert!(answers.lock().unwrap().is_empty());
}

/// A zone transfer answers every name of a zone, not the one asked: refused (over TCP and
/// UDP), never forwarded, and logged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zone_transfers_are_refused() {
    let transfer: Responder = Arc::new(|q: &Message| {
        let secret = Name::from_ascii("secret.corp.test.").unwrap();
        vec![response(q, vec![a(&secret, 300, [10, 9, 9, 9])])]
    });
    let (upstream, seen) = crafted_upstream(transfer).await;
    let (proxy, answers, events) = proxy_before(upstream, Posture::Allow).await;
    for (qtype, tcp) in [(252u16, true), (251, true), (252, false)] {
        let q = raw_query(30, &[b"cdn", b"models", b"test"], qtype);
        let reply = if tcp {
            ask_tcp(proxy, &q).await
        } else {
            ask_udp("127.0.0.1", proxy, &q).await
        };
        let reply = reply.expect("an answer");
        assert_eq!(
            reply.metadata.response_code,
            ResponseCode::Refused,
            "{qtype}"
        );
        assert!(reply.answers.is_empty());
    }
    assert!(seen.lock().unwrap().names.is_empty());
    assert!(answers.lock().unwrap().is_empty());
    let evs = dns_events(&events);
    assert_eq!(evs.len(), 3);
    let mut qtypes: Vec<&str> = evs
        .iter()
        .filter_map(|e| dns_body(e).qtype.as_deref())
        .collect();
    qtypes.sort_unstable();
    assert_eq!(qtypes, vec!["AXFR", "AXFR", "IXFR"]);
    assert!(evs.iter().all(|e| e.verdict == Some(Verdict::Deny)));
}

/// Structure the proxy must not pass on: no question, two questions (an allowed one
/// hiding a denied one), a response sent as a query, other opcodes, a cut message. None
/// reaches the upstream; each gets FORMERR / NOTIMP or is dropped. (Found safe; a guard.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_and_unusual_messages_are_not_forwarded() {
    let (upstream, seen) = crafted_upstream(answer_everything()).await;
    let (proxy, answers, _events) = proxy_before(upstream, Posture::Allow).await;
    let mut two = Message::new(1, MessageType::Query, OpCode::Query);
    two.add_query(Query::query(
        Name::from_ascii("cdn.models.test.").unwrap(),
        RecordType::A,
    ));
    two.add_query(Query::query(
        Name::from_ascii("evil.test.").unwrap(),
        RecordType::A,
    ));
    let none = Message::new(2, MessageType::Query, OpCode::Query);
    let mut notify = Message::from_vec(&query(3, "cdn.models.test")).unwrap();
    notify.metadata.op_code = OpCode::Notify;
    let mut update = Message::from_vec(&query(4, "cdn.models.test")).unwrap();
    update.metadata.op_code = OpCode::Update;
    let mut cut = query(5, "cdn.models.test");
    cut.truncate(cut.len() - 2);
    // 256 octets on the wire: one more than a name may have.
    let long: Vec<Vec<u8>> = vec![
        vec![b'a'; 63],
        vec![b'b'; 63],
        vec![b'c'; 63],
        vec![b'd'; 50],
    ];
    let mut too_long: Vec<&[u8]> = long.iter().map(|l| l.as_slice()).collect();
    too_long.extend([&b"models"[..], b"test"]);
    let cases: Vec<(Vec<u8>, Option<ResponseCode>)> = vec![
        (two.to_vec().unwrap(), Some(ResponseCode::FormErr)),
        (none.to_vec().unwrap(), Some(ResponseCode::FormErr)),
        (notify.to_vec().unwrap(), Some(ResponseCode::NotImp)),
        (update.to_vec().unwrap(), Some(ResponseCode::NotImp)),
        (cut, Some(ResponseCode::FormErr)),
        (raw_query(6, &too_long, 1), Some(ResponseCode::FormErr)),
        (response(&two, vec![]), None),
    ];
    for (i, (p, want)) in cases.iter().enumerate() {
        for tcp in [false, true] {
            let got = if tcp {
                ask_tcp(proxy, p).await
            } else {
                ask_udp("127.0.0.1", proxy, p).await
            };
            assert_eq!(
                got.map(|m| m.metadata.response_code),
                *want,
                "case {i} tcp={tcp}"
            );
        }
    }
    assert!(
        seen.lock().unwrap().names.is_empty(),
        "{:?}",
        seen.lock().unwrap().names
    );
    assert!(answers.lock().unwrap().is_empty());
    // The longest name there may be (255 octets) is an ordinary query.
    too_long[3] = &long[3][..49];
    let reply = ask_udp("127.0.0.1", proxy, &raw_query(7, &too_long, 1))
        .await
        .expect("an answer");
    assert_eq!(a_records(&reply), vec!["192.0.2.99"]);
    assert_eq!(answers.lock().unwrap()[0].1.name.len(), 253);
}

/// TCP framing: queries pipelined in one write are answered in order; an empty frame ends
/// the connection without an answer. (Found safe; a guard.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_pipelining_and_empty_frames() {
    let (upstream, _) = crafted_upstream(answer_everything()).await;
    let (proxy, _answers, _events) = proxy_before(upstream, Posture::Allow).await;
    let mut c = TcpStream::connect(proxy).await.unwrap();
    let mut out = Vec::new();
    for (id, name) in [
        (70u16, "a.models.test"),
        (71, "evil.test"),
        (72, "b.models.test"),
    ] {
        let q = query(id, name);
        out.extend_from_slice(&u16::try_from(q.len()).unwrap().to_be_bytes());
        out.extend_from_slice(&q);
    }
    out.extend_from_slice(&[0, 0]);
    c.write_all(&out).await.unwrap();
    let mut got = Vec::new();
    for _ in 0..3 {
        let len = c.read_u16().await.unwrap();
        let mut buf = vec![0u8; usize::from(len)];
        c.read_exact(&mut buf).await.unwrap();
        let m = Message::from_vec(&buf).unwrap();
        got.push((m.metadata.id, m.metadata.response_code));
    }
    assert_eq!(
        got,
        vec![
            (70, ResponseCode::NoError),
            (71, ResponseCode::Refused),
            (72, ResponseCode::NoError)
        ]
    );
    let mut rest = Vec::new();
    let n = tokio::time::timeout(Duration::from_secs(2), c.read_to_end(&mut rest))
        .await
        .expect("closed")
        .unwrap();
    assert_eq!(n, 0, "nothing answers the empty frame");
}

/// On a dual-stack listener (`[::]`), an IPv4 pod's queries arrive from `::ffff:a.b.c.d`.
/// That address must be read as the pod's IPv4 address: on the old code it was no pod, so
/// under the default posture the trainer resolved `evil.test`, and its answers were
/// recorded under an address no kernel element names.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipv4_clients_of_a_dual_stack_listener_are_still_their_pod() {
    let (upstream, seen) = crafted_upstream(answer_everything()).await;
    let mut cfg = ProxyConfig::new("[::]:0".parse().unwrap(), upstream);
    cfg.timeout = Duration::from_millis(400);
    let (addr, answers, events) = match crafted::bind(cfg, engine(Posture::Allow)).await {
        Ok(p) => p,
        Err(e) => {
            eprintln!("no IPv6 here ({e}); skipping");
            return;
        }
    };
    let port = addr.port();
    let to: SocketAddr = ([127, 0, 0, 1], port).into();
    let Some(reply) = ask_udp("127.0.0.1", to, &query(90, "evil.test")).await else {
        eprintln!("the [::] listener does not take IPv4 here (bindv6only); skipping");
        return;
    };
    assert_eq!(reply.metadata.response_code, ResponseCode::Refused, "udp");
    let reply = ask_tcp(to, &query(91, "evil.test"))
        .await
        .expect("an answer");
    assert_eq!(reply.metadata.response_code, ResponseCode::Refused, "tcp");
    assert!(seen.lock().unwrap().names.is_empty());
    let reply = ask_udp("127.0.0.1", to, &query(92, "cdn.models.test"))
        .await
        .expect("an answer");
    assert_eq!(a_records(&reply), vec!["192.0.2.99"]);
    let got: Vec<(String, String)> = answers
        .lock()
        .unwrap()
        .iter()
        .map(|(c, r)| (c.to_string(), r.name.clone()))
        .collect();
    assert_eq!(got, vec![("127.0.0.1".into(), "cdn.models.test".into())]);
    let evs = dns_events(&events);
    assert_eq!(evs.len(), 3);
    assert!(evs
        .iter()
        .all(|e| e.source.as_ref().unwrap().display_name() == "ml/trainer"));
}

/// `query(id, name)` grown to `total` bytes by an EDNS0 padding option (RFC 7830): still
/// a well-formed query.
fn padded_query(id: u16, name: &str, total: usize) -> Vec<u8> {
    let mut q = query(id, name);
    q[11] = 1; // ARCOUNT
    let pad = total - q.len() - 15;
    let rdlen = u16::try_from(pad + 4).unwrap();
    q.extend_from_slice(&[0, 0, 41, 0x10, 0x00, 0, 0, 0, 0]);
    q.extend_from_slice(&rdlen.to_be_bytes());
    q.extend_from_slice(&[0, 12]);
    q.extend_from_slice(&u16::try_from(pad).unwrap().to_be_bytes());
    q.resize(total, 0);
    q
}

/// Queries over UDP are at most 4 KiB (a longer datagram is dropped), but over TCP a client
/// could send 64 KiB ones, which the proxy read, parsed and forwarded: on the old code this
/// 5,000-byte query was answered NOERROR after reaching the upstream. Now a TCP message
/// longer than `MAX_QUERY` closes the connection unread; one of exactly 4 KiB is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_long_tcp_queries_are_not_served() {
    let (upstream, seen) = crafted_upstream(answer_everything()).await;
    let (proxy, _answers, _events) = proxy_before(upstream, Posture::Allow).await;
    let fits = padded_query(95, "a.models.test", palisade_dns::MAX_QUERY);
    assert_eq!(fits.len(), 4096);
    Message::from_vec(&fits).expect("a well-formed query");
    let reply = ask_tcp(proxy, &fits).await.expect("4 KiB is served");
    assert_eq!(reply.metadata.response_code, ResponseCode::NoError);
    assert_eq!(seen.lock().unwrap().names.len(), 1);

    let long = padded_query(96, "b.models.test", 5_000);
    Message::from_vec(&long).expect("a well-formed query");
    let mut c = TcpStream::connect(proxy).await.unwrap();
    c.write_all(&u16::try_from(long.len()).unwrap().to_be_bytes())
        .await
        .unwrap();
    // The connection may be closed before the body is written.
    let _ = c.write_all(&long).await;
    let mut rest = Vec::new();
    let got = tokio::time::timeout(Duration::from_secs(2), c.read_to_end(&mut rest))
        .await
        .expect("closed, not left waiting");
    assert!(
        rest.is_empty(),
        "no answer to an over-long query ({got:?}, {} bytes)",
        rest.len()
    );
    assert_eq!(seen.lock().unwrap().names.len(), 1, "never forwarded");
}
