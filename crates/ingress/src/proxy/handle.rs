//! One request through the gateway: route, authenticate, authorise, read the body within
//! its limits, check models, sizes and rates, run the WAF and the prompt guard, inject the
//! canary, forward, and stream the answer back through the output filters. Every exit
//! writes one event.

use super::body::{BodySummary, FilteredBody};
use super::endpoints::{
    bodyless_allowed, default_reservation, deployment_in, form_or_xml, generates,
};
use super::https::{tls_failure, TlsFailure};
use super::upstream::{full, ProxyBody};
use super::Shared;
use crate::auth::{credential, looks_like_jwt, AuthError};
use crate::config::Route;
use crate::events::{detection, http_event, ExchangeLog};
use crate::filter::{FilterAction, FilterSet};
use crate::limits::Exceeded;
use crate::openai::{creates_batch, operation, ApiRequest, BodyError};
use crate::refusal::Refusal;
use crate::tokens;
use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, Request, Response};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use palisade_egress::hop::{is_hop_by_hop, strip_hop_by_hop};
use palisade_events::DetectionAction;
use palisade_policy::model::GuardAction;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Longest wait for a client to send its whole request body.
pub const BODY_TIMEOUT: Duration = Duration::from_secs(30);

/// Headers carrying the gateway credential, never forwarded.
const CREDENTIAL_HEADERS: [&str; 3] = ["authorization", "api-key", "x-api-key"];

/// The header naming the authenticated consumer to the backend. Only the gateway sets it:
/// a client's own is dropped (on routes without authentication it would otherwise reach
/// the backend as an identity nobody checked).
pub(crate) const CONSUMER_HEADER: &str = "x-palisade-consumer";

struct Exchange {
    shared: Arc<Shared>,
    log: ExchangeLog,
    started: Instant,
    /// Completion tokens reserved at admission, given back when the request is refused
    /// before anything was generated (WAF, guard, an unreachable backend).
    reserved: Option<Reserved>,
}

/// A completion reservation taken from a token bucket.
struct Reserved {
    route: String,
    key: String,
    limits: crate::limits::Limits,
    tokens: u64,
}

impl Exchange {
    fn refuse(mut self, r: Refusal) -> Response<ProxyBody> {
        if let Some(res) = self.reserved.take().filter(|r| r.tokens > 0) {
            self.shared.limiter.reconcile(
                &res.route,
                &res.key,
                &res.limits,
                -i64::try_from(res.tokens).unwrap_or(i64::MAX),
                Instant::now(),
            );
        }
        self.log.status = r.status;
        self.log.denied = true;
        self.log.reason = Some(r.code.to_string());
        let resp = refusal_response(&r, self.log.operation.as_deref() == Some("messages"));
        self.log.bytes_out = http_body::Body::size_hint(resp.body()).exact().unwrap_or(0);
        self.finish();
        resp
    }

    fn finish(mut self) {
        self.log.duration = self.started.elapsed();
        tracing::debug!(status = self.log.status, route = ?self.log.route, consumer = ?self.log.consumer, reason = ?self.log.reason, "ingress request");
        if let Some(tx) = &self.shared.events {
            tx.try_send(http_event(&self.shared.origin, self.log));
        }
    }
}

