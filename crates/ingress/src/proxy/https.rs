//! HTTPS to backends: a connector for the pooled backend client that opens TCP, then TLS
//! with rustls (ring provider), verifying the backend's certificate against the route's
//! trust anchors (a CA bundle file, or the system's) — never skipped — with the URL's host
//! as SNI and as the name the certificate must carry. Connections are kept alive and
//! reused like plain ones; the pool is per trust configuration.

use super::upstream::{BoxError, ProxyBody};
use hyper_util::client::legacy::connect::{Connected, Connection, HttpConnector};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::ServerName;
use rustls::RootCertStore;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

/// A pooled client to HTTPS backends with one set of trust anchors.
pub type HttpsUpstream = Client<HttpsConnector, ProxyBody>;

/// Opens verified TLS connections to `https://` URIs.
#[derive(Clone)]
pub struct HttpsConnector {
    tcp: HttpConnector,
    tls: tokio_rustls::TlsConnector,
}

/// A client whose backends must present a certificate chaining to one of `roots`.
pub fn client(roots: RootCertStore) -> Result<HttpsUpstream, String> {
    let mut cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_root_certificates(roots)
    .with_no_client_auth();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    let mut tcp = HttpConnector::new();
    tcp.enforce_http(false);
    tcp.set_connect_timeout(Some(Duration::from_secs(5)));
    tcp.set_nodelay(true);
    tcp.set_keepalive(Some(Duration::from_secs(60)));
    let connector = HttpsConnector {
        tcp,
        tls: tokio_rustls::TlsConnector::from(Arc::new(cfg)),
    };
    Ok(Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(90))
        .pool_max_idle_per_host(256)
        .build(connector))
}

impl tower_service::Service<http::Uri> for HttpsConnector {
    type Response = HttpsStream;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<HttpsStream, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.tcp.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, uri: http::Uri) -> Self::Future {
        let mut tcp = self.tcp.clone();
        let tls = self.tls.clone();
        Box::pin(async move {
            if uri.scheme_str() != Some("https") {
                return Err(format!("{uri}: not an https URI").into());
            }
            let host = uri.host().unwrap_or_default();
            let host = host
                .strip_prefix('[')
                .and_then(|h| h.strip_suffix(']'))
                .unwrap_or(host);
            let name = ServerName::try_from(host.to_string())
                .map_err(|e| format!("{host}: not a name for TLS: {e}"))?;
            let stream = tcp.call(uri).await?.into_inner();
            let tls = tls.connect(name, stream).await?;
            Ok(HttpsStream(TokioIo::new(tls)))
        })
    }
}

/// A TLS connection to a backend.
pub struct HttpsStream(TokioIo<TlsStream<TcpStream>>);

impl Connection for HttpsStream {
    fn connected(&self) -> Connected {
        Connected::new()
    }
}

impl hyper::rt::Read for HttpsStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl hyper::rt::Write for HttpsStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

/// Why a TLS connection to a backend failed, when that is why a request failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsFailure {
    /// The certificate is not trusted, expired, or does not name the backend.
    Certificate(String),
    /// Any other TLS error.
    Handshake(String),
}

/// Looks through an error's causes for a rustls error.
pub fn tls_failure(e: &(dyn std::error::Error + 'static)) -> Option<TlsFailure> {
    let mut cur = Some(e);
    while let Some(e) = cur {
        let tls = e.downcast_ref::<rustls::Error>().or_else(|| {
            e.downcast_ref::<io::Error>()
                .and_then(|io| io.get_ref())
                .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        });
        if let Some(t) = tls {
            return Some(match t {
                rustls::Error::InvalidCertificate(c) => TlsFailure::Certificate(format!("{c:?}")),
                other => TlsFailure::Handshake(other.to_string()),
            });
        }
        cur = e.source();
    }
    None
}
