//! A small block-style YAML writer for the documents `recommend` emits. Strings that could
//! be read back as anything but the same string are written as JSON strings (a JSON
//! string is a valid YAML double-quoted scalar).

use std::fmt::Write;

/// A YAML value.
#[derive(Debug, Clone, PartialEq)]
pub enum Yaml {
    /// A mapping, in insertion order.
    Map(Vec<(String, Yaml)>),
    /// A sequence.
    Seq(Vec<Yaml>),
    /// A string.
    Str(String),
    /// An integer.
    Int(i64),
}

impl Yaml {
    /// A mapping from `(key, value)` pairs.
    pub fn map<K: Into<String>>(pairs: impl IntoIterator<Item = (K, Yaml)>) -> Yaml {
        Yaml::Map(pairs.into_iter().map(|(k, v)| (k.into(), v)).collect())
    }

    /// A string.
    pub fn str(s: impl Into<String>) -> Yaml {
        Yaml::Str(s.into())
    }

    /// Renders the value as a YAML document body (no `---`), ending with a newline.
    pub fn render(&self) -> String {
        let mut out = String::new();
        match self {
            Yaml::Map(m) if !m.is_empty() => write_map(&mut out, m, 0),
            Yaml::Seq(s) if !s.is_empty() => write_seq(&mut out, s, 0),
            other => {
                out.push_str(&inline(other));
                out.push('\n');
            }
        }
        out
    }
}

/// Whether `s` reads back as the same string when written plainly.
fn plain_ok(s: &str) -> bool {
    const WORDS: &[&str] = &[
        "true", "false", "yes", "no", "on", "off", "null", "y", "n", "~",
    ];
    // A leading digit is safe only where the string cannot be a number (CIDRs).
    let first_ok = s.chars().next().is_some_and(|c| {
        c.is_ascii_alphabetic() || c == '/' || (c.is_ascii_digit() && s.contains('/'))
    });
    first_ok
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '/' | '-'))
        && !WORDS.contains(&s.to_ascii_lowercase().as_str())
}

fn scalar(s: &str) -> String {
    if plain_ok(s) {
        return s.to_string();
    }
    // JSON escapes every C0 control character; YAML 1.1 readers also break lines at NEL,
    // LS and PS (and fold the break into a space), so those are escaped too (`\uXXXX` means
    // the same in both), and a value reads back unchanged in any YAML reader.
    let json = serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into());
    let mut out = String::with_capacity(json.len());
    for c in json.chars() {
        match c {
            '\u{2028}' | '\u{2029}' | '\u{feff}' | '\u{7f}'..='\u{9f}' => {
                out.push_str(&format!("\\u{:04x}", u32::from(c)));
            }
            c => out.push(c),
        }
    }
    out
}

fn inline(v: &Yaml) -> String {
    match v {
        Yaml::Str(s) => scalar(s),
        Yaml::Int(i) => i.to_string(),
        Yaml::Map(m) if m.is_empty() => "{}".into(),
        Yaml::Seq(s) if s.is_empty() => "[]".into(),
        Yaml::Map(m) => format!(
            "{{{}}}",
            m.iter()
                .map(|(k, v)| format!("{}: {}", scalar(k), inline(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Yaml::Seq(s) => format!("[{}]", s.iter().map(inline).collect::<Vec<_>>().join(", ")),
    }
}

/// Whether a value is written on the key's line.
fn is_short(v: &Yaml) -> bool {
    match v {
        Yaml::Str(_) | Yaml::Int(_) => true,
        Yaml::Map(m) => {
            m.is_empty()
                || (m.len() <= 2
                    && m.iter()
                        .all(|(_, v)| matches!(v, Yaml::Str(_) | Yaml::Int(_))))
        }
        Yaml::Seq(s) => s.iter().all(|v| matches!(v, Yaml::Str(_) | Yaml::Int(_))),
    }
}

fn write_map(out: &mut String, m: &[(String, Yaml)], indent: usize) {
    for (i, (k, v)) in m.iter().enumerate() {
        if i > 0 {
            out.push_str(&" ".repeat(indent));
        }
        write_entry(out, k, v, indent);
    }
}

fn write_entry(out: &mut String, k: &str, v: &Yaml, indent: usize) {
    if is_short(v) {
        let _ = writeln!(out, "{}: {}", scalar(k), inline(v));
        return;
    }
    let _ = writeln!(out, "{}:", scalar(k));
    match v {
        Yaml::Map(m) => {
            out.push_str(&" ".repeat(indent + 2));
            write_map(out, m, indent + 2);
        }
        Yaml::Seq(s) => {
            // Sequences under a key at the key's indent, as kubectl writes them.
            out.push_str(&" ".repeat(indent));
            write_seq(out, s, indent);
        }
        _ => {}
    }
}

fn write_seq(out: &mut String, s: &[Yaml], indent: usize) {
    for (i, v) in s.iter().enumerate() {
        if i > 0 {
            out.push_str(&" ".repeat(indent));
        }
        out.push_str("- ");
        match v {
            Yaml::Map(m) if !m.is_empty() => write_map(out, m, indent + 2),
            Yaml::Seq(inner) if !inner.is_empty() => write_seq(out, inner, indent + 2),
            other => {
                out.push_str(&inline(other));
                out.push('\n');
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_separators_are_escaped_in_quoted_strings() {
        assert_eq!(scalar("a\u{2028}b\u{85}c\nd"), "\"a\\u2028b\\u0085c\\nd\"");
    }

    #[test]
    fn renders_block_style_and_quotes_what_would_change_meaning() {
        let doc = Yaml::map([
            ("kind", Yaml::str("NetworkPolicy")),
            (
                "metadata",
                Yaml::map([("name", Yaml::str("a")), ("namespace", Yaml::str("ns"))]),
            ),
            (
                "spec",
                Yaml::map([
                    (
                        "podSelector",
                        Yaml::map([("matchLabels", Yaml::map([("app", Yaml::str("on"))]))]),
                    ),
                    ("policyTypes", Yaml::Seq(vec![Yaml::str("Ingress")])),
                    (
                        "ingress",
                        Yaml::Seq(vec![Yaml::map([
                            ("from", Yaml::Seq(vec![])),
                            (
                                "ports",
                                Yaml::Seq(vec![Yaml::map([("port", Yaml::Int(80))])]),
                            ),
                        ])]),
                    ),
                    ("fqdn", Yaml::str("*.example.com")),
                ]),
            ),
        ]);
        let text = doc.render();
        assert_eq!(
            text,
            "kind: NetworkPolicy\nmetadata: {name: a, namespace: ns}\nspec:\n  podSelector:\n    matchLabels: {app: \"on\"}\n  policyTypes: [Ingress]\n  ingress:\n  - from: []\n    ports:\n    - port: 80\n  fqdn: \"*.example.com\"\n"
        );
    }
}
