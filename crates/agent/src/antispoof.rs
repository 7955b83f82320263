//! Anti-spoofing: a pod's packets must carry one of its own addresses.
//!
//! The ruleset keys a sender's egress policy by source address, and a receiver's ingress
//! rules match peers by source address. Without this check a pod could send with another
//! pod's address (or one inside an allowed `ipBlock`) and be treated as that peer; it could
//! also inject packets into another pod's tracked connection, since established traffic is
//! accepted early. Real CNIs check the same (Calico's strict reverse-path filter on workload
//! interfaces, Cilium's per-endpoint source check).
//!
//! The node routes each pod address to the pod's interface (a `/32` or `/128` route with no
//! gateway, as Calico, the `ptp` plugin, AWS VPC CNI and the lab do). [`discover`] reads those
//! routes; [`render_into`] turns them into sets, and [`chain_rules`] into a chain that
//! `forward` jumps to first:
//! - a packet that arrives on a pod interface must have a source address routed to that
//!   same interface (`pod_src_4`/`_6`: interface . address pairs), else it is dropped;
//! - a packet whose source is a local pod address must arrive on that pod's interface
//!   (`pod_addr_4`/`_6`), so nothing outside the pod can claim its address either.
//!
//! The same rules guard `input`, for what pods send to the node itself.
//!
//! Pod addresses without such a route (bridge-based CNIs route a whole subnet to one bridge)
//! are checked at their bridge port instead ([`crate::bridge::port_script`]).

use crate::ruleset::SetDef;
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::process::Command;

/// Set of interfaces that lead to local pods.
pub const IFACES: &str = "pod_ifaces";

/// The chain holding the checks; `forward` and `input` jump to it first.
pub const CHAIN: &str = "pod_source";

/// The check, as one regular chain. A pod's own packet (its interface and one of its
/// addresses, the common case) costs one set lookup and returns; only what fails it is
/// looked at further: from a pod interface with another address, or a local pod's address
/// from elsewhere, is dropped. (As four rules in `forward` the check cost every forwarded
/// packet four or five lookups: 0.88x throughput in `bench/datapath.sh`.)
pub fn chain_rules() -> Vec<String> {
    vec![
        "iifname . ip saddr @pod_src_4 return".to_string(),
        "iifname . ip6 saddr @pod_src_6 return".to_string(),
        format!("iifname @{IFACES} drop"),
        "ip saddr @pod_addr_4 drop".to_string(),
        "ip6 saddr @pod_addr_6 drop".to_string(),
    ]
}

/// The first rules of `forward`, before connection tracking, so that a forged packet cannot
/// ride on another pod's established connection.
pub fn forward_rules() -> Vec<String> {
    vec![format!("jump {CHAIN}")]
}

/// The `input` rules: what pods send to the node itself (the DNS proxy, which tells pods
/// apart by source address, among it) carries their own address too. ICMPv6 from
/// link-local and unspecified sources (neighbour and router discovery, duplicate address
/// detection, MLD) is the pod's link to the node and passes; anything else from such a
/// source on a pod interface is dropped by the check (before, a pod reached every service
/// of its node over IPv6 link-local, past any egress policy: [`crate::hostfw`]).
pub fn input_rules() -> Vec<String> {
    vec![
        "ip6 saddr { ::, fe80::/10 } meta l4proto ipv6-icmp accept".to_string(),
        format!("jump {CHAIN}"),
    ]
}

/// Adds the anti-spoofing sets for `interfaces` (pod address → its interface) to `sets`.
pub fn render_into(sets: &mut BTreeMap<String, SetDef>, interfaces: &BTreeMap<IpAddr, String>) {
    let mut ifaces = BTreeSet::new();
    let (mut src4, mut src6, mut addr4, mut addr6) = Default::default();
    for (ip, name) in interfaces {
        if !valid_ifname(name) {
            continue;
        }
        ifaces.insert(format!("\"{name}\""));
        let pair = format!("\"{name}\" . {ip}");
        let (src, addr): (&mut BTreeSet<String>, &mut BTreeSet<String>) = if ip.is_ipv6() {
            (&mut src6, &mut addr6)
        } else {
            (&mut src4, &mut addr4)
        };
        src.insert(pair);
        addr.insert(ip.to_string());
    }
    let set = |spec: &str, elements: BTreeSet<String>| SetDef {
        keyword: "set",
        spec: spec.to_string(),
        elements,
    };
    sets.insert(IFACES.into(), set("type ifname;", ifaces));
    sets.insert("pod_src_4".into(), set("type ifname . ipv4_addr;", src4));
    sets.insert("pod_src_6".into(), set("type ifname . ipv6_addr;", src6));
    sets.insert("pod_addr_4".into(), set("type ipv4_addr;", addr4));
    sets.insert("pod_addr_6".into(), set("type ipv6_addr;", addr6));
}

