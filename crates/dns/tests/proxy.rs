//! The proxy end to end on loopback: a fake upstream resolver, the proxy in front of it, and
//! clients sending real DNS packets (and `dig`, when installed). The policy maps the pod
//! `ml/trainer` to 127.0.0.1, so queries from 127.0.0.1 are the trainer's; 127.0.0.2 is no
//! pod. The `bypass_*` modules try to get names answered or addresses opened that policy
//! does not allow, in front of a crafted upstream (`crafted`).

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, CNAME};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use palisade_dns::{DenyRcode, DnsProxy, ProxyConfig, Resolved};
use palisade_events::{Event, EventBody, EventReceiver, Verdict};
use palisade_policy::{Engine, Manifests, Posture, Snapshot};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};

/// The pod every test query comes from (127.0.0.1).
const TRAINER: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: trainer, namespace: ml, labels: {app: trainer}}
spec: {containers: [{name: main}]}
status: {podIP: 127.0.0.1}
"#;

/// The trainer's policy: `**.models.test` on 443.
const MODEL_HUB: &str = r#"
apiVersion: palisade.dev/v1alpha1
kind: SecurityPolicy
metadata: {name: model-hub, namespace: ml}
spec:
  podSelector: {matchLabels: {app: trainer}}
  egress:
  - to: [{fqdn: "**.models.test"}]
    ports: [{port: 443}]
"#;

fn engine(posture: Posture) -> Arc<Engine> {
    engine_with(MODEL_HUB, posture)
}

/// The trainer pod and `objects` (policies, more pods), compiled under `posture`.
pub(crate) fn engine_with(objects: &str, posture: Posture) -> Arc<Engine> {
    let mut m = Manifests::new();
    m.add_file("trainer.yaml", TRAINER);
    m.add_file("objects.yaml", objects);
    Arc::new(Engine::compile_with(&Snapshot::from_manifests(&m), posture))
}

/// The fake upstream's answer: `cdn.models.test` is a CNAME to an edge name with an A record;
/// every other name gets 192.0.2.99.
fn upstream_answer(query: &[u8]) -> Option<Vec<u8>> {
    let q = Message::from_vec(query).ok()?;
    let mut m = Message::response(q.metadata.id, OpCode::Query);
    m.metadata.recursion_desired = q.metadata.recursion_desired;
    m.metadata.recursion_available = true;
    let question = q.queries.first()?.clone();
    let name = question.name.clone();
    if name.to_ascii().eq_ignore_ascii_case("cdn.models.test.") {
        let edge = Name::from_ascii("edge.cdn.example.").ok()?;
        m.add_answer(Record::from_rdata(
            name,
            120,
            RData::CNAME(CNAME(edge.clone())),
        ));
        m.add_answer(Record::from_rdata(
            edge,
            60,
            RData::A(A::new(192, 0, 2, 10)),
        ));
    } else {
        m.add_answer(Record::from_rdata(
            name,
            30,
            RData::A(A::new(192, 0, 2, 99)),
        ));
    }
    m.add_query(question);
    m.to_vec().ok()
}

/// Starts the fake upstream on UDP and TCP; returns its address and the number of queries
/// it has seen.
async fn fake_upstream() -> (SocketAddr, Arc<Mutex<u32>>) {
    // The UDP port the kernel picks may be taken for TCP: pick again until both bind.
    let mut tries = 0;
    let (udp, addr, tcp) = loop {
        let udp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = udp.local_addr().unwrap();
        match TcpListener::bind(addr).await {
            Ok(tcp) => break (udp, addr, tcp),
            Err(e) if tries < 50 => {
                tries += 1;
                eprintln!("fake upstream: {addr} is taken for TCP ({e}); another port");
            }
            Err(e) => panic!("no port free for both UDP and TCP: {e}"),
        }
    };
    let seen = Arc::new(Mutex::new(0));
    let count = Arc::clone(&seen);
    tokio::spawn(async move {
        let mut buf = vec![0u8; 4096];
        loop {
            let (n, peer) = udp.recv_from(&mut buf).await.unwrap();
            *count.lock().unwrap() += 1;
            if let Some(a) = upstream_answer(&buf[..n]) {
                udp.send_to(&a, peer).await.unwrap();
            }
        }
    });
    tokio::spawn(async move {
        loop {
            let (mut s, _) = tcp.accept().await.unwrap();
            tokio::spawn(async move {
                let len = s.read_u16().await.unwrap();
                let mut q = vec![0u8; usize::from(len)];
                s.read_exact(&mut q).await.unwrap();
                let a = upstream_answer(&q).unwrap();
                s.write_all(&u16::try_from(a.len()).unwrap().to_be_bytes())
                    .await
                    .unwrap();
                s.write_all(&a).await.unwrap();
            });
        }
    });
    (addr, seen)
}

