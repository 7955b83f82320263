//! The resources users write, as typed Rust values.

pub mod anp;
pub mod federation;
pub mod gateway;
pub mod meta;
pub mod netpol;
pub mod palisade;
#[cfg(feature = "schema")]
mod schema;
pub mod workload;

pub use anp::*;
pub use federation::*;
pub use gateway::*;
pub use meta::*;
pub use netpol::*;
pub use palisade::*;
pub use workload::*;

/// Any object Palisade reads.
#[derive(Debug, Clone)]
pub enum Object {
    /// `v1 Namespace`.
    Namespace(Namespace),
    /// `v1 Node`.
    Node(Node),
    /// `v1 Pod`.
    Pod(Box<Pod>),
    /// `v1 Service`.
    Service(Service),
    /// `networking.k8s.io/v1 NetworkPolicy`.
    NetworkPolicy(NetworkPolicy),
    /// `policy.networking.k8s.io/v1alpha1 AdminNetworkPolicy`.
    AdminNetworkPolicy(AdminNetworkPolicy),
    /// `policy.networking.k8s.io/v1alpha1 BaselineAdminNetworkPolicy`.
    BaselineAdminNetworkPolicy(BaselineAdminNetworkPolicy),
    /// `palisade.dev/v1alpha1 SecurityPolicy`.
    SecurityPolicy(SecurityPolicy),
    /// `palisade.dev/v1alpha1 ClusterSecurityPolicy`.
    ClusterSecurityPolicy(ClusterSecurityPolicy),
    /// `palisade.dev/v1alpha1 AIGateway`.
    AIGateway(AIGateway),
    /// `palisade.dev/v1alpha1 PalisadeConfig`.
    PalisadeConfig(PalisadeConfig),
}

/// The kinds Palisade reads: (apiVersion, kind, namespaced).
pub const KINDS: &[(&str, &str, bool)] = &[
    ("v1", "Namespace", false),
    ("v1", "Node", false),
    ("v1", "Pod", true),
    ("v1", "Service", true),
    ("networking.k8s.io/v1", "NetworkPolicy", true),
    (
        "policy.networking.k8s.io/v1alpha1",
        "AdminNetworkPolicy",
        false,
    ),
    (
        "policy.networking.k8s.io/v1alpha1",
        "BaselineAdminNetworkPolicy",
        false,
    ),
    ("palisade.dev/v1alpha1", "SecurityPolicy", true),
    ("palisade.dev/v1alpha1", "ClusterSecurityPolicy", false),
    ("palisade.dev/v1alpha1", "AIGateway", true),
    ("palisade.dev/v1alpha1", "PalisadeConfig", false),
];

impl Object {
    /// The object's kind.
    pub fn kind(&self) -> &'static str {
        match self {
            Object::Namespace(_) => "Namespace",
            Object::Node(_) => "Node",
            Object::Pod(_) => "Pod",
            Object::Service(_) => "Service",
            Object::NetworkPolicy(_) => "NetworkPolicy",
            Object::AdminNetworkPolicy(_) => "AdminNetworkPolicy",
            Object::BaselineAdminNetworkPolicy(_) => "BaselineAdminNetworkPolicy",
            Object::SecurityPolicy(_) => "SecurityPolicy",
            Object::ClusterSecurityPolicy(_) => "ClusterSecurityPolicy",
            Object::AIGateway(_) => "AIGateway",
            Object::PalisadeConfig(_) => "PalisadeConfig",
        }
    }
    /// The object's metadata.
    pub fn meta(&self) -> &ObjectMeta {
        match self {
            Object::Namespace(o) => &o.metadata,
            Object::Node(o) => &o.metadata,
            Object::Pod(o) => &o.metadata,
            Object::Service(o) => &o.metadata,
            Object::NetworkPolicy(o) => &o.metadata,
            Object::AdminNetworkPolicy(o) => &o.metadata,
            Object::BaselineAdminNetworkPolicy(o) => &o.metadata,
            Object::SecurityPolicy(o) => &o.metadata,
            Object::ClusterSecurityPolicy(o) => &o.metadata,
            Object::AIGateway(o) => &o.metadata,
            Object::PalisadeConfig(o) => &o.metadata,
        }
    }
    pub(crate) fn meta_mut(&mut self) -> &mut ObjectMeta {
        match self {
            Object::Namespace(o) => &mut o.metadata,
            Object::Node(o) => &mut o.metadata,
            Object::Pod(o) => &mut o.metadata,
            Object::Service(o) => &mut o.metadata,
            Object::NetworkPolicy(o) => &mut o.metadata,
            Object::AdminNetworkPolicy(o) => &mut o.metadata,
            Object::BaselineAdminNetworkPolicy(o) => &mut o.metadata,
            Object::SecurityPolicy(o) => &mut o.metadata,
            Object::ClusterSecurityPolicy(o) => &mut o.metadata,
            Object::AIGateway(o) => &mut o.metadata,
            Object::PalisadeConfig(o) => &mut o.metadata,
        }
    }
    /// `Kind ns/name` or `Kind name`.
    pub fn display_name(&self) -> String {
        let m = self.meta();
        match &m.namespace {
            Some(ns) => format!("{} {}/{}", self.kind(), ns, m.name),
            None => format!("{} {}", self.kind(), m.name),
        }
    }
}
