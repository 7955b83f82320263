//! The forwarding proxy: UDP (see [`crate::udp`]) and TCP (2-byte length framing) on one
//! port, both bound with `SO_REUSEPORT` so a new proxy process can take over the port while
//! the old one still serves (restarts without lost queries).
//!
//! Over TCP each allowed query is sent to the upstream over its own connection and waited
//! for with a timeout; a timeout or an unreadable answer is a SERVFAIL. Work is bounded: at
//! most `max_in_flight` forwarded queries per UDP worker and as many TCP connections are
//! handled at once, and at most `max_in_flight_per_client` / `max_tcp_per_client` of them
//! for one client address; beyond that, packets are dropped and counted, and clients retry.
//! Each client address may also send at most `query_rate` queries a second (`query_burst`
//! at once, [`crate::rate`]); queries over it are answered `REFUSED` before anything else
//! is done with them.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, MessageType, ResponseCode};
use palisade_events::EventSender;
use palisade_policy::{Engine, Posture};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::time::timeout;

use crate::answers::{addresses, Resolved};
use crate::decide::{decide, rcode_name, reply_with, Decision, DenyRcode};
use crate::event::{dns_event, Origin, QueryLog};
use crate::rate::{Admit, SharedRates};
use crate::DnsError;

/// How long an idle TCP client connection is kept.
const TCP_IDLE: Duration = Duration::from_secs(10);

/// How the proxy runs.
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    /// Address to serve on (UDP and TCP).
    pub listen: SocketAddr,
    /// The resolver allowed queries are forwarded to.
    pub upstream: SocketAddr,
    /// How long to wait for the upstream.
    pub timeout: Duration,
    /// The answer to names the policy does not allow.
    pub deny: DenyRcode,
    /// Queries (and TCP connections) handled at once.
    pub max_in_flight: usize,
    /// Forwarded UDP queries one client address may have in flight per worker (default
    /// 256): one pod cannot take the room of the others, whatever it asks.
    pub max_in_flight_per_client: usize,
    /// TCP connections one client address may hold at once (default 32).
    pub max_tcp_per_client: usize,
    /// Queries one client address may send per second, over UDP (whichever worker) and TCP
    /// together (default [`crate::rate::DEFAULT_QPS`]; 0: no limit). Beyond it (and its burst) the
    /// client's queries are answered `REFUSED` without being decided or forwarded.
    pub query_rate: u32,
    /// Queries one client address may send at once above `query_rate` (default
    /// [`crate::rate::DEFAULT_BURST`]).
    pub query_burst: u32,
    /// Cluster and node, for events.
    pub origin: Origin,
    /// UDP workers (each a listening socket and two threads).
    pub udp_workers: usize,
    /// 0x20 mixing of forwarded UDP questions ([`crate::mixed_case`]); on by default. Off
    /// only for an upstream that echoes the case of some answers and not of others (a
    /// worker turns it off by itself for one that never echoes it).
    pub mix_case: bool,
    /// The cluster's own networks (`spec.clusterNetworks`): no address in them is opened
    /// for a name, as for pods' addresses ([`crate::answers::may_open`]).
    pub cluster_networks: Vec<palisade_policy::cidr::Cidr>,
}

impl ProxyConfig {
    /// Whether `ip` belongs to the cluster itself: a pod's (by `engine`) or inside one of
    /// [`ProxyConfig::cluster_networks`]. No name opens such an address.
    pub fn inside_cluster(&self, engine: Option<&Engine>, ip: std::net::IpAddr) -> bool {
        Engine::inside_cluster(engine, &self.cluster_networks, ip)
    }

    /// Defaults: 2 s upstream timeout, REFUSED for denied names, 4096 queries in flight per
    /// UDP worker, one worker per core (at most 4).
    pub fn new(listen: SocketAddr, upstream: SocketAddr) -> Self {
        ProxyConfig {
            listen,
            upstream,
            timeout: Duration::from_secs(2),
            deny: DenyRcode::Refused,
            max_in_flight: 4096,
            max_in_flight_per_client: 256,
            max_tcp_per_client: 32,
            query_rate: crate::rate::DEFAULT_QPS,
            query_burst: crate::rate::DEFAULT_BURST,
            origin: Origin::default(),
            udp_workers: std::thread::available_parallelism()
                .map(|n| n.get().min(4))
                .unwrap_or(2),
            mix_case: true,
            cluster_networks: Vec::new(),
        }
    }
}

/// Where the proxy gets the current policy: `None` until a good one has been loaded (the
/// proxy then refuses every query).
pub type EngineSource = dyn Fn() -> Option<Arc<Engine>> + Send + Sync;

