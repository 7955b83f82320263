//! Plain HTTP: absolute-form requests (explicit proxy) and origin-form requests with
//! `Host` (transparent listener), decided per request and forwarded over the client
//! connection's own upstream connection.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper::header::{
    HeaderMap, HeaderValue, CONTENT_LENGTH, HOST, PROXY_AUTHORIZATION, TRANSFER_ENCODING,
};
use hyper::{Request, Response, StatusCode, Uri, Version};
use hyper_util::rt::TokioIo;
use palisade_events::TlsMode;
use palisade_policy::HttpRequest;
use tokio::net::TcpStream;

use super::body::{refusal_after_body, IdleBound, PendingEvent};
use super::{local, normal_host, Caller, ClientConn, Mode, ReqBody, RespBody, Shared};
use crate::decide::{decide, Decision, DenyReason, DnsCheck, Target};
use crate::hop::strip_hop_by_hop;
use http_body::Body as _;
use http_body_util::BodyExt;
use palisade_events::{Detection, DetectionAction};
use palisade_policy::model::DlpAction;

/// An upstream connection kept by one client connection.
pub(crate) struct Upstream {
    host: String,
    port: u16,
    addr: SocketAddr,
    sender: SendRequest<ReqBody>,
}

impl Upstream {
    pub(crate) fn goes_to(&self, host: &str, port: u16) -> bool {
        self.host == host && self.port == port
    }

    /// Idle and able to take a request now.
    pub(crate) fn is_ready(&self) -> bool {
        self.sender.is_ready()
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.sender.is_closed()
    }
}

async fn handshake<I>(io: I) -> Result<SendRequest<ReqBody>, DialError>
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (sender, conn) = hyper::client::conn::http1::Builder::new()
        .handshake(TokioIo::new(io))
        .await
        .map_err(|_| DialError::Refused)?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(error = %e, "upstream connection ended with an error");
        }
    });
    Ok(sender)
}

/// Why an upstream could not be reached.
#[derive(Debug, Clone, Copy)]
pub(crate) enum DialError {
    Unresolved,
    /// The name resolves only to loopback, link-local or unspecified addresses
    /// ([`crate::resolve::is_internal`]), or to pods.
    Internal,
    Refused,
    Timeout,
    /// The upstream's TLS failed (certificate not verified, handshake error).
    Tls,
}

impl DialError {
    pub(crate) fn response(self) -> Response<RespBody> {
        let status = StatusCode::from_u16(self.status()).unwrap_or(StatusCode::BAD_GATEWAY);
        local(status, self.text())
    }

    /// The answer's body: the status and a short reason code.
    pub(crate) fn text(self) -> &'static str {
        match self {
            DialError::Unresolved => "palisade: bad gateway (upstream-unresolved)\n",
            DialError::Internal => "palisade: forbidden (upstream-internal-address)\n",
            DialError::Refused => "palisade: bad gateway (upstream-connect-failed)\n",
            DialError::Tls => "palisade: bad gateway (upstream-tls)\n",
            DialError::Timeout => "palisade: gateway timeout (upstream-connect-timeout)\n",
        }
    }

    pub(crate) fn status(self) -> u16 {
        match self {
            DialError::Timeout => 504,
            DialError::Internal => 403,
            _ => 502,
        }
    }
}

/// Opens a TCP connection to `host:port` (or to `fixed`, the transparent listener's
/// original destination).
pub(crate) async fn dial(
    shared: &Shared,
    host: &str,
    port: u16,
    fixed: Option<SocketAddr>,
) -> Result<(TcpStream, SocketAddr), DialError> {
    let deadline = shared.cfg.connect_timeout;
    let work = async {
        let addr = match fixed {
            Some(a) => a,
            None => shared
                .resolver
                .resolve(host, port, |ip| {
                    let engine = shared.engine.load();
                    palisade_policy::Engine::inside_cluster(
                        engine.as_deref(),
                        &shared.cfg.cluster_networks,
                        ip,
                    )
                })
                .await
                .map_err(|e| match e.kind() {
                    std::io::ErrorKind::PermissionDenied => DialError::Internal,
                    _ => DialError::Unresolved,
                })?,
        };
        let s = TcpStream::connect(addr)
            .await
            .map_err(|_| DialError::Refused)?;
        let _ = s.set_nodelay(true);
        super::bound_sends(&s, shared);
        Ok((s, addr))
    };
    let r = tokio::time::timeout(deadline, work)
        .await
        .unwrap_or(Err(DialError::Timeout));
    if r.is_err() {
        shared.stats.upstream_errors.fetch_add(1, Ordering::Relaxed);
    }
    r
}

