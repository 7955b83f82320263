//! Pods to their own node: new connections from a local pod to the node itself are held to
//! the pod's egress policy, as the same connection leaving through `forward` would be.
//!
//! Policy is otherwise enforced in `forward`, which traffic addressed to the node never
//! crosses: without these rules a pod whose egress allows nothing still reached every
//! service of its node (kubelet on 10250, host-network pods, node ports whose backend is on
//! the node). The `input` chain, after anti-spoofing ([`crate::antispoof`]), now:
//! - accepts established and related packets (replies to the node's own connections, such
//!   as kubelet probes: upstream says a pod cannot block its node);
//! - accepts Palisade's own node services ([`NodeService`]: the DNS proxy, the egress
//!   gateway's transparent listener), reached directly or through a `redirect`/`dnat` rule,
//!   since they decide each query and connection with the same engine for the same pod;
//! - accepts IPv6 neighbour discovery (solicitations and advertisements with a global
//!   source; link-local ones pass before anti-spoofing already);
//! - sends the rest through the sender's egress verdict map (`egress_4`/`_6`, the very
//!   chains `forward` uses). Node addresses are not pod addresses, so only `ipBlock`,
//!   network and node peers, FQDN answers that named the node, or no isolation allow them.
//!   Only packets from a pod interface are looked up; anything else (not from a local
//!   pod, or from a pod whose interface the agent has not found) passes untouched.
//!
//! When policy changes, the agent closes the pod-to-node connections it now denies
//! ([`crate::revoke`]). The pod's next packet on one is then new to conntrack and meets its
//! egress chain here; the node's next packet would open a fresh entry in the node-to-pod
//! direction (conntrack's loose pickup), and the pod's packets would pass as its replies, so
//! `output` ([`output_rules`]) lets the node open TCP flows to pods only with a SYN.
//!
//! Pod-to-pod traffic never reaches `input` or `output`, so its cost is unchanged; for the
//! node's own traffic, an established packet costs one more compare, and what the node
//! sends one interface-set lookup and two connection-state compares.

use crate::ruleset::SetDef;
use palisade_policy::Protocol;
use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};

/// Node services on any node address: `inet_proto . inet_service`.
pub const SERVICES_ANY: &str = "node_svc";
/// Node services on one IPv4 address: `ipv4_addr . inet_proto . inet_service`.
pub const SERVICES_4: &str = "node_svc_4";
/// Node services on one IPv6 address: `ipv6_addr . inet_proto . inet_service`.
pub const SERVICES_6: &str = "node_svc_6";

/// A Palisade listener on the node that pods may always reach (it holds them to their
/// policy itself): the DNS proxy (UDP and TCP) and the transparent egress listener (TCP).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeService {
    /// The address it listens on; `None` for every address (`0.0.0.0`, `[::]`).
    pub addr: Option<IpAddr>,
    /// Its transport protocol.
    pub protocol: Protocol,
    /// Its port.
    pub port: u16,
}

/// Why a listen address cannot name a node service.
#[derive(Debug, thiserror::Error)]
#[error("node service listen address {0:?} is not host:port with an IP address")]
pub struct ListenError(pub String);

impl NodeService {
    /// The services of a listener at `listen` (`ip:port`, `[ipv6]:port`) for each of
    /// `protocols`. An unspecified address stands for every node address; a loopback one
    /// for none (pods cannot reach it), which gives no service.
    pub fn from_listen(listen: &str, protocols: &[Protocol]) -> Result<Vec<Self>, ListenError> {
        let sa: SocketAddr = listen
            .trim()
            .parse()
            .map_err(|_| ListenError(listen.to_string()))?;
        let ip = sa.ip();
        if ip.is_loopback() {
            return Ok(Vec::new());
        }
        let addr = (!ip.is_unspecified()).then_some(ip);
        Ok(protocols
            .iter()
            .map(|&protocol| NodeService {
                addr,
                protocol,
                port: sa.port(),
            })
            .collect())
    }
}

