//! AI-API awareness: which requests are calls to OpenAI-compatible APIs, Anthropic or the
//! Hugging Face Hub (downloads vs uploads), the model asked for, and the token usage the
//! response reports (plain JSON or a server-sent event stream). Pure.

use palisade_events::{AiInfo, Transfer};

/// Request and response bytes kept for reading the model and the usage.
pub const MAX_CAPTURE: usize = 1 << 20;

/// What a request is, judged from its host, method and path.
pub fn classify(host: &str, method: &str, path: &str) -> Option<AiInfo> {
    let op = |provider: &str, operation: &str| {
        Some(AiInfo {
            provider: Some(provider.to_string()),
            operation: Some(operation.to_string()),
            ..AiInfo::default()
        })
    };
    // `host` is `suffix` or a name under it (no allocation: this runs on every request).
    let is = |suffix: &str| {
        host.strip_suffix(suffix)
            .is_some_and(|rest| rest.is_empty() || rest.ends_with('.'))
    };
    if method == "POST" && path.ends_with("/v1/messages") && !is("openai.com") {
        return op("anthropic", "messages");
    }
    let openai = if is("openai.com") {
        "openai"
    } else {
        "openai-compatible"
    };
    for (tail, operation) in [
        ("/chat/completions", "chat"),
        ("/completions", "completion"),
        ("/embeddings", "embeddings"),
        ("/responses", "responses"),
    ] {
        if method == "POST" && path.ends_with(tail) && path.contains("/v1") {
            return op(openai, operation);
        }
    }
    if is("huggingface.co") || is("hf.co") || path.contains("/resolve/") {
        let upload = matches!(method, "POST" | "PUT" | "PATCH")
            && (path.contains("/commit/")
                || path.contains("/preupload/")
                || path.contains("/upload")
                || path.contains("/info/lfs/"));
        if upload {
            return Some(AiInfo {
                provider: Some("huggingface".into()),
                operation: Some("upload".into()),
                transfer: Some(Transfer::Upload),
                ..AiInfo::default()
            });
        }
        if matches!(method, "GET" | "HEAD") && path.contains("/resolve/") {
            return Some(AiInfo {
                provider: Some("huggingface".into()),
                operation: Some("download".into()),
                transfer: Some(Transfer::Download),
                ..AiInfo::default()
            });
        }
    }
    None
}

/// Whether the call's bodies are worth reading (model and usage live there).
pub fn wants_bodies(info: &AiInfo) -> bool {
    info.transfer.is_none()
}

/// The `model` of a JSON request body.
pub fn request_model(body: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    v.get("model")?.as_str().map(str::to_string)
}

/// Token usage from a response: a JSON object with `usage`, or the last `usage` in a
/// server-sent event stream. `(prompt, completion, model)`.
pub fn response_usage(body: &[u8]) -> (Option<u64>, Option<u64>, Option<String>) {
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) {
        return usage_of(&v);
    }
    let mut out = (None, None, None);
    for line in body.split(|&b| b == b'\n') {
        let Some(data) = line.strip_prefix(b"data:") else {
            continue;
        };
        let Ok(v) = serde_json::from_slice::<serde_json::Value>(data.trim_ascii()) else {
            continue;
        };
        // Anthropic streams usage inside `message` (start) and at top level (delta).
        let target = v.get("message").unwrap_or(&v);
        let (p, c, m) = usage_of(target);
        let (p2, c2, _) = usage_of(&v);
        out.0 = p.or(p2).or(out.0);
        out.1 = c2.or(c).or(out.1);
        out.2 = m.or(out.2);
    }
    out
}

fn usage_of(v: &serde_json::Value) -> (Option<u64>, Option<u64>, Option<String>) {
    let model = v.get("model").and_then(|m| m.as_str()).map(str::to_string);
    let Some(u) = v.get("usage") else {
        return (None, None, model);
    };
    let n = |k: &str| u.get(k).and_then(|x| x.as_u64());
    (
        n("prompt_tokens").or(n("input_tokens")),
        n("completion_tokens").or(n("output_tokens")),
        model,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn providers_and_operations() {
        let c = |h, m, p| classify(h, m, p).map(|i| (i.provider.unwrap(), i.operation.unwrap()));
        let s = |a: &str, b: &str| Some((a.to_string(), b.to_string()));
        assert_eq!(
            c("api.openai.com", "POST", "/v1/chat/completions"),
            s("openai", "chat")
        );
        // A name merely ending in the provider's domain is not the provider.
        assert_eq!(
            c("notopenai.com", "POST", "/v1/chat/completions"),
            s("openai-compatible", "chat")
        );
        assert_eq!(c("example.test", "GET", "/"), None);
        assert_eq!(
            c("vllm.test", "POST", "/v1/embeddings"),
            s("openai-compatible", "embeddings")
        );
        assert_eq!(
            c("api.anthropic.com", "POST", "/v1/messages"),
            s("anthropic", "messages")
        );
        assert_eq!(
            c(
                "huggingface.co",
                "GET",
                "/org/model/resolve/main/model.safetensors"
            ),
            s("huggingface", "download")
        );
        assert_eq!(
            c(
                "huggingface.co",
                "POST",
                "/api/models/org/model/commit/main"
            ),
            s("huggingface", "upload")
        );
        assert_eq!(c("example.test", "GET", "/index.html"), None);
    }

    #[test]
    fn usage_plain_and_streamed() {
        let plain = br#"{"model":"gpt-x","usage":{"prompt_tokens":12,"completion_tokens":5}}"#;
        assert_eq!(
            response_usage(plain),
            (Some(12), Some(5), Some("gpt-x".into()))
        );
        let sse = b"data: {\"model\":\"m\",\"choices\":[]}\n\ndata: {\"choices\":[],\"usage\":{\"prompt_tokens\":7,\"completion_tokens\":3}}\n\ndata: [DONE]\n";
        assert_eq!(response_usage(sse), (Some(7), Some(3), Some("m".into())));
        let anthropic = b"event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"model\":\"claude-x\",\"usage\":{\"input_tokens\":9,\"output_tokens\":1}}}\n\nevent: message_delta\ndata: {\"type\":\"message_delta\",\"usage\":{\"output_tokens\":15}}\n";
        assert_eq!(
            response_usage(anthropic),
            (Some(9), Some(15), Some("claude-x".into()))
        );
        assert_eq!(
            request_model(br#"{"model":"gpt-4o","messages":[]}"#),
            Some("gpt-4o".into())
        );
        assert_eq!(response_usage(b"\xff garbage"), (None, None, None));
    }
}