type Answers = Arc<Mutex<Vec<(IpAddr, Resolved)>>>;

struct Setup {
    proxy: SocketAddr,
    answers: Answers,
    events: EventReceiver,
    upstream_queries: Arc<Mutex<u32>>,
}

async fn setup(posture: Posture, deny: DenyRcode, policy: Option<Arc<Engine>>) -> Setup {
    let (upstream, upstream_queries) = fake_upstream().await;
    let mut cfg = ProxyConfig::new("127.0.0.1:0".parse().unwrap(), upstream);
    cfg.deny = deny;
    cfg.timeout = Duration::from_millis(500);
    let policy = policy.unwrap_or_else(|| engine(posture));
    let (addr, answers, events) = crafted::bind(cfg, policy).await.unwrap();
    Setup {
        proxy: addr,
        answers,
        events,
        upstream_queries,
    }
}

fn query(id: u16, name: &str) -> Vec<u8> {
    let mut m = Message::new(id, MessageType::Query, OpCode::Query);
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(Name::from_ascii(name).unwrap(), RecordType::A));
    m.to_vec().unwrap()
}

/// Sends `packet` from `from` over UDP; the reply, if one comes within 1 s.
async fn ask_udp(from: &str, proxy: SocketAddr, packet: &[u8]) -> Option<Message> {
    let s = UdpSocket::bind((from, 0)).await.unwrap();
    s.send_to(packet, proxy).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(1), s.recv(&mut buf))
        .await
        .ok()?
        .unwrap();
    Some(Message::from_vec(&buf[..n]).expect("the proxy sends DNS"))
}

fn a_records(m: &Message) -> Vec<String> {
    m.answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(a.0.to_string()),
            _ => None,
        })
        .collect()
}

