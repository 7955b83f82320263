//! Upstreams that stop answering: no answer head after the request, or silence in the
//! middle of a body. The gateway cuts both after the upstream idle timeout, on the lean
//! lane (`GET`) and on the full path (`POST`), and says so in the event.

use super::*;

/// An upstream that reads a request head and then, for `/head`, never answers, and for
/// `/body`, sends a head promising 100 bytes and 10 of them, then nothing.
async fn stalling_upstream() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                while find(&buf, b"\r\n\r\n").is_none() {
                    match s.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let head = String::from_utf8_lossy(&buf).to_string();
                if head.contains(" /body") {
                    let _ = s
                        .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789")
                        .await;
                }
                // Silence, until the gateway gives up (or the test ends).
                let _ = s.read(&mut chunk).await;
                tokio::time::sleep(Duration::from_secs(30)).await;
            });
        }
    });
    port
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_that_stops_answering_is_cut_off() {
    let s = start_with(Posture::Allow, &[], |cfg, _| {
        cfg.upstream_idle_timeout = Duration::from_secs(1);
    })
    .await;
    let port = stalling_upstream().await;
    for method in ["GET", "POST"] {
        // curl with `-w "\n%{http_code} %{size_download}"`, POST with a body: (body, line),
        // within 5 s (the bound is 1 s).
        let fetch = |path: &str| {
            let mut args = vec!["-w", "\n%{http_code} %{size_download}"];
            if method == "POST" {
                args.extend(["-d", "x=1"]);
            }
            let url = format!("http://allowed.test:{port}{path}");
            let started = std::time::Instant::now();
            let run = curl(via(&s, &args, &url));
            async move {
                let out = run.await;
                assert!(started.elapsed() < Duration::from_secs(5), "{method}");
                out
            }
        };
        // No answer head: 504 from the gateway.
        let (body, line) = fetch("/head").await;
        assert_eq!(
            (line.as_str(), body.as_str()),
            ("504 45", "palisade: gateway timeout (upstream-timeout)"),
            "{method}"
        );
        let e = next_event(&s.events).await;
        let h = http(&e);
        assert_eq!(
            (h.status, h.reason.as_deref()),
            (Some(504), Some("upstream-timeout")),
            "{method}"
        );

        // Silence mid-body: the answer is cut (curl sees a partial transfer), not held.
        let (body, line) = fetch("/body").await;
        assert_eq!(
            (line.as_str(), body.as_str()),
            ("200 10", "0123456789"),
            "{method}"
        );
        let e = next_event(&s.events).await;
        let h = http(&e);
        assert_eq!(
            (h.status, h.bytes_out, h.reason.as_deref()),
            (Some(200), Some(10), Some("upstream-idle-timeout")),
            "{method}"
        );
    }
}

/// An upstream that answers every request with a 1 GiB body, written until the gateway
/// drops the connection; the moment that happens goes to `dropped`.
async fn endless_upstream(dropped: tokio::sync::mpsc::UnboundedSender<std::time::Instant>) -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let dropped = dropped.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                while find(&buf, b"\r\n\r\n").is_none() {
                    match s.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let head = "HTTP/1.1 200 OK\r\nContent-Length: 1073741824\r\n\r\n";
                if s.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                let block = vec![b'x'; 64 * 1024];
                while s.write_all(&block).await.is_ok() {}
                let _ = dropped.send(std::time::Instant::now());
            });
        }
    });
    port
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_that_stops_reading_is_dropped_with_its_upstream() {
    let s = start_with(Posture::Allow, &[], |cfg, _| {
        cfg.send_timeout = Duration::from_secs(2);
    })
    .await;
    let (tx, mut dropped) = tokio::sync::mpsc::unbounded_channel();
    let port = endless_upstream(tx).await;
    for tunnel in [false, true] {
        // A pod with a small receive buffer that reads the first bytes and then stops.
        let sock = tokio::net::TcpSocket::new_v4().unwrap();
        sock.set_recv_buffer_size(4096).unwrap();
        let mut pod = sock.connect(s.proxy).await.unwrap();
        let get =
            |target: &str| format!("GET {target} HTTP/1.1\r\nHost: allowed.test:{port}\r\n\r\n");
        let mut first = [0u8; 1024];
        if tunnel {
            let connect = format!(
                "CONNECT allowed.test:{port} HTTP/1.1\r\nHost: allowed.test:{port}\r\n\r\n"
            );
            pod.write_all(connect.as_bytes()).await.unwrap();
            let n = pod.read(&mut first).await.unwrap();
            assert!(first[..n].starts_with(b"HTTP/1.1 200"), "CONNECT");
            pod.write_all(get("/file").as_bytes()).await.unwrap();
        } else {
            pod.write_all(get(&format!("http://allowed.test:{port}/file")).as_bytes())
                .await
                .unwrap();
        }
        let n = pod.read(&mut first).await.unwrap();
        assert!(first[..n].starts_with(b"HTTP/1.1 200"), "tunnel {tunnel}");
        let stopped = std::time::Instant::now();
        let when = tokio::time::timeout(Duration::from_secs(30), dropped.recv())
            .await
            .unwrap_or_else(|_| panic!("tunnel {tunnel}: the upstream connection was kept"))
            .unwrap();
        let took = when.duration_since(stopped);
        assert!(took < Duration::from_secs(20), "tunnel {tunnel}: {took:?}");
        drop(pod);
    }
}
