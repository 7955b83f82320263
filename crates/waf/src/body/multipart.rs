//! `multipart/form-data`: fields → `ARGS_POST`, files → `FILES*`, part headers →
//! `MULTIPART_PART_HEADERS`, anomalies → `MULTIPART_*` flags.

use super::{Kv, Parsed};
use crate::operators::find;

/// The boundary parameter of a Content-Type value, and whether it was quoted.
pub(crate) fn boundary(content_type: &[u8]) -> Option<(Vec<u8>, bool, bool)> {
    let lower = content_type.to_ascii_lowercase();
    let pos = find(&lower, b"boundary")?;
    let mut rest = &content_type[pos + 8..];
    let ws_before = rest.first().is_some_and(|c| c.is_ascii_whitespace());
    rest = rest.trim_ascii_start();
    rest = rest.strip_prefix(b"=")?;
    let ws_after = rest.first().is_some_and(|c| c.is_ascii_whitespace());
    rest = rest.trim_ascii_start();
    if let Some(q) = rest.strip_prefix(b"\"") {
        let end = q.iter().position(|&c| c == b'"')?;
        return Some((q[..end].to_vec(), true, ws_before || ws_after));
    }
    let end = rest
        .iter()
        .position(|&c| c == b';' || c == b',' || c.is_ascii_whitespace())
        .unwrap_or(rest.len());
    if end == 0 {
        return None;
    }
    Some((rest[..end].to_vec(), false, ws_before || ws_after))
}

/// Splits a Content-Disposition value on `;` outside double quotes.
fn segments(v: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut quoted = false;
    let mut st = 0;
    let mut i = 0;
    while i < v.len() {
        match v[i] {
            b'\\' if quoted => i += 1,
            b'"' => quoted = !quoted,
            b';' if !quoted => {
                out.push(&v[st..i]);
                st = i + 1;
            }
            _ => {}
        }
        i += 1;
    }
    out.push(&v[st.min(v.len())..]);
    out
}

/// `name="x"` or `name=x` from a Content-Disposition value.
fn param(v: &[u8], name: &[u8], p: &mut Parsed) -> Option<Vec<u8>> {
    for seg in segments(v) {
        let seg = seg.trim_ascii();
        let Some(eq) = seg.iter().position(|&c| c == b'=') else {
            continue;
        };
        if !seg[..eq].trim_ascii().eq_ignore_ascii_case(name) {
            continue;
        }
        let val = seg[eq + 1..].trim_ascii();
        if let Some(q) = val.strip_prefix(b"\"") {
            let mut out = Vec::new();
            let mut i = 0;
            let mut closed = false;
            while i < q.len() {
                if q[i] == b'\\' && i + 1 < q.len() && (q[i + 1] == b'"' || q[i + 1] == b'\\') {
                    out.push(q[i + 1]);
                    i += 2;
                    continue;
                }
                if q[i] == b'"' {
                    closed = true;
                    break;
                }
                out.push(q[i]);
                i += 1;
            }
            if !closed || i + 1 != q.len() {
                p.mp_flags.invalid_quoting = true;
            }
            return Some(out);
        }
        if val.starts_with(b"'") {
            p.mp_flags.invalid_quoting = true;
        }
        return Some(val.to_vec());
    }
    None
}

