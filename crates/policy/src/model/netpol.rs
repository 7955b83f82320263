//! `networking.k8s.io/v1 NetworkPolicy`, field for field as types.go defines it.

use super::meta::{IntOrString, LabelSelector, ObjectMeta, Protocol};
use serde::de::IgnoredAny;
use serde::Deserialize;

/// A NetworkPolicy.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkPolicy {
    /// Metadata.
    pub metadata: ObjectMeta,
    /// Spec (optional in the API: a NetworkPolicy without one isolates every pod of its
    /// namespace for ingress, like `podSelector: {}` with no rules).
    #[serde(default)]
    pub spec: NetworkPolicySpec,
    #[serde(default)]
    #[allow(dead_code)]
    status: Option<IgnoredAny>,
}

/// NetworkPolicy spec.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct NetworkPolicySpec {
    /// Pods this policy applies to, in its namespace (empty: all). Optional: "If it is not
    /// specified, it defaults to an empty selector" (types.go).
    #[serde(default)]
    pub pod_selector: LabelSelector,
    /// Ingress rules (OR).
    #[serde(default)]
    pub ingress: Vec<NetworkPolicyIngressRule>,
    /// Egress rules (OR).
    #[serde(default)]
    pub egress: Vec<NetworkPolicyEgressRule>,
    /// Directions this policy isolates; defaulted as the API server does.
    #[serde(default)]
    pub policy_types: Vec<PolicyType>,
}

/// Ingress or Egress.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
pub enum PolicyType {
    /// Ingress.
    Ingress,
    /// Egress.
    Egress,
}

/// An ingress rule: traffic from any `from` peer to any of `ports`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkPolicyIngressRule {
    /// Peers (missing or empty: every source).
    #[serde(default)]
    pub from: Vec<NetworkPolicyPeer>,
    /// Ports (missing or empty: every port).
    #[serde(default)]
    pub ports: Vec<NetworkPolicyPort>,
}

/// An egress rule.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkPolicyEgressRule {
    /// Peers (missing or empty: every destination).
    #[serde(default)]
    pub to: Vec<NetworkPolicyPeer>,
    /// Ports (missing or empty: every port).
    #[serde(default)]
    pub ports: Vec<NetworkPolicyPort>,
}

/// A peer: pod/namespace selectors (AND when both), or an ipBlock.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct NetworkPolicyPeer {
    /// Pods (in the policy's namespace unless namespaceSelector is set).
    #[serde(default)]
    pub pod_selector: Option<LabelSelector>,
    /// Namespaces.
    #[serde(default)]
    pub namespace_selector: Option<LabelSelector>,
    /// CIDR with exceptions.
    #[serde(default)]
    pub ip_block: Option<IpBlock>,
}

/// A CIDR and the CIDRs carved out of it.
#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct IpBlock {
    /// The block.
    pub cidr: String,
    /// Exceptions, each inside `cidr`.
    #[serde(default)]
    pub except: Vec<String>,
}

/// A port or port range.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct NetworkPolicyPort {
    /// Protocol (TCP default).
    #[serde(default)]
    pub protocol: Option<Protocol>,
    /// Number or named port (missing: all ports of the protocol).
    #[serde(default)]
    pub port: Option<IntOrString>,
    /// Range end (needs a numeric `port`).
    #[serde(default)]
    pub end_port: Option<i64>,
}
