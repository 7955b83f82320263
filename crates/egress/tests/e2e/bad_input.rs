//! Bad input on the wire: each gets a clear status or a closed connection, and the gateway
//! keeps serving.

use super::*;

/// Sends `bytes` and returns the status line of the answer ("" when the connection closes
/// without one).
pub(crate) async fn raw(proxy: SocketAddr, bytes: &[u8]) -> String {
    let mut s = TcpStream::connect(proxy).await.unwrap();
    // The peer may close before reading everything; that is an answer too.
    let _ = s.write_all(bytes).await;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        let mut buf = [0u8; 4096];
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    out.extend_from_slice(&buf[..n]);
                    if find(&out, b"\r\n").is_some() {
                        break;
                    }
                }
            }
        }
    })
    .await;
    let text = String::from_utf8_lossy(&out).to_string();
    text.lines().next().unwrap_or("").to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_get_clear_answers() {
    let s = start(Posture::Allow, &[]).await;
    let p = s.upstream;
    let smuggle = format!(
        "POST http://allowed.test:{p}/ HTTP/1.1\r\nHost: allowed.test\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
    );
    assert_eq!(
        raw(s.proxy, smuggle.as_bytes()).await,
        "HTTP/1.1 400 Bad Request"
    );
    let big = format!(
        "GET http://allowed.test:{p}/ HTTP/1.1\r\nHost: allowed.test\r\nX-Big: {}\r\n\r\n",
        "a".repeat(200 * 1024)
    );
    assert_eq!(
        raw(s.proxy, big.as_bytes()).await,
        "HTTP/1.1 431 Request Header Fields Too Large"
    );
    assert_eq!(
        raw(s.proxy, b"GET / HTTP/1.1\r\nHost: allowed.test\r\n\r\n").await,
        "HTTP/1.1 400 Bad Request"
    );
    assert_eq!(
        raw(s.proxy, b"CONNECT allowed.test HTTP/1.1\r\n\r\n").await,
        "HTTP/1.1 400 Bad Request"
    );
    let garbage = raw(
        s.proxy,
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n",
    )
    .await;
    assert!(
        garbage.is_empty() || garbage.starts_with("HTTP/1.1 400"),
        "{garbage}"
    );
    let double_cl = format!(
        "POST http://allowed.test:{p}/ HTTP/1.1\r\nHost: allowed.test\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab"
    );
    assert_eq!(
        raw(s.proxy, double_cl.as_bytes()).await,
        "HTTP/1.1 400 Bad Request"
    );
    // Still serving.
    let ok = format!("GET http://allowed.test:{p}/ HTTP/1.1\r\nHost: allowed.test:{p}\r\n\r\n");
    assert_eq!(raw(s.proxy, ok.as_bytes()).await, "HTTP/1.1 200 OK");
}

