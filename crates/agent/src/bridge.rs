//! Pods behind a Linux bridge (flannel's and the `bridge` plugin's `cni0`, kubenet's `cbr0`)
//! reach each other without the node routing between them: their frames are switched, and
//! cross netfilter's `forward` hook, where the agent's policy is, only with `br_netfilter`'s
//! "call iptables" switches on (`net.bridge.bridge-nf-call-iptables` and `-ip6tables`).
//! kubeadm refuses to set up a node without the IPv4 one; when the agent finds local pod
//! addresses without a host route of their own, it turns both on (in the network namespace
//! it enforces, which is the node's), so a bridged node never silently skips pod-to-pod
//! policy. When `br_netfilter` is not loaded at all, the switches do not exist and the agent
//! can only say so.

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
