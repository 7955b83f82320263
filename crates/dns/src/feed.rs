//! The answers feed: the DNS proxy tells egress gateways in other processes (or on other
//! nodes) what each pod resolved, so they can hold redirected connections to SNI / DNS / IP
//! agreement.
//!
//! `GET /v1/answers` answers with newline-delimited JSON: first a snapshot of every live
//! record in [`Resolutions`], then each new answer as the proxy records it, and an empty line
//! every [`KEEPALIVE`] so a reader can tell a dead stream from a quiet one. One line:
//!
//! ```json
//! {"client":"10.0.0.5","name":"hub.models.test","ip":"203.0.113.7","ttlMs":30000}
//! ```
//!
//! (`ttlMs`: time left when the line was written, so clocks need not agree; the egress
//! gateway's `answer_feed` module reads it.) New answers reach subscribers through a
//! `tokio::sync::broadcast` channel: publishing never waits, and a subscriber that falls
//! [`BACKLOG`] answers behind is disconnected (it reconnects and gets a fresh snapshot) so a
//! slow gateway can never slow the DNS path. An optional bearer token is compared in constant
//! time. The endpoint says who resolved what: it should be reachable only by the gateways.

use crate::resolutions::{now_ms, Record, Resolutions};
use bytes::Bytes;
use http_body_util::{Either, Full};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::sync::{broadcast, mpsc, Semaphore};

/// How often an idle stream carries an empty line.
pub const KEEPALIVE: Duration = Duration::from_secs(15);
/// New answers a subscriber may fall behind before it is disconnected.
pub const BACKLOG: usize = 16_384;
/// Subscribers served at once (more get `503`).
pub const MAX_SUBSCRIBERS: usize = 64;
/// Snapshot lines are sent in chunks of about this size.
const CHUNK: usize = 32 * 1024;

/// One answer line (with its newline) for `r`, `now` being the current Unix time in ms.
pub fn encode(r: &Record, now: u64) -> Vec<u8> {
    let mut out = serde_json::to_vec(&serde_json::json!({
        "client": r.pod,
        "name": r.name,
        "ip": r.ip,
        "ttlMs": r.expires_ms.saturating_sub(now),
    }))
    .unwrap_or_default();
    out.push(b'\n');
    out
}

/// The feed: the records to snapshot and the channel new answers go through.
#[derive(Debug)]
pub struct AnswerFeed {
    resolutions: Arc<Resolutions>,
    tx: broadcast::Sender<Record>,
    token: Option<String>,
    slots: Arc<Semaphore>,
}

impl AnswerFeed {
    /// A feed over `resolutions`; with `token`, subscribers must send
    /// `Authorization: Bearer TOKEN`.
    pub fn new(resolutions: Arc<Resolutions>, token: Option<String>) -> Self {
        let (tx, _) = broadcast::channel(BACKLOG);
        AnswerFeed {
            resolutions,
            tx,
            token: token.filter(|t| !t.is_empty()),
            slots: Arc::new(Semaphore::new(MAX_SUBSCRIBERS)),
        }
    }

    /// Passes a newly recorded answer to every subscriber. Never waits.
    pub fn publish(&self, r: Record) {
        // No subscriber is not an error.
        let _ = self.tx.send(r);
    }

    /// Subscribers connected now.
    pub fn subscribers(&self) -> usize {
        self.tx.receiver_count()
    }

