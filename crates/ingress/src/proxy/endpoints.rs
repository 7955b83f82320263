//! What a request's path says about it: the Azure-style deployment it names, whether its
//! body is a form or XML for the WAF, whether it makes the backend generate (and so
//! reserves completion tokens without a budget), and which bodiless requests a route that
//! decides on bodies forwards.

/// The deployment an Azure OpenAI-style path names (`…/deployments/NAME/…`), escapes
/// decoded as the backend decodes them.
pub(super) fn deployment_in(path: &str) -> Option<String> {
    let mut segs = path.split('/');
    segs.by_ref().find(|s| *s == "deployments")?;
    let raw = segs.next().filter(|s| !s.is_empty())?;
    Some(unescape(raw))
}

/// The model a model-metadata read names (`…/v1/models/{id}`, ids may hold one `/`, as
/// [`bodyless_allowed`] admits them), escapes decoded as the backend decodes them. The
/// answer describes the model, so the model lists apply to it as to a request using it.
pub(super) fn model_in_path(path: &str) -> Option<String> {
    let segs: Vec<&str> = path.trim_end_matches('/').split('/').collect();
    let at = segs.windows(2).position(|w| w == ["v1", "models"])?;
    let id = &segs[at + 2..];
    if id.is_empty() || id.len() > 2 || id.iter().any(|s| s.is_empty()) {
        return None;
    }
    Some(unescape(&id.join("/")))
}

