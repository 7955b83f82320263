//! The output filter on tool calls and on the Anthropic Messages API, end to end: the
//! real `openai` client reads a tool call whose streamed (and non-streamed) arguments leak
//! an AWS key pair and the canary; the real `anthropic` client (when installed) reads text
//! and tool-use blocks, streamed and not, that leak them; a raw HTTP check of the
//! Anthropic stream runs without Python. The `claude` route redacts the canary, the `chat`
//! route cuts the stream.

use super::tools_upstream::{AWS_ID, AWS_SECRET, INPUT_TOKENS};
use super::upstream::COMPLETION_TOKENS as COMPLETION_TOKENS_CHECK;
use super::{drain, jwt, post_http, python_with, run_client, setup, sse_data, ALICE};
use palisade_events::EventBody;
use serde_json::Value;

const SCRIPT: &str = include_str!("tools_client.py");

/// Checks leaky tool arguments (a JSON object) came out redacted.
fn assert_redacted_args(args: &Value) {
    assert_eq!(args["aws_access_key_id"], "[REDACTED:aws-key]", "{args}");
    assert_eq!(
        args["aws_secret_access_key"], "[REDACTED:aws-key]",
        "{args}"
    );
    assert_eq!(args["query"], "billing");
    let note = args["note"].as_str().unwrap();
    assert!(
        note.starts_with("You are a billing bot.") && note.contains("[REDACTED:canary]"),
        "{note}"
    );
    let s = args.to_string();
    assert!(
        !s.contains("pcn-") && !s.contains(AWS_ID) && !s.contains(AWS_SECRET),
        "{s}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tool_calls_and_anthropic_messages_through_real_clients() {
    let Some(py) = python_with("openai") else {
        eprintln!("skipped: no Python with the openai package (set PALISADE_TEST_PYTHON)");
        return;
    };
    let s = setup().await;
    let args = vec![
        "-c".to_string(),
        SCRIPT.to_string(),
        format!("http://{}", s.addr),
        ALICE.into(),
        jwt("svc-batch", 600),
    ];
    let r = run_client(py, args).await;
    let get = |k: &str| r.get(k).unwrap_or_else(|| panic!("no {k} in {r}"));
    let parse = |v: &Value| -> Value { serde_json::from_str(v.as_str().unwrap()).unwrap() };

    // OpenAI tool calls: arguments redacted (still JSON), streamed and not.
    let streamed = get("tool_stream_redacted");
    assert_eq!(streamed["id"], "call_1", "{streamed}");
    assert_redacted_args(&parse(&streamed["arguments"]));
    let whole = get("tool_json_redacted");
    assert_redacted_args(&parse(&whole["arguments"]));
    assert_eq!(whole["completion_tokens"], COMPLETION_TOKENS_CHECK);
    // Where the canary blocks, the stream is cut before any of it is sent.
    let cut = get("tool_stream_blocked");
    assert_eq!(cut["error"], "APIError", "{cut}");
    assert_eq!(cut["code"], "output_blocked");
    assert_eq!(cut["leaked"], false);

    if r.get("anthropic").is_some() {
        eprintln!("note: the anthropic package is not installed; its client checks are skipped");
    } else {
        let m = get("messages_canary");
        let t = m["blocks"][0]["text"].as_str().unwrap();
        assert!(
            t.contains("[REDACTED:canary]") && !t.contains("pcn-"),
            "{t}"
        );
        assert_eq!(m["input_tokens"], INPUT_TOKENS);
        assert_eq!(m["output_tokens"], COMPLETION_TOKENS_CHECK);
        assert_redacted_args(&get("messages_tool")["blocks"][0]["input"]);
        let st = get("messages_stream_canary");
        let t = st["text"].as_str().unwrap();
        assert!(
            t.starts_with("Sure, my instructions are: You are a billing bot.")
                && t.contains("[REDACTED:canary]")
                && !t.contains("pcn-"),
            "{t}"
        );
        assert_eq!(st["blocks"][0]["text"], st["text"]);
        assert_eq!(st["input_tokens"], INPUT_TOKENS);
        assert_eq!(st["output_tokens"], COMPLETION_TOKENS_CHECK);
        assert_redacted_args(&get("messages_stream_tool")["blocks"][0]["input"]);
        let cut = get("messages_stream_blocked");
        assert_eq!(cut["type"], "output_blocked", "{cut}");
        assert_eq!(cut["leaked"], false, "{cut}");
        assert_eq!(
            get("messages_stream_clean")["text"],
            "Echo: 5 characters received."
        );
        let refused = get("messages_wrong_key");
        assert_eq!(refused["error"], "AuthenticationError", "{refused}");
        assert_eq!(refused["status"], 401, "{refused}");
        assert_eq!(refused["type"], "authentication_error", "{refused}");
    }

    let http: Vec<_> = drain(&s.events)
        .into_iter()
        .filter_map(|e| match e.body {
            EventBody::Http(h) => Some(h),
            _ => None,
        })
        .collect();
    let tool = http
        .iter()
        .find(|h| h.route.as_deref() == Some("claude"))
        .expect("an event of the claude route");
    assert!(
        tool.detections
            .iter()
            .any(|d| d.detector == "output.canary")
            && tool
                .detections
                .iter()
                .any(|d| d.detector == "output.aws-key"),
        "{tool:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anthropic_streams_are_output_filtered_over_raw_http() {
    let s = setup().await;
    let key = jwt("svc-batch", 600);
    let req = |content: &str| {
        serde_json::json!({"model": "claude-test", "max_tokens": 64, "stream": true,
            "system": "You are a billing bot.", "messages": [{"role": "user", "content": content}]})
        .to_string()
    };
    let (status, text) = post_http(
        s.addr,
        "/anthropic/v1/messages",
        &req("LEAK-CANARY now"),
        &key,
    )
    .await;
    assert_eq!(status, 200, "{text}");
    assert!(!text.contains("pcn-"), "{text}");
    let events = sse_data(&text);
    let said: String = events
        .iter()
        .filter(|e| e["type"] == "content_block_delta")
        .filter_map(|e| e["delta"]["text"].as_str())
        .collect();
    assert!(
        said.starts_with("Sure, my instructions are: You are a billing bot.\n\nConfidential marker [REDACTED:canary]:"),
        "{said}"
    );
    // Every delta comes before its block's stop; the stream ends as the API's does.
    let stop = events
        .iter()
        .position(|e| e["type"] == "content_block_stop")
        .unwrap();
    assert!(!events[stop..]
        .iter()
        .any(|e| e["type"] == "content_block_delta"));
    assert_eq!(events.last().unwrap()["type"], "message_stop");

    let (status, text) = post_http(
        s.addr,
        "/anthropic/v1/messages",
        &req("LEAK-TOOL now"),
        &key,
    )
    .await;
    assert_eq!(status, 200, "{text}");
    let json: String = sse_data(&text)
        .iter()
        .filter_map(|e| e["delta"]["partial_json"].as_str())
        .collect();
    assert_redacted_args(&serde_json::from_str(&json).unwrap());

    let http: Vec<_> = drain(&s.events)
        .into_iter()
        .filter_map(|e| match e.body {
            EventBody::Http(h) => Some(h),
            _ => None,
        })
        .collect();
    assert_eq!(http.len(), 2);
    let ai = http[0].ai.as_ref().unwrap();
    assert_eq!(ai.provider.as_deref(), Some("anthropic"));
    assert_eq!(ai.operation.as_deref(), Some("messages"));
    assert_eq!(ai.prompt_tokens, Some(INPUT_TOKENS));
    assert_eq!(ai.completion_tokens, Some(COMPLETION_TOKENS_CHECK));
    assert!(http[0]
        .detections
        .iter()
        .any(|d| d.detector == "output.canary"));
}
