//! Snapshot → Engine: selectors pre-matched to pod sets, rules compiled once, and for every
//! pod the rules that apply to it in each direction, in evaluation order.

use super::*;
use crate::cidr::{Cidr, IpBlockMatcher};
use crate::model::*;
use crate::snapshot::Snapshot;
use std::collections::HashMap;

#[derive(Hash, PartialEq, Eq)]
enum SetKey {
    /// Pods of namespaces matching a selector (None: all namespaces) or of one namespace,
    /// filtered by an optional pod selector.
    Pods(Option<LabelSelector>, Option<u32>, Option<LabelSelector>),
}

struct Builder {
    pods: Vec<PodInfo>,
    namespaces: Vec<NsInfo>,
    sets: Vec<PodSet>,
    set_cache: HashMap<SetKey, u32>,
    ns_cache: HashMap<LabelSelector, Vec<u32>>,
    policies: Vec<PolicyInfo>,
    rules: Vec<Rule>,
    per_pod: Vec<PodRules>,
    subjects: Vec<PodSet>,
    cluster: String,
}

impl Engine {
    /// Compiles a snapshot with the posture its config sets.
    pub fn compile(snap: &Snapshot) -> Engine {
        Self::compile_with(snap, snap.posture())
    }

    /// Compiles a snapshot with an explicit default posture.
    pub fn compile_with(snap: &Snapshot, posture: Posture) -> Engine {
        let cluster = snap
            .config
            .as_ref()
            .and_then(|(c, _)| c.spec.cluster.clone())
            .unwrap_or_else(|| "default".to_string());
        let mut b = Builder {
            pods: Vec::with_capacity(snap.pods.len()),
            namespaces: Vec::new(),
            sets: Vec::new(),
            set_cache: HashMap::new(),
            ns_cache: HashMap::new(),
            policies: Vec::new(),
            rules: Vec::new(),
            per_pod: Vec::new(),
            subjects: Vec::new(),
            cluster,
        };
        let mut ns_by_name: HashMap<String, u32> = HashMap::new();
        for (ns, _) in &snap.namespaces {
            let id = b.namespaces.len() as u32;
            let mut labels = ns.metadata.labels.clone();
            labels.insert(
                "kubernetes.io/metadata.name".into(),
                ns.metadata.name.clone(),
            );
            b.namespaces.push(NsInfo {
                name: ns.metadata.name.clone(),
                labels,
                pods: Vec::new(),
                declared: true,
            });
            ns_by_name.insert(ns.metadata.name.clone(), id);
        }
        let mut ns_id = |b: &mut Builder, name: &str| -> u32 {
            if let Some(id) = ns_by_name.get(name) {
                return *id;
            }
            let id = b.namespaces.len() as u32;
            let mut labels = BTreeMap::new();
            labels.insert("kubernetes.io/metadata.name".into(), name.to_string());
            b.namespaces.push(NsInfo {
                name: name.to_string(),
                labels,
                pods: Vec::new(),
                declared: false,
            });
            ns_by_name.insert(name.to_string(), id);
            id
        };
        let mut pod_index = HashMap::new();
        let mut ip_index = HashMap::new();
        for (pod, _) in &snap.pods {
            let ns = pod
                .metadata
                .namespace
                .clone()
                .unwrap_or_else(|| "default".into());
            let nid = ns_id(&mut b, &ns);
            let id = b.pods.len() as PodId;
            let mut ips: Vec<IpAddr> = Vec::new();
            for s in pod
                .status
                .pod_ips
                .iter()
                .map(|p| p.ip.as_str())
                .chain(pod.status.pod_ip.as_deref())
            {
                if let Ok(ip) = s.parse::<IpAddr>() {
                    if !ips.contains(&ip) {
                        ips.push(ip);
                    }
                }
            }
            let host_network = pod.spec.host_network.unwrap_or(false);
            if !host_network {
                for ip in &ips {
                    ip_index.insert(*ip, id);
                }
            }
            let ports = pod
                .spec
                .containers
                .iter()
                .chain(&pod.spec.init_containers)
                .flat_map(|c| c.ports.iter())
                .map(|p| (p.name.clone(), p.protocol, p.container_port))
                .collect();
            pod_index.insert((ns.clone(), pod.metadata.name.clone()), id);
            b.namespaces[nid as usize].pods.push(id);
            b.pods.push(PodInfo {
                workload: workload_name(&ns, &pod.metadata),
                namespace: ns,
                name: pod.metadata.name.clone(),
                labels: pod.metadata.labels.clone(),
                ips,
                host_network,
                node: pod.spec.node_name.clone(),
                service_account: pod.spec.service_account_name.clone(),
                ports,
                ns_id: nid,
            });
        }
        // Namespaces named only by policies still exist for selectors.
        for (np, _) in &snap.network_policies {
            ns_id(
                &mut b,
                np.metadata.namespace.as_deref().unwrap_or("default"),
            );
        }
        for (sp, _) in &snap.security_policies {
            ns_id(
                &mut b,
                sp.metadata.namespace.as_deref().unwrap_or("default"),
            );
        }
        b.per_pod = vec![PodRules::default(); b.pods.len()];

        // Tiered: CSP security tier, then ANP + CSP admin tier, by priority.
        let mut tiered: Vec<(u8, i64, u8, String, Tiered)> = Vec::new();
        for (i, (anp, _)) in snap.admin_network_policies.iter().enumerate() {
            tiered.push((
                1,
                anp.spec.priority,
                0,
                anp.metadata.name.clone(),
                Tiered::Anp(i),
            ));
        }
        for (i, (csp, _)) in snap.cluster_security_policies.iter().enumerate() {
            let rank = match csp.spec.tier {
                Tier::Security => 0,
                Tier::Admin => 1,
                Tier::Baseline => 2,
            };
            tiered.push((
                rank,
                csp.spec.priority,
                1,
                csp.metadata.name.clone(),
                Tiered::Csp(i),
            ));
        }
        tiered.sort_by(|a, b| (a.0, a.1, a.2, &a.3).cmp(&(b.0, b.1, b.2, &b.3)));
        for (rank, _, _, _, t) in &tiered {
            if *rank == 2 {
                continue;
            }
            match t {
                Tiered::Anp(i) => b.add_anp(&snap.admin_network_policies[*i]),
                Tiered::Csp(i) => b.add_csp(&snap.cluster_security_policies[*i]),
            }
        }
        // Namespaced, in a stable order.
        let mut nps: Vec<&(NetworkPolicy, Origin)> = snap.network_policies.iter().collect();
        nps.sort_by(|a, b| {
            (&a.0.metadata.namespace, &a.0.metadata.name)
                .cmp(&(&b.0.metadata.namespace, &b.0.metadata.name))
        });
        for np in nps {
            b.add_np(np, &ns_by_name);
        }
        let mut sps: Vec<&(SecurityPolicy, Origin)> = snap.security_policies.iter().collect();
        sps.sort_by(|a, b| {
            (&a.0.metadata.namespace, &a.0.metadata.name)
                .cmp(&(&b.0.metadata.namespace, &b.0.metadata.name))
        });
        for sp in sps {
            b.add_sp(sp, &ns_by_name);
        }
        // Baseline: CSP baseline tier, then BANP.
        for (rank, _, _, _, t) in &tiered {
            if let (2, Tiered::Csp(i)) = (rank, t) {
                b.add_csp(&snap.cluster_security_policies[*i]);
            }
        }
        for banp in &snap.baseline_admin_network_policies {
            b.add_banp(banp);
        }
        let fast = super::fast::Fast::build(&b.rules, &b.sets, &b.pods, &b.per_pod, &b.policies);
        Engine {
            pods: b.pods,
            namespaces: b.namespaces,
            pod_index,
            ip_index,
            policies: b.policies,
            rules: b.rules,
            sets: b.sets,
            per_pod: b.per_pod,
            posture,
            subjects: b.subjects,
            fast,
        }
    }
}