    /// Serves the feed on `listener` until the task is dropped.
    pub async fn serve(self: Arc<Self>, listener: tokio::net::TcpListener) -> std::io::Result<()> {
        loop {
            let (tcp, peer) = match listener.accept().await {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "answers feed: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let feed = self.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req| {
                    let feed = feed.clone();
                    async move { Ok::<_, Infallible>(feed.handle(&req, peer)) }
                });
                let conn = hyper::server::conn::http1::Builder::new()
                    .timer(hyper_util::rt::TokioTimer::new())
                    .header_read_timeout(Duration::from_secs(10))
                    .serve_connection(TokioIo::new(tcp), svc);
                if let Err(e) = conn.await {
                    tracing::debug!(%peer, error = %e, "answers feed connection ended");
                }
            });
        }
    }

    /// Answers one request.
    fn handle(&self, req: &Request<Incoming>, peer: std::net::SocketAddr) -> Response<FeedBody> {
        if req.uri().path() != "/v1/answers" {
            return plain(StatusCode::NOT_FOUND, "not found\n");
        }
        if req.method() != hyper::Method::GET {
            return plain(StatusCode::METHOD_NOT_ALLOWED, "GET only\n");
        }
        if let Some(want) = &self.token {
            let given = req
                .headers()
                .get(hyper::header::AUTHORIZATION)
                .and_then(|v| bearer_token(v.as_bytes()))
                .unwrap_or_default();
            if !same_secret(given, want.as_bytes()) {
                tracing::warn!(%peer, "answers feed: subscriber refused (bad or missing token)");
                let mut r = plain(StatusCode::UNAUTHORIZED, "bearer token required\n");
                r.headers_mut().insert(
                    hyper::header::WWW_AUTHENTICATE,
                    hyper::header::HeaderValue::from_static("Bearer"),
                );
                return r;
            }
        }
        let Ok(slot) = self.slots.clone().try_acquire_owned() else {
            return plain(StatusCode::SERVICE_UNAVAILABLE, "too many subscribers\n");
        };
        // Subscribe before the snapshot: an answer recorded in between is sent twice
        // (harmless) rather than lost.
        let rx = self.tx.subscribe();
        let snapshot = self.resolutions.clone();
        let (out, body) = mpsc::channel(8);
        tracing::info!(%peer, "answers feed: subscriber connected");
        tokio::spawn(async move {
            stream(snapshot, rx, out).await;
            drop(slot);
            tracing::info!(%peer, "answers feed: subscriber gone");
        });
        let mut r = Response::new(Either::Right(Lines(body)));
        r.headers_mut().insert(
            hyper::header::CONTENT_TYPE,
            hyper::header::HeaderValue::from_static("application/x-ndjson"),
        );
        r
    }
}

/// Writes the snapshot, then every new answer, to one subscriber until it goes away or
/// falls behind.
async fn stream(
    resolutions: Arc<Resolutions>,
    mut rx: broadcast::Receiver<Record>,
    out: mpsc::Sender<Bytes>,
) {
    let records = {
        let res = resolutions.clone();
        tokio::task::spawn_blocking(move || res.live(now_ms()))
            .await
            .unwrap_or_default()
    };
    let now = now_ms();
    let mut chunk = Vec::with_capacity(CHUNK);
    for r in &records {
        chunk.extend_from_slice(&encode(r, now));
        if chunk.len() >= CHUNK && !send(&out, &rx, std::mem::take(&mut chunk).into()).await {
            return;
        }
    }
    if !send(&out, &rx, chunk.into()).await {
        return;
    }
    let mut keepalive = tokio::time::interval(KEEPALIVE);
    keepalive.tick().await;
    loop {
        let line: Bytes = tokio::select! {
            got = rx.recv() => match got {
                Ok(r) => encode(&r, now_ms()).into(),
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    tracing::warn!(missed = n, "answers feed: subscriber fell behind; disconnected (it will reconnect)");
                    return;
                }
                Err(broadcast::error::RecvError::Closed) => return,
            },
            _ = keepalive.tick() => Bytes::from_static(b"\n"),
        };
        if !send(&out, &rx, line).await {
            return;
        }
    }
}

