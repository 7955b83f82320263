//! DNS tunnelling and exfiltration per (workload, registered domain): within a sliding
//! window, many distinct names under one domain together with many long high-entropy names
//! or mostly TXT queries.

use std::collections::{HashMap, VecDeque};

use palisade_events::{AlertKind, DnsInfo, Event, Severity};
use serde::{Deserialize, Serialize};

use crate::book::Signal;
use crate::config::DnsTunnelConfig;
use crate::util::{registered_domain, NameShape};
use crate::{Ctx, SECOND};

/// True when a name looks like data: a long label in a high-entropy subdomain, or a very
/// long name.
pub(crate) fn is_suspicious(cfg: &DnsTunnelConfig, shape: &NameShape, name: &str) -> bool {
    let subdomain = shape
        .length
        .saturating_sub(registered_domain(name).len() + 1);
    (shape.entropy >= cfg.min_entropy
        && (shape.longest_label >= cfg.long_label || subdomain >= cfg.long_subdomain))
        || shape.length >= cfg.long_name
}

/// The domain of a workload's window for the domains beyond `dnsTunnel.maxWindows`.
const OTHER_DOMAINS: &str = "(other domains)";

/// Windows per (workload, domain).
#[derive(Debug, Default, Serialize, Deserialize)]
pub(crate) struct State {
    domains: HashMap<String, Window>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Window {
    queries: VecDeque<Query>,
    names: HashMap<String, u32>,
    suspicious: usize,
    txt: usize,
    alerted: bool,
}

#[derive(Debug, Serialize, Deserialize)]
struct Query {
    time: i64,
    name: String,
    suspicious: bool,
    txt: bool,
    id: String,
}

impl Window {
    /// Drops the queries older than `before`, and the oldest beyond `keep`.
    fn expire(&mut self, before: i64, keep: usize) {
        while self.queries.len() > keep || self.queries.front().is_some_and(|q| q.time < before) {
            let Some(q) = self.queries.pop_front() else {
                break;
            };
            if let Some(n) = self.names.get_mut(&q.name) {
                *n -= 1;
                if *n == 0 {
                    self.names.remove(&q.name);
                }
            }
            self.suspicious -= usize::from(q.suspicious);
            self.txt -= usize::from(q.txt);
        }
        if self.queries.is_empty() {
            self.alerted = false;
        }
    }
}

impl State {
    /// Forgets the windows of evicted workloads.
    pub(crate) fn forget(&mut self, gone: &std::collections::HashSet<String>) {
        self.domains.retain(|k, _| {
            !k.split_once('\u{1f}')
                .is_some_and(|(w, _)| gone.contains(w))
        });
    }

    pub(crate) fn observe(
        &mut self,
        ctx: &mut Ctx<'_>,
        workload: &str,
        e: &Event,
        d: &DnsInfo,
        name: &str,
        suspicious: bool,
    ) {
        let cfg = &ctx.cfg().dns_tunnel;
        let domain = registered_domain(name);
        if domain == name {
            return;
        }
        let txt = d
            .qtype
            .as_deref()
            .is_some_and(|t| t.eq_ignore_ascii_case("TXT") || t.eq_ignore_ascii_case("NULL"));
        let mut key = format!("{workload}\u{1f}{domain}");
        let mut domain = domain;
        if self.domains.len() >= cfg.max_windows && !self.domains.contains_key(&key) {
            // Beyond the limit, one window per workload for every other domain (created
            // past the limit, at most one per workload).
            key = format!("{workload}\u{1f}{OTHER_DOMAINS}");
            domain = OTHER_DOMAINS;
        }
        let w = self.domains.entry(key).or_default();
        w.expire(
            ctx.now - cfg.window_secs * SECOND,
            cfg.max_queries_per_window.saturating_sub(1),
        );
        w.queries.push_back(Query {
            time: ctx.now,
            name: name.to_string(),
            suspicious,
            txt,
            id: e.id.clone(),
        });
        *w.names.entry(name.to_string()).or_default() += 1;
        w.suspicious += usize::from(suspicious);
        w.txt += usize::from(txt);

        let unique = w.names.len();
        let by_entropy = w.suspicious >= cfg.min_suspicious;
        let by_txt =
            w.txt >= cfg.min_txt && (w.txt as f64) >= cfg.txt_share * w.queries.len() as f64;
        if unique < cfg.min_unique_names || !(by_entropy || by_txt) {
            return;
        }
        let evidence: Vec<String> = if w.alerted {
            if suspicious || txt {
                vec![e.id.clone()]
            } else {
                Vec::new()
            }
        } else {
            w.queries
                .iter()
                .filter(|q| (by_entropy && q.suspicious) || (by_txt && q.txt))
                .map(|q| q.id.clone())
                .collect()
        };
        w.alerted = true;
        let reason = format!(
            "sent {} DNS queries for {} distinct names under {domain} within {} minutes ({} long high-entropy, {} TXT), like data tunnelled through DNS",
            w.queries.len(),
            unique,
            cfg.window_secs / 60,
            w.suspicious,
            w.txt
        );
        ctx.signal(Signal {
            kind: AlertKind::DnsTunnel,
            subject: workload.to_string(),
            time: ctx.now,
            severity: Severity::High,
            topic: domain.to_string(),
            reason,
            evidence,
            cooldown_secs: cfg.cooldown_secs,
        });
    }

    /// Forgets windows that have emptied.
    pub(crate) fn sweep(&mut self, ctx: &mut Ctx<'_>) {
        let before = ctx.now - ctx.cfg.dns_tunnel.window_secs * SECOND;
        self.domains.retain(|_, w| {
            w.expire(before, usize::MAX);
            !w.queries.is_empty()
        });
    }
}
