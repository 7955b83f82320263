//! Non-streamed JSON answers with output filters that the JSON filter can keep whole (at
//! most [`MAX_CAPTURE`], 1 MiB): read before anything is sent to the client. A blocking
//! finding then becomes a clean refusal — `403` with `code: output_blocked`, in the API's
//! error shape, which clients raise at once and do not retry — instead of a connection cut
//! after a `200`. Otherwise the filtered body goes out with its new `Content-Length`.
//!
//! An answer of no declared length (chunked, or until the backend closes) is read up to
//! [`MAX_CAPTURE`]: when it ends within that, it is answered exactly as one of a declared
//! length; when it goes on, the frames read so far and the rest of the body are filtered
//! as they pass ([`FilteredBody::continuing`]), as any longer answer is. Memory stays
//! bounded by [`MAX_CAPTURE`] (plus one frame) either way. An answer that declares a
//! length over [`MAX_CAPTURE`] is not read here at all: it streams from the start.

use super::body::{BodySummary, FilteredBody, Finish, MAX_CAPTURE};
use super::handle::refusal_response;
use super::upstream::{full, ProxyBody};
use crate::filter::FilterSet;
use crate::openai::Usage;
use crate::refusal::Refusal;
use bytes::{Bytes, BytesMut};
use http::{header, HeaderValue, Response};
use http_body::Body;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use std::collections::VecDeque;
use std::time::Duration;

/// The start of a body, read up to a limit.
pub enum Start<B> {
    /// The body ended within the limit: all of it.
    Whole(Bytes),
    /// The body went past the limit: the data frames read so far (more than the limit in
    /// all), and the body to read the rest from.
    Longer(VecDeque<Bytes>, B),
    /// The body failed, or did not reach its end or the limit within the time allowed.
    Failed,
}

/// Reads `body` until it ends or more than `limit` bytes have come, within `timeout`.
/// Trailers are not kept (a whole body is answered with a `Content-Length`).
pub async fn read_start<B>(mut body: B, limit: usize, timeout: Duration) -> Start<B>
where
    B: Body<Data = Bytes> + Unpin,
{
    let mut frames = VecDeque::new();
    let mut len = 0usize;
    let read = async {
        loop {
            match body.frame().await {
                None => return Some(true),
                Some(Err(_)) => return None,
                Some(Ok(f)) => {
                    let Ok(d) = f.into_data() else { continue };
                    if d.is_empty() {
                        continue;
                    }
                    len += d.len();
                    frames.push_back(d);
                    if len > limit {
                        return Some(false);
                    }
                }
            }
        }
    };
    match tokio::time::timeout(timeout, read).await {
        Ok(Some(true)) => Start::Whole(concat(frames, len)),
        Ok(Some(false)) => Start::Longer(frames, body),
        Ok(None) | Err(_) => Start::Failed,
    }
}

/// The frames as one buffer (no copy when there is one frame).
fn concat(mut frames: VecDeque<Bytes>, len: usize) -> Bytes {
    if frames.len() <= 1 {
        return frames.pop_front().unwrap_or_default();
    }
    let mut b = BytesMut::with_capacity(len);
    for f in frames {
        b.extend_from_slice(&f);
    }
    b.freeze()
}

/// Answers a non-streamed JSON answer to filter: whole when its body ends within
/// [`MAX_CAPTURE`] (read within the first of `timeouts`), else filtered as it streams,
/// ended when the backend is silent for the second. `finish` gets the summary.
pub async fn filter_answer(
    parts: http::response::Parts,
    body: Incoming,
    filters: FilterSet,
    timeouts: (Duration, Duration),
    anthropic: bool,
    finish: Finish,
) -> Response<ProxyBody> {
    let (timeout, idle) = timeouts;
    match read_start(body, MAX_CAPTURE, timeout).await {
        Start::Whole(bytes) => filter_whole(parts, bytes, &filters, anthropic, finish),
        Start::Longer(read, rest) => {
            let body = FilteredBody::continuing(read, rest, filters, false, true, finish)
                .idle_timeout(idle);
            Response::from_parts(parts, body.boxed_unsync())
        }
        Start::Failed => {
            // The backend failed, lied about its length, or stalled: nothing was sent yet.
            let r = Refusal::new(
                502,
                "server_error",
                "upstream_unavailable",
                "The model backend is unavailable.",
            );
            finish(BodySummary {
                incomplete: true,
                status: Some(r.status),
                ..Default::default()
            });
            refusal_response(&r, anthropic)
        }
    }
}

/// Filters a whole body and answers: the refusal on a blocking finding, else the filtered
/// body with its `Content-Length`.
fn filter_whole(
    mut parts: http::response::Parts,
    bytes: Bytes,
    filters: &FilterSet,
    anthropic: bool,
    finish: Finish,
) -> Response<ProxyBody> {
    let mut s = BodySummary::default();
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&bytes) {
        s.usage = Usage::from_value(&v);
        if s.usage.and_then(|u| u.completion_tokens).is_none() {
            // No usage: what the model wrote is counted instead.
            s.completion_text = crate::openai::completion_text(&v);
        }
    }
    match crate::json_output::filter_body(&bytes, filters, &mut s.hits) {
        Err(name) => {
            let r = Refusal::new(
                403,
                "invalid_request_error",
                "output_blocked",
                "The answer was withheld by the gateway's output filter.",
            );
            let resp = refusal_response(&r, anthropic);
            s.blocked = Some(name);
            s.status = Some(r.status);
            s.bytes_out = http_body::Body::size_hint(resp.body()).exact().unwrap_or(0);
            finish(s);
            resp
        }
        Ok(filtered) => {
            let out = filtered.map(Bytes::from).unwrap_or(bytes);
            parts
                .headers
                .insert(header::CONTENT_LENGTH, HeaderValue::from(out.len()));
            s.bytes_out = out.len() as u64;
            finish(s);
            Response::from_parts(parts, full(out))
        }
    }
}

#[cfg(test)]
mod tests;
