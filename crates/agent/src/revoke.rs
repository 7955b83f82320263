//! Open connections that a new policy denies are closed (CONVENTIONS: "when policy
//! changes, open connections are checked again and those now denied are closed").
//!
//! The ruleset accepts packets of tracked connections before any policy rule, so without
//! this a connection opened under the old policy would live on for as long as it is used.
//! After an applied change (coalesced by [`CloseSchedule`]: at most one pass a second,
//! always one after the last change) the agent lists the node's conntrack table
//! (`conntrack -L -o xml`), decides again every connection the ruleset decides ([`decide`]:
//! pod to pod, a local pod to its own node, to or from outside addresses) with the new engine (the destination after
//! DNAT, i.e. the reply's source, so a Service's backend or a redirect's node port is what
//! is decided), and deletes the entries it now denies (`conntrack -D` on the exact tuple).
//! The connection's next packet is then a new flow to the ruleset and is dropped by policy.
//!
//! Not checked: what the node opens itself (`output` holds no policy), and connections to
//! an address (outside or the node) on a port a pod's FQDN rule allows, when that rule is
//! evaluated before the stage that denies them: those may have been opened by a DNS
//! answer, which the engine alone cannot see. Looking the address up in the kernel's FQDN
//! sets instead would not be right: their elements expire with the answers' TTLs (seconds
//! to minutes) while the connections they opened rightly live on, so an address missing
//! from them says nothing about whether policy still allows the connection, and closing on
//! it would cut every long download from an allowed domain at the next policy change. What
//! would decide it is the name the address was resolved for, kept as long as the
//! connection lives; the DNS proxy's records expire with the TTL too.

use crate::hostfw::NodeService;
use palisade_policy::cidr::Cidr;
use palisade_policy::engine::{PeerMatch, PortMatch};
use palisade_policy::model::AdminAction;
use palisade_policy::{Direction, Endpoint, Engine, Flow, PodId, Protocol, Stage};
use std::collections::HashSet;
use std::net::IpAddr;
use std::process::Command;

/// One tracked connection, as `conntrack -L` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tracked {
    /// IP protocol number (6, 17, 132).
    pub protocol: u8,
    /// Original direction: initiator.
    pub src: IpAddr,
    /// Original direction: the address the initiator sent to (a Service's, before DNAT).
    pub dst: IpAddr,
    /// Original direction: initiator's port.
    pub src_port: u16,
    /// Original direction: destination port (before DNAT).
    pub dst_port: u16,
    /// Who answers: the reply direction's source (the backend after DNAT).
    pub responder: IpAddr,
    /// The responder's port.
    pub responder_port: u16,
}

fn tag<'a>(s: &'a str, name: &str) -> Option<&'a str> {
    let open = format!("<{name}>");
    let start = s.find(&open)? + open.len();
    let end = s[start..].find(&format!("</{name}>"))? + start;
    Some(&s[start..end])
}

fn protonum(meta: &str) -> Option<u8> {
    let l4 = &meta[meta.find("<layer4")?..];
    let key = "protonum=\"";
    let start = l4.find(key)? + key.len();
    let end = l4[start..].find('"')? + start;
    l4[start..end].parse().ok()
}

/// Parses one `<flow>…</flow>` element of `conntrack -L -o xml`. `None` for anything that
/// is not a TCP, UDP or SCTP connection with both directions.
pub fn parse_flow(flow: &str) -> Option<Tracked> {
    let orig_at = flow.find("<meta direction=\"original\">")?;
    let reply_at = flow.find("<meta direction=\"reply\">")?;
    let (orig, reply) = if orig_at < reply_at {
        (&flow[orig_at..reply_at], &flow[reply_at..])
    } else {
        (&flow[orig_at..], &flow[reply_at..orig_at])
    };
    let protocol = protonum(orig)?;
    if !matches!(protocol, 6 | 17 | 132) {
        return None;
    }
    let port = |m: &str, name: &str| tag(m, name).and_then(|v| v.parse::<u16>().ok());
    Some(Tracked {
        protocol,
        src: tag(orig, "src")?.parse().ok()?,
        dst: tag(orig, "dst")?.parse().ok()?,
        src_port: port(orig, "sport")?,
        dst_port: port(orig, "dport")?,
        responder: tag(reply, "src")?.parse().ok()?,
        responder_port: port(reply, "sport")?,
    })
}

/// Every `<flow>` element of a `conntrack -L -o xml` listing.
pub fn parse_listing(xml: &str) -> Vec<Tracked> {
    xml.split("</flow>").filter_map(parse_flow).collect()
}

fn conntrack(netns: Option<&str>) -> Command {
    match netns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns, "conntrack"]);
            c
        }
        None => Command::new("conntrack"),
    }
}