/// The node services of a Palisade config: the DNS proxy's `listen` (UDP and TCP) when the
/// proxy is enabled, and the egress gateway's `transparent` listener (TCP) when the gateway
/// is. A listen address that does not parse is reported and gives no exemption (the
/// component itself refuses to start on it).
pub fn from_config(config: &palisade_policy::model::PalisadeConfig) -> Vec<NodeService> {
    let spec = &config.spec;
    let mut listeners: Vec<(&str, &[Protocol])> = Vec::new();
    if let Some(d) = spec.dns.as_ref().filter(|d| d.enabled) {
        listeners.push((&d.listen, &[Protocol::UDP, Protocol::TCP]));
    }
    if let Some(t) = spec
        .egress
        .as_ref()
        .filter(|e| e.enabled)
        .and_then(|e| e.transparent.as_deref())
    {
        listeners.push((t, &[Protocol::TCP]));
    }
    let mut out = Vec::new();
    for (listen, protocols) in listeners {
        match NodeService::from_listen(listen, protocols) {
            Ok(s) => out.extend(s),
            Err(e) => tracing::warn!(error = %e, "not exempt from pods' egress policy"),
        }
    }
    out
}

fn proto_name(p: Protocol) -> &'static str {
    match p {
        Protocol::TCP => "tcp",
        Protocol::UDP => "udp",
        Protocol::SCTP => "sctp",
    }
}

/// The `input` rules after anti-spoofing (see the module docs); `new_pods` (what holds pods
/// the snapshot does not know yet: [`crate::newpod::input_rules`]) go after the exempt node
/// services, before the egress lookup.
pub fn input_rules(new_pods: Vec<String>) -> Vec<String> {
    let mut rules = vec![
        "ct state established,related accept".to_string(),
        format!("meta l4proto . th dport @{SERVICES_ANY} accept"),
        format!("ip daddr . meta l4proto . th dport @{SERVICES_4} accept"),
        format!("ip6 daddr . meta l4proto . th dport @{SERVICES_6} accept"),
        "icmpv6 type { nd-neighbor-solicit, nd-neighbor-advert } accept".to_string(),
    ];
    rules.extend(new_pods);
    rules.extend([
        // Only a pod address from its own interface, or a bridged pod's from its bridge
        // (the pairs anti-spoofing has just checked): a host elsewhere whose address a
        // local pod also has in the snapshot (an overlapping LAN) must not meet that pod's
        // policy here. (Matching pod interfaces alone left bridged pods, which arrive on
        // the bridge, out: an egress-isolated pod behind a bridge reached its node.)
        "iifname . ip saddr @pod_src_4 ip saddr vmap @egress_4".to_string(),
        "iifname . ip6 saddr @pod_src_6 ip6 saddr vmap @egress_6".to_string(),
    ]);
    rules
}

/// Sets of every local pod's addresses (`local_pods_4`, `local_pods_6`), whether or not
/// the agent knows its interface.
pub const LOCAL_PODS: &str = "local_pods";

/// A new TCP flow from (`saddr`) or to (`daddr`) a local pod must start with a SYN:
/// conntrack otherwise picks a connection up from any mid-stream packet ("loose"
/// tracking), which would re-open a connection whose entry the agent deleted. The state
/// is compared first: in `output` every packet the node sends meets these rules.
pub fn syn_only(sides: &[&str]) -> Vec<String> {
    let mut out = Vec::new();
    for side in sides {
        for (fam, suffix) in [("ip", 4), ("ip6", 6)] {
            out.push(format!(
                "ct state new {fam} {side} @{LOCAL_PODS}_{suffix} tcp flags & (fin | syn | rst | ack) != syn drop"
            ));
        }
    }
    out
}

/// The `output` rules: what the node itself sends to a pod. The node may always open
/// connections to its pods (upstream: a pod cannot block its node), but only with a SYN.
/// Without this, after the agent deleted the entry of a pod's connection to the node that
/// policy now denies, the node's next packet on it (data, an ACK) opened a fresh entry in
/// the node-to-pod direction, and the pod's packets then passed `input` as its replies.
/// Every packet the node sends meets this chain, so packets of connections already
/// tracked leave it at the first rule.
pub fn output_rules() -> Vec<String> {
    let mut rules = vec!["ct state != new accept".to_string()];
    rules.extend(syn_only(&["daddr"]));
    rules
}

