//! The decision engine: compile a [`Snapshot`](crate::Snapshot) once, then answer "is this
//! connection allowed, and which rule decided?" for any flow, with an explanation on demand.
//!
//! Evaluation order for one direction of one connection (DESIGN.md):
//! 1. tiered cluster rules — ClusterSecurityPolicy tier `security`, then AdminNetworkPolicy
//!    and ClusterSecurityPolicy tier `admin` by priority; first match wins, `Pass` skips the
//!    rest of its tier;
//! 2. namespaced NetworkPolicy + SecurityPolicy: a pod selected by any is isolated in that
//!    direction and allowed only if some rule allows;
//! 3. baseline — ClusterSecurityPolicy tier `baseline`, then the BaselineAdminNetworkPolicy;
//! 4. the default posture.
//!
//! A pod-to-pod connection needs the sender's egress and the receiver's ingress. Audit-mode
//! policies are evaluated in a second pass: what they would deny is reported as `audit` and
//! allowed.

mod compile;
mod dns;
mod eval;
mod explain;
mod fast;
mod matrix;
mod view;

pub use dns::DnsDecision;
pub use explain::{Explanation, Step};
pub use matrix::{Exposure, Matrix};
pub use view::{DirRulesView, RuleView};

use crate::cidr::IpBlockMatcher;
use crate::fqdn::FqdnPattern;
use crate::model::{AdminAction, Mode, Posture, Protocol, Tier};
use crate::podset::PodSet;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

/// Index of a pod in the engine.
pub type PodId = u32;

/// Which way traffic goes relative to the pod whose policy is evaluated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// Into the pod.
    Ingress,
    /// Out of the pod.
    Egress,
}

/// Evaluation stage, named as in events (`policy.stage`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Stage {
    /// Tiered cluster policy (ClusterSecurityPolicy security/admin, AdminNetworkPolicy).
    Admin,
    /// NetworkPolicy and SecurityPolicy.
    Namespace,
    /// ClusterSecurityPolicy baseline tier and BaselineAdminNetworkPolicy.
    Baseline,
    /// Default posture.
    Default,
}

/// What the engine decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Allowed.
    Allow,
    /// Denied.
    Deny,
    /// Allowed, but an Audit-mode policy would have denied it.
    Audit,
}

/// Policy kinds the engine evaluates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum PolicyKind {
    /// networking.k8s.io/v1.
    NetworkPolicy,
    /// policy.networking.k8s.io/v1alpha1.
    AdminNetworkPolicy,
    /// policy.networking.k8s.io/v1alpha1.
    BaselineAdminNetworkPolicy,
    /// palisade.dev/v1alpha1.
    SecurityPolicy,
    /// palisade.dev/v1alpha1.
    ClusterSecurityPolicy,
}

impl PolicyKind {
    /// The kind's name.
    pub fn as_str(self) -> &'static str {
        match self {
            PolicyKind::NetworkPolicy => "NetworkPolicy",
            PolicyKind::AdminNetworkPolicy => "AdminNetworkPolicy",
            PolicyKind::BaselineAdminNetworkPolicy => "BaselineAdminNetworkPolicy",
            PolicyKind::SecurityPolicy => "SecurityPolicy",
            PolicyKind::ClusterSecurityPolicy => "ClusterSecurityPolicy",
        }
    }
}

/// A policy as the engine knows it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PolicyInfo {
    /// Kind.
    pub kind: PolicyKind,
    /// Namespace (namespaced kinds).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Name.
    pub name: String,
    /// Enforce or Audit.
    pub mode: Mode,
    /// Priority (tiered kinds).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub priority: Option<i64>,
    /// Tier (ClusterSecurityPolicy).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tier: Option<Tier>,
    /// Source file.
    pub file: String,
    /// Source line.
    pub line: usize,
    /// A global policy's federation revision (`None` for the cluster's own policies).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub federation_revision: Option<u64>,
}

