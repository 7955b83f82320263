//! A small HTTP/1.x request-head reader, for checks hyper does not make on our behalf
//! (a message framed both by `Content-Length` and `Transfer-Encoding` is refused rather
//! than resolved) and for the transparent listener's first look at a connection.
//!
//! Pure; any input gives an answer, never a panic.

/// A parsed request head, borrowing from the input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHead<'a> {
    /// Method, e.g. `GET`.
    pub method: &'a str,
    /// Request target as sent (origin-, absolute- or authority-form).
    pub target: &'a str,
    /// Minor version: `HTTP/1.0` → 0, `HTTP/1.1` → 1.
    pub minor: u8,
    /// Header fields in order, names as sent.
    pub headers: Vec<(&'a str, &'a [u8])>,
}

impl RequestHead<'_> {
    /// The first value of a header (name case-insensitive).
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| *v)
    }
}

/// Why a head could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeadError {
    /// The head has not ended yet.
    Incomplete,
    /// The head is longer than allowed.
    TooLarge,
    /// Not an HTTP/1.x request head.
    Malformed(&'static str),
}

/// How the request body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body.
    None,
    /// `Content-Length` bytes.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
}

/// Where the head ends: the index just after the empty line, if present.
pub fn head_end(buf: &[u8]) -> Option<usize> {
    let mut i = 0;
    while i < buf.len() {
        match buf[i..].iter().position(|&b| b == b'\n') {
            None => return None,
            Some(p) => {
                let lf = i + p;
                // An empty line: "\n\n" or "\r\n\r\n" (CR optional, as parsers tolerate).
                if lf >= 1 && buf[lf - 1] == b'\n' {
                    return Some(lf + 1);
                }
                if lf >= 2 && buf[lf - 1] == b'\r' && buf[lf - 2] == b'\n' {
                    return Some(lf + 1);
                }
                i = lf + 1;
            }
        }
    }
    None
}

/// `tchar` of RFC 9110 §5.6.2, as a table: every byte of every header name goes through it.
const TOKEN: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        t[b] = c.is_ascii_alphanumeric()
            || matches!(
                c,
                b'!' | b'#'
                    | b'$'
                    | b'%'
                    | b'&'
                    | b'\''
                    | b'*'
                    | b'+'
                    | b'-'
                    | b'.'
                    | b'^'
                    | b'_'
                    | b'`'
                    | b'|'
                    | b'~'
            );
        b += 1;
    }
    t
};

fn is_token(b: u8) -> bool {
    TOKEN[b as usize]
}

