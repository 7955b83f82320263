//! Walking request bodies: the strings of prompt fields, tool calls, schemas and
//! documents collected for the guard and the token count, the same blanked in the WAF's
//! copy, and the nesting depth and token-id counts checked before.

use serde_json::{Map, Value};

use super::*;

pub(super) fn depth(v: &Value) -> usize {
    // Iterative, so a hostile body cannot overflow the stack here.
    let mut max = 0;
    let mut stack = vec![(v, 1usize)];
    while let Some((v, d)) = stack.pop() {
        max = max.max(d);
        match v {
            Value::Array(a) => stack.extend(a.iter().map(|x| (x, d + 1))),
            Value::Object(o) => stack.extend(o.values().map(|x| (x, d + 1))),
            _ => {}
        }
    }
    max
}

/// Integers in a `prompt` / `input` value given as token ids (`[1,2]` or `[[1],[2]]`).
pub(super) fn count_token_ids(v: &Value) -> u64 {
    match v {
        Value::Number(_) => 1,
        Value::Array(a) => a
            .iter()
            .filter(|x| x.is_number() || x.is_array())
            .map(count_token_ids)
            .sum(),
        _ => 0,
    }
}

/// The strings of each message; `groups` gets the range of each message made of several.
pub(super) fn collect_messages(
    v: &Value,
    out: &mut Vec<PromptField>,
    groups: &mut Vec<std::ops::Range<usize>>,
) {
    let Some(msgs) = v.as_array() else {
        collect_strings(v, "messages", out);
        return;
    };
    for m in msgs {
        let first = out.len();
        let role = m.get("role").and_then(Value::as_str).unwrap_or("user");
        // A message's participant `name`, which chat templates render beside the text
        // (OpenAI puts it in the prompt; a client chooses it freely). Items without a
        // `role` (Responses-API `function_call`) name a tool, not a participant.
        if let (Some(Value::String(name)), true) = (m.get("name"), m.get("role").is_some()) {
            out.push(PromptField {
                role: role.to_string(),
                text: name.clone(),
            });
        }
        // Every text key of the message, `content` and beside it (an assistant's
        // `refusal`, a tool result's `output`).
        collect_strings(m, role, out);
        collect_tool_calls(m, role, out);
        if out.len() - first > 1 {
            groups.push(first..out.len());
        }
    }
}

/// Tool-call arguments in a conversation's history: an assistant message's
/// `tool_calls[].function.arguments` (and legacy `function_call.arguments`), a Responses-API
/// `function_call` item's `arguments`. Chat templates render them for the model like any
/// text, and a client writes the history it sends, so they are prompt text too.
pub(super) fn collect_tool_calls(m: &Value, role: &str, out: &mut Vec<PromptField>) {
    let mut push = |v: Option<&Value>| {
        if let Some(Value::String(s)) = v {
            out.push(PromptField {
                role: role.to_string(),
                text: s.clone(),
            });
        }
    };
    if let Some(Value::Array(calls)) = m.get("tool_calls") {
        for c in calls {
            push(c.get("function").and_then(|f| f.get("arguments")));
        }
    }
    push(m.get("function_call").and_then(|f| f.get("arguments")));
    push(m.get("arguments"));
}

/// Strings of a prompt value: a string, an array of strings, or content parts
/// (`{"type":"text","text":…}`).
pub(super) fn collect_strings(v: &Value, role: &str, out: &mut Vec<PromptField>) {
    match v {
        Value::String(s) => out.push(PromptField {
            role: role.to_string(),
            text: s.clone(),
        }),
        Value::Array(a) => a.iter().for_each(|x| collect_strings(x, role, out)),
        Value::Object(o) => {
            for k in TEXT_KEYS {
                if let Some(x) = o.get(k) {
                    collect_strings(x, role, out);
                }
            }
            // Anthropic's `tool_use` blocks in the history: the input the model is said to
            // have written, rendered for it as JSON.
            if o.get("type").and_then(Value::as_str) == Some("tool_use") {
                if let Some(input @ Value::Object(_)) = o.get("input") {
                    out.push(PromptField {
                        role: role.to_string(),
                        text: input.to_string(),
                    });
                }
            }
            // Anthropic's plain-text documents: `{"type":"document","source":{"type":
            // "text","data":…}}`, and custom-content ones: `"source":{"type":"content",
            // "content":[text blocks]}` (base64 sources are not text).
            if let Some(x) = document_text(o) {
                collect_strings(x, role, out);
            }
        }
        _ => {}
    }
}

