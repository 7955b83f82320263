//! Strict JSON for request bodies the gateway decides on: one reading only. An object
//! holding the same key twice (after unescaping: `"model"` and `"mod\u0065l"` are the same
//! key) is refused, because parsers disagree about it — serde_json, Python's `json`, Go's
//! `encoding/json` and JavaScript keep the last value, others (`gjson`, some streaming
//! parsers) the first, Rust `#[derive(Deserialize)]` structs fail — so the gateway and the
//! backend could read different models or prompts from the same bytes. A UTF-8 byte order
//! mark is refused too (Python's `json.loads` skips it, serde_json does not), as are the
//! things serde_json already refuses and some backends accept: lone UTF-16 surrogates in
//! escapes, `NaN` / `Infinity`, numbers out of `f64` range (`1e400`), invalid UTF-8, and
//! nesting past serde_json's recursion limit (128).

use serde::de::{DeserializeSeed, Error as _, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};
use std::fmt;

/// Why a body is not strict JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StrictError {
    /// An object names `key` twice.
    DuplicateKey(String),
    /// The body starts with a UTF-8 byte order mark.
    ByteOrderMark,
    /// Not JSON at all (serde_json's message).
    Syntax(String),
}

/// Marks serde errors raised for a duplicate key (serde errors carry only a message).
const DUPLICATE: &str = "palisade-duplicate-key:";

/// Parses `raw` as one JSON value, refusing duplicate keys and a byte order mark.
pub fn parse(raw: &[u8]) -> Result<Value, StrictError> {
    if raw.starts_with(b"\xEF\xBB\xBF") {
        return Err(StrictError::ByteOrderMark);
    }
    let mut de = serde_json::Deserializer::from_slice(raw);
    let v = Strict.deserialize(&mut de).map_err(classify)?;
    de.end().map_err(classify)?;
    Ok(v)
}

fn classify(e: serde_json::Error) -> StrictError {
    let msg = e.to_string();
    match msg.strip_prefix(DUPLICATE) {
        // serde_json appends " at line L column C" to custom errors.
        Some(rest) => StrictError::DuplicateKey(
            rest.rsplit_once(" at line ")
                .map_or(rest, |(k, _)| k)
                .to_string(),
        ),
        None => StrictError::Syntax(msg),
    }
}

struct Strict;

impl<'de> DeserializeSeed<'de> for Strict {
    type Value = Value;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(StrictVisitor)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, b: bool) -> Result<Value, E> {
        Ok(Value::Bool(b))
    }
    fn visit_i64<E>(self, n: i64) -> Result<Value, E> {
        Ok(Value::Number(n.into()))
    }
    fn visit_u64<E>(self, n: u64) -> Result<Value, E> {
        Ok(Value::Number(n.into()))
    }
    fn visit_f64<E: serde::de::Error>(self, n: f64) -> Result<Value, E> {
        Number::from_f64(n)
            .map(Value::Number)
            .ok_or_else(|| E::custom("number out of range"))
    }
    fn visit_str<E>(self, s: &str) -> Result<Value, E> {
        Ok(Value::String(s.to_string()))
    }
    fn visit_string<E>(self, s: String) -> Result<Value, E> {
        Ok(Value::String(s))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::new();
        while let Some(v) = seq.next_element_seed(Strict)? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(k) = map.next_key::<String>()? {
            if out.contains_key(&k) {
                return Err(A::Error::custom(format!("{DUPLICATE}{k}")));
            }
            let v = map.next_value_seed(Strict)?;
            out.insert(k, v);
        }
        Ok(Value::Object(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn duplicate_keys_are_refused_at_any_depth_and_after_unescaping() {
        for (body, key) in [
            (r#"{"model":"a","model":"b"}"#, "model"),
            (r#"{"model":"a","mod\u0065l":"b"}"#, "model"),
            (
                r#"{"messages":[{"role":"user","content":"x","content":"y"}]}"#,
                "content",
            ),
            (
                r#"{"messages":[{"role":"system","role":"user","content":"x"}]}"#,
                "role",
            ),
            (r#"{"a":{"b":[{"c":1,"c":1}]}}"#, "c"),
            (r#"{"stream":false,"stream":true}"#, "stream"),
            (r#"{"max_tokens":1,"max_tokens":100000}"#, "max_tokens"),
        ] {
            assert_eq!(
                parse(body.as_bytes()),
                Err(StrictError::DuplicateKey(key.into())),
                "{body}"
            );
        }
        // Same key in different objects is fine.
        let v = parse(br#"{"a":{"k":1},"b":{"k":2},"k":3}"#).unwrap();
        assert_eq!(v["b"]["k"], 2);
    }

    #[test]
    fn what_some_backends_accept_is_refused() {
        assert_eq!(
            parse(b"\xEF\xBB\xBF{\"model\":\"m\"}"),
            Err(StrictError::ByteOrderMark)
        );
        for body in [
            &br#"{"max_tokens":1e400}"#[..],
            br#"{"max_tokens":-1e400}"#,
            br#"{"max_tokens":NaN}"#,
            br#"{"max_tokens":Infinity}"#,
            br#"{"content":"\ud800"}"#,
            br#"{"content":"\udc00x"}"#,
            br#"{"c\ud800":"x"}"#,
            b"{\"content\":\"\xed\xa0\x80\"}",
            b"{\"content\":\"\xff\"}",
            br#"{"a":1}{"a":2}"#,
            br#"{"a":1,}"#,
        ] {
            assert!(
                matches!(parse(body), Err(StrictError::Syntax(_))),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
        let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
        assert!(matches!(
            parse(deep.as_bytes()),
            Err(StrictError::Syntax(_))
        ));
        // A paired surrogate escape is one character.
        assert_eq!(parse(br#""\ud83d\ude00""#).unwrap(), "\u{1F600}");
    }

    proptest! {
        /// Whatever serde_json reads without duplicates, the strict parser reads the same.
        #[test]
        fn agrees_with_serde_json_where_keys_are_unique(b in proptest::collection::vec(any::<u8>(), 0..200)) {
            match (parse(&b), serde_json::from_slice::<Value>(&b)) {
                (Ok(a), Ok(v)) => prop_assert_eq!(a, v),
                (Ok(_), Err(e)) => prop_assert!(false, "strict accepted what serde refused: {}", e),
                (Err(_), _) => {}
            }
        }

        #[test]
        fn objects_round_trip(m in proptest::collection::btree_map("[a-z\\\\\"]{0,4}", "[ -~]{0,8}", 0..6)) {
            let v = serde_json::to_value(&m).unwrap();
            prop_assert_eq!(parse(v.to_string().as_bytes()).unwrap(), v);
        }
    }
}
