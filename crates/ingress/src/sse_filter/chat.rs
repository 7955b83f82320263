//! Chat/completions stream chunks: each choice (`index`) is a lane; its text is
//! `delta.content` (chat) or `text` (legacy completions). The other texts a delta may carry
//! — `reasoning_content` (vLLM, DeepSeek), `reasoning` (vLLM, OpenRouter), `refusal`
//! (OpenAI) — are lanes of their own per choice: clients show them, and a model that leaks
//! its system prompt (and the canary in it) often does so while reasoning. A choice's `finish_reason` ends
//! its lane (and, through [`super::tools`], the lanes of its tool calls, whose held-back
//! arguments go out just before the finishing chunk). With filters, a choice's `logprobs`
//! are dropped: their tokens spell the text out again, past the filter.

use super::{tools, LaneKey, SseFilter};
use serde_json::Value;

/// Filters the text and tool-call arguments of every choice of one chunk in place; events
/// that end tool-call lanes go to `out` first.
pub(super) fn event(f: &mut SseFilter, v: &mut Value, out: &mut Vec<u8>) -> Result<(), String> {
    let Some(indexes) = v.get("choices").and_then(Value::as_array).map(|cs| {
        cs.iter()
            .map(|c| c.get("index").and_then(Value::as_u64).unwrap_or(0))
            .collect::<Vec<_>>()
    }) else {
        return Ok(());
    };
    if indexes
        .iter()
        .any(|i| !f.lanes.contains_key(&LaneKey::Choice(*i)))
    {
        let shape = v.clone();
        for i in &indexes {
            f.open(&LaneKey::Choice(*i), || shape.clone(), None);
        }
    }
    let filtering = !f.filters.is_empty();
    let shape = tools::has_calls(v).then(|| v.clone());
    // The chunk's shape, for lanes of side texts that open here (cloned only then).
    let has_side = v
        .get("choices")
        .and_then(Value::as_array)
        .is_some_and(|cs| {
            cs.iter().any(|c| {
                SIDE_TEXTS.iter().any(|k| {
                    c.get("delta")
                        .and_then(|d| d.get(*k))
                        .is_some_and(Value::is_string)
                })
            })
        });
    let side_shape = if has_side { v.clone() } else { Value::Null };
    let Some(choices) = v.get_mut("choices").and_then(Value::as_array_mut) else {
        return Ok(());
    };
    for (c, idx) in choices.iter_mut().zip(indexes) {
        let finished = c.get("finish_reason").is_some_and(|r| !r.is_null());
        if let Some(shape) = &shape {
            tools::deltas(f, idx, c, shape, finished, out)?;
        }
        if finished {
            tools::close(f, idx, out)?;
        }
        for field in SIDE_TEXTS {
            side_text(f, c, idx, field, finished, &side_shape)?;
        }
        if filtering {
            text_parts(f, c, idx)?;
        }
        let incoming = text_of(c).map(str::to_string);
        if incoming.is_none() && !(finished && filtering) {
            continue;
        }
        let t = f.pass(
            &LaneKey::Choice(idx),
            &incoming.unwrap_or_default(),
            finished,
        )?;
        set_text(c, t);
        if filtering {
            // Token log-probabilities spell the text out again, unfiltered.
            if let Some(lp) = c.get_mut("logprobs").filter(|l| !l.is_null()) {
                *lp = Value::Null;
            }
        }
    }
    Ok(())
}

/// Texts of a chat delta beside `content`, each filtered as a lane of its own.
const SIDE_TEXTS: [&str; 3] = ["reasoning_content", "reasoning", "refusal"];

