//! The hot path's view of the compiled rules: small, contiguous, with no pointers to chase.
//!
//! `Rule` keeps everything explanations and lints need (names, HTTP conditions, CIDRs,
//! FQDN patterns). A verdict mostly asks "does this port match?" and "is that pod in this
//! peer set?"; answering from `Rule` costs several dependent cache misses per rule (the rule,
//! its port and peer vectors, the set, the set's words). Here each rule is one small
//! fixed-size record, ports and peers are flat arrays, and set membership is transposed:
//! each pod has one short bit row over the sets that rules use as peers, so all the
//! membership questions of one verdict read the same cache line or two.

use super::*;
use crate::model::Mode;
use std::collections::HashMap;

/// `len` of a range meaning "no condition" (any peer, any port).
const ANY: u32 = u32::MAX;
/// Name id of a named port no pod declares: never matches.
const NO_NAME: u32 = u32::MAX;

/// One rule, as evaluation needs it. Parallel to `Engine::rules`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FastRule {
    /// Range into `Fast::peers` (`len == ANY`: any peer).
    peers: (u32, u32),
    /// Range into `Fast::ports` (`len == ANY`: any port).
    ports: (u32, u32),
    pub(crate) policy: u32,
    pub(crate) action: RuleAction,
    pub(crate) tier_rank: u8,
    pub(crate) audit: bool,
    pub(crate) http: bool,
}

#[derive(Debug, Clone, Copy)]
pub(crate) enum FastPeer {
    /// Pods of dense peer set `k` (a bit of each pod's membership row).
    Pods(u32),
    /// An ipBlock: for a pod, dense set `k` of the pods whose IPs it matches; for anything
    /// else, entry `i` of the rule's own `peers`.
    Block(u32, u32),
    /// Anything else: entry `i` of the rule's own `peers`.
    Other(u32),
}

/// The rules of one pod in one direction: ranges of `Fast::lists`, in evaluation order.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct FastDir {
    start: u32,
    tiered: u32,
    ns_policies: u32,
    ns_rules: u32,
    baseline: u32,
    pub(crate) audit: bool,
    pub(crate) host_network: bool,
}

/// The rule lists of one direction of one pod.
pub(crate) struct DirLists<'a> {
    pub(crate) tiered: &'a [u32],
    pub(crate) ns_policies: &'a [u32],
    pub(crate) ns_rules: &'a [u32],
    pub(crate) baseline: &'a [u32],
}

/// What a dense membership bit stands for.
enum Source<'a> {
    Set(u32),
    Block(&'a IpBlockMatcher),
}

#[derive(Debug, Clone, Copy)]
enum FastPort {
    Proto(Protocol),
    Range(Protocol, u16, u16),
    /// A named port (interned name), protocol given or taken from the container port.
    Named(Option<Protocol>, u32),
}

/// The compact index.
#[derive(Debug, Clone, Default)]
pub(crate) struct Fast {
    pub(crate) rules: Vec<FastRule>,
    peers: Vec<FastPeer>,
    ports: Vec<FastPort>,
    /// `u64` words per pod in `member`.
    stride: usize,
    /// Row per pod: bit `k` is set when the pod is in dense peer set `k`.
    member: Vec<u64>,
    /// Per pod: its declared ports, a range into `named`.
    pod_ports: Vec<(u32, u32)>,
    /// Declared ports: (name id, protocol, number).
    named: Vec<(u32, Protocol, u16)>,
    /// Per pod and direction (`pod * 2`: ingress, `pod * 2 + 1`: egress).
    dirs: Vec<FastDir>,
    /// The rule and policy id lists `dirs` point into.
    lists: Vec<u32>,
    /// Per policy: whether it is enforced (not Audit).
    pub(crate) enforced: Vec<bool>,
}

