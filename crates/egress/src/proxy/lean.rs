//! The lean lane of the explicit proxy: its most common request, an HTTP/1.1 `GET` or
//! `HEAD` without a body for a plain `http://` URL that policy allows outright, relayed by a
//! small loop of its own instead of hyper's server and client (no per-request tasks,
//! channels or header maps: about half the CPU per request).
//!
//! Everything else — a body, `CONNECT`, HTTP/1.0, `Upgrade`, `Expect`, a `Connection`
//! header naming other headers, an AI API call (its usage is read from the answer), a
//! refusal, proxy credentials, an unusual byte in the URL — goes to the full hyper path
//! with the bytes read so far, and the connection stays there. So every refusal, every
//! inspected request and every malformed one is answered by one code path.
//!
//! What the lane does itself, as the full path would: the same decision and event; the
//! hop-by-hop headers are dropped both ways (RFC 9110 §7.6.1); `Host` is the URL's
//! authority; a `Date` is added to an answer without one (RFC 9110 §6.6.1); the answer's
//! body is relayed by its framing (RFC 9112 §6.3: none for `HEAD`, 1xx, 204 and 304, else
//! chunked, `Content-Length`, or until the upstream closes, when the client connection
//! closes too). A kept upstream connection that turns out closed before any answer byte is
//! replaced once (the methods here are idempotent). Malformed answers get a `502`.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use palisade_policy::HttpRequest;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::forward::{dial, DialError};
use super::guard::Guarded;
use super::{normal_host, serve_io, Caller, ClientConn, Mode, Shared};
use crate::decide::{decide, Target};
use crate::events::HttpLog;
use crate::head::{framing, head_end, parse_head, Framing, RequestHead};

mod chunked;
mod date;

use chunked::ChunkedEnd;

/// Longest upstream answer head read.
const MAX_ANSWER_HEAD: usize = 64 * 1024;
/// Most header fields in an upstream answer head.
const MAX_ANSWER_FIELDS: usize = 100;
/// Bytes read from the upstream at a time while relaying a body.
const RELAY_CHUNK: usize = 32 * 1024;

/// Hop-by-hop names (RFC 9110 §7.6.1), never passed on.
const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

fn is_hop_by_hop(name: &[u8]) -> bool {
    HOP_BY_HOP
        .iter()
        .any(|h| h.as_bytes().eq_ignore_ascii_case(name))
}

/// Serves one explicit-proxy client connection: the lean lane while its requests allow,
/// then the full path.
pub(crate) async fn serve(stream: TcpStream, peer: SocketAddr, shared: Arc<Shared>) {
    let max_head = shared.cfg.max_head_bytes.max(8192);
    let mut lane = Lane {
        client: stream,
        buf: Vec::with_capacity(4096),
        req: Vec::with_capacity(1024),
        out: Vec::with_capacity(1024),
        up: None,
        conn: ClientConn::new(peer, Arc::clone(&shared), Mode::Explicit),
        shared,
        max_head,
    };
    if let Next::HandOff = lane.run().await {
        let Lane {
            client,
            buf,
            shared,
            ..
        } = lane;
        let guard = Guarded::with_prefix(client, max_head, Arc::clone(&shared.stats), buf);
        serve_io(guard, peer, shared, Mode::Explicit).await;
    }
}

enum Next {
    Close,
    HandOff,
}

/// One client connection in the lean lane.
struct Lane {
    client: TcpStream,
    /// Client bytes read and not yet used.
    buf: Vec<u8>,
    /// The request head for the upstream.
    req: Vec<u8>,
    /// The answer head for the client (and the first body bytes).
    out: Vec<u8>,
    up: Option<Upstream>,
    conn: Arc<ClientConn>,
    shared: Arc<Shared>,
    max_head: usize,
}

/// The upstream connection the client's last lean request used.
struct Upstream {
    stream: TcpStream,
    host: String,
    port: u16,
    addr: SocketAddr,
    /// Bytes read and not yet used.
    buf: Vec<u8>,
}

/// A lean request, decided and written out (to `Lane::req`).
struct Plan {
    host: String,
    port: u16,
    head_only: bool,
    /// The client asked to close after this answer.
    close: bool,
    caller: Caller,
    log: Option<HttpLog>,
    start: Instant,
}

/// How an answer's body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BodyFraming {
    None,
    Length(u64),
    Chunked,
    UntilClose,
}

