//! Transformations (`t:`): pure byte-string functions applied before an operator.

pub(crate) mod decode;
mod sha1;

use std::borrow::Cow;

/// One transformation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Transform {
    Lowercase,
    Uppercase,
    UrlDecode,
    UrlDecodeUni,
    UrlEncode,
    HtmlEntityDecode,
    JsDecode,
    CssDecode,
    CmdLine,
    CompressWhitespace,
    RemoveWhitespace,
    RemoveNulls,
    ReplaceNulls,
    ReplaceComments,
    RemoveComments,
    RemoveCommentsChar,
    NormalizePath,
    NormalizePathWin,
    Base64Decode,
    Base64DecodeExt,
    Base64Encode,
    HexDecode,
    HexEncode,
    Utf8ToUnicode,
    Length,
    Sha1,
    Trim,
    TrimLeft,
    TrimRight,
    EscapeSeqDecode,
    SqlHexDecode,
}

/// What `t:name` means: a transformation, or `none` (clear the list).
pub(crate) enum Parsed {
    None,
    Transform(Transform),
}

impl Transform {
    /// Parses a transformation name (case-insensitive).
    pub(crate) fn parse(name: &str) -> Option<Parsed> {
        use Transform::*;
        let t = match name.to_ascii_lowercase().as_str() {
            "none" => return Some(Parsed::None),
            "lowercase" => Lowercase,
            "uppercase" => Uppercase,
            "urldecode" => UrlDecode,
            "urldecodeuni" => UrlDecodeUni,
            "urlencode" => UrlEncode,
            "htmlentitydecode" => HtmlEntityDecode,
            "jsdecode" => JsDecode,
            "cssdecode" => CssDecode,
            "cmdline" => CmdLine,
            "compresswhitespace" => CompressWhitespace,
            "removewhitespace" => RemoveWhitespace,
            "removenulls" => RemoveNulls,
            "replacenulls" => ReplaceNulls,
            "replacecomments" => ReplaceComments,
            "removecomments" => RemoveComments,
            "removecommentschar" => RemoveCommentsChar,
            "normalizepath" | "normalisepath" => NormalizePath,
            "normalizepathwin" | "normalisepathwin" => NormalizePathWin,
            "base64decode" => Base64Decode,
            "base64decodeext" => Base64DecodeExt,
            "base64encode" => Base64Encode,
            "hexdecode" => HexDecode,
            "hexencode" => HexEncode,
            "utf8tounicode" => Utf8ToUnicode,
            "length" => Length,
            "sha1" => Sha1,
            "trim" => Trim,
            "trimleft" => TrimLeft,
            "trimright" => TrimRight,
            "escapeseqdecode" => EscapeSeqDecode,
            "sqlhexdecode" => SqlHexDecode,
            _ => return None,
        };
        Some(Parsed::Transform(t))
    }

