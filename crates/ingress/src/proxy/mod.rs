//! The listener: plain TCP or TLS (rustls), HTTP/1.1 and HTTP/2 on the same port (ALPN, or
//! the HTTP/2 preface on plain connections), with header-size, header-count and
//! header-read-time bounds so header floods and slow clients are cut off, HTTP/2 stream and
//! reset limits, and an idle timeout hyper does not have.

pub mod body;
mod endpoints;
pub mod handle;
pub mod https;
pub mod lean;
pub mod refused;
mod sni;
mod target;
#[cfg(test)]
mod test_body;
pub mod tls;
pub mod upstream;
pub mod whole;

use crate::config::Compiled;
use crate::events::EventOrigin;
use crate::guard::PromptScorer;
use crate::limits::Limiter;
use arc_swap::ArcSwap;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use palisade_egress::idle::{serve_until_idle, Activity, GRACE};
use palisade_events::EventSender;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

/// Longest wait for a request's headers.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Most headers in one request (HTTP/1.1): hyper's built-in limit, which it enforces with
/// a buffer on the stack (setting the same number explicitly makes it allocate and fill a
/// buffer per request).
pub const MAX_HEADERS: usize = 100;
/// Largest header block (HTTP/1.1 read buffer; HTTP/2 header list).
pub const MAX_HEADER_BYTES: usize = 64 * 1024;
/// Most connections served at once.
pub const MAX_CONNECTIONS: usize = 10_000;
/// How long a client connection may sit with no request in flight (HTTP/1.1 keep-alive
/// between requests, HTTP/2 however often it answers pings, a TLS client that never sends
/// a request), unless `spec.ingress.idleTimeoutSeconds` says otherwise.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(75);
/// How long what the gateway sent a client may go unacknowledged, or the client keep its
/// receive window shut, before the connection is dropped (nginx's `send_timeout`), unless
/// `spec.ingress.sendTimeoutSeconds` says otherwise. A client that stops reading a long
/// answer would otherwise hold the connection, its task and the backend's connection.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(60);
/// HTTP/2 streams one connection may have open at once.
pub const MAX_STREAMS: u32 = 256;
/// HTTP/2 streams a client may reset before the gateway took them before the connection
/// is closed with `ENHANCE_YOUR_CALM` (the "rapid reset" flood, CVE-2023-44487).
const MAX_PENDING_RESETS: usize = 20;
/// HTTP/2 streams the gateway may reset for a client's protocol errors before it closes
/// the connection (RUSTSEC-2024-0003).
const MAX_ERROR_RESETS: usize = 256;

/// State every request shares.
pub struct Shared {
    /// What is served; swapped whole on reload.
    pub config: ArcSwap<Compiled>,
    /// Rate and token buckets.
    pub limiter: Limiter,
    /// Prompt scorer.
    pub scorer: Arc<dyn PromptScorer>,
    /// Backend client pool.
    pub client: upstream::Upstream,
    /// Event sink.
    pub events: Option<EventSender>,
    /// Cluster and node for events.
    pub origin: EventOrigin,
    /// Whether the listener terminates TLS.
    pub tls: bool,
    /// The TLS configurations (reloaded when their files change), when it does.
    pub tls_server: Option<Arc<tls::TlsServer>>,
    /// How long a client connection may stay open with no request in flight.
    pub idle_timeout: Duration,
    /// How long bytes sent to a client may go unacknowledged (a client that stops reading).
    pub send_timeout: Duration,
    /// Rate limit of the events for refused client certificates.
    pub refusals: refused::RefusalEvents,
}

/// A bound gateway.
pub struct IngressGateway {
    listener: TcpListener,
    shared: Arc<Shared>,
}

