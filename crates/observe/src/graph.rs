//! The service graph: workloads and external destinations as nodes, observed traffic as
//! edges with their verdicts and volumes. Workloads of the enforced snapshot are nodes even
//! when no traffic was seen, so the picture shows who is silent too.
//!
//! Names and addresses outside the cluster are chosen by pods (a pod can ask for a million
//! different names), so at most [`MAX_OUTSIDE_NODES`] of them are nodes (those with the
//! most traffic); the others are folded into one node, [`OTHERS`], with their edges merged.

use std::collections::{BTreeMap, BTreeSet};

use palisade_policy::Engine;
use serde::Serialize;

use crate::traffic::{Peer, Traffic};

/// A node of the graph.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Node {
    /// Stable id: the workload key, the domain name or the address.
    pub id: String,
    /// `workload`, `domain` or `address`.
    pub kind: &'static str,
    /// Namespace of a workload.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Pods of a workload (from the snapshot and from events).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub pods: Vec<String>,
    /// Whether the enforced snapshot declares the workload.
    pub declared: bool,
}

/// An edge: traffic from one node to another on one port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Edge {
    /// Source node id.
    pub source: String,
    /// Target node id.
    pub target: String,
    /// Destination port.
    pub port: u16,
    /// Protocol.
    pub protocol: &'static str,
    /// Allowed connections or requests.
    pub allow: u64,
    /// Denied ones.
    pub deny: u64,
    /// Allowed that an Audit-mode policy would deny.
    pub audit: u64,
    /// Bytes both ways.
    pub bytes: u64,
    /// The colour: `deny` when nothing passed, `audit` when any would be denied, else `allow`.
    pub verdict: &'static str,
    /// Id of the latest event on the edge.
    pub last_event: String,
}

/// The graph.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Graph {
    /// Nodes, sorted by id.
    pub nodes: Vec<Node>,
    /// Edges, sorted.
    pub edges: Vec<Edge>,
    /// Events the graph was built from.
    pub events: u64,
    /// Names and addresses folded into the [`OTHERS`] node.
    pub folded: u64,
    /// Whether only the newest events of the range were read (the web API's bound).
    pub truncated: bool,
}

/// Most names and addresses outside the cluster drawn as nodes of their own.
pub const MAX_OUTSIDE_NODES: usize = 200;

/// Id of the node that stands for the names and addresses beyond [`MAX_OUTSIDE_NODES`].
pub const OTHERS: &str = "(other names and addresses)";

/// Builds the graph from `traffic` and the workloads of `engine`.
pub fn graph(traffic: &Traffic, engine: Option<&Engine>) -> Graph {
    graph_with(traffic, engine, MAX_OUTSIDE_NODES)
}

/// The outside peers (names, addresses) kept as nodes: the `max` with the most traffic.
fn kept_outside(traffic: &Traffic, max: usize) -> Option<BTreeSet<String>> {
    let mut volume: BTreeMap<String, u64> = BTreeMap::new();
    for (k, s) in &traffic.edges {
        for peer in [&k.src, &k.dst] {
            if !matches!(peer, Peer::Workload(_)) {
                *volume.entry(peer.label()).or_default() += s.allow + s.deny + s.audit;
            }
        }
    }
    if volume.len() <= max {
        return None;
    }
    let mut by_volume: Vec<(u64, String)> = volume.into_iter().map(|(n, v)| (v, n)).collect();
    by_volume.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
    Some(by_volume.into_iter().take(max).map(|(_, n)| n).collect())
}