enum Tiered {
    Anp(usize),
    Csp(usize),
}

use crate::diag::Origin;

/// `namespace/<owner>` (Deployment via its ReplicaSet, StatefulSet, Job, DaemonSet), else
/// the `app.kubernetes.io/name` or `app` label, else the pod name.
pub(crate) fn workload_name(ns: &str, meta: &ObjectMeta) -> String {
    let owner = meta
        .owner_references
        .iter()
        .find(|o| o.controller == Some(true))
        .or(meta.owner_references.first());
    if let Some(o) = owner {
        let name = if o.kind == "ReplicaSet" {
            match o.name.rsplit_once('-') {
                Some((base, hash))
                    if !base.is_empty() && hash.chars().all(|c| c.is_ascii_alphanumeric()) =>
                {
                    base
                }
                _ => o.name.as_str(),
            }
        } else {
            o.name.as_str()
        };
        return format!("{ns}/{name}");
    }
    if let Some(app) = meta
        .labels
        .get("app.kubernetes.io/name")
        .or(meta.labels.get("app"))
    {
        return format!("{ns}/{app}");
    }
    format!("{ns}/{}", meta.name)
}

impl Builder {
    fn ns_matching(&mut self, sel: &LabelSelector) -> Vec<u32> {
        if let Some(v) = self.ns_cache.get(sel) {
            return v.clone();
        }
        let v: Vec<u32> = self
            .namespaces
            .iter()
            .enumerate()
            .filter(|(_, n)| sel.matches(&n.labels))
            .map(|(i, _)| i as u32)
            .collect();
        self.ns_cache.insert(sel.clone(), v.clone());
        v
    }

