//! A local OpenAI-compatible backend for the tests: `/v1/models`, and
//! `/v1/chat/completions` answering in JSON or as a Server-Sent-Events stream cut into
//! small chunks. What it answers depends on the last user message: `LEAK-CANARY` repeats
//! the system prompt (a model leaking its instructions), `LEAK-KEY` includes an API key,
//! anything else is an echo of the prompt's length. It reports 150 completion tokens.
//! `/v1/responses` answers the same way in the Responses-API shape (the system prompt is
//! `instructions`), streamed as `response.output_text.delta` events. Tool calls and the
//! Anthropic Messages API are answered by [`super::tools_upstream`].

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
pub(crate) struct ChannelBody(pub(crate) mpsc::Receiver<Bytes>);

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
    let mut msgs = body["messages"].as_array().cloned().unwrap_or_default();
    if let Some(ins) = body["instructions"].as_str() {
        msgs.insert(0, json!({"role": "system", "content": ins}));
    }
    match &body["input"] {
        Value::String(s) => msgs.push(json!({"role": "user", "content": s})),
        Value::Array(a) => msgs.extend(a.iter().cloned()),
        _ => {}
    }
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
    if let Some(r) = super::tools_upstream::answer(&path, &body) {
        return r;
    }
    if path == "/v1/responses" {
        return responses(&body, answer(&body));
    }
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

/// A Responses-API answer: one JSON response object, or its event stream.
fn responses(body: &Value, text: String) -> Response<Out> {
    let part = json!({"type": "output_text", "text": text, "annotations": []});
    let item = json!({"id": "msg_1", "type": "message", "status": "completed", "role": "assistant", "content": [part]});
    let usage = json!({"input_tokens": 20, "output_tokens": COMPLETION_TOKENS, "total_tokens": 20 + COMPLETION_TOKENS});
    let resp = |status: &str, output: Value, usage: Value| {
        json!({"id": "resp_1", "object": "response", "created_at": 1, "status": status,
               "model": body["model"], "instructions": body["instructions"],
               "output": output, "usage": usage})
    };
    if body["stream"].as_bool() != Some(true) {
        let b = resp("completed", json!([item]), usage);
        return Response::builder()
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(b.to_string())).boxed_unsync())
            .unwrap();
    }
    let mut events = vec![
        (
            "response.created",
            json!({"response": resp("in_progress", json!([]), Value::Null)}),
        ),
        (
            "response.output_item.added",
            json!({"output_index": 0, "item": {"id": "msg_1", "type": "message", "status": "in_progress", "role": "assistant", "content": []}}),
        ),
        (
            "response.content_part.added",
            json!({"item_id": "msg_1", "output_index": 0, "content_index": 0, "part": {"type": "output_text", "text": "", "annotations": []}}),
        ),
    ];
    let chars: Vec<char> = text.chars().collect();
    for piece in chars.chunks(5) {
        let d: String = piece.iter().collect();
        events.push((
            "response.output_text.delta",
            json!({"item_id": "msg_1", "output_index": 0, "content_index": 0, "delta": d}),
        ));
    }
    events.extend([
        (
            "response.output_text.done",
            json!({"item_id": "msg_1", "output_index": 0, "content_index": 0, "text": text}),
        ),
        (
            "response.content_part.done",
            json!({"item_id": "msg_1", "output_index": 0, "content_index": 0, "part": part}),
        ),
        (
            "response.output_item.done",
            json!({"output_index": 0, "item": item}),
        ),
        (
            "response.completed",
            json!({"response": resp("completed", json!([item]), usage)}),
        ),
    ]);
    let (tx, rx) = mpsc::channel(16);
    tokio::spawn(async move {
        for (seq, (name, mut data)) in events.into_iter().enumerate() {
            data["type"] = json!(name);
            data["sequence_number"] = json!(seq);
            if tx
                .send(Bytes::from(format!("event: {name}\ndata: {data}\n\n")))
                .await
                .is_err()
            {
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

/// Starts the backend behind TLS with `cert_pem` / `key_pem`; returns its address and a
/// count of the TLS connections it accepted.
pub(crate) async fn start_tls(
    cert_pem: &str,
    key_pem: &str,
) -> (SocketAddr, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use rustls::pki_types::pem::PemObject;
    let certs = rustls::pki_types::CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).unwrap();
    let cfg = rustls::ServerConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(cfg));
    let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = accepted.clone();
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((s, _)) = l.accept().await else {
                continue;
            };
            let acceptor = acceptor.clone();
            let count = count.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(s).await else {
                    return;
                };
                count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(
                        TokioIo::new(tls),
                        hyper::service::service_fn(|r| async move {
                            Ok::<_, std::convert::Infallible>(serve(r).await)
                        }),
                    )
                    .await;
            });
        }
    });
    (addr, accepted)
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
