//! The service graph: workloads and external destinations as nodes, observed traffic as
//! edges with their verdicts and volumes. Workloads of the enforced snapshot are nodes even
//! when no traffic was seen, so the picture shows who is silent too.

use std::collections::BTreeMap;

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
}

/// Builds the graph from `traffic` and the workloads of `engine`.
pub fn graph(traffic: &Traffic, engine: Option<&Engine>) -> Graph {
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
    let mut edges = Vec::new();
    for (k, s) in &traffic.edges {
        for peer in [&k.src, &k.dst] {
            let (kind, id) = match peer {
                Peer::Workload(_) => continue,
                Peer::Fqdn(n) => ("domain", n.clone()),
                Peer::Address(ip) => ("address", ip.to_string()),
            };
            nodes.entry(id.clone()).or_insert(Node {
                id,
                kind,
                namespace: None,
                pods: Vec::new(),
                declared: false,
            });
        }
        let verdict = if !s.passed() {
            "deny"
        } else if s.audit > 0 {
            "audit"
        } else {
            "allow"
        };
        edges.push(Edge {
            source: k.src.label(),
            target: k.dst.label(),
            port: k.port,
            protocol: k.protocol,
            allow: s.allow,
            deny: s.deny,
            audit: s.audit,
            bytes: s.bytes_sent + s.bytes_received,
            verdict,
            last_event: s.last_event.clone(),
        });
    }
    for n in nodes.values_mut() {
        n.pods.sort();
    }
    Graph {
        nodes: nodes.into_values().collect(),
        edges,
        events: traffic.events,
    }
}
