//! Opening FQDN egress in the kernel: each DNS answer a pod receives for a name its policy
//! allows becomes an element `(pod IP . answer IP)` of the FQDN sets whose pattern matches
//! the name, with a timeout of the answer's TTL (at least the configured minimum) plus a
//! grace period. Elements name the pod, so an IP opened for one pod is not open for
//! another; established connections outlive the element (conntrack accepts them first).

use crate::nfnetlink::{Element, ElementBatch, ElementOp, NftSocket};
use crate::nft;
use crate::ruleset::{render, RenderOptions, TABLE};
use palisade_policy::fqdn::FqdnPattern;
use palisade_policy::Engine;
use std::net::IpAddr;
use std::sync::{Mutex, RwLock};
use std::time::Duration;

/// Timing of opened IPs.
#[derive(Debug, Clone, Copy)]
pub struct FqdnTiming {
    /// Lower bound for an answer's TTL.
    pub min_ttl: Duration,
    /// Added to the TTL, so a client that re-resolves just in time is not cut off.
    pub grace: Duration,
}

impl Default for FqdnTiming {
    fn default() -> Self {
        FqdnTiming {
            min_ttl: Duration::from_secs(5),
            grace: Duration::from_secs(2),
        }
    }
}

/// Adds DNS answers to the agent's FQDN sets.
#[derive(Debug)]
pub struct FqdnOpener {
    netns: Option<String>,
    timing: FqdnTiming,
    sets: RwLock<Vec<(String, FqdnPattern)>>,
    socket: Mutex<Option<NftSocket>>,
}

impl FqdnOpener {
    /// An opener for the table in `netns` (or the current namespace).
    pub fn new(netns: Option<String>, timing: FqdnTiming) -> Self {
        FqdnOpener {
            netns,
            timing,
            sets: RwLock::new(Vec::new()),
            socket: Mutex::new(None),
        }
    }

    /// Learns the FQDN sets of the ruleset the agent renders for `engine` (all pods: the
    /// set names do not depend on which pods are local).
    pub fn refresh(&self, engine: &Engine) {
        let all = (0..engine.pods().len() as u32).collect();
        let rs = render(
            engine,
            &RenderOptions {
                local_pods: all,
                log_denied: false,
                log_allowed: false,
                pod_interfaces: Default::default(),
                node_services: Vec::new(),
                pod_interface_prefixes: Vec::new(),
            },
        );
        let sets = rs
            .fqdn_sets
            .into_iter()
            .map(|(name, (_, pat))| (name, pat))
            .collect();
        if let Ok(mut w) = self.sets.write() {
            *w = sets;
        }
    }

    /// The element timeout for an answer's TTL.
    pub fn timeout(&self, ttl: u32) -> Duration {
        Duration::from_secs(ttl as u64).max(self.timing.min_ttl) + self.timing.grace
    }

    /// The FQDN sets (this address family) whose pattern matches `name`.
    fn sets_for(&self, name: &str, v4: bool) -> Vec<String> {
        let suffix = if v4 { 4 } else { 6 };
        match self.sets.read() {
            Ok(r) => r
                .iter()
                .filter(|(_, p)| p.matches(name))
                .map(|(n, _)| format!("{n}_{suffix}"))
                .collect(),
            Err(_) => Vec::new(),
        }
    }

    fn apply(&self, batch: &ElementBatch) -> Result<(), nft::NftError> {
        if batch.is_empty() {
            return Ok(());
        }
        let mut guard = self
            .socket
            .lock()
            .map_err(|_| nft::NftError::Rejected("netlink socket lock poisoned".into()))?;
        if guard.is_none() {
            *guard = Some(
                NftSocket::open(self.netns.as_deref())
                    .map_err(|e| nft::NftError::Rejected(format!("netlink: {e}")))?,
            );
        }
        if let Some(sock) = guard.as_mut() {
            if let Err(e) = sock.apply(TABLE, batch) {
                *guard = None;
                return Err(nft::NftError::Rejected(e.to_string()));
            }
        }
        Ok(())
    }