impl PolicyInfo {
    /// `Kind ns/name` or `Kind name`.
    pub fn display(&self) -> String {
        match &self.namespace {
            Some(ns) => format!("{} {}/{}", self.kind.as_str(), ns, self.name),
            None => format!("{} {}", self.kind.as_str(), self.name),
        }
    }
}

/// A reference to the deciding rule, in the events schema's shape (`policy` field).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PolicyRef {
    /// Policy kind.
    pub kind: String,
    /// Namespace.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Policy name.
    pub name: String,
    /// Rule, e.g. `egress[0]`, or `default` for isolation with no allowing rule.
    pub rule: String,
    /// Rule name, where rules have names.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule_name: Option<String>,
    /// Stage.
    pub stage: Stage,
    /// Mode.
    pub mode: Mode,
    /// The federation revision of a global policy (absent for the cluster's own).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub federation_revision: Option<u64>,
}

/// Rule action inside the engine.
pub(crate) type RuleAction = AdminAction;

/// A compiled rule.
#[derive(Debug, Clone)]
pub(crate) struct Rule {
    pub(crate) policy: u32,
    pub(crate) direction: Direction,
    pub(crate) index: u32,
    pub(crate) name: Option<String>,
    pub(crate) action: RuleAction,
    pub(crate) stage: Stage,
    /// Tier rank for Pass: 0 security, 1 admin, 2 baseline (CSP), 3 BANP, 9 namespace.
    pub(crate) tier_rank: u8,
    /// `None`: any peer.
    pub(crate) peers: Option<Vec<PeerMatch>>,
    /// `None`: any port.
    pub(crate) ports: Option<Vec<PortMatch>>,
    /// Empty: any request.
    pub(crate) http: Vec<HttpMatch>,
    pub(crate) audit: bool,
    /// What an egress SecurityPolicy rule asks of the egress gateway (none for others).
    pub(crate) gateway: Option<std::sync::Arc<GatewayDemands>>,
}

/// What an allowing SecurityPolicy egress rule asks of the egress gateway beyond letting the
/// traffic through: interception, a body size limit, DLP, an upload budget.
#[derive(Debug, Clone, Default)]
pub struct GatewayDemands {
    /// Terminate TLS so that L7 rules and DLP see HTTPS.
    pub inspect_tls: bool,
    /// Largest request body, in bytes.
    pub max_body_bytes: Option<u64>,
    /// DLP on visible request bodies.
    pub dlp: Option<crate::model::DlpSpec>,
    /// Bytes each pod may send per window under this rule (all its names together).
    pub upload_budget: Option<UploadBudget>,
}

/// An upload budget, validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UploadBudget {
    /// Bytes per window.
    pub bytes: u64,
    /// Window length.
    pub window: std::time::Duration,
}

impl GatewayDemands {
    /// The demands of a SecurityPolicy egress rule, `None` when it makes none.
    pub(crate) fn of(r: &crate::model::SecurityRule) -> Option<Self> {
        let upload_budget = r.upload_budget.as_ref().and_then(|b| {
            Some(UploadBudget {
                bytes: b.bytes,
                window: b.window_duration()?,
            })
        });
        let d = GatewayDemands {
            inspect_tls: r.inspect_tls,
            max_body_bytes: r.max_body_bytes,
            dlp: r.dlp.clone(),
            upload_budget,
        };
        (d.inspect_tls || d.max_body_bytes.is_some() || d.dlp.is_some() || upload_budget.is_some())
            .then_some(d)
    }
}

/// A compiled peer.
#[derive(Debug, Clone)]
pub enum PeerMatch {
    /// Pods in a pre-computed set.
    Pods(u32),
    /// CIDR with exceptions (pod IPs too).
    Block(IpBlockMatcher),
    /// Destination names.
    Fqdn(FqdnPattern),
    /// Something this snapshot cannot match (nodes, pods in other clusters).
    Nothing,
}

/// A compiled port condition.
#[derive(Debug, Clone)]
pub enum PortMatch {
    /// Any port of a protocol.
    Proto(Protocol),
    /// Inclusive range.
    Range(Protocol, u16, u16),
    /// A named container port of the destination pod; protocol given (NetworkPolicy) or taken
    /// from the container port (AdminNetworkPolicy).
    Named(Option<Protocol>, String),
}

