//! The client end of a connection ([`Peer`]) and the client certificate it proved
//! ([`ClientCert`]), formatted once for all the connection's requests.

use http::HeaderValue;
use std::net::SocketAddr;

/// The client end of a connection, formatted once for all its requests.
#[derive(Debug)]
pub struct Peer {
    /// Address and port.
    pub addr: SocketAddr,
    /// The address as text (WAF `REMOTE_ADDR`).
    pub ip: String,
    /// The per-client limit key: `ip:ADDRESS` for IPv4, `ip:PREFIX/64` for IPv6 (one host
    /// is usually given a whole /64, so per-address buckets would let it take 2^64 of them).
    pub limit_key: String,
    /// The address as an `X-Forwarded-For` value.
    pub forwarded_for: Option<HeaderValue>,
    /// The server name of the TLS handshake (SNI), when the gateway terminated TLS and
    /// the client sent one.
    pub sni: Option<Box<str>>,
    /// The client certificate verified in the handshake (mutual TLS).
    pub client_cert: Option<ClientCert>,
}

/// A client certificate verified by a gateway's `clientCaFile`.
#[derive(Debug, Clone)]
pub struct ClientCert {
    /// `namespace/name` of the gateway whose CAs verified it: only that gateway's routes
    /// take it as a credential.
    pub gateway: String,
    /// What it names: URI SANs (SPIFFE IDs), DNS SANs, subject common names.
    pub names: Vec<String>,
}

/// The rate-limit key of an anonymous client: its IPv4 address, or its IPv6 /64.
fn limit_key(ip: std::net::IpAddr) -> String {
    match ip.to_canonical() {
        std::net::IpAddr::V4(v4) => format!("ip:{v4}"),
        std::net::IpAddr::V6(v6) => {
            let s = v6.segments();
            let prefix = std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0);
            format!("ip:{prefix}/64")
        }
    }
}

impl Peer {
    /// Formats `addr`.
    pub fn new(addr: SocketAddr) -> Peer {
        let ip = addr.ip().to_string();
        Peer {
            addr,
            limit_key: limit_key(addr.ip()),
            forwarded_for: HeaderValue::from_str(&ip).ok(),
            ip,
            sni: None,
            client_cert: None,
        }
    }

    /// `addr`, on a TLS connection whose handshake named `sni`.
    pub fn with_sni(addr: SocketAddr, sni: Option<&str>) -> Peer {
        Peer {
            sni: sni.map(Box::from),
            ..Peer::new(addr)
        }
    }
}

#[cfg(test)]
mod limit_key_tests {
    #[test]
    fn ipv6_clients_share_their_64() {
        let k = |s: &str| super::limit_key(s.parse().unwrap());
        assert_eq!(k("10.0.0.1"), "ip:10.0.0.1");
        assert_eq!(k("::ffff:10.0.0.1"), "ip:10.0.0.1");
        assert_eq!(k("2001:db8:1:2::1"), "ip:2001:db8:1:2::/64");
        assert_eq!(k("2001:db8:1:2:ffff::9"), k("2001:db8:1:2::1"));
        assert_ne!(k("2001:db8:1:3::1"), k("2001:db8:1:2::1"));
    }
}
