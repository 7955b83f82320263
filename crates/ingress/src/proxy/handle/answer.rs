//! The answer: streamed back to the client through the output filters (or read whole
//! first, when a blocking finding must be a clean refusal), and the exchange's event
//! written once the body is done, with the usage reconciled against what was charged.

use super::admission::Admitted;
use super::Exchange;
use crate::events::detection;
use crate::filter::{FilterAction, FilterSet};
use crate::proxy::body::{BodySummary, FilteredBody, Finish};
use crate::proxy::upstream::ProxyBody;
use crate::refusal::Refusal;
use crate::tokens;
use http::{header, Response};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use palisade_egress::hop::strip_hop_by_hop;
use palisade_events::DetectionAction;
use std::time::Instant;

/// A request the backend answered, with what the answer's handling needs.
pub(super) struct Answered {
    pub(super) resp: Response<Incoming>,
    pub(super) admitted: Admitted,
    /// The output filters (detectors, canary) for the answer.
    pub(super) filters: FilterSet,
    /// The model the request named (to estimate completion tokens).
    pub(super) model: Option<String>,
    /// The tokens charged at admission, reconciled with the usage.
    pub(super) charged: u64,
    pub(super) op: Option<&'static str>,
}

/// Streams the answer back through the filters; the event is written when it ends.
pub(super) async fn stream_back(mut x: Exchange, a: Answered) -> Response<ProxyBody> {
    let Answered {
        resp,
        admitted,
        filters,
        model,
        charged,
        op,
    } = a;
    let route = admitted.route.clone();
    // The answer, streamed back through the filters.
    let (mut rparts, rbody) = resp.into_parts();
    let encoded = rparts
        .headers
        .get_all(header::CONTENT_ENCODING)
        .iter()
        .any(|v| !v.as_bytes().trim_ascii().eq_ignore_ascii_case(b"identity"));
    if encoded && !filters.is_empty() && !route.audit {
        // Compressed anyway: the filters cannot read it, so it does not go out (it was
        // generated: the reservation stays charged).
        x.reserved = None;
        return x.refuse(Refusal::new(
            502,
            "server_error",
            "upstream_encoding_unsupported",
            "The model backend answered in an encoding the gateway cannot inspect.",
        ));
    }
    let ctype = rparts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    let sse = ctype.starts_with("text/event-stream");
    let json = ctype.contains("json");
    // A non-streamed JSON answer to filter is read before anything is sent, so that a
    // blocking finding is a clean refusal, when the filter can keep it whole: a declared
    // length of at most 1 MiB, or none (chunked or until close: read up to 1 MiB, then
    // streamed if it goes on, see `whole.rs`). A larger declared length streams at once; an
    // answer known to be empty (204, 304, a `HEAD`) has nothing to wait for.
    let declared = rparts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.trim().parse::<usize>().ok());
    let whole = !sse
        && json
        && !filters.is_empty()
        && declared.map_or(!hyper::body::Body::is_end_stream(&rbody), |n| {
            n <= crate::proxy::body::MAX_CAPTURE
        });
    strip_hop_by_hop(&mut rparts.headers);
    if sse || !filters.is_empty() {
        rparts.headers.remove(header::CONTENT_LENGTH);
    }
    x.log.status = rparts.status.as_u16();
    let finish = on_finish(x, admitted, model.unwrap_or_default(), charged);
    if whole {
        let anthropic = op == Some("messages");
        return crate::proxy::whole::filter_answer(
            rparts,
            rbody,
            filters,
            (route.timeout, route.stream_idle_timeout),
            anthropic,
            finish,
        )
        .await;
    }
    let body = FilteredBody::new(rbody, filters, sse, json, finish)
        .idle_timeout(route.stream_idle_timeout);
    Response::from_parts(rparts, body.boxed_unsync())
}

/// What runs when the answer's body is done: the usage replaces the charge, the output
/// findings and any cut are recorded, and the event is written.
fn on_finish(x: Exchange, a: Admitted, est_model: String, charged: u64) -> Finish {
    let shared2 = x.shared.clone();
    let Admitted {
        route: route2,
        limits,
        limit_key,
        ..
    } = a;
    Box::new(move |s: BodySummary| {
        let mut x = x;
        x.log.bytes_out = s.bytes_out;
        let completion = s.usage.and_then(|u| u.completion_tokens).or_else(|| {
            (!s.completion_text.is_empty()).then(|| tokens::count(&est_model, &s.completion_text))
        });
        let prompt = s
            .usage
            .and_then(|u| u.prompt_tokens)
            .or(x.log.prompt_tokens);
        if x.log.prompt_tokens.is_some() || s.usage.is_some() {
            x.log.prompt_tokens = prompt;
            x.log.completion_tokens = completion;
        }
        let used = prompt.unwrap_or(0) + completion.unwrap_or(0);
        let delta = i64::try_from(used)
            .unwrap_or(i64::MAX)
            .saturating_sub(i64::try_from(charged).unwrap_or(i64::MAX));
        if delta != 0 {
            shared2
                .limiter
                .reconcile(&route2.name, &limit_key, &limits, delta, Instant::now());
        }
        for h in &s.hits {
            x.log.detections.push(detection(
                &format!("output.{}", h.name),
                filter_detection(h.action),
                None,
                Vec::new(),
            ));
        }
        if let Some(status) = s.status {
            x.log.status = status;
        }
        if let Some(name) = &s.blocked {
            x.log.denied = true;
            x.log.reason = Some(format!("output_blocked:{name}"));
        } else if s.stalled {
            // The answer was cut: recorded like the gateway's other cuts.
            x.log.denied = true;
            x.log.reason = Some("upstream_idle_timeout".into());
        }
        if route2.audit && !s.hits.is_empty() {
            x.log.audit = true;
        }
        x.finish();
    })
}

fn filter_detection(a: FilterAction) -> DetectionAction {
    match a {
        FilterAction::Block => DetectionAction::Block,
        FilterAction::Redact => DetectionAction::Redact,
        FilterAction::Flag => DetectionAction::Flag,
        FilterAction::Log => DetectionAction::Log,
    }
}
