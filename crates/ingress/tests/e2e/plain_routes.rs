//! Plain routes (nothing to authenticate, limit or inspect) through the lean lane, with
//! the real `curl`: the request the backend sees and the events are the full path's; the
//! backend connection is pooled and a dropped one replaced; a dead or slow backend gets
//! the OpenAI-style `502`/`504`; and what the lane does not serve (a chunked body,
//! `Expect`, HTTP/2, HTTP/1.0, a route with authentication) carries on through hyper on
//! the same connection.

use crate::drain;
use palisade_events::EventBody;
use palisade_policy::{Manifests, Snapshot};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A backend answering each request with its head and body (`/drop`: then closes without
/// saying so; `/slow`: after 3 s). Counts its connections.
pub(crate) async fn echo_backend() -> (SocketAddr, Arc<AtomicUsize>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let conns = Arc::new(AtomicUsize::new(0));
    let count = conns.clone();
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(echo(s));
        }
    });
    (addr, conns)
}

async fn echo(mut s: TcpStream) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_string();
            let len: usize = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().to_string())
                })
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            if buf.len() < end + 4 + len {
                break;
            }
            let body = String::from_utf8_lossy(&buf[end + 4..end + 4 + len]).to_string();
            buf.drain(..end + 4 + len);
            if head.contains("/slow ") {
                tokio::time::sleep(Duration::from_secs(3)).await;
            }
            let text = format!("{head}\n---\n{body}");
            let answer = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{text}",
                text.len()
            );
            if s.write_all(answer.as_bytes()).await.is_err() || head.contains("/drop ") {
                return;
            }
        }
        match s.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

pub(crate) async fn gateway(
    dir: &std::path::Path,
    yaml: &str,
) -> (SocketAddr, palisade_events::EventReceiver) {
    std::fs::write(
        dir.join("keys.yaml"),
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: keys\nstringData:\n  alice: sha256:0000000000000000000000000000000000000000000000000000000000000000\n",
    )
    .unwrap();
    let file = dir.join("gateway.yaml");
    std::fs::write(&file, yaml).unwrap();
    let mut m = Manifests::new();
    m.add_file(&file.display().to_string(), yaml);
    assert!(!m.has_errors(), "{:?}", m.diagnostics);
    let compiled = palisade_ingress::compile(&Snapshot::from_manifests(&m).gateways).unwrap();
    crate::serve_gateway(compiled).await
}

/// The configured idle timeout closes a client connection that sends nothing, and one
/// that sent a request and then stays quiet; a connection with a request in flight (the
/// backend's `/slow` answer takes 3 s) is kept past it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_client_connections_are_closed_after_the_configured_timeout() {
    let (backend, _) = echo_backend().await;
    let text = format!(
        "apiVersion: palisade.dev/v1alpha1\nkind: AIGateway\nmetadata: {{name: idle, namespace: ml}}\n\
         spec:\n  routes:\n    - name: plain\n      pathPrefix: /\n      backend: http://{backend}\n"
    );
    let mut m = Manifests::new();
    m.add_file("gateway.yaml", &text);
    assert!(!m.has_errors(), "{:?}", m.diagnostics);
    let compiled = palisade_ingress::compile(&Snapshot::from_manifests(&m).gateways).unwrap();
    let (gw, _events) = crate::serve_gateway_with(compiled, Duration::from_secs(1)).await;
    let closed_within = |mut s: TcpStream, limit: Duration| async move {
        let t = std::time::Instant::now();
        let mut rest = Vec::new();
        let read = tokio::time::timeout(limit, s.read_to_end(&mut rest)).await;
        assert!(read.is_ok(), "still open after {limit:?}");
        (t.elapsed(), rest)
    };
    // Nothing sent at all.
    let s = TcpStream::connect(gw).await.unwrap();
    let (took, rest) = closed_within(s, Duration::from_secs(5)).await;
    assert!(
        rest.is_empty() && took >= Duration::from_millis(900),
        "{took:?}"
    );
    // One request answered, then quiet.
    let mut s = TcpStream::connect(gw).await.unwrap();
    s.write_all(b"GET /v1/models HTTP/1.1\r\nHost: gw\r\n\r\n")
        .await
        .unwrap();
    let (_, rest) = closed_within(s, Duration::from_secs(5)).await;
    let answer = String::from_utf8_lossy(&rest);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    // A request in flight for longer than the idle timeout is answered in full.
    let mut s = TcpStream::connect(gw).await.unwrap();
    s.write_all(b"GET /slow HTTP/1.1\r\nHost: gw\r\n\r\n")
        .await
        .unwrap();
    let (took, rest) = closed_within(s, Duration::from_secs(8)).await;
    let answer = String::from_utf8_lossy(&rest);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(took >= Duration::from_secs(3), "{took:?}");
}

async fn curl(args: Vec<String>) -> String {
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("curl")
            .args(["-s", "--max-time", "10"])
            .args(&args)
            .output()
            .expect("curl is installed")
    })
    .await
    .unwrap();
    String::from_utf8_lossy(&out.stdout).to_string()
}

