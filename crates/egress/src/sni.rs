//! The server name of a TLS ClientHello, read without terminating TLS.
//!
//! Only what the gateway needs: walk the TLS records that carry the first handshake
//! message (it may span several), check it is a ClientHello, and pull the `server_name`
//! extension's host name (RFC 6066 §3). Pure; any input gives an answer, never a panic.

/// The largest ClientHello considered (larger ones are refused).
pub const MAX_HELLO: usize = 16 * 1024;

/// What the first bytes of a connection say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientHello {
    /// Not enough bytes yet; read more and ask again.
    NeedMore,
    /// A ClientHello; `server_name` is its SNI host name, lower case, when present.
    Parsed {
        /// The SNI host name.
        server_name: Option<String>,
    },
    /// Not a TLS handshake at all (e.g. plain HTTP).
    NotTls,
    /// TLS, but not a well-formed ClientHello (the reason is for logs).
    Malformed(&'static str),
}

/// Reads a ClientHello from the start of a connection.
pub fn parse_client_hello(buf: &[u8]) -> ClientHello {
    match buf.first() {
        None => return ClientHello::NeedMore,
        Some(0x16) => {}
        Some(_) => return ClientHello::NotTls,
    }
    if buf.len() >= 2 && buf[1] != 0x03 {
        return ClientHello::NotTls;
    }
    // Reassemble handshake bytes from consecutive handshake records.
    let mut hs = Vec::new();
    let mut rest = buf;
    loop {
        if rest.len() < 5 {
            return ClientHello::NeedMore;
        }
        if rest[0] != 0x16 {
            return ClientHello::Malformed("handshake interrupted by another record type");
        }
        let len = usize::from(u16::from_be_bytes([rest[3], rest[4]]));
        if len == 0 {
            return ClientHello::Malformed("empty handshake record");
        }
        if rest.len() < 5 + len {
            // The body of this record is still in flight.
            if hs.len() + len > MAX_HELLO {
                return ClientHello::Malformed("ClientHello too large");
            }
            return ClientHello::NeedMore;
        }
        hs.extend_from_slice(&rest[5..5 + len]);
        rest = &rest[5 + len..];
        if hs.len() >= 4 {
            if hs[0] != 0x01 {
                return ClientHello::Malformed("first handshake message is not a ClientHello");
            }
            let body_len =
                (usize::from(hs[1]) << 16) | (usize::from(hs[2]) << 8) | usize::from(hs[3]);
            if body_len > MAX_HELLO {
                return ClientHello::Malformed("ClientHello too large");
            }
            if hs.len() >= 4 + body_len {
                return match server_name(&hs[4..4 + body_len]) {
                    Ok(server_name) => ClientHello::Parsed { server_name },
                    Err(why) => ClientHello::Malformed(why),
                };
            }
        }
        if hs.len() > MAX_HELLO {
            return ClientHello::Malformed("ClientHello too large");
        }
    }
}

/// A cursor over bytes that refuses to read past the end.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], &'static str> {
        if self.0.len() < n {
            return Err("truncated ClientHello");
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Ok(a)
    }
    fn u8(&mut self) -> Result<usize, &'static str> {
        Ok(usize::from(self.take(1)?[0]))
    }
    fn u16(&mut self) -> Result<usize, &'static str> {
        let b = self.take(2)?;
        Ok(usize::from(u16::from_be_bytes([b[0], b[1]])))
    }
}

/// The SNI of a ClientHello body (after the 4-byte handshake header).
fn server_name(body: &[u8]) -> Result<Option<String>, &'static str> {
    let mut r = Reader(body);
    r.take(2 + 32)?; // legacy_version, random
    let n = r.u8()?;
    r.take(n)?; // legacy_session_id
    let n = r.u16()?;
    if n == 0 || n % 2 != 0 {
        return Err("bad cipher suite list");
    }
    r.take(n)?;
    let n = r.u8()?;
    if n == 0 {
        return Err("no compression methods");
    }
    r.take(n)?;
    if r.0.is_empty() {
        return Ok(None); // no extensions at all
    }
    let n = r.u16()?;
    let mut ext = Reader(r.take(n)?);
    let mut found = None;
    while !ext.0.is_empty() {
        let kind = ext.u16()?;
        let len = ext.u16()?;
        let data = ext.take(len)?;
        if kind != 0 {
            continue;
        }
        if found.is_some() {
            return Err("two server_name extensions");
        }
        let mut list = Reader(data);
        let n = list.u16()?;
        let mut names = Reader(list.take(n)?);
        while !names.0.is_empty() {
            let name_type = names.u8()?;
            let len = names.u16()?;
            let name = names.take(len)?;
            if name_type == 0 && found.is_none() {
                found = Some(host_name(name)?);
            }
        }
    }
    Ok(found)
}

/// A DNS host name as sent in SNI: letters, digits, `-`, `_`, `.`; lower-cased.
fn host_name(raw: &[u8]) -> Result<String, &'static str> {
    if raw.is_empty() || raw.len() > 253 {
        return Err("bad server name length");
    }
    if !raw
        .iter()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
    {
        return Err("server name is not a host name");
    }
    let s: String = raw
        .iter()
        .map(|b| char::from(b.to_ascii_lowercase()))
        .collect();
    let s = s.strip_suffix('.').map(str::to_string).unwrap_or(s);
    // Every label 1 to 63 bytes (RFC 1035), so `.`, `a..b` or `.a` name nothing; and no
    // IPv4 literal, which RFC 6066 does not allow as a HostName.
    if s.split('.').any(|l| l.is_empty() || l.len() > 63) {
        return Err("server name has an empty or over-long label");
    }
    if s.parse::<std::net::Ipv4Addr>().is_ok() {
        return Err("server name is an IP address");
    }
    Ok(s)
}

