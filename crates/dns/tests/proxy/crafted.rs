//! The crafted upstream of the bypass tests (it answers what a test tells it to and says
//! what it saw) and the helpers the tests share.

use super::*;

/// What the crafted upstream answers to one query: the datagrams (or TCP messages) to send
/// back, in order.
pub(crate) type Responder = Arc<dyn Fn(&Message) -> Vec<Vec<u8>> + Send + Sync>;

/// What the crafted upstream saw.
#[derive(Default)]
pub(crate) struct Seen {
    /// The question names of the queries received, as the upstream parses them (or
    /// `"<unparsable>"`).
    pub(crate) names: Vec<String>,
    /// The UDP source of the last query (the proxy's upstream socket).
    pub(crate) from: Option<SocketAddr>,
}

/// An upstream on UDP and TCP that answers with `respond`.
pub(crate) async fn crafted_upstream(respond: Responder) -> (SocketAddr, Arc<Mutex<Seen>>) {
    let mut tries = 0;
    let (udp, addr, tcp) = loop {
        let udp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = udp.local_addr().unwrap();
        match TcpListener::bind(addr).await {
            Ok(tcp) => break (udp, addr, tcp),
            Err(_) if tries < 50 => tries += 1,
            Err(e) => panic!("no port free for both UDP and TCP: {e}"),
        }
    };
    let seen: Arc<Mutex<Seen>> = Arc::default();
    let (s, r) = (Arc::clone(&seen), Arc::clone(&respond));
    tokio::spawn(async move {
        let mut buf = vec![0u8; 4096];
        loop {
            let (n, peer) = udp.recv_from(&mut buf).await.unwrap();
            let parsed = Message::from_vec(&buf[..n]).ok();
            {
                let mut g = s.lock().unwrap();
                g.from = Some(peer);
                g.names
                    .push(match parsed.as_ref().and_then(|m| m.queries.first()) {
                        Some(q) => q.name.to_ascii(),
                        None => "<unparsable>".into(),
                    });
            }
            if let Some(m) = parsed {
                for d in r(&m) {
                    udp.send_to(&d, peer).await.unwrap();
                }
            }
        }
    });
    let (s, r) = (Arc::clone(&seen), respond);
    tokio::spawn(async move {
        loop {
            let (mut c, _) = tcp.accept().await.unwrap();
            let (s, r) = (Arc::clone(&s), Arc::clone(&r));
            tokio::spawn(async move {
                let Ok(len) = c.read_u16().await else { return };
                let mut q = vec![0u8; usize::from(len)];
                if c.read_exact(&mut q).await.is_err() {
                    return;
                }
                let parsed = Message::from_vec(&q).ok();
                s.lock().unwrap().names.push(
                    match parsed.as_ref().and_then(|m| m.queries.first()) {
                        Some(q) => q.name.to_ascii(),
                        None => "<unparsable>".into(),
                    },
                );
                if let Some(m) = parsed {
                    for d in r(&m) {
                        let _ = c
                            .write_all(&u16::try_from(d.len()).unwrap().to_be_bytes())
                            .await;
                        let _ = c.write_all(&d).await;
                    }
                }
            });
        }
    });
    (addr, seen)
}

/// The proxy in front of `upstream`, with the trainer's policy (`**.models.test`).
pub(crate) async fn proxy_before(
    upstream: SocketAddr,
    posture: Posture,
) -> (SocketAddr, Answers, EventReceiver) {
    proxy_with(upstream, engine(posture)).await
}

/// The proxy in front of `upstream`, deciding with `policy`.
pub(crate) async fn proxy_with(
    upstream: SocketAddr,
    policy: Arc<Engine>,
) -> (SocketAddr, Answers, EventReceiver) {
    let mut cfg = ProxyConfig::new("127.0.0.1:0".parse().unwrap(), upstream);
    cfg.timeout = Duration::from_millis(400);
    bind(cfg, policy).await.unwrap()
}

/// A running proxy with `cfg`, deciding with `policy`: its address, the answers it
/// recorded and its events.
pub(crate) async fn bind(
    cfg: ProxyConfig,
    policy: Arc<Engine>,
) -> Result<(SocketAddr, Answers, EventReceiver), palisade_dns::DnsError> {
    let (tx, events) = palisade_events::channel(1000);
    let answers: Answers = Arc::default();
    let sink = Arc::clone(&answers);
    let e = Some(policy);
    let proxy = DnsProxy::bind(
        cfg,
        move || e.clone(),
        tx,
        move |client, rs: &[Resolved]| {
            let mut a = sink.lock().unwrap();
            a.extend(rs.iter().map(|r| (client, r.clone())));
        },
    )
    .await?;
    let addr = proxy.local_addr().unwrap();
    tokio::spawn(proxy.run());
    Ok((addr, answers, events))
}

/// A response to `q` (its id and question) with `answers`.
pub(crate) fn response(q: &Message, answers: Vec<Record>) -> Vec<u8> {
    let mut m = Message::response(q.metadata.id, OpCode::Query);
    m.metadata.recursion_desired = q.metadata.recursion_desired;
    m.metadata.recursion_available = true;
    m.add_queries(q.queries.clone());
    m.add_answers(answers);
    m.to_vec().unwrap()
}

pub(crate) fn a(owner: &Name, ttl: u32, ip: [u8; 4]) -> Record {
    Record::from_rdata(
        owner.clone(),
        ttl,
        RData::A(A::new(ip[0], ip[1], ip[2], ip[3])),
    )
}

/// Every query is answered with `A 192.0.2.99` for its own name.
pub(crate) fn answer_everything() -> Responder {
    Arc::new(|q: &Message| match q.queries.first() {
        Some(question) => vec![response(q, vec![a(&question.name, 30, [192, 0, 2, 99])])],
        None => Vec::new(),
    })
}

/// A query with one question whose name is the raw `labels`, as a header plus question
/// written by hand (hickory will not build every such name).
pub(crate) fn raw_query(id: u16, labels: &[&[u8]], qtype: u16) -> Vec<u8> {
    let mut p = id.to_be_bytes().to_vec();
    p.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for l in labels {
        p.push(u8::try_from(l.len()).unwrap());
        p.extend_from_slice(l);
    }
    p.push(0);
    p.extend_from_slice(&qtype.to_be_bytes());
    p.extend_from_slice(&1u16.to_be_bytes());
    p
}

pub(crate) async fn ask_tcp(proxy: SocketAddr, packet: &[u8]) -> Option<Message> {
    let mut c = TcpStream::connect(proxy).await.unwrap();
    c.write_all(&u16::try_from(packet.len()).unwrap().to_be_bytes())
        .await
        .unwrap();
    c.write_all(packet).await.unwrap();
    let len = tokio::time::timeout(Duration::from_secs(2), c.read_u16())
        .await
        .ok()?
        .ok()?;
    let mut buf = vec![0u8; usize::from(len)];
    c.read_exact(&mut buf).await.ok()?;
    Some(Message::from_vec(&buf).unwrap())
}

pub(crate) fn dns_body(e: &Event) -> &palisade_events::DnsInfo {
    match &e.body {
        EventBody::Dns(d) => d,
        other => panic!("a dns event, not {other:?}"),
    }
}
