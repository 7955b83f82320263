//! The marked YAML tree and its loader.

use super::{FieldPath, PathSeg};
use saphyr_parser::{Event, Parser, ScalarStyle, Span};
use std::collections::HashMap;

/// Where a node starts: 1-based line and column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Mark {
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub col: usize,
}

/// A YAML value with its position.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    /// Position of the value's first character.
    pub mark: Mark,
    /// The value.
    pub value: Value,
}

/// A YAML value, scalars resolved with the YAML 1.2 core schema.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// `null`, `~` or empty.
    Null,
    /// `true` / `false`.
    Bool(bool),
    /// An integer that fits in i64.
    Int(i64),
    /// A float.
    Float(f64),
    /// A string (quoted, or plain and not another type).
    Str(String),
    /// A sequence.
    Seq(Vec<Node>),
    /// A mapping, in document order.
    Map(Vec<(Node, Node)>),
}

impl Value {
    /// A word for error messages.
    pub fn kind_name(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool(_) => "a boolean",
            Value::Int(_) => "an integer",
            Value::Float(_) => "a number",
            Value::Str(_) => "a string",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a mapping",
        }
    }
}

impl Node {
    /// The value of mapping key `k`, if this is a mapping that has it.
    pub fn get(&self, k: &str) -> Option<&Node> {
        match &self.value {
            Value::Map(entries) => entries
                .iter()
                .find(|(key, _)| matches!(&key.value, Value::Str(s) if s == k))
                .map(|(_, v)| v),
            _ => None,
        }
    }
    /// The string value, if a string scalar.
    pub fn as_str(&self) -> Option<&str> {
        match &self.value {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }
    /// The deepest node along `path` and the key node when the path ends in a missing key's
    /// parent: used to give a location to a field path.
    pub fn locate(&self, path: &FieldPath) -> Mark {
        let mut cur = self;
        for seg in &path.0 {
            let next = match (seg, &cur.value) {
                (PathSeg::Key(k), Value::Map(entries)) => entries
                    .iter()
                    .find(|(key, _)| matches!(&key.value, Value::Str(s) if s == k))
                    .map(|(_, v)| v),
                (PathSeg::Index(i), Value::Seq(items)) => items.get(*i),
                _ => None,
            };
            match next {
                Some(n) => cur = n,
                None => break,
            }
        }
        cur.mark
    }
}

/// A YAML syntax error.
#[derive(Debug, Clone, PartialEq)]
pub struct ParseError {
    /// Where.
    pub mark: Mark,
    /// What.
    pub message: String,
}

/// Limits that keep hostile input bounded.
const MAX_NODES: usize = 5_000_000;
const MAX_DEPTH: usize = 200;

fn mark_of(span: &Span) -> Mark {
    Mark {
        line: span.start.line(),
        col: span.start.col() + 1,
    }
}

/// `mark`, or the end of the last line when it lies beyond it: at the end of a file without
/// a final line break the parser reports the line after the last (for a syntax error, or
/// a duplicate empty key there), which no editor shows.
fn within(text: &str, mark: Mark) -> Mark {
    // Line breaks as YAML 1.2 counts them: LF, CRLF and a lone CR.
    let mut lines = 1;
    let mut last_start = 0;
    let b = text.as_bytes();
    for (i, &c) in b.iter().enumerate() {
        if c == b'\n' || c == b'\r' && b.get(i + 1) != Some(&b'\n') {
            lines += 1;
            last_start = i + 1;
        }
    }
    if mark.line <= lines {
        return mark;
    }
    Mark {
        line: lines,
        col: text[last_start..].chars().count() + 1,
    }
}

enum Frame {
    Seq(Mark, usize, Vec<Node>),
    Map(Mark, usize, Vec<(Node, Node)>, Option<Node>),
}

/// Parses every document of a YAML stream. Each document is returned with the mark of its
/// first line; empty documents are skipped.
pub fn parse_documents(text: &str) -> Result<Vec<Node>, ParseError> {
    read_documents(text).map_err(|e| ParseError {
        mark: within(text, e.mark),
        message: e.message,
    })
}

fn read_documents(text: &str) -> Result<Vec<Node>, ParseError> {
    let mut parser = Parser::new_from_str(text);
    let mut docs = Vec::new();
    let mut stack: Vec<Frame> = Vec::new();
    let mut anchors: HashMap<usize, Node> = HashMap::new();
    let mut budget = MAX_NODES;
    let mut root: Option<Node> = None;
    loop {
        let (event, span) = match parser.next_event() {
            None => break,
            Some(Ok(e)) => e,
            Some(Err(e)) => {
                let mark = Mark {
                    line: e.marker().line(),
                    col: e.marker().col() + 1,
                };
                return Err(ParseError {
                    mark,
                    message: e.info().to_string(),
                });
            }
        };
        let mark = mark_of(&span);
        let finished: Option<(Node, usize)> = match event {
            Event::StreamStart | Event::Nothing => None,
            Event::StreamEnd => break,
            Event::DocumentStart(_) => {
                anchors.clear();
                None
            }
            Event::DocumentEnd => {
                if let Some(n) = root.take() {
                    if n.value != Value::Null {
                        docs.push(n);
                    }
                }
                None
            }
            Event::Alias(id) => match anchors.get(&id) {
                Some(n) => {
                    let size = count_nodes(n);
                    if size > budget {
                        return Err(ParseError {
                            mark,
                            message: "alias expansion exceeds the node budget".into(),
                        });
                    }
                    budget -= size;
                    Some((n.clone(), 0))
                }
                None => {
                    return Err(ParseError {
                        mark,
                        message: "unknown alias".into(),
                    })
                }
            },
            Event::Scalar(v, style, anchor, tag) => {
                let forced_str = tag.as_ref().map(|t| t.suffix == "str").unwrap_or(false);
                let value = if style == ScalarStyle::Plain && !forced_str {
                    resolve_plain(&v)
                } else {
                    Value::Str(v.into_owned())
                };
                Some((Node { mark, value }, anchor))
            }
            Event::SequenceStart(anchor, _) => {
                if stack.len() >= MAX_DEPTH {
                    return Err(ParseError {
                        mark,
                        message: format!("nesting deeper than {MAX_DEPTH}"),
                    });
                }
                stack.push(Frame::Seq(mark, anchor, Vec::new()));
                None
            }
            Event::MappingStart(anchor, _) => {
                if stack.len() >= MAX_DEPTH {
                    return Err(ParseError {
                        mark,
                        message: format!("nesting deeper than {MAX_DEPTH}"),
                    });
                }
                stack.push(Frame::Map(mark, anchor, Vec::new(), None));
                None
            }
            Event::SequenceEnd => match stack.pop() {
                Some(Frame::Seq(m, anchor, items)) => Some((
                    Node {
                        mark: m,
                        value: Value::Seq(items),
                    },
                    anchor,
                )),
                _ => {
                    return Err(ParseError {
                        mark,
                        message: "unbalanced sequence".into(),
                    })
                }
            },
            Event::MappingEnd => match stack.pop() {
                Some(Frame::Map(m, anchor, entries, _)) => Some((
                    Node {
                        mark: m,
                        value: Value::Map(entries),
                    },
                    anchor,
                )),
                _ => {
                    return Err(ParseError {
                        mark,
                        message: "unbalanced mapping".into(),
                    })
                }
            },
        };
        if let Some((node, anchor)) = finished {
            if budget == 0 {
                return Err(ParseError {
                    mark,
                    message: "document exceeds the node budget".into(),
                });
            }
            budget -= 1;
            if anchor != 0 {
                anchors.insert(anchor, node.clone());
            }
            match stack.last_mut() {
                None => root = Some(node),
                Some(Frame::Seq(_, _, items)) => items.push(node),
                Some(Frame::Map(_, _, entries, pending)) => match pending.take() {
                    None => {
                        if let Value::Map(_) | Value::Seq(_) = node.value {
                            return Err(ParseError {
                                mark: node.mark,
                                message: "complex mapping keys are not supported".into(),
                            });
                        }
                        if entries.iter().any(|(k, _)| k.value == node.value) {
                            return Err(ParseError {
                                mark: node.mark,
                                message: format!("duplicate key {}", scalar_text(&node.value)),
                            });
                        }
                        *pending = Some(node);
                    }
                    Some(key) => entries.push((key, node)),
                },
            }
        }
    }
    if let Some(n) = root.take() {
        if n.value != Value::Null {
            docs.push(n);
        }
    }
    Ok(docs)
}

fn scalar_text(v: &Value) -> String {
    match v {
        Value::Str(s) => format!("\"{s}\""),
        Value::Int(i) => i.to_string(),
        Value::Float(f) => f.to_string(),
        Value::Bool(b) => b.to_string(),
        _ => v.kind_name().to_string(),
    }
}

fn count_nodes(n: &Node) -> usize {
    match &n.value {
        Value::Seq(items) => 1 + items.iter().map(count_nodes).sum::<usize>(),
        Value::Map(entries) => {
            1 + entries
                .iter()
                .map(|(k, v)| count_nodes(k) + count_nodes(v))
                .sum::<usize>()
        }
        _ => 1,
    }
}

/// YAML 1.2 core schema resolution of a plain scalar.
fn resolve_plain(s: &str) -> Value {
    match s {
        "" | "~" | "null" | "Null" | "NULL" => return Value::Null,
        "true" | "True" | "TRUE" => return Value::Bool(true),
        "false" | "False" | "FALSE" => return Value::Bool(false),
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => {
            return Value::Float(f64::INFINITY)
        }
        "-.inf" | "-.Inf" | "-.INF" => return Value::Float(f64::NEG_INFINITY),
        ".nan" | ".NaN" | ".NAN" => return Value::Float(f64::NAN),
        _ => {}
    }
    let bytes = s.as_bytes();
    let (sign, digits) = match bytes[0] {
        b'-' => (-1i64, &s[1..]),
        b'+' => (1, &s[1..]),
        _ => (1, s),
    };
    if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        if let Ok(v) = s.parse::<i64>() {
            return Value::Int(v);
        }
    }
    if let Some(oct) = s.strip_prefix("0o") {
        if !oct.is_empty() && oct.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
            if let Ok(v) = i64::from_str_radix(oct, 8) {
                return Value::Int(v);
            }
        }
    }
    if let Some(hex) = s.strip_prefix("0x") {
        if !hex.is_empty() && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            if let Ok(v) = i64::from_str_radix(hex, 16) {
                return Value::Int(v);
            }
        }
    }
    let _ = sign;
    let looks_float = !digits.is_empty()
        && digits.bytes().all(|b| {
            b.is_ascii_digit() || b == b'.' || b == b'e' || b == b'E' || b == b'-' || b == b'+'
        })
        && digits
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_digit() || b == b'.')
        && digits.bytes().any(|b| b.is_ascii_digit());
    if looks_float {
        if let Ok(v) = s.parse::<f64>() {
            return Value::Float(v);
        }
    }
    Value::Str(s.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn core_schema_scalars() {
        assert_eq!(resolve_plain("80"), Value::Int(80));
        assert_eq!(resolve_plain("-3"), Value::Int(-3));
        assert_eq!(resolve_plain("0x1F"), Value::Int(31));
        assert_eq!(resolve_plain("1.5"), Value::Float(1.5));
        assert_eq!(resolve_plain("yes"), Value::Str("yes".into()));
        assert_eq!(resolve_plain("~"), Value::Null);
        assert_eq!(resolve_plain("10.0.0.0/8"), Value::Str("10.0.0.0/8".into()));
        assert_eq!(resolve_plain("1.2.3.4"), Value::Str("1.2.3.4".into()));
    }

    #[test]
    fn marks_are_one_based() {
        let docs = parse_documents("a: 1\nb:\n  c: x\n").unwrap();
        let c = docs[0].get("b").unwrap().get("c").unwrap();
        assert_eq!(c.mark, Mark { line: 3, col: 6 });
        assert_eq!(c.as_str(), Some("x"));
    }

    #[test]
    fn multi_document_and_quoted() {
        let docs = parse_documents("---\na: '80'\n---\n---\nb: 2\n").unwrap();
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[0].get("a").unwrap().value, Value::Str("80".into()));
    }

    #[test]
    fn duplicate_keys_rejected() {
        let e = parse_documents("a: 1\na: 2\n").unwrap_err();
        assert_eq!(e.mark.line, 2);
        assert!(e.message.contains("duplicate key"));
    }

    #[test]
    fn billion_laughs_is_bounded() {
        let mut y = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..12 {
            y.push_str(&format!(
                "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n",
                p = i - 1
            ));
        }
        assert!(parse_documents(&y).is_err());
    }
}
