//! The forwarding proxy: UDP and TCP (2-byte length framing) on one port.
//!
//! Each allowed query is sent to the upstream from its own socket (so answers cannot be
//! confused between clients) and waited for with a timeout; a timeout or an unreadable
//! answer is a SERVFAIL. Work is bounded: at most `max_in_flight` queries (UDP) and as many
//! TCP connections are handled at once; beyond that, packets are dropped and counted, and
//! clients retry.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, MessageType, ResponseCode};
use palisade_events::EventSender;
use palisade_policy::{Engine, Posture};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::Semaphore;
use tokio::time::timeout;

use crate::answers::{addresses, Resolved};
use crate::decide::{decide, rcode_name, reply_with, Decision, DenyRcode};
use crate::event::{dns_event, Origin, QueryLog};
use crate::DnsError;

/// Largest DNS message (TCP length prefix, or a UDP datagram).
const MAX_MESSAGE: usize = 65_535;
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
    /// Cluster and node, for events.
    pub origin: Origin,
}

impl ProxyConfig {
    /// Defaults: 2 s upstream timeout, REFUSED for denied names, 1024 queries in flight.
    pub fn new(listen: SocketAddr, upstream: SocketAddr) -> Self {
        ProxyConfig {
            listen,
            upstream,
            timeout: Duration::from_secs(2),
            deny: DenyRcode::Refused,
            max_in_flight: 1024,
            origin: Origin::default(),
        }
    }
}

/// Where the proxy gets the current policy: `None` until a good one has been loaded (the
/// proxy then refuses every query).
pub type EngineSource = dyn Fn() -> Option<Arc<Engine>> + Send + Sync;

/// Called for every address in an allowed answer, with the client's address.
pub type AnswerSink = dyn Fn(IpAddr, &Resolved) + Send + Sync;

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
}

struct Shared {
    cfg: ProxyConfig,
    engine: Box<EngineSource>,
    events: EventSender,
    on_answer: Box<AnswerSink>,
    stats: Arc<ProxyStats>,
}

/// A bound DNS proxy; [`DnsProxy::run`] serves it.
pub struct DnsProxy {
    udp: Arc<UdpSocket>,
    tcp: TcpListener,
    shared: Arc<Shared>,
}

impl DnsProxy {
    /// Binds UDP and TCP on `cfg.listen` (with port 0, TCP takes the port UDP got).
    pub async fn bind(
        cfg: ProxyConfig,
        engine: impl Fn() -> Option<Arc<Engine>> + Send + Sync + 'static,
        events: EventSender,
        on_answer: impl Fn(IpAddr, &Resolved) + Send + Sync + 'static,
    ) -> Result<DnsProxy, DnsError> {
        let bind_err = |addr| move |source| DnsError::Bind { addr, source };
        let udp = UdpSocket::bind(cfg.listen)
            .await
            .map_err(bind_err(cfg.listen))?;
        let addr = udp.local_addr().map_err(bind_err(cfg.listen))?;
        let tcp = TcpListener::bind(addr).await.map_err(bind_err(addr))?;
        Ok(DnsProxy {
            udp: Arc::new(udp),
            tcp,
            shared: Arc::new(Shared {
                cfg,
                engine: Box::new(engine),
                events,
                on_answer: Box::new(on_answer),
                stats: Arc::default(),
            }),
        })
    }

    /// The address served.
    pub fn local_addr(&self) -> Result<SocketAddr, DnsError> {
        self.udp.local_addr().map_err(DnsError::Io)
    }

    /// Counters, shared with the running proxy.
    pub fn stats(&self) -> Arc<ProxyStats> {
        Arc::clone(&self.shared.stats)
    }

    /// Serves until the task is dropped or a socket fails.
    pub async fn run(self) -> Result<(), DnsError> {
        let DnsProxy { udp, tcp, shared } = self;
        let limit = shared.cfg.max_in_flight.max(1);
        let tcp_task = tokio::spawn(serve_tcp(tcp, Arc::clone(&shared), limit));
        let result = serve_udp(udp, shared, limit).await;
        tcp_task.abort();
        result
    }
}

