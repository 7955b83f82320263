//! A serde `Deserializer` over a marked [`Node`], so derived types get errors that name the
//! field path and the line:column of the offending value.

use super::tree::{Mark, Node, Value};
use super::{FieldPath, PathSeg};
use serde::de::{self, DeserializeSeed, IntoDeserializer, Visitor};
use std::fmt;

/// A deserialization error with the location of the value that caused it.
#[derive(Debug, Clone, PartialEq)]
pub struct DeError {
    /// What went wrong.
    pub message: String,
    /// Field path of the value (relative to the node given to [`from_node`]).
    pub path: FieldPath,
    /// Where the value starts; `None` until the innermost node attaches it.
    pub mark: Option<Mark>,
}

impl fmt::Display for DeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}
impl std::error::Error for DeError {}

impl de::Error for DeError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        DeError {
            message: msg.to_string(),
            path: FieldPath::root(),
            mark: None,
        }
    }
}

/// Deserializes `T` from a node. `base` is prefixed to every error path.
pub fn from_node<'a, T: de::Deserialize<'a>>(
    node: &'a Node,
    base: &FieldPath,
) -> Result<T, DeError> {
    let path = Path::Root(base);
    T::deserialize(NodeDe { node, path: &path })
}

enum Path<'p> {
    Root(&'p FieldPath),
    Key(&'p Path<'p>, &'p str),
    Index(&'p Path<'p>, usize),
}

impl Path<'_> {
    fn to_field_path(&self) -> FieldPath {
        let mut segs = Vec::new();
        let mut cur = self;
        loop {
            match cur {
                Path::Root(base) => {
                    let mut all = base.0.clone();
                    segs.reverse();
                    all.extend(segs);
                    return FieldPath(all);
                }
                Path::Key(p, k) => {
                    segs.push(PathSeg::Key((*k).to_string()));
                    cur = p;
                }
                Path::Index(p, i) => {
                    segs.push(PathSeg::Index(*i));
                    cur = p;
                }
            }
        }
    }
}

struct NodeDe<'a, 'p> {
    node: &'a Node,
    path: &'p Path<'p>,
}

impl<'a, 'p> NodeDe<'a, 'p> {
    fn locate(&self, mut e: DeError) -> DeError {
        if e.mark.is_none() {
            e.mark = Some(self.node.mark);
            e.path = self.path.to_field_path();
        }
        e
    }
    fn invalid(&self, exp: &dyn de::Expected) -> DeError {
        let found = match &self.node.value {
            Value::Str(s) => format!("string \"{}\"", truncate(s)),
            Value::Int(i) => format!("integer {i}"),
            Value::Float(f) => format!("number {f}"),
            Value::Bool(b) => format!("boolean {b}"),
            other => other.kind_name().to_string(),
        };
        self.locate(de::Error::custom(format_args!(
            "expected {exp}, found {found}"
        )))
    }
}

fn truncate(s: &str) -> String {
    if s.chars().count() > 40 {
        let t: String = s.chars().take(40).collect();
        format!("{t}…")
    } else {
        s.to_string()
    }
}

macro_rules! forward_any {
    ($($m:ident)*) => {$(
        fn $m<V: Visitor<'a>>(self, v: V) -> Result<V::Value, DeError> { self.deserialize_any(v) }
    )*};
}

