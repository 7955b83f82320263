//! Anthropic Messages streams through the filter: secrets and the canary spread over
//! `text_delta` and `input_json_delta` events are redacted (held-back text flushed before
//! `content_block_stop`) or cut the stream with the API's `error` event; usage is read from
//! `message_start` and `message_delta`; clean streams pass unchanged.

use super::tests::{events, filters, pieces, redacting, run, wire, CANARY, KEY};
use super::tool_tests::{leaky_args, redacted_args, AWS_ID, AWS_SECRET};
use super::*;
use crate::filter::FilterAction;
use proptest::prelude::*;
use serde_json::json;

/// A Messages stream: a text block written as `text`, then a tool_use block whose input
/// JSON is written as `json_parts`.
fn messages_stream(text: &[String], json_parts: &[String]) -> Vec<u8> {
    let ev = |data: Value| wire(Some(data["type"].as_str().unwrap()), &data);
    let mut w = ev(
        json!({"type":"message_start","message":{"id":"msg_1","type":"message",
        "role":"assistant","content":[],"model":"claude-test","stop_reason":null,
        "usage":{"input_tokens":25,"output_tokens":1}}}),
    );
    w.extend(ev(
        json!({"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}),
    ));
    w.extend(ev(json!({"type":"ping"})));
    for t in text {
        w.extend(ev(
            json!({"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":t}}),
        ));
    }
    w.extend(ev(json!({"type":"content_block_stop","index":0})));
    w.extend(ev(json!({"type":"content_block_start","index":1,
        "content_block":{"type":"tool_use","id":"toolu_1","name":"lookup","input":{}}})));
    for p in json_parts {
        w.extend(ev(json!({"type":"content_block_delta","index":1,
            "delta":{"type":"input_json_delta","partial_json":p}})));
    }
    w.extend(ev(json!({"type":"content_block_stop","index":1})));
    w.extend(ev(
        json!({"type":"message_delta","delta":{"stop_reason":"tool_use",
        "stop_sequence":null},"usage":{"output_tokens":42}}),
    ));
    w.extend(ev(json!({"type":"message_stop"})));
    w
}

/// What an Anthropic client assembles: each block's text or input JSON, in index order.
/// Panics when an event's name differs from its type or a delta follows its block's stop.
fn blocks(out: &[u8]) -> Vec<String> {
    let mut got: Vec<String> = Vec::new();
    let mut stopped = Vec::new();
    for e in events(out) {
        let v: Value = serde_json::from_str(&e.data).unwrap();
        assert_eq!(e.event.as_deref(), v["type"].as_str(), "{}", e.data);
        let i = v["index"].as_u64().unwrap_or(0) as usize;
        match v["type"].as_str().unwrap() {
            "content_block_start" => got.push(String::new()),
            "content_block_delta" => {
                assert!(!stopped.contains(&i), "delta after stop: {}", e.data);
                let d = &v["delta"];
                let t = d["text"].as_str().or(d["partial_json"].as_str()).unwrap();
                got[i] += t;
            }
            "content_block_stop" => stopped.push(i),
            _ => {}
        }
    }
    got
}

#[test]
fn leaks_in_text_and_tool_input_are_redacted() {
    let text = format!("Your key is {KEY} and my marker is {CANARY}.");
    let args = leaky_args("weather");
    let mut f = SseFilter::new(redacting());
    let w = messages_stream(
        &pieces(&text, &[15, 30, 45]),
        &pieces(&args, &[20, 70, 130]),
    );
    let (out, err) = run(&mut f, &w, &[]);
    assert_eq!(err, None);
    let got = blocks(&out);
    assert_eq!(
        got[0],
        "Your key is [REDACTED:openai-key] and my marker is [REDACTED:canary]."
    );
    let input: Value = serde_json::from_str(&got[1]).expect("tool input stays JSON");
    assert_eq!(input, redacted_args("weather"));
    let s = String::from_utf8_lossy(&out);
    for leak in [KEY, CANARY, AWS_ID, AWS_SECRET] {
        assert!(!s.contains(leak), "{leak} in {s}");
    }
    assert_eq!(
        f.usage(),
        Some(Usage {
            prompt_tokens: Some(25),
            completion_tokens: Some(42)
        })
    );
}

#[test]
fn held_back_text_is_a_delta_right_before_the_block_stop() {
    let mut f = SseFilter::new(redacting());
    let w = messages_stream(&pieces("Hello world", &[5]), &[]);
    let (out, err) = run(&mut f, &w, &[]);
    assert_eq!(err, None);
    let evs = events(&out);
    let stop = evs
        .iter()
        .position(|e| e.event.as_deref() == Some("content_block_stop"))
        .unwrap();
    let last: Value = serde_json::from_str(&evs[stop - 1].data).unwrap();
    assert_eq!(evs[stop - 1].event.as_deref(), Some("content_block_delta"));
    assert_eq!(
        last,
        json!({"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hello world"}})
    );
    assert_eq!(blocks(&out)[0], "Hello world");
}

#[test]
fn a_leaked_canary_cuts_the_stream_with_an_anthropic_error_event() {
    let text = format!("The marker is {CANARY}, sorry.");
    let mut f = SseFilter::new(filters(FilterAction::Redact, FilterAction::Block));
    let (out, err) = run(&mut f, &messages_stream(&pieces(&text, &[18]), &[]), &[]);
    assert_eq!(err.as_deref(), Some("canary"));
    assert!(!String::from_utf8_lossy(&out).contains(CANARY));
    let cut = events(&f.blocked_event());
    assert_eq!(cut[0].event.as_deref(), Some("error"));
    let v: Value = serde_json::from_str(&cut[0].data).unwrap();
    assert_eq!(v["type"], "error");
    assert_eq!(v["error"]["type"], "output_blocked");
    // An OpenAI stream keeps the OpenAI shape.
    assert!(SseFilter::new(redacting())
        .blocked_event()
        .starts_with(b"data: {\"error\""));
}