/// A compiled HTTP condition.
#[derive(Debug, Clone)]
pub(crate) struct HttpMatch {
    pub(crate) methods: Vec<String>,
    pub(crate) path: Option<PathCond>,
    pub(crate) headers: Vec<HeaderCond>,
}

#[derive(Debug, Clone)]
pub(crate) enum PathCond {
    Exact(String),
    Prefix(String),
    Regex(regex::Regex),
    /// A pattern that did not compile: meets no allowing rule and every denying one.
    Unusable,
}

#[derive(Debug, Clone)]
pub(crate) struct HeaderCond {
    pub(crate) name: String,
    pub(crate) value: Option<String>,
    pub(crate) regex: Option<regex::Regex>,
    /// The pattern did not compile: the condition meets no allowing rule and every
    /// denying one.
    pub(crate) unusable: bool,
    pub(crate) present: bool,
}

/// A pod as the engine knows it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PodInfo {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// IPs.
    pub ips: Vec<IpAddr>,
    /// Host network (node traffic; not subject to pod policy).
    pub host_network: bool,
    /// Node.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// Service account.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service_account: Option<String>,
    /// Declared ports: (name, protocol, number).
    pub ports: Vec<(Option<String>, Protocol, u16)>,
    /// Stable workload name (`namespace/owner`).
    pub workload: String,
    /// Federation: the other member cluster this pod runs in (`None`: this cluster). Remote
    /// pods are peers only: their own cluster enforces their policy.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
    #[serde(skip)]
    pub(crate) ns_id: u32,
}

impl PodInfo {
    /// `namespace/name`.
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

/// A namespace as the engine knows it.
#[derive(Debug, Clone)]
pub(crate) struct NsInfo {
    pub(crate) name: String,
    pub(crate) labels: BTreeMap<String, String>,
    pub(crate) pods: Vec<PodId>,
    #[allow(dead_code)]
    pub(crate) declared: bool,
    /// Federation: the other member cluster (`None`: this cluster).
    pub(crate) cluster: Option<String>,
}

/// The rules that apply to one pod in one direction, in evaluation order.
#[derive(Debug, Clone, Default)]
pub(crate) struct DirRules {
    pub(crate) tiered: Vec<u32>,
    pub(crate) ns_policies: Vec<u32>,
    pub(crate) ns_rules: Vec<u32>,
    pub(crate) baseline: Vec<u32>,
    pub(crate) audit: bool,
}

#[derive(Debug, Clone, Default)]
pub(crate) struct PodRules {
    pub(crate) ingress: DirRules,
    pub(crate) egress: DirRules,
}

impl PodRules {
    pub(crate) fn dir(&self, d: Direction) -> &DirRules {
        match d {
            Direction::Ingress => &self.ingress,
            Direction::Egress => &self.egress,
        }
    }
}

/// One end of a flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint<'a> {
    /// A pod of the snapshot.
    Pod(PodId),
    /// An IP that is no pod's.
    Ip(IpAddr),
    /// A name (egress destinations), with the IP it resolved to when known.
    Fqdn {
        /// The name.
        name: &'a str,
        /// The IP being connected to.
        ip: Option<IpAddr>,
    },
}

/// Layer-7 attributes of a request.
#[derive(Debug, Clone, Copy, Default)]
pub struct HttpRequest<'a> {
    /// Method.
    pub method: &'a str,
    /// Path (without query).
    pub path: &'a str,
    /// Host.
    pub host: Option<&'a str>,
    /// Headers (name, value).
    pub headers: &'a [(&'a str, &'a str)],
}

/// A connection (or request) to decide.
#[derive(Debug, Clone, Copy)]
pub struct Flow<'a> {
    /// Sender.
    pub src: Endpoint<'a>,
    /// Receiver.
    pub dst: Endpoint<'a>,
    /// Destination port.
    pub port: u16,
    /// Protocol.
    pub protocol: Protocol,
    /// HTTP attributes when the request is visible.
    pub http: Option<HttpRequest<'a>>,
}