impl<'a, 'p> de::Deserializer<'a> for NodeDe<'a, 'p> {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, DeError> {
        let r = match &self.node.value {
            Value::Null => visitor.visit_unit(),
            Value::Bool(b) => visitor.visit_bool(*b),
            Value::Int(i) => visitor.visit_i64(*i),
            Value::Float(f) => visitor.visit_f64(*f),
            Value::Str(s) => visitor.visit_borrowed_str(s),
            Value::Seq(items) => visitor.visit_seq(SeqDe {
                items,
                next: 0,
                path: self.path,
            }),
            Value::Map(entries) => visitor.visit_map(MapDe {
                entries,
                next: 0,
                path: self.path,
                value: None,
            }),
        };
        r.map_err(|e| self.locate(e))
    }

    fn deserialize_str<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, DeError> {
        match &self.node.value {
            Value::Str(s) => visitor.visit_borrowed_str(s).map_err(|e| self.locate(e)),
            _ => Err(self.invalid(&"a string")),
        }
    }
    fn deserialize_string<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }
    fn deserialize_bool<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, DeError> {
        match &self.node.value {
            Value::Bool(b) => visitor.visit_bool(*b).map_err(|e| self.locate(e)),
            _ => Err(self.invalid(&"true or false")),
        }
    }
    fn deserialize_option<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, DeError> {
        match &self.node.value {
            Value::Null => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
    }
    fn deserialize_unit<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_any(visitor)
    }
    fn deserialize_seq<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, DeError> {
        match &self.node.value {
            Value::Seq(_) => self.deserialize_any(visitor),
            // `field: null` / `field:` reads as an empty list, as Kubernetes does.
            Value::Null => visitor
                .visit_seq(SeqDe {
                    items: &[],
                    next: 0,
                    path: self.path,
                })
                .map_err(|e| self.locate(e)),
            _ => Err(self.invalid(&"a list")),
        }
    }
    fn deserialize_map<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, DeError> {
        match &self.node.value {
            Value::Map(_) => self.deserialize_any(visitor),
            Value::Null => visitor
                .visit_map(MapDe {
                    entries: &[],
                    next: 0,
                    path: self.path,
                    value: None,
                })
                .map_err(|e| self.locate(e)),
            _ => Err(self.invalid(&"a mapping")),
        }
    }
    fn deserialize_struct<V: Visitor<'a>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_map(visitor)
    }
    fn deserialize_newtype_struct<V: Visitor<'a>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        visitor.visit_newtype_struct(self)
    }
    fn deserialize_enum<V: Visitor<'a>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        match &self.node.value {
            Value::Str(s) => visitor
                .visit_enum(s.as_str().into_deserializer())
                .map_err(|e: DeError| self.locate(e)),
            _ => Err(self.invalid(&"one of the allowed strings")),
        }
    }
    fn deserialize_identifier<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }
    fn deserialize_ignored_any<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_unit()
    }

    fn deserialize_i64<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, DeError> {
        match &self.node.value {
            Value::Int(i) => visitor.visit_i64(*i).map_err(|e| self.locate(e)),
            _ => Err(self.invalid(&"an integer")),
        }
    }
    fn deserialize_f64<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, DeError> {
        match &self.node.value {
            Value::Int(i) => visitor.visit_f64(*i as f64).map_err(|e| self.locate(e)),
            Value::Float(f) => visitor.visit_f64(*f).map_err(|e| self.locate(e)),
            _ => Err(self.invalid(&"a number")),
        }
    }

    forward_any! {
        deserialize_i8 deserialize_i16 deserialize_i32 deserialize_i128
        deserialize_u8 deserialize_u16 deserialize_u32 deserialize_u64 deserialize_u128
        deserialize_f32 deserialize_char deserialize_bytes deserialize_byte_buf
    }

    fn deserialize_unit_struct<V: Visitor<'a>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_any(visitor)
    }
    fn deserialize_tuple<V: Visitor<'a>>(
        self,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_seq(visitor)
    }
    fn deserialize_tuple_struct<V: Visitor<'a>>(
        self,
        _name: &'static str,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_seq(visitor)
    }
}

struct SeqDe<'a, 'p> {
    items: &'a [Node],
    next: usize,
    path: &'p Path<'p>,
}

impl<'a, 'p> de::SeqAccess<'a> for SeqDe<'a, 'p> {
    type Error = DeError;
    fn next_element_seed<T: DeserializeSeed<'a>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, DeError> {
        let Some(node) = self.items.get(self.next) else {
            return Ok(None);
        };
        let path = Path::Index(self.path, self.next);
        self.next += 1;
        let d = NodeDe { node, path: &path };
        let r = seed.deserialize(NodeDe { node, path: &path });
        r.map(Some).map_err(|e| d.locate(e))
    }
    fn size_hint(&self) -> Option<usize> {
        Some(self.items.len() - self.next)
    }
}

