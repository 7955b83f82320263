//! A body resumed after its start was read ([`FilteredBody::continuing`]) is filtered
//! exactly as the same body read from the start: the same bytes out, the same cut, the
//! same findings, wherever the split falls.

use super::*;
use crate::filter::FilterAction;
use crate::proxy::test_body::{self, ChannelBody};
use http_body_util::BodyExt;
use palisade_egress::dlp::Detector;
use serde_json::json;
use std::sync::{Arc, Mutex};

const KEY: &str = "sk-proj-Zq8mX2vN4bL6cK9dF1gH3jT5wY7eR0uI";
const FRAME: usize = 64 * 1024;

fn secrets(action: FilterAction) -> FilterSet {
    FilterSet {
        detectors: Detector::parse_set("secrets")
            .unwrap()
            .into_iter()
            .map(|d| (d, action))
            .collect(),
        canary: None,
    }
}

/// A chat answer of `filler` bytes of prose, then `tail`.
fn answer(filler: usize, tail: &str) -> Vec<u8> {
    let words = "lorem ipsum dolor sit amet ".repeat(filler / 27 + 1);
    let content = format!("{}{tail}", &words[..filler]);
    json!({"id": "chatcmpl-1", "object": "chat.completion",
           "choices": [{"index": 0, "message": {"role": "assistant", "content": content},
                        "finish_reason": "stop"}],
           "usage": {"prompt_tokens": 3, "completion_tokens": 5}})
    .to_string()
    .into_bytes()
}

/// What came out of a body.
#[derive(Debug)]
struct Run {
    out: Vec<u8>,
    cut: bool,
    summary: BodySummary,
}

/// Runs `read` then `rest` through a [`FilteredBody`] for a JSON answer.
async fn run(read: &[Bytes], rest: &[Bytes], filters: FilterSet) -> Run {
    run_as(read, rest, filters, true).await
}

/// Runs `read` then `rest` through a [`FilteredBody`] (`json`: for a JSON answer).
async fn run_as(read: &[Bytes], rest: &[Bytes], filters: FilterSet, json: bool) -> Run {
    let got = Arc::new(Mutex::new(None));
    let into = got.clone();
    let finish: Finish = Box::new(move |s| *into.lock().unwrap() = Some(s));
    let mut body: FilteredBody<ChannelBody> = FilteredBody::continuing(
        read.iter().cloned().collect(),
        test_body::of(rest),
        filters,
        false,
        json,
        finish,
    );
    let (mut out, mut cut) = (Vec::new(), false);
    while let Some(f) = body.frame().await {
        match f {
            Ok(f) => out.extend_from_slice(&f.into_data().unwrap_or_default()),
            Err(_) => {
                cut = true;
                break;
            }
        }
    }
    drop(body);
    let summary = got
        .lock()
        .unwrap()
        .take()
        .expect("the summary was handed over");
    Run { out, cut, summary }
}

/// The first frame count whose frames hold more than [`MAX_CAPTURE`] bytes.
fn first_over(frames: &[Bytes]) -> usize {
    let mut len = 0;
    frames
        .iter()
        .position(|f| {
            len += f.len();
            len > MAX_CAPTURE
        })
        .unwrap()
        + 1
}

fn names(s: &BodySummary) -> Vec<&str> {
    s.hits.iter().map(|h| h.name.as_str()).collect()
}

#[tokio::test]
async fn a_long_answer_resumed_anywhere_is_redacted_as_when_read_from_the_start() {
    let data = answer(MAX_CAPTURE + 100_000, &format!(" The key is {KEY}. Bye."));
    let frames = test_body::frames(&data, FRAME);
    let from_start = run(&[], &frames, secrets(FilterAction::Redact)).await;
    let want = String::from_utf8(data.clone())
        .unwrap()
        .replace(KEY, "[REDACTED:openai-key]");
    assert_eq!(String::from_utf8_lossy(&from_start.out), want);
    assert!(!from_start.cut);
    assert_eq!(names(&from_start.summary), ["openai-key"]);
    assert_eq!(from_start.summary.bytes_out, want.len() as u64);
    assert!(!from_start.summary.incomplete);
    let over = first_over(&frames);
    for split in [1, over - 1, over, over + 1, frames.len()] {
        let r = run(
            &frames[..split],
            &frames[split..],
            secrets(FilterAction::Redact),
        )
        .await;
        assert!(r.out == from_start.out, "split at frame {split}");
        assert!(!r.cut, "split at frame {split}");
        assert_eq!(names(&r.summary), ["openai-key"], "split at frame {split}");
        assert_eq!(r.summary.bytes_out, from_start.summary.bytes_out);
    }
}

