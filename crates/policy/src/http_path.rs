//! Request paths as servers read them. One raw path can name different resources to
//! different servers: `/v1/%63hat` is `/v1/chat` to a server that decodes escapes,
//! `/a//b` is `/a/b` to nginx, `/public/../admin` is `/admin` to almost every server, and
//! `/a%2F..%2Fb` is `/b` to one that decodes `%2F` before resolving dot segments. A decision
//! that depends on the path must therefore hold for every reading ([`views`]): an allowing
//! path condition for all of them, a denying one for any of them. Nothing is rewritten, so
//! what the server receives is what the client sent.

use std::borrow::Cow;

/// A path whose escapes are not `%` followed by two hex digits: no server reads it the same
/// way as another, so policy takes no reading of it (allowing conditions do not match,
/// denying ones do) and the gateways refuse it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the path has a malformed percent-escape")]
pub struct BadEscape;

/// Whether `path` reads the same to every server: no `%`, no `\`, no `;`, no `//`, and no
/// `.` or `..` segment. The common case, checked in one pass.
pub fn is_plain(path: &str) -> bool {
    let b = path.as_bytes();
    let mut prev = 0u8;
    for (i, &c) in b.iter().enumerate() {
        match c {
            b'%' | b'\\' | b';' => return false,
            b'/' if prev == b'/' => return false,
            b'.' if prev == b'/' => {
                // `/.` or `/..` followed by `/` or the end is a dot segment.
                let rest = &b[i..];
                let dots = if rest.starts_with(b"..") { 2 } else { 1 };
                if rest.len() == dots || rest[dots] == b'/' {
                    return false;
                }
            }
            _ => {}
        }
        prev = c;
    }
    true
}

/// The distinct readings of `path`, the raw one first; at most nine:
/// 1. as sent;
/// 2. normalised as RFC 3986 §6.2.2 does: escapes of unreserved characters decoded (the
///    others kept, hex in upper case) and dot segments removed (§5.2.4);
/// 3. the same with runs of `/` merged first (nginx, Envoy's `merge_slashes`);
/// 4. and 5. when the path holds `%2F`, `%5C` or `\`: 2 and 3 with those read as `/`
///    (servers that decode encoded slashes, and those that take `\` for `/`);
/// 6. to 9. when it holds `;`: each of those with every segment's `;parameters` dropped
///    before dot segments are resolved, as Java servlet containers do (`/..;/admin` is
///    `/admin` to Tomcat, `/..;/admin` to nginx).
pub fn views(path: &str) -> Result<Vec<Cow<'_, str>>, BadEscape> {
    if is_plain(path) {
        return Ok(vec![Cow::Borrowed(path)]);
    }
    let mut out = vec![Cow::Borrowed(path)];
    let decoded = decode_unreserved(path)?;
    let slashed = (decoded.contains("%2F") || decoded.contains("%5C") || decoded.contains('\\'))
        .then(|| {
            decoded
                .replace("%2F", "/")
                .replace("%5C", "/")
                .replace('\\', "/")
        });
    let mut bases = vec![decoded];
    bases.extend(slashed);
    if path.contains(';') {
        let stripped: Vec<String> = bases.iter().map(|b| without_parameters(b)).collect();
        bases.extend(stripped);
    }
    for d in &bases {
        for merge in [false, true] {
            let v = remove_dot_segments(d, merge);
            if !out.iter().any(|o| *o == v) {
                out.push(Cow::Owned(v));
            }
        }
    }
    Ok(out)
}

/// `path` with each segment cut at its first `;` (`/a;x/b;y=1` → `/a/b`).
fn without_parameters(path: &str) -> String {
    path.split('/')
        .map(|seg| seg.split_once(';').map_or(seg, |(s, _)| s))
        .collect::<Vec<_>>()
        .join("/")
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Decodes escapes of unreserved characters; other escapes stay, in upper case.
fn decode_unreserved(path: &str) -> Result<String, BadEscape> {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let b = path.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'%' {
            out.push(b[i]);
            i += 1;
            continue;
        }
        let (Some(hi), Some(lo)) = (
            b.get(i + 1).copied().and_then(hex),
            b.get(i + 2).copied().and_then(hex),
        ) else {
            return Err(BadEscape);
        };
        let v = hi << 4 | lo;
        if is_unreserved(v) {
            out.push(v);
        } else {
            out.extend_from_slice(&[b'%', HEX[hi as usize], HEX[lo as usize]]);
        }
        i += 3;
    }
    // Only ASCII bytes were added, and the input was UTF-8.
    Ok(String::from_utf8(out).unwrap_or_default())
}