/// Why a direction was decided as it was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Reason {
    /// A rule allowed.
    RuleAllowed,
    /// A rule denied.
    RuleDenied,
    /// Selected by namespaced policy and no rule allowed.
    NoRuleAllows,
    /// The default posture.
    Posture,
    /// Host-network pods are node traffic, not subject to pod policy.
    HostNetwork,
    /// Ingress from the pod's own node, which NetworkPolicy always allows.
    LocalNode,
}

/// The decision for one direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DirVerdict {
    /// Direction.
    pub direction: Direction,
    /// Allowed.
    pub allowed: bool,
    /// Stage that decided.
    pub stage: Stage,
    /// Why.
    pub reason: Reason,
    /// Deciding rule (rule id).
    #[serde(skip)]
    pub(crate) rule: Option<u32>,
    /// Deciding (or isolating) policy id.
    #[serde(skip)]
    pub(crate) policy: Option<u32>,
    /// Allowed by a rule with HTTP conditions that the gateway enforces per request.
    pub l7: bool,
}

/// The verdict for a flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Verdict {
    /// Allow, Deny, or Audit (allowed, would be denied).
    pub action: Action,
    /// The sender's egress (when the sender is a pod).
    pub egress: Option<DirVerdict>,
    /// The receiver's ingress (when the receiver is a pod).
    pub ingress: Option<DirVerdict>,
    /// For Audit: the direction an Audit-mode policy would deny.
    pub audit: Option<DirVerdict>,
}

impl Verdict {
    /// Whether traffic passes (Allow or Audit).
    pub fn allowed(&self) -> bool {
        self.action != Action::Deny
    }
    /// The direction verdict that decided the outcome.
    pub fn decisive(&self) -> Option<&DirVerdict> {
        match self.action {
            Action::Audit => self.audit.as_ref(),
            Action::Deny => [&self.egress, &self.ingress]
                .into_iter()
                .flatten()
                .find(|d| !d.allowed),
            Action::Allow => {
                let by_policy = |d: &&DirVerdict| d.policy.is_some();
                self.ingress
                    .as_ref()
                    .filter(by_policy)
                    .or(self.egress.as_ref().filter(by_policy))
                    .or(self.ingress.as_ref())
                    .or(self.egress.as_ref())
            }
        }
    }
}

/// The compiled policy of one snapshot. Immutable; share it behind an `Arc`.
#[derive(Debug, Clone)]
pub struct Engine {
    pub(crate) pods: Vec<PodInfo>,
    pub(crate) namespaces: Vec<NsInfo>,
    pub(crate) pod_index: HashMap<(String, String), PodId>,
    pub(crate) ip_index: HashMap<IpAddr, PodId>,
    pub(crate) policies: Vec<PolicyInfo>,
    pub(crate) rules: Vec<Rule>,
    pub(crate) sets: Vec<PodSet>,
    pub(crate) per_pod: Vec<PodRules>,
    pub(crate) posture: Posture,
    /// For lints: subject set of each policy.
    pub(crate) subjects: Vec<PodSet>,
    /// The compact copy of `rules` that `verdict` reads.
    pub(crate) fast: fast::Fast,
    /// Each node's addresses (`spec.nodeName` → pods' `status.hostIP` and host-network
    /// pods' IPs there), for NetworkPolicy's local-node rule.
    pub(crate) node_addrs: HashMap<String, Vec<IpAddr>>,
}