pub(crate) fn yaml(backend: SocketAddr) -> String {
    format!(
        r#"apiVersion: palisade.dev/v1alpha1
kind: AIGateway
metadata: {{name: plain, namespace: ml}}
spec:
  routes:
    - name: keyed
      pathPrefix: /keyed
      backend: http://{backend}
      auth:
        apiKeysFile: keys.yaml
    - name: dead
      pathPrefix: /dead
      backend: http://127.0.0.1:9
    - name: slow
      pathPrefix: /slow
      backend: http://{backend}
      timeoutSeconds: 1
    - name: small
      pathPrefix: /small
      backend: http://{backend}
      limits: {{maxBodyBytes: 8}}
    - name: plain
      pathPrefix: /
      backend: http://{backend}/base
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_routes_are_relayed_as_the_full_path_would() {
    let (backend, conns) = echo_backend().await;
    let dir = std::env::temp_dir().join(format!("palisade-plain-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (gw, events) = gateway(&dir, &yaml(backend)).await;
    let url = |p: &str| format!("http://{gw}{p}");
    let w = "\n%{http_code} %{num_connects}\n";
    // GET, POST with a body, a dropped backend connection, GET again: one client
    // connection, credentials and hop-by-hop fields never reach the backend.
    let out = curl(vec![
        "-H".into(),
        "Authorization: Bearer secret".into(),
        "-H".into(),
        "X-Forwarded-Proto: https".into(),
        "-H".into(),
        "Keep-Alive: timeout=9".into(),
        "-w".into(),
        w.into(),
        url("/a?x=1"),
        "--next".into(),
        "-d".into(),
        "hello=1".into(),
        "-w".into(),
        w.into(),
        url("/drop"),
        "--next".into(),
        "-w".into(),
        w.into(),
        url("/b"),
    ])
    .await;
    let answers: Vec<&str> = out.split("\n---\n").collect();
    assert_eq!(answers.len(), 4, "{out}");
    let first = answers[0].to_ascii_lowercase();
    assert!(first.starts_with("get /base/a?x=1 http/1.1"), "{out}");
    assert!(first.contains(&format!("\r\nhost: {backend}")), "{out}");
    assert!(first.contains("\r\nx-forwarded-for: 127.0.0.1"), "{out}");
    assert!(first.contains("\r\nx-forwarded-proto: http"), "{out}");
    assert!(
        !first.contains("authorization")
            && !first.contains("keep-alive")
            && !first.contains("https"),
        "{out}"
    );
    assert!(
        answers[1].starts_with("\n200 1\nPOST /base/drop HTTP/1.1"),
        "{out}"
    );
    assert!(
        answers[1]
            .to_ascii_lowercase()
            .contains("\r\ncontent-length: 7"),
        "{out}"
    );
    assert!(
        answers[2].starts_with("hello=1\n200 0\nGET /base/b"),
        "the dropped backend connection is replaced: {out}"
    );
    assert!(out.ends_with("\n200 0\n"), "{out}");
    assert_eq!(conns.load(Ordering::SeqCst), 2);

    // Events: route, backend, status and bytes, as the full path records them.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let ev = drain(&events);
    assert_eq!(ev.len(), 3, "{ev:?}");
    let EventBody::Http(h) = &ev[1].body else {
        panic!("{:?}", ev[1])
    };
    assert_eq!(
        (h.method.as_deref(), h.path.as_deref(), h.status, h.bytes_in),
        (Some("POST"), Some("/drop"), Some(200), Some(7))
    );
    assert!(h.bytes_out.unwrap() > 100);

    // A dead backend and a slow one: OpenAI-style errors; an oversized body: 413.
    let out = curl(vec!["-w".into(), "\n%{http_code}".into(), url("/dead/x")]).await;
    assert!(
        out.contains("\"code\":\"upstream_unavailable\"") && out.ends_with("\n502"),
        "{out}"
    );
    let out = curl(vec!["-w".into(), "\n%{http_code}".into(), url("/slow")]).await;
    assert!(
        out.contains("\"code\":\"upstream_timeout\"") && out.ends_with("\n504"),
        "{out}"
    );
    let out = curl(vec![
        "-d".into(),
        "123456789".into(),
        "-w".into(),
        "\n%{http_code}".into(),
        url("/small"),
    ])
    .await;
    assert!(
        out.contains("\"code\":\"request_too_large\"") && out.ends_with("\n413"),
        "{out}"
    );

    // What the lane leaves to hyper, each on a connection that started in the lane.
    let chunked = curl(vec![
        "-H".into(),
        "Transfer-Encoding: chunked".into(),
        "-d".into(),
        "chunky".into(),
        "-w".into(),
        "\n%{http_code}".into(),
        url("/c"),
    ])
    .await;
    assert!(
        chunked.contains("POST /base/c") && chunked.ends_with("\n---\nchunky\n200"),
        "{chunked}"
    );
    let big = "x".repeat(2048);
    let expect = curl(vec![
        "-H".into(),
        "Expect: 100-continue".into(),
        "-d".into(),
        big.clone(),
        "-w".into(),
        "\n%{http_code}".into(),
        url("/e"),
    ])
    .await;
    assert!(expect.ends_with(&format!("\n---\n{big}\n200")), "{expect}");
    let h2 = curl(vec![
        "--http2-prior-knowledge".into(),
        "-w".into(),
        "\n%{http_version} %{http_code}".into(),
        url("/h2"),
    ])
    .await;
    assert!(
        h2.contains("GET /base/h2 HTTP/1.1") && h2.ends_with("\n2 200"),
        "{h2}"
    );
    let h10 = curl(vec![
        "--http1.0".into(),
        "-w".into(),
        "\n%{http_code}".into(),
        url("/h10"),
    ])
    .await;
    assert!(
        h10.contains("GET /base/h10 HTTP/1.1") && h10.ends_with("\n200"),
        "{h10}"
    );
    let keyed = curl(vec!["-w".into(), "\n%{http_code}".into(), url("/keyed")]).await;
    assert!(keyed.ends_with("\n401"), "{keyed}");
    let _ = std::fs::remove_dir_all(&dir);
}
