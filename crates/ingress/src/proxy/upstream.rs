//! The connection-pooled clients to backends (one pool per gateway worker thread, and a
//! shared one elsewhere), and fetching JWKS documents by URL.

use bytes::Bytes;
use http::uri::{Authority, PathAndQuery};
use http::{Request, Response, Uri};
use http_body_util::{combinators::UnsyncBoxBody, BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::cell::RefCell;
use std::time::Duration;
use tokio::net::TcpStream;

/// Body type sent upstream and to clients.
pub type ProxyBody = UnsyncBoxBody<Bytes, BoxError>;
/// Boxed error.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The backend client: HTTP/1.1 keep-alive pool.
pub type Upstream = Client<HttpConnector, ProxyBody>;

/// A pooled client.
pub fn client() -> Upstream {
    let mut c = HttpConnector::new();
    c.set_connect_timeout(Some(Duration::from_secs(5)));
    c.set_nodelay(true);
    c.set_keepalive(Some(Duration::from_secs(60)));
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(90))
        .pool_max_idle_per_host(256)
        .build(c)
}

/// Idle connections kept per backend and worker thread.
const MAX_IDLE_PER_BACKEND: usize = 256;
/// Longest wait for a backend's TCP connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A worker thread's own HTTP/1.1 connections to plain-HTTP backends: idle senders by
/// backend (`host:port` as written in the route). Only this thread's requests use them,
/// so there is no lock and no cross-thread hand-off; a gateway has a handful of backends,
/// so they are found by a scan, not a hash.
#[derive(Default)]
struct ThreadPool {
    idle: Vec<(Authority, Vec<SendRequest<ProxyBody>>)>,
}

impl ThreadPool {
    fn idle_for(&mut self, authority: &Authority) -> &mut Vec<SendRequest<ProxyBody>> {
        let at = match self
            .idle
            .iter()
            .position(|(a, _)| a.as_str() == authority.as_str())
        {
            Some(i) => i,
            None => {
                self.idle.push((authority.clone(), Vec::new()));
                self.idle.len() - 1
            }
        };
        &mut self.idle[at].1
    }
}

thread_local! {
    /// The gateway worker thread's pool (see `IngressGateway::run`).
    static LOCAL: RefCell<Option<ThreadPool>> = const { RefCell::new(None) };
}

/// Gives the calling thread (a gateway worker with a single-threaded runtime) a pool of
/// its own.
pub fn install_thread_pool() {
    LOCAL.with(|l| *l.borrow_mut() = Some(ThreadPool::default()));
}

/// Sends `req` (absolute-form URI, `Host` set) to its backend: on the calling thread's
/// pool when it has one, else on `shared`. A pooled connection that turns out closed
/// before the request went out is replaced once by a new one.
pub async fn send_request(
    shared: &Upstream,
    req: Request<ProxyBody>,
) -> Result<Response<Incoming>, BoxError> {
    let on_thread = LOCAL.with(|l| l.borrow().is_some());
    let authority = req.uri().authority().cloned();
    let (true, Some(authority)) = (on_thread, authority) else {
        return shared.request(req).await.map_err(Into::into);
    };
    let mut req = req;
    let origin = req
        .uri()
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| PathAndQuery::from_static("/"));
    *req.uri_mut() = Uri::from(origin);
    loop {
        let (mut sender, pooled) = match checkout(&authority) {
            Some(s) => (s, true),
            None => (connect(&authority).await?, false),
        };
        match sender.try_send_request(req).await {
            Ok(resp) => {
                release(authority, sender);
                return Ok(resp);
            }
            Err(mut e) => match e.take_message() {
                Some(unsent) if pooled => req = unsent,
                _ => return Err(e.into_error().into()),
            },
        }
    }
}

