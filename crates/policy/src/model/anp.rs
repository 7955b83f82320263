//! `policy.networking.k8s.io/v1alpha1` AdminNetworkPolicy and BaselineAdminNetworkPolicy,
//! as network-policy-api defines them.

use super::meta::{LabelSelector, ObjectMeta, Protocol};
use serde::de::IgnoredAny;
use serde::Deserialize;

/// An AdminNetworkPolicy (cluster scoped).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminNetworkPolicy {
    /// Metadata.
    pub metadata: ObjectMeta,
    /// Spec.
    pub spec: AdminNetworkPolicySpec,
    #[serde(default)]
    #[allow(dead_code)]
    status: Option<IgnoredAny>,
}

/// ANP spec.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminNetworkPolicySpec {
    /// 0..=1000; lower is evaluated first.
    pub priority: i64,
    /// Pods this policy applies to.
    pub subject: AdminSubject,
    /// Ingress rules, in order (first match wins).
    #[serde(default)]
    pub ingress: Vec<AdminIngressRule>,
    /// Egress rules, in order.
    #[serde(default)]
    pub egress: Vec<AdminEgressRule>,
}

/// A BaselineAdminNetworkPolicy (cluster scoped, singleton named `default`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BaselineAdminNetworkPolicy {
    /// Metadata.
    pub metadata: ObjectMeta,
    /// Spec.
    pub spec: BaselineAdminNetworkPolicySpec,
    #[serde(default)]
    #[allow(dead_code)]
    status: Option<IgnoredAny>,
}

/// BANP spec.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BaselineAdminNetworkPolicySpec {
    /// Pods this policy applies to.
    pub subject: AdminSubject,
    /// Ingress rules (Allow/Deny only).
    #[serde(default)]
    pub ingress: Vec<AdminIngressRule>,
    /// Egress rules (Allow/Deny only).
    #[serde(default)]
    pub egress: Vec<AdminEgressRule>,
}

/// The subject: exactly one of `namespaces` or `pods`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminSubject {
    /// Every pod in the selected namespaces.
    #[serde(default)]
    pub namespaces: Option<LabelSelector>,
    /// Selected pods in selected namespaces.
    #[serde(default)]
    pub pods: Option<NamespacedPod>,
}

/// Pods by namespace and pod selector (both required).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct NamespacedPod {
    /// Namespaces.
    pub namespace_selector: LabelSelector,
    /// Pods in them.
    pub pod_selector: LabelSelector,
}

/// Allow, Deny or Pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, serde::Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub enum AdminAction {
    /// Allow, skipping lower stages.
    Allow,
    /// Deny, skipping lower stages.
    Deny,
    /// Skip the rest of this tier; NetworkPolicy then Baseline decide.
    Pass,
}

/// An ingress rule.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminIngressRule {
    /// Rule name (≤100 characters).
    #[serde(default)]
    pub name: Option<String>,
    /// Action.
    pub action: AdminAction,
    /// Sources (1..=100).
    pub from: Vec<AdminPeer>,
    /// Ports (missing: all).
    #[serde(default)]
    pub ports: Option<Vec<AdminPort>>,
}

/// An egress rule.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminEgressRule {
    /// Rule name.
    #[serde(default)]
    pub name: Option<String>,
    /// Action.
    pub action: AdminAction,
    /// Destinations (1..=100).
    pub to: Vec<AdminPeer>,
    /// Ports (missing: all).
    #[serde(default)]
    pub ports: Option<Vec<AdminPort>>,
}

/// A peer: exactly one field set. `nodes`, `networks` and `domainNames` are egress only.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AdminPeer {
    /// Every pod in the selected namespaces.
    #[serde(default)]
    pub namespaces: Option<LabelSelector>,
    /// Selected pods.
    #[serde(default)]
    pub pods: Option<NamespacedPod>,
    /// Nodes (egress).
    #[serde(default)]
    pub nodes: Option<LabelSelector>,
    /// CIDRs (egress), matching pod IPs too.
    #[serde(default)]
    pub networks: Option<Vec<String>>,
    /// Domain names (egress); `*.x` matches any subdomain depth.
    #[serde(default)]
    pub domain_names: Option<Vec<String>>,
}

/// A port selector: exactly one field set.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AdminPort {
    /// One port of one protocol.
    #[serde(default)]
    pub port_number: Option<AdminPortNumber>,
    /// A named container port on the destination pod.
    #[serde(default)]
    pub named_port: Option<String>,
    /// An inclusive range.
    #[serde(default)]
    pub port_range: Option<AdminPortRange>,
}

/// `portNumber`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminPortNumber {
    /// Protocol.
    #[serde(default)]
    pub protocol: Protocol,
    /// Port.
    pub port: i64,
}

/// `portRange`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminPortRange {
    /// Protocol.
    #[serde(default)]
    pub protocol: Protocol,
    /// First port.
    pub start: i64,
    /// Last port (inclusive).
    pub end: i64,
}
