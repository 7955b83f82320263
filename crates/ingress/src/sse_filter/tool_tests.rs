//! Chat/completions tool calls through the stream filter: an AWS key pair and the canary
//! written into a tool call's arguments, split over any number of fragments and network
//! chunks, are redacted (the arguments stay JSON) or cut the stream; each tool call is a
//! lane of its own; clean tool calls pass unchanged.

use super::tests::{events, filters, pieces, redacting, run, wire, CANARY};
use super::*;
use crate::filter::FilterAction;
use proptest::prelude::*;
use serde_json::json;

pub(super) const AWS_ID: &str = "AKIAIOSFODNN7EXAMPLE";
pub(super) const AWS_SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";

/// Tool-call arguments (JSON) leaking an AWS key pair and the canary after `filler`.
pub(super) fn leaky_args(filler: &str) -> String {
    json!({"query": filler, "aws_access_key_id": AWS_ID, "aws_secret_access_key": AWS_SECRET,
           "note": format!("marker {CANARY}")})
    .to_string()
}

/// `leaky_args` as the client must see them.
pub(super) fn redacted_args(filler: &str) -> Value {
    json!({"query": filler, "aws_access_key_id": "[REDACTED:aws-key]",
           "aws_secret_access_key": "[REDACTED:aws-key]", "note": "marker [REDACTED:canary]"})
}

/// A chat stream of one choice calling tools; `calls[n]` are the argument fragments of
/// tool call `n`.
fn tool_stream(calls: &[Vec<String>]) -> Vec<u8> {
    tool_stream_ending(calls, false)
}

/// [`tool_stream`]; `last_in_finish`: the last fragment comes in the finishing chunk.
fn tool_stream_ending(calls: &[Vec<String>], last_in_finish: bool) -> Vec<u8> {
    let chunk = |delta: Value, finish: Value| {
        wire(
            None,
            &json!({"id":"c1","object":"chat.completion.chunk","created":1,"model":"m",
                    "choices":[{"index":0,"delta":delta,"finish_reason":finish}]}),
        )
    };
    let mut w = chunk(json!({"role":"assistant","content":null}), Value::Null);
    for (n, frags) in calls.iter().enumerate() {
        w.extend(chunk(
            json!({"tool_calls":[{"index":n,"id":format!("call_{n}"),"type":"function",
                                  "function":{"name":"lookup","arguments":""}}]}),
            Value::Null,
        ));
        let held = usize::from(last_in_finish && n + 1 == calls.len());
        for a in &frags[..frags.len().saturating_sub(held)] {
            w.extend(chunk(
                json!({"tool_calls":[{"index":n,"function":{"arguments":a}}]}),
                Value::Null,
            ));
        }
    }
    let last = calls
        .last()
        .and_then(|c| c.last())
        .filter(|_| last_in_finish);
    let end = match last {
        Some(a) => json!({"tool_calls":[{"index":calls.len() - 1,"function":{"arguments":a}}]}),
        None => json!({}),
    };
    w.extend(chunk(end, json!("tool_calls")));
    w.extend(wire(
        None,
        &json!({"id":"c1","object":"chat.completion.chunk","choices":[],
                "usage":{"prompt_tokens":11,"completion_tokens":22,"total_tokens":33}}),
    ));
    w.extend(b"data: [DONE]\n\n");
    w
}

/// What a client accumulates per tool call: (id, name, arguments); and whether any tool
/// delta came after the finishing chunk.
fn tool_calls(out: &[u8]) -> (Vec<(String, String, String)>, bool) {
    let mut calls: Vec<(String, String, String)> = Vec::new();
    let mut finished = false;
    let mut late = false;
    for e in events(out).iter().filter(|e| e.data != "[DONE]") {
        let v: Value = serde_json::from_str(&e.data).unwrap();
        for c in v["choices"].as_array().unwrap() {
            for t in c
                .pointer("/delta/tool_calls")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                late |= finished;
                let n = t["index"].as_u64().unwrap() as usize;
                if calls.len() <= n {
                    calls.resize(n + 1, Default::default());
                }
                let s = |p: &str| t.pointer(p).and_then(Value::as_str).unwrap_or("");
                calls[n].0 += s("/id");
                calls[n].1 += s("/function/name");
                calls[n].2 += s("/function/arguments");
            }
            finished |= !c["finish_reason"].is_null();
        }
    }
    (calls, late)
}

/// Splits `text` into the fragments given by `cuts` (at most 5 pieces when `cuts` has ≤ 4).
fn frags(text: &str, cuts: &[usize]) -> Vec<String> {
    pieces(text, cuts)
}