async fn serve_udp(
    sock: Arc<UdpSocket>,
    shared: Arc<Shared>,
    limit: usize,
) -> Result<(), DnsError> {
    let permits = Arc::new(Semaphore::new(limit));
    let mut buf = vec![0u8; MAX_MESSAGE];
    loop {
        let (n, peer) = match sock.recv_from(&mut buf).await {
            Ok(x) => x,
            // ICMP errors from earlier sends surface here on some systems; keep serving.
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => continue,
            Err(e) => return Err(DnsError::Io(e)),
        };
        let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else {
            shared.stats.dropped.fetch_add(1, Ordering::Relaxed);
            continue;
        };
        let packet = buf[..n].to_vec();
        let (sock, shared) = (Arc::clone(&sock), Arc::clone(&shared));
        tokio::spawn(async move {
            if let Some(reply) = handle(&shared, peer.ip(), &packet, false).await {
                if let Err(e) = sock.send_to(&reply, peer).await {
                    tracing::debug!(%peer, error = %e, "dns reply not sent");
                }
            }
            drop(permit);
        });
    }
}

async fn serve_tcp(listener: TcpListener, shared: Arc<Shared>, limit: usize) {
    let permits = Arc::new(Semaphore::new(limit));
    loop {
        let Ok((stream, peer)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else {
            shared.stats.dropped.fetch_add(1, Ordering::Relaxed);
            continue;
        };
        let shared = Arc::clone(&shared);
        tokio::spawn(async move {
            tcp_client(stream, peer.ip(), &shared).await;
            drop(permit);
        });
    }
}

/// Serves the queries of one TCP client, one after another.
async fn tcp_client(mut stream: TcpStream, client: IpAddr, shared: &Shared) {
    loop {
        let packet = match timeout(TCP_IDLE, read_framed(&mut stream)).await {
            Ok(Ok(p)) => p,
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
    let engine = (shared.engine)();
    let pod = engine.as_ref().and_then(|e| e.pod_by_ip(client));
    let mut decision = None;
    let outcome = decide(
        packet,
        |q| {
            let (allowed, policy) = match (&engine, pod) {
                (Some(e), Some(p)) => {
                    let d = e.dns_decision(p, &q.name);
                    (d.allowed, d.policy)
                }
                // Not a pod: only a zero-trust posture restricts it.
                (Some(e), None) => (e.posture() == Posture::Allow, None),
                // No good policy yet: fail closed.
                (None, _) => (false, None),
            };
            decision = Some((allowed, policy));
            allowed
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
            log.query = q.name;
            log.qtype = q.qtype.to_string();
            log.rcode = rcode_name(rcode);
            bytes
        }
        Decision::Forward(q) => {
            log.query = q.name;
            log.qtype = q.qtype.to_string();
            match forward(&shared.cfg, packet, q.id, tcp).await {
                Ok((bytes, msg)) => {
                    let summary = addresses(&msg, &log.query);
                    for r in &summary.addresses {
                        (shared.on_answer)(client, r);
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
            forward_udp(cfg.upstream, packet, id).await
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
    let mut s = TcpStream::connect(upstream).await?;
    write_framed(&mut s, packet).await?;
    loop {
        let answer = read_framed(&mut s).await?;
        if let Some(msg) = matching(&answer, id) {
            return Ok((answer, msg));
        }
    }
}

async fn forward_udp(
    upstream: SocketAddr,
    packet: &[u8],
    id: u16,
) -> std::io::Result<(Vec<u8>, Message)> {
    let local: IpAddr = match upstream {
        SocketAddr::V4(_) => Ipv4Addr::UNSPECIFIED.into(),
        SocketAddr::V6(_) => Ipv6Addr::UNSPECIFIED.into(),
    };
    let sock = UdpSocket::bind((local, 0)).await?;
    sock.connect(upstream).await?;
    sock.send(packet).await?;
    let mut buf = vec![0u8; MAX_MESSAGE];
    loop {
        let n = sock.recv(&mut buf).await?;
        // Anything else (a stray or forged datagram) is ignored until the deadline.
        if let Some(msg) = matching(&buf[..n], id) {
            buf.truncate(n);
            return Ok((buf, msg));
        }
    }
}

/// The parsed answer, when `bytes` is a response with our id.
fn matching(bytes: &[u8], id: u16) -> Option<Message> {
    let msg = Message::from_vec(bytes).ok()?;
    (msg.metadata.id == id && msg.metadata.message_type == MessageType::Response).then_some(msg)
}