/// A refusal as a response: the JSON body in the API's shape (Anthropic's on the Messages
/// API), `Retry-After` when it has one, `WWW-Authenticate` on a 401.
pub(super) fn refusal_response(r: &Refusal, anthropic: bool) -> Response<ProxyBody> {
    let mut resp = Response::new(full(r.body_for(anthropic)));
    *resp.status_mut() =
        http::StatusCode::from_u16(r.status).unwrap_or(http::StatusCode::FORBIDDEN);
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Some(s) = r.retry_after {
        h.insert(header::RETRY_AFTER, HeaderValue::from(s));
    }
    if r.status == 401 {
        h.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    resp
}

fn auth_refusal(e: &AuthError) -> Refusal {
    let msg = match e {
        AuthError::Missing => "You didn't provide an API key.",
        AuthError::InvalidKey => "Incorrect API key provided.",
        AuthError::Expired => "The access token has expired.",
        AuthError::InvalidToken(_) => "The access token is not valid.",
        AuthError::CertificateRequired => "This route requires a client certificate.",
        AuthError::UnknownCertificate => "The client certificate is not allowed on this route.",
    };
    Refusal::new(401, "invalid_request_error", e.code(), msg)
}

/// The consumer of a request to `route`, and the certificate identity that proved it (mutual
/// TLS). A client certificate verified by the route's own gateway and naming an identity the
/// route maps (`auth.mtls`) decides first; otherwise the bearer credential does, when the
/// route takes one.
fn authenticate(
    route: &Route,
    headers: &HeaderMap,
    peer: &Peer,
) -> Result<(Option<String>, Option<String>), AuthError> {
    let Some(auth) = &route.auth else {
        return Ok((None, None));
    };
    if let Some(map) = &auth.mtls {
        let cert = peer
            .client_cert
            .as_ref()
            .filter(|c| c.gateway == route.gateway);
        if let Some(cert) = cert {
            if let Some((id, consumer)) = cert.names.iter().find_map(|n| map.get(n).map(|c| (n, c)))
            {
                return Ok((Some(consumer.clone()), Some(id.clone())));
            }
        }
        if auth.keys.is_none() && auth.jwt.is_none() {
            return Err(match cert {
                None => AuthError::CertificateRequired,
                Some(_) => AuthError::UnknownCertificate,
            });
        }
    }
    bearer(auth, headers).map(|c| (c, None))
}

fn bearer(
    auth: &crate::config::RouteAuth,
    headers: &HeaderMap,
) -> Result<Option<String>, AuthError> {
    let cred = credential(headers)
        .filter(|c| !c.is_empty())
        .ok_or(AuthError::Missing)?;
    if let (Some(jwt), true) = (&auth.jwt, looks_like_jwt(cred)) {
        return jwt.verify(cred).map(Some);
    }
    match (&auth.keys, &auth.jwt) {
        (Some(keys), _) => keys
            .lookup(cred)
            .map(|c| Some(c.to_string()))
            .ok_or(AuthError::InvalidKey),
        (None, Some(jwt)) => jwt.verify(cred).map(Some),
        (None, None) => Err(AuthError::InvalidKey),
    }
}

fn guard_action(a: GuardAction) -> DetectionAction {
    match a {
        GuardAction::Block => DetectionAction::Block,
        GuardAction::Flag => DetectionAction::Flag,
        GuardAction::Log => DetectionAction::Log,
        GuardAction::Redact => DetectionAction::Redact,
    }
}

fn filter_detection(a: FilterAction) -> DetectionAction {
    match a {
        FilterAction::Block => DetectionAction::Block,
        FilterAction::Redact => DetectionAction::Redact,
        FilterAction::Flag => DetectionAction::Flag,
        FilterAction::Log => DetectionAction::Log,
    }
}

/// A fresh canary token.
fn new_canary() -> String {
    use ring::rand::SecureRandom;
    let mut b = [0u8; 8];
    let _ = ring::rand::SystemRandom::new().fill(&mut b);
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!("pcn-{hex}")
}

/// The client end of a connection, formatted once for all its requests.
#[derive(Debug)]
pub struct Peer {
    /// Address and port.
    pub addr: SocketAddr,
    /// The address as text (WAF `REMOTE_ADDR`).
    pub ip: String,
    /// The per-client limit key: `ip:ADDRESS` for IPv4, `ip:PREFIX/64` for IPv6 (one host
    /// is usually given a whole /64, so per-address buckets would let it take 2^64 of them).
    pub limit_key: String,
    /// The address as an `X-Forwarded-For` value.
    pub forwarded_for: Option<HeaderValue>,
    /// The server name of the TLS handshake (SNI), when the gateway terminated TLS and
    /// the client sent one.
    pub sni: Option<Box<str>>,
    /// The client certificate verified in the handshake (mutual TLS).
    pub client_cert: Option<ClientCert>,
}

/// A client certificate verified by a gateway's `clientCaFile`.
#[derive(Debug, Clone)]
pub struct ClientCert {
    /// `namespace/name` of the gateway whose CAs verified it: only that gateway's routes
    /// take it as a credential.
    pub gateway: String,
    /// What it names: URI SANs (SPIFFE IDs), DNS SANs, subject common names.
    pub names: Vec<String>,
}

/// The rate-limit key of an anonymous client: its IPv4 address, or its IPv6 /64.
fn limit_key(ip: std::net::IpAddr) -> String {
    match ip.to_canonical() {
        std::net::IpAddr::V4(v4) => format!("ip:{v4}"),
        std::net::IpAddr::V6(v6) => {
            let s = v6.segments();
            let prefix = std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0);
            format!("ip:{prefix}/64")
        }
    }
}

#[cfg(test)]
mod limit_key_tests {
    #[test]
    fn ipv6_clients_share_their_64() {
        let k = |s: &str| super::limit_key(s.parse().unwrap());
        assert_eq!(k("10.0.0.1"), "ip:10.0.0.1");
        assert_eq!(k("::ffff:10.0.0.1"), "ip:10.0.0.1");
        assert_eq!(k("2001:db8:1:2::1"), "ip:2001:db8:1:2::/64");
        assert_eq!(k("2001:db8:1:2:ffff::9"), k("2001:db8:1:2::1"));
        assert_ne!(k("2001:db8:1:3::1"), k("2001:db8:1:2::1"));
    }
}

impl Peer {
    /// Formats `addr`.
    pub fn new(addr: SocketAddr) -> Peer {
        let ip = addr.ip().to_string();
        Peer {
            addr,
            limit_key: limit_key(addr.ip()),
            forwarded_for: HeaderValue::from_str(&ip).ok(),
            ip,
            sni: None,
            client_cert: None,
        }
    }

    /// `addr`, on a TLS connection whose handshake named `sni`.
    pub fn with_sni(addr: SocketAddr, sni: Option<&str>) -> Peer {
        Peer {
            sni: sni.map(Box::from),
            ..Peer::new(addr)
        }
    }
}

/// The backend URI for a request to `pq`: the backend's scheme and authority, its path
/// prefix, then the request's path and query (built from parts, without re-parsing when
/// the backend has no prefix).
fn backend_uri(
    backend: &crate::config::Backend,
    pq: Option<&http::uri::PathAndQuery>,
) -> Option<http::Uri> {
    let path = match (backend.base_path.is_empty(), pq) {
        (true, Some(p)) => p.clone(),
        (true, None) => http::uri::PathAndQuery::from_static("/"),
        (false, p) => format!("{}{}", backend.base_path, p.map_or("/", |p| p.as_str()))
            .parse()
            .ok()?,
    };
    let scheme = if backend.tls.is_some() {
        http::uri::Scheme::HTTPS
    } else {
        http::uri::Scheme::HTTP
    };
    http::Uri::builder()
        .scheme(scheme)
        .authority(backend.authority.clone())
        .path_and_query(path)
        .build()
        .ok()
}

