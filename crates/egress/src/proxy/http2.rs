//! HTTP/2 from clients inside intercepted TLS (ALPN `h2`): served by hyper's HTTP/2 server
//! with the same per-request service as HTTP/1.1, and translated to HTTP/1.1 for the
//! upstream (`:authority` becomes `Host`, split `cookie` fields are joined: `hop::fold_cookies`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};

use super::{service, ClientConn, Mode, Shared};
use crate::idle::{serve_until_idle, Activity};

/// Streams one client connection may have open at once (each may hold an upstream
/// connection: the bound on what one client connection costs).
pub(crate) const MAX_STREAMS: u32 = 100;

/// Streams a client may reset before the gateway took them, before the connection is
/// closed with `ENHANCE_YOUR_CALM` (the "rapid reset" flood, CVE-2023-44487).
const MAX_PENDING_RESETS: usize = 20;

/// Streams the gateway may reset for a client's protocol errors before it closes the
/// connection (RUSTSEC-2024-0003).
const MAX_ERROR_RESETS: usize = 256;

/// How long a ping may go unanswered before the connection is closed.
const PING_TIMEOUT: Duration = Duration::from_secs(20);

/// Whether the client chose HTTP/2 in the TLS handshake.
pub(crate) fn negotiated(alpn: Option<&[u8]>) -> bool {
    alpn == Some(b"h2")
}

/// Serves HTTP/2 on an intercepted TLS stream. A connection that breaks the protocol (a bad
/// preface, malformed frames, undecodable or upper-case header names) is closed by hyper
/// with a `GOAWAY`; a malformed request (missing or repeated pseudo-header fields,
/// connection-specific fields such as `connection` or `transfer-encoding`, `:protocol`)
/// gets its stream reset. The header list (all `CONTINUATION` frames together) is bounded
/// by the gateway's head limit; the h2 crate closes a connection whose headers go far over
/// it.
pub(crate) async fn serve<I>(io: I, peer: SocketAddr, shared: Arc<Shared>, mode: Mode)
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let head_limit = u32::try_from(shared.cfg.max_head_bytes.max(8192)).unwrap_or(u32::MAX);
    let idle = shared.cfg.idle_timeout;
    let activity = Activity::new();
    let svc = service(ClientConn::new(peer, shared, mode), Arc::clone(&activity));
    let mut builder = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
    builder
        .timer(TokioTimer::new())
        .max_header_list_size(head_limit)
        .max_concurrent_streams(MAX_STREAMS)
        .max_pending_accept_reset_streams(MAX_PENDING_RESETS)
        .max_local_error_reset_streams(MAX_ERROR_RESETS)
        .keep_alive_interval(Some(idle))
        .keep_alive_timeout(PING_TIMEOUT);
    // Pings the client answers keep a connection open; one with no request in flight for
    // the idle time is closed (so is one that never sends its preface).
    let served = serve_until_idle(
        builder.serve_connection(TokioIo::new(io), svc),
        &activity,
        idle,
        |c| c.graceful_shutdown(),
    );
    if let Some(Err(e)) = served.await {
        tracing::debug!(%peer, error = %e, "HTTP/2 client connection ended with an error");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_h2_selects_http2() {
        assert!(negotiated(Some(b"h2")));
        assert!(!negotiated(Some(b"http/1.1")));
        assert!(!negotiated(None));
    }
}