async fn open(
    shared: &Shared,
    host: &str,
    port: u16,
    fixed: Option<SocketAddr>,
    tls: bool,
) -> Result<Upstream, DialError> {
    let (stream, addr) = dial(shared, host, port, fixed).await?;
    let sender = match (tls, &shared.cfg.intercept) {
        (true, Some(i)) => {
            let name = rustls::pki_types::ServerName::try_from(host.to_string())
                .map_err(|_| DialError::Unresolved)?;
            let stream = tokio_rustls::TlsConnector::from(i.client_config())
                .connect(name, stream)
                .await
                .map_err(|e| {
                    tracing::debug!(host, error = %e, "upstream TLS failed");
                    DialError::Tls
                })?;
            handshake(stream).await?
        }
        (true, None) => return Err(DialError::Tls),
        (false, _) => handshake(stream).await?,
    };
    Ok(Upstream {
        host: host.to_string(),
        port,
        addr,
        sender,
    })
}

fn bad_request(conn: &ClientConn, body: &'static str) -> Response<RespBody> {
    conn.shared
        .stats
        .bad_requests
        .fetch_add(1, Ordering::Relaxed);
    local(StatusCode::BAD_REQUEST, body)
}

/// Handles one non-CONNECT request.
pub(crate) async fn handle(
    conn: &ClientConn,
    caller: Caller,
    mut req: Request<Incoming>,
    start: Instant,
) -> Response<RespBody> {
    // Request smuggling: a message with both framings is refused, never guessed at.
    if req.headers().contains_key(TRANSFER_ENCODING) && req.headers().contains_key(CONTENT_LENGTH) {
        return bad_request(conn, "palisade: bad request (conflicting-framing)\n");
    }
    // Two `Host` fields: servers differ on which they read (RFC 9112 §3.2: a 400).
    if req.headers().get_all(HOST).iter().nth(1).is_some() {
        return bad_request(conn, "palisade: bad request (duplicate-host)\n");
    }
    // HTTP/2 may split `cookie` into fields; the upstream (HTTP/1.1) gets them joined, and
    // the decision is made on what it gets.
    if req.version() == Version::HTTP_2 {
        crate::hop::fold_cookies(req.headers_mut());
    }
    let (host_raw, port, fixed) = match &conn.mode {
        Mode::Intercepted(host, port) => {
            if let Some(why) = super::inside::malformed(&req) {
                return bad_request(conn, why);
            }
            // Domain fronting: `Host` and HTTP/2's `:authority` (or an absolute-form URI)
            // must name the server, and port, the tunnel was opened to.
            if super::inside::names_other_server(&req, host, *port) {
                let mut log = conn.log(&caller, host, *port, req.method().as_str());
                log.path = Some(req.uri().path().to_string());
                log.tls = TlsMode::Intercepted;
                let d = crate::decide::Decision::denied(crate::decide::DenyReason::HostMismatch);
                return refusal_after_body(conn.refuse(&caller, &d, log, start), req).await;
            }
            (host.clone(), *port, None)
        }
        Mode::Explicit => {
            let uri = req.uri();
            match (uri.scheme_str(), uri.host()) {
                (Some("http"), Some(h)) => (h.to_string(), uri.port_u16().unwrap_or(80), None),
                (Some(_), Some(_)) => {
                    return bad_request(conn, "palisade: bad request (use CONNECT for https)\n")
                }
                _ => return bad_request(conn, "palisade: bad request (absolute-uri-required)\n"),
            }
        }
        Mode::Transparent(original) => {
            let original = *original;
            let host = req
                .headers()
                .get(HOST)
                .and_then(|h| h.to_str().ok())
                .filter(|h| !h.is_empty());
            let (name, port) = match host {
                Some(h) => {
                    let name = strip_port(h);
                    let port = h[name.len()..]
                        .strip_prefix(':')
                        .and_then(|p| p.parse().ok());
                    (Some(name), port)
                }
                None => (None, None),
            };
            match (original, name) {
                (Some(o), Some(n)) => (n.to_string(), o.port(), original),
                (Some(o), None) => (o.ip().to_string(), o.port(), original),
                // Not redirected: the name (and port) from Host, or the configured port.
                (None, Some(n)) => match port.or(conn.shared.cfg.transparent_fallback_port) {
                    Some(p) => (n.to_string(), p, None),
                    None => return bad_request(conn, "palisade: bad request (no-destination)\n"),
                },
                (None, None) => {
                    return bad_request(conn, "palisade: bad request (host-required)\n")
                }
            }
        }
    };
    let host = normal_host(&host_raw).into_owned();
    // The `Host` the upstream gets, set before the decision so that header rules see it.
    if let Some(v) = upstream_host(&conn.mode, &req) {
        req.headers_mut().insert(HOST, v);
    }
    let sent_host = req.headers().get(HOST).cloned();
    let decision = {
        // Every field takes part, those with bytes beyond visible ASCII read lossily (a
        // condition on them must not pass by their being left out).
        let lossy: Vec<(&str, std::borrow::Cow<'_, str>)> = req
            .headers()
            .iter()
            .map(|(n, v)| (n.as_str(), String::from_utf8_lossy(v.as_bytes())))
            .collect();
        let headers: Vec<(&str, &str)> = lossy.iter().map(|(n, v)| (*n, v.as_ref())).collect();
        let http = HttpRequest {
            method: req.method().as_str(),
            path: req.uri().path(),
            host: Some(&host),
            headers: &headers,
        };
        let target = Target {
            host: &host,
            ip: fixed.map(|a| a.ip()),
            port,
        };
        decide(
            caller.engine.as_deref(),
            caller.pod,
            conn.peer,
            target,
            Some(http),
        )
    };
    let mut decision = decision;
    let mut fixed = fixed;
    if let (true, Some(o)) = (decision.allowed, fixed) {
        let answers = conn.shared.cfg.answers.as_deref();
        match crate::decide::dns_check(answers, conn.peer, &host, o.ip()) {
            DnsCheck::Agrees => {}
            DnsCheck::Disagrees => {
                decision.allowed = false;
                decision.deny = Some(DenyReason::DnsMismatch);
            }
            // Nothing vouches for the address the client picked: go to the name.
            DnsCheck::Unknown => fixed = None,
        }
    }
    // The rule's DLP settings, else the gateway's.
    let rule_dlp = decision
        .demands
        .as_ref()
        .and_then(|d| d.dlp.as_ref())
        .map(|d| {
            crate::config::DlpSettings::from_spec(d)
                .unwrap_or_else(|_| crate::config::DlpSettings::all(d.action))
        });
    let dlp = rule_dlp.as_ref().or(conn.shared.cfg.dlp.as_ref());
    // The request head goes upstream as surely as a body: its target and fields are
    // scanned first (a refused request uses no budget).
    let mut head_detections: Vec<Detection> = Vec::new();
    if let (true, Some(dlp)) = (decision.allowed, dlp) {
        if let Some((action, found)) = scan_head(&host, &mut req, dlp) {
            head_detections = detections(found, action);
            if action == DetectionAction::Block {
                decision.allowed = false;
                decision.deny = Some(DenyReason::Dlp);
            }
        }
    }
    // What the allowing rule asks: a body limit and an upload budget, checked up front
    // when the length is declared, else as the body streams. The budget counts the head
    // (request line and fields) too: many requests with fat heads use it up as well.
    let declared: Option<u64> = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.trim().parse().ok());
    let max_body = decision.demands.as_ref().and_then(|d| d.max_body_bytes);
    let budget = if decision.allowed {
        conn.shared.budget(&caller, conn.peer, &host, &decision)
    } else {
        None
    };
    let mut retry_after = None;
    if let (true, Some(max), Some(len)) = (decision.allowed, max_body, declared) {
        if len > max {
            decision.allowed = false;
            decision.deny = Some(DenyReason::BodyTooLarge);
        }
    }
    if let (true, Some(b)) = (decision.allowed, &budget) {
        if let Err(wait) = b.take(head_bytes(&req).saturating_add(declared.unwrap_or(0))) {
            decision.allowed = false;
            decision.deny = Some(DenyReason::UploadBudget);
            retry_after = Some(wait);
        }
    }
    let wants_event = conn.shared.wants_event(decision.allowed);
    if !decision.allowed {
        let mut log = conn.log(&caller, &host, port, req.method().as_str());
        log.path = Some(req.uri().path().to_string());
        if matches!(conn.mode, Mode::Intercepted(..)) {
            log.tls = TlsMode::Intercepted;
        }
        log.detections = head_detections;
        let resp = conn.refuse(&caller, &decision, log, start);
        return refusal_after_body(with_retry_after(resp, retry_after), req).await;
    }
    let stream_limits =
        (declared.is_none() && (max_body.is_some() || budget.is_some())).then(|| {
            Box::new(super::body::StreamLimits {
                max: max_body,
                budget: budget.clone(),
                seen: 0,
            })
        });

    let (mut parts, body) = req.into_parts();
    // A detection is recorded whatever `events` selects, as for bodies.
    let log = (wants_event || !head_detections.is_empty()).then(|| {
        let mut log = conn.log(&caller, &host, port, parts.method.as_str());
        log.detections = std::mem::take(&mut head_detections);
        log.path = Some(parts.uri.path().to_string());
        log.allowed = true;
        log.audit = decision.audit;
        log.policy = decision.policy.clone();
        log.tls = match conn.mode {
            Mode::Intercepted(..) => TlsMode::Intercepted,
            _ => TlsMode::None,
        };
        log.ai = crate::ai::classify(&host, parts.method.as_str(), parts.uri.path());
        log
    });
    let ai_bodies = log
        .as_ref()
        .and_then(|l| l.ai.as_ref())
        .is_some_and(crate::ai::wants_bodies);
    strip_hop_by_hop(&mut parts.headers);
    parts.headers.remove(PROXY_AUTHORIZATION);
    if matches!(conn.mode, Mode::Explicit) || parts.uri.authority().is_some() {
        parts.uri = origin_form(&parts.uri);
    }
    // `Connection` may name `Host`: the upstream gets the one decided on all the same.
    if let (Some(h), false) = (sent_host, parts.headers.contains_key(HOST)) {
        parts.headers.insert(HOST, h);
    }
    parts.version = Version::HTTP_11;
    let mut log = log;
    let mut counter = None;
    let mut req_capture = None;
    let up_body = match dlp {
        Some(dlp) if !body.is_end_stream() => {
            // Read whole up to the smaller of DLP's scan limit and the rule's body limit.
            let limit = max_body.map_or(dlp.max_body, |m| {
                dlp.max_body.min(usize::try_from(m).unwrap_or(usize::MAX))
            });
            let read = inspect_body(
                conn,
                &caller,
                dlp,
                limit,
                body,
                &mut parts.headers,
                &mut log,
            )
            .await
            .and_then(|b| {
                // A body of unknown length counts against the budget once read.
                match (&stream_limits, &b) {
                    (Some(l), ReqBody::Full(Some(bytes))) => match &l.budget {
                        Some(cell) => cell.take(bytes.len() as u64).map(|()| b).map_err(|wait| {
                            retry_after = Some(wait);
                            (
                                DenyReason::UploadBudget,
                                Some(StatusCode::TOO_MANY_REQUESTS),
                            )
                        }),
                        None => Ok(b),
                    },
                    _ => Ok(b),
                }
            });
            match read {
                Ok(b) => b,
                Err(refusal) => {
                    let d = Decision {
                        policy: decision.policy.clone(),
                        ..Decision::denied(refusal.0)
                    };
                    let mut l = log
                        .unwrap_or_else(|| conn.log(&caller, &host, port, parts.method.as_str()));
                    l.path = Some(parts.uri.path().to_string());
                    l.allowed = false;
                    return match refusal.1 {
                        Some(status) => {
                            l.status = status.as_u16();
                            let reason = match refusal.0 {
                                DenyReason::UploadBudget => DenyReason::UploadBudget,
                                _ => DenyReason::BodyTooLarge,
                            };
                            l.reason = Some(reason.code());
                            let resp = upstream_failed(
                                conn,
                                &caller,
                                Some(l),
                                local(status, reason.body()),
                                status.as_u16(),
                                start,
                            );
                            with_retry_after(resp, retry_after)
                        }
                        None => conn.refuse(&caller, &d, l, start),
                    };
                }
            }
        }
        _ => {
            counter = log.as_ref().map(|_| Arc::new(AtomicU64::new(0)));
            req_capture = ai_bodies.then(|| Arc::new(std::sync::Mutex::new(Vec::new())));
            ReqBody::Stream {
                inner: body,
                counter: counter.clone(),
                capture: req_capture.clone(),
                limits: stream_limits,
            }
        }
    };
    let mut up_req = Request::from_parts(parts, up_body);

    // A kept upstream connection to the same place. HTTP/1.1 clients send one request at a
    // time, so theirs is free (or about to be); an HTTP/2 client's requests run side by
    // side and do not wait for one another's upstream.
    let may_wait = caller.version != Some(Version::HTTP_2);
    let mut kept = conn.take_upstream(&host, port, may_wait);
    let (resp, addr) = loop {
        let fresh = kept.is_none();
        let mut up = match kept.take() {
            Some(u) => u,
            None => match open(
                &conn.shared,
                &host,
                port,
                fixed,
                matches!(conn.mode, Mode::Intercepted(..)),
            )
            .await
            {
                Ok(u) => u,
                Err(e) => {
                    return upstream_failed(conn, &caller, log, e.response(), e.status(), start)
                }
            },
        };
        if up.sender.ready().await.is_err() {
            if fresh {
                let e = super::forward::DialError::Refused;
                return upstream_failed(conn, &caller, log, e.response(), e.status(), start);
            }
            continue;
        }
        let answer = tokio::time::timeout(
            conn.shared.cfg.upstream_idle_timeout,
            up.sender.try_send_request(up_req),
        );
        let Ok(answer) = answer.await else {
            // Sent, and no answer head within the bound: the connection is dropped.
            let mut l = log.unwrap_or_else(|| conn.log(&caller, &host, port, ""));
            l.reason = Some(crate::events::UPSTREAM_TIMEOUT);
            let r = local(
                StatusCode::GATEWAY_TIMEOUT,
                "palisade: gateway timeout (upstream-timeout)\n",
            );
            return upstream_failed(conn, &caller, Some(l), r, 504, start);
        };
        match answer {
            Ok(resp) => {
                let addr = up.addr;
                conn.keep_upstream(up);
                break (resp, addr);
            }
            Err(mut e) => match e.take_message() {
                // Not sent (the kept connection had closed): once more on a new one.
                Some(r) if !fresh => up_req = r,
                _ => {
                    if let Some(cut) = body_cut(e.error()) {
                        // The streamed body went over the rule's limit or the budget.
                        let mut l = log.unwrap_or_else(|| conn.log(&caller, &host, port, ""));
                        l.allowed = false;
                        l.reason = Some(cut.code());
                        let status = cut.status();
                        let wait = (cut == DenyReason::UploadBudget)
                            .then(|| budget.as_ref().map(|b| b.retry_after()))
                            .flatten();
                        let r = local(
                            StatusCode::from_u16(status).unwrap_or(StatusCode::FORBIDDEN),
                            cut.body(),
                        );
                        return with_retry_after(
                            upstream_failed(conn, &caller, Some(l), r, status, start),
                            wait,
                        );
                    }
                    conn.shared
                        .stats
                        .upstream_errors
                        .fetch_add(1, Ordering::Relaxed);
                    let r = local(
                        StatusCode::BAD_GATEWAY,
                        "palisade: bad gateway (upstream-failed)\n",
                    );
                    return upstream_failed(conn, &caller, log, r, 502, start);
                }
            },
        }
    };

    let (mut parts, body) = resp.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    let body = match log {
        None => RespBody::Upstream(body, IdleBound::new(conn.shared.cfg.upstream_idle_timeout)),
        Some(mut log) => {
            log.status = parts.status.as_u16();
            log.ip = Some(addr.ip());
            RespBody::Metered {
                inner: body,
                idle: IdleBound::new(conn.shared.cfg.upstream_idle_timeout),
                bytes: 0,
                pending: Some(Box::new(PendingEvent {
                    shared: Arc::clone(&conn.shared),
                    engine: caller.engine,
                    log,
                    start,
                    bytes_in: counter,
                    req_capture,
                    resp_capture: ai_bodies.then(Vec::new),
                })),
            }
        }
    };
    Response::from_parts(parts, body)
}

