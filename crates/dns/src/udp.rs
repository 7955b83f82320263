//! The UDP path: a few workers, each with its own listening socket (`SO_REUSEPORT`, so the
//! kernel spreads clients over them, and a restarted proxy can take over the port before the
//! old one lets go) and its own small pool of upstream sockets on random ports, rotated
//! ([`crate::source_ports`]).
//!
//! A worker is two threads. The client side reads a query, decides it against the policy,
//! and either answers at once (refused, malformed) or forwards it under a fresh random id
//! with its letters in random case ([`crate::mixed_case`]) from a socket of the pool picked
//! at random, remembering the client and the socket. The upstream side reads answers,
//! matches them by socket, id *and* question (an answer that arrives on another socket, or
//! does not echo the question in the case sent, is ignored), restores the client's id and question,
//! reports the addresses, and replies. Queries the upstream leaves unanswered get
//! SERVFAIL after the timeout. Memory is bounded: at most `max_in_flight` forwarded queries
//! per worker; beyond that queries are dropped and counted, and clients retry.

use std::collections::HashMap;
use std::io::ErrorKind;
use std::io::{IoSlice, IoSliceMut};
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::RecordType;
use nix::errno::Errno;
use nix::sys::socket::{
    recvmmsg, sendmmsg, ControlMessage, MsgFlags, MultiHeaders, SockaddrStorage,
};

use crate::answers::addresses;
use crate::decide::{decide, rcode_name, Decision};
use crate::event::{dns_event, QueryLog};
use crate::mixed_case::{echoes_exactly, mix_case, CaseCheck};
use crate::proxy::{over_rate, policy_decision, Shared};
use crate::rate::Admit;
use crate::source_ports::{Reader, Source, Sources, POOL};
use crate::wire::{self, QuickQuery};

/// Largest UDP datagram.
const MAX_DATAGRAM: usize = 65_535;
/// How often blocked reads wake up to look at the stop flag and expired queries.
const TICK: Duration = Duration::from_millis(100);

/// Binds a UDP socket with `SO_REUSEPORT` (blocking, with a read timeout).
pub(crate) fn bind(addr: SocketAddr) -> std::io::Result<UdpSocket> {
    let s = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::DGRAM,
        Some(socket2::Protocol::UDP),
    )?;
    s.set_reuse_port(true)?;
    let _ = s.set_recv_buffer_size(4 << 20);
    let _ = s.set_send_buffer_size(4 << 20);
    s.bind(&addr.into())?;
    let s: UdpSocket = s.into();
    s.set_read_timeout(Some(TICK))?;
    Ok(s)
}

/// A forwarded query waiting for its answer.
struct Pending {
    client: SocketAddr,
    id: u16,
    flags: [u8; 2],
    /// The question section as the client sent it.
    question: Box<[u8]>,
    /// Whether the question went upstream in mixed case (then `sent` must come back).
    mixed: bool,
    /// The question section as sent upstream.
    sent: Box<[u8]>,
    /// The local port of the upstream socket it left from: the answer must come back there.
    port: u16,
    start: Instant,
    log: QueryLog,
}

/// Forwarded queries by upstream id.
struct Table {
    slots: HashMap<u16, Pending>,
    limit: usize,
    /// Forwarded queries in flight per client address (entries removed at 0).
    per_client: HashMap<IpAddr, usize>,
    /// At most this many of them per client: one pod flooding names whose answers never
    /// come (its own slow authoritative server) cannot take every slot.
    client_limit: usize,
    rng: u64,
    /// The pool socket the last query left from (the next one leaves from another).
    last_source: usize,
}

