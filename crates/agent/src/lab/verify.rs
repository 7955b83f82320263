//! `palisade lab verify`: enforce the agent's ruleset in a lab node, probe every pod pair,
//! and compare what the kernel did with what the engine predicts.

use super::pod::{parse_sctp_line, pump_lines, Target};
use super::topology::{Lab, LabError};
use crate::ruleset::{render, RenderOptions};
use palisade_policy::{Endpoint, Engine, Flow, Protocol};
use serde::Serialize;
use std::collections::{BTreeMap, HashSet};
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// What to verify.
#[derive(Debug, Clone)]
pub struct VerifyOptions {
    /// The `palisade` binary (run inside each pod namespace as server and prober).
    pub exe: PathBuf,
    /// Ports and protocols to probe.
    pub probes: Vec<(u16, Protocol)>,
    /// Leave the namespaces in place.
    pub keep: bool,
    /// How long a probe waits for an answer.
    pub timeout: Duration,
    /// Namespace name prefix.
    pub prefix: String,
    /// Write flow events (from the kernel's NFLOG) into the event store of this folder;
    /// `flowlog_args` are the arguments of the flow logger run in the node namespace.
    pub events: Option<(PathBuf, Vec<String>)>,
}

/// A cell where the kernel and the engine disagree.
#[derive(Debug, Clone, Serialize)]
pub struct Disagreement {
    /// Port.
    pub port: u16,
    /// Protocol.
    pub protocol: String,
    /// Client pod.
    pub from: String,
    /// Server pod.
    pub to: String,
    /// What the kernel did.
    pub observed: bool,
    /// What the engine says.
    pub expected: bool,
}

/// The observed matrix for one probe.
#[derive(Debug, Clone, Serialize)]
pub struct ObservedProbe {
    /// Port.
    pub port: u16,
    /// Protocol.
    pub protocol: String,
    /// `from → to → reachable`.
    pub matrix: BTreeMap<String, BTreeMap<String, bool>>,
}

/// The outcome.
#[derive(Debug, Clone, Serialize)]
pub struct VerifyReport {
    /// Observed matrices in `palisade analyze`'s JSON shape.
    pub probes: Vec<ObservedProbe>,
    /// Cells where kernel and engine differ (a pod to itself never leaves the pod and is
    /// not compared).
    pub disagreements: Vec<Disagreement>,
    /// Pods left out (no IPv4 address, or host network).
    pub skipped_pods: Vec<String>,
    /// Rules in the applied table.
    pub rules: usize,
    /// Time to render and apply the ruleset.
    pub apply_ms: u128,
}

struct Server {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn_in(ns: &str, exe: &PathBuf, args: &[String]) -> Result<Child, LabError> {
    Command::new("ip")
        .args(["netns", "exec", ns])
        .arg(exe)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| LabError::Unavailable(e.to_string()))
}

