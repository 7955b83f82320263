//! Serving a router on a TCP listener with the limits a listener facing the network needs
//! (the admin API and UI of `palisade up`, its `--metrics-listen`, the controller's admin
//! API): a client has [`HEADER_TIMEOUT`] to send a request's head, also when a kept-alive
//! connection waits for its next request, so connections that trickle bytes or say nothing
//! (slowloris) are closed instead of held for ever; a client that stops reading a response
//! is dropped by the kernel after [`SEND_TIMEOUT`]; at most [`MAX_CONNECTIONS`] are
//! served at once, further clients waiting in the listen queue until one ends; and one
//! client address holds at most [`MAX_CONNECTIONS_PER_CLIENT`] of them, its further
//! connections closed at once, so a single host cannot take every slot.

use std::collections::HashMap;
use std::future::Future;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;

/// Time a client has to send a request line and headers (and, on a kept-alive connection,
/// to start its next request).
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// Time unacknowledged response bytes may wait (`TCP_USER_TIMEOUT`, zero-window probes
/// included): a client that stops reading is dropped after it.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(30);

/// Most connections served at once.
pub const MAX_CONNECTIONS: usize = 512;

/// Most connections one client address holds at once (a browser opens about six).
pub const MAX_CONNECTIONS_PER_CLIENT: usize = 32;

/// Largest request head (request line and headers), bytes.
pub const MAX_HEAD_BYTES: usize = 64 * 1024;

/// The limits of one listener.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// See [`HEADER_TIMEOUT`].
    pub header_timeout: Duration,
    /// See [`SEND_TIMEOUT`].
    pub send_timeout: Duration,
    /// See [`MAX_CONNECTIONS`].
    pub max_connections: usize,
    /// See [`MAX_CONNECTIONS_PER_CLIENT`].
    pub max_connections_per_client: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            header_timeout: HEADER_TIMEOUT,
            send_timeout: SEND_TIMEOUT,
            max_connections: MAX_CONNECTIONS,
            max_connections_per_client: MAX_CONNECTIONS_PER_CLIENT,
        }
    }
}

/// Serves `app` on `listener` with `limits` until `shutdown` completes (connections in
/// progress are then told to close once their current response is written).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let slots = Arc::new(tokio::sync::Semaphore::new(limits.max_connections.max(1)));
    let per_client = Arc::new(Mutex::new(HashMap::new()));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        // A free slot first: beyond the limit, clients wait in the listen queue.
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        let (tcp, peer) = tokio::select! {
            a = listener.accept() => match a {
                Ok(a) => a,
                Err(e) => {
                    // Out of descriptors and the like: wait rather than spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Some(client) = ClientSlot::take(&per_client, peer.ip(), limits) else {
            tracing::debug!(%peer, "client at its connection limit: closed");
            continue;
        };
        let _ = socket2::SockRef::from(&tcp).set_tcp_user_timeout(Some(limits.send_timeout));
        let svc = TowerToHyperService::new(app.clone());
        let mut stop = stop_rx.clone();
        tokio::spawn(async move {
            let _slots = (permit, client);
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_timeout)
                .max_buf_size(MAX_HEAD_BYTES)
                .serve_connection(TokioIo::new(tcp), svc);
            let mut conn = std::pin::pin!(conn);
            let done = tokio::select! {
                r = conn.as_mut() => Some(r),
                _ = stop.wait_for(|s| *s) => None,
            };
            let r = match done {
                Some(r) => r,
                None => {
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            };
            if let Err(e) = r {
                tracing::debug!(%peer, error = %e, "connection ended");
            }
        });
    }
    let _ = stop_tx.send(true);
    // Responses being written get a moment to finish.
    let all = u32::try_from(limits.max_connections.max(1)).unwrap_or(u32::MAX);
    let _ = tokio::time::timeout(Duration::from_secs(5), slots.acquire_many(all)).await;
    Ok(())
}

/// One connection counted against its client address; uncounted when dropped.
struct ClientSlot {
    counts: Arc<Mutex<HashMap<IpAddr, usize>>>,
    ip: IpAddr,
}

impl ClientSlot {
    /// Counts a connection from `ip`, unless the address already holds the most allowed.
    fn take(
        counts: &Arc<Mutex<HashMap<IpAddr, usize>>>,
        ip: IpAddr,
        limits: Limits,
    ) -> Option<Self> {
        let ip = ip.to_canonical();
        let mut map = counts.lock().unwrap_or_else(|e| e.into_inner());
        let n = map.entry(ip).or_insert(0);
        if *n >= limits.max_connections_per_client.max(1) {
            return None;
        }
        *n += 1;
        Some(ClientSlot {
            counts: counts.clone(),
            ip,
        })
    }
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        let mut map = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = map.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.ip);
            }
        }
    }
}