#[test]
fn complete_blocks_in_start_events_are_filtered() {
    let w = [
        wire(
            Some("message_start"),
            &json!({"type":"message_start","message":{"type":"message","role":"assistant",
                "content":[{"type":"text","text":format!("pre {KEY}")}],"usage":{"input_tokens":3}}}),
        ),
        wire(
            Some("content_block_start"),
            &json!({"type":"content_block_start","index":0,"content_block":{"type":"tool_use",
                "id":"toolu_9","name":"n","input":{"aws_secret_access_key":AWS_SECRET}}}),
        ),
    ]
    .concat();
    let mut f = SseFilter::new(redacting());
    let (out, err) = run(&mut f, &w, &[]);
    assert_eq!(err, None);
    let evs = events(&out);
    let start: Value = serde_json::from_str(&evs[0].data).unwrap();
    assert_eq!(
        start["message"]["content"][0]["text"],
        "pre [REDACTED:openai-key]"
    );
    let block: Value = serde_json::from_str(&evs[1].data).unwrap();
    assert_eq!(
        block["content_block"]["input"],
        json!({"aws_secret_access_key": "[REDACTED:aws-key]"})
    );
}

#[test]
fn clean_messages_streams_pass() {
    let text = pieces("A calm answer about Paris.", &[3, 9]);
    let args = pieces(r#"{"city": "Paris"}"#, &[6]);
    let w = messages_stream(&text, &args);
    let mut f = SseFilter::new(redacting());
    let (out, err) = run(&mut f, &w, &[7, 300]);
    assert_eq!(err, None);
    assert_eq!(blocks(&out), blocks(&w));
    assert!(f.hits().is_empty());
    let mut f = SseFilter::new(FilterSet::default());
    assert_eq!(run(&mut f, &w, &[1, 200]).0, w);
    assert_eq!(f.usage().and_then(|u| u.prompt_tokens), Some(25));
}

proptest! {
    #[test]
    fn messages_leaks_are_redacted_whatever_the_split(
        filler in "[a-z .]{0,300}",
        text_cuts in proptest::collection::vec(0usize..700, 1..5),
        json_cuts in proptest::collection::vec(0usize..700, 1..5),
        chunks in proptest::collection::vec(0usize..5000, 0..10),
    ) {
        let text = format!("{filler} {KEY} {filler} {CANARY} end");
        let args = leaky_args(&filler);
        let w = messages_stream(&pieces(&text, &text_cuts), &pieces(&args, &json_cuts));
        let mut f = SseFilter::new(redacting());
        let (out, err) = run(&mut f, &w, &chunks);
        prop_assert_eq!(err, None);
        let got = blocks(&out);
        prop_assert_eq!(&got[0], &format!("{filler} [REDACTED:openai-key] {filler} [REDACTED:canary] end"));
        prop_assert_eq!(serde_json::from_str::<Value>(&got[1]).unwrap(), redacted_args(&filler));
        let s = String::from_utf8_lossy(&out);
        prop_assert!(!s.contains(KEY) && !s.contains(CANARY) && !s.contains(AWS_ID) && !s.contains(AWS_SECRET));
    }

    #[test]
    fn a_canary_in_messages_is_never_sent(
        filler in "[a-z ]{0,300}",
        cuts in proptest::collection::vec(0usize..700, 1..5),
        in_tool in any::<bool>(),
        chunks in proptest::collection::vec(0usize..5000, 0..10),
    ) {
        let text = format!("{filler} {CANARY} {filler}");
        let w = if in_tool {
            messages_stream(&[], &pieces(&leaky_args(&filler), &cuts))
        } else {
            messages_stream(&pieces(&text, &cuts), &[])
        };
        let mut f = SseFilter::new(filters(FilterAction::Redact, FilterAction::Block));
        let (out, err) = run(&mut f, &w, &chunks);
        prop_assert_eq!(err.as_deref(), Some("canary"));
        prop_assert!(!String::from_utf8_lossy(&out).contains(CANARY));
    }
}

#[test]
fn a_block_never_stopped_is_flushed_before_the_message_ends() {
    let mut w = messages_stream(&pieces(&format!("k {KEY}"), &[4]), &[]);
    // Drop the block's stop event.
    let stop = wire(
        Some("content_block_stop"),
        &json!({"type":"content_block_stop","index":0}),
    );
    let at = w
        .windows(stop.len())
        .position(|x| x == stop.as_slice())
        .unwrap();
    w.drain(at..at + stop.len());
    let mut f = SseFilter::new(redacting());
    let (out, err) = run(&mut f, &w, &[]);
    assert_eq!(err, None);
    let evs = events(&out);
    let delta = evs
        .iter()
        .rposition(|e| e.event.as_deref() == Some("content_block_delta"))
        .unwrap();
    let end = evs
        .iter()
        .position(|e| e.event.as_deref() == Some("message_delta"))
        .unwrap();
    assert!(delta < end);
    assert_eq!(blocks(&out)[0], "k [REDACTED:openai-key]");
}
