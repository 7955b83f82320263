//! The lean lane for plain routes: on a plain-TCP HTTP/1.1 connection, a request for a
//! route that asks for nothing (no authentication, models, limits besides the body size,
//! WAF, prompt guard or output filters, and a plain-HTTP backend), on a path that is not an
//! AI API operation, is relayed by a small loop of its own instead of
//! hyper's server and client: the request head and its `Content-Length` body go to a
//! pooled backend connection of this worker thread, and the answer comes back by its
//! framing ([`palisade_egress::h1`]).
//!
//! Everything else — HTTP/2, HTTP/1.0, a chunked body, `Expect`, `Upgrade`, a
//! `Connection` header naming other headers, a route that inspects or limits anything, an
//! unknown route, an unusual byte in the path — goes to the full path with the bytes read
//! so far, and the connection stays there. The request the backend sees, the refusals
//! (`408`, `413`, `502`, `504`, OpenAI-style JSON) and the event are the full path's.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use palisade_egress::h1::{
    field, is_hop_by_hop, is_url_byte, local_answer, read_answer, read_head, relay_body_within,
    trim, BodyFraming, Read,
};
use palisade_egress::head::{framing, parse_head, Framing, RequestHead};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::handle::{Peer, BODY_TIMEOUT};
use super::{Shared, HEADER_TIMEOUT, MAX_HEADER_BYTES};
use crate::config::Route;
use crate::events::{http_event, ExchangeLog};
use crate::refusal::Refusal;

mod pool;

use palisade_egress::prefixed::Prefixed;

/// The HTTP/2 connection preface's first bytes.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0";
/// Headers carrying the gateway credential, never forwarded.
const CREDENTIAL_HEADERS: [&[u8]; 3] = [b"authorization", b"api-key", b"x-api-key"];

/// What became of a connection in the lane.
pub enum Outcome {
    /// Served to its end.
    Closed,
    /// The full path takes over: the socket and the bytes read from it and not used.
    HandOff(TcpStream, Vec<u8>),
}

/// Serves a plain-TCP connection in the lane for as long as its requests allow.
pub async fn serve(client: TcpStream, peer: Arc<Peer>, shared: Arc<Shared>) -> Outcome {
    let mut lane = Lane {
        client,
        buf: Vec::with_capacity(4096),
        req: Vec::with_capacity(1024),
        out: Vec::with_capacity(1024),
        up_buf: Vec::with_capacity(8192),
        peer,
        shared,
    };
    match lane.run().await {
        Next::Close => Outcome::Closed,
        Next::HandOff => Outcome::HandOff(lane.client, lane.buf),
    }
}

enum Next {
    Close,
    HandOff,
}

struct Lane {
    client: TcpStream,
    /// Client bytes read and not yet used.
    buf: Vec<u8>,
    /// The request head (and body) for the backend.
    req: Vec<u8>,
    /// The answer head for the client.
    out: Vec<u8>,
    /// Backend bytes read and not yet used.
    up_buf: Vec<u8>,
    peer: Arc<Peer>,
    shared: Arc<Shared>,
}

/// A lean request, routed and written out (head in `Lane::req`).
struct Plan {
    route: Arc<Route>,
    /// Body length (`Content-Length`).
    body: u64,
    head_only: bool,
    /// Retried on a new connection when a kept one turns out closed.
    idempotent: bool,
    close: bool,
    log: ExchangeLog,
    start: Instant,
}

impl Lane {
    async fn run(&mut self) -> Next {
        loop {
            let got = read_head(
                &mut self.client,
                &mut self.buf,
                MAX_HEADER_BYTES,
                self.shared.idle_timeout,
                Some(HEADER_TIMEOUT),
            )
            .await;
            if !got {
                return Next::Close;
            }
            if self.buf.starts_with(H2_PREFACE) {
                // The preface's first line and empty line read as a head: HTTP/2.
                return Next::HandOff;
            }
            let Ok((head, consumed)) = parse_head(&self.buf, MAX_HEADER_BYTES) else {
                return Next::HandOff;
            };
            let config = self.shared.config.load();
            let Some(mut plan) = plan(&config, &self.peer, &head, &mut self.req) else {
                return Next::HandOff;
            };
            drop(config);
            self.buf.drain(..consumed);
            if !self.read_body(&mut plan).await {
                return Next::Close;
            }
            let kept = self.exchange(plan).await;
            if self.req.capacity() > 1 << 16 {
                // A large body was buffered: give the memory back.
                self.req = Vec::with_capacity(1024);
            }
            match kept {
                Ok(true) => {}
                Ok(false) => {
                    let _ = self.client.shutdown().await;
                    return Next::Close;
                }
                Err(()) => return Next::Close,
            }
        }
    }