impl Fast {
    /// Builds the index from what `compile` produced.
    pub(crate) fn build(
        rules: &[Rule],
        sets: &[PodSet],
        pods: &[PodInfo],
        per_pod: &[PodRules],
        policies: &[PolicyInfo],
    ) -> Fast {
        let mut f = Fast {
            enforced: policies.iter().map(|p| p.mode == Mode::Enforce).collect(),
            ..Fast::default()
        };
        for (pod, pr) in pods.iter().zip(per_pod) {
            for d in [&pr.ingress, &pr.egress] {
                let start = f.lists.len() as u32;
                for l in [&d.tiered, &d.ns_policies, &d.ns_rules, &d.baseline] {
                    f.lists.extend_from_slice(l);
                }
                f.dirs.push(FastDir {
                    start,
                    tiered: d.tiered.len() as u32,
                    ns_policies: d.ns_policies.len() as u32,
                    ns_rules: d.ns_rules.len() as u32,
                    baseline: d.baseline.len() as u32,
                    audit: d.audit,
                    host_network: pod.host_network,
                });
            }
        }
        // Intern port names.
        let mut names: HashMap<&str, u32> = HashMap::new();
        for p in pods {
            let start = f.named.len() as u32;
            for (name, proto, num) in &p.ports {
                let id = match name {
                    Some(n) => {
                        let next = names.len() as u32;
                        *names.entry(n.as_str()).or_insert(next)
                    }
                    None => NO_NAME,
                };
                f.named.push((id, *proto, *num));
            }
            f.pod_ports.push((start, f.named.len() as u32 - start));
        }
        // Dense ids for the sets rules use as peers, and for the pods each ipBlock matches.
        let mut dense: HashMap<u32, u32> = HashMap::new();
        let mut dense_blocks: HashMap<&IpBlockMatcher, u32> = HashMap::new();
        let mut sources: Vec<Source<'_>> = Vec::new();
        for r in rules {
            let peers_start = f.peers.len() as u32;
            let peers_len = match &r.peers {
                None => ANY,
                Some(ps) => {
                    for (i, p) in ps.iter().enumerate() {
                        f.peers.push(match p {
                            PeerMatch::Pods(s) => {
                                FastPeer::Pods(*dense.entry(*s).or_insert_with(|| {
                                    sources.push(Source::Set(*s));
                                    sources.len() as u32 - 1
                                }))
                            }
                            PeerMatch::Block(b) => {
                                let k = *dense_blocks.entry(b).or_insert_with(|| {
                                    sources.push(Source::Block(b));
                                    sources.len() as u32 - 1
                                });
                                FastPeer::Block(k, i as u32)
                            }
                            _ => FastPeer::Other(i as u32),
                        });
                    }
                    ps.len() as u32
                }
            };
            let ports_start = f.ports.len() as u32;
            let ports_len = match &r.ports {
                None => ANY,
                Some(ps) => {
                    for p in ps {
                        f.ports.push(match p {
                            PortMatch::Proto(pr) => FastPort::Proto(*pr),
                            PortMatch::Range(pr, lo, hi) => FastPort::Range(*pr, *lo, *hi),
                            PortMatch::Named(pr, name) => FastPort::Named(
                                *pr,
                                names.get(name.as_str()).copied().unwrap_or(NO_NAME),
                            ),
                        });
                    }
                    ps.len() as u32
                }
            };
            f.rules.push(FastRule {
                peers: (peers_start, peers_len),
                ports: (ports_start, ports_len),
                policy: r.policy,
                action: r.action,
                tier_rank: r.tier_rank,
                audit: r.audit,
                http: !r.http.is_empty(),
            });
        }
        // Transpose membership: one row per pod.
        let pod_ips: Vec<(IpAddr, usize)> = pods
            .iter()
            .enumerate()
            .flat_map(|(i, p)| p.ips.iter().map(move |ip| (*ip, i)))
            .collect();
        f.stride = sources.len().div_ceil(64).max(1);
        f.member = vec![0; f.stride * pods.len()];
        for (k, src) in sources.iter().enumerate() {
            let bit = 1u64 << (k % 64);
            match src {
                Source::Set(s) => {
                    for pod in sets[*s as usize].iter() {
                        f.member[pod as usize * f.stride + k / 64] |= bit;
                    }
                }
                // Every pod with an IP inside, host-network pods included, as the rule's
                // own `peers` would answer.
                Source::Block(b) => {
                    for &(ip, pod) in &pod_ips {
                        if b.matches(ip) {
                            f.member[pod * f.stride + k / 64] |= bit;
                        }
                    }
                }
            }
        }
        f
    }

