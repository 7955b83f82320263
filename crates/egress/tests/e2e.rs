//! End-to-end: the real `curl` through the gateway to a local upstream.
//!
//! Names: curl hands the proxy `http://allowed.test:PORT/` (explicit proxies resolve names
//! themselves), and the gateway's static `hosts` map sends `*.test` names to 127.0.0.1, so
//! nothing needs root, `/etc/hosts` or a DNS server.

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use palisade_egress::{EgressGateway, GatewayConfig};
use palisade_events::{Event, EventBody, EventReceiver, Verdict};
use palisade_policy::{Engine, Manifests, Posture, Snapshot};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[path = "e2e/address_forms.rs"]
mod address_forms;
#[path = "e2e/ai.rs"]
mod ai;
#[path = "e2e/bad_input.rs"]
mod bad_input;
#[path = "e2e/clients.rs"]
mod clients;
#[path = "e2e/dlp.rs"]
mod dlp;
#[path = "e2e/h2_wire.rs"]
mod h2_wire;
#[path = "e2e/heads.rs"]
mod heads;
#[path = "e2e/http2.rs"]
mod http2;
#[path = "e2e/http2_frames.rs"]
mod http2_frames;
#[path = "e2e/http2_rules.rs"]
mod http2_rules;
#[path = "e2e/intercept.rs"]
mod intercept;
#[path = "e2e/lean.rs"]
mod lean;
#[path = "e2e/rules.rs"]
mod rules;
#[path = "e2e/stalls.rs"]
mod stalls;
#[path = "e2e/transparent.rs"]
mod transparent;
#[path = "e2e/tunnel_checks.rs"]
mod tunnel_checks;

const POLICY: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: client, namespace: ml, labels: {app: client}}
spec: {containers: [{name: c}]}
status: {podIP: 127.0.0.1}
---
apiVersion: v1
kind: Pod
metadata: {name: trainer, namespace: ml, labels: {app: trainer}}
spec: {containers: [{name: c}]}
status: {podIP: 10.9.9.9}
---
apiVersion: palisade.dev/v1alpha1
kind: SecurityPolicy
metadata: {name: allow-list, namespace: ml}
spec:
  podSelector: {matchLabels: {app: client}}
  egress:
  - to: [{fqdn: "allowed.test"}]
  - to: [{fqdn: "hub.test"}]
    http: [{methods: [GET, HEAD]}]
  - to: [{fqdn: "api.openai.test"}]
    http: [{methods: [POST], path: {prefix: /v1}}]
---
apiVersion: palisade.dev/v1alpha1
kind: SecurityPolicy
metadata: {name: trainer, namespace: ml}
spec:
  podSelector: {matchLabels: {app: trainer}}
  egress:
  - to: [{fqdn: "models.test"}]
"#;

pub(crate) struct Setup {
    pub(crate) engine: palisade_egress::EngineHandle,
    pub(crate) proxy: SocketAddr,
    pub(crate) transparent: Option<SocketAddr>,
    pub(crate) upstream: u16,
    pub(crate) events: EventReceiver,
}

pub(crate) fn engine(posture: Posture) -> Engine {
    engine_from(POLICY, posture)
}

pub(crate) fn engine_from(policy: &str, posture: Posture) -> Engine {
    let mut m = Manifests::new();
    m.add_file("policy.yaml", policy);
    assert!(!m.has_errors(), "{:?}", m.diagnostics);
    Engine::compile_with(&Snapshot::from_manifests(&m), posture)
}

/// An HTTP/1.1 upstream on 127.0.0.1 that answers every request `200 hello` (keep-alive),
/// reading and discarding `Content-Length` bodies.
async fn upstream() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((s, _)) = l.accept().await else {
                return;
            };
            tokio::spawn(serve_toy(s));
        }
    });
    port
}

/// Answers every request on `s` with `200 hello`, keep-alive.
pub(crate) async fn serve_toy<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(mut s: S) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        while let Some(end) = find(&buf, b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            if buf.len() < end + 4 + len {
                break;
            }
            let body: Vec<u8> = buf.drain(..end + 4 + len).skip(end + 4).collect();
            // `/echo` answers with the request body, `/host` with the Host header (and how
            // many there were), `/head` with the request head, `/line` with the request
            // line; anything else with `hello`.
            let body = if head.contains(" /echo") {
                body
            } else if head.contains(" /host") {
                let hosts: Vec<&str> = head
                    .lines()
                    .filter_map(|l| l.strip_prefix("host:"))
                    .map(str::trim)
                    .collect();
                format!("{} {}", hosts.len(), hosts.join(",")).into_bytes()
            } else if head.contains(" /head") {
                // `/head`: the whole request head as the upstream got it (lower case).
                head.clone().into_bytes()
            } else if head.contains("/line ") {
                // `/line`: the request line as the upstream got it (lower case).
                head.lines().next().unwrap_or("").as_bytes().to_vec()
            } else if head.contains("/v1/chat/completions") {
                br#"{"id":"chatcmpl-1","object":"chat.completion","created":1700000000,"model":"gpt-test-0","choices":[{"index":0,"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}],"usage":{"prompt_tokens":12,"completion_tokens":5,"total_tokens":17}}"#.to_vec()
            } else {
                b"hello".to_vec()
            };
            // Hub-style file URLs carry the metadata the Hugging Face client wants.
            let hub = if head.contains("/resolve/") {
                "X-Repo-Commit: 0123456789abcdef0123456789abcdef01234567\r\nETag: \"e1\"\r\n"
            } else {
                ""
            };
            let mut resp = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nContent-Type: text/plain\r\n{hub}\r\n",
                body.len()
            )
            .into_bytes();
            if !head.starts_with("head ") {
                resp.extend_from_slice(&body);
            }
            if s.write_all(&resp).await.is_err() {
                return;
            }
        }
        match s.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