/// Called once per allowed answer with the client's address and the answer's addresses that
/// may be opened, in answer order (never with none): the addresses of one answer are
/// recorded together, so that a bound on them keeps the first ones, which clients use.
pub type AnswerSink = dyn Fn(IpAddr, &[Resolved]) + Send + Sync;

/// Counters of a running proxy.
#[derive(Debug, Default)]
pub struct ProxyStats {
    /// Queries answered (forwarded, refused or failed).
    pub answered: AtomicU64,
    /// Queries refused by policy.
    pub refused: AtomicU64,
    /// Packets dropped: garbage, or over the in-flight limit.
    pub dropped: AtomicU64,
    /// Upstream timeouts and errors (answered SERVFAIL).
    pub upstream_errors: AtomicU64,
    /// Queries over their client's rate limit (answered REFUSED, or dropped when they
    /// cannot be answered).
    pub rate_limited: AtomicU64,
}

pub(crate) struct Shared {
    pub(crate) cfg: ProxyConfig,
    pub(crate) engine: Box<EngineSource>,
    pub(crate) events: EventSender,
    pub(crate) on_answer: Box<AnswerSink>,
    pub(crate) stats: Arc<ProxyStats>,
    /// The per-client rate limits, shared by the UDP workers and the TCP path.
    pub(crate) rates: SharedRates,
}

/// A query of `client` over its rate limit: counted, and when `note`, logged and made a
/// `dns` event (verdict deny, `REFUSED`, no deciding policy). Returns the reply (`None`:
/// drop it) and the event.
pub(crate) fn over_rate(
    shared: &Shared,
    client: IpAddr,
    packet: &[u8],
    note: bool,
    tcp: bool,
    start: Instant,
) -> (Option<Vec<u8>>, Option<palisade_events::Event>) {
    shared.stats.rate_limited.fetch_add(1, Ordering::Relaxed);
    let reply = crate::wire::refusal(packet);
    if reply.is_some() {
        shared.stats.answered.fetch_add(1, Ordering::Relaxed);
    }
    if !note {
        return (reply, None);
    }
    tracing::warn!(
        %client,
        rate = shared.cfg.query_rate,
        burst = shared.cfg.query_burst,
        "DNS queries over the client's rate limit are refused (noted once a second)"
    );
    let engine = (shared.engine)();
    let pod = engine.as_ref().and_then(|e| e.pod_by_ip(client));
    let mut log = QueryLog {
        client: Some(client),
        pod,
        allowed: false,
        tcp,
        rcode: rcode_name(ResponseCode::Refused),
        ..QueryLog::default()
    };
    if let Some(q) = crate::wire::quick_query(packet) {
        log.features = Some(crate::wire::name_features(&q.name));
        log.qtype = hickory_proto::rr::RecordType::from(q.qtype).to_string();
        log.query = q.name;
    }
    log.latency_us = u64::try_from(start.elapsed().as_micros()).unwrap_or(u64::MAX);
    let event = dns_event(engine.as_deref(), &shared.cfg.origin, log);
    (reply, Some(event))
}

/// Whether the client (`pod`, when known) may resolve `name`, and the deciding rule.
pub(crate) fn policy_decision(
    engine: Option<&Engine>,
    pod: Option<palisade_policy::PodId>,
    name: &str,
) -> (bool, Option<palisade_policy::PolicyRef>) {
    if !crate::names::matchable(name) {
        return odd_name_decision(engine, pod, name);
    }
    match (engine, pod) {
        (Some(e), Some(p)) => {
            let d = e.dns_decision(p, name);
            (d.allowed, d.policy)
        }
        // Not a pod: only a zero-trust posture restricts it.
        (Some(e), None) => (e.posture() == Posture::Allow, None),
        // No good policy yet: fail closed.
        (None, _) => (false, None),
    }
}

