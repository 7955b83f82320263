//! OpenAI Responses-API stream events (`POST /v1/responses` with `stream: true`). Text
//! arrives as deltas — `response.output_text.delta`, `response.refusal.delta`,
//! `response.reasoning_text.delta`, `response.reasoning_summary_text.delta`, and a
//! function call's `response.function_call_arguments.delta` — each part
//! (output index, content or summary index) a lane of its own, closed by the family's
//! `.done` event. The whole text is then repeated: in the `.done` event itself, in
//! `response.content_part.done`, `response.output_item.done` and the final
//! `response.completed`; those copies are filtered as whole texts, so what was redacted in
//! the deltas is redacted there too. The response object's echo of `instructions` loses the
//! canary note the gateway added to them. With filters, `logprobs` are emptied (their tokens
//! would spell the text out again).

use super::{LaneKey, SseFilter};
use crate::openai::strip_canary_note;
use serde_json::Value;

/// Event families whose `.delta` events carry text, with the field of their `.done` event
/// that repeats it whole.
const FAMILIES: [(&str, &str); 5] = [
    ("response.output_text", "text"),
    ("response.function_call_arguments", "arguments"),
    ("response.refusal", "refusal"),
    ("response.reasoning_text", "text"),
    ("response.reasoning_summary_text", "text"),
];

/// `type`s of the content parts (in `part`, `item.content`, `response.output[].content`,
/// `item.summary`) whose text is model output; `function_call` items carry `arguments`.
const OUTPUT_PARTS: [&str; 5] = [
    "output_text",
    "refusal",
    "reasoning_text",
    "summary_text",
    "function_call",
];

/// Filters one event in place; a closed lane's held-back text goes to `out` first.
pub(super) fn event(
    f: &mut SseFilter,
    kind: &str,
    sse_name: Option<&str>,
    v: &mut Value,
    out: &mut Vec<u8>,
) -> Result<(), String> {
    if let Some((family, _)) = kind.strip_suffix(".delta").and_then(family) {
        let key = lane_key(family, v);
        f.open(&key, || v.clone(), sse_name);
        if let Some(d) = v.get("delta").and_then(Value::as_str).map(str::to_string) {
            v["delta"] = Value::String(f.pass(&key, &d, false)?);
        }
        drop_logprobs(f, v);
        return Ok(());
    }
    if let Some((family, field)) = kind.strip_suffix(".done").and_then(family) {
        f.close(&lane_key(family, v), out)?;
        whole(f, v, field)?;
        drop_logprobs(f, v);
        return Ok(());
    }
    if let (Some((canary, _)), Some(Value::String(ins))) =
        (&f.filters.canary, v.pointer_mut("/response/instructions"))
    {
        *ins = strip_canary_note(ins, canary);
    }
    output_parts(f, v)
}

/// With filters, token log-probabilities are emptied: their tokens spell the text out
/// again, past the filter.
fn drop_logprobs(f: &SseFilter, v: &mut Value) {
    if f.filters.is_empty() {
        return;
    }
    if let Some(Value::Array(lp)) = v.get_mut("logprobs") {
        lp.clear();
    }
}

fn family(prefix: &str) -> Option<(&'static str, &'static str)> {
    FAMILIES.into_iter().find(|(f, _)| *f == prefix)
}

fn lane_key(family: &'static str, v: &Value) -> LaneKey {
    let n = |k: &str| v.get(k).and_then(Value::as_u64);
    LaneKey::Part(
        family,
        n("output_index").unwrap_or(0),
        n("content_index")
            .or_else(|| n("summary_index"))
            .unwrap_or(0),
    )
}

/// Filters the string at `v[field]` as a whole text.
fn whole(f: &mut SseFilter, v: &mut Value, field: &str) -> Result<(), String> {
    if let Some(t) = v.get(field).and_then(Value::as_str).map(str::to_string) {
        v[field] = Value::String(f.scan_whole(&t)?);
    }
    Ok(())
}

/// Filters, anywhere in `v`, the text of output content parts.
fn output_parts(f: &mut SseFilter, v: &mut Value) -> Result<(), String> {
    match v {
        Value::Array(a) => a.iter_mut().try_for_each(|x| output_parts(f, x)),
        Value::Object(o) => {
            let part = o
                .get("type")
                .and_then(Value::as_str)
                .is_some_and(|t| OUTPUT_PARTS.contains(&t));
            for (k, x) in o.iter_mut() {
                match x {
                    Value::String(s)
                        if part && (k == "text" || k == "refusal" || k == "arguments") =>
                    {
                        *s = f.scan_whole(s)?;
                    }
                    Value::Array(_) | Value::Object(_) => output_parts(f, x)?,
                    _ => {}
                }
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// A delta event like `template` carrying `text`.
pub(super) fn flush_delta(template: &Value, text: &str) -> Value {
    let mut e = template.clone();
    if let Some(o) = e.as_object_mut() {
        o.insert("delta".into(), Value::String(text.to_string()));
        o.remove("obfuscation");
        if o.contains_key("logprobs") {
            o.insert("logprobs".into(), Value::Array(Vec::new()));
        }
    }
    e
}
