//! `multipart/form-data`: fields → `ARGS_POST`, files → `FILES*`, part headers →
//! `MULTIPART_PART_HEADERS`, anomalies → `MULTIPART_*` flags.
//!
//! Backends do not agree on malformed multipart bodies (werkzeug, python-multipart,
//! Django, busboy and Go each read some of them differently), so a body one of them could
//! read differently from this parser is a body-processor error (`REQBODY_ERROR`, which
//! ModSecurity's recommended rule 200002 and the ingress gateway refuse), and parsing goes on
//! so the rules still see every part: two `boundary` parameters, or an unquoted one that is
//! not a token; `--boundary` anywhere but at the start of a CRLF line followed by optional
//! blanks and CRLF (or `--`); data before
//! the first or after the last delimiter (Django reads parts there); line breaks other than
//! CRLF, bare CRs and folded lines in part headers; a part with two Content-Disposition
//! headers or two `name` / `filename` parameters. A part is taken for a file (its content
//! kept out of `ARGS_POST`) only when every backend reads it as one: a plain, non-empty
//! `filename=` with nothing around the `=`; otherwise its content is an argument as well.

use super::{Kv, Parsed};
use crate::operators::find;

/// One `name=value` parameter of a header value (Content-Type, Content-Disposition).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Param {
    /// Lower-case, trimmed.
    pub(crate) name: Vec<u8>,
    /// Unquoted and unescaped.
    pub(crate) value: Vec<u8>,
    pub(crate) quoted: bool,
    /// Whitespace next to the `=` (werkzeug then ignores the parameter, others do not).
    pub(crate) space_around_eq: bool,
    /// An unterminated quote, text after the closing quote, or a single-quoted value.
    pub(crate) bad_quoting: bool,
}

/// Splits a header value on `;` outside double quotes (with `\` escapes inside them).
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

/// Splits as Django and Python's `email` package (python-multipart) do: on a `;` after an
/// even number of `"`, not counting `\"` (so `"a\\"` does not close for them).
fn segments_by_counting(v: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut st = 0;
    let mut quotes = 0usize;
    for i in 0..v.len() {
        match v[i] {
            b'"' if i == 0 || v[i - 1] != b'\\' => quotes += 1,
            b';' if quotes.is_multiple_of(2) => {
                out.push(&v[st..i]);
                st = i + 1;
            }
            _ => {}
        }
    }
    out.push(&v[st..]);
    out
}

/// Whether backends split this header value into parameters differently (escaped
/// backslashes before a quote: werkzeug and busboy unescape, Django and python-multipart
/// count quotes).
fn split_is_ambiguous(v: &[u8]) -> bool {
    v.contains(&b'\\') && segments(v) != segments_by_counting(v)
}

/// RFC 9110 `tchar`: what werkzeug reads as an unquoted parameter value.
fn is_tchar(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&c)
}

/// The parameters after the first `;` of a header value, in order (duplicates kept).
pub(crate) fn params(v: &[u8]) -> Vec<Param> {
    let mut out = Vec::new();
    for seg in segments(v).into_iter().skip(1) {
        let seg = seg.trim_ascii();
        let Some(eq) = seg.iter().position(|&c| c == b'=') else {
            continue;
        };
        let raw_name = &seg[..eq];
        let raw_val = &seg[eq + 1..];
        let space_around_eq = raw_name.last().is_some_and(u8::is_ascii_whitespace)
            || raw_val.first().is_some_and(u8::is_ascii_whitespace);
        let val = raw_val.trim_ascii();
        let mut p = Param {
            name: raw_name.trim_ascii().to_ascii_lowercase(),
            value: Vec::new(),
            quoted: false,
            space_around_eq,
            bad_quoting: false,
        };
        if let Some(q) = val.strip_prefix(b"\"") {
            p.quoted = true;
            let mut i = 0;
            let mut closed = false;
            while i < q.len() {
                if q[i] == b'\\' && i + 1 < q.len() && (q[i + 1] == b'"' || q[i + 1] == b'\\') {
                    p.value.push(q[i + 1]);
                    i += 2;
                    continue;
                }
                if q[i] == b'"' {
                    closed = true;
                    break;
                }
                p.value.push(q[i]);
                i += 1;
            }
            p.bad_quoting = !closed || i + 1 != q.len();
        } else {
            p.bad_quoting = val.starts_with(b"'");
            p.value = val.to_vec();
        }
        out.push(p);
    }
    out
}

