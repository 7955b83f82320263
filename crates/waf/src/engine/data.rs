//! Request and response data as collections, filled before each phase.

pub(crate) use crate::body::Kv;
use crate::body::{self, Parsed};
use crate::transforms::decode::uri_decode;

/// Everything read from the request and response.
#[derive(Debug, Default)]
pub(crate) struct Data {
    pub(crate) method: Vec<u8>,
    pub(crate) uri: Vec<u8>,
    pub(crate) uri_raw: Vec<u8>,
    pub(crate) filename: Vec<u8>,
    pub(crate) basename: Vec<u8>,
    pub(crate) query: Vec<u8>,
    pub(crate) protocol: Vec<u8>,
    pub(crate) line: Vec<u8>,
    pub(crate) args_get: Vec<Kv>,
    pub(crate) headers: Vec<Kv>,
    pub(crate) cookies: Vec<Kv>,
    pub(crate) body: Vec<u8>,
    pub(crate) body_len: usize,
    pub(crate) body_seen: bool,
    pub(crate) parsed: Parsed,
    pub(crate) remote_addr: Vec<u8>,
    pub(crate) remote_port: Vec<u8>,
    pub(crate) server_addr: Vec<u8>,
    pub(crate) server_port: Vec<u8>,
    pub(crate) unique_id: Vec<u8>,
    pub(crate) response_status: Vec<u8>,
    pub(crate) response_protocol: Vec<u8>,
    pub(crate) response_headers: Vec<Kv>,
    pub(crate) response_body: Vec<u8>,
}

impl Data {
    /// Fills the phase-1 variables from the request line and headers.
    pub(crate) fn set_request(
        &mut self,
        method: &[u8],
        uri: &[u8],
        protocol: &[u8],
        headers: &[(&[u8], &[u8])],
        separator: u8,
    ) {
        self.method = method.to_vec();
        self.protocol = protocol.to_vec();
        self.uri_raw = uri.to_vec();
        let mut line = Vec::with_capacity(method.len() + uri.len() + protocol.len() + 2);
        line.extend_from_slice(method);
        line.push(b' ');
        line.extend_from_slice(uri);
        line.push(b' ');
        line.extend_from_slice(protocol);
        self.line = line;
        // Absolute-form (`GET http://host/path`): the path starts after the authority.
        let mut rel = uri;
        if let Some(p) = find_sub(uri, b"://") {
            if uri[..p].iter().all(|c| c.is_ascii_alphabetic()) {
                let after = &uri[p + 3..];
                rel = match after.iter().position(|&c| c == b'/') {
                    Some(s) => &after[s..],
                    None => b"",
                };
            }
        }
        self.uri = rel.to_vec();
        let (path, query) = match rel.iter().position(|&c| c == b'?') {
            Some(q) => (&rel[..q], &rel[q + 1..]),
            None => (rel, &b""[..]),
        };
        self.query = query.to_vec();
        self.filename = uri_decode(path);
        self.basename = match self.filename.iter().rposition(|&c| c == b'/' || c == b'\\') {
            Some(i) => self.filename[i + 1..].to_vec(),
            None => self.filename.clone(),
        };
        self.args_get.clear();
        body::urlencoded::parse(query, separator, &mut self.args_get);
        self.headers = headers.iter().map(|(k, v)| Kv::new(k, v)).collect();
        self.cookies.clear();
        for h in &self.headers {
            if h.key.eq_ignore_ascii_case(b"cookie") {
                parse_cookies(&h.value, &mut self.cookies);
            }
        }
    }

    /// The first request header called `name`.
    pub(crate) fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|h| h.key.eq_ignore_ascii_case(name.as_bytes()))
            .map(|h| h.value.as_slice())
    }
}

pub(crate) fn find_sub(h: &[u8], n: &[u8]) -> Option<usize> {
    crate::operators::find(h, n)
}

/// `a=1; b=2; c` → (a,1) (b,2) (c,"").
pub(crate) fn parse_cookies(v: &[u8], out: &mut Vec<Kv>) {
    for part in v.split(|&c| c == b';') {
        let p = part.trim_ascii();
        if p.is_empty() {
            continue;
        }
        match p.iter().position(|&c| c == b'=') {
            Some(i) => out.push(Kv::new(p[..i].trim_ascii(), &p[i + 1..])),
            None => out.push(Kv::new(p, b"")),
        }
    }
}
