//! Compiling each policy kind into rules attached to the pods it selects.

use super::*;
use crate::cidr::{Cidr, IpBlockMatcher};

impl Builder {
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
            // "Nodes [...] selects the nodeIPs as the peer type by matching on the IPs present
            // in the node.Status.Addresses field of the node [...]; if present but empty, it
            // selects all Nodes." Empty: every node address the snapshot knows (also those
            // only seen as pods' hostIP). A selector: the addresses of the Node objects whose
            // labels match, with their pods' hostIPs (`palisade check` warns when none does).
            if let Some(sel) = &p.nodes {
                let ips: Vec<IpAddr> = if sel.is_empty() {
                    self.node_ips.clone()
                } else {
                    let mut ips = Vec::new();
                    for (name, labels) in &self.node_labels {
                        if !sel.matches(labels) {
                            continue;
                        }
                        for ip in self.node_addrs.get(name).into_iter().flatten() {
                            if !ips.contains(ip) {
                                ips.push(*ip);
                            }
                        }
                    }
                    ips
                };
                if ips.is_empty() {
                    out.push(PeerMatch::Nothing);
                }
                out.extend(ips.into_iter().map(|ip| {
                    PeerMatch::Block(IpBlockMatcher {
                        cidr: Cidr::host(ip),
                        except: Vec::new(),
                    })
                }));
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

    pub(super) fn add_anp(&mut self, (anp, origin): &(AdminNetworkPolicy, Origin)) {
        let s = &anp.spec;
        let info = admin_info(
            PolicyKind::AdminNetworkPolicy,
            &anp.metadata.name,
            Some(s.priority),
            origin,
        );
        self.add_admin(
            info,
            &s.subject,
            &s.ingress,
            &s.egress,
            (Stage::Admin, 1, List::Tiered),
        );
    }

    pub(super) fn add_banp(&mut self, (banp, origin): &(BaselineAdminNetworkPolicy, Origin)) {
        let s = &banp.spec;
        let info = admin_info(
            PolicyKind::BaselineAdminNetworkPolicy,
            &banp.metadata.name,
            None,
            origin,
        );
        self.add_admin(
            info,
            &s.subject,
            &s.ingress,
            &s.egress,
            (Stage::Baseline, 3, List::Baseline),
        );
    }

    /// AdminNetworkPolicy and BaselineAdminNetworkPolicy share their rule shapes; they
    /// differ in stage, tier rank and list.
    fn add_admin(
        &mut self,
        info: PolicyInfo,
        subject: &AdminSubject,
        ingress: &[AdminIngressRule],
        egress: &[AdminEgressRule],
        (stage, rank, list): (Stage, u8, List),
    ) {
        let subject = self.admin_subject(subject);
        let pid = self.add_policy(info, subject);
        type Shape<'a> = (
            &'a Option<String>,
            AdminAction,
            &'a [AdminPeer],
            &'a Option<Vec<AdminPort>>,
        );
        let ing: Vec<Shape> = ingress
            .iter()
            .map(|r| (&r.name, r.action, r.from.as_slice(), &r.ports))
            .collect();
        let egr: Vec<Shape> = egress
            .iter()
            .map(|r| (&r.name, r.action, r.to.as_slice(), &r.ports))
            .collect();
        for (dir, rules) in [(Direction::Ingress, ing), (Direction::Egress, egr)] {
            let mut ids = Vec::new();
            for (i, (name, action, peers, ports)) in rules.into_iter().enumerate() {
                let peers = self.admin_peers(peers);
                let ports = Self::admin_ports(ports);
                ids.push(self.push_rule(
                    pid,
                    dir,
                    i,
                    name.clone(),
                    action,
                    stage,
                    rank,
                    peers,
                    ports,
                    Vec::new(),
                    false,
                ));
            }
            self.attach(subject, dir, list, &ids, false);
        }
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

    /// Pods of another member cluster: a namespace selector there, or (no selector) the
    /// namespace of the same name as the policy's.
    fn remote_peer(&mut self, cluster: &str, p: &Peer, own_ns: Option<u32>) -> PeerMatch {
        let pod_sel = p.pod_selector.as_ref();
        match (p.namespace_selector.as_ref(), own_ns) {
            (Some(ns), _) => {
                PeerMatch::Pods(self.pod_set_in(Some(cluster), Some(ns), None, pod_sel))
            }
            (None, None) => PeerMatch::Pods(self.pod_set_in(Some(cluster), None, None, pod_sel)),
            (None, Some(own)) => {
                let name = self.namespaces[own as usize].name.clone();
                match self.remote_namespace(cluster, &name) {
                    Some(n) => {
                        PeerMatch::Pods(self.pod_set_in(Some(cluster), None, Some(n), pod_sel))
                    }
                    None => PeerMatch::Nothing,
                }
            }
        }
    }

    fn block(b: &IpBlock) -> Option<PeerMatch> {
        let cidr = Cidr::parse_legacy(&b.cidr).ok()?.0;
        let except = b
            .except
            .iter()
            .filter_map(|e| Cidr::parse_legacy(e).ok())
            .map(|(c, _)| c)
            .collect();
        Some(PeerMatch::Block(IpBlockMatcher { cidr, except }))
    }

    pub(super) fn add_np(
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
                federation_revision: None,
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
        let ingress: Vec<(&[NetworkPolicyPeer], &[NetworkPolicyPort])> = np
            .spec
            .ingress
            .iter()
            .map(|r| (r.from.as_slice(), r.ports.as_slice()))
            .collect();
        let egress: Vec<(&[NetworkPolicyPeer], &[NetworkPolicyPort])> = np
            .spec
            .egress
            .iter()
            .map(|r| (r.to.as_slice(), r.ports.as_slice()))
            .collect();
        for (dir, ptype, rules) in [
            (Direction::Ingress, PolicyType::Ingress, ingress),
            (Direction::Egress, PolicyType::Egress, egress),
        ] {
            if !types.contains(&ptype) {
                continue;
            }
            let mut ids = Vec::new();
            for (i, (peers, ports)) in rules.into_iter().enumerate() {
                let peers = self.np_peers(peers, nid);
                let ports: Vec<PortSpecRef> = ports.iter().map(PortSpecRef::from_np).collect();
                let ports = Self::np_ports(&ports);
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
                    Vec::new(),
                    false,
                ));
            }
            self.attach(subject, dir, List::NsPolicies, &[pid], false);
            self.attach(subject, dir, List::NsRules, &ids, false);
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
                    if let Some(remote) = p.cluster.as_deref().filter(|c| *c != cluster) {
                        self.remote_peer(remote, p, own_ns)
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

    pub(super) fn add_sp(
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
                federation_revision: None,
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
                let id = self.push_rule(
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
                );
                if dir == Direction::Egress {
                    self.rules[id as usize].gateway =
                        crate::engine::GatewayDemands::of(r).map(std::sync::Arc::new);
                }
                ids.push(id);
            }
            self.attach(subject, dir, List::NsPolicies, &[pid], audit);
            self.attach(subject, dir, List::NsRules, &ids, audit);
        }
    }

    /// A ClusterSecurityPolicy; `federation_revision` for a global one.
    pub(super) fn add_csp(
        &mut self,
        (csp, origin): &(ClusterSecurityPolicy, Origin),
        federation_revision: Option<u64>,
    ) {
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
                federation_revision,
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
                    // Validation refuses a pattern that does not compile; should one reach
                    // here anyway, it fails closed (no allow, every deny), never open.
                    p.regex.as_ref().map(|r| {
                        crate::http_regex::whole_value(r)
                            .map(PathCond::Regex)
                            .unwrap_or(PathCond::Unusable)
                    })
                }
            }),
            headers: h
                .headers
                .iter()
                .map(|hm| {
                    let regex = hm.regex.as_ref().map(|r| crate::http_regex::whole_value(r));
                    HeaderCond {
                        name: hm.name.to_ascii_lowercase(),
                        value: hm.value.clone(),
                        unusable: matches!(regex, Some(Err(_))),
                        regex: regex.and_then(Result::ok),
                        present: hm.present.unwrap_or(true),
                    }
                })
                .collect(),
        })
        .collect()
}