/// Parses the head at the start of `buf` (at most `max` bytes); returns it and its length.
pub fn parse_head(buf: &[u8], max: usize) -> Result<(RequestHead<'_>, usize), HeadError> {
    // Tolerate empty lines before the request line (RFC 9112 §2.2).
    let skip = buf
        .iter()
        .position(|&b| b != b'\r' && b != b'\n')
        .unwrap_or(buf.len());
    let rest = &buf[skip..];
    let Some(end) = head_end(rest) else {
        return Err(if buf.len() > max {
            HeadError::TooLarge
        } else {
            HeadError::Incomplete
        });
    };
    if skip + end > max {
        return Err(HeadError::TooLarge);
    }
    let text = &rest[..end];
    let mut lines = text
        .split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l));
    let line = lines.next().ok_or(HeadError::Malformed("empty head"))?;
    let mut parts = line.split(|&b| b == b' ');
    let method = parts
        .next()
        .filter(|m| !m.is_empty() && m.iter().all(|&b| is_token(b)));
    let target = parts
        .next()
        .filter(|t| !t.is_empty() && t.iter().all(|&b| b > b' ' && b != 0x7f));
    let version = parts.next();
    if parts.next().is_some() {
        return Err(HeadError::Malformed("request line has extra spaces"));
    }
    let (Some(method), Some(target), Some(version)) = (method, target, version) else {
        return Err(HeadError::Malformed("bad request line"));
    };
    let minor = match version {
        b"HTTP/1.1" => 1,
        b"HTTP/1.0" => 0,
        _ => return Err(HeadError::Malformed("not HTTP/1.x")),
    };
    let mut headers = Vec::new();
    for l in lines {
        if l.is_empty() {
            break;
        }
        if l[0] == b' ' || l[0] == b'\t' {
            return Err(HeadError::Malformed("obsolete line folding"));
        }
        let colon = l
            .iter()
            .position(|&b| b == b':')
            .ok_or(HeadError::Malformed("header without a colon"))?;
        let (name, value) = (&l[..colon], &l[colon + 1..]);
        if name.is_empty() || !name.iter().all(|&b| is_token(b)) {
            return Err(HeadError::Malformed("bad header name"));
        }
        if value.iter().any(|&b| b == 0 || b == b'\r') {
            return Err(HeadError::Malformed("bad header value"));
        }
        let value = trim(value);
        // Names are tokens, so ASCII: this cannot fail.
        let name =
            std::str::from_utf8(name).map_err(|_| HeadError::Malformed("bad header name"))?;
        headers.push((name, value));
    }
    // Method and target are ASCII by the checks above.
    let method = std::str::from_utf8(method).map_err(|_| HeadError::Malformed("bad method"))?;
    let target = std::str::from_utf8(target).map_err(|_| HeadError::Malformed("bad target"))?;
    Ok((
        RequestHead {
            method,
            target,
            minor,
            headers,
        },
        skip + end,
    ))
}

/// `v` without leading and trailing spaces and tabs (optional whitespace, RFC 9110 §5.6.3).
pub fn trim(v: &[u8]) -> &[u8] {
    let start = v
        .iter()
        .position(|&b| b != b' ' && b != b'\t')
        .unwrap_or(v.len());
    let end = v
        .iter()
        .rposition(|&b| b != b' ' && b != b'\t')
        .map_or(start, |i| i + 1);
    &v[start..end.max(start)]
}