/// Whether a request to `route` (on a path that is not a known OpenAI-style operation)
/// needs its JSON body read: for models, prompt sizes, token limits, the prompt guard,
/// the canary, or the WAF's prompt exclusion. A plain JSON API behind the gateway is
/// then proxied without parsing its bodies.
fn reads_prompts(
    route: &Route,
    rights: Option<&crate::config::ConsumerRights>,
    limits: &crate::limits::Limits,
    max_prompt: Option<u64>,
) -> bool {
    decides_on_body(route, rights, limits, max_prompt)
        || route.waf.is_some() && !route.waf_inspect_prompts
}

/// Whether the route's decisions depend on what the JSON body says (models, prompt sizes,
/// token limits, the prompt guard, the canary). Such a route reads every request body as
/// JSON whatever its `Content-Type` says (or when it says nothing), because backends such
/// as FastAPI, llama.cpp or Ollama parse JSON regardless; a body that is not a JSON object
/// is refused rather than passed on unchecked.
fn decides_on_body(
    route: &Route,
    rights: Option<&crate::config::ConsumerRights>,
    limits: &crate::limits::Limits,
    max_prompt: Option<u64>,
) -> bool {
    !route.models.is_empty()
        || rights.is_some_and(|r| !r.models.is_empty())
        || route.guard.is_some()
        || route.filters.canary.is_some()
        || limits.tokens_per_minute.is_some()
        || max_prompt.is_some()
}

/// Refuses a body the gateway could not inspect the way the backend will read it: a
/// `Content-Encoding` other than `identity` (the gateway does not decompress; some backends
/// do) on a route that inspects bodies (`inspects`), and a `charset` other than UTF-8 on a
/// body read as JSON.
fn unreadable_body(headers: &HeaderMap, inspects: bool, as_json: bool) -> Option<Refusal> {
    // `Content-Type` is a singleton field (RFC 9110 §8.3): with two, the gateway reads the
    // first and a backend may read the last.
    if headers.get_all(header::CONTENT_TYPE).iter().count() > 1 {
        return Some(Refusal::new(
            400,
            "invalid_request_error",
            "invalid_content_type",
            "The request names its Content-Type more than once.",
        ));
    }
    let encoded = headers
        .get_all(header::CONTENT_ENCODING)
        .iter()
        .flat_map(|v| v.as_bytes().split(|b| *b == b','))
        .any(|t| !t.trim_ascii().is_empty() && !t.trim_ascii().eq_ignore_ascii_case(b"identity"));
    if inspects && encoded {
        return Some(Refusal::new(
            415,
            "invalid_request_error",
            "unsupported_content_encoding",
            "This route accepts uncompressed request bodies only.",
        ));
    }
    let charset = headers
        .get(header::CONTENT_TYPE)
        .map(|v| v.as_bytes().to_ascii_lowercase())
        .and_then(|v| {
            v.split(|b| *b == b';')
                .skip(1)
                .filter_map(|p| {
                    let p = p.trim_ascii();
                    p.strip_prefix(b"charset=").map(|c| c.trim_ascii().to_vec())
                })
                .last()
        });
    let utf8 = |c: &[u8]| {
        let c: Vec<u8> = c.iter().copied().filter(|b| *b != b'"').collect();
        c == b"utf-8" || c == b"utf8"
    };
    if as_json && charset.is_some_and(|c| !utf8(&c)) {
        return Some(Refusal::new(
            415,
            "invalid_request_error",
            "unsupported_charset",
            "JSON request bodies must be UTF-8.",
        ));
    }
    None
}

/// The refusal for a body that is not strict JSON; `declared_other`: its `Content-Type`
/// names another media type (a form, a file upload).
fn body_refusal(e: &BodyError, declared_other: bool) -> Refusal {
    let bad =
        |code: &'static str, msg: String| Refusal::new(400, "invalid_request_error", code, msg);
    match e {
        BodyError::Malformed(_) if declared_other => Refusal::new(
            415,
            "invalid_request_error",
            "unsupported_media_type",
            "This route accepts JSON request bodies only.",
        ),
        BodyError::Malformed(_) => bad(
            "invalid_json",
            "We could not parse the JSON body of your request.".into(),
        ),
        BodyError::TooDeep => bad(
            "invalid_json",
            "The JSON body of your request is nested too deeply.".into(),
        ),
        BodyError::NotObject => bad(
            "invalid_json",
            "The JSON body of your request must be an object.".into(),
        ),
        BodyError::ByteOrderMark => bad(
            "invalid_json",
            "The JSON body of your request starts with a byte order mark.".into(),
        ),
        BodyError::DuplicateKey(k) => bad(
            "duplicate_json_key",
            format!("The JSON body of your request names the key `{k}` twice in one object."),
        ),
        BodyError::ModelNotString => bad(
            "invalid_model",
            "The `model` field of your request must be a string.".into(),
        ),
        BodyError::NotAnInteger(k) => bad(
            "invalid_parameter",
            format!("The `{k}` field of your request must be a non-negative integer."),
        ),
    }
}

/// Refuses a path that servers may read differently (`palisade_policy::http_path`) when
/// the readings would take different routes or be different AI operations: the route's
/// authentication, limits and prompt checks must be those of the resource the backend
/// serves, whichever way it reads the path. A malformed escape is refused too. Nothing is
/// rewritten: the backend gets the path as sent.
pub(crate) fn one_reading(
    config: &crate::config::Compiled,
    host: &str,
    path: &str,
) -> Result<(), Refusal> {
    let bad = |why: &'static str| Refusal::new(400, "invalid_request_error", "invalid_path", why);
    let views = palisade_policy::http_path::views(path)
        .map_err(|_| bad("The path has a malformed percent-escape."))?;
    if views.len() == 1 {
        // One reading (the common case): nothing to compare, no route lookup here.
        return Ok(());
    }
    let first = &views[0];
    let route = |p: &str| config.route(host, p).map(|r| r.name.clone());
    let (r0, o0, b0) = (route(first), operation(first), creates_batch(first));
    if views[1..]
        .iter()
        .any(|v| route(v) != r0 || operation(v) != o0 || creates_batch(v) != b0)
    {
        return Err(bad(
            "The path reads differently once normalised (escapes, dot segments, slashes).",
        ));
    }
    Ok(())
}

