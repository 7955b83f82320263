//! Bypass attempts through what comes back: answers to another question, other classes,
//! records for owners outside the CNAME chain or in other sections, forged and spoofed
//! answers (0x20 mixing), error responses, and addresses inside the node or the cluster.

use super::*;
use crate::crafted::*;
use hickory_proto::rr::DNSClass;

/// Over TCP, an upstream message with the right id that answers another question (a
/// leftover or forged one) is not taken for the answer: the proxy waits for the one that
/// echoes the question. On the old code the first message with the id was relayed and its
/// addresses recorded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_answers_must_echo_the_question() {
    let wrong_then_right: Responder = Arc::new(|q: &Message| {
        let asked = q.queries[0].name.clone();
        let mut other = q.clone();
        other.queries[0].name = Name::from_ascii("other.models.test.").unwrap();
        vec![
            response(&other, vec![a(&asked, 30, [203, 0, 113, 66])]),
            response(q, vec![a(&asked, 30, [192, 0, 2, 10])]),
        ]
    });
    let (upstream, _) = crafted_upstream(wrong_then_right).await;
    for path in ["udp", "tcp"] {
        let (proxy, answers, _events) = proxy_before(upstream, Posture::Allow).await;
        let q = query(40, "cdn.models.test");
        let reply = if path == "tcp" {
            ask_tcp(proxy, &q).await
        } else {
            ask_udp("127.0.0.1", proxy, &q).await
        };
        assert_eq!(
            a_records(&reply.expect("an answer")),
            vec!["192.0.2.10"],
            "{path}"
        );
        let got: Vec<String> = answers
            .lock()
            .unwrap()
            .iter()
            .map(|(_, r)| r.ip.to_string())
            .collect();
        assert_eq!(got, vec!["192.0.2.10"], "{path}");
    }
}

/// Only address records of class IN count: an `A` of another class (CHAOS here) in the
/// answer to an allowed name is relayed but opens nothing. On the old code the full parser's
/// path recorded it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_class_in_addresses_are_recorded() {
    let chaos: Responder = Arc::new(|q: &Message| {
        let asked = q.queries[0].name.clone();
        let mut odd = a(&asked, 30, [203, 0, 113, 7]);
        odd.dns_class = DNSClass::CH;
        vec![response(q, vec![odd, a(&asked, 30, [192, 0, 2, 10])])]
    });
    let (upstream, _) = crafted_upstream(chaos).await;
    let (proxy, answers, _events) = proxy_before(upstream, Posture::Allow).await;
    let reply = ask_udp("127.0.0.1", proxy, &query(50, "cdn.models.test"))
        .await
        .expect("an answer");
    assert_eq!(reply.answers.len(), 2, "relayed as sent");
    let got: Vec<String> = answers
        .lock()
        .unwrap()
        .iter()
        .map(|(_, r)| r.ip.to_string())
        .collect();
    assert_eq!(got, vec!["192.0.2.10"]);
}

