//! A small block-style YAML writer for JSON values, enough for CRDs: stable output (keys in
//! the order the value holds them), strings quoted whenever a plain scalar could be read
//! back as something else.

use serde_json::Value;

/// `value` as a YAML document (no leading `---`), ending with a newline.
pub fn to_yaml(value: &Value) -> String {
    let mut out = String::new();
    match value {
        Value::Object(m) if !m.is_empty() => write_map(&mut out, m, 0),
        Value::Array(a) if !a.is_empty() => write_seq(&mut out, a, 0),
        other => {
            out.push_str(&scalar(other));
            out.push('\n');
        }
    }
    out
}

fn write_map(out: &mut String, m: &serde_json::Map<String, Value>, indent: usize) {
    for (k, v) in m {
        out.push_str(&" ".repeat(indent));
        out.push_str(&string(k));
        out.push(':');
        write_value_after_key(out, v, indent);
    }
}

fn write_value_after_key(out: &mut String, v: &Value, indent: usize) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            out.push('\n');
            write_map(out, m, indent + 2);
        }
        Value::Array(a) if !a.is_empty() => {
            out.push('\n');
            write_seq(out, a, indent);
        }
        other => {
            out.push(' ');
            out.push_str(&scalar(other));
            out.push('\n');
        }
    }
}

fn write_seq(out: &mut String, a: &[Value], indent: usize) {
    for v in a {
        let mut item = String::new();
        match v {
            Value::Object(m) if !m.is_empty() => write_map(&mut item, m, indent + 2),
            Value::Array(inner) if !inner.is_empty() => write_seq(&mut item, inner, indent + 2),
            other => {
                item.push_str(&" ".repeat(indent + 2));
                item.push_str(&scalar(other));
                item.push('\n');
            }
        }
        // The item's first line starts at indent + 2; put the dash in front of it.
        out.push_str(&" ".repeat(indent));
        out.push_str("- ");
        out.push_str(&item[indent + 2..]);
    }
}

fn scalar(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => string(s),
        Value::Object(_) => "{}".into(),
        Value::Array(_) => "[]".into(),
    }
}

/// A string as a plain scalar when that reads back as the same string, else double-quoted
/// (JSON escapes are valid in YAML double-quoted scalars).
fn string(s: &str) -> String {
    if is_plain_safe(s) {
        s.to_string()
    } else {
        serde_json::to_string(s).unwrap_or_else(|_| format!("{s:?}"))
    }
}

fn is_plain_safe(s: &str) -> bool {
    let Some(first) = s.chars().next() else {
        return false;
    };
    if !(first.is_ascii_alphabetic() || first == '/' || first == '_') {
        return false;
    }
    if s.ends_with(' ') || s.contains(": ") || s.contains(" #") || s.ends_with(':') {
        return false;
    }
    if !s
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || " ._/-()".contains(c))
    {
        return false;
    }
    let lower = s.to_ascii_lowercase();
    !matches!(
        lower.as_str(),
        "true" | "false" | "yes" | "no" | "on" | "off" | "y" | "n" | "null" | "nan" | "inf"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn writes_block_style_with_quoting() {
        let v = json!({
            "a": {"b": [1, "two", {"c": "d", "e": ["f"]}], "empty": {}, "none": []},
            "s": "needs: quoting",
            "t": "true",
            "n": "42",
            "plain": "Some words here",
            "multi": "line one\nline two"
        });
        let y = to_yaml(&v);
        assert_eq!(
            y,
            "a:\n  b:\n  - 1\n  - two\n  - c: d\n    e:\n    - f\n  empty: {}\n  none: []\n\
             multi: \"line one\\nline two\"\n\"n\": \"42\"\nplain: Some words here\n\
             s: \"needs: quoting\"\nt: \"true\"\n"
        );
    }
}
