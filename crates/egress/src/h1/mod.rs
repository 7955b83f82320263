//! HTTP/1.1 answer relaying for the gateways' lean lanes (the egress gateway's explicit
//! proxy and the ingress gateway's plain routes): read an upstream answer head, rewrite it
//! for the client (hop-by-hop fields dropped per RFC 9110 §7.6.1, a `Date` added when
//! missing per §6.6.1, the framing and connection fields decided here), and relay the body
//! by its framing (RFC 9112 §6.3: none for `HEAD`, 1xx, 204 and 304, else chunked,
//! `Content-Length`, or until the upstream closes). Strict: an ambiguous or malformed
//! answer is an error (a `502` for the caller), never guessed at.

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub use crate::head::trim;

mod chunked;
mod date;

pub use chunked::ChunkedEnd;
pub use date::now as date;

/// Longest upstream answer head read.
pub const MAX_ANSWER_HEAD: usize = 64 * 1024;
/// Most header fields in an upstream answer head.
const MAX_ANSWER_FIELDS: usize = 100;
/// Bytes read from the upstream at a time while relaying a body.
pub const RELAY_CHUNK: usize = 32 * 1024;

/// Whether `name` is a hop-by-hop field (RFC 9110 §7.6.1), never passed on.
pub fn is_hop_by_hop(name: &[u8]) -> bool {
    crate::hop::HOP_BY_HOP
        .iter()
        .any(|h| h.as_bytes().eq_ignore_ascii_case(name))
}

/// How an answer's body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFraming {
    /// No body.
    None,
    /// `Content-Length` bytes.
    Length(u64),
    /// Chunked, relayed as it is.
    Chunked,
    /// Until the upstream closes (the client connection closes after).
    UntilClose,
}

/// The answer head, read and rewritten for the client (in `Lane::out`).
pub struct Answer {
    /// Status code.
    pub status: u16,
    /// How the body is delimited.
    pub framing: BodyFraming,
    /// The upstream connection can take another request afterwards.
    pub reusable: bool,
    /// Length of the upstream head at the start of the read buffer.
    pub head_len: usize,
}

/// Reads a client's request head into `buf`: waits up to `idle` for its first byte, then
/// for the whole head up to `head` from that byte (`None`: within `idle` from the start, as
/// hyper's `header_read_timeout`), so a client trickling bytes does not reset the clock.
/// `true` once `buf` holds a whole head (or more than `max` bytes, for the caller to refuse);
/// `false` when the client closed, failed or ran out of time first.
pub async fn read_head(
    client: &mut TcpStream,
    buf: &mut Vec<u8>,
    max: usize,
    idle: std::time::Duration,
    head: Option<std::time::Duration>,
) -> bool {
    let idle_until = tokio::time::Instant::now() + idle;
    let mut head_until = None;
    loop {
        // Empty lines before a request line are tolerated (RFC 9112 §2.2).
        let skip = buf
            .iter()
            .position(|&b| b != b'\r' && b != b'\n')
            .unwrap_or(buf.len());
        if crate::head::head_end(&buf[skip..]).is_some() || buf.len() > max {
            return true;
        }
        let deadline = match head {
            Some(h) if skip < buf.len() => {
                *head_until.get_or_insert_with(|| tokio::time::Instant::now() + h)
            }
            _ => idle_until,
        };
        buf.reserve(4096);
        match tokio::time::timeout_at(deadline, client.read_buf(buf)).await {
            Ok(Ok(n)) if n > 0 => {}
            _ => return false,
        }
    }
}

/// Relays the answer body after the head in `out`: the body bytes sent (`Err` when the
/// relay broke off), and whether the upstream sent more than the answer.
pub async fn relay_body(
    client: &mut TcpStream,
    upstream: &mut TcpStream,
    buf: &mut Vec<u8>,
    out: &mut Vec<u8>,
    answer: &Answer,
) -> Relayed {
    relay_body_within(client, upstream, buf, out, answer, None).await
}

