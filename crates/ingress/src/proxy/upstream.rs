//! The connection-pooled client to backends, and fetching JWKS documents by URL.

use bytes::Bytes;
use http_body_util::{combinators::UnsyncBoxBody, BodyExt, Full, Limited};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::time::Duration;

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

thread_local! {
    /// The gateway worker thread's own pool (see `IngressGateway::run`).
    static LOCAL: std::cell::RefCell<Option<Upstream>> = const { std::cell::RefCell::new(None) };
}

/// Gives the calling thread a pool of its own: its connections are then only used by
/// requests served on this thread, with no cross-thread hand-offs.
pub fn install_thread_pool() {
    LOCAL.with(|l| *l.borrow_mut() = Some(client()));
}

/// Sends `req` on the calling thread's pool, or on `shared` when the thread has none.
pub fn send_request(
    shared: &Upstream,
    req: http::Request<ProxyBody>,
) -> hyper_util::client::legacy::ResponseFuture {
    LOCAL.with(|l| match &*l.borrow() {
        Some(c) => c.request(req),
        None => shared.request(req),
    })
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
