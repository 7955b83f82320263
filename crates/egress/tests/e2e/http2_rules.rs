//! HTTP/2 inside intercepted TLS gets every check HTTP/1.1 gets, sent with a real HTTP/2
//! client (hyper's): a path rule holds for every reading of `:path`, a header rule for
//! every field of its name (split `cookie` fields are joined first, as the upstream gets
//! them), method overrides count as methods, `:authority` and `Host` must name the
//! tunnel's server and port, and DLP, body limits, upload budgets and AI accounting read
//! the DATA frames.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::Frame;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::{TokioExecutor, TokioIo};
use palisade_events::HttpVersion;

use super::http2::h2_tunnel;
use super::intercept::{intercepting, Intercepting};
use super::*;

type Body = BoxBody<Bytes, Infallible>;

/// What a case wants: the status, the event's reason, the body.
type Want<'a> = (u16, Option<&'a str>, &'a str);

/// What a case wants: the status, the body, the event's reason.
type Answer<'a> = (u16, String, Option<&'a str>);

/// A request body sent as DATA frames without a declared length.
struct Unsized(Option<Bytes>);

impl http_body::Body for Unsized {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Poll::Ready(self.0.take().map(|b| Ok(Frame::data(b))))
    }
}

fn empty() -> Body {
    Full::new(Bytes::new()).boxed()
}

fn full(b: &str) -> Body {
    Full::new(Bytes::from(b.to_string())).boxed()
}

fn streamed(b: &str) -> Body {
    Unsized(Some(Bytes::from(b.to_string()))).boxed()
}