    /// Appends the request body to `req`, reading what has not arrived (within
    /// [`BODY_TIMEOUT`]); `false` when the client went away or was answered `408`.
    async fn read_body(&mut self, plan: &mut Plan) -> bool {
        let want = usize::try_from(plan.body).unwrap_or(usize::MAX);
        let have = self.buf.len().min(want);
        self.req.extend(self.buf.drain(..have));
        let mut left = want - have;
        if left == 0 {
            return true;
        }
        let deadline = tokio::time::Instant::now() + BODY_TIMEOUT;
        while left > 0 {
            self.req.reserve(left.min(1 << 16));
            let mut limited = (&mut self.client).take(left as u64);
            let read = limited.read_buf(&mut self.req);
            match tokio::time::timeout_at(deadline, read).await {
                Ok(Ok(n)) if n > 0 => left -= n,
                Ok(_) => return false,
                Err(_) => {
                    plan.close = true;
                    let r = Refusal::new(
                        408,
                        "invalid_request_error",
                        "request_timeout",
                        "The request body took too long to arrive.",
                    );
                    let _ = self.refuse(plan, &r).await;
                    return false;
                }
            }
        }
        true
    }

    /// Sends the request to the backend and relays the answer; `Ok(keep)`: whether the
    /// client connection takes another request.
    async fn exchange(&mut self, mut plan: Plan) -> Result<bool, ()> {
        let backend = plan.route.backend.authority.clone();
        let timeout = plan.route.timeout;
        let mut kept = pool::checkout(&backend);
        let answered = loop {
            let fresh = kept.is_none();
            let mut up = match kept.take() {
                Some(s) => s,
                None => match pool::connect(&backend).await {
                    Ok(s) => s,
                    Err(()) => break Err(Failure::Unavailable("connect")),
                },
            };
            self.up_buf.clear();
            let sent = tokio::time::timeout(timeout, async {
                if up.write_all(&self.req).await.is_err() {
                    return Read::Closed;
                }
                read_answer(
                    &mut up,
                    &mut self.up_buf,
                    plan.head_only,
                    plan.close,
                    &mut self.out,
                )
                .await
            })
            .await;
            match sent {
                Err(_) => break Err(Failure::Timeout),
                Ok(Read::Answer(a)) => break Ok((a, up)),
                Ok(Read::Closed) if !fresh && plan.idempotent => {}
                Ok(Read::Closed) => break Err(Failure::Unavailable("closed before answering")),
                Ok(Read::Bad) => break Err(Failure::Unavailable("malformed answer")),
            }
        };
        let (answer, mut up) = match answered {
            Ok(a) => a,
            Err(f) => {
                let why = match f {
                    Failure::Timeout => "no answer in time",
                    Failure::Unavailable(why) => why,
                };
                tracing::warn!(route = %plan.route.name, why, "backend request failed");
                let r = match f {
                    Failure::Timeout => Refusal::new(
                        504,
                        "server_error",
                        "upstream_timeout",
                        "The model backend did not answer in time.",
                    ),
                    Failure::Unavailable(_) => Refusal::new(
                        502,
                        "server_error",
                        "upstream_unavailable",
                        "The model backend is unavailable.",
                    ),
                };
                return self.refuse(&mut plan, &r).await;
            }
        };
        plan.log.status = answer.status;
        let relayed = relay_body_within(
            &mut self.client,
            &mut up,
            &mut self.up_buf,
            &mut self.out,
            &answer,
            Some(plan.route.stream_idle_timeout),
        )
        .await;
        let (bytes, clean) = match relayed.outcome {
            Ok(n) => (n, true),
            Err(n) => (n, false),
        };
        plan.log.bytes_out = bytes;
        if relayed.stalled {
            // The answer was cut (the client connection closes below).
            tracing::warn!(route = %plan.route.name, "backend went silent mid-answer");
            plan.log.denied = true;
            plan.log.reason = Some("upstream_idle_timeout".into());
        }
        self.finish(plan.log, plan.start);
        if clean && answer.reusable && !relayed.spare {
            pool::checkin(&backend, up);
        }
        if !clean {
            return Err(());
        }
        Ok(!(plan.close || answer.framing == BodyFraming::UntilClose))
    }

    /// Answers with a gateway refusal (OpenAI-style JSON) and records it.
    async fn refuse(&mut self, plan: &mut Plan, r: &Refusal) -> Result<bool, ()> {
        let body = r.body();
        let mut log = std::mem::take(&mut plan.log);
        log.status = r.status;
        log.denied = true;
        log.reason = Some(r.code.to_string());
        log.bytes_out = body.len() as u64;
        self.finish(log, plan.start);
        self.out.clear();
        local_answer(
            &mut self.out,
            r.status,
            "application/json",
            &body,
            plan.close,
        );
        self.client.write_all(&self.out).await.map_err(|_| ())?;
        Ok(!plan.close)
    }

    fn finish(&self, mut log: ExchangeLog, start: Instant) {
        log.duration = start.elapsed();
        if let Some(tx) = &self.shared.events {
            tx.try_send(http_event(&self.shared.origin, log));
        }
    }
}

