//! The response body on its way back: passed through frame by frame, or — when the route
//! has output filters — filtered as it streams (Server-Sent Events per event and choice,
//! other bodies as raw bytes), while the backend's `usage` is picked up for token
//! accounting. When the body ends (or the client goes away) the summary goes to a
//! callback that charges tokens and writes the event.

use super::upstream::BoxError;
use crate::filter::{FilterHit, FilterSet, Release, StreamScanner};
use crate::openai::Usage;
use crate::sse::{SseEvent, SseParser};
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use serde_json::Value;
use std::collections::BTreeMap;
use std::pin::Pin;
use std::task::{Context, Poll};

/// Largest non-streamed body copy kept to read `usage` from.
const MAX_CAPTURE: usize = 1 << 20;
/// Largest streamed completion text kept to count tokens when no `usage` comes.
const MAX_COMPLETION_TEXT: usize = 256 << 10;

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
    Sse {
        parser: SseParser,
        scanners: BTreeMap<u64, StreamScanner>,
        template: Option<Value>,
    },
}

/// The filtering body.
pub struct FilteredBody {
    inner: Option<Incoming>,
    mode: Mode,
    filters: FilterSet,
    capture: Option<Vec<u8>>,
    summary: BodySummary,
    finish: Option<Finish>,
}

