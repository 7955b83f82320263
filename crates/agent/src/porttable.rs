//! `table bridge palisade`: the checks at bridge ports that keep pods behind a Linux bridge
//! from sending as one another, as the node, or past the policy ([`crate::bridge`] decides
//! which port serves which address; this module writes the table, and binds each port to
//! its pod's MAC: [`bind_macs`]).
//!
//! The table sits in the bridge's `prerouting` hook, before `br_netfilter` hands IPv4 and
//! IPv6 packets to the `inet` table's `forward` and `input`. Two things there are easy to get
//! wrong:
//! - `br_netfilter` hands a VLAN-tagged frame to no `inet` hook at all (unless
//!   `bridge-nf-filter-vlan-tagged` is on), while the receiving pod's kernel takes a frame
//!   tagged with VLAN 0 (a priority tag) as an untagged one: a tag is a way past the policy.
//!   And in the bridge family `ip saddr` depends on `meta protocol`, which for a tagged frame
//!   is the protocol inside the tag, while `arp` and `ip6` expressions depend on the outer
//!   EtherType, which a tag hides. Pod ports therefore send no tagged frames at all.
//! - Neighbour discovery carries the address it claims in the message, not in the IPv6
//!   source (a neighbour advertisement's target), and router advertisements and redirects
//!   change other pods' routes: pods are no routers, so their ports send neither.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

/// The bridge-family table that binds bridge ports to their pods' addresses
/// (`table bridge palisade`).
pub const PORT_TABLE: &str = "palisade";

/// What `table bridge palisade` checks besides the bindings themselves.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PortGuard {
    /// Ports that serve a pod ([`crate::bridge::Binding::owners`]): held to their bound
    /// addresses even when none is bound any more (a pod that takes its own address off its
    /// interface sends nothing else, rather than anything at all).
    pub served: BTreeSet<String>,
    /// Bridge ports that are veths into other namespaces (pods, known to the agent or
    /// not): they send no VLAN-tagged frames, no router advertisements and no redirects.
    pub pod_ports: BTreeSet<String>,
    /// The bridges the ports belong to (not checked here: the bridged pod addresses may
    /// reach `inet palisade` from them only, [`crate::antispoof::add_bridged`]).
    pub bridges: BTreeSet<String>,
    /// The Ethernet address each port that serves a pod is bound to
    /// ([`crate::bridge::bind_macs`]): frames from the port must carry it, and no other pod
    /// port may send from it, so no pod can make the bridge switch another pod's traffic
    /// to its own port.
    pub macs: BTreeMap<String, [u8; 6]>,
    /// The node's own addresses on its bridges (the pods' gateway, link-local included):
    /// no port may send from them or advertise them.
    pub node_addrs: BTreeSet<IpAddr>,
}

impl PortGuard {
    /// Whether the table has anything to check.
    fn is_empty(&self) -> bool {
        self.served.is_empty() && self.pod_ports.is_empty()
    }
}

/// Binds each port that serves a pod (`served`: port → its index) to the Ethernet address
/// of its peer (`read`), once, for as long as the port exists: `known` is what the last
/// call decided (port → (index, MAC)). A MAC already bound to another port, or read on
/// several ports not bound yet, is bound to none of them. Frames from a bound port must
/// carry its MAC, and no other pod port may send from it ([`crate::porttable`]): before,
/// a pod could send with another pod's MAC and the bridge then switched that pod's
/// traffic to it (its FDB learns the MAC on the port it last came from).
pub fn bind_macs(
    known: &BTreeMap<String, (u32, [u8; 6])>,
    served: &BTreeMap<String, u32>,
    read: &BTreeMap<String, [u8; 6]>,
) -> BTreeMap<String, (u32, [u8; 6])> {
    let mut out: BTreeMap<String, (u32, [u8; 6])> = known
        .iter()
        .filter(|(port, (index, _))| served.get(*port) == Some(index))
        .map(|(p, v)| (p.clone(), *v))
        .collect();
    let taken: BTreeSet<[u8; 6]> = out.values().map(|(_, m)| *m).collect();
    let mut fresh: BTreeMap<[u8; 6], Vec<(&String, u32)>> = BTreeMap::new();
    for (port, index) in served {
        if out.contains_key(port) {
            continue;
        }
        if let Some(mac) = read.get(port) {
            if !taken.contains(mac) {
                fresh.entry(*mac).or_default().push((port, *index));
            }
        }
    }
    for (mac, ports) in fresh {
        if let [(port, index)] = ports[..] {
            out.insert(port.clone(), (index, mac));
        } else {
            tracing::warn!(ports = ?ports, "one MAC on several new pods' interfaces: bound to none");
        }
    }
    out
}