/// An idle, open connection to `authority` from this thread's pool.
fn checkout(authority: &Authority) -> Option<SendRequest<ProxyBody>> {
    LOCAL.with(|l| {
        let mut pool = l.borrow_mut();
        let idle = pool.as_mut()?.idle_for(authority);
        while let Some(s) = idle.pop() {
            if s.is_ready() && !s.is_closed() {
                return Some(s);
            }
        }
        None
    })
}

/// Returns `sender` to the pool once its connection can take another request (the
/// response body has been read), on this thread.
fn release(authority: Authority, mut sender: SendRequest<ProxyBody>) {
    tokio::spawn(async move {
        if sender.ready().await.is_err() {
            return;
        }
        LOCAL.with(|l| {
            if let Some(pool) = l.borrow_mut().as_mut() {
                let idle = pool.idle_for(&authority);
                if idle.len() < MAX_IDLE_PER_BACKEND {
                    idle.push(sender);
                }
            }
        });
    });
}

/// A new HTTP/1.1 connection to `authority`, its driver running on this thread.
async fn connect(authority: &Authority) -> Result<SendRequest<ProxyBody>, BoxError> {
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']');
    let port = authority.port_u16().unwrap_or(80);
    let tcp = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect((host, port)))
        .await
        .map_err(|_| format!("connecting to {authority} timed out"))??;
    let _ = tcp.set_nodelay(true);
    let (sender, conn) = hyper::client::conn::http1::Builder::new()
        .handshake(TokioIo::new(tcp))
        .await?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(error = %e, "backend connection ended with an error");
        }
    });
    Ok(sender)
}

/// A whole body as a [`ProxyBody`].
pub fn full(b: impl Into<Bytes>) -> ProxyBody {
    Full::new(b.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// Largest JWKS document read.
const MAX_JWKS: usize = 1 << 20;

/// GETs a JWKS URL (http, or https with the system's trust anchors).
pub async fn fetch_text(url: &str) -> Result<String, String> {
    let uri: http::Uri = url.parse().map_err(|e| format!("{url}: {e}"))?;
    let host = uri
        .host()
        .ok_or_else(|| format!("{url}: no host"))?
        .to_string();
    let https = uri.scheme_str() == Some("https");
    let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
    let path = uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/")
        .to_string();
    let work = async {
        let tcp = tokio::net::TcpStream::connect((host.as_str(), port))
            .await
            .map_err(|e| format!("{url}: {e}"))?;
        let req = http::Request::get(path)
            .header(http::header::HOST, &host)
            .header(http::header::ACCEPT, "application/json")
            .body(Full::new(Bytes::new()))
            .map_err(|e| e.to_string())?;
        let resp = if https {
            let roots = palisade_egress::tls::load_roots(std::path::Path::new(
                palisade_egress::tls::SYSTEM_BUNDLE,
            ))
            .map_err(|e| e.to_string())?;
            let cfg = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots)
            .with_no_client_auth();
            let name = rustls::pki_types::ServerName::try_from(host.clone())
                .map_err(|e| format!("{url}: {e}"))?;
            let tls = tokio_rustls::TlsConnector::from(std::sync::Arc::new(cfg))
                .connect(name, tcp)
                .await
                .map_err(|e| format!("{url}: {e}"))?;
            send(TokioIo::new(tls), req).await?
        } else {
            send(TokioIo::new(tcp), req).await?
        };
        if !resp.status().is_success() {
            return Err(format!("{url}: status {}", resp.status()));
        }
        let body = Limited::new(resp.into_body(), MAX_JWKS)
            .collect()
            .await
            .map_err(|e| format!("{url}: {e}"))?
            .to_bytes();
        String::from_utf8(body.to_vec()).map_err(|_| format!("{url}: not UTF-8"))
    };
    tokio::time::timeout(Duration::from_secs(10), work)
        .await
        .map_err(|_| format!("{url}: timed out"))?
}

async fn send<T>(
    io: TokioIo<T>,
    req: http::Request<Full<Bytes>>,
) -> Result<http::Response<hyper::body::Incoming>, String>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut tx, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    tx.send_request(req).await.map_err(|e| e.to_string())
}
