//! Body types: what goes upstream (the client's body, counted when recorded) and what goes
//! back (the upstream's body, metered for the event, or a short local answer).

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;

use super::Shared;
use crate::events::HttpLog;

/// The request body sent upstream: the client's, streamed (and counted when recorded), or
/// one that DLP read whole (and maybe redacted).
pub(crate) enum ReqBody {
    Stream {
        inner: Incoming,
        counter: Option<Arc<AtomicU64>>,
        /// The first bytes, kept for AI-API awareness (the model asked for).
        capture: Option<Arc<Mutex<Vec<u8>>>>,
        /// Limits checked as the body streams (a body of unknown length).
        limits: Option<Box<StreamLimits>>,
    },
    Full(Option<Bytes>),
}

/// What a streamed body of unknown length may not exceed: the rule's `maxBodyBytes` and
/// what is left of the pod's upload budget. Going over ends the body with an error, so the
/// upstream sees an aborted request, never a complete one.
pub(crate) struct StreamLimits {
    pub(crate) max: Option<u64>,
    pub(crate) budget: Option<Arc<crate::budget::BudgetCell>>,
    pub(crate) seen: u64,
}

/// Why a streamed body was cut.
#[derive(Debug)]
pub(crate) struct BodyCut(pub(crate) crate::decide::DenyReason);

impl std::fmt::Display for BodyCut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "request body cut ({})", self.0.code())
    }
}

impl std::error::Error for BodyCut {}

impl StreamLimits {
    fn check(&mut self, n: u64) -> Result<(), BodyCut> {
        self.seen = self.seen.saturating_add(n);
        if self.max.is_some_and(|m| self.seen > m) {
            return Err(BodyCut(crate::decide::DenyReason::BodyTooLarge));
        }
        if let Some(b) = &self.budget {
            b.take(n)
                .map_err(|_| BodyCut(crate::decide::DenyReason::UploadBudget))?;
        }
        Ok(())
    }
}

/// Errors of a body: a request body on its way upstream, or a response body.
pub(crate) type BodyError = Box<dyn std::error::Error + Send + Sync>;

impl Body for ReqBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        match &mut *self {
            ReqBody::Stream {
                inner,
                counter,
                capture,
                limits,
            } => {
                let poll = Pin::new(inner).poll_frame(cx);
                if let Poll::Ready(Some(Ok(f))) = &poll {
                    if let Some(d) = f.data_ref() {
                        if let Some(l) = limits.as_mut() {
                            if let Err(cut) = l.check(d.len() as u64) {
                                return Poll::Ready(Some(Err(Box::new(cut))));
                            }
                        }
                        if let Some(c) = counter {
                            c.fetch_add(d.len() as u64, Ordering::Relaxed);
                        }
                        if let Some(buf) = capture.as_ref().and_then(|c| c.lock().ok()).as_mut() {
                            keep(buf, d);
                        }
                    }
                }
                poll.map(|o| o.map(|r| r.map_err(|e| Box::new(e) as BodyError)))
            }
            ReqBody::Full(b) => Poll::Ready(
                b.take()
                    .filter(|b| !b.is_empty())
                    .map(|d| Ok(Frame::data(d))),
            ),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ReqBody::Stream { inner, .. } => inner.is_end_stream(),
            ReqBody::Full(b) => b.as_ref().is_none_or(|b| b.is_empty()),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ReqBody::Stream { inner, .. } => inner.size_hint(),
            ReqBody::Full(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
        }
    }
}

/// Appends up to the capture limit.
fn keep(buf: &mut Vec<u8>, d: &[u8]) {
    let room = crate::ai::MAX_CAPTURE.saturating_sub(buf.len());
    buf.extend_from_slice(&d[..d.len().min(room)]);
}

/// An event waiting for the end of the response body.
pub(crate) struct PendingEvent {
    pub(crate) shared: Arc<Shared>,
    pub(crate) engine: Option<Arc<palisade_policy::Engine>>,
    pub(crate) log: HttpLog,
    pub(crate) start: Instant,
    pub(crate) bytes_in: Option<Arc<AtomicU64>>,
    /// AI calls: the request's first bytes (when streamed) and the response's.
    pub(crate) req_capture: Option<Arc<Mutex<Vec<u8>>>>,
    pub(crate) resp_capture: Option<Vec<u8>>,
}

impl PendingEvent {
    fn finish(mut self, bytes_out: u64) {
        self.log.bytes_out = bytes_out;
        if let Some(c) = &self.bytes_in {
            self.log.bytes_in = c.load(Ordering::Relaxed);
        }
        if let Some(ai) = self.log.ai.as_mut() {
            if ai.model.is_none() {
                if let Some(req) = self.req_capture.as_ref().and_then(|c| c.lock().ok()) {
                    ai.model = crate::ai::request_model(&req);
                }
            }
            if let Some(resp) = &self.resp_capture {
                let (p, c, m) = crate::ai::response_usage(resp);
                ai.prompt_tokens = p;
                ai.completion_tokens = c;
                if ai.model.is_none() {
                    ai.model = m;
                }
            }
        }
        self.log.duration = self.start.elapsed();
        self.shared.emit(self.engine.as_deref(), self.log);
    }
}

