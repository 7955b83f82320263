//! Building the HTTP request a test describes, and the test backend's `/reflect`
//! response.

use super::yaml::Input;

/// A request ready for the engine.
#[derive(Debug, Default, Clone)]
pub(crate) struct HttpRequest {
    pub(crate) method: String,
    pub(crate) uri: Vec<u8>,
    pub(crate) version: String,
    pub(crate) headers: Vec<(Vec<u8>, Vec<u8>)>,
    pub(crate) body: Vec<u8>,
}

impl HttpRequest {
    pub(crate) fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name.as_bytes()))
            .map(|(_, v)| v.as_slice())
    }
}

/// A response from the emulated backend.
#[derive(Debug, Default)]
pub(crate) struct HttpResponse {
    pub(crate) status: u16,
    pub(crate) headers: Vec<(Vec<u8>, Vec<u8>)>,
    pub(crate) body: Vec<u8>,
}

pub(crate) fn from_input(i: &Input) -> Result<HttpRequest, String> {
    if let Some(enc) = &i.encoded_request {
        let clean: Vec<u8> = enc.0.bytes().filter(|c| !c.is_ascii_whitespace()).collect();
        let raw = crate::transforms::decode::base64_decode(&clean, false);
        return parse_raw(&raw);
    }
    if let Some(raw) = &i.raw_request {
        return parse_raw(raw.0.as_bytes());
    }
    let mut r = HttpRequest {
        method: i
            .method
            .as_ref()
            .map(|m| m.0.clone())
            .unwrap_or_else(|| "GET".into()),
        uri: i
            .uri
            .as_ref()
            .map(|u| u.0.as_bytes().to_vec())
            .unwrap_or_else(|| b"/".to_vec()),
        version: i
            .version
            .as_ref()
            .map(|v| v.0.clone())
            .unwrap_or_else(|| "HTTP/1.1".into()),
        headers: i
            .headers
            .0
            .iter()
            .map(|(k, v)| (k.as_bytes().to_vec(), v.as_bytes().to_vec()))
            .collect(),
        body: i
            .data
            .as_ref()
            .map(|d| d.0.as_bytes().to_vec())
            .unwrap_or_default(),
    };
    let has_body_method = matches!(r.method.as_str(), "POST" | "PUT" | "PATCH");
    if i.autocomplete_headers.unwrap_or(true)
        && (!r.body.is_empty() || has_body_method)
        && r.header("content-length").is_none()
        && r.header("transfer-encoding").is_none()
    {
        let n = r.body.len().to_string().into_bytes();
        r.headers.push((b"Content-Length".to_vec(), n));
    }
    frame(&mut r);
    Ok(r)
}

/// HTTP/1.1 message framing as a server applies it (RFC 9112 section 6): a chunked
/// Transfer-Encoding wins over Content-Length (which is dropped), Content-Length bounds
/// the body, and without either there is no body.
fn frame(r: &mut HttpRequest) {
    if r.version.starts_with("HTTP/2") || r.version.starts_with("HTTP/3") {
        return;
    }
    let chunked = r
        .header("transfer-encoding")
        .is_some_and(|v| v.trim_ascii().eq_ignore_ascii_case(b"chunked"));
    if chunked {
        r.headers
            .retain(|(k, _)| !k.eq_ignore_ascii_case(b"content-length"));
        r.body = dechunk(&r.body);
        return;
    }
    match r
        .header("content-length")
        .and_then(|v| std::str::from_utf8(v).ok()?.trim().parse::<usize>().ok())
    {
        Some(n) => r.body.truncate(n),
        None => r.body.clear(),
    }
}