/// The node's tracked connections (inside `netns` when given).
pub fn list(netns: Option<&str>) -> std::io::Result<Vec<Tracked>> {
    let mut all = Vec::new();
    for family in ["ipv4", "ipv6"] {
        let out = conntrack(netns)
            .args(["-L", "-f", family, "-o", "xml"])
            .stderr(std::process::Stdio::null())
            .output()?;
        if out.status.success() {
            all.extend(parse_listing(&String::from_utf8_lossy(&out.stdout)));
        }
    }
    Ok(all)
}

fn protocol(n: u8) -> Option<Protocol> {
    match n {
        6 => Some(Protocol::TCP),
        17 => Some(Protocol::UDP),
        132 => Some(Protocol::SCTP),
        _ => None,
    }
}

/// What the node enforces, for deciding its tracked connections again.
#[derive(Debug, Clone, Default)]
pub struct NodeScope {
    /// Pods enforced here.
    pub local_pods: HashSet<PodId>,
    /// The node's own addresses (its `local` routing table): what it delivers to `input`
    /// and sends from `output`.
    pub local_addrs: Vec<Cidr>,
    /// Local pod addresses whose interface the ruleset knows: only packets from a pod
    /// interface meet the pod's policy in `input` ([`crate::hostfw`]).
    pub pod_interfaces: HashSet<IpAddr>,
    /// Palisade's own node services, which `input` lets every pod reach.
    pub node_services: Vec<NodeService>,
}

impl NodeScope {
    /// Whether `ip` is one of the node's own addresses.
    pub fn is_node_addr(&self, ip: IpAddr) -> bool {
        self.local_addrs.iter().any(|c| c.contains(ip))
    }

    fn is_node_service(&self, ip: IpAddr, protocol: Protocol, port: u16) -> bool {
        self.node_services
            .iter()
            .any(|s| s.protocol == protocol && s.port == port && s.addr.is_none_or(|a| a == ip))
    }
}

/// Whether one of `pod`'s egress rules with an FQDN peer could let `port`/`protocol` through
/// before the stage that denied it (`denied_at`, the egress verdict's stage; `None`: any
/// rule counts). The kernel opens such rules from the DNS answers the pod received, which
/// the engine alone does not see: a connection one of them might have let through is left
/// alone. A rule the kernel never reaches does not count: a tiered Deny (security or admin
/// tier, AdminNetworkPolicy) is decided before any namespaced or baseline rule, and a
/// namespaced isolation before any baseline rule, so an FQDN rule there cannot have opened
/// what the earlier stage denies. FQDN `Pass` rules count as well: a passed connection
/// goes on to the later stages, which may allow it.
fn fqdn_may_allow(
    engine: &Engine,
    pod: PodId,
    port: u16,
    protocol: Protocol,
    denied_at: Option<Stage>,
) -> bool {
    let rules = engine.pod_rules(pod, Direction::Egress);
    let (ns, baseline): (&[u32], &[u32]) = match denied_at {
        Some(Stage::Admin) => (&[], &[]),
        Some(Stage::Namespace) => (rules.ns_rules, &[]),
        _ => (rules.ns_rules, rules.baseline),
    };
    rules
        .tiered
        .iter()
        .chain(ns)
        .chain(baseline)
        .map(|&rid| engine.rule(rid))
        .filter(|r| r.action != AdminAction::Deny)
        .filter(|r| {
            r.peers
                .is_some_and(|p| p.iter().any(|p| matches!(p, PeerMatch::Fqdn(_))))
        })
        .any(|r| {
            r.ports.is_none_or(|ports| {
                ports.iter().any(|m| match m {
                    PortMatch::Proto(p) => *p == protocol,
                    PortMatch::Range(p, lo, hi) => *p == protocol && (*lo..=*hi).contains(&port),
                    PortMatch::Named(p, _) => p.is_none_or(|p| p == protocol),
                })
            })
        })
}