/// [`graph`] with at most `max_outside` names and addresses as nodes of their own.
pub fn graph_with(traffic: &Traffic, engine: Option<&Engine>, max_outside: usize) -> Graph {
    let kept = kept_outside(traffic, max_outside);
    let mut folded: BTreeSet<String> = BTreeSet::new();
    let mut nodes: BTreeMap<String, Node> = BTreeMap::new();
    if let Some(engine) = engine {
        for p in engine.pods() {
            let n = nodes.entry(p.workload.clone()).or_insert_with(|| Node {
                id: p.workload.clone(),
                kind: "workload",
                namespace: Some(p.namespace.clone()),
                pods: Vec::new(),
                declared: true,
            });
            n.pods.push(p.name.clone());
        }
    }
    for w in traffic.workloads.values() {
        let n = nodes.entry(w.key.clone()).or_insert_with(|| Node {
            id: w.key.clone(),
            kind: "workload",
            namespace: Some(w.namespace.clone()),
            pods: Vec::new(),
            declared: false,
        });
        for p in &w.pods {
            if !n.pods.contains(p) {
                n.pods.push(p.clone());
            }
        }
    }
    let mut edges: BTreeMap<(String, String, u16, &'static str), Edge> = BTreeMap::new();
    // The id a peer is drawn as.
    let id_of = |p: &Peer, folded: &mut BTreeSet<String>| -> String {
        let label = p.label();
        match (&kept, p) {
            (Some(kept), Peer::Fqdn(_) | Peer::Address(_)) if !kept.contains(&label) => {
                folded.insert(label);
                OTHERS.to_string()
            }
            _ => label,
        }
    };
    for (k, s) in &traffic.edges {
        let (source, target) = (id_of(&k.src, &mut folded), id_of(&k.dst, &mut folded));
        for (peer, id) in [(&k.src, &source), (&k.dst, &target)] {
            let kind = match peer {
                Peer::Workload(_) => continue,
                _ if id == OTHERS => "other",
                Peer::Fqdn(_) => "domain",
                Peer::Address(_) => "address",
            };
            nodes.entry(id.clone()).or_insert_with(|| Node {
                id: id.clone(),
                kind,
                namespace: None,
                pods: Vec::new(),
                declared: false,
            });
        }
        let e = edges
            .entry((source.clone(), target.clone(), k.port, k.protocol))
            .or_insert_with(|| Edge {
                source,
                target,
                port: k.port,
                protocol: k.protocol,
                allow: 0,
                deny: 0,
                audit: 0,
                bytes: 0,
                verdict: "allow",
                last_event: String::new(),
            });
        e.allow += s.allow;
        e.deny += s.deny;
        e.audit += s.audit;
        e.bytes = e
            .bytes
            .saturating_add(s.bytes_sent.saturating_add(s.bytes_received));
        if s.last_event > e.last_event {
            e.last_event.clone_from(&s.last_event);
        }
    }
    let mut edges: Vec<Edge> = edges.into_values().collect();
    for e in &mut edges {
        e.verdict = if e.allow + e.audit == 0 {
            "deny"
        } else if e.audit > 0 {
            "audit"
        } else {
            "allow"
        };
    }
    for n in nodes.values_mut() {
        n.pods.sort();
    }
    Graph {
        nodes: nodes.into_values().collect(),
        edges,
        events: traffic.events,
        folded: folded.len() as u64,
        truncated: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use palisade_events::Event;

    fn http(i: usize, host: &str) -> Event {
        let v = serde_json::json!({"id": format!("e{i:06}"), "time": "2026-11-26T10:00:00.000000Z",
            "type": "http", "source": {"kind": "pod", "namespace": "ml", "name": "t-0", "workload": "ml/t"},
            "destination": {"kind": "fqdn", "fqdn": host, "port": 443}, "protocol": "TCP", "verdict": "allow",
            "http": {"method": "GET", "host": host, "path": "/", "status": 200}});
        Event::from_json_line(&v.to_string()).unwrap()
    }

    #[test]
    fn many_names_fold_into_one_node() {
        // One pod asks for 5,000 different names (a tunnel, a scan): the graph keeps the
        // busiest names and one node for the rest, instead of 5,000 nodes.
        let mut events: Vec<Event> = (0..5_000)
            .map(|i| http(i, &format!("x{i}.evil.test")))
            .collect();
        for i in 0..3 {
            events.push(http(10_000 + i, "hub.test"));
        }
        let g = graph(&Traffic::from_events(&events), None);
        assert_eq!(
            g.nodes.len(),
            1 + MAX_OUTSIDE_NODES + 1,
            "workload, kept names, others"
        );
        assert!(g.nodes.iter().any(|n| n.id == "hub.test"));
        let others = g
            .nodes
            .iter()
            .find(|n| n.id == OTHERS)
            .expect("others node");
        assert_eq!(others.kind, "other");
        assert_eq!(g.folded, 5_001 - MAX_OUTSIDE_NODES as u64);
        let to_others: Vec<&Edge> = g.edges.iter().filter(|e| e.target == OTHERS).collect();
        assert_eq!(to_others.len(), 1);
        assert_eq!(to_others[0].allow, g.folded);
        let total: u64 = g.edges.iter().map(|e| e.allow).sum();
        assert_eq!(total, 5_003);
    }

    #[test]
    fn few_names_stay_as_they_are() {
        let events: Vec<Event> = (0..3).map(|i| http(i, &format!("n{i}.test"))).collect();
        let g = graph(&Traffic::from_events(&events), None);
        assert_eq!(g.nodes.len(), 4);
        assert_eq!(g.folded, 0);
        assert!(g.nodes.iter().all(|n| n.id != OTHERS));
    }
}
