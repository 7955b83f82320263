//! Palisade's own policy kinds (`palisade.dev/v1alpha1`): SecurityPolicy (namespaced allow
//! rules with FQDN and L7) and ClusterSecurityPolicy (tiered Allow/Deny/Pass).

use super::anp::AdminAction;
use super::meta::{IntOrString, LabelSelector, Mode, ObjectMeta, Protocol};
use super::netpol::IpBlock;
use serde::de::IgnoredAny;
use serde::{Deserialize, Serialize};

/// A namespaced SecurityPolicy. A pod it selects is isolated in each direction whose field
/// (`ingress`, `egress`) is present; traffic is then allowed if any rule of any policy allows.
#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct SecurityPolicy {
    /// Metadata.
    pub metadata: ObjectMeta,
    /// Spec.
    pub spec: SecurityPolicySpec,
    #[cfg_attr(feature = "schema", schemars(skip))]
    #[serde(default)]
    #[allow(dead_code)]
    status: Option<IgnoredAny>,
}

/// SecurityPolicy spec.
#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SecurityPolicySpec {
    /// Enforce (default) or Audit.
    #[serde(default)]
    pub mode: Mode,
    /// Pods in this namespace (empty: all).
    pub pod_selector: LabelSelector,
    /// Ingress allow rules; present (even empty) isolates ingress.
    #[serde(default)]
    pub ingress: Option<Vec<SecurityRule>>,
    /// Egress allow rules; present (even empty) isolates egress.
    #[serde(default)]
    pub egress: Option<Vec<SecurityRule>>,
}

/// An allow rule of a SecurityPolicy (`from` for ingress, `to` for egress).
#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SecurityRule {
    /// Sources (ingress rules).
    #[serde(default)]
    pub from: Option<Vec<Peer>>,
    /// Destinations (egress rules).
    #[serde(default)]
    pub to: Option<Vec<Peer>>,
    /// Ports (missing: all).
    #[serde(default)]
    pub ports: Vec<PortSpec>,
    /// Layer-7 HTTP rules (any matches); missing: any request.
    #[serde(default)]
    pub http: Vec<HttpRule>,
    /// Egress: terminate TLS at the egress gateway so L7 rules and DLP see HTTPS.
    #[serde(default, rename = "inspectTLS")]
    pub inspect_tls: bool,
    /// Egress: largest request body allowed, in bytes.
    #[serde(default)]
    pub max_body_bytes: Option<u64>,
    /// Egress: data-loss prevention on visible request bodies.
    #[serde(default)]
    pub dlp: Option<DlpSpec>,
    /// Egress: most bytes each selected pod may send per window under this rule (one budget
    /// shared by every name the rule allows).
    #[serde(default)]
    pub upload_budget: Option<UploadBudgetSpec>,
}

/// An upload byte budget: `bytes` per pod and destination in each `window`.
#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct UploadBudgetSpec {
    /// Bytes allowed per window (request bodies and tunnel bytes client → server).
    pub bytes: u64,
    /// Window length: a number and a unit, `s`, `m`, `h` or `d` (e.g. `1h`).
    pub window: String,
}

impl UploadBudgetSpec {
    /// The window as a duration; `None` when it is not `<number><s|m|h|d>` or is zero.
    pub fn window_duration(&self) -> Option<std::time::Duration> {
        let w = self.window.trim();
        let unit = w.chars().last()?;
        let secs: u64 = match unit {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            _ => return None,
        };
        let n: u64 = w[..w.len() - 1].parse().ok()?;
        let total = n.checked_mul(secs)?;
        (total > 0).then(|| std::time::Duration::from_secs(total))
    }
}

/// A peer of a Palisade rule: exactly one of selectors, `ipBlock`, or `fqdn`.
#[derive(Debug, Clone, Default, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Peer {
    /// Pods (SecurityPolicy: in the policy's namespace unless namespaceSelector is set;
    /// ClusterSecurityPolicy: in every namespace unless namespaceSelector is set).
    #[serde(default)]
    pub pod_selector: Option<LabelSelector>,
    /// Namespaces.
    #[serde(default)]
    pub namespace_selector: Option<LabelSelector>,
    /// CIDR with exceptions (matches pod IPs too).
    #[serde(default)]
    pub ip_block: Option<IpBlock>,
    /// An FQDN pattern (egress): `a.b`, `*.a.b` (one label), `**.a.b` (one or more).
    #[serde(default)]
    pub fqdn: Option<String>,
    /// Federation: the cluster the peer pods run in (default: this cluster).
    #[serde(default)]
    pub cluster: Option<String>,
}

/// A port or range.
#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PortSpec {
    /// Protocol (TCP default).
    #[serde(default)]
    pub protocol: Option<Protocol>,
    /// Number or named port (missing: all ports of the protocol).
    #[serde(default)]
    pub port: Option<IntOrString>,
    /// Range end.
    #[serde(default)]
    pub end_port: Option<i64>,
}

/// An HTTP rule: every given condition must hold.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HttpRule {
    /// Methods (upper case; empty: any).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub methods: Vec<String>,
    /// Path match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<PathMatch>,
    /// Header conditions (all must hold).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<HeaderMatch>,
}

