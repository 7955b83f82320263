//! The response body on its way back: passed through frame by frame, or — when the route
//! has output filters — filtered (Server-Sent Events as they stream, through [`SseFilter`];
//! a JSON body of up to 1 MiB whole, once complete, through [`json_output`], so tool-call
//! arguments and content blocks are scanned decoded; other bodies as raw bytes), while the
//! backend's `usage` is picked up for token accounting. When the body ends (or the client
//! goes away) the summary goes to a callback that charges tokens and writes the event.
//!
//! A body whose start was already read (a chunked JSON answer found to be longer than
//! [`MAX_CAPTURE`] while [`super::whole`] tried to keep it whole) resumes here with
//! [`FilteredBody::continuing`]: the frames read so far go through the filters first, in
//! order, exactly as if they had just arrived, then the rest of the body.
//!
//! A backend that goes silent mid-body (headers sent, then nothing: a hung model server, a
//! slowloris upstream) is cut after the route's stream idle timeout
//! ([`FilteredBody::idle_timeout`]): an SSE stream gets what the filters still held and an
//! error event (`code: upstream_idle_timeout`) and ends cleanly; any other body is aborted,
//! so the client sees it incomplete. The backend connection is dropped with it.

use super::upstream::BoxError;
use crate::filter::{FilterHit, FilterSet, Release, StreamScanner};
use crate::json_output;
use crate::openai::Usage;
use crate::sse_filter::{release, SseFilter};
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use serde_json::Value;
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

/// Largest non-streamed body copy kept to read `usage` from (and filtered whole).
pub const MAX_CAPTURE: usize = 1 << 20;

/// What the body did, handed to the callback at its end.
#[derive(Debug, Clone, Default)]
pub struct BodySummary {
    /// Bytes sent to the client.
    pub bytes_out: u64,
    /// `usage` reported by the backend.
    pub usage: Option<Usage>,
    /// Completion text seen (streams, and non-streamed JSON answers of up to
    /// [`MAX_CAPTURE`]), for counting when `usage` is missing.
    pub completion_text: String,
    /// Output-filter findings.
    pub hits: Vec<FilterHit>,
    /// A blocking finding cut the response.
    pub blocked: Option<String>,
    /// The body did not reach its end (client gone, backend error).
    pub incomplete: bool,
    /// The status sent, when the gateway answered instead of the backend (an answer
    /// withheld whole, see [`super::whole`]).
    pub status: Option<u16>,
    /// The backend went silent mid-body for longer than the stream idle timeout, and the
    /// answer was ended there.
    pub stalled: bool,
}

/// What runs when the body is over: charges tokens and writes the event.
pub type Finish = Box<dyn FnOnce(BodySummary) + Send>;

enum Mode {
    Pass,
    Raw(StreamScanner),
    /// A JSON body kept whole (up to [`MAX_CAPTURE`]) and filtered at its end.
    Json(Vec<u8>, FilterSet),
    Sse(Box<SseFilter>),
}

/// The filtering body, over the backend's body `B`.
pub struct FilteredBody<B = Incoming> {
    /// Frames of this body read before it was wrapped; filtered before `inner` is polled.
    read: VecDeque<Bytes>,
    inner: Option<B>,
    mode: Mode,
    capture: Option<Vec<u8>>,
    summary: BodySummary,
    finish: Option<Finish>,
    idle: Option<Idle>,
}

/// The stream idle timeout: how long the backend may stay silent between frames.
struct Idle {
    after: std::time::Duration,
    /// When the backend last sent a frame (or the body was wrapped).
    last: tokio::time::Instant,
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl Idle {
    /// Whether the backend has been silent for too long; otherwise arms the timer to wake
    /// the task when it will have been.
    fn expired(&mut self, cx: &mut Context<'_>) -> bool {
        let deadline = self.last + self.after;
        let timer = self
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        if timer.deadline() != deadline {
            timer.as_mut().reset(deadline);
        }
        timer.as_mut().poll(cx).is_ready()
    }
}

impl<B> FilteredBody<B> {
    /// Wraps a backend body. `sse`: the response is `text/event-stream`; `json`: keep a
    /// copy to read `usage` from.
    pub fn new(inner: B, filters: FilterSet, sse: bool, json: bool, finish: Finish) -> Self {
        Self::continuing(VecDeque::new(), inner, filters, sse, json, finish)
    }