    /// Whether Audit-mode policy applies to `pod` in direction `dir`.
    #[inline]
    pub(crate) fn audit(&self, pod: PodId, dir: Direction) -> bool {
        self.dirs[pod as usize * 2 + usize::from(dir == Direction::Egress)].audit
    }

    /// The rules of `pod` in direction `dir`.
    #[inline]
    pub(crate) fn dir(&self, pod: PodId, dir: Direction) -> (&FastDir, DirLists<'_>) {
        let d = &self.dirs[pod as usize * 2 + usize::from(dir == Direction::Egress)];
        let mut at = d.start as usize;
        let mut take = |n: u32| {
            let s = &self.lists[at..at + n as usize];
            at += n as usize;
            s
        };
        let lists = DirLists {
            tiered: take(d.tiered),
            ns_policies: take(d.ns_policies),
            ns_rules: take(d.ns_rules),
            baseline: take(d.baseline),
        };
        (d, lists)
    }

    /// Whether the flow's port and protocol satisfy the rule.
    #[inline]
    pub(crate) fn ports_match(
        &self,
        r: &FastRule,
        port: u16,
        proto: Protocol,
        dst_pod: Option<PodId>,
    ) -> bool {
        let (start, len) = r.ports;
        if len == ANY {
            return true;
        }
        self.ports[start as usize..(start + len) as usize]
            .iter()
            .any(|p| match *p {
                FastPort::Proto(pr) => pr == proto,
                FastPort::Range(pr, lo, hi) => pr == proto && lo <= port && port <= hi,
                FastPort::Named(pr, name) => {
                    name != NO_NAME
                        && pr.is_none_or(|pr| pr == proto)
                        && dst_pod.is_some_and(|d| {
                            let (s, n) = self.pod_ports[d as usize];
                            self.named[s as usize..(s + n) as usize]
                                .iter()
                                .any(|&(id, cp, num)| id == name && cp == proto && num == port)
                        })
                }
            })
    }

    /// The rule's peer entries; `None` for any peer.
    #[inline]
    pub(crate) fn peers(&self, r: &FastRule) -> Option<&[FastPeer]> {
        let (start, len) = r.peers;
        if len == ANY {
            return None;
        }
        Some(&self.peers[start as usize..(start + len) as usize])
    }

    /// Whether `pod` is in dense peer set `k`.
    #[inline]
    fn member(&self, pod: PodId, k: u32) -> bool {
        self.member
            .get(pod as usize * self.stride + (k / 64) as usize)
            .is_some_and(|w| w & (1 << (k % 64)) != 0)
    }