/// Exactly one of `exact`, `prefix`, `regex`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct PathMatch {
    /// Whole path equals.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exact: Option<String>,
    /// Path starts with, on a segment boundary (`/v1` matches `/v1` and `/v1/x`, not `/v10`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// Whole path matches the regex (RE2 syntax, anchored).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regex: Option<String>,
}

/// A header condition: present, equal to `value`, or matching `regex`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct HeaderMatch {
    /// Header name (case-insensitive).
    pub name: String,
    /// Exact value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// Value regex (anchored).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regex: Option<String>,
    /// `false`: the header must be absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub present: Option<bool>,
}

/// DLP settings of an egress rule.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DlpSpec {
    /// Detector names (`secrets`, `pii`, or single ones such as `aws-key`, `card`); empty: all.
    #[serde(default)]
    pub detectors: Vec<String>,
    /// What to do on a hit.
    #[serde(default)]
    pub action: DlpAction,
    /// Whether request heads (the request target and header fields) are scanned too;
    /// missing: `true`. `false` scans bodies only.
    #[serde(default)]
    pub scan_heads: Option<bool>,
    /// Header fields left out of the head scan: the credential a pod sends to the
    /// destination. Missing: `Authorization`, `X-Api-Key`, `Api-Key`, `X-Goog-Api-Key`;
    /// `[]`: every field is scanned.
    #[serde(default)]
    pub credential_headers: Option<Vec<String>>,
    /// Query parameters left out of the head scan (presigned URLs). Missing:
    /// `X-Amz-Credential`, `X-Amz-Security-Token`, `X-Amz-Signature`, `X-Goog-Credential`,
    /// `X-Goog-Signature`; `[]`: every parameter is scanned.
    #[serde(default)]
    pub credential_query_parameters: Option<Vec<String>>,
    /// Keys of other providers that this destination takes in its credential fields
    /// (detector names among `aws-key`, `github-token`, `gitlab-token`, `slack-token`,
    /// `anthropic-key`, `huggingface-token`), e.g. an AI gateway that forwards an Anthropic
    /// key, or a self-hosted GitLab. Missing: such a key in a credential field goes only to
    /// its provider's hosts; anywhere else it is a finding.
    #[serde(default)]
    pub forwarded_credentials: Option<Vec<String>>,
}

/// DLP actions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum DlpAction {
    /// Refuse the request.
    #[default]
    Block,
    /// Replace the match and forward.
    Redact,
    /// Forward and record.
    Log,
}

/// A cluster-scoped, tiered ClusterSecurityPolicy.
#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct ClusterSecurityPolicy {
    /// Metadata.
    pub metadata: ObjectMeta,
    /// Spec.
    pub spec: ClusterSecurityPolicySpec,
    #[cfg_attr(feature = "schema", schemars(skip))]
    #[serde(default)]
    #[allow(dead_code)]
    status: Option<IgnoredAny>,
}

/// Where a ClusterSecurityPolicy sits in the evaluation order.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize, Serialize, Default,
)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum Tier {
    /// Before AdminNetworkPolicy (federated global policy lives here).
    Security,
    /// With AdminNetworkPolicy, ordered by priority.
    #[default]
    Admin,
    /// After namespaced policy, before BaselineAdminNetworkPolicy.
    Baseline,
}

/// ClusterSecurityPolicy spec.
#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ClusterSecurityPolicySpec {
    /// Tier (default `admin`).
    #[serde(default)]
    pub tier: Tier,
    /// 0..=1000 within the tier; lower first.
    #[serde(default)]
    pub priority: i64,
    /// Enforce or Audit.
    #[serde(default)]
    pub mode: Mode,
    /// The pods it applies to.
    #[serde(default)]
    pub subject: ClusterSubject,
    /// Federation: clusters (by label) that enforce it; missing: every cluster.
    #[serde(default)]
    pub clusters: Option<LabelSelector>,
    /// Ingress rules in order.
    #[serde(default)]
    pub ingress: Vec<ClusterRule>,
    /// Egress rules in order.
    #[serde(default)]
    pub egress: Vec<ClusterRule>,
}

/// Subject pods: namespaces and pods (missing selector: all).
#[derive(Debug, Clone, Default, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ClusterSubject {
    /// Namespaces.
    #[serde(default)]
    pub namespace_selector: Option<LabelSelector>,
    /// Pods.
    #[serde(default)]
    pub pod_selector: Option<LabelSelector>,
}

/// A ClusterSecurityPolicy rule.
#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ClusterRule {
    /// Name.
    #[serde(default)]
    pub name: Option<String>,
    /// Allow, Deny or Pass (Pass skips to the next tier).
    pub action: AdminAction,
    /// Sources (ingress; missing: any).
    #[serde(default)]
    pub from: Option<Vec<Peer>>,
    /// Destinations (egress; missing: any).
    #[serde(default)]
    pub to: Option<Vec<Peer>>,
    /// Ports (missing: all).
    #[serde(default)]
    pub ports: Vec<PortSpec>,
    /// L7 conditions.
    #[serde(default)]
    pub http: Vec<HttpRule>,
}
