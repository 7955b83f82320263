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
//! address with the port whose veth peer has it configured ([`crate::peers`]; the port the
//! bridge learned its MAC on only where the peer cannot be read), and [`port_script`] turns
//! the pairs into `table bridge palisade`. (Calico and Cilium need no such step: they route
//! each pod to its own interface and check the source there, Calico by strict reverse-path
//! filtering, Cilium per endpoint in its program; a bridge layout has to find the port.)

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

pub use crate::porttable::{bind_macs, port_script, PortGuard, PORT_TABLE};

/// One bridge port as `ip -d link` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Port {
    /// The port (a pod veth's host end).
    pub name: String,
    /// The bridge it belongs to.
    pub bridge: String,
    /// Its interface index (a port deleted and made again under the same name is another
    /// port).
    pub index: u32,
    /// Its veth peer in another namespace: (that namespace's id here, the peer's index
    /// there). `None` for a port that is no veth into another namespace.
    pub peer: Option<(i32, u32)>,
}

/// What the node's bridges know: their ports, the addresses configured on each port's peer
/// (the pod's interface), the neighbour table (address → bridge and MAC, as the node
/// resolved it) and the MACs each bridge learned on each port.
#[derive(Debug, Clone, Default)]
pub struct BridgeView {
    /// Ports of Linux bridges.
    pub ports: Vec<Port>,
    /// The addresses configured on the peer of each port whose peer could be read (a port
    /// missing here is one whose peer could not be read).
    pub peer_addrs: BTreeMap<String, BTreeSet<IpAddr>>,
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

/// A veth's peer in another namespace: `link_netnsid` and `link_index` of its `ip -j -d
/// link` entry.
fn peer_of(l: &serde_json::Value) -> Option<(i32, u32)> {
    if l.pointer("/linkinfo/info_kind").and_then(|k| k.as_str()) != Some("veth") {
        return None;
    }
    let nsid = i32::try_from(l.get("link_netnsid")?.as_i64()?).ok()?;
    let index = u32::try_from(l.get("link_index")?.as_u64()?).ok()?;
    (nsid >= 0 && index > 0).then_some((nsid, index))
}

/// The ports of Linux bridges in `ip -j -d link show` output.
pub fn parse_ports(json: &str) -> Vec<Port> {
    ports_of(&json_array(json))
}

fn ports_of(links: &[serde_json::Value]) -> Vec<Port> {
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
                index: l.get("ifindex").and_then(|x| x.as_u64()).unwrap_or(0) as u32,
                peer: peer_of(l),
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

/// The addresses of the bridges that have ports in `ip -j -d addr show` output: the
/// node's own addresses on its pods' link (their gateway), which no port may claim.
pub fn parse_bridge_addrs(json: &str) -> BTreeSet<IpAddr> {
    let links = json_array(json);
    bridge_addrs(&links, &ports_of(&links))
}

fn bridge_addrs(links: &[serde_json::Value], ports: &[Port]) -> BTreeSet<IpAddr> {
    let with_ports: BTreeSet<&str> = ports.iter().map(|p| p.bridge.as_str()).collect();
    links
        .iter()
        .filter(|l| s(l, "ifname").is_some_and(|n| with_ports.contains(n)))
        .filter_map(|l| l.get("addr_info")?.as_array())
        .flatten()
        .filter_map(|a| s(a, "local")?.parse().ok())
        .collect()
}

/// The node's bridge ports and its own addresses on those bridges (in `netns` when given),
/// from one `ip -j -d addr show`.
pub fn read_ports(netns: Option<&str>) -> Result<(Vec<Port>, BTreeSet<IpAddr>), String> {
    let links = json_array(&ip_cmd(netns, "ip", &["-j", "-d", "addr", "show"])?);
    let ports = ports_of(&links);
    let addrs = bridge_addrs(&links, &ports);
    Ok((ports, addrs))
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

/// The addresses configured on each port's peer ([`crate::peers`]); ports whose peer is
/// no veth in another namespace, or whose namespace cannot be read, are left out.
pub fn read_peers(
    netns: Option<&str>,
    ports: &[Port],
) -> Result<BTreeMap<String, BTreeSet<IpAddr>>, String> {
    let mut peers: BTreeMap<i32, BTreeSet<u32>> = BTreeMap::new();
    for (nsid, index) in ports.iter().filter_map(|p| p.peer) {
        peers.entry(nsid).or_default().insert(index);
    }
    let found = crate::peers::read(netns, &peers).map_err(|e| format!("pod addresses: {e}"))?;
    Ok(ports
        .iter()
        .filter_map(|p| {
            let (nsid, index) = p.peer?;
            let addrs = found.get(&nsid)?.get(&index).cloned().unwrap_or_default();
            Some((p.name.clone(), addrs))
        })
        .collect())
}

/// The Ethernet address of each port's peer (the pod's interface), for the ports whose
/// peer could be read.
pub fn read_peer_macs(
    netns: Option<&str>,
    ports: &[Port],
) -> Result<BTreeMap<String, [u8; 6]>, String> {
    let mut peers: BTreeMap<i32, BTreeSet<u32>> = BTreeMap::new();
    for (nsid, index) in ports.iter().filter_map(|p| p.peer) {
        peers.entry(nsid).or_default().insert(index);
    }
    let found = crate::peers::read_macs(netns, &peers).map_err(|e| format!("pod MACs: {e}"))?;
    Ok(ports
        .iter()
        .filter_map(|p| {
            let (nsid, index) = p.peer?;
            Some((p.name.clone(), *found.get(&nsid)?.get(&index)?))
        })
        .collect())
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
    let res = crate::netns::run_in(netns, send);
    if let Err(e) = res {
        tracing::debug!(error = %e, "bridged pod addresses not probed");
    }
}

/// What [`bind`] decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding<P> {
    /// Pod address → the bridge port it may be sent from.
    pub bound: BTreeMap<IpAddr, String>,
    /// Pod addresses no bridge port may send from: configured on the peers of several ports
    /// that could each serve the pod, only on ports serving other pods, or (when every
    /// port's peer can be read) on none.
    pub held: BTreeSet<IpAddr>,
    /// Bridge port → (its index, the pod it serves): to be passed back to the next [`bind`].
    pub owners: BTreeMap<String, (u32, P)>,
}

/// Binds pod addresses to bridge ports. `wanted` are the local pod addresses without a
/// host route of their own, each with its pod (a key that stays the same across snapshots:
/// `namespace/name`); `known` and `owners` what the last call decided.
///
/// A port serves one pod, the first it was bound to, for as long as it exists (a port is
/// one pod sandbox's veth: a pod that is deleted leaves its port to no other pod, which is
/// what lets a new pod reusing the address win while the old port is still there). An
/// address is bound to the one port that may serve its pod and whose peer (the pod's own
/// interface, [`crate::peers`]) has the address configured: what the CNI assigned, not what
/// anyone answered for it, so no other pod can claim an address first. An earlier binding
/// stays while its port exists and (if its peer can be read) still has the address.
/// Several candidate ports, or only ports of other pods, hold the address at every port.
///
/// Only for an address configured on no readable peer, the port its MAC was learned on
/// (neighbour table and FDB) is used, and only if that port's peer cannot be read (no veth
/// into another namespace, or a kernel before 4.20). When every port's peer can be read,
/// such an address is held instead.
pub fn bind<P: Clone + Eq + Ord + std::fmt::Debug>(
    known: &BTreeMap<IpAddr, String>,
    owners: &BTreeMap<String, (u32, P)>,
    wanted: &[(IpAddr, P)],
    view: &BridgeView,
) -> Binding<P> {
    let ports: BTreeMap<&str, &Port> = view.ports.iter().map(|p| (p.name.as_str(), p)).collect();
    let mut owner: BTreeMap<String, (u32, P)> = owners
        .iter()
        .filter(|(name, (index, _))| ports.get(name.as_str()).is_some_and(|p| p.index == *index))
        .map(|(n, o)| (n.clone(), o.clone()))
        .collect();
    // Which readable ports carry each wanted address, computed once (a lookup per address
    // and pass instead of a walk over every port).
    let mut carried: BTreeMap<IpAddr, Vec<&str>> = BTreeMap::new();
    let pod_of: BTreeMap<&IpAddr, &P> = wanted.iter().map(|(ip, pod)| (ip, pod)).collect();
    // Ports whose peer carries the addresses of more than one pod: no pod's own interface
    // looks like that (a pod deleted leaves its address to one new pod), one that took on
    // other pods' addresses does. Such a port is bound to no new pod, so a pod cannot
    // hold every address it expects new pods to get by configuring them all.
    let mut mixed: BTreeSet<&str> = BTreeSet::new();
    for (port, addrs) in &view.peer_addrs {
        if !ports.contains_key(port.as_str()) {
            continue;
        }
        let mut pods = BTreeSet::new();
        for ip in addrs {
            if let Some(pod) = pod_of.get(ip) {
                carried.entry(*ip).or_default().push(port.as_str());
                pods.insert(*pod);
            }
        }
        if pods.len() > 1 {
            mixed.insert(port.as_str());
        }
    }
    let carriers = |ip: &IpAddr| -> Vec<&str> { carried.get(ip).cloned().unwrap_or_default() };
    let may_serve = |owner: &BTreeMap<String, (u32, P)>, port: &str, pod: &P| {
        owner.get(port).is_none_or(|(_, o)| o == pod)
    };
    let mut out = BTreeMap::new();
    for (ip, pod) in wanted {
        let Some(port) = known.get(ip) else {
            continue;
        };
        let Some(p) = ports.get(port.as_str()) else {
            continue;
        };
        let configured = view.peer_addrs.get(port).is_none_or(|a| a.contains(ip));
        if configured && !out.contains_key(ip) && may_serve(&owner, port, pod) {
            owner.insert(port.clone(), (p.index, pod.clone()));
            out.insert(*ip, port.clone());
        }
    }
    // Addresses configured on readable peers: bound where exactly one port may take them;
    // binding one may settle which pod a port serves, so go round until nothing changes.
    // Then once more with the ports that carry several pods' addresses and still serve no
    // pod left out.
    let mut open: Vec<&(IpAddr, P)> = wanted
        .iter()
        .filter(|(ip, _)| !out.contains_key(ip) && !carriers(ip).is_empty())
        .collect();
    let mut shun_mixed = false;
    loop {
        let before = open.len();
        open.retain(|(ip, pod)| {
            if out.contains_key(ip) {
                return false;
            }
            let can: Vec<&str> = carriers(ip)
                .into_iter()
                .filter(|port| may_serve(&owner, port, pod))
                .filter(|port| !shun_mixed || owner.contains_key(*port) || !mixed.contains(port))
                .collect();
            let [port] = can[..] else {
                return true;
            };
            owner.insert(port.to_string(), (ports[port].index, pod.clone()));
            out.insert(*ip, port.to_string());
            false
        });
        if open.len() == before {
            if shun_mixed || open.is_empty() {
                break;
            }
            shun_mixed = true;
        }
    }
    let mut held = BTreeSet::new();
    for (ip, pod) in open {
        tracing::warn!(%ip, ?pod, ports = ?carriers(ip),
            "pod address configured on several bridge ports' pods, or only on other pods' \
             ports: held at every port");
        held.insert(*ip);
    }
    for (ip, port) in &out {
        let others: Vec<&str> = carriers(ip).into_iter().filter(|p| p != port).collect();
        if !others.is_empty() {
            tracing::warn!(%ip, port, ?others,
                "pod address configured in other pods too: not sent from their ports");
        }
    }
    // The learned fallback, for ports whose peer cannot be read.
    let all_readable = view
        .ports
        .iter()
        .all(|p| view.peer_addrs.contains_key(&p.name));
    for (ip, pod) in wanted {
        if out.contains_key(ip) || held.contains(ip) || !carriers(ip).is_empty() {
            continue;
        }
        if all_readable {
            held.insert(*ip);
            continue;
        }
        let Some((bridge, mac)) = view.neighbours.get(ip) else {
            continue;
        };
        let Some(port) = view.fdb.get(&(bridge.clone(), mac.clone())) else {
            continue;
        };
        let Some(p) = ports.get(port.as_str()) else {
            continue;
        };
        if p.bridge != *bridge || view.peer_addrs.contains_key(port) {
            continue;
        }
        if !may_serve(&owner, port, pod) {
            tracing::warn!(%ip, port, "address learned on another pod's bridge port: not bound");
            continue;
        }
        owner.insert(port.clone(), (p.index, pod.clone()));
        out.insert(*ip, port.clone());
    }
    Binding {
        bound: out,
        held,
        owners: owner,
    }
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
            ..BridgeView::default()
        }
    }

