//! Non-streamed JSON answers of no declared length (chunked, or until the backend closes)
//! through the output filters, with the real `curl` (and the Python `openai` client when
//! it is installed): an answer that ends within 1 MiB is read whole, so a blocked one is a
//! clean `403 output_blocked` (Anthropic's shape on the Messages API) and a clean one goes
//! out byte for byte with a `Content-Length`; a longer one is filtered as it streams, its
//! end included; a backend that stalls mid-body gets the `502` within the route timeout.

use super::{drain, run_client};
use palisade_events::{DetectionAction, EventBody, HttpInfo};
use palisade_policy::{Manifests, Snapshot};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const KEY: &str = "sk-proj-Zq8mX2vN4bL6cK9dF1gH3jT5wY7eR0uI";
const CLEAN: &str = "Hello, there is nothing to hide here.";
/// Prose in the long answers: past the gateway's 1 MiB whole-answer limit.
const LONG: usize = 1536 * 1024;

/// The answer a request gets, by a marker in its body: `LEAK-KEY` (a key in a short
/// answer), `LONG-LEAK` / `LONG-CLEAN` (1.5 MiB of prose, with a key near the end or
/// not), `STALL` (part of the body, then nothing), `UNTIL-CLOSE` (a clean answer ended by
/// closing the connection); anything else a short clean answer. Messages-API paths answer
/// in Anthropic's shape.
fn answer_text(request: &str) -> String {
    if request.contains("LEAK-KEY") {
        format!("The deployment uses the key {KEY} for billing.")
    } else if request.contains("LONG-") {
        let words = "the quick brown fox jumps over the lazy dog ".repeat(LONG / 44 + 1);
        let tail = if request.contains("LONG-LEAK") {
            format!(" The key is {KEY}. Bye.")
        } else {
            " Bye.".to_string()
        };
        format!("{}{tail}", &words[..LONG])
    } else {
        CLEAN.to_string()
    }
}

fn answer_body(path: &str, text: &str) -> Vec<u8> {
    let v = if path.ends_with("/v1/messages") {
        json!({"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-test",
               "content": [{"type": "text", "text": text}], "stop_reason": "end_turn",
               "usage": {"input_tokens": 9, "output_tokens": 12}})
    } else {
        json!({"id": "chatcmpl-c", "object": "chat.completion", "created": 1,
               "model": "gpt-4o-mini",
               "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                            "finish_reason": "stop"}],
               "usage": {"prompt_tokens": 9, "completion_tokens": 12, "total_tokens": 21}})
    };
    v.to_string().into_bytes()
}

/// A backend answering JSON without a `Content-Length`: chunked (short answers in three
/// chunks a few milliseconds apart, long ones in 64 KiB chunks) or until it closes.
async fn chunked_backend() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            tokio::spawn(serve(s));
        }
    });
    addr
}

async fn serve(mut s: TcpStream) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_string();
            let len: usize = head
                .lines()
                .find_map(|l| {
                    let l = l.to_ascii_lowercase();
                    l.strip_prefix("content-length:")
                        .map(|v| v.trim().to_string())
                })
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            if buf.len() >= end + 4 + len {
                let request = String::from_utf8_lossy(&buf[end + 4..end + 4 + len]).to_string();
                buf.drain(..end + 4 + len);
                let path = head.split(' ').nth(1).unwrap_or("/").to_string();
                if !answer(&mut s, &path, &request).await {
                    return;
                }
                continue;
            }
        }
        match s.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// Writes one answer; whether the connection may serve another.
