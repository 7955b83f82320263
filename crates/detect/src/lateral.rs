//! Lateral movement and scanning: one workload's denied connections fanning out across
//! many in-cluster or private destinations (pods, nodes, private addresses) or
//! (destination, port) pairs within a sliding window. Denied egress to public addresses is
//! not east-west movement (and rotating CDN addresses would look like fan-out). A workload that is routinely denied towards many places (monitoring) raises
//! its own threshold: thresholds are at least `peakFactor` × the largest fan-out of an
//! earlier window that did not alert.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::net::IpAddr;

use palisade_events::{AlertKind, Endpoint, EndpointKind, Event, Severity};
use serde::{Deserialize, Serialize};

use crate::book::Signal;
use crate::{Ctx, SECOND};

/// Windows per workload.
#[derive(Debug, Default, Serialize, Deserialize)]
pub(crate) struct State {
    workloads: HashMap<String, Fanout>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Fanout {
    denied: VecDeque<Denied>,
    hosts: HashMap<String, u32>,
    pairs: HashMap<String, u32>,
    /// Tumbling period (index) the peaks below are being measured for.
    period: i64,
    period_hosts: usize,
    period_pairs: usize,
    period_alerted: bool,
    /// Targets denied in the current period.
    period_targets: BTreeSet<String>,
    /// Targets routinely denied: seen in quiet periods of the learning window. Denials
    /// towards them neither count nor are evidence.
    routine: BTreeSet<String>,
    learn_until: i64,
    /// Largest fan-out of a completed period that did not alert.
    peak_hosts: usize,
    peak_pairs: usize,
    alerted: bool,
}

#[derive(Debug, Serialize, Deserialize)]
struct Denied {
    time: i64,
    host: String,
    pair: String,
    id: String,
}

/// True for destinations inside the cluster or a private network: pods, nodes, and
/// addresses in private, shared, loopback or link-local ranges without a public name.
pub(crate) fn is_internal(dst: &Endpoint) -> bool {
    match dst.kind {
        EndpointKind::Pod | EndpointKind::Node => true,
        EndpointKind::Fqdn => false,
        EndpointKind::External => match dst.ip {
            Some(IpAddr::V4(v4)) => {
                let o = v4.octets();
                v4.is_private()
                    || v4.is_loopback()
                    || v4.is_link_local()
                    || (o[0] == 100 && (64..128).contains(&o[1]))
            }
            Some(IpAddr::V6(v6)) => {
                let s = v6.segments();
                v6.is_loopback() || (s[0] & 0xfe00) == 0xfc00 || (s[0] & 0xffc0) == 0xfe80
            }
            None => false,
        },
    }
}

/// What a denied destination is, stable across pod churn: its workload, else
/// `namespace/<app label>`, else its host key.
fn target_key(dst: &Endpoint) -> String {
    crate::util::workload_of(dst).unwrap_or_else(|| host_key(dst))
}

fn host_key(dst: &Endpoint) -> String {
    match dst.kind {
        EndpointKind::Pod | EndpointKind::Node => match (&dst.namespace, &dst.name, dst.ip) {
            (Some(ns), Some(n), _) => format!("{ns}/{n}"),
            (None, Some(n), _) => n.clone(),
            (_, _, Some(ip)) => ip.to_string(),
            _ => dst.display_name(),
        },
        _ => dst.display_name(),
    }
}

impl Fanout {
    /// Drops the denied connections older than `before`, and the oldest beyond `keep`.
    fn expire(&mut self, before: i64, keep: usize) {
        while self.denied.len() > keep || self.denied.front().is_some_and(|d| d.time < before) {
            let Some(d) = self.denied.pop_front() else {
                break;
            };
            for (map, k) in [(&mut self.hosts, d.host), (&mut self.pairs, d.pair)] {
                if let Some(n) = map.get_mut(&k) {
                    *n -= 1;
                    if *n == 0 {
                        map.remove(&k);
                    }
                }
            }
        }
        if self.denied.is_empty() {
            self.alerted = false;
        }
    }

    fn roll(&mut self, period: i64, width: i64, max: usize) {
        if period != self.period {
            if !self.period_alerted {
                self.peak_hosts = self.peak_hosts.max(self.period_hosts);
                self.peak_pairs = self.peak_pairs.max(self.period_pairs);
                if (self.period + 1) * width <= self.learn_until {
                    let room = max.saturating_sub(self.routine.len());
                    let targets = std::mem::take(&mut self.period_targets);
                    self.routine.extend(targets.into_iter().take(room));
                }
            }
            self.period_targets.clear();
            self.period = period;
            self.period_hosts = 0;
            self.period_pairs = 0;
            self.period_alerted = false;
        }
    }
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
        e: &Event,
        dst: &Endpoint,
    ) {
        let cfg = &ctx.cfg().lateral_movement;
        let window = cfg.window_secs * SECOND;
        let f = self
            .workloads
            .entry(workload.to_string())
            .or_insert_with(|| Fanout {
                learn_until,
                period: ctx.now.div_euclid(window),
                ..Fanout::default()
            });
        let max = cfg.max_denied_per_window;
        f.expire(ctx.now - window, max.saturating_sub(1));
        f.roll(ctx.now.div_euclid(window), window, max);
        let target = target_key(dst);
        if f.routine.contains(&target) {
            return;
        }
        if f.period_targets.len() < max {
            f.period_targets.insert(target);
        }
        let host = host_key(dst);
        let pair = format!("{host}:{}", dst.port.unwrap_or(0));
        *f.hosts.entry(host.clone()).or_default() += 1;
        *f.pairs.entry(pair.clone()).or_default() += 1;
        f.denied.push_back(Denied {
            time: ctx.now,
            host,
            pair,
            id: e.id.clone(),
        });
        let (hosts, pairs) = (f.hosts.len(), f.pairs.len());
        f.period_hosts = f.period_hosts.max(hosts);
        f.period_pairs = f.period_pairs.max(pairs);
        let host_limit = (cfg.min_destinations as f64).max(cfg.peak_factor * f.peak_hosts as f64);
        let pair_limit = (cfg.min_ports as f64).max(cfg.peak_factor * f.peak_pairs as f64);
        if (hosts as f64) < host_limit && (pairs as f64) < pair_limit {
            return;
        }
        f.period_alerted = true;
        let evidence = if f.alerted {
            vec![e.id.clone()]
        } else {
            f.denied.iter().map(|d| d.id.clone()).collect()
        };
        f.alerted = true;
        let reason = format!(
            "had {} denied connections to {hosts} distinct destinations and {pairs} distinct destination ports within {} minutes, a fan-out typical of scanning or lateral movement",
            f.denied.len(),
            cfg.window_secs / 60
        );
        ctx.signal(Signal {
            kind: AlertKind::LateralMovement,
            subject: workload.to_string(),
            time: ctx.now,
            severity: Severity::High,
            topic: "fan-out".to_string(),
            reason,
            evidence,
            cooldown_secs: cfg.cooldown_secs,
        });
    }

    /// Forgets windows that have emptied (peaks are kept).
    pub(crate) fn sweep(&mut self, ctx: &mut Ctx<'_>) {
        let window = ctx.cfg.lateral_movement.window_secs * SECOND;
        for f in self.workloads.values_mut() {
            f.expire(ctx.now - window, usize::MAX);
        }
    }
}