/// [`relay_body`], breaking off (`Relayed::stalled`) when the upstream sends nothing for
/// `idle` mid-body (a hung or slowloris upstream would otherwise hold both connections).
pub async fn relay_body_within(
    client: &mut TcpStream,
    upstream: &mut TcpStream,
    buf: &mut Vec<u8>,
    out: &mut Vec<u8>,
    answer: &Answer,
    idle: Option<std::time::Duration>,
) -> Relayed {
    let mut r = Relay {
        idle,
        spare: false,
        stalled: false,
    };
    let outcome = relay_framed(client, upstream, buf, out, answer, &mut r).await;
    Relayed {
        outcome,
        spare: r.spare,
        stalled: r.stalled,
    }
}

/// How a relay goes: its idle bound, and what it saw.
struct Relay {
    idle: Option<std::time::Duration>,
    /// The upstream sent bytes after the answer.
    spare: bool,
    /// The upstream went silent for `idle`.
    stalled: bool,
}

impl Relay {
    /// An upstream read, within the idle bound.
    async fn read<F>(&mut self, read: F) -> std::io::Result<usize>
    where
        F: std::future::Future<Output = std::io::Result<usize>>,
    {
        let Some(idle) = self.idle else {
            return read.await;
        };
        match tokio::time::timeout(idle, read).await {
            Ok(r) => r,
            Err(_) => {
                self.stalled = true;
                Err(std::io::ErrorKind::TimedOut.into())
            }
        }
    }
}

/// [`relay_body_within`]'s work; `r.spare` is set when the upstream sent bytes after the
/// answer.
async fn relay_framed(
    client: &mut TcpStream,
    upstream: &mut TcpStream,
    buf: &mut Vec<u8>,
    out: &mut Vec<u8>,
    answer: &Answer,
    r: &mut Relay,
) -> Result<u64, u64> {
    let first = &buf[answer.head_len..];
    match answer.framing {
        BodyFraming::None => {
            if !first.is_empty() {
                // Bytes after a body-less answer: the connection is not kept.
                r.spare = true;
            }
            client.write_all(out).await.map_err(|_| 0u64)?;
            Ok(0)
        }
        BodyFraming::Length(n) => {
            let take = first.len().min(usize::try_from(n).unwrap_or(usize::MAX));
            out.extend_from_slice(&first[..take]);
            let extra = first.len() > take;
            client.write_all(out).await.map_err(|_| 0u64)?;
            let mut sent = take as u64;
            if extra {
                r.spare = true;
                return Ok(sent);
            }
            while sent < n {
                buf.clear();
                let want = usize::try_from(n - sent)
                    .unwrap_or(usize::MAX)
                    .min(RELAY_CHUNK);
                buf.reserve(want);
                let got = r
                    .read((&mut *upstream).take(want as u64).read_buf(buf))
                    .await
                    .map_err(|_| sent)?;
                if got == 0 {
                    return Err(sent);
                }
                client.write_all(buf).await.map_err(|_| sent)?;
                sent += got as u64;
            }
            Ok(sent)
        }
        BodyFraming::Chunked => {
            let mut scan = ChunkedEnd::default();
            let used = scan.feed(first).map_err(|_| 0u64)?;
            let extra = used < first.len();
            out.extend_from_slice(&first[..used]);
            client.write_all(out).await.map_err(|_| 0u64)?;
            if extra {
                r.spare = true;
                return Ok(scan.payload());
            }
            while !scan.done() {
                buf.clear();
                buf.reserve(RELAY_CHUNK);
                let got = r
                    .read(upstream.read_buf(buf))
                    .await
                    .map_err(|_| scan.payload())?;
                if got == 0 {
                    return Err(scan.payload());
                }
                let used = scan.feed(buf).map_err(|_| scan.payload())?;
                client
                    .write_all(&buf[..used])
                    .await
                    .map_err(|_| scan.payload())?;
                if used < buf.len() {
                    r.spare = true;
                    return Ok(scan.payload());
                }
            }
            Ok(scan.payload())
        }
        BodyFraming::UntilClose => {
            let mut sent = first.len() as u64;
            out.extend_from_slice(first);
            client.write_all(out).await.map_err(|_| 0u64)?;
            loop {
                buf.clear();
                buf.reserve(RELAY_CHUNK);
                match r.read(upstream.read_buf(buf)).await {
                    Ok(0) => return Ok(sent),
                    Ok(got) => {
                        client.write_all(buf).await.map_err(|_| sent)?;
                        sent += got as u64;
                    }
                    Err(_) => return Err(sent),
                }
            }
        }
    }
}