/// Adds pod addresses that sit behind a Linux bridge to the anti-spoofing sets (`bridged`:
/// address → the bridges that may carry it): they may arrive on such a bridge (whose ports
/// check which pod sent them, [`crate::bridge::port_script`]) and from nowhere else. The
/// bridges are not pod interfaces: what else comes from them is not dropped here. Before,
/// these addresses were in no set, so a host outside the node (the uplink, another node)
/// could send as a bridged pod and meet the policy as that pod.
pub fn add_bridged(
    sets: &mut BTreeMap<String, SetDef>,
    bridged: &BTreeMap<IpAddr, BTreeSet<String>>,
) {
    for (ip, bridges) in bridged {
        let (src, addr) = if ip.is_ipv6() {
            ("pod_src_6", "pod_addr_6")
        } else {
            ("pod_src_4", "pod_addr_4")
        };
        let mut any = false;
        for br in bridges.iter().filter(|b| valid_ifname(b)) {
            if let Some(set) = sets.get_mut(src) {
                set.elements.insert(format!("\"{br}\" . {ip}"));
                any = true;
            }
        }
        if let (true, Some(set)) = (any, sets.get_mut(addr)) {
            set.elements.insert(ip.to_string());
        }
    }
}

/// The pod addresses a rendered ruleset checks (those with a known interface).
pub fn checked_addresses(rs: &crate::ruleset::Ruleset) -> std::collections::HashSet<IpAddr> {
    ["pod_src_4", "pod_src_6"]
        .iter()
        .filter_map(|n| rs.sets.get(*n))
        .flat_map(|d| d.elements.iter())
        .filter_map(|e| e.rsplit(" . ").next()?.parse().ok())
        .collect()
}

