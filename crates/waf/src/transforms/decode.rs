//! Decoding transformations: URL, HTML entities, JavaScript, CSS, base64, hex.

use std::borrow::Cow;

fn hexval(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

fn hex2(a: u8, b: u8) -> Option<u8> {
    Some(hexval(a)? << 4 | hexval(b)?)
}

fn hex4(v: &[u8]) -> Option<u32> {
    if v.len() < 4 {
        return None;
    }
    let mut n = 0u32;
    for &c in &v[..4] {
        n = n << 4 | u32::from(hexval(c)?);
    }
    Some(n)
}

/// A `%uXXXX` / `\uXXXX` code point as one byte, as ModSecurity does without a
/// unicode map: full-width ASCII (U+FF01–U+FF5E) becomes ASCII, else the low byte.
fn uni_byte(code: u32) -> u8 {
    if (0xFF01..=0xFF5E).contains(&code) {
        (code - 0xFEE0) as u8
    } else {
        (code & 0xFF) as u8
    }
}

/// `%XX` (and `+`) decoding; with `uni`, also `%uXXXX`. Invalid escapes stay as they are.
pub(crate) fn url_decode(v: &[u8], uni: bool) -> Cow<'_, [u8]> {
    if !v.iter().any(|&c| c == b'%' || c == b'+') {
        return Cow::Borrowed(v);
    }
    let mut out = Vec::with_capacity(v.len());
    let mut i = 0;
    while i < v.len() {
        let c = v[i];
        if c == b'%' {
            if uni && matches!(v.get(i + 1), Some(b'u' | b'U')) {
                if let Some(code) = hex4(&v[(i + 2).min(v.len())..]) {
                    out.push(uni_byte(code));
                    i += 6;
                    continue;
                }
            }
            if i + 2 < v.len() {
                if let Some(b) = hex2(v[i + 1], v[i + 2]) {
                    out.push(b);
                    i += 3;
                    continue;
                }
            }
            out.push(c);
            i += 1;
        } else if c == b'+' {
            out.push(b' ');
            i += 1;
        } else {
            out.push(c);
            i += 1;
        }
    }
    Cow::Owned(out)
}

/// `%XX` decoding only (no `+`), for URIs and paths.
pub(crate) fn uri_decode(v: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(v.len());
    let mut i = 0;
    while i < v.len() {
        if v[i] == b'%' && i + 2 < v.len() {
            if let Some(b) = hex2(v[i + 1], v[i + 2]) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(v[i]);
        i += 1;
    }
    out
}

pub(crate) fn url_encode(v: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(v.len() * 3);
    for &c in v {
        if c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.' | b'~') {
            out.push(c);
        } else if c == b' ' {
            out.push(b'+');
        } else {
            out.extend_from_slice(format!("%{c:02x}").as_bytes());
        }
    }
    out
}

/// `&#NN;`, `&#xHH;`, `&quot;`, `&amp;`, `&lt;`, `&gt;`, `&nbsp;` (`;` optional).
pub(crate) fn html_entity_decode(v: &[u8]) -> Cow<'_, [u8]> {
    if !v.contains(&b'&') {
        return Cow::Borrowed(v);
    }
    let mut out = Vec::with_capacity(v.len());
    let mut i = 0;
    while i < v.len() {
        if v[i] != b'&' {
            out.push(v[i]);
            i += 1;
            continue;
        }
        let rest = &v[i + 1..];
        if rest.first() == Some(&b'#') {
            let (hex, start) = match rest.get(1) {
                Some(b'x' | b'X') => (true, 2),
                _ => (false, 1),
            };
            let digits = rest[start..]
                .iter()
                .take_while(|&&c| {
                    if hex {
                        hexval(c).is_some()
                    } else {
                        c.is_ascii_digit()
                    }
                })
                .count();
            if digits > 0 {
                let mut n: u32 = 0;
                for &c in &rest[start..start + digits] {
                    let d = if hex {
                        u32::from(hexval(c).unwrap_or(0))
                    } else {
                        u32::from(c - b'0')
                    };
                    n = n
                        .saturating_mul(if hex { 16 } else { 10 })
                        .saturating_add(d);
                }
                out.push((n & 0xFF) as u8);
                let mut len = 1 + start + digits;
                if rest.get(start + digits) == Some(&b';') {
                    len += 1;
                }
                i += len;
                continue;
            }
        } else {
            let names: [(&[u8], u8); 6] = [
                (b"quot", b'"'),
                (b"amp", b'&'),
                (b"lt", b'<'),
                (b"gt", b'>'),
                (b"nbsp", 0xa0),
                (b"apos", b'\''),
            ];
            let mut done = false;
            for (name, b) in names {
                if rest.len() >= name.len() && rest[..name.len()].eq_ignore_ascii_case(name) {
                    out.push(b);
                    let mut len = 1 + name.len();
                    if rest.get(name.len()) == Some(&b';') {
                        len += 1;
                    }
                    i += len;
                    done = true;
                    break;
                }
            }
            if done {
                continue;
            }
        }
        out.push(b'&');
        i += 1;
    }
    Cow::Owned(out)
}

