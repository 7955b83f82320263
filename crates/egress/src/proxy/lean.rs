//! The lean lane of the explicit proxy: its most common request, an HTTP/1.1 `GET` or
//! `HEAD` without a body for a plain `http://` URL that policy allows outright, relayed by a
//! small loop of its own instead of hyper's server and client (no per-request tasks,
//! channels or header maps: about half the CPU per request).
//!
//! Everything else — a body, `CONNECT`, HTTP/1.0, `Upgrade`, `Expect`, a `Connection`
//! header naming other headers, an AI API call (its usage is read from the answer), a
//! refusal, a head in which DLP finds something or that does not fit the upload budget
//! (both counted and scanned here first: a clean head that fits stays in the lane), proxy
//! credentials, an unusual byte in the URL — goes to the full hyper path
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
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use super::forward::{dial, DialError};
use super::guard::Guarded;
use super::{normal_host, serve_io, Caller, ClientConn, Mode, Shared};
use crate::config::DlpSettings;
use crate::decide::{decide, Target};
use crate::events::{HttpLog, UPSTREAM_IDLE_TIMEOUT, UPSTREAM_TIMEOUT};
use crate::h1::{
    decimal, field, is_hop_by_hop, is_url_byte, local_answer, read_answer, read_head,
    relay_body_within, trim,
};
use crate::h1::{Answer, BodyFraming, Read};
use crate::head::{framing, parse_head, Framing, RequestHead};

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

/// Why a lean request ended without a relayed answer.
enum Failure {
    /// The upstream could not be reached: answer with this.
    Dial(DialError),
    /// The upstream failed or answered garbage before the answer started: `502`.
    Upstream,
    /// The upstream sent no answer head within the upstream idle timeout: `504`.
    Timeout,
}

impl Lane {
    async fn run(&mut self) -> Next {
        loop {
            // The whole head within the idle timeout, as hyper's `header_read_timeout`.
            let idle = self.shared.cfg.idle_timeout;
            if !read_head(&mut self.client, &mut self.buf, self.max_head, idle, None).await {
                return Next::Close;
            }
            let Ok((head, consumed)) = parse_head(&self.buf, self.max_head) else {
                return Next::HandOff;
            };
            let Some(plan) = plan(&self.shared, &self.conn, &head, consumed, &mut self.req) else {
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
        let relayed = relay_body_within(
            &mut self.client,
            &mut up.stream,
            &mut up.buf,
            &mut self.out,
            &answer,
            Some(self.shared.cfg.upstream_idle_timeout),
        )
        .await;
        let (bytes, clean) = match relayed.outcome {
            Ok(n) => (n, true),
            Err(n) => (n, false),
        };
        if relayed.stalled {
            if let Some(log) = plan.log.as_mut() {
                log.reason = Some(UPSTREAM_IDLE_TIMEOUT);
            }
        }
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
                let read = read_answer(
                    &mut up.stream,
                    &mut up.buf,
                    plan.head_only,
                    plan.close,
                    &mut self.out,
                );
                match tokio::time::timeout(self.shared.cfg.upstream_idle_timeout, read).await {
                    Ok(r) => r,
                    Err(_) => {
                        self.up = None;
                        return Err(Failure::Timeout);
                    }
                }
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
        if let (Failure::Timeout, Some(log)) = (&f, plan.log.as_mut()) {
            log.reason = Some(UPSTREAM_TIMEOUT);
        }
        let (status, body) = match f {
            Failure::Dial(e) => (e.status(), e.text()),
            Failure::Upstream => (502, "palisade: bad gateway (upstream-failed)\n"),
            Failure::Timeout => (504, "palisade: gateway timeout (upstream-timeout)\n"),
        };
        if let Some(log) = plan.log.as_mut() {
            log.status = status;
        }
        self.finish(&mut plan, 0);
        self.out.clear();
        local_answer(
            &mut self.out,
            status,
            "text/plain",
            body.as_bytes(),
            plan.close,
        );
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

/// Decides whether `head` takes the lean lane; if so writes its upstream request head into
/// `req` and returns the plan. `None`: the full path serves it (and the rest of the
/// connection).
fn plan(
    shared: &Shared,
    conn: &ClientConn,
    head: &RequestHead<'_>,
    head_len: usize,
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
    let mut fields: Vec<(&str, &str)> = Vec::with_capacity(head.headers.len() + 1);
    // The upstream gets the URL's authority as `Host`: a rule on `Host` sees that one.
    fields.push(("host", url.authority));
    for (n, v) in &head.headers {
        if n.eq_ignore_ascii_case("host") {
            continue;
        }
        // Visible ASCII and tabs; any other byte: the full path reads the field lossily.
        if !v.iter().all(|&b| b == b'\t' || (b' '..=b'~').contains(&b)) {
            return None;
        }
        fields.push((n, std::str::from_utf8(v).ok()?));
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
    // DLP on the head (the rule's, else the gateway's): whatever it finds is the full
    // path's to answer (block, redact, log); a clean head costs one pre-filter pass.
    let rule_dlp =
        d.demands.as_ref().and_then(|g| g.dlp.as_ref()).map(|spec| {
            DlpSettings::from_spec(spec).unwrap_or_else(|_| DlpSettings::all(spec.action))
        });
    if let Some(dlp) = rule_dlp.as_ref().or(shared.cfg.dlp.as_ref()) {
        let fields = head.headers.iter().map(|(n, v)| (n.as_bytes(), &v[..]));
        if crate::head_dlp::scan_head(&host, head.target.as_bytes(), fields, dlp).is_some() {
            return None;
        }
    }
    let caller = Caller {
        engine,
        pod,
        version: Some(hyper::Version::HTTP_11),
    };
    // The upload budget counts the head (taken below, once nothing hands the request over).
    let budget = shared.budget(&caller, conn.peer, &host, &d);
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
    // Over the budget: the full path refuses it (`429 upload-budget`).
    if let Some(b) = budget {
        if b.take(u64::try_from(head_len).unwrap_or(u64::MAX)).is_err() {
            return None;
        }
    }
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
        if !path_and_query.bytes().all(is_url_byte) {
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

#[cfg(test)]
mod tests;