    /// Wraps a backend body whose first frames, `read`, were already taken from it: they
    /// are filtered first, then what `inner` still holds (no byte lost or sent twice).
    pub fn continuing(
        read: VecDeque<Bytes>,
        inner: B,
        filters: FilterSet,
        sse: bool,
        json: bool,
        finish: Finish,
    ) -> Self {
        let mode = match (sse, filters.is_empty()) {
            (true, _) => Mode::Sse(Box::new(SseFilter::new(filters))),
            (false, true) => Mode::Pass,
            (false, false) if json => Mode::Json(Vec::new(), filters),
            (false, false) => Mode::Raw(StreamScanner::new(filters.clone())),
        };
        FilteredBody {
            read,
            inner: Some(inner),
            mode,
            capture: json.then(Vec::new),
            summary: BodySummary::default(),
            finish: Some(finish),
            idle: None,
        }
    }

    /// Ends the body when the backend sends nothing for `after` (counted from now, then
    /// from each frame it sends). Needs a Tokio runtime with time.
    pub fn idle_timeout(mut self, after: std::time::Duration) -> Self {
        self.idle = Some(Idle {
            after,
            last: tokio::time::Instant::now(),
            timer: None,
        });
        self
    }

    fn done(&mut self, incomplete: bool) {
        self.inner = None;
        self.read.clear();
        if let Some(c) = self.capture.take() {
            if let Ok(v) = serde_json::from_slice::<Value>(&c) {
                self.summary.usage = self.summary.usage.or(Usage::from_value(&v));
                if self
                    .summary
                    .usage
                    .and_then(|u| u.completion_tokens)
                    .is_none()
                {
                    // No usage: what the model wrote is counted instead.
                    self.summary.completion_text = crate::openai::completion_text(&v);
                }
            }
        }
        match &self.mode {
            Mode::Raw(s) => self.summary.hits = s.hits().to_vec(),
            Mode::Json(..) => {}
            Mode::Sse(f) => {
                self.summary.hits = f.hits();
                self.summary.usage = f.usage().or(self.summary.usage);
                self.summary.completion_text = f.completion_text().to_string();
            }
            Mode::Pass => {}
        }
        self.summary.incomplete |= incomplete;
        if let Some(f) = self.finish.take() {
            f(std::mem::take(&mut self.summary));
        }
    }

    /// Processes one data frame; `Err` is a blocking finding's name.
    fn process(&mut self, data: Bytes) -> Result<Bytes, String> {
        if let Some(c) = &mut self.capture {
            if c.len() + data.len() <= MAX_CAPTURE {
                c.extend_from_slice(&data);
            } else {
                self.capture = None;
            }
        }
        match &mut self.mode {
            Mode::Pass => Ok(data),
            Mode::Raw(s) => match s.push(&data) {
                Release::Text(t) => Ok(Bytes::from(t)),
                Release::Blocked(n) => Err(n),
            },
            Mode::Json(buf, filters) => {
                buf.extend_from_slice(&data);
                if buf.len() <= MAX_CAPTURE {
                    return Ok(Bytes::new());
                }
                // Too large to keep: scanned as raw bytes from here on.
                let mut s = StreamScanner::new(std::mem::take(filters));
                let r = release(s.push(buf));
                self.mode = Mode::Raw(s);
                r.map(Bytes::from)
            }
            Mode::Sse(f) => f.push(&data).map(Bytes::from),
        }
    }