/// Every status line the gateway sends for `bytes` (pipelined requests get one each),
/// reading until it closes or is quiet for a second.
async fn statuses(proxy: SocketAddr, bytes: &[u8]) -> Vec<String> {
    let mut s = TcpStream::connect(proxy).await.unwrap();
    let _ = s.write_all(bytes).await;
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(Ok(n)) = tokio::time::timeout(Duration::from_secs(1), s.read(&mut buf)).await {
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&out);
    text.match_indices("HTTP/1.1 ")
        .map(|(i, _)| text[i..].lines().next().unwrap_or("").to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tricks_in_the_authority_reach_only_what_policy_allows() {
    // The client pod may reach allowed.test and nothing else (denied.test resolves too, to
    // the same upstream): a 200 means the decision was made for allowed.test.
    let s = start(Posture::Deny, &[]).await;
    let p = s.upstream;
    let get = |target: String| format!("GET {target} HTTP/1.1\r\nHost: x\r\n\r\n");
    let cases: Vec<(String, &str)> = vec![
        // The host is what follows the last `@` of the authority.
        (format!("http://allowed.test@denied.test:{p}/"), "403"),
        (format!("http://denied.test:{p}@allowed.test:{p}/"), "200"),
        // `?`, `#` and `\` end or break the authority; they never move the host (what
        // follows `#` is a fragment: refused, or dropped as RFC 3986 §3.5 says).
        (format!("http://denied.test:{p}?@allowed.test/"), "403"),
        (
            format!("http://allowed.test:{p}#@denied.test:{p}/"),
            "200|400",
        ),
        (format!("http://allowed.test:{p}\\@denied.test:{p}/"), "400"),
        // Encoded or NUL bytes in the host, a second port.
        (format!("http://allowed%2etest:{p}/"), "400"),
        (format!("http://allowed.test%00.denied.test:{p}/"), "400"),
        (format!("http://allowed.test:{p}:80/"), "400"),
        // A name that merely starts with the allowed one; its IP by other spellings.
        (format!("http://allowed.test.denied.test:{p}/"), "403"),
        (format!("http://127.0.0.1:{p}/"), "403"),
        (format!("http://[::ffff:127.0.0.1]:{p}/"), "403"),
        (format!("http://2130706433:{p}/"), "403"),
        // Case and a trailing dot name the same host (RFC 3986 §6.2.2.1, RFC 1034 §3.1).
        (format!("HTTP://ALLOWED.TEST.:{p}/"), "200"),
    ];
    for (target, want) in &cases {
        let got = raw(s.proxy, get(target.clone()).as_bytes()).await;
        assert!(
            want.split('|')
                .any(|w| got.starts_with(&format!("HTTP/1.1 {w}"))),
            "{target}: {got:?}, want {want}"
        );
    }
    // A path rule holds for every reading of the path (POST is allowed under /v1 only):
    // an escape, a dot segment or an encoded slash that takes it elsewhere is refused.
    let post = |path: &str| {
        format!("POST http://api.openai.test:{p}{path} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
    };
    for (path, want) in [
        ("/v1/chat/completions", "200"),
        ("/v1/%63hat/./completions", "200"),
        ("/v1/../admin", "403"),
        ("/v1/%2e%2e/admin", "403"),
        ("/v1/..%2Fadmin", "403"),
        ("/v1//../admin", "403"),
        ("/v1/%zz", "403"),
    ] {
        let got = raw(s.proxy, post(path).as_bytes()).await;
        assert!(
            got.starts_with(&format!("HTTP/1.1 {want}")),
            "{path}: {got:?}"
        );
    }
    // CONNECT: the request target decides, never the Host header.
    for (req, want) in [
        (
            format!("CONNECT denied.test:{p} HTTP/1.1\r\nHost: allowed.test:{p}\r\n\r\n"),
            "403",
        ),
        (
            format!("CONNECT allowed.test:{p}@denied.test:{p} HTTP/1.1\r\n\r\n"),
            "40",
        ),
        (format!("CONNECT 127.0.0.1:{p} HTTP/1.1\r\n\r\n"), "403"),
        (format!("CONNECT [::1]:{p} HTTP/1.1\r\n\r\n"), "403"),
    ] {
        let got = raw(s.proxy, req.as_bytes()).await;
        assert!(
            got.starts_with(&format!("HTTP/1.1 {want}")),
            "{req:?}: {got:?}"
        );
    }
    // A request hidden behind another (pipelined, or in a body the gateway frames by
    // Transfer-Encoding where a lax reader would use a length) is decided on its own.
    let pipelined = format!(
        "GET http://allowed.test:{p}/ HTTP/1.1\r\nHost: x\r\n\r\nGET http://denied.test:{p}/ HTTP/1.1\r\nHost: x\r\n\r\n"
    );
    assert_eq!(
        statuses(s.proxy, pipelined.as_bytes()).await,
        ["HTTP/1.1 200 OK", "HTTP/1.1 403 Forbidden"]
    );
    let chunked = format!(
        "POST http://allowed.test:{p}/ HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET http://denied.test:{p}/ HTTP/1.1\r\nHost: x\r\n\r\n"
    );
    assert_eq!(
        statuses(s.proxy, chunked.as_bytes()).await,
        ["HTTP/1.1 200 OK", "HTTP/1.1 403 Forbidden"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_header_rule_holds_for_every_field_of_that_name() {
    let s = start(Posture::Deny, &[]).await;
    let policy = POLICY.replace(
        "  - to: [{fqdn: \"allowed.test\"}]\n",
        "  - to: [{fqdn: \"allowed.test\"}]\n    http: [{headers: [{name: X-Env, value: prod}]}]\n",
    );
    palisade_egress::publish(
        &s.engine,
        Some(std::sync::Arc::new(engine_from(&policy, Posture::Deny))),
    );
    let p = s.upstream;
    let get = |fields: &[u8]| {
        let mut r =
            format!("GET http://allowed.test:{p}/ HTTP/1.1\r\nHost: allowed.test\r\n").into_bytes();
        r.extend_from_slice(fields);
        r.extend_from_slice(b"\r\n");
        r
    };
    for (fields, want) in [
        (&b"X-Env: prod\r\n"[..], "HTTP/1.1 200"),
        (b"X-Env: prod\r\nX-Env: prod\r\n", "HTTP/1.1 200"),
        (b"", "HTTP/1.1 403"),
        // A second field an upstream reading the last one would take.
        (b"X-Env: prod\r\nX-Env: dev\r\n", "HTTP/1.1 403"),
        // One with bytes beyond ASCII is read too, not left out.
        (b"X-Env: prod\r\nX-Env: pr\xffod\r\n", "HTTP/1.1 403"),
    ] {
        let got = raw(s.proxy, &get(fields)).await;
        assert!(
            got.starts_with(want),
            "{}: {got:?}",
            String::from_utf8_lossy(fields)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_rule_sees_the_host_the_upstream_gets() {
    // The explicit proxy sends the URL's authority as `Host`, whatever the client's `Host`
    // said: a rule on `Host` is decided on that one, in the lean lane and in hyper's.
    let s = start(Posture::Deny, &[]).await;
    let deny = r#"
---
apiVersion: palisade.dev/v1alpha1
kind: ClusterSecurityPolicy
metadata: {name: no-vhost}
spec:
  tier: security
  subject: {namespaceSelector: {}}
  egress:
  - action: Deny
    to: [{fqdn: allowed.test}]
    http: [{path: {prefix: /vhost}, headers: [{name: Host, regex: "allowed\\.test:[0-9]+"}]}]
"#;
    palisade_egress::publish(
        &s.engine,
        Some(std::sync::Arc::new(engine_from(
            &format!("{POLICY}{deny}"),
            Posture::Deny,
        ))),
    );
    let p = s.upstream;
    for (req, want) in [
        (format!("GET http://allowed.test:{p}/vhost HTTP/1.1\r\nHost: x\r\n\r\n"), "HTTP/1.1 403"),
        (format!("GET http://allowed.test:{p}/vhost HTTP/1.1\r\n\r\n"), "HTTP/1.1 403"),
        // (hyper's path: a body)
        (
            format!("POST http://allowed.test:{p}/vhost HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\na"),
            "HTTP/1.1 403",
        ),
        (format!("GET http://allowed.test:{p}/other HTTP/1.1\r\nHost: x\r\n\r\n"), "HTTP/1.1 200"),
    ] {
        let got = raw(s.proxy, req.as_bytes()).await;
        assert!(got.starts_with(want), "{req:?}: {got:?}");
    }
}