/// The boundary parameter of a Content-Type value: (boundary, quoted, whitespace next to
/// the `=`, number of `boundary` parameters). With several, the last, as werkzeug and
/// Django read it.
pub(crate) fn boundary(content_type: &[u8]) -> Option<(Vec<u8>, bool, bool, usize)> {
    let ps = params(content_type);
    let n = ps.iter().filter(|p| p.name == b"boundary").count();
    let last = ps.iter().rev().find(|p| p.name == b"boundary")?;
    // An unterminated quote is part of the boundary for Django, none for werkzeug.
    if last.value.is_empty() || last.bad_quoting {
        return None;
    }
    Some((last.value.clone(), last.quoted, last.space_around_eq, n))
}

/// Keeps the first reason a backend could read the body differently.
fn ambiguous(err: &mut Option<String>, why: &str) {
    if err.is_none() {
        *err = Some(format!("Multipart: {why}"));
    }
}

/// Whether the text after a `--boundary` at `after` ends a delimiter line as every backend
/// reads one: `--` (the last), or optional blanks and CRLF (LF in an LF-only body).
/// Returns the position after the line.
fn delimiter_end(body: &[u8], after: usize, lf_mode: bool) -> Option<usize> {
    let rest = &body[after..];
    if rest.starts_with(b"--") {
        return Some(after);
    }
    let blanks = rest
        .iter()
        .position(|&c| c != b' ' && c != b'\t')
        .unwrap_or(rest.len());
    if rest[blanks..].starts_with(b"\r\n") {
        Some(after + blanks + 2)
    } else if lf_mode && rest[blanks..].starts_with(b"\n") {
        Some(after + blanks + 1)
    } else {
        None
    }
}

