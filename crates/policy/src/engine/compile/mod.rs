//! Snapshot → Engine: selectors pre-matched to pod sets, rules compiled once, and for every
//! pod the rules that apply to it in each direction, in evaluation order.

use super::*;
use crate::model::*;
use crate::snapshot::Snapshot;

pub(super) mod kinds;
mod remote;
use std::collections::{BTreeMap, HashMap};

#[derive(Hash, PartialEq, Eq)]
enum SetKey {
    /// Pods of namespaces matching a selector (None: all namespaces) or of one namespace,
    /// filtered by an optional pod selector.
    /// The first field is the member cluster (`None`: this cluster).
    Pods(
        Option<String>,
        Option<LabelSelector>,
        Option<u32>,
        Option<LabelSelector>,
    ),
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
    /// The nodes' addresses this snapshot knows: Node objects' `status.addresses`,
    /// host-network pods' IPs and every pod's `status.hostIP`.
    node_ips: Vec<IpAddr>,
    /// Each node's addresses, by node name (from its Node object and from the pods whose
    /// `spec.nodeName` names it).
    node_addrs: HashMap<String, Vec<IpAddr>>,
    /// Node objects' labels, by node name, for `nodes` peers with a selector.
    node_labels: Vec<(String, BTreeMap<String, String>)>,
}

impl Engine {
    /// Compiles a snapshot with the posture its config sets.
    pub fn compile(snap: &Snapshot) -> Engine {
        Self::compile_with(snap, snap.posture())
    }

    /// Compiles a snapshot with an explicit default posture.
    pub fn compile_with(snap: &Snapshot, posture: Posture) -> Engine {
        let identity = snap.cluster_identity();
        let cluster_labels = identity.selector_labels();
        let cluster = identity.name;
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
            node_ips: Vec::new(),
            node_addrs: HashMap::new(),
            node_labels: Vec::new(),
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
                cluster: None,
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
                cluster: None,
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
            // A finished pod keeps its IP in status, but the address is free (a new pod
            // may hold it already): it stays a pod policy can name, with no address.
            if pod.status.is_terminal() {
                ips.clear();
            }
            let host_network = pod.spec.host_network.unwrap_or(false);
            let host_ips = pod.status.host_ip.iter().filter_map(|s| s.parse().ok());
            for ip in host_ips.chain(ips.iter().copied().filter(|_| host_network)) {
                if !b.node_ips.contains(&ip) {
                    b.node_ips.push(ip);
                }
                if let Some(node) = &pod.spec.node_name {
                    let addrs = b.node_addrs.entry(node.clone()).or_default();
                    if !addrs.contains(&ip) {
                        addrs.push(ip);
                    }
                }
            }
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
                cluster: None,
                ns_id: nid,
            });
        }
        for (node, _) in &snap.nodes {
            let name = &node.metadata.name;
            for ip in node.ips() {
                if !b.node_ips.contains(&ip) {
                    b.node_ips.push(ip);
                }
                let addrs = b.node_addrs.entry(name.clone()).or_default();
                if !addrs.contains(&ip) {
                    addrs.push(ip);
                }
            }
            b.node_labels
                .push((name.clone(), node.metadata.labels.clone()));
        }
        b.add_remote_workloads(&snap.remote_workloads, &mut ip_index);
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

        // Tiered: global (federated) security and admin tiers, then the local CSP security
        // tier, then ANP + CSP admin tier, by priority; global baseline before local baseline.
        let mut tiered: Vec<(u8, i64, u8, String, Tiered)> = Vec::new();
        for (i, (anp, _)) in snap.admin_network_policies.iter().enumerate() {
            tiered.push((
                RANK_ADMIN,
                anp.spec.priority,
                0,
                anp.metadata.name.clone(),
                Tiered::Anp(i),
            ));
        }
        let applies = |csp: &ClusterSecurityPolicy| {
            csp.spec
                .clusters
                .as_ref()
                .is_none_or(|sel| sel.matches(&cluster_labels))
        };
        for (i, (csp, _)) in snap.cluster_security_policies.iter().enumerate() {
            if !applies(csp) {
                continue;
            }
            let rank = match csp.spec.tier {
                Tier::Security => RANK_SECURITY,
                Tier::Admin => RANK_ADMIN,
                Tier::Baseline => RANK_BASELINE,
            };
            tiered.push((
                rank,
                csp.spec.priority,
                1,
                csp.metadata.name.clone(),
                Tiered::Csp(i),
            ));
        }
        for (i, (csp, _)) in snap.global_policies.iter().enumerate() {
            if !applies(csp) {
                continue;
            }
            let rank = match csp.spec.tier {
                Tier::Security | Tier::Admin => RANK_GLOBAL,
                Tier::Baseline => RANK_GLOBAL_BASELINE,
            };
            // Within the global tier, the declared tier still orders: security before admin.
            let sub = match csp.spec.tier {
                Tier::Security => 0,
                _ => 1,
            };
            tiered.push((
                rank,
                csp.spec.priority,
                sub,
                csp.metadata.name.clone(),
                Tiered::Global(i),
            ));
        }
        tiered.sort_by(|a, b| {
            let ka = (a.0, if a.0 == RANK_GLOBAL { a.2 } else { 0 }, a.1, a.2);
            let kb = (b.0, if b.0 == RANK_GLOBAL { b.2 } else { 0 }, b.1, b.2);
            ka.cmp(&kb).then_with(|| a.3.cmp(&b.3))
        });
        for (rank, _, _, _, t) in &tiered {
            if *rank >= RANK_GLOBAL_BASELINE {
                continue;
            }
            match t {
                Tiered::Anp(i) => b.add_anp(&snap.admin_network_policies[*i]),
                Tiered::Csp(i) => b.add_csp(&snap.cluster_security_policies[*i], None),
                Tiered::Global(i) => b.add_csp(&snap.global_policies[*i], snap.federation_revision),
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
            match (*rank, t) {
                (RANK_GLOBAL_BASELINE, Tiered::Global(i)) => {
                    b.add_csp(&snap.global_policies[*i], snap.federation_revision)
                }
                (RANK_BASELINE, Tiered::Csp(i)) => {
                    b.add_csp(&snap.cluster_security_policies[*i], None)
                }
                _ => {}
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
            node_addrs: b.node_addrs,
        }
    }
}

