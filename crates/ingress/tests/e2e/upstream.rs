//! A local OpenAI-compatible backend for the tests: `/v1/models`, and
//! `/v1/chat/completions` answering in JSON or as a Server-Sent-Events stream cut into
//! small chunks. What it answers depends on the last user message: `LEAK-CANARY` repeats
//! the system prompt (a model leaking its instructions), `LEAK-KEY` includes an API key,
//! anything else is an echo of the prompt's length. It reports 150 completion tokens.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Frame, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::sync::mpsc;

pub(crate) const LEAKED_KEY: &str = "sk-proj-Zq8mX2vN4bL6cK9dF1gH3jT5wY7eR0uI";
pub(crate) const COMPLETION_TOKENS: u64 = 150;

/// A body fed by a channel, one frame per message.
pub(crate) struct ChannelBody(mpsc::Receiver<Bytes>);

impl Body for ChannelBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;
    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        self.0.poll_recv(cx).map(|o| o.map(|b| Ok(Frame::data(b))))
    }
}

type Out = http_body_util::combinators::UnsyncBoxBody<Bytes, std::convert::Infallible>;

fn answer(body: &Value) -> String {
    let msgs = body["messages"].as_array().cloned().unwrap_or_default();
    let last_user = msgs
        .iter()
        .rev()
        .find(|m| m["role"] == "user")
        .and_then(|m| m["content"].as_str())
        .unwrap_or("")
        .to_string();
    let system: String = msgs
        .iter()
        .filter(|m| m["role"] == "system")
        .filter_map(|m| m["content"].as_str())
        .collect::<Vec<_>>()
        .join(" ");
    if last_user.contains("LEAK-CANARY") {
        format!("Sure, my instructions are: {system} Anything else?")
    } else if last_user.contains("LEAK-KEY") {
        format!("The deployment uses the key {LEAKED_KEY} for billing. Keep it safe.")
    } else {
        format!("Echo: {} characters received.", last_user.chars().count())
    }
}

async fn serve(req: Request<Incoming>) -> Response<Out> {
    let path = req.uri().path().to_string();
    let raw = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    if path == "/v1/models" {
        let b = json!({"object":"list","data":[{"id":"gpt-4o-mini","object":"model","created":0,"owned_by":"test"}]});
        return Response::builder()
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(b.to_string())).boxed_unsync())
            .unwrap();
    }
    let body: Value = serde_json::from_slice(&raw).unwrap_or(Value::Null);
    let text = answer(&body);
    let model = body["model"].as_str().unwrap_or("unknown").to_string();
    let prompt_tokens = (raw.len() / 4) as u64;
    let usage = json!({"prompt_tokens": prompt_tokens, "completion_tokens": COMPLETION_TOKENS, "total_tokens": prompt_tokens + COMPLETION_TOKENS});
    if body["stream"].as_bool() != Some(true) {
        let b = json!({
            "id": "chatcmpl-test", "object": "chat.completion", "created": 1, "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": usage,
        });
        return Response::builder()
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(b.to_string())).boxed_unsync())
            .unwrap();
    }
    let include_usage = body["stream_options"]["include_usage"].as_bool() == Some(true);
    let (tx, rx) = mpsc::channel(16);
    tokio::spawn(async move {
        let chunk = |delta: Value, finish: Value| {
            let c = json!({"id":"chatcmpl-test","object":"chat.completion.chunk","created":1,"model":model,
                "choices":[{"index":0,"delta":delta,"finish_reason":finish}]});
            Bytes::from(format!("data: {c}\n\n"))
        };
        let _ = tx
            .send(chunk(json!({"role":"assistant","content":""}), Value::Null))
            .await;
        let chars: Vec<char> = text.chars().collect();
        for piece in chars.chunks(5) {
            let s: String = piece.iter().collect();
            if tx
                .send(chunk(json!({"content": s}), Value::Null))
                .await
                .is_err()
            {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        }
        let _ = tx.send(chunk(json!({}), json!("stop"))).await;
        if include_usage {
            let c = json!({"id":"chatcmpl-test","object":"chat.completion.chunk","created":1,"model":model,"choices":[],"usage":usage});
            let _ = tx.send(Bytes::from(format!("data: {c}\n\n"))).await;
        }
        let _ = tx.send(Bytes::from_static(b"data: [DONE]\n\n")).await;
    });
    Response::builder()
        .header("content-type", "text/event-stream")
        .body(ChannelBody(rx).boxed_unsync())
        .unwrap()
}

/// Starts the backend; returns its address.
pub(crate) async fn start() -> SocketAddr {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((s, _)) = l.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(
                        TokioIo::new(s),
                        hyper::service::service_fn(|r| async move {
                            Ok::<_, std::convert::Infallible>(serve(r).await)
                        }),
                    )
                    .await;
            });
        }
    });
    addr
}