async fn answer(s: &mut TcpStream, path: &str, request: &str) -> bool {
    let body = answer_body(path, &answer_text(request));
    if request.contains("UNTIL-CLOSE") {
        let head = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n";
        let _ = s.write_all(head.as_bytes()).await;
        let _ = s.write_all(&body).await;
        return false;
    }
    let head =
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n";
    if s.write_all(head.as_bytes()).await.is_err() {
        return false;
    }
    let pieces: Vec<&[u8]> = if body.len() > 64 * 1024 {
        body.chunks(64 * 1024).collect()
    } else {
        body.chunks(body.len() / 3 + 1).collect()
    };
    for (i, p) in pieces.iter().enumerate() {
        let framed = [format!("{:x}\r\n", p.len()).as_bytes(), p, b"\r\n"].concat();
        if s.write_all(&framed).await.is_err() {
            return false;
        }
        if request.contains("STALL") {
            // Half an answer, then silence past the route timeout.
            tokio::time::sleep(Duration::from_secs(5)).await;
            return false;
        }
        if pieces.len() <= 3 && i + 1 < pieces.len() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    s.write_all(b"0\r\n\r\n").await.is_ok()
}

fn yaml(backend: SocketAddr) -> String {
    format!(
        r#"apiVersion: palisade.dev/v1alpha1
kind: AIGateway
metadata: {{name: chunked, namespace: ml}}
spec:
  routes:
    - name: blocking
      pathPrefix: /block
      backend: http://{backend}
      timeoutSeconds: 1
      outputFilters:
        - kind: secrets
          action: block
    - name: redacting
      pathPrefix: /redact
      backend: http://{backend}
      timeoutSeconds: 1
      outputFilters:
        - kind: secrets
          action: redact
"#
    )
}

async fn gateway(dir: &Path) -> (SocketAddr, palisade_events::EventReceiver) {
    let backend = chunked_backend().await;
    let text = yaml(backend);
    let file = dir.join("gateway.yaml");
    std::fs::write(&file, &text).unwrap();
    let mut m = Manifests::new();
    m.add_file(&file.display().to_string(), &text);
    assert!(!m.has_errors(), "{:?}", m.diagnostics);
    let compiled = palisade_ingress::compile(&Snapshot::from_manifests(&m).gateways).unwrap();
    super::serve_gateway(compiled).await
}

/// What `curl` got: status, header block (lower case), body, exit code.
struct Got {
    status: u16,
    headers: String,
    body: Vec<u8>,
    exit: i32,
}

impl Got {
    /// Asserts the answer is exactly `want`, sent with `Content-Length` and not chunked.
    fn assert_whole(&self, want: &[u8]) {
        assert!(self.body == want, "{}", String::from_utf8_lossy(&self.body));
        assert!(
            self.headers
                .contains(&format!("\r\ncontent-length: {}\r\n", want.len())),
            "{}",
            self.headers
        );
        assert!(
            !self.headers.contains("transfer-encoding"),
            "{}",
            self.headers
        );
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&self.body)))
    }
}

/// POSTs `content` as the user message to `url` with `curl`.
async fn post(dir: &Path, url: String, content: &str) -> Got {
    let body = if url.ends_with("/v1/messages") {
        json!({"model": "claude-test", "max_tokens": 64,
               "messages": [{"role": "user", "content": content}]})
    } else {
        json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": content}]})
    };
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let tag = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let (hfile, bfile): (PathBuf, PathBuf) = (
        dir.join(format!("{tag}.head")),
        dir.join(format!("{tag}.body")),
    );
    let args: Vec<String> = vec![
        "-s".into(),
        "--max-time".into(),
        "10".into(),
        "-H".into(),
        "Content-Type: application/json".into(),
        "-d".into(),
        body.to_string(),
        "-D".into(),
        hfile.display().to_string(),
        "-o".into(),
        bfile.display().to_string(),
        "-w".into(),
        "%{http_code}".into(),
        url,
    ];
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("curl")
            .args(&args)
            .output()
            .expect("curl is installed")
    })
    .await
    .unwrap();
    Got {
        status: String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .unwrap_or(0),
        headers: std::fs::read_to_string(&hfile)
            .unwrap_or_default()
            .to_ascii_lowercase(),
        body: std::fs::read(&bfile).unwrap_or_default(),
        exit: out.status.code().unwrap_or(-1),
    }
}