impl Table {
    fn new(limit: usize, client_limit: usize) -> Self {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0x9e37_79b9_7f4a_7c15)
            ^ (std::process::id() as u64).rotate_left(32);
        Table {
            slots: HashMap::with_capacity(limit.min(4096)),
            limit,
            per_client: HashMap::new(),
            client_limit: client_limit.clamp(1, limit.max(1)),
            rng: seed | 1,
            last_source: 0,
        }
    }

    fn next(&mut self) -> u16 {
        // xorshift64*: ids an off-path sender cannot predict from the previous ones.
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        (self.rng.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 48) as u16
    }

    fn insert(&mut self, p: Pending) -> Option<u16> {
        if self.slots.len() >= self.limit {
            return None;
        }
        let client = p.client.ip().to_canonical();
        if self
            .per_client
            .get(&client)
            .is_some_and(|n| *n >= self.client_limit)
        {
            return None;
        }
        for _ in 0..32 {
            let id = self.next();
            if let std::collections::hash_map::Entry::Vacant(v) = self.slots.entry(id) {
                v.insert(p);
                *self.per_client.entry(client).or_default() += 1;
                return Some(id);
            }
        }
        None
    }

    /// Takes the query forwarded under `id` out of the table.
    fn take(&mut self, id: u16) -> Option<Pending> {
        let p = self.slots.remove(&id)?;
        let client = p.client.ip().to_canonical();
        if let std::collections::hash_map::Entry::Occupied(mut n) = self.per_client.entry(client) {
            *n.get_mut() -= 1;
            if *n.get() == 0 {
                n.remove();
            }
        }
        Some(p)
    }

    /// A pool socket for the next query, at random among those but the last one used: two
    /// queries in a row never leave from the same port.
    fn source(&mut self, pool: usize) -> usize {
        if pool < 2 {
            return 0;
        }
        let skip = 1 + usize::from(self.next()) % (pool - 1);
        self.last_source = (self.last_source + skip) % pool;
        self.last_source
    }

    /// 64 random bits for the case of a question's letters.
    fn bits(&mut self) -> u64 {
        (0..4).fold(0, |acc, _| (acc << 16) | u64::from(self.next()))
    }

    fn expired(&mut self, now: Instant, timeout: Duration) -> Vec<Pending> {
        let ids: Vec<u16> = self
            .slots
            .iter()
            .filter(|(_, p)| now.duration_since(p.start) >= timeout)
            .map(|(id, _)| *id)
            .collect();
        ids.iter().filter_map(|id| self.take(*id)).collect()
    }
}

/// One worker's sockets and state.
struct Worker {
    shared: Arc<Shared>,
    listen: UdpSocket,
    /// The sockets queries leave from.
    sources: Sources,
    table: Mutex<Table>,
    stop: Arc<AtomicBool>,
    /// Whether this worker's upstream echoes the mixed case.
    case: CaseCheck,
}

/// Starts one worker on `listen` (two threads); `done` gets the result when it ends.
pub(crate) fn spawn_worker(
    shared: Arc<Shared>,
    listen: UdpSocket,
    stop: Arc<AtomicBool>,
    done: tokio::sync::mpsc::UnboundedSender<std::io::Result<()>>,
) -> std::io::Result<()> {
    let sources = Sources::new(shared.cfg.upstream)?;
    let limit = shared.cfg.max_in_flight.max(1);
    let client_limit = shared.cfg.max_in_flight_per_client;
    let mix_case = shared.cfg.mix_case;
    let w = Arc::new(Worker {
        shared,
        listen,
        sources,
        table: Mutex::new(Table::new(limit, client_limit)),
        stop,
        case: CaseCheck::new(mix_case),
    });
    for side in [Side::Clients, Side::Upstream] {
        let (w, done) = (Arc::clone(&w), done.clone());
        std::thread::Builder::new()
            .name(format!("dns-{side:?}").to_lowercase())
            .spawn(move || {
                let r = match side {
                    Side::Clients => w.serve_clients(),
                    Side::Upstream => w.serve_upstream(),
                };
                w.stop.store(true, Ordering::Relaxed);
                let _ = done.send(r);
            })?;
    }
    Ok(())
}

#[derive(Debug, Clone, Copy)]
enum Side {
    Clients,
    Upstream,
}

fn transient(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        ErrorKind::WouldBlock
            | ErrorKind::TimedOut
            | ErrorKind::Interrupted
            // ICMP errors from earlier sends surface on the next read.
            | ErrorKind::ConnectionRefused
            | ErrorKind::ConnectionReset
    )
}