/// JavaScript escapes: `\xHH`, `\uHHHH`, octal `\OOO`, `\n` and friends, `\c` → `c`.
pub(crate) fn js_decode(v: &[u8]) -> Cow<'_, [u8]> {
    if !v.contains(&b'\\') {
        return Cow::Borrowed(v);
    }
    let mut out = Vec::with_capacity(v.len());
    let mut i = 0;
    while i < v.len() {
        if v[i] != b'\\' || i + 1 >= v.len() {
            out.push(v[i]);
            i += 1;
            continue;
        }
        let n = v[i + 1];
        if (n == b'u' || n == b'U') && i + 6 <= v.len() {
            if let Some(code) = hex4(&v[i + 2..]) {
                out.push(uni_byte(code));
                i += 6;
                continue;
            }
        }
        if (n == b'x' || n == b'X') && i + 4 <= v.len() {
            if let Some(b) = hex2(v[i + 2], v[i + 3]) {
                out.push(b);
                i += 4;
                continue;
            }
        }
        if (b'0'..=b'7').contains(&n) {
            let mut j = i + 1;
            let mut val: u32 = 0;
            while j < v.len() && j < i + 4 && (b'0'..=b'7').contains(&v[j]) {
                val = val * 8 + u32::from(v[j] - b'0');
                j += 1;
            }
            out.push((val & 0xFF) as u8);
            i = j;
            continue;
        }
        let c = match n {
            b'a' => 7,
            b'b' => 8,
            b'f' => 12,
            b'n' => b'\n',
            b'r' => b'\r',
            b't' => b'\t',
            b'v' => 11,
            other => other,
        };
        out.push(c);
        i += 2;
    }
    Cow::Owned(out)
}

/// CSS escapes: `\` + 1–6 hex digits (+ one optional space), `\` + char, `\` newline.
pub(crate) fn css_decode(v: &[u8]) -> Cow<'_, [u8]> {
    if !v.contains(&b'\\') {
        return Cow::Borrowed(v);
    }
    let mut out = Vec::with_capacity(v.len());
    let mut i = 0;
    while i < v.len() {
        if v[i] != b'\\' {
            out.push(v[i]);
            i += 1;
            continue;
        }
        if i + 1 >= v.len() {
            i += 1;
            continue;
        }
        let digits = v[i + 1..]
            .iter()
            .take(6)
            .take_while(|&&c| hexval(c).is_some())
            .count();
        if digits > 0 {
            let mut code: u32 = 0;
            for &c in &v[i + 1..i + 1 + digits] {
                code = code << 4 | u32::from(hexval(c).unwrap_or(0));
            }
            out.push(uni_byte(code));
            i += 1 + digits;
            if i < v.len() && v[i] == b' ' {
                i += 1;
            }
            continue;
        }
        if v[i + 1] == b'\n' {
            i += 2;
            continue;
        }
        out.push(v[i + 1]);
        i += 2;
    }
    Cow::Owned(out)
}

fn b64val(c: u8) -> Option<u8> {
    match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'+' | b'-' => Some(62),
        b'/' | b'_' => Some(63),
        _ => None,
    }
}

/// Base64 decoding. Strict mode stops at the first invalid character; `ext` skips them.
pub(crate) fn base64_decode(v: &[u8], ext: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(v.len() * 3 / 4);
    let mut acc: u32 = 0;
    let mut bits = 0;
    for &c in v {
        if c == b'=' {
            break;
        }
        match b64val(c) {
            Some(d) => {
                acc = acc << 6 | u32::from(d);
                bits += 6;
                if bits >= 8 {
                    bits -= 8;
                    out.push((acc >> bits) as u8);
                    acc &= (1 << bits) - 1;
                }
            }
            None if ext || c.is_ascii_whitespace() => {}
            None => break,
        }
    }
    out
}

pub(crate) fn base64_encode(v: &[u8]) -> Vec<u8> {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = Vec::with_capacity(v.len().div_ceil(3) * 4);
    for ch in v.chunks(3) {
        let n = u32::from(ch[0]) << 16
            | u32::from(*ch.get(1).unwrap_or(&0)) << 8
            | u32::from(*ch.get(2).unwrap_or(&0));
        out.push(T[(n >> 18) as usize & 63]);
        out.push(T[(n >> 12) as usize & 63]);
        out.push(if ch.len() > 1 {
            T[(n >> 6) as usize & 63]
        } else {
            b'='
        });
        out.push(if ch.len() > 2 {
            T[n as usize & 63]
        } else {
            b'='
        });
    }
    out
}

