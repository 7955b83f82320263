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
