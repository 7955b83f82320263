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

/// Longest the whole answer may take: a member that trickles bytes does not hold the CLI.
pub(crate) const ANSWER_DEADLINE: Duration = Duration::from_secs(20);

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
    let deadline = std::time::Instant::now() + ANSWER_DEADLINE;
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
    let mut chunk = [0u8; 16 * 1024];
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return Err(format!(
                "no whole answer within {} s",
                ANSWER_DEADLINE.as_secs()
            ));
        }
        s.set_read_timeout(Some(left.min(Duration::from_secs(10))))
            .ok();
        match s.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            // A read timeout: the loop's deadline check decides (the last wait before
            // the deadline is shorter than the gaps of a trickling answer).
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::Interrupted
                        | std::io::ErrorKind::WouldBlock
                        | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) => return Err(format!("reading the answer: {e}")),
        }
        if buf.len() as u64 > MAX_ANSWER {
            break;
        }
    }
    if buf.len() as u64 > MAX_ANSWER {
        return Err(format!(
            "the answer is larger than {} MiB; not read",
            MAX_ANSWER >> 20
        ));
    }
    let end = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("the answer is not HTTP")?;
    let (head, body) = (String::from_utf8_lossy(&buf[..end]), &buf[end + 4..]);
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse::<u16>().ok())
        .ok_or("the answer has no status code")?;
    // Chunk sizes count bytes: the body is joined before it is read as text, so a chunk
    // that ends inside a character is no panic.
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_vec()
    };
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

fn dechunk(mut body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(i) = body.windows(2).position(|w| w == b"\r\n") {
        let (size, rest) = (&body[..i], &body[i + 2..]);
        let n = std::str::from_utf8(size)
            .ok()
            .and_then(|s| usize::from_str_radix(s.split(';').next().unwrap_or("").trim(), 16).ok())
            .unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.extend_from_slice(&rest[..n]);
        body = rest[n..].strip_prefix(b"\r\n").unwrap_or(&rest[n..]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_encoded_and_chunks_joined() {
        assert_eq!(encode("x/a b&c"), "x/a%20b%26c");
        assert_eq!(dechunk(b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"), b"abcde");
    }

    /// Accepts one connection on a real listener, reads the request and hands the
    /// connection to `answer`; returns the listener's address.
    fn serve_once(answer: impl FnOnce(std::net::TcpStream) + Send + 'static) -> String {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap().to_string();
        std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            let mut head = [0u8; 1024];
            let _ = s.read(&mut head);
            answer(s);
        });
        addr
    }

    /// Serves `answer` once on a real listener; returns its address.
    fn answer_once(answer: &'static [u8]) -> String {
        serve_once(move |mut s| {
            let _ = s.write_all(answer);
        })
    }

    #[test]
    fn a_chunk_that_splits_a_character_is_read_not_a_panic() {
        // A chunked answer whose chunks split the two bytes of "é" (chunk sizes count
        // bytes, not characters): the old client cut the text at a byte that was not a
        // character boundary and panicked.
        let addr = answer_once(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
              2\r\n{\xC3\r\n3\r\n\xA9}\n\r\n0\r\n\r\n",
        );
        let (status, body) = get(&addr, "/api/v1/status", &[], None).unwrap();
        assert_eq!(status, 200);
        assert_eq!(body, "{\u{e9}}\n");
        // Garbage sizes end the body; they do not panic either.
        let addr =
            answer_once(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nab\r\n");
        assert_eq!(get(&addr, "/", &[], None).unwrap(), (200, String::new()));
    }

    #[test]
    fn a_member_that_trickles_its_answer_is_given_up_on() {
        // One byte every 2 s (each read well within the old 10 s read timeout) for 30 s:
        // the old client waited for all of it; now it gives up after ANSWER_DEADLINE.
        let addr = serve_once(|mut s| {
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\n\r\n");
            for _ in 0..15 {
                std::thread::sleep(Duration::from_secs(2));
                if s.write_all(b"x").is_err() {
                    return;
                }
            }
        });
        let start = std::time::Instant::now();
        let r = get(&addr, "/api/v1/explain", &[], None);
        let took = start.elapsed();
        assert!(
            r.as_ref().is_err_and(|e| e.contains("within 20 s")),
            "{r:?}"
        );
        assert!(took < Duration::from_secs(25), "{took:?}");
    }
}
