//! Backends that stall after their response headers (a hung model server, a slowloris
//! upstream): the answer is ended after the route's `streamIdleTimeoutSeconds` of silence
//! — an SSE stream with an error event (`code: upstream_idle_timeout`) and a clean end, any
//! other body aborted — and the event records `reason: upstream_idle_timeout`. Before, the
//! client connection and its task waited for ever. Over the full path (SSE with and without
//! output filters, over HTTP/1.1 and HTTP/2; a plain JSON body) and the lean lane (a plain
//! route).

use super::drain;
use palisade_events::{EventBody, HttpInfo, Verdict};
use palisade_policy::{Manifests, Snapshot};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A backend that sends a response head and the start of a body, then nothing, holding
/// the connection open: an SSE event on `/v1/chat/completions`, 10 of 100 declared bytes
/// elsewhere.
async fn stalling_backend() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = l.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let head = String::from_utf8_lossy(&buf).to_string();
                let answer: Vec<u8> = if head.starts_with("POST /v1/chat/completions") {
                    let event = r#"data: {"id":"c1","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"Thinking"}}]}"#;
                    let chunk = format!("{event}\n\n");
                    format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n{:x}\r\n{chunk}\r\n",
                        chunk.len()
                    )
                    .into_bytes()
                } else {
                    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{\"data\": [".to_vec()
                };
                let _ = s.write_all(&answer).await;
                // Silent, connection open, far longer than any timeout under test.
                tokio::time::sleep(Duration::from_secs(120)).await;
            });
        }
    });
    addr
}

fn gateway(up: SocketAddr) -> String {
    let idle = "      streamIdleTimeoutSeconds: 1\n";
    format!(
        "apiVersion: palisade.dev/v1alpha1\nkind: AIGateway\nmetadata: {{name: stalls, namespace: ml}}\nspec:\n  routes:\n\
         {r}filtered\n      host: filtered.test\n      pathPrefix: /v1\n      backend: http://{up}\n{idle}      outputFilters: [{{kind: secrets, action: redact}}]\n\
         {r}chat\n      pathPrefix: /v1\n      backend: http://{up}\n{idle}\
         {r}plain\n      pathPrefix: /plain\n      backend: http://{up}\n{idle}",
        r = "    - name: "
    )
}

/// Sends `request` and reads until the gateway closes or ends the answer (an SSE stream's
/// last chunk), at most 20 s: what came, and how long it took.
async fn exchange(gw: SocketAddr, request: &str) -> (String, Duration) {
    let started = Instant::now();
    let mut s = TcpStream::connect(gw).await.unwrap();
    s.write_all(request.as_bytes()).await.unwrap();
    let mut got = Vec::new();
    let mut chunk = [0u8; 8192];
    let _ = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&chunk[..n]),
            }
            if got.ends_with(b"\r\n0\r\n\r\n") {
                return;
            }
        }
    })
    .await;
    (String::from_utf8_lossy(&got).to_string(), started.elapsed())
}

