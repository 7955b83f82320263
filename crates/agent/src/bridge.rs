//! Pods behind a Linux bridge (flannel's and the `bridge` plugin's `cni0`, kubenet's `cbr0`)
//! reach each other without the node routing between them: their frames are switched, and
//! cross netfilter's `forward` hook, where the agent's policy is, only with `br_netfilter`'s
//! "call iptables" switches on (`net.bridge.bridge-nf-call-iptables` and `-ip6tables`).
//! kubeadm refuses to set up a node without the IPv4 one; when the agent finds local pod
//! addresses without a host route of their own, it turns both on (in the network namespace
//! it enforces, which is the node's), so a bridged node never silently skips pod-to-pod
//! policy. When `br_netfilter` is not loaded at all, the switches do not exist and the agent
//! can only say so.
//!
//! Behind a bridge every pod address is routed to the bridge, so [`crate::antispoof`]'s
//! interface check cannot tell pods apart. The bridge family can: its `prerouting` hook sees
//! the port a frame came in on (the pod veth's host end). [`bind`] pairs each bridged pod
//! address with the port the bridge learned its MAC on, and [`port_script`] turns the
//! pairs into `table bridge palisade`. (Calico and Cilium need no such step: they route
//! each pod to its own interface and check the source there, Calico by strict reverse-path
//! filtering, Cilium per endpoint in its program; a bridge layout has to learn the port.)

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::process::Command;

/// The switches, as paths under `/proc/sys`.
const SWITCHES: [&str; 2] = [
    "net/bridge/bridge-nf-call-iptables",
    "net/bridge/bridge-nf-call-ip6tables",
];

/// What [`filter_bridged_traffic`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BridgeFiltering {
    /// Both switches were already on.
    AlreadyOn,
    /// The agent turned at least one of them on.
    TurnedOn,
    /// `br_netfilter` is not loaded: bridged pod-to-pod traffic is not filtered.
    Unavailable,
}

/// Reads one switch (`None`: it does not exist or cannot be read).
fn read(netns: Option<&str>, switch: &str) -> Option<bool> {
    let text = match netns {
        None => std::fs::read_to_string(format!("/proc/sys/{switch}")).ok()?,
        Some(ns) => {
            let out = Command::new("ip")
                .args(["netns", "exec", ns, "cat", &format!("/proc/sys/{switch}")])
                .output()
                .ok()?;
            if !out.status.success() {
                return None;
            }
            String::from_utf8_lossy(&out.stdout).into_owned()
        }
    };
    Some(text.trim() == "1")
}

/// Turns one switch on.
fn turn_on(netns: Option<&str>, switch: &str) -> Result<(), String> {
    let path = format!("/proc/sys/{switch}");
    match netns {
        None => std::fs::write(&path, "1\n").map_err(|e| format!("{path}: {e}")),
        Some(ns) => {
            let out = Command::new("ip")
                .args(["netns", "exec", ns, "sh", "-c", &format!("echo 1 > {path}")])
                .output()
                .map_err(|e| format!("{path}: {e}"))?;
            if out.status.success() {
                Ok(())
            } else {
                Err(format!(
                    "{path}: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                ))
            }
        }
    }
}

/// Makes bridged IPv4 and IPv6 traffic of the node (in `netns` when given) pass the `inet`
/// hooks. An IPv6 switch that cannot be set while the IPv4 one is on still counts as on
/// (an IPv4-only node).
pub fn filter_bridged_traffic(netns: Option<&str>) -> Result<BridgeFiltering, String> {
    let mut turned = false;
    for (i, switch) in SWITCHES.iter().enumerate() {
        match read(netns, switch) {
            None if i == 0 => return Ok(BridgeFiltering::Unavailable),
            None | Some(true) => {}
            Some(false) => {
                turn_on(netns, switch)?;
                turned = true;
            }
        }
    }
    Ok(if turned {
        BridgeFiltering::TurnedOn
    } else {
        BridgeFiltering::AlreadyOn
    })
}

// ---------------------------------------------------------------------------------------
// Anti-spoofing on bridge ports.
// ---------------------------------------------------------------------------------------

/// The bridge-family table that binds bridge ports to their pods' addresses
/// (`table bridge palisade`).
pub const PORT_TABLE: &str = "palisade";

/// One bridge port as `ip -d link` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Port {
    /// The port (a pod veth's host end).
    pub name: String,
    /// The bridge it belongs to.
    pub bridge: String,
}

/// What the node's bridges know: their ports, the neighbour table (address → bridge and
/// MAC, as the node resolved it) and the MACs each bridge learned on each port.
#[derive(Debug, Clone, Default)]
pub struct BridgeView {
    /// Ports of Linux bridges.
    pub ports: Vec<Port>,
    /// Neighbours on a bridge device: address → (bridge, MAC).
    pub neighbours: BTreeMap<IpAddr, (String, String)>,
    /// Learned (dynamic) FDB entries: (bridge, MAC) → port.
    pub fdb: BTreeMap<(String, String), String>,
}

fn json_array(out: &str) -> Vec<serde_json::Value> {
    serde_json::from_str(out.trim()).unwrap_or_default()
}

fn s<'a>(v: &'a serde_json::Value, k: &str) -> Option<&'a str> {
    v.get(k).and_then(|x| x.as_str())
}