/// `raw` with its percent-escapes decoded (a malformed one kept as it is).
fn unescape(raw: &str) -> String {
    let b = raw.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        match (
            b[i],
            b.get(i + 1).copied().and_then(hex),
            b.get(i + 2).copied().and_then(hex),
        ) {
            (b'%', Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            (c, _, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Whether a (lower-cased) `Content-Type` declares a body the WAF parses as a form or XML.
pub(super) fn form_or_xml(ctype: Option<&str>) -> bool {
    ctype.is_some_and(|c| {
        c.starts_with("application/x-www-form-urlencoded")
            || c.starts_with("multipart/")
            || c.split(';')
                .next()
                .is_some_and(|m| m.trim().ends_with("xml"))
    })
}

/// Most completion tokens reserved (per choice) for a request that declares no budget, or
/// asks for none (a negative Ollama `num_predict` / llama.cpp `n_predict`), on a route with
/// a token limit; see [`default_reservation`].
pub(super) const DEFAULT_COMPLETION_RESERVATION: u64 = 1024;

/// The reservation per choice for a request without a budget under `tokens_per_minute`:
/// a tenth of the minute's budget, at most [`DEFAULT_COMPLETION_RESERVATION`] (a typical
/// chat answer), at least 1. Without a reservation nothing is held while such a request
/// runs, so N of them sent at once each saw the whole remaining budget and all passed;
/// with it, at most about ten run at once on a full bucket (a 60 000-per-minute limit:
/// about 58), and the rest wait. What the answer used replaces the reservation afterwards
/// (refunded when less, owed in full when more); a tenth keeps one-at-a-time callers of a
/// small limit from waiting for a bucket that is completely full again.
pub(super) fn default_reservation(tokens_per_minute: Option<u64>) -> u64 {
    tokens_per_minute.map_or(0, |t| (t / 10).clamp(1, DEFAULT_COMPLETION_RESERVATION))
}

/// Whether a request on `path` makes the backend generate text (everything but embedding,
/// tokenizing, scoring, listing and model-metadata endpoints): only those get
/// [`DEFAULT_COMPLETION_RESERVATION`].
pub(super) fn generates(path: &str) -> bool {
    let p = path.trim_end_matches('/');
    ![
        "/embeddings",
        "/embed",
        "/tokenize",
        "/detokenize",
        "/rerank",
        "/score",
        "/classify",
        "/pooling",
        "/models",
        "/count_tokens",
        "/api/show",
        "/apply-template",
    ]
    .iter()
    .any(|s| p.ends_with(s))
}

/// Whether a request without a body may be forwarded on a route that decides on request
/// bodies: `GET` / `HEAD` of read-only metadata a client of an AI API expects to reach —
/// model lists and one model (`…/models`, `…/models/{id}`, ids may hold `/`), file metadata
/// (`…/files`, `…/files/{id}`, not `…/files/{id}/content`), Ollama's `/api/tags`,
/// `/api/version`, `/api/ps`, TGI's `/info`, and health checks (`/health`, `/healthz`,
/// `/ping`, `/version`) — and `OPTIONS` (CORS preflight). Every reading of the path must
/// be one of those (`/v1/models/../slots` is `/v1/slots` to the backend).
pub(super) fn bodyless_allowed(method: &http::Method, path: &str) -> bool {
    if method == http::Method::OPTIONS {
        return true;
    }
    if method != http::Method::GET && method != http::Method::HEAD {
        return false;
    }
    let one = |p: &str| {
        let segs: Vec<&str> = p.trim_end_matches('/').split('/').skip(1).collect();
        if segs.is_empty() || segs.iter().any(|s| s.is_empty() || *s == "." || *s == "..") {
            return false;
        }
        let n = segs.len();
        let last = segs[n - 1];
        let prev = n.checked_sub(2).map_or("", |i| segs[i]);
        // `v1/NAME/` followed by 1..=max segments.
        let under_v1 = |name: &str, max: usize| {
            segs.windows(2)
                .position(|w| w == ["v1", name])
                .is_some_and(|i| (1..=max).contains(&(n - i - 2)))
        };
        [
            "models", "health", "healthz", "ping", "version", "info", "files",
        ]
        .contains(&last)
            || (prev == "api" && ["tags", "version", "ps"].contains(&last))
            || under_v1("models", 2)
            || (under_v1("files", 1) && last != "content")
    };
    match palisade_policy::http_path::views(path) {
        Ok(views) => views.iter().all(|v| one(v)),
        Err(_) => false,
    }
}

/// The endpoints a request with a body may reach on a route that decides on bodies, as
/// the last segments of the path (a route may put any prefix before them): inference and
/// generation APIs whose JSON bodies the gateway reads. OpenAI-compatible (and Azure's
/// `…/deployments/{d}/…`, vLLM's, SGLang's, llama.cpp's and TGI's OpenAI-style endpoints):
/// chat, completions, responses, embeddings, moderations, audio, images, rerank, score,
/// tokenize, detokenize, classify, pooling, and vLLM's / TGI's SageMaker-style
/// `invocations`; Anthropic's `/v1/messages` and `/v1/messages/count_tokens`; Ollama's
/// `/api/generate`, `/api/chat`, `/api/embed`, `/api/embeddings`, `/api/show`; llama.cpp's
/// `/completion`, `/infill`, `/embedding`, `/reranking`, `/apply-template`; TGI's and
/// SGLang's `/generate`, TGI's `/generate_stream`, TEI's `/embed`.
const BODY_ENDPOINTS: [&[&str]; 32] = [
    &["completions"],
    &["completion"],
    &["responses"],
    &["embeddings"],
    &["embedding"],
    &["embed"],
    &["moderations"],
    &["audio", "speech"],
    &["audio", "transcriptions"],
    &["audio", "translations"],
    &["images", "generations"],
    &["images", "edits"],
    &["images", "variations"],
    &["rerank"],
    &["reranking"],
    &["score"],
    &["tokenize"],
    &["detokenize"],
    &["classify"],
    &["pooling"],
    &["invocations"],
    &["v1", "messages"],
    &["v1", "messages", "count_tokens"],
    &["api", "generate"],
    &["api", "chat"],
    &["api", "embed"],
    &["api", "embeddings"],
    &["api", "show"],
    &["infill"],
    &["apply-template"],
    &["generate"],
    &["generate_stream"],
];

/// Whether a request with a body may be forwarded on a route that decides on request
/// bodies: a `POST` to one of [`BODY_ENDPOINTS`], or a read [`bodyless_allowed`] admits
/// (`GET` / `HEAD`) that happens to carry one. Every reading of the path must be one of
/// those. Anything else is not an inference call whose body the gateway understands: model
/// management (Ollama's `/api/pull`, `/api/push`, `/api/create`, `/api/copy`,
/// `/api/delete`), llama.cpp's `/slots/{id}?action=save|restore|erase` and `/props`, vLLM's
/// and SGLang's administration (`/load_lora_adapter`, `/sleep`, `/start_profile`,
/// `/update_weights_from_disk`, …). Before, their bodies were checked and the requests
/// forwarded.
pub(super) fn body_allowed(method: &http::Method, path: &str) -> bool {
    if method == http::Method::GET || method == http::Method::HEAD {
        return bodyless_allowed(method, path);
    }
    if method != http::Method::POST {
        return false;
    }
    let one = |p: &str| {
        let segs: Vec<&str> = p.trim_end_matches('/').split('/').collect();
        BODY_ENDPOINTS.iter().any(|e| segs.ends_with(e))
    };
    match palisade_policy::http_path::views(path) {
        Ok(views) => views.iter().all(|v| one(v)),
        Err(_) => false,
    }
}

/// Whether every reading of `path` is one of the route's `extraEndpoints` (a trailing `/`
/// aside), which it forwards besides [`BODY_ENDPOINTS`] and [`bodyless_allowed`] reads.
pub(super) fn extra_allowed(extra: &[String], path: &str) -> bool {
    if extra.is_empty() {
        return false;
    }
    let one = |p: &str| {
        let p = p.trim_end_matches('/');
        extra.iter().any(|e| e.trim_end_matches('/') == p)
    };
    match palisade_policy::http_path::views(path) {
        Ok(views) => views.iter().all(|v| one(v)),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// On a route that decides on bodies, a request without one may only read model lists,
    /// file metadata and health; before, every path was forwarded (`GET /slots` shows
    /// llama.cpp's slots with other clients' prompts, `DELETE /v1/files/x` deletes).
    #[test]
    fn bodyless_requests_reach_read_only_endpoints_only() {
        let get = http::Method::GET;
        for p in [
            "/v1/models",
            "/v1/models/",
            "/v1/models/gpt-4o-mini",
            "/v1/models/meta-llama/Llama-3.1-8B",
            "/v1/files",
            "/v1/files/file-abc",
            "/api/tags",
            "/api/version",
            "/api/ps",
            "/health",
            "/v1/health",
            "/ollama/api/tags",
            "/tgi/info",
            "/ping",
        ] {
            assert!(bodyless_allowed(&get, p), "{p}");
            assert!(bodyless_allowed(&http::Method::HEAD, p), "{p}");
        }
        for p in [
            "/",
            "/slots",
            "/v1/slots",
            "/props",
            "/metrics",
            "/v1/files/file-abc/content",
            "/v1/chat/completions",
            "/v1/batches",
            "/v1/fine_tuning/jobs",
            "/v1/models/../slots",
            "/v1/models/%2e%2e/slots",
            "/v1/models/a/b/c",
            "/models/v1/slots/x",
            "/v1//models",
            "/api/show",
        ] {
            assert!(!bodyless_allowed(&get, p), "{p}");
        }
        for m in [http::Method::POST, http::Method::DELETE, http::Method::PUT] {
            assert!(!bodyless_allowed(&m, "/v1/models/x"), "{m}");
            assert!(!bodyless_allowed(&m, "/health"), "{m}");
        }
        assert!(bodyless_allowed(
            &http::Method::OPTIONS,
            "/v1/chat/completions"
        ));
    }

    /// On a route that decides on bodies, a request with one reaches only inference
    /// endpoints; before, any path's JSON body was checked and the request forwarded
    /// (Ollama's `/api/push` sends a model to a registry, llama.cpp's `/slots/0?action=save`
    /// writes a slot to disk, vLLM's `/load_lora_adapter` loads weights from a path).
    #[test]
    fn bodies_reach_inference_endpoints_only() {
        let post = http::Method::POST;
        for p in [
            "/v1/chat/completions",
            "/v1/chat/completions/",
            "/v1/completions",
            "/v1/responses",
            "/v1/embeddings",
            "/v1/moderations",
            "/v1/audio/speech",
            "/v1/audio/transcriptions",
            "/v1/images/generations",
            "/v1/rerank",
            "/v2/rerank",
            "/score",
            "/tokenize",
            "/detokenize",
            "/classify",
            "/pooling",
            "/invocations",
            "/v1/messages",
            "/anthropic/v1/messages/count_tokens",
            "/openai/deployments/gpt-4o/chat/completions",
            "/openai/deployments/gpt%2D4o/embeddings",
            "/api/generate",
            "/api/chat",
            "/api/embed",
            "/api/embeddings",
            "/api/show",
            "/ollama/api/chat",
            "/completion",
            "/infill",
            "/embedding",
            "/reranking",
            "/apply-template",
            "/generate",
            "/generate_stream",
            "/v1/x/../chat/completions",
        ] {
            assert!(body_allowed(&post, p), "{p}");
        }
        for p in [
            "/",
            "/api/pull",
            "/api/push",
            "/api/create",
            "/api/copy",
            "/api/delete",
            "/api/blobs/sha256:abc",
            "/slots/0",
            "/props",
            "/lora-adapters",
            "/load_lora_adapter",
            "/v1/load_lora_adapter",
            "/unload_lora_adapter",
            "/start_profile",
            "/stop_profile",
            "/reset_prefix_cache",
            "/sleep",
            "/wake_up",
            "/update_weights_from_disk",
            "/flush_cache",
            "/v1/threads/t1/messages",
            "/v1/chat/completions/chatcmpl-1",
            "/v1/responses/resp_1/cancel",
            "/v1/fine_tuning/jobs",
            "/v1/files",
            "/v1/models/x",
            "/api/generate/..",
            "/api/generate/%2e%2e",
            "/v1/chat/completions%2F..%2F..%2Fapi%2Fpush",
            "/api/%zz/generate",
        ] {
            assert!(!body_allowed(&post, p), "{p}");
        }
        for m in [http::Method::PUT, http::Method::DELETE, http::Method::PATCH] {
            assert!(!body_allowed(&m, "/v1/chat/completions"), "{m}");
        }
        // A read that carries a body is judged as a read; OPTIONS is not a read here.
        assert!(body_allowed(&http::Method::GET, "/v1/models"));
        assert!(!body_allowed(&http::Method::GET, "/v1/chat/completions"));
        assert!(!body_allowed(&http::Method::OPTIONS, "/api/push"));
    }

    /// A route's `extraEndpoints` are matched exactly, in every reading of the path.
    #[test]
    fn extra_endpoints_match_every_reading() {
        let extra = vec!["/ollama/api/pull".to_string(), "/slots/0/".to_string()];
        for p in ["/ollama/api/pull", "/ollama/api/pull/", "/slots/0"] {
            assert!(extra_allowed(&extra, p), "{p}");
        }
        for p in [
            "/ollama/api/push",
            "/ollama/api/pull/x",
            "/api/pull",
            "/x/ollama/api/pull",
            "/ollama/api/pull/../push",
            "/ollama/api/%70ush",
            "/ollama/api/pull%2F..%2Fpush",
            "/slots/1",
        ] {
            assert!(!extra_allowed(&extra, p), "{p}");
        }
        assert!(!extra_allowed(&[], "/ollama/api/pull"));
    }

    /// A model's metadata names the model in the path, decoded as the backend decodes it.
    #[test]
    fn model_metadata_paths_name_their_model() {
        let m = |p: &str| model_in_path(p);
        assert_eq!(m("/v1/models/gpt-4o").as_deref(), Some("gpt-4o"));
        assert_eq!(m("/v1/models/gpt%2D4o/").as_deref(), Some("gpt-4o"));
        assert_eq!(
            m("/ollama/v1/models/meta-llama/Llama-3.1-8B").as_deref(),
            Some("meta-llama/Llama-3.1-8B")
        );
        assert_eq!(m("/v1/models/a%2Fb").as_deref(), Some("a/b"));
        assert_eq!(m("/v1/models"), None);
        assert_eq!(m("/v1/models/"), None);
        assert_eq!(m("/models/gpt-4o"), None);
        assert_eq!(m("/v1/models/a/b/c"), None);
        assert_eq!(m("/v1/chat/completions"), None);
    }

    #[test]
    fn reservations_for_requests_without_a_budget() {
        assert!(generates("/v1/chat/completions"));
        assert!(generates("/api/generate"));
        assert!(generates("/completion"));
        assert!(!generates("/v1/embeddings"));
        assert!(!generates("/api/embed"));
        assert!(!generates("/tokenize"));
        assert!(!generates("/v1/messages/count_tokens"));
        assert_eq!(default_reservation(None), 0);
        assert_eq!(default_reservation(Some(1000)), 100);
        assert_eq!(default_reservation(Some(60_000)), 1024);
        assert_eq!(default_reservation(Some(5)), 1);
    }
}
