//! What a request names before it is routed, checked the same way for HTTP/1.1 and HTTP/2
//! (whose `:method`, `:authority` and `:path` hyper turns into the request's method and
//! URI): one host, said once; an origin-form path; no tunnel. A request that names its
//! target ambiguously is refused rather than routed by one reading and served by another.

use crate::refusal::Refusal;
use http::{header, Method, Request, Version};

fn bad_host() -> Refusal {
    Refusal::new(
        400,
        "invalid_request_error",
        "invalid_host",
        "The request names its host more than once or ambiguously.",
    )
}

/// Why the request's target cannot be routed, or `None` when it can.
pub(crate) fn flaw<B>(req: &Request<B>) -> Option<Refusal> {
    // A reverse proxy opens no tunnels (HTTP/1.1 `CONNECT`, HTTP/2 `CONNECT`).
    if req.method() == Method::CONNECT {
        return Some(Refusal::new(
            405,
            "invalid_request_error",
            "method_not_allowed",
            "CONNECT is not served here.",
        ));
    }
    let mut hosts = req.headers().get_all(header::HOST).iter();
    let host = hosts.next();
    // Two `Host` fields (RFC 9112 §3.2: a 400).
    if hosts.next().is_some() {
        return Some(bad_host());
    }
    if let Some(a) = req.uri().authority() {
        // RFC 9113 §8.3.1: no userinfo in `:authority`.
        if a.as_str().contains('@') {
            return Some(bad_host());
        }
        // HTTP/2: `Host`, when sent too, must name what `:authority` names (RFC 9113
        // §8.3.1); routing follows `:authority`. (HTTP/1.1 ignores `Host` when the target
        // is absolute, RFC 9112 §3.2.2.)
        if req.version() == Version::HTTP_2
            && host.is_some_and(|h| !h.as_bytes().eq_ignore_ascii_case(a.as_str().as_bytes()))
        {
            return Some(bad_host());
        }
    }
    // The path routes are matched on must be the one the backend gets: origin form, or `*`
    // for OPTIONS (HTTP/2 lets `:path` be `?query` alone, which reads as `/`).
    let target = req.uri().path_and_query().map_or("/", |p| p.as_str());
    if !(target.starts_with('/') || target == "*" && req.method() == Method::OPTIONS) {
        return Some(Refusal::new(
            400,
            "invalid_request_error",
            "invalid_path",
            "The request target is not a path.",
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(method: &str, uri: &str, version: Version, hosts: &[&str]) -> Option<&'static str> {
        let mut b = Request::builder().method(method).uri(uri).version(version);
        for h in hosts {
            b = b.header(header::HOST, *h);
        }
        flaw(&b.body(()).unwrap()).map(|r| r.code)
    }

    #[test]
    fn ambiguous_targets_are_refused() {
        let h2 = Version::HTTP_2;
        let h1 = Version::HTTP_11;
        assert_eq!(code("GET", "/v1/models", h1, &["gw"]), None);
        assert_eq!(code("GET", "https://gw/v1", h2, &[]), None);
        assert_eq!(code("GET", "https://gw/v1", h2, &["GW"]), None);
        assert_eq!(code("OPTIONS", "*", h1, &["gw"]), None);
        // HTTP/1.1 with an absolute target ignores Host.
        assert_eq!(code("GET", "http://gw/v1", h1, &["other"]), None);
        assert_eq!(
            code("CONNECT", "gw:443", h1, &["gw"]),
            Some("method_not_allowed")
        );
        assert_eq!(
            code("GET", "/v1", h1, &["gw", "admin"]),
            Some("invalid_host")
        );
        assert_eq!(
            code("GET", "https://gw/v1", h2, &["admin"]),
            Some("invalid_host")
        );
        assert_eq!(
            code("GET", "https://u@gw/v1", h2, &[]),
            Some("invalid_host")
        );
        assert_eq!(code("GET", "*", h1, &["gw"]), Some("invalid_path"));
        let mut r = Request::get("/").version(h2).body(()).unwrap();
        *r.uri_mut() = http::Uri::from_parts({
            let mut p = http::uri::Parts::default();
            p.scheme = Some(http::uri::Scheme::HTTPS);
            p.authority = Some("gw".parse().unwrap());
            p.path_and_query = Some("?x=/admin".parse().unwrap());
            p
        })
        .unwrap();
        assert_eq!(r.uri().path(), "/");
        assert_eq!(flaw(&r).map(|r| r.code), Some("invalid_path"));
    }
}