fn chat(host: &str) -> String {
    let body = r#"{"model":"m","stream":true,"messages":[{"role":"user","content":"hi"}]}"#;
    format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: {host}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_of_a_backend_that_goes_silent_are_ended() {
    let up = stalling_backend().await;
    let text = gateway(up);
    let mut m = Manifests::new();
    m.add_file("stalls.yaml", &text);
    assert!(!m.has_errors(), "{:?}", m.diagnostics);
    let compiled = palisade_ingress::compile(&Snapshot::from_manifests(&m).gateways).unwrap();
    let (gw, events) = crate::serve_gateway(compiled).await;

    // SSE without and with output filters: the event the backend sent, the error event,
    // the end of the chunked stream; after about the idle timeout, not the 20 s bound.
    for host in ["llm.test", "filtered.test"] {
        let (answer, took) = exchange(gw, &chat(host)).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{host}: {answer}");
        assert!(answer.contains("Thinking"), "{host}: {answer}");
        assert!(
            answer.contains(r#""code":"upstream_idle_timeout""#),
            "{host}: no error event after {took:?}: {answer}"
        );
        assert!(
            answer.ends_with("\r\n0\r\n\r\n"),
            "{host}: the stream ends cleanly: {answer}"
        );
        assert!(took < Duration::from_secs(8), "{host}: {took:?}");
    }

    // The same over HTTP/2 (curl, prior knowledge): the stream ends cleanly with the event.
    let body = r#"{"model":"m","stream":true,"messages":[{"role":"user","content":"hi"}]}"#;
    let url = format!("http://{gw}/v1/chat/completions");
    let started = Instant::now();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("curl")
            .args(["-sS", "-N", "--http2-prior-knowledge", "--max-time", "20"])
            .args(["-H", "content-type: application/json", "--data", body, &url])
            .output()
            .expect("curl is installed")
    })
    .await
    .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "curl: {out:?}");
    assert!(text.contains("Thinking"), "{text}");
    assert!(text.contains(r#""code":"upstream_idle_timeout""#), "{text}");
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "{:?}",
        started.elapsed()
    );

    // A JSON body (full path, no filters) and a plain route (lean lane): 10 of 100 bytes,
    // then the connection is closed — an incomplete answer never looks whole.
    for (path, lane) in [("/v1/models", "full"), ("/plain/x", "lean")] {
        let req = format!("GET {path} HTTP/1.1\r\nhost: llm.test\r\n\r\n");
        let (answer, took) = exchange(gw, &req).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{lane}: {answer}");
        assert!(answer.ends_with("{\"data\": ["), "{lane}: {answer}");
        assert!(
            took < Duration::from_secs(8),
            "{lane}: the connection stayed open {took:?}"
        );
    }

    let http: Vec<HttpInfo> = drain(&events)
        .into_iter()
        .filter(|e| e.verdict == Some(Verdict::Deny))
        .filter_map(|e| match e.body {
            EventBody::Http(h) => Some(h),
            _ => None,
        })
        .collect();
    for route in ["chat", "filtered", "plain"] {
        let cut = http
            .iter()
            .filter(|h| h.route.as_deref() == Some(route))
            .filter(|h| h.reason.as_deref() == Some("upstream_idle_timeout"))
            .count();
        // chat: SSE over HTTP/1.1 and HTTP/2, and the JSON body.
        let want = if route == "chat" { 3 } else { 1 };
        assert_eq!(cut, want, "{route}: {http:?}");
    }
}

/// A backend that answers every request with a 1 GiB body, written until the gateway
/// drops the connection; the moment that happens goes to `dropped`.
async fn endless_backend(dropped: tokio::sync::mpsc::UnboundedSender<Instant>) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let dropped = dropped.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let head = "HTTP/1.1 200 OK\r\ncontent-type: application/octet-stream\r\ncontent-length: 1073741824\r\n\r\n";
                if s.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                let block = vec![b'x'; 64 * 1024];
                while s.write_all(&block).await.is_ok() {}
                let _ = dropped.send(Instant::now());
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_is_dropped_with_its_backend() {
    let (tx, mut dropped) = tokio::sync::mpsc::unbounded_channel();
    let up = endless_backend(tx).await;
    // A plain route (the lean lane) and one with an output filter (hyper, filtered body).
    let text = format!(
        "apiVersion: palisade.dev/v1alpha1\nkind: AIGateway\nmetadata: {{name: readers, namespace: ml}}\nspec:\n  routes:\n\
         {r}filtered\n      pathPrefix: /filtered\n      backend: http://{up}\n      outputFilters: [{{kind: secrets, action: redact}}]\n\
         {r}plain\n      pathPrefix: /plain\n      backend: http://{up}\n",
        r = "    - name: "
    );
    let mut m = Manifests::new();
    m.add_file("readers.yaml", &text);
    assert!(!m.has_errors(), "{:?}", m.diagnostics);
    let compiled = palisade_ingress::compile(&Snapshot::from_manifests(&m).gateways).unwrap();
    let (gw, _events) = crate::serve_gateway_timeouts(
        compiled,
        palisade_ingress::IDLE_TIMEOUT,
        Duration::from_secs(2),
    )
    .await;
    for path in ["/plain/file", "/filtered/file"] {
        // A client with a small receive buffer that reads the first bytes and then stops.
        let sock = tokio::net::TcpSocket::new_v4().unwrap();
        sock.set_recv_buffer_size(4096).unwrap();
        let mut client = sock.connect(gw).await.unwrap();
        let request = format!("GET {path} HTTP/1.1\r\nhost: llm.test\r\n\r\n");
        client.write_all(request.as_bytes()).await.unwrap();
        let mut first = [0u8; 1024];
        let n = client.read(&mut first).await.unwrap();
        assert!(
            String::from_utf8_lossy(&first[..n]).starts_with("HTTP/1.1 200"),
            "{path}"
        );
        let stopped = Instant::now();
        // The backend's connection goes once the kernel gives up on the client: about the
        // send timeout after the windows filled, not never.
        let when = tokio::time::timeout(Duration::from_secs(30), dropped.recv())
            .await
            .unwrap_or_else(|_| panic!("{path}: the backend connection was kept"))
            .unwrap();
        let took = when.duration_since(stopped);
        assert!(took < Duration::from_secs(20), "{path}: {took:?}");
        drop(client);
    }
}
