//! JSON bodies → `ARGS_POST` with dotted names (`json.user.name`, `json.items.0`).

use super::Kv;

/// A container being read: the length of the key outside it, and for an array the index
/// of the current element.
enum Open {
    Object(usize),
    Array(usize, usize),
}

struct P<'a> {
    s: &'a [u8],
    i: usize,
    max_depth: usize,
    out: &'a mut Vec<Kv>,
}

/// Flattens a JSON document into `out`. Errors name the byte offset.
pub(crate) fn parse(s: &[u8], max_depth: usize, out: &mut Vec<Kv>) -> Result<(), String> {
    let mut p = P {
        s,
        i: 0,
        max_depth,
        out,
    };
    let mut key = b"json".to_vec();
    p.ws();
    p.value(&mut key)?;
    p.ws();
    if p.i != p.s.len() {
        return Err(format!("JSON: unexpected data at offset {}", p.i));
    }
    Ok(())
}

impl P<'_> {
    fn ws(&mut self) {
        while self.i < self.s.len() && matches!(self.s[self.i], b' ' | b'\t' | b'\n' | b'\r') {
            self.i += 1;
        }
    }

    fn err<T>(&self, what: &str) -> Result<T, String> {
        Err(format!("JSON: {what} at offset {}", self.i))
    }

    /// Reads one value (and everything nested in it) at `key`. Iterative, with an explicit
    /// stack of open containers: however high `SecRequestBodyJsonDepthLimit` is set, a
    /// deeply nested body cannot overflow the thread's stack.
    fn value(&mut self, key: &mut Vec<u8>) -> Result<(), String> {
        let mut open: Vec<Open> = Vec::new();
        'value: loop {
            // The value's depth is the number of containers around it.
            if open.len() > self.max_depth {
                return self.err("nesting too deep");
            }
            match self.s.get(self.i) {
                Some(b'{') => {
                    self.i += 1;
                    self.ws();
                    if self.s.get(self.i) == Some(&b'}') {
                        self.i += 1;
                    } else {
                        open.push(Open::Object(key.len()));
                        self.member_key(key)?;
                        continue 'value;
                    }
                }
                Some(b'[') => {
                    self.i += 1;
                    self.ws();
                    if self.s.get(self.i) == Some(&b']') {
                        self.i += 1;
                    } else {
                        open.push(Open::Array(key.len(), 0));
                        self.ws();
                        key.extend_from_slice(b".0");
                        continue 'value;
                    }
                }
                Some(b'"') => {
                    let v = self.string()?;
                    self.out.push(Kv {
                        key: key.clone(),
                        value: v,
                    });
                }
                Some(b't') => self.lit(key, b"true")?,
                Some(b'f') => self.lit(key, b"false")?,
                Some(b'n') => {
                    self.lit(key, b"null")?;
                    if let Some(last) = self.out.last_mut() {
                        last.value.clear();
                    }
                }
                Some(c) if *c == b'-' || c.is_ascii_digit() => {
                    let st = self.i;
                    while self.i < self.s.len()
                        && matches!(
                            self.s[self.i],
                            b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E'
                        )
                    {
                        self.i += 1;
                    }
                    self.out.push(Kv {
                        key: key.clone(),
                        value: self.s[st..self.i].to_vec(),
                    });
                }
                _ => return self.err("expected a value"),
            }
            // A value is complete: close the containers it completes, or go on to the
            // next member of the innermost one.
            loop {
                match open.last_mut() {
                    None => return Ok(()),
                    Some(Open::Object(len)) => {
                        key.truncate(*len);
                        self.ws();
                        match self.s.get(self.i) {
                            Some(b',') => {
                                self.i += 1;
                                self.member_key(key)?;
                                continue 'value;
                            }
                            Some(b'}') => self.i += 1,
                            _ => return self.err("expected ',' or '}'"),
                        }
                    }
                    Some(Open::Array(len, n)) => {
                        key.truncate(*len);
                        *n += 1;
                        let n = *n;
                        self.ws();
                        match self.s.get(self.i) {
                            Some(b',') => {
                                self.i += 1;
                                self.ws();
                                key.push(b'.');
                                key.extend_from_slice(n.to_string().as_bytes());
                                continue 'value;
                            }
                            Some(b']') => self.i += 1,
                            _ => return self.err("expected ',' or ']'"),
                        }
                    }
                }
                open.pop();
            }
        }
    }

    /// `"name":` of an object member; appends `.name` to `key`.
    fn member_key(&mut self, key: &mut Vec<u8>) -> Result<(), String> {
        self.ws();
        if self.s.get(self.i) != Some(&b'"') {
            return self.err("expected a key");
        }
        let k = self.string()?;
        self.ws();
        if self.s.get(self.i) != Some(&b':') {
            return self.err("expected ':'");
        }
        self.i += 1;
        self.ws();
        key.push(b'.');
        key.extend_from_slice(&k);
        Ok(())
    }

    fn lit(&mut self, key: &[u8], word: &[u8]) -> Result<(), String> {
        if self.s[self.i..].starts_with(word) {
            self.i += word.len();
            self.out.push(Kv {
                key: key.to_vec(),
                value: word.to_vec(),
            });
            Ok(())
        } else {
            self.err("invalid literal")
        }
    }

    fn hex4(&self, at: usize) -> Option<u32> {
        let h = self.s.get(at..at + 4)?;
        let s = std::str::from_utf8(h).ok()?;
        u32::from_str_radix(s, 16).ok()
    }

    fn string(&mut self) -> Result<Vec<u8>, String> {
        self.i += 1;
        let mut out = Vec::new();
        loop {
            let Some(&c) = self.s.get(self.i) else {
                return self.err("unterminated string");
            };
            self.i += 1;
            match c {
                b'"' => return Ok(out),
                b'\\' => {
                    let Some(&e) = self.s.get(self.i) else {
                        return self.err("unterminated escape");
                    };
                    self.i += 1;
                    match e {
                        b'"' | b'\\' | b'/' => out.push(e),
                        b'b' => out.push(8),
                        b'f' => out.push(12),
                        b'n' => out.push(b'\n'),
                        b'r' => out.push(b'\r'),
                        b't' => out.push(b'\t'),
                        b'u' => {
                            let Some(mut cp) = self.hex4(self.i) else {
                                return self.err("invalid \\u escape");
                            };
                            self.i += 4;
                            if (0xD800..0xDC00).contains(&cp)
                                && self.s.get(self.i) == Some(&b'\\')
                                && self.s.get(self.i + 1) == Some(&b'u')
                            {
                                if let Some(lo) = self.hex4(self.i + 2) {
                                    if (0xDC00..0xE000).contains(&lo) {
                                        cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                                        self.i += 6;
                                    }
                                }
                            }
                            let ch = char::from_u32(cp).unwrap_or('\u{fffd}');
                            let mut buf = [0u8; 4];
                            out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                        }
                        _ => return self.err("invalid escape"),
                    }
                }
                _ => out.push(c),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flattens() {
        let mut out = Vec::new();
        parse(
            br#"{"a":{"b":"x\u0041"},"l":[1,true,null],"e":{}}"#,
            10,
            &mut out,
        )
        .unwrap();
        let got: Vec<(String, String)> = out
            .iter()
            .map(|k| {
                (
                    String::from_utf8_lossy(&k.key).into(),
                    String::from_utf8_lossy(&k.value).into(),
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![
                ("json.a.b".into(), "xA".into()),
                ("json.l.0".into(), "1".into()),
                ("json.l.1".into(), "true".into()),
                ("json.l.2".into(), "".into()),
            ]
        );
        assert!(parse(b"{\"a\":", 10, &mut Vec::new()).is_err());
        assert!(parse(b"[[[[1]]]]", 2, &mut Vec::new()).is_err());
        assert!(parse(b"{} x", 2, &mut Vec::new()).is_err());
        // The limit counts the containers around a value, scalars included.
        assert!(parse(b"[[1]]", 2, &mut Vec::new()).is_ok());
        assert!(parse(b"[[1]]", 1, &mut Vec::new()).is_err());
        assert!(parse(b"[[]]", 1, &mut Vec::new()).is_ok());
        assert!(parse(b"{\"a\":{\"b\":1}}", 1, &mut Vec::new()).is_err());
        let mut out = Vec::new();
        parse(br#"{"a":[{"b":[1,{"c":"d"}]},2],"e":null}"#, 10, &mut out).unwrap();
        let keys: Vec<&[u8]> = out.iter().map(|k| k.key.as_slice()).collect();
        assert_eq!(
            keys,
            [
                &b"json.a.0.b.0"[..],
                b"json.a.0.b.1.c",
                b"json.a.1",
                b"json.e"
            ]
        );
        for bad in [
            &b"[1,]"[..],
            b"{\"a\" 1}",
            b"{\"a\":1,}",
            b"[1 2]",
            b"{1:2}",
            b"[",
            b"{",
        ] {
            assert!(parse(bad, 10, &mut Vec::new()).is_err(), "{bad:?}");
        }
    }

    /// Found while fuzzing the body processors: the parser recursed once per nesting level,
    /// so with `SecRequestBodyJsonDepthLimit` set high (ModSecurity accepts any number) a
    /// 20 KiB body of `[` overflowed a 2 MiB thread stack (tokio's default) and aborted the
    /// whole gateway. The parser now keeps its own stack.
    #[test]
    fn deep_nesting_does_not_use_the_thread_stack() {
        let depth = 200_000;
        let mut body = vec![b'['; depth];
        body.push(b'1');
        body.extend(std::iter::repeat_n(b']', depth));
        let t = std::thread::Builder::new()
            .stack_size(64 << 10)
            .spawn(move || {
                let mut out = Vec::new();
                let r = parse(&body, usize::MAX, &mut out);
                (
                    r,
                    out.len(),
                    parse(&body, depth - 1, &mut Vec::new()).is_err(),
                )
            })
            .unwrap();
        assert_eq!(t.join().unwrap(), (Ok(()), 1, true));
    }
}