/// The decision for a name with a label no pattern can mean (a '.', '*', space or raw
/// UTF-8 inside, see [`crate::names`]). No reading of such a name is right for every
/// pattern: read as matching no pattern, an allow list stays closed but a Deny of
/// `**.blocked.test` would let `a b.blocked.test` through; split at its escaped dots, a
/// Deny of `*.x.test` would miss `a.b` under `x.test`. So it fails closed: a pod whose
/// egress is governed by names gets every such name refused (unless only Audit-mode
/// policy would refuse it), with the rule that denies it read either way, when one does.
/// Ungoverned pods and clients that are no pod resolve it as any other name.
fn odd_name_decision(
    engine: Option<&Engine>,
    pod: Option<palisade_policy::PodId>,
    name: &str,
) -> (bool, Option<palisade_policy::PolicyRef>) {
    let (Some(e), Some(p)) = (engine, pod) else {
        return policy_decision(engine, None, "");
    };
    let as_none = e.dns_decision(p, "");
    if !as_none.governed {
        return (true, None);
    }
    if !as_none.allowed {
        return (false, as_none.policy);
    }
    let as_split = e.dns_decision(p, name);
    if !as_split.allowed {
        return (false, as_split.policy);
    }
    let audit = |d: &palisade_policy::engine::DnsDecision| {
        d.policy
            .as_ref()
            .is_some_and(|r| r.mode == palisade_policy::Mode::Audit)
    };
    if audit(&as_none) || audit(&as_split) {
        // Audit mode logs what it would deny and denies nothing.
        return (true, as_split.policy.or(as_none.policy));
    }
    (false, None)
}

/// A bound DNS proxy; [`DnsProxy::run`] serves it.
pub struct DnsProxy {
    udp: Vec<std::net::UdpSocket>,
    addr: SocketAddr,
    tcp: TcpListener,
    shared: Arc<Shared>,
}

/// Sets the flag when dropped: the UDP threads stop when the serving future goes away.
struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

fn bind_tcp(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let s = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )?;
    s.set_reuse_address(true)?;
    s.set_reuse_port(true)?;
    s.set_nonblocking(true)?;
    s.bind(&addr.into())?;
    s.listen(1024)?;
    TcpListener::from_std(s.into())
}

impl DnsProxy {
    /// Binds UDP and TCP on `cfg.listen` (with port 0, TCP takes the port UDP got).
    pub async fn bind(
        cfg: ProxyConfig,
        engine: impl Fn() -> Option<Arc<Engine>> + Send + Sync + 'static,
        events: EventSender,
        on_answer: impl Fn(IpAddr, &[Resolved]) + Send + Sync + 'static,
    ) -> Result<DnsProxy, DnsError> {
        let bind_err = |addr| move |source| DnsError::Bind { addr, source };
        // With port 0 the UDP port is the kernel's choice and TCP must take the same one,
        // which another socket may hold: try again with another port a few times.
        let mut attempt = 0;
        let (udp, addr, tcp) = loop {
            attempt += 1;
            let first = crate::udp::bind(cfg.listen).map_err(bind_err(cfg.listen))?;
            let addr = first.local_addr().map_err(bind_err(cfg.listen))?;
            let mut udp = vec![first];
            for _ in 1..cfg.udp_workers.max(1) {
                udp.push(crate::udp::bind(addr).map_err(bind_err(addr))?);
            }
            match bind_tcp(addr) {
                Ok(tcp) => break (udp, addr, tcp),
                Err(e)
                    if cfg.listen.port() == 0
                        && e.kind() == std::io::ErrorKind::AddrInUse
                        && attempt < 16 => {}
                Err(e) => return Err(bind_err(addr)(e)),
            }
        };
        Ok(DnsProxy {
            udp,
            addr,
            tcp,
            shared: Arc::new(Shared {
                engine: Box::new(engine),
                events,
                rates: SharedRates::new(cfg.query_rate, cfg.query_burst),
                cfg,
                on_answer: Box::new(on_answer),
                stats: Arc::default(),
            }),
        })
    }

    /// The address served.
    pub fn local_addr(&self) -> Result<SocketAddr, DnsError> {
        Ok(self.addr)
    }

    /// Counters, shared with the running proxy.
    pub fn stats(&self) -> Arc<ProxyStats> {
        Arc::clone(&self.shared.stats)
    }

    /// Serves until the future is dropped or a socket fails.
    pub async fn run(self) -> Result<(), DnsError> {
        let DnsProxy {
            udp, tcp, shared, ..
        } = self;
        let stop = Arc::new(AtomicBool::new(false));
        let _stop_on_drop = StopOnDrop(Arc::clone(&stop));
        let limit = shared.cfg.max_in_flight.max(1);
        let tcp_task = tokio::spawn(serve_tcp(tcp, Arc::clone(&shared), limit));
        let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel();
        for sock in udp {
            crate::udp::spawn_worker(
                Arc::clone(&shared),
                sock,
                Arc::clone(&stop),
                done_tx.clone(),
            )
            .map_err(DnsError::Io)?;
        }
        drop(done_tx);
        // Workers end only when stopped or on a socket failure.
        let result = match done_rx.recv().await {
            Some(Err(e)) => Err(DnsError::Io(e)),
            _ => Ok(()),
        };
        stop.store(true, Ordering::Relaxed);
        tcp_task.abort();
        result
    }
}