fn join_ports(v: &[u16]) -> String {
    v.iter()
        .map(|p| p.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

/// A running lab: namespaces, a server in every pod, probes on demand.
pub struct Session {
    /// The namespaces.
    pub lab: Lab,
    servers: Vec<Server>,
    exe: PathBuf,
    timeout: Duration,
}

impl Session {
    /// Builds the namespaces for `pods` (engine id, key, IPv4) and starts a server in each on
    /// `ports` plus what `declared` lists for the pod.
    pub fn start(
        prefix: &str,
        pods: &[(u32, String, IpAddr)],
        ports: &[(u16, Protocol)],
        declared: impl Fn(u32) -> Vec<(u16, Protocol)>,
        exe: PathBuf,
        timeout: Duration,
        keep: bool,
    ) -> Result<Session, LabError> {
        let mut lab = Lab::create(prefix, pods)?;
        lab.keep = keep;
        let mut servers = Vec::new();
        for lp in &lab.pods {
            let mut tcp: Vec<u16> = Vec::new();
            let mut udp: Vec<u16> = Vec::new();
            let mut sctp: Vec<u16> = Vec::new();
            for (port, proto) in ports.iter().copied().chain(declared(lp.id)) {
                let v = match proto {
                    Protocol::TCP => &mut tcp,
                    Protocol::UDP => &mut udp,
                    Protocol::SCTP => &mut sctp,
                };
                if !v.contains(&port) {
                    v.push(port);
                }
            }
            let mut args = vec!["lab".to_string(), "serve".into()];
            for (flag, ports) in [("--tcp", &tcp), ("--udp", &udp), ("--sctp", &sctp)] {
                if !ports.is_empty() {
                    args.push(flag.into());
                    args.push(join_ports(ports));
                }
            }
            let mut child = spawn_in(&lp.netns, &exe, &args)?;
            let (tx, rx) = mpsc::channel();
            if let Some(out) = child.stdout.take() {
                pump_lines(out, tx);
            }
            servers.push(Server { child, lines: rx });
        }
        for (s, lp) in servers.iter_mut().zip(&lab.pods) {
            match s.lines.recv_timeout(Duration::from_secs(10)) {
                Ok(l) if l == "ready" => {}
                other => {
                    let mut err = String::new();
                    if let Some(mut e) = s.child.stderr.take() {
                        let _ = std::io::Read::read_to_string(&mut e, &mut err);
                    }
                    return Err(LabError::Command {
                        cmd: format!("server in {}", lp.netns),
                        msg: format!("did not start ({other:?}): {err}"),
                    });
                }
            }
        }
        Ok(Session {
            lab,
            servers,
            exe,
            timeout,
        })
    }

    /// The node namespace (where the agent applies its table).
    pub fn node_ns(&self) -> &str {
        &self.lab.node_ns
    }

    /// Probes every pair of lab pods that `engine` knows, and compares with it. Pods are
    /// matched by `namespace/name`, so the lab can hold pods a snapshot does not.
    pub fn observe(
        &self,
        engine: &Engine,
        probes: &[(u16, Protocol)],
    ) -> Result<(Vec<ObservedProbe>, Vec<Disagreement>), LabError> {
        let present: Vec<(&super::LabPod, u32)> = self
            .lab
            .pods
            .iter()
            .filter_map(|lp| engine.pod_by_key(&lp.key).map(|id| (lp, id)))
            .collect();
        let targets: Vec<Target> = probes
            .iter()
            .flat_map(|(port, proto)| {
                present.iter().map(move |(p, _)| Target {
                    ip: p.ip,
                    port: *port,
                    protocol: proto.as_str().to_string(),
                })
            })
            .collect();
        let targets_json = serde_json::to_string(&targets).unwrap_or_default();
        let mut probers = Vec::new();
        for (i, (lp, _)) in present.iter().enumerate() {
            let args = vec![
                "lab".to_string(),
                "probe".into(),
                "--targets".into(),
                targets_json.clone(),
                "--timeout-ms".into(),
                self.timeout.as_millis().to_string(),
                "--tag".into(),
                ((i as u32 + 1) << 16).to_string(),
            ];
            probers.push(spawn_in(&lp.netns, &self.exe, &args)?);
        }
        let mut observed: HashSet<(IpAddr, IpAddr, u16, String)> = HashSet::new();
        for (child, (lp, _)) in probers.into_iter().zip(&present) {
            let out = child
                .wait_with_output()
                .map_err(|e| LabError::Unavailable(e.to_string()))?;
            for line in String::from_utf8_lossy(&out.stdout).lines() {
                let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
                    continue;
                };
                if v["ok"] == true && v["protocol"] != "SCTP" {
                    if let (Some(ip), Some(port), Some(proto)) =
                        (v["ip"].as_str(), v["port"].as_u64(), v["protocol"].as_str())
                    {
                        if let Ok(ip) = ip.parse() {
                            observed.insert((lp.ip, ip, port as u16, proto.to_string()));
                        }
                    }
                }
            }
        }
        if probes.iter().any(|(_, p)| *p == Protocol::SCTP) {
            std::thread::sleep(Duration::from_millis(300));
            for (s, lp) in self.servers.iter().zip(&self.lab.pods) {
                while let Ok(line) = s.lines.try_recv() {
                    if let Some((src, port, _)) = parse_sctp_line(&line) {
                        observed.insert((src, lp.ip, port, "SCTP".into()));
                    }
                }
            }
        }
        let mut out = Vec::new();
        let mut disagreements = Vec::new();
        for (port, proto) in probes {
            let mut matrix = BTreeMap::new();
            for (from, fid) in &present {
                let mut row = BTreeMap::new();
                for (to, tid) in &present {
                    let same = fid == tid;
                    let seen = same
                        || observed.contains(&(from.ip, to.ip, *port, proto.as_str().to_string()));
                    row.insert(to.key.clone(), seen);
                    if !same {
                        let expected = engine
                            .verdict(&Flow {
                                src: Endpoint::Pod(*fid),
                                dst: Endpoint::Pod(*tid),
                                port: *port,
                                protocol: *proto,
                                http: None,
                            })
                            .allowed();
                        if expected != seen {
                            disagreements.push(Disagreement {
                                port: *port,
                                protocol: proto.as_str().into(),
                                from: from.key.clone(),
                                to: to.key.clone(),
                                observed: seen,
                                expected,
                            });
                        }
                    }
                }
                matrix.insert(from.key.clone(), row);
            }
            out.push(ObservedProbe {
                port: *port,
                protocol: proto.as_str().into(),
                matrix,
            });
        }
        Ok((out, disagreements))
    }

    /// Opens a long-lived TCP connection from pod `from` (key) to `to:port`; the returned
    /// process prints `alive N` or `broken N` when its stdin is closed.
    pub fn hold(&self, from: &str, to: IpAddr, port: u16) -> Result<Child, LabError> {
        let lp = self
            .lab
            .pods
            .iter()
            .find(|p| p.key == from)
            .ok_or_else(|| LabError::Unavailable(format!("no lab pod {from}")))?;
        let mut c = Command::new("ip")
            .args(["netns", "exec", &lp.netns])
            .arg(&self.exe)
            .args(["lab", "hold", "--target", &format!("{to}:{port}")])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| LabError::Unavailable(e.to_string()))?;
        let mut first = String::new();
        if let Some(out) = c.stdout.as_mut() {
            let mut byte = [0u8; 1];
            while std::io::Read::read(out, &mut byte).unwrap_or(0) == 1 && byte[0] != b'\n' {
                first.push(byte[0] as char);
            }
        }
        if first != "ready" {
            let _ = c.kill();
            return Err(LabError::Command {
                cmd: "hold".into(),
                msg: format!("could not connect: {first}"),
            });
        }
        Ok(c)
    }
}