/// Settings besides the compiled resources.
pub struct GatewayOptions {
    /// Listen address.
    pub listen: SocketAddr,
    /// Prompt scorer (default: the built-in heuristics).
    pub scorer: Arc<dyn PromptScorer>,
    /// Event sink.
    pub events: Option<EventSender>,
    /// Cluster and node.
    pub origin: EventOrigin,
    /// How long a client connection may stay open with no request in flight
    /// (default [`IDLE_TIMEOUT`]).
    pub idle_timeout: Duration,
    /// How long bytes sent to a client may go unacknowledged, its receive window shut
    /// included, before the connection is dropped (default [`SEND_TIMEOUT`]).
    pub send_timeout: Duration,
}

impl IngressGateway {
    /// Binds the listener and prepares TLS; fetches JWKS URLs once before serving.
    pub async fn bind(
        compiled: Compiled,
        opts: GatewayOptions,
    ) -> Result<Self, crate::IngressError> {
        let tls_server = if compiled.tls.is_empty() {
            None
        } else {
            let t = tls::TlsServer::load(&compiled.tls).map_err(crate::IngressError::Tls)?;
            Some(Arc::new(t))
        };
        crate::jwks::refresh_all(&compiled).await;
        let listener = TcpListener::bind(opts.listen)
            .await
            .map_err(|e| crate::IngressError::Bind(opts.listen, e))?;
        let shared = Arc::new(Shared {
            config: ArcSwap::from_pointee(compiled),
            limiter: Limiter::new(),
            scorer: opts.scorer,
            client: upstream::client(),
            events: opts.events,
            origin: opts.origin,
            tls: tls_server.is_some(),
            tls_server,
            idle_timeout: opts.idle_timeout,
            send_timeout: opts.send_timeout,
            refusals: refused::RefusalEvents::default(),
        });
        tokio::task::spawn_blocking(crate::tokens::preload);
        Ok(IngressGateway { listener, shared })
    }

    /// The bound address.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Replaces what is served (a reload); requests in flight finish with the old one.
    pub fn publish(&self, compiled: Compiled) {
        self.shared.config.store(Arc::new(compiled));
    }

    /// A handle to publish from elsewhere.
    pub fn shared(&self) -> Arc<Shared> {
        self.shared.clone()
    }