/// The response body sent to the client.
pub(crate) enum RespBody {
    /// Straight from the upstream.
    Upstream(Incoming, IdleBound),
    /// From the upstream, counted; the event goes out when the body ends or is dropped.
    Metered {
        inner: Incoming,
        idle: IdleBound,
        bytes: u64,
        pending: Option<Box<PendingEvent>>,
    },
    /// A short local answer.
    Local(Option<Bytes>),
}

/// How long an upstream body may go without a frame before it is cut (the upstream idle
/// timeout): a stalled answer would otherwise hold the client's connection for ever. The
/// timer is made the first time the body has to wait, so a body that is there at once (most
/// answers) costs no timer.
pub(crate) struct IdleBound {
    idle: std::time::Duration,
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
    /// A frame came since the timer was last set.
    progressed: bool,
}

impl IdleBound {
    pub(crate) fn new(idle: std::time::Duration) -> Self {
        IdleBound {
            idle,
            timer: None,
            progressed: false,
        }
    }

    /// `inner`'s next frame; an error once it has been silent for the bound.
    fn poll_frame(
        &mut self,
        inner: &mut Incoming,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        if let Poll::Ready(r) = Pin::new(inner).poll_frame(cx) {
            self.progressed = true;
            return Poll::Ready(r.map(|r| r.map_err(BodyError::from)));
        }
        let idle = self.idle;
        let timer = self
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(idle)));
        if std::mem::take(&mut self.progressed) {
            timer.as_mut().reset(tokio::time::Instant::now() + idle);
        }
        match std::future::Future::poll(timer.as_mut(), cx) {
            Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(UpstreamStalled)))),
            Poll::Pending => Poll::Pending,
        }
    }
}

/// The upstream sent nothing of its answer's body for the upstream idle timeout.
#[derive(Debug)]
pub(crate) struct UpstreamStalled;

impl std::fmt::Display for UpstreamStalled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the upstream went silent in the middle of its answer")
    }
}

impl std::error::Error for UpstreamStalled {}

/// Bytes of a refused HTTP/2 request's body read (and dropped) before answering.
const DRAIN_MAX: usize = 64 * 1024;

/// How long a refused HTTP/2 request's body is read before answering.
const DRAIN_WAIT: std::time::Duration = std::time::Duration::from_millis(500);

/// `resp`, a refusal of `req`. Over HTTP/2 a short request body is read first (and
/// dropped) so the stream ends cleanly: after an early answer the stream is reset with
/// `NO_ERROR` (RFC 9113 §8.1), which some clients (curl 7.88) take as a failure and so
/// never show the answer. A longer body is not waited for.
pub(crate) async fn refusal_after_body(
    resp: hyper::Response<RespBody>,
    req: hyper::Request<Incoming>,
) -> hyper::Response<RespBody> {
    if req.version() != hyper::Version::HTTP_2 {
        return resp;
    }
    let mut body = req.into_body();
    let drain = async {
        let mut seen = 0;
        while seen <= DRAIN_MAX && !body.is_end_stream() {
            match http_body_util::BodyExt::frame(&mut body).await {
                Some(Ok(f)) => seen += f.data_ref().map_or(0, Bytes::len),
                Some(Err(_)) | None => break,
            }
        }
    };
    let _ = tokio::time::timeout(DRAIN_WAIT, drain).await;
    resp
}

impl RespBody {
    pub(crate) fn text(s: &'static str) -> Self {
        RespBody::Local(Some(Bytes::from_static(s.as_bytes())))
    }

    pub(crate) fn empty() -> Self {
        RespBody::Local(None)
    }
}

impl Drop for RespBody {
    fn drop(&mut self) {
        if let RespBody::Metered { bytes, pending, .. } = self {
            if let Some(p) = pending.take() {
                p.finish(*bytes);
            }
        }
    }
}

impl Body for RespBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        match &mut *self {
            RespBody::Upstream(b, idle) => idle.poll_frame(b, cx),
            RespBody::Metered {
                inner,
                idle,
                bytes,
                pending,
            } => {
                let poll = idle.poll_frame(inner, cx);
                match &poll {
                    Poll::Ready(Some(Ok(f))) => {
                        if let Some(d) = f.data_ref() {
                            *bytes += d.len() as u64;
                            if let Some(buf) =
                                pending.as_mut().and_then(|p| p.resp_capture.as_mut())
                            {
                                keep(buf, d);
                            }
                        }
                    }
                    Poll::Ready(r) => {
                        if let Some(mut p) = pending.take() {
                            if matches!(r, Some(Err(e)) if e.is::<UpstreamStalled>()) {
                                p.log.reason = Some(crate::events::UPSTREAM_IDLE_TIMEOUT);
                            }
                            p.finish(*bytes);
                        }
                    }
                    Poll::Pending => {}
                }
                poll
            }
            RespBody::Local(b) => Poll::Ready(b.take().map(|d| Ok(Frame::data(d)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            RespBody::Upstream(b, _) => b.is_end_stream(),
            RespBody::Metered { inner, .. } => inner.is_end_stream(),
            RespBody::Local(b) => b.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            RespBody::Upstream(b, _) => b.size_hint(),
            RespBody::Metered { inner, .. } => inner.size_hint(),
            RespBody::Local(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
        }
    }
}
