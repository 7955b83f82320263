//! Non-streamed JSON answers with output filters and a declared length the JSON filter keeps
//! whole (≤ 1 MiB): read before anything is sent to the client. A blocking finding then
//! becomes a clean refusal — `403` with `code: output_blocked`, in the API's error shape,
//! which clients raise at once and do not retry — instead of a connection cut after a
//! `200`. Otherwise the filtered body goes out with its new `Content-Length`.

use super::body::{BodySummary, Finish, MAX_CAPTURE};
use super::handle::refusal_response;
use super::upstream::{full, ProxyBody};
use crate::filter::FilterSet;
use crate::openai::Usage;
use crate::refusal::Refusal;
use bytes::Bytes;
use http::{header, HeaderValue, Response};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use std::time::Duration;

/// Reads `body` whole (within `timeout`), filters it and answers; `finish` gets the summary.
pub async fn filter_whole(
    mut parts: http::response::Parts,
    body: Incoming,
    filters: &FilterSet,
    timeout: Duration,
    anthropic: bool,
    finish: Finish,
) -> Response<ProxyBody> {
    let mut s = BodySummary::default();
    let read = tokio::time::timeout(timeout, Limited::new(body, MAX_CAPTURE).collect()).await;
    let bytes = match read {
        Ok(Ok(c)) => c.to_bytes(),
        _ => {
            // The backend failed, lied about its length, or stalled: nothing was sent yet.
            let r = Refusal::new(
                502,
                "server_error",
                "upstream_unavailable",
                "The model backend is unavailable.",
            );
            s.incomplete = true;
            s.status = Some(r.status);
            finish(s);
            return refusal_response(&r, anthropic);
        }
    };
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&bytes) {
        s.usage = Usage::from_value(&v);
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
