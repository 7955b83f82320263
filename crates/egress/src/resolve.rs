//! Names of upstream hosts: the configured static map first, then the system resolver.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};

/// Resolves upstream host names.
#[derive(Debug, Clone, Default)]
pub struct Resolver {
    hosts: HashMap<String, IpAddr>,
}

impl Resolver {
    /// A resolver that knows `hosts` (lower-case names) before asking the system.
    pub fn new(hosts: HashMap<String, IpAddr>) -> Self {
        Resolver { hosts }
    }

    /// The address to connect to for `host` (a name, an IP, or a bracketed IPv6 literal).
    /// An address from the system resolver is skipped when it is node-internal
    /// ([`is_internal`]) or `is_pod` says a pod holds it; a name with only such addresses
    /// is refused ([`INTERNAL`], `PermissionDenied`).
    pub async fn resolve(
        &self,
        host: &str,
        port: u16,
        is_pod: impl Fn(IpAddr) -> bool,
    ) -> io::Result<SocketAddr> {
        let bare = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        if let Ok(ip) = bare.parse::<IpAddr>() {
            return Ok(SocketAddr::new(ip, port));
        }
        if let Some(ip) = self.hosts.get(bare) {
            return Ok(SocketAddr::new(*ip, port));
        }
        pick(tokio::net::lookup_host((bare, port)).await?, is_pod)
    }
}

/// The first address of a system resolver's answer that a name may lead to.
fn pick(
    addrs: impl IntoIterator<Item = SocketAddr>,
    is_pod: impl Fn(IpAddr) -> bool,
) -> io::Result<SocketAddr> {
    let mut internal = false;
    for addr in addrs {
        let ip = palisade_policy::cidr::reached_address(addr.ip());
        if is_internal(ip) || is_pod(ip) {
            internal = true;
            continue;
        }
        return Ok(addr);
    }
    Err(if internal {
        io::Error::new(io::ErrorKind::PermissionDenied, INTERNAL)
    } else {
        io::Error::new(io::ErrorKind::NotFound, "name has no address")
    })
}

/// Why a name was refused: it resolves only to addresses inside the node or to pods.
pub const INTERNAL: &str =
    "name resolves only to loopback, link-local or other node-internal addresses, or to pods";

/// Addresses a name from DNS may not lead the gateway to
/// ([`palisade_policy::cidr::is_node_internal`]: its own host, the link-local range where
/// cloud metadata services answer, ...), as the DNS proxy opens none of them for a pod. A
/// DNS name someone else controls could otherwise point an allowed wildcard at them (SSRF,
/// DNS rebinding). Pods' addresses are refused the same way ([`Resolver::resolve`]): pods
/// are reached by pod rules, never by name, as the DNS proxy never opens them either. The
/// operator's static names (`hosts`, `hostsFile`) and IP literals, which address rules
/// decide, are not held to this.
pub fn is_internal(ip: IpAddr) -> bool {
    palisade_policy::cidr::is_node_internal(ip)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_addresses() {
        for ip in [
            "127.0.0.1",
            "127.9.9.9",
            "169.254.169.254",
            "0.0.0.0",
            "::1",
            "::",
            "fe80::1",
            "fd00:ec2::254",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
        ] {
            assert!(is_internal(ip.parse().unwrap()), "{ip}");
        }
        for ip in [
            "10.0.0.1",
            "8.8.8.8",
            "2001:db8::1",
            "fd00::1",
            "192.168.1.1",
        ] {
            assert!(!is_internal(ip.parse().unwrap()), "{ip}");
        }
    }

    #[tokio::test]
    async fn a_name_from_dns_may_not_lead_to_loopback_but_a_static_one_may() {
        // `localhost` comes from the system resolver (/etc/hosts): refused.
        let r = Resolver::new(HashMap::new());
        let e = r.resolve("localhost", 80, |_| false).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::PermissionDenied, "{e}");
        // The operator's static name and an IP literal are not held to it.
        let r = Resolver::new(HashMap::from([(
            "upstream.test".to_string(),
            "127.0.0.1".parse().unwrap(),
        )]));
        assert!(r.resolve("upstream.test", 80, |_| true).await.is_ok());
        assert!(r.resolve("127.0.0.1", 80, |_| true).await.is_ok());
    }

    #[test]
    fn a_name_from_dns_may_not_lead_to_a_pod() {
        let pod: IpAddr = "10.1.2.3".parse().unwrap();
        let is_pod = |ip: IpAddr| ip == pod;
        let addr = |s: &str| SocketAddr::new(s.parse().unwrap(), 443);
        // Only the pod (also spelled IPv4-mapped, or behind NAT64's well-known or
        // local-use prefix): refused as internal.
        for answer in [
            vec![addr("10.1.2.3")],
            vec![addr("::ffff:10.1.2.3")],
            vec![addr("64:ff9b::a01:203")],
            vec![addr("64:ff9b:1:a01:2:300::")],
        ] {
            let e = pick(answer, is_pod).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::PermissionDenied, "{e}");
        }
        // The first other address is used.
        let got = pick(vec![addr("10.1.2.3"), addr("10.9.9.9")], is_pod).unwrap();
        assert_eq!(got, addr("10.9.9.9"));
        // No address at all is not a refusal.
        let e = pick(Vec::new(), is_pod).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
    }
}
