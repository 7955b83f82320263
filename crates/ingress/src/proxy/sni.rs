//! Ties a request to the TLS connection it came on. The server name a client gave in its
//! TLS handshake (SNI) chose the certificate, and with it the gateway whose TLS settings
//! the connection has; the request's host (`:authority` in HTTP/2, the absolute target or
//! `Host` in HTTP/1.1) chooses the route, and with it the authentication. When the two
//! name different hosts, a client could shake hands as one gateway and be served as
//! another, so such a request is answered `421 Misdirected Request` (RFC 9110 §15.5.20),
//! as nginx and Envoy do: a client that reused a connection for another name covered by
//! the certificate (HTTP/2 coalescing, RFC 9113 §9.1.1) retries on a connection of its
//! own. Names compare without case, port or trailing dot. A handshake without SNI (a
//! client that connected to an address) got the first gateway's certificate: its
//! requests must name a host that the same gateway's certificate is chosen for.

use crate::config::{host_matches, TlsEntry};
use crate::refusal::Refusal;

/// A host or server name as compared: without port and trailing dot.
fn bare(host: &str) -> &str {
    let h = crate::config::strip_port(host);
    h.strip_suffix('.').unwrap_or(h)
}

/// Which TLS entry the certificate for `name` comes from (the first, when none names it),
/// as [`super::tls`] chooses it.
fn entry_for(tls: &[TlsEntry], name: Option<&str>) -> usize {
    pick(tls.iter().map(|e| e.hosts.as_slice()), name)
}

/// Of gateways serving these hosts, in order, the one whose certificate a handshake naming
/// `name` gets: the first whose hosts match it, else the first.
pub(crate) fn pick<'a>(mut hosts: impl Iterator<Item = &'a [String]>, name: Option<&str>) -> usize {
    name.and_then(|n| hosts.position(|hs| hs.iter().any(|h| host_matches(h, n))))
        .unwrap_or(0)
}

/// The refusal for a request naming `host` on a TLS connection whose handshake named
/// `sni`, or `None` when they agree.
pub(crate) fn misdirected(tls: &[TlsEntry], sni: Option<&str>, host: &str) -> Option<Refusal> {
    let agrees = match sni {
        Some(sni) => bare(sni).eq_ignore_ascii_case(bare(host)),
        None => entry_for(tls, None) == entry_for(tls, Some(host)),
    };
    (!agrees).then(|| {
        Refusal::new(
            421,
            "invalid_request_error",
            "misdirected_request",
            "This connection does not serve the host the request names; open a new connection to it.",
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn entries() -> Vec<TlsEntry> {
        let entry = |host: &str| TlsEntry {
            gateway: host.into(),
            hosts: vec![host.into()],
            cert: PathBuf::new(),
            key: PathBuf::new(),
            client_ca: None,
            client_crls: Vec::new(),
            client_cert_optional: false,
        };
        vec![entry("open.test"), entry("*.locked.test")]
    }

    fn code(sni: Option<&str>, host: &str) -> Option<&'static str> {
        misdirected(&entries(), sni, host).map(|r| r.code)
    }

    #[test]
    fn the_request_host_must_be_the_handshake_name() {
        assert_eq!(code(Some("open.test"), "open.test"), None);
        assert_eq!(code(Some("open.test"), "OPEN.test:8443"), None);
        assert_eq!(code(Some("open.test"), "open.test."), None);
        assert_eq!(code(Some("a.locked.test"), "a.locked.test:443"), None);
        assert_eq!(
            code(Some("open.test"), "a.locked.test"),
            Some("misdirected_request")
        );
        // Same certificate entry, another name: still another route's host.
        assert_eq!(
            code(Some("a.locked.test"), "b.locked.test"),
            Some("misdirected_request")
        );
        assert_eq!(code(Some("open.test"), ""), Some("misdirected_request"));
        let r = misdirected(&entries(), Some("open.test"), "x.test").unwrap();
        assert_eq!(r.status, 421);
    }

    #[test]
    fn without_sni_the_host_must_choose_the_default_certificate() {
        assert_eq!(code(None, "open.test"), None);
        assert_eq!(code(None, "127.0.0.1:8443"), None);
        assert_eq!(code(None, "elsewhere.test"), None);
        assert_eq!(code(None, "a.locked.test"), Some("misdirected_request"));
        assert_eq!(code(None, "a.locked.test."), Some("misdirected_request"));
    }
}