/// The answer head, read and rewritten for the client (in `Lane::out`).
struct Answer {
    status: u16,
    framing: BodyFraming,
    /// The upstream connection can take another request afterwards.
    reusable: bool,
    /// Length of the upstream head in `Upstream::buf`.
    head_len: usize,
}

/// Why a lean request ended without a relayed answer.
enum Failure {
    /// The upstream could not be reached: answer with this.
    Dial(DialError),
    /// The upstream failed or answered garbage before the answer started: `502`.
    Upstream,
}

impl Lane {
    async fn run(&mut self) -> Next {
        loop {
            if !self.read_head().await {
                return Next::Close;
            }
            let Ok((head, consumed)) = parse_head(&self.buf, self.max_head) else {
                return Next::HandOff;
            };
            let Some(plan) = plan(&self.shared, &self.conn, &head, &mut self.req) else {
                return Next::HandOff;
            };
            self.buf.drain(..consumed);
            self.shared.stats.requests.fetch_add(1, Ordering::Relaxed);
            match self.relay(plan).await {
                Ok(true) => {}
                Ok(false) => {
                    let _ = self.client.shutdown().await;
                    return Next::Close;
                }
                Err(()) => return Next::Close,
            }
        }
    }

    /// Reads until `buf` holds a whole head (or more than a head may be, or something
    /// parse_head will refuse); `false` when the client closed or idled out first.
    async fn read_head(&mut self) -> bool {
        loop {
            let skip = self
                .buf
                .iter()
                .position(|&b| b != b'\r' && b != b'\n')
                .unwrap_or(self.buf.len());
            if head_end(&self.buf[skip..]).is_some() || self.buf.len() > self.max_head {
                return true;
            }
            self.buf.reserve(4096);
            let idle = self.shared.cfg.idle_timeout;
            match tokio::time::timeout(idle, self.client.read_buf(&mut self.buf)).await {
                Ok(Ok(n)) if n > 0 => {}
                _ => return false,
            }
        }
    }

    /// Sends the planned request and relays its answer; `Ok(keep)` says whether the client
    /// connection takes another request, `Err` that it must close now.
    async fn relay(&mut self, mut plan: Plan) -> Result<bool, ()> {
        let (answer, addr) = match self.exchange(&plan).await {
            Ok(a) => a,
            Err(f) => return self.fail(plan, f).await,
        };
        if let Some(log) = plan.log.as_mut() {
            log.status = answer.status;
            log.ip = Some(addr.ip());
        }
        let Some(up) = self.up.as_mut() else {
            return Err(());
        };
        let relayed = relay_body(&mut self.client, up, &mut self.out, &answer).await;
        let (bytes, clean) = match relayed.outcome {
            Ok(n) => (n, true),
            Err(n) => (n, false),
        };
        self.finish(&mut plan, bytes);
        if !(clean && answer.reusable) || relayed.spare {
            self.up = None;
        }
        if !clean {
            return Err(());
        }
        Ok(!(plan.close || answer.framing == BodyFraming::UntilClose))
    }

    /// Writes the request upstream (on the kept connection, else a new one; once more on a
    /// new one when a kept connection turns out closed) and reads the answer head.
    async fn exchange(&mut self, plan: &Plan) -> Result<(Answer, SocketAddr), Failure> {
        let mut fresh = false;
        loop {
            let keep = self
                .up
                .as_ref()
                .is_some_and(|u| u.port == plan.port && u.host == plan.host);
            if !keep {
                let (stream, addr) = dial(&self.shared, &plan.host, plan.port, None)
                    .await
                    .map_err(Failure::Dial)?;
                self.up = Some(Upstream {
                    stream,
                    host: plan.host.clone(),
                    port: plan.port,
                    addr,
                    buf: Vec::with_capacity(8192),
                });
                fresh = true;
            }
            let Some(up) = self.up.as_mut() else {
                return Err(Failure::Upstream);
            };
            up.buf.clear();
            let answered = if up.stream.write_all(&self.req).await.is_ok() {
                read_answer(up, plan.head_only, plan.close, &mut self.out).await
            } else {
                Read::Closed
            };
            match answered {
                Read::Answer(a) => return Ok((a, up.addr)),
                // Closed before any answer byte: a kept connection the upstream had
                // dropped. Once more on a new one.
                Read::Closed if !fresh => self.up = None,
                Read::Closed | Read::Bad => {
                    self.up = None;
                    self.shared
                        .stats
                        .upstream_errors
                        .fetch_add(1, Ordering::Relaxed);
                    return Err(Failure::Upstream);
                }
            }
        }
    }

