//! Who may read the UI and the API of `palisade up`: they show the cluster's traffic (every
//! name a pod resolved, every path it requested), so they are served either on a loopback
//! address only to clients that name it (`Host: 127.0.0.1`, `localhost`, `[::1]`; a web page
//! that re-points its own name at 127.0.0.1, DNS rebinding, gets 403), or with a bearer
//! token on any address. Every response carries headers that keep the UI out of frames,
//! stop content sniffing and allow only the UI's own script and style
//! (Content-Security-Policy), so a string from an event can never run as script.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;

/// The Content-Security-Policy of every response: the UI's own script, style and API, and
/// nothing inline, nothing framed.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self'; connect-src 'self'; base-uri 'none'; \
     form-action 'none'; frame-ancestors 'none'";

/// Paths anyone who can connect may read: probes and the UI's static files (no data).
const OPEN_PATHS: &[&str] = &[
    "/healthz",
    "/readyz",
    "/",
    "/ui",
    "/ui/",
    "/ui/app.js",
    "/ui/app.css",
];

/// How requests are admitted.
#[derive(Clone, Debug)]
pub struct Access {
    token: Option<Arc<str>>,
    /// No check at all (chosen explicitly, for a metrics-only listener).
    open: bool,
}

impl Access {
    /// Loopback clients only (checked by their `Host` header): no token.
    pub fn local() -> Access {
        Access {
            token: None,
            open: false,
        }
    }

    /// Requests must carry `Authorization: Bearer <token>` (the probes and the UI's static
    /// files excepted).
    pub fn token(token: &str) -> Access {
        Access {
            token: Some(token.into()),
            open: false,
        }
    }

    /// Anyone who can connect, on any address, with any `Host`: only for a listener that
    /// serves nothing but `/metrics`, when the operator asked for Prometheus-style scraping
    /// without credentials (`palisade up --metrics-unauthenticated`).
    pub fn unauthenticated() -> Access {
        Access {
            token: None,
            open: true,
        }
    }

    /// The token in `path` (surrounding white space removed), which must not be empty.
    pub fn token_file(path: &Path) -> Result<Access, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("admin token file {}: {e}", path.display()))?;
        let token = text.trim();
        if token.len() < 16 || token.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(format!(
                "admin token file {}: the token must be at least 16 characters, without spaces",
                path.display()
            ));
        }
        Ok(Access::token(token))
    }

    /// Whether a server with this access may listen on `addr`: without a token, only on a
    /// loopback address.
    pub fn check_listen(&self, addr: SocketAddr) -> Result<(), String> {
        if self.token.is_none() && !self.open && !addr.ip().is_loopback() {
            return Err(format!(
                "admin address {addr} is not a loopback address: the UI and API show the \
                 cluster's traffic; listen on 127.0.0.1, or give --admin-token-file FILE \
                 (clients send Authorization: Bearer <token>)"
            ));
        }
        Ok(())
    }

    /// `router` behind this access check, with the security headers on every response.
    pub fn protect(self, router: Router) -> Router {
        router.layer(axum::middleware::from_fn_with_state(self, admit))
    }
}

fn refuse(status: StatusCode, code: &str, message: &str) -> Response {
    let mut r = (
        status,
        axum::Json(serde_json::json!({ "error": { "code": code, "message": message } })),
    )
        .into_response();
    if status == StatusCode::UNAUTHORIZED {
        r.headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    r
}

/// Whether the `Host` header names this machine's loopback interface (or is absent, as
/// from an HTTP/1.0 client, which no browser is).
fn loopback_host(headers: &HeaderMap) -> bool {
    let Some(host) = headers.get(header::HOST) else {
        return true;
    };
    let Ok(host) = host.to_str() else {
        return false;
    };
    let name = match host.strip_prefix('[') {
        Some(rest) => rest.split_once(']').map_or(rest, |(h, _)| h),
        None => host.rsplit_once(':').map_or(host, |(h, _)| h),
    };
    name.eq_ignore_ascii_case("localhost")
        || name.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Compares without stopping at the first difference.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// `Authorization: Bearer <token>`; the scheme's name is case-insensitive (RFC 9110
/// §11.1), as the ingress gateway reads it.
fn bearer_ok(headers: &HeaderMap, token: &str) -> bool {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, rest) = v.split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then_some(rest)
        })
        .is_some_and(|t| same(t.trim().as_bytes(), token.as_bytes()))
}

async fn admit(State(access): State<Access>, req: Request, next: Next) -> Response {
    let open = OPEN_PATHS.contains(&req.uri().path());
    let api = req.uri().path().starts_with("/api/");
    let refused = match &access.token {
        None if access.open => None,
        None if !loopback_host(req.headers()) => Some(refuse(
            StatusCode::FORBIDDEN,
            "host-not-allowed",
            "this server answers only to 127.0.0.1, localhost or [::1]",
        )),
        Some(t) if !open && !bearer_ok(req.headers(), t) => Some(refuse(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "send Authorization: Bearer <admin token> (the UI: open /ui/#token=<admin token>)",
        )),
        _ => None,
    };
    let mut r = match refused {
        Some(r) => r,
        None => next.run(req).await,
    };
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    if api {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(h: &str) -> HeaderMap {
        let mut m = HeaderMap::new();
        m.insert(header::HOST, HeaderValue::from_str(h).unwrap());
        m
    }

    #[test]
    fn the_bearer_scheme_is_read_whatever_its_case() {
        let with = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert(header::AUTHORIZATION, v.parse().unwrap());
            bearer_ok(&h, "s3cret")
        };
        for ok in ["Bearer s3cret", "bearer s3cret", "BEARER s3cret"] {
            assert!(with(ok), "{ok}");
        }
        for bad in ["Bearer other", "Basic s3cret", "Bearers3cret", "s3cret"] {
            assert!(!with(bad), "{bad}");
        }
        assert!(!bearer_ok(&HeaderMap::new(), "s3cret"));
    }

    #[test]
    fn only_loopback_names_pass_the_host_check() {
        for ok in [
            "127.0.0.1:9900",
            "127.0.0.1",
            "localhost:9900",
            "LOCALHOST",
            "[::1]:9900",
            "127.1.2.3:80",
        ] {
            assert!(loopback_host(&host(ok)), "{ok}");
        }
        for bad in [
            "rebind.attacker.test:9900",
            "10.0.0.1:9900",
            "localhost.attacker.test",
            "[::2]:9900",
            "127.0.0.1.nip.io",
            "",
        ] {
            assert!(!loopback_host(&host(bad)), "{bad}");
        }
    }

    #[test]
    fn a_token_is_needed_off_loopback() {
        let any: SocketAddr = "0.0.0.0:9900".parse().unwrap();
        let local: SocketAddr = "127.0.0.1:9900".parse().unwrap();
        assert!(Access::local().check_listen(local).is_ok());
        let e = Access::local().check_listen(any).unwrap_err();
        assert!(e.contains("--admin-token-file"), "{e}");
        assert!(Access::token("0123456789abcdef").check_listen(any).is_ok());
        assert!(Access::unauthenticated().check_listen(any).is_ok());
        let mut h = HeaderMap::new();
        assert!(!bearer_ok(&h, "0123456789abcdef"));
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer 0123456789abcdeX"),
        );
        assert!(!bearer_ok(&h, "0123456789abcdef"));
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer 0123456789abcdef"),
        );
        assert!(bearer_ok(&h, "0123456789abcdef"));
    }
}
