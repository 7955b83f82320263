//! Observed traffic: events folded into edges between workloads, addresses and names, with
//! their ports, verdicts, volumes and (for HTTP) the requests seen.

use std::collections::BTreeMap;
use std::net::IpAddr;

use palisade_events::{Endpoint, EndpointKind, Event, EventBody, FlowState, Verdict};

use crate::evaluate::NameBook;
use crate::identity::{workload_key, Workload};

/// One end of an edge.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Peer {
    /// A workload (`namespace/<owner>`).
    Workload(String),
    /// A domain name outside the cluster (lower case, no trailing dot).
    Fqdn(String),
    /// An address that is no known pod's (outside the cluster, or a node).
    Address(IpAddr),
}

impl Peer {
    /// How the UI and reports name it.
    pub fn label(&self) -> String {
        match self {
            Peer::Workload(w) => w.clone(),
            Peer::Fqdn(n) => n.clone(),
            Peer::Address(ip) => ip.to_string(),
        }
    }
}

/// A directed edge on one port.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EdgeKey {
    /// Who connected.
    pub src: Peer,
    /// Who was contacted.
    pub dst: Peer,
    /// Transport protocol: `TCP`, `UDP` or `SCTP`.
    pub protocol: &'static str,
    /// Destination port.
    pub port: u16,
}

/// What was seen on an edge.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EdgeStats {
    /// Events with verdict `allow`.
    pub allow: u64,
    /// Events with verdict `deny`.
    pub deny: u64,
    /// Events with verdict `audit`.
    pub audit: u64,
    /// Bytes source → destination (flow ends, HTTP request bodies).
    pub bytes_sent: u64,
    /// Bytes destination → source.
    pub bytes_received: u64,
    /// Allowed HTTP requests by (method, path).
    pub requests: BTreeMap<(String, String), u64>,
    /// Allowed HTTP exchanges whose method or path was not visible (TLS passthrough).
    pub opaque_requests: u64,
    /// Id of the most recent event on the edge.
    pub last_event: String,
}

impl EdgeStats {
    /// Whether traffic on the edge passed at least once (allow or audit).
    pub fn passed(&self) -> bool {
        self.allow + self.audit > 0
    }
}

/// Traffic folded from events.
#[derive(Debug, Clone, Default)]
pub struct Traffic {
    /// Workloads seen, by key.
    pub workloads: BTreeMap<String, Workload>,
    /// Edges seen.
    pub edges: BTreeMap<EdgeKey, EdgeStats>,
    /// Events folded in.
    pub events: u64,
    /// Events that could not be placed on an edge (no source, no port...).
    pub skipped: u64,
    /// Earliest and latest event time (µs).
    pub span_us: Option<(i64, i64)>,
    /// Per workload, the names its allowed DNS answers mapped addresses to.
    names: NameBook,
}

fn lower_name(n: &str) -> String {
    n.trim_end_matches('.').to_ascii_lowercase()
}

