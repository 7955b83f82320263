//! Token accounting and request checks of the AI gateway that a client could get around
//! (a review of known limits): Ollama's and llama.cpp's completion budgets, requests
//! declaring no budget sent all at once, prompt text in message names, structured-output
//! schemas and vLLM documents, and requests without a body to endpoints the route cannot
//! check. The gateway of `body_differentials.rs` is used: `metered` has a limit of 1000
//! tokens a minute, `guarded` the prompt guard, `ai` models, keys and the guard. The echo
//! backend answers `…?/slow` after 3 s and reports no usage (so a request settles to its
//! prompt).

use crate::body_differentials::{gateway, send, INJECTION, KEY};
use crate::plain_routes::echo_backend;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const JSON: &str = "Content-Type: application/json\r\n";

/// Sends every (path, body) at once; returns the statuses in order.
async fn all_at_once(addr: SocketAddr, reqs: Vec<(&'static str, String)>) -> Vec<u16> {
    let tasks: Vec<_> = reqs
        .into_iter()
        .map(|(path, body)| {
            tokio::spawn(async move { send(addr, path, JSON, body.as_bytes()).await.0 })
        })
        .collect();
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

/// Ollama's `options.num_predict` (`/api/generate`, `/api/chat`) and llama.cpp's `n_predict`
/// (`/completion`) are charged up front like `max_tokens`: of two requests sent together,
/// each declaring 600 tokens on a 1000-token-per-minute limit, one waits (429). Before,
/// both were admitted on their prompts (a token or two) and could overdraw together. A
/// budget that is not an integer is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ollama_and_llama_cpp_budgets_are_charged_up_front() {
    let (backend, _) = echo_backend().await;
    let gw = gateway(backend).await;
    let cases: [(&str, &'static str, serde_json::Value); 3] = [
        (
            "Ollama generate",
            "/metered/api/generate?/slow",
            serde_json::json!({"model": "gpt-4o-mini", "prompt": "hi", "options": {"num_predict": 600}}),
        ),
        (
            "Ollama chat",
            "/metered/api/chat?/slow",
            serde_json::json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}],
                "options": {"num_predict": 600}}),
        ),
        (
            "llama.cpp completion",
            "/metered/completion?/slow",
            serde_json::json!({"model": "gpt-4o-mini", "prompt": "hi", "n_predict": 600}),
        ),
    ];
    for (name, path, body) in cases {
        let body = body.to_string();
        let mut got = all_at_once(gw.addr, vec![(path, body.clone()), (path, body)]).await;
        got.sort_unstable();
        assert_eq!(got, [200, 429], "{name}");
    }
    let (status, answer) = send(
        gw.addr,
        "/metered/api/generate",
        JSON,
        br#"{"model":"gpt-4o-mini","prompt":"hi","options":{"num_predict":"600"}}"#,
    )
    .await;
    assert_eq!(status, 400, "{answer}");
    assert!(
        answer.contains("\"code\":\"invalid_parameter\""),
        "{answer}"
    );
}

/// Requests that declare no budget, or an unbounded one (`num_predict: -1`,
/// `n_predict: -2`), reserve a tenth of the minute's budget each (at most 1024 tokens), so
/// sixteen sent at once on a 1000-token-per-minute limit cannot all pass: about nine do,
/// the rest wait. Before, nothing was reserved and every one of them passed on its prompt
/// alone. Once they are answered the reservation is settled to what they used (their
/// prompts here), so the next request passes at once — without the settlement the bucket
/// would still be short.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_without_a_budget_cannot_burst_past_the_limit() {
    let (backend, _) = echo_backend().await;
    let gw = gateway(backend).await;
    let chat = serde_json::json!({"model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": "hi"}]})
    .to_string();
    let ollama =
        serde_json::json!({"model": "gpt-4o-mini", "prompt": "hi", "options": {"num_predict": -1}})
            .to_string();
    let llama =
        serde_json::json!({"model": "gpt-4o-mini", "prompt": "hi", "n_predict": -2}).to_string();
    let reqs: Vec<(&'static str, String)> = (0..16)
        .map(|i| match i % 3 {
            0 => ("/metered/v1/chat/completions?/slow", chat.clone()),
            1 => ("/metered/api/generate?/slow", ollama.clone()),
            _ => ("/metered/completion?/slow", llama.clone()),
        })
        .collect();
    let got = all_at_once(gw.addr, reqs).await;
    let passed = got.iter().filter(|s| **s == 200).count();
    let waited = got.iter().filter(|s| **s == 429).count();
    assert_eq!(passed + waited, 16, "{got:?}");
    assert!((8..=11).contains(&passed), "{got:?}");
    let (status, answer) = send(
        gw.addr,
        "/metered/v1/chat/completions",
        JSON,
        chat.as_bytes(),
    )
    .await;
    assert_eq!(status, 200, "settled: {answer}");
}