    /// Answers a request whose upstream failed before its answer began, as the full path
    /// does: `502`/`504` with a short reason, and the event.
    async fn fail(&mut self, mut plan: Plan, f: Failure) -> Result<bool, ()> {
        let (status, body) = match f {
            Failure::Dial(e) => (e.status(), e.text()),
            Failure::Upstream => (502, "palisade: bad gateway (upstream-failed)\n"),
        };
        if let Some(log) = plan.log.as_mut() {
            log.status = status;
        }
        self.finish(&mut plan, 0);
        self.out.clear();
        local_answer(&mut self.out, status, body, plan.close);
        self.client.write_all(&self.out).await.map_err(|_| ())?;
        Ok(!plan.close)
    }

    /// Sends the request's event, when one is wanted.
    fn finish(&self, plan: &mut Plan, bytes_out: u64) {
        if let Some(mut log) = plan.log.take() {
            log.bytes_out = bytes_out;
            log.duration = plan.start.elapsed();
            self.shared.emit(plan.caller.engine.as_deref(), log);
        }
    }
}

/// Relays the answer body after the head in `out`: the body bytes sent (`Err` when the
/// relay broke off), and whether the upstream sent more than the answer.
async fn relay_body(
    client: &mut TcpStream,
    up: &mut Upstream,
    out: &mut Vec<u8>,
    answer: &Answer,
) -> Relayed {
    let mut spare = false;
    let outcome = relay_framed(client, up, out, answer, &mut spare).await;
    Relayed { outcome, spare }
}

/// [`relay_body`]'s work; `spare` is set when the upstream sent bytes after the answer.
async fn relay_framed(
    client: &mut TcpStream,
    up: &mut Upstream,
    out: &mut Vec<u8>,
    answer: &Answer,
    spare: &mut bool,
) -> Result<u64, u64> {
    let first = &up.buf[answer.head_len..];
    match answer.framing {
        BodyFraming::None => {
            if !first.is_empty() {
                // Bytes after a body-less answer: the connection is not kept.
                *spare = true;
            }
            client.write_all(out).await.map_err(|_| 0u64)?;
            Ok(0)
        }
        BodyFraming::Length(n) => {
            let take = first.len().min(usize::try_from(n).unwrap_or(usize::MAX));
            out.extend_from_slice(&first[..take]);
            let extra = first.len() > take;
            client.write_all(out).await.map_err(|_| 0u64)?;
            let mut sent = take as u64;
            if extra {
                *spare = true;
                return Ok(sent);
            }
            while sent < n {
                up.buf.clear();
                let want = usize::try_from(n - sent)
                    .unwrap_or(usize::MAX)
                    .min(RELAY_CHUNK);
                up.buf.reserve(want);
                let got = (&mut up.stream)
                    .take(want as u64)
                    .read_buf(&mut up.buf)
                    .await
                    .map_err(|_| sent)?;
                if got == 0 {
                    return Err(sent);
                }
                client.write_all(&up.buf).await.map_err(|_| sent)?;
                sent += got as u64;
            }
            Ok(sent)
        }
        BodyFraming::Chunked => {
            let mut scan = ChunkedEnd::default();
            let used = scan.feed(first).map_err(|()| 0u64)?;
            let extra = used < first.len();
            out.extend_from_slice(&first[..used]);
            client.write_all(out).await.map_err(|_| 0u64)?;
            if extra {
                *spare = true;
                return Ok(scan.payload());
            }
            while !scan.done() {
                up.buf.clear();
                up.buf.reserve(RELAY_CHUNK);
                let got = up
                    .stream
                    .read_buf(&mut up.buf)
                    .await
                    .map_err(|_| scan.payload())?;
                if got == 0 {
                    return Err(scan.payload());
                }
                let used = scan.feed(&up.buf).map_err(|()| scan.payload())?;
                client
                    .write_all(&up.buf[..used])
                    .await
                    .map_err(|_| scan.payload())?;
                if used < up.buf.len() {
                    *spare = true;
                    return Ok(scan.payload());
                }
            }
            Ok(scan.payload())
        }
        BodyFraming::UntilClose => {
            let mut sent = first.len() as u64;
            out.extend_from_slice(first);
            client.write_all(out).await.map_err(|_| 0u64)?;
            loop {
                up.buf.clear();
                up.buf.reserve(RELAY_CHUNK);
                match up.stream.read_buf(&mut up.buf).await {
                    Ok(0) => return Ok(sent),
                    Ok(got) => {
                        client.write_all(&up.buf).await.map_err(|_| sent)?;
                        sent += got as u64;
                    }
                    Err(_) => return Err(sent),
                }
            }
        }
    }
}

