//! One request through the gateway: route, authenticate, authorise, read the body within
//! its limits, check models, sizes and rates, run the WAF and the prompt guard, inject the
//! canary, forward, and stream the answer back through the output filters. Every exit
//! writes one event.
//!
//! `serve` runs the stages in that order (the order is part of the security model: a
//! request refused early consumes no budget, and a reservation is given back when a later
//! check refuses it). Each stage lives in its own module: `admission` (target, route,
//! credential, rights), `request_body` (reading and parsing the body), `checks` (models,
//! prompt form and size, rates and the token reservation), `inspection` (WAF, prompt
//! guard, canary), `forward` (the backend request) and `answer` (streaming the answer
//! back through the output filters and writing the event).

mod admission;
mod answer;
mod checks;
mod forward;
mod inspection;
mod peer;
mod request_body;

pub use peer::{ClientCert, Peer};

use super::upstream::{full, ProxyBody};
use super::Shared;
use crate::events::{http_event, ExchangeLog};
use crate::openai::operation;
use crate::refusal::Refusal;
use answer::Answered;
use bytes::Bytes;
use http::{header, HeaderValue, Request, Response};
use http_body_util::BodyExt;
use hyper::body::Incoming;
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
/// [`handle`] with the request body apart: taken from `body` when it is read, left there
/// when the request is refused before.
async fn serve(
    shared: Arc<Shared>,
    req: Request<()>,
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
    let target = Target {
        host: &host,
        path: &path,
        op,
    };
    match checked(&mut x, req, body, &peer, target).await {
        Ok(answered) => answer::stream_back(x, answered).await,
        Err(r) => x.refuse(r),
    }
}

/// Where a request goes: its host, its path, and the AI operation the path names.
#[derive(Clone, Copy)]
struct Target<'a> {
    host: &'a str,
    path: &'a str,
    op: Option<&'static str>,
}

/// The request checked stage by stage, in this order, then forwarded: admission (target,
/// route, credential, rights), the body, models and prompts, rates (the charge and the
/// reservation), the WAF, the prompt guard, the canary. The first stage that refuses
/// decides; the exchange records what each stage learnt.
async fn checked(
    x: &mut Exchange,
    mut req: Request<()>,
    body: &mut Option<Incoming>,
    peer: &Peer,
    t: Target<'_>,
) -> Result<Answered, Refusal> {
    let config = x.shared.config.load_full();
    let admitted = admission::admit(x, &config, &mut req, t.host, t.path, peer)?;

    // The body, within its size and time limits.
    let (parts, ()) = req.into_parts();
    let read = request_body::read(x, &admitted, &parts, body, t.op, t.path).await?;
    let mut api = read.api;

    let model = checks::models(x, &admitted, api.as_ref(), t.path)?;
    checks::prompt(&admitted, api.as_ref())?;
    let charged = checks::charge(x, &admitted, api.as_ref(), model.as_deref(), t.path)?;

    let route = &admitted.route;
    let seen = (&read.raw, api.as_ref(), read.ctype.as_deref());
    inspection::waf(x, route, &parts, t.host, seen, &peer.ip)?;
    inspection::guard(x, route, api.as_ref())?;
    let (filters, out_body) = inspection::canary(route, api.as_mut(), t.op, &read.raw);

    let consumer = admitted.consumer.as_deref();
    let resp = forward::send(x, route, &parts, out_body, &filters, consumer, peer).await?;
    Ok(Answered {
        resp,
        admitted,
        filters,
        model,
        charged,
        op: t.op,
    })
}

#[cfg(test)]
mod tests {
    use super::admission::one_reading;
    use super::forward::backend_uri;
    use crate::proxy::endpoints::deployment_in;
    use http::{header, HeaderMap, HeaderValue};
    use palisade_egress::hop::strip_hop_by_hop;

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