/// A message's `name`, structured-output schemas (`response_format` descriptions and
/// titles, vLLM's `guided_json`), vLLM's chat `documents` and `chat_template_kwargs`, a
/// request's own `chat_template`, and llama.cpp's multimodal prompt objects are read by the
/// prompt guard. Before, each reached the backend with the injection unscored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_schemas_and_documents_are_guarded() {
    let (backend, _) = echo_backend().await;
    let gw = gateway(backend).await;
    let hi = serde_json::json!([{"role": "user", "content": "hi"}]);
    let schema = serde_json::json!({"type": "object", "properties": {
        "answer": {"type": "string", "description": INJECTION}}});
    let cases = [
        (
            "message name",
            "/guarded/v1/chat/completions",
            serde_json::json!({"model": "m", "messages": [
                {"role": "user", "name": INJECTION, "content": "hi"}]}),
        ),
        (
            "response_format schema description",
            "/guarded/v1/chat/completions",
            serde_json::json!({"model": "m", "messages": hi, "response_format": {
                "type": "json_schema", "json_schema": {"name": "a", "schema": schema}}}),
        ),
        (
            "response_format schema title",
            "/guarded/v1/chat/completions",
            serde_json::json!({"model": "m", "messages": hi, "response_format": {
                "type": "json_schema", "json_schema": {"name": "a",
                    "schema": {"type": "object", "title": INJECTION}}}}),
        ),
        (
            "vLLM guided_json as a string",
            "/guarded/v1/chat/completions",
            serde_json::json!({"model": "m", "messages": hi, "guided_json": schema.to_string()}),
        ),
        (
            "vLLM documents",
            "/guarded/v1/chat/completions",
            serde_json::json!({"model": "m", "messages": hi,
                "documents": [{"title": "Report", "text": INJECTION}]}),
        ),
        (
            "vLLM chat_template_kwargs",
            "/guarded/v1/chat/completions",
            serde_json::json!({"model": "m", "messages": hi,
                "chat_template_kwargs": {"system_note": INJECTION}}),
        ),
        (
            "request chat_template",
            "/guarded/v1/chat/completions",
            serde_json::json!({"model": "m", "messages": hi,
                "chat_template": format!("{INJECTION}{{% for m in messages %}}{{{{ m.content }}}}{{% endfor %}}")}),
        ),
        (
            "llama.cpp multimodal prompt object",
            "/guarded/completion",
            serde_json::json!({"prompt": [{"prompt_string": INJECTION, "multimodal_data": []}]}),
        ),
    ];
    let mut wrong = Vec::new();
    for (name, path, body) in &cases {
        let (status, answer) = send(gw.addr, path, JSON, body.to_string().as_bytes()).await;
        let reached = answer.contains("\n---\n");
        if status != 400 || !answer.contains("\"code\":\"prompt_injection_detected\"") || reached {
            wrong.push(format!("{name}: {status} (backend reached: {reached})"));
        }
    }
    assert!(wrong.is_empty(), "not refused:\n{}", wrong.join("\n"));
    // Harmless names, schemas and documents pass as sent.
    let body = serde_json::json!({"model": "m",
        "messages": [{"role": "user", "name": "alice", "content": "hi"}],
        "response_format": {"type": "json_schema", "json_schema": {"name": "a", "schema": {
            "type": "object", "title": "Answer", "properties": {
                "answer": {"type": "string", "description": "The capital city."}}}}},
        "documents": [{"title": "Atlas", "text": "Paris is the capital of France."}]})
    .to_string();
    let (status, answer) = send(
        gw.addr,
        "/guarded/v1/chat/completions",
        JSON,
        body.as_bytes(),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert!(answer.ends_with(&format!("\n---\n{body}")), "{answer}");
}

