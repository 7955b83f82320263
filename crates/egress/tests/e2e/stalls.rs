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
        let extra = if method == "POST" {
            vec!["-d", "x=1"]
        } else {
            vec![]
        };
        // No answer head: 504 from the gateway.
        let started = std::time::Instant::now();
        let mut args = extra.clone();
        args.extend(["-w", "\n%{http_code}"]);
        let url = format!("http://allowed.test:{port}/head");
        let (body, code) = curl(via(&s, &args, &url)).await;
        assert_eq!(
            (code.as_str(), body.as_str()),
            ("504", "palisade: gateway timeout (upstream-timeout)"),
            "{method}"
        );
        assert!(started.elapsed() < Duration::from_secs(5), "{method}");
        let e = next_event(&s.events).await;
        let EventBody::Http(h) = &e.body else {
            panic!("{e:?}")
        };
        assert_eq!(
            (h.status, h.reason.as_deref()),
            (Some(504), Some("upstream-timeout")),
            "{method}"
        );

        // Silence mid-body: the answer is cut (curl sees a partial transfer), not held.
        let started = std::time::Instant::now();
        let mut args = extra.clone();
        args.extend(["-w", "\n%{http_code} %{size_download}"]);
        let url = format!("http://allowed.test:{port}/body");
        let (body, line) = curl(via(&s, &args, &url)).await;
        assert_eq!(
            (line.as_str(), body.as_str()),
            ("200 10", "0123456789"),
            "{method}"
        );
        assert!(started.elapsed() < Duration::from_secs(5), "{method}");
        let e = next_event(&s.events).await;
        let EventBody::Http(h) = &e.body else {
            panic!("{e:?}")
        };
        assert_eq!(
            (h.status, h.bytes_out, h.reason.as_deref()),
            (Some(200), Some(10), Some("upstream-idle-timeout")),
            "{method}"
        );
    }
}
