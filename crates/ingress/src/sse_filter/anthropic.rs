//! Anthropic Messages-API stream events (`POST /v1/messages` with `stream: true`). Each
//! content block (`index`) is a lane, fed by its `content_block_delta` events: `text_delta`
//! (`text`), `input_json_delta` (`partial_json`, the tool input being written) and
//! `thinking_delta` (`thinking`). `content_block_stop` closes the lane (`message_delta`
//! closes any left open): its held-back text goes out first, as one more delta event
//! shaped like the block's own. The complete
//! objects in `message_start` and `content_block_start` are filtered whole. Usage
//! (`message_start.message.usage`, `message_delta.usage`) is read by the caller. A cut
//! stream ends with the API's own `error` event.

use super::{LaneKey, SseFilter};
use crate::json_output::filter_strings;
use crate::sse::SseEvent;
use serde_json::{json, Value};

/// The `type`s of Messages-API stream events.
const EVENTS: [&str; 8] = [
    "message_start",
    "message_delta",
    "message_stop",
    "content_block_start",
    "content_block_delta",
    "content_block_stop",
    "ping",
    "error",
];

/// Delta types whose text is model output, with the field carrying it.
const DELTAS: [(&str, &str); 3] = [
    ("text_delta", "text"),
    ("input_json_delta", "partial_json"),
    ("thinking_delta", "thinking"),
];

/// Whether `kind` is a Messages-API event type.
pub(super) fn is_event(kind: &str) -> bool {
    EVENTS.contains(&kind)
}

/// The field of a delta that carries its text.
fn text_field(delta: &Value) -> Option<&'static str> {
    let t = delta.get("type").and_then(Value::as_str)?;
    DELTAS.iter().find(|(d, _)| *d == t).map(|(_, f)| *f)
}

fn block(v: &Value) -> LaneKey {
    LaneKey::Block(v.get("index").and_then(Value::as_u64).unwrap_or(0))
}

/// Filters one event in place; a closed block's held-back text goes to `out` first.
pub(super) fn event(
    f: &mut SseFilter,
    kind: &str,
    sse_name: Option<&str>,
    v: &mut Value,
    out: &mut Vec<u8>,
) -> Result<(), String> {
    match kind {
        "content_block_delta" => {
            let Some(field) = v.get("delta").and_then(text_field) else {
                return Ok(());
            };
            let key = block(v);
            f.open(&key, || v.clone(), sse_name);
            if let Some(Value::String(t)) = v.get_mut("delta").and_then(|d| d.get_mut(field)) {
                *t = f.pass(&key, t, false)?;
            }
        }
        "content_block_stop" => f.close(&block(v), out)?,
        // A block the backend never stopped is flushed before the message ends.
        "message_delta" | "message_stop" => {
            let open: Vec<LaneKey> = f
                .lanes
                .keys()
                .filter(|k| matches!(k, LaneKey::Block(_)))
                .cloned()
                .collect();
            for k in open {
                f.close(&k, out)?;
            }
        }
        "content_block_start" | "message_start" => {
            let part = if kind == "message_start" {
                v.pointer_mut("/message/content")
            } else {
                v.get_mut("content_block")
            };
            if let Some(p) = part {
                filter_strings(p, &mut |t| f.scan_whole(t))?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// A delta event like `template` carrying `text`.
pub(super) fn flush_delta(template: &Value, text: &str) -> Value {
    let mut e = template.clone();
    if let Some(field) = e.get("delta").and_then(text_field) {
        e["delta"][field] = Value::String(text.to_string());
    }
    e
}

/// The `error` event that tells an Anthropic client the stream was cut.
pub(super) fn blocked_event() -> Vec<u8> {
    error_event(
        "output_blocked",
        "The response was stopped by the gateway's output filter.",
    )
}

/// An `error` event of the Messages API.
pub(super) fn error_event(kind: &str, message: &str) -> Vec<u8> {
    let data = json!({"type": "error", "error": {
        "type": kind,
        "message": message,
    }});
    SseEvent {
        event: Some("error".into()),
        data: data.to_string(),
        ..Default::default()
    }
    .to_wire()
}