/// Adds the node-service sets for `services` to `sets`.
pub fn render_into(sets: &mut BTreeMap<String, SetDef>, services: &[NodeService]) {
    let (mut any, mut v4, mut v6) = (BTreeSet::new(), BTreeSet::new(), BTreeSet::new());
    for s in services {
        let tail = format!("{} . {}", proto_name(s.protocol), s.port);
        match s.addr {
            None => any.insert(tail),
            Some(ip @ IpAddr::V4(_)) => v4.insert(format!("{ip} . {tail}")),
            Some(ip) => v6.insert(format!("{ip} . {tail}")),
        };
    }
    let set = |spec: &str, elements: BTreeSet<String>| SetDef {
        keyword: "set",
        spec: spec.to_string(),
        elements,
    };
    sets.insert(
        SERVICES_ANY.into(),
        set("type inet_proto . inet_service;", any),
    );
    sets.insert(
        SERVICES_4.into(),
        set("type ipv4_addr . inet_proto . inet_service;", v4),
    );
    sets.insert(
        SERVICES_6.into(),
        set("type ipv6_addr . inet_proto . inet_service;", v6),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_addresses_become_services() {
        let dns =
            NodeService::from_listen("169.254.1.1:53", &[Protocol::UDP, Protocol::TCP]).unwrap();
        let ip: IpAddr = "169.254.1.1".parse().unwrap();
        assert_eq!(
            dns,
            [
                NodeService {
                    addr: Some(ip),
                    protocol: Protocol::UDP,
                    port: 53
                },
                NodeService {
                    addr: Some(ip),
                    protocol: Protocol::TCP,
                    port: 53
                }
            ]
        );
        let any = NodeService::from_listen("[::]:15001", &[Protocol::TCP]).unwrap();
        assert_eq!(any[0].addr, None);
        assert!(NodeService::from_listen("127.0.0.1:53", &[Protocol::UDP])
            .unwrap()
            .is_empty());
        assert!(NodeService::from_listen("dns.local:53", &[Protocol::UDP]).is_err());
        assert!(NodeService::from_listen("10.0.0.1", &[Protocol::UDP]).is_err());
    }

    #[test]
    fn services_go_to_the_set_of_their_address_family() {
        let mut sets = BTreeMap::new();
        let mut svc = NodeService::from_listen("0.0.0.0:53", &[Protocol::UDP]).unwrap();
        svc.extend(NodeService::from_listen("10.0.0.9:15001", &[Protocol::TCP]).unwrap());
        svc.extend(NodeService::from_listen("[fd00::9]:53", &[Protocol::UDP]).unwrap());
        render_into(&mut sets, &svc);
        let el = |n: &str| sets[n].elements.iter().cloned().collect::<Vec<_>>();
        assert_eq!(el(SERVICES_ANY), ["udp . 53"]);
        assert_eq!(el(SERVICES_4), ["10.0.0.9 . tcp . 15001"]);
        assert_eq!(el(SERVICES_6), ["fd00::9 . udp . 53"]);
    }
    fn config(spec: &str) -> palisade_policy::model::PalisadeConfig {
        let mut m = palisade_policy::Manifests::new();
        m.add_file(
            "c.yaml",
            &format!(
                "apiVersion: palisade.dev/v1alpha1\nkind: PalisadeConfig\nmetadata: {{name: c}}\nspec:\n{spec}"
            ),
        );
        assert!(!m.has_errors(), "{:#?}", m.diagnostics);
        m.objects
            .iter()
            .find_map(|o| match &o.object {
                palisade_policy::model::Object::PalisadeConfig(c) => Some(c.clone()),
                _ => None,
            })
            .expect("a PalisadeConfig")
    }

    /// The DNS proxy (UDP and TCP) and the transparent egress listener (TCP) are exempt;
    /// the explicit proxy is not, nor a disabled component.
    #[test]
    fn the_config_names_the_dns_proxy_and_the_transparent_listener() {
        let c = config(
            "  dns: {listen: \"0.0.0.0:53\", upstream: \"10.0.0.2:53\"}\n  egress: {listen: \"0.0.0.0:3128\", transparent: \"10.0.0.9:15001\"}\n",
        );
        let got = from_config(&c);
        let want: Vec<NodeService> = [
            (None, Protocol::UDP, 53),
            (None, Protocol::TCP, 53),
            (Some("10.0.0.9".parse().unwrap()), Protocol::TCP, 15001),
        ]
        .into_iter()
        .map(|(addr, protocol, port)| NodeService {
            addr,
            protocol,
            port,
        })
        .collect();
        assert_eq!(got, want);
        let off =
            config("  dns: {listen: \"0.0.0.0:53\", upstream: \"10.0.0.2:53\", enabled: false}\n");
        assert!(from_config(&off).is_empty());
    }
}