/// Whether `name` is an interface name that can go into the ruleset as it is: 1 to 15
/// characters of letters, digits, `-`, `_`, `.` (the kernel allows more, such as quotes,
/// which must never reach an `nft` script).
pub fn valid_ifname(name: &str) -> bool {
    (1..=15).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// Why the routes could not be read.
#[derive(Debug, thiserror::Error)]
pub enum RouteError {
    /// `ip` could not be run or failed.
    #[error("cannot list routes with `ip`: {0}")]
    Command(String),
    /// Its output was not the JSON expected.
    #[error("cannot read `ip -j route` output: {0}")]
    Parse(String),
}

/// The interface each of `ips` is routed to by a host route without gateway, read from the
/// main routing table (in `netns` when given). Addresses with no such route are left out.
pub fn discover(
    netns: Option<&str>,
    ips: &[IpAddr],
) -> Result<BTreeMap<IpAddr, String>, RouteError> {
    let mut routes = BTreeMap::new();
    for fam in ["-4", "-6"] {
        if !ips.iter().any(|ip| ip.is_ipv6() == (fam == "-6")) {
            continue;
        }
        let mut cmd = Command::new("ip");
        if let Some(ns) = netns {
            cmd.args(["-n", ns]);
        }
        let out = cmd
            .args([fam, "-j", "route", "show", "table", "main"])
            .output()
            .map_err(|e| RouteError::Command(e.to_string()))?;
        if !out.status.success() {
            return Err(RouteError::Command(
                String::from_utf8_lossy(&out.stderr).trim().to_string(),
            ));
        }
        routes.extend(host_routes(&String::from_utf8_lossy(&out.stdout))?);
    }
    Ok(ips
        .iter()
        .filter_map(|ip| routes.get(ip).map(|d| (*ip, d.clone())))
        .collect())
}

/// Host routes (`/32`, `/128`) with a device and no gateway from `ip -j route show` output.
pub fn host_routes(json: &str) -> Result<BTreeMap<IpAddr, String>, RouteError> {
    let json = json.trim();
    if json.is_empty() {
        return Ok(BTreeMap::new());
    }
    let v: Vec<serde_json::Value> =
        serde_json::from_str(json).map_err(|e| RouteError::Parse(e.to_string()))?;
    let mut out = BTreeMap::new();
    for r in v {
        if r.get("gateway").is_some() || r.get("via").is_some() {
            continue;
        }
        // Unicast only: local, broadcast, blackhole and the like are not pod routes.
        if r.get("type")
            .and_then(|t| t.as_str())
            .is_some_and(|t| t != "unicast")
        {
            continue;
        }
        let (Some(dst), Some(dev)) = (
            r.get("dst").and_then(|d| d.as_str()),
            r.get("dev").and_then(|d| d.as_str()),
        ) else {
            continue;
        };
        let addr = match dst.split_once('/') {
            None => dst.parse::<IpAddr>().ok(),
            Some((a, len)) => a
                .parse::<IpAddr>()
                .ok()
                .filter(|ip| len == if ip.is_ipv6() { "128" } else { "32" }),
        };
        if let Some(ip) = addr {
            if dev != "lo" && valid_ifname(dev) {
                out.insert(ip, dev.to_string());
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_host_routes_only() {
        let json = r#"[{"dst":"default","gateway":"192.0.2.1","dev":"eth0","flags":[]},
            {"dst":"192.0.2.0/24","dev":"eth0","protocol":"kernel","scope":"link","flags":[]},
            {"dst":"10.77.1.1","dev":"h0","scope":"link","flags":[]},
            {"dst":"10.77.1.2/32","dev":"cali12","scope":"link","flags":[]},
            {"dst":"10.77.9.9","gateway":"192.0.2.7","dev":"eth0","flags":[]},
            {"dst":"10.77.1.3","dev":"bad\"name","flags":[]},
            {"type":"blackhole","dst":"10.77.1.4","flags":[]},
            {"dst":"fd00::5","dev":"h1","flags":[]}]"#;
        let r = host_routes(json).unwrap();
        let want: BTreeMap<IpAddr, String> = [
            ("10.77.1.1", "h0"),
            ("10.77.1.2", "cali12"),
            ("fd00::5", "h1"),
        ]
        .iter()
        .map(|(a, d)| (a.parse().unwrap(), d.to_string()))
        .collect();
        assert_eq!(r, want);
        assert!(host_routes("").unwrap().is_empty());
        assert!(matches!(
            host_routes("{not json"),
            Err(RouteError::Parse(_))
        ));
    }

    #[test]
    fn bridged_addresses_come_from_their_bridge_only() {
        let mut sets = BTreeMap::new();
        render_into(&mut sets, &BTreeMap::new());
        let bridged: BTreeMap<IpAddr, BTreeSet<String>> = [
            ("10.0.0.1".parse().unwrap(), ["cni0".to_string()].into()),
            ("fd00::1".parse().unwrap(), ["cni0".to_string()].into()),
            ("10.0.0.2".parse().unwrap(), ["x\" drop".to_string()].into()),
        ]
        .into_iter()
        .collect();
        add_bridged(&mut sets, &bridged);
        let el = |n: &str| sets[n].elements.iter().cloned().collect::<Vec<_>>();
        assert_eq!(el("pod_src_4"), ["\"cni0\" . 10.0.0.1"]);
        assert_eq!(
            el("pod_addr_4"),
            ["10.0.0.1"],
            "from anywhere else: dropped"
        );
        assert_eq!(el("pod_src_6"), ["\"cni0\" . fd00::1"]);
        assert_eq!(el("pod_addr_6"), ["fd00::1"]);
        assert!(el(IFACES).is_empty(), "the bridge is no pod interface");
    }

    #[test]
    fn sets_pair_each_address_with_its_interface() {
        let mut sets = BTreeMap::new();
        let ifs: BTreeMap<IpAddr, String> = [
            ("10.0.0.1".parse().unwrap(), "h0".to_string()),
            ("fd00::1".parse().unwrap(), "h0".to_string()),
            ("10.0.0.2".parse().unwrap(), "h1".to_string()),
            ("10.0.0.3".parse().unwrap(), "x\" drop".to_string()),
        ]
        .into_iter()
        .collect();
        render_into(&mut sets, &ifs);
        let el = |n: &str| sets[n].elements.iter().cloned().collect::<Vec<_>>();
        assert_eq!(el(IFACES), ["\"h0\"", "\"h1\""]);
        assert_eq!(el("pod_src_4"), ["\"h0\" . 10.0.0.1", "\"h1\" . 10.0.0.2"]);
        assert_eq!(el("pod_src_6"), ["\"h0\" . fd00::1"]);
        assert_eq!(el("pod_addr_4"), ["10.0.0.1", "10.0.0.2"]);
        assert_eq!(el("pod_addr_6"), ["fd00::1"]);
    }
}
