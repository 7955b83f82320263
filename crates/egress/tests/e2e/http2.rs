//! HTTP/2 inside intercepted TLS: `curl --http2` through the gateway gets the same L7
//! decisions as HTTP/1.1, the events say which version the client spoke, and garbage after
//! `h2` was negotiated closes the connection.

use std::sync::Arc;

use super::intercept::{intercepting, roots, Intercepting};
use super::*;
use palisade_events::HttpVersion;

/// curl through the gateway, trusting its CA; returns (body, "status version").
async fn curl_h(i: &Intercepting, extra: &[&str], path: &str) -> (String, String) {
    let url = format!("https://hub.test:{}{path}", i.port);
    let mut args = vec![
        "--cacert",
        &i.cacert,
        "-w",
        "\n%{http_code} %{http_version}",
    ];
    args.extend_from_slice(extra);
    curl(via(&i.s, &args, &url)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_requests_get_the_same_l7_rules_as_http1() {
    let i = intercepting("h2-rules").await;
    // hub.test: GET and HEAD anywhere, POST only under /echo.
    let policy = POLICY.replace(
        "http: [{methods: [GET, HEAD]}]",
        "http: [{methods: [GET, HEAD]}, {methods: [POST], path: {prefix: /echo}}]",
    );
    assert_ne!(policy, POLICY);
    palisade_egress::publish(
        &i.s.engine,
        Some(Arc::new(engine_from(&policy, Posture::Allow))),
    );

    let (body, code) = curl_h(&i, &["--http2"], "/api/models/x").await;
    assert_eq!((body.as_str(), code.as_str()), ("hello", "200 2"));
    let e = next_event(&i.s.events).await;
    let h = http(&e);
    assert_eq!(e.verdict, Some(Verdict::Allow));
    assert_eq!(
        (
            h.method.as_deref(),
            h.path.as_deref(),
            h.status,
            h.tls,
            h.version
        ),
        (
            Some("GET"),
            Some("/api/models/x"),
            Some(200),
            Some(palisade_events::TlsMode::Intercepted),
            Some(HttpVersion::Http2)
        )
    );

    let (body, code) = curl_h(&i, &["--http2", "-d", "weights"], "/api/models/x").await;
    assert_eq!(
        (body.as_str(), code.as_str()),
        ("palisade: denied (l7-not-allowed)", "403 2")
    );
    let e = next_event(&i.s.events).await;
    let h = http(&e);
    assert_eq!(e.verdict, Some(Verdict::Deny));
    assert_eq!(
        (
            h.method.as_deref(),
            h.status,
            h.reason.as_deref(),
            h.version
        ),
        (
            Some("POST"),
            Some(403),
            Some("l7-not-allowed"),
            Some(HttpVersion::Http2)
        )
    );

    // An allowed POST: the body reaches the upstream (over HTTP/1.1) intact.
    let (body, code) = curl_h(&i, &["--http2", "-d", "weights=1"], "/echo").await;
    assert_eq!((body.as_str(), code.as_str()), ("weights=1", "200 2"));
    let e = next_event(&i.s.events).await;
    let h = http(&e);
    assert_eq!(
        (h.method.as_deref(), h.bytes_in, h.version),
        (Some("POST"), Some(9), Some(HttpVersion::Http2))
    );

    // The upstream (HTTP/1.1) gets one Host, from `:authority`.
    let (body, code) = curl_h(&i, &["--http2"], "/host").await;
    assert_eq!(code, "200 2");
    assert_eq!(body, format!("1 hub.test:{}", i.port));
    next_event(&i.s.events).await;

    // Fronting: `:authority` names another server inside the tunnel.
    let (body, code) = curl_h(&i, &["--http2", "-H", "Host: allowed.test"], "/").await;
    assert_eq!(
        (body.as_str(), code.as_str()),
        ("palisade: denied (host-mismatch)", "403 2")
    );
    let e = next_event(&i.s.events).await;
    assert_eq!(http(&e).reason.as_deref(), Some("host-mismatch"));

    // HTTP/1.1 inside the same kind of tunnel still works, and says so.
    let (body, code) = curl_h(&i, &["--http1.1"], "/api/models/x").await;
    assert_eq!((body.as_str(), code.as_str()), ("hello", "200 1.1"));
    let e = next_event(&i.s.events).await;
    assert_eq!(http(&e).version, Some(HttpVersion::Http11));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_http2_streams_are_each_decided() {
    let i = intercepting("h2-parallel").await;
    let proxy = format!("http://{}", i.s.proxy);
    // One curl, its transfers multiplexed over one connection: GETs pass, the POSTs (the
    // part after `--next`) are refused.
    let part = |extra: &[&str], paths: &[&str]| {
        let mut v: Vec<String> = ["-x", &proxy, "--noproxy", "", "--http2", "--cacert"]
            .iter()
            .map(|a| a.to_string())
            .collect();
        v.push(i.cacert.clone());
        v.extend(["-w".into(), "%{http_code} %{http_version};".into()]);
        v.extend(extra.iter().map(|a| a.to_string()));
        for p in paths {
            v.extend(["-o".into(), "/dev/null".into()]);
            v.push(format!("https://hub.test:{}{p}", i.port));
        }
        v
    };
    let mut args = vec!["--parallel".to_string()];
    args.extend(part(&[], &["/m/0", "/m/1", "/m/2", "/m/3"]));
    args.push("--next".into());
    args.extend(part(&["-d", "x"], &["/upload", "/upload"]));
    let (_, codes) = curl(args).await;
    let mut codes: Vec<&str> = codes.split(';').filter(|c| !c.is_empty()).collect();
    codes.sort_unstable();
    assert_eq!(
        codes,
        ["200 2", "200 2", "200 2", "200 2", "403 2", "403 2"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sequential_http2_requests_share_one_upstream_connection() {
    let i = intercepting("h2-reuse").await;
    let url = |p: &str| format!("https://hub.test:{}{p}", i.port);
    let (a, b) = (url("/a"), url("/b"));
    // Three URLs, one after another, over curl's one connection (the last one is `via`'s).
    let args = [
        "--http2",
        "--cacert",
        &i.cacert,
        "-w",
        "%{http_code} %{http_version};",
        "-o",
        "/dev/null",
        "-o",
        "/dev/null",
        "-o",
        "/dev/null",
        &a,
        &b,
    ];
    let (_, codes) = curl(via(&i.s, &args, &url("/c"))).await;
    assert_eq!(codes, "200 2;200 2;200 2;");
    let conns = i.upstream_conns.load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(
        conns, 1,
        "one client connection, one kept upstream connection"
    );
}

/// Opens a CONNECT tunnel to the intercepted `hub.test` (answered `200`), before TLS.
pub(crate) async fn connect_hub(i: &Intercepting) -> TcpStream {
    let mut c = TcpStream::connect(i.s.proxy).await.unwrap();
    let target = format!("hub.test:{}", i.port);
    c.write_all(format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while find(&head, b"\r\n\r\n").is_none() {
        assert_eq!(c.read(&mut byte).await.unwrap(), 1, "CONNECT answered");
        head.push(byte[0]);
    }
    assert!(head.starts_with(b"HTTP/1.1 200"), "{head:?}");
    c
}

/// Opens a tunnel to the intercepted `hub.test` and completes TLS offering only `h2`.
pub(crate) async fn h2_tunnel(i: &Intercepting) -> tokio_rustls::client::TlsStream<TcpStream> {
    let c = connect_hub(i).await;
    let mut cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots(&i.ca_pem))
    .with_no_client_auth();
    cfg.alpn_protocols = vec![b"h2".to_vec()];
    let name = rustls::pki_types::ServerName::try_from("hub.test").unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(name, c)
        .await
        .unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    tls
}

/// Sends `bytes` and reads until the gateway closes: what it sent, or `None` when it kept
/// the connection open.
async fn until_closed(
    tls: &mut tokio_rustls::client::TlsStream<TcpStream>,
    bytes: &[u8],
) -> Option<Vec<u8>> {
    let _ = tls.write_all(bytes).await;
    let _ = tls.flush().await;
    let mut got = Vec::new();
    let read = async {
        let mut buf = [0u8; 4096];
        loop {
            match tls.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(5), read)
        .await
        .ok()
        .map(|()| got)
}

/// The types of the HTTP/2 frames in `bytes` (stops at a partial frame).
fn frame_types(mut bytes: &[u8]) -> Vec<u8> {
    let mut types = Vec::new();
    while bytes.len() >= 9 {
        let len = usize::from(bytes[0]) << 16 | usize::from(bytes[1]) << 8 | usize::from(bytes[2]);
        types.push(bytes[3]);
        bytes = &bytes[(9 + len).min(bytes.len())..];
    }
    types
}

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const SETTINGS: &[u8] = &[0, 0, 0, 4, 0, 0, 0, 0, 0];
const GOAWAY: u8 = 7;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_after_h2_is_negotiated_closes_the_connection() {
    let i = intercepting("h2-garbage").await;

    // Not the HTTP/2 preface at all.
    let mut tls = h2_tunnel(&i).await;
    let got = until_closed(&mut tls, b"GET / HTTP/1.1\r\nHost: hub.test\r\n\r\n").await;
    assert!(got.is_some(), "connection left open after a bad preface");

    // A valid preface, then frames that break the protocol: each ends in a GOAWAY.
    let bad_frames: [&[u8]; 3] = [
        // HEADERS (END_STREAM | END_HEADERS) on stream 1 with an undecodable HPACK block.
        &[0, 0, 4, 1, 5, 0, 0, 0, 1, 0xff, 0xff, 0xff, 0xff],
        // DATA on stream 0.
        &[0, 0, 4, 0, 0, 0, 0, 0, 0, b'a', b'b', b'c', b'd'],
        // A frame far over the maximum size.
        &[0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 1],
    ];
    for frame in bad_frames {
        let mut tls = h2_tunnel(&i).await;
        let bytes = [PREFACE, SETTINGS, frame].concat();
        let got = until_closed(&mut tls, &bytes)
            .await
            .unwrap_or_else(|| panic!("connection left open after {frame:?}"));
        assert!(
            frame_types(&got).contains(&GOAWAY),
            "no GOAWAY after {frame:?}: {:?}",
            frame_types(&got)
        );
    }

    // The gateway keeps serving.
    let (body, code) = curl_h(&i, &["--http2"], "/").await;
    assert_eq!((body.as_str(), code.as_str()), ("hello", "200 2"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_large_http2_upload_still_gets_its_403() {
    use http_body_util::BodyExt;
    let i = intercepting("h2-large").await;
    let tls = h2_tunnel(&i).await;
    let (mut send, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tls),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    // Far more than the gateway reads of a refused body: the answer comes before the upload
    // ends (the stream is then reset with NO_ERROR).
    let weights = bytes::Bytes::from(vec![7u8; 4 << 20]);
    let req = hyper::Request::post(format!("https://hub.test:{}/upload", i.port))
        .body(http_body_util::Full::new(weights))
        .unwrap();
    let resp = tokio::time::timeout(Duration::from_secs(10), send.send_request(req))
        .await
        .expect("answered in time")
        .unwrap();
    assert_eq!(resp.status(), 403);
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], b"palisade: denied (l7-not-allowed)\n");
    let e = next_event(&i.s.events).await;
    assert_eq!(
        (http(&e).method.as_deref(), http(&e).version),
        (Some("POST"), Some(HttpVersion::Http2))
    );
}