/// The end of a body relay.
struct Relayed {
    /// Body bytes sent; `Err` when the relay broke off.
    outcome: Result<u64, u64>,
    /// The upstream sent bytes after the answer: its connection is not kept.
    spare: bool,
}

/// What reading an answer head gave.
enum Read {
    Answer(Answer),
    /// The connection closed (or failed) before any answer byte.
    Closed,
    /// A malformed, oversized or unfinished answer.
    Bad,
}

/// Reads the answer head from `up` (skipping interim 1xx answers) and writes the client's
/// version of it into `out`.
async fn read_answer(up: &mut Upstream, head_only: bool, close: bool, out: &mut Vec<u8>) -> Read {
    loop {
        if !up.buf.is_empty() {
            match answer_head(&up.buf, head_only, close, out) {
                Parsed::Done(a) => return Read::Answer(a),
                Parsed::Interim(n) => {
                    up.buf.drain(..n);
                    continue;
                }
                Parsed::Bad => return Read::Bad,
                Parsed::Partial if up.buf.len() > MAX_ANSWER_HEAD => return Read::Bad,
                Parsed::Partial => {}
            }
        }
        up.buf.reserve(8192);
        match up.stream.read_buf(&mut up.buf).await {
            Ok(n) if n > 0 => {}
            _ if up.buf.is_empty() => return Read::Closed,
            _ => return Read::Bad,
        }
    }
}

enum Parsed {
    Done(Answer),
    /// A 1xx answer of this many bytes, to skip.
    Interim(usize),
    Partial,
    Bad,
}

