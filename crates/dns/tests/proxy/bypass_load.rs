//! One client taking the room every client needs: queries in flight over UDP and TCP
//! connections are bounded per client address, not only in all.

use super::*;
use crate::crafted::*;

/// Names under `flood.models.test` are never answered (an authoritative server the pod
/// controls and keeps silent); every other name is.
fn silent_for_the_flood() -> Responder {
    Arc::new(|q: &Message| match q.queries.first() {
        Some(question)
            if question
                .name
                .to_ascii()
                .to_ascii_lowercase()
                .contains("flood") =>
        {
            Vec::new()
        }
        Some(question) => vec![response(q, vec![a(&question.name, 30, [192, 0, 2, 99])])],
        None => Vec::new(),
    })
}

/// A pod sending queries for random names under an allowed wildcard whose answers never
/// come kept every in-flight slot of the worker for the upstream timeout: on the old code
/// another client's query was dropped (no answer at all) until the flood's queries expired.
/// Now one client has at most `max_in_flight_per_client` queries in flight per worker, and
/// the other client is answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_client_cannot_take_every_udp_slot() {
    let (upstream, seen) = crafted_upstream(silent_for_the_flood()).await;
    let mut cfg = ProxyConfig::new("127.0.0.1:0".parse().unwrap(), upstream);
    cfg.timeout = Duration::from_secs(3);
    cfg.udp_workers = 1;
    cfg.max_in_flight = 64;
    cfg.max_in_flight_per_client = 16;
    let (proxy, answers, _events) = bind(cfg, engine(Posture::Allow)).await.unwrap();
    let flooder = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    for i in 0..200u16 {
        let name = format!("r{i}.flood.models.test");
        flooder.send_to(&query(i, &name), proxy).await.unwrap();
    }
    // Let the worker read the whole flood.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let reply = ask_udp("127.0.0.2", proxy, &query(900, "hub.models.test"))
        .await
        .expect("the other client is answered");
    assert_eq!(reply.metadata.response_code, ResponseCode::NoError);
    assert_eq!(a_records(&reply), vec!["192.0.2.99".to_string()]);
    assert_eq!(answers.lock().unwrap().len(), 1);
    let flood_seen = seen.lock().unwrap().names.len() - 1;
    assert_eq!(
        flood_seen, 16,
        "the flooder's queries beyond its share are shed"
    );
}

/// Connects to `proxy` from the address `from`.
async fn connect_from(from: &str, proxy: SocketAddr) -> TcpStream {
    let s = tokio::net::TcpSocket::new_v4().unwrap();
    s.bind(format!("{from}:0").parse().unwrap()).unwrap();
    s.connect(proxy).await.unwrap()
}

/// A pod opening idle TCP connections held every one the proxy serves at once (each for
/// the 10 s idle timeout, renewed at will): on the old code another client's query over
/// TCP, the retry after a truncated UDP answer, got no answer. Now one client holds at
/// most `max_tcp_per_client` connections (the ones beyond are closed at once) and the
/// other client is answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_client_cannot_hold_every_tcp_connection() {
    let (upstream, _seen) = crafted_upstream(answer_everything()).await;
    let mut cfg = ProxyConfig::new("127.0.0.1:0".parse().unwrap(), upstream);
    cfg.max_in_flight = 8;
    cfg.max_tcp_per_client = 2;
    let (proxy, answers, _events) = bind(cfg, engine(Posture::Allow)).await.unwrap();
    let mut idle = Vec::new();
    for _ in 0..8 {
        idle.push(connect_from("127.0.0.1", proxy).await);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut c = connect_from("127.0.0.2", proxy).await;
    let q = query(901, "hub.models.test");
    c.write_all(&u16::try_from(q.len()).unwrap().to_be_bytes())
        .await
        .unwrap();
    c.write_all(&q).await.unwrap();
    let len = tokio::time::timeout(Duration::from_secs(2), c.read_u16())
        .await
        .expect("the other client is answered")
        .expect("a framed answer");
    let mut buf = vec![0u8; usize::from(len)];
    c.read_exact(&mut buf).await.unwrap();
    let reply = Message::from_vec(&buf).unwrap();
    assert_eq!(reply.metadata.id, 901);
    assert_eq!(a_records(&reply), vec!["192.0.2.99".to_string()]);
    assert_eq!(answers.lock().unwrap().len(), 1);
    // The connections beyond the flooder's share are closed without a word.
    let mut closed = 0;
    for c in &mut idle {
        let mut b = [0u8; 1];
        if let Ok(Ok(0)) = tokio::time::timeout(Duration::from_millis(100), c.read(&mut b)).await {
            closed += 1;
        }
    }
    assert_eq!(closed, 6, "all but the flooder's share are closed");
}

