//! Lints: valid input that is probably not what was meant. Each is a warning with the file,
//! line and field path of the policy it concerns.

use crate::diag::{Diagnostic, Severity};
use crate::engine::{Direction, Endpoint, Engine, Flow, PeerMatch, PolicyKind, PortMatch, Stage};
use crate::model::{AdminAction, IntOrString, Protocol};
use crate::snapshot::Snapshot;
use std::net::IpAddr;

fn warn(
    code: &'static str,
    file: &str,
    line: usize,
    path: String,
    object: String,
    message: String,
) -> Diagnostic {
    Diagnostic {
        severity: Severity::Warning,
        code,
        file: file.to_string(),
        line,
        col: 1,
        path,
        object,
        message,
    }
}

/// Lints a snapshot (compiles it once).
pub fn lint(snap: &Snapshot) -> Vec<Diagnostic> {
    let engine = Engine::compile(snap);
    let mut out = Vec::new();
    let have_pods = !engine.pods.is_empty();
    // 1. Policies that select no pod.
    if have_pods {
        for (i, p) in engine.policies.iter().enumerate() {
            if engine.subjects[i].is_empty() {
                let path = match p.kind {
                    PolicyKind::NetworkPolicy | PolicyKind::SecurityPolicy => "spec.podSelector",
                    _ => "spec.subject",
                };
                out.push(warn(
                    "selects-no-pods",
                    &p.file,
                    p.line,
                    path.into(),
                    p.display(),
                    "selects no pod".into(),
                ));
            }
        }
    }
    // 2 and 6. Egress isolated without DNS; FQDN rules without DNS.
    let dns_targets: Vec<Endpoint<'static>> = {
        let pods: Vec<Endpoint<'static>> = engine
            .pods
            .iter()
            .enumerate()
            .filter(|(_, p)| p.labels.get("k8s-app").is_some_and(|v| v == "kube-dns"))
            .map(|(i, _)| Endpoint::Pod(i as u32))
            .collect();
        if pods.is_empty() {
            vec![Endpoint::Ip(IpAddr::from([10, 96, 0, 10]))]
        } else {
            pods
        }
    };
    let fqdn_policies: Vec<bool> = engine
        .policies
        .iter()
        .enumerate()
        .map(|(pid, _)| {
            engine.rules.iter().any(|r| {
                r.policy as usize == pid
                    && r.direction == Direction::Egress
                    && r.peers
                        .as_ref()
                        .is_some_and(|ps| ps.iter().any(|p| matches!(p, PeerMatch::Fqdn(_))))
            })
        })
        .collect();
    for (pid, p) in engine.policies.iter().enumerate() {
        let isolates_egress = match p.kind {
            PolicyKind::NetworkPolicy | PolicyKind::SecurityPolicy => {
                engine.subjects[pid].iter().any(|pod| {
                    engine.per_pod[pod as usize]
                        .egress
                        .ns_policies
                        .contains(&(pid as u32))
                })
            }
            _ => false,
        };
        if !isolates_egress && !fqdn_policies[pid] {
            continue;
        }
        let blocked: Vec<String> = engine.subjects[pid]
            .iter()
            .filter(|&pod| {
                !dns_targets.iter().any(|t| {
                    engine
                        .verdict(&Flow {
                            src: Endpoint::Pod(pod),
                            dst: *t,
                            port: 53,
                            protocol: Protocol::UDP,
                            http: None,
                        })
                        .allowed()
                })
            })
            .map(|pod| engine.pods[pod as usize].key())
            .collect();
        if blocked.is_empty() {
            continue;
        }
        let sample = blocked
            .iter()
            .take(3)
            .cloned()
            .collect::<Vec<_>>()
            .join(", ");
        if fqdn_policies[pid] {
            out.push(warn(
                "fqdn-without-dns",
                &p.file,
                p.line,
                "spec.egress".into(),
                p.display(),
                format!("has FQDN rules but {} selected pod(s) cannot reach DNS (UDP 53), e.g. {sample}: names will not resolve", blocked.len()),
            ));
        } else {
            out.push(warn(
                "egress-without-dns",
                &p.file,
                p.line,
                "spec.egress".into(),
                p.display(),
                format!(
                    "isolates egress of {} pod(s) without allowing DNS (UDP 53), e.g. {sample}",
                    blocked.len()
                ),
            ));
        }
    }
    // 3. Named ports no pod declares.
    for (np, origin) in &snap.network_policies {
        let Some(pid) = find_policy(
            &engine,
            PolicyKind::NetworkPolicy,
            np.metadata.namespace.as_deref(),
            &np.metadata.name,
        ) else {
            continue;
        };
        for (i, r) in np.spec.ingress.iter().enumerate() {
            for (j, port) in r.ports.iter().enumerate() {
                if let Some(IntOrString::String(name)) = &port.port {
                    let declared = engine.subjects[pid].iter().any(|pod| {
                        engine.pods[pod as usize]
                            .ports
                            .iter()
                            .any(|(n, _, _)| n.as_deref() == Some(name.as_str()))
                    });
                    if have_pods && !declared {
                        out.push(warn(
                            "undeclared-named-port",
                            &origin.file,
                            origin.line,
                            format!("spec.ingress[{i}].ports[{j}].port"),
                            format!("NetworkPolicy {}/{}", np.metadata.namespace.as_deref().unwrap_or(""), np.metadata.name),
                            format!("no selected pod declares a port named {name:?}: the rule matches nothing"),
                        ));
                    }
                }
            }
        }
    }
    // 4. Allow rules shadowed by an earlier Deny.
    for (ai, allow) in engine.rules.iter().enumerate() {
        if allow.action != AdminAction::Allow || allow.stage != Stage::Admin {
            continue;
        }
        let shadow = engine.rules[..ai].iter().find(|deny| {
            deny.action == AdminAction::Deny
                && deny.stage == Stage::Admin
                && deny.direction == allow.direction
                && deny.policy != allow.policy
                && !deny.audit
                && deny.http.is_empty()
                && engine.subjects[deny.policy as usize]
                    .is_superset(&engine.subjects[allow.policy as usize])
                && deny.ports.is_none()
                && covers_peers(&engine, deny.peers.as_deref(), allow.peers.as_deref())
        });
        if let Some(deny) = shadow {
            let p = &engine.policies[allow.policy as usize];
            let d = &engine.policies[deny.policy as usize];
            let dir = if allow.direction == Direction::Ingress {
                "ingress"
            } else {
                "egress"
            };
            out.push(warn(
                "shadowed-allow",
                &p.file,
                p.line,
                format!("spec.{dir}[{}]", allow.index),
                p.display(),
                format!(
                    "this Allow never applies: {} {dir}[{}] denies the same traffic first",
                    d.display(),
                    deny.index
                ),
            ));
        }
    }
    // 5. Egress to everything on every port.
    for (pid, p) in engine.policies.iter().enumerate() {
        for r in engine
            .rules
            .iter()
            .filter(|r| r.policy as usize == pid && r.direction == Direction::Egress)
        {
            let everything = r.peers.as_ref().is_some_and(|ps| {
                ps.iter().any(|x| matches!(x, PeerMatch::Block(b) if b.cidr.is_everything() && b.except.is_empty()))
            });
            let all_ports = r.ports.as_ref().is_none_or(|ps| {
                ps.iter()
                    .any(|x| matches!(x, PortMatch::Range(_, 1, 65535)))
            });
            if everything && all_ports && r.action == AdminAction::Allow {
                out.push(warn(
                    "egress-anywhere",
                    &p.file,
                    p.line,
                    format!("spec.egress[{}]", r.index),
                    p.display(),
                    "allows egress to 0.0.0.0/0 on every port: the selected pods can reach anything (consider FQDN rules)".into(),
                ));
            }
        }
    }
    // 7. AdminNetworkPolicies at one priority over the same pods. Upstream: "If two (or
    // more) policies with the same priority could both match a connection, then the
    // implementation can apply any of the matching policies". Palisade takes them by name.
    let anps: Vec<(usize, &crate::engine::PolicyInfo)> = engine
        .policies
        .iter()
        .enumerate()
        .filter(|(_, p)| p.kind == PolicyKind::AdminNetworkPolicy)
        .collect();
    for (i, &(pa, a)) in anps.iter().enumerate() {
        for &(pb, b) in &anps[i + 1..] {
            if a.priority != b.priority {
                continue;
            }
            let (first, later) = if a.name <= b.name { (a, b) } else { (b, a) };
            let shared = engine.subjects[pa]
                .iter()
                .any(|pod| engine.subjects[pb].contains(pod));
            if shared {
                out.push(warn(
                    "same-priority",
                    &later.file,
                    later.line,
                    "spec.priority".into(),
                    later.display(),
                    format!(
                        "{} has the same priority ({}) and selects some of the same pods: \
                         upstream leaves the order of such policies undefined; Palisade \
                         evaluates them by name, {} first",
                        first.display(),
                        later.priority.unwrap_or_default(),
                        first.name
                    ),
                ));
            }
        }
    }
    // 8. `nodes` peers whose selector matches no Node object.
    let egress_of_admin = snap
        .admin_network_policies
        .iter()
        .map(|(p, o)| {
            (
                format!("AdminNetworkPolicy {}", p.metadata.name),
                &p.spec.egress,
                o,
            )
        })
        .chain(snap.baseline_admin_network_policies.iter().map(|(p, o)| {
            (
                format!("BaselineAdminNetworkPolicy {}", p.metadata.name),
                &p.spec.egress,
                o,
            )
        }));
    for (object, rules, origin) in egress_of_admin {
        for (i, rule) in rules.iter().enumerate() {
            for (j, peer) in rule.to.iter().enumerate() {
                let Some(sel) = peer.nodes.as_ref().filter(|s| !s.is_empty()) else {
                    continue;
                };
                if snap
                    .nodes
                    .iter()
                    .any(|(n, _)| sel.matches(&n.metadata.labels))
                {
                    continue;
                }
                let message = if snap.nodes.is_empty() {
                    "the input holds no Node objects, so this selector matches no address \
                     (`nodes: {}` still matches the node addresses pods report)"
                        .to_string()
                } else {
                    format!(
                        "selects none of the {} Node objects, so it matches no address",
                        snap.nodes.len()
                    )
                };
                out.push(warn(
                    "selects-no-nodes",
                    &origin.file,
                    origin.line,
                    format!("spec.egress[{i}].to[{j}].nodes"),
                    object.clone(),
                    message,
                ));
            }
        }
    }
    out
}

fn find_policy(e: &Engine, kind: PolicyKind, ns: Option<&str>, name: &str) -> Option<usize> {
    e.policies
        .iter()
        .position(|p| p.kind == kind && p.namespace.as_deref() == ns && p.name == name)
}

/// Whether the deny peers match at least everything the allow peers match.
fn covers_peers(e: &Engine, deny: Option<&[PeerMatch]>, allow: Option<&[PeerMatch]>) -> bool {
    let Some(deny) = deny else { return true };
    let Some(allow) = allow else { return false };
    allow.iter().all(|a| {
        deny.iter().any(|d| match (d, a) {
            (PeerMatch::Pods(ds), PeerMatch::Pods(as_)) => {
                e.sets[*ds as usize].is_superset(&e.sets[*as_ as usize])
            }
            (PeerMatch::Block(db), PeerMatch::Block(ab)) => {
                db.except.is_empty() && db.cidr.contains_cidr(&ab.cidr)
            }
            _ => false,
        })
    })
}
