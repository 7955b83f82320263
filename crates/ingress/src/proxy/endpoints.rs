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
    Some(String::from_utf8_lossy(&out).into_owned())
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
/// tokenizing, scoring and listing endpoints): only those get
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