pub(crate) fn parse(body: &[u8], content_type: &[u8], p: &mut Parsed) -> Result<(), String> {
    let Some((b, quoted, ws)) = boundary(content_type) else {
        return Err("Multipart: no boundary in Content-Type".into());
    };
    p.mp_flags.boundary_quoted = quoted;
    p.mp_flags.boundary_whitespace = ws;
    let mut delim = b"--".to_vec();
    delim.extend_from_slice(&b);
    let Some(first) = find(body, &delim) else {
        p.mp_flags.unmatched_boundary = true;
        return Err("Multipart: boundary not found".into());
    };
    if !body[..first].trim_ascii().is_empty() {
        p.mp_flags.data_before = true;
    }
    let mut pos = first + delim.len();
    loop {
        // After a delimiter: `--` ends, else a line break starts a part.
        if body[pos..].starts_with(b"--") {
            if !body[pos + 2..].trim_ascii().is_empty() {
                p.mp_flags.data_after = true;
            }
            return Ok(());
        }
        let rest = &body[pos..];
        let line_end = match rest.iter().position(|&c| c == b'\n') {
            Some(i) => i,
            None => {
                p.mp_flags.unmatched_boundary = true;
                return Err("Multipart: final boundary missing".into());
            }
        };
        if !rest[..line_end].trim_ascii().is_empty() {
            p.mp_flags.invalid_part = true;
        }
        if line_end == 0 || rest[line_end - 1] != b'\r' {
            p.mp_flags.lf_line = true;
        }
        pos += line_end + 1;
        // Headers.
        let mut name: Option<Vec<u8>> = None;
        let mut filename: Option<Vec<u8>> = None;
        let mut headers: Vec<Vec<u8>> = Vec::new();
        loop {
            let rest = &body[pos..];
            let Some(e) = rest.iter().position(|&c| c == b'\n') else {
                p.mp_flags.unmatched_boundary = true;
                return Err("Multipart: headers not terminated".into());
            };
            let mut line = &rest[..e];
            if let Some(l) = line.strip_suffix(b"\r") {
                line = l;
            } else {
                p.mp_flags.lf_line = true;
            }
            pos += e + 1;
            if line.is_empty() {
                break;
            }
            if line[0] == b' ' || line[0] == b'\t' {
                p.mp_flags.header_folding = true;
                if let Some(last) = headers.last_mut() {
                    last.extend_from_slice(line);
                    continue;
                }
                p.mp_flags.invalid_header_folding = true;
                continue;
            }
            headers.push(line.to_vec());
        }
        for h in &headers {
            let Some(colon) = h.iter().position(|&c| c == b':') else {
                p.mp_flags.invalid_part = true;
                continue;
            };
            if h[..colon]
                .trim_ascii()
                .eq_ignore_ascii_case(b"content-disposition")
            {
                let v = h[colon + 1..].trim_ascii();
                if !v.to_ascii_lowercase().starts_with(b"form-data") {
                    p.mp_flags.invalid_part = true;
                }
                if find(v, b";").is_none() {
                    p.mp_flags.missing_semicolon = true;
                }
                name = param(v, b"name", p);
                filename = param(v, b"filename", p).or(filename);
                if let Some(f) = param(v, b"filename*", p) {
                    filename = Some(f);
                }
            }
        }
        let Some(end) = find(&body[pos..], &delim) else {
            p.mp_flags.unmatched_boundary = true;
            return Err("Multipart: final boundary missing".into());
        };
        let mut content = &body[pos..pos + end];
        if let Some(c) = content.strip_suffix(b"\r\n") {
            content = c;
        } else if let Some(c) = content.strip_suffix(b"\n") {
            content = c;
            p.mp_flags.lf_line = true;
        }
        pos += end + delim.len();
        let n = name.clone().unwrap_or_default();
        for h in headers {
            p.part_headers.push(Kv {
                key: n.clone(),
                value: h,
            });
        }
        p.mp_name.push(Kv::new(&n, &n));
        match filename {
            Some(f) => {
                p.files.push(Kv::new(&n, &f));
                p.mp_filename.push(Kv::new(&n, &f));
                p.files_sizes
                    .push(Kv::new(&n, content.len().to_string().as_bytes()));
                p.files_content.push(Kv::new(&n, content));
            }
            None => {
                if name.is_none() {
                    p.mp_flags.invalid_part = true;
                }
                p.args_post.push(Kv::new(&n, content));
            }
        }
        if pos >= body.len() {
            p.mp_flags.unmatched_boundary = true;
            return Err("Multipart: final boundary missing".into());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_fields_and_files() {
        let body = b"--xx\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nhello\r\n--xx\r\nContent-Disposition: form-data; name=\"f\"; filename=\"x.php\"\r\nContent-Type: text/plain\r\n\r\n<?php\r\n--xx--\r\n";
        let mut p = Parsed::default();
        parse(body, b"multipart/form-data; boundary=xx", &mut p).unwrap();
        assert_eq!(p.args_post, vec![Kv::new(b"a", b"hello")]);
        assert_eq!(p.files, vec![Kv::new(b"f", b"x.php")]);
        assert_eq!(p.part_headers.len(), 3);
        assert!(!p.mp_flags.any());
        let mut p = Parsed::default();
        assert!(parse(
            b"--xx\r\nContent-Disposition: form-data; name=a\r\n\r\nv",
            b"multipart/form-data; boundary=xx",
            &mut p
        )
        .is_err());
        assert_eq!(
            boundary(b"multipart/form-data; boundary=\"q\""),
            Some((b"q".to_vec(), true, false))
        );
    }
}