impl FilteredBody {
    /// Wraps a backend body. `sse`: the response is `text/event-stream`; `json`: keep a
    /// copy to read `usage` from.
    pub fn new(inner: Incoming, filters: FilterSet, sse: bool, json: bool, finish: Finish) -> Self {
        let mode = match (sse, filters.is_empty()) {
            (true, _) => Mode::Sse {
                parser: SseParser::new(),
                scanners: BTreeMap::new(),
                template: None,
            },
            (false, true) => Mode::Pass,
            (false, false) => Mode::Raw(StreamScanner::new(filters.clone())),
        };
        FilteredBody {
            inner: Some(inner),
            mode,
            filters,
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
            Mode::Sse { scanners, .. } => {
                self.summary.hits = scanners.values().flat_map(|s| s.hits().to_vec()).collect()
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
            Mode::Sse { parser, .. } => {
                let events = match parser.push(&data) {
                    Ok(e) => e,
                    Err(e) => return Err(format!("sse: {e}")),
                };
                let mut out = Vec::with_capacity(data.len());
                for e in events {
                    self.sse_event(e, &mut out)?;
                }
                Ok(Bytes::from(out))
            }
        }
    }

    fn sse_event(&mut self, mut e: SseEvent, out: &mut Vec<u8>) -> Result<(), String> {
        let filters = self.filters.clone();
        let Mode::Sse {
            scanners, template, ..
        } = &mut self.mode
        else {
            return Ok(());
        };
        if e.data.trim() == "[DONE]" {
            flush_all(scanners, template, out)?;
            out.extend(e.to_wire());
            return Ok(());
        }
        let Ok(mut v) = serde_json::from_str::<Value>(&e.data) else {
            // Not JSON: filter the data as text of its own.
            let s = scanners
                .entry(u64::MAX)
                .or_insert_with(|| StreamScanner::new(filters.clone()));
            let mut text = release(s.push(e.data.as_bytes()))?;
            text.extend(release(s.finish())?);
            e.data = String::from_utf8_lossy(&text).into_owned();
            out.extend(e.to_wire());
            return Ok(());
        };
        if let Some(u) = Usage::from_value(&v) {
            self.summary.usage = Some(u);
        }
        if let Some(choices) = v.get_mut("choices").and_then(Value::as_array_mut) {
            for c in choices.iter_mut() {
                let idx = c.get("index").and_then(Value::as_u64).unwrap_or(0);
                let finished = c.get("finish_reason").is_some_and(|f| !f.is_null());
                let s = scanners
                    .entry(idx)
                    .or_insert_with(|| StreamScanner::new(filters.clone()));
                let incoming = text_of(c).map(str::to_string);
                let flush_here = finished && !filters.is_empty();
                if incoming.is_none() && !flush_here {
                    continue;
                }
                let incoming = incoming.unwrap_or_default();
                if self.summary.completion_text.len() < MAX_COMPLETION_TEXT {
                    self.summary.completion_text.push_str(&incoming);
                }
                let mut t = if filters.is_empty() {
                    incoming.into_bytes()
                } else {
                    release(s.push(incoming.as_bytes()))?
                };
                if finished && !filters.is_empty() {
                    t.extend(release(s.finish())?);
                }
                set_text(c, String::from_utf8_lossy(&t).into_owned());
            }
            if template.is_none() {
                *template = Some(v.clone());
            }
        }
        e.data = serde_json::to_string(&v).unwrap_or_default();
        out.extend(e.to_wire());
        Ok(())
    }
}

/// A choice's new text: `delta.content` (chat) or `text` (completions).
fn text_of(c: &Value) -> Option<&str> {
    c.get("text")
        .and_then(Value::as_str)
        .or_else(|| c.pointer("/delta/content").and_then(Value::as_str))
}

/// Puts filtered text back where it came from. A finished choice that had none (a final
/// chunk with only `finish_reason`) gets `delta.content` when held-back text remains, and is
/// left as it was otherwise (tool-call deltas keep their `content: null`).
fn set_text(c: &mut Value, t: String) {
    if c.get("text").is_some_and(Value::is_string) {
        c["text"] = Value::String(t);
    } else if c.pointer("/delta/content").is_some_and(Value::is_string) {
        c["delta"]["content"] = Value::String(t);
    } else if !t.is_empty() {
        if let Some(d) = c.get_mut("delta").and_then(Value::as_object_mut) {
            d.insert("content".into(), Value::String(t));
        } else if let Some(o) = c.as_object_mut() {
            o.insert("delta".into(), serde_json::json!({ "content": t }));
        }
    }
}

fn release(r: Release) -> Result<Vec<u8>, String> {
    match r {
        Release::Text(t) => Ok(t),
        Release::Blocked(n) => Err(n),
    }
}

/// Sends what every scanner still holds, as one chunk per choice shaped like the stream's.
fn flush_all(
    scanners: &mut BTreeMap<u64, StreamScanner>,
    template: &Option<Value>,
    out: &mut Vec<u8>,
) -> Result<(), String> {
    for (idx, s) in scanners.iter_mut() {
        let t = release(s.finish())?;
        if t.is_empty() || *idx == u64::MAX {
            continue;
        }
        let mut chunk = template
            .clone()
            .unwrap_or_else(|| serde_json::json!({"object": "chat.completion.chunk"}));
        if let Some(o) = chunk.as_object_mut() {
            o.remove("usage");
            o.insert(
                "choices".into(),
                serde_json::json!([{"index": idx, "delta": {"content": String::from_utf8_lossy(&t)}, "finish_reason": null}]),
            );
        }
        let e = SseEvent {
            data: chunk.to_string(),
            ..Default::default()
        };
        out.extend(e.to_wire());
    }
    Ok(())
}

/// The SSE event that tells an OpenAI client the stream was cut.
fn blocked_event() -> Bytes {
    let data = serde_json::json!({"error": {
        "message": "The response was stopped by the gateway's output filter.",
        "type": "output_filter",
        "param": null,
        "code": "output_blocked",
    }});
    Bytes::from(
        SseEvent {
            data: data.to_string(),
            ..Default::default()
        }
        .to_wire(),
    )
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
                        Mode::Sse {
                            scanners,
                            template,
                            parser,
                        } => {
                            let mut out = Vec::new();
                            let rest = parser.remainder().to_vec();
                            let r = flush_all(scanners, template, &mut out);
                            if !rest.iter().all(u8::is_ascii_whitespace) {
                                out.extend_from_slice(&rest);
                            }
                            r.map(|_| out)
                        }
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
        let sse = matches!(self.mode, Mode::Sse { .. });
        self.done(false);
        if sse {
            let b = blocked_event();
            Some(Ok(Frame::data(b)))
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