fn http_events(rx: &palisade_events::EventReceiver) -> Vec<HttpInfo> {
    drain(rx)
        .into_iter()
        .filter_map(|e| match e.body {
            EventBody::Http(h) => Some(h),
            _ => None,
        })
        .collect()
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("palisade-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_json_answers_are_filtered_whole_up_to_a_mebibyte() {
    let dir = temp_dir("chunked");
    let (gw, events) = gateway(&dir).await;
    let url = |p: &str| format!("http://{gw}{p}");

    // A short chunked answer leaking a key, on a blocking route: a clean refusal.
    let got = post(&dir, url("/block/v1/chat/completions"), "please LEAK-KEY").await;
    assert_eq!(got.status, 403, "{}", got.headers);
    let v = got.json();
    assert_eq!(v["error"]["code"], "output_blocked", "{v}");
    assert!(!String::from_utf8_lossy(&got.body).contains(KEY));
    // The same on the Messages API, in Anthropic's error shape.
    let got = post(&dir, url("/block/v1/messages"), "please LEAK-KEY").await;
    assert_eq!(got.status, 403, "{}", got.headers);
    let v = got.json();
    assert_eq!(v["type"], "error", "{v}");
    assert_eq!(v["error"]["type"], "permission_error", "{v}");
    assert_eq!(
        v["error"]["message"],
        "The answer was withheld by the gateway's output filter."
    );

    // A clean chunked answer: the backend's bytes exactly, with a Content-Length.
    let got = post(&dir, url("/block/v1/chat/completions"), "hello").await;
    assert_eq!(got.status, 200);
    let want = answer_body("/v1/chat/completions", CLEAN);
    got.assert_whole(&want);
    // One ended by the backend closing its connection is read whole too.
    let got = post(&dir, url("/block/v1/chat/completions"), "UNTIL-CLOSE").await;
    assert_eq!(got.status, 200);
    assert!(got.body == want, "{}", String::from_utf8_lossy(&got.body));
    assert!(
        got.headers.contains("\r\ncontent-length: "),
        "{}",
        got.headers
    );
    // A redacting route: the key replaced, the rest as sent, with a Content-Length.
    let got = post(&dir, url("/redact/v1/chat/completions"), "please LEAK-KEY").await;
    assert_eq!(got.status, 200);
    let v = got.json();
    assert_eq!(
        v["choices"][0]["message"]["content"],
        "The deployment uses the key [REDACTED:openai-key] for billing."
    );
    // (A changed body is serialised again; the backend's serde_json wrote it the same way.)
    let want = answer_body(
        "/v1/chat/completions",
        "The deployment uses the key [REDACTED:openai-key] for billing.",
    );
    got.assert_whole(&want);
    // A clean Messages-API answer passes as sent.
    let got = post(&dir, url("/block/v1/messages"), "hello").await;
    assert_eq!(got.status, 200);
    let want = answer_body("/v1/messages", CLEAN);
    got.assert_whole(&want);

    // Events: the refusal's status and finding, the clean answers' token usage.
    let http = http_events(&events);
    assert_eq!(http.len(), 6, "{http:?}");
    assert_eq!(http[0].status, Some(403));
    assert!(
        http[0]
            .detections
            .iter()
            .any(|d| d.detector == "output.openai-key" && d.action == DetectionAction::Block),
        "{:?}",
        http[0]
    );
    assert_eq!(http[1].status, Some(403));
    assert_eq!(http[2].status, Some(200));
    assert_eq!(
        http[2].bytes_out,
        Some(answer_body("/v1/chat/completions", CLEAN).len() as u64)
    );
    assert_eq!(
        http[2].ai.as_ref().and_then(|a| a.completion_tokens),
        Some(12)
    );
    assert!(
        http[4]
            .detections
            .iter()
            .any(|d| d.detector == "output.openai-key" && d.action == DetectionAction::Redact),
        "{:?}",
        http[4]
    );
    let ai = http[5].ai.as_ref().unwrap();
    assert_eq!(
        (ai.prompt_tokens, ai.completion_tokens),
        (Some(9), Some(12))
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_json_answers_over_a_mebibyte_stream_through_the_filters() {
    let dir = temp_dir("chunked-long");
    let (gw, events) = gateway(&dir).await;
    let url = |p: &str| format!("http://{gw}{p}");

    // Clean: every byte arrives, streamed (no Content-Length).
    let got = post(&dir, url("/block/v1/chat/completions"), "LONG-CLEAN").await;
    assert_eq!((got.status, got.exit), (200, 0));
    let clean = answer_body("/v1/chat/completions", &answer_text("LONG-CLEAN"));
    assert!(
        got.body == clean,
        "{} of {} bytes",
        got.body.len(),
        clean.len()
    );
    assert!(
        got.headers.contains("transfer-encoding: chunked"),
        "{}",
        got.headers
    );
    // A key near the end, redacted as the answer streams.
    let got = post(&dir, url("/redact/v1/chat/completions"), "LONG-LEAK").await;
    assert_eq!((got.status, got.exit), (200, 0));
    let text = answer_body("/v1/chat/completions", &answer_text("LONG-LEAK"));
    let want = String::from_utf8(text.clone())
        .unwrap()
        .replace(KEY, "[REDACTED:openai-key]");
    assert!(
        got.body == want.as_bytes(),
        "{}",
        String::from_utf8_lossy(&got.body[got.body.len().saturating_sub(200)..])
    );
    // Blocked near the end: the status has gone out, the answer is cut before the key.
    let got = post(&dir, url("/block/v1/chat/completions"), "LONG-LEAK").await;
    assert_eq!(got.status, 200);
    assert_ne!(got.exit, 0, "curl sees an incomplete answer");
    assert!(got.body.len() > 1 << 20 && text.starts_with(&got.body));
    assert!(!String::from_utf8_lossy(&got.body).contains(KEY));

    let http = http_events(&events);
    assert_eq!(http.len(), 3, "{http:?}");
    assert!(http[0].detections.is_empty(), "{:?}", http[0]);
    assert_eq!(http[0].bytes_out, Some(clean.len() as u64));
    assert_eq!(http[1].bytes_out, Some(want.len() as u64));
    assert!(http[1]
        .detections
        .iter()
        .any(|d| d.detector == "output.openai-key" && d.action == DetectionAction::Redact));
    assert!(http[2]
        .detections
        .iter()
        .any(|d| d.detector == "output.openai-key" && d.action == DetectionAction::Block));
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_stalling_mid_chunked_answer_gets_a_502_within_the_timeout() {
    let dir = temp_dir("chunked-stall");
    let (gw, events) = gateway(&dir).await;
    let t = Instant::now();
    let got = post(
        &dir,
        format!("http://{gw}/block/v1/chat/completions"),
        "STALL",
    )
    .await;
    let took = t.elapsed();
    assert_eq!(got.status, 502);
    assert_eq!(got.json()["error"]["code"], "upstream_unavailable");
    // The route allows 1 s; the backend would stall for 5.
    assert!(took < Duration::from_secs(3), "{took:?}");
    let http = http_events(&events);
    assert_eq!(http[0].status, Some(502), "{:?}", http[0]);
    let _ = std::fs::remove_dir_all(&dir);
}

const SCRIPT: &str = r#"
import json, sys
import openai
base = sys.argv[1]
out = {}
def ask(route, content):
    c = openai.OpenAI(base_url=f"{base}/{route}/v1", api_key="unused", max_retries=0, timeout=30)
    try:
        r = c.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": content}])
        return {"content": r.choices[0].message.content, "completion_tokens": r.usage.completion_tokens}
    except openai.APIStatusError as e:
        body = e.body if isinstance(e.body, dict) else {}
        return {"error": type(e).__name__, "status": e.status_code, "code": body.get("code")}
out["blocked"] = ask("block", "please LEAK-KEY")
out["clean"] = ask("block", "hello")
out["long_clean"] = ask("block", "LONG-CLEAN")
out["long_redacted"] = ask("redact", "LONG-LEAK")
print(json.dumps(out))
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openai_client_reads_chunked_answers_through_the_filters() {
    let Some(py) = super::python_with("openai") else {
        eprintln!("skipped: no Python with the openai package (set PALISADE_TEST_PYTHON)");
        return;
    };
    let dir = temp_dir("chunked-openai");
    let (gw, _events) = gateway(&dir).await;
    let r = run_client(py, vec!["-c".into(), SCRIPT.into(), format!("http://{gw}")]).await;
    // Withheld whole: the client raises at once, without a retry against the model.
    assert_eq!(r["blocked"]["error"], "PermissionDeniedError", "{r}");
    assert_eq!(r["blocked"]["status"], 403, "{r}");
    assert_eq!(r["blocked"]["code"], "output_blocked", "{r}");
    assert_eq!(r["clean"]["content"], CLEAN, "{r}");
    assert_eq!(r["clean"]["completion_tokens"], 12, "{r}");
    let long = r["long_clean"]["content"].as_str().unwrap();
    assert_eq!(long, answer_text("LONG-CLEAN"));
    let long = r["long_redacted"]["content"].as_str().unwrap();
    assert_eq!(
        long.len(),
        LONG + " The key is [REDACTED:openai-key]. Bye.".len()
    );
    assert!(long.ends_with(" The key is [REDACTED:openai-key]. Bye."));
    let _ = std::fs::remove_dir_all(&dir);
}
