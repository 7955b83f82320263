//! Subscriptions to DNS proxies' answers feeds, for a gateway that does not run in the same
//! process as the DNS proxy (Kubernetes: `palisade dns` per node, `palisade egress` as its
//! own Deployment).
//!
//! Each source (`spec.egress.dnsAnswers: ["http://host:port", ...]`) is read with
//! `GET /v1/answers`: newline-delimited JSON, first a snapshot of every live answer, then
//! each new one as the proxy records it, and an empty line now and then to show the stream
//! is alive. One line:
//!
//! ```json
//! {"client":"10.0.0.5","name":"hub.models.test","ip":"203.0.113.7","ttlMs":30000}
//! ```
//!
//! `ttlMs` is the time left when the line was written (so the two clocks need not agree).
//! Lines that do not decode are skipped and logged, never fatal. A stream that ends, fails
//! or stays silent past [`IDLE`] is opened again with exponential backoff; what was already
//! learnt stays in the [`AnswerBook`] until it expires. A source's host is resolved every
//! [`RESOLVE`] and every address it names is followed: in Kubernetes a headless Service over
//! the agent DaemonSet names every node's DNS proxy.

use crate::answers::AnswerBook;
use bytes::{Bytes, BytesMut};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

/// A stream with nothing on it for this long is considered dead (the proxy sends an empty
/// line every 15 s).
pub const IDLE: Duration = Duration::from_secs(45);
/// The longest line read; longer ones are skipped.
pub const MAX_LINE: usize = 4096;
/// First and longest wait before opening a failed stream again.
const BACKOFF: (Duration, Duration) = (Duration::from_millis(250), Duration::from_secs(30));
/// How often each source's host is resolved again (new DNS proxies behind a name).
pub const RESOLVE: Duration = Duration::from_secs(30);
/// How often expired answers are dropped from the book.
const PRUNE: Duration = Duration::from_secs(30);

/// One answer as it travels on the feed.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SharedAnswer {
    /// The pod that asked.
    pub client: IpAddr,
    /// The name it asked for.
    pub name: String,
    /// An address the answer gave.
    pub ip: IpAddr,
    /// Milliseconds the answer stays valid from when the line was written.
    pub ttl_ms: u64,
}

/// Why a line of the feed was skipped.
#[derive(Debug, thiserror::Error)]
pub enum FeedLineError {
    /// Not JSON of the expected shape.
    #[error("not an answer record: {0}")]
    Json(#[from] serde_json::Error),
    /// The name is empty or longer than a DNS name can be.
    #[error("bad name {0:?}")]
    Name(String),
}

/// Decodes one line of the feed (without its newline). `Ok(None)` for a keep-alive (empty)
/// line.
pub fn decode_line(line: &[u8]) -> Result<Option<SharedAnswer>, FeedLineError> {
    if line.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    let a: SharedAnswer = serde_json::from_slice(line)?;
    if a.name.is_empty() || a.name.len() > 254 {
        return Err(FeedLineError::Name(a.name));
    }
    Ok(Some(a))
}

/// A feed to read: where to connect and what to ask.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedSource {
    /// `host:port` as configured (also the `Host` header).
    pub authority: String,
    /// The one address to connect to; `None`: whatever `authority` resolves to first.
    pub addr: Option<SocketAddr>,
}

impl FeedSource {
    /// Parses `http://host:port` (a trailing `/` is accepted; nothing else may follow).
    pub fn parse(url: &str) -> Result<Self, String> {
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| format!("{url:?}: only http://host:port is supported"))?;
        let authority = rest.strip_suffix('/').unwrap_or(rest);
        let valid = match authority.rsplit_once(':') {
            Some((host, port)) => {
                !host.is_empty()
                    && port.parse::<u16>().is_ok_and(|p| p != 0)
                    && !host.contains(['/', '@', '?', '#'])
            }
            None => false,
        };
        if !valid {
            return Err(format!("{url:?} is not http://host:port"));
        }
        Ok(FeedSource {
            authority: authority.to_string(),
            addr: None,
        })
    }
}

