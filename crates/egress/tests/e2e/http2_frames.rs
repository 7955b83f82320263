//! HTTP/2 frames no well-behaved client sends, written by hand inside an intercepted tunnel:
//! odd `:path`s, missing, repeated or unknown pseudo-header fields, `:protocol` (extended
//! CONNECT), connection-specific and upper-case field names; and the limits: the settings
//! the gateway announces, an oversized header list, a CONTINUATION flood, more streams than
//! allowed at once, a rapid-reset flood, idle connections. Each gets a status, a reset
//! stream or a closed connection, and the gateway goes on serving.

use std::sync::atomic::Ordering;

use super::h2_wire::*;
use super::http2::h2_tunnel;
use super::intercept::{intercepting, intercepting_with};
use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_http2_requests_are_refused_before_any_decision() {
    let i = intercepting("h2-frames").await;
    let authority = format!("hub.test:{}", i.port);
    let a = authority.as_str();
    let get = |path: &str| {
        block(&[
            (":method", "GET"),
            (":scheme", "https"),
            (":authority", a),
            (":path", path),
        ])
    };
    let with = |extra: &[(&str, &str)]| [get("/"), block(extra)].concat();
    let reset = Outcome::Reset(PROTOCOL_ERROR);
    let cases: Vec<(&str, Vec<u8>, Outcome)> = vec![
        ("a plain GET", get("/"), Outcome::Status(200)),
        // `:path` must be an origin-form path (or `*` for OPTIONS): hyper cannot make a
        // URI of a relative one, the gateway refuses the others.
        ("path without /", get("models"), reset),
        ("path of a query", get("?q=/admin"), Outcome::Status(400)),
        ("path * for GET", get("*"), Outcome::Status(400)),
        (
            "OPTIONS *",
            block(&[
                (":method", "OPTIONS"),
                (":scheme", "https"),
                (":authority", a),
                (":path", "*"),
            ]),
            Outcome::Status(403),
        ),
        (
            ":scheme http",
            block(&[
                (":method", "GET"),
                (":scheme", "http"),
                (":authority", a),
                (":path", "/"),
            ]),
            Outcome::Status(400),
        ),
        (
            "CONNECT",
            block(&[(":method", "CONNECT"), (":authority", "allowed.test:443")]),
            Outcome::Status(400),
        ),
        (
            "extended CONNECT",
            block(&[
                (":method", "CONNECT"),
                (":protocol", "websocket"),
                (":scheme", "https"),
                (":authority", a),
                (":path", "/"),
            ]),
            reset,
        ),
        (
            "no :path",
            block(&[(":method", "GET"), (":scheme", "https"), (":authority", a)]),
            reset,
        ),
        (
            "no :method",
            block(&[(":scheme", "https"), (":authority", a), (":path", "/")]),
            reset,
        ),
        (
            "no :scheme",
            block(&[(":method", "GET"), (":authority", a), (":path", "/")]),
            reset,
        ),
        (
            "two :path",
            [get("/"), block(&[(":path", "/x")])].concat(),
            reset,
        ),
        (
            "pseudo-header after a field",
            [
                block(&[(":method", "GET"), (":scheme", "https"), ("x-a", "1")]),
                block(&[(":authority", a), (":path", "/")]),
            ]
            .concat(),
            reset,
        ),
        (
            "a :status in a request",
            with(&[(":status", "200")]).into_iter().collect(),
            reset,
        ),
        ("connection", with(&[("connection", "close")]), reset),
        (
            "transfer-encoding",
            with(&[("transfer-encoding", "chunked")]),
            reset,
        ),
        ("keep-alive", with(&[("keep-alive", "1")]), reset),
        (
            "proxy-connection",
            with(&[("proxy-connection", "close")]),
            reset,
        ),
        ("upgrade", with(&[("upgrade", "websocket")]), reset),
        ("te other than trailers", with(&[("te", "gzip")]), reset),
        ("a space in :path", get("/a b"), reset),
        (
            "content-length with no body",
            with(&[("content-length", "5")]),
            reset,
        ),
        (
            "te: trailers",
            with(&[("te", "trailers")]),
            Outcome::Status(200),
        ),
    ];
    let mut failures = Vec::new();
    for (name, fields, want) in &cases {
        let got = one(&i, fields).await;
        if got != *want {
            failures.push(format!("{name}: got {got:?}, want {want:?}"));
        }
    }
    // Upper-case names and an unknown pseudo-header field break HPACK decoding as h2
    // defines it: the whole connection is closed.
    for (name, fields) in [
        ("upper-case name", with(&[("X-Env", "prod")])),
        ("unknown pseudo-header", with(&[(":foo", "bar")])),
        // Bytes that would split the field when written as HTTP/1.1 for the upstream.
        (
            "CR LF in a value",
            with(&[("x-a", "a\r\nhost: allowed.test")]),
        ),
        ("NUL in a value", with(&[("x-a", "a\0b")])),
        ("a colon in a name", with(&[("x-a:b", "c")])),
    ] {
        let got = one(&i, &fields).await;
        if !matches!(got, Outcome::GoAway(_) | Outcome::Reset(PROTOCOL_ERROR)) {
            failures.push(format!("{name}: got {got:?}, want a GOAWAY or a reset"));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
    // Two requests reached the upstream, over one kept connection each at most.
    let conns = i.upstream_conns.load(Ordering::Relaxed);
    assert!((1..=2).contains(&conns), "{conns} upstream connections");
}

/// The gateway's SETTINGS (the first frame it sends) as (identifier, value) pairs.
fn settings(got: &[Frame]) -> Vec<(u16, u32)> {
    let Some(Frame(_, _, _, p)) = got.iter().find(|f| f.0 == SETTINGS && f.1 == 0) else {
        panic!("no SETTINGS: {got:?}")
    };
    p.chunks(6)
        .map(|c| {
            (
                u16::from_be_bytes([c[0], c[1]]),
                u32::from_be_bytes([c[2], c[3], c[4], c[5]]),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_limits_hold_for_headers_streams_and_resets() {
    let i = intercepting("h2-limits").await;
    let authority = format!("hub.test:{}", i.port);
    let get = |_: bool| {
        block(&[
            (":method", "GET"),
            (":scheme", "https"),
            (":authority", &authority),
            (":path", "/"),
        ])
    };

    // The announced limits: 100 streams at once, a 64 KiB header list.
    let (got, _) = exchange(&i, Vec::new(), |f| f.iter().any(|x| x.0 == SETTINGS)).await;
    let s = settings(&got);
    assert!(s.contains(&(0x3, 100)), "{s:?}");
    assert!(s.contains(&(0x6, 64 * 1024)), "{s:?}");

    // A header list over the limit, spread over CONTINUATION frames: a 431 for that stream.
    let mut fields = get(true);
    fields.extend(lit("x-big", &vec![b'a'; 70 * 1024]));
    let mut bytes = Vec::new();
    let mut parts = fields.chunks(16 * 1024).peekable();
    let mut first = true;
    while let Some(p) = parts.next() {
        let last = parts.peek().is_none();
        let (ty, flags) = match (first, last) {
            (true, true) => (HEADERS, END_STREAM | END_HEADERS),
            (true, false) => (HEADERS, END_STREAM),
            (false, true) => (CONTINUATION, END_HEADERS),
            (false, false) => (CONTINUATION, 0),
        };
        bytes.extend(frame(ty, flags, 1, p));
        first = false;
    }
    let (got, closed) = exchange(&i, bytes, |f| f.iter().any(|x| x.2 == 1 || x.0 == GOAWAY)).await;
    assert_eq!(outcome(&got, 1, closed), Outcome::Status(431), "{got:?}");

    // A CONTINUATION flood (one header block that never ends, 1 KiB fields, 16 MiB in
    // all): the connection is closed long before it is read whole.
    let mut bytes = frame(HEADERS, END_STREAM, 1, &get(true));
    for n in 0..16 * 1024 {
        bytes.extend(frame(
            CONTINUATION,
            0,
            1,
            &lit(&format!("x-flood-{n}"), &[b'v'; 1000]),
        ));
    }
    let start = std::time::Instant::now();
    let (got, closed) = exchange(&i, bytes, |f| f.iter().any(|x| x.0 == GOAWAY)).await;
    assert!(
        matches!(
            outcome(&got, 1, closed),
            Outcome::GoAway(_) | Outcome::Closed
        ),
        "{got:?}"
    );
    assert!(start.elapsed() < Duration::from_secs(5));

    // 150 streams at once: those over the 100 allowed are refused, each answered.
    let mut bytes = Vec::new();
    for n in 0..150u32 {
        bytes.extend(frame(
            HEADERS,
            END_STREAM | END_HEADERS,
            2 * n + 1,
            &get(true),
        ));
    }
    let all_answered = |f: &[Frame]| {
        f.iter()
            .filter(|Frame(ty, flags, id, _)| {
                *id != 0
                    && (*ty == RST_STREAM
                        || (*ty == DATA || *ty == HEADERS) && flags & END_STREAM != 0)
            })
            .count()
            >= 150
    };
    let (got, closed) = exchange(&i, bytes, all_answered).await;
    let (mut ok, mut refused) = (0, 0);
    for n in 0..150u32 {
        match outcome(&got, 2 * n + 1, closed) {
            Outcome::Status(200) => ok += 1,
            Outcome::Reset(REFUSED_STREAM) => refused += 1,
            other => panic!("stream {}: {other:?}", 2 * n + 1),
        }
    }
    assert_eq!(ok + refused, 150);
    assert!(
        ok <= 100 && refused >= 50,
        "{ok} answered, {refused} refused"
    );

    // Rapid reset (CVE-2023-44487): streams opened and cancelled at once, 1000 times.
    let mut bytes = Vec::new();
    for n in 0..1000u32 {
        let id = 2 * n + 1;
        bytes.extend(frame(HEADERS, END_STREAM | END_HEADERS, id, &get(true)));
        bytes.extend(frame(RST_STREAM, 0, id, &8u32.to_be_bytes()));
    }
    let before = i.upstream_conns.load(Ordering::Relaxed);
    let (got, closed) = exchange(&i, bytes, |f| f.iter().any(|x| x.0 == GOAWAY)).await;
    // After 20 such streams the connection is closed with ENHANCE_YOUR_CALM; next to
    // nothing reached the upstream.
    assert_eq!(outcome(&got, 1, closed), Outcome::GoAway(0xb), "{got:?}");
    let opened = i.upstream_conns.load(Ordering::Relaxed) - before;
    assert!(opened <= 20, "{opened} upstream connections");

    // The gateway still serves.
    let got = one(&i, &get(true)).await;
    assert_eq!(got, Outcome::Status(200));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_http2_connections_are_closed() {
    let i = intercepting_with("h2-idle", |cfg| cfg.idle_timeout = Duration::from_secs(1)).await;
    // No preface at all, and a preface with nothing after it: closed after the idle time
    // (with a GOAWAY once HTTP/2 is spoken), though keep-alive pings would be answered.
    let t = std::time::Instant::now();
    let mut tls = h2_tunnel(&i).await;
    let mut buf = Vec::new();
    let r = tokio::time::timeout(Duration::from_secs(10), tls.read_to_end(&mut buf)).await;
    assert!(r.is_ok(), "left open without a preface");
    assert!(t.elapsed() < Duration::from_secs(8), "{:?}", t.elapsed());

    let t = std::time::Instant::now();
    let (got, closed) = exchange(&i, Vec::new(), |f| f.iter().any(|x| x.0 == GOAWAY)).await;
    assert!(got.iter().any(|x| x.0 == GOAWAY) || closed, "{got:?}");
    assert!(t.elapsed() < Duration::from_secs(4), "{:?}", t.elapsed());

    // After a request, the idle time counts from its end.
    let mut bytes = frame(
        HEADERS,
        END_STREAM | END_HEADERS,
        1,
        &block(&[
            (":method", "GET"),
            (":scheme", "https"),
            (":authority", &format!("hub.test:{}", i.port)),
            (":path", "/"),
        ]),
    );
    bytes.extend(frame(SETTINGS, 1, 0, &[]));
    let (got, _) = exchange(&i, bytes, |f| f.iter().any(|x| x.0 == GOAWAY)).await;
    assert_eq!(outcome(&got, 1, false), Outcome::Status(200));
    assert!(got.iter().any(|x| x.0 == GOAWAY), "{got:?}");

    // HTTP/1.1 inside the tunnel too: kept alive after a request, then closed when idle.
    let mut tls = tunnel_with_sni(&i, "hub.test", b"http/1.1").await;
    let t = std::time::Instant::now();
    let req = format!("GET / HTTP/1.1\r\nHost: hub.test:{}\r\n\r\n", i.port);
    tls.write_all(req.as_bytes()).await.unwrap();
    let mut got = Vec::new();
    let r = tokio::time::timeout(Duration::from_secs(10), tls.read_to_end(&mut got)).await;
    assert!(r.is_ok(), "left open");
    assert!(got.starts_with(b"HTTP/1.1 200"), "{got:?}");
    assert!(t.elapsed() < Duration::from_secs(4), "{:?}", t.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_does_not_pass_the_explicit_proxy() {
    let s = start(Posture::Allow, &[]).await;
    // The proxy speaks HTTP/1.1 only: an HTTP/2 preface gets a 4xx or a closed connection.
    let preface = [PREFACE, &frame(SETTINGS, 0, 0, &[])].concat();
    let got = super::bad_input::raw(s.proxy, &preface).await;
    assert!(got.is_empty() || got.starts_with("HTTP/1.1 4"), "{got:?}");
    // An h2c upgrade is a plain HTTP/1.1 request upstream (`Upgrade` is hop-by-hop).
    let req = format!(
        "GET http://allowed.test:{}/ HTTP/1.1\r\nHost: allowed.test\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n\r\n",
        s.upstream
    );
    let got = super::bad_input::raw(s.proxy, req.as_bytes()).await;
    assert_eq!(got, "HTTP/1.1 200 OK");
}
