//! Tool calls in chat/completions stream chunks: a model can leak a secret or the canary
//! through the arguments it writes for a tool. Each tool call of a choice
//! (`choices[i].delta.tool_calls[].index`) is a lane of its own, fed the
//! `function.arguments` fragments, so a secret split over many fragments is still seen
//! whole; the legacy `delta.function_call.arguments` is one more lane of the choice. A
//! call's lane closes when the choice starts a later call or finishes; its held-back
//! arguments then go out as one more chunk carrying only `index` and
//! `function.arguments` (clients append argument fragments by index), before the chunk
//! that closed it. Arguments stay a JSON string; redaction replaces only secret values, so
//! JSON arguments stay JSON.

use super::{LaneKey, SseFilter};
use serde_json::{json, Value};

/// Whether any choice of the chunk carries tool-call deltas.
pub(super) fn has_calls(v: &Value) -> bool {
    v.get("choices")
        .and_then(Value::as_array)
        .is_some_and(|cs| {
            cs.iter().any(|c| {
                c.pointer("/delta/tool_calls").is_some()
                    || c.pointer("/delta/function_call").is_some()
            })
        })
}

/// Filters the argument fragments of choice `choice` (`c`) in place; `shape` is the chunk,
/// the model of flush chunks. `finished`: the chunk ends the choice, so its fragments end
/// their calls and carry all that is left of them (a flush chunk would come before them).
pub(super) fn deltas(
    f: &mut SseFilter,
    choice: u64,
    c: &mut Value,
    shape: &Value,
    finished: bool,
    out: &mut Vec<u8>,
) -> Result<(), String> {
    if let Some(Value::Array(calls)) = c.pointer_mut("/delta/tool_calls") {
        for call in calls {
            let n = call.get("index").and_then(Value::as_u64).unwrap_or(0);
            let key = LaneKey::Tool(choice, Some(n));
            if !f.lanes.contains_key(&key) {
                // A new call: the choice's earlier ones are complete.
                let earlier: Vec<LaneKey> = f
                    .lanes
                    .keys()
                    .filter(|k| matches!(k, LaneKey::Tool(c, Some(m)) if *c == choice && *m < n))
                    .cloned()
                    .collect();
                for k in earlier {
                    f.close(&k, out)?;
                }
                f.open(&key, || shape.clone(), None);
            }
            arguments(f, &key, call, finished)?;
        }
    }
    if let Some(call) = c.pointer_mut("/delta/function_call") {
        let key = LaneKey::Tool(choice, None);
        f.open(&key, || shape.clone(), None);
        arguments(f, &key, call, finished)?;
    }
    Ok(())
}

/// Sends `call.function.arguments` (or a legacy `function_call.arguments`) through `key`;
/// `end`: the call's arguments are complete.
fn arguments(f: &mut SseFilter, key: &LaneKey, call: &mut Value, end: bool) -> Result<(), String> {
    let func = if call.get("function").is_some_and(Value::is_object) {
        &mut call["function"]
    } else {
        call
    };
    if let Some(Value::String(a)) = func.get_mut("arguments") {
        *a = f.pass(key, a, end)?;
    }
    Ok(())
}

/// Closes every tool-call lane of choice `choice` (its held-back arguments go to `out`).
pub(super) fn close(f: &mut SseFilter, choice: u64, out: &mut Vec<u8>) -> Result<(), String> {
    let keys: Vec<LaneKey> = f
        .lanes
        .keys()
        .filter(|k| matches!(k, LaneKey::Tool(c, _) if *c == choice))
        .cloned()
        .collect();
    for k in keys {
        f.close(&k, out)?;
    }
    Ok(())
}

/// A chunk like `template` carrying `text` as more arguments of tool call `call` (or of the
/// legacy function call) of choice `choice`.
pub(super) fn flush_chunk(template: &Value, choice: u64, call: Option<u64>, text: &str) -> Value {
    let mut chunk = if template.is_object() {
        template.clone()
    } else {
        json!({"object": "chat.completion.chunk"})
    };
    let delta = match call {
        Some(n) => json!({"tool_calls": [{"index": n, "function": {"arguments": text}}]}),
        None => json!({"function_call": {"arguments": text}}),
    };
    if let Some(o) = chunk.as_object_mut() {
        o.remove("usage");
        o.insert(
            "choices".into(),
            json!([{"index": choice, "delta": delta, "finish_reason": null}]),
        );
    }
    chunk
}
