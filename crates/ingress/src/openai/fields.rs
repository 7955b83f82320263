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
        // (OpenAI puts it in the prompt; a client chooses it freely), and the tool an item
        // without a `role` calls (Responses-API `function_call`), rendered with the call.
        if let Some(Value::String(name)) = m.get("name") {
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

/// Tool calls in a conversation's history: an assistant message's
/// `tool_calls[].function.name` and `.arguments` (a string; Ollama's an object), legacy
/// `function_call.name` and `.arguments`, a Responses-API `function_call` item's
/// `arguments` (its `name` is read with the item's). Chat templates render them for the
/// model like any text, and a client writes the history it sends, so they are prompt text
/// too.
pub(super) fn collect_tool_calls(m: &Value, role: &str, out: &mut Vec<PromptField>) {
    let mut push = |v: Option<&Value>| {
        if let Some(text) = v.and_then(json_text) {
            out.push(PromptField {
                role: role.to_string(),
                text,
            });
        }
    };
    let calls = m.get("tool_calls").and_then(Value::as_array);
    let functions = calls
        .into_iter()
        .flatten()
        .filter_map(|c| c.get("function"))
        .chain(m.get("function_call"));
    for f in functions {
        push(f.get("name"));
        push(f.get("arguments"));
    }
    push(m.get("arguments"));
}

/// Blanks what [`collect_tool_calls`] reads.
fn blank_tool_calls(m: &mut Value) {
    let Value::Object(o) = m else {
        return;
    };
    if let Some(Value::Array(calls)) = o.get_mut("tool_calls") {
        for c in calls.iter_mut() {
            if let Some(f) = c.get_mut("function") {
                blank_call(f);
            }
        }
    }
    if let Some(f) = o.get_mut("function_call") {
        blank_call(f);
    }
    if let Some(a) = o.get_mut("arguments") {
        blank_json_text(a);
    }
}

/// Blanks a called function's `name` and `arguments`.
fn blank_call(f: &mut Value) {
    for k in ["name", "arguments"] {
        if let Some(v) = f.get_mut(k) {
            blank_json_text(v);
        }
    }
}

/// A value a template renders as text: a string as it is, a non-empty object (tool-call
/// arguments or input given as JSON) as its JSON.
fn json_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Object(o) if !o.is_empty() => Some(v.to_string()),
        _ => None,
    }
}

/// Blanks what [`json_text`] reads: a string emptied, an object emptied.
fn blank_json_text(v: &mut Value) {
    match v {
        Value::String(s) => s.clear(),
        Value::Object(o) => o.clear(),
        _ => {}
    }
}

/// Whether a content block is a tool call the history says the model made (Anthropic's
/// `tool_use`, `server_tool_use`, `mcp_tool_use`).
fn is_tool_use(o: &Map<String, Value>) -> bool {
    o.get("type")
        .and_then(Value::as_str)
        .is_some_and(|t| t.ends_with("tool_use"))
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
            // Anthropic's `tool_use` blocks in the history: the tool's name and the input
            // the model is said to have written, rendered for it as JSON.
            if is_tool_use(o) {
                for k in ["name", "input"] {
                    if let Some(text) = o.get(k).and_then(json_text) {
                        out.push(PromptField {
                            role: role.to_string(),
                            text,
                        });
                    }
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

/// Keys of a tool definition or JSON schema whose strings the model reads: `description`,
/// `title`, and `name` (a tool's, a function's, a structured-output schema's).
const SCHEMA_TEXT_KEYS: [&str; 3] = ["description", "title", "name"];

/// Schema keywords whose values (every string, at any depth) the model reads with the
/// schema: allowed and example values, defaults, and the property names `required` lists.
const SCHEMA_VALUE_KEYS: [&str; 5] = ["enum", "const", "default", "examples", "required"];

/// Schema keywords whose keys are names the model reads (property names, the names of
/// definitions) and whose values are schemas.
const SCHEMA_NAMED_KEYS: [&str; 4] = ["properties", "patternProperties", "$defs", "definitions"];

/// The text of tool definitions and JSON schemas, at any depth (OpenAI's `tools[].function`
/// and its parameters, Anthropic's and the Responses API's `tools[]`, `input_schema`,
/// structured-output schemas): [`SCHEMA_TEXT_KEYS`] strings, every string under
/// [`SCHEMA_VALUE_KEYS`], and the names [`SCHEMA_NAMED_KEYS`] hold. The model reads them
/// (a backend renders the tools into the prompt as JSON), so a poisoned tool definition (an
/// MCP server's, say) or schema is an injection like any prompt: in its description, its
/// name, a property's name or an enum value alike.
pub(super) fn collect_descriptions(v: &Value, out: &mut Vec<PromptField>) {
    let push = |out: &mut Vec<PromptField>, s: &str| {
        out.push(PromptField {
            role: "tool_definition".to_string(),
            text: s.to_string(),
        })
    };
    match v {
        Value::Array(a) => a.iter().for_each(|x| collect_descriptions(x, out)),
        Value::Object(o) => {
            for (k, x) in o {
                let k = k.as_str();
                match x {
                    Value::String(s) if SCHEMA_TEXT_KEYS.contains(&k) => push(out, s),
                    _ if SCHEMA_VALUE_KEYS.contains(&k) => {
                        collect_all_strings(x, "tool_definition", out)
                    }
                    Value::Object(named) if SCHEMA_NAMED_KEYS.contains(&k) => {
                        for (name, schema) in named {
                            push(out, name);
                            collect_descriptions(schema, out);
                        }
                    }
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
                let k = k.as_str();
                match x {
                    Value::String(s) if SCHEMA_TEXT_KEYS.contains(&k) => s.clear(),
                    _ if SCHEMA_VALUE_KEYS.contains(&k) => blank_all_strings(x),
                    Value::Object(named) if SCHEMA_NAMED_KEYS.contains(&k) => {
                        // The names go (blanked they would collide); the schemas stay, in
                        // order, as a list.
                        let schemas = std::mem::take(named)
                            .into_iter()
                            .map(|(_, mut schema)| {
                                blank_descriptions_in(&mut schema);
                                schema
                            })
                            .collect();
                        *x = Value::Array(schemas);
                    }
                    x => blank_descriptions_in(x),
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
                if let Some(Value::String(name)) = m.get_mut("name") {
                    name.clear();
                }
                blank_strings(m);
                blank_tool_calls(m);
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
            if is_tool_use(o) {
                for k in ["name", "input"] {
                    if let Some(x) = o.get_mut(k) {
                        blank_json_text(x);
                    }
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
