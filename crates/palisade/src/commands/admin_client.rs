//! A minimal HTTP/1.1 client for a running member's admin API (plain HTTP on a local or
//! cluster-internal address): one GET, `Connection: close`, status and body back. The
//! answer is another process's (another cluster's) words: it is read up to
//! [`MAX_ANSWER`] bytes, never without bound.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

/// Percent-encodes a query value (unreserved characters, `/` and `:` kept).
fn encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/:".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Largest answer read (an explanation is a few kB).
pub(crate) const MAX_ANSWER: u64 = 16 << 20;

/// GETs `path?query` from `addr` (`host:port`), with `Authorization: Bearer <token>` when a
/// token is given; returns the status code and the body.
pub(crate) fn get(
    addr: &str,
    path: &str,
    query: &[(&str, String)],
    token: Option<&str>,
) -> Result<(u16, String), String> {
    let sock = addr
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve: {e}"))?
        .next()
        .ok_or("no address")?;
    let mut s = TcpStream::connect_timeout(&sock, Duration::from_secs(3))
        .map_err(|e| format!("cannot connect: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok();
    let q: Vec<String> = query
        .iter()
        .map(|(k, v)| format!("{k}={}", encode(v)))
        .collect();
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let req = format!(
        "GET {path}?{} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nAccept: application/json\r\n{auth}\r\n",
        q.join("&")
    );
    s.write_all(req.as_bytes()).map_err(|e| e.to_string())?;
    let mut buf = Vec::new();
    (&mut s)
        .take(MAX_ANSWER + 1)
        .read_to_end(&mut buf)
        .map_err(|e| format!("reading the answer: {e}"))?;
    if buf.len() as u64 > MAX_ANSWER {
        return Err(format!(
            "the answer is larger than {} MiB; not read",
            MAX_ANSWER >> 20
        ));
    }
    let text = String::from_utf8_lossy(&buf);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or("the answer is not HTTP")?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse::<u16>().ok())
        .ok_or("the answer has no status code")?;
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        return Ok((status, dechunk(body)));
    }
    Ok((status, body.to_string()))
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        body = rest[n..].trim_start_matches("\r\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_encoded_and_chunks_joined() {
        assert_eq!(encode("x/a b&c"), "x/a%20b%26c");
        assert_eq!(dechunk("3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"), "abcde");
    }
}