pub(crate) fn hex_decode(v: &[u8]) -> Vec<u8> {
    v.chunks_exact(2).filter_map(|p| hex2(p[0], p[1])).collect()
}

pub(crate) fn hex_encode(v: &[u8]) -> Vec<u8> {
    const H: &[u8; 16] = b"0123456789abcdef";
    let mut out = Vec::with_capacity(v.len() * 2);
    for &c in v {
        out.push(H[usize::from(c >> 4)]);
        out.push(H[usize::from(c & 15)]);
    }
    out
}

/// Multi-byte UTF-8 sequences become `%uHHHH`.
pub(crate) fn utf8_to_unicode(v: &[u8]) -> Cow<'_, [u8]> {
    if v.is_ascii() {
        return Cow::Borrowed(v);
    }
    let mut out = Vec::with_capacity(v.len() * 2);
    for chunk in v.utf8_chunks() {
        for ch in chunk.valid().chars() {
            if ch.is_ascii() {
                out.push(ch as u8);
            } else {
                out.extend_from_slice(format!("%u{:04x}", ch as u32).as_bytes());
            }
        }
        out.extend_from_slice(chunk.invalid());
    }
    Cow::Owned(out)
}

/// ANSI C escape sequences.
pub(crate) fn escape_seq_decode(v: &[u8]) -> Cow<'_, [u8]> {
    if !v.contains(&b'\\') {
        return Cow::Borrowed(v);
    }
    let mut out = Vec::with_capacity(v.len());
    let mut i = 0;
    while i < v.len() {
        if v[i] != b'\\' || i + 1 >= v.len() {
            out.push(v[i]);
            i += 1;
            continue;
        }
        let n = v[i + 1];
        let simple = match n {
            b'a' => Some(7),
            b'b' => Some(8),
            b'f' => Some(12),
            b'n' => Some(b'\n'),
            b'r' => Some(b'\r'),
            b't' => Some(b'\t'),
            b'v' => Some(11),
            b'\\' | b'?' | b'\'' | b'"' => Some(n),
            _ => None,
        };
        if let Some(c) = simple {
            out.push(c);
            i += 2;
            continue;
        }
        if (n == b'x' || n == b'X') && i + 3 < v.len() {
            if let Some(b) = hex2(v[i + 2], v[i + 3]) {
                out.push(b);
                i += 4;
                continue;
            }
        }
        if (b'0'..=b'7').contains(&n) {
            let mut j = i + 1;
            let mut val: u32 = 0;
            while j < v.len() && j < i + 4 && (b'0'..=b'7').contains(&v[j]) {
                val = val * 8 + u32::from(v[j] - b'0');
                j += 1;
            }
            out.push((val & 0xFF) as u8);
            i = j;
            continue;
        }
        out.push(v[i]);
        i += 1;
    }
    Cow::Owned(out)
}

/// `0xHEX` sequences become bytes.
pub(crate) fn sql_hex_decode(v: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(v.len());
    let mut i = 0;
    while i < v.len() {
        if v[i] == b'0' && matches!(v.get(i + 1), Some(b'x' | b'X')) {
            let n = v[i + 2..]
                .iter()
                .take_while(|&&c| hexval(c).is_some())
                .count();
            if n >= 2 {
                out.extend(hex_decode(&v[i + 2..i + 2 + n - n % 2]));
                i += 2 + n - n % 2;
                continue;
            }
        }
        out.push(v[i]);
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decoders() {
        assert_eq!(
            &*url_decode(b"a%20b+c%zz%u0041%uff0e%", true),
            b"a b c%zzA.%".as_slice()
        );
        assert_eq!(&*url_decode(b"%u0041", false), b"%u0041".as_slice());
        assert_eq!(uri_decode(b"/a%2fb+c"), b"/a/b+c");
        assert_eq!(
            &*html_entity_decode(b"&lt;&#x41;&#66&quot;&zz"),
            b"<AB\"&zz".as_slice()
        );
        assert_eq!(
            &*js_decode(b"\\x41\\u0042\\103\\n\\q"),
            b"ABC\nq".as_slice()
        );
        assert_eq!(&*css_decode(b"\\61 b\\\\c\\000065"), b"ab\\ce".as_slice());
        assert_eq!(base64_decode(b"aGVsbG8=", false), b"hello");
        assert_eq!(base64_decode(b"aGV$sbG8", true), b"hello");
        assert_eq!(base64_encode(b"hello"), b"aGVsbG8=");
        assert_eq!(hex_decode(b"414"), b"A");
        assert_eq!(&*utf8_to_unicode("aé".as_bytes()), b"a%u00e9".as_slice());
        assert_eq!(sql_hex_decode(b"x 0x414243 y"), b"x ABC y");
        assert_eq!(&*escape_seq_decode(b"\\x41\\n\\101"), b"A\nA".as_slice());
    }
}