/// The `Host` to send upstream when it is not the request's own: the absolute URI's
/// authority (explicit proxy; HTTP/2 `:authority`, `Host` being optional there; inside
/// interception it was checked to name the tunnel's server) without any userinfo, or,
/// inside interception with neither, the tunnel's server.
fn upstream_host<B>(mode: &Mode, req: &Request<B>) -> Option<HeaderValue> {
    let current = req.headers().get(HOST);
    let authority = req
        .uri()
        .authority()
        .map(|a| a.as_str().rsplit_once('@').map_or(a.as_str(), |(_, h)| h));
    let wanted = match (mode, authority) {
        (Mode::Explicit | Mode::Intercepted(..), Some(a)) => a.to_string(),
        (Mode::Intercepted(host, port), None) if current.is_none() => {
            super::inside::host_value(host, *port)
        }
        _ => return None,
    };
    if current.is_some_and(|h| h.as_bytes().eq_ignore_ascii_case(wanted.as_bytes())) {
        return None;
    }
    HeaderValue::from_str(&wanted).ok()
}

/// Reads a body whole (bounded) and runs DLP on it: the body to send, or why not (a reason
/// for a 403, or a status such as 413).
async fn inspect_body(
    conn: &ClientConn,
    caller: &Caller,
    dlp: &crate::config::DlpSettings,
    limit: usize,
    body: Incoming,
    headers: &mut HeaderMap,
    log: &mut Option<crate::events::HttpLog>,
) -> Result<ReqBody, (DenyReason, Option<StatusCode>)> {
    let _ = caller;
    // A compressed body hides what it carries from a scan of its bytes: refused rather than
    // passed unscanned (the gateway does not decompress uploads).
    if is_encoded(headers) {
        conn.shared.stats.denied.fetch_add(1, Ordering::Relaxed);
        return Err((DenyReason::EncodedBody, None));
    }
    let bytes = match http_body_util::Limited::new(body, limit).collect().await {
        Ok(c) => c.to_bytes(),
        Err(_) => {
            conn.shared.stats.denied.fetch_add(1, Ordering::Relaxed);
            return Err((DenyReason::Dlp, Some(StatusCode::PAYLOAD_TOO_LARGE)));
        }
    };
    let hits = crate::dlp::scan(&bytes, &dlp.detectors);
    if let Some(l) = log.as_mut() {
        l.bytes_in = bytes.len() as u64;
    }
    if let Some(ai) = log.as_mut().and_then(|l| l.ai.as_mut()) {
        ai.model = crate::ai::request_model(&bytes);
    }
    // What the detectors find in the decoded readings (percent, JSON escapes, base64) of
    // the body as it would be sent: after redaction, what is left can only be refused.
    let redacted = (dlp.action == DlpAction::Redact && !hits.is_empty())
        .then(|| crate::dlp::redact(&bytes, &hits));
    let hidden =
        crate::decoded::hidden_hits(redacted.as_deref().unwrap_or(&bytes[..]), &dlp.detectors);
    if hits.is_empty() && hidden.is_empty() {
        return Ok(ReqBody::Full(Some(bytes)));
    }
    let action = match dlp.action {
        DlpAction::Block => DetectionAction::Block,
        DlpAction::Redact if hidden.is_empty() => DetectionAction::Redact,
        // An encoded secret cannot be cut out of its encoding: refused.
        DlpAction::Redact => DetectionAction::Block,
        DlpAction::Log => DetectionAction::Log,
    };
    let found = hits
        .iter()
        .map(|h| h.detector)
        .chain(hidden.iter().copied());
    let mut l = log.take().unwrap_or_else(|| conn.log(caller, "", 0, ""));
    // After the head's, if any (a detector the head only logged says `block` when the body
    // is refused for it).
    for d in detections(found, action) {
        match l.detections.iter_mut().find(|e| e.detector == d.detector) {
            Some(e) if d.action == DetectionAction::Block => e.action = d.action,
            Some(_) => {}
            None => l.detections.push(d),
        }
    }
    *log = Some(l);
    match (action, redacted) {
        (DetectionAction::Redact, Some(red)) => {
            headers.insert(CONTENT_LENGTH, HeaderValue::from(red.len()));
            Ok(ReqBody::Full(Some(red.into())))
        }
        (DetectionAction::Log, _) => Ok(ReqBody::Full(Some(bytes))),
        _ => Err((DenyReason::Dlp, None)),
    }
}

