//! Requests inside intercepted TLS (HTTP/1.1 or HTTP/2): which are malformed for a tunnel,
//! and which name a server other than the one the tunnel was opened to (domain fronting).
//!
//! HTTP/2 carries the target in pseudo-header fields (`:method`, `:scheme`, `:authority`,
//! `:path`) that hyper turns into the request's URI; HTTP/1.1 in the request line and
//! `Host`. Both are checked here the same way, so a request is refused for what it says,
//! whichever version said it.

use hyper::header::HOST;
use hyper::{Method, Request};

use super::normal_host;

/// Why a request cannot be served inside a tunnel to one server (the `400`'s body), or
/// `None` when it can.
pub(crate) fn malformed<B>(req: &Request<B>) -> Option<&'static str> {
    // A tunnel inside the tunnel (HTTP/1.1 `CONNECT`, HTTP/2 `CONNECT` or extended
    // `CONNECT`) would carry bytes no rule looks at.
    if req.method() == Method::CONNECT {
        return Some("palisade: bad request (connect-inside-tunnel)\n");
    }
    // The tunnel is TLS: a request for `http://` (HTTP/2 `:scheme`) asks for something else.
    if req.uri().scheme_str().is_some_and(|s| s != "https") {
        return Some("palisade: bad request (scheme-not-https)\n");
    }
    // RFC 9113 §8.3.1: no userinfo in `:authority` for https (servers read `a@b` apart).
    if req
        .uri()
        .authority()
        .is_some_and(|a| a.as_str().contains('@'))
    {
        return Some("palisade: bad request (authority-userinfo)\n");
    }
    // The path policy is decided on must be one an origin server serves: it starts with
    // `/`, or is `*` for `OPTIONS` (HTTP/2 lets `:path` be any visible text).
    let target = req.uri().path_and_query().map_or("/", |p| p.as_str());
    if !(target.starts_with('/') || target == "*" && req.method() == Method::OPTIONS) {
        return Some("palisade: bad request (path)\n");
    }
    None
}

/// Whether any `Host` field, or the URI's authority (HTTP/2 `:authority`, an absolute-form
/// HTTP/1.1 target), names a server other than `host` or a port other than `port`.
pub(crate) fn names_other_server<B>(req: &Request<B>, host: &str, port: u16) -> bool {
    let other = |name: &str, p: Option<u16>| {
        !normal_host(name).eq_ignore_ascii_case(host) || p.is_some_and(|p| p != port)
    };
    let by_host = req
        .headers()
        .get_all(HOST)
        .iter()
        .any(|v| match v.to_str() {
            Ok(v) => {
                let (name, p) = split_port(v);
                match p {
                    Ok(p) => other(name, p),
                    Err(()) => true,
                }
            }
            Err(_) => true,
        });
    let by_authority = req
        .uri()
        .authority()
        .is_some_and(|a| other(a.host(), a.port_u16()));
    by_host || by_authority
}

/// `host[:port]` → (`host`, the port when one is given); `Err` for a port that is not a
/// number. An empty port (`host:`) is no port (RFC 3986 §3.2.3). IPv6 literals keep their
/// brackets.
fn split_port(v: &str) -> (&str, Result<Option<u16>, ()>) {
    let cut = if v.starts_with('[') {
        v.find(']').map(|i| i + 1)
    } else {
        v.rfind(':')
    };
    match cut {
        Some(i) if i < v.len() => {
            let (name, rest) = v.split_at(i);
            match rest.strip_prefix(':') {
                Some("") => (name, Ok(None)),
                Some(p) => (name, p.parse().map(Some).map_err(|_| ())),
                None => (v, Err(())),
            }
        }
        _ => (v, Ok(None)),
    }
}