/// Sends `n` queries for distinct names under `flood.models.test` from one socket of
/// 127.0.0.1 and returns the response codes of the replies that come within 1 s.
async fn flood_udp(proxy: SocketAddr, n: u16) -> Vec<ResponseCode> {
    let flooder = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    for i in 0..n {
        let name = format!("r{i}.flood.models.test");
        flooder.send_to(&query(i, &name), proxy).await.unwrap();
    }
    let mut codes = Vec::new();
    let mut buf = vec![0u8; 4096];
    while let Ok(Ok(len)) =
        tokio::time::timeout(Duration::from_secs(1), flooder.recv(&mut buf)).await
    {
        codes.push(
            Message::from_vec(&buf[..len])
                .unwrap()
                .metadata
                .response_code,
        );
        if codes.len() == usize::from(n) {
            break;
        }
    }
    codes
}

/// A pod could make the proxy send queries upstream as fast as it could send them (upstream
/// abuse, CPU, an event per query): on the old code all 60 of these allowed queries reached
/// the upstream. Now each client address has a token bucket (`query_rate` a second,
/// `query_burst` at once): the flooder's first 10 queries go upstream, the rest are answered
/// REFUSED at once, one event (verdict deny, REFUSED, no policy) notes it, and another
/// client is still answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_client_over_its_query_rate_is_refused_over_udp() {
    let (upstream, seen) = crafted_upstream(answer_everything()).await;
    let mut cfg = ProxyConfig::new("127.0.0.1:0".parse().unwrap(), upstream);
    cfg.udp_workers = 1;
    cfg.query_rate = 2;
    cfg.query_burst = 10;
    let (proxy, _answers, events) = bind(cfg, engine(Posture::Allow)).await.unwrap();
    let codes = flood_udp(proxy, 60).await;
    let count = |c: ResponseCode| codes.iter().filter(|x| **x == c).count();
    let forwarded = seen.lock().unwrap().names.len();
    assert!(
        (10..=11).contains(&forwarded),
        "{forwarded} of 60 queries went upstream"
    );
    assert_eq!(count(ResponseCode::NoError), forwarded, "{codes:?}");
    assert_eq!(count(ResponseCode::Refused), 60 - forwarded, "{codes:?}");
    // Another client has its own budget.
    let reply = ask_udp("127.0.0.2", proxy, &query(900, "hub.models.test"))
        .await
        .expect("the other client is answered");
    assert_eq!(reply.metadata.response_code, ResponseCode::NoError);
    // The refusals are noted once (a second), not once per query.
    let all = events.recv_batch(1000, Duration::from_millis(300));
    let limited: Vec<&Event> = all
        .iter()
        .filter(|e| dns_body(e).rcode.as_deref() == Some("REFUSED"))
        .collect();
    assert_eq!(limited.len(), 1, "{all:?}");
    let e = limited[0];
    assert_eq!(e.verdict, Some(Verdict::Deny));
    assert!(e.policy.is_none());
    assert_eq!(e.source.as_ref().unwrap().display_name(), "ml/trainer");
    assert!(dns_body(e).query.ends_with(".flood.models.test"), "{e:?}");
}