    /// Opens `ip` for the pod at `pod_ip` in every set whose pattern matches `name`, for the
    /// answer's `ttl` (at least the minimum, plus grace). Returns the sets touched.
    pub fn open(
        &self,
        pod_ip: IpAddr,
        name: &str,
        ip: IpAddr,
        ttl: u32,
    ) -> Result<Vec<String>, nft::NftError> {
        self.open_for(pod_ip, name, ip, self.timeout(ttl))
    }

    /// Opens `ip` for the pod at `pod_ip` for exactly `timeout` (whole seconds, at least 1)
    /// in every set whose pattern matches `name`. Returns the sets touched.
    pub fn open_for(
        &self,
        pod_ip: IpAddr,
        name: &str,
        ip: IpAddr,
        timeout: Duration,
    ) -> Result<Vec<String>, nft::NftError> {
        if pod_ip.is_ipv4() != ip.is_ipv4() {
            return Ok(Vec::new());
        }
        let names = self.sets_for(name, ip.is_ipv4());
        if names.is_empty() {
            return Ok(names);
        }
        // Re-adding an element does not extend its timeout: destroy (absent is fine), then
        // add, in one transaction, so a fresh answer restarts the clock without a gap.
        let timeout = Duration::from_secs(timeout.as_secs().max(1));
        let element = Element::of_ips(&[pod_ip, ip]);
        let mut batch = ElementBatch::new();
        for n in &names {
            batch.push(ElementOp::Destroy, n, vec![element.clone()]);
            batch.push(
                ElementOp::Add,
                n,
                vec![element.clone().with_timeout(timeout)],
            );
        }
        self.apply(&batch)?;
        Ok(names)
    }

    /// Removes the elements of (pod IP, name, IP) from every set whose pattern matches the
    /// name (absent ones are fine). One transaction. Returns the number of elements sent.
    pub fn close(&self, records: &[(IpAddr, &str, IpAddr)]) -> Result<usize, nft::NftError> {
        let mut batch = ElementBatch::new();
        let mut sent = 0;
        for &(pod_ip, name, ip) in records {
            if pod_ip.is_ipv4() != ip.is_ipv4() {
                continue;
            }
            for n in self.sets_for(name, ip.is_ipv4()) {
                batch.push(ElementOp::Destroy, &n, vec![Element::of_ips(&[pod_ip, ip])]);
                sent += 1;
            }
        }
        if sent > 0 {
            self.apply(&batch)?;
        }
        Ok(sent)
    }

    /// Puts back elements the kernel may have lost (a rebuilt table, a new FQDN set): each
    /// (pod IP, name, IP, time left) is added where missing; elements already present keep
    /// their timeout. One transaction. Returns the number of elements sent.
    pub fn restore(
        &self,
        records: &[(IpAddr, &str, IpAddr, Duration)],
    ) -> Result<usize, nft::NftError> {
        // Per set, one element per (pod IP, IP): the longest time left wins.
        type PerSet = std::collections::BTreeMap<(IpAddr, IpAddr), u64>;
        let mut by_set: std::collections::BTreeMap<String, PerSet> = Default::default();
        for &(pod_ip, name, ip, left) in records {
            if pod_ip.is_ipv4() != ip.is_ipv4() || left.as_secs() == 0 {
                continue;
            }
            for n in self.sets_for(name, ip.is_ipv4()) {
                let e = by_set
                    .entry(n)
                    .or_default()
                    .entry((pod_ip, ip))
                    .or_default();
                *e = (*e).max(left.as_secs());
            }
        }
        let mut batch = ElementBatch::new();
        let mut sent = 0;
        for (n, els) in by_set {
            sent += els.len();
            let els = els
                .into_iter()
                .map(|((p, i), secs)| {
                    Element::of_ips(&[p, i]).with_timeout(Duration::from_secs(secs))
                })
                .collect();
            batch.push(ElementOp::Add, &n, els);
        }
        self.apply(&batch)?;
        Ok(sent)
    }
}