/// How the body of `head` is delimited; refuses ambiguous framing (request smuggling).
pub fn framing(head: &RequestHead<'_>) -> Result<Framing, HeadError> {
    let mut length: Option<u64> = None;
    let mut te: Option<&[u8]> = None;
    for (name, value) in &head.headers {
        if name.eq_ignore_ascii_case("content-length") {
            for part in value.split(|&b| b == b',') {
                let part = trim(part);
                if part.is_empty() || part.len() > 19 || !part.iter().all(u8::is_ascii_digit) {
                    return Err(HeadError::Malformed("bad Content-Length"));
                }
                let n = part
                    .iter()
                    .fold(0u64, |acc, &d| acc * 10 + u64::from(d - b'0'));
                if length.is_some_and(|l| l != n) {
                    return Err(HeadError::Malformed("conflicting Content-Length values"));
                }
                length = Some(n);
            }
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            if te.is_some() {
                return Err(HeadError::Malformed("repeated Transfer-Encoding"));
            }
            te = Some(value);
        }
    }
    match (te, length) {
        (Some(_), Some(_)) => Err(HeadError::Malformed(
            "both Content-Length and Transfer-Encoding",
        )),
        (Some(_), None) if head.minor == 0 => {
            Err(HeadError::Malformed("Transfer-Encoding in HTTP/1.0"))
        }
        (Some(v), None) => {
            let last = v.rsplit(|&b| b == b',').next().map(trim).unwrap_or(b"");
            if last.eq_ignore_ascii_case(b"chunked") {
                Ok(Framing::Chunked)
            } else {
                Err(HeadError::Malformed(
                    "Transfer-Encoding does not end in chunked",
                ))
            }
        }
        (None, Some(0)) | (None, None) => Ok(Framing::None),
        (None, Some(n)) => Ok(Framing::Length(n)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn head(s: &str) -> Result<Framing, HeadError> {
        let (h, _) = parse_head(s.as_bytes(), 65536)?;
        framing(&h)
    }

    #[test]
    fn token_bytes_are_exactly_rfc_9110_tchar() {
        for b in 0..=255u8 {
            let want = b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
            assert_eq!(is_token(b), want, "byte {b:#04x}");
        }
    }

    #[test]
    fn reads_a_proxy_request() {
        let raw = b"\r\nGET http://a.test/x?y HTTP/1.1\r\nHost: a.test\r\nX-A:  v \r\n\r\nBODY";
        let (h, n) = parse_head(raw, 1024).unwrap();
        assert_eq!(
            (h.method, h.target, h.minor),
            ("GET", "http://a.test/x?y", 1)
        );
        assert_eq!(h.header("host"), Some(&b"a.test"[..]));
        assert_eq!(h.header("x-a"), Some(&b"v"[..]));
        assert_eq!(&raw[n..], b"BODY");
        assert_eq!(framing(&h), Ok(Framing::None));
    }

    #[test]
    fn framing_rules() {
        let base = "POST / HTTP/1.1\r\nHost: a\r\n";
        let f = |extra: &str| head(&format!("{base}{extra}\r\n"));
        assert_eq!(f("Content-Length: 5\r\n"), Ok(Framing::Length(5)));
        assert_eq!(f("Content-Length: 5, 5\r\n"), Ok(Framing::Length(5)));
        assert_eq!(
            f("Transfer-Encoding: gzip, chunked\r\n"),
            Ok(Framing::Chunked)
        );
        for bad in [
            "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n",
            "Transfer-Encoding: chunked\r\nContent-Length: 0\r\n",
            "Content-Length: 5\r\nContent-Length: 6\r\n",
            "Content-Length: -1\r\n",
            "Content-Length: 99999999999999999999\r\n",
            "Transfer-Encoding: chunked, identity\r\n",
            "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n",
        ] {
            assert!(matches!(f(bad), Err(HeadError::Malformed(_))), "{bad:?}");
        }
        assert!(matches!(
            head("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"),
            Err(HeadError::Malformed(_))
        ));
    }

    #[test]
    fn incomplete_large_and_malformed() {
        assert_eq!(
            parse_head(b"GET / HTTP/1.1\r\nHost:", 1024).unwrap_err(),
            HeadError::Incomplete
        );
        let big = format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(100));
        assert_eq!(
            parse_head(big.as_bytes(), 64).unwrap_err(),
            HeadError::TooLarge
        );
        for bad in [
            "GET  / HTTP/1.1\r\n\r\n",
            "GET / HTTP/2.0\r\n\r\n",
            "GET / HTTP/1.1\r\n folded\r\n\r\n",
            "GET / HTTP/1.1\r\nNo colon\r\n\r\n",
            "G(T / HTTP/1.1\r\n\r\n",
        ] {
            assert!(
                matches!(
                    parse_head(bad.as_bytes(), 1024),
                    Err(HeadError::Malformed(_))
                ),
                "{bad:?}"
            );
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn never_panics_on_any_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            if let Ok((h, n)) = parse_head(&bytes, 256) {
                prop_assert!(n <= bytes.len());
                let _ = framing(&h);
            }
        }

        #[test]
        fn never_panics_on_near_heads(
            method in "[A-Z]{1,7}",
            target in "[ -~]{0,20}",
            headers in proptest::collection::vec(("[ -~]{0,12}", "[ -~\t]{0,12}"), 0..6),
            cut in any::<usize>(),
        ) {
            let mut s = format!("{method} {target} HTTP/1.1\r\n");
            for (n, v) in headers {
                s.push_str(&format!("{n}: {v}\r\n"));
            }
            s.push_str("\r\n");
            let b = s.as_bytes();
            let b = &b[..cut % (b.len() + 1)];
            if let Ok((h, _)) = parse_head(b, 1024) {
                let _ = framing(&h);
            }
        }
    }
}
