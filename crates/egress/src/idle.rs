//! Closing idle connections that hyper would keep for ever: its HTTP/2 server has no idle
//! or preface timeout (a client that answers the keep-alive pings, or never sends its
//! preface, holds the connection), and its HTTP/1.1 header timeout starts only once a byte
//! of the next request has come. A connection with no request in flight for the idle time
//! is shut down gracefully (HTTP/2 `GOAWAY`), and dropped if that does not finish soon.
//! Shared with the ingress gateway.
//!
//! A request is in flight from the moment the service is called until its response body
//! is dropped (sent whole, or abandoned): wrap the service's answer with [`Activity::track`].

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http_body::{Body, Frame, SizeHint};
use tokio::time::Instant;

/// How long a graceful shutdown may take before the connection is dropped.
pub const GRACE: Duration = Duration::from_secs(5);

/// Requests in flight on one connection, and when the last one ended.
#[derive(Debug)]
pub struct Activity {
    start: Instant,
    in_flight: AtomicUsize,
    /// Milliseconds from `start` to the end of the last request (0: none yet).
    last_ms: AtomicU64,
}

impl Activity {
    /// A connection starting now, with nothing in flight.
    pub fn new() -> Arc<Activity> {
        Arc::new(Activity {
            start: Instant::now(),
            in_flight: AtomicUsize::new(0),
            last_ms: AtomicU64::new(0),
        })
    }

    /// Marks a request in flight until the returned guard is dropped.
    pub fn begin(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(Arc::clone(self))
    }

    /// `resp` with its body keeping `guard` until the body is dropped.
    pub fn track<B>(resp: hyper::Response<B>, guard: InFlight) -> hyper::Response<Tracked<B>> {
        resp.map(|inner| Tracked {
            inner,
            _guard: guard,
        })
    }

    /// When the connection became idle, if it is.
    fn idle_since(&self) -> Option<Instant> {
        if self.in_flight.load(Ordering::Relaxed) > 0 {
            return None;
        }
        Some(self.start + Duration::from_millis(self.last_ms.load(Ordering::Relaxed)))
    }

    /// Completes once the connection has had nothing in flight for `idle`.
    pub async fn idle_for(&self, idle: Duration) {
        loop {
            let wake = match self.idle_since() {
                Some(since) if since + idle <= Instant::now() => return,
                Some(since) => since + idle,
                // Busy: look again after a while.
                None => Instant::now() + idle,
            };
            tokio::time::sleep_until(wake).await;
        }
    }
}

/// A request in flight (see [`Activity::begin`]).
#[derive(Debug)]
pub struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let a = &self.0;
        let ms = u64::try_from(a.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        a.last_ms.fetch_max(ms.max(1), Ordering::Relaxed);
        a.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A response body that keeps its request in flight until it is dropped.
#[derive(Debug)]
pub struct Tracked<B> {
    inner: B,
    _guard: InFlight,
}

impl<B: Body + Unpin> Body for Tracked<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Runs `conn` (a hyper connection) until it ends, or until `activity` has been idle for
/// `idle`: then `shutdown` starts a graceful shutdown, and the connection gets [`GRACE`]
/// to finish it.
pub async fn serve_until_idle<C, T>(
    conn: C,
    activity: &Activity,
    idle: Duration,
    shutdown: impl FnOnce(Pin<&mut C>),
) -> Option<T>
where
    C: Future<Output = T>,
{
    let mut conn = std::pin::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => Some(r),
        () = activity.idle_for(idle) => {
            tracing::debug!(?idle, "closing an idle connection");
            shutdown(conn.as_mut());
            tokio::time::timeout(GRACE, conn).await.ok()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn idle_counts_from_the_last_request_and_not_while_one_is_in_flight() {
        let a = Activity::new();
        let t0 = Instant::now();
        a.idle_for(Duration::from_secs(10)).await;
        assert_eq!(t0.elapsed(), Duration::from_secs(10));

        let g = a.begin();
        let busy =
            tokio::time::timeout(Duration::from_secs(60), a.idle_for(Duration::from_secs(10)));
        assert!(busy.await.is_err(), "idle while a request is in flight");
        drop(g);
        let t1 = Instant::now();
        a.idle_for(Duration::from_secs(10)).await;
        assert!(t1.elapsed() >= Duration::from_secs(9), "{:?}", t1.elapsed());
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_connection_is_shut_down_and_dropped_after_the_grace_time() {
        let a = Activity::new();
        let mut asked = false;
        let never = std::future::pending::<()>();
        let r = serve_until_idle(never, &a, Duration::from_secs(3), |_| asked = true).await;
        assert!(asked && r.is_none());

        let quick = async { 7 };
        let r = serve_until_idle(quick, &a, Duration::from_secs(3), |_| ()).await;
        assert_eq!(r, Some(7));
    }
}