/// Sends one piece to the subscriber; false when it is gone, or when it reads so slowly
/// that the answers waiting for it fill the backlog (it is then disconnected rather than
/// left holding a slot).
async fn send(out: &mpsc::Sender<Bytes>, rx: &broadcast::Receiver<Record>, b: Bytes) -> bool {
    let behind = async {
        while rx.len() < BACKLOG {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    tokio::select! {
        r = out.send(b) => r.is_ok(),
        _ = behind => {
            tracing::warn!("answers feed: subscriber fell behind; disconnected (it will reconnect)");
            false
        }
    }
}

/// The body of a feed response: a fixed text, or the lines of a subscription.
pub type FeedBody = Either<Full<Bytes>, Lines>;

fn plain(status: StatusCode, text: &'static str) -> Response<FeedBody> {
    let mut r = Response::new(Either::Left(Full::new(Bytes::from_static(text.as_bytes()))));
    *r.status_mut() = status;
    r
}

/// A streamed body fed by a channel (ends when the sender is dropped).
#[derive(Debug)]
pub struct Lines(mpsc::Receiver<Bytes>);

impl hyper::body::Body for Lines {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0.poll_recv(cx).map(|b| b.map(|b| Ok(Frame::data(b))))
    }
}

/// Compares two secrets in time that depends only on their lengths.
/// The token of an `Authorization: Bearer <token>` value; the scheme's name is
/// case-insensitive (RFC 9110 §11.1).
fn bearer_token(value: &[u8]) -> Option<&[u8]> {
    let (scheme, token) = value.split_at_checked(7)?;
    scheme.eq_ignore_ascii_case(b"bearer ").then_some(token)
}

fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bearer_scheme_is_read_whatever_its_case() {
        for v in ["Bearer t0k", "bearer t0k", "BEARER t0k"] {
            assert_eq!(bearer_token(v.as_bytes()), Some(&b"t0k"[..]), "{v}");
        }
        for v in ["Basic t0k", "Bearer", "", "Bearert0k"] {
            assert_eq!(bearer_token(v.as_bytes()), None, "{v}");
        }
    }
    use std::net::IpAddr;
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_record_is_one_line_with_the_time_left() {
        let r = Record {
            pod: ip("10.0.0.5"),
            name: "hub.models.test".into(),
            ip: ip("203.0.113.7"),
            expires_ms: 40_000,
        };
        assert_eq!(
            String::from_utf8(encode(&r, 10_000)).unwrap(),
            "{\"client\":\"10.0.0.5\",\"ip\":\"203.0.113.7\",\"name\":\"hub.models.test\",\"ttlMs\":30000}\n"
        );
        assert!(String::from_utf8(encode(&r, 50_000))
            .unwrap()
            .contains("\"ttlMs\":0"));
    }

    #[test]
    fn secrets_compare_whole() {
        assert!(same_secret(b"s3cret", b"s3cret"));
        assert!(!same_secret(b"s3cret", b"s3creT"));
        assert!(!same_secret(b"s3cre", b"s3cret"));
        assert!(!same_secret(b"", b"s3cret"));
    }

    /// Starts a feed on a free port; returns it and its address.
    async fn start(res: Arc<Resolutions>, token: Option<&str>) -> (Arc<AnswerFeed>, String) {
        let feed = Arc::new(AnswerFeed::new(res, token.map(String::from)));
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap().to_string();
        tokio::spawn(feed.clone().serve(l));
        (feed, addr)
    }

    /// Sends a raw request; returns the reader positioned after the status line, and it.
    async fn ask(addr: &str, req: &str) -> (BufReader<tokio::net::TcpStream>, String) {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(req.as_bytes()).await.unwrap();
        let mut r = BufReader::new(s);
        let mut status = String::new();
        r.read_line(&mut status).await.unwrap();
        (r, status)
    }

    /// The next non-empty chunked-body line that is JSON.
    async fn next_json(r: &mut BufReader<tokio::net::TcpStream>) -> serde_json::Value {
        loop {
            let mut line = String::new();
            let n = tokio::time::timeout(Duration::from_secs(5), r.read_line(&mut line))
                .await
                .expect("a line in time")
                .unwrap();
            assert!(n > 0, "stream ended");
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(line.trim()) {
                if v.is_object() {
                    return v;
                }
            }
        }
    }

    #[tokio::test]
    async fn a_subscriber_gets_the_snapshot_then_new_answers() {
        let res = Arc::new(Resolutions::new(8, 100));
        let now = now_ms();
        res.record(
            ip("10.0.0.5"),
            "old.test",
            ip("192.0.2.1"),
            Duration::from_secs(60),
            now,
        );
        let (feed, addr) = start(res.clone(), None).await;
        let (mut r, status) = ask(&addr, "GET /v1/answers HTTP/1.1\r\nhost: x\r\n\r\n").await;
        assert!(status.starts_with("HTTP/1.1 200"), "{status}");
        let first = next_json(&mut r).await;
        assert_eq!(first["name"], "old.test");
        assert_eq!(first["client"], "10.0.0.5");
        assert!(first["ttlMs"].as_u64().unwrap() > 50_000);
        // Wait until the subscription is registered, then publish.
        while feed.subscribers() == 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        feed.publish(Record {
            pod: ip("10.0.0.6"),
            name: "new.test".into(),
            ip: ip("192.0.2.2"),
            expires_ms: now_ms() + 5_000,
        });
        let next = next_json(&mut r).await;
        assert_eq!(next["name"], "new.test");
        assert_eq!(next["ip"], "192.0.2.2");
    }

    #[tokio::test]
    async fn the_token_is_required_when_set_and_other_paths_are_404() {
        let res = Arc::new(Resolutions::new(8, 100));
        let (_feed, addr) = start(res, Some("s3cret")).await;
        let (_, st) = ask(&addr, "GET /v1/answers HTTP/1.1\r\nhost: x\r\n\r\n").await;
        assert!(st.starts_with("HTTP/1.1 401"), "{st}");
        let (_, st) = ask(
            &addr,
            "GET /v1/answers HTTP/1.1\r\nhost: x\r\nauthorization: Bearer wrong!\r\n\r\n",
        )
        .await;
        assert!(st.starts_with("HTTP/1.1 401"), "{st}");
        let (_, st) = ask(
            &addr,
            "GET /v1/answers HTTP/1.1\r\nhost: x\r\nauthorization: Bearer s3cret\r\n\r\n",
        )
        .await;
        assert!(st.starts_with("HTTP/1.1 200"), "{st}");
        let (_, st) = ask(&addr, "GET /other HTTP/1.1\r\nhost: x\r\n\r\n").await;
        assert!(st.starts_with("HTTP/1.1 404"), "{st}");
        let (_, st) = ask(
            &addr,
            "POST /v1/answers HTTP/1.1\r\nhost: x\r\nauthorization: Bearer s3cret\r\ncontent-length: 0\r\n\r\n",
        )
        .await;
        assert!(st.starts_with("HTTP/1.1 405"), "{st}");
        let (_, st) = ask(&addr, "garbage\r\n\r\n").await;
        assert!(st.starts_with("HTTP/1.1 400") || st.is_empty(), "{st}");
    }

    #[tokio::test]
    async fn a_subscriber_that_falls_behind_is_dropped_without_slowing_publishers() {
        let res = Arc::new(Resolutions::new(8, 100));
        let (feed, addr) = start(res, None).await;
        // Subscribes but never reads.
        let (_r, st) = ask(&addr, "GET /v1/answers HTTP/1.1\r\nhost: x\r\n\r\n").await;
        assert!(st.starts_with("HTTP/1.1 200"), "{st}");
        while feed.subscribers() == 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let t = std::time::Instant::now();
        for i in 0..(BACKLOG * 40) {
            feed.publish(Record {
                pod: ip("10.0.0.5"),
                name: format!("n{i}.a-fairly-long-name-to-fill-socket-buffers.test"),
                ip: ip("192.0.2.1"),
                expires_ms: now_ms() + 60_000,
            });
        }
        assert!(t.elapsed() < Duration::from_secs(5), "publishing waited");
        let start = std::time::Instant::now();
        while feed.subscribers() > 0 {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "the lagging subscriber was not dropped"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
