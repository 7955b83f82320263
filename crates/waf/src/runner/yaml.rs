//! The CRS (go-ftw) regression test format.

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use std::fmt;

#[derive(Debug, Deserialize, Default)]
#[serde(default)]
pub(crate) struct TestFile {
    pub(crate) rule_id: Option<Text>,
    pub(crate) tests: Vec<TestCase>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(default)]
pub(crate) struct TestCase {
    pub(crate) test_id: Option<Text>,
    pub(crate) test_title: Option<Text>,
    pub(crate) desc: Option<Text>,
    pub(crate) stages: Vec<Stage>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(default)]
pub(crate) struct Stage {
    pub(crate) input: Input,
    pub(crate) output: Output,
    /// Older format: `stage: {input, output}`.
    pub(crate) stage: Option<Box<Stage>>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(default)]
pub(crate) struct Input {
    pub(crate) dest_addr: Option<Text>,
    pub(crate) method: Option<Text>,
    pub(crate) uri: Option<Text>,
    pub(crate) version: Option<Text>,
    pub(crate) headers: Headers,
    pub(crate) data: Option<Data>,
    pub(crate) encoded_request: Option<Text>,
    pub(crate) raw_request: Option<Text>,
    pub(crate) autocomplete_headers: Option<bool>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(default)]
pub(crate) struct Output {
    pub(crate) log: Option<Log>,
    pub(crate) status: Option<Status>,
    pub(crate) expect_error: Option<bool>,
    pub(crate) log_contains: Option<Text>,
    pub(crate) no_log_contains: Option<Text>,
    pub(crate) response_contains: Option<Text>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(default)]
pub(crate) struct Log {
    pub(crate) expect_ids: Vec<u32>,
    pub(crate) no_expect_ids: Vec<u32>,
    pub(crate) match_regex: Option<Text>,
    pub(crate) no_match_regex: Option<Text>,
}

/// `status: 200` or `status: [200, 404]`.
#[derive(Debug, Default)]
pub(crate) struct Status(pub(crate) Vec<u16>);

/// Any scalar, as text (YAML numbers and booleans included).
#[derive(Debug, Default, Clone)]
pub(crate) struct Text(pub(crate) String);

/// `data:` as one string or a list of lines (joined with CRLF).
#[derive(Debug, Default)]
pub(crate) struct Data(pub(crate) String);

/// Headers in document order.
#[derive(Debug, Default)]
pub(crate) struct Headers(pub(crate) Vec<(String, String)>);

struct TextVisitor;

impl<'de> Visitor<'de> for TextVisitor {
    type Value = Text;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a scalar")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Text, E> {
        Ok(Text(v.to_string()))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Text, E> {
        Ok(Text(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Text, E> {
        Ok(Text(v.to_string()))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Text, E> {
        Ok(Text(v.to_string()))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Text, E> {
        Ok(Text(v.to_string()))
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Text, E> {
        Ok(Text(v.to_string()))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Text, E> {
        Ok(Text(String::new()))
    }
    fn visit_none<E: de::Error>(self) -> Result<Text, E> {
        Ok(Text(String::new()))
    }
}

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Text, D::Error> {
        d.deserialize_any(TextVisitor)
    }
}

struct DataVisitor;

impl<'de> Visitor<'de> for DataVisitor {
    type Value = Data;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string or a list of strings")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Data, E> {
        Ok(Data(v.to_string()))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Data, E> {
        Ok(Data(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Data, E> {
        Ok(Data(v.to_string()))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Data, E> {
        Ok(Data(v.to_string()))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Data, E> {
        Ok(Data(v.to_string()))
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Data, E> {
        Ok(Data(v.to_string()))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Data, E> {
        Ok(Data(String::new()))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Data, A::Error> {
        let mut lines = Vec::new();
        while let Some(Text(l)) = seq.next_element::<Text>()? {
            lines.push(l);
        }
        Ok(Data(lines.join("\r\n")))
    }
}

impl<'de> Deserialize<'de> for Data {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Data, D::Error> {
        d.deserialize_any(DataVisitor)
    }
}

struct StatusVisitor;

impl<'de> Visitor<'de> for StatusVisitor {
    type Value = Status;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a status code or a list of them")
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Status, E> {
        Ok(Status(vec![v as u16]))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Status, E> {
        Ok(Status(vec![v as u16]))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Status, E> {
        v.trim()
            .parse()
            .map(|n| Status(vec![n]))
            .map_err(|_| E::custom("invalid status"))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Status, A::Error> {
        let mut v = Vec::new();
        while let Some(n) = seq.next_element::<u16>()? {
            v.push(n);
        }
        Ok(Status(v))
    }
}

impl<'de> Deserialize<'de> for Status {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Status, D::Error> {
        d.deserialize_any(StatusVisitor)
    }
}

struct HeadersVisitor;

impl<'de> Visitor<'de> for HeadersVisitor {
    type Value = Headers;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a mapping of header names to values")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Headers, A::Error> {
        let mut v = Vec::new();
        while let Some((Text(k), Text(val))) = m.next_entry::<Text, Text>()? {
            v.push((k, val));
        }
        Ok(Headers(v))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Headers, E> {
        Ok(Headers(Vec::new()))
    }
}

impl<'de> Deserialize<'de> for Headers {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Headers, D::Error> {
        d.deserialize_any(HeadersVisitor)
    }
}

/// The overrides file: engine settings of the test harness and tests skipped with reasons.
#[derive(Debug, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct Overrides {
    /// SecLang read after the setup file (what CRS's own test harness configures).
    pub(crate) directives: String,
    pub(crate) tests: Vec<OverrideEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct OverrideEntry {
    /// `RULEID-TESTID`, e.g. `920100-2`.
    pub(crate) test: String,
    pub(crate) reason: String,
}