struct MapDe<'a, 'p> {
    entries: &'a [(Node, Node)],
    next: usize,
    path: &'p Path<'p>,
    value: Option<&'a (Node, Node)>,
}

impl<'a, 'p> de::MapAccess<'a> for MapDe<'a, 'p> {
    type Error = DeError;
    fn next_key_seed<K: DeserializeSeed<'a>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, DeError> {
        let Some(entry) = self.entries.get(self.next) else {
            return Ok(None);
        };
        self.next += 1;
        self.value = Some(entry);
        let key_text = match &entry.0.value {
            Value::Str(s) => s.as_str(),
            _ => "?",
        };
        let path = Path::Key(self.path, key_text);
        let d = NodeDe {
            node: &entry.0,
            path: &path,
        };
        // Keys are strings in Kubernetes objects; numbers and booleans are read as text.
        let r = match &entry.0.value {
            Value::Str(s) => seed.deserialize(s.as_str().into_deserializer()),
            Value::Int(i) => seed.deserialize(i.to_string().into_deserializer()),
            Value::Bool(b) => seed.deserialize(b.to_string().into_deserializer()),
            _ => return Err(d.invalid(&"a string key")),
        };
        r.map(Some).map_err(|e: DeError| d.locate(e))
    }
    fn next_value_seed<V: DeserializeSeed<'a>>(&mut self, seed: V) -> Result<V::Value, DeError> {
        let entry = self
            .value
            .take()
            .ok_or_else(|| de::Error::custom("value without key"))?;
        let key_text = match &entry.0.value {
            Value::Str(s) => s.as_str(),
            _ => "?",
        };
        let path = Path::Key(self.path, key_text);
        let d = NodeDe {
            node: &entry.1,
            path: &path,
        };
        seed.deserialize(NodeDe {
            node: &entry.1,
            path: &path,
        })
        .map_err(|e| d.locate(e))
    }
    fn size_hint(&self) -> Option<usize> {
        Some(self.entries.len() - self.next)
    }
}

#[cfg(test)]
mod tests {
    use super::super::parse_documents;
    use super::*;
    use serde::Deserialize;

    #[derive(Deserialize, Debug)]
    #[serde(deny_unknown_fields, rename_all = "camelCase")]
    struct Outer {
        name: String,
        #[serde(default)]
        items: Vec<Inner>,
    }
    #[derive(Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    struct Inner {
        port: u16,
    }

    fn load(y: &str) -> Result<Outer, DeError> {
        let docs = parse_documents(y).unwrap();
        from_node(&docs[0], &FieldPath::root())
    }

    #[test]
    fn reads_nested() {
        let o = load("name: a\nitems:\n- port: 80\n").unwrap();
        assert_eq!(o.name, "a");
        assert_eq!(o.items[0].port, 80);
    }

    #[test]
    fn unknown_field_has_path_and_mark() {
        let e = load("name: a\nitems:\n- port: 80\n  prot: TCP\n").unwrap_err();
        assert_eq!(e.path.to_string(), "items[0].prot");
        assert_eq!(e.mark, Some(Mark { line: 4, col: 3 }));
        assert!(e.message.contains("unknown field `prot`"), "{}", e.message);
    }

    #[test]
    fn out_of_range_has_path() {
        let e = load("name: a\nitems:\n- port: 70000\n").unwrap_err();
        assert_eq!(e.path.to_string(), "items[0].port");
        assert_eq!(e.mark.unwrap().line, 3);
    }

    #[test]
    fn wrong_type_names_found_value() {
        let e = load("name: 5\n").unwrap_err();
        assert_eq!(e.path.to_string(), "name");
        assert!(
            e.message.contains("expected a string, found integer 5"),
            "{}",
            e.message
        );
    }

    #[test]
    fn missing_field_points_at_parent() {
        let e = load("items: []\n").unwrap_err();
        assert!(e.message.contains("missing field `name`"));
        assert_eq!(e.path.to_string(), "");
    }
}