/// Filters `delta.<field>` of choice `idx` through its lane; a finishing choice releases
/// what the lane held back into its own `delta.<field>`.
fn side_text(
    f: &mut SseFilter,
    c: &mut Value,
    idx: u64,
    field: &'static str,
    finished: bool,
    shape: &Value,
) -> Result<(), String> {
    let key = LaneKey::Side(idx, field);
    let incoming = c
        .get("delta")
        .and_then(|d| d.get(field))
        .and_then(Value::as_str)
        .map(str::to_string);
    if incoming.is_none() && !(finished && f.lanes.contains_key(&key)) {
        return Ok(());
    }
    if incoming.is_some() {
        f.open(&key, || shape.clone(), None);
    }
    let t = f.pass(&key, incoming.as_deref().unwrap_or(""), finished)?;
    if incoming.is_none() && t.is_empty() {
        return Ok(());
    }
    match c.get_mut("delta").and_then(Value::as_object_mut) {
        Some(d) => {
            d.insert(field.into(), Value::String(t));
        }
        None => {
            if let Some(o) = c.as_object_mut() {
                o.insert("delta".into(), serde_json::json!({ field: t }));
            }
        }
    }
    Ok(())
}

/// A chunk like `template` carrying `text` in `delta.<field>` for choice `idx` only.
pub(super) fn flush_side(template: &Value, idx: u64, field: &str, text: &str) -> Value {
    let mut chunk = flush_chunk(template, idx, "");
    if let Some(c) = chunk.pointer_mut("/choices/0") {
        *c = serde_json::json!({"index": idx, "delta": {field: text}, "finish_reason": null});
    }
    chunk
}

/// `delta.content` sent as an array of parts (`[{"type":"text","text":…}]`, as some
/// OpenAI-compatible servers stream it): each part's `text` goes through the choice's lane
/// in order and is replaced by what the lane lets out, so a secret split across parts or
/// chunks is caught as in a string; what the lane holds back at the end comes out as one
/// more part of the finishing chunk ([`set_text`]).
fn text_parts(f: &mut SseFilter, c: &mut Value, idx: u64) -> Result<(), String> {
    let Some(parts) = c
        .pointer_mut("/delta/content")
        .and_then(Value::as_array_mut)
    else {
        return Ok(());
    };
    for part in parts.iter_mut() {
        let Some(t) = part.get("text").and_then(Value::as_str).map(str::to_string) else {
            continue;
        };
        let out = f.pass(&LaneKey::Choice(idx), &t, false)?;
        part["text"] = Value::String(out);
    }
    Ok(())
}

/// A choice's new text: `delta.content` (chat) or `text` (completions).
fn text_of(c: &Value) -> Option<&str> {
    c.get("text")
        .and_then(Value::as_str)
        .or_else(|| c.pointer("/delta/content").and_then(Value::as_str))
}

/// Puts filtered text back where it came from. A finished choice that had none (a final
/// chunk with only `finish_reason`) gets `delta.content` when held-back text remains, and is
/// left as it was otherwise (tool-call deltas keep their `content: null`).
fn set_text(c: &mut Value, t: String) {
    if c.get("text").is_some_and(Value::is_string) {
        c["text"] = Value::String(t);
    } else if c.pointer("/delta/content").is_some_and(Value::is_string) {
        c["delta"]["content"] = Value::String(t);
    } else if let Some(parts) = c
        .pointer_mut("/delta/content")
        .and_then(Value::as_array_mut)
    {
        if !t.is_empty() {
            parts.push(serde_json::json!({"type": "text", "text": t}));
        }
    } else if !t.is_empty() {
        if let Some(d) = c.get_mut("delta").and_then(Value::as_object_mut) {
            d.insert("content".into(), Value::String(t));
        } else if let Some(o) = c.as_object_mut() {
            o.insert("delta".into(), serde_json::json!({ "content": t }));
        }
    }
}

/// A chunk like `template` carrying `text` for choice `idx` only.
pub(super) fn flush_chunk(template: &Value, idx: u64, text: &str) -> Value {
    let mut chunk = if template.is_object() {
        template.clone()
    } else {
        serde_json::json!({"object": "chat.completion.chunk"})
    };
    if let Some(o) = chunk.as_object_mut() {
        let choice = if template.pointer("/choices/0/text").is_some() {
            serde_json::json!({"index": idx, "text": text, "finish_reason": null})
        } else {
            serde_json::json!({"index": idx, "delta": {"content": text}, "finish_reason": null})
        };
        o.remove("usage");
        o.insert("choices".into(), Value::Array(vec![choice]));
    }
    chunk
}
