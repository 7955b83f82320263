//! JSON Schema (as schemars writes it) → a Kubernetes *structural* OpenAPI v3 schema:
//! every `$ref` inlined, `null` alternatives dropped (the API server prunes nulls), enums
//! spelled as `enum`, a `type` on every node, formats Kubernetes knows, and no
//! `additionalProperties: false` beside `properties` (the API server prunes unknown fields
//! instead).

use serde_json::{Map, Value};

/// Inlines every `#/$defs/NAME` reference of `root` and makes the result structural.
pub(super) fn structural(root: &Value) -> Result<Value, String> {
    let defs = root
        .get("$defs")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let mut out = root.clone();
    if let Some(m) = out.as_object_mut() {
        m.remove("$defs");
        m.remove("$schema");
    }
    normalize(&mut out, &defs, 0)?;
    Ok(out)
}

fn normalize(node: &mut Value, defs: &Map<String, Value>, depth: usize) -> Result<(), String> {
    if depth > 64 {
        return Err("schema nests deeper than 64 levels (a recursive type?)".into());
    }
    let Some(m) = node.as_object_mut() else {
        return Ok(());
    };
    if let Some(Value::String(r)) = m.remove("$ref") {
        let name = r
            .strip_prefix("#/$defs/")
            .ok_or_else(|| format!("unsupported reference {r}"))?;
        let def = defs
            .get(name)
            .ok_or_else(|| format!("reference to unknown definition {name}"))?;
        merge_under(m, def);
    }
    for key in ["properties"] {
        if let Some(Value::Object(props)) = m.get_mut(key) {
            for v in props.values_mut() {
                normalize(v, defs, depth + 1)?;
            }
        }
    }
    for key in ["items", "additionalProperties"] {
        if let Some(v @ Value::Object(_)) = m.get_mut(key) {
            normalize(v, defs, depth + 1)?;
        }
    }
    for key in ["anyOf", "oneOf", "allOf"] {
        if let Some(Value::Array(branches)) = m.get_mut(key) {
            for b in branches.iter_mut() {
                normalize(b, defs, depth + 1)?;
            }
        }
    }
    drop_nulls(m);
    collapse_alternatives(m);
    tidy(m);
    Ok(())
}

/// Copies `def`'s keys into `m` where `m` has none of its own (a field's description wins
/// over its type's).
fn merge_under(m: &mut Map<String, Value>, def: &Value) {
    if let Some(d) = def.as_object() {
        for (k, v) in d {
            m.entry(k.clone()).or_insert_with(|| v.clone());
        }
    }
}

fn is_null_schema(v: &Value) -> bool {
    v.get("type").and_then(Value::as_str) == Some("null")
        || v.get("const").is_some_and(Value::is_null)
        || v.get("enum")
            .and_then(Value::as_array)
            .is_some_and(|e| e.len() == 1 && e[0].is_null())
}

fn drop_nulls(m: &mut Map<String, Value>) {
    if let Some(Value::Array(types)) = m.get("type") {
        let kept: Vec<Value> = types.iter().filter(|t| *t != "null").cloned().collect();
        let new = if kept.len() == 1 {
            kept[0].clone()
        } else {
            Value::Array(kept)
        };
        m.insert("type".into(), new);
    }
    if let Some(Value::Array(values)) = m.get_mut("enum") {
        values.retain(|v| !v.is_null());
    }
    for key in ["anyOf", "oneOf"] {
        if let Some(Value::Array(branches)) = m.get_mut(key) {
            branches.retain(|b| !is_null_schema(b));
        }
    }
    m.remove("nullable");
}

/// `oneOf`/`anyOf` of constants → `enum`; a single remaining alternative → merged in.
fn collapse_alternatives(m: &mut Map<String, Value>) {
    for key in ["anyOf", "oneOf", "allOf"] {
        let Some(Value::Array(branches)) = m.get(key) else {
            continue;
        };
        let branches = branches.clone();
        if branches.len() == 1 {
            m.remove(key);
            merge_under(m, &branches[0]);
            continue;
        }
        let mut values = Vec::new();
        let all_constants = branches.iter().all(|b| {
            if let Some(c) = b.get("const") {
                values.push(c.clone());
                true
            } else if let Some(Value::Array(e)) = b.get("enum") {
                values.extend(e.iter().cloned());
                true
            } else {
                false
            }
        });
        if all_constants && !values.is_empty() {
            m.remove(key);
            if values.iter().all(Value::is_string) {
                m.insert("type".into(), "string".into());
            }
            m.insert("enum".into(), Value::Array(values));
        }
    }
    if let Some(c) = m.remove("const") {
        m.insert("enum".into(), Value::Array(vec![c]));
    }
}

fn tidy(m: &mut Map<String, Value>) {
    m.remove("title");
    m.remove("examples");
    if m.get("additionalProperties") == Some(&Value::Bool(false)) {
        m.remove("additionalProperties");
    }
    if m.get("additionalProperties") == Some(&Value::Bool(true)) {
        m.remove("additionalProperties");
        m.insert("x-kubernetes-preserve-unknown-fields".into(), true.into());
    }
    if let Some(Value::String(f)) = m.get("format") {
        let mapped = match f.as_str() {
            "int32" | "uint8" | "int8" | "uint16" | "int16" => Some("int32"),
            "int64" | "uint32" | "uint64" | "uint" | "int" => Some("int64"),
            "double" | "float" => None,
            other => Some(other),
        };
        match mapped {
            Some(x) => {
                m.insert("format".into(), x.into());
            }
            None => {
                m.remove("format");
            }
        }
    }
    // Defaults the API server would store: plain scalars only (a null, list or object
    // default means "absent" in the Rust types).
    if m.get("default")
        .is_some_and(|d| d.is_null() || d.is_array() || d.is_object())
    {
        m.remove("default");
    }
    if m.get("required")
        .and_then(Value::as_array)
        .is_some_and(Vec::is_empty)
    {
        m.remove("required");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn inlines_refs_drops_nulls_and_collapses_enums() {
        let root = json!({
            "$schema": "x", "title": "T", "type": "object",
            "additionalProperties": false,
            "properties": {
                "mode": {"description": "field doc", "$ref": "#/$defs/Mode"},
                "opt": {"anyOf": [{"$ref": "#/$defs/Inner"}, {"type": "null"}]},
                "n": {"type": ["integer", "null"], "format": "uint16", "minimum": 0},
                "list": {"type": "array", "items": {"type": "string"}, "default": []}
            },
            "$defs": {
                "Mode": {"description": "type doc", "oneOf": [
                    {"type": "string", "const": "Enforce", "description": "a"},
                    {"type": "string", "const": "Audit", "description": "b"}]},
                "Inner": {"type": "object", "properties": {"x": {"type": "boolean", "default": true}}}
            }
        });
        let s = structural(&root).unwrap();
        assert_eq!(
            s,
            json!({
                "type": "object",
                "properties": {
                    "mode": {"description": "field doc", "type": "string", "enum": ["Enforce", "Audit"]},
                    "opt": {"type": "object", "properties": {"x": {"type": "boolean", "default": true}}},
                    "n": {"type": "integer", "format": "int32", "minimum": 0},
                    "list": {"type": "array", "items": {"type": "string"}}
                }
            })
        );
    }

    #[test]
    fn unknown_reference_is_an_error() {
        let root = json!({"$ref": "#/$defs/Nope"});
        assert!(structural(&root).unwrap_err().contains("Nope"));
    }
}
