//! HTTP/2 frames no well-behaved client sends, written by hand inside an intercepted tunnel:
//! odd `:path`s, missing, repeated or unknown pseudo-header fields, `:protocol` (extended
//! CONNECT), connection-specific and upper-case field names; and the limits: the settings
//! the gateway announces, an oversized header list, a CONTINUATION flood, more streams than
//! allowed at once, and a rapid-reset flood. Each gets a status, a reset stream or a
//! closed connection, and the gateway goes on serving.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::http2::h2_tunnel;
use super::intercept::{intercepting, intercepting_with, Intercepting};
use super::*;

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const DATA: u8 = 0;
const HEADERS: u8 = 1;
const RST_STREAM: u8 = 3;
const SETTINGS: u8 = 4;
const GOAWAY: u8 = 7;
const CONTINUATION: u8 = 9;
const END_STREAM: u8 = 1;
const END_HEADERS: u8 = 4;
const PROTOCOL_ERROR: u32 = 1;
const REFUSED_STREAM: u32 = 7;

/// An HPACK integer with an `n`-bit prefix, the prefix's other bits being `flags`
/// (RFC 7541 §5.1).
fn int(flags: u8, n: u32, mut v: usize, out: &mut Vec<u8>) {
    let max = (1usize << n) - 1;
    if v < max {
        out.push(flags | v as u8);
        return;
    }
    out.push(flags | max as u8);
    v -= max;
    while v >= 128 {
        out.push((v % 128) as u8 | 0x80);
        v /= 128;
    }
    out.push(v as u8);
}

/// A field as an HPACK literal without indexing, new name, no Huffman coding: any bytes
/// go, upper case and repeated pseudo-header fields included.
fn lit(name: &str, value: &[u8]) -> Vec<u8> {
    let mut out = vec![0];
    int(0, 7, name.len(), &mut out);
    out.extend_from_slice(name.as_bytes());
    int(0, 7, value.len(), &mut out);
    out.extend_from_slice(value);
    out
}

fn block(fields: &[(&str, &str)]) -> Vec<u8> {
    fields
        .iter()
        .flat_map(|(n, v)| lit(n, v.as_bytes()))
        .collect()
}

fn frame(ty: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len();
    let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, ty, flags];
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// A frame read back: type, flags, stream, payload.
#[derive(Debug, Clone)]
struct Frame(u8, u8, u32, Vec<u8>);

fn frames(mut bytes: &[u8]) -> Vec<Frame> {
    let mut out = Vec::new();
    while bytes.len() >= 9 {
        let len = usize::from(bytes[0]) << 16 | usize::from(bytes[1]) << 8 | usize::from(bytes[2]);
        if bytes.len() < 9 + len {
            break;
        }
        let stream = u32::from_be_bytes([bytes[5], bytes[6], bytes[7], bytes[8]]) & 0x7fff_ffff;
        out.push(Frame(
            bytes[3],
            bytes[4],
            stream,
            bytes[9..9 + len].to_vec(),
        ));
        bytes = &bytes[9 + len..];
    }
    out
}

/// How the gateway answered a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Status(u16),
    Reset(u32),
    GoAway(u32),
    Closed,
}

/// Three decimal digits Huffman-coded (RFC 7541 Appendix B: `0`-`2` take 5 bits, `3`-`9`
/// take 6, starting `011`).
fn huffman_digits(bytes: &[u8]) -> Option<u16> {
    let bit = |i: usize| Some((bytes.get(i / 8)? >> (7 - i % 8)) & 1);
    let (mut at, mut n) = (0usize, 0u16);
    for _ in 0..3 {
        let five = (0..5).try_fold(0u8, |a, k| Some(a << 1 | bit(at + k)?))?;
        if five < 3 {
            n = n * 10 + u16::from(five);
            at += 5;
        } else {
            let six = five << 1 | bit(at + 5)?;
            if !(0x19..=0x1f).contains(&six) {
                return None;
            }
            n = n * 10 + u16::from(six - 0x16);
            at += 6;
        }
    }
    Some(n)
}