/// TCP connections held per client address.
type TcpCounts = Arc<std::sync::Mutex<HashMap<IpAddr, usize>>>;

/// One client's TCP connection, counted while it lives.
struct TcpSlot {
    counts: TcpCounts,
    client: IpAddr,
}

impl TcpSlot {
    /// Counts a connection of `client`, unless it already holds `limit`.
    fn take(counts: &TcpCounts, client: IpAddr, limit: usize) -> Option<TcpSlot> {
        let mut c = counts.lock().ok()?;
        let n = c.entry(client).or_default();
        if *n >= limit {
            return None;
        }
        *n += 1;
        Some(TcpSlot {
            counts: Arc::clone(counts),
            client,
        })
    }
}

impl Drop for TcpSlot {
    fn drop(&mut self) {
        if let Ok(mut c) = self.counts.lock() {
            if let std::collections::hash_map::Entry::Occupied(mut n) = c.entry(self.client) {
                *n.get_mut() -= 1;
                if *n.get() == 0 {
                    n.remove();
                }
            }
        }
    }
}

async fn serve_tcp(listener: TcpListener, shared: Arc<Shared>, limit: usize) {
    let permits = Arc::new(Semaphore::new(limit));
    let per_client = shared.cfg.max_tcp_per_client.clamp(1, limit);
    let counts: TcpCounts = Arc::default();
    loop {
        let Ok((stream, peer)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        // `::ffff:a.b.c.d` on a dual-stack socket is the IPv4 client a.b.c.d.
        let client = peer.ip().to_canonical();
        // One client cannot hold every connection (idle ones wait TCP_IDLE each) and shut
        // the others out.
        let Some(slot) = TcpSlot::take(&counts, client, per_client) else {
            shared.stats.dropped.fetch_add(1, Ordering::Relaxed);
            continue;
        };
        let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else {
            shared.stats.dropped.fetch_add(1, Ordering::Relaxed);
            continue;
        };
        let shared = Arc::clone(&shared);
        tokio::spawn(async move {
            tcp_client(stream, client, &shared).await;
            drop(permit);
            drop(slot);
        });
    }
}

/// Serves the queries of one TCP client, one after another.
async fn tcp_client(mut stream: TcpStream, client: IpAddr, shared: &Shared) {
    loop {
        let packet = match timeout(TCP_IDLE, read_query(&mut stream)).await {
            Ok(Ok(Some(p))) => p,
            Ok(Ok(None)) => {
                // Larger than any query over UDP: closed unread, as UDP drops it.
                shared.stats.dropped.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(%client, "closed a TCP connection sending an over-long query");
                return;
            }
            _ => return,
        };
        let Some(reply) = handle(shared, client, &packet, true).await else {
            return;
        };
        if write_framed(&mut stream, &reply).await.is_err() {
            return;
        }
    }
}

/// Reads one client query; `None` (nothing read past its length) when it is longer than
/// [`crate::MAX_QUERY`].
async fn read_query(stream: &mut TcpStream) -> std::io::Result<Option<Vec<u8>>> {
    let len = usize::from(stream.read_u16().await?);
    if len > crate::MAX_QUERY {
        return Ok(None);
    }
    let mut packet = vec![0u8; len];
    stream.read_exact(&mut packet).await?;
    Ok(Some(packet))
}

async fn read_framed(stream: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let len = stream.read_u16().await?;
    let mut packet = vec![0u8; usize::from(len)];
    stream.read_exact(&mut packet).await?;
    Ok(packet)
}

async fn write_framed(stream: &mut TcpStream, msg: &[u8]) -> std::io::Result<()> {
    let len = u16::try_from(msg.len())
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidData, "message too long"))?;
    let mut out = Vec::with_capacity(msg.len() + 2);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(msg);
    stream.write_all(&out).await
}