    /// The set of non-host-network pods in namespaces matching `ns_sel` (None: all) or in
    /// namespace `ns_fixed`, whose labels match `pod_sel` (None: all).
    fn pod_set(
        &mut self,
        ns_sel: Option<&LabelSelector>,
        ns_fixed: Option<u32>,
        pod_sel: Option<&LabelSelector>,
    ) -> u32 {
        let key = SetKey::Pods(ns_sel.cloned(), ns_fixed, pod_sel.cloned());
        if let Some(id) = self.set_cache.get(&key) {
            return *id;
        }
        let nss: Vec<u32> = match (ns_fixed, ns_sel) {
            (Some(n), _) => vec![n],
            (None, Some(sel)) => self.ns_matching(sel),
            (None, None) => (0..self.namespaces.len() as u32).collect(),
        };
        let mut set = PodSet::new(self.pods.len());
        for n in nss {
            for &p in &self.namespaces[n as usize].pods {
                let pod = &self.pods[p as usize];
                if !pod.host_network && pod_sel.is_none_or(|s| s.matches(&pod.labels)) {
                    set.insert(p);
                }
            }
        }
        let id = self.sets.len() as u32;
        self.sets.push(set);
        self.set_cache.insert(key, id);
        id
    }

    fn add_policy(&mut self, info: PolicyInfo, subject: u32) -> u32 {
        let id = self.policies.len() as u32;
        self.policies.push(info);
        self.subjects.push(self.sets[subject as usize].clone());
        id
    }