/// The ports of Linux bridges in `ip -j -d link show` output.
pub fn parse_ports(json: &str) -> Vec<Port> {
    let links = json_array(json);
    let bridges: BTreeSet<&str> = links
        .iter()
        .filter(|l| l.pointer("/linkinfo/info_kind").and_then(|k| k.as_str()) == Some("bridge"))
        .filter_map(|l| s(l, "ifname"))
        .collect();
    links
        .iter()
        .filter_map(|l| {
            let (name, master) = (s(l, "ifname")?, s(l, "master")?);
            (bridges.contains(master)
                && crate::antispoof::valid_ifname(name)
                && crate::antispoof::valid_ifname(master))
            .then(|| Port {
                name: name.to_string(),
                bridge: master.to_string(),
            })
        })
        .collect()
}

/// Resolved neighbours on one of `bridges` in `ip -j neigh show` output.
pub fn parse_neighbours(
    json: &str,
    bridges: &BTreeSet<String>,
) -> BTreeMap<IpAddr, (String, String)> {
    json_array(json)
        .iter()
        .filter_map(|n| {
            let dev = s(n, "dev")?;
            if !bridges.contains(dev) {
                return None;
            }
            let failed = n
                .get("state")
                .and_then(|st| st.as_array())
                .is_some_and(|st| st.iter().any(|x| x == "FAILED" || x == "INCOMPLETE"));
            if failed {
                return None;
            }
            Some((
                s(n, "dst")?.parse().ok()?,
                (dev.to_string(), s(n, "lladdr")?.to_ascii_lowercase()),
            ))
        })
        .collect()
}

/// The MACs `bridge` learned on its ports in `bridge -j fdb show br BRIDGE` output (not the
/// permanent entries: those are the ports' own addresses).
pub fn parse_fdb(json: &str, bridge: &str) -> BTreeMap<(String, String), String> {
    json_array(json)
        .iter()
        .filter(|e| s(e, "master") == Some(bridge) && s(e, "state") != Some("permanent"))
        .filter_map(|e| {
            let (port, mac) = (s(e, "ifname")?, s(e, "mac")?);
            crate::antispoof::valid_ifname(port).then(|| {
                (
                    (bridge.to_string(), mac.to_ascii_lowercase()),
                    port.to_string(),
                )
            })
        })
        .collect()
}