/// A set declaration with its elements.
fn set(name: &str, spec: &str, el: &BTreeSet<String>) -> String {
    if el.is_empty() {
        format!("  set {name} {{ {spec}; }}\n")
    } else {
        let e: Vec<&str> = el.iter().map(String::as_str).collect();
        format!(
            "  set {name} {{ {spec}; elements = {{ {} }} }}\n",
            e.join(", ")
        )
    }
}

/// An IPv6 address as the 128-bit value `@th,64,128` (a neighbour advertisement's target)
/// compares with.
fn raw6(v6: &std::net::Ipv6Addr) -> String {
    format!("0x{:032x}", u128::from(*v6))
}

/// The `nft` script that replaces `table bridge palisade` with the checks for `bound` (pod
/// address → its bridge port), `held` and `guard`, or removes it when there is nothing to
/// check. In the bridge's `prerouting` hook:
/// - a frame from a port that serves a pod (bound or [`PortGuard::served`]) must carry one
///   of its pod's addresses: IPv4 and IPv6 source, ARP sender, and the target of a
///   neighbour advertisement (unless link-local); its link-local address may only send
///   ICMPv6 (neighbour discovery, as in `inet palisade`'s `input`); anything else from it,
///   other EtherTypes included, is dropped;
/// - no pod port ([`PortGuard::pod_ports`]) sends VLAN-tagged frames, router
///   advertisements, redirects or router renumbering, or another port's bound MAC
///   ([`PortGuard::macs`]); a port with a bound MAC sends no other;
/// - a frame from any other port must not carry a bound pod's address, a held one or the
///   node's, as IPv4/IPv6 source, ARP sender or neighbour-advertisement target;
/// - `held` addresses ([`crate::bridge::Binding::held`]) may be sent from no port.
///
/// A pod's own IPv4 packet costs five set lookups (is the port bound, is the frame tagged,
/// is its MAC bound, is it the port's, does the address pair match).
pub fn port_script(
    bound: &BTreeMap<IpAddr, String>,
    held: &BTreeSet<IpAddr>,
    guard: &PortGuard,
) -> String {
    let mut out = format!("table bridge {PORT_TABLE} {{}}\ndelete table bridge {PORT_TABLE}\n");
    if bound.is_empty() && held.is_empty() && guard.is_empty() {
        return out;
    }
    let quote = |port: &str| format!("\"{port}\"");
    let mut ports: BTreeSet<String> = guard
        .served
        .iter()
        .filter(|p| crate::antispoof::valid_ifname(p))
        .map(|p| quote(p))
        .collect();
    let pod_ports: BTreeSet<String> = guard
        .pod_ports
        .iter()
        .filter(|p| crate::antispoof::valid_ifname(p))
        .map(|p| quote(p))
        .collect();
    let (mut src4, mut src6, mut addr4, mut addr6, mut nd6, mut targets6) = <(
        BTreeSet<String>,
        BTreeSet<String>,
        BTreeSet<String>,
        BTreeSet<String>,
        BTreeSet<String>,
        BTreeSet<String>,
    )>::default();
    for (ip, port) in bound {
        if !crate::antispoof::valid_ifname(port) {
            continue;
        }
        ports.insert(quote(port));
        match ip {
            IpAddr::V4(_) => {
                src4.insert(format!("\"{port}\" . {ip}"));
            }
            IpAddr::V6(v6) => {
                src6.insert(format!("\"{port}\" . {ip}"));
                nd6.insert(format!("\"{port}\" . {}", raw6(v6)));
            }
        }
    }
    for ip in bound.keys().chain(held).chain(&guard.node_addrs) {
        match ip {
            IpAddr::V4(_) => {
                addr4.insert(ip.to_string());
            }
            IpAddr::V6(v6) => {
                addr6.insert(ip.to_string());
                targets6.insert(raw6(v6));
            }
        }
    }
    let mac = |m: &[u8; 6]| {
        m.iter()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(":")
    };
    let (mut macs, mut mac_ports, mut bound_macs) =
        <(BTreeSet<String>, BTreeSet<String>, BTreeSet<String>)>::default();
    for (port, m) in &guard.macs {
        if crate::antispoof::valid_ifname(port) {
            macs.insert(format!("\"{port}\" . {}", mac(m)));
            mac_ports.insert(quote(port));
            bound_macs.insert(mac(m));
        }
    }
    out.push_str(&format!("table bridge {PORT_TABLE} {{\n"));
    out.push_str(&set("ports", "type ifname", &ports));
    out.push_str(&set("pod_ports", "type ifname", &pod_ports));
    out.push_str(&set("src_4", "type ifname . ipv4_addr", &src4));
    out.push_str(&set("src_6", "type ifname . ipv6_addr", &src6));
    out.push_str(&set("addr_4", "type ipv4_addr", &addr4));
    out.push_str(&set("addr_6", "type ipv6_addr", &addr6));
    out.push_str(&set("nd_6", "typeof iifname . @th,64,128", &nd6));
    out.push_str(&set("targets_6", "typeof @th,64,128", &targets6));
    out.push_str(&set("macs", "type ifname . ether_addr", &macs));
    out.push_str(&set("mac_ports", "type ifname", &mac_ports));
    out.push_str(&set("bound_macs", "type ether_addr", &bound_macs));
    out.push_str(
        "  chain prerouting {\n    type filter hook prerouting priority filter; policy accept;\n    \
         iifname @ports jump port_source\n    \
         iifname @pod_ports jump pod_port\n    \
         ip saddr @addr_4 drop\n    \
         arp saddr ip @addr_4 drop\n    \
         ip6 saddr @addr_6 drop\n    \
         icmpv6 type nd-neighbor-advert @th,64,128 @targets_6 drop\n  }\n",
    );
    out.push_str(
        "  chain pod_port {\n    \
         ether type { 8021q, 8021ad } drop\n    \
         icmpv6 type { nd-router-advert, nd-redirect, router-renumbering } drop\n    \
         ether saddr @bound_macs iifname . ether saddr != @macs drop\n    \
         iifname @mac_ports iifname . ether saddr != @macs drop\n  }\n",
    );
    out.push_str(
        "  chain port_source {\n    \
         jump pod_port\n    \
         iifname . ip saddr @src_4 accept\n    \
         iifname . arp saddr ip @src_4 accept\n    \
         arp saddr ip 0.0.0.0 accept\n    \
         icmpv6 type nd-neighbor-advert iifname . @th,64,128 @nd_6 accept\n    \
         icmpv6 type nd-neighbor-advert @th,64,128 @targets_6 drop\n    \
         icmpv6 type nd-neighbor-advert @th,64,10 0x3fa accept\n    \
         icmpv6 type nd-neighbor-advert drop\n    \
         iifname . ip6 saddr @src_6 accept\n    \
         ip6 saddr @addr_6 drop\n    \
         ip6 saddr { ::, fe80::/10 } meta l4proto ipv6-icmp accept\n    \
         drop\n  }\n}\n",
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn the_port_table_pairs_each_port_with_its_addresses() {
        let bound: BTreeMap<IpAddr, String> = [
            (ip("10.0.0.1"), "veth1".to_string()),
            (ip("fd00::1"), "veth1".to_string()),
            (ip("10.0.0.2"), "bad\"x".to_string()),
        ]
        .into_iter()
        .collect();
        let s = port_script(&bound, &[ip("10.0.0.7")].into(), &PortGuard::default());
        assert!(s.starts_with("table bridge palisade {}\ndelete table bridge palisade\n"));
        assert!(
            s.contains(
                "set src_4 { type ifname . ipv4_addr; elements = { \"veth1\" . 10.0.0.1 } }"
            ),
            "{s}"
        );
        assert!(
            s.contains("\"veth1\" . 0xfd000000000000000000000000000001"),
            "{s}"
        );
        assert!(!s.contains("bad"), "{s}");
        assert!(
            s.contains(
                "set addr_4 { type ipv4_addr; elements = { 10.0.0.1, 10.0.0.2, 10.0.0.7 } }"
            ),
            "held addresses, and bound ones whatever their port's name, are sent from no \
             other port: {s}"
        );
        assert_eq!(
            port_script(&BTreeMap::new(), &BTreeSet::new(), &PortGuard::default()),
            "table bridge palisade {}\ndelete table bridge palisade\n"
        );
    }

    /// On the old table a neighbour advertisement from a port serving no pod was checked by
    /// its IPv6 source only (link-local passed), whatever address it advertised; tagged
    /// frames and router advertisements passed every port; a port serving a pod whose
    /// address was no longer bound left the table's port set and was checked no more; the
    /// node's gateway address could be claimed from any unbound port.
    #[test]
    fn advertisements_tags_routers_served_ports_and_the_gateway_are_checked() {
        let bound: BTreeMap<IpAddr, String> =
            [(ip("fd00::1"), "veth1".to_string())].into_iter().collect();
        let guard = PortGuard {
            served: ["veth1".to_string(), "veth2".to_string()].into(),
            pod_ports: ["veth1", "veth2", "veth3"].map(String::from).into(),
            node_addrs: [ip("10.0.0.254"), ip("fe80::1")].into(),
            macs: [("veth1".to_string(), [2, 0, 0, 0, 0, 0xa1])].into(),
            ..PortGuard::default()
        };
        let s = port_script(&bound, &[ip("fd00::7")].into(), &guard);
        let set_line = |name: &str| {
            s.lines()
                .find(|l| l.trim_start().starts_with(&format!("set {name} ")))
                .unwrap_or_else(|| panic!("no set {name}: {s}"))
                .to_string()
        };
        assert!(
            set_line("targets_6").contains(
                "0xfd000000000000000000000000000001, 0xfd000000000000000000000000000007, \
                 0xfe800000000000000000000000000001"
            ),
            "{s}"
        );
        let pre = s.split("chain prerouting").nth(1).unwrap();
        let pre = &pre[..pre.find("\n  }").unwrap()];
        assert!(
            pre.contains("icmpv6 type nd-neighbor-advert @th,64,128 @targets_6 drop"),
            "an unbound port's advertisement of a bound, held or node address: {s}"
        );
        assert!(pre.contains("iifname @pod_ports jump pod_port"), "{s}");
        let pod_port = s.split("chain pod_port").nth(1).unwrap();
        assert!(
            pod_port.contains("ether type { 8021q, 8021ad } drop")
                && pod_port.contains("nd-router-advert, nd-redirect"),
            "{s}"
        );
        assert!(
            set_line("ports").contains("\"veth1\", \"veth2\""),
            "a served port with nothing bound is still checked: {s}"
        );
        assert!(set_line("pod_ports").contains("\"veth3\""), "{s}");
        assert!(
            set_line("macs").contains("\"veth1\" . 02:00:00:00:00:a1")
                && set_line("bound_macs").contains("02:00:00:00:00:a1"),
            "{s}"
        );
        assert!(
            pod_port.contains("ether saddr @bound_macs iifname . ether saddr != @macs drop")
                && pod_port.contains("iifname @mac_ports iifname . ether saddr != @macs drop"),
            "another pod's MAC, or another MAC from a port with one bound: {s}"
        );
        assert!(
            set_line("addr_4").contains("10.0.0.254") && set_line("addr_6").contains("fe80::1"),
            "the node's addresses are sent from no port: {s}"
        );
        let src = s.split("chain port_source").nth(1).unwrap();
        let first = |rule: &str| src.find(rule).unwrap_or_else(|| panic!("{rule}: {s}"));
        assert!(first("jump pod_port") < first("@src_4 accept"), "{s}");
        assert!(
            first("@th,64,128 @targets_6 drop") < first("@th,64,10 0x3fa accept"),
            "{s}"
        );
        assert!(
            first("ip6 saddr @addr_6 drop") < first("fe80::/10 } meta l4proto"),
            "a served port's link-local ICMPv6 from the node's address: {s}"
        );
        // Only pod ports known: the table is still there, for tags and routers.
        let only = PortGuard {
            pod_ports: ["veth3".to_string()].into(),
            ..PortGuard::default()
        };
        assert!(port_script(&BTreeMap::new(), &BTreeSet::new(), &only).contains("chain pod_port"));
    }

    #[test]
    fn a_mac_is_bound_once_to_the_one_port_that_serves_its_pod() {
        let (m1, m2) = ([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2]);
        let served: BTreeMap<String, u32> = [("veth1".into(), 11), ("veth2".into(), 12)]
            .into_iter()
            .collect();
        let read: BTreeMap<String, [u8; 6]> = [("veth1".into(), m1), ("veth2".into(), m2)]
            .into_iter()
            .collect();
        let b = bind_macs(&BTreeMap::new(), &served, &read);
        assert_eq!(b["veth1"], (11, m1));
        assert_eq!(b["veth2"], (12, m2));
        // veth2's pod takes veth1's MAC later: nothing moves.
        let stolen: BTreeMap<String, [u8; 6]> = [("veth1".into(), m1), ("veth2".into(), m1)]
            .into_iter()
            .collect();
        assert_eq!(bind_macs(&b, &served, &stolen), b);
        // A new port whose pod took a bound MAC first gets none.
        let mut more = served.clone();
        more.insert("veth3".into(), 13);
        let mut copy = read.clone();
        copy.insert("veth3".into(), m2);
        assert!(!bind_macs(&b, &more, &copy).contains_key("veth3"));
        // Two new ports with one MAC: neither; a port made again: bound afresh.
        let twice = bind_macs(&BTreeMap::new(), &served, &stolen);
        assert!(twice.is_empty(), "{twice:?}");
        let remade: BTreeMap<String, u32> = [("veth1".into(), 21)].into_iter().collect();
        assert_eq!(bind_macs(&b, &remade, &stolen)["veth1"], (21, m1));
    }
}
