//! Workload kinds: Namespace, Node, Pod, Service (read from manifests or a cluster dump; fields
//! Palisade does not use are ignored, as a dump carries many).

use super::meta::{IntOrString, ObjectMeta, Protocol};
use serde::Deserialize;
use std::collections::BTreeMap;

/// `v1 Namespace`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Namespace {
    /// Metadata.
    pub metadata: ObjectMeta,
}

/// `v1 Node`: its labels (AdminNetworkPolicy `nodes` peers select by them) and its
/// addresses.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Node {
    /// Metadata.
    pub metadata: ObjectMeta,
    /// Status.
    #[serde(default)]
    pub status: NodeStatus,
}

/// The part of a node's status policy reads.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeStatus {
    /// `InternalIP`, `ExternalIP`, `Hostname`, ... entries.
    #[serde(default)]
    pub addresses: Vec<NodeAddress>,
}

/// One `status.addresses` entry.
#[derive(Debug, Clone, Deserialize)]
pub struct NodeAddress {
    /// `InternalIP`, `ExternalIP`, `Hostname`, `InternalDNS` or `ExternalDNS`.
    #[serde(rename = "type", default)]
    pub kind: String,
    /// The address (a name for the DNS and Hostname kinds).
    #[serde(default)]
    pub address: String,
}

impl Node {
    /// The node's IP addresses: every `status.addresses` entry that is an IP ("It selects
    /// the nodeIPs [...] present in the node.Status.Addresses field", network-policy-api).
    pub fn ips(&self) -> impl Iterator<Item = std::net::IpAddr> + '_ {
        self.status
            .addresses
            .iter()
            .filter_map(|a| a.address.parse().ok())
    }
}

/// `v1 Pod`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Pod {
    /// Metadata.
    pub metadata: ObjectMeta,
    /// Spec.
    #[serde(default)]
    pub spec: PodSpec,
    /// Status.
    #[serde(default)]
    pub status: PodStatus,
}

/// The parts of a pod spec that matter for policy.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodSpec {
    /// Node the pod runs on.
    #[serde(default)]
    pub node_name: Option<String>,
    /// Host network pods are node traffic, not subject to pod policy.
    #[serde(default)]
    pub host_network: Option<bool>,
    /// Service account.
    #[serde(default)]
    pub service_account_name: Option<String>,
    /// Containers (their declared ports).
    #[serde(default)]
    pub containers: Vec<Container>,
    /// Init containers (sidecars may declare ports).
    #[serde(default)]
    pub init_containers: Vec<Container>,
}

/// A container's declared ports.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Container {
    /// Name.
    #[serde(default)]
    pub name: String,
    /// Declared ports.
    #[serde(default)]
    pub ports: Vec<ContainerPort>,
}

/// A declared container port.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerPort {
    /// Port number.
    pub container_port: u16,
    /// Optional IANA_SVC_NAME.
    #[serde(default)]
    pub name: Option<String>,
    /// Protocol (TCP default).
    #[serde(default)]
    pub protocol: Protocol,
}

/// Pod status: its IPs.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodStatus {
    /// Primary IP (`podIP`, as the API spells it; camelCase would give `podIp`).
    #[serde(default, rename = "podIP")]
    pub pod_ip: Option<String>,
    /// All IPs (dual stack).
    #[serde(default, rename = "podIPs")]
    pub pod_ips: Vec<PodIp>,
    /// Host IP.
    #[serde(default, rename = "hostIP")]
    pub host_ip: Option<String>,
    /// `Pending`, `Running`, `Succeeded`, `Failed` or `Unknown`.
    #[serde(default)]
    pub phase: Option<String>,
}

impl PodStatus {
    /// Whether the pod has finished (`Succeeded` or `Failed`): its containers are gone and
    /// the kubelet has released its addresses, which a new pod may already have.
    pub fn is_terminal(&self) -> bool {
        matches!(self.phase.as_deref(), Some("Succeeded" | "Failed"))
    }
}

/// One pod IP.
#[derive(Debug, Clone, Deserialize)]
pub struct PodIp {
    /// The address.
    pub ip: String,
}

/// `v1 Service`.
#[derive(Debug, Clone, Deserialize)]
pub struct Service {
    /// Metadata.
    pub metadata: ObjectMeta,
    /// Spec.
    #[serde(default)]
    pub spec: ServiceSpec,
}

/// The parts of a service spec Palisade uses.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceSpec {
    /// Pod selector.
    #[serde(default)]
    pub selector: BTreeMap<String, String>,
    /// Cluster IP.
    #[serde(default, rename = "clusterIP")]
    pub cluster_ip: Option<String>,
    /// Ports.
    #[serde(default)]
    pub ports: Vec<ServicePort>,
}

/// A service port.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServicePort {
    /// Name.
    #[serde(default)]
    pub name: Option<String>,
    /// Service port.
    pub port: u16,
    /// Target port on the pods.
    #[serde(default)]
    pub target_port: Option<IntOrString>,
    /// Protocol.
    #[serde(default)]
    pub protocol: Protocol,
}