/// One request without a body; returns the status and the answer.
async fn bodyless(addr: SocketAddr, method: &str, path: &str) -> (u16, String) {
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer {KEY}\r\nConnection: close\r\n\r\n"
    );
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out)).await;
    let text = String::from_utf8_lossy(&out).to_string();
    (crate::status(&text), text)
}

/// On a route that decides on request bodies, a request without a body reaches only
/// read-only endpoints an AI API client expects (model lists, one model, file metadata,
/// Ollama's tags, health); any other is `403 endpoint_not_allowed`. Before, each of these
/// reached the backend: llama.cpp's `/slots` (other clients' prompts), `/metrics`, a
/// `DELETE` of a file, a file's content, a fine-tuning job cancelled. A route that checks
/// nothing still forwards them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_without_a_body_reach_only_read_only_endpoints() {
    let (backend, _) = echo_backend().await;
    let gw = gateway(backend).await;
    for (method, path) in [
        ("GET", "/v1/models"),
        ("GET", "/v1/models/gpt-4o-mini"),
        ("GET", "/v1/files/file-abc"),
        ("HEAD", "/v1/models"),
        ("GET", "/metered/api/tags"),
        ("GET", "/metered/health"),
    ] {
        let (status, answer) = bodyless(gw.addr, method, path).await;
        assert_eq!(status, 200, "{method} {path}: {answer}");
    }
    for (method, path) in [
        ("GET", "/v1/slots"),
        ("GET", "/v1/metrics"),
        ("DELETE", "/v1/files/file-abc"),
        ("GET", "/v1/files/file-abc/content"),
        ("POST", "/v1/fine_tuning/jobs/ft-1/cancel"),
        ("GET", "/v1/chat/completions"),
        ("GET", "/metered/slots"),
        ("POST", "/metered/slots/0?action=erase"),
        ("GET", "/guarded/props"),
        ("GET", "/v1/models/x/../../v1/slots"),
    ] {
        let (status, answer) = bodyless(gw.addr, method, path).await;
        assert_eq!(status, 403, "{method} {path}: {answer}");
        assert!(
            answer.contains("\"code\":\"endpoint_not_allowed\""),
            "{method} {path}: {answer}"
        );
        assert!(!answer.contains("\n---\n"), "reached the backend: {answer}");
    }
    let (status, answer) = bodyless(gw.addr, "GET", "/open/slots").await;
    assert_eq!(status, 200, "{answer}");
}