/// Whether `engine` now denies the tracked connection `t`, decided as the node's ruleset
/// decides it; `None` for connections the ruleset never decides, or not here:
/// - between two pods, at least one of them local (`forward`): the sender's egress and
///   the receiver's ingress, on the responder's address and port (after DNAT);
/// - from a local pod to the node itself (`input`, for pods whose interface is known): the
///   pod's egress to the node address, except Palisade's node services;
/// - between a local pod and an outside address (`forward`): the pod's egress, or its
///   ingress from that address;
/// - never what the node itself opened (`output` holds no policy: a pod cannot block its
///   node, kubelet probes included), nor a connection to an address an FQDN rule may have
///   opened (the pod's egress has one for that port and protocol).
pub fn decide(engine: &Engine, node: &NodeScope, t: &Tracked) -> Option<bool> {
    let protocol = protocol(t.protocol)?;
    if node.is_node_addr(t.src) {
        return None;
    }
    let src = engine.endpoint_for_ip(t.src);
    let dst = engine.endpoint_for_ip(t.responder);
    let to_node = node.is_node_addr(t.responder);
    let local = |p: PodId| node.local_pods.contains(&p);
    let decided_here = match (src, dst) {
        (Endpoint::Pod(p), _) if to_node => {
            local(p)
                && node.pod_interfaces.contains(&t.src)
                && !node.is_node_service(t.responder, protocol, t.responder_port)
        }
        _ if to_node => false,
        (Endpoint::Pod(s), Endpoint::Pod(d)) => local(s) || local(d),
        // Through `forward` to or from an outside address: the local pod's egress, or its
        // ingress (the outside address is the source the kernel sees, before any SNAT).
        (Endpoint::Pod(s), Endpoint::Ip(_)) => local(s),
        (Endpoint::Ip(_), Endpoint::Pod(d)) => local(d),
        _ => false,
    };
    if !decided_here {
        return None;
    }
    let verdict = engine.verdict(&Flow {
        src,
        dst,
        port: t.responder_port,
        protocol,
        http: None,
    });
    if verdict.allowed() {
        return Some(false);
    }
    let denied_at = verdict.egress.filter(|d| !d.allowed).map(|d| d.stage);
    // The kernel's FQDN sets hold (pod . address) pairs that DNS answers opened; a pod
    // is no DNS answer here (the engine decides pod peers by selector), an address is.
    if let Endpoint::Pod(p) = src {
        let to_address = to_node || matches!(dst, Endpoint::Ip(_));
        if to_address && fqdn_may_allow(engine, p, t.responder_port, protocol, denied_at) {
            return None;
        }
    }
    Some(true)
}

/// The connections `engine` now denies ([`decide`]).
pub fn now_denied<'a>(
    engine: &Engine,
    node: &NodeScope,
    tracked: &'a [Tracked],
) -> Vec<&'a Tracked> {
    tracked
        .iter()
        .filter(|t| decide(engine, node, t) == Some(true))
        .collect()
}

/// The node's own addresses: the `local` routes of its routing table (in `netns` when
/// given), addresses and prefixes (`127.0.0.0/8`, AnyIP ranges) alike. An error when the
/// IPv4 ones cannot be read (there is always `127.0.0.1`): taken for outside addresses,
/// the node's would be decided without the node-service exemption. A kernel without IPv6
/// just has no IPv6 ones.
pub fn node_addresses(netns: Option<&str>) -> std::io::Result<Vec<Cidr>> {
    let mut out = Vec::new();
    for fam in ["-4", "-6"] {
        let mut cmd = Command::new("ip");
        if let Some(ns) = netns {
            cmd.args(["-n", ns]);
        }
        let res = cmd
            .args([fam, "-j", "route", "show", "table", "local"])
            .stderr(std::process::Stdio::null())
            .output()?;
        let found = if res.status.success() {
            local_routes(&String::from_utf8_lossy(&res.stdout))
        } else {
            Vec::new()
        };
        if fam == "-4" && found.is_empty() {
            return Err(std::io::Error::other(
                "cannot read the node's addresses (`ip -4 route show table local`)",
            ));
        }
        out.extend(found);
    }
    Ok(out)
}

/// The `local` routes of `ip -j route show table local` output.
pub fn local_routes(json: &str) -> Vec<Cidr> {
    let v: Vec<serde_json::Value> = serde_json::from_str(json.trim()).unwrap_or_default();
    v.iter()
        .filter(|r| r.get("type").and_then(|t| t.as_str()) == Some("local"))
        .filter_map(|r| r.get("dst").and_then(|d| d.as_str()))
        .filter_map(|d| match d.parse::<IpAddr>() {
            Ok(ip) => Some(Cidr::host(ip)),
            Err(_) => d.parse::<Cidr>().ok(),
        })
        .collect()
}

/// Sets of closed UDP/SCTP conversations (`revoked_4`, `revoked_6`): `source . protocol .
/// source port . destination . destination port` as the ruleset saw the first packet (the
/// destination after DNAT), with a timeout.
pub const REVOKED: &str = "revoked";

/// How long a closed UDP or SCTP conversation stays refused in both directions.
pub const REVOKED_FOR: std::time::Duration = std::time::Duration::from_secs(600);

/// UDP has no SYN: once a connection's entry is deleted, the allowed side's next packet (a
/// server that keeps sending, as QUIC does) opened a fresh entry in its own direction, and
/// the denied side's packets passed as its replies. A closed UDP or SCTP conversation is
/// therefore remembered ([`REVOKED`]) and a new flow on it, in either direction, dropped.
/// `new_only` prefixes `ct state new` (for chains that see established packets too).
pub fn revoked_rules(new_only: bool) -> Vec<String> {
    let ct = if new_only { "ct state new " } else { "" };
    let mut out = Vec::new();
    for (fam, suffix) in [("ip", 4), ("ip6", 6)] {
        for (a, b) in [("saddr", "daddr"), ("daddr", "saddr")] {
            let (pa, pb) = if a == "saddr" {
                ("sport", "dport")
            } else {
                ("dport", "sport")
            };
            out.push(format!(
                "{ct}{fam} {a} . meta l4proto . th {pa} . {fam} {b} . th {pb} @{REVOKED}_{suffix} drop"
            ));
        }
    }
    out
}