/// Why the backend gave no answer.
#[derive(Debug, Clone, Copy)]
enum Failure {
    Timeout,
    /// Why: a few words for the log.
    Unavailable(&'static str),
}

/// Whether `route` asks for nothing the lane does not do.
fn plain(route: &Route) -> bool {
    // Without authentication there is no consumer, so the gateway's consumers do not apply.
    route.auth.is_none()
        && route.models.is_empty()
        && route.limits.requests_per_second.is_none()
        && route.limits.tokens_per_minute.is_none()
        && route.limits.max_prompt_chars.is_none()
        && route.waf.is_none()
        && route.guard.is_none()
        && route.filters.detectors.is_empty()
        && route.filters.canary.is_none()
        && route.backend.tls.is_none()
}

/// Routes `head` and, when the lane takes it, writes the backend's request head into `req`
/// (the body follows). `None`: the full path serves it (and the rest of the connection).
fn plan(
    config: &crate::config::Compiled,
    peer: &Peer,
    head: &RequestHead<'_>,
    req: &mut Vec<u8>,
) -> Option<Plan> {
    let start = Instant::now();
    if head.minor != 1 || head.method == "CONNECT" {
        return None;
    }
    let body = match framing(head) {
        Ok(Framing::None) => 0,
        Ok(Framing::Length(n)) => n,
        _ => return None,
    };
    let mut close = false;
    let mut host = None;
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
        } else if name.eq_ignore_ascii_case(b"host") {
            if host.is_some() {
                return None;
            }
            host = Some(*value);
        } else if name.eq_ignore_ascii_case(b"upgrade") || name.eq_ignore_ascii_case(b"expect") {
            return None;
        }
    }
    let host = std::str::from_utf8(host?).ok()?;
    if host.is_empty()
        || !host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b':'))
    {
        return None;
    }
    let target = head.target;
    if !target.starts_with('/') || !target.bytes().all(is_url_byte) {
        return None;
    }
    let path = target.split_once('?').map_or(target, |(p, _)| p);
    // A path servers may read differently is checked on the full path (`one_reading`).
    if crate::openai::operation(path).is_some() || !palisade_policy::http_path::is_plain(path) {
        return None;
    }
    let route = config.route(host, path)?;
    if !plain(route) {
        return None;
    }
    let (_, max_body, _) = route.limits_for(None);
    if body > max_body {
        return None;
    }
    let log = ExchangeLog {
        client: Some(peer.addr),
        method: head.method.to_string(),
        host: host.to_string(),
        path: path.to_string(),
        route: Some(route.name.clone()),
        backend: Some(route.backend.authority.to_string()),
        bytes_in: body,
        version: Some(palisade_events::HttpVersion::Http11),
        ..Default::default()
    };
    req.clear();
    req.extend_from_slice(head.method.as_bytes());
    req.push(b' ');
    req.extend_from_slice(route.backend.base_path.as_bytes());
    req.extend_from_slice(target.as_bytes());
    req.extend_from_slice(b" HTTP/1.1\r\n");
    for (name, value) in &head.headers {
        let n = name.as_bytes();
        let dropped = is_hop_by_hop(n)
            || CREDENTIAL_HEADERS.iter().any(|c| c.eq_ignore_ascii_case(n))
            || n.eq_ignore_ascii_case(b"host")
            || n.eq_ignore_ascii_case(b"content-length")
            || n.eq_ignore_ascii_case(b"x-forwarded-proto")
            || n.eq_ignore_ascii_case(super::handle::CONSUMER_HEADER.as_bytes());
        if !dropped {
            field(req, n, value);
        }
    }
    field(req, b"Host", route.backend.host_header().as_bytes());
    if body > 0 || head.method == "POST" {
        field(req, b"Content-Length", body.to_string().as_bytes());
    }
    if let Some(v) = &peer.forwarded_for {
        field(req, b"X-Forwarded-For", v.as_bytes());
    }
    field(req, b"X-Forwarded-Proto", b"http");
    req.extend_from_slice(b"\r\n");
    Some(Plan {
        route: Arc::clone(route),
        body,
        head_only: head.method == "HEAD",
        idempotent: matches!(
            head.method,
            "GET" | "HEAD" | "PUT" | "DELETE" | "OPTIONS" | "TRACE"
        ),
        close,
        log,
        start,
    })
}

/// Serves a plain-TCP connection: the lane first, then hyper with what the lane read.
pub async fn serve_plain(tcp: TcpStream, remote: SocketAddr, shared: Arc<Shared>) {
    let peer = Arc::new(Peer::new(remote));
    if let Outcome::HandOff(tcp, read) = serve(tcp, Arc::clone(&peer), Arc::clone(&shared)).await {
        super::serve_conn_with_peer(
            hyper_util::rt::TokioIo::new(Prefixed::new(tcp, read)),
            shared,
            peer,
            std::future::pending(),
        )
        .await;
    }
}

#[cfg(test)]
mod tests;
