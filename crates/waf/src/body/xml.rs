//! A minimal, non-validating XML reader: text content for `XML:/*` and attribute values
//! for `XML://@*`. No DTDs or entities beyond the five predefined ones are expanded.

use super::{Kv, Parsed};
use crate::transforms::decode::html_entity_decode;

pub(crate) fn parse(s: &[u8], p: &mut Parsed) -> Result<(), String> {
    let mut text = Vec::new();
    let mut i = 0;
    let mut depth: i64 = 0;
    let mut seen_root = false;
    while i < s.len() {
        if s[i] != b'<' {
            let st = i;
            while i < s.len() && s[i] != b'<' {
                i += 1;
            }
            if depth > 0 {
                text.extend_from_slice(&html_entity_decode(&s[st..i]));
            } else if !s[st..i].trim_ascii().is_empty() {
                return Err(format!("XML: text outside the root element at offset {st}"));
            }
            continue;
        }
        let rest = &s[i..];
        if rest.starts_with(b"<!--") {
            i += 4 + skip_to(&s[i + 4..], b"-->")? + 3;
        } else if rest.starts_with(b"<![CDATA[") {
            let e = skip_to(&s[i + 9..], b"]]>")?;
            text.extend_from_slice(&s[i + 9..i + 9 + e]);
            i += 9 + e + 3;
        } else if rest.starts_with(b"<?") {
            i += 2 + skip_to(&s[i + 2..], b"?>")? + 2;
        } else if rest.starts_with(b"<!") {
            i += 2 + skip_to(&s[i + 2..], b">")? + 1;
        } else if rest.starts_with(b"</") {
            i += 2 + skip_to(&s[i + 2..], b">")? + 1;
            depth -= 1;
            if depth < 0 {
                return Err(format!("XML: unbalanced end tag at offset {i}"));
            }
        } else {
            let e = tag_end(&s[i + 1..])
                .ok_or_else(|| format!("XML: unterminated tag at offset {i}"))?;
            let tag = &s[i + 1..i + 1 + e];
            let self_closing = tag.ends_with(b"/");
            attributes(tag, &mut p.xml_attrs);
            i += 1 + e + 1;
            if depth == 0 && seen_root {
                return Err("XML: more than one root element".into());
            }
            seen_root = true;
            if !self_closing {
                depth += 1;
            }
        }
    }
    if !seen_root {
        return Err("XML: no root element".into());
    }
    if depth != 0 {
        return Err("XML: unclosed elements".into());
    }
    p.xml_text = Some(text);
    Ok(())
}

fn skip_to(s: &[u8], end: &[u8]) -> Result<usize, String> {
    crate::operators::find(s, end).ok_or_else(|| "XML: unterminated markup".to_string())
}

/// Index of the `>` closing a start tag, skipping quoted attribute values.
fn tag_end(s: &[u8]) -> Option<usize> {
    let mut q = 0u8;
    for (i, &c) in s.iter().enumerate() {
        if q != 0 {
            if c == q {
                q = 0;
            }
        } else if c == b'"' || c == b'\'' {
            q = c;
        } else if c == b'>' {
            return Some(i);
        }
    }
    None
}

fn attributes(tag: &[u8], out: &mut Vec<Kv>) {
    let mut i = tag
        .iter()
        .position(|c| c.is_ascii_whitespace())
        .unwrap_or(tag.len());
    while i < tag.len() {
        while i < tag.len() && (tag[i].is_ascii_whitespace() || tag[i] == b'/') {
            i += 1;
        }
        let st = i;
        while i < tag.len() && tag[i] != b'=' && !tag[i].is_ascii_whitespace() {
            i += 1;
        }
        let name = &tag[st..i];
        while i < tag.len() && (tag[i].is_ascii_whitespace() || tag[i] == b'=') {
            i += 1;
        }
        if i < tag.len() && (tag[i] == b'"' || tag[i] == b'\'') {
            let q = tag[i];
            let vs = i + 1;
            let ve = tag[vs..]
                .iter()
                .position(|&c| c == q)
                .map_or(tag.len(), |e| vs + e);
            out.push(Kv {
                key: name.to_vec(),
                value: html_entity_decode(&tag[vs..ve]).into_owned(),
            });
            i = ve + 1;
        } else if name.is_empty() {
            i += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_and_attributes() {
        let mut p = Parsed::default();
        parse(
            b"<?xml version=\"1.0\"?><a x=\"1&lt;\"><b>hi</b><![CDATA[<c>]]><d/></a>",
            &mut p,
        )
        .unwrap();
        assert_eq!(p.xml_text.as_deref(), Some(b"hi<c>".as_slice()));
        assert_eq!(p.xml_attrs, vec![Kv::new(b"x", b"1<")]);
        assert!(parse(b"<a>", &mut Parsed::default()).is_err());
        assert!(parse(b"nope", &mut Parsed::default()).is_err());
    }
}
