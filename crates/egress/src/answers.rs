//! SNI / DNS / IP agreement: where the DNS proxy runs, a redirected connection is allowed
//! only if the destination IP is one that this pod's own DNS answers gave for the name
//! it presents (SNI or `Host`), which closes the shared-CDN-IP hole of IP-only rules.
//!
//! The gateway asks through [`ResolvedNames`]. Under `palisade up` the binary hands it the
//! DNS proxy's own records (`palisade_dns::Resolutions`: bounded, saved across restarts).
//! When the DNS proxy runs in another process or on other nodes, the gateway subscribes to
//! each proxy's answers feed ([`crate::answer_feed`]) and keeps what it hears in an
//! [`AnswerBook`]: in memory, bounded, every answer expiring with its TTL.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// What the DNS path told each client.
pub trait ResolvedNames: Send + Sync + std::fmt::Debug {
    /// `Some(true)`: `client` resolved `name` to `ip` (still within the TTL);
    /// `Some(false)`: the client's names are known and this is not among them;
    /// `None`: nothing is known about this client (its DNS does not go through us).
    fn agrees(&self, client: IpAddr, name: &str, ip: IpAddr) -> Option<bool>;
}

/// How much an [`AnswerBook`] holds at most.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BookBounds {
    /// Clients (pods) tracked; a new client beyond it is not recorded (it stays unknown,
    /// so its connections are not held to answers) and counted in [`AnswerBook::refused`].
    pub clients: usize,
    /// Names per client; beyond it the name whose answers expire soonest gives way.
    pub names_per_client: usize,
    /// Addresses per (client, name); beyond it the soonest to expire gives way.
    pub ips_per_name: usize,
    /// Longest validity accepted for one answer (longer TTLs are cut to it).
    pub max_ttl: Duration,
}

impl Default for BookBounds {
    fn default() -> Self {
        BookBounds {
            clients: 65_536,
            names_per_client: 4_096,
            ips_per_name: 64,
            max_ttl: Duration::from_secs(24 * 3600),
        }
    }
}

/// Answers per client: name → addresses with their expiry.
type Names = HashMap<String, Vec<(IpAddr, Instant)>>;

/// An in-memory record of DNS answers per client, bounded ([`BookBounds`]) and expiring.
#[derive(Debug, Default)]
pub struct AnswerBook {
    clients: Mutex<HashMap<IpAddr, Names>>,
    bounds: BookBounds,
    refused: AtomicU64,
}