pub(crate) async fn start(posture: Posture, users: &[(&str, &str, &str)]) -> Setup {
    start_with(posture, users, |_, _| {}).await
}

pub(crate) async fn start_with(
    posture: Posture,
    users: &[(&str, &str, &str)],
    tweak: impl FnOnce(&mut GatewayConfig, u16),
) -> Setup {
    let upstream = upstream().await;
    let mut cfg = GatewayConfig::new("127.0.0.1:0".parse().unwrap());
    tweak(&mut cfg, upstream);
    for name in [
        "allowed.test",
        "denied.test",
        "hub.test",
        "models.test",
        "api.openai.test",
    ] {
        cfg.hosts.insert(name.into(), "127.0.0.1".parse().unwrap());
    }
    for (u, p, pod) in users {
        cfg.add_proxy_user(u, p, pod);
    }
    let handle = palisade_egress::engine_handle();
    palisade_egress::publish(&handle, Some(std::sync::Arc::new(engine(posture))));
    let (tx, rx) = palisade_events::channel(1024);
    let gw = EgressGateway::bind(cfg, handle.clone(), Some(tx))
        .await
        .unwrap();
    let proxy = gw.local_addr().unwrap();
    let transparent = gw.transparent_addr();
    tokio::spawn(gw.run());
    Setup {
        engine: handle,
        proxy,
        transparent,
        upstream,
        events: rx,
    }
}

/// Runs curl; returns (stdout, the `-w` line).
pub(crate) async fn curl(args: Vec<String>) -> (String, String) {
    let out = tokio::task::spawn_blocking(move || {
        Command::new("curl")
            .args(["-s", "--max-time", "10", "--noproxy", ""])
            .args(&args)
            .output()
            .expect("curl is installed")
    })
    .await
    .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    match text.rsplit_once('\n') {
        Some((body, w)) => (body.trim_end_matches('\n').to_string(), w.to_string()),
        None => (String::new(), text),
    }
}

pub(crate) fn via(s: &Setup, extra: &[&str], url: &str) -> Vec<String> {
    let mut v: Vec<String> = vec!["-x".into(), format!("http://{}", s.proxy)];
    v.extend(extra.iter().map(|a| a.to_string()));
    v.push(url.into());
    v
}

fn w(fmt: &str) -> [&str; 2] {
    ["-w", fmt]
}

/// The `http` object of an event.
pub(crate) fn http(e: &Event) -> &palisade_events::HttpInfo {
    match &e.body {
        EventBody::Http(h) => h,
        other => panic!("not an http event: {other:?}"),
    }
}