    /// The end of the backend's body: what is still to send.
    fn tail(&mut self) -> Result<Vec<u8>, String> {
        match &mut self.mode {
            Mode::Pass => Ok(Vec::new()),
            Mode::Raw(s) => release(s.finish()),
            Mode::Json(buf, filters) => {
                let buf = std::mem::take(buf);
                let r = json_output::filter_body(&buf, filters, &mut self.summary.hits);
                r.map(|t| t.unwrap_or(buf))
            }
            Mode::Sse(f) => f.finish(),
        }
    }
}

impl<B> Body for FilteredBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        loop {
            let Some(inner) = this.inner.as_mut() else {
                return Poll::Ready(None);
            };
            let data = match this.read.pop_front() {
                Some(d) => d,
                None => match Pin::new(inner).poll_frame(cx) {
                    Poll::Pending => {
                        if this.idle.as_mut().is_some_and(|i| i.expired(cx)) {
                            return Poll::Ready(this.stall());
                        }
                        return Poll::Pending;
                    }
                    Poll::Ready(Some(Ok(frame))) => {
                        if let Some(i) = this.idle.as_mut() {
                            i.last = tokio::time::Instant::now();
                        }
                        match frame.into_data() {
                            Ok(d) => d,
                            Err(f) => return Poll::Ready(Some(Ok(f))),
                        }
                    }
                    Poll::Ready(Some(Err(e))) => {
                        this.done(true);
                        return Poll::Ready(Some(Err(e.into())));
                    }
                    Poll::Ready(None) => {
                        return match this.tail() {
                            Err(name) => Poll::Ready(this.cut(name)),
                            Ok(t) => {
                                this.summary.bytes_out += t.len() as u64;
                                this.done(false);
                                if t.is_empty() {
                                    Poll::Ready(None)
                                } else {
                                    Poll::Ready(Some(Ok(Frame::data(Bytes::from(t)))))
                                }
                            }
                        };
                    }
                },
            };
            match this.process(data) {
                Ok(b) if b.is_empty() => continue,
                Ok(b) => {
                    this.summary.bytes_out += b.len() as u64;
                    return Poll::Ready(Some(Ok(Frame::data(b))));
                }
                Err(name) => return Poll::Ready(this.cut(name)),
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        match (&self.mode, &self.inner) {
            (Mode::Pass, Some(i)) if self.read.is_empty() => i.size_hint(),
            _ => SizeHint::default(),
        }
    }
}

impl<B> FilteredBody<B> {
    /// Ends the response after the backend went silent for the idle timeout: an SSE
    /// stream gets what the filters still held, then an error event, and ends; any other
    /// body is aborted (an incomplete answer must not look whole).
    fn stall(&mut self) -> Option<Result<Frame<Bytes>, BoxError>> {
        self.summary.stalled = true;
        if !matches!(self.mode, Mode::Sse(_)) {
            self.done(true);
            return Some(Err(
                "the backend stopped sending (stream idle timeout)".into()
            ));
        }
        let mut out = match self.tail() {
            Ok(t) => t,
            Err(name) => return self.cut(name),
        };
        if let Mode::Sse(f) = &self.mode {
            out.extend_from_slice(&f.stalled_event());
        }
        self.summary.bytes_out += out.len() as u64;
        self.done(true);
        Some(Ok(Frame::data(Bytes::from(out))))
    }

    /// Ends the response after a blocking finding: SSE gets an error event, other bodies
    /// are aborted (the client sees an incomplete response, never the rest).
    fn cut(&mut self, name: String) -> Option<Result<Frame<Bytes>, BoxError>> {
        self.summary.blocked = Some(name);
        let event = match &self.mode {
            Mode::Sse(f) => Some(f.blocked_event()),
            _ => None,
        };
        self.done(false);
        if let Some(event) = event {
            Some(Ok(Frame::data(Bytes::from(event))))
        } else {
            Some(Err("response blocked by output filter".into()))
        }
    }
}

impl<B> Drop for FilteredBody<B> {
    fn drop(&mut self) {
        if self.finish.is_some() {
            self.done(true);
        }
    }
}

#[cfg(test)]
mod tests;
