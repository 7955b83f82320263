//! A node on this machine: one network namespace per pod, a veth pair from each into a
//! routed "node" namespace (Calico-style: pod `eth0` with its /32 and a default route via
//! 169.254.1.1, which every host-side veth owns; the node routes each pod IP to its veth).
//! Everything is removed on drop, also when a test fails.

use std::io::Write;
use std::net::IpAddr;
use std::process::{Command, Stdio};

/// Lab errors.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    /// A command failed.
    #[error("{cmd}: {msg}")]
    Command {
        /// What ran.
        cmd: String,
        /// Its error output.
        msg: String,
    },
    /// Not root, or no `ip`/`nft`.
    #[error("the lab needs root and the ip and nft commands: {0}")]
    Unavailable(String),
}

/// A pod in the lab.
#[derive(Debug, Clone)]
pub struct LabPod {
    /// `namespace/name`.
    pub key: String,
    /// Its network namespace.
    pub netns: String,
    /// Its IPv4 address.
    pub ip: IpAddr,
    /// Engine pod id.
    pub id: u32,
}

/// The lab's namespaces.
#[derive(Debug)]
pub struct Lab {
    /// The node namespace (where the agent's table lives).
    pub node_ns: String,
    /// Pods.
    pub pods: Vec<LabPod>,
    /// Leave everything in place on drop.
    pub keep: bool,
    created: Vec<String>,
}

fn run_ip(args: &[&str], stdin: Option<&str>) -> Result<(), LabError> {
    let mut c = Command::new("ip");
    c.args(args).stdout(Stdio::null()).stderr(Stdio::piped());
    if stdin.is_some() {
        c.stdin(Stdio::piped());
    }
    let mut child = c
        .spawn()
        .map_err(|e| LabError::Unavailable(e.to_string()))?;
    if let (Some(text), Some(mut si)) = (stdin, child.stdin.take()) {
        let _ = si.write_all(text.as_bytes());
    }
    let out = child
        .wait_with_output()
        .map_err(|e| LabError::Unavailable(e.to_string()))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(LabError::Command {
            cmd: format!("ip {}", args.join(" ")),
            msg: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        })
    }
}

/// Runs a command inside a namespace.
pub fn netns_exec(ns: &str, argv: &[&str]) -> Result<String, LabError> {
    let out = Command::new("ip")
        .args(["netns", "exec", ns])
        .args(argv)
        .output()
        .map_err(|e| LabError::Unavailable(e.to_string()))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(LabError::Command {
            cmd: format!("ip netns exec {ns} {}", argv.join(" ")),
            msg: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        })
    }
}

/// Whether this process can build labs (root, `ip` and `nft` present).
pub fn available() -> Result<(), String> {
    let uid = Command::new("id")
        .arg("-u")
        .output()
        .map_err(|e| e.to_string())?;
    if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
        return Err("not running as root".into());
    }
    for tool in ["ip", "nft"] {
        let ok = Command::new(tool)
            .arg("-V")
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        if !ok {
            return Err(format!("`{tool}` is not installed"));
        }
    }
    Ok(())
}

impl Lab {
    /// Builds the node and one namespace per pod. `prefix` keeps concurrent labs apart.
    pub fn create(prefix: &str, pods: &[(u32, String, IpAddr)]) -> Result<Lab, LabError> {
        let node_ns = format!("{prefix}-node");
        let mut lab = Lab {
            node_ns: node_ns.clone(),
            pods: Vec::new(),
            keep: false,
            created: Vec::new(),
        };
        run_ip(&["netns", "add", &node_ns], None)?;
        lab.created.push(node_ns.clone());
        netns_exec(
            &node_ns,
            &[
                "sysctl",
                "-qw",
                "net.ipv4.ip_forward=1",
                "net.netfilter.nf_conntrack_acct=1",
            ],
        )
        .or_else(|_| netns_exec(&node_ns, &["sysctl", "-qw", "net.ipv4.ip_forward=1"]))?;
        let mut node_batch = String::from("link set lo up\n");
        for (i, (id, key, ip)) in pods.iter().enumerate() {
            if !ip.is_ipv4() {
                continue;
            }
            let ns = format!("{prefix}-p{i}");
            run_ip(&["netns", "add", &ns], None)?;
            lab.created.push(ns.clone());
            let host_if = format!("h{i}");
            node_batch.push_str(&format!(
                "link add {host_if} type veth peer name eth0 netns {ns}\n"
            ));
            node_batch.push_str(&format!("link set {host_if} up\n"));
            node_batch.push_str(&format!("addr add 169.254.1.1/32 dev {host_if}\n"));
            node_batch.push_str(&format!("route add {ip}/32 dev {host_if}\n"));
            lab.pods.push(LabPod {
                key: key.clone(),
                netns: ns,
                ip: *ip,
                id: *id,
            });
        }
        run_ip(&["-n", &node_ns, "-batch", "-"], Some(&node_batch))?;
        for p in &lab.pods {
            let batch = format!(
                "link set lo up\nlink set eth0 up\naddr add {}/32 dev eth0\nroute add 169.254.1.1 dev eth0 scope link\nroute add default via 169.254.1.1 dev eth0\n",
                p.ip
            );
            run_ip(&["-n", &p.netns, "-batch", "-"], Some(&batch))?;
        }
        Ok(lab)
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if self.keep {
            return;
        }
        for ns in self.created.iter().rev() {
            // Whatever still runs inside (servers, probers of a failed run) goes too.
            if let Ok(out) = Command::new("ip").args(["netns", "pids", ns]).output() {
                for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                    let _ = Command::new("kill")
                        .arg("-9")
                        .arg(pid)
                        .stderr(Stdio::null())
                        .status();
                }
            }
            let _ = Command::new("ip")
                .args(["netns", "del", ns])
                .stderr(Stdio::null())
                .status();
        }
    }
}