/// Answers one packet from `client`; `None` drops it.
async fn handle(shared: &Shared, client: IpAddr, packet: &[u8], tcp: bool) -> Option<Vec<u8>> {
    let start = Instant::now();
    let admit = shared.rates.check(client, start);
    if let Admit::Limited { note } = admit {
        let (reply, event) = over_rate(shared, client, packet, note, true, start);
        if let Some(e) = event {
            shared.events.try_send(e);
        }
        return reply;
    }
    let engine = (shared.engine)();
    let pod = engine.as_ref().and_then(|e| e.pod_by_ip(client));
    let mut decision = None;
    let outcome = decide(
        packet,
        |q| {
            let d = policy_decision(engine.as_deref(), pod, &q.name);
            decision = Some(d.clone());
            d.0
        },
        shared.cfg.deny,
    );
    let (allowed, policy) = decision.unwrap_or((false, None));
    let mut log = QueryLog {
        client: Some(client),
        pod,
        allowed,
        policy,
        tcp,
        ..QueryLog::default()
    };
    let reply = match outcome {
        Decision::Drop => {
            shared.stats.dropped.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(%client, "dropped a packet that is not a DNS query");
            return None;
        }
        Decision::Reply {
            question: None,
            rcode,
            bytes,
        } => {
            tracing::debug!(%client, rcode = %rcode_name(rcode), "malformed DNS query");
            shared.stats.answered.fetch_add(1, Ordering::Relaxed);
            return Some(bytes);
        }
        Decision::Reply {
            question: Some(q),
            rcode,
            bytes,
        } => {
            shared.stats.refused.fetch_add(1, Ordering::Relaxed);
            log.features = Some(crate::wire::name_features(&q.name));
            log.query = q.name;
            log.qtype = q.qtype.to_string();
            log.rcode = rcode_name(rcode);
            bytes
        }
        Decision::Forward(q) => {
            log.features = Some(crate::wire::name_features(&q.name));
            log.query = q.name;
            log.qtype = q.qtype.to_string();
            match forward(&shared.cfg, packet, q.id, tcp).await {
                Ok((bytes, msg)) => {
                    let mut summary = addresses(&msg, &log.query);
                    // As over UDP: only a NOERROR answer opens addresses.
                    if msg.metadata.response_code == ResponseCode::NoError {
                        let is_pod = |ip| shared.cfg.inside_cluster(engine.as_deref(), ip);
                        summary
                            .addresses
                            .retain(|r| crate::answers::may_open(r.ip, is_pod));
                        if !summary.addresses.is_empty() {
                            (shared.on_answer)(client, &summary.addresses);
                        }
                    }
                    log.rcode = rcode_name(msg.metadata.response_code);
                    log.answers = Some(summary.records);
                    log.ttl = summary.min_ttl;
                    bytes
                }
                Err(e) => {
                    shared.stats.upstream_errors.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(upstream = %shared.cfg.upstream, error = %e, "dns upstream failed");
                    log.rcode = rcode_name(ResponseCode::ServFail);
                    reply_with(packet, ResponseCode::ServFail)?
                }
            }
        }
    };
    shared.stats.answered.fetch_add(1, Ordering::Relaxed);
    log.latency_us = u64::try_from(start.elapsed().as_micros()).unwrap_or(u64::MAX);
    let event = dns_event(engine.as_deref(), &shared.cfg.origin, log);
    shared.events.try_send(event);
    Some(reply)
}

/// Sends `packet` to the upstream and returns its answer, raw and parsed.
async fn forward(
    cfg: &ProxyConfig,
    packet: &[u8],
    id: u16,
    tcp: bool,
) -> Result<(Vec<u8>, Message), DnsError> {
    let exchange = async {
        if tcp {
            forward_tcp(cfg.upstream, packet, id).await
        } else {
            Err(std::io::Error::other(
                "UDP queries are served by the UDP workers",
            ))
        }
    };
    match timeout(cfg.timeout, exchange).await {
        Ok(r) => r.map_err(DnsError::Upstream),
        Err(_) => Err(DnsError::UpstreamTimeout(cfg.timeout)),
    }
}

async fn forward_tcp(
    upstream: SocketAddr,
    packet: &[u8],
    id: u16,
) -> std::io::Result<(Vec<u8>, Message)> {
    // The parser accepted the query, so its question is written out (no pointers).
    let question = crate::wire::plain_question_end(packet)
        .and_then(|end| packet.get(crate::wire::HEADER_LEN..end))
        .ok_or_else(|| std::io::Error::other("query without a plain question"))?;
    let mut s = TcpStream::connect(upstream).await?;
    write_framed(&mut s, packet).await?;
    loop {
        let answer = read_framed(&mut s).await?;
        if let Some(msg) = matching(&answer, id, question) {
            return Ok((answer, msg));
        }
    }
}

/// The parsed answer, when `bytes` is a response with our id that echoes `question` (the
/// question section as sent): anything else is not the answer to this query.
fn matching(bytes: &[u8], id: u16, question: &[u8]) -> Option<Message> {
    if !crate::wire::answers_question(bytes, question) {
        return None;
    }
    let msg = Message::from_vec(bytes).ok()?;
    (msg.metadata.id == id && msg.metadata.message_type == MessageType::Response).then_some(msg)
}