impl Engine {
    /// Pods, by id.
    pub fn pods(&self) -> &[PodInfo] {
        &self.pods
    }
    /// Policies, by id.
    pub fn policies(&self) -> &[PolicyInfo] {
        &self.policies
    }
    /// The default posture.
    pub fn posture(&self) -> Posture {
        self.posture
    }
    /// A pod by `namespace` and `name`.
    pub fn pod_id(&self, namespace: &str, name: &str) -> Option<PodId> {
        self.pod_index
            .get(&(namespace.to_string(), name.to_string()))
            .copied()
    }
    /// A pod by `namespace/name`.
    pub fn pod_by_key(&self, key: &str) -> Option<PodId> {
        let (ns, name) = key.split_once('/')?;
        self.pod_id(ns, name)
    }
    /// The labels of a pod's namespace (with `kubernetes.io/metadata.name`).
    pub fn namespace_labels(&self, pod: PodId) -> &BTreeMap<String, String> {
        &self.namespaces[self.pods[pod as usize].ns_id as usize].labels
    }
    /// The pod that owns an IP.
    pub fn pod_by_ip(&self, ip: IpAddr) -> Option<PodId> {
        self.ip_index.get(&ip).copied()
    }
    /// Whether `ip` belongs to the cluster itself, which no DNS name may lead to: a pod's
    /// address (by `engine`) or one inside `networks` (`spec.clusterNetworks`). The DNS proxy
    /// opens no such address for a name and the egress gateway connects to none.
    pub fn inside_cluster(
        engine: Option<&Engine>,
        networks: &[crate::cidr::Cidr],
        ip: IpAddr,
    ) -> bool {
        networks.iter().any(|c| c.contains(ip)) || engine.is_some_and(|e| e.pod_by_ip(ip).is_some())
    }
    /// Turns an IP into a pod endpoint when a pod has it.
    pub fn endpoint_for_ip(&self, ip: IpAddr) -> Endpoint<'static> {
        match self.pod_by_ip(ip) {
            Some(p) => Endpoint::Pod(p),
            None => Endpoint::Ip(ip),
        }
    }
    /// The events-schema reference of the rule that decided a direction.
    pub fn policy_ref(&self, d: &DirVerdict) -> Option<PolicyRef> {
        let pid = d.policy?;
        let p = &self.policies[pid as usize];
        let (rule, rule_name) = match d.rule {
            Some(r) => {
                let r = &self.rules[r as usize];
                let dir = match r.direction {
                    Direction::Ingress => "ingress",
                    Direction::Egress => "egress",
                };
                (format!("{dir}[{}]", r.index), r.name.clone())
            }
            None => ("default".to_string(), None),
        };
        Some(PolicyRef {
            kind: p.kind.as_str().to_string(),
            namespace: p.namespace.clone(),
            name: p.name.clone(),
            rule,
            rule_name,
            stage: d.stage,
            mode: p.mode,
            federation_revision: p.federation_revision,
        })
    }
    /// What the egress rule that allowed `v` asks of the egress gateway (interception,
    /// body limit, DLP, upload budget), if it is a SecurityPolicy rule that asks anything.
    pub fn gateway_demands(&self, v: &Verdict) -> Option<&std::sync::Arc<GatewayDemands>> {
        let d = v.egress.as_ref().filter(|d| d.allowed)?;
        self.rules.get(d.rule? as usize)?.gateway.as_ref()
    }

    /// Number of namespaces known.
    pub fn namespace_count(&self) -> usize {
        self.namespaces.len()
    }
}

impl Engine {
    /// Resolves a user's endpoint argument: `NAMESPACE/POD`, an IP (a pod's when one has it),
    /// or, where `allow_fqdn`, a domain name (with the IP it resolved to, if known).
    pub fn parse_endpoint<'a>(
        &self,
        s: &'a str,
        ip: Option<IpAddr>,
        allow_fqdn: bool,
    ) -> Result<Endpoint<'a>, String> {
        if let Ok(addr) = s.parse::<IpAddr>() {
            return Ok(self.endpoint_for_ip(addr));
        }
        if s.contains('/') {
            return self
                .pod_by_key(s)
                .map(Endpoint::Pod)
                .ok_or_else(|| format!("no pod {s} in the manifests"));
        }
        if allow_fqdn && !s.contains('*') && FqdnPattern::parse(s).is_ok() {
            return Ok(Endpoint::Fqdn { name: s, ip });
        }
        Err(format!(
            "{s:?} is not NAMESPACE/POD, an IP{}",
            if allow_fqdn { " or a domain name" } else { "" }
        ))
    }
}