/// On a route that decides on request bodies, a request with a JSON body reaches only the
/// inference endpoints whose bodies the gateway reads; model management and server
/// administration are `403 endpoint_not_allowed`. Before, each of these was checked (a
/// model the lists allow, no injection) and forwarded: Ollama's `/api/push` (a model sent
/// to a registry), `/api/pull`, `/api/create`, `/api/copy`, `/api/delete`, llama.cpp's slot
/// save / restore / erase and `/props`, vLLM's and SGLang's LoRA, profiling, cache, sleep
/// and weight endpoints. A route that checks nothing still forwards them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_with_a_body_reach_only_inference_endpoints() {
    let (backend, _) = echo_backend().await;
    let gw = gateway(backend).await;
    let body =
        r#"{"model":"gpt-4o-mini","filename":"slot.bin","lora_name":"x","lora_path":"/tmp/x"}"#;
    let mut wrong = Vec::new();
    for path in [
        "/metered/api/push",
        "/guarded/api/pull",
        "/metered/api/pull/x",
        "/metered/api/create",
        "/metered/api/copy",
        "/metered/api/delete",
        "/guarded/api/push",
        "/guarded/slots/0?action=save",
        "/guarded/slots/0?action=restore",
        "/guarded/slots/0?action=erase",
        "/guarded/props",
        "/guarded/load_lora_adapter",
        "/guarded/v1/load_lora_adapter",
        "/guarded/unload_lora_adapter",
        "/guarded/start_profile",
        "/guarded/stop_profile",
        "/guarded/reset_prefix_cache",
        "/guarded/sleep",
        "/guarded/wake_up",
        "/guarded/update_weights_from_disk",
        "/guarded/flush_cache",
        "/v1/api/push",
        "/v1/models/gpt-4o-mini",
        "/v1/threads/t1/messages",
    ] {
        let (status, answer) = send(gw.addr, path, JSON, body.as_bytes()).await;
        let reached = answer.contains("\n---\n");
        if status != 403 || !answer.contains("\"code\":\"endpoint_not_allowed\"") || reached {
            wrong.push(format!("{path}: {status} (backend reached: {reached})"));
        }
    }
    assert!(wrong.is_empty(), "forwarded:\n{}", wrong.join("\n"));
    // Inference endpoints of each API still pass, the body as sent.
    let chat = r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}"#;
    let prompt = r#"{"model":"gpt-4o-mini","prompt":"hi","inputs":"hi","input":"hi"}"#;
    for (path, body) in [
        ("/metered/v1/chat/completions", chat),
        ("/metered/api/chat", chat),
        ("/metered/api/generate", prompt),
        ("/metered/api/embed", prompt),
        ("/metered/api/show", r#"{"model":"gpt-4o-mini"}"#),
        ("/metered/v1/messages", chat),
        ("/metered/v1/messages/count_tokens", chat),
        (
            "/metered/openai/deployments/gpt-4o-mini/chat/completions",
            chat,
        ),
        ("/guarded/v1/embeddings", prompt),
        ("/guarded/v1/rerank", prompt),
        ("/guarded/tokenize", prompt),
        ("/guarded/completion", prompt),
        ("/guarded/generate_stream", prompt),
        ("/guarded/apply-template", chat),
        ("/v1/invocations", chat),
    ] {
        let (status, answer) = send(gw.addr, path, JSON, body.as_bytes()).await;
        assert_eq!(status, 200, "{path}: {answer}");
        assert!(
            answer.ends_with(&format!("\n---\n{body}")),
            "{path}: {answer}"
        );
    }
    let (status, answer) = send(gw.addr, "/open/api/push", JSON, body.as_bytes()).await;
    assert_eq!(status, 200, "{answer}");
    // A route's `extraEndpoints` pass, checked like any request.
    let pull = r#"{"model":"gpt-4o-mini"}"#;
    let (status, answer) = send(gw.addr, "/metered/api/pull", JSON, pull.as_bytes()).await;
    assert_eq!(status, 200, "{answer}");
    assert!(answer.ends_with(&format!("\n---\n{pull}")), "{answer}");
    let (status, answer) = send(gw.addr, "/metered/api/pull", JSON, br#"{"model":"gpt-4o"}"#).await;
    assert_eq!(status, 403, "{answer}");
    assert!(
        answer.contains("\"code\":\"model_not_allowed\""),
        "{answer}"
    );
}

/// A model's metadata (`GET /v1/models/{id}`) is read only for models the route serves and
/// the consumer may use, as generation requests are: a model the route does not serve is
/// `404 model_not_found`, one the consumer may not use `403 model_not_allowed`. Before,
/// both were forwarded and answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn model_metadata_follows_the_model_lists() {
    let (backend, _) = echo_backend().await;
    let gw = gateway(backend).await;
    for (path, want, code) in [
        ("/v1/models/gpt-4o", 403, "model_not_allowed"),
        ("/v1/models/gpt-%34o", 403, "model_not_allowed"),
        ("/v1/models/llama-3-70b", 404, "model_not_found"),
        ("/v1/models/meta-llama/Llama-3.1-8B", 404, "model_not_found"),
        ("/metered/v1/models/gpt-4o", 403, "model_not_allowed"),
    ] {
        let (status, answer) = bodyless(gw.addr, "GET", path).await;
        assert_eq!(status, want, "{path}: {answer}");
        assert!(
            answer.contains(&format!("\"code\":\"{code}\"")),
            "{path}: {answer}"
        );
        assert!(!answer.contains("\n---\n"), "reached the backend: {answer}");
    }
    for path in [
        "/v1/models/gpt-4o-mini",
        "/v1/models",
        "/metered/v1/models/gpt-4o-mini",
    ] {
        let (status, answer) = bodyless(gw.addr, "GET", path).await;
        assert_eq!(status, 200, "{path}: {answer}");
    }
    // Ollama's `/api/show` names its model in the body, checked as any request's.
    let (status, answer) = send(gw.addr, "/metered/api/show", JSON, br#"{"model":"gpt-4o"}"#).await;
    assert_eq!(status, 403, "{answer}");
    assert!(
        answer.contains("\"code\":\"model_not_allowed\""),
        "{answer}"
    );
}

/// Tool and function names (definitions and calls in the history), names and values inside
/// tool schemas (property names, `enum`, `const`, `default`), Ollama's `tool_name` and
/// llama.cpp's `input_extra[].filename` are read by the prompt guard. Before, each reached
/// the backend with the injection unscored, though the model reads all of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tool_names_schema_values_and_file_names_are_guarded() {
    let (backend, _) = echo_backend().await;
    let gw = gateway(backend).await;
    let hi = serde_json::json!([{"role": "user", "content": "hi"}]);
    let tool = |parameters: serde_json::Value| {
        serde_json::json!([{"type": "function", "function": {"name": "lookup",
            "description": "Looks a word up.", "parameters": parameters}}])
    };
    let chat = |extra: serde_json::Value| {
        let mut b = serde_json::json!({"model": "m", "messages": hi});
        b.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        b
    };
    let cases = [
        (
            "tool name",
            "/guarded/v1/chat/completions",
            chat(
                serde_json::json!({"tools": [{"type": "function", "function": {
                "name": INJECTION, "parameters": {"type": "object"}}}]}),
            ),
        ),
        (
            "property name",
            "/guarded/v1/chat/completions",
            chat(
                serde_json::json!({"tools": tool(serde_json::json!({"type": "object",
                "properties": {INJECTION: {"type": "string"}}}))}),
            ),
        ),
        (
            "enum value",
            "/guarded/v1/chat/completions",
            chat(
                serde_json::json!({"tools": tool(serde_json::json!({"type": "object",
                "properties": {"w": {"type": "string", "enum": ["a", INJECTION]}}}))}),
            ),
        ),
        (
            "const value",
            "/guarded/v1/chat/completions",
            chat(
                serde_json::json!({"tools": tool(serde_json::json!({"type": "object",
                "properties": {"w": {"const": INJECTION}}}))}),
            ),
        ),
        (
            "default value",
            "/guarded/v1/chat/completions",
            chat(
                serde_json::json!({"tools": tool(serde_json::json!({"type": "object",
                "properties": {"w": {"type": "string", "default": INJECTION}}}))}),
            ),
        ),
        (
            "tool call name in the history",
            "/guarded/v1/chat/completions",
            serde_json::json!({"model": "m", "messages": [
                {"role": "assistant", "content": null, "tool_calls": [{"id": "1",
                    "type": "function", "function": {"name": INJECTION, "arguments": "{}"}}]},
                {"role": "tool", "tool_call_id": "1", "content": "ok"}]}),
        ),
        (
            "Ollama tool call arguments (an object)",
            "/guarded/api/chat",
            serde_json::json!({"model": "m", "messages": [
                {"role": "assistant", "content": "", "tool_calls": [{"function": {
                    "name": "lookup", "arguments": {"word": INJECTION}}}]}]}),
        ),
        (
            "Ollama tool_name",
            "/guarded/api/chat",
            serde_json::json!({"model": "m", "messages": [
                {"role": "tool", "content": "ok", "tool_name": INJECTION}]}),
        ),
        (
            "llama.cpp input_extra filename",
            "/guarded/infill",
            serde_json::json!({"input_prefix": "def f():", "input_suffix": "",
                "input_extra": [{"filename": INJECTION, "text": "x = 1"}]}),
        ),
    ];
    let mut wrong = Vec::new();
    for (name, path, body) in &cases {
        let (status, answer) = send(gw.addr, path, JSON, body.to_string().as_bytes()).await;
        let reached = answer.contains("\n---\n");
        if status != 400 || !answer.contains("\"code\":\"prompt_injection_detected\"") || reached {
            wrong.push(format!("{name}: {status} (backend reached: {reached})"));
        }
    }
    assert!(wrong.is_empty(), "not refused:\n{}", wrong.join("\n"));
    // Ordinary tools pass as sent.
    let body = chat(
        serde_json::json!({"tools": tool(serde_json::json!({"type": "object",
        "properties": {"word": {"type": "string", "enum": ["apple", "pear"],
            "default": "apple"}}, "required": ["word"]}))}),
    )
    .to_string();
    let (status, answer) = send(
        gw.addr,
        "/guarded/v1/chat/completions",
        JSON,
        body.as_bytes(),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert!(answer.ends_with(&format!("\n---\n{body}")), "{answer}");
}