impl Traffic {
    /// Folds `events` (any order; DNS answers are applied to flows of the same workload
    /// whatever their order).
    pub fn from_events<'a>(events: impl IntoIterator<Item = &'a Event>) -> Traffic {
        let mut t = Traffic::default();
        let events: Vec<&Event> = events.into_iter().collect();
        t.names = NameBook::from_events(events.iter().copied());
        for e in events {
            t.add(e);
        }
        t
    }

    /// Records a pod endpoint's workload; returns its key.
    fn workload(&mut self, ep: &Endpoint) -> Option<String> {
        let key = workload_key(ep)?;
        match self.workloads.get_mut(&key) {
            Some(w) => w.merge(ep),
            None => {
                let w = Workload::from_endpoint(key.clone(), ep);
                self.workloads.insert(key.clone(), w);
            }
        }
        Some(key)
    }

    /// The peer an endpoint stands for, from the point of view of workload `from` (whose
    /// DNS answers name addresses).
    fn peer(&mut self, ep: &Endpoint, from: Option<&str>) -> Option<Peer> {
        match ep.kind {
            EndpointKind::Pod => self.workload(ep).map(Peer::Workload),
            EndpointKind::Fqdn => ep.fqdn.as_deref().map(|n| Peer::Fqdn(lower_name(n))),
            EndpointKind::External | EndpointKind::Node => {
                if let Some(n) = &ep.fqdn {
                    return Some(Peer::Fqdn(lower_name(n)));
                }
                let ip = ep.ip?;
                if let Some(n) = from.and_then(|w| self.names.name(w, ip)) {
                    return Some(Peer::Fqdn(n.to_string()));
                }
                Some(Peer::Address(ip))
            }
        }
    }

    /// Folds one event in.
    pub fn add(&mut self, e: &Event) {
        self.events += 1;
        let t = e.time.as_micros();
        self.span_us = Some(match self.span_us {
            None => (t, t),
            Some((a, b)) => (a.min(t), b.max(t)),
        });
        let (Some(src_ep), Some(dst_ep)) = (&e.source, &e.destination) else {
            self.skipped += 1;
            return;
        };
        let Some(src) = self.peer(src_ep, None) else {
            self.skipped += 1;
            return;
        };
        let from = match &src {
            Peer::Workload(w) => Some(w.clone()),
            _ => None,
        };
        let http = match &e.body {
            EventBody::Http(h) => Some(h),
            EventBody::Flow(_) => None,
            EventBody::Dns(_) | EventBody::Alert(_) => {
                // DNS events are folded as names (learn_names); alerts are not traffic.
                self.skipped += 1;
                return;
            }
        };
        let mut dst_ep = dst_ep.clone();
        if let Some(host) = http.and_then(|h| h.host.as_deref()) {
            if dst_ep.kind != EndpointKind::Pod && dst_ep.fqdn.is_none() {
                // The Host header may carry a port.
                let name = host.rsplit_once(':').map_or(host, |(n, p)| {
                    if p.chars().all(|c| c.is_ascii_digit()) {
                        n
                    } else {
                        host
                    }
                });
                dst_ep.fqdn = Some(name.to_string());
            }
        }
        let Some(dst) = self.peer(&dst_ep, from.as_deref()) else {
            self.skipped += 1;
            return;
        };
        let port = dst_ep.port.or_else(|| {
            http.map(|h| match h.tls {
                Some(palisade_events::TlsMode::None) => 80,
                _ => 443,
            })
        });
        let Some(port) = port else {
            self.skipped += 1;
            return;
        };
        let key = EdgeKey {
            src,
            dst,
            protocol: crate::evaluate::protocol_name(e.protocol),
            port,
        };
        let s = self.edges.entry(key).or_default();
        s.last_event.clone_from(&e.id);
        let end = matches!(&e.body, EventBody::Flow(f) if f.state == FlowState::End);
        if !end {
            match e.verdict {
                Some(Verdict::Allow) | None => s.allow += 1,
                Some(Verdict::Deny) => s.deny += 1,
                Some(Verdict::Audit) => s.audit += 1,
            }
        }
        match &e.body {
            EventBody::Flow(f) => {
                s.bytes_sent += f.bytes_sent.unwrap_or(0);
                s.bytes_received += f.bytes_received.unwrap_or(0);
            }
            EventBody::Http(h) => {
                s.bytes_sent += h.bytes_in.unwrap_or(0);
                s.bytes_received += h.bytes_out.unwrap_or(0);
                if e.verdict != Some(Verdict::Deny) {
                    match (&h.method, &h.path) {
                        (Some(m), Some(p)) => {
                            *s.requests
                                .entry((m.to_ascii_uppercase(), p.clone()))
                                .or_default() += 1
                        }
                        _ => s.opaque_requests += 1,
                    }
                }
            }
            _ => {}
        }
    }
}