/// The set definitions for [`revoked_rules`] (filled by [`remember`], not by rendering).
pub fn revoked_sets(sets: &mut std::collections::BTreeMap<String, crate::ruleset::SetDef>) {
    for (suffix, ty) in [(4, "ipv4_addr"), (6, "ipv6_addr")] {
        sets.insert(
            format!("{REVOKED}_{suffix}"),
            crate::ruleset::SetDef {
                keyword: "set",
                spec: format!(
                    "type {ty} . inet_proto . inet_service . {ty} . inet_service; flags timeout;"
                ),
                elements: Default::default(),
            },
        );
    }
}

/// One remembered conversation: its set (`revoked_4`, `revoked_6`) and its key as nft
/// writes it (`10.78.0.1 . udp . 40000 . 10.78.0.2 . 5353`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Revoked {
    /// The set's name.
    pub set: String,
    /// The element's key.
    pub key: String,
}

/// The closed UDP and SCTP conversations of `closed`, as [`revoked_rules`] match them.
pub fn revoked_entries(closed: &[&Tracked]) -> Vec<Revoked> {
    closed
        .iter()
        .filter(|t| matches!(t.protocol, 17 | 132))
        .map(|t| {
            let proto = if t.protocol == 17 { "udp" } else { "sctp" };
            let suffix = if t.src.is_ipv6() { 6 } else { 4 };
            Revoked {
                set: format!("{REVOKED}_{suffix}"),
                key: format!(
                    "{} . {proto} . {} . {} . {}",
                    t.src, t.src_port, t.responder, t.responder_port
                ),
            }
        })
        .collect()
}

/// The `nft` script that adds `entries`, each with its timeout in seconds (at least 1).
pub fn remember_script(entries: &[(Revoked, u64)]) -> String {
    let mut script = String::new();
    for (r, secs) in entries {
        script.push_str(&format!(
            "add element inet {} {} {{ {} timeout {}s }}\n",
            crate::ruleset::TABLE,
            r.set,
            r.key,
            (*secs).max(1)
        ));
    }
    script
}

/// The `nft` script that remembers the closed UDP and SCTP conversations of `closed`
/// ([`revoked_rules`]); empty when there are none. Apply it before deleting the entries,
/// so that no packet in between opens a fresh one.
pub fn remember(closed: &[&Tracked]) -> String {
    let entries: Vec<(Revoked, u64)> = revoked_entries(closed)
        .into_iter()
        .map(|r| (r, REVOKED_FOR.as_secs()))
        .collect();
    remember_script(&entries)
}

/// The elements of a `revoked_*` set in `nft -j list set` output, each with the seconds
/// until it expires.
pub fn parse_revoked(json: &str) -> Vec<(Revoked, u64)> {
    let v: serde_json::Value = serde_json::from_str(json.trim()).unwrap_or_default();
    let mut out = Vec::new();
    for item in v
        .get("nftables")
        .and_then(|n| n.as_array())
        .into_iter()
        .flatten()
    {
        let Some(set) = item.get("set") else { continue };
        let Some(name) = set.get("name").and_then(|n| n.as_str()) else {
            continue;
        };
        if !name.starts_with(REVOKED) {
            continue;
        }
        for e in set
            .get("elem")
            .and_then(|e| e.as_array())
            .into_iter()
            .flatten()
        {
            let e = e.get("elem").unwrap_or(e);
            let Some(parts) = e.pointer("/val/concat").and_then(|c| c.as_array()) else {
                continue;
            };
            let key: Option<Vec<String>> = parts
                .iter()
                .map(|p| match p {
                    serde_json::Value::String(s) => Some(s.clone()),
                    serde_json::Value::Number(n) => Some(n.to_string()),
                    _ => None,
                })
                .collect();
            let (Some(key), Some(expires)) = (key, e.get("expires").and_then(|x| x.as_u64()))
            else {
                continue;
            };
            out.push((
                Revoked {
                    set: name.to_string(),
                    key: key.join(" . "),
                },
                expires,
            ));
        }
    }
    out
}

/// The closed conversations the kernel remembers now (in `netns` when given); none when the
/// table or its sets are not there.
pub fn read_revoked(netns: Option<&str>) -> Vec<(Revoked, u64)> {
    [4, 6]
        .iter()
        .filter_map(|s| {
            crate::nft::run(
                &[
                    "-j",
                    "list",
                    "set",
                    "inet",
                    crate::ruleset::TABLE,
                    &format!("{REVOKED}_{s}"),
                ],
                netns,
            )
            .ok()
        })
        .flat_map(|out| parse_revoked(&out))
        .collect()
}

