//! The response body on its way back: passed through frame by frame, or — when the route
//! has output filters — filtered as it streams (Server-Sent Events through [`SseFilter`],
//! other bodies as raw bytes), while the backend's `usage` is picked up for token
//! accounting. When the body ends (or the client goes away) the summary goes to a
//! callback that charges tokens and writes the event.

use super::upstream::BoxError;
use crate::filter::{FilterHit, FilterSet, Release, StreamScanner};
use crate::openai::Usage;
use crate::sse_filter::{blocked_event, release, SseFilter};
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use serde_json::Value;
use std::pin::Pin;
use std::task::{Context, Poll};

/// Largest non-streamed body copy kept to read `usage` from.
const MAX_CAPTURE: usize = 1 << 20;

/// What the body did, handed to the callback at its end.
#[derive(Debug, Clone, Default)]
pub struct BodySummary {
    /// Bytes sent to the client.
    pub bytes_out: u64,
    /// `usage` reported by the backend.
    pub usage: Option<Usage>,
    /// Completion text seen (streams), for counting when `usage` is missing.
    pub completion_text: String,
    /// Output-filter findings.
    pub hits: Vec<FilterHit>,
    /// A blocking finding cut the response.
    pub blocked: Option<String>,
    /// The body did not reach its end (client gone, backend error).
    pub incomplete: bool,
}

type Finish = Box<dyn FnOnce(BodySummary) + Send>;

enum Mode {
    Pass,
    Raw(StreamScanner),
    Sse(Box<SseFilter>),
}

/// The filtering body.
pub struct FilteredBody {
    inner: Option<Incoming>,
    mode: Mode,
    capture: Option<Vec<u8>>,
    summary: BodySummary,
    finish: Option<Finish>,
}

impl FilteredBody {
    /// Wraps a backend body. `sse`: the response is `text/event-stream`; `json`: keep a
    /// copy to read `usage` from.
    pub fn new(inner: Incoming, filters: FilterSet, sse: bool, json: bool, finish: Finish) -> Self {
        let mode = match (sse, filters.is_empty()) {
            (true, _) => Mode::Sse(Box::new(SseFilter::new(filters))),
            (false, true) => Mode::Pass,
            (false, false) => Mode::Raw(StreamScanner::new(filters.clone())),
        };
        FilteredBody {
            inner: Some(inner),
            mode,
            capture: json.then(Vec::new),
            summary: BodySummary::default(),
            finish: Some(finish),
        }
    }

    fn done(&mut self, incomplete: bool) {
        self.inner = None;
        if let Some(c) = self.capture.take() {
            if let Ok(v) = serde_json::from_slice::<Value>(&c) {
                self.summary.usage = self.summary.usage.or(Usage::from_value(&v));
            }
        }
        match &self.mode {
            Mode::Raw(s) => self.summary.hits = s.hits().to_vec(),
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
            Mode::Sse(f) => f.push(&data).map(Bytes::from),
        }
    }
}

impl Body for FilteredBody {
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
            match Pin::new(inner).poll_frame(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Ok(frame))) => {
                    let frame = match frame.into_data() {
                        Ok(d) => d,
                        Err(f) => return Poll::Ready(Some(Ok(f))),
                    };
                    match this.process(frame) {
                        Ok(b) if b.is_empty() => continue,
                        Ok(b) => {
                            this.summary.bytes_out += b.len() as u64;
                            return Poll::Ready(Some(Ok(Frame::data(b))));
                        }
                        Err(name) => return Poll::Ready(this.cut(name)),
                    }
                }
                Poll::Ready(Some(Err(e))) => {
                    this.done(true);
                    return Poll::Ready(Some(Err(Box::new(e))));
                }
                Poll::Ready(None) => {
                    let tail = match &mut this.mode {
                        Mode::Pass => Ok(Vec::new()),
                        Mode::Raw(s) => release(s.finish()),
                        Mode::Sse(f) => f.finish(),
                    };
                    return match tail {
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
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        match (&self.mode, &self.inner) {
            (Mode::Pass, Some(i)) => i.size_hint(),
            _ => SizeHint::default(),
        }
    }
}

impl FilteredBody {
    /// Ends the response after a blocking finding: SSE gets an error event, other bodies
    /// are aborted (the client sees an incomplete response, never the rest).
    fn cut(&mut self, name: String) -> Option<Result<Frame<Bytes>, BoxError>> {
        self.summary.blocked = Some(name);
        let sse = matches!(self.mode, Mode::Sse(_));
        self.done(false);
        if sse {
            Some(Ok(Frame::data(Bytes::from(blocked_event()))))
        } else {
            Some(Err("response blocked by output filter".into()))
        }
    }
}

impl Drop for FilteredBody {
    fn drop(&mut self) {
        if self.finish.is_some() {
            self.done(true);
        }
    }
}