/// The same over TCP: on the old code every query on the connection was forwarded. With a
/// burst of 3 the fourth and later queries are REFUSED and never reach the upstream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_client_over_its_query_rate_is_refused_over_tcp() {
    let (upstream, seen) = crafted_upstream(answer_everything()).await;
    let mut cfg = ProxyConfig::new("127.0.0.1:0".parse().unwrap(), upstream);
    cfg.query_rate = 1;
    cfg.query_burst = 3;
    let (proxy, _answers, _events) = bind(cfg, engine(Posture::Allow)).await.unwrap();
    let mut c = connect_from("127.0.0.1", proxy).await;
    let mut codes = Vec::new();
    for id in 0..6u16 {
        let q = query(id, &format!("t{id}.models.test"));
        c.write_all(&u16::try_from(q.len()).unwrap().to_be_bytes())
            .await
            .unwrap();
        c.write_all(&q).await.unwrap();
        let len = tokio::time::timeout(Duration::from_secs(2), c.read_u16())
            .await
            .expect("an answer")
            .unwrap();
        let mut buf = vec![0u8; usize::from(len)];
        c.read_exact(&mut buf).await.unwrap();
        let m = Message::from_vec(&buf).unwrap();
        assert_eq!(m.metadata.id, id);
        codes.push(m.metadata.response_code);
    }
    use ResponseCode::{NoError, Refused};
    assert_eq!(
        codes,
        vec![NoError, NoError, NoError, Refused, Refused, Refused]
    );
    assert_eq!(seen.lock().unwrap().names.len(), 3);
}

/// The rate limit was kept per UDP worker: a client spreading its queries over many source
/// ports (which the kernel spreads over the four workers' `SO_REUSEPORT` sockets) had a
/// bucket on each worker and up to four times its burst went upstream (about 40 of these
/// 60 on the old code), and its TCP queries had yet another. Now one bucket per client
/// address serves every worker and TCP: about the burst (10) goes upstream, the rest are
/// REFUSED, and so is the same client's next query over TCP.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_client_on_many_source_ports_gets_one_rate() {
    let (upstream, seen) = crafted_upstream(answer_everything()).await;
    let mut cfg = ProxyConfig::new("127.0.0.1:0".parse().unwrap(), upstream);
    cfg.udp_workers = 4;
    cfg.query_rate = 1;
    cfg.query_burst = 10;
    let (proxy, _answers, _events) = bind(cfg, engine(Posture::Allow)).await.unwrap();
    let mut sockets = Vec::new();
    for i in 0..60u16 {
        let s = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let name = format!("p{i}.ports.models.test");
        s.send_to(&query(i, &name), proxy).await.unwrap();
        sockets.push(s);
    }
    let mut codes = Vec::new();
    let mut buf = vec![0u8; 4096];
    for s in &sockets {
        if let Ok(Ok(len)) = tokio::time::timeout(Duration::from_secs(2), s.recv(&mut buf)).await {
            codes.push(
                Message::from_vec(&buf[..len])
                    .unwrap()
                    .metadata
                    .response_code,
            );
        }
    }
    let count = |c: ResponseCode| codes.iter().filter(|x| **x == c).count();
    let forwarded = seen.lock().unwrap().names.len();
    assert!(
        (10..=11).contains(&forwarded),
        "{forwarded} of 60 queries from 60 source ports went upstream"
    );
    assert_eq!(count(ResponseCode::NoError), forwarded, "{codes:?}");
    assert_eq!(count(ResponseCode::Refused), 60 - forwarded, "{codes:?}");
    // The same bucket over TCP.
    let mut c = connect_from("127.0.0.1", proxy).await;
    let q = query(7, "tcp.ports.models.test");
    c.write_all(&u16::try_from(q.len()).unwrap().to_be_bytes())
        .await
        .unwrap();
    c.write_all(&q).await.unwrap();
    let len = tokio::time::timeout(Duration::from_secs(2), c.read_u16())
        .await
        .expect("an answer")
        .unwrap();
    let mut buf = vec![0u8; usize::from(len)];
    c.read_exact(&mut buf).await.unwrap();
    let m = Message::from_vec(&buf).unwrap();
    assert_eq!(m.metadata.response_code, ResponseCode::Refused);
}