/// Builds a minimal ClientHello (one record) naming `sni`; for tests and fuzzing seeds.
pub fn client_hello_for(sni: Option<&str>) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&[0x03, 0x03]);
    body.extend_from_slice(&[7u8; 32]);
    body.push(0); // session id
    body.extend_from_slice(&[0x00, 0x02, 0x13, 0x01]); // one cipher suite
    body.extend_from_slice(&[0x01, 0x00]); // null compression
    let mut exts = Vec::new();
    if let Some(name) = sni {
        let n = name.as_bytes();
        let list_len = 3 + n.len();
        exts.extend_from_slice(&[0x00, 0x00]);
        exts.extend_from_slice(&((list_len + 2) as u16).to_be_bytes());
        exts.extend_from_slice(&(list_len as u16).to_be_bytes());
        exts.push(0);
        exts.extend_from_slice(&(n.len() as u16).to_be_bytes());
        exts.extend_from_slice(n);
    }
    // supported_versions: TLS 1.3
    exts.extend_from_slice(&[0x00, 0x2b, 0x00, 0x03, 0x02, 0x03, 0x04]);
    body.extend_from_slice(&(exts.len() as u16).to_be_bytes());
    body.extend_from_slice(&exts);
    let mut hs = vec![0x01];
    hs.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    hs.extend_from_slice(&body);
    let mut rec = vec![0x16, 0x03, 0x01];
    rec.extend_from_slice(&(hs.len() as u16).to_be_bytes());
    rec.extend_from_slice(&hs);
    rec
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn server_names_that_are_not_host_names_are_malformed() {
        let long = format!("{}.test", "a".repeat(64));
        for bad in [".", "..", "a..b", ".a", "a.b..", long.as_str(), "10.0.0.5"] {
            assert!(
                matches!(
                    parse_client_hello(&client_hello_for(Some(bad))),
                    ClientHello::Malformed(_)
                ),
                "{bad:?}"
            );
        }
        assert_eq!(
            parse_client_hello(&client_hello_for(Some("Models.Example.TEST."))),
            ClientHello::Parsed {
                server_name: Some("models.example.test".into())
            }
        );
    }

    #[test]
    fn reads_the_server_name() {
        let hello = client_hello_for(Some("Models.Example.TEST"));
        assert_eq!(
            parse_client_hello(&hello),
            ClientHello::Parsed {
                server_name: Some("models.example.test".into())
            }
        );
        assert_eq!(
            parse_client_hello(&client_hello_for(None)),
            ClientHello::Parsed { server_name: None }
        );
    }

    #[test]
    fn asks_for_more_until_complete() {
        let hello = client_hello_for(Some("a.test"));
        for cut in 0..hello.len() {
            assert_eq!(
                parse_client_hello(&hello[..cut]),
                ClientHello::NeedMore,
                "{cut}"
            );
        }
    }

    #[test]
    fn a_hello_split_over_two_records() {
        let hello = client_hello_for(Some("split.test"));
        let hs = &hello[5..];
        let (a, b) = hs.split_at(20);
        let mut two = Vec::new();
        for part in [a, b] {
            two.extend_from_slice(&[0x16, 0x03, 0x01]);
            two.extend_from_slice(&(part.len() as u16).to_be_bytes());
            two.extend_from_slice(part);
        }
        assert_eq!(
            parse_client_hello(&two),
            ClientHello::Parsed {
                server_name: Some("split.test".into())
            }
        );
    }

    #[test]
    fn plain_http_and_garbage() {
        assert_eq!(
            parse_client_hello(b"GET / HTTP/1.1\r\n"),
            ClientHello::NotTls
        );
        assert!(matches!(
            parse_client_hello(&[0x16, 0x03, 0x01, 0x00, 0x04, 0x02, 0, 0, 0]),
            ClientHello::Malformed(_)
        ));
        let mut bad = client_hello_for(Some("a.test"));
        let at = bad.len() - 12;
        bad[at] = b'/'; // inside the name
        assert!(matches!(
            parse_client_hello(&bad),
            ClientHello::Malformed(_)
        ));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn never_panics_on_any_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = parse_client_hello(&bytes);
        }

        #[test]
        fn never_panics_on_mutated_hellos(
            name in "[a-z0-9.-]{1,40}",
            flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..8),
            cut in any::<usize>(),
        ) {
            let mut h = client_hello_for(Some(&name));
            for (i, b) in flips {
                let n = h.len();
                h[i % n] = b;
            }
            let n = h.len();
            let _ = parse_client_hello(&h[..cut % (n + 1)]);
        }

        #[test]
        fn valid_names_round_trip(name in "[a-z0-9-]{1,20}(\\.[a-z0-9-]{1,20}){0,3}") {
            prop_assert_eq!(
                parse_client_hello(&client_hello_for(Some(&name))),
                ClientHello::Parsed { server_name: Some(name.clone()) }
            );
        }
    }
}