fn dns_events(rx: &EventReceiver) -> Vec<Event> {
    rx.recv_batch(100, Duration::from_millis(200))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allowed_name_is_forwarded_and_recorded() {
    let s = setup(Posture::Allow, DenyRcode::Refused, None).await;
    let reply = ask_udp("127.0.0.1", s.proxy, &query(42, "CDN.models.test."))
        .await
        .expect("an answer");
    assert_eq!(reply.metadata.id, 42);
    assert_eq!(reply.metadata.response_code, ResponseCode::NoError);
    assert_eq!(a_records(&reply), vec!["192.0.2.10"]);

    let answers = s.answers.lock().unwrap().clone();
    assert_eq!(answers.len(), 1, "{answers:?}");
    let (client, r) = &answers[0];
    assert_eq!(client.to_string(), "127.0.0.1");
    assert_eq!(
        (r.name.as_str(), r.ip.to_string(), r.ttl),
        ("cdn.models.test", "192.0.2.10".to_string(), 60)
    );

    let events = dns_events(&s.events);
    assert_eq!(events.len(), 1, "{events:?}");
    let e = &events[0];
    assert_eq!(e.verdict, Some(Verdict::Allow));
    let src = e.source.as_ref().unwrap();
    assert_eq!(src.display_name(), "ml/trainer");
    let p = e.policy.as_ref().expect("the allowing rule");
    assert_eq!(
        (p.name.as_str(), p.rule.as_deref()),
        ("model-hub", Some("egress[0]"))
    );
    let EventBody::Dns(d) = &e.body else {
        panic!("a dns event")
    };
    assert_eq!(d.query, "cdn.models.test");
    assert_eq!(d.qtype.as_deref(), Some("A"));
    assert_eq!(d.rcode.as_deref(), Some("NOERROR"));
    assert_eq!(d.ttl, Some(60));
    assert_eq!(d.answers.as_ref().map(Vec::len), Some(2));
    assert!(d.latency_us.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn denied_name_is_refused_without_asking_upstream() {
    let s = setup(Posture::Allow, DenyRcode::Refused, None).await;
    let reply = ask_udp("127.0.0.1", s.proxy, &query(7, "evil.test"))
        .await
        .expect("an answer");
    assert_eq!(reply.metadata.id, 7);
    assert_eq!(reply.metadata.response_code, ResponseCode::Refused);
    assert!(reply.answers.is_empty());
    assert_eq!(*s.upstream_queries.lock().unwrap(), 0);
    assert!(s.answers.lock().unwrap().is_empty());

    let events = dns_events(&s.events);
    assert_eq!(events.len(), 1, "{events:?}");
    let e = &events[0];
    assert_eq!(e.verdict, Some(Verdict::Deny));
    let p = e.policy.as_ref().expect("the isolating policy");
    assert_eq!(
        (p.name.as_str(), p.rule.as_deref()),
        ("model-hub", Some("default"))
    );
    let EventBody::Dns(d) = &e.body else {
        panic!("a dns event")
    };
    assert_eq!(
        (d.query.as_str(), d.rcode.as_deref()),
        ("evil.test", Some("REFUSED"))
    );
    assert_eq!(d.answers, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nxdomain_mode_and_zero_trust_for_unknown_clients() {
    let s = setup(Posture::Deny, DenyRcode::NxDomain, None).await;
    let reply = ask_udp("127.0.0.1", s.proxy, &query(8, "evil.test"))
        .await
        .unwrap();
    assert_eq!(reply.metadata.response_code, ResponseCode::NXDomain);
    // 127.0.0.2 is no pod: under a zero-trust posture it resolves nothing.
    let reply = ask_udp("127.0.0.2", s.proxy, &query(9, "cdn.models.test"))
        .await
        .unwrap();
    assert_eq!(reply.metadata.response_code, ResponseCode::NXDomain);
    assert_eq!(*s.upstream_queries.lock().unwrap(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_clients_resolve_under_the_default_posture() {
    let s = setup(Posture::Allow, DenyRcode::Refused, None).await;
    let reply = ask_udp("127.0.0.2", s.proxy, &query(10, "evil.test"))
        .await
        .unwrap();
    assert_eq!(reply.metadata.response_code, ResponseCode::NoError);
    assert_eq!(a_records(&reply), vec!["192.0.2.99"]);
    let events = dns_events(&s.events);
    assert_eq!(events[0].verdict, Some(Verdict::Allow));
    assert_eq!(
        events[0].source.as_ref().unwrap().display_name(),
        "127.0.0.2"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_never_crashes_the_proxy() {
    let s = setup(Posture::Allow, DenyRcode::Refused, None).await;
    // Too short: no reply.
    assert!(ask_udp("127.0.0.1", s.proxy, b"\x01\x02\x03")
        .await
        .is_none());
    // A header promising a question that is not there: FORMERR.
    let mut cut = query(11, "cdn.models.test");
    cut.truncate(16);
    let reply = ask_udp("127.0.0.1", s.proxy, &cut).await.expect("FORMERR");
    assert_eq!(
        (reply.metadata.id, reply.metadata.response_code),
        (11, ResponseCode::FormErr)
    );
    // Random bytes, then the proxy still answers.
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut x: u32 = 0x1234_5678;
    for len in 0..200usize {
        let p: Vec<u8> = (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x as u8
            })
            .collect();
        sock.send_to(&p, s.proxy).await.unwrap();
    }
    let reply = ask_udp("127.0.0.1", s.proxy, &query(12, "cdn.models.test")).await;
    assert_eq!(
        a_records(&reply.expect("still serving")),
        vec!["192.0.2.10"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_policy_yet_refuses_everything() {
    let (upstream, seen) = fake_upstream().await;
    let (tx, _rx) = palisade_events::channel(10);
    let proxy = DnsProxy::bind(
        ProxyConfig::new("127.0.0.1:0".parse().unwrap(), upstream),
        || None,
        tx,
        |_, _: &[Resolved]| {},
    )
    .await
    .unwrap();
    let addr = proxy.local_addr().unwrap();
    tokio::spawn(proxy.run());
    let reply = ask_udp("127.0.0.2", addr, &query(13, "cdn.models.test"))
        .await
        .unwrap();
    assert_eq!(reply.metadata.response_code, ResponseCode::Refused);
    assert_eq!(*seen.lock().unwrap(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_queries_with_length_framing() {
    let s = setup(Posture::Allow, DenyRcode::Refused, None).await;
    let mut c = TcpStream::connect(s.proxy).await.unwrap();
    for (id, name, rcode) in [
        (20, "cdn.models.test", ResponseCode::NoError),
        (21, "evil.test", ResponseCode::Refused),
    ] {
        let q = query(id, name);
        c.write_all(&u16::try_from(q.len()).unwrap().to_be_bytes())
            .await
            .unwrap();
        c.write_all(&q).await.unwrap();
        let len = c.read_u16().await.unwrap();
        let mut buf = vec![0u8; usize::from(len)];
        c.read_exact(&mut buf).await.unwrap();
        let m = Message::from_vec(&buf).unwrap();
        assert_eq!((m.metadata.id, m.metadata.response_code), (id, rcode));
    }
    let events = dns_events(&s.events);
    assert_eq!(events.len(), 2);
    assert_eq!(events[0].protocol, Some(palisade_events::Protocol::Tcp));
    assert_eq!(s.answers.lock().unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dig_as_a_real_client() {
    if std::process::Command::new("dig")
        .arg("-v")
        .output()
        .is_err()
    {
        eprintln!("dig is not installed; skipping");
        return;
    }
    let s = setup(Posture::Allow, DenyRcode::Refused, None).await;
    let port = s.proxy.port().to_string();
    let dig = |args: Vec<String>| {
        tokio::task::spawn_blocking(move || {
            let out = std::process::Command::new("dig")
                .args(&args)
                .output()
                .unwrap();
            String::from_utf8_lossy(&out.stdout).into_owned()
        })
    };
    let base = |name: &str, extra: &[&str]| {
        let mut v: Vec<String> = ["@127.0.0.1", "-p", &port, "+time=2", "+tries=1", name]
            .iter()
            .map(|s| s.to_string())
            .collect();
        v.extend(extra.iter().map(|s| s.to_string()));
        v
    };
    let short = dig(base("cdn.models.test", &["A", "+short"]))
        .await
        .unwrap();
    assert!(short.lines().any(|l| l.trim() == "192.0.2.10"), "{short}");
    let tcp = dig(base("cdn.models.test", &["A", "+short", "+tcp"]))
        .await
        .unwrap();
    assert!(tcp.lines().any(|l| l.trim() == "192.0.2.10"), "{tcp}");
    let denied = dig(base("evil.test", &["A"])).await.unwrap();
    assert!(denied.contains("status: REFUSED"), "{denied}");
}

/// Starts a proxy on `listen` in front of `upstream`; returns its address and the task.
async fn start_proxy(
    listen: SocketAddr,
    upstream: SocketAddr,
    max_in_flight: usize,
) -> (
    SocketAddr,
    tokio::task::JoinHandle<()>,
    Arc<palisade_dns::ProxyStats>,
) {
    let mut cfg = ProxyConfig::new(listen, upstream);
    cfg.timeout = Duration::from_millis(300);
    cfg.max_in_flight = max_in_flight;
    // These tests measure the in-flight bound and restarts, not the rate limit.
    cfg.query_rate = 0;
    let (tx, rx) = palisade_events::channel(1000);
    // Keep the receiver alive (and drained) for the proxy's lifetime.
    std::thread::spawn(move || {
        while !rx.recv_batch(1000, Duration::from_millis(100)).is_empty() || !rx.is_closed() {}
    });
    let engine = Some(engine(Posture::Allow));
    let proxy = DnsProxy::bind(cfg, move || engine.clone(), tx, |_, _: &[Resolved]| {})
        .await
        .unwrap();
    let addr = proxy.local_addr().unwrap();
    let stats = proxy.stats();
    let task = tokio::spawn(async move {
        let _ = proxy.run().await;
    });
    (addr, task, stats)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_under_load_costs_clients_at_most_a_retry() {
    let (upstream, _) = fake_upstream().await;
    let (addr, old, _) = start_proxy("127.0.0.1:0".parse().unwrap(), upstream, 4096).await;
    // Clients query without pause; each query may be retried once (as stub resolvers do).
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut clients = Vec::new();
    for c in 0..4u16 {
        let stop = Arc::clone(&stop);
        clients.push(tokio::spawn(async move {
            let (mut ok, mut failed) = (0u32, 0u32);
            let mut id = c * 10_000;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                id = id.wrapping_add(1);
                let q = query(id, "cdn.models.test");
                let mut answered = false;
                for _try in 0..2 {
                    let s = UdpSocket::bind("127.0.0.1:0").await.unwrap();
                    s.send_to(&q, addr).await.unwrap();
                    let mut buf = vec![0u8; 4096];
                    if let Ok(Ok(n)) =
                        tokio::time::timeout(Duration::from_millis(400), s.recv(&mut buf)).await
                    {
                        let m = Message::from_vec(&buf[..n]).unwrap();
                        if m.metadata.id == id && m.metadata.response_code == ResponseCode::NoError
                        {
                            answered = true;
                            break;
                        }
                    }
                }
                if answered {
                    ok += 1;
                } else {
                    failed += 1;
                }
            }
            (ok, failed)
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    // The new proxy binds the same port beside the old one, then the old one goes away.
    let (addr2, new, _) = start_proxy(addr, upstream, 4096).await;
    assert_eq!(addr2, addr);
    tokio::time::sleep(Duration::from_millis(300)).await;
    old.abort();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (mut ok, mut failed) = (0, 0);
    for c in clients {
        let (o, f) = c.await.unwrap();
        ok += o;
        failed += f;
    }
    new.abort();
    assert!(ok > 100, "{ok} answered");
    assert_eq!(
        failed, 0,
        "{failed} queries failed even after a retry ({ok} answered)"
    );
}

fn rss_kib() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    s.lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_random_subdomain_flood_is_bounded() {
    // An upstream that never answers: every forwarded query waits for its timeout, which is
    // the worst case for the proxy's memory.
    let hole = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let upstream = hole.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut buf = [0u8; 2048];
        while hole.recv(&mut buf).is_ok() {}
    });
    let (addr, task, stats) = start_proxy("127.0.0.1:0".parse().unwrap(), upstream, 512).await;
    let before = rss_kib();
    let sender = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut seed: u64 = 0x5eed;
    for i in 0..100_000u32 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let name = format!("{:016x}.{i}.flood.models.test", seed);
        let _ = sender.send_to(&query(i as u16, &name), addr);
    }
    tokio::time::sleep(Duration::from_millis(800)).await;
    let after = rss_kib();
    let dropped = stats.dropped.load(std::sync::atomic::Ordering::Relaxed);
    let failed = stats
        .upstream_errors
        .load(std::sync::atomic::Ordering::Relaxed);
    assert!(dropped > 0, "the in-flight bound must shed load");
    assert!(
        failed > 0,
        "queries the upstream ignores are answered SERVFAIL"
    );
    if let (Some(b), Some(a)) = (before, after) {
        assert!(
            a.saturating_sub(b) < 64 * 1024,
            "memory grew by {} KiB during the flood",
            a - b
        );
    }
    // Still serving: a query gets its SERVFAIL once the upstream timeout passes.
    let reply = ask_udp("127.0.0.1", addr, &query(7, "after.models.test")).await;
    assert_eq!(
        reply.map(|m| m.metadata.response_code),
        Some(ResponseCode::ServFail)
    );
    task.abort();
}

#[path = "proxy/bypass_answers.rs"]
mod bypass_answers;
#[path = "proxy/bypass_load.rs"]
mod bypass_load;
#[path = "proxy/bypass_names.rs"]
mod bypass_names;
#[path = "proxy/bypass_ports.rs"]
mod bypass_ports;
#[path = "proxy/bypass_structure.rs"]
mod bypass_structure;
#[path = "proxy/crafted.rs"]
mod crafted;