/// The end of a body relay.
pub struct Relayed {
    /// Body bytes sent; `Err` when the relay broke off.
    pub outcome: Result<u64, u64>,
    /// The upstream sent bytes after the answer: its connection is not kept.
    pub spare: bool,
    /// The relay broke off because the upstream went silent for the idle bound.
    pub stalled: bool,
}

/// What reading an answer head gave.
pub enum Read {
    /// A whole head; the client's version of it is in `out`.
    Answer(Answer),
    /// The connection closed (or failed) before any answer byte.
    Closed,
    /// A malformed, oversized or unfinished answer.
    Bad,
}

/// Reads the answer head from `up` (skipping interim 1xx answers) and writes the client's
/// version of it into `out`.
pub async fn read_answer(
    upstream: &mut TcpStream,
    buf: &mut Vec<u8>,
    head_only: bool,
    close: bool,
    out: &mut Vec<u8>,
) -> Read {
    loop {
        if !buf.is_empty() {
            match answer_head(buf, head_only, close, out) {
                Parsed::Done(a) => return Read::Answer(a),
                Parsed::Interim(n) => {
                    buf.drain(..n);
                    continue;
                }
                Parsed::Bad => return Read::Bad,
                Parsed::Partial if buf.len() > MAX_ANSWER_HEAD => return Read::Bad,
                Parsed::Partial => {}
            }
        }
        buf.reserve(8192);
        match upstream.read_buf(buf).await {
            Ok(n) if n > 0 => {}
            _ if buf.is_empty() => return Read::Closed,
            _ => return Read::Bad,
        }
    }
}

pub enum Parsed {
    /// A whole final answer head.
    Done(Answer),
    /// A 1xx answer of this many bytes, to skip.
    Interim(usize),
    /// Not whole yet.
    Partial,
    /// Malformed or ambiguous.
    Bad,
}