/// Parses an answer head at the start of `buf`; when whole, writes the client's head to
/// `out`: the status line, the end-to-end fields, and the framing and connection fields the
/// lane itself decides.
fn answer_head(buf: &[u8], head_only: bool, close: bool, out: &mut Vec<u8>) -> Parsed {
    let mut fields = [httparse::EMPTY_HEADER; MAX_ANSWER_FIELDS];
    let mut r = httparse::Response::new(&mut fields);
    let len = match r.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Parsed::Partial,
        Err(_) => return Parsed::Bad,
    };
    let (Some(status), Some(minor)) = (r.code, r.version) else {
        return Parsed::Bad;
    };
    if status == 101 || !(100..=999).contains(&status) {
        return Parsed::Bad;
    }
    if status < 200 {
        return Parsed::Interim(len);
    }
    // Framing (RFC 9112 §6.3) and whether the upstream keeps the connection.
    let mut length: Option<u64> = None;
    let mut chunked = None;
    let mut upstream_close = minor == 0;
    let mut has_date = false;
    let mut listed: Vec<&[u8]> = Vec::new();
    for f in r.headers.iter() {
        let name = f.name.as_bytes();
        if name.eq_ignore_ascii_case(b"content-length") {
            for part in f.value.split(|&b| b == b',') {
                let Some(n) = decimal(trim(part)) else {
                    return Parsed::Bad;
                };
                if length.is_some_and(|l| l != n) {
                    return Parsed::Bad;
                }
                length = Some(n);
            }
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            let last = f.value.rsplit(|&b| b == b',').next().map(trim);
            let is_chunked = last.is_some_and(|l| l.eq_ignore_ascii_case(b"chunked"));
            if chunked.is_some() || minor == 0 {
                return Parsed::Bad;
            }
            chunked = Some(is_chunked);
        } else if name.eq_ignore_ascii_case(b"connection") {
            for t in f.value.split(|&b| b == b',').map(trim) {
                if t.eq_ignore_ascii_case(b"close") {
                    upstream_close = true;
                } else if t.eq_ignore_ascii_case(b"keep-alive") {
                    if minor == 0 {
                        upstream_close = false;
                    }
                } else if !t.is_empty() {
                    listed.push(t);
                }
            }
        } else if name.eq_ignore_ascii_case(b"date") {
            has_date = true;
        }
    }
    let framing = if head_only || status == 204 || status == 304 {
        BodyFraming::None
    } else {
        match (chunked, length) {
            (Some(_), Some(_)) => return Parsed::Bad,
            (Some(true), None) => BodyFraming::Chunked,
            (Some(false), None) | (None, None) => BodyFraming::UntilClose,
            (None, Some(n)) => BodyFraming::Length(n),
        }
    };
    out.clear();
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.to_string().as_bytes());
    out.push(b' ');
    match r
        .reason
        .filter(|t| t.bytes().all(|b| b == b'\t' || (b' '..=b'~').contains(&b)))
    {
        Some(reason) => out.extend_from_slice(reason.as_bytes()),
        None => out.extend_from_slice(
            hyper::StatusCode::from_u16(status)
                .ok()
                .and_then(|s| s.canonical_reason())
                .unwrap_or("")
                .as_bytes(),
        ),
    }
    out.extend_from_slice(b"\r\n");
    for f in r.headers.iter() {
        let name = f.name.as_bytes();
        if is_hop_by_hop(name) || listed.iter().any(|l| l.eq_ignore_ascii_case(name)) {
            continue;
        }
        field(out, name, f.value);
    }
    if framing == BodyFraming::Chunked {
        out.extend_from_slice(b"Transfer-Encoding: chunked\r\n");
    }
    if !has_date {
        out.extend_from_slice(b"Date: ");
        date::now(out);
        out.extend_from_slice(b"\r\n");
    }
    if close || framing == BodyFraming::UntilClose {
        out.extend_from_slice(b"Connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
    let reusable = !upstream_close && framing != BodyFraming::UntilClose;
    Parsed::Done(Answer {
        status,
        framing,
        reusable,
        head_len: len,
    })
}

fn field(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// A short answer from the gateway itself.
fn local_answer(out: &mut Vec<u8>, status: u16, body: &str, close: bool) {
    let reason = hyper::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("");
    out.extend_from_slice(format!("HTTP/1.1 {status} {reason}\r\n").as_bytes());
    out.extend_from_slice(b"Content-Type: text/plain\r\n");
    out.extend_from_slice(format!("Content-Length: {}\r\n", body.len()).as_bytes());
    out.extend_from_slice(b"Date: ");
    date::now(out);
    out.extend_from_slice(b"\r\n");
    if close {
        out.extend_from_slice(b"Connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body.as_bytes());
}

/// Decides whether `head` takes the lean lane; if so writes its upstream request head into
/// `req` and returns the plan. `None`: the full path serves it (and the rest of the
/// connection).
fn plan(
    shared: &Shared,
    conn: &ClientConn,
    head: &RequestHead<'_>,
    req: &mut Vec<u8>,
) -> Option<Plan> {
    let start = Instant::now();
    if head.minor != 1 {
        return None;
    }
    let head_only = match head.method {
        "GET" => false,
        "HEAD" => true,
        _ => return None,
    };
    if !matches!(framing(head), Ok(Framing::None)) {
        return None;
    }
    let mut close = false;
    for (name, value) in &head.headers {
        let name = name.as_bytes();
        if name.eq_ignore_ascii_case(b"connection") {
            for t in value.split(|&b| b == b',').map(trim) {
                if t.eq_ignore_ascii_case(b"close") {
                    close = true;
                } else if !(t.is_empty() || t.eq_ignore_ascii_case(b"keep-alive")) {
                    return None;
                }
            }
        } else if name.eq_ignore_ascii_case(b"upgrade")
            || name.eq_ignore_ascii_case(b"expect")
            || name.eq_ignore_ascii_case(b"content-length")
            || name.eq_ignore_ascii_case(b"transfer-encoding")
        {
            return None;
        }
    }
    let url = Url::parse(head.target)?;
    let host = normal_host(url.host).into_owned();
    let engine = shared.engine.load_full();
    let pod = engine.as_ref().and_then(|e| e.pod_by_ip(conn.peer));
    let mut fields: Vec<(&str, &str)> = Vec::with_capacity(head.headers.len());
    for (n, v) in &head.headers {
        // As `HeaderValue::to_str` would: visible ASCII and tabs only.
        if v.iter().all(|&b| b == b'\t' || (b' '..=b'~').contains(&b)) {
            if let Ok(v) = std::str::from_utf8(v) {
                fields.push((n, v));
            }
        }
    }
    let d = decide(
        engine.as_deref(),
        pod,
        conn.peer,
        Target {
            host: &host,
            ip: None,
            port: url.port,
        },
        Some(HttpRequest {
            method: head.method,
            path: url.path,
            host: Some(&host),
            headers: &fields,
        }),
    );
    if !d.allowed {
        return None;
    }
    let caller = Caller {
        engine,
        pod,
        version: Some(hyper::Version::HTTP_11),
    };
    let log = if shared.wants_event(true) {
        // AI calls have their usage read from the answer: the full path's job.
        if crate::ai::classify(&host, head.method, url.path).is_some() {
            return None;
        }
        let mut log = conn.log(&caller, &host, url.port, head.method);
        log.path = Some(url.path.to_string());
        log.allowed = true;
        log.audit = d.audit;
        log.policy = d.policy;
        Some(log)
    } else {
        None
    };
    req.clear();
    req.extend_from_slice(head.method.as_bytes());
    req.push(b' ');
    req.extend_from_slice(url.path_and_query.as_bytes());
    req.extend_from_slice(b" HTTP/1.1\r\n");
    let mut host_written = false;
    for (name, value) in &head.headers {
        let n = name.as_bytes();
        if n.eq_ignore_ascii_case(b"host") {
            // The upstream sees the name the decision was about.
            if !host_written {
                field(req, b"Host", url.authority.as_bytes());
                host_written = true;
            }
        } else if !is_hop_by_hop(n) {
            field(req, n, value);
        }
    }
    if !host_written {
        field(req, b"Host", url.authority.as_bytes());
    }
    req.extend_from_slice(b"\r\n");
    Some(Plan {
        host,
        port: url.port,
        head_only,
        close,
        caller,
        log,
        start,
    })
}

/// An absolute-form `http://` request target the lane takes: a plain host name or IPv4
/// address, an optional port, and a path of ordinary URL bytes.
#[derive(Debug, PartialEq, Eq)]
struct Url<'a> {
    authority: &'a str,
    host: &'a str,
    port: u16,
    /// The path without the query (what policy matches).
    path: &'a str,
    /// Path and query as sent upstream.
    path_and_query: &'a str,
}

impl<'a> Url<'a> {
    fn parse(target: &'a str) -> Option<Url<'a>> {
        let rest = target.strip_prefix("http://")?;
        let at = rest.find('/').unwrap_or(rest.len());
        let (authority, path_and_query) = rest.split_at(at);
        let path_and_query = if path_and_query.is_empty() {
            "/"
        } else {
            path_and_query
        };
        if !path_and_query.bytes().all(url_byte) {
            return None;
        }
        let path = path_and_query
            .split_once('?')
            .map_or(path_and_query, |(p, _)| p);
        let (host, port) = match authority.split_once(':') {
            Some((h, p)) => (h, u16::try_from(decimal(p.as_bytes())?).ok()?),
            None => (authority, 80),
        };
        let host_ok = !host.is_empty()
            && host.len() <= 253
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'));
        if !host_ok || port == 0 {
            return None;
        }
        Some(Url {
            authority,
            host,
            port,
            path,
            path_and_query,
        })
    }
}

/// Bytes the lane passes in a URL path and query: RFC 3986 unreserved, sub-delims, `:`,
/// `@`, `/`, `?` and `%` (escapes). Anything else goes to the full path.
fn url_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'-' | b'.'
                | b'_'
                | b'~'
                | b'!'
                | b'$'
                | b'&'
                | b'\''
                | b'('
                | b')'
                | b'*'
                | b'+'
                | b','
                | b';'
                | b'='
                | b':'
                | b'@'
                | b'/'
                | b'?'
                | b'%'
        )
}

/// A non-empty run of at most 19 ASCII digits, as a number.
fn decimal(s: &[u8]) -> Option<u64> {
    if s.is_empty() || s.len() > 19 || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(
        s.iter()
            .fold(0u64, |acc, &d| acc * 10 + u64::from(d - b'0')),
    )
}

fn trim(v: &[u8]) -> &[u8] {
    let start = v
        .iter()
        .position(|&b| b != b' ' && b != b'\t')
        .unwrap_or(v.len());
    let end = v
        .iter()
        .rposition(|&b| b != b' ' && b != b'\t')
        .map_or(start, |i| i + 1);
    &v[start..end.max(start)]
}

#[cfg(test)]
mod tests;