/// Deletes one connection's entry (its exact original tuple); whether one was deleted.
pub fn delete(netns: Option<&str>, t: &Tracked) -> std::io::Result<bool> {
    let proto = match t.protocol {
        6 => "tcp",
        17 => "udp",
        _ => "sctp",
    };
    let family = if t.src.is_ipv6() { "ipv6" } else { "ipv4" };
    let out = conntrack(netns)
        .args(["-D", "-f", family, "-p", proto])
        .args(["-s", &t.src.to_string(), "-d", &t.dst.to_string()])
        .args(["--sport", &t.src_port.to_string()])
        .args(["--dport", &t.dst_port.to_string()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()?;
    // conntrack exits 1 when no entry matched (the connection ended meanwhile).
    Ok(out.success())
}

/// When to close the connections a new policy denies: listing the node's conntrack table
/// costs in proportion to every connection on the node, so a burst of policy changes (pods
/// rolling out, a controller resyncing) is coalesced: at most one pass per `min_gap`, and
/// always one after the last applied change, so no change goes unchecked.
#[derive(Debug, Clone)]
pub struct CloseSchedule {
    min_gap: std::time::Duration,
    last_run: Option<std::time::Instant>,
    pending: bool,
}

impl CloseSchedule {
    /// A schedule allowing one pass per `min_gap`.
    pub fn new(min_gap: std::time::Duration) -> Self {
        CloseSchedule {
            min_gap,
            last_run: None,
            pending: false,
        }
    }

    /// A change was applied at `now`: whether to close denied connections now. When not,
    /// [`CloseSchedule::next_due`] says when.
    pub fn changed(&mut self, now: std::time::Instant) -> bool {
        self.pending = true;
        self.due(now)
    }

    /// Whether a pass is pending and may run at `now`.
    pub fn due(&self, now: std::time::Instant) -> bool {
        self.pending
            && self
                .last_run
                .is_none_or(|t| now.saturating_duration_since(t) >= self.min_gap)
    }

    /// When the pending pass may run (`None`: nothing pending).
    pub fn next_due(&self) -> Option<std::time::Instant> {
        if !self.pending {
            return None;
        }
        Some(match self.last_run {
            Some(t) => t + self.min_gap,
            None => std::time::Instant::now(),
        })
    }

    /// A pass ran at `now`, with the policy in force then: nothing is pending.
    pub fn ran(&mut self, now: std::time::Instant) {
        self.pending = false;
        self.last_run = Some(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LISTING: &str = r#"<?xml version="1.0" encoding="utf-8"?>
<conntrack>
<flow><meta direction="original"><layer3 protonum="2" protoname="ipv4"><src>10.78.1.2</src><dst>10.96.0.10</dst></layer3><layer4 protonum="6" protoname="tcp"><sport>40112</sport><dport>80</dport></layer4></meta><meta direction="reply"><layer3 protonum="2" protoname="ipv4"><src>10.78.1.3</src><dst>10.78.1.2</dst></layer3><layer4 protonum="6" protoname="tcp"><sport>8080</sport><dport>40112</dport></layer4></meta><meta direction="independent"><state>ESTABLISHED</state><timeout>431999</timeout><id>1</id><assured/></meta></flow>
<flow><meta direction="original"><layer3 protonum="2" protoname="ipv4"><src>10.78.1.2</src><dst>10.78.1.3</dst></layer3><layer4 protonum="1" protoname="icmp"></layer4></meta><meta direction="reply"><layer3 protonum="2" protoname="ipv4"><src>10.78.1.3</src><dst>10.78.1.2</dst></layer3><layer4 protonum="1" protoname="icmp"></layer4></meta></flow>
<flow><meta direction="original"><layer3 protonum="10" protoname="ipv6"><src>fd00::2</src><dst>fd00::3</dst></layer3><layer4 protonum="17" protoname="udp"><sport>5353</sport><dport>53</dport></layer4></meta><meta direction="reply"><layer3 protonum="10" protoname="ipv6"><src>fd00::3</src><dst>fd00::2</dst></layer3><layer4 protonum="17" protoname="udp"><sport>53</sport><dport>5353</dport></layer4></meta></flow>
</conntrack>
"#;

    #[test]
    fn a_listing_gives_tcp_udp_sctp_connections_with_the_responder_after_dnat() {
        let t = parse_listing(LISTING);
        assert_eq!(t.len(), 2, "{t:?}");
        assert_eq!(
            t[0],
            Tracked {
                protocol: 6,
                src: "10.78.1.2".parse().unwrap(),
                dst: "10.96.0.10".parse().unwrap(),
                src_port: 40112,
                dst_port: 80,
                responder: "10.78.1.3".parse().unwrap(),
                responder_port: 8080,
            }
        );
        assert_eq!(t[1].protocol, 17);
        assert_eq!(t[1].responder, "fd00::3".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn garbage_is_skipped_not_a_panic() {
        for s in [
            "",
            "<flow>",
            "<flow><meta direction=\"original\"><layer4 protonum=\"6\"",
            "<flow><meta direction=\"reply\"></meta><meta direction=\"original\"><src>x</src></meta></flow>",
            "<flow><meta direction=\"original\"><layer3><src>10.0.0.1</src><dst>10.0.0.2</dst></layer3><layer4 protonum=\"6\"><sport>99999</sport><dport>1</dport></layer4></meta><meta direction=\"reply\"><src>10.0.0.2</src><sport>1</sport></meta></flow>",
        ] {
            assert!(parse_listing(s).is_empty(), "{s}");
        }
    }
    /// Node `n1` (addresses 10.79.0.1, also a host-network pod's, and 169.254.1.1) with
    /// `iso` (egress: nothing) and `web` (egress: 10255 on the node, and FQDN answers on
    /// 443), under the zero-trust posture; TCP 5300 is Palisade's DNS proxy.
    const NODE: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: agent, namespace: kube-system}
spec: {nodeName: n1, hostNetwork: true, containers: [{name: c}]}
status: {podIP: 10.79.0.1}
---
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: x, labels: {app: web}}
spec: {nodeName: n1, containers: [{name: c}]}
status: {podIP: 10.78.0.1}
---
apiVersion: v1
kind: Pod
metadata: {name: iso, namespace: x, labels: {app: iso}}
spec: {nodeName: n1, containers: [{name: c}]}
status: {podIP: 10.78.0.2}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: iso-out, namespace: x}
spec: {podSelector: {matchLabels: {app: iso}}, policyTypes: [Egress]}
---
apiVersion: palisade.dev/v1alpha1
kind: SecurityPolicy
metadata: {name: web-out, namespace: x}
spec:
  podSelector: {matchLabels: {app: web}}
  egress:
  - to: [{fqdn: "**.models.test"}]
    ports: [{port: 443}]
  - to: [{ipBlock: {cidr: 10.79.0.1/32}}]
    ports: [{port: 10255}]
"#;

    fn node_engine() -> (Engine, NodeScope) {
        node_engine_with("")
    }

    /// [`node_engine`] with `extra` manifests added.
    fn node_engine_with(extra: &str) -> (Engine, NodeScope) {
        let mut m = palisade_policy::Manifests::new();
        m.add_file("n.yaml", &format!("{NODE}{extra}"));
        assert!(!m.has_errors(), "{:#?}", m.diagnostics);
        let e = Engine::compile_with(
            &palisade_policy::Snapshot::from_manifests(&m),
            palisade_policy::Posture::Deny,
        );
        let scope = NodeScope {
            local_pods: (0..e.pods().len() as PodId).collect(),
            local_addrs: ["10.79.0.1/32", "169.254.1.1/32", "127.0.0.0/8"]
                .iter()
                .map(|c| c.parse().unwrap())
                .collect(),
            pod_interfaces: ["10.78.0.1", "10.78.0.2"]
                .iter()
                .map(|a| a.parse().unwrap())
                .collect(),
            node_services: NodeService::from_listen("0.0.0.0:5300", &[Protocol::TCP]).unwrap(),
        };
        (e, scope)
    }

    /// `src:port → dst:port` answered by `responder:port` (TCP).
    fn tcp(src: &str, dst: &str, responder: &str) -> Tracked {
        fn split(a: &str) -> (&str, &str) {
            let (host, port) = a.rsplit_once(':').unwrap();
            (host.trim_matches(['[', ']']), port)
        }
        let ((s, sp), (d, dp), (r, rp)) = (split(src), split(dst), split(responder));
        Tracked {
            protocol: 6,
            src: s.parse().unwrap(),
            dst: d.parse().unwrap(),
            src_port: sp.parse().unwrap(),
            dst_port: dp.parse().unwrap(),
            responder: r.parse().unwrap(),
            responder_port: rp.parse().unwrap(),
        }
    }

    /// A pod's connections to its own node are decided as `input` decides them: its egress
    /// to the node address and port (a host-network pod's included), Palisade's node
    /// services exempt (directly or redirected), connections an FQDN rule may have opened
    /// left alone, and only for pods whose interface the ruleset knows. On the old code
    /// none of them was decided.
    #[test]
    fn a_pods_connections_to_its_node_are_decided_as_input_decides_them() {
        let (e, node) = node_engine();
        let d =
            |src: &str, dst: &str, responder: &str| decide(&e, &node, &tcp(src, dst, responder));
        assert_eq!(
            d("10.78.0.2:40000", "10.79.0.1:10250", "10.79.0.1:10250"),
            Some(true)
        );
        assert_eq!(
            d("10.78.0.2:40001", "169.254.1.1:10250", "169.254.1.1:10250"),
            Some(true)
        );
        assert_eq!(
            d("10.78.0.2:40002", "169.254.1.1:5300", "169.254.1.1:5300"),
            None
        );
        assert_eq!(
            d("10.78.0.2:40003", "10.96.0.10:53", "169.254.1.1:5300"),
            None
        );
        assert_eq!(
            d("10.78.0.1:40004", "10.79.0.1:10255", "10.79.0.1:10255"),
            Some(false)
        );
        assert_eq!(
            d("10.78.0.1:40005", "169.254.1.1:22", "169.254.1.1:22"),
            Some(true)
        );
        // 443 may be open to web from a DNS answer that named the node: left alone.
        assert_eq!(
            d("10.78.0.1:40006", "169.254.1.1:443", "169.254.1.1:443"),
            None
        );
        // Pod to pod as before.
        assert_eq!(
            d("10.78.0.1:40007", "10.78.0.2:8080", "10.78.0.2:8080"),
            Some(true)
        );
        // Outside addresses through `forward`: egress, and ingress from them; an FQDN port
        // is left alone there too.
        assert_eq!(
            d("10.78.0.2:40009", "192.0.2.7:80", "192.0.2.7:80"),
            Some(true)
        );
        assert_eq!(d("10.78.0.1:40010", "192.0.2.7:443", "192.0.2.7:443"), None);
        assert_eq!(
            d("192.0.2.7:40011", "10.78.0.1:8080", "10.78.0.1:8080"),
            Some(true)
        );
        assert_eq!(d("192.0.2.7:40012", "192.0.2.8:80", "192.0.2.8:80"), None);
        // A pod whose interface the ruleset does not know is not held to policy in `input`.
        let mut unknown = node.clone();
        unknown.pod_interfaces.clear();
        assert_eq!(
            decide(
                &e,
                &unknown,
                &tcp("10.78.0.2:40008", "10.79.0.1:10250", "10.79.0.1:10250")
            ),
            None
        );
        assert_eq!(
            now_denied(
                &e,
                &node,
                &[tcp("10.78.0.2:1", "10.79.0.1:10250", "10.79.0.1:10250")]
            )
            .len(),
            1
        );
    }

    /// A port a pod's FQDN rule allows no longer shields a connection that a tiered Deny
    /// now refuses: the kernel decides the Deny before the namespaced FQDN rule, whatever
    /// DNS answers opened. On the old code every connection on an FQDN port was left alone
    /// (`None` here). Below a tiered FQDN Pass, which hands the connection on to the
    /// namespaced stage, it is left alone still.
    #[test]
    fn a_tiered_deny_closes_connections_on_an_fqdn_port() {
        let deny = r#"---
apiVersion: palisade.dev/v1alpha1
kind: ClusterSecurityPolicy
metadata: {name: block}
spec:
  tier: security
  egress:
  - {action: Deny, to: [{ipBlock: {cidr: 192.0.2.0/24}}], ports: [{port: 443}]}
"#;
        let conn = tcp("10.78.0.1:40010", "192.0.2.7:443", "192.0.2.7:443");
        let (e, node) = node_engine_with(deny);
        assert_eq!(decide(&e, &node, &conn), Some(true));
        // Elsewhere on 443 the FQDN rule may still have opened it.
        let other = tcp("10.78.0.1:40011", "203.0.113.9:443", "203.0.113.9:443");
        assert_eq!(decide(&e, &node, &other), None);
        let pass = deny.replace(
            "  - {action: Deny",
            "  - {action: Pass, to: [{fqdn: \"**.models.test\"}], ports: [{port: 443}]}\n  - {action: Deny",
        );
        let (e, node) = node_engine_with(&pass);
        assert_eq!(decide(&e, &node, &conn), None);
    }

    /// What the node opens itself (kubelet probes, a host-network pod) passes `output`,
    /// which holds no policy, whatever the engine says of it (here the zero-trust posture
    /// denies the host-network pod's connection to `iso`). On the old code the agent
    /// deleted such entries; with `output` now refusing mid-stream TCP to pods, that would
    /// have cut the node off from its pods.
    #[test]
    fn what_the_node_opens_is_never_closed() {
        let (e, node) = node_engine();
        let probe = tcp("10.79.0.1:50000", "10.78.0.2:8080", "10.78.0.2:8080");
        assert!(!e
            .verdict(&Flow {
                src: e.endpoint_for_ip(probe.src),
                dst: e.endpoint_for_ip(probe.responder),
                port: 8080,
                protocol: Protocol::TCP,
                http: None,
            })
            .allowed());
        assert_eq!(decide(&e, &node, &probe), None);
        assert_eq!(
            decide(
                &e,
                &node,
                &tcp("169.254.1.1:50001", "10.78.0.1:80", "10.78.0.1:80")
            ),
            None
        );
    }

    /// Closed UDP and SCTP conversations are remembered as the ruleset sees their first
    /// packet (the destination after DNAT); TCP needs no memory (its SYN rule).
    #[test]
    fn closed_udp_conversations_are_remembered_by_their_tuple_after_dnat() {
        let mut dns = tcp("10.78.0.1:40000", "10.96.0.10:53", "10.78.0.2:5353");
        dns.protocol = 17;
        let mut v6 = tcp("[fd00::1]:40001", "[fd00::2]:9", "[fd00::2]:9");
        v6.protocol = 132;
        let plain = tcp("10.78.0.1:40002", "10.78.0.2:80", "10.78.0.2:80");
        assert_eq!(
            remember(&[&dns, &plain, &v6]),
            "add element inet palisade revoked_4 { 10.78.0.1 . udp . 40000 . 10.78.0.2 . 5353 timeout 600s }\n\
             add element inet palisade revoked_6 { fd00::1 . sctp . 40001 . fd00::2 . 9 timeout 600s }\n"
        );
        assert_eq!(remember(&[&plain]), "");
        assert_eq!(
            revoked_rules(true)[1],
            "ct state new ip daddr . meta l4proto . th dport . ip saddr . th sport @revoked_4 drop"
        );
    }

    /// What the kernel remembers is read back with the time left, to be carried over a full
    /// rebuild of the table.
    #[test]
    fn remembered_conversations_are_read_back_with_the_time_left() {
        let json = r#"{"nftables": [{"metainfo": {"version": "1.0.6"}}, {"set": {"family": "inet", "name": "revoked_4", "table": "palisade", "type": ["ipv4_addr", "inet_proto", "inet_service", "ipv4_addr", "inet_service"], "handle": 1, "flags": ["timeout"], "elem": [{"elem": {"val": {"concat": ["10.78.0.1", "sctp", 40001, "10.78.0.2", 9]}, "timeout": 60, "expires": 59}}, {"elem": {"val": {"concat": ["10.78.0.1", "udp", 40000, "10.78.0.2", 5353]}, "timeout": 600, "expires": 599}}]}}]}"#;
        let r = parse_revoked(json);
        assert_eq!(r.len(), 2);
        assert_eq!(r[1].0.key, "10.78.0.1 . udp . 40000 . 10.78.0.2 . 5353");
        assert_eq!(r[1].1, 599);
        assert_eq!(
            remember_script(&r[..1]),
            "add element inet palisade revoked_4 { 10.78.0.1 . sctp . 40001 . 10.78.0.2 . 9 timeout 59s }\n"
        );
        assert!(parse_revoked("garbage").is_empty());
    }

    /// No addresses is an error, not an empty node (on the old code: `Ok([])`, and every
    /// connection to the node was taken for one to an outside address).
    #[test]
    fn unreadable_node_addresses_are_an_error() {
        assert!(node_addresses(Some("palisade-no-such-netns")).is_err());
    }

    #[test]
    fn local_routes_are_the_nodes_addresses() {
        let json = r#"[{"type":"local","dst":"10.79.0.1","dev":"lo","protocol":"kernel","scope":"host","prefsrc":"10.79.0.1","flags":[]},
            {"type":"local","dst":"127.0.0.0/8","dev":"lo","flags":[]},
            {"type":"broadcast","dst":"192.0.2.255","dev":"eth0","flags":[]},
            {"type":"local","dst":"fd00::9","dev":"eth0","flags":[]}]"#;
        let r = local_routes(json);
        assert_eq!(r.len(), 3, "{r:?}");
        let node = NodeScope {
            local_addrs: r,
            ..NodeScope::default()
        };
        for (ip, local) in [
            ("10.79.0.1", true),
            ("127.0.0.53", true),
            ("fd00::9", true),
            ("192.0.2.255", false),
            ("10.79.0.2", false),
        ] {
            assert_eq!(node.is_node_addr(ip.parse().unwrap()), local, "{ip}");
        }
        assert!(local_routes("").is_empty());
        assert!(local_routes("{garbage").is_empty());
    }

    /// Ten changes within a second cost two conntrack passes, not ten: one at the first
    /// change, one a second later covering the other nine (the last change is never left
    /// unchecked). On the old code every applied change listed the whole table.
    #[test]
    fn a_burst_of_changes_is_coalesced_and_the_last_one_is_checked() {
        use std::time::{Duration, Instant};
        let gap = Duration::from_secs(1);
        let mut s = CloseSchedule::new(gap);
        let t0 = Instant::now();
        assert_eq!(s.next_due(), None);
        assert!(s.changed(t0), "the first change is checked at once");
        s.ran(t0);
        assert_eq!(s.next_due(), None);
        let mut runs = 1;
        for i in 1..10u32 {
            let at = t0 + Duration::from_millis(100) * i;
            if s.changed(at) {
                s.ran(at);
                runs += 1;
            }
        }
        assert_eq!(runs, 1, "the burst waits");
        assert_eq!(
            s.next_due(),
            Some(t0 + gap),
            "one pass is pending, due after the gap"
        );
        assert!(!s.due(t0 + Duration::from_millis(999)));
        assert!(s.due(t0 + gap));
        s.ran(t0 + gap);
        assert_eq!(s.next_due(), None, "nothing left after it");
        // A lone change long after is checked at once again.
        assert!(s.changed(t0 + Duration::from_secs(5)));
    }
}