pub(crate) fn parse(body: &[u8], content_type: &[u8], p: &mut Parsed) -> Result<(), String> {
    let Some((b, quoted, ws, count)) = boundary(content_type) else {
        return Err("Multipart: no boundary in Content-Type".into());
    };
    let mut err = None;
    if count > 1 {
        ambiguous(&mut err, "more than one boundary parameter in Content-Type");
    }
    // werkzeug and Go end an unquoted value at the first non-token character
    // (`boundary=a,b` is `a` for them), Django and python-multipart at the `;`.
    if !quoted && !b.iter().all(|&c| is_tchar(c)) {
        ambiguous(&mut err, "unquoted boundary that is not a token");
    }
    p.mp_flags.boundary_quoted = quoted;
    p.mp_flags.boundary_whitespace = ws;
    let mut delim = b"--".to_vec();
    delim.extend_from_slice(&b);
    let Some(first) = find(body, &delim) else {
        p.mp_flags.unmatched_boundary = true;
        return Err("Multipart: boundary not found".into());
    };
    if first > 0 && body[first - 1] != b'\n' {
        ambiguous(&mut err, "boundary inside a line");
    }
    if !body[..first].trim_ascii().is_empty() {
        p.mp_flags.data_before = true;
        ambiguous(&mut err, "data before the first boundary");
    }
    // The first delimiter line sets the line break (as Go does): CRLF, or LF for a body
    // written with LF only (read by werkzeug and Go, refused by python-multipart and busboy).
    let mut pos = first + delim.len();
    let lf_mode =
        delimiter_end(body, pos, false).is_none() && delimiter_end(body, pos, true).is_some();
    if lf_mode {
        p.mp_flags.lf_line = true;
        ambiguous(&mut err, "line break other than CRLF");
    }
    loop {
        // After a delimiter: `--` ends, else blanks and a line break start a part.
        if body[pos..].starts_with(b"--") {
            let epilogue = &body[pos + 2..];
            if !epilogue.trim_ascii().is_empty() {
                p.mp_flags.data_after = true;
                ambiguous(&mut err, "data after the last boundary");
            }
            return err.map_or(Ok(()), Err);
        }
        pos = match delimiter_end(body, pos, lf_mode) {
            Some(next) => next,
            None => {
                // Only the first delimiter can get here.
                let Some(i) = body[pos..].iter().position(|&c| c == b'\n') else {
                    p.mp_flags.unmatched_boundary = true;
                    return Err("Multipart: final boundary missing".into());
                };
                p.mp_flags.invalid_part = true;
                ambiguous(&mut err, "boundary followed by other characters");
                pos + i + 1
            }
        };
        // Headers.
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
                if !lf_mode {
                    p.mp_flags.crlf_lf_lines = true;
                    ambiguous(&mut err, "line break other than CRLF");
                }
            }
            pos += e + 1;
            if line.is_empty() {
                break;
            }
            if line.contains(&b'\r') {
                p.mp_flags.invalid_part = true;
                ambiguous(&mut err, "bare CR in a part header");
            }
            if line[0] == b' ' || line[0] == b'\t' {
                p.mp_flags.header_folding = true;
                ambiguous(&mut err, "folded part header");
                if let Some(last) = headers.last_mut() {
                    last.extend_from_slice(line);
                    continue;
                }
                p.mp_flags.invalid_header_folding = true;
                continue;
            }
            headers.push(line.to_vec());
        }
        let mut name: Option<Vec<u8>> = None;
        let mut filename: Option<Vec<u8>> = None;
        // Whether every backend reads the part as a file.
        let mut surely_file = false;
        let mut dispositions = 0;
        for h in &headers {
            let Some(colon) = h.iter().position(|&c| c == b':') else {
                p.mp_flags.invalid_part = true;
                continue;
            };
            if !h[..colon]
                .trim_ascii()
                .eq_ignore_ascii_case(b"content-disposition")
            {
                continue;
            }
            dispositions += 1;
            if dispositions == 2 {
                p.mp_flags.invalid_part = true;
                ambiguous(
                    &mut err,
                    "more than one Content-Disposition header in a part",
                );
            }
            let v = h[colon + 1..].trim_ascii();
            if !v.to_ascii_lowercase().starts_with(b"form-data") {
                p.mp_flags.invalid_part = true;
            }
            if find(v, b";").is_none() {
                p.mp_flags.missing_semicolon = true;
            }
            if split_is_ambiguous(v) {
                p.mp_flags.invalid_quoting = true;
                ambiguous(
                    &mut err,
                    "backslashes in a quoted Content-Disposition parameter",
                );
            }
            let ps = params(v);
            if ps.iter().any(|x| x.bad_quoting) {
                p.mp_flags.invalid_quoting = true;
            }
            for key in [&b"name"[..], b"filename", b"filename*"] {
                if ps.iter().filter(|x| x.name == key).count() > 1 {
                    p.mp_flags.invalid_part = true;
                    ambiguous(&mut err, "a Content-Disposition parameter given twice");
                }
            }
            // With two headers the last is kept here (Starlette, Django); two are an error
            // above.
            name = ps
                .iter()
                .find(|x| x.name == b"name")
                .map(|x| x.value.clone());
            let plain = ps.iter().find(|x| x.name == b"filename");
            let star = ps.iter().find(|x| x.name == b"filename*");
            filename = star.or(plain).map(|x| x.value.clone());
            // python-multipart ignores `filename*`, werkzeug a parameter with blanks next to
            // its `=` or an unquoted value that is not a token, Django and Go an empty file
            // name: such parts are fields for some backend.
            surely_file = plain.is_some_and(|x| {
                !x.value.is_empty()
                    && !x.space_around_eq
                    && !x.bad_quoting
                    && (x.quoted || x.value.iter().all(|&c| is_tchar(c)))
            });
        }
        // The content ends at the next delimiter line. `--boundary` anywhere else is a
        // delimiter for Django and content for the others: it stays content here (the
        // text the rules see is then all of it).
        let mut search = pos;
        let end = loop {
            let Some(e) = find(&body[search..], &delim) else {
                break None;
            };
            let at = search + e;
            let line_start =
                body[..at].ends_with(b"\r\n") || lf_mode && body[..at].ends_with(b"\n");
            if line_start && delimiter_end(body, at + delim.len(), lf_mode).is_some() {
                break Some(at);
            }
            if body[..at].ends_with(b"\n") {
                p.mp_flags.crlf_lf_lines = true;
                ambiguous(&mut err, "line break other than CRLF");
            } else {
                ambiguous(&mut err, "boundary inside a part");
            }
            search = at + 1;
        };
        let mut content = &body[pos..end.unwrap_or(body.len())];
        if let Some(c) = content.strip_suffix(b"\r\n") {
            content = c;
        } else if let Some(c) = content.strip_suffix(b"\n") {
            content = c;
        }
        let n = name.clone().unwrap_or_default();
        for h in headers {
            p.part_headers.push(Kv {
                key: n.clone(),
                value: h,
            });
        }
        p.mp_name.push(Kv::new(&n, &n));
        if let Some(f) = &filename {
            p.files.push(Kv::new(&n, f));
            p.mp_filename.push(Kv::new(&n, f));
            p.files_sizes
                .push(Kv::new(&n, content.len().to_string().as_bytes()));
            p.files_content.push(Kv::new(&n, content));
        } else if name.is_none() {
            p.mp_flags.invalid_part = true;
        }
        if !surely_file {
            p.args_post.push(Kv::new(&n, content));
        }
        let Some(end) = end else {
            p.mp_flags.unmatched_boundary = true;
            return Err("Multipart: final boundary missing".into());
        };
        pos = end + delim.len();
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
            Some((b"q".to_vec(), true, false, 1))
        );
    }

    fn run(ct: &[u8], body: &[u8]) -> (Parsed, Result<(), String>) {
        let mut p = Parsed::default();
        let r = parse(body, ct, &mut p);
        (p, r)
    }

    #[test]
    fn content_type_parameters() {
        let ps = params(b"form-data; name=\"a\\\"b\"; filename =x; y='z'; w=\"open");
        let names: Vec<&[u8]> = ps.iter().map(|p| p.name.as_slice()).collect();
        assert_eq!(names, vec![&b"name"[..], b"filename", b"y", b"w"]);
        assert_eq!(ps[0].value, b"a\"b");
        assert!(ps[0].quoted && !ps[0].bad_quoting);
        assert!(ps[1].space_around_eq);
        assert!(ps[2].bad_quoting && ps[3].bad_quoting);
        // The last of two, counted; `boundary=` inside another parameter's quotes is none.
        assert_eq!(
            boundary(b"multipart/form-data; boundary=a; BOUNDARY=b"),
            Some((b"b".to_vec(), false, false, 2))
        );
        assert_eq!(
            boundary(b"multipart/form-data; type=\"boundary=a\"; boundary=b"),
            Some((b"b".to_vec(), false, false, 1))
        );
        assert_eq!(boundary(b"multipart/form-data; xboundary=a"), None);
        assert_eq!(boundary(b"multipart/form-data; boundary=\"a"), None);
        assert_eq!(boundary(b"multipart/form-data; boundary='a'"), None);
        assert!(split_is_ambiguous(
            b"form-data; name=\"q\\\\\"; filename=\"a\""
        ));
        assert!(!split_is_ambiguous(
            b"form-data; name=\"q\\\"x\"; filename=\"C:\\a\""
        ));
    }

    #[test]
    fn ambiguous_bodies_are_errors_and_keep_their_text_visible() {
        let ct = b"multipart/form-data; boundary=b";
        // Mid-line `--b` stays content of `q` (werkzeug's reading), and is an error.
        let (p, r) = run(
            ct,
            b"--b\r\nContent-Disposition: form-data; name=\"q\"\r\n\r\nx--b\r\nContent-Disposition: form-data; name=\"f\"; filename=\"a\"\r\n\r\nEVIL\r\n--b--\r\n",
        );
        assert_eq!(r.unwrap_err(), "Multipart: boundary inside a part");
        assert_eq!(p.args_post.len(), 1);
        assert!(find(&p.args_post[0].value, b"EVIL").is_some());
        // LF-only bodies are read (werkzeug, Go) and flagged (python-multipart refuses them).
        let (p, r) = run(
            ct,
            b"--b\nContent-Disposition: form-data; name=\"q\"\n\nv\n--b--\n",
        );
        assert_eq!(r.unwrap_err(), "Multipart: line break other than CRLF");
        assert_eq!(p.args_post, vec![Kv::new(b"q", b"v")]);
        assert!(p.mp_flags.lf_line);
        // A missing final delimiter still shows the last part's text.
        let (p, r) = run(
            ct,
            b"--b\r\nContent-Disposition: form-data; name=\"q\"\r\n\r\nEVIL",
        );
        assert!(r.is_err());
        assert_eq!(p.args_post, vec![Kv::new(b"q", b"EVIL")]);
        // Blanks after a delimiter and a line break after the last one are fine.
        let (p, r) = run(
            ct,
            b"\r\n--b  \r\nContent-Disposition: form-data; name=\"q\"\r\n\r\nv\r\n--b--\r\n\r\n",
        );
        assert_eq!(r, Ok(()));
        assert_eq!(p.args_post, vec![Kv::new(b"q", b"v")]);
    }

    proptest::proptest! {
        #[test]
        fn never_panics_on_any_bytes(
            body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300),
            ct in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..60),
        ) {
            let mut p = Parsed::default();
            let _ = parse(&body, &ct, &mut p);
            let mut ct2 = b"multipart/form-data; boundary=b".to_vec();
            ct2.extend_from_slice(&ct);
            let _ = parse(&body, &ct2, &mut p);
        }

        #[test]
        fn never_panics_on_multipart_shaped_bytes(
            pieces in proptest::collection::vec(0..14usize, 0..40),
        ) {
            const P: [&[u8]; 14] = [
                b"--b", b"--b--", b"\r\n", b"\n", b"\r", b" ", b"x",
                b"Content-Disposition: form-data; name=\"a\"",
                b"; filename=\"f\"", b"; filename=", b"\"", b"\\", b";", b"=",
            ];
            let body: Vec<u8> = pieces.iter().flat_map(|&i| P[i].iter().copied()).collect();
            let mut p = Parsed::default();
            let _ = parse(&body, b"multipart/form-data; boundary=b", &mut p);
        }

        /// A well-formed body (what browsers, curl, requests and Go send) reads back as its
        /// fields and files, without an error.
        #[test]
        fn well_formed_bodies_round_trip(
            parts in proptest::collection::vec(
                ("[a-z][a-z0-9_]{0,8}", proptest::collection::vec(proptest::prelude::any::<u8>(), 0..40), proptest::option::of("[a-z]{1,8}\\.txt")),
                1..5,
            ),
        ) {
            let boundary = b"----WebKitFormBoundary7MA4YWxkTrZu0gW";
            let mut body = Vec::new();
            for (name, value, file) in &parts {
                body.extend_from_slice(b"--");
                body.extend_from_slice(boundary);
                body.extend_from_slice(format!("\r\nContent-Disposition: form-data; name=\"{name}\"").as_bytes());
                if let Some(f) = file {
                    body.extend_from_slice(format!("; filename=\"{f}\"\r\nContent-Type: text/plain").as_bytes());
                }
                body.extend_from_slice(b"\r\n\r\n");
                body.extend_from_slice(value);
                body.extend_from_slice(b"\r\n");
            }
            body.extend_from_slice(b"--");
            body.extend_from_slice(boundary);
            body.extend_from_slice(b"--\r\n");
            let mut ct = b"multipart/form-data; boundary=".to_vec();
            ct.extend_from_slice(boundary);
            let (p, r) = run(&ct, &body);
            proptest::prop_assert_eq!(r, Ok(()));
            let fields: Vec<Kv> = parts.iter().filter(|x| x.2.is_none()).map(|(n, v, _)| Kv::new(n.as_bytes(), v)).collect();
            let files: Vec<Kv> = parts.iter().filter_map(|(n, _, f)| f.as_ref().map(|f| Kv::new(n.as_bytes(), f.as_bytes()))).collect();
            proptest::prop_assert_eq!(p.args_post, fields);
            proptest::prop_assert_eq!(p.files, files);
        }
    }
}
