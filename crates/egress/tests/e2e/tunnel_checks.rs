//! What a request inside an intercepted tunnel may name, whatever the HTTP version: the SNI
//! must name the `CONNECT` target (else no answer at all), and HTTP/1.1 gets the target
//! checks HTTP/2 gets (`proxy::inside`).

use std::sync::atomic::Ordering;

use super::h2_wire::*;
use super::intercept::intercepting;
use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_sni_other_than_the_connect_target_gets_no_answer_in_either_version() {
    let i = intercepting("h2-sni").await;
    let request = |host: &str, alpn: &[u8]| -> Vec<u8> {
        if alpn == b"h2" {
            let fields = block(&[
                (":method", "GET"),
                (":scheme", "https"),
                (":authority", host),
                (":path", "/"),
            ]);
            [
                PREFACE,
                &frame(SETTINGS, 0, 0, &[]),
                &frame(HEADERS, END_STREAM | END_HEADERS, 1, &fields),
            ]
            .concat()
        } else {
            format!("GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").into_bytes()
        }
    };
    let answer = |alpn: &[u8], bytes: &[u8]| -> Option<u16> {
        if alpn == b"h2" {
            match outcome(&frames(bytes), 1, true) {
                Outcome::Status(s) => Some(s),
                _ => None,
            }
        } else {
            let text = String::from_utf8_lossy(bytes);
            text.strip_prefix("HTTP/1.1 ")?.get(..3)?.parse().ok()
        }
    };
    for alpn in [&b"h2"[..], b"http/1.1"] {
        // Domain fronting by SNI: the handshake completes, then the connection is closed
        // before any request is read.
        let mut tls = tunnel_with_sni(&i, "allowed.test", alpn).await;
        let _ = tls.write_all(&request("allowed.test", alpn)).await;
        let mut got = Vec::new();
        let r = tokio::time::timeout(Duration::from_secs(5), tls.read_to_end(&mut got)).await;
        assert!(r.is_ok(), "left open");
        assert_eq!(answer(alpn, &got), None, "{alpn:?}: {got:?}");
        // The same client naming the tunnel's server is served.
        let authority = format!("hub.test:{}", i.port);
        let mut tls = tunnel_with_sni(&i, "hub.test", alpn).await;
        tls.write_all(&request(&authority, alpn)).await.unwrap();
        let mut got = Vec::new();
        let read = async {
            let mut buf = [0u8; 4096];
            while answer(alpn, &got).is_none() {
                match tls.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                }
            }
        };
        let _ = tokio::time::timeout(Duration::from_secs(5), read).await;
        assert_eq!(answer(alpn, &got), Some(200), "{alpn:?}: {got:?}");
    }
    assert_eq!(i.upstream_conns.load(Ordering::Relaxed), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http1_inside_the_tunnel_gets_the_same_target_checks() {
    let i = intercepting("h1-inside").await;
    let p = i.port;
    let cases = [
        (
            format!("GET / HTTP/1.1\r\nHost: hub.test:{p}\r\nHost: allowed.test\r\n"),
            "HTTP/1.1 400",
            "palisade: bad request (duplicate-host)".to_string(),
        ),
        (
            format!("GET / HTTP/1.1\r\nHost: hub.test:{}\r\n", p.wrapping_add(1)),
            "HTTP/1.1 403",
            "palisade: denied (host-mismatch)".to_string(),
        ),
        (
            format!("GET https://allowed.test@hub.test:{p}/ HTTP/1.1\r\nHost: hub.test:{p}\r\n"),
            "HTTP/1.1 400",
            "palisade: bad request (authority-userinfo)".to_string(),
        ),
        (
            format!("GET http://hub.test:{p}/ HTTP/1.1\r\nHost: hub.test:{p}\r\n"),
            "HTTP/1.1 400",
            "palisade: bad request (scheme-not-https)".to_string(),
        ),
        (
            format!("CONNECT allowed.test:443 HTTP/1.1\r\nHost: hub.test:{p}\r\n"),
            "HTTP/1.1 400",
            "palisade: bad request (connect-inside-tunnel)".to_string(),
        ),
        (
            format!("GET /host HTTP/1.1\r\nHost: hub.test:{p}\r\nConnection: close, host\r\n"),
            "HTTP/1.1 200",
            format!("1 hub.test:{p}"),
        ),
    ];
    let mut failures = Vec::new();
    for (head, status, body) in &cases {
        let mut tls = tunnel_with_sni(&i, "hub.test", b"http/1.1").await;
        let req = format!("{head}Connection: close\r\n\r\n");
        tls.write_all(req.as_bytes()).await.unwrap();
        let mut got = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), tls.read_to_end(&mut got)).await;
        let text = String::from_utf8_lossy(&got);
        if !text.starts_with(status) || !text.trim_end().ends_with(body.as_str()) {
            failures.push(format!("{head:?}: {text:?}"));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}