/// Removes `.` and `..` segments (RFC 3986 §5.2.4), after merging runs of `/` when `merge`;
/// a path not starting with `/` (`*`, say) is returned as it is.
fn remove_dot_segments(path: &str, merge: bool) -> String {
    if !path.starts_with('/') {
        return path.to_string();
    }
    let segments: Vec<&str> = path.split('/').skip(1).collect();
    let mut kept: Vec<&str> = Vec::with_capacity(segments.len());
    let mut trailing_slash = false;
    for (i, s) in segments.iter().enumerate() {
        let last = i + 1 == segments.len();
        match *s {
            "" if !merge && !last => kept.push(""),
            "" | "." => trailing_slash = last,
            ".." => {
                kept.pop();
                trailing_slash = last;
            }
            s => {
                kept.push(s);
                trailing_slash = false;
            }
        }
    }
    let mut out = String::with_capacity(path.len());
    for s in &kept {
        out.push('/');
        out.push_str(s);
    }
    if out.is_empty() || trailing_slash {
        out.push('/');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn v(p: &str) -> Vec<String> {
        views(p)
            .unwrap()
            .into_iter()
            .map(|c| c.into_owned())
            .collect()
    }

    #[test]
    fn plain_paths_have_one_reading() {
        for p in [
            "/",
            "/v1/chat/completions",
            "/a.b/c..d/.e/f.",
            "/x?",
            "*",
            "",
        ] {
            assert!(is_plain(p), "{p}");
            assert_eq!(v(p), [p]);
        }
    }

    #[test]
    fn unusual_paths_have_each_servers_reading() {
        assert_eq!(
            v("/v1/%63hat/completions"),
            ["/v1/%63hat/completions", "/v1/chat/completions"]
        );
        assert_eq!(v("/public/../admin"), ["/public/../admin", "/admin"]);
        assert_eq!(v("//admin"), ["//admin", "/admin"]);
        assert_eq!(v("/a/./b/"), ["/a/./b/", "/a/b/"]);
        assert_eq!(v("/a/b/.."), ["/a/b/..", "/a/"]);
        assert_eq!(v("/../../x"), ["/../../x", "/x"]);
        assert_eq!(v("/%2e%2E/admin"), ["/%2e%2E/admin", "/admin"]);
        // Reserved escapes stay escaped (upper case); encoded slashes get a third reading.
        assert_eq!(v("/a%2fb"), ["/a%2fb", "/a%2Fb", "/a/b"]);
        // `..` after an empty segment: servers that merge slashes and those that do not.
        assert_eq!(v("/v1//../admin"), ["/v1//../admin", "/v1/admin", "/admin"]);
        assert_eq!(v("/a//b"), ["/a//b", "/a/b"]);
        assert_eq!(v("/a//."), ["/a//.", "/a//", "/a/"]);
        assert_eq!(v("/ok/..%2F..%2Fadmin"), ["/ok/..%2F..%2Fadmin", "/admin"]);
        assert_eq!(v("/ok\\..\\admin"), ["/ok\\..\\admin", "/admin"]);
        assert_eq!(v("/a%20b"), ["/a%20b"]);
        // Servlet path parameters: `..;` is a dot segment to Tomcat, a name to nginx.
        assert_eq!(v("/public/..;/admin"), ["/public/..;/admin", "/admin"]);
        assert_eq!(
            v("/admin;jsessionid=1/x"),
            ["/admin;jsessionid=1/x", "/admin/x"]
        );
        assert_eq!(v("/a%3f"), ["/a%3f", "/a%3F"]);
    }

    #[test]
    fn malformed_escapes_are_refused() {
        for p in ["/a%", "/a%2", "/a%zz", "/a%2g/b", "/%%41"] {
            assert_eq!(views(p), Err(BadEscape), "{p}");
        }
    }

    proptest! {
        #[test]
        fn readings_never_panic_and_normal_forms_are_stable(
            p in "(/|[a-z]|\\.|;|%2[eEfF]|%5[cC]|%6[13]|\\\\|%){0,24}"
        ) {
            let Ok(vs) = views(&p) else { return Ok(()) };
            prop_assert!(!vs.is_empty() && vs.len() <= 9);
            prop_assert_eq!(vs[0].as_ref(), p.as_str());
            // No reading after the first holds a dot segment; the last merged one no `//`.
            for r in &vs[1..] {
                prop_assert!(views(r).is_ok(), "{:?}", r);
                if r.starts_with('/') {
                    prop_assert!(!r.contains("/./") && !r.contains("/../"), "{:?}", r);
                    prop_assert!(!r.ends_with("/.") && !r.ends_with("/.."), "{:?}", r);
                }
            }
            if p.starts_with('/') {
                let merged = remove_dot_segments(&decode_unreserved(&p).unwrap(), true);
                prop_assert!(!merged.contains("//"), "{:?}", merged);
                prop_assert!(vs.iter().any(|v| *v == merged));
            }
        }
    }
}