    /// Applies the transformation. Returns `Cow::Borrowed` when the input is unchanged.
    pub(crate) fn apply<'a>(self, v: &'a [u8]) -> Cow<'a, [u8]> {
        use Transform::*;
        match self {
            Lowercase => {
                if v.iter().any(|c| c.is_ascii_uppercase()) {
                    Cow::Owned(v.to_ascii_lowercase())
                } else {
                    Cow::Borrowed(v)
                }
            }
            Uppercase => Cow::Owned(v.to_ascii_uppercase()),
            UrlDecode => decode::url_decode(v, false),
            UrlDecodeUni => decode::url_decode(v, true),
            UrlEncode => Cow::Owned(decode::url_encode(v)),
            HtmlEntityDecode => decode::html_entity_decode(v),
            JsDecode => decode::js_decode(v),
            CssDecode => decode::css_decode(v),
            CmdLine => Cow::Owned(cmd_line(v)),
            CompressWhitespace => Cow::Owned(compress_ws(v)),
            RemoveWhitespace => filter(v, |c| !is_ws(c)),
            RemoveNulls => filter(v, |c| c != 0),
            ReplaceNulls => {
                if v.contains(&0) {
                    Cow::Owned(v.iter().map(|&c| if c == 0 { b' ' } else { c }).collect())
                } else {
                    Cow::Borrowed(v)
                }
            }
            ReplaceComments => Cow::Owned(replace_comments(v)),
            RemoveComments => Cow::Owned(remove_comments(v)),
            RemoveCommentsChar => Cow::Owned(remove_comments_char(v)),
            NormalizePath => Cow::Owned(normalize_path(v, false)),
            NormalizePathWin => Cow::Owned(normalize_path(v, true)),
            Base64Decode => Cow::Owned(decode::base64_decode(v, false)),
            Base64DecodeExt => Cow::Owned(decode::base64_decode(v, true)),
            Base64Encode => Cow::Owned(decode::base64_encode(v)),
            HexDecode => Cow::Owned(decode::hex_decode(v)),
            HexEncode => Cow::Owned(decode::hex_encode(v)),
            Utf8ToUnicode => decode::utf8_to_unicode(v),
            Length => Cow::Owned(v.len().to_string().into_bytes()),
            Sha1 => Cow::Owned(sha1::sha1(v).to_vec()),
            Trim => Cow::Borrowed(trim_right(trim_left(v))),
            TrimLeft => Cow::Borrowed(trim_left(v)),
            TrimRight => Cow::Borrowed(trim_right(v)),
            EscapeSeqDecode => decode::escape_seq_decode(v),
            SqlHexDecode => Cow::Owned(decode::sql_hex_decode(v)),
        }
    }
}

/// Applies the transformation called `name` (for tools and tests).
pub fn apply_named(name: &str, input: &[u8]) -> Option<Vec<u8>> {
    match Transform::parse(name)? {
        Parsed::None => Some(input.to_vec()),
        Parsed::Transform(t) => Some(t.apply(input).into_owned()),
    }
}

fn is_ws(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c | 0xa0)
}

fn filter(v: &[u8], keep: impl Fn(u8) -> bool) -> Cow<'_, [u8]> {
    if v.iter().all(|&c| keep(c)) {
        Cow::Borrowed(v)
    } else {
        Cow::Owned(v.iter().copied().filter(|&c| keep(c)).collect())
    }
}

fn trim_left(v: &[u8]) -> &[u8] {
    let n = v.iter().take_while(|&&c| is_ws(c) || c == 0).count();
    &v[n..]
}

fn trim_right(v: &[u8]) -> &[u8] {
    let n = v.iter().rev().take_while(|&&c| is_ws(c) || c == 0).count();
    &v[..v.len() - n]
}

fn compress_ws(v: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(v.len());
    let mut in_ws = false;
    for &c in v {
        if is_ws(c) {
            if !in_ws {
                out.push(b' ');
            }
            in_ws = true;
        } else {
            out.push(c);
            in_ws = false;
        }
    }
    out
}

/// Windows/Unix command-line normalisation (ModSecurity's `cmdLine`).
fn cmd_line(v: &[u8]) -> Vec<u8> {
    let mut out: Vec<u8> = Vec::with_capacity(v.len());
    let mut space = false;
    for &c in v {
        match c {
            b'"' | b'\'' | b'\\' | b'^' => {}
            b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c | b',' | b';' => {
                if !space {
                    out.push(b' ');
                    space = true;
                }
            }
            b'/' | b'(' => {
                if space {
                    out.pop();
                }
                space = false;
                out.push(c);
            }
            _ => {
                out.push(c.to_ascii_lowercase());
                space = false;
            }
        }
    }
    out
}

fn replace_comments(v: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(v.len());
    let mut i = 0;
    while i < v.len() {
        if v[i] == b'/' && v.get(i + 1) == Some(&b'*') {
            let end = v[i + 2..].windows(2).position(|w| w == b"*/");
            out.push(b' ');
            match end {
                Some(e) => i = i + 2 + e + 2,
                None => break,
            }
        } else {
            out.push(v[i]);
            i += 1;
        }
    }
    out
}