    fn attach(&mut self, subject: u32, dir: Direction, list: List, ids: &[u32], audit: bool) {
        if ids.is_empty() {
            return;
        }
        let members: Vec<u32> = self.sets[subject as usize].iter().collect();
        for p in members {
            let pr = &mut self.per_pod[p as usize];
            let d = match dir {
                Direction::Ingress => &mut pr.ingress,
                Direction::Egress => &mut pr.egress,
            };
            let v = match list {
                List::Tiered => &mut d.tiered,
                List::NsPolicies => &mut d.ns_policies,
                List::NsRules => &mut d.ns_rules,
                List::Baseline => &mut d.baseline,
            };
            v.extend_from_slice(ids);
            d.audit |= audit;
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn push_rule(
        &mut self,
        policy: u32,
        direction: Direction,
        index: usize,
        name: Option<String>,
        action: RuleAction,
        stage: Stage,
        tier_rank: u8,
        peers: Option<Vec<PeerMatch>>,
        ports: Option<Vec<PortMatch>>,
        http: Vec<HttpMatch>,
        audit: bool,
    ) -> u32 {
        let id = self.rules.len() as u32;
        self.rules.push(Rule {
            policy,
            direction,
            index: index as u32,
            name,
            action,
            stage,
            tier_rank,
            peers,
            ports,
            http,
            audit,
        });
        id
    }

    fn admin_subject(&mut self, s: &AdminSubject) -> u32 {
        match (&s.namespaces, &s.pods) {
            (Some(ns), _) => self.pod_set(Some(ns), None, None),
            (None, Some(p)) => {
                self.pod_set(Some(&p.namespace_selector), None, Some(&p.pod_selector))
            }
            (None, None) => {
                let n = self.pods.len();
                self.sets.push(PodSet::new(n));
                self.sets.len() as u32 - 1
            }
        }
    }

    fn admin_peers(&mut self, peers: &[AdminPeer]) -> Option<Vec<PeerMatch>> {
        let mut out = Vec::new();
        for p in peers {
            if let Some(ns) = &p.namespaces {
                out.push(PeerMatch::Pods(self.pod_set(Some(ns), None, None)));
            }
            if let Some(np) = &p.pods {
                out.push(PeerMatch::Pods(self.pod_set(
                    Some(&np.namespace_selector),
                    None,
                    Some(&np.pod_selector),
                )));
            }
            if p.nodes.is_some() {
                out.push(PeerMatch::Nothing);
            }
            for n in p.networks.iter().flatten() {
                if let Ok(c) = n.parse::<Cidr>() {
                    out.push(PeerMatch::Block(IpBlockMatcher {
                        cidr: c,
                        except: Vec::new(),
                    }));
                }
            }
            for d in p.domain_names.iter().flatten() {
                if let Ok(f) = crate::fqdn::FqdnPattern::parse_anp(d) {
                    out.push(PeerMatch::Fqdn(f));
                }
            }
        }
        Some(out)
    }

    fn admin_ports(ports: &Option<Vec<AdminPort>>) -> Option<Vec<PortMatch>> {
        let ports = ports.as_ref()?;
        Some(
            ports
                .iter()
                .filter_map(|p| {
                    if let Some(n) = &p.port_number {
                        Some(PortMatch::Range(n.protocol, n.port as u16, n.port as u16))
                    } else if let Some(name) = &p.named_port {
                        Some(PortMatch::Named(None, name.clone()))
                    } else {
                        p.port_range
                            .as_ref()
                            .map(|r| PortMatch::Range(r.protocol, r.start as u16, r.end as u16))
                    }
                })
                .collect(),
        )
    }

    fn add_anp(&mut self, (anp, origin): &(AdminNetworkPolicy, Origin)) {
        let subject = self.admin_subject(&anp.spec.subject);
        let pid = self.add_policy(
            PolicyInfo {
                kind: PolicyKind::AdminNetworkPolicy,
                namespace: None,
                name: anp.metadata.name.clone(),
                mode: Mode::Enforce,
                priority: Some(anp.spec.priority),
                tier: None,
                file: origin.file.clone(),
                line: origin.line,
            },
            subject,
        );
        let mut ids = Vec::new();
        for (i, r) in anp.spec.ingress.iter().enumerate() {
            let peers = self.admin_peers(&r.from);
            let ports = Self::admin_ports(&r.ports);
            ids.push(self.push_rule(
                pid,
                Direction::Ingress,
                i,
                r.name.clone(),
                r.action,
                Stage::Admin,
                1,
                peers,
                ports,
                Vec::new(),
                false,
            ));
        }
        self.attach(subject, Direction::Ingress, List::Tiered, &ids, false);
        ids.clear();
        for (i, r) in anp.spec.egress.iter().enumerate() {
            let peers = self.admin_peers(&r.to);
            let ports = Self::admin_ports(&r.ports);
            ids.push(self.push_rule(
                pid,
                Direction::Egress,
                i,
                r.name.clone(),
                r.action,
                Stage::Admin,
                1,
                peers,
                ports,
                Vec::new(),
                false,
            ));
        }
        self.attach(subject, Direction::Egress, List::Tiered, &ids, false);
    }

    fn add_banp(&mut self, (banp, origin): &(BaselineAdminNetworkPolicy, Origin)) {
        let subject = self.admin_subject(&banp.spec.subject);
        let pid = self.add_policy(
            PolicyInfo {
                kind: PolicyKind::BaselineAdminNetworkPolicy,
                namespace: None,
                name: banp.metadata.name.clone(),
                mode: Mode::Enforce,
                priority: None,
                tier: None,
                file: origin.file.clone(),
                line: origin.line,
            },
            subject,
        );
        let mut ids = Vec::new();
        for (i, r) in banp.spec.ingress.iter().enumerate() {
            let peers = self.admin_peers(&r.from);
            let ports = Self::admin_ports(&r.ports);
            ids.push(self.push_rule(
                pid,
                Direction::Ingress,
                i,
                r.name.clone(),
                r.action,
                Stage::Baseline,
                3,
                peers,
                ports,
                Vec::new(),
                false,
            ));
        }
        self.attach(subject, Direction::Ingress, List::Baseline, &ids, false);
        ids.clear();
        for (i, r) in banp.spec.egress.iter().enumerate() {
            let peers = self.admin_peers(&r.to);
            let ports = Self::admin_ports(&r.ports);
            ids.push(self.push_rule(
                pid,
                Direction::Egress,
                i,
                r.name.clone(),
                r.action,
                Stage::Baseline,
                3,
                peers,
                ports,
                Vec::new(),
                false,
            ));
        }
        self.attach(subject, Direction::Egress, List::Baseline, &ids, false);
    }

    fn np_ports(ports: &[PortSpecRef<'_>]) -> Option<Vec<PortMatch>> {
        if ports.is_empty() {
            return None;
        }
        Some(
            ports
                .iter()
                .map(|p| {
                    let proto = p.protocol.unwrap_or(Protocol::TCP);
                    match p.port {
                        None => PortMatch::Proto(proto),
                        Some(IntOrString::Int(n)) => {
                            let lo = *n as u16;
                            PortMatch::Range(proto, lo, p.end_port.map(|e| e as u16).unwrap_or(lo))
                        }
                        Some(IntOrString::String(s)) => PortMatch::Named(Some(proto), s.clone()),
                    }
                })
                .collect(),
        )
    }

    /// Peers of NetworkPolicy / SecurityPolicy (`own_ns`: podSelector-only peers are in the
    /// policy's namespace) or ClusterSecurityPolicy (`own_ns` None: in every namespace).
    fn selector_peer(
        &mut self,
        pod_sel: Option<&LabelSelector>,
        ns_sel: Option<&LabelSelector>,
        own_ns: Option<u32>,
    ) -> PeerMatch {
        match (ns_sel, pod_sel) {
            (Some(ns), pod) => PeerMatch::Pods(self.pod_set(Some(ns), None, pod)),
            (None, pod) => PeerMatch::Pods(self.pod_set(None, own_ns, pod)),
        }
    }

    fn block(b: &IpBlock) -> Option<PeerMatch> {
        let cidr = b.cidr.parse::<Cidr>().ok()?;
        let except = b.except.iter().filter_map(|e| e.parse().ok()).collect();
        Some(PeerMatch::Block(IpBlockMatcher { cidr, except }))
    }

    fn add_np(
        &mut self,
        (np, origin): &(NetworkPolicy, Origin),
        ns_by_name: &HashMap<String, u32>,
    ) {
        let ns_name = np
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into());
        let nid = ns_by_name.get(&ns_name).copied().unwrap_or_else(|| {
            self.namespaces
                .iter()
                .position(|n| n.name == ns_name)
                .unwrap_or(0) as u32
        });
        let subject = self.pod_set(None, Some(nid), Some(&np.spec.pod_selector));
        let pid = self.add_policy(
            PolicyInfo {
                kind: PolicyKind::NetworkPolicy,
                namespace: Some(ns_name),
                name: np.metadata.name.clone(),
                mode: Mode::Enforce,
                priority: None,
                tier: None,
                file: origin.file.clone(),
                line: origin.line,
            },
            subject,
        );
        let types: Vec<PolicyType> = if np.spec.policy_types.is_empty() {
            let mut t = vec![PolicyType::Ingress];
            if !np.spec.egress.is_empty() {
                t.push(PolicyType::Egress);
            }
            t
        } else {
            np.spec.policy_types.clone()
        };
        if types.contains(&PolicyType::Ingress) {
            let mut ids = Vec::new();
            for (i, r) in np.spec.ingress.iter().enumerate() {
                let peers = self.np_peers(&r.from, nid);
                let ports: Vec<PortSpecRef> = r.ports.iter().map(PortSpecRef::from_np).collect();
                let ports = Self::np_ports(&ports);
                ids.push(self.push_rule(
                    pid,
                    Direction::Ingress,
                    i,
                    None,
                    AdminAction::Allow,
                    Stage::Namespace,
                    9,
                    peers,
                    ports,
                    Vec::new(),
                    false,
                ));
            }
            self.attach(subject, Direction::Ingress, List::NsPolicies, &[pid], false);
            self.attach(subject, Direction::Ingress, List::NsRules, &ids, false);
        }
        if types.contains(&PolicyType::Egress) {
            let mut ids = Vec::new();
            for (i, r) in np.spec.egress.iter().enumerate() {
                let peers = self.np_peers(&r.to, nid);
                let ports: Vec<PortSpecRef> = r.ports.iter().map(PortSpecRef::from_np).collect();
                let ports = Self::np_ports(&ports);
                ids.push(self.push_rule(
                    pid,
                    Direction::Egress,
                    i,
                    None,
                    AdminAction::Allow,
                    Stage::Namespace,
                    9,
                    peers,
                    ports,
                    Vec::new(),
                    false,
                ));
            }
            self.attach(subject, Direction::Egress, List::NsPolicies, &[pid], false);
            self.attach(subject, Direction::Egress, List::NsRules, &ids, false);
        }
    }

    fn np_peers(&mut self, peers: &[NetworkPolicyPeer], nid: u32) -> Option<Vec<PeerMatch>> {
        if peers.is_empty() {
            return None;
        }
        Some(
            peers
                .iter()
                .map(|p| match &p.ip_block {
                    Some(b) => Self::block(b).unwrap_or(PeerMatch::Nothing),
                    None => self.selector_peer(
                        p.pod_selector.as_ref(),
                        p.namespace_selector.as_ref(),
                        Some(nid),
                    ),
                })
                .collect(),
        )
    }

    fn palisade_peers(
        &mut self,
        peers: Option<&[Peer]>,
        own_ns: Option<u32>,
    ) -> Option<Vec<PeerMatch>> {
        let peers = peers.filter(|p| !p.is_empty())?;
        let cluster = self.cluster.clone();
        Some(
            peers
                .iter()
                .map(|p| {
                    if p.cluster.as_deref().is_some_and(|c| c != cluster) {
                        PeerMatch::Nothing
                    } else if let Some(b) = &p.ip_block {
                        Self::block(b).unwrap_or(PeerMatch::Nothing)
                    } else if let Some(f) = &p.fqdn {
                        crate::fqdn::FqdnPattern::parse(f)
                            .map(PeerMatch::Fqdn)
                            .unwrap_or(PeerMatch::Nothing)
                    } else {
                        self.selector_peer(
                            p.pod_selector.as_ref(),
                            p.namespace_selector.as_ref(),
                            own_ns,
                        )
                    }
                })
                .collect(),
        )
    }

    fn add_sp(
        &mut self,
        (sp, origin): &(SecurityPolicy, Origin),
        ns_by_name: &HashMap<String, u32>,
    ) {
        let ns_name = sp
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into());
        let nid = ns_by_name.get(&ns_name).copied().unwrap_or_else(|| {
            self.namespaces
                .iter()
                .position(|n| n.name == ns_name)
                .unwrap_or(0) as u32
        });
        let subject = self.pod_set(None, Some(nid), Some(&sp.spec.pod_selector));
        let audit = sp.spec.mode == Mode::Audit;
        let pid = self.add_policy(
            PolicyInfo {
                kind: PolicyKind::SecurityPolicy,
                namespace: Some(ns_name),
                name: sp.metadata.name.clone(),
                mode: sp.spec.mode,
                priority: None,
                tier: None,
                file: origin.file.clone(),
                line: origin.line,
            },
            subject,
        );
        for (dir, rules) in [
            (Direction::Ingress, &sp.spec.ingress),
            (Direction::Egress, &sp.spec.egress),
        ] {
            let Some(rules) = rules else { continue };
            let mut ids = Vec::new();
            for (i, r) in rules.iter().enumerate() {
                let peer_list = if dir == Direction::Ingress {
                    r.from.as_deref()
                } else {
                    r.to.as_deref()
                };
                let peers = self.palisade_peers(peer_list, Some(nid));
                let ports: Vec<PortSpecRef> =
                    r.ports.iter().map(PortSpecRef::from_palisade).collect();
                let ports = Self::np_ports(&ports);
                let http = compile_http(&r.http);
                ids.push(self.push_rule(
                    pid,
                    dir,
                    i,
                    None,
                    AdminAction::Allow,
                    Stage::Namespace,
                    9,
                    peers,
                    ports,
                    http,
                    audit,
                ));
            }
            self.attach(subject, dir, List::NsPolicies, &[pid], audit);
            self.attach(subject, dir, List::NsRules, &ids, audit);
        }
    }

    fn add_csp(&mut self, (csp, origin): &(ClusterSecurityPolicy, Origin)) {
        let subject = self.pod_set(
            csp.spec.subject.namespace_selector.as_ref(),
            None,
            csp.spec.subject.pod_selector.as_ref(),
        );
        let audit = csp.spec.mode == Mode::Audit;
        let (rank, stage, list) = match csp.spec.tier {
            Tier::Security => (0, Stage::Admin, List::Tiered),
            Tier::Admin => (1, Stage::Admin, List::Tiered),
            Tier::Baseline => (2, Stage::Baseline, List::Baseline),
        };
        let pid = self.add_policy(
            PolicyInfo {
                kind: PolicyKind::ClusterSecurityPolicy,
                namespace: None,
                name: csp.metadata.name.clone(),
                mode: csp.spec.mode,
                priority: Some(csp.spec.priority),
                tier: Some(csp.spec.tier),
                file: origin.file.clone(),
                line: origin.line,
            },
            subject,
        );
        for (dir, rules) in [
            (Direction::Ingress, &csp.spec.ingress),
            (Direction::Egress, &csp.spec.egress),
        ] {
            let mut ids = Vec::new();
            for (i, r) in rules.iter().enumerate() {
                let peer_list = if dir == Direction::Ingress {
                    r.from.as_deref()
                } else {
                    r.to.as_deref()
                };
                let peers = self.palisade_peers(peer_list, None);
                let ports: Vec<PortSpecRef> =
                    r.ports.iter().map(PortSpecRef::from_palisade).collect();
                let ports = Self::np_ports(&ports);
                let http = compile_http(&r.http);
                ids.push(self.push_rule(
                    pid,
                    dir,
                    i,
                    r.name.clone(),
                    r.action,
                    stage,
                    rank,
                    peers,
                    ports,
                    http,
                    audit,
                ));
            }
            self.attach(subject, dir, list, &ids, audit);
        }
    }
}

#[derive(Clone, Copy)]
enum List {
    Tiered,
    NsPolicies,
    NsRules,
    Baseline,
}

struct PortSpecRef<'a> {
    protocol: Option<Protocol>,
    port: Option<&'a IntOrString>,
    end_port: Option<i64>,
}