#[test]
fn a_key_pair_and_canary_in_tool_arguments_are_redacted() {
    let args = leaky_args("weather");
    let mut f = SseFilter::new(redacting());
    let parts = frags(&args, &[30, 61, 100, 140]);
    let (out, err) = run(&mut f, &tool_stream(&[parts]), &[]);
    assert_eq!(err, None);
    let (calls, late) = tool_calls(&out);
    assert!(
        !late,
        "held-back arguments must precede the finishing chunk"
    );
    assert_eq!(calls.len(), 1);
    assert_eq!(
        (calls[0].0.as_str(), calls[0].1.as_str()),
        ("call_0", "lookup")
    );
    let got: Value = serde_json::from_str(&calls[0].2).expect("arguments stay JSON");
    assert_eq!(got, redacted_args("weather"));
    let s = String::from_utf8_lossy(&out);
    assert!(
        !s.contains(AWS_ID) && !s.contains(AWS_SECRET) && !s.contains(CANARY),
        "{s}"
    );
    let mut names: Vec<_> = f.hits().into_iter().map(|h| h.name).collect();
    names.sort();
    assert_eq!(names, ["aws-key", "aws-key", "canary"]);
    assert_eq!(
        f.usage(),
        Some(Usage {
            prompt_tokens: Some(11),
            completion_tokens: Some(22)
        })
    );
}

#[test]
fn each_tool_call_is_its_own_lane() {
    // The canary's halves sit in two different calls: they never form the canary.
    let half = CANARY.len() / 2;
    let a = format!("{{\"q\":\"{}\"}}", &CANARY[..half]);
    let b = format!("{{\"q\":\"{}\"}}", &CANARY[half..]);
    let calls = [frags(&a, &[4]), frags(&b, &[3, 7])];
    let mut f = SseFilter::new(redacting());
    let (out, err) = run(&mut f, &tool_stream(&calls), &[]);
    assert_eq!(err, None);
    let (got, _) = tool_calls(&out);
    assert_eq!(got[0].2, a);
    assert_eq!(got[1].2, b);
    assert!(f.hits().is_empty());
}

#[test]
fn a_canary_in_tool_arguments_cuts_the_stream() {
    let args = leaky_args("x");
    let mut f = SseFilter::new(filters(FilterAction::Redact, FilterAction::Block));
    let (out, err) = run(&mut f, &tool_stream(&[frags(&args, &[120, 125])]), &[]);
    assert_eq!(err.as_deref(), Some("canary"));
    assert!(!String::from_utf8_lossy(&out).contains(CANARY));
}

#[test]
fn the_legacy_function_call_is_filtered() {
    let args = leaky_args("y");
    let mut w = Vec::new();
    for a in frags(&args, &[50, 110]) {
        w.extend(wire(
            None,
            &json!({"choices":[{"index":0,"delta":{"function_call":{"arguments":a}},"finish_reason":null}]}),
        ));
    }
    w.extend(wire(
        None,
        &json!({"choices":[{"index":0,"delta":{},"finish_reason":"function_call"}]}),
    ));
    let mut f = SseFilter::new(redacting());
    let (out, err) = run(&mut f, &w, &[]);
    assert_eq!(err, None);
    let got: String = events(&out)
        .iter()
        .filter_map(|e| serde_json::from_str::<Value>(&e.data).ok())
        .filter_map(|v| {
            v.pointer("/choices/0/delta/function_call/arguments")?
                .as_str()
                .map(str::to_string)
        })
        .collect();
    assert_eq!(
        serde_json::from_str::<Value>(&got).unwrap(),
        redacted_args("y")
    );
}

#[test]
fn clean_tool_calls_pass_unchanged() {
    let args = json!({"city": "Paris", "unit": "celsius", "days": 3}).to_string();
    let calls = [frags(&args, &[5, 17]), frags("{}", &[])];
    let w = tool_stream(&calls);
    let mut f = SseFilter::new(redacting());
    let (out, err) = run(&mut f, &w, &[]);
    assert_eq!(err, None);
    let (got, late) = tool_calls(&out);
    assert!(!late);
    assert_eq!(got, tool_calls(&w).0);
    assert!(f.hits().is_empty());
    assert_eq!(f.usage().and_then(|u| u.completion_tokens), Some(22));
    // Without filters the stream is passed byte for byte.
    let mut f = SseFilter::new(FilterSet::default());
    assert_eq!(run(&mut f, &w, &[3, 99]).0, w);
}

