//! The request body: read within its size and time limits, refused when the route cannot
//! check it (no body where one is needed, an encoding or charset the gateway does not read),
//! and parsed as JSON where the route decides on what it says.

use super::admission::Admitted;
use super::{Exchange, BODY_TIMEOUT};
use crate::config::Route;
use crate::openai::{ApiRequest, BodyError};
use crate::proxy::endpoints::{body_allowed, bodyless_allowed, extra_allowed};
use crate::refusal::Refusal;
use bytes::Bytes;
use http::{header, HeaderMap};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;

/// The body as read, and as parsed when the route reads it as JSON.
pub(super) struct ReadBody {
    pub(super) raw: Bytes,
    /// The parsed JSON body of an AI API request (or of any request the route decides on).
    pub(super) api: Option<ApiRequest>,
    /// The declared `Content-Type`, lowercased.
    pub(super) ctype: Option<String>,
}

/// Reads the body (taken from `body`) within the admitted limits, then checks and parses it.
pub(super) async fn read(
    x: &mut Exchange,
    a: &Admitted,
    parts: &http::request::Parts,
    body: &mut Option<Incoming>,
    op: Option<&str>,
    path: &str,
) -> Result<ReadBody, Refusal> {
    // The body, within its size and time limits.
    let Some(body) = body.take() else {
        return Err(Refusal::new(
            500,
            "server_error",
            "internal_error",
            "The request body was lost.",
        ));
    };
    let raw = read_within_limits(body, &parts.headers, a.max_body).await?;
    x.log.bytes_in = raw.len() as u64;
    // On a route that decides on bodies, only what it can check goes through. No body:
    // only the read-only endpoints an AI API client expects (model lists, file metadata,
    // health); before, any path did (`GET /slots`, `DELETE /v1/files/x`, …). A body: only
    // the inference endpoints whose bodies the gateway reads; before, any path with a JSON
    // body was checked and forwarded (Ollama's `/api/push`, llama.cpp's `/slots/0?action=
    // save`, vLLM's `/load_lora_adapter`, …). The route's `extraEndpoints` pass too, and
    // are checked like any request.
    let allowed = if raw.is_empty() {
        bodyless_allowed(&parts.method, path)
    } else {
        body_allowed(&parts.method, path)
    } || extra_allowed(&a.route.extra_endpoints, path);
    if a.decides_on_body() && !allowed {
        return Err(Refusal::new(
            403,
            "permission_error",
            "endpoint_not_allowed",
            "This route forwards only requests it can check: inference API calls with a JSON body, and reads of model lists, file metadata and health.",
        ));
    }
    parse(a, &parts.headers, raw, op)
}

/// The whole body, refused when its declared or actual length passes `max_body` or it takes
/// longer than [`BODY_TIMEOUT`] to arrive.
async fn read_within_limits(
    body: Incoming,
    headers: &HeaderMap,
    max_body: u64,
) -> Result<Bytes, Refusal> {
    if let Some(len) = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
    {
        if len > max_body {
            return Err(Refusal::new(
                413,
                "invalid_request_error",
                "request_too_large",
                format!("The request body is larger than {max_body} bytes."),
            ));
        }
    }
    if hyper::body::Body::is_end_stream(&body) {
        // No body (a GET): nothing to wait for.
        return Ok(Bytes::new());
    }
    match tokio::time::timeout(
        BODY_TIMEOUT,
        Limited::new(body, usize::try_from(max_body).unwrap_or(usize::MAX)).collect(),
    )
    .await
    {
        Err(_) => Err(Refusal::new(
            408,
            "invalid_request_error",
            "request_timeout",
            "The request body took too long to arrive.",
        )),
        Ok(Err(e))
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            Err(Refusal::new(
                413,
                "invalid_request_error",
                "request_too_large",
                format!("The request body is larger than {max_body} bytes."),
            ))
        }
        Ok(Err(_)) => Err(Refusal::new(
            400,
            "invalid_request_error",
            "bad_request_body",
            "The request body could not be read.",
        )),
        Ok(Ok(b)) => Ok(b.to_bytes()),
    }
}

/// Checks that a non-empty body can be read the way the backend will read it, and parses
/// it as JSON where the route (or the AI operation `op`) reads it so.
fn parse(
    a: &Admitted,
    headers: &HeaderMap,
    raw: Bytes,
    op: Option<&str>,
) -> Result<ReadBody, Refusal> {
    let ctype = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_ascii_lowercase);
    let is_json = ctype.as_deref().is_some_and(|v| v.contains("json"));
    let mut api = None;
    // What the route decides on the body for (models, prompts, tokens), and AI operation
    // paths: the body is read as JSON whatever its declared type, or refused.
    let inspects = op.is_some() || a.decides_on_body();
    let wanted = inspects || reads_prompts(&a.route, a.rights.as_ref(), &a.limits, a.max_prompt);
    if !raw.is_empty() {
        let as_json = inspects || (wanted && is_json);
        if let Some(r) = unreadable_body(headers, inspects || a.route.waf.is_some(), as_json) {
            return Err(r);
        }
        if as_json {
            match ApiRequest::parse(&raw, &a.route.prompt_fields) {
                Ok(p) => api = Some(p),
                Err(e) => return Err(body_refusal(&e, ctype.is_some() && !is_json)),
            }
        }
    }
    Ok(ReadBody { raw, api, ctype })
}