/// Parses an answer head at the start of `buf`; when whole, writes the client's head to
/// `out`: the status line, the end-to-end fields, and the framing and connection fields the
/// lane itself decides.
pub fn answer_head(buf: &[u8], head_only: bool, close: bool, out: &mut Vec<u8>) -> Parsed {
    let mut fields = [httparse::EMPTY_HEADER; MAX_ANSWER_FIELDS];
    let mut r = httparse::Response::new(&mut fields);
    let len = match r.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Parsed::Partial,
        Err(_) => return Parsed::Bad,
    };
    let (Some(status), Some(minor)) = (r.code, r.version) else {
        return Parsed::Bad;
    };
    if status == 101 || !(100..=999).contains(&status) {
        return Parsed::Bad;
    }
    if status < 200 {
        return Parsed::Interim(len);
    }
    // Framing (RFC 9112 §6.3) and whether the upstream keeps the connection.
    let mut length: Option<u64> = None;
    let mut chunked = None;
    let mut upstream_close = minor == 0;
    let mut has_date = false;
    let mut listed: Vec<&[u8]> = Vec::new();
    for f in r.headers.iter() {
        let name = f.name.as_bytes();
        if name.eq_ignore_ascii_case(b"content-length") {
            for part in f.value.split(|&b| b == b',') {
                let Some(n) = decimal(trim(part)) else {
                    return Parsed::Bad;
                };
                if length.is_some_and(|l| l != n) {
                    return Parsed::Bad;
                }
                length = Some(n);
            }
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            let last = f.value.rsplit(|&b| b == b',').next().map(trim);
            let is_chunked = last.is_some_and(|l| l.eq_ignore_ascii_case(b"chunked"));
            if chunked.is_some() || minor == 0 {
                return Parsed::Bad;
            }
            chunked = Some(is_chunked);
        } else if name.eq_ignore_ascii_case(b"connection") {
            for t in f.value.split(|&b| b == b',').map(trim) {
                if t.eq_ignore_ascii_case(b"close") {
                    upstream_close = true;
                } else if t.eq_ignore_ascii_case(b"keep-alive") {
                    if minor == 0 {
                        upstream_close = false;
                    }
                } else if !t.is_empty() {
                    listed.push(t);
                }
            }
        } else if name.eq_ignore_ascii_case(b"date") {
            has_date = true;
        }
    }
    let framing = if head_only || status == 204 || status == 304 {
        BodyFraming::None
    } else {
        match (chunked, length) {
            (Some(_), Some(_)) => return Parsed::Bad,
            (Some(true), None) => BodyFraming::Chunked,
            (Some(false), None) | (None, None) => BodyFraming::UntilClose,
            (None, Some(n)) => BodyFraming::Length(n),
        }
    };
    out.clear();
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.to_string().as_bytes());
    out.push(b' ');
    match r
        .reason
        .filter(|t| t.bytes().all(|b| b == b'\t' || (b' '..=b'~').contains(&b)))
    {
        Some(reason) => out.extend_from_slice(reason.as_bytes()),
        None => out.extend_from_slice(
            hyper::StatusCode::from_u16(status)
                .ok()
                .and_then(|s| s.canonical_reason())
                .unwrap_or("")
                .as_bytes(),
        ),
    }
    out.extend_from_slice(b"\r\n");
    for f in r.headers.iter() {
        let name = f.name.as_bytes();
        if is_hop_by_hop(name) || listed.iter().any(|l| l.eq_ignore_ascii_case(name)) {
            continue;
        }
        field(out, name, f.value);
    }
    if framing == BodyFraming::Chunked {
        out.extend_from_slice(b"Transfer-Encoding: chunked\r\n");
    }
    if !has_date {
        out.extend_from_slice(b"Date: ");
        date(out);
        out.extend_from_slice(b"\r\n");
    }
    if close || framing == BodyFraming::UntilClose {
        out.extend_from_slice(b"Connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
    let reusable = !upstream_close && framing != BodyFraming::UntilClose;
    Parsed::Done(Answer {
        status,
        framing,
        reusable,
        head_len: len,
    })
}

/// Appends `name: value` and CRLF.
pub fn field(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// A short answer from the gateway itself.
pub fn local_answer(out: &mut Vec<u8>, status: u16, content_type: &str, body: &[u8], close: bool) {
    let reason = hyper::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("");
    out.extend_from_slice(format!("HTTP/1.1 {status} {reason}\r\n").as_bytes());
    field(out, b"Content-Type", content_type.as_bytes());
    out.extend_from_slice(format!("Content-Length: {}\r\n", body.len()).as_bytes());
    out.extend_from_slice(b"Date: ");
    date(out);
    out.extend_from_slice(b"\r\n");
    if close {
        out.extend_from_slice(b"Connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
}

/// Bytes the lane passes in a URL path and query: RFC 3986 unreserved, sub-delims, `:`,
/// `@`, `/`, `?` and `%` (escapes). Anything else is left to the full (hyper) path.
pub fn is_url_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'-' | b'.'
                | b'_'
                | b'~'
                | b'!'
                | b'$'
                | b'&'
                | b'\''
                | b'('
                | b')'
                | b'*'
                | b'+'
                | b','
                | b';'
                | b'='
                | b':'
                | b'@'
                | b'/'
                | b'?'
                | b'%'
        )
}

/// A non-empty run of at most 19 ASCII digits, as a number.
pub fn decimal(s: &[u8]) -> Option<u64> {
    if s.is_empty() || s.len() > 19 || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(
        s.iter()
            .fold(0u64, |acc, &d| acc * 10 + u64::from(d - b'0')),
    )
}

#[cfg(test)]
mod tests;
