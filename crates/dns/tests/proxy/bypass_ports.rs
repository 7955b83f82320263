//! Off-path forgery of upstream answers (RFC 5452): the source port of forwarded queries,
//! and answers from another address, port or socket, or to another question.

use super::*;
use crate::crafted::*;

/// A query as the upstream got it: the parsed message and where it came from.
async fn next_query(upstream: &UdpSocket) -> (Message, SocketAddr) {
    let mut buf = vec![0u8; 4096];
    let (n, from) = tokio::time::timeout(Duration::from_secs(2), upstream.recv_from(&mut buf))
        .await
        .expect("a query reached the upstream")
        .unwrap();
    (Message::from_vec(&buf[..n]).unwrap(), from)
}

/// The reply a client gets within 2 s.
async fn reply_to(client: &UdpSocket) -> Message {
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(2), client.recv(&mut buf))
        .await
        .expect("a reply")
        .unwrap();
    Message::from_vec(&buf[..n]).unwrap()
}

/// Every forwarded query of a worker left from its one upstream socket: an off-path forger
/// that learnt the port once had only the 16-bit id (and the 0x20 case) to guess. Now
/// queries leave from a rotated pool of random ports, never two in a row from the same one
/// (on the old code all six came from one port).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consecutive_queries_leave_from_different_source_ports() {
    let upstream = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut cfg = ProxyConfig::new(
        "127.0.0.1:0".parse().unwrap(),
        upstream.local_addr().unwrap(),
    );
    cfg.udp_workers = 1;
    let (proxy, _answers, _events) = bind(cfg, engine(Posture::Allow)).await.unwrap();
    let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut ports = Vec::new();
    for id in 0..6u16 {
        client
            .send_to(&query(id, &format!("p{id}.models.test")), proxy)
            .await
            .unwrap();
        let (q, from) = next_query(&upstream).await;
        ports.push(from.port());
        let name = q.queries[0].name.clone();
        upstream
            .send_to(&response(&q, vec![a(&name, 30, [192, 0, 2, 1])]), from)
            .await
            .unwrap();
        assert_eq!(reply_to(&client).await.metadata.id, id);
    }
    for pair in ports.windows(2) {
        assert_ne!(pair[0], pair[1], "source ports {ports:?}");
    }
}

/// With the query's id known, an answer is still not taken when it comes from another port
/// than the upstream's, answers another question, or arrives on another pool socket than
/// the query left from; the upstream's real answer then is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_from_elsewhere_or_to_other_questions_are_ignored() {
    let upstream = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut cfg = ProxyConfig::new(
        "127.0.0.1:0".parse().unwrap(),
        upstream.local_addr().unwrap(),
    );
    cfg.udp_workers = 1;
    let (proxy, answers, _events) = bind(cfg, engine(Posture::Allow)).await.unwrap();
    let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    client
        .send_to(&query(31, "hub.models.test"), proxy)
        .await
        .unwrap();
    let (q, from) = next_query(&upstream).await;
    let name = q.queries[0].name.clone();
    // Another client's query in flight, from another pool socket.
    let other = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    other
        .send_to(&query(32, "other.models.test"), proxy)
        .await
        .unwrap();
    let (q2, from2) = next_query(&upstream).await;
    assert_ne!(from.port(), from2.port());

    // The right id and question, from another port of the upstream's host.
    let forger = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let forged = response(&q, vec![a(&name, 30, [203, 0, 113, 1])]);
    forger.send_to(&forged, from).await.unwrap();
    // From the upstream's address and port, with the right id, for another question.
    let mut elsewhere = q.clone();
    elsewhere.queries[0].name = Name::from_ascii("evil.models.test.").unwrap();
    let asked = elsewhere.queries[0].name.clone();
    let wrong_question = response(&elsewhere, vec![a(&asked, 30, [203, 0, 113, 2])]);
    upstream.send_to(&wrong_question, from).await.unwrap();
    // From the upstream, the right id and question, to the other query's socket.
    let crossed = response(&q, vec![a(&name, 30, [203, 0, 113, 3])]);
    upstream.send_to(&crossed, from2).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        answers.lock().unwrap().is_empty(),
        "nothing opened for a forged answer"
    );

    // The real answers.
    let real = response(&q, vec![a(&name, 30, [192, 0, 2, 7])]);
    upstream.send_to(&real, from).await.unwrap();
    let name2 = q2.queries[0].name.clone();
    let real2 = response(&q2, vec![a(&name2, 30, [192, 0, 2, 8])]);
    upstream.send_to(&real2, from2).await.unwrap();
    let r = reply_to(&client).await;
    assert_eq!(
        (r.metadata.id, a_records(&r)),
        (31, vec!["192.0.2.7".to_string()])
    );
    let r2 = reply_to(&other).await;
    assert_eq!(
        (r2.metadata.id, a_records(&r2)),
        (32, vec!["192.0.2.8".to_string()])
    );
    let opened: Vec<String> = answers
        .lock()
        .unwrap()
        .iter()
        .map(|(_, r)| r.ip.to_string())
        .collect();
    assert_eq!(opened.len(), 2, "{opened:?}");
    assert!(
        opened.iter().all(|ip| ip.starts_with("192.0.2.")),
        "{opened:?}"
    );
}