    /// Serves until this future is dropped.
    ///
    /// Connections are served by one thread per core, each with its own single-threaded
    /// runtime and backend pool (thread per core, as nginx's workers): a request, its
    /// backend connection and its response stay on one thread, with no cross-thread
    /// wake-ups.
    pub async fn run(self) -> Result<(), crate::IngressError> {
        let IngressGateway { listener, shared } = self;
        let _jwks = AbortOnDrop(tokio::spawn(crate::jwks::refresh_loop(shared.clone())));
        let _tls = AbortOnDrop(tokio::spawn(tls::reload_loop(shared.clone())));
        let limit = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
        let workers = std::thread::available_parallelism().map_or(1, usize::from);
        palisade_egress::workers::serve_on_workers(
            listener,
            "ingress",
            workers,
            upstream::install_thread_pool,
            move |tcp, remote| {
                // Over the connection limit: the connection is closed at once.
                let permit = limit.clone().try_acquire_owned().ok();
                let shared = shared.clone();
                async move {
                    let Some(_permit) = permit else { return };
                    serve_accepted(tcp, remote, shared).await
                }
            },
        )
        .await
        .map_err(crate::IngressError::Io)
    }
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Serves one accepted connection: TLS first when the gateway terminates it.
async fn serve_accepted(tcp: tokio::net::TcpStream, remote: SocketAddr, shared: Arc<Shared>) {
    // The kernel bounds a stalled send (TCP_USER_TIMEOUT, zero-window probes included since
    // Linux 5.11): the pending write then fails and the connection and its backend go, on
    // every path (lean lane, hyper, TLS) without a timer per write.
    let _ = socket2::SockRef::from(&tcp).set_tcp_user_timeout(Some(shared.send_timeout));
    let Some(t) = shared.tls_server.clone() else {
        return lean::serve_plain(tcp, remote, shared).await;
    };
    let (tls, gateway) = match tokio::time::timeout(HEADER_TIMEOUT, handshake(&t, tcp)).await {
        Ok(Ok(done)) => done,
        Ok(Err(e)) => {
            tracing::debug!(%remote, error = %e.error, "TLS handshake failed");
            // A client certificate refused (or missing where required) is a security
            // event; other failures (a client that does not trust the gateway, a scanner)
            // are not.
            let reason = e
                .refused
                .as_ref()
                .and_then(|(_, err)| refused::reason(err))
                .or_else(|| refused::tls_error(&e.error).and_then(refused::reason));
            if let (Some(reason), Some(gateway)) = (reason, &e.gateway) {
                refused::record(
                    &shared,
                    refused::Refused {
                        client: remote,
                        gateway,
                        sni: e.sni.as_deref(),
                        reason,
                        certificate: e.refused.as_ref().map(|(c, _)| c),
                        version: None,
                        duration: None,
                    },
                );
            }
            return;
        }
        Err(_) => return tracing::debug!(%remote, "TLS handshake timed out"),
    };
    let conn = tls.get_ref().1;
    let sni = conn.server_name().map(str::to_string);
    let version = match conn.alpn_protocol() {
        Some(b"h2") => Some(palisade_events::HttpVersion::Http2),
        Some(b"http/1.1") => Some(palisade_events::HttpVersion::Http11),
        _ => None,
    };
    let mut peer = handle::Peer::with_sni(remote, sni.as_deref());
    // Verified by this gateway's client CAs (rustls refused the handshake otherwise).
    let chain = conn.peer_certificates().map(|c| c.to_vec());
    peer.client_cert = chain
        .as_ref()
        .and_then(|c| c.first())
        .map(|c| handle::ClientCert {
            gateway: gateway.name.clone(),
            names: tls::client_identities(c),
        });
    if !gateway.verifies_clients {
        let never = std::future::pending();
        return serve_conn_with_peer(TokioIo::new(tls), shared, Arc::new(peer), never).await;
    }
    // Checked again when the gateway's CAs, CRLs or client-auth mode change: once they
    // refuse what this handshake presented, the connection is shut down gracefully (HTTP/2
    // GOAWAY; HTTP/1.1 finishes the response in flight with `Connection: close`), given
    // `GRACE` to finish, and the refusal recorded.
    let opened = std::time::Instant::now();
    let stop = async {
        let why = refused_later(&t, &gateway.name, chain.clone()).await;
        tracing::info!(%remote, gateway = %gateway.name, ?why, "client certificate no longer accepted; connection shut down");
        if let tls::Refusal::Certificate(reason) = why {
            refused::record(
                &shared,
                refused::Refused {
                    client: remote,
                    gateway: &gateway.name,
                    sni: sni.as_deref(),
                    reason,
                    certificate: chain.as_ref().and_then(|c| c.first()),
                    version,
                    duration: Some(opened.elapsed()),
                },
            );
        }
    };
    serve_conn_with_peer(TokioIo::new(tls), shared.clone(), Arc::new(peer), stop).await;
}

/// The gateway whose TLS configuration a handshake used.
struct HandshakeGateway {
    /// `namespace/name`.
    name: String,
    /// Whether it verified client certificates.
    verifies_clients: bool,
}

/// A failed TLS handshake.
struct HandshakeError {
    error: std::io::Error,
    /// The gateway whose configuration it used, once chosen.
    gateway: Option<String>,
    /// The server name the client asked for.
    sni: Option<String>,
    /// The client certificate the verifier refused, and why.
    refused: Option<(rustls::pki_types::CertificateDer<'static>, rustls::Error)>,
}

/// The TLS handshake with the configuration of the gateway the client hello names (its
/// certificate and client-certificate policy as last loaded); that gateway.
async fn handshake(
    tls: &tls::TlsServer,
    tcp: tokio::net::TcpStream,
) -> Result<
    (
        tokio_rustls::server::TlsStream<tokio::net::TcpStream>,
        HandshakeGateway,
    ),
    HandshakeError,
> {
    let failed = |error, gateway, sni| HandshakeError {
        error,
        gateway,
        sni,
        refused: None,
    };
    let start = tokio_rustls::LazyConfigAcceptor::new(rustls::server::Acceptor::default(), tcp)
        .await
        .map_err(|e| failed(e, None, None))?;
    let sni = start.client_hello().server_name().map(str::to_string);
    let Some(chosen) = tls.choose(sni.as_deref()) else {
        let e = std::io::Error::other("no TLS configuration");
        return Err(failed(e, None, sni));
    };
    let mut accept = start.into_stream(chosen.config);
    // The verifier runs inside the poll that then fails: what it refused is taken on the
    // same thread before anything else runs there.
    let mut refused = None;
    let done = std::future::poll_fn(|cx| {
        tls::clear_refused();
        let polled = std::pin::Pin::new(&mut accept).poll(cx);
        if polled.is_ready() {
            refused = tls::take_refused();
        }
        polled
    })
    .await;
    match done {
        Ok(stream) => Ok((
            stream,
            HandshakeGateway {
                name: chosen.gateway,
                verifies_clients: chosen.verifies_clients,
            },
        )),
        Err(error) => Err(HandshakeError {
            error,
            gateway: Some(chosen.gateway),
            sni,
            refused,
        }),
    }
}

/// Resolves when a change of the TLS configurations makes `gateway` refuse what a
/// connection's handshake presented (`chain`), e.g. a CRL now revoking its certificate:
/// why.
async fn refused_later(
    tls: &tls::TlsServer,
    gateway: &str,
    chain: Option<Vec<rustls::pki_types::CertificateDer<'static>>>,
) -> tls::Refusal {
    let mut changes = tls.subscribe();
    while changes.changed().await.is_ok() {
        if let Some(why) = tls.refusal(gateway, chain.as_deref()) {
            return why;
        }
    }
    std::future::pending().await
}

/// Serves one connection with hyper (HTTP/1.1 or HTTP/2), for `peer`.
/// When `stop` resolves, the connection is shut down gracefully (HTTP/2 GOAWAY, HTTP/1.1
/// `Connection: close` on the response in flight) and given [`GRACE`] to finish.
async fn serve_conn_with_peer<I>(
    io: TokioIo<I>,
    shared: Arc<Shared>,
    peer: Arc<handle::Peer>,
    stop: impl std::future::Future<Output = ()>,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let remote = peer.addr;
    let idle = shared.idle_timeout;
    let activity = Activity::new();
    let watched = activity.clone();
    let svc = service_fn(move |req| {
        let (shared, peer, guard) = (shared.clone(), peer.clone(), watched.begin());
        async move {
            let resp = handle::handle(shared, req, peer).await;
            Ok::<_, std::convert::Infallible>(Activity::track(resp, guard))
        }
    });
    let mut b = auto::Builder::new(TokioExecutor::new());
    b.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .max_buf_size(MAX_HEADER_BYTES);
    b.http2()
        .timer(TokioTimer::new())
        .max_header_list_size(MAX_HEADER_BYTES as u32)
        .max_concurrent_streams(MAX_STREAMS)
        .max_pending_accept_reset_streams(MAX_PENDING_RESETS)
        .max_local_error_reset_streams(MAX_ERROR_RESETS)
        .keep_alive_interval(Some(Duration::from_secs(30)));
    // hyper closes neither an HTTP/2 connection whose client answers pings nor an idle
    // HTTP/1.1 one: both are closed after the idle timeout with nothing in flight.
    let mut conn = std::pin::pin!(b.serve_connection(io, svc));
    let served = tokio::select! {
        served = serve_until_idle(conn.as_mut(), &activity, idle, |c| {
            c.get_mut().as_mut().graceful_shutdown()
        }) => served,
        () = stop => {
            conn.as_mut().graceful_shutdown();
            tokio::time::timeout(GRACE, conn).await.ok()
        }
    };
    if let Some(Err(e)) = served {
        tracing::debug!(%remote, error = %e, "connection ended with an error");
    }
}