pub(crate) async fn next_event(rx: &EventReceiver) -> Event {
    let rx_events = tokio::task::block_in_place(|| rx.recv_batch(1, Duration::from_secs(5)));
    rx_events.into_iter().next().expect("an event")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allowed_domain_passes_and_other_domains_get_403() {
    let s = start(Posture::Allow, &[]).await;
    let url = |h: &str| format!("http://{h}:{}/path?q=1", s.upstream);
    let (body, code) = curl(via(&s, &w("\n%{http_code}"), &url("allowed.test"))).await;
    assert_eq!((body.as_str(), code.as_str()), ("hello", "200"));
    let e = next_event(&s.events).await;
    assert_eq!(e.verdict, Some(Verdict::Allow));
    let EventBody::Http(h) = &e.body else {
        panic!("{e:?}")
    };
    assert_eq!(
        (
            h.method.as_deref(),
            h.path.as_deref(),
            h.status,
            h.bytes_out
        ),
        (Some("GET"), Some("/path"), Some(200), Some(5))
    );
    assert_eq!(
        e.policy.as_ref().unwrap().rule.as_deref(),
        Some("egress[0]")
    );
    assert_eq!(
        e.source.as_ref().unwrap().name.as_deref(),
        Some("client"),
        "source pod by IP"
    );

    let (body, code) = curl(via(&s, &w("\n%{http_code}"), &url("denied.test"))).await;
    assert_eq!(code, "403");
    assert_eq!(body, "palisade: denied (fqdn-not-allowed)");
    let e = next_event(&s.events).await;
    assert_eq!(e.verdict, Some(Verdict::Deny));
    assert_eq!(e.policy.as_ref().unwrap().name, "allow-list");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_to_a_denied_name_is_refused() {
    let s = start(Posture::Allow, &[]).await;
    let url = |h: &str| format!("http://{h}:{}/", s.upstream);
    let (body, code) = curl(via(
        &s,
        &["-p", "-w", "\n%{http_connect} %{http_code}"],
        &url("allowed.test"),
    ))
    .await;
    assert_eq!((body.as_str(), code.as_str()), ("hello", "200 200"));
    let (_, code) = curl(via(
        &s,
        &["-p", "-w", "\n%{http_connect}"],
        &url("denied.test"),
    ))
    .await;
    assert_eq!(code, "403");
    // Allowed tunnel ends when curl closes it; the denied one is recorded at once.
    let mut seen = Vec::new();
    for _ in 0..2 {
        let e = next_event(&s.events).await;
        let EventBody::Http(h) = &e.body else {
            panic!()
        };
        assert_eq!(h.method.as_deref(), Some("CONNECT"));
        seen.push((h.host.clone().unwrap(), h.status.unwrap()));
    }
    seen.sort();
    assert_eq!(
        seen,
        vec![("allowed.test".into(), 200), ("denied.test".into(), 403)]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn methods_are_decided_per_request() {
    let s = start(Posture::Allow, &[]).await;
    let url = format!("http://hub.test:{}/models/x", s.upstream);
    let (_, code) = curl(via(&s, &w("\n%{http_code}"), &url)).await;
    assert_eq!(code, "200");
    let (body, code) = curl(via(&s, &["-d", "secret=1", "-w", "\n%{http_code}"], &url)).await;
    assert_eq!(
        (body.as_str(), code.as_str()),
        ("palisade: denied (l7-not-allowed)", "403")
    );
    // A tunnel would hide the method: refused.
    let (_, code) = curl(via(&s, &["-p", "-w", "\n%{http_connect}"], &url)).await;
    assert_eq!(code, "403");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_credential_stands_for_a_pod() {
    let s = start(Posture::Deny, &[("trainer", "s3cret", "ml/trainer")]).await;
    let url = format!("http://models.test:{}/w.bin", s.upstream);
    let (body, code) = curl(via(
        &s,
        &["-U", "trainer:s3cret", "-w", "\n%{http_code}"],
        &url,
    ))
    .await;
    assert_eq!((body.as_str(), code.as_str()), ("hello", "200"));
    let e = next_event(&s.events).await;
    assert_eq!(e.source.unwrap().name.as_deref(), Some("trainer"));
    // The trainer may not go where the client pod may.
    let other = format!("http://allowed.test:{}/", s.upstream);
    let (_, code) = curl(via(
        &s,
        &["-U", "trainer:s3cret", "-w", "\n%{http_code}"],
        &other,
    ))
    .await;
    assert_eq!(code, "403");
    let (body, code) = curl(via(
        &s,
        &["-U", "trainer:wrong", "-w", "\n%{http_code}"],
        &url,
    ))
    .await;
    assert_eq!(
        (body.as_str(), code.as_str()),
        ("palisade: denied (bad-credential)", "407")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_tunnels_close_when_policy_stops_allowing_them() {
    let s = start(Posture::Allow, &[]).await;
    let mut c = TcpStream::connect(s.proxy).await.unwrap();
    let target = format!("allowed.test:{}", s.upstream);
    c.write_all(format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let n = c.read(&mut buf).await.unwrap();
    assert!(
        buf[..n].starts_with(b"HTTP/1.1 200"),
        "{:?}",
        String::from_utf8_lossy(&buf[..n])
    );
    c.write_all(b"GET / HTTP/1.1\r\nHost: allowed.test\r\n\r\n")
        .await
        .unwrap();
    let n = c.read(&mut buf).await.unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
    // The policy no longer names allowed.test: the open tunnel is closed.
    let narrower = POLICY.replace("  - to: [{fqdn: \"allowed.test\"}]\n", "");
    assert_ne!(narrower, POLICY);
    // Unchanged policy: still open after a recheck.
    palisade_egress::publish(&s.engine, Some(std::sync::Arc::new(engine(Posture::Allow))));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    c.write_all(b"GET / HTTP/1.1\r\nHost: allowed.test\r\n\r\n")
        .await
        .unwrap();
    let n = c.read(&mut buf).await.unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
    palisade_egress::publish(
        &s.engine,
        Some(std::sync::Arc::new(engine_from(&narrower, Posture::Allow))),
    );
    let n = tokio::time::timeout(Duration::from_secs(5), c.read(&mut buf))
        .await
        .expect("closed within the recheck interval")
        .unwrap_or(0);
    assert_eq!(n, 0);
}