#[tokio::test]
async fn a_long_answer_resumed_past_the_limit_is_cut_before_a_blocked_key() {
    let data = answer(MAX_CAPTURE + 100_000, &format!(" The key is {KEY}. Bye."));
    let frames = test_body::frames(&data, FRAME);
    let over = first_over(&frames);
    let r = run(
        &frames[..over],
        &frames[over..],
        secrets(FilterAction::Block),
    )
    .await;
    assert!(r.cut, "a blocked answer ends in an error, not its end");
    assert_eq!(r.summary.blocked.as_deref(), Some("openai-key"));
    // What went out is the answer's start, up to (not including) the key.
    let key_at = data.windows(KEY.len()).position(|w| w == KEY.as_bytes());
    assert!(r.out.len() > MAX_CAPTURE && r.out.len() <= key_at.unwrap());
    assert!(data.starts_with(&r.out));
    assert_eq!(r.summary.bytes_out, r.out.len() as u64);
    let from_start = run(&[], &frames, secrets(FilterAction::Block)).await;
    assert!(from_start.out == r.out && from_start.cut);
}

#[tokio::test]
async fn a_clean_long_answer_resumed_past_the_limit_arrives_whole() {
    let data = answer(3 * MAX_CAPTURE, " Nothing secret here.");
    let frames = test_body::frames(&data, FRAME);
    let over = first_over(&frames);
    let r = run(
        &frames[..over],
        &frames[over..],
        secrets(FilterAction::Block),
    )
    .await;
    assert!(!r.cut);
    assert!(r.out == data, "{} of {} bytes", r.out.len(), data.len());
    assert!(r.summary.hits.is_empty() && r.summary.blocked.is_none());
    assert_eq!(r.summary.bytes_out, data.len() as u64);
}

#[tokio::test]
async fn a_short_answer_resumed_is_still_filtered_as_json() {
    let data = answer(1000, &format!(" The key is {KEY}."));
    let frames = test_body::frames(&data, 300);
    let r = run(&frames[..2], &frames[2..], secrets(FilterAction::Redact)).await;
    let v: serde_json::Value = serde_json::from_slice(&r.out).unwrap();
    let content = v["choices"][0]["message"]["content"].as_str().unwrap();
    assert!(
        content.ends_with("The key is [REDACTED:openai-key]."),
        "{content}"
    );
    assert_eq!(r.summary.usage.and_then(|u| u.completion_tokens), Some(5));
}

proptest::proptest! {
    /// Short bodies, JSON or not, leaking a key or not: resumed after any number of their
    /// frames, they come out exactly as when read from the start.
    #[test]
    fn a_body_resumed_after_any_frame_comes_out_the_same(
        words in proptest::collection::vec("[a-z]{1,8}", 0..200),
        key_at in proptest::option::of(0usize..200),
        size in 1usize..300,
        split in 0usize..100,
        json_body in proptest::bool::ANY,
        block in proptest::bool::ANY,
    ) {
        let mut words = words;
        if let Some(i) = key_at {
            words.insert(i.min(words.len()), KEY.to_string());
        }
        let text = words.join(" ");
        let data = if json_body { answer(0, &text) } else { text.into_bytes() };
        let frames = test_body::frames(&data, size);
        let split = split.min(frames.len());
        let action = if block { FilterAction::Block } else { FilterAction::Redact };
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let from_start = rt.block_on(run_as(&[], &frames, secrets(action), json_body));
        let resumed = rt.block_on(run_as(&frames[..split], &frames[split..], secrets(action), json_body));
        proptest::prop_assert_eq!(&resumed.out, &from_start.out);
        proptest::prop_assert_eq!(resumed.cut, from_start.cut);
        proptest::prop_assert_eq!(names(&resumed.summary), names(&from_start.summary));
        proptest::prop_assert_eq!(resumed.summary.bytes_out, from_start.summary.bytes_out);
        let leaked = resumed.out.windows(KEY.len()).any(|w| w == KEY.as_bytes());
        proptest::prop_assert!(!leaked);
    }
}