/// Builds the lab, enforces, probes, compares.
pub fn verify(engine: &Engine, opts: &VerifyOptions) -> Result<VerifyReport, LabError> {
    let mut members = Vec::new();
    let mut skipped = Vec::new();
    for id in engine.sorted_pods() {
        let p = &engine.pods()[id as usize];
        match p.ips.iter().find(|i| i.is_ipv4()) {
            Some(ip) if !p.host_network => members.push((id, p.key(), *ip)),
            _ => skipped.push(p.key()),
        }
    }
    let declared = |id: u32| {
        engine.pods()[id as usize]
            .ports
            .iter()
            .map(|(_, pr, n)| (*n, *pr))
            .collect::<Vec<_>>()
    };
    let mut session = Session::start(
        &opts.prefix,
        &members,
        &opts.probes,
        declared,
        opts.exe.clone(),
        opts.timeout,
        opts.keep,
    )?;
    // Flow logger in the node namespace (stops when its stdin closes).
    let mut flowlog = match &opts.events {
        Some((_, args)) => {
            let mut c = Command::new("ip")
                .args(["netns", "exec", session.node_ns()])
                .arg(&opts.exe)
                .args(args)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()
                .map_err(|e| LabError::Unavailable(e.to_string()))?;
            let (tx, rx) = mpsc::channel();
            if let Some(out) = c.stdout.take() {
                pump_lines(out, tx);
            }
            if rx.recv_timeout(Duration::from_secs(10)).ok().as_deref() != Some("ready") {
                let _ = c.kill();
                return Err(LabError::Command {
                    cmd: "flow logger".into(),
                    msg: "did not start".into(),
                });
            }
            Some(c)
        }
        None => None,
    };
    let started = Instant::now();
    let log = opts.events.is_some();
    let local: Vec<u32> = session.lab.pods.iter().map(|p| p.id).collect();
    let rs = render(
        engine,
        &RenderOptions {
            pod_interfaces: crate::runtime::pod_interfaces(engine, &local, Some(session.node_ns())),
            node_services: Vec::new(),
            pod_interface_prefixes: Vec::new(),
            local_pods: local,
            log_denied: log,
            log_allowed: log,
        },
    );
    crate::nft::apply(&rs.full_script(), Some(session.node_ns())).map_err(|e| {
        LabError::Command {
            cmd: "nft -f".into(),
            msg: e.to_string(),
        }
    })?;
    let apply_ms = started.elapsed().as_millis();
    let (probes, disagreements) = session.observe(engine, &opts.probes)?;
    session.servers.clear();
    if let Some(mut c) = flowlog.take() {
        // End the connections still tracked so their byte counts are reported.
        let _ = super::topology::netns_exec(session.node_ns(), &["conntrack", "-F"]);
        std::thread::sleep(Duration::from_millis(500));
        drop(c.stdin.take());
        let _ = c.wait();
    }
    Ok(VerifyReport {
        probes,
        disagreements,
        skipped_pods: skipped,
        rules: rs.rules,
        apply_ms,
    })
}