/// Most of an unread HTTP/2 request body read and dropped after a refusal.
const DRAIN_BYTES: usize = 1 << 20;
/// Longest time spent reading it.
const DRAIN_TIME: Duration = Duration::from_secs(5);

/// Serves one request.
pub async fn handle(
    shared: Arc<Shared>,
    req: Request<Incoming>,
    peer: Arc<Peer>,
) -> Response<ProxyBody> {
    let (parts, body) = req.into_parts();
    let h2 = parts.version == http::Version::HTTP_2;
    let mut body = Some(body);
    let resp = serve(shared, Request::from_parts(parts, ()), &mut body, peer).await;
    if let (true, Some(b)) = (h2, body) {
        drain_later(b);
    }
    resp
}

/// HTTP/2: a refusal answered before the request body was read leaves the client still
/// sending it, and dropping the body resets the stream with `CANCEL`, which clients such
/// as curl report as a stream error instead of the answer. The rest of the body is read and
/// dropped instead, after the answer went out (up to [`DRAIN_BYTES`] within
/// [`DRAIN_TIME`]; past that the stream is reset after all).
fn drain_later(body: Incoming) {
    if hyper::body::Body::is_end_stream(&body) {
        return;
    }
    tokio::spawn(async move {
        let mut body = body;
        let mut read = 0usize;
        let _ = tokio::time::timeout(DRAIN_TIME, async {
            while let Some(Ok(frame)) = body.frame().await {
                read += frame.data_ref().map_or(0, Bytes::len);
                if read > DRAIN_BYTES {
                    break;
                }
            }
        })
        .await;
    });
}

