//! New pods: interfaces that look like a pod's (a configured CNI prefix, such as Calico's
//! `cali`, Cilium's `lxc`) whose address the agent does not know yet are held to the zero-trust
//! posture until the reconcile that includes the pod.
//!
//! A pod is enforced from the reconcile whose snapshot holds its address: only then does the
//! address get its verdict-map entries. Before, `forward` found no entry for it and let its
//! traffic through both ways, under `defaultPosture: deny` too (its own egress unchecked, and
//! anything reaching it, from other pods or from outside, unchecked by its ingress). Calico
//! drops traffic of workload interfaces Felix has no endpoint for ("Unknown interface" at the
//! end of its dispatch chains), and Cilium holds an endpoint whose labels are not resolved yet
//! in the `init` identity, which no policy allows by default. Palisade does the same for the
//! prefixes in `spec.agent.podInterfacePrefixes` when the default posture is deny: a new
//! packet (after `ct state established,related accept`, so established traffic pays nothing)
//! that arrives on such an interface with a source that is no local pod address of the
//! snapshot, or leaves through one to a destination that is none, is dropped. Under the
//! allowing posture the pod is allowed by default, so nothing is added; anti-spoofing
//! ([`crate::antispoof`]) already keeps it from using a known pod's address.
//!
//! Bridge CNIs (flannel, the `bridge` plugin, kubenet) are covered by the bridge's name
//! (`cni0`, `cbr0`): br_netfilter hands bridged packets to `forward` with the bridge as both
//! input and output interface, so the same address check applies.
//!
//! By address, not by interface: a pod the snapshot holds whose host route the agent has not
//! read yet (that happens on the next resync) is enforced by its map entries at once and
//! must not be cut off. The same holds in `input` for what an unknown pod sends to its node,
//! after Palisade's own node services (the DNS proxy decides for itself).

use palisade_policy::Posture;

/// Whether `prefix` can go into the ruleset as an interface-name prefix: 1 to 14 characters
/// of letters, digits, `-`, `_`, `.` (the interface name limit is 15; an empty prefix would
/// match every interface, the node's uplink included).
pub fn valid_prefix(prefix: &str) -> bool {
    (1..=14).contains(&prefix.len()) && crate::antispoof::valid_ifname(prefix)
}

fn drop_stmt(log: bool) -> String {
    if log {
        format!(
            "log group {} prefix \"D new-pod\" drop",
            crate::ruleset::LOG_GROUP
        )
    } else {
        "drop".to_string()
    }
}

fn rules(prefixes: &[String], posture: Posture, log: bool, sides: &[(&str, &str)]) -> Vec<String> {
    if posture == Posture::Allow {
        return Vec::new();
    }
    let drop = drop_stmt(log);
    let local = crate::hostfw::LOCAL_PODS;
    let mut out = Vec::new();
    for p in prefixes.iter().filter(|p| valid_prefix(p)) {
        for (iface, addr) in sides {
            out.push(format!("{iface} \"{p}*\" ip {addr} != @{local}_4 {drop}"));
            out.push(format!("{iface} \"{p}*\" ip6 {addr} != @{local}_6 {drop}"));
        }
    }
    out
}

/// The `forward` rules, placed after `ct state established,related accept`: under the
/// deny posture, new traffic from or to a pod interface (`prefixes`) whose address is no
/// local pod of the snapshot is dropped.
pub fn forward_rules(prefixes: &[String], posture: Posture, log: bool) -> Vec<String> {
    rules(
        prefixes,
        posture,
        log,
        &[("iifname", "saddr"), ("oifname", "daddr")],
    )
}

/// The `input` rules, after Palisade's node services: under the deny posture, a new
/// connection from an unknown pod to its node is dropped, as its egress would be.
pub fn input_rules(prefixes: &[String], posture: Posture, log: bool) -> Vec<String> {
    rules(prefixes, posture, log, &[("iifname", "saddr")])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_deny_posture_holds_unknown_pod_interfaces() {
        let p = vec![
            "cali".to_string(),
            "lxc".into(),
            String::new(),
            "a\"b".into(),
        ];
        assert!(forward_rules(&p, Posture::Allow, true).is_empty());
        assert_eq!(
            forward_rules(&p, Posture::Deny, false),
            [
                "iifname \"cali*\" ip saddr != @local_pods_4 drop",
                "iifname \"cali*\" ip6 saddr != @local_pods_6 drop",
                "oifname \"cali*\" ip daddr != @local_pods_4 drop",
                "oifname \"cali*\" ip6 daddr != @local_pods_6 drop",
                "iifname \"lxc*\" ip saddr != @local_pods_4 drop",
                "iifname \"lxc*\" ip6 saddr != @local_pods_6 drop",
                "oifname \"lxc*\" ip daddr != @local_pods_4 drop",
                "oifname \"lxc*\" ip6 daddr != @local_pods_6 drop",
            ]
        );
        assert_eq!(
            input_rules(&p[..1], Posture::Deny, true),
            [
                "iifname \"cali*\" ip saddr != @local_pods_4 log group 7 prefix \"D new-pod\" drop",
                "iifname \"cali*\" ip6 saddr != @local_pods_6 log group 7 prefix \"D new-pod\" drop",
            ]
        );
    }

    #[test]
    fn prefixes_are_interface_name_beginnings() {
        assert!(valid_prefix("cali"));
        assert!(valid_prefix("veth"));
        assert!(!valid_prefix(""));
        assert!(!valid_prefix("cali*"));
        assert!(!valid_prefix("a\" accept"));
        assert!(!valid_prefix("fifteen-chars-x"));
    }
}