/// Whether a request to `route` (on a path that is not a known OpenAI-style operation)
/// needs its JSON body read: for models, prompt sizes, token limits, the prompt guard,
/// the canary, or the WAF's prompt exclusion. A plain JSON API behind the gateway is
/// then proxied without parsing its bodies.
fn reads_prompts(
    route: &Route,
    rights: Option<&crate::config::ConsumerRights>,
    limits: &crate::limits::Limits,
    max_prompt: Option<u64>,
) -> bool {
    decides_on_body(route, rights, limits, max_prompt)
        || route.waf.is_some() && !route.waf_inspect_prompts
}

/// Whether the route's decisions depend on what the JSON body says (models, prompt sizes,
/// token limits, the prompt guard, the canary). Such a route reads every request body as
/// JSON whatever its `Content-Type` says (or when it says nothing), because backends such
/// as FastAPI, llama.cpp or Ollama parse JSON regardless; a body that is not a JSON object
/// is refused rather than passed on unchecked.
pub(super) fn decides_on_body(
    route: &Route,
    rights: Option<&crate::config::ConsumerRights>,
    limits: &crate::limits::Limits,
    max_prompt: Option<u64>,
) -> bool {
    !route.models.is_empty()
        || rights.is_some_and(|r| !r.models.is_empty())
        || route.guard.is_some()
        || route.filters.canary.is_some()
        || limits.tokens_per_minute.is_some()
        || max_prompt.is_some()
}

/// Refuses a body the gateway could not inspect the way the backend will read it: a
/// `Content-Encoding` other than `identity` (the gateway does not decompress; some backends
/// do) on a route that inspects bodies (`inspects`), and a `charset` other than UTF-8 on a
/// body read as JSON.
fn unreadable_body(headers: &HeaderMap, inspects: bool, as_json: bool) -> Option<Refusal> {
    // `Content-Type` is a singleton field (RFC 9110 §8.3): with two, the gateway reads the
    // first and a backend may read the last.
    if headers.get_all(header::CONTENT_TYPE).iter().count() > 1 {
        return Some(Refusal::new(
            400,
            "invalid_request_error",
            "invalid_content_type",
            "The request names its Content-Type more than once.",
        ));
    }
    let encoded = headers
        .get_all(header::CONTENT_ENCODING)
        .iter()
        .flat_map(|v| v.as_bytes().split(|b| *b == b','))
        .any(|t| !t.trim_ascii().is_empty() && !t.trim_ascii().eq_ignore_ascii_case(b"identity"));
    if inspects && encoded {
        return Some(Refusal::new(
            415,
            "invalid_request_error",
            "unsupported_content_encoding",
            "This route accepts uncompressed request bodies only.",
        ));
    }
    let charset = headers
        .get(header::CONTENT_TYPE)
        .map(|v| v.as_bytes().to_ascii_lowercase())
        .and_then(|v| {
            v.split(|b| *b == b';')
                .skip(1)
                .filter_map(|p| {
                    let p = p.trim_ascii();
                    p.strip_prefix(b"charset=").map(|c| c.trim_ascii().to_vec())
                })
                .last()
        });
    let utf8 = |c: &[u8]| {
        let c: Vec<u8> = c.iter().copied().filter(|b| *b != b'"').collect();
        c == b"utf-8" || c == b"utf8"
    };
    if as_json && charset.is_some_and(|c| !utf8(&c)) {
        return Some(Refusal::new(
            415,
            "invalid_request_error",
            "unsupported_charset",
            "JSON request bodies must be UTF-8.",
        ));
    }
    None
}

/// The refusal for a body that is not strict JSON; `declared_other`: its `Content-Type`
/// names another media type (a form, a file upload).
fn body_refusal(e: &BodyError, declared_other: bool) -> Refusal {
    let bad =
        |code: &'static str, msg: String| Refusal::new(400, "invalid_request_error", code, msg);
    match e {
        BodyError::Malformed(_) if declared_other => Refusal::new(
            415,
            "invalid_request_error",
            "unsupported_media_type",
            "This route accepts JSON request bodies only.",
        ),
        BodyError::Malformed(_) => bad(
            "invalid_json",
            "We could not parse the JSON body of your request.".into(),
        ),
        BodyError::TooDeep => bad(
            "invalid_json",
            "The JSON body of your request is nested too deeply.".into(),
        ),
        BodyError::NotObject => bad(
            "invalid_json",
            "The JSON body of your request must be an object.".into(),
        ),
        BodyError::ByteOrderMark => bad(
            "invalid_json",
            "The JSON body of your request starts with a byte order mark.".into(),
        ),
        BodyError::DuplicateKey(k) => bad(
            "duplicate_json_key",
            format!("The JSON body of your request names the key `{k}` twice in one object."),
        ),
        BodyError::ModelNotString => bad(
            "invalid_model",
            "The `model` field of your request must be a string.".into(),
        ),
        BodyError::NotAnInteger(k) => bad(
            "invalid_parameter",
            format!("The `{k}` field of your request must be a non-negative integer."),
        ),
    }
}
