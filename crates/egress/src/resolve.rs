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
    pub async fn resolve(&self, host: &str, port: u16) -> io::Result<SocketAddr> {
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
        tokio::net::lookup_host((bare, port))
            .await?
            .next()
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "name has no address"))
    }
}
