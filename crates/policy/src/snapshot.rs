//! A snapshot: every valid object of one consistent input, grouped by kind.

use crate::diag::Origin;
use crate::load::Manifests;
use crate::model::*;

/// Objects of one kind with where each was read.
pub type Sourced<T> = Vec<(T, Origin)>;

/// The workloads and policies Palisade enforces, as read.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// Namespaces.
    pub namespaces: Sourced<Namespace>,
    /// Nodes (their labels and addresses).
    pub nodes: Sourced<Node>,
    /// Pods.
    pub pods: Sourced<Pod>,
    /// Services.
    pub services: Sourced<Service>,
    /// NetworkPolicies.
    pub network_policies: Sourced<NetworkPolicy>,
    /// AdminNetworkPolicies.
    pub admin_network_policies: Sourced<AdminNetworkPolicy>,
    /// BaselineAdminNetworkPolicies (at most one, named `default`).
    pub baseline_admin_network_policies: Sourced<BaselineAdminNetworkPolicy>,
    /// SecurityPolicies.
    pub security_policies: Sourced<SecurityPolicy>,
    /// ClusterSecurityPolicies.
    pub cluster_security_policies: Sourced<ClusterSecurityPolicy>,
    /// AIGateways.
    pub gateways: Sourced<AIGateway>,
    /// The runtime configuration, if one was among the manifests.
    pub config: Option<(PalisadeConfig, Origin)>,
    /// Federation: global ClusterSecurityPolicies, the highest-precedence tier (before every
    /// local tier; their `baseline` tier goes before the local baseline tier).
    pub global_policies: Sourced<ClusterSecurityPolicy>,
    /// Federation: workloads of other member clusters (peers with `cluster:` select them).
    pub remote_workloads: Vec<RemoteWorkload>,
    /// Federation: the cluster this snapshot is enforced in (default: the config's
    /// `spec.cluster`, else `default`, with no labels).
    pub cluster: Option<ClusterIdentity>,
    /// Federation: the revision `global_policies` come from (`None`: not federated, or no
    /// revision yet). Decisions by a global policy name it.
    pub federation_revision: Option<u64>,
}

impl Snapshot {
    /// Groups the valid objects of a manifest set.
    pub fn from_manifests(m: &Manifests) -> Self {
        let mut s = Snapshot::default();
        for lo in &m.objects {
            let o = lo.origin.clone();
            match &lo.object {
                Object::Namespace(x) => s.namespaces.push((x.clone(), o)),
                Object::Node(x) => s.nodes.push((x.clone(), o)),
                Object::Pod(x) => s.pods.push(((**x).clone(), o)),
                Object::Service(x) => s.services.push((x.clone(), o)),
                Object::NetworkPolicy(x) => s.network_policies.push((x.clone(), o)),
                Object::AdminNetworkPolicy(x) => s.admin_network_policies.push((x.clone(), o)),
                Object::BaselineAdminNetworkPolicy(x) => {
                    s.baseline_admin_network_policies.push((x.clone(), o))
                }
                Object::SecurityPolicy(x) => s.security_policies.push((x.clone(), o)),
                Object::ClusterSecurityPolicy(x) => {
                    s.cluster_security_policies.push((x.clone(), o))
                }
                Object::AIGateway(x) => s.gateways.push((x.clone(), o)),
                Object::PalisadeConfig(x) => s.config = Some((x.clone(), o)),
            }
        }
        s
    }

    /// The cluster this snapshot is enforced in: `cluster`, else the config's name.
    pub fn cluster_identity(&self) -> ClusterIdentity {
        self.cluster.clone().unwrap_or_else(|| ClusterIdentity {
            name: self
                .config
                .as_ref()
                .and_then(|(c, _)| c.spec.cluster.clone())
                .unwrap_or_else(|| "default".to_string()),
            labels: Default::default(),
        })
    }

    /// The default posture the config sets (allow when there is no config).
    pub fn posture(&self) -> Posture {
        self.config
            .as_ref()
            .map(|(c, _)| c.spec.default_posture)
            .unwrap_or_default()
    }

    /// Number of policy objects of every kind.
    pub fn policy_count(&self) -> usize {
        self.network_policies.len()
            + self.admin_network_policies.len()
            + self.baseline_admin_network_policies.len()
            + self.security_policies.len()
            + self.cluster_security_policies.len()
            + self.global_policies.len()
    }
}