/// Parses a raw HTTP/1.x request (chunked bodies are de-chunked).
pub(crate) fn parse_raw(raw: &[u8]) -> Result<HttpRequest, String> {
    let mut lines = Vec::new();
    let mut pos = 0;
    loop {
        let Some(e) = raw[pos..].iter().position(|&c| c == b'\n') else {
            lines.push(&raw[pos..]);
            pos = raw.len();
            break;
        };
        let mut line = &raw[pos..pos + e];
        if let Some(l) = line.strip_suffix(b"\r") {
            line = l;
        }
        pos += e + 1;
        if line.is_empty() && !lines.is_empty() {
            break;
        }
        lines.push(line);
    }
    let Some(first) = lines.first() else {
        return Err("empty raw request".into());
    };
    let parts: Vec<&[u8]> = first
        .split(|&c| c == b' ')
        .filter(|p| !p.is_empty())
        .collect();
    let (method, uri, version) = match parts.as_slice() {
        [m, u, v] => (*m, *u, *v),
        [m, u] => (*m, *u, &b"HTTP/1.0"[..]),
        _ => return Err("invalid request line".into()),
    };
    let mut r = HttpRequest {
        method: String::from_utf8_lossy(method).into_owned(),
        uri: uri.to_vec(),
        version: String::from_utf8_lossy(version).into_owned(),
        ..HttpRequest::default()
    };
    for l in &lines[1..] {
        if let Some(c) = l.iter().position(|&c| c == b':') {
            r.headers
                .push((l[..c].to_vec(), l[c + 1..].trim_ascii().to_vec()));
        }
    }
    let rest = &raw[pos..];
    let chunked = r
        .header("transfer-encoding")
        .is_some_and(|v| v.eq_ignore_ascii_case(b"chunked"));
    r.body = if chunked {
        dechunk(rest)
    } else {
        rest.to_vec()
    };
    Ok(r)
}

fn dechunk(mut s: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(e) = s.iter().position(|&c| c == b'\n') {
        let size_line = s[..e].trim_ascii();
        let size_hex = size_line.split(|&c| c == b';').next().unwrap_or(b"");
        let Ok(size) = usize::from_str_radix(&String::from_utf8_lossy(size_hex), 16) else {
            break;
        };
        s = &s[e + 1..];
        if size == 0 || size > s.len() {
            break;
        }
        out.extend_from_slice(&s[..size]);
        s = &s[size..];
        if s.starts_with(b"\r\n") {
            s = &s[2..];
        } else if s.starts_with(b"\n") {
            s = &s[1..];
        }
    }
    out
}

/// The test backend: `/reflect` answers with the status, headers and body given in a JSON
/// request body; everything else gets `200` and a short text body.
pub(crate) fn backend(req: &HttpRequest) -> HttpResponse {
    let path = req.uri.split(|&c| c == b'?').next().unwrap_or(b"");
    let mut resp = HttpResponse {
        status: 200,
        headers: vec![(b"Content-Type".to_vec(), b"text/plain".to_vec())],
        body: b"ok".to_vec(),
    };
    if path != b"/reflect" {
        return resp;
    }
    let mut kv = Vec::new();
    if crate::body::json::parse(&req.body, 8, &mut kv).is_err() {
        return resp;
    }
    let mut headers = Vec::new();
    for e in kv {
        match e.key.as_slice() {
            b"json.status" => {
                resp.status = String::from_utf8_lossy(&e.value).parse().unwrap_or(200)
            }
            b"json.body" => resp.body = e.value,
            b"json.encodedBody" => {
                resp.body = crate::transforms::decode::base64_decode(&e.value, false)
            }
            k if k.starts_with(b"json.headers.") => headers.push((k[13..].to_vec(), e.value)),
            _ => {}
        }
    }
    if !headers.is_empty() {
        if !headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case(b"content-type"))
        {
            headers.push((b"Content-Type".to_vec(), b"text/plain".to_vec()));
        }
        resp.headers = headers;
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_chunked() {
        let r = parse_raw(b"POST /a?b=1 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nHi \r\n3\r\nCRS\r\n0\r\n\r\n").unwrap();
        assert_eq!(r.method, "POST");
        assert_eq!(r.uri, b"/a?b=1");
        assert_eq!(r.body, b"Hi CRS");
        assert_eq!(r.header("host"), Some(b"x".as_slice()));
    }
}
