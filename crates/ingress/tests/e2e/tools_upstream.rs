//! Backend answers that call tools, for the output-filter tests: a chat/completions request
//! whose last user message says `LEAK-TOOL` gets a tool call whose arguments hold an AWS key
//! pair and the system prompt (with the gateway's canary); `/v1/messages` answers in the
//! Anthropic Messages shape (system prompt in the top-level `system`): `LEAK-CANARY`
//! repeats the system prompt as text, `LEAK-TOOL` writes the same leaky tool input,
//! anything else is an echo. Streams are cut into small deltas.

use super::upstream::{ChannelBody, COMPLETION_TOKENS};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Response;
use serde_json::{json, Value};
use tokio::sync::mpsc;

pub(crate) const AWS_ID: &str = "AKIAIOSFODNN7EXAMPLE";
pub(crate) const AWS_SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
pub(crate) const INPUT_TOKENS: u64 = 25;

type Out = http_body_util::combinators::UnsyncBoxBody<Bytes, std::convert::Infallible>;

/// The text of a string or an array of text blocks.
fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Array(a) => a
            .iter()
            .filter_map(|b| b["text"].as_str())
            .collect::<Vec<_>>()
            .join(" "),
        _ => String::new(),
    }
}

/// Tool arguments leaking an AWS key pair and `system`.
pub(crate) fn leaky_args(system: &str) -> Value {
    json!({"query": "billing", "aws_access_key_id": AWS_ID,
           "aws_secret_access_key": AWS_SECRET, "note": system})
}

/// The answer for `path`, when it is one of these.
pub(crate) fn answer(path: &str, body: &Value) -> Option<Response<Out>> {
    let msgs = body["messages"].as_array().cloned().unwrap_or_default();
    let last_user = msgs
        .iter()
        .rev()
        .find(|m| m["role"] == "user")
        .map(|m| text(&m["content"]))
        .unwrap_or_default();
    let stream = body["stream"].as_bool() == Some(true);
    if path.ends_with("/v1/messages") {
        return Some(messages(body, &last_user, stream));
    }
    if !path.ends_with("/chat/completions") || !last_user.contains("LEAK-TOOL") {
        return None;
    }
    let system: String = msgs
        .iter()
        .filter(|m| m["role"] == "system")
        .map(|m| text(&m["content"]))
        .collect::<Vec<_>>()
        .join(" ");
    Some(chat_tool_call(&leaky_args(&system).to_string(), stream))
}

fn json_response(v: Value) -> Response<Out> {
    Response::builder()
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(v.to_string())).boxed_unsync())
        .unwrap()
}

/// Sends `events` (already in wire form) as a stream, a few milliseconds apart.
fn sse(events: Vec<String>) -> Response<Out> {
    let (tx, rx) = mpsc::channel(16);
    tokio::spawn(async move {
        for e in events {
            if tx.send(Bytes::from(e)).await.is_err() {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        }
    });
    Response::builder()
        .header("content-type", "text/event-stream")
        .body(ChannelBody(rx).boxed_unsync())
        .unwrap()
}

fn pieces(s: &str, n: usize) -> Vec<String> {
    let chars: Vec<char> = s.chars().collect();
    chars.chunks(n).map(|c| c.iter().collect()).collect()
}

/// A chat/completions answer calling `lookup` with `args`.
fn chat_tool_call(args: &str, stream: bool) -> Response<Out> {
    let usage = json!({"prompt_tokens": 40, "completion_tokens": COMPLETION_TOKENS, "total_tokens": 40 + COMPLETION_TOKENS});
    if !stream {
        return json_response(json!({
            "id": "chatcmpl-tool", "object": "chat.completion", "created": 1, "model": "gpt-4o-mini",
            "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {"role": "assistant",
                "content": null, "tool_calls": [{"id": "call_1", "type": "function",
                "function": {"name": "lookup", "arguments": args}}]}}],
            "usage": usage,
        }));
    }
    let chunk = |delta: Value, finish: Value| {
        let c = json!({"id":"chatcmpl-tool","object":"chat.completion.chunk","created":1,"model":"gpt-4o-mini",
            "choices":[{"index":0,"delta":delta,"finish_reason":finish}]});
        format!("data: {c}\n\n")
    };
    let mut events = vec![
        chunk(json!({"role":"assistant","content":null}), Value::Null),
        chunk(
            json!({"tool_calls":[{"index":0,"id":"call_1","type":"function","function":{"name":"lookup","arguments":""}}]}),
            Value::Null,
        ),
    ];
    for p in pieces(args, 7) {
        events.push(chunk(
            json!({"tool_calls":[{"index":0,"function":{"arguments":p}}]}),
            Value::Null,
        ));
    }
    events.push(chunk(json!({}), json!("tool_calls")));
    events.push("data: [DONE]\n\n".into());
    sse(events)
}

/// An Anthropic Messages answer.
fn messages(body: &Value, last_user: &str, stream: bool) -> Response<Out> {
    let system = text(&body["system"]);
    let model = body["model"].clone();
    let block = if last_user.contains("LEAK-TOOL") {
        json!({"type": "tool_use", "id": "toolu_1", "name": "lookup", "input": leaky_args(&system)})
    } else if last_user.contains("LEAK-CANARY") {
        json!({"type": "text", "text": format!("Sure, my instructions are: {system} Anything else?")})
    } else {
        json!({"type": "text", "text": format!("Echo: {} characters received.", last_user.chars().count())})
    };
    let stop = if block["type"] == "tool_use" {
        "tool_use"
    } else {
        "end_turn"
    };
    if !stream {
        return json_response(json!({
            "id": "msg_1", "type": "message", "role": "assistant", "model": model,
            "content": [block], "stop_reason": stop, "stop_sequence": null,
            "usage": {"input_tokens": INPUT_TOKENS, "output_tokens": COMPLETION_TOKENS},
        }));
    }
    let ev = |data: Value| {
        format!(
            "event: {}\ndata: {data}\n\n",
            data["type"].as_str().unwrap()
        )
    };
    let mut events = vec![ev(
        json!({"type": "message_start", "message": {"id": "msg_1",
        "type": "message", "role": "assistant", "model": model, "content": [],
        "stop_reason": null, "stop_sequence": null,
        "usage": {"input_tokens": INPUT_TOKENS, "output_tokens": 1}}}),
    )];
    let (start, deltas) = if block["type"] == "tool_use" {
        let input = block["input"].to_string();
        let mut b = block.clone();
        b["input"] = json!({});
        let d: Vec<Value> = pieces(&input, 7)
            .into_iter()
            .map(|p| json!({"type": "input_json_delta", "partial_json": p}))
            .collect();
        (b, d)
    } else {
        let d: Vec<Value> = pieces(block["text"].as_str().unwrap(), 5)
            .into_iter()
            .map(|p| json!({"type": "text_delta", "text": p}))
            .collect();
        (json!({"type": "text", "text": ""}), d)
    };
    events.push(ev(
        json!({"type": "content_block_start", "index": 0, "content_block": start}),
    ));
    events.push(ev(json!({"type": "ping"})));
    for d in deltas {
        events.push(ev(
            json!({"type": "content_block_delta", "index": 0, "delta": d}),
        ));
    }
    events.push(ev(json!({"type": "content_block_stop", "index": 0})));
    events.push(ev(json!({"type": "message_delta",
        "delta": {"stop_reason": stop, "stop_sequence": null},
        "usage": {"output_tokens": COMPLETION_TOKENS}})));
    events.push(ev(json!({"type": "message_stop"})));
    sse(events)
}