/// Runs `script` with `sh -c` (in the calling thread's network namespace); whether it
/// succeeded.
fn sh(script: &str) -> bool {
    std::process::Command::new("sh")
        .args(["-c", script])
        .status()
        .is_ok_and(|s| s.success())
}

/// An ICMP error for an upstream socket (here "administratively prohibited", what a
/// firewall's REJECT sends; an off-path host that guesses one of the pool's ports can send
/// it too) surfaces as the next read's error (here EHOSTUNREACH; EACCES, ENOPROTOOPT,
/// ENETUNREACH for other codes). The upstream thread took every error but "refused" and
/// "reset" for a broken socket and returned: the worker stopped, and with it
/// `DnsProxy::run`, so every pod of the node lost DNS, hence all egress by name (on the old
/// code the first query got no reply at all and `run` ended with "No route to host").
/// Now the error is that socket's: its query gets SERVFAIL, and the next one is answered.
/// Needs root (a private network namespace with an nftables rule); skipped otherwise.
#[test]
fn an_icmp_error_on_an_upstream_socket_does_not_stop_the_proxy() {
    std::thread::spawn(|| {
        // This thread only (and what it starts: the runtime, the proxy's threads, `nft`).
        if let Err(e) = nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET) {
            eprintln!("skipped: no private network namespace ({e}; needs root)");
            return;
        }
        if !sh("ip link set lo up && nft list tables >/dev/null") {
            eprintln!("skipped: needs `ip` and `nft`");
            return;
        }
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(icmp_error_then_serve());
    })
    .join()
    .unwrap();
}

async fn icmp_error_then_serve() {
    let upstream = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let port = upstream.local_addr().unwrap().port();
    let mut cfg = ProxyConfig::new(
        "127.0.0.1:0".parse().unwrap(),
        upstream.local_addr().unwrap(),
    );
    cfg.udp_workers = 1;
    cfg.timeout = Duration::from_millis(300);
    let (tx, _events) = palisade_events::channel(100);
    let e = Some(engine(Posture::Allow));
    let proxy = DnsProxy::bind(cfg, move || e.clone(), tx, |_, _: &[Resolved]| {})
        .await
        .unwrap();
    let addr = proxy.local_addr().unwrap();
    let running = tokio::spawn(proxy.run());
    assert!(sh(&format!(
        "nft 'add table inet icmptest; add chain inet icmptest input {{ type filter hook input priority 0; }}; add rule inet icmptest input udp dport {port} reject with icmpx type admin-prohibited'"
    )));
    let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    client
        .send_to(&query(51, "hub.models.test"), addr)
        .await
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let first = tokio::time::timeout(Duration::from_secs(2), client.recv(&mut buf)).await;
    assert!(sh("nft delete table inet icmptest"));
    let first = first.map(|n| Message::from_vec(&buf[..n.unwrap()]).unwrap());
    assert_eq!(
        first
            .as_ref()
            .ok()
            .map(|m| (m.metadata.id, m.metadata.response_code)),
        Some((51, ResponseCode::ServFail)),
        "the refused query is answered SERVFAIL (proxy ended: {})",
        running.is_finished()
    );
    assert!(!running.is_finished(), "the proxy still runs");
    // The upstream reachable again: the same worker answers.
    client
        .send_to(&query(52, "hub.models.test"), addr)
        .await
        .unwrap();
    let (q, from) = next_query(&upstream).await;
    let name = q.queries[0].name.clone();
    upstream
        .send_to(&response(&q, vec![a(&name, 30, [192, 0, 2, 52])]), from)
        .await
        .unwrap();
    let r = reply_to(&client).await;
    assert_eq!(
        (r.metadata.id, a_records(&r)),
        (52, vec!["192.0.2.52".to_string()])
    );
    running.abort();
}