impl AnswerBook {
    /// An empty book with the default bounds.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty book with `bounds` (each at least 1).
    pub fn with_bounds(bounds: BookBounds) -> Self {
        AnswerBook {
            bounds: BookBounds {
                clients: bounds.clients.max(1),
                names_per_client: bounds.names_per_client.max(1),
                ips_per_name: bounds.ips_per_name.max(1),
                max_ttl: bounds.max_ttl,
            },
            ..Self::default()
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, Names>> {
        // Every update is a single insert, push or retain: data stays consistent after a
        // panic elsewhere.
        self.clients.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records that `client` was told `name` → `ip` for `ttl`. Returns whether it was
    /// recorded (false only when the client bound is reached).
    pub fn record(&self, client: IpAddr, name: &str, ip: IpAddr, ttl: Duration) -> bool {
        self.record_at(client, name, ip, ttl, Instant::now())
    }

    fn record_at(
        &self,
        client: IpAddr,
        name: &str,
        ip: IpAddr,
        ttl: Duration,
        now: Instant,
    ) -> bool {
        let name = crate::config::normalize_host(name);
        let until = now + ttl.min(self.bounds.max_ttl);
        let mut clients = self.lock();
        if !clients.contains_key(&client) && clients.len() >= self.bounds.clients {
            clients.retain(|_, names| prune_names(names, now));
            if clients.len() >= self.bounds.clients {
                self.refused.fetch_add(1, Ordering::Relaxed);
                return false;
            }
        }
        let names = clients.entry(client).or_default();
        if !names.contains_key(&name) && names.len() >= self.bounds.names_per_client {
            prune_names(names, now);
            if names.len() >= self.bounds.names_per_client {
                // The name whose answers run out first gives way.
                let soonest = names
                    .iter()
                    .min_by_key(|(_, ips)| ips.iter().map(|(_, t)| *t).max())
                    .map(|(n, _)| n.clone());
                if let Some(n) = soonest {
                    names.remove(&n);
                }
            }
        }
        let ips = names.entry(name).or_default();
        ips.retain(|(_, t)| *t > now);
        match ips.iter_mut().find(|(a, _)| *a == ip) {
            Some(e) => e.1 = e.1.max(until),
            None => {
                if ips.len() >= self.bounds.ips_per_name {
                    if let Some(pos) = (0..ips.len()).min_by_key(|&i| ips[i].1) {
                        ips.swap_remove(pos);
                    }
                }
                ips.push((ip, until));
            }
        }
        true
    }

    /// Drops every expired answer (and clients left with none). Returns the clients kept.
    pub fn prune(&self) -> usize {
        let now = Instant::now();
        let mut clients = self.lock();
        clients.retain(|_, names| prune_names(names, now));
        clients.len()
    }

    /// Clients recorded (live or not yet pruned).
    pub fn clients(&self) -> usize {
        self.lock().len()
    }

    /// New clients refused because the client bound was reached.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    fn agrees_at(&self, client: IpAddr, name: &str, ip: IpAddr, now: Instant) -> Option<bool> {
        let clients = self.lock();
        let names = clients.get(&client)?;
        // A client whose every answer has expired is as good as unknown (as with the DNS
        // proxy's own records under `palisade up`).
        if !names.values().flatten().any(|(_, t)| *t > now) {
            return None;
        }
        let name = crate::config::normalize_host(name);
        Some(
            names
                .get(&name)
                .is_some_and(|ips| ips.iter().any(|(a, t)| *a == ip && *t > now)),
        )
    }
}

/// Drops the expired answers of one client; whether any are left.
fn prune_names(names: &mut Names, now: Instant) -> bool {
    names.retain(|_, ips| {
        ips.retain(|(_, t)| *t > now);
        !ips.is_empty()
    });
    !names.is_empty()
}

impl ResolvedNames for AnswerBook {
    fn agrees(&self, client: IpAddr, name: &str, ip: IpAddr) -> Option<bool> {
        self.agrees_at(client, name, ip, Instant::now())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    const MIN: Duration = Duration::from_secs(60);

    #[test]
    fn only_what_this_client_was_told_agrees() {
        let b = AnswerBook::new();
        let (pod, other) = (ip("10.0.0.5"), ip("10.0.0.6"));
        assert!(b.record(pod, "Models.Test.", ip("203.0.113.7"), MIN));
        assert_eq!(b.agrees(pod, "models.test", ip("203.0.113.7")), Some(true));
        // Same name, another address (a CDN neighbour): refused.
        assert_eq!(b.agrees(pod, "models.test", ip("203.0.113.8")), Some(false));
        // A name it never resolved, at an address it did: refused.
        assert_eq!(b.agrees(pod, "evil.test", ip("203.0.113.7")), Some(false));
        // A client whose DNS we never saw: unknown.
        assert_eq!(b.agrees(other, "models.test", ip("203.0.113.7")), None);
    }

    #[test]
    fn answers_expire_and_a_client_with_none_left_is_unknown() {
        let b = AnswerBook::new();
        let pod = ip("10.0.0.5");
        let t0 = Instant::now();
        b.record_at(pod, "a.test", ip("192.0.2.1"), Duration::from_secs(5), t0);
        b.record_at(pod, "b.test", ip("192.0.2.2"), Duration::from_secs(50), t0);
        let later = t0 + Duration::from_secs(10);
        assert_eq!(
            b.agrees_at(pod, "a.test", ip("192.0.2.1"), later),
            Some(false)
        );
        assert_eq!(
            b.agrees_at(pod, "b.test", ip("192.0.2.2"), later),
            Some(true)
        );
        let much_later = t0 + Duration::from_secs(60);
        assert_eq!(
            b.agrees_at(pod, "b.test", ip("192.0.2.2"), much_later),
            None
        );
        // A fresh answer for the same address extends it.
        b.record_at(pod, "a.test", ip("192.0.2.1"), Duration::from_secs(30), t0);
        assert_eq!(
            b.agrees_at(pod, "a.test", ip("192.0.2.1"), later),
            Some(true)
        );
    }

    #[test]
    fn a_ttl_beyond_the_cap_is_cut() {
        let b = AnswerBook::with_bounds(BookBounds {
            max_ttl: Duration::from_secs(10),
            ..BookBounds::default()
        });
        let pod = ip("10.0.0.5");
        let t0 = Instant::now();
        b.record_at(
            pod,
            "a.test",
            ip("192.0.2.1"),
            Duration::from_secs(1 << 30),
            t0,
        );
        let after = t0 + Duration::from_secs(11);
        assert_eq!(b.agrees_at(pod, "a.test", ip("192.0.2.1"), after), None);
    }

    #[test]
    fn per_name_and_per_client_bounds_evict_the_soonest_to_expire() {
        let b = AnswerBook::with_bounds(BookBounds {
            clients: 2,
            names_per_client: 2,
            ips_per_name: 2,
            ..BookBounds::default()
        });
        let pod = ip("10.0.0.5");
        let t0 = Instant::now();
        let s = Duration::from_secs;
        b.record_at(pod, "cdn.test", ip("192.0.2.1"), s(5), t0);
        b.record_at(pod, "cdn.test", ip("192.0.2.2"), s(50), t0);
        b.record_at(pod, "cdn.test", ip("192.0.2.3"), s(40), t0);
        assert_eq!(
            b.agrees_at(pod, "cdn.test", ip("192.0.2.1"), t0),
            Some(false)
        );
        assert_eq!(
            b.agrees_at(pod, "cdn.test", ip("192.0.2.2"), t0),
            Some(true)
        );
        assert_eq!(
            b.agrees_at(pod, "cdn.test", ip("192.0.2.3"), t0),
            Some(true)
        );
        // Names: cdn.test (until 50 s) and short.test (until 3 s); a third evicts short.test.
        b.record_at(pod, "short.test", ip("192.0.2.9"), s(3), t0);
        b.record_at(pod, "new.test", ip("192.0.2.7"), s(30), t0);
        assert_eq!(
            b.agrees_at(pod, "short.test", ip("192.0.2.9"), t0),
            Some(false)
        );
        assert_eq!(
            b.agrees_at(pod, "new.test", ip("192.0.2.7"), t0),
            Some(true)
        );
        assert_eq!(
            b.agrees_at(pod, "cdn.test", ip("192.0.2.2"), t0),
            Some(true)
        );
        // Clients: a second fits, a third is refused (and stays unknown).
        assert!(b.record(ip("10.0.0.6"), "a.test", ip("192.0.2.1"), MIN));
        assert!(!b.record(ip("10.0.0.7"), "a.test", ip("192.0.2.1"), MIN));
        assert_eq!(b.refused(), 1);
        assert_eq!(b.agrees(ip("10.0.0.7"), "a.test", ip("192.0.2.1")), None);
        assert_eq!(b.clients(), 2);
    }

    #[test]
    fn a_full_book_makes_room_by_dropping_expired_clients() {
        let b = AnswerBook::with_bounds(BookBounds {
            clients: 1,
            ..BookBounds::default()
        });
        assert!(b.record(ip("10.0.0.5"), "a.test", ip("192.0.2.1"), Duration::ZERO));
        assert!(b.record(ip("10.0.0.6"), "a.test", ip("192.0.2.1"), MIN));
        assert_eq!(b.refused(), 0);
        assert_eq!(b.prune(), 1);
        assert_eq!(
            b.agrees(ip("10.0.0.6"), "a.test", ip("192.0.2.1")),
            Some(true)
        );
    }
}