/// The text of an Anthropic document block's `source`: `data` of a `text` source, the
/// blocks of a `content` source.
pub(super) fn document_text(o: &Map<String, Value>) -> Option<&Value> {
    let Some(Value::Object(src)) = o.get("source") else {
        return None;
    };
    match src.get("type").and_then(Value::as_str) {
        Some("text") => src.get("data"),
        Some("content") => src.get("content"),
        _ => None,
    }
}

/// The `description` and `title` strings of tool definitions and JSON schemas, at any
/// depth (OpenAI's `tools[].function.description` and its parameters' descriptions,
/// Anthropic's and the Responses API's `tools[].description`, `input_schema` properties,
/// structured-output schemas): the model reads them as instructions, so a poisoned tool
/// description (an MCP server's, say) or schema is an injection like any prompt.
pub(super) fn collect_descriptions(v: &Value, out: &mut Vec<PromptField>) {
    match v {
        Value::Array(a) => a.iter().for_each(|x| collect_descriptions(x, out)),
        Value::Object(o) => {
            for (k, x) in o {
                match (k.as_str(), x) {
                    ("description" | "title", Value::String(s)) => out.push(PromptField {
                        role: "tool_definition".to_string(),
                        text: s.clone(),
                    }),
                    _ => collect_descriptions(x, out),
                }
            }
        }
        _ => {}
    }
}

/// Every string of a value, at any depth.
pub(super) fn collect_all_strings(v: &Value, role: &str, out: &mut Vec<PromptField>) {
    match v {
        Value::String(s) => out.push(PromptField {
            role: role.to_string(),
            text: s.clone(),
        }),
        Value::Array(a) => a.iter().for_each(|x| collect_all_strings(x, role, out)),
        Value::Object(o) => o.values().for_each(|x| collect_all_strings(x, role, out)),
        _ => {}
    }
}

/// Blanks what [`collect_all_strings`] reads.
pub(super) fn blank_all_strings(v: &mut Value) {
    match v {
        Value::String(s) => s.clear(),
        Value::Array(a) => a.iter_mut().for_each(blank_all_strings),
        Value::Object(o) => o.values_mut().for_each(blank_all_strings),
        _ => {}
    }
}

/// Blanks what [`collect_descriptions`] reads (and a schema given as a string).
pub(super) fn blank_descriptions(v: &mut Value) {
    match v {
        Value::String(s) => s.clear(),
        Value::Array(a) => a.iter_mut().for_each(blank_descriptions_in),
        Value::Object(_) => blank_descriptions_in(v),
        _ => {}
    }
}

pub(super) fn blank_descriptions_in(v: &mut Value) {
    match v {
        Value::Array(a) => a.iter_mut().for_each(blank_descriptions_in),
        Value::Object(o) => {
            for (k, x) in o.iter_mut() {
                match (k.as_str(), x) {
                    ("description" | "title", Value::String(s)) => s.clear(),
                    (_, x) => blank_descriptions_in(x),
                }
            }
        }
        _ => {}
    }
}

pub(super) fn blank_messages(v: &mut Value) {
    match v {
        Value::Array(msgs) => {
            for m in msgs.iter_mut() {
                if m.get("role").is_some() {
                    if let Some(Value::String(name)) = m.get_mut("name") {
                        name.clear();
                    }
                }
                blank_strings(m);
            }
        }
        other => blank_strings(other),
    }
}

pub(super) fn blank_strings(v: &mut Value) {
    match v {
        Value::String(s) => s.clear(),
        Value::Array(a) => a.iter_mut().for_each(blank_strings),
        Value::Object(o) => {
            for k in TEXT_KEYS {
                if let Some(x) = o.get_mut(k) {
                    blank_strings(x);
                }
            }
            if let Some(Value::Object(src)) = o.get_mut("source") {
                let key = match src.get("type").and_then(Value::as_str) {
                    Some("text") => "data",
                    Some("content") => "content",
                    _ => return,
                };
                if let Some(x) = src.get_mut(key) {
                    blank_strings(x);
                }
            }
        }
        _ => {}
    }
}