    /// Whether a peer entry matches `other`; `other_peer(i)` checks entry `i` of the rule's
    /// own `peers` (CIDRs, names), which this index does not copy.
    #[inline]
    pub(crate) fn peer_matches(
        &self,
        p: FastPeer,
        other: &Endpoint<'_>,
        other_peer: impl FnOnce(u32) -> bool,
    ) -> bool {
        match (p, other) {
            (FastPeer::Pods(k) | FastPeer::Block(k, _), Endpoint::Pod(id)) => self.member(*id, k),
            (FastPeer::Pods(_), _) => false,
            (FastPeer::Block(_, i) | FastPeer::Other(i), _) => other_peer(i),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::Manifests;
    use crate::snapshot::Snapshot;

    const YAML: &str = "
apiVersion: v1
kind: Namespace
metadata: {name: a, labels: {team: red}}
---
apiVersion: v1
kind: Pod
metadata: {name: p1, namespace: a, labels: {app: web}}
spec: {containers: [{name: c, ports: [{name: web, containerPort: 80}, {name: dns, containerPort: 53, protocol: UDP}]}]}
status: {podIP: 10.0.0.1}
---
apiVersion: v1
kind: Pod
metadata: {name: p2, namespace: a, labels: {app: db}}
spec: {containers: [{name: c, ports: [{name: web, containerPort: 8080}]}]}
status: {podIP: 10.0.1.2}
---
apiVersion: v1
kind: Pod
metadata: {name: p3, namespace: b, labels: {app: web}}
status: {podIPs: [{ip: 10.1.0.3}, {ip: 'fd00::3'}]}
---
apiVersion: v1
kind: Pod
metadata: {name: host, namespace: b, labels: {app: web}}
spec: {hostNetwork: true, containers: [{name: c, ports: [{name: web, containerPort: 80}]}]}
status: {podIP: 192.168.1.5}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: np, namespace: a}
spec:
  podSelector: {}
  ingress:
  - from: [{ipBlock: {cidr: 10.0.0.0/8, except: [10.0.1.0/24]}}, {podSelector: {matchLabels: {app: web}}}]
    ports: [{port: web}, {port: 8000, endPort: 8100}, {protocol: SCTP}]
  - from: [{namespaceSelector: {}, podSelector: {matchLabels: {app: web}}}]
  egress:
  - to: [{ipBlock: {cidr: 192.168.0.0/16}}, {ipBlock: {cidr: 'fd00::/8'}}]
    ports: [{port: dns, protocol: UDP}]
  - {}
---
apiVersion: policy.networking.k8s.io/v1alpha1
kind: AdminNetworkPolicy
metadata: {name: anp}
spec:
  priority: 3
  subject: {namespaces: {}}
  ingress:
  - {action: Pass, from: [{pods: {namespaceSelector: {}, podSelector: {matchLabels: {app: db}}}}], ports: [{namedPort: web}]}
  egress:
  - {action: Deny, to: [{networks: [10.1.0.0/16]}, {domainNames: ['*.example.com']}], ports: [{portRange: {start: 80, end: 443}}]}
  - {action: Allow, to: [{nodes: {}}, {namespaces: {matchLabels: {team: red}}}]}
---
apiVersion: palisade.dev/v1alpha1
kind: SecurityPolicy
metadata: {name: sp, namespace: a}
spec:
  mode: Audit
  podSelector: {matchLabels: {app: web}}
  egress:
  - to: [{fqdn: '**.models.test'}]
    http: [{methods: [GET]}]
  - to: [{podSelector: {}}, {ipBlock: {cidr: 0.0.0.0/0}}]
---
apiVersion: palisade.dev/v1alpha1
kind: ClusterSecurityPolicy
metadata: {name: csp}
spec:
  tier: baseline
  ingress:
  - {action: Deny, from: [{podSelector: {matchLabels: {app: db}}}], ports: [{port: web}]}
";

    /// What the rule's own fields say, read the slow way.
    fn reference(
        e: &Engine,
        r: &Rule,
        other: &Endpoint<'_>,
        flow: &Flow<'_>,
        dst: Option<PodId>,
    ) -> Option<bool> {
        let ports_ok = r.ports.as_ref().is_none_or(|ps| {
            ps.iter().any(|p| match p {
                PortMatch::Proto(pr) => *pr == flow.protocol,
                PortMatch::Range(pr, lo, hi) => {
                    *pr == flow.protocol && *lo <= flow.port && flow.port <= *hi
                }
                PortMatch::Named(pr, name) => {
                    pr.is_none_or(|pr| pr == flow.protocol)
                        && dst.is_some_and(|d| {
                            e.pods[d as usize].ports.iter().any(|(n, cp, num)| {
                                n.as_deref() == Some(name.as_str())
                                    && *cp == flow.protocol
                                    && *num == flow.port
                            })
                        })
                }
            })
        });
        let peers_ok = r.peers.as_ref().is_none_or(|ps| {
            ps.iter().any(|p| match (p, other) {
                (PeerMatch::Pods(s), Endpoint::Pod(id)) => e.sets[*s as usize].contains(*id),
                (PeerMatch::Block(b), Endpoint::Pod(id)) => {
                    e.pods[*id as usize].ips.iter().any(|ip| b.matches(*ip))
                }
                (PeerMatch::Block(b), Endpoint::Ip(ip)) => b.matches(*ip),
                (PeerMatch::Block(b), Endpoint::Fqdn { ip: Some(ip), .. }) => b.matches(*ip),
                (PeerMatch::Fqdn(f), Endpoint::Fqdn { name, .. }) => f.matches(name),
                _ => false,
            })
        });
        if !(ports_ok && peers_ok) {
            return None;
        }
        if r.http.is_empty() {
            return Some(false);
        }
        match flow.http {
            Some(_) => unreachable!("flows here carry no request"),
            None => (r.action == AdminAction::Allow).then_some(true),
        }
    }

    #[test]
    fn the_compact_index_answers_as_the_rules_do() {
        let mut m = Manifests::new();
        m.add_file("t.yaml", YAML);
        assert!(!m.has_errors(), "{:#?}", m.diagnostics);
        let e = Engine::compile(&Snapshot::from_manifests(&m));
        assert_eq!(e.pods.len(), 4);
        let mut others: Vec<Endpoint<'static>> = (0..4).map(Endpoint::Pod).collect();
        for ip in [
            "10.0.0.9",
            "10.0.1.9",
            "10.1.2.3",
            "192.168.7.7",
            "fd00::9",
            "8.8.8.8",
        ] {
            others.push(Endpoint::Ip(ip.parse().unwrap()));
        }
        others.push(Endpoint::Fqdn {
            name: "a.example.com",
            ip: Some("10.1.0.9".parse().unwrap()),
        });
        others.push(Endpoint::Fqdn {
            name: "hub.models.test",
            ip: None,
        });
        let mut matched = 0;
        for rid in 0..e.rules.len() as u32 {
            for other in &others {
                for dst in [None, Some(0), Some(1), Some(3)] {
                    for (port, protocol) in [
                        (53, Protocol::UDP),
                        (80, Protocol::TCP),
                        (443, Protocol::TCP),
                        (8080, Protocol::TCP),
                        (8100, Protocol::TCP),
                        (9, Protocol::SCTP),
                    ] {
                        let flow = Flow {
                            src: *other,
                            dst: *other,
                            port,
                            protocol,
                            http: None,
                        };
                        let want = reference(&e, &e.rules[rid as usize], other, &flow, dst);
                        assert_eq!(
                            e.rule_matches(rid, other, &flow, dst),
                            want,
                            "rule {rid} {other:?} {dst:?} {port}/{protocol}"
                        );
                        matched += usize::from(want.is_some());
                    }
                }
            }
        }
        assert!(matched > 100, "{matched}");
        for pod in 0..4u32 {
            for dir in [Direction::Ingress, Direction::Egress] {
                let (d, lists) = e.fast.dir(pod, dir);
                let want = e.per_pod[pod as usize].dir(dir);
                assert_eq!(lists.tiered, &want.tiered[..]);
                assert_eq!(lists.ns_policies, &want.ns_policies[..]);
                assert_eq!(lists.ns_rules, &want.ns_rules[..]);
                assert_eq!(lists.baseline, &want.baseline[..]);
                assert_eq!(d.audit, want.audit);
                assert_eq!(d.host_network, e.pods[pod as usize].host_network);
            }
        }
        let enforced: Vec<bool> = e.policies.iter().map(|p| p.mode == Mode::Enforce).collect();
        assert_eq!(e.fast.enforced, enforced);
    }
}