fn ip_cmd(netns: Option<&str>, bin: &str, args: &[&str]) -> Result<String, String> {
    let mut cmd = Command::new(bin);
    if let Some(ns) = netns {
        cmd.args(["-n", ns]);
    }
    let out = cmd.args(args).output().map_err(|e| format!("{bin}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{bin} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The node's bridge ports (in `netns` when given).
pub fn read_ports(netns: Option<&str>) -> Result<Vec<Port>, String> {
    Ok(parse_ports(&ip_cmd(
        netns,
        "ip",
        &["-j", "-d", "link", "show"],
    )?))
}

/// The neighbour and FDB tables of the bridges that `ports` belong to.
pub fn read_view(netns: Option<&str>, ports: Vec<Port>) -> Result<BridgeView, String> {
    let bridges: BTreeSet<String> = ports.iter().map(|p| p.bridge.clone()).collect();
    let mut view = BridgeView {
        ports,
        ..BridgeView::default()
    };
    if bridges.is_empty() {
        return Ok(view);
    }
    view.neighbours = parse_neighbours(&ip_cmd(netns, "ip", &["-j", "neigh", "show"])?, &bridges);
    for br in &bridges {
        let out = ip_cmd(netns, "bridge", &["-j", "fdb", "show", "br", br])?;
        view.fdb.extend(parse_fdb(&out, br));
    }
    Ok(view)
}

/// Makes the node resolve `ips` (one UDP datagram to the discard port each, from inside
/// `netns` when given): the pod answers the ARP or neighbour solicitation from its own
/// port, so the neighbour table and the bridge's FDB then say which port it is on.
pub fn probe(netns: Option<&str>, ips: &[IpAddr]) {
    let send = || -> std::io::Result<()> {
        for ip in ips {
            let bind: std::net::SocketAddr = if ip.is_ipv6() {
                "[::]:0".parse().map_err(std::io::Error::other)?
            } else {
                "0.0.0.0:0".parse().map_err(std::io::Error::other)?
            };
            let sock = std::net::UdpSocket::bind(bind)?;
            let _ = sock.send_to(b"palisade", (*ip, 9));
        }
        Ok(())
    };
    let res = match netns {
        None => send(),
        Some(ns) => {
            let path = format!("/run/netns/{ns}");
            std::thread::scope(|sc| {
                sc.spawn(|| {
                    let f = std::fs::File::open(&path)?;
                    nix::sched::setns(&f, nix::sched::CloneFlags::CLONE_NEWNET)
                        .map_err(std::io::Error::from)?;
                    send()
                })
                .join()
                .unwrap_or_else(|_| Err(std::io::Error::other("netns thread panicked")))
            })
        }
    };
    if let Err(e) = res {
        tracing::debug!(error = %e, "bridged pod addresses not probed");
    }
}

/// Binds pod addresses to bridge ports. `wanted` are the local pod addresses without a
/// host route of their own, each with its pod; `known` the bindings made before. A binding
/// stays while its pod wants the address and its port is still a bridge port (a pod whose
/// port is bound cannot move its address to another port: its ARP or neighbour
/// advertisement from there is dropped). A new address is bound to the port its MAC was
/// learned on, unless that port is already bound to another pod (one port, one pod).
pub fn bind<P: Copy + Eq + Ord>(
    known: &BTreeMap<IpAddr, String>,
    wanted: &[(IpAddr, P)],
    view: &BridgeView,
) -> BTreeMap<IpAddr, String> {
    let ports: BTreeMap<&str, &str> = view
        .ports
        .iter()
        .map(|p| (p.name.as_str(), p.bridge.as_str()))
        .collect();
    let mut out = BTreeMap::new();
    let mut owner: BTreeMap<String, P> = BTreeMap::new();
    for (ip, pod) in wanted {
        if let Some(port) = known.get(ip) {
            if ports.contains_key(port.as_str()) && owner.get(port).is_none_or(|o| o == pod) {
                owner.insert(port.clone(), *pod);
                out.insert(*ip, port.clone());
            }
        }
    }
    for (ip, pod) in wanted {
        if out.contains_key(ip) {
            continue;
        }
        let Some((bridge, mac)) = view.neighbours.get(ip) else {
            continue;
        };
        let Some(port) = view.fdb.get(&(bridge.clone(), mac.clone())) else {
            continue;
        };
        if ports.get(port.as_str()) != Some(&bridge.as_str()) {
            continue;
        }
        if owner.get(port).is_some_and(|o| o != pod) {
            tracing::warn!(%ip, port, "address learned on another pod's bridge port: not bound");
            continue;
        }
        owner.insert(port.clone(), *pod);
        out.insert(*ip, port.clone());
    }
    out
}

/// The `nft` script that replaces `table bridge palisade` with the checks for `bound`
/// (pod address → its bridge port), or removes it when nothing is bound. In the bridge's
/// `prerouting` hook, before br_netfilter hands the packet to the `inet` table:
/// - a frame from a bound port must carry one of its pod's addresses: IPv4 and IPv6
///   source, ARP sender, and the target of a neighbour advertisement (unless link-local);
///   its link-local address may only send ICMPv6 (neighbour and router discovery, as in
///   `inet palisade`'s `input`); anything else from it,
///   other EtherTypes (VLAN tags) included, is dropped;
/// - a frame from any other port must not carry a bound pod's address.
///
/// A pod's own packet costs two set lookups (is the port bound, does the pair match).
pub fn port_script(bound: &BTreeMap<IpAddr, String>) -> String {
    let mut out = format!("table bridge {PORT_TABLE} {{}}\ndelete table bridge {PORT_TABLE}\n");
    if bound.is_empty() {
        return out;
    }
    let mut ports = BTreeSet::new();
    let (mut src4, mut src6, mut addr4, mut addr6, mut nd6) = <(
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
        ports.insert(format!("\"{port}\""));
        match ip {
            IpAddr::V4(_) => {
                src4.insert(format!("\"{port}\" . {ip}"));
                addr4.insert(ip.to_string());
            }
            IpAddr::V6(v6) => {
                src6.insert(format!("\"{port}\" . {ip}"));
                addr6.insert(ip.to_string());
                nd6.insert(format!("\"{port}\" . 0x{:032x}", u128::from(*v6)));
            }
        }
    }
    let set = |name: &str, spec: &str, el: &BTreeSet<String>| {
        if el.is_empty() {
            format!("  set {name} {{ {spec}; }}\n")
        } else {
            let e: Vec<&str> = el.iter().map(String::as_str).collect();
            format!(
                "  set {name} {{ {spec}; elements = {{ {} }} }}\n",
                e.join(", ")
            )
        }
    };
    out.push_str(&format!("table bridge {PORT_TABLE} {{\n"));
    out.push_str(&set("ports", "type ifname", &ports));
    out.push_str(&set("src_4", "type ifname . ipv4_addr", &src4));
    out.push_str(&set("src_6", "type ifname . ipv6_addr", &src6));
    out.push_str(&set("addr_4", "type ipv4_addr", &addr4));
    out.push_str(&set("addr_6", "type ipv6_addr", &addr6));
    out.push_str(&set("nd_6", "typeof iifname . @th,64,128", &nd6));
    out.push_str(
        "  chain prerouting {\n    type filter hook prerouting priority filter; policy accept;\n    \
         iifname @ports jump port_source\n    \
         ip saddr @addr_4 drop\n    \
         arp saddr ip @addr_4 drop\n    \
         ip6 saddr @addr_6 drop\n  }\n",
    );
    out.push_str(
        "  chain port_source {\n    \
         iifname . ip saddr @src_4 accept\n    \
         iifname . arp saddr ip @src_4 accept\n    \
         arp saddr ip 0.0.0.0 accept\n    \
         icmpv6 type nd-neighbor-advert iifname . @th,64,128 @nd_6 accept\n    \
         icmpv6 type nd-neighbor-advert @th,64,10 0x3fa accept\n    \
         icmpv6 type nd-neighbor-advert drop\n    \
         iifname . ip6 saddr @src_6 accept\n    \
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

    fn view() -> BridgeView {
        let links = r#"[{"ifname":"lo"},{"ifname":"cni0","linkinfo":{"info_kind":"bridge"}},
            {"ifname":"veth1","master":"cni0","linkinfo":{"info_kind":"veth","info_slave_kind":"bridge"}},
            {"ifname":"veth2","master":"cni0"},{"ifname":"eth1","master":"bond0"},
            {"ifname":"bond0","linkinfo":{"info_kind":"bond"}}]"#;
        let ports = parse_ports(links);
        let bridges = ports.iter().map(|p| p.bridge.clone()).collect();
        let neigh = r#"[{"dst":"10.0.0.1","dev":"cni0","lladdr":"AA:00:00:00:00:01","state":["REACHABLE"]},
            {"dst":"10.0.0.2","dev":"cni0","lladdr":"aa:00:00:00:00:02","state":["STALE"]},
            {"dst":"10.0.0.3","dev":"cni0","state":["FAILED"]},
            {"dst":"10.0.0.9","dev":"eth0","lladdr":"aa:00:00:00:00:09","state":["REACHABLE"]}]"#;
        let fdb = r#"[{"mac":"33:33:00:00:00:01","ifname":"cni0","flags":["self"],"state":"permanent"},
            {"mac":"aa:00:00:00:00:01","ifname":"veth1","flags":[],"master":"cni0","state":""},
            {"mac":"aa:00:00:00:00:02","ifname":"veth2","flags":[],"master":"cni0","state":""},
            {"mac":"66:00:00:00:00:01","ifname":"veth1","flags":[],"master":"cni0","state":"permanent"}]"#;
        BridgeView {
            ports,
            neighbours: parse_neighbours(neigh, &bridges),
            fdb: parse_fdb(fdb, "cni0"),
        }
    }

    #[test]
    fn bridge_tables_are_read_as_ports_neighbours_and_learned_macs() {
        let v = view();
        let names: Vec<&str> = v.ports.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(
            names,
            ["veth1", "veth2"],
            "bond members are no bridge ports"
        );
        assert_eq!(
            v.neighbours.keys().copied().collect::<Vec<_>>(),
            [ip("10.0.0.1"), ip("10.0.0.2")]
        );
        assert_eq!(v.neighbours[&ip("10.0.0.1")].1, "aa:00:00:00:00:01");
        assert_eq!(v.fdb.len(), 2, "{:?}", v.fdb);
        assert!(parse_ports("nonsense").is_empty());
    }

    /// An address is bound to the port its MAC was learned on; a binding stays while its
    /// port exists, even when the tables say otherwise later (a forged ARP cannot move it);
    /// a port already bound to one pod is never bound to another pod's address.
    #[test]
    fn addresses_are_bound_to_their_port_once_and_one_port_serves_one_pod() {
        let v = view();
        let wanted = [
            (ip("10.0.0.1"), 1u32),
            (ip("10.0.0.2"), 2),
            (ip("10.0.0.3"), 3),
        ];
        let b = bind(&BTreeMap::new(), &wanted, &v);
        assert_eq!(b.len(), 2);
        assert_eq!(b[&ip("10.0.0.1")], "veth1");
        assert_eq!(b[&ip("10.0.0.2")], "veth2");
        // Pod 2's port now answers for pod 1's address: the earlier binding stands.
        let mut forged = v.clone();
        forged
            .neighbours
            .insert(ip("10.0.0.1"), ("cni0".into(), "aa:00:00:00:00:02".into()));
        assert_eq!(bind(&b, &wanted, &forged), b);
        // Pod 3's address learned on pod 2's port: not bound.
        let mut claim = v.clone();
        claim
            .neighbours
            .insert(ip("10.0.0.3"), ("cni0".into(), "aa:00:00:00:00:02".into()));
        assert!(!bind(&b, &wanted, &claim).contains_key(&ip("10.0.0.3")));
        // A pod's second address on its own port is bound.
        let two = [(ip("10.0.0.1"), 1u32), (ip("fd00::1"), 1)];
        let mut v6 = v.clone();
        v6.neighbours
            .insert(ip("fd00::1"), ("cni0".into(), "aa:00:00:00:00:01".into()));
        assert_eq!(bind(&BTreeMap::new(), &two, &v6).len(), 2);
        // A port that is gone, or a pod that is gone, drops the binding.
        let mut gone = v.clone();
        gone.ports.retain(|p| p.name != "veth1");
        gone.neighbours.clear();
        assert_eq!(bind(&b, &wanted, &gone).len(), 1);
        assert_eq!(bind(&b, &wanted[1..], &v).len(), 1);
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
        let s = port_script(&bound);
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
        assert_eq!(
            port_script(&BTreeMap::new()),
            "table bridge palisade {}\ndelete table bridge palisade\n"
        );
    }
}