proptest! {
    #[test]
    fn tool_argument_leaks_are_redacted_whatever_the_split(
        filler in "[a-z .]{0,300}",
        cuts in proptest::collection::vec(0usize..700, 1..5),
        chunks in proptest::collection::vec(0usize..5000, 0..10),
        second in proptest::collection::vec(0usize..700, 0..5),
        last_in_finish in any::<bool>(),
    ) {
        let args = leaky_args(&filler);
        let calls = [frags(&args, &cuts), frags(&leaky_args(&filler), &second)];
        let mut f = SseFilter::new(redacting());
        let (out, err) = run(&mut f, &tool_stream_ending(&calls, last_in_finish), &chunks);
        prop_assert_eq!(err, None);
        let (got, late) = tool_calls(&out);
        prop_assert!(!late);
        prop_assert_eq!(got.len(), 2);
        prop_assert_eq!(serde_json::from_str::<Value>(&got[0].2).unwrap(), redacted_args(&filler));
        prop_assert_eq!(serde_json::from_str::<Value>(&got[1].2).unwrap(), redacted_args(&filler));
        prop_assert_eq!(&got[1].0, "call_1");
        let s = String::from_utf8_lossy(&out);
        prop_assert!(!s.contains(AWS_ID) && !s.contains(AWS_SECRET) && !s.contains(CANARY));
    }

    #[test]
    fn a_canary_in_tool_arguments_is_never_sent(
        filler in "[a-z ]{0,300}",
        cuts in proptest::collection::vec(0usize..700, 1..5),
        chunks in proptest::collection::vec(0usize..5000, 0..10),
    ) {
        let calls = [frags(&leaky_args(&filler), &cuts)];
        let mut f = SseFilter::new(filters(FilterAction::Redact, FilterAction::Block));
        let (out, err) = run(&mut f, &tool_stream(&calls), &chunks);
        prop_assert_eq!(err.as_deref(), Some("canary"));
        prop_assert!(!String::from_utf8_lossy(&out).contains(CANARY));
    }
}

#[test]
fn responses_function_call_arguments_are_redacted_everywhere() {
    let args = leaky_args("r");
    let item = |a: &str| json!({"id":"fc_1","type":"function_call","call_id":"call_1","name":"lookup","arguments":a});
    let mut w = Vec::new();
    let mut ev = |name: &str, mut data: Value| {
        data["type"] = json!(name);
        w.extend(wire(Some(name), &data));
    };
    ev(
        "response.output_item.added",
        json!({"output_index":0,"item":item("")}),
    );
    for p in frags(&args, &[25, 60, 90, 140]) {
        ev(
            "response.function_call_arguments.delta",
            json!({"item_id":"fc_1","output_index":0,"delta":p}),
        );
    }
    ev(
        "response.function_call_arguments.done",
        json!({"item_id":"fc_1","output_index":0,"arguments":args}),
    );
    ev(
        "response.output_item.done",
        json!({"output_index":0,"item":item(&args)}),
    );
    ev(
        "response.completed",
        json!({"response":{"id":"resp_1","output":[item(&args)]}}),
    );
    let mut f = SseFilter::new(redacting());
    let (out, err) = run(&mut f, &w, &[]);
    assert_eq!(err, None);
    let mut deltas = String::new();
    let mut copies = Vec::new();
    for e in events(&out) {
        let v: Value = serde_json::from_str(&e.data).unwrap();
        match v["type"].as_str().unwrap() {
            "response.function_call_arguments.delta" => deltas += v["delta"].as_str().unwrap(),
            "response.function_call_arguments.done" => copies.push(v["arguments"].clone()),
            "response.output_item.done" => copies.push(v["item"]["arguments"].clone()),
            "response.completed" => copies.push(v["response"]["output"][0]["arguments"].clone()),
            _ => {}
        }
    }
    assert_eq!(
        serde_json::from_str::<Value>(&deltas).unwrap(),
        redacted_args("r")
    );
    assert_eq!(copies.len(), 3);
    for c in copies {
        assert_eq!(
            serde_json::from_str::<Value>(c.as_str().unwrap()).unwrap(),
            redacted_args("r")
        );
    }
    let s = String::from_utf8_lossy(&out);
    assert!(
        !s.contains(AWS_ID) && !s.contains(AWS_SECRET) && !s.contains(CANARY),
        "{s}"
    );
}

#[test]
fn a_last_fragment_in_the_finishing_chunk_keeps_its_place() {
    // Some backends send the last fragment together with `finish_reason`.
    // Longer than the hold-back, so the first chunk already releases some arguments.
    let filler = "z".repeat(300);
    let args = leaky_args(&filler);
    let (head, tail) = args.split_at(args.len() - 30);
    let chunk = |delta: Value, finish: Value| {
        wire(
            None,
            &json!({"choices":[{"index":0,"delta":delta,"finish_reason":finish}]}),
        )
    };
    let w = [
        chunk(
            json!({"tool_calls":[{"index":0,"id":"call_0","function":{"name":"f","arguments":head}}]}),
            Value::Null,
        ),
        chunk(
            json!({"tool_calls":[{"index":0,"function":{"arguments":tail}}]}),
            json!("tool_calls"),
        ),
    ]
    .concat();
    for filters in [redacting(), FilterSet::default()] {
        let mut f = SseFilter::new(filters);
        let (out, err) = run(&mut f, &w, &[]);
        assert_eq!(err, None);
        let (calls, late) = tool_calls(&out);
        assert!(!late);
        let got: Value = serde_json::from_str(&calls[0].2).unwrap();
        if f.hits().is_empty() {
            assert_eq!(calls[0].2, args);
        } else {
            assert_eq!(got, redacted_args(&filler));
        }
    }
}