impl<'a> PortSpecRef<'a> {
    fn from_np(p: &'a NetworkPolicyPort) -> Self {
        PortSpecRef {
            protocol: p.protocol,
            port: p.port.as_ref(),
            end_port: p.end_port,
        }
    }
    fn from_palisade(p: &'a PortSpec) -> Self {
        PortSpecRef {
            protocol: p.protocol,
            port: p.port.as_ref(),
            end_port: p.end_port,
        }
    }
}

pub(crate) fn compile_http(rules: &[HttpRule]) -> Vec<HttpMatch> {
    rules
        .iter()
        .map(|h| HttpMatch {
            methods: h.methods.clone(),
            path: h.path.as_ref().and_then(|p| {
                if let Some(e) = &p.exact {
                    Some(PathCond::Exact(e.clone()))
                } else if let Some(pre) = &p.prefix {
                    Some(PathCond::Prefix(pre.clone()))
                } else {
                    p.regex
                        .as_ref()
                        .and_then(|r| regex::Regex::new(&format!("^(?:{r})$")).ok())
                        .map(PathCond::Regex)
                }
            }),
            headers: h
                .headers
                .iter()
                .map(|hm| HeaderCond {
                    name: hm.name.to_ascii_lowercase(),
                    value: hm.value.clone(),
                    regex: hm
                        .regex
                        .as_ref()
                        .and_then(|r| regex::Regex::new(&format!("^(?:{r})$")).ok()),
                    present: hm.present.unwrap_or(true),
                })
                .collect(),
        })
        .collect()
}