/// Whether a read error says the socket or the call is broken (a bug here), rather than
/// reporting something the network sent: only then does a worker stop.
fn local_fault(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error().map(Errno::from_raw),
        Some(Errno::EBADF | Errno::EFAULT | Errno::EINVAL | Errno::ENOTSOCK)
    )
}

impl Worker {
    fn serve_clients(&self) -> std::io::Result<()> {
        let mut batch = RecvBatch::new(QUERY_SLOT);
        let mut events = Events::new();
        let mut out = Outbox::default();
        while !self.stop.load(Ordering::Relaxed) {
            let n = match batch.recv(&self.listen, MsgFlags::MSG_WAITFORONE) {
                Ok(n) => n,
                Err(e) if transient(&e) => {
                    events.flush(&self.shared);
                    continue;
                }
                Err(e) => return Err(e),
            };
            let pool = self.sources.current();
            for i in 0..n {
                let (len, peer, truncated) = batch.got[i];
                match peer {
                    Some(peer) if !truncated => {
                        let packet = &mut batch.bufs[i][..len];
                        self.on_query(packet, peer, &pool, &mut out, &mut events)
                    }
                    _ => {
                        self.shared.stats.dropped.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            for (to, source) in out.upstream.iter_mut().zip(pool.iter()) {
                to.flush(&source.sock);
            }
            out.clients.flush(&self.listen);
            events.flush_if_due(&self.shared);
        }
        events.flush(&self.shared);
        Ok(())
    }

    fn serve_upstream(&self) -> std::io::Result<()> {
        let mut batch = RecvBatch::new(MAX_DATAGRAM);
        let mut last_sweep = Instant::now();
        let mut events = Events::new();
        let mut replies = SendBatch::new();
        let mut reader = Reader::new();
        while !self.stop.load(Ordering::Relaxed) {
            reader.rotate_if_due(&self.sources, self.shared.cfg.timeout);
            let ready = reader.ready(&self.sources, TICK)?;
            if ready.is_empty() {
                events.flush(&self.shared);
            }
            for source in ready {
                match batch.recv(&source.sock, MsgFlags::MSG_DONTWAIT) {
                    Ok(n) => {
                        for i in 0..n {
                            let (len, _, truncated) = batch.got[i];
                            if !truncated {
                                let resp = &mut batch.bufs[i][..len];
                                self.on_answer(resp, source.port, &mut replies, &mut events);
                            }
                        }
                        replies.flush(&self.listen);
                        events.flush_if_due(&self.shared);
                    }
                    Err(e) if transient(&e) => {}
                    Err(e) if !local_fault(&e) => {
                        // An ICMP error for this socket's upstream exchange (protocol
                        // unreachable, administratively prohibited: what a firewall on the
                        // way sends, or an off-path host that guessed the port): reading it
                        // cleared it, and it is this socket's alone. Its queries get
                        // SERVFAIL when they expire; the worker goes on.
                        tracing::debug!(port = source.port, error = %e, "error on a DNS upstream socket");
                    }
                    Err(e) => return Err(e),
                }
            }
            if last_sweep.elapsed() >= TICK {
                last_sweep = Instant::now();
                self.sweep(&mut replies, &mut events);
                replies.flush(&self.listen);
                events.flush(&self.shared);
            }
        }
        events.flush(&self.shared);
        Ok(())
    }

    fn reply(&self, replies: &mut SendBatch, bytes: &[u8], to: SocketAddr) {
        replies.push(&self.listen, bytes, Some(to));
    }

    fn emit(
        &self,
        engine: Option<&palisade_policy::Engine>,
        mut log: QueryLog,
        start: Instant,
        events: &mut Events,
    ) {
        let s = &self.shared;
        s.stats.answered.fetch_add(1, Ordering::Relaxed);
        log.latency_us = u64::try_from(start.elapsed().as_micros()).unwrap_or(u64::MAX);
        events.push(dns_event(engine, &s.cfg.origin, log));
    }

    fn on_query(
        &self,
        packet: &mut [u8],
        peer: SocketAddr,
        pool: &[Arc<Source>],
        out: &mut Outbox,
        events: &mut Events,
    ) {
        let start = Instant::now();
        let s = &self.shared;
        // An IPv4 client of a dual-stack socket arrives as `::ffff:a.b.c.d`: it is the pod
        // (and the kernel element) at a.b.c.d.
        let client = peer.ip().to_canonical();
        // Before anything else is done with it: a client over its rate costs one lookup
        // (in the bucket every worker and the TCP path share).
        if let Admit::Limited { note } = s.rates.check(client, start) {
            let (reply, event) = over_rate(s, client, packet, note, false, start);
            if let Some(bytes) = reply {
                self.reply(&mut out.clients, &bytes, peer);
            }
            if let Some(e) = event {
                events.push(e);
            }
            return;
        }
        let engine = (s.engine)();
        let pod = engine.as_ref().and_then(|e| e.pod_by_ip(client));
        let Some(q) = wire::quick_query(packet) else {
            return self.slow_query(
                packet,
                peer,
                pool,
                engine.as_deref(),
                pod,
                start,
                out,
                events,
            );
        };
        let (allowed, policy) = policy_decision(engine.as_deref(), pod, &q.name);
        let features = Some(wire::name_features(&q.name));
        let mut log = QueryLog {
            client: Some(client),
            pod,
            allowed,
            policy,
            qtype: RecordType::from(q.qtype).to_string(),
            features,
            ..QueryLog::default()
        };
        let flags = [packet[2], packet[3]];
        let question = wire::question_bytes(packet, &q);
        if !allowed {
            let rcode = s.cfg.deny.rcode();
            let bytes = wire::error_reply(q.id, flags, question, u16::from(rcode) as u8);
            self.reply(&mut out.clients, &bytes, peer);
            s.stats.refused.fetch_add(1, Ordering::Relaxed);
            log.query = q.name;
            log.rcode = rcode_name(rcode);
            return self.emit(engine.as_deref(), log, start, events);
        }
        log.query = q.name.clone();
        self.forward(packet, peer, q, flags, log, start, pool, &mut out.upstream);
    }

    /// Queries the quick reader leaves alone: the full parser decides.
    #[allow(clippy::too_many_arguments)]
    fn slow_query(
        &self,
        packet: &mut [u8],
        peer: SocketAddr,
        pool: &[Arc<Source>],
        engine: Option<&palisade_policy::Engine>,
        pod: Option<palisade_policy::PodId>,
        start: Instant,
        out: &mut Outbox,
        events: &mut Events,
    ) {
        let s = &self.shared;
        let mut decision = None;
        let outcome = decide(
            packet,
            |q| {
                let d = policy_decision(engine, pod, &q.name);
                decision = Some(d.clone());
                d.0
            },
            s.cfg.deny,
        );
        let (allowed, policy) = decision.unwrap_or((false, None));
        let mut log = QueryLog {
            client: Some(peer.ip().to_canonical()),
            pod,
            allowed,
            policy,
            ..QueryLog::default()
        };
        match outcome {
            Decision::Drop => {
                s.stats.dropped.fetch_add(1, Ordering::Relaxed);
            }
            Decision::Reply {
                question: None,
                bytes,
                ..
            } => {
                self.reply(&mut out.clients, &bytes, peer);
                s.stats.answered.fetch_add(1, Ordering::Relaxed);
            }
            Decision::Reply {
                question: Some(q),
                rcode,
                bytes,
            } => {
                self.reply(&mut out.clients, &bytes, peer);
                s.stats.refused.fetch_add(1, Ordering::Relaxed);
                log.features = Some(wire::name_features(&q.name));
                log.query = q.name;
                log.qtype = q.qtype.to_string();
                log.rcode = rcode_name(rcode);
                self.emit(engine, log, start, events);
            }
            Decision::Forward(q) => {
                // A name with unusual bytes, or a compressed question: forward it with the
                // question as sent (the parser accepted exactly one).
                let Some(end) = wire::plain_question_end(packet) else {
                    s.stats.dropped.fetch_add(1, Ordering::Relaxed);
                    return;
                };
                log.features = Some(wire::name_features(&q.name));
                log.query = q.name.clone();
                log.qtype = q.qtype.to_string();
                let qq = QuickQuery {
                    id: q.id,
                    name: q.name,
                    qtype: u16::from(q.qtype),
                    qclass: 1,
                    question_end: end,
                };
                let flags = [packet[2], packet[3]];
                self.forward(packet, peer, qq, flags, log, start, pool, &mut out.upstream);
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn forward(
        &self,
        packet: &mut [u8],
        peer: SocketAddr,
        q: QuickQuery,
        flags: [u8; 2],
        log: QueryLog,
        start: Instant,
        pool: &[Arc<Source>],
        to_upstream: &mut [SendBatch; POOL],
    ) {
        let s = &self.shared;
        let question: Box<[u8]> = wire::question_bytes(packet, &q).into();
        let mixed = self.case.mixing();
        let mut slot = 0;
        let id = match self.table.lock() {
            Ok(mut t) => {
                slot = t.source(pool.len().min(POOL));
                let sent = match packet.get_mut(wire::HEADER_LEN..q.question_end) {
                    Some(section) if mixed => {
                        mix_case(section, || t.bits());
                        Box::from(&*section)
                    }
                    _ => question.clone(),
                };
                t.insert(Pending {
                    client: peer,
                    id: q.id,
                    flags,
                    question,
                    mixed,
                    sent,
                    port: pool.get(slot).map_or(0, |s| s.port),
                    start,
                    log,
                })
            }
            Err(_) => None,
        };
        let Some(id) = id else {
            s.stats.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        };
        wire::set_id(packet, id);
        // A query that cannot be sent is answered SERVFAIL by the sweep when it expires.
        if let Some(source) = pool.get(slot) {
            to_upstream[slot].push(&source.sock, packet, None);
        }
    }

    /// An answer read on the upstream socket bound to `port`.
    fn on_answer(&self, resp: &mut [u8], port: u16, replies: &mut SendBatch, events: &mut Events) {
        if resp.len() < wire::HEADER_LEN {
            return;
        }
        let id = u16::from_be_bytes([resp[0], resp[1]]);
        let pending = match self.table.lock() {
            Ok(mut t) => match t.slots.get(&id) {
                // On another socket than the query left from: not its answer (the id is
                // all a forger that sprays every port of the pool would have to guess).
                Some(p) if p.port != port => None,
                Some(p) if p.mixed && echoes_exactly(resp, &p.sent) => {
                    self.case.saw_exact_echo();
                    t.take(id)
                }
                Some(p) if p.mixed && wire::answers_question(resp, &p.sent) => {
                    // The right question in another case: forged, or an upstream that
                    // does not keep case. Not taken either way.
                    if self.case.saw_other_case() {
                        tracing::warn!(
                            upstream = %self.shared.cfg.upstream,
                            "the DNS upstream does not echo the question's case: 0x20 mixing off for this worker"
                        );
                    }
                    None
                }
                Some(p) if !p.mixed && wire::answers_question(resp, &p.question) => t.take(id),
                // Not ours (late, forged or mangled): leave the query waiting.
                _ => None,
            },
            Err(_) => None,
        };
        let Some(p) = pending else {
            return;
        };
        // The client gets its question back as it wrote it.
        if let Some(q) = resp.get_mut(wire::HEADER_LEN..wire::HEADER_LEN + p.question.len()) {
            q.copy_from_slice(&p.question);
        }
        let s = &self.shared;
        let engine = (s.engine)();
        let mut log = p.log;
        // The whole code, with an OPT record's extended bits (BADVERS is no NOERROR).
        let rcode = wire::full_rcode(resp);
        log.rcode = rcode_name(<ResponseCode as From<u16>>::from(rcode));
        if rcode == 0 && wire::answer_count(resp) > 0 {
            let summary = crate::answers::quick_addresses(resp, &log.query).or_else(|| {
                Message::from_vec(resp)
                    .ok()
                    // The header's 4 bits and an OPT record's extended ones: NOERROR only,
                    // as over TCP.
                    .filter(|msg| msg.metadata.response_code == ResponseCode::NoError)
                    .map(|msg| addresses(&msg, &log.query))
            });
            if let Some(mut summary) = summary {
                // Before the reply leaves: the client cannot connect before the kernel
                // lets it.
                let is_pod = |ip| self.shared.cfg.inside_cluster(engine.as_deref(), ip);
                summary
                    .addresses
                    .retain(|r| crate::answers::may_open(r.ip, is_pod));
                if !summary.addresses.is_empty() {
                    (s.on_answer)(p.client.ip().to_canonical(), &summary.addresses);
                }
                log.answers = Some(summary.records);
                log.ttl = summary.min_ttl;
            }
        } else {
            log.answers = Some(Vec::new());
        }
        wire::set_id(resp, p.id);
        self.reply(replies, resp, p.client);
        self.emit(engine.as_deref(), log, p.start, events);
    }

    fn sweep(&self, replies: &mut SendBatch, events: &mut Events) {
        let expired = match self.table.lock() {
            Ok(mut t) if !t.slots.is_empty() => t.expired(Instant::now(), self.shared.cfg.timeout),
            _ => return,
        };
        if expired.is_empty() {
            return;
        }
        let s = &self.shared;
        let engine = (s.engine)();
        for p in expired {
            s.stats.upstream_errors.fetch_add(1, Ordering::Relaxed);
            let bytes = wire::error_reply(p.id, p.flags, &p.question, 2);
            self.reply(replies, &bytes, p.client);
            let mut log = p.log;
            log.rcode = rcode_name(ResponseCode::ServFail);
            self.emit(engine.as_deref(), log, p.start, events);
        }
        tracing::warn!(upstream = %s.cfg.upstream, "dns upstream did not answer in time");
    }
}

/// Datagrams read per system call.
const RECV_BATCH: usize = 32;
/// Room for one client query (larger ones are dropped as truncated).
const QUERY_SLOT: usize = crate::MAX_QUERY;

/// Buffers for reading up to [`RECV_BATCH`] datagrams with one `recvmmsg(2)`: under load a
/// worker wakes once per batch instead of once per packet.
struct RecvBatch {
    headers: MultiHeaders<SockaddrStorage>,
    bufs: Vec<Vec<u8>>,
    /// (length, sender, truncated) of each datagram read.
    got: Vec<(usize, Option<SocketAddr>, bool)>,
}

impl RecvBatch {
    fn new(slot: usize) -> Self {
        RecvBatch {
            headers: MultiHeaders::preallocate(RECV_BATCH, None),
            bufs: (0..RECV_BATCH).map(|_| vec![0u8; slot]).collect(),
            got: Vec::with_capacity(RECV_BATCH),
        }
    }

    /// With `MSG_WAITFORONE`, blocks (up to the socket's read timeout) for at least one
    /// datagram; with `MSG_DONTWAIT`, does not block. Then takes what else is queued, up to
    /// the batch size.
    fn recv(&mut self, sock: &UdpSocket, flags: MsgFlags) -> std::io::Result<usize> {
        self.got.clear();
        let mut iovs: Vec<[IoSliceMut<'_>; 1]> = self
            .bufs
            .iter_mut()
            .map(|b| [IoSliceMut::new(b.as_mut_slice())])
            .collect();
        let got = recvmmsg(
            sock.as_raw_fd(),
            &mut self.headers,
            iovs.iter_mut(),
            flags,
            None,
        )
        .map_err(std::io::Error::from)?;
        for m in got {
            let from = m.address.and_then(|a: SockaddrStorage| {
                if let Some(v4) = a.as_sockaddr_in() {
                    Some(SocketAddr::V4((*v4).into()))
                } else {
                    a.as_sockaddr_in6().map(|v6| SocketAddr::V6((*v6).into()))
                }
            });
            self.got
                .push((m.bytes, from, m.flags.contains(MsgFlags::MSG_TRUNC)));
        }
        Ok(self.got.len())
    }
}

/// Datagrams waiting to leave one socket, sent with one `sendmmsg(2)` per batch read
/// instead of one system call each.
struct SendBatch {
    headers: MultiHeaders<SockaddrStorage>,
    /// The datagrams, back to back.
    data: Vec<u8>,
    /// Where each datagram ends in `data`.
    ends: Vec<usize>,
    /// Each datagram's destination (`None` on a connected socket).
    to: Vec<Option<SockaddrStorage>>,
}

impl SendBatch {
    fn new() -> Self {
        SendBatch {
            headers: MultiHeaders::preallocate(RECV_BATCH, None),
            data: Vec::with_capacity(RECV_BATCH * 512),
            ends: Vec::with_capacity(RECV_BATCH),
            to: Vec::with_capacity(RECV_BATCH),
        }
    }

    /// Queues one datagram for `sock` (sending the queue first when it is full).
    fn push(&mut self, sock: &UdpSocket, bytes: &[u8], to: Option<SocketAddr>) {
        if self.ends.len() >= RECV_BATCH {
            self.flush(sock);
        }
        self.data.extend_from_slice(bytes);
        self.ends.push(self.data.len());
        self.to.push(to.map(SockaddrStorage::from));
    }

    /// Sends every queued datagram. One that the kernel refuses is skipped (and logged);
    /// the others still go.
    fn flush(&mut self, sock: &UdpSocket) {
        let n = self.ends.len();
        if n == 0 {
            return;
        }
        let mut start = 0;
        let slices: Vec<[IoSlice<'_>; 1]> = self
            .ends
            .iter()
            .map(|&end| {
                let s = [IoSlice::new(&self.data[start..end])];
                start = end;
                s
            })
            .collect();
        let no_cmsgs: [ControlMessage<'_>; 0] = [];
        let mut at = 0;
        while at < n {
            match sendmmsg(
                sock.as_raw_fd(),
                &mut self.headers,
                slices[at..].iter(),
                &self.to[at..],
                no_cmsgs,
                MsgFlags::empty(),
            ) {
                Ok(sent) => match sent.count() {
                    0 => break,
                    k => at += k,
                },
                Err(Errno::EINTR) => {}
                Err(e) => {
                    tracing::debug!(error = %e, "dns datagram not sent");
                    at += 1;
                }
            }
        }
        drop(slices);
        self.data.clear();
        self.ends.clear();
        self.to.clear();
    }
}

/// What the client side sends after a batch: queries to the upstream, replies to clients.
struct Outbox {
    /// One batch per socket of the upstream pool.
    upstream: [SendBatch; POOL],
    clients: SendBatch,
}

impl Default for Outbox {
    fn default() -> Self {
        Outbox {
            upstream: std::array::from_fn(|_| SendBatch::new()),
            clients: SendBatch::new(),
        }
    }
}

/// A thread's events on their way to the store: handed over in batches (one lock per batch
/// instead of one per query), at most [`EVENT_DELAY`] late.
struct Events {
    buf: Vec<palisade_events::Event>,
    since: Instant,
}

/// Events per hand-over.
const EVENT_BATCH: usize = 64;
/// Longest an event waits in a thread's batch.
const EVENT_DELAY: Duration = Duration::from_millis(20);

impl Events {
    fn new() -> Self {
        Events {
            buf: Vec::with_capacity(EVENT_BATCH),
            since: Instant::now(),
        }
    }

    fn push(&mut self, e: palisade_events::Event) {
        if self.buf.is_empty() {
            self.since = Instant::now();
        }
        self.buf.push(e);
    }

    fn flush_if_due(&mut self, shared: &Shared) {
        if self.buf.len() >= EVENT_BATCH
            || (!self.buf.is_empty() && self.since.elapsed() >= EVENT_DELAY)
        {
            self.flush(shared);
        }
    }

    fn flush(&mut self, shared: &Shared) {
        if !self.buf.is_empty() {
            shared.events.try_send_many(&mut self.buf);
        }
    }
}