/// Failures of one subscription (the loop logs them and opens the stream again).
#[derive(Debug, thiserror::Error)]
pub enum FeedError {
    /// Could not connect.
    #[error("connect: {0}")]
    Connect(std::io::Error),
    /// Connecting or reading took too long.
    #[error("timed out")]
    Timeout,
    /// HTTP failed.
    #[error("http: {0}")]
    Http(#[from] hyper::Error),
    /// The proxy answered with something other than 200.
    #[error("status {0}")]
    Status(hyper::StatusCode),
}

/// Splits a byte stream into lines, skipping (and counting) those longer than [`MAX_LINE`].
#[derive(Debug, Default)]
pub struct LineSplitter {
    buf: BytesMut,
    skipping: bool,
    /// Lines skipped for being too long.
    pub too_long: u64,
}

impl LineSplitter {
    /// Feeds `chunk`; calls `each` with every complete line (without its newline).
    pub fn push(&mut self, chunk: &[u8], mut each: impl FnMut(&[u8])) {
        let mut rest = chunk;
        while let Some(pos) = rest.iter().position(|&b| b == b'\n') {
            let (head, tail) = (&rest[..pos], &rest[pos + 1..]);
            if self.skipping {
                self.skipping = false;
            } else if self.buf.len() + head.len() > MAX_LINE {
                self.too_long += 1;
                self.buf.clear();
            } else if self.buf.is_empty() {
                each(head);
            } else {
                self.buf.extend_from_slice(head);
                each(&self.buf);
                self.buf.clear();
            }
            rest = tail;
        }
        if self.skipping {
            return;
        }
        if self.buf.len() + rest.len() > MAX_LINE {
            self.too_long += 1;
            self.buf.clear();
            self.skipping = true;
        } else {
            self.buf.extend_from_slice(rest);
        }
    }
}

/// Starts, per source, a task that resolves its host every [`RESOLVE`] and keeps one
/// subscription per address it resolves to (an IP literal is one address; a headless
/// Service's name is every DNS proxy behind it), each feeding `book`; and a task dropping
/// expired answers. `token` is sent as `Authorization: Bearer`.
pub fn subscribe(
    sources: Vec<FeedSource>,
    token: Option<String>,
    book: Arc<AnswerBook>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let token: Option<Arc<str>> = token.map(Into::into);
    let mut tasks: Vec<_> = sources
        .into_iter()
        .map(|src| tokio::spawn(follow_all(src, token.clone(), book.clone())))
        .collect();
    tasks.push(tokio::spawn(async move {
        let mut tick = tokio::time::interval(PRUNE);
        loop {
            tick.tick().await;
            book.prune();
        }
    }));
    tasks
}

/// Keeps one subscription per address `src` resolves to, looking again every [`RESOLVE`]:
/// new addresses are followed, vanished ones dropped (what they told stays until it
/// expires). A failed lookup keeps the current subscriptions.
async fn follow_all(src: FeedSource, token: Option<Arc<str>>, book: Arc<AnswerBook>) {
    let mut following: HashMap<SocketAddr, tokio::task::JoinHandle<()>> = HashMap::new();
    let mut wait = BACKOFF.0;
    loop {
        match tokio::net::lookup_host(&src.authority).await {
            Ok(addrs) => {
                let now: HashSet<SocketAddr> = addrs.collect();
                following.retain(|a, task| {
                    let keep = now.contains(a);
                    if !keep {
                        tracing::info!(source = %src.authority, addr = %a, "DNS answers feed: address gone");
                        task.abort();
                    }
                    keep
                });
                for a in now {
                    following.entry(a).or_insert_with(|| {
                        let (src, token, book) = (src.clone(), token.clone(), book.clone());
                        tokio::spawn(async move { follow(src, a, token, book).await })
                    });
                }
                wait = BACKOFF.0;
                tokio::time::sleep(RESOLVE).await;
            }
            Err(e) => {
                tracing::warn!(source = %src.authority, error = %e, "DNS answers feed: lookup failed");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(BACKOFF.1);
            }
        }
    }
}

/// Reads one address of a source for ever, opening the stream again after each failure.
async fn follow(src: FeedSource, addr: SocketAddr, token: Option<Arc<str>>, book: Arc<AnswerBook>) {
    let src = FeedSource {
        authority: src.authority,
        addr: Some(addr),
    };
    let mut wait = BACKOFF.0;
    loop {
        let mut heard = false;
        let result = read_once(&src, token.as_deref(), &book, &mut heard).await;
        match result {
            Ok(n) => tracing::info!(source = %src.authority, answers = n, "DNS answers feed ended"),
            Err(e) => {
                tracing::warn!(source = %src.authority, error = %e, "DNS answers feed failed")
            }
        }
        if heard {
            wait = BACKOFF.0;
        }
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(BACKOFF.1);
    }
}

/// One subscription: connects, asks, and records every answer until the stream ends.
/// Returns the answers recorded; `heard` is set once the proxy answered 200.
async fn read_once(
    src: &FeedSource,
    token: Option<&str>,
    book: &AnswerBook,
    heard: &mut bool,
) -> Result<u64, FeedError> {
    let connect = async {
        match src.addr {
            Some(a) => tokio::net::TcpStream::connect(a).await,
            None => tokio::net::TcpStream::connect(&src.authority).await,
        }
    };
    let tcp = tokio::time::timeout(Duration::from_secs(5), connect)
        .await
        .map_err(|_| FeedError::Timeout)?
        .map_err(FeedError::Connect)?;
    let _ = tcp.set_nodelay(true);
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await?;
    let conn = tokio::spawn(conn);
    let mut req = hyper::Request::get("/v1/answers")
        .header(hyper::header::HOST, &src.authority)
        .header(hyper::header::ACCEPT, "application/x-ndjson");
    if let Some(t) = token {
        req = req.header(hyper::header::AUTHORIZATION, format!("Bearer {t}"));
    }
    let req = req
        .body(Empty::<Bytes>::new())
        .expect("a GET with valid headers");
    let resp = tokio::time::timeout(Duration::from_secs(10), sender.send_request(req))
        .await
        .map_err(|_| FeedError::Timeout)??;
    if resp.status() != hyper::StatusCode::OK {
        conn.abort();
        return Err(FeedError::Status(resp.status()));
    }
    *heard = true;
    tracing::info!(source = %src.authority, "DNS answers feed open");
    let mut body = resp.into_body();
    let mut lines = LineSplitter::default();
    let (mut recorded, mut bad) = (0u64, 0u64);
    let result = loop {
        let frame = match tokio::time::timeout(IDLE, body.frame()).await {
            Err(_) => break Err(FeedError::Timeout),
            Ok(None) => break Ok(recorded),
            Ok(Some(Err(e))) => break Err(e.into()),
            Ok(Some(Ok(f))) => f,
        };
        let Ok(chunk) = frame.into_data() else {
            continue;
        };
        lines.push(&chunk, |line| match decode_line(line) {
            Ok(Some(a)) => {
                book.record(a.client, &a.name, a.ip, Duration::from_millis(a.ttl_ms));
                recorded += 1;
            }
            Ok(None) => {}
            Err(e) => {
                bad += 1;
                tracing::warn!(source = %src.authority, error = %e, skipped = bad, "DNS answers feed: line skipped");
            }
        });
    };
    if lines.too_long > 0 {
        tracing::warn!(source = %src.authority, lines = lines.too_long, "DNS answers feed: overlong lines skipped");
    }
    conn.abort();
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::answers::ResolvedNames;

    #[test]
    fn a_line_round_trips_and_bad_lines_are_errors_not_panics() {
        let a = SharedAnswer {
            client: "10.0.0.5".parse().unwrap(),
            name: "hub.models.test".into(),
            ip: "2001:db8::7".parse().unwrap(),
            ttl_ms: 30_000,
        };
        let line = serde_json::to_vec(&a).unwrap();
        assert_eq!(
            std::str::from_utf8(&line).unwrap(),
            r#"{"client":"10.0.0.5","name":"hub.models.test","ip":"2001:db8::7","ttlMs":30000}"#
        );
        assert_eq!(decode_line(&line).unwrap(), Some(a));
        assert_eq!(decode_line(b"").unwrap(), None);
        assert_eq!(decode_line(b"  \r").unwrap(), None);
        for bad in [
            &b"not json"[..],
            br#"{"client":"10.0.0.5","name":"a.test","ip":"nope","ttlMs":1}"#,
            br#"{"client":"10.0.0.5","name":"a.test","ip":"192.0.2.1","ttlMs":-1}"#,
            br#"{"client":"10.0.0.5","name":"","ip":"192.0.2.1","ttlMs":1}"#,
            br#"{"client":"10.0.0.5","name":"a.test"}"#,
            b"\xff\xfe{",
            b"[1,2,3]",
        ] {
            assert!(
                decode_line(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn lines_split_across_chunks_and_overlong_ones_are_skipped() {
        let mut s = LineSplitter::default();
        let mut got: Vec<String> = Vec::new();
        let mut push = |s: &mut LineSplitter, c: &[u8]| {
            s.push(c, |l| got.push(String::from_utf8_lossy(l).into_owned()))
        };
        push(&mut s, b"one\ntw");
        push(&mut s, b"o\n\nthr");
        let long = vec![b'x'; MAX_LINE + 10];
        push(&mut s, &long);
        push(&mut s, b"still long\nfour\n");
        push(&mut s, &[b'y'; MAX_LINE + 1]);
        push(&mut s, b"\nfive\n");
        assert_eq!(got, ["one", "two", "", "four", "five"]);
        assert_eq!(s.too_long, 2);
    }

    #[test]
    fn sources_must_be_plain_http_host_port() {
        assert_eq!(
            FeedSource::parse("http://10.0.0.1:9054/")
                .unwrap()
                .authority,
            "10.0.0.1:9054"
        );
        assert_eq!(
            FeedSource::parse("http://dns.palisade:9054")
                .unwrap()
                .authority,
            "dns.palisade:9054"
        );
        assert_eq!(
            FeedSource::parse("http://[fd00::1]:9054")
                .unwrap()
                .authority,
            "[fd00::1]:9054"
        );
        for bad in [
            "https://a:1",
            "http://a",
            "http://a:0",
            "http://a:1/v1/answers",
            "http://:1",
            "a:1",
            "http://u@a:1",
        ] {
            assert!(FeedSource::parse(bad).is_err(), "{bad}");
        }
    }

    /// A fake proxy: answers one subscription with `body`, written in two pieces.
    async fn fake_proxy(status: &'static str, body: Vec<u8>) -> std::net::SocketAddr {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            let mut req = [0u8; 1024];
            let _ = s.read(&mut req).await.unwrap();
            let head = format!(
                "HTTP/1.1 {status}\r\ncontent-type: application/x-ndjson\r\ncontent-length: {}\r\n\r\n",
                body.len()
            );
            s.write_all(head.as_bytes()).await.unwrap();
            let mid = body.len() / 2;
            s.write_all(&body[..mid]).await.unwrap();
            s.flush().await.unwrap();
            s.write_all(&body[mid..]).await.unwrap();
        });
        addr
    }

    #[tokio::test]
    async fn a_stream_fills_the_book_skipping_what_does_not_decode() {
        let body = concat!(
            r#"{"client":"10.0.0.5","name":"Hub.Models.Test.","ip":"203.0.113.7","ttlMs":60000}"#,
            "\n",
            "garbage\n",
            r#"{"client":"10.0.0.5","name":"x.test","ip":"not-an-ip","ttlMs":1}"#,
            "\n\n",
            r#"{"client":"10.0.0.6","name":"cdn.test","ip":"203.0.113.9","ttlMs":60000}"#,
            "\n"
        );
        let addr = fake_proxy("200 OK", body.as_bytes().to_vec()).await;
        let src = FeedSource::parse(&format!("http://{addr}")).unwrap();
        let book = AnswerBook::new();
        let mut heard = false;
        let n = read_once(&src, None, &book, &mut heard).await.unwrap();
        assert!(heard);
        assert_eq!(n, 2);
        let pod = "10.0.0.5".parse().unwrap();
        let ip = |s: &str| s.parse().unwrap();
        assert_eq!(
            book.agrees(pod, "hub.models.test", ip("203.0.113.7")),
            Some(true)
        );
        assert_eq!(
            book.agrees(pod, "hub.models.test", ip("203.0.113.8")),
            Some(false)
        );
        assert_eq!(
            book.agrees(ip("10.0.0.7"), "cdn.test", ip("203.0.113.9")),
            None
        );
    }

    #[tokio::test]
    async fn a_refusal_is_an_error_with_its_status() {
        let addr = fake_proxy("401 Unauthorized", Vec::new()).await;
        let src = FeedSource::parse(&format!("http://{addr}")).unwrap();
        let mut heard = false;
        let e = read_once(&src, Some("wrong"), &AnswerBook::new(), &mut heard)
            .await
            .unwrap_err();
        assert!(matches!(e, FeedError::Status(s) if s == 401), "{e}");
        assert!(!heard);
    }

    #[tokio::test]
    async fn a_source_named_by_host_is_resolved_and_followed() {
        let body = concat!(
            r#"{"client":"10.0.0.5","name":"a.test","ip":"192.0.2.1","ttlMs":60000}"#,
            "\n"
        );
        let addr = fake_proxy("200 OK", body.as_bytes().to_vec()).await;
        let src = FeedSource::parse(&format!("http://localhost:{}", addr.port())).unwrap();
        let book = Arc::new(AnswerBook::new());
        let tasks = subscribe(vec![src], None, book.clone());
        let (pod, ip) = ("10.0.0.5".parse().unwrap(), "192.0.2.1".parse().unwrap());
        let start = std::time::Instant::now();
        while book.agrees(pod, "a.test", ip) != Some(true) {
            assert!(start.elapsed() < Duration::from_secs(5), "never followed");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        for t in tasks {
            t.abort();
        }
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(1000))]

            /// Any bytes, in any chunking: lines come out whole, none longer than the bound,
            /// and decoding them never panics.
            #[test]
            fn any_stream_splits_and_decodes_without_panic(
                bytes in proptest::collection::vec(any::<u8>(), 0..6000),
                cuts in proptest::collection::vec(any::<usize>(), 0..6),
            ) {
                let mut s = LineSplitter::default();
                let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % (bytes.len() + 1)).collect();
                cuts.sort();
                let mut from = 0;
                for c in cuts.into_iter().chain([bytes.len()]) {
                    s.push(&bytes[from..c], |l| {
                        assert!(l.len() <= MAX_LINE && !l.contains(&b'\n'));
                        let _ = decode_line(l);
                    });
                    from = c;
                }
            }

            /// A valid line with bytes changed decodes or is an error, never a panic; valid
            /// lines round-trip.
            #[test]
            fn mutated_lines_never_panic(
                a in any::<[u8; 4]>(), b in any::<[u8; 16]>(), ttl in any::<u64>(),
                name in "[a-z0-9.-]{1,60}",
                flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..6),
            ) {
                let ans = SharedAnswer {
                    client: IpAddr::from(a),
                    name,
                    ip: IpAddr::from(b),
                    ttl_ms: ttl,
                };
                let mut line = serde_json::to_vec(&ans).unwrap();
                prop_assert_eq!(decode_line(&line).unwrap(), Some(ans));
                for (i, x) in flips {
                    let n = line.len();
                    line[i % n] = x;
                }
                let _ = decode_line(&line);
            }
        }
    }
}
