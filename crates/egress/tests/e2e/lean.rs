//! The explicit proxy's lean lane (body-less HTTP/1.1 `GET`/`HEAD` relayed without hyper):
//! every way an answer can be framed, kept and broken, with the real `curl` and raw
//! sockets, and the hand-over to the full path on the same connection.

use super::*;

/// An upstream whose answers depend on the path: chunked with trailers, until close,
/// interim 1xx, 204, garbage, a kept connection dropped after the answer, 1 MiB, and
/// `hello` otherwise. Counts the connections it accepted.
async fn scripted_upstream() -> (u16, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            tokio::spawn(serve_script(s));
        }
    });
    (port, accepted)
}

async fn serve_script(mut s: TcpStream) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        while let Some(end) = find(&buf, b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_string();
            buf.drain(..end + 4);
            let path = head.split(' ').nth(1).unwrap_or("").to_string();
            let (answer, then_close): (Vec<u8>, bool) = match path.as_str() {
                "/chunked" => (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nKeep-Alive: timeout=5\r\nConnection: keep-alive, X-Hop\r\nX-Hop: secret\r\n\r\n5\r\nhello\r\n6;ext\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n".to_vec(), false),
                "/close" => (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil close".to_vec(), true),
                "/interim" => (b"HTTP/1.1 103 Early Hints\r\nLink: </x>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\ninterim".to_vec(), false),
                "/nocontent" => (b"HTTP/1.1 204 No Content\r\nDate: Mon, 02 Jan 2026 00:00:00 GMT\r\n\r\n".to_vec(), false),
                "/garbage" => (b"NOT HTTP AT ALL\r\n\r\n".to_vec(), true),
                "/drop" => (b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\ndrop".to_vec(), true),
                "/big" => {
                    let mut a = b"HTTP/1.1 200 OK\r\nContent-Length: 1048576\r\n\r\n".to_vec();
                    a.extend((0..1048576u32).map(|i| (i % 251) as u8));
                    (a, false)
                }
                _ if head.starts_with("HEAD ") => (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n".to_vec(), false),
                _ => {
                    let host = head
                        .lines()
                        .find_map(|l| l.strip_prefix("Host: ").or_else(|| l.strip_prefix("host: ")))
                        .unwrap_or("")
                        .to_string();
                    let hop = head.to_ascii_lowercase().contains("proxy-connection");
                    let body = format!("hello host={host} hop={hop}");
                    (format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}", body.len()).into_bytes(), false)
                }
            };
            if s.write_all(&answer).await.is_err() || then_close {
                return;
            }
        }
        match s.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// Reads more of an answer into `pending` (at most 5 s).
async fn fill(s: &mut TcpStream, pending: &mut Vec<u8>) {
    let mut chunk = [0u8; 65536];
    let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut chunk))
        .await
        .expect("answer in time")
        .unwrap();
    assert!(n > 0, "connection closed early");
    pending.extend_from_slice(&chunk[..n]);
}

/// Reads one answer (head and `Content-Length` or chunked body, decoded) from `s`.
async fn read_answer(s: &mut TcpStream, pending: &mut Vec<u8>) -> (String, Vec<u8>) {
    let end = loop {
        if let Some(e) = find(pending, b"\r\n\r\n") {
            break e;
        }
        fill(s, pending).await;
    };
    let head = String::from_utf8_lossy(&pending[..end]).to_string();
    pending.drain(..end + 4);
    let lower = head.to_ascii_lowercase();
    let mut body = Vec::new();
    if let Some(len) = lower
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .map(|v| v.trim().parse::<usize>().unwrap())
    {
        while pending.len() < len {
            fill(s, pending).await;
        }
        body = pending.drain(..len).collect();
    } else if lower.contains("transfer-encoding: chunked") {
        loop {
            let line_end = loop {
                if let Some(e) = find(pending, b"\r\n") {
                    break e;
                }
                fill(s, pending).await;
            };
            let line = String::from_utf8_lossy(&pending[..line_end]).to_string();
            let size = usize::from_str_radix(line.split(';').next().unwrap().trim(), 16).unwrap();
            pending.drain(..line_end + 2);
            if size == 0 {
                while find(pending, b"\r\n\r\n").is_none() && !pending.starts_with(b"\r\n") {
                    fill(s, pending).await;
                }
                let t = if pending.starts_with(b"\r\n") {
                    2
                } else {
                    find(pending, b"\r\n\r\n").unwrap() + 4
                };
                pending.drain(..t);
                break;
            }
            while pending.len() < size + 2 {
                fill(s, pending).await;
            }
            body.extend(pending.drain(..size));
            pending.drain(..2);
        }
    }
    (head, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_framing_is_relayed_on_one_kept_connection() {
    let s = start(Posture::Allow, &[]).await;
    let (port, accepted) = scripted_upstream().await;
    let mut c = TcpStream::connect(s.proxy).await.unwrap();
    let mut pending = Vec::new();
    let get = |path: &str, extra: &str| {
        format!("GET http://allowed.test:{port}{path} HTTP/1.1\r\nHost: wrong.test\r\nProxy-Connection: keep-alive\r\n{extra}\r\n")
    };
    // Pipelined: two requests in one write, answered in order.
    c.write_all(format!("{}{}", get("/a", ""), get("/chunked", "")).as_bytes())
        .await
        .unwrap();
    let (head, body) = read_answer(&mut c, &mut pending).await;
    assert!(head.starts_with("HTTP/1.1 200 OK"), "{head}");
    assert!(head.contains("Date: "), "a Date is added: {head}");
    // Host is the URL's authority; hop-by-hop fields never reach the upstream.
    assert_eq!(
        String::from_utf8(body).unwrap(),
        format!("hello host=allowed.test:{port} hop=false")
    );
    let (head, body) = read_answer(&mut c, &mut pending).await;
    assert!(head.contains("Transfer-Encoding: chunked"), "{head}");
    assert!(
        !head.contains("Keep-Alive") && !head.contains("X-Hop"),
        "{head}"
    );
    assert_eq!(body, b"hello world");

    for (path, want_status, want_body) in [
        ("/interim", "200", &b"interim"[..]),
        ("/nocontent", "204", b""),
        ("/big", "200", b""),
    ] {
        c.write_all(get(path, "").as_bytes()).await.unwrap();
        let (head, body) = read_answer(&mut c, &mut pending).await;
        assert!(
            head.starts_with(&format!("HTTP/1.1 {want_status}")),
            "{path}: {head}"
        );
        if path == "/big" {
            assert_eq!(body.len(), 1048576);
            assert!(body.iter().enumerate().all(|(i, &b)| b == (i % 251) as u8));
        } else {
            assert_eq!(body, want_body, "{path}");
        }
    }
    c.write_all(format!("HEAD http://allowed.test:{port}/h HTTP/1.1\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), c.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    let head = String::from_utf8_lossy(&buf[..n]).to_string();
    assert!(
        head.starts_with("HTTP/1.1 200")
            && head.contains("Content-Length: 5")
            && head.ends_with("\r\n\r\n"),
        "HEAD has no body: {head:?}"
    );
    // All of it over one upstream connection.
    assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 1);

    // Until close: the answer ends when the upstream closes, and so does the client's
    // connection.
    c.write_all(get("/close", "").as_bytes()).await.unwrap();
    let mut all = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), c.read_to_end(&mut all))
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8_lossy(&all);
    assert!(
        text.contains("Connection: close\r\n") && text.ends_with("\r\n\r\nuntil close"),
        "{text}"
    );

    // Events: one per request, as the full path writes them.
    let e = next_event(&s.events).await;
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
        (
            Some("GET"),
            Some("/a"),
            Some(200),
            Some(format!("hello host=allowed.test:{port} hop=false").len() as u64)
        )
    );
    assert_eq!(e.verdict, Some(Verdict::Allow));
    assert_eq!(
        e.policy.as_ref().unwrap().rule.as_deref(),
        Some("egress[0]")
    );
    assert_eq!(e.source.as_ref().unwrap().name.as_deref(), Some("client"));
    let e = next_event(&s.events).await;
    let EventBody::Http(h) = &e.body else {
        panic!("{e:?}")
    };
    assert_eq!(
        (h.path.as_deref(), h.bytes_out),
        (Some("/chunked"), Some(11))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_kept_upstream_is_replaced_and_garbage_is_a_502() {
    let s = start(Posture::Allow, &[]).await;
    let (port, accepted) = scripted_upstream().await;
    let urls: Vec<String> = ["/drop", "/a", "/garbage", "/b"]
        .iter()
        .map(|p| format!("http://allowed.test:{port}{p}"))
        .collect();
    let mut args: Vec<String> = vec!["-x".into(), format!("http://{}", s.proxy)];
    args.extend(["-w".into(), "\n%{http_code} %{num_connects}\n".into()]);
    args.extend(urls);
    let (out, last) = curl(args).await;
    let all = format!("{out}\n{last}");
    let all = all.trim_end();
    // The kept connection the upstream dropped after /drop is replaced for /a; the garbage
    // answer is a 502 and the client connection carries on to /b.
    assert!(all.contains("drop\n200 1\n"), "{all}");
    assert!(
        all.contains(&format!(
            "hello host=allowed.test:{port} hop=false\n200 0\n"
        )),
        "{all}"
    );
    assert!(
        all.contains("palisade: bad gateway (upstream-failed)\n\n502 0\n"),
        "{all}"
    );
    assert!(
        all.ends_with(&format!("hello host=allowed.test:{port} hop=false\n200 0")),
        "{all}"
    );
    assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 3);
    let mut statuses = Vec::new();
    for _ in 0..4 {
        let e = next_event(&s.events).await;
        let EventBody::Http(h) = &e.body else {
            panic!("{e:?}")
        };
        statuses.push(h.status.unwrap());
    }
    assert_eq!(statuses, vec![200, 200, 502, 200]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_full_path_takes_over_the_connection_for_what_the_lane_does_not_serve() {
    let s = start(Posture::Allow, &[]).await;
    let (port, _) = scripted_upstream().await;
    // GET (lane), POST with a body (full path), then GET again (full path), a denied
    // name and an HTTP/1.0 request: all on one client connection.
    let u = format!("http://allowed.test:{}/echo", s.upstream);
    let args: Vec<String> = [
        "-x".to_string(),
        format!("http://{}", s.proxy),
        "-w".into(),
        "\n%{http_code} %{num_connects}\n".into(),
        format!("http://allowed.test:{port}/a"),
        "--next".into(),
        "-x".into(),
        format!("http://{}", s.proxy),
        "-d".into(),
        "posted".into(),
        "-w".into(),
        "\n%{http_code} %{num_connects}\n".into(),
        u.clone(),
        "--next".into(),
        "-x".into(),
        format!("http://{}", s.proxy),
        "-w".into(),
        "\n%{http_code} %{num_connects}\n".into(),
        format!("http://denied.test:{port}/a"),
    ]
    .into();
    let (out, last) = curl(args).await;
    let all = format!("{out}\n{last}");
    let all = all.trim_end();
    assert!(
        all.starts_with(&format!(
            "hello host=allowed.test:{port} hop=false\n200 1\n"
        )),
        "{all}"
    );
    assert!(
        all.contains("posted\n200 0\n"),
        "the POST on the same connection: {all}"
    );
    assert!(
        all.ends_with("palisade: denied (fqdn-not-allowed)\n\n403 0"),
        "{all}"
    );

    let status = bad_input::raw(
        s.proxy,
        format!("GET http://allowed.test:{port}/a HTTP/1.0\r\n\r\n").as_bytes(),
    )
    .await;
    assert_eq!(status, "HTTP/1.0 200 OK");
}
