//! SNI / DNS / IP agreement: where the DNS proxy runs, a redirected connection is allowed
//! only if the destination IP is one that this pod's own DNS answers gave for the name
//! it presents (SNI or `Host`), which closes the shared-CDN-IP hole of IP-only rules.
//!
//! The gateway asks through [`ResolvedNames`]; under `palisade up` the binary hands it the
//! DNS proxy's own records (`palisade_dns::Resolutions`: bounded, saved across restarts).
//! `AnswerBook` is a minimal in-memory implementation for this crate's tests.

#[cfg(test)]
use std::collections::HashMap;
use std::net::IpAddr;
#[cfg(test)]
use std::sync::Mutex;
#[cfg(test)]
use std::time::{Duration, Instant};

/// What the DNS path told each client.
pub trait ResolvedNames: Send + Sync + std::fmt::Debug {
    /// `Some(true)`: `client` resolved `name` to `ip` (still within the TTL);
    /// `Some(false)`: the client's names are known and this is not among them;
    /// `None`: nothing is known about this client (its DNS does not go through us).
    fn agrees(&self, client: IpAddr, name: &str, ip: IpAddr) -> Option<bool>;
}

/// Answers per client: name → addresses with their expiry.
#[cfg(test)]
type Names = HashMap<String, Vec<(IpAddr, Instant)>>;

/// An in-memory record of DNS answers, bounded per client.
#[cfg(test)]
#[derive(Debug, Default)]
pub struct AnswerBook {
    clients: Mutex<HashMap<IpAddr, Names>>,
}

/// Names kept per client (the oldest are dropped first when full).
#[cfg(test)]
const MAX_NAMES: usize = 4096;

#[cfg(test)]
impl AnswerBook {
    /// An empty book.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records that `client` was told `name` → `ip` for `ttl`.
    pub fn record(&self, client: IpAddr, name: &str, ip: IpAddr, ttl: Duration) {
        let name = crate::config::normalize_host(name);
        let until = Instant::now() + ttl;
        let Ok(mut clients) = self.clients.lock() else {
            return;
        };
        let names = clients.entry(client).or_default();
        if names.len() >= MAX_NAMES && !names.contains_key(&name) {
            let now = Instant::now();
            names.retain(|_, ips| ips.iter().any(|(_, t)| *t > now));
            if names.len() >= MAX_NAMES {
                return;
            }
        }
        let ips = names.entry(name).or_default();
        match ips.iter_mut().find(|(a, _)| *a == ip) {
            Some(e) => e.1 = e.1.max(until),
            None => ips.push((ip, until)),
        }
    }
}

#[cfg(test)]
impl ResolvedNames for AnswerBook {
    fn agrees(&self, client: IpAddr, name: &str, ip: IpAddr) -> Option<bool> {
        let clients = self.clients.lock().ok()?;
        let names = clients.get(&client)?;
        let now = Instant::now();
        let name = crate::config::normalize_host(name);
        Some(
            names
                .get(&name)
                .is_some_and(|ips| ips.iter().any(|(a, t)| *a == ip && *t > now)),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn only_what_this_client_was_told_agrees() {
        let b = AnswerBook::new();
        let (pod, other) = (ip("10.0.0.5"), ip("10.0.0.6"));
        b.record(
            pod,
            "Models.Test.",
            ip("203.0.113.7"),
            Duration::from_secs(60),
        );
        assert_eq!(b.agrees(pod, "models.test", ip("203.0.113.7")), Some(true));
        // Same name, another address (a CDN neighbour): refused.
        assert_eq!(b.agrees(pod, "models.test", ip("203.0.113.8")), Some(false));
        // A name it never resolved, at an address it did: refused.
        assert_eq!(b.agrees(pod, "evil.test", ip("203.0.113.7")), Some(false));
        // A client whose DNS we never saw: unknown.
        assert_eq!(b.agrees(other, "models.test", ip("203.0.113.7")), None);
    }

    #[test]
    fn answers_expire() {
        let b = AnswerBook::new();
        let pod = ip("10.0.0.5");
        b.record(pod, "a.test", ip("192.0.2.1"), Duration::ZERO);
        assert_eq!(b.agrees(pod, "a.test", ip("192.0.2.1")), Some(false));
    }
}
