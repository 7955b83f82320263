//! Hop-by-hop headers (RFC 9110 §7.6.1): they describe one connection, so a proxy never
//! passes them on; and the one field HTTP/2 splits that HTTP/1.1 does not (`cookie`).
//! Shared by the egress and ingress gateways.

use hyper::http::header::{HeaderMap, HeaderName, HeaderValue, CONNECTION, COOKIE};

/// The fixed hop-by-hop names (lower case, as `HeaderName` stores them).
pub const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Whether `name` is one of the fixed hop-by-hop headers.
pub fn is_hop_by_hop(name: &HeaderName) -> bool {
    HOP_BY_HOP.contains(&name.as_str())
}

/// Removes the hop-by-hop headers present, and those the `Connection` header names.
/// Costs one pass over the names when there are none, the common case.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    if !headers.keys().any(is_hop_by_hop) {
        return;
    }
    // Names `Connection` lists besides the usual `keep-alive` / `close` (rare).
    let mut listed: Vec<HeaderName> = Vec::new();
    for v in headers.get_all(CONNECTION) {
        for t in v.to_str().unwrap_or("").split(',').map(str::trim) {
            if t.is_empty()
                || t.eq_ignore_ascii_case("keep-alive")
                || t.eq_ignore_ascii_case("close")
            {
                continue;
            }
            listed.extend(HeaderName::try_from(t).ok());
        }
    }
    let present: Vec<HeaderName> = headers
        .keys()
        .filter(|k| is_hop_by_hop(k))
        .cloned()
        .collect();
    for n in present.into_iter().chain(listed) {
        headers.remove(n);
    }
}

/// Joins the `cookie` fields HTTP/2 allows to be split into the one HTTP/1.1 wants
/// (RFC 9113 §8.2.3).
pub fn fold_cookies(headers: &mut HeaderMap) {
    let values = headers.get_all(COOKIE);
    if values.iter().nth(1).is_none() {
        return;
    }
    let joined: Vec<&[u8]> = values.iter().map(HeaderValue::as_bytes).collect();
    let joined = joined.join(&b"; "[..]);
    if let Ok(v) = HeaderValue::from_bytes(&joined) {
        headers.insert(COOKIE, v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_cookies_are_joined() {
        let mut h = HeaderMap::new();
        h.append(COOKIE, HeaderValue::from_static("a=1"));
        h.append(COOKIE, HeaderValue::from_static("b=2"));
        fold_cookies(&mut h);
        let all: Vec<_> = h.get_all(COOKIE).iter().collect();
        assert_eq!(all, vec![HeaderValue::from_static("a=1; b=2")]);
    }

    #[test]
    fn one_cookie_is_left_alone() {
        let mut h = HeaderMap::new();
        h.insert(COOKIE, HeaderValue::from_static("a=1"));
        fold_cookies(&mut h);
        assert_eq!(h.get(COOKIE).unwrap(), "a=1");
    }

    #[test]
    fn hop_by_hop_headers_and_connection_listed_names_go() {
        let mut h = HeaderMap::new();
        h.insert(CONNECTION, HeaderValue::from_static("close, X-Private"));
        h.insert("x-private", HeaderValue::from_static("1"));
        h.insert("proxy-connection", HeaderValue::from_static("keep-alive"));
        h.insert("proxy-authenticate", HeaderValue::from_static("Basic"));
        h.insert("te", HeaderValue::from_static("trailers"));
        h.insert("x-kept", HeaderValue::from_static("1"));
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("x-kept"));
    }

    #[test]
    fn end_to_end_headers_are_untouched() {
        let mut h = HeaderMap::new();
        h.insert("content-type", HeaderValue::from_static("text/plain"));
        h.append("x-multi", HeaderValue::from_static("a"));
        h.append("x-multi", HeaderValue::from_static("b"));
        let before = h.clone();
        strip_hop_by_hop(&mut h);
        assert_eq!(h, before);
    }

    #[test]
    fn a_connection_header_with_junk_is_removed_without_panicking() {
        let mut h = HeaderMap::new();
        h.insert(
            CONNECTION,
            HeaderValue::from_bytes(b"\xff, , bad name").unwrap(),
        );
        h.insert("x-kept", HeaderValue::from_static("1"));
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
    }
}
