//! AI-API awareness: an OpenAI-compatible call is recorded with its model and token usage,
//! a Hugging Face-style download as a download.

use super::*;
use palisade_events::Transfer;

fn ai(e: &Event) -> palisade_events::AiInfo {
    let EventBody::Http(h) = &e.body else {
        panic!("{e:?}")
    };
    h.ai.clone().expect("an ai object")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_calls_are_logged_with_model_and_tokens() {
    let s = start(Posture::Allow, &[]).await;
    let url = format!("http://allowed.test:{}/v1/chat/completions", s.upstream);
    let req = r#"{"model":"gpt-test","messages":[{"role":"user","content":"hi"}]}"#;
    let (_, code) = curl(via(
        &s,
        &[
            "-H",
            "Content-Type: application/json",
            "-d",
            req,
            "-w",
            "\n%{http_code}",
        ],
        &url,
    ))
    .await;
    assert_eq!(code, "200");
    let a = ai(&next_event(&s.events).await);
    assert_eq!(
        (
            a.provider.as_deref(),
            a.operation.as_deref(),
            a.model.as_deref()
        ),
        (Some("openai-compatible"), Some("chat"), Some("gpt-test"))
    );
    assert_eq!((a.prompt_tokens, a.completion_tokens), (Some(12), Some(5)));

    let url = format!(
        "http://allowed.test:{}/org/model/resolve/main/w.bin",
        s.upstream
    );
    let (_, code) = curl(via(&s, &["-w", "\n%{http_code}"], &url)).await;
    assert_eq!(code, "200");
    let a = ai(&next_event(&s.events).await);
    assert_eq!(
        (a.provider.as_deref(), a.transfer),
        (Some("huggingface"), Some(Transfer::Download))
    );
}