/// One detection per detector found (`dlp.<name>`, once each), all with `action`.
fn detections(
    found: impl IntoIterator<Item = crate::dlp::Detector>,
    action: DetectionAction,
) -> Vec<Detection> {
    let mut out: Vec<Detection> = Vec::new();
    for d in found {
        let name = format!("dlp.{}", d.name());
        if !out.iter().any(|d| d.detector == name) {
            out.push(Detection {
                detector: name,
                action,
                score: None,
                rules: Vec::new(),
            });
        }
    }
    out
}

/// DLP on the request head (`crate::head_dlp`): what was found and what is done about it.
/// `redact` cuts hits out of header values; a hit in the request target (rewriting a URL
/// breaks the request), in a field name or only in a decoded reading cannot be cut out,
/// so the request is refused (the detections' action says `block`).
fn scan_head<B>(
    host: &str,
    req: &mut Request<B>,
    dlp: &crate::config::DlpSettings,
) -> Option<(DetectionAction, Vec<crate::dlp::Detector>)> {
    let target = req
        .uri()
        .path_and_query()
        .map_or(&b"/"[..], |p| p.as_str().as_bytes());
    let fields = req
        .headers()
        .iter()
        .map(|(n, v)| (n.as_str().as_bytes(), v.as_bytes()));
    let found = crate::head_dlp::scan_head(host, target, fields, dlp)?;
    let action = match (dlp.action, found.redacted) {
        (DlpAction::Log, _) => DetectionAction::Log,
        (DlpAction::Redact, Some(values)) => {
            redact_fields(req.headers_mut(), values);
            DetectionAction::Redact
        }
        (DlpAction::Redact, None) | (DlpAction::Block, _) => DetectionAction::Block,
    };
    Some((action, found.detectors))
}

