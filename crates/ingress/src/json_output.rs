//! Output filtering of JSON values as a whole: a non-streamed response body
//! (chat/completions with `message.content` and `message.tool_calls[].function.arguments`,
//! the Responses API, Anthropic Messages `content[]` blocks) and the complete objects some
//! stream events carry (Anthropic `message_start`, `content_block_start`).
//!
//! Every string is scanned once decoded, so a secret in tool-call arguments (JSON inside a
//! JSON string, its quotes escaped on the wire) is seen as the model wrote it. A tool-use
//! block's `input` (a JSON object) is scanned as its serialization, so a key word and the
//! secret after it (`"aws_secret_access_key": "…"`) are seen together; redaction keeps the
//! JSON valid (only values are replaced), and when it cannot, the strings are filtered one
//! by one instead.

use crate::filter::{scan_whole, FilterHit, FilterSet};
use serde_json::Value;

/// Content-block types whose `input` object is model output (Anthropic).
const TOOL_USE_BLOCKS: [&str; 2] = ["tool_use", "server_tool_use"];

/// Filters every string of `v` in place with `scan` (which returns the filtered text, or
/// the name of a blocking finding).
pub fn filter_strings(
    v: &mut Value,
    scan: &mut dyn FnMut(&str) -> Result<String, String>,
) -> Result<(), String> {
    match v {
        Value::String(s) => {
            let t = scan(s)?;
            if t != *s {
                *s = t;
            }
            Ok(())
        }
        Value::Array(a) => a.iter_mut().try_for_each(|x| filter_strings(x, scan)),
        Value::Object(o) => {
            let tool_use = o
                .get("type")
                .and_then(Value::as_str)
                .is_some_and(|t| TOOL_USE_BLOCKS.contains(&t));
            for (k, x) in o.iter_mut() {
                if tool_use && k == "input" && (x.is_object() || x.is_array()) {
                    filter_serialized(x, scan)?;
                } else {
                    filter_strings(x, scan)?;
                }
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// Filters `v` as its compact serialization; falls back to its strings one by one when the
/// redacted text is no longer JSON.
fn filter_serialized(
    v: &mut Value,
    scan: &mut dyn FnMut(&str) -> Result<String, String>,
) -> Result<(), String> {
    let text = v.to_string();
    let t = scan(&text)?;
    if t == text {
        return Ok(());
    }
    match serde_json::from_str::<Value>(&t) {
        Ok(n) => {
            *v = n;
            Ok(())
        }
        Err(_) => filter_strings(v, scan),
    }
}

/// A whole (non-streamed) response body filtered: `Ok(None)` when nothing changed (send
/// the original bytes), `Ok(Some(bytes))` the filtered body, `Err` a blocking finding.
/// A body that is not JSON is scanned as text. Findings are added to `hits`.
pub fn filter_body(
    raw: &[u8],
    filters: &FilterSet,
    hits: &mut Vec<FilterHit>,
) -> Result<Option<Vec<u8>>, String> {
    // Whether any text came back different (then the body is serialized again).
    let mut changed = false;
    let mut scan = |t: &str| {
        let (r, h) = scan_whole(filters, t);
        hits.extend(h);
        if r.as_deref().is_ok_and(|n| n != t) {
            changed = true;
        }
        r
    };
    let Ok(mut v) = serde_json::from_slice::<Value>(raw) else {
        let text = String::from_utf8_lossy(raw);
        let t = scan(&text)?;
        return Ok((t != text).then(|| t.into_bytes()));
    };
    // A Responses-API answer echoes the request's `instructions`, canary note included.
    let mut stripped = false;
    if let (Some((canary, _)), Some(Value::String(ins))) =
        (&filters.canary, echoed_instructions(&mut v))
    {
        let without = crate::openai::strip_canary_note(ins, canary);
        stripped = without != *ins;
        *ins = without;
    }
    filter_strings(&mut v, &mut scan)?;
    if !(changed || stripped) {
        return Ok(None);
    }
    Ok(Some(serde_json::to_vec(&v).unwrap_or_default()))
}

/// The `instructions` a Responses-API answer (`"object": "response"`) repeats.
fn echoed_instructions(v: &mut Value) -> Option<&mut Value> {
    let o = v.as_object_mut()?;
    if o.get("object").and_then(Value::as_str) != Some("response") {
        return None;
    }
    o.get_mut("instructions")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::filter::FilterAction;
    use palisade_egress::dlp::Detector;
    use proptest::prelude::*;
    use serde_json::json;

    const CANARY: &str = "pcn-7f3a9c1e5b2d4a60";
    const AWS_ID: &str = "AKIAIOSFODNN7EXAMPLE";
    const AWS_SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";

    fn filters(canary: FilterAction) -> FilterSet {
        FilterSet {
            detectors: Detector::parse_set("secrets")
                .unwrap()
                .into_iter()
                .map(|d| (d, FilterAction::Redact))
                .collect(),
            canary: Some((CANARY.into(), canary)),
        }
    }

    fn leaky_args() -> String {
        json!({"aws_access_key_id": AWS_ID, "aws_secret_access_key": AWS_SECRET, "note": CANARY})
            .to_string()
    }

    fn redacted_args() -> Value {
        json!({"aws_access_key_id": "[REDACTED:aws-key]", "aws_secret_access_key": "[REDACTED:aws-key]",
               "note": "[REDACTED:canary]"})
    }

    fn chat_body() -> Vec<u8> {
        json!({"id":"chatcmpl-1","object":"chat.completion","choices":[{"index":0,"finish_reason":"tool_calls",
            "message":{"role":"assistant","content":null,"function_call":{"name":"f","arguments":leaky_args()},
            "tool_calls":[{"id":"call_1","type":"function","function":{"name":"lookup","arguments":leaky_args()}}]}}],
            "usage":{"prompt_tokens":5,"completion_tokens":7}})
        .to_string()
        .into_bytes()
    }

    #[test]
    fn tool_call_arguments_are_redacted_and_stay_json() {
        let raw = chat_body();
        // On the wire the arguments' quotes are escaped: a byte scan misses the secret key.
        let (_, raw_hits) = scan_whole(
            &filters(FilterAction::Redact),
            &String::from_utf8_lossy(&raw),
        );
        assert_eq!(raw_hits.iter().filter(|h| h.name == "aws-key").count(), 2);
        let mut hits = Vec::new();
        let out = filter_body(&raw, &filters(FilterAction::Redact), &mut hits)
            .unwrap()
            .expect("changed");
        let v: Value = serde_json::from_slice(&out).unwrap();
        let m = &v["choices"][0]["message"];
        for args in [
            &m["tool_calls"][0]["function"]["arguments"],
            &m["function_call"]["arguments"],
        ] {
            let a: Value = serde_json::from_str(args.as_str().unwrap()).unwrap();
            assert_eq!(a, redacted_args());
        }
        assert_eq!(m["tool_calls"][0]["id"], "call_1");
        assert_eq!(hits.len(), 6, "{hits:?}");
        let s = String::from_utf8_lossy(&out);
        assert!(!s.contains(AWS_SECRET) && !s.contains(AWS_ID) && !s.contains(CANARY));
    }

    #[test]
    fn anthropic_content_blocks_are_redacted() {
        let raw = json!({"id":"msg_1","type":"message","role":"assistant","model":"claude",
            "content":[{"type":"text","text":format!("marker {CANARY} ok")},
                       {"type":"tool_use","id":"toolu_1","name":"lookup",
                        "input":{"aws_secret_access_key":AWS_SECRET,"nested":{"id":AWS_ID}}}],
            "stop_reason":"tool_use","usage":{"input_tokens":25,"output_tokens":9}})
        .to_string();
        let mut hits = Vec::new();
        let out = filter_body(raw.as_bytes(), &filters(FilterAction::Redact), &mut hits)
            .unwrap()
            .unwrap();
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["content"][0]["text"], "marker [REDACTED:canary] ok");
        assert_eq!(
            v["content"][1]["input"],
            json!({"aws_secret_access_key":"[REDACTED:aws-key]","nested":{"id":"[REDACTED:aws-key]"}})
        );
        assert_eq!(v["usage"]["output_tokens"], 9);
    }

    #[test]
    fn a_canary_blocks_a_whole_body() {
        let mut hits = Vec::new();
        let r = filter_body(&chat_body(), &filters(FilterAction::Block), &mut hits);
        assert_eq!(r, Err("canary".to_string()));
        assert!(hits
            .iter()
            .any(|h| h.name == "canary" && h.action == FilterAction::Block));
    }

    #[test]
    fn the_echoed_instructions_lose_the_canary_note_and_a_leak_is_still_caught() {
        let note = crate::openai::canary_note(CANARY);
        let echo = |text: &str| {
            json!({"object": "response", "instructions": format!("Be brief.\n\n{note}"),
                   "output": [{"type": "message", "content": [{"type": "output_text", "text": text}]}]})
            .to_string()
            .into_bytes()
        };
        let mut hits = Vec::new();
        let out = filter_body(&echo("Paris."), &filters(FilterAction::Block), &mut hits)
            .unwrap()
            .expect("the note is taken out");
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["instructions"], "Be brief.");
        assert_eq!(v["output"][0]["content"][0]["text"], "Paris.");
        assert!(hits.is_empty(), "{hits:?}");
        // The model repeating the canary is a leak all the same.
        let leak = echo(&format!("The marker is {CANARY}."));
        assert_eq!(
            filter_body(&leak, &filters(FilterAction::Block), &mut hits),
            Err("canary".to_string())
        );
        // Not a Responses answer: an `instructions` field is scanned like any other.
        let other = json!({"instructions": note}).to_string().into_bytes();
        assert!(filter_body(&other, &filters(FilterAction::Block), &mut Vec::new()).is_err());
    }

    #[test]
    fn clean_and_non_json_bodies() {
        let clean = br#"{"choices":[{"message":{"content":"Paris is sunny.","tool_calls":[{"function":{"arguments":"{\"city\":\"Paris\"}"}}]}}]}"#;
        let mut hits = Vec::new();
        assert_eq!(
            filter_body(clean, &filters(FilterAction::Block), &mut hits),
            Ok(None)
        );
        assert!(hits.is_empty());
        let text = format!("not json {AWS_ID}");
        let out = filter_body(text.as_bytes(), &filters(FilterAction::Block), &mut hits)
            .unwrap()
            .unwrap();
        assert_eq!(out, b"not json [REDACTED:aws-key]");
    }

    proptest! {
        #[test]
        fn arbitrary_json_never_panics_and_never_leaks(s in "[a-z \"{}:,\\[\\]]{0,80}") {
            let raw = json!({"content":[{"type":"tool_use","input":{"q":s.clone(),"k":AWS_ID}},{"type":"text","text":s}]}).to_string();
            let mut hits = Vec::new();
            let out = filter_body(raw.as_bytes(), &filters(FilterAction::Redact), &mut hits).unwrap().unwrap();
            prop_assert!(!String::from_utf8_lossy(&out).contains(AWS_ID));
            prop_assert!(serde_json::from_slice::<Value>(&out).is_ok());
        }
    }
}
