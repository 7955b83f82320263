//! The transparent listener, tried without redirect rules (which need root): the
//! connections carry no original destination, so the gateway uses the name from `Host` /
//! SNI and the configured fallback port.

use super::bad_input::raw;
use super::*;
use palisade_egress::sni::client_hello_for;

/// A TCP server that echoes what it receives.
async fn echo() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    port
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_is_decided_on_host() {
    let s = start_with(Posture::Allow, &[], |cfg, _| {
        cfg.transparent = Some("127.0.0.1:0".parse().unwrap());
    })
    .await;
    let t = s.transparent.unwrap();
    let p = s.upstream;
    let ok = format!("GET /x HTTP/1.1\r\nHost: allowed.test:{p}\r\n\r\n");
    assert_eq!(raw(t, ok.as_bytes()).await, "HTTP/1.1 200 OK");
    let denied = format!("GET /x HTTP/1.1\r\nHost: denied.test:{p}\r\n\r\n");
    assert_eq!(raw(t, denied.as_bytes()).await, "HTTP/1.1 403 Forbidden");
    let post = format!("POST /x HTTP/1.1\r\nHost: hub.test:{p}\r\nContent-Length: 0\r\n\r\n");
    assert_eq!(raw(t, post.as_bytes()).await, "HTTP/1.1 403 Forbidden");
    // An absolute-form target is decided on Host, and the upstream gets it in origin form
    // (a server reads an absolute target's authority before Host, RFC 9112 §3.2.2).
    let absolute = format!(
        "GET http://denied.test:{p}/line HTTP/1.1\r\nHost: allowed.test:{p}\r\nConnection: close\r\n\r\n"
    );
    let mut c = TcpStream::connect(t).await.unwrap();
    c.write_all(absolute.as_bytes()).await.unwrap();
    let mut got = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), c.read_to_end(&mut got)).await;
    let got = String::from_utf8_lossy(&got);
    assert!(
        got.starts_with("HTTP/1.1 200") && got.ends_with("\r\n\r\nget /line http/1.1"),
        "{got:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_is_decided_on_sni_and_tunnelled() {
    let port = echo().await;
    let s = start_with(Posture::Allow, &[], |cfg, _| {
        cfg.transparent = Some("127.0.0.1:0".parse().unwrap());
        cfg.transparent_fallback_port = Some(port);
    })
    .await;
    let t = s.transparent.unwrap();
    // Allowed: the ClientHello reaches the upstream unchanged (echoed back here).
    let hello = client_hello_for(Some("allowed.test"));
    let mut c = TcpStream::connect(t).await.unwrap();
    c.write_all(&hello).await.unwrap();
    let mut back = vec![0u8; hello.len()];
    tokio::time::timeout(Duration::from_secs(5), c.read_exact(&mut back))
        .await
        .expect("echo in time")
        .unwrap();
    assert_eq!(back, hello);
    // Denied, or garbage after a TLS record header: closed without a byte.
    for bytes in [
        client_hello_for(Some("denied.test")),
        client_hello_for(Some("hub.test")),
        vec![0x16, 0x03, 0x01, 0x00, 0x05, 0x02, 0, 0, 1, 0],
    ] {
        let mut c = TcpStream::connect(t).await.unwrap();
        c.write_all(&bytes).await.unwrap();
        let mut buf = [0u8; 16];
        let n = tokio::time::timeout(Duration::from_secs(5), c.read(&mut buf))
            .await
            .expect("closed in time")
            .unwrap_or(0);
        assert_eq!(n, 0, "{bytes:?}");
    }
}