fn admin_info(kind: PolicyKind, name: &str, priority: Option<i64>, origin: &Origin) -> PolicyInfo {
    PolicyInfo {
        kind,
        namespace: None,
        name: name.to_string(),
        mode: Mode::Enforce,
        priority,
        tier: None,
        file: origin.file.clone(),
        line: origin.line,
        federation_revision: None,
    }
}

enum Tiered {
    Anp(usize),
    Csp(usize),
    Global(usize),
}

/// Evaluation order of the tiered stages (lower first).
const RANK_GLOBAL: u8 = 0;
const RANK_SECURITY: u8 = 1;
const RANK_ADMIN: u8 = 2;
const RANK_GLOBAL_BASELINE: u8 = 3;
const RANK_BASELINE: u8 = 4;

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
        self.pod_set_in(None, ns_sel, ns_fixed, pod_sel)
    }

    /// [`Self::pod_set`] over the pods of one member cluster (`None`: this cluster).
    fn pod_set_in(
        &mut self,
        cluster: Option<&str>,
        ns_sel: Option<&LabelSelector>,
        ns_fixed: Option<u32>,
        pod_sel: Option<&LabelSelector>,
    ) -> u32 {
        let key = SetKey::Pods(
            cluster.map(str::to_string),
            ns_sel.cloned(),
            ns_fixed,
            pod_sel.cloned(),
        );
        if let Some(id) = self.set_cache.get(&key) {
            return *id;
        }
        let nss: Vec<u32> = match (ns_fixed, ns_sel) {
            (Some(n), _) => vec![n],
            (None, Some(sel)) => self.ns_matching(sel),
            (None, None) => (0..self.namespaces.len() as u32).collect(),
        };
        let nss: Vec<u32> = nss
            .into_iter()
            .filter(|n| self.namespaces[*n as usize].cluster.as_deref() == cluster)
            .collect();
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
            gateway: None,
        });
        id
    }
}

#[derive(Clone, Copy)]
enum List {
    Tiered,
    NsPolicies,
    NsRules,
    Baseline,
}