/// Replaces the values of the fields at these positions (in `headers`' order).
fn redact_fields(headers: &mut HeaderMap, values: Vec<(usize, Vec<u8>)>) {
    let old = std::mem::take(headers);
    for (i, (name, value)) in old.iter().enumerate() {
        let value = match values.iter().find(|(j, _)| *j == i) {
            Some((_, v)) => HeaderValue::from_bytes(v)
                .unwrap_or_else(|_| HeaderValue::from_static("[REDACTED]")),
            None => value.clone(),
        };
        headers.append(name.clone(), value);
    }
}

/// The request head's size in HTTP/1.1 form (request line in origin form, header fields,
/// the empty line), as the upload budget counts it.
fn head_bytes<B>(req: &Request<B>) -> u64 {
    let target = req.uri().path_and_query().map_or(1, |p| p.as_str().len());
    let line = req.method().as_str().len() + 1 + target + " HTTP/1.1\r\n".len();
    let fields: usize = req
        .headers()
        .iter()
        .map(|(n, v)| n.as_str().len() + 2 + v.len() + 2)
        .sum();
    u64::try_from(line + fields + 2).unwrap_or(u64::MAX)
}

/// Whether a request body is sent in a content coding (anything but `identity`).
fn is_encoded(headers: &HeaderMap) -> bool {
    headers
        .get_all(hyper::header::CONTENT_ENCODING)
        .iter()
        .flat_map(|v| v.as_bytes().split(|b| *b == b','))
        .any(|c| {
            let c = c.trim_ascii();
            !c.is_empty() && !c.eq_ignore_ascii_case(b"identity")
        })
}