/// [`handle`] with the request body apart: taken from `body` when it is read, left there
/// when the request is refused before.
async fn serve(
    shared: Arc<Shared>,
    mut req: Request<()>,
    body: &mut Option<Incoming>,
    peer: Arc<Peer>,
) -> Response<ProxyBody> {
    let remote = peer.addr;
    let started = Instant::now();
    let host = req
        .uri()
        .authority()
        .map(|a| a.as_str().to_string())
        .or_else(|| {
            req.headers()
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .map(str::to_string)
        })
        .unwrap_or_default();
    let path = req.uri().path().to_string();
    let op = operation(&path);
    let mut x = Exchange {
        log: ExchangeLog {
            client: Some(remote),
            method: req.method().to_string(),
            host: host.clone(),
            path: path.clone(),
            tls: shared.tls,
            operation: op.map(str::to_string),
            version: palisade_egress::events::http_version(req.version()),
            ..Default::default()
        },
        shared: shared.clone(),
        started,
        reserved: None,
    };
    let config = shared.config.load_full();
    if let Some(r) = super::target::flaw(&req) {
        return x.refuse(r);
    }
    if shared.tls {
        if let Some(r) = super::sni::misdirected(&config.tls, peer.sni.as_deref(), &host) {
            return x.refuse(r);
        }
    }
    // HTTP/2 may split `cookie` into fields: the WAF and the backend (HTTP/1.1) get them
    // joined, as an HTTP/1.1 client sends them.
    if req.version() == http::Version::HTTP_2 {
        palisade_egress::hop::fold_cookies(req.headers_mut());
    }
    if let Err(r) = one_reading(&config, &host, &path) {
        return x.refuse(r);
    }
    let Some(route) = config.route(&host, &path).cloned() else {
        return x.refuse(Refusal::new(
            404,
            "invalid_request_error",
            "route_not_found",
            "No route serves this URL.",
        ));
    };
    x.log.route = Some(route.name.clone());
    x.log.backend = Some(route.backend.authority.to_string());

    // Who is calling, and may they use this route?
    let consumer = match authenticate(&route, req.headers(), &peer) {
        Ok((c, id)) => {
            // The identity that authenticated, else what a verified certificate names.
            x.log.client_identity = id.or_else(|| {
                let cert = peer.client_cert.as_ref();
                cert.and_then(|c| c.names.first().cloned())
            });
            c
        }
        Err(e) => return x.refuse(auth_refusal(&e)),
    };
    x.log.consumer = consumer.clone();
    let rights = match &consumer {
        Some(c) if !route.consumers.is_empty() => match route.consumers.get(c) {
            Some(r) => Some(r.clone()),
            None => {
                return x.refuse(Refusal::new(
                    403,
                    "permission_error",
                    "consumer_not_allowed",
                    "This consumer may not use this gateway.",
                ))
            }
        },
        _ => None,
    };
    if let Some(r) = &rights {
        if !r.routes.is_empty() && !r.routes.contains(&route.name) {
            return x.refuse(Refusal::new(
                403,
                "permission_error",
                "route_not_allowed",
                "This consumer may not use this route.",
            ));
        }
    }
    let (limits, max_body, max_prompt) = route.limits_for(consumer.as_deref());
    let limit_key = consumer.clone().unwrap_or_else(|| peer.limit_key.clone());
    // A batch runs many requests the gateway never reads (inline `requests[].params` or a
    // file uploaded before): where the route decides on what requests say (models,
    // prompts, tokens), it cannot decide on those, so it does not create them.
    if req.method() == http::Method::POST
        && creates_batch(&path)
        && decides_on_body(&route, rights.as_ref(), &limits, max_prompt)
    {
        return x.refuse(Refusal::new(
            403,
            "permission_error",
            "batch_not_allowed",
            "Batches cannot be created through this route: their requests are not checked one by one.",
        ));
    }

    // The body, within its size and time limits.
    let (parts, ()) = req.into_parts();
    let Some(body) = body.take() else {
        return x.refuse(Refusal::new(
            500,
            "server_error",
            "internal_error",
            "The request body was lost.",
        ));
    };
    if let Some(len) = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
    {
        if len > max_body {
            return x.refuse(Refusal::new(
                413,
                "invalid_request_error",
                "request_too_large",
                format!("The request body is larger than {max_body} bytes."),
            ));
        }
    }
    let raw = if hyper::body::Body::is_end_stream(&body) {
        // No body (a GET): nothing to wait for.
        Bytes::new()
    } else {
        match tokio::time::timeout(
            BODY_TIMEOUT,
            Limited::new(body, usize::try_from(max_body).unwrap_or(usize::MAX)).collect(),
        )
        .await
        {
            Err(_) => {
                return x.refuse(Refusal::new(
                    408,
                    "invalid_request_error",
                    "request_timeout",
                    "The request body took too long to arrive.",
                ))
            }
            Ok(Err(e))
                if e.downcast_ref::<http_body_util::LengthLimitError>()
                    .is_some() =>
            {
                return x.refuse(Refusal::new(
                    413,
                    "invalid_request_error",
                    "request_too_large",
                    format!("The request body is larger than {max_body} bytes."),
                ))
            }
            Ok(Err(_)) => {
                return x.refuse(Refusal::new(
                    400,
                    "invalid_request_error",
                    "bad_request_body",
                    "The request body could not be read.",
                ))
            }
            Ok(Ok(b)) => b.to_bytes(),
        }
    };
    x.log.bytes_in = raw.len() as u64;
    // No body on a route that decides on bodies: there is nothing to check, so only the
    // read-only endpoints an AI API client expects (model lists, file metadata, health) go
    // through. Before, any path did (`GET /slots`, `DELETE /v1/files/x`, …).
    if raw.is_empty()
        && decides_on_body(&route, rights.as_ref(), &limits, max_prompt)
        && !bodyless_allowed(&parts.method, &path)
    {
        return x.refuse(Refusal::new(
            403,
            "permission_error",
            "endpoint_not_allowed",
            "This route forwards only requests it can check: API calls with a JSON body, and reads of model lists, file metadata and health.",
        ));
    }
    let ctype = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_ascii_lowercase);
    let is_json = ctype.as_deref().is_some_and(|v| v.contains("json"));
    let mut api = None;
    // What the route decides on the body for (models, prompts, tokens), and AI operation
    // paths: the body is read as JSON whatever its declared type, or refused.
    let inspects = op.is_some() || decides_on_body(&route, rights.as_ref(), &limits, max_prompt);
    let wanted = inspects || reads_prompts(&route, rights.as_ref(), &limits, max_prompt);
    if !raw.is_empty() {
        let as_json = inspects || (wanted && is_json);
        if let Some(r) = unreadable_body(&parts.headers, inspects || route.waf.is_some(), as_json) {
            return x.refuse(r);
        }
        if as_json {
            match ApiRequest::parse(&raw, &route.prompt_fields) {
                Ok(a) => api = Some(a),
                Err(e) => return x.refuse(body_refusal(&e, ctype.is_some() && !is_json)),
            }
        }
    }

    // Models: the route's list, then the consumer's. Where a list applies, a body must
    // name its model (a backend would otherwise pick its default, whatever the lists say).
    // Azure OpenAI-style paths name the model (the deployment) in the path and ignore the
    // body's `model`: both names must pass the lists.
    let deployment = deployment_in(&path);
    let model = api.as_ref().and_then(|a| a.model.clone());
    x.log.model = model.clone().or_else(|| deployment.clone());
    let listed = !route.models.is_empty() || rights.as_ref().is_some_and(|r| !r.models.is_empty());
    if api.is_some() && model.is_none() && deployment.is_none() && listed {
        return x.refuse(Refusal::new(
            400,
            "invalid_request_error",
            "model_required",
            "The request must name its `model`.",
        ));
    }
    for m in model.iter().chain(deployment.iter()) {
        if !route.models.is_empty() && !route.models.contains(m) {
            return x.refuse(Refusal::new(
                404,
                "invalid_request_error",
                "model_not_found",
                format!("The model `{m}` does not exist or you do not have access to it."),
            ));
        }
        if let Some(r) = &rights {
            if !r.models.is_empty() && !r.models.contains(m) {
                return x.refuse(Refusal::new(
                    403,
                    "permission_error",
                    "model_not_allowed",
                    format!("You are not allowed to use the model `{m}`."),
                ));
            }
        }
    }
    // A prompt given as token ids is text the guard and the size limit cannot read.
    if api.as_ref().is_some_and(|a| a.token_ids > 0)
        && (route.guard.is_some() || max_prompt.is_some())
    {
        return x.refuse(Refusal::new(
            400,
            "invalid_request_error",
            "token_prompt_not_allowed",
            "This route accepts prompts as text only, not as token ids.",
        ));
    }
    if let (Some(a), Some(max)) = (&api, max_prompt) {
        if a.prompt_chars() > max {
            return x.refuse(Refusal::new(
                400,
                "invalid_request_error",
                "prompt_too_long",
                format!("The prompt is longer than {max} characters."),
            ));
        }
    }

    // Rates: requests per second and prompt tokens per minute.
    // The charge is the prompt (text and token ids) plus the completion budget the request
    // declares (`max_tokens` × `n`), so that concurrent requests cannot each be admitted
    // on their prompt alone and overdraw together; the usage reported replaces it after.
    let prompt_tokens = api
        .as_ref()
        .map(|a| {
            tokens::prompt_tokens(model.as_deref().unwrap_or(""), &a.prompts)
                .saturating_add(a.token_ids)
        })
        .unwrap_or(0);
    if api.is_some() {
        x.log.prompt_tokens = Some(prompt_tokens);
    }
    // A request that declares no budget (or an unbounded one) reserves
    // `default_reservation` per choice where it generates text.
    let default_budget = if generates(&path) {
        default_reservation(limits.tokens_per_minute)
    } else {
        0
    };
    let charged = prompt_tokens.saturating_add(
        api.as_ref()
            .map_or(0, |a| a.completion_budget(default_budget)),
    );
    let charged =
        match shared
            .limiter
            .admit(&route.name, &limit_key, &limits, charged, Instant::now())
        {
            Ok(taken) => taken,
            Err(e) => {
                let (kind, msg) = match e {
                    Exceeded::Requests(_) => ("requests", "Rate limit reached for requests."),
                    Exceeded::Tokens(_) => ("tokens", "Rate limit reached for tokens per minute."),
                };
                let mut r = Refusal::new(429, kind, "rate_limit_exceeded", msg);
                r.retry_after = Some(e.retry_after());
                return x.refuse(r);
            }
        };
    if limits.tokens_per_minute.is_some() && charged > prompt_tokens {
        x.reserved = Some(Reserved {
            route: route.name.clone(),
            key: limit_key.clone(),
            limits,
            tokens: charged - prompt_tokens,
        });
    }

    // The WAF, on everything but the prompt text.
    if let Some(waf) = &route.waf {
        let waf_body: Vec<u8> = match (&api, route.waf_inspect_prompts) {
            (Some(a), false) => a.without_prompts(&route.prompt_fields),
            _ => raw.to_vec(),
        };
        // The rules parse a body as JSON only when it is declared `application/json`, and
        // backends read JSON declared as anything, or as nothing. A body the gateway read as
        // JSON, or one not declared as a form or XML, is shown to the rules as JSON (one that
        // is not JSON then fails their body parsing and is refused).
        let json_view = !waf_body.is_empty() && (api.is_some() || !form_or_xml(ctype.as_deref()));
        let mut hv: Vec<(&[u8], &[u8])> = parts
            .headers
            .iter()
            .filter(|(k, _)| !(json_view && *k == header::CONTENT_TYPE))
            .map(|(k, v)| (k.as_str().as_bytes(), v.as_bytes()))
            .collect();
        if json_view {
            hv.push((b"content-type", b"application/json"));
        }
        if parts.headers.get(header::HOST).is_none() {
            hv.push((b"Host", host.as_bytes()));
        }
        let uri = parts
            .uri
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/");
        let proto = match parts.version {
            http::Version::HTTP_2 => "HTTP/2.0",
            http::Version::HTTP_10 => "HTTP/1.0",
            _ => "HTTP/1.1",
        };
        let o = waf.check(&crate::waf::WafInput {
            method: parts.method.as_str(),
            uri: uri.as_bytes(),
            protocol: proto,
            headers: &hv,
            body: &waf_body,
            remote_addr: &peer.ip,
        });
        if !o.rule_ids.is_empty() || o.blocked.is_some() {
            let block = o.blocked.is_some() && !route.audit;
            x.log.audit |= o.blocked.is_some() && route.audit;
            x.log.detections.push(detection(
                "crs",
                if block {
                    DetectionAction::Block
                } else {
                    DetectionAction::Log
                },
                Some(o.score as f64),
                o.rule_ids.iter().map(|i| i.to_string()).collect(),
            ));
            if let (true, Some(status)) = (block, o.blocked) {
                return x.refuse(Refusal::new(
                    status,
                    "invalid_request_error",
                    "waf_blocked",
                    "The request was blocked by the web application firewall.",
                ));
            }
        }
    }

    // The prompt guard, on every prompt field (direct and indirect injection).
    if let (Some(g), Some(a)) = (&route.guard, &api) {
        let mut best = crate::guard::PromptScore::default();
        for text in a.guard_texts() {
            let s = shared.scorer.score(&text);
            if s.score > best.score {
                best = s;
            }
        }
        if best.score >= g.threshold && best.score > 0.0 {
            let block = g.action == GuardAction::Block && !route.audit;
            x.log.audit |= g.action == GuardAction::Block && route.audit;
            let act = if route.audit {
                DetectionAction::Log
            } else {
                guard_action(g.action)
            };
            x.log.detections.push(detection(
                "prompt-guard",
                act,
                Some(f64::from(best.score)),
                best.signals.clone(),
            ));
            if block {
                return x.refuse(Refusal::new(
                    400,
                    "invalid_request_error",
                    "prompt_injection_detected",
                    "The request was refused by the prompt guard.",
                ));
            }
        }
    }

    // The canary and the body to send.
    let mut filters = FilterSet {
        detectors: route.filters.detectors.clone(),
        canary: None,
    };
    let mut out_body = raw.clone();
    if let (Some(action), Some(a)) = (route.filters.canary, api.as_mut()) {
        let c = new_canary();
        let injected = match op {
            Some("responses") => a.with_instructions_canary(&c),
            Some("messages") => a.with_system_canary(&c),
            _ => a.with_canary(&c),
        };
        if injected {
            out_body = Bytes::from(a.to_bytes());
            filters.canary = Some((c, action));
        }
    }
    if route.audit {
        for (_, a) in filters.detectors.iter_mut() {
            *a = FilterAction::Log;
        }
        if let Some((_, a)) = filters.canary.as_mut() {
            *a = FilterAction::Log;
        }
    }

    // Forward.
    let Some(target) = backend_uri(&route.backend, parts.uri.path_and_query()) else {
        return x.refuse(Refusal::new(
            400,
            "invalid_request_error",
            "bad_request",
            "The request could not be forwarded.",
        ));
    };
    let mut up = Request::builder().method(parts.method.clone()).uri(target);
    if let Some(h) = up.headers_mut() {
        for (k, v) in parts.headers.iter() {
            let n = k.as_str();
            if is_hop_by_hop(k)
                || CREDENTIAL_HEADERS.contains(&n)
                || n == CONSUMER_HEADER
                || n == "host"
                || n == "content-length"
            {
                continue;
            }
            h.append(k.clone(), v.clone());
        }
        if let Ok(v) = HeaderValue::from_str(route.backend.host_header()) {
            h.insert(header::HOST, v);
        }
        if !out_body.is_empty() || parts.method == http::Method::POST {
            h.insert(header::CONTENT_LENGTH, HeaderValue::from(out_body.len()));
        }
        // The output filters read the answer as sent: ask for it uncompressed (a client's
        // `Accept-Encoding: gzip` would otherwise get compressed bytes past them).
        if !filters.is_empty() {
            h.insert(
                header::ACCEPT_ENCODING,
                HeaderValue::from_static("identity"),
            );
        }
        if let Some(v) = peer.forwarded_for.clone() {
            h.append("x-forwarded-for", v);
        }
        h.insert(
            "x-forwarded-proto",
            HeaderValue::from_static(if shared.tls { "https" } else { "http" }),
        );
        if let Some(c) = consumer
            .as_deref()
            .and_then(|c| HeaderValue::from_str(c).ok())
        {
            h.insert(CONSUMER_HEADER, c);
        }
    }
    let Ok(up) = up.body(full(out_body)) else {
        return x.refuse(Refusal::new(
            400,
            "invalid_request_error",
            "bad_request",
            "The request could not be forwarded.",
        ));
    };
    let sent = async {
        match &route.backend.tls {
            Some(t) => t.client.request(up).await.map_err(Into::into),
            None => super::upstream::send_request(&shared.client, up).await,
        }
    };
    let resp = match tokio::time::timeout(route.timeout, sent).await {
        Err(_) => {
            // The backend may be generating still: the reservation stays charged.
            x.reserved = None;
            return x.refuse(Refusal::new(
                504,
                "server_error",
                "upstream_timeout",
                "The model backend did not answer in time.",
            ));
        }
        Ok(Err(e)) => {
            let tls = tls_failure(&*e);
            tracing::warn!(route = %route.name, error = %e, tls = ?tls, "backend request failed");
            let refusal = match tls {
                Some(TlsFailure::Certificate(_)) => Refusal::new(
                    502,
                    "server_error",
                    "upstream_certificate_invalid",
                    "The model backend's TLS certificate could not be verified.",
                ),
                Some(TlsFailure::Handshake(_)) => Refusal::new(
                    502,
                    "server_error",
                    "upstream_tls_failed",
                    "The TLS handshake with the model backend failed.",
                ),
                None => Refusal::new(
                    502,
                    "server_error",
                    "upstream_unavailable",
                    "The model backend is unavailable.",
                ),
            };
            return x.refuse(refusal);
        }
        Ok(Ok(r)) => r,
    };

    // The answer, streamed back through the filters.
    let (mut rparts, rbody) = resp.into_parts();
    let encoded = rparts
        .headers
        .get_all(header::CONTENT_ENCODING)
        .iter()
        .any(|v| !v.as_bytes().trim_ascii().eq_ignore_ascii_case(b"identity"));
    if encoded && !filters.is_empty() && !route.audit {
        // Compressed anyway: the filters cannot read it, so it does not go out (it was
        // generated: the reservation stays charged).
        x.reserved = None;
        return x.refuse(Refusal::new(
            502,
            "server_error",
            "upstream_encoding_unsupported",
            "The model backend answered in an encoding the gateway cannot inspect.",
        ));
    }
    let ctype = rparts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    let sse = ctype.starts_with("text/event-stream");
    let json = ctype.contains("json");
    // A non-streamed JSON answer to filter is read before anything is sent, so that a
    // blocking finding is a clean refusal, when the filter can keep it whole: a declared
    // length of at most 1 MiB, or none (chunked or until close: read up to 1 MiB, then
    // streamed if it goes on, see `whole.rs`). A larger declared length streams at once; an
    // answer known to be empty (204, 304, a `HEAD`) has nothing to wait for.
    let declared = rparts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.trim().parse::<usize>().ok());
    let whole = !sse
        && json
        && !filters.is_empty()
        && declared.map_or(!hyper::body::Body::is_end_stream(&rbody), |n| {
            n <= super::body::MAX_CAPTURE
        });
    strip_hop_by_hop(&mut rparts.headers);
    if sse || !filters.is_empty() {
        rparts.headers.remove(header::CONTENT_LENGTH);
    }
    x.log.status = rparts.status.as_u16();
    let shared2 = shared.clone();
    let route2 = route.clone();
    let est_model = model.clone().unwrap_or_default();
    let finish = Box::new(move |s: BodySummary| {
        let mut x = x;
        x.log.bytes_out = s.bytes_out;
        let completion = s.usage.and_then(|u| u.completion_tokens).or_else(|| {
            (!s.completion_text.is_empty()).then(|| tokens::count(&est_model, &s.completion_text))
        });
        let prompt = s
            .usage
            .and_then(|u| u.prompt_tokens)
            .or(x.log.prompt_tokens);
        if x.log.prompt_tokens.is_some() || s.usage.is_some() {
            x.log.prompt_tokens = prompt;
            x.log.completion_tokens = completion;
        }
        let used = prompt.unwrap_or(0) + completion.unwrap_or(0);
        let delta = i64::try_from(used)
            .unwrap_or(i64::MAX)
            .saturating_sub(i64::try_from(charged).unwrap_or(i64::MAX));
        if delta != 0 {
            shared2
                .limiter
                .reconcile(&route2.name, &limit_key, &limits, delta, Instant::now());
        }
        for h in &s.hits {
            x.log.detections.push(detection(
                &format!("output.{}", h.name),
                filter_detection(h.action),
                None,
                Vec::new(),
            ));
        }
        if let Some(status) = s.status {
            x.log.status = status;
        }
        if let Some(name) = &s.blocked {
            x.log.denied = true;
            x.log.reason = Some(format!("output_blocked:{name}"));
        } else if s.stalled {
            // The answer was cut: recorded like the gateway's other cuts.
            x.log.denied = true;
            x.log.reason = Some("upstream_idle_timeout".into());
        }
        if route2.audit && !s.hits.is_empty() {
            x.log.audit = true;
        }
        x.finish();
    });
    if whole {
        let anthropic = op == Some("messages");
        return super::whole::filter_answer(
            rparts,
            rbody,
            filters,
            (route.timeout, route.stream_idle_timeout),
            anthropic,
            finish,
        )
        .await;
    }
    let body = FilteredBody::new(rbody, filters, sse, json, finish)
        .idle_timeout(route.stream_idle_timeout);
    Response::from_parts(rparts, body.boxed_unsync())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_read_differently_by_servers_are_refused_when_it_matters() {
        let yaml = "apiVersion: palisade.dev/v1alpha1\nkind: AIGateway\nmetadata: {name: t, namespace: ml}\nspec:\n  routes:\n    - name: admin\n      pathPrefix: /admin\n      backend: http://127.0.0.1:9\n    - name: llm\n      pathPrefix: /v1\n      backend: http://127.0.0.1:9\n    - name: public\n      pathPrefix: /\n      backend: http://127.0.0.1:9\n";
        let mut m = palisade_policy::Manifests::new();
        m.add_file("gateway.yaml", yaml);
        assert!(!m.has_errors(), "{:?}", m.diagnostics);
        let c = crate::compile(&palisade_policy::Snapshot::from_manifests(&m).gateways).unwrap();
        let code = |path: &str| {
            one_reading(&c, "gw", path)
                .err()
                .map(|r| (r.status, r.code))
        };
        // Same route and operation for every reading: served as sent.
        for p in [
            "/v1/chat/completions",
            "/public/a/../b",
            "/v1//models",
            "/x/%41",
            "/a%2Fb",
        ] {
            assert_eq!(code(p), None, "{p}");
        }
        // Another route (its auth, limits) or another AI operation (its prompt checks).
        for p in [
            "/%61dmin",
            "//admin/x",
            "/public/../admin",
            "/public/..;/admin",
            "/v1/%63hat/completions",
            "/v1/chat/x/../completions",
            "/v1/x/..%2F..%2Fadmin",
            "/v1/chat/completions%2F..%2Fembeddings",
            "/v1/messages/%62atches",
            "/v1/batches/x/..",
        ] {
            assert_eq!(code(p), Some((400, "invalid_path")), "{p}");
        }
        assert_eq!(code("/v1/%zz"), Some((400, "invalid_path")));
    }

    #[test]
    fn deployments_are_read_from_azure_style_paths() {
        let d = |p: &str| deployment_in(p);
        assert_eq!(
            d("/openai/deployments/gpt-4o/chat/completions").as_deref(),
            Some("gpt-4o")
        );
        assert_eq!(
            d("/v1/openai/deployments/gpt%2D4o/embeddings").as_deref(),
            Some("gpt-4o")
        );
        assert_eq!(d("/v1/chat/completions"), None);
        assert_eq!(d("/openai/deployments/"), None);
        assert_eq!(d("/openai/deployments"), None);
    }

    #[test]
    fn backend_uris_join_the_prefix_and_keep_the_query() {
        let b = |base: &str| crate::config::Backend {
            authority: "10.0.0.1:8000".parse().unwrap(),
            base_path: base.to_string(),
            tls: None,
        };
        let pq: http::uri::PathAndQuery = "/v1/chat?x=1&y=%20".parse().unwrap();
        let u = backend_uri(&b(""), Some(&pq)).unwrap();
        assert_eq!(u.to_string(), "http://10.0.0.1:8000/v1/chat?x=1&y=%20");
        let u = backend_uri(&b("/llm"), Some(&pq)).unwrap();
        assert_eq!(u.to_string(), "http://10.0.0.1:8000/llm/v1/chat?x=1&y=%20");
        let u = backend_uri(&b(""), None).unwrap();
        assert_eq!(u.to_string(), "http://10.0.0.1:8000/");
    }

    #[test]
    fn hop_by_hop_headers_and_those_connection_names_are_removed() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, x-trace"),
        );
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert("x-trace", HeaderValue::from_static("1"));
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        strip_hop_by_hop(&mut h);
        let left: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        assert_eq!(left, ["content-type"]);

        let mut plain = HeaderMap::new();
        plain.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        strip_hop_by_hop(&mut plain);
        assert_eq!(plain.len(), 1);
    }
}