/// Answers are checked, not trusted: records for owners outside the question's CNAME
/// chain (another allowed name, a denied name) are relayed but not recorded; the chain's
/// addresses are recorded under the name asked; a datagram from another source with the
/// right id and question never reaches the proxy (its upstream socket is connected); a
/// response with the right id and another question is ignored. (Found safe; kept as a
/// guard.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn injected_and_spoofed_records_open_nothing() {
    let chain: Responder = Arc::new(|q: &Message| {
        let asked = q.queries[0].name.clone();
        let edge = Name::from_ascii("edge.evil.test.").unwrap();
        let mut other = q.clone();
        other.queries[0].name = Name::from_ascii("cdn.models.test.evil.").unwrap();
        let mut right = Message::from_vec(&response(
            q,
            vec![
                a(
                    &Name::from_ascii("other.models.test.").unwrap(),
                    30,
                    [203, 0, 113, 2],
                ),
                a(
                    &Name::from_ascii("evil.test.").unwrap(),
                    30,
                    [203, 0, 113, 3],
                ),
                Record::from_rdata(asked.clone(), 60, RData::CNAME(CNAME(edge.clone()))),
                a(&edge, 20, [192, 0, 2, 20]),
            ],
        ))
        .unwrap();
        // Addresses for the name asked, in the sections where no answer is.
        right.add_authority(a(&asked, 30, [203, 0, 113, 4]));
        right.add_additional(a(&asked, 30, [203, 0, 113, 5]));
        vec![
            response(&other, vec![a(&asked, 30, [203, 0, 113, 1])]),
            right.to_vec().unwrap(),
        ]
    });
    let (upstream, seen) = crafted_upstream(chain).await;
    let (proxy, answers, _events) = proxy_before(upstream, Posture::Allow).await;
    let reply = ask_udp("127.0.0.1", proxy, &query(60, "cdn.models.test"))
        .await
        .expect("an answer");
    assert_eq!(reply.answers.len(), 4);
    let got: Vec<(String, String, u32)> = answers
        .lock()
        .unwrap()
        .iter()
        .map(|(_, r)| (r.name.clone(), r.ip.to_string(), r.ttl))
        .collect();
    assert_eq!(
        got,
        vec![("cdn.models.test".into(), "192.0.2.20".into(), 20)]
    );

    // An off-path sender that knows the proxy's upstream port and guesses the id (all of
    // them) and the question.
    let silent: Responder = Arc::new(|_| Vec::new());
    let (upstream, seen2) = crafted_upstream(silent).await;
    let (proxy, answers, _events) = proxy_before(upstream, Posture::Allow).await;
    let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    client
        .send_to(&query(61, "cdn.models.test"), proxy)
        .await
        .unwrap();
    let mut target = None;
    for _ in 0..100 {
        target = seen2.lock().unwrap().from;
        if target.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let target = target.expect("the query reached the upstream");
    let forger = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut forged = Message::from_vec(&query(0, "cdn.models.test")).unwrap();
    forged.metadata.message_type = MessageType::Response;
    let asked = forged.queries[0].name.clone();
    forged.add_answer(a(&asked, 30, [203, 0, 113, 99]));
    for id in 0..=u16::MAX {
        forged.metadata.id = id;
        let _ = forger.send_to(&forged.to_vec().unwrap(), target).await;
    }
    let mut buf = [0u8; 512];
    let n = tokio::time::timeout(Duration::from_secs(2), client.recv(&mut buf))
        .await
        .expect("a reply")
        .unwrap();
    let reply = Message::from_vec(&buf[..n]).unwrap();
    assert_eq!(
        reply.metadata.response_code,
        ResponseCode::ServFail,
        "only the timeout answers"
    );
    assert!(answers.lock().unwrap().is_empty());
    assert_eq!(
        seen.lock().unwrap().names.len(),
        1,
        "the first upstream saw one query"
    );
}

/// Only a NOERROR answer opens addresses, over TCP as over UDP: on the old code the TCP
/// path recorded the A records of an NXDOMAIN (or SERVFAIL) response.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_responses_open_nothing() {
    let nx: Responder = Arc::new(|q: &Message| {
        let asked = q.queries[0].name.clone();
        let mut m = Message::from_vec(&response(q, vec![a(&asked, 30, [203, 0, 113, 5])])).unwrap();
        m.metadata.response_code = ResponseCode::NXDomain;
        vec![m.to_vec().unwrap()]
    });
    let (upstream, _) = crafted_upstream(nx).await;
    let (proxy, answers, events) = proxy_before(upstream, Posture::Allow).await;
    let q = query(80, "cdn.models.test");
    let udp = ask_udp("127.0.0.1", proxy, &q).await.expect("an answer");
    let tcp = ask_tcp(proxy, &q).await.expect("an answer");
    for m in [udp, tcp] {
        assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    }
    assert!(
        answers.lock().unwrap().is_empty(),
        "{:?}",
        answers.lock().unwrap()
    );
    let evs = dns_events(&events);
    assert_eq!(evs.len(), 2);
    assert!(evs
        .iter()
        .all(|e| dns_body(e).rcode.as_deref() == Some("NXDOMAIN")));
}