fn upstream_failed(
    conn: &ClientConn,
    caller: &Caller,
    log: Option<crate::events::HttpLog>,
    resp: Response<RespBody>,
    status: u16,
    start: Instant,
) -> Response<RespBody> {
    if let Some(mut log) = log {
        log.status = status;
        log.duration = start.elapsed();
        conn.shared.emit(caller.engine.as_deref(), log);
    }
    resp
}

/// The limit a streamed request body went over, if that is why sending it failed.
fn body_cut(e: &hyper::Error) -> Option<DenyReason> {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(c) = cause {
        if let Some(cut) = c.downcast_ref::<super::body::BodyCut>() {
            return Some(cut.0);
        }
        cause = c.source();
    }
    None
}

/// Adds `Retry-After` (whole seconds, at least 1) to a refusal that has one.
fn with_retry_after(
    mut resp: Response<RespBody>,
    wait: Option<std::time::Duration>,
) -> Response<RespBody> {
    if let Some(w) = wait {
        let secs = w.as_secs() + u64::from(w.subsec_nanos() > 0);
        resp.headers_mut()
            .insert(hyper::header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
    }
    resp
}

/// `host[:port]` → `host` (IPv6 literals keep their brackets).
fn strip_port(h: &str) -> &str {
    if h.starts_with('[') {
        return match h.find(']') {
            Some(i) => &h[..=i],
            None => h,
        };
    }
    match h.rsplit_once(':') {
        Some((host, p)) if p.bytes().all(|b| b.is_ascii_digit()) => host,
        _ => h,
    }
}

fn origin_form(uri: &Uri) -> Uri {
    let mut parts = hyper::http::uri::Parts::default();
    parts.path_and_query = Some(
        uri.path_and_query()
            .cloned()
            .unwrap_or_else(|| hyper::http::uri::PathAndQuery::from_static("/")),
    );
    Uri::from_parts(parts).unwrap_or_else(|_| Uri::from_static("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_stripped_from_host() {
        assert_eq!(strip_port("a.test:8080"), "a.test");
        assert_eq!(strip_port("a.test"), "a.test");
        assert_eq!(strip_port("[::1]:80"), "[::1]");
        assert_eq!(strip_port("[::1"), "[::1");
    }

    #[test]
    fn absolute_uris_become_origin_form() {
        let u: Uri = "http://a.test:81/p?q=1".parse().unwrap();
        assert_eq!(origin_form(&u).to_string(), "/p?q=1");
        let u: Uri = "http://a.test".parse().unwrap();
        assert_eq!(origin_form(&u).to_string(), "/");
    }
}
