//! New external destination: a name or external address a workload had not used during
//! its learning window. Each new destination alerts once; events to it within the hold
//! time join the alert as evidence.

use std::collections::HashMap;

use palisade_events::{AlertKind, Severity};
use serde::{Deserialize, Serialize};

use crate::book::Signal;
use crate::util::registered_domain;
use crate::{Ctx, SECOND};

/// Destinations per workload.
#[derive(Debug, Default, Serialize, Deserialize)]
pub(crate) struct State {
    workloads: HashMap<String, Known>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Known {
    /// Destination → `None` when learned, `Some(t)` when first seen after learning at t.
    dests: HashMap<String, Option<i64>>,
    /// Registered domain (for names) or network (for addresses) → distinct destinations
    /// learned in it.
    domains: HashMap<String, usize>,
}

impl State {
    /// Forgets evicted workloads.
    pub(crate) fn forget(&mut self, gone: &std::collections::HashSet<String>) {
        self.workloads.retain(|w, _| !gone.contains(w));
    }

    pub(crate) fn observe(
        &mut self,
        ctx: &mut Ctx<'_>,
        workload: &str,
        learn_until: i64,
        dest: &str,
        is_name: bool,
        id: &str,
    ) {
        let known = self.workloads.entry(workload.to_string()).or_default();
        let learning = ctx.now < learn_until;
        // Pods choose where they connect: what a workload remembers is bounded.
        let max = ctx.cfg.new_destination.max_destinations_per_workload;
        let full = known.dests.len() >= max;
        match known.dests.get(dest) {
            Some(None) => return,
            Some(Some(first)) => {
                // Still collecting evidence for the alert about this destination.
                if ctx.now - first <= ctx.cfg.alert_hold_secs * SECOND
                    && ctx.book.is_pending(AlertKind::NewDestination, workload)
                {
                    ctx.signal(signal(ctx.cfg, workload, dest, ctx.now, id));
                }
                return;
            }
            None => {}
        }
        // Names group by registered domain, addresses by network (/24, /48): CDN shards
        // and address rotation within a provider's range are not new destinations.
        let group = if is_name {
            registered_domain(dest).to_string()
        } else {
            network_of(dest)
        };
        if learning {
            if !full {
                known.dests.insert(dest.to_string(), None);
            }
            if known.domains.len() < max || known.domains.contains_key(&group) {
                *known.domains.entry(group).or_default() += 1;
            }
            return;
        }
        let needed = if is_name {
            ctx.cfg.new_destination.domain_known_after_names
        } else {
            1
        };
        if known.domains.get(&group).is_some_and(|n| *n >= needed) {
            if !full {
                known.dests.insert(dest.to_string(), None);
            }
            return;
        }
        if !full {
            known.dests.insert(dest.to_string(), Some(ctx.now));
        }
        ctx.signal(signal(ctx.cfg, workload, dest, ctx.now, id));
    }
}

/// The /24 (IPv4) or /48 (IPv6) network of an address, as text (`net:203.0.113.0/24`).
fn network_of(ip: &str) -> String {
    match ip.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V4(v4)) => {
            let o = v4.octets();
            format!("net:{}.{}.{}.0/24", o[0], o[1], o[2])
        }
        Ok(std::net::IpAddr::V6(v6)) => {
            let s = v6.segments();
            format!("net:{:x}:{:x}:{:x}::/48", s[0], s[1], s[2])
        }
        Err(_) => format!("net:{ip}"),
    }
}

fn signal(cfg: &crate::DetectConfig, workload: &str, dest: &str, now: i64, id: &str) -> Signal {
    Signal {
        kind: AlertKind::NewDestination,
        subject: workload.to_string(),
        time: now,
        severity: Severity::Medium,
        topic: dest.to_string(),
        reason: format!(
            "contacted {dest}, an external destination not seen in its {}h learning window",
            cfg.learning_window_secs / 3600
        ),
        evidence: vec![id.to_string()],
        cooldown_secs: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::network_of;

    #[test]
    fn networks() {
        assert_eq!(network_of("203.0.113.77"), "net:203.0.113.0/24");
        assert_eq!(network_of("2001:db8:1:2::5"), "net:2001:db8:1::/48");
    }
}