/// A forged answer that knows the proxy's upstream port, comes from the upstream's address
/// and carries the right id (here the upstream's own socket sends it first) must still
/// guess the case the proxy gave each letter of the question (0x20 mixing). On the old code
/// the forgery, echoing the question as the client wrote it, was taken: the client got
/// 203.0.113.66 and it was recorded for `cdn.models.test`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_answer_must_guess_the_mixed_case() {
    const NAME: &str = "CDN-abcdefghijklmnopqrstuvwxyz.models.test.";
    let forged_first: Responder = Arc::new(|q: &Message| {
        let sent = q.queries[0].name.clone();
        let mut forged = q.clone();
        forged.queries[0].name = Name::from_ascii(NAME).unwrap();
        vec![
            response(
                &forged,
                vec![a(&forged.queries[0].name, 30, [203, 0, 113, 66])],
            ),
            response(q, vec![a(&sent, 30, [192, 0, 2, 10])]),
        ]
    });
    let (upstream, seen) = crafted_upstream(forged_first).await;
    let (proxy, answers, _events) = proxy_before(upstream, Posture::Allow).await;
    let reply = ask_udp("127.0.0.1", proxy, &query(95, NAME))
        .await
        .expect("an answer");
    assert_eq!(a_records(&reply), vec!["192.0.2.10"]);
    assert_eq!(
        reply.queries[0].name.to_ascii(),
        NAME,
        "the client gets its own question back"
    );
    let got: Vec<String> = answers
        .lock()
        .unwrap()
        .iter()
        .map(|(_, r)| r.ip.to_string())
        .collect();
    assert_eq!(got, vec!["192.0.2.10"]);
    let upstream_saw = seen.lock().unwrap().names[0].clone();
    assert!(upstream_saw.eq_ignore_ascii_case(NAME));
    assert_ne!(upstream_saw, NAME, "sent in mixed case (2^-33 to be equal)");
}

/// An upstream that does not keep the question's case: the first answers are not taken
/// (the client gets SERVFAIL and retries), then each worker stops mixing and every query is
/// answered. (Compatibility, not a bypass.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_that_lowercases_is_still_usable() {
    let lower: Responder = Arc::new(|q: &Message| {
        let mut m = q.clone();
        m.queries[0].name =
            Name::from_ascii(q.queries[0].name.to_ascii().to_ascii_lowercase()).unwrap();
        let name = m.queries[0].name.clone();
        vec![response(&m, vec![a(&name, 30, [192, 0, 2, 10])])]
    });
    let (upstream, _) = crafted_upstream(lower).await;
    let (proxy, _answers, _events) = proxy_before(upstream, Posture::Allow).await;
    // Enough queries from many source ports that every worker sees 32 of them.
    let mut waiting = Vec::new();
    for i in 0..300u16 {
        let s = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        s.send_to(&query(i, "abcdefgh.models.test"), proxy)
            .await
            .unwrap();
        waiting.push(s);
    }
    tokio::time::sleep(Duration::from_millis(600)).await;
    drop(waiting);
    for i in 0..20u16 {
        let reply = ask_udp("127.0.0.1", proxy, &query(300 + i, "abcdefgh.models.test"))
            .await
            .expect("an answer");
        assert_eq!(
            reply.metadata.response_code,
            ResponseCode::NoError,
            "query {i}"
        );
    }
}

/// An allowed name whose answer points inside (another pod, loopback, link-local such as
/// the cloud metadata address 169.254.169.254, the unspecified address, multicast) opens
/// nothing: whoever answers for an allowed domain must not be able to open the pod's
/// egress to the cluster or the node. (Cilium's toFQDNs never selects pod addresses
/// either: they carry the pod's identity.) On the old code every one was recorded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_pointing_inside_open_nothing() {
    let db = r#"
apiVersion: v1
kind: Pod
metadata: {name: db, namespace: data, labels: {app: db}}
spec: {containers: [{name: main}]}
status: {podIP: 10.0.0.7}
"#;
    let policy = engine_with(&format!("{MODEL_HUB}---{db}"), Posture::Allow);
    let inside: Responder = Arc::new(|q: &Message| {
        let n = q.queries[0].name.clone();
        let six =
            |s: &str| Record::from_rdata(n.clone(), 30, RData::AAAA(AAAA(s.parse().unwrap())));
        vec![response(
            q,
            vec![
                a(&n, 30, [10, 0, 0, 7]),
                a(&n, 30, [169, 254, 169, 254]),
                a(&n, 30, [127, 0, 0, 53]),
                a(&n, 30, [0, 0, 0, 0]),
                a(&n, 30, [224, 0, 0, 1]),
                a(&n, 30, [255, 255, 255, 255]),
                six("::1"),
                six("fe80::1"),
                six("::ffff:169.254.169.254"),
                six("ff02::1"),
                a(&n, 30, [192, 0, 2, 10]),
                six("2001:db8::10"),
            ],
        )]
    });
    let (upstream, _) = crafted_upstream(inside).await;
    let (proxy, answers, _events) = proxy_with(upstream, policy).await;
    for tcp in [false, true] {
        let q = query(500, "cdn.models.test");
        let reply = if tcp {
            ask_tcp(proxy, &q).await
        } else {
            ask_udp("127.0.0.1", proxy, &q).await
        };
        assert_eq!(
            reply.expect("an answer").answers.len(),
            12,
            "relayed as sent"
        );
    }
    let got: Vec<String> = answers
        .lock()
        .unwrap()
        .iter()
        .map(|(_, r)| r.ip.to_string())
        .collect();
    assert_eq!(
        got,
        vec!["192.0.2.10", "2001:db8::10", "192.0.2.10", "2001:db8::10"]
    );
}