/// Runs frames sent `every` apart, then (unless `end`) a silent open body, through a
/// [`FilteredBody`] with an idle timeout of `idle`: what came out, within `within`
/// (`None` when the body did not end by then).
async fn run_paced(
    frames: Vec<Bytes>,
    every: std::time::Duration,
    end: bool,
    sse: bool,
    filters: FilterSet,
    idle: std::time::Duration,
) -> Option<Run> {
    let (tx, inner) = test_body::channel();
    // A sender kept open and silent: the backend stalls instead of ending the body.
    let keep = (!end).then(|| tx.clone());
    tokio::spawn(async move {
        for f in frames {
            let _ = tx.send(Ok(f));
            tokio::time::sleep(every).await;
        }
    });
    let got = Arc::new(Mutex::new(None));
    let into = got.clone();
    let finish: Finish = Box::new(move |s| *into.lock().unwrap() = Some(s));
    let mut body = FilteredBody::new(inner, filters, sse, !sse, finish).idle_timeout(idle);
    let (mut out, mut cut) = (Vec::new(), false);
    let read = async {
        while let Some(f) = body.frame().await {
            match f {
                Ok(f) => out.extend_from_slice(&f.into_data().unwrap_or_default()),
                Err(_) => {
                    cut = true;
                    break;
                }
            }
        }
    };
    let ended = tokio::time::timeout(std::time::Duration::from_secs(5), read)
        .await
        .is_ok();
    drop(body);
    drop(keep);
    let summary = got.lock().unwrap().take()?;
    ended.then_some(Run { out, cut, summary })
}

fn sse_delta(text: &str) -> Bytes {
    let chunk = json!({"id": "c1", "object": "chat.completion.chunk",
                       "choices": [{"index": 0, "delta": {"content": text}}]});
    Bytes::from(format!("data: {chunk}\n\n"))
}

#[tokio::test]
async fn a_stream_whose_backend_goes_silent_is_ended_with_an_error_event() {
    let idle = std::time::Duration::from_millis(300);
    let ms = std::time::Duration::from_millis;
    let frames = vec![sse_delta("Hello, "), sse_delta("world")];
    let r = run_paced(
        frames,
        ms(10),
        false,
        true,
        secrets(FilterAction::Redact),
        idle,
    )
    .await
    .expect("the stream ends after the idle timeout (before: it waited for ever)");
    let text = String::from_utf8_lossy(&r.out);
    // What the filters held back goes out first, then the error event; the stream ends
    // cleanly (no abort).
    assert!(text.contains("Hello, ") && text.contains("world"), "{text}");
    let last = text.trim_end().rsplit("\n\n").next().unwrap();
    assert!(last.contains(r#""code":"upstream_idle_timeout""#), "{text}");
    assert!(!r.cut);
    assert!(r.summary.stalled && r.summary.incomplete);
    assert_eq!(r.summary.bytes_out, r.out.len() as u64);
}

#[tokio::test]
async fn a_plain_body_whose_backend_goes_silent_is_aborted() {
    let idle = std::time::Duration::from_millis(300);
    let ms = std::time::Duration::from_millis;
    let no_filters = FilterSet::default();
    let frames = vec![Bytes::from_static(b"{\"partial\": ")];
    let r = run_paced(frames, ms(10), false, false, no_filters, idle)
        .await
        .expect("the body ends after the idle timeout");
    assert_eq!(r.out, b"{\"partial\": ");
    assert!(
        r.cut,
        "an incomplete answer is aborted, never ended as if whole"
    );
    assert!(r.summary.stalled);
}

#[tokio::test]
async fn a_slow_backend_that_keeps_sending_is_not_cut() {
    let idle = std::time::Duration::from_millis(300);
    let ms = std::time::Duration::from_millis;
    // 12 frames 100 ms apart: longer in all than the idle timeout, never silent that long.
    let frames: Vec<Bytes> = (0..12).map(|i| sse_delta(&format!("w{i} "))).collect();
    let r = run_paced(frames, ms(100), true, true, FilterSet::default(), idle)
        .await
        .expect("the stream ends when the backend ends it");
    let text = String::from_utf8_lossy(&r.out);
    assert!(text.contains("w11 "), "{text}");
    assert!(!text.contains("upstream_idle_timeout"), "{text}");
    assert!(!r.summary.stalled && !r.summary.incomplete);
}