fn remove_comments(v: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(v.len());
    let mut i = 0;
    while i < v.len() {
        if v[i] == b'/' && v.get(i + 1) == Some(&b'*') {
            match v[i + 2..].windows(2).position(|w| w == b"*/") {
                Some(e) => i = i + 2 + e + 2,
                None => break,
            }
        } else if v[i..].starts_with(b"<!--") {
            match v[i + 4..].windows(3).position(|w| w == b"-->") {
                Some(e) => i = i + 4 + e + 3,
                None => break,
            }
        } else if v[i..].starts_with(b"--") || v[i] == b'#' {
            break;
        } else {
            out.push(v[i]);
            i += 1;
        }
    }
    out
}

fn remove_comments_char(v: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(v.len());
    let mut i = 0;
    while i < v.len() {
        if v[i..].starts_with(b"/*") || v[i..].starts_with(b"*/") || v[i..].starts_with(b"--") {
            i += 2;
        } else if v[i..].starts_with(b"<!--") {
            i += 4;
        } else if v[i..].starts_with(b"-->") {
            i += 3;
        } else if v[i] == b'#' {
            i += 1;
        } else {
            out.push(v[i]);
            i += 1;
        }
    }
    out
}

/// Removes `.` and `..` segments and repeated slashes.
fn normalize_path(v: &[u8], win: bool) -> Vec<u8> {
    let src: Cow<'_, [u8]> = if win {
        Cow::Owned(
            v.iter()
                .map(|&c| if c == b'\\' { b'/' } else { c })
                .collect(),
        )
    } else {
        Cow::Borrowed(v)
    };
    if src.is_empty() {
        return Vec::new();
    }
    let absolute = src[0] == b'/';
    let trailing = src.len() > 1 && src[src.len() - 1] == b'/'
        || src.ends_with(b"/.")
        || src.ends_with(b"/..");
    let mut segs: Vec<&[u8]> = Vec::new();
    for seg in src.split(|&c| c == b'/') {
        match seg {
            b"" | b"." => {}
            b".." => {
                if segs.last().is_some_and(|s| *s != b"..") {
                    segs.pop();
                } else if !absolute {
                    segs.push(seg);
                }
            }
            s => segs.push(s),
        }
    }
    let mut out = Vec::with_capacity(src.len());
    if absolute {
        out.push(b'/');
    }
    for (i, s) in segs.iter().enumerate() {
        if i > 0 {
            out.push(b'/');
        }
        out.extend_from_slice(s);
    }
    if trailing && !segs.is_empty() {
        out.push(b'/');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(name: &str, input: &str) -> String {
        String::from_utf8_lossy(&apply_named(name, input.as_bytes()).unwrap()).into_owned()
    }

    #[test]
    fn basic() {
        assert_eq!(t("lowercase", "AbC"), "abc");
        assert_eq!(t("compressWhitespace", "a  \t b"), "a b");
        assert_eq!(t("removeWhitespace", "a  \t b"), "ab");
        assert_eq!(t("length", "abcd"), "4");
        assert_eq!(t("replaceComments", "a/*x*/b/*c"), "a b ");
        assert_eq!(t("cmdLine", "C^OMM\"AND /c, dir;x"), "command/c dir x");
        assert_eq!(t("normalizePath", "/a/b/../c/./d//e"), "/a/c/d/e");
        assert_eq!(t("normalizePathWin", "a\\..\\..\\etc"), "../etc");
        assert_eq!(t("trim", "  x  "), "x");
        assert_eq!(t("hexEncode", "ab"), "6162");
        assert_eq!(
            String::from_utf8_lossy(&decode::hex_encode(&apply_named("sha1", b"abc").unwrap())),
            "a9993e364706816aba3e25717850c26c9cd0d89d"
        );
        assert!(Transform::parse("nope").is_none());
    }
}