/// With `mix_case` off the question goes upstream as the client wrote it (for an upstream
/// that keeps case only sometimes).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mixing_can_be_turned_off() {
    let (upstream, seen) = crafted_upstream(answer_everything()).await;
    let mut cfg = ProxyConfig::new("127.0.0.1:0".parse().unwrap(), upstream);
    cfg.mix_case = false;
    let (addr, _answers, _events) = bind(cfg, engine(Posture::Allow)).await.unwrap();
    const NAME: &str = "abcdefghijklmnopqrstuvwxyz.models.test.";
    let reply = ask_udp("127.0.0.1", addr, &query(600, NAME))
        .await
        .expect("an answer");
    assert_eq!(a_records(&reply), vec!["192.0.2.99"]);
    assert_eq!(seen.lock().unwrap().names, vec![NAME]);
}

/// A response whose authority or additional count reaches past its end (or that is cut
/// short after its answers) is malformed: hickory, and the client's resolver, reject it.
/// On the old code the in-place reader looked at the answer section only and opened its
/// address anyway over UDP; now the malformed message opens nothing (it is still relayed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_answers_open_nothing() {
    let broken: Responder = Arc::new(|q: &Message| {
        let asked = q.queries[0].name.clone();
        let mut d = response(q, vec![a(&asked, 30, [192, 0, 2, 10])]);
        // One additional record announced, none there.
        d[11] = 1;
        vec![d]
    });
    let (upstream, _) = crafted_upstream(broken).await;
    let (proxy, answers, _events) = proxy_before(upstream, Posture::Allow).await;
    let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    client
        .send_to(&query(70, "cdn.models.test"), proxy)
        .await
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(1), client.recv(&mut buf))
        .await
        .expect("relayed")
        .unwrap();
    assert_eq!(&buf[..2], &70u16.to_be_bytes(), "the client's id");
    assert!(Message::from_vec(&buf[..n]).is_err(), "still malformed");
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(
        answers.lock().unwrap().is_empty(),
        "{:?}",
        answers.lock().unwrap()
    );
}

/// An error code may sit in an OPT record's extended RCODE bits with the header's four bits
/// at 0 (BADVERS is 16): such an answer is no NOERROR. On the old code the UDP path read
/// the header's bits only and opened its address; the TCP path (hickory's whole code) did
/// not. Now neither does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extended_error_codes_open_nothing() {
    let badvers: Responder = Arc::new(|q: &Message| {
        let asked = q.queries[0].name.clone();
        let mut d = response(q, vec![a(&asked, 30, [203, 0, 113, 6])]);
        // OPT: root owner, type 41, payload 1232, extended RCODE 1 (16 with the header's 0).
        d.extend_from_slice(&[0, 0, 41, 0x04, 0xd0, 1, 0, 0, 0, 0, 0]);
        d[11] += 1;
        vec![d]
    });
    let (upstream, _) = crafted_upstream(badvers).await;
    let (proxy, answers, events) = proxy_before(upstream, Posture::Allow).await;
    let q = query(81, "cdn.models.test");
    let udp = ask_udp("127.0.0.1", proxy, &q).await.expect("relayed");
    let tcp = ask_tcp(proxy, &q).await.expect("relayed");
    for m in [udp, tcp] {
        assert_eq!(u16::from(m.metadata.response_code), 16, "BADVERS relayed");
    }
    assert!(
        answers.lock().unwrap().is_empty(),
        "{:?}",
        answers.lock().unwrap()
    );
    // The events say what the client got: on the old code the UDP one said NOERROR (the
    // header's 4 bits) although nothing was opened.
    let mut got: Vec<(bool, Option<String>)> = events
        .recv_batch(10, Duration::from_millis(300))
        .iter()
        .map(|e| {
            let tcp = e.protocol == Some(palisade_events::Protocol::Tcp);
            (tcp, dns_body(e).rcode.clone())
        })
        .collect();
    got.sort();
    let badvers = Some("BADVERS".to_string());
    assert_eq!(got, vec![(false, badvers.clone()), (true, badvers)]);
}