/// Sends `req` on a new HTTP/2 connection through a tunnel: the status and body, or
/// `(0, error)` when the stream was refused.
async fn ask(i: &Intercepting, req: Request<Body>) -> (u16, String) {
    let tls = h2_tunnel(i).await;
    let (mut send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .unwrap();
    tokio::spawn(conn);
    let sent = tokio::time::timeout(Duration::from_secs(10), send.send_request(req))
        .await
        .expect("answered in time");
    match sent {
        Ok(r) => {
            let status = r.status().as_u16();
            let body = r.into_body().collect().await.unwrap().to_bytes();
            (
                status,
                String::from_utf8_lossy(&body).trim_end().to_string(),
            )
        }
        Err(e) => (0, e.to_string()),
    }
}

/// The reason and the deciding policy's name of a request's event (which must say the
/// client spoke HTTP/2).
async fn reason(i: &Intercepting) -> (Option<String>, Option<String>) {
    let e = next_event(&i.s.events).await;
    let EventBody::Http(h) = &e.body else {
        panic!("{e:?}")
    };
    assert_eq!(h.version, Some(HttpVersion::Http2), "{e:?}");
    (h.reason.clone(), e.policy.as_ref().map(|p| p.name.clone()))
}

/// hub.test: GET under /models, POST under /v1, GET /env with `X-Env: prod`, GET /c with
/// one `session` cookie and plain others; a cluster policy denies /models/admin and a
/// cookie naming `admin=1; debug=1`.
const RULES: &str = r#"
  - to: [{fqdn: "hub.test"}]
    http:
    - {methods: [GET, HEAD], path: {prefix: /models}}
    - {methods: [POST], path: {prefix: /v1}}
    - {methods: [GET], path: {prefix: /env}, headers: [{name: X-Env, value: prod}]}
    - {methods: [GET], path: {prefix: /c}, headers: [{name: Cookie, regex: "session=[a-z0-9]+(; [a-z]+=[a-z0-9]+)*"}]}
    - {methods: [GET], path: {prefix: /host}, headers: [{name: Host, regex: "hub\\.test:[0-9]+"}]}
---
apiVersion: palisade.dev/v1alpha1
kind: ClusterSecurityPolicy
metadata: {name: no-admin}
spec:
  tier: security
  subject: {namespaceSelector: {}}
  egress:
  - action: Deny
    to: [{fqdn: hub.test}]
    http:
    - {path: {prefix: /models/admin}}
    - {headers: [{name: Cookie, regex: ".*admin=1; debug=1.*"}]}
"#;

fn policy() -> String {
    let hub = "  - to: [{fqdn: \"hub.test\"}]\n    http: [{methods: [GET, HEAD]}]\n";
    let openai = "  - to: [{fqdn: \"api.openai.test\"}]";
    let p = POLICY.replace(hub, "");
    let (head, tail) = p.split_once(openai).unwrap();
    let (rule, rest) = tail.split_once("\n---\n").unwrap();
    let p = format!("{head}{openai}{rule}{RULES}---\n{rest}");
    assert!(
        p.contains("no-admin") && !p.contains("[GET, HEAD]}]\n"),
        "{p}"
    );
    p
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_paths_headers_cookies_and_method_overrides_are_read_like_http1() {
    let i = intercepting("h2-rules-all").await;
    palisade_egress::publish(
        &i.s.engine,
        Some(Arc::new(engine_from(&policy(), Posture::Allow))),
    );
    let url = |p: &str| format!("https://hub.test:{}{p}", i.port);
    let get = |p: &str| Request::get(url(p));
    let allowed = (200, None, "hello");
    let l7 = (
        403,
        Some("l7-not-allowed"),
        "palisade: denied (l7-not-allowed)",
    );

    let host_body = format!("1 hub.test:{}", i.port);
    let mut cases: Vec<(String, Request<Body>, Want<'_>)> = Vec::new();
    let mut case = |name: &str, r: Request<Body>, want| cases.push((name.to_string(), r, want));

    // Paths: an allowing rule holds for every reading, a denying one for any.
    for (p, want) in [
        ("/models/x", allowed),
        ("/models/./x", allowed),
        ("/models/%78", allowed),
        ("/models/../datasets", l7),
        ("/models/%2e%2e/datasets", l7),
        ("/models/..%2Fdatasets", l7),
        ("/models/..%5Cdatasets", l7),
        ("/models//../datasets", l7),
        ("/models/..;/datasets", l7),
        ("/models/%zz", l7),
        ("/models/%61dmin", l7),
        ("/models//admin", l7),
        ("/models/x/..;/admin", l7),
    ] {
        case(p, get(p).body(empty()).unwrap(), want);
    }
    // `:path` with a query or a fragment: the path before them is what is decided (and
    // what the upstream gets: hyper drops a fragment on both sides).
    case(
        "query",
        get("/models/x?next=/admin").body(empty()).unwrap(),
        allowed,
    );
    // A POST under /v1 in every reading, and one that leaves it.
    case(
        "post",
        Request::post(url("/v1/x")).body(full("a")).unwrap(),
        allowed,
    );
    case(
        "post ..",
        Request::post(url("/v1/..%2Fmodels"))
            .body(full("a"))
            .unwrap(),
        l7,
    );
    // Method overrides count as methods: GET with an override to DELETE is not a GET.
    for (name, value, want) in [
        ("x-http-method-override", "DELETE", l7),
        ("x-http-method", "PUT", l7),
        ("x-method-override", "GET, POST", l7),
        ("x-http-method-override", "get", allowed),
    ] {
        let r = get("/models/x").header(name, value).body(empty()).unwrap();
        case(&format!("{name}: {value}"), r, want);
    }
    // Every field of a header name.
    let env = |values: &[&[u8]]| {
        let mut r = get("/env");
        for v in values {
            r = r.header("x-env", hyper::header::HeaderValue::from_bytes(v).unwrap());
        }
        r.body(empty()).unwrap()
    };
    case("x-env prod", env(&[b"prod"]), allowed);
    case("x-env prod prod", env(&[b"prod", b"prod"]), allowed);
    case("no x-env", env(&[]), l7);
    case("x-env prod dev", env(&[b"prod", b"dev"]), l7);
    case("x-env prod,dev", env(&[b"prod, dev"]), l7);
    case("x-env obs-text", env(&[b"prod", b"pr\xffod"]), l7);
    // Cookie crumbs (RFC 9113 §8.2.3) are decided joined, as the upstream gets them.
    let crumbs = |p: &str, c: &[&str]| {
        let mut r = get(p);
        for v in c {
            r = r.header("cookie", *v);
        }
        r.body(empty()).unwrap()
    };
    case(
        "crumbs deny",
        crumbs("/models/x", &["admin=1", "debug=1"]),
        l7,
    );
    case(
        "crumbs allow",
        crumbs("/c", &["session=abc", "theme=dark"]),
        allowed,
    );
    case("crumbs other", crumbs("/c", &["session=abc", "x=Y!"]), l7);
    // No `host` field (HTTP/2 clients send `:authority`): a rule on `Host` sees the one the
    // upstream gets.
    case(
        "host rule",
        get("/host").body(empty()).unwrap(),
        (200, None, host_body.as_str()),
    );

    let mut failures = Vec::new();
    for (name, req, (status, why, body)) in cases {
        let got = ask(&i, req).await;
        let (r, policy) = reason(&i).await;
        let admin = (name.contains("admin") || name == "crumbs deny")
            .then_some("no-admin")
            .filter(|_| status == 403);
        if got != (status, body.to_string())
            || r.as_deref() != why
            || admin.is_some_and(|a| policy.as_deref() != Some(a))
        {
            failures.push(format!(
                "{name}: got {got:?}, reason {r:?}, policy {policy:?}"
            ));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");

    // The same cookie as one HTTP/1.1 field is denied the same way.
    let (body, code) = curl(via(
        &i.s,
        &[
            "--http1.1",
            "--cacert",
            &i.cacert,
            "-H",
            "Cookie: admin=1; debug=1",
            "-w",
            "\n%{http_code}",
        ],
        &url("/models/x"),
    ))
    .await;
    assert_eq!(
        (body.as_str(), code.as_str()),
        ("palisade: denied (l7-not-allowed)", "403")
    );
    next_event(&i.s.events).await;
    // `Connection` naming `Host` does not take it from the upstream.
    let (body, code) = curl(via(
        &i.s,
        &[
            "--http1.1",
            "--cacert",
            &i.cacert,
            "-H",
            "Connection: host",
            "-w",
            "\n%{http_code}",
        ],
        &url("/host"),
    ))
    .await;
    assert_eq!((body, code), (host_body.clone(), "200".to_string()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_authority_host_scheme_and_connect_are_checked_against_the_tunnel() {
    let i = intercepting("h2-authority").await;
    let p = i.port;
    let mismatch = (
        403,
        "palisade: denied (host-mismatch)".to_string(),
        Some("host-mismatch"),
    );
    let cases: Vec<(&str, Request<Body>, Answer<'_>)> = vec![
        (
            "host names another server",
            Request::get(format!("https://hub.test:{p}/"))
                .header("host", "allowed.test")
                .body(empty())
                .unwrap(),
            mismatch.clone(),
        ),
        (
            ":authority names another server",
            Request::get(format!("https://allowed.test:{p}/"))
                .header("host", format!("hub.test:{p}"))
                .body(empty())
                .unwrap(),
            mismatch.clone(),
        ),
        (
            ":authority names another port",
            Request::get(format!("https://hub.test:{}/", p.wrapping_add(1)))
                .body(empty())
                .unwrap(),
            mismatch.clone(),
        ),
        (
            "host names another port",
            Request::get(format!("https://hub.test:{p}/"))
                .header("host", "hub.test:1")
                .body(empty())
                .unwrap(),
            mismatch.clone(),
        ),
        (
            "two host fields",
            Request::get(format!("https://hub.test:{p}/"))
                .header("host", format!("hub.test:{p}"))
                .header("host", "allowed.test")
                .body(empty())
                .unwrap(),
            (400, "palisade: bad request (duplicate-host)".into(), None),
        ),
        (
            "userinfo in :authority",
            Request::get(format!("https://allowed.test@hub.test:{p}/"))
                .body(empty())
                .unwrap(),
            (
                400,
                "palisade: bad request (authority-userinfo)".into(),
                None,
            ),
        ),
        (
            ":scheme http",
            Request::get(format!("http://hub.test:{p}/"))
                .body(empty())
                .unwrap(),
            (400, "palisade: bad request (scheme-not-https)".into(), None),
        ),
        (
            "CONNECT inside the tunnel",
            Request::connect(format!("allowed.test:{p}"))
                .body(empty())
                .unwrap(),
            (
                400,
                "palisade: bad request (connect-inside-tunnel)".into(),
                None,
            ),
        ),
        (
            "the same server, with Host too",
            Request::get(format!("https://HUB.test.:{p}/"))
                .header("host", format!("hub.test:{p}"))
                .body(empty())
                .unwrap(),
            (200, "hello".into(), None),
        ),
    ];
    let mut failures = Vec::new();
    for (name, req, (status, body, why)) in cases {
        let got = ask(&i, req).await;
        if got.0 != 400 {
            let r = reason(&i).await.0;
            if r.as_deref() != why {
                failures.push(format!("{name}: reason {r:?}"));
            }
        }
        if got != (status, body) {
            failures.push(format!("{name}: got {got:?}"));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
    assert_eq!(
        i.upstream_conns.load(std::sync::atomic::Ordering::Relaxed),
        1,
        "only the last request reached the upstream"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_bodies_get_dlp_body_limits_upload_budgets_and_ai_accounting() {
    let i = intercepting("h2-bodies").await;
    let rules = "  - to: [{fqdn: \"hub.test\"}]\n    inspectTLS: true\n    maxBodyBytes: 1000\n    uploadBudget: {bytes: 1500, window: 1h}\n    dlp: {detectors: [secrets], action: block}\n";
    let policy = POLICY.replace(
        "  - to: [{fqdn: \"hub.test\"}]\n    http: [{methods: [GET, HEAD]}]\n",
        rules,
    );
    assert!(policy.contains("uploadBudget"));
    palisade_egress::publish(
        &i.s.engine,
        Some(Arc::new(engine_from(&policy, Posture::Allow))),
    );
    let post = |p: &str, b: Body| {
        Request::post(format!("https://hub.test:{}{p}", i.port))
            .body(b)
            .unwrap()
    };
    let aws = "aws_secret_access_key=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
    let big = "a".repeat(2000);
    let chat = r#"{"model":"gpt-test-0","messages":[{"role":"user","content":"hi"}]}"#;

    // A secret, with a declared length and without one.
    for body in [full(aws), streamed(aws)] {
        let got = ask(&i, post("/echo", body)).await;
        assert_eq!(got, (403, "palisade: denied (dlp)".to_string()));
        let e = next_event(&i.s.events).await;
        let EventBody::Http(h) = &e.body else {
            panic!("{e:?}")
        };
        let detectors: Vec<&str> = h.detections.iter().map(|d| d.detector.as_str()).collect();
        assert_eq!(
            (h.reason.as_deref(), detectors, h.version),
            (Some("dlp"), vec!["dlp.aws-key"], Some(HttpVersion::Http2))
        );
    }
    // Over the rule's body limit, declared or not.
    for body in [full(&big), streamed(&big)] {
        let got = ask(&i, post("/echo", body)).await;
        assert_eq!(got, (413, "palisade: denied (body-too-large)".to_string()));
        assert_eq!(reason(&i).await.0.as_deref(), Some("body-too-large"));
    }
    // An AI call over HTTP/2 is recorded with its model and token usage.
    let got = ask(&i, post("/v1/chat/completions", full(chat))).await;
    assert_eq!(got.0, 200, "{got:?}");
    let e = next_event(&i.s.events).await;
    let EventBody::Http(h) = &e.body else {
        panic!("{e:?}")
    };
    let ai = h.ai.clone().expect("an ai object");
    assert_eq!(
        (
            ai.provider.as_deref(),
            ai.model.as_deref(),
            ai.prompt_tokens,
            ai.completion_tokens
        ),
        (
            Some("openai-compatible"),
            Some("gpt-test-0"),
            Some(12),
            Some(5)
        )
    );
    // The upload budget (1500 bytes an hour) counts DATA frames: the first secret, the
    // chat call, then 900 more pass; the next 900 do not.
    let nine = "b".repeat(900);
    let got = ask(&i, post("/echo", streamed(&nine))).await;
    assert_eq!(got, (200, nine.clone()));
    reason(&i).await;
    let got = ask(&i, post("/echo", full(&nine))).await;
    assert_eq!(got, (429, "palisade: denied (upload-budget)".to_string()));
    assert_eq!(reason(&i).await.0.as_deref(), Some("upload-budget"));
}

/// HTTP/2 heads get what HTTP/1.1 heads get: a secret in a header field or in `:path`
/// (percent-encoded) is refused `403 dlp`, the pod's own `authorization` passes, and the
/// HEADERS count toward the upload budget (two 600-byte fields fit in 1,500 bytes, a third
/// is `429`). On the old code every request here went through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_heads_get_dlp_and_count_toward_the_upload_budget() {
    let i = intercepting("h2-heads").await;
    let rules = "  - to: [{fqdn: \"hub.test\"}]\n    inspectTLS: true\n    uploadBudget: {bytes: 1500, window: 1h}\n    dlp: {detectors: [secrets], action: block}\n";
    let policy = POLICY.replace(
        "  - to: [{fqdn: \"hub.test\"}]\n    http: [{methods: [GET, HEAD]}]\n",
        rules,
    );
    assert!(policy.contains("uploadBudget"));
    palisade_egress::publish(
        &i.s.engine,
        Some(Arc::new(engine_from(&policy, Posture::Allow))),
    );
    let token = "ghp_0123456789abcdefghijABCDEFGHIJ012345";
    let get = |p: &str, field: Option<(&str, String)>| {
        let mut b = Request::get(format!("https://hub.test:{}{p}", i.port));
        if let Some((n, v)) = field {
            b = b.header(n, v);
        }
        b.body(empty()).unwrap()
    };
    let denied = (403, "palisade: denied (dlp)".to_string());
    let got = ask(&i, get("/models/x", Some(("x-trace", token.to_string())))).await;
    assert_eq!(got, denied);
    assert_eq!(reason(&i).await.0.as_deref(), Some("dlp"));
    let path = format!("/models/x?t={}", token.replace('_', "%5F"));
    assert_eq!(ask(&i, get(&path, None)).await, denied);
    assert_eq!(reason(&i).await.0.as_deref(), Some("dlp"));
    let bearer = "Bearer sk-proj-abcdefghijklmnopqrstuvwx0123".to_string();
    let got = ask(&i, get("/models/x", Some(("authorization", bearer)))).await;
    assert_eq!(got, (200, "hello".to_string()));
    assert_eq!(reason(&i).await.0, None);
    let pad = "p".repeat(600);
    for want in [200, 200, 429] {
        let got = ask(&i, get("/models/x", Some(("x-pad", pad.clone())))).await;
        assert_eq!(got.0, want, "{got:?}");
        let r = reason(&i).await.0;
        assert_eq!(r.as_deref(), (want == 429).then_some("upload-budget"));
    }
}