/// The `Host` value for a request to `host:port` over TLS (the port only when not 443).
pub(crate) fn host_value(host: &str, port: u16) -> String {
    if port == 443 {
        host.to_string()
    } else {
        format!("{host}:{port}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(uri: &str, method: &str, hosts: &[&str]) -> Request<()> {
        let mut b = Request::builder().method(method).uri(uri);
        for h in hosts {
            b = b.header(HOST, *h);
        }
        b.body(()).unwrap()
    }

    #[test]
    fn tunnels_in_tunnels_other_schemes_userinfo_and_odd_paths_are_malformed() {
        let m = |uri: &str, method: &str| malformed(&req(uri, method, &[]));
        assert_eq!(m("https://hub.test/x", "GET"), None);
        assert_eq!(m("/x", "GET"), None);
        assert_eq!(m("*", "OPTIONS"), None);
        assert!(m("hub.test:443", "CONNECT").unwrap().contains("connect"));
        assert!(m("http://hub.test/x", "GET").unwrap().contains("scheme"));
        assert!(m("https://u@hub.test/x", "GET")
            .unwrap()
            .contains("userinfo"));
        assert!(m("*", "GET").unwrap().contains("path"));
        let mut q = req("/", "GET", &[]);
        *q.uri_mut() = hyper::Uri::from_parts({
            let mut p = hyper::http::uri::Parts::default();
            p.scheme = Some(hyper::http::uri::Scheme::HTTPS);
            p.authority = Some("hub.test".parse().unwrap());
            p.path_and_query = Some("?q=1".parse().unwrap());
            p
        })
        .unwrap();
        assert_eq!(q.uri().path(), "/", "what the policy would see");
        assert!(malformed(&q).unwrap().contains("path"));
        assert!(m("https://hub.test", "GET").is_none());
    }

    #[test]
    fn every_host_field_and_the_authority_must_name_the_tunnel() {
        let other = |uri: &str, hosts: &[&str]| {
            names_other_server(&req(uri, "GET", hosts), "hub.test", 8443)
        };
        assert!(!other("/", &["hub.test"]));
        assert!(!other("/", &["HUB.test.:8443"]));
        assert!(!other("/", &["hub.test:"]));
        assert!(!other("https://hub.test:8443/", &[]));
        assert!(!other("https://hub.test/", &["hub.test"]));
        assert!(other("/", &["hub.test", "evil.test"]));
        assert!(other("/", &["hub.test:9999"]));
        assert!(other("/", &["hub.test:x"]));
        assert!(other("https://evil.test/", &["hub.test"]));
        assert!(other("https://hub.test:9999/", &[]));
        assert!(other("/", &["[::1]:8443"]));
    }

    proptest::proptest! {
        #[test]
        fn any_host_value_is_read_without_panicking(v in proptest::collection::vec(proptest::num::u8::ANY, 0..40)) {
            if let Ok(h) = hyper::header::HeaderValue::from_bytes(&v) {
                let mut r = Request::get("/").body(()).unwrap();
                r.headers_mut().insert(HOST, h);
                let _ = names_other_server(&r, "hub.test", 443);
            }
            let text = String::from_utf8_lossy(&v);
            let (name, _) = split_port(&text);
            proptest::prop_assert!(text.starts_with(name));
        }

        #[test]
        fn name_and_port_round_trip(name in "[a-z0-9-]{1,10}(\\.[a-z0-9-]{1,10}){0,3}", port in proptest::num::u16::ANY) {
            let v = format!("{name}:{port}");
            proptest::prop_assert_eq!(split_port(&v), (name.as_str(), Ok(Some(port))));
            let r = req("/", "GET", &[&v]);
            proptest::prop_assert_eq!(names_other_server(&r, &name, port), false);
            proptest::prop_assert!(names_other_server(&r, &name, port.wrapping_add(1)));
        }
    }

    #[test]
    fn ports_split_off_host_values() {
        assert_eq!(split_port("a.test"), ("a.test", Ok(None)));
        assert_eq!(split_port("a.test:81"), ("a.test", Ok(Some(81))));
        assert_eq!(split_port("a.test:"), ("a.test", Ok(None)));
        assert_eq!(split_port("a.test:99999"), ("a.test", Err(())));
        assert_eq!(split_port("[::1]:81"), ("[::1]", Ok(Some(81))));
        assert_eq!(split_port("[::1]"), ("[::1]", Ok(None)));
        assert_eq!(split_port("[::1]x"), ("[::1]x", Err(())));
        assert_eq!(host_value("a.test", 443), "a.test");
        assert_eq!(host_value("a.test", 8443), "a.test:8443");
    }
}