/// The `:status` of a response header block, when it comes first as the gateway's HPACK
/// encoder writes it: indexed from the static table, or a literal with the static name.
fn status(block: &[u8]) -> Option<u16> {
    let mut b = block;
    // Dynamic table size updates.
    while b.first().is_some_and(|x| x & 0xe0 == 0x20) {
        b = &b[1..];
    }
    let first = *b.first()?;
    if first & 0x80 != 0 {
        return [200, 204, 206, 304, 400, 404, 500]
            .get(usize::from(first & 0x7f).checked_sub(8)?)
            .copied();
    }
    let name_index = if first & 0x40 != 0 {
        first & 0x3f
    } else {
        first & 0x0f
    };
    if name_index != 8 {
        return None;
    }
    let (huff, len) = (b[1] & 0x80 != 0, usize::from(b[1] & 0x7f));
    let value = b.get(2..2 + len)?;
    if huff {
        huffman_digits(value)
    } else {
        std::str::from_utf8(value).ok()?.parse().ok()
    }
}

/// The outcome of `stream` among `got`.
fn outcome(got: &[Frame], stream: u32, closed: bool) -> Outcome {
    for Frame(ty, flags, id, payload) in got {
        match *ty {
            HEADERS if *id == stream => {
                let mut p = &payload[..];
                if flags & 0x8 != 0 {
                    p = &p[1..p.len() - usize::from(p[0])];
                }
                if flags & 0x20 != 0 {
                    p = &p[5..];
                }
                return Outcome::Status(status(p).expect("a :status the test can read"));
            }
            RST_STREAM if *id == stream => {
                return Outcome::Reset(u32::from_be_bytes(payload[..4].try_into().unwrap()))
            }
            GOAWAY => {
                return Outcome::GoAway(u32::from_be_bytes(payload[4..8].try_into().unwrap()))
            }
            _ => {}
        }
    }
    if closed {
        Outcome::Closed
    } else {
        panic!("no answer for stream {stream}: {got:?}")
    }
}

/// Opens an `h2` tunnel, sends the preface, empty SETTINGS and `bytes` (from a task of
/// its own, so a gateway that stops reading does not stall the test), and reads until
/// `done` says the frames read so far are enough, the gateway closes, or 5 s pass.
/// Returns the frames and whether the connection was closed.
async fn exchange(
    i: &Intercepting,
    bytes: Vec<u8>,
    done: impl Fn(&[Frame]) -> bool,
) -> (Vec<Frame>, bool) {
    let tls = h2_tunnel(i).await;
    let (mut rd, mut wr) = tokio::io::split(tls);
    let writer = tokio::spawn(async move {
        let all = [PREFACE, &frame(SETTINGS, 0, 0, &[]), &bytes].concat();
        for chunk in all.chunks(64 * 1024) {
            if wr.write_all(chunk).await.is_err() {
                return;
            }
        }
        let _ = wr.flush().await;
        // Keep the write half open until the test is done reading.
        tokio::time::sleep(Duration::from_secs(6)).await;
    });
    let mut buf = Vec::new();
    let mut closed = false;
    let read = async {
        let mut chunk = [0u8; 16 * 1024];
        loop {
            match rd.read(&mut chunk).await {
                Ok(0) | Err(_) => {
                    closed = true;
                    return;
                }
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
            if done(&frames(&buf)) {
                return;
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(5), read).await;
    writer.abort();
    (frames(&buf), closed)
}

/// Sends one request as a HEADERS frame on stream 1 and returns how it was answered.
async fn one(i: &Intercepting, fields: &[u8]) -> Outcome {
    let bytes = frame(HEADERS, END_STREAM | END_HEADERS, 1, fields);
    let answered = |f: &[Frame]| {
        f.iter().any(|Frame(ty, _, id, _)| {
            *id == 1 && matches!(*ty, HEADERS | RST_STREAM) || *ty == GOAWAY
        })
    };
    let (got, closed) = exchange(i, bytes, answered).await;
    outcome(&got, 1, closed)
}

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

/// Accepts any server certificate: the client below names another server in its SNI than
/// the leaf the gateway presents, to see what the gateway does (not what a client would).
#[derive(Debug)]
struct AnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &[rustls::pki_types::CertificateDer<'_>],
        _: &rustls::pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }

    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// A tunnel to `hub.test` whose TLS names `sni` and offers `alpn`.
async fn tunnel_with_sni(
    i: &Intercepting,
    sni: &str,
    alpn: &[u8],
) -> tokio_rustls::client::TlsStream<TcpStream> {
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
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
        .with_no_client_auth();
    cfg.alpn_protocols = vec![alpn.to_vec()];
    let name = rustls::pki_types::ServerName::try_from(sni.to_string()).unwrap();
    tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(name, c)
        .await
        .unwrap()
}

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