    /// A pod whose port served no pod yet (it took its own address off its interface before
    /// the agent bound it) and that configured the addresses new pods would get made the
    /// agent hold all of them: each was on two ports that could serve its pod. A port that
    /// carries several pods' addresses and serves none now serves none of them either.
    #[test]
    fn a_port_carrying_several_pods_addresses_holds_none_of_them() {
        let wanted = [
            (ip("10.0.0.1"), 1u32),
            (ip("10.0.0.3"), 3),
            (ip("10.0.0.4"), 4),
        ];
        let v = peers(&[
            ("veth1", &["10.0.0.3", "10.0.0.4"]),
            ("veth3", &["10.0.0.3"]),
            ("veth4", &["10.0.0.4"]),
        ]);
        let b = fresh(&wanted, &v);
        assert_eq!(
            b.bound.get(&ip("10.0.0.3")),
            Some(&"veth3".to_string()),
            "{b:?}"
        );
        assert_eq!(
            b.bound.get(&ip("10.0.0.4")),
            Some(&"veth4".to_string()),
            "{b:?}"
        );
        assert_eq!(b.held, [ip("10.0.0.1")].into(), "{b:?}");
        assert!(!b.owners.contains_key("veth1"), "{b:?}");
        // One other pod's address only: still held (left open).
        let one = peers(&[("veth1", &["10.0.0.3"]), ("veth3", &["10.0.0.3"])]);
        assert_eq!(fresh(&wanted[1..2], &one).held, [ip("10.0.0.3")].into());
        // The node's own addresses are read from its bridges with ports.
        let links = r#"[{"ifindex":2,"ifname":"cni0","linkinfo":{"info_kind":"bridge"},
            "addr_info":[{"family":"inet","local":"10.0.0.254"},{"family":"inet6","local":"fe80::1"}]},
            {"ifindex":3,"ifname":"br9","linkinfo":{"info_kind":"bridge"},
             "addr_info":[{"family":"inet","local":"10.9.0.1"}]},
            {"ifindex":7,"ifname":"veth9","master":"cni0","addr_info":[{"local":"10.0.0.9"}]}]"#;
        assert_eq!(
            parse_bridge_addrs(links),
            [ip("10.0.0.254"), ip("fe80::1")].into()
        );
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
        let veth = r#"[{"ifindex":2,"ifname":"cni0","linkinfo":{"info_kind":"bridge"}},
            {"ifindex":7,"ifname":"veth9","link_index":2,"link_netnsid":3,"master":"cni0",
             "linkinfo":{"info_kind":"veth","info_slave_kind":"bridge"}}]"#;
        let p = &parse_ports(veth)[0];
        assert_eq!((p.index, p.peer), (7, Some((3, 2))));
    }

    fn next(prev: &Binding<u32>, wanted: &[(IpAddr, u32)], v: &BridgeView) -> Binding<u32> {
        bind(&prev.bound, &prev.owners, wanted, v)
    }

    fn fresh(wanted: &[(IpAddr, u32)], v: &BridgeView) -> Binding<u32> {
        bind(&BTreeMap::new(), &BTreeMap::new(), wanted, v)
    }

    /// Where a port's peer cannot be read (the ports here are no veths into other
    /// namespaces): an address is bound to the port its MAC was learned on; a binding stays
    /// while its port exists, even when the tables say otherwise later (a forged ARP cannot
    /// move it); a port already bound to one pod is never bound to another pod's address.
    #[test]
    fn addresses_are_bound_to_their_port_once_and_one_port_serves_one_pod() {
        let v = view();
        assert!(v.ports.iter().all(|p| p.peer.is_none()));
        let wanted = [
            (ip("10.0.0.1"), 1u32),
            (ip("10.0.0.2"), 2),
            (ip("10.0.0.3"), 3),
        ];
        let b = fresh(&wanted, &v);
        assert_eq!(b.bound.len(), 2);
        assert_eq!(b.bound[&ip("10.0.0.1")], "veth1");
        assert_eq!(b.bound[&ip("10.0.0.2")], "veth2");
        assert!(b.held.is_empty(), "unreadable peers: nothing held");
        // Pod 2's port now answers for pod 1's address: the earlier binding stands.
        let mut forged = v.clone();
        forged
            .neighbours
            .insert(ip("10.0.0.1"), ("cni0".into(), "aa:00:00:00:00:02".into()));
        assert_eq!(next(&b, &wanted, &forged).bound, b.bound);
        // Pod 3's address learned on pod 2's port: not bound.
        let mut claim = v.clone();
        claim
            .neighbours
            .insert(ip("10.0.0.3"), ("cni0".into(), "aa:00:00:00:00:02".into()));
        assert!(!next(&b, &wanted, &claim)
            .bound
            .contains_key(&ip("10.0.0.3")));
        // A pod's second address on its own port is bound.
        let two = [(ip("10.0.0.1"), 1u32), (ip("fd00::1"), 1)];
        let mut v6 = v.clone();
        v6.neighbours
            .insert(ip("fd00::1"), ("cni0".into(), "aa:00:00:00:00:01".into()));
        assert_eq!(fresh(&two, &v6).bound.len(), 2);
        // A port that is gone, or a pod that is gone, drops the binding.
        let mut gone = v.clone();
        gone.ports.retain(|p| p.name != "veth1");
        gone.neighbours.clear();
        assert_eq!(next(&b, &wanted, &gone).bound.len(), 1);
        assert_eq!(next(&b, &wanted[1..], &v).bound.len(), 1);
    }

    /// Ports `veth1`..`veth4`, each the host end of a veth into its own namespace, with the
    /// addresses configured on the peers.
    fn peers(addrs: &[(&str, &[&str])]) -> BridgeView {
        let ports = (1..=4)
            .map(|i| Port {
                name: format!("veth{i}"),
                bridge: "cni0".into(),
                index: 10 + i,
                peer: Some((i as i32, 2)),
            })
            .collect();
        BridgeView {
            ports,
            peer_addrs: (1..=4)
                .map(|i| (format!("veth{i}"), BTreeSet::new()))
                .chain(
                    addrs
                        .iter()
                        .map(|(p, a)| (p.to_string(), a.iter().map(|s| ip(s)).collect())),
                )
                .collect(),
            ..BridgeView::default()
        }
    }

    /// An address is bound to the port whose peer has it configured, whatever the
    /// neighbour table says; a port serves one pod for as long as it exists.
    #[test]
    fn addresses_are_bound_where_they_are_configured_not_where_they_were_answered() {
        let wanted = [
            (ip("10.0.0.3"), 3u32),
            (ip("10.0.0.1"), 1),
            (ip("10.0.0.2"), 2),
        ];
        // Pod 2 answered ARP for pod 3's address before pod 3 sent anything; pod 3's
        // address is not configured yet: held, not bound to pod 2's port.
        let mut v = peers(&[("veth1", &["10.0.0.1"]), ("veth2", &["10.0.0.2"])]);
        v.neighbours
            .insert(ip("10.0.0.3"), ("cni0".into(), "aa:00:00:00:00:02".into()));
        v.fdb
            .insert(("cni0".into(), "aa:00:00:00:00:02".into()), "veth2".into());
        let b = fresh(&wanted, &v);
        assert_eq!(b.bound.len(), 2, "{b:?}");
        assert_eq!(b.held, [ip("10.0.0.3")].into());
        // Configured on pod 3's interface: bound there.
        let v = peers(&[
            ("veth1", &["10.0.0.1"]),
            ("veth2", &["10.0.0.2"]),
            ("veth3", &["10.0.0.3"]),
        ]);
        let b3 = next(&b, &wanted, &v);
        assert_eq!(b3.bound[&ip("10.0.0.3")], "veth3");
        assert!(b3.held.is_empty());
        // Pod 2 (NET_ADMIN) configures pod 3's address on its own interface too, from the
        // first reconcile on: its port serves pod 2, so the address goes to pod 3's port.
        let mut both = v.clone();
        both.peer_addrs
            .get_mut("veth2")
            .unwrap()
            .insert(ip("10.0.0.3"));
        let f = fresh(&wanted, &both);
        assert_eq!(f.bound[&ip("10.0.0.3")], "veth3", "{f:?}");
        assert_eq!(f.bound[&ip("10.0.0.2")], "veth2");
        // ... and once bound, pod 2 taking it on later moves nothing.
        assert_eq!(next(&b3, &wanted, &both).bound, b3.bound);
        // Two ports that could both serve the pod: bound to neither, held everywhere.
        let twice = peers(&[("veth3", &["10.0.0.3"]), ("veth4", &["10.0.0.3"])]);
        let t = fresh(&wanted[..1], &twice);
        assert!(t.bound.is_empty());
        assert_eq!(t.held, [ip("10.0.0.3")].into());
        // Pod 1 is deleted and its address goes to the new pod 4 while pod 1's port is still
        // there with it configured: the new pod's port wins.
        let reuse = peers(&[
            ("veth1", &["10.0.0.1"]),
            ("veth2", &["10.0.0.2"]),
            ("veth3", &["10.0.0.3"]),
            ("veth4", &["10.0.0.1"]),
        ]);
        let wanted4 = [
            (ip("10.0.0.1"), 4u32),
            (ip("10.0.0.2"), 2),
            (ip("10.0.0.3"), 3),
        ];
        let r = next(&b3, &wanted4, &reuse);
        assert_eq!(r.bound[&ip("10.0.0.1")], "veth4", "{r:?}");
        assert!(r.held.is_empty());
        // An address taken off its pod's interface is held; a port whose peer cannot be
        // read is still bound by what was learned, a readable one never.
        let mut off = v.clone();
        off.peer_addrs.get_mut("veth1").unwrap().clear();
        assert_eq!(next(&b3, &wanted, &off).held, [ip("10.0.0.1")].into());
        let mut unreadable = v.clone();
        unreadable.peer_addrs.remove("veth3");
        unreadable
            .peer_addrs
            .get_mut("veth2")
            .unwrap()
            .insert(ip("10.0.0.9"));
        unreadable
            .neighbours
            .insert(ip("10.0.0.3"), ("cni0".into(), "aa:00:00:00:00:03".into()));
        unreadable
            .fdb
            .insert(("cni0".into(), "aa:00:00:00:00:03".into()), "veth3".into());
        let u = fresh(&wanted, &unreadable);
        assert_eq!(u.bound[&ip("10.0.0.3")], "veth3", "{u:?}");
        let mut learned_on_readable = unreadable.clone();
        learned_on_readable
            .fdb
            .insert(("cni0".into(), "aa:00:00:00:00:03".into()), "veth4".into());
        let l = fresh(&wanted, &learned_on_readable);
        assert!(!l.bound.contains_key(&ip("10.0.0.3")), "{l:?}");
    }
}
